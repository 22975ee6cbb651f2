// The boot endpoint's limit of denials per source address (docs/dmz-client.md,
// "The boot endpoint's limit"). POST /v1/boot and /v1/boot/status are open to
// anything on the fleet's subnet: a VM has no credential but its one-time boot
// token. Every denied boot costs an authority call and writes a boot-attempt
// row and a history row in the record, so a caller sending bad tokens without
// end floods both. The DMZ client counts each address's DENIALS (a boot
// answered `approved: false`, a status report refused, a request refused as
// malformed: any 4xx answer) in a fixed window; once an address has used its
// budget, its boot requests are answered 429 `boot-rate-limited` until the
// window ends, without asking the authority and without writing anything.
//
// What must stay true:
// - an approval is never counted, so a healthy fleet, however large, never
//   meets the limit (the sim's agents all come from 127.0.0.1: a 10 000-VM
//   apply is one address with no denials);
// - the table of addresses is bounded (maxAddresses): an address's entry
//   lives two windows at most, and when the table is full the entry closest
//   to its end goes first;
// - a request already in flight when its address reaches the budget is still
//   answered as usual (the budget may be overshot by what one address had in
//   flight at once, once): but an address that went over its budget in its
//   last window is strict in the next one, where every request admitted is
//   charged as a denial until it is answered (refunded when approved), so a
//   burst of concurrent bad boots cannot overshoot it again.
//
// The decision (`judge`) is a pure function of an address's entry and the
// time; BootLimiter keeps the table and the clock (injected in tests).

/** The limit's settings: the DmzClient config's spec.bootLimit (docs/formats.md). */
export interface BootLimitSettings {
  /** Denials an address may have in one window; the next request is refused until the window ends. */
  denials: number;
  /** Length of a window, ms. */
  windowMs: number;
  /** Addresses the table holds at most. */
  maxAddresses: number;
}

/**
 * The defaults: 30 denials per 30 s per address, 10 000 addresses (about
 * 1.2 MB, about 125 bytes each). A VM boots with one token and asks a handful of times at most; the
 * boot agent asks again after a 429's Retry-After (at most 60 s a try, 12
 * tries, within its boot window: agentWindowSeconds in providers/boot-agent), and for 55 s without one (12 tries, 5 s apart), longer than a
 * window, so a VM refused because another caller shares its address (NAT)
 * still boots once the window ends.
 */
export const BOOT_LIMIT_DEFAULTS: Readonly<BootLimitSettings> = Object.freeze({ denials: 30, windowMs: 30_000, maxAddresses: 10_000 });

/**
 * The limit of the DMZ client's POST /v1/admin-check (routes.ts), with the
 * same limiter: an address may have 5 refused checks (a proof not made with
 * the authority's admin token, a malformed body) per minute, then its checks
 * are answered 429 admin-check-rate-limited until the window ends, without
 * asking the authority. `fleet apply` asks once per data center per apply;
 * a correct check is never counted. Guessing the admin token through a DMZ
 * client is so no cheaper than through the authority's own route, which takes
 * the CLI's token at the authority (and a token of 32 random bytes is beyond
 * guessing at any rate: the limit keeps the authority's log and CPU quiet).
 */
export const ADMIN_CHECK_LIMIT: Readonly<BootLimitSettings> = Object.freeze({ denials: 5, windowMs: 60_000, maxAddresses: 1_000 });

/** One address's window. */
export interface BootWindow {
  /** When the window started, ms. */
  start: number;
  /** Denials in it, with (when strict) the requests admitted and not yet answered. */
  denials: number;
  /** The address went over its budget in the window just before this one. */
  strict: boolean;
  /** Requests refused in it (the first one logs a line). */
  refused: number;
}

/** A request admitted: how it is settled once answered (BootLimiter.settle). */
export interface BootTicket {
  address: string;
  /** The window it was charged to as a denial (a strict window), or undefined. */
  charged?: BootWindow;
  settled: boolean;
}

