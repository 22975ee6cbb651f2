// The retry rules of a DMZ client's caller (providers/client.ts has the table
// of what is retried): exponential backoff with equal jitter, a budget of
// pauses per request, Retry-After. Pure functions of their arguments, so the
// schedule that proves an outage of 30 s is ridden out can be computed
// (providers/client.test.ts, docs/recovery.md "Outages").

export interface RetryInfo {
  attempt: number;
  delayMs: number;
  reason: string;
  method: string;
  url: string;
  idempotencyKey?: string;
}

/** Parses Retry-After (seconds or an HTTP date) into milliseconds; undefined when absent or invalid. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const secs = Number(header);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Equal-jitter exponential backoff delay for retry number `attempt` (0-based): in [d/2, d), d = min(maxMs, baseMs * 2^attempt). */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number): number {
  const d = Math.min(maxMs, baseMs * 2 ** attempt);
  return Math.floor(d / 2 + (random() * d) / 2);
}

/** How long the retries of one request may pause in all, by default: covers a restart of a DMZ client or the authority of 30 s with room. */
export const DEFAULT_RETRY_BUDGET_MS = 60_000;

/** The retry rules of a client: at most `retries` retries (unbounded when absent), while the pauses so far stay under `budgetMs`. */
export interface RetryPolicy {
  retries?: number;
  budgetMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Whether a request that failed `attempt` times (retries so far) after pausing `slept` ms in all is tried again. */
export function mayRetry(p: RetryPolicy, attempt: number, slept: number): boolean {
  return (p.retries === undefined || attempt < p.retries) && slept < p.budgetMs;
}

/**
 * The pauses one request makes before each retry when every attempt fails,
 * with the given random draws (docs and tests: the schedule is what proves
 * the default budget rides out a 30 s outage).
 */
export function retrySchedule(p: RetryPolicy, random: () => number = Math.random): number[] {
  const out: number[] = [];
  let slept = 0;
  while (mayRetry(p, out.length, slept)) {
    const d = backoffMs(out.length, p.baseDelayMs, p.maxDelayMs, random);
    out.push(d);
    slept += d;
  }
  return out;
}

/** How a request gave up: `after 3 attempts` (and over how long it retried, when it paused). */
export function gaveUp(retried: number, slept: number): string {
  const tries = `after ${retried + 1} attempt${retried === 0 ? '' : 's'}`;
  return slept >= 1000 ? `${tries} over ${Math.round(slept / 1000)} s` : tries;
}
