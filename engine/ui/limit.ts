// Failed sign-ins, counted per caller address: past `failures` of them
// within `windowMs`, that address is refused (429, Retry-After) until the
// oldest failure in the window has aged out, so a token cannot be guessed
// through the dashboard at the speed of HTTP. A sign-in that succeeds
// clears its address. Sessions and bearer calls already signed in are not
// touched. Bounded: at most `addresses` addresses are remembered (the one
// seen longest ago is forgotten first).
export interface SignInLimits {
  /** Failures an address may have within the window; default 10. */
  failures?: number;
  /** The window, in ms; default 15 minutes. */
  windowMs?: number;
  /** Addresses remembered at most; default 10,000. */
  addresses?: number;
}

export class SignInLimiter {
  private readonly failures: number;
  private readonly windowMs: number;
  private readonly addresses: number;
  /** Per address, the times of its failures within the window, oldest first (a Map keeps insertion order: the least recently failed first). */
  private readonly seen = new Map<string, number[]>();

  constructor(limits: SignInLimits = {}, private readonly now: () => number = Date.now) {
    this.failures = limits.failures ?? 10;
    this.windowMs = limits.windowMs ?? 15 * 60_000;
    this.addresses = limits.addresses ?? 10_000;
  }

  private recent(address: string, at: number): number[] {
    const times = (this.seen.get(address) ?? []).filter((t) => at - t < this.windowMs);
    if (times.length === 0) this.seen.delete(address);
    return times;
  }

  /** How long (ms) `address` must wait before it may try again; 0 when it may try now. */
  waitMs(address: string): number {
    const at = this.now();
    const times = this.recent(address, at);
    if (times.length < this.failures) return 0;
    return times[times.length - this.failures] + this.windowMs - at;
  }

  /** A failed sign-in (a wrong token) from `address`. */
  failed(address: string): void {
    const at = this.now();
    const times = this.recent(address, at);
    times.push(at);
    this.seen.delete(address);
    this.seen.set(address, times);
    while (this.seen.size > this.addresses) {
      const oldest = this.seen.keys().next().value as string;
      this.seen.delete(oldest);
    }
  }

  /** A sign-in that succeeded: the address starts afresh. */
  succeeded(address: string): void {
    this.seen.delete(address);
  }
}
