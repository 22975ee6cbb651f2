import { fail, quote } from '../diags/index.ts';

/**
 * A timeout in milliseconds from the environment variable `name`: unset or
 * empty gives `fallback`; anything but a whole number is refused (cli.usage),
 * before the record is opened. `10s` used to be ignored without a word, or
 * read as NaN. Above MAX_TIMER_MS is refused too. `hint` (e.g. the default)
 * goes in the refusal's parentheses.
 */
export function envMs<F extends number | undefined>(name: string, fallback: F, opts: { env?: NodeJS.ProcessEnv; hint?: string } = {}): number | F {
  const v = (opts.env ?? process.env)[name];
  if (v === undefined || v === '') return fallback;
  if (!/^[0-9]+$/.test(v)) fail('cli.usage', `${name} takes a whole number of milliseconds (0 or more${opts.hint ? `; ${opts.hint}` : ''}), not ${quote(v)}.`);
  const ms = Number(v);
  // A timer holds at most 2^31 - 1 ms: Node sets a longer one to 1 ms (with a TimeoutOverflowWarning on stderr), so
  // FLEET_RECORD_CONNECT_TIMEOUT_MS=2147483648, meant as "wait as long as it takes", failed every connection at once.
  if (ms > MAX_TIMER_MS) fail('cli.usage', `${name} takes at most ${MAX_TIMER_MS} milliseconds (about 24.8 days, the longest a timer waits${opts.hint ? `; ${opts.hint}` : ''}), not ${quote(v)}.`);
  return ms;
}

/** The longest delay a Node timer keeps (2^31 - 1 ms); a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