export type BootJudgement = { limited: false } | { limited: true; until: number };

/**
 * Whether a request from an address whose window is `w` (undefined: none, or
 * one that ended) is refused at `now`. Table:
 *
 * | window                      | denials (+ charged in flight) | decision                  |
 * | --------------------------- | ----------------------------- | ------------------------- |
 * | none, or ended              | -                             | admitted                  |
 * | live                        | below the budget              | admitted                  |
 * | live                        | at or over the budget         | limited until its end     |
 */
export function judge(w: BootWindow | undefined, now: number, s: BootLimitSettings): BootJudgement {
  if (!w || now >= w.start + s.windowMs) return { limited: false };
  if (w.denials < s.denials) return { limited: false };
  return { limited: true, until: w.start + s.windowMs };
}

/** A request refused: until when (ms), how long that is from now, the window's denials, and whether it is the first refused in this window (log it then, once). */
export interface BootRefusal {
  ok: false;
  until: number;
  waitMs: number;
  denials: number;
  first: boolean;
}

export class BootLimiter {
  /** By address, in the order their windows started (oldest first): Map keeps insertion order. */
  private readonly table = new Map<string, BootWindow>();

  constructor(
    readonly settings: BootLimitSettings,
    private readonly now: () => number = Date.now,
  ) {}

  /** Addresses in the table. */
  get size(): number {
    return this.table.size;
  }

  /**
   * A request from `address` arrives: refused (limited until when), or
   * admitted with the ticket to settle once it is answered.
   */
  admit(address: string): { ok: true; ticket: BootTicket } | BootRefusal {
    const now = this.now();
    const w = this.live(address, now);
    const j = judge(w, now, this.settings);
    if (j.limited && w) {
      w.refused++;
      return { ok: false, until: j.until, waitMs: j.until - now, denials: w.denials, first: w.refused === 1 };
    }
    // A strict window charges the request now; an approval refunds it.
    if (w?.strict) {
      w.denials++;
      return { ok: true, ticket: { address, charged: w, settled: false } };
    }
    return { ok: true, ticket: { address, settled: false } };
  }

  /** The request was answered: a denial (approved: false, refused, malformed) or not (approved, or nothing decided). Once per ticket. */
  settle(t: BootTicket, denied: boolean): void {
    if (t.settled) return;
    t.settled = true;
    if (t.charged) {
      if (!denied) t.charged.denials--;
      return;
    }
    if (!denied) return;
    const now = this.now();
    const w = this.live(t.address, now) ?? this.open(t.address, now, undefined);
    w.denials++;
  }

  /** The address's window if it is live at `now`; an ended one is replaced by none, or by a strict one (it ended over budget just now). */
  private live(address: string, now: number): BootWindow | undefined {
    const w = this.table.get(address);
    if (!w) return undefined;
    const { windowMs } = this.settings;
    if (now < w.start + windowMs) return w;
    this.table.delete(address);
    // Over budget in the window that just ended (and it ended less than a window ago): the next one is strict.
    if (w.denials >= this.settings.denials && now < w.start + 2 * windowMs) return this.open(address, now, w);
    return undefined;
  }

  /** Opens a window for `address` at `now` (strict when `before` ended over budget), keeping the table within maxAddresses. */
  private open(address: string, now: number, before: BootWindow | undefined): BootWindow {
    const { windowMs, maxAddresses } = this.settings;
    // Windows sit in the order they opened, oldest first. One that ended a window ago or more says nothing any more (a
    // strict successor follows only straight after it): those go first; then, while the table is full, the oldest, the
    // closest to its end (an address dropped so is judged afresh: a new window, not strict).
    for (const [a, w] of this.table) {
      if (now < w.start + 2 * windowMs && this.table.size < maxAddresses) break;
      this.table.delete(a);
    }
    const w: BootWindow = { start: now, denials: 0, strict: before !== undefined, refused: 0 };
    this.table.set(address, w);
    return w;
  }
}
