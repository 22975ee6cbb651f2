// Lanes: how a DMZ client keeps an apply's `--parallelism` while the CLI
// sends it more runs than that (docs/protocol.md, "Lanes").
//
// A run may name a lane `{ id, width }` (one per apply). At most `width` runs
// of a lane do cloud work at once; the others wait here, in arrival order,
// with their authority calls already made (a create's advance approves the
// whole path ahead). A run takes its place just before its first cloud call
// and gives it up once its last cloud call is done, before its last report:
// so a place never waits for a round trip to the CLI, the record or the
// authority between two members, and the data center never sees more than
// `width` of the apply's VM operations at once.
//
// What must stay true:
// - A place is given up exactly once (Lease.free is idempotent), and a run
//   that ends early (a failure, a veto, a bug) gives it up too.
// - A freed place goes to the longest-waiting run; none is skipped.
// - A lane with nothing running and nothing waiting is forgotten.

interface Lane {
  width: number;
  busy: number;
  waiting: (() => void)[];
}

export class Lanes {
  private readonly lanes = new Map<string, Lane>();

  /** One run's place in lane `id` (taken by `hold`, given up by `free`). */
  lease(id: string, width: number): Lease {
    return new Lease(this, id, width);
  }

  /** Runs of lane `id` doing cloud work now, and waiting for a place (tests, health). */
  stats(id: string): { busy: number; waiting: number } {
    const lane = this.lanes.get(id);
    return { busy: lane?.busy ?? 0, waiting: lane?.waiting.length ?? 0 };
  }

  /** @internal Resolves once the caller holds a place. */
  enter(id: string, width: number): Promise<void> {
    let lane = this.lanes.get(id);
    if (!lane) {
      lane = { width, busy: 0, waiting: [] };
      this.lanes.set(id, lane);
    }
    // The latest width counts (one apply sends one width; a wider one lets waiting runs in).
    lane.width = width;
    if (lane.busy < lane.width && lane.waiting.length === 0) {
      lane.busy++;
      return Promise.resolve();
    }
    const l = lane;
    return new Promise<void>((resolve) => {
      l.waiting.push(resolve);
      this.admit(id, l);
    });
  }

  /** @internal Gives a place back: to the longest-waiting run, else to the lane. */
  leave(id: string): void {
    const lane = this.lanes.get(id);
    if (!lane) return;
    lane.busy--;
    this.admit(id, lane);
  }

  private admit(id: string, lane: Lane): void {
    while (lane.busy < lane.width && lane.waiting.length > 0) {
      lane.busy++;
      lane.waiting.shift()!();
    }
    if (lane.busy === 0 && lane.waiting.length === 0) this.lanes.delete(id);
  }
}

/** A run's place in its lane: `hold` before a cloud call (once is enough), `free` when its cloud work is over. */
export class Lease {
  private held: Promise<void> | undefined;
  private freed = false;

  constructor(
    private readonly lanes: Lanes,
    private readonly id: string,
    private readonly width: number,
  ) {}

  /** Whether the run asked for its place already (it keeps it until `free`). */
  get holding(): boolean {
    return this.held !== undefined && !this.freed;
  }

  /** Resolves once the run holds a place; at once when it does already, or when its work is over. */
  hold(): Promise<void> {
    if (this.freed) return Promise.resolve();
    this.held ??= this.lanes.enter(this.id, this.width);
    return this.held;
  }

  /** Gives the place up (once; a lease never held has nothing to give). */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    if (this.held) void this.held.then(() => this.lanes.leave(this.id));
  }
}
