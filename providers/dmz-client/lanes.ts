// Lanes: how a DMZ client keeps an apply's `--parallelism` while the CLI
// sends it more runs than that (docs/protocol.md, "Lanes").
//
// A run may name a lane `{ id, width }` (one per apply). At most `width`
// members of a lane do cloud work at once; the others wait here, in arrival
// order, with their authority calls already made (a create's advance
// approves the whole path ahead). A run takes its member's place just before
// its first cloud call and gives it up once its last cloud call is done,
// before its last report: so a place never waits for a round trip to the
// CLI, the record or the authority between two members, and the data center
// never sees more than `width` of the apply's members at work at once.
//
// A member is known by its VMs. A run of a member that holds a place (or
// waits for one) already shares it: that is a run sent again after its
// connection was cut, while the first still runs; both carry out the same
// steps under the same idempotency keys, one doing each step and the other
// waiting for its result, so the one sent again must never wait for a place
// the first one holds (it would wait for itself).
//
// What must stay true:
// - A place is given up once its last sharer frees it (Lease.free is
//   idempotent), and a run that ends early (a failure, a veto, a bug) frees
//   its share too.
// - A freed place goes to the longest-waiting member; none is skipped.
// - A lane with nothing running and nothing waiting is forgotten.

interface Holder {
  vms: readonly string[];
  /** Leases sharing this place. */
  count: number;
  /** Resolves once the place is given. */
  granted: Promise<void>;
}

interface Lane {
  width: number;
  busy: number;
  waiting: (() => void)[];
  /** The member holding (or waiting for) a place, by each of its VMs. */
  byVm: Map<string, Holder>;
}

export class Lanes {
  private readonly lanes = new Map<string, Lane>();

  /** One run's share in its member's place in lane `id`; `vms`: the VMs its steps act on. */
  lease(id: string, width: number, vms: readonly string[]): Lease {
    return new Lease(this, id, width, vms);
  }

  /** Members of lane `id` doing cloud work now, and waiting for a place (tests). */
  stats(id: string): { busy: number; waiting: number } {
    const lane = this.lanes.get(id);
    return { busy: lane?.busy ?? 0, waiting: lane?.waiting.length ?? 0 };
  }

  /** Over every lane: places held, members waiting for one, and lanes open (the DMZ client's gauges). */
  totals(): { busy: number; waiting: number; open: number } {
    let busy = 0;
    let waiting = 0;
    for (const lane of this.lanes.values()) {
      busy += lane.busy;
      waiting += lane.waiting.length;
    }
    return { busy, waiting, open: this.lanes.size };
  }

  /** @internal The member's place: shared when one of its VMs holds or waits for one, else asked for. */
  enter(id: string, width: number, vms: readonly string[]): Holder {
    let lane = this.lanes.get(id);
    if (!lane) {
      lane = { width, busy: 0, waiting: [], byVm: new Map() };
      this.lanes.set(id, lane);
    }
    // The latest width counts (one apply sends one width; a wider one lets waiting members in).
    lane.width = width;
    for (const vm of vms) {
      const held = lane.byVm.get(vm);
      if (held) {
        held.count++;
        return held;
      }
    }
    const l = lane;
    let granted: Promise<void>;
    if (l.busy < l.width && l.waiting.length === 0) {
      l.busy++;
      granted = Promise.resolve();
    } else {
      granted = new Promise<void>((resolve) => {
        l.waiting.push(resolve);
        this.admit(id, l);
      });
    }
    const holder: Holder = { vms, count: 1, granted };
    for (const vm of vms) l.byVm.set(vm, holder);
    return holder;
  }

  /** @internal A share given up; the last one gives the place back: to the longest-waiting member, else to the lane. */
  leave(id: string, holder: Holder): void {
    const lane = this.lanes.get(id);
    if (!lane || --holder.count > 0) return;
    for (const vm of holder.vms) if (lane.byVm.get(vm) === holder) lane.byVm.delete(vm);
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

/** A run's share in its member's place: `hold` before a cloud call (once is enough), `free` when its cloud work is over. */
export class Lease {
  private holder: Holder | undefined;
  private freed = false;

  constructor(
    private readonly lanes: Lanes,
    private readonly id: string,
    private readonly width: number,
    private readonly vms: readonly string[],
  ) {}

  /** Whether the run asked for its place already (it keeps it until `free`). */
  get holding(): boolean {
    return this.holder !== undefined && !this.freed;
  }

  /** Resolves once the run's member holds a place; at once when it does already, or when the run's work is over. */
  hold(): Promise<void> {
    if (this.freed) return Promise.resolve();
    this.holder ??= this.lanes.enter(this.id, this.width, this.vms);
    return this.holder.granted;
  }

  /** Gives the run's share up (once; a lease never held has nothing to give). */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    const holder = this.holder;
    if (holder) void holder.granted.then(() => this.lanes.leave(this.id, holder));
  }
}
