// A limit of refusals per caller, in fixed windows (BootLimiter): the DMZ
// client's boot endpoint and POST /v1/admin-check count refusals per source
// address (providers/dmz-client/boot-limit.ts has their settings and
// docs/dmz-client.md "The boot endpoint's limit" the why), the authority's
// POST /v1/admin-check per data center (engine/authority/server.ts). A key
// (an address, a data center) that used its budget of DENIALS in its window
// is refused until the window ends; what counts as a denial is the caller's
// to say (settle).
//
// What must stay true:
// - an approval is never counted, so a healthy caller, however busy, never
//   meets the limit;
// - the table of keys is bounded (maxAddresses): a key's entry lives two
//   windows at most, and when the table is full the entry closest to its end
//   goes first;
// - a request already in flight when its key reaches the budget is still
//   answered as usual (the budget may be overshot by what one key had in
//   flight at once, once): but a key that went over its budget in its last
//   window is strict in the next one, where every request admitted is charged
//   as a denial until it is answered (refunded when approved), so a burst of
//   concurrent bad requests cannot overshoot it again.
//
// The decision (`judge`) is a pure function of a key's entry and the time;
// BootLimiter keeps the table and the clock (injected in tests). Below the
// services (eslint.config.js LAYERS): both use it.

/** A limit's settings (the boot endpoint's: the DmzClient config's spec.bootLimit, docs/formats.md). */
export interface BootLimitSettings {
  /** Denials a key (an address, a data center) may have in one window; the next request is refused until the window ends. */
  denials: number;
  /** Length of a window, ms. */
  windowMs: number;
  /** Keys (addresses) the table holds at most. */
  maxAddresses: number;
}

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
