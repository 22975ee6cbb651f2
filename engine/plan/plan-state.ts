// What one planning run shares between its parts (engine/plan/planner.ts
// drives; member-changes.ts diffs existing members, creates.ts places new
// ones, assemble.ts builds the document): the input, the changes and
// violations so far, what the plan has taken of each data center's capacity,
// and the shared frozen pieces every change of a big plan reuses.
import type { Lifecycle } from '../policy/types.ts';
import type { PlanVmRow, UnchangedRow, UsageRow } from '../record/types.ts';
import type { LoadedFleet } from '../spec/types.ts';
import { formatVmAddress } from '../model/index.ts';
import { resizeState, stepsAlong } from './member.ts';
import type { CapacityLeft, PlanContext, PlanPolicy } from './policy-port.ts';
import { defaultPolicy } from './policy-default.ts';
import { memberTargets } from './scope.ts';
import type { Change, Grant, Step, Violation, VmSize } from './types.ts';
import type { PlanInput } from './planner.ts';

/** Members of one fleet summed as unchanged (PlanInput.unchanged). */
export interface SummedFleet {
  count: number;
  states: Map<string, number>;
  dataCenters: Map<string, number>;
}

/** An UnchangedRow as the usage the quota and capacity rules count; its owner is the record's. */
function summedUsage(u: UnchangedRow, input: PlanInput): UsageRow {
  return { fleet: u.fleet, owner: input.owners?.[u.fleet] ?? '', dataCenter: u.dataCenter, vms: u.vms, cpu: u.cpu, memoryGiB: u.memoryGiB };
}

/** The VM name of a fleet member: `<stack>-<fleet>-<index>` (the record's VmRow.name). The Pulumi Vm resource names its VM the same way. */
export function memberName(stack: string, fleet: string, index: number): string {
  return `${stack}-${fleet}-${index}`;
}

// Every field is set in the constructor, none by an initializer: the Pulumi
// Fleet provider (providers/pulumi/fleet.ts) runs the planner from a closure
// serialized by Pulumi, which rewrites a class into a function from its
// constructor's text and drops field initializers.
export class PlanState {
  readonly input: PlanInput;
  readonly lc: Lifecycle;
  readonly policy: PlanPolicy;
  /** Every member's change so far, noops included (rules and waves see them all; the document summarises noops). */
  readonly changes: Change[];
  readonly violations: Violation[];
  readonly grants: Grant[];
  /** What rules and quotas read; its fleets are settled to the scope once it is known (settleOwners). */
  ctx: PlanContext;
  readonly resizeAt: string;
  /** Record version of each VM a change acts on (not noops), for the basis. */
  readonly touched: Map<string, number>;
  /**
   * Members the specs still want whose change a violation vetoed (a replace in a data center the fleet may no
   * longer use, no path in the diagram), as noops: they stay as they are, so the waves and the rules count them
   * as they count the members --target leaves out. The document lists them in neither `changes` nor `unchanged`.
   */
  readonly held: Change[];
  /** Capacity left per data center, less what this plan has placed; null when the capacity rule is disabled. */
  readonly capacity: Map<string, CapacityLeft> | null;
  /** --target web/3: per fleet targeted only by member addresses, the indexes to plan. */
  readonly memberTargets: Map<string, Set<number>>;
  /** --replace: addresses whose member is replaced even when it matches its spec. */
  readonly forceReplace: Set<string>;
  /** PlanInput.unchanged per fleet: how many, per state and per data center. */
  readonly summed: Map<string, SummedFleet>;
  private readonly statePaths: Map<string, string[]>;
  private readonly images: Map<string, Change['image']>;

  constructor(input: PlanInput) {
    this.input = input;
    this.changes = [];
    this.violations = [];
    this.grants = [];
    this.statePaths = new Map();
    this.images = new Map();
    this.touched = new Map();
    this.held = [];
    this.memberTargets = memberTargets(input.options.targets);
    this.forceReplace = new Set(input.options.replace ?? []);
    this.lc = input.pack.lifecycle;
    this.policy = input.policy ?? defaultPolicy;
    this.resizeAt = resizeState(this.lc);
    this.summed = new Map();
    for (const u of input.unchanged ?? []) {
      let f = this.summed.get(u.fleet);
      if (!f) this.summed.set(u.fleet, (f = { count: 0, states: new Map(), dataCenters: new Map() }));
      f.count += u.vms;
      f.states.set(u.state, (f.states.get(u.state) ?? 0) + u.vms);
      f.dataCenters.set(u.dataCenter, (f.dataCenters.get(u.dataCenter) ?? 0) + u.vms);
    }
    // Summed unchanged members use quota and capacity like the other fleets' sums do.
    const usage = input.unchanged?.length ? [...(input.usage ?? []), ...input.unchanged.map((u) => summedUsage(u, input))] : input.usage;
    this.ctx = {
      stack: input.stack,
      lifecycle: this.lc,
      images: input.pack.images,
      fleets: input.fleets,
      record: input.record,
      allowDestroy: new Set(input.options.allowDestroy),
      ...(input.owners ? { owners: input.owners } : {}),
      ...(usage ? { usage } : {}),
      ...(input.protectedFleets ? { protectedFleets: new Set(input.protectedFleets) } : {}),
    };
    this.capacity =
      this.policy.capacityEnforcement(input.pack) === 'disabled' ? null : this.policy.capacityLeft(input.stack, input.record, usage ?? []);
  }

  /**
   * A fleet outside `scope` keeps its record row as it is (the plan neither
   * lists nor writes its owner change), so quotas count its members under the
   * owner that row holds, as the authority does, not the one its spec names
   * now. Fleets in scope keep their spec's owner: apply writes it first.
   */
  settleOwners(scope: readonly string[]): void {
    const owners = this.input.owners;
    if (!owners) return;
    const inScope = new Set(scope);
    const moved = (f: LoadedFleet) => !inScope.has(f.name) && Object.hasOwn(owners, f.name) && owners[f.name] !== f.owner;
    if (!this.input.fleets.some(moved)) return;
    this.ctx = { ...this.ctx, fleets: this.input.fleets.map((f) => (moved(f) ? { ...f, owner: owners[f.name] } : f)) };
  }

  /** How many members of `fleet` are summed as unchanged (PlanInput.unchanged). */
  unchangedCount(fleet: string): number {
    return this.summed.get(fleet)?.count ?? 0;
  }

  /** How many of them are in `state`. */
  unchangedIn(fleet: string, state: string): number {
    return this.summed.get(fleet)?.states.get(state) ?? 0;
  }

  violate(policy: string, address: string, message: string, hint: string, level: Violation['level'] = 'mandatory'): void {
    this.violations.push({ policy, level, address, message, hint });
  }

  /** A member whose change was vetoed stays as it is (see `held`). */
  hold(row: PlanVmRow, spec: LoadedFleet): void {
    this.held.push({
      ...this.base(spec, row.index, row.dataCenter),
      name: row.name,
      action: 'noop',
      from: row.state,
      to: row.state,
      path: this.statePath(row.state),
      steps: [],
      reason: 'left as it is: its change is vetoed',
      vmId: row.id,
    });
  }

  /** `[state]`, one frozen array per state (noops share them). */
  statePath(state: string): string[] {
    let p = this.statePaths.get(state);
    if (!p) this.statePaths.set(state, (p = Object.freeze([state]) as string[]));
    return p;
  }

  /** The image of a member, one frozen object per (logical image, data center). */
  image(logical: string, dataCenter: string): Change['image'] {
    const key = `${logical}\u0000${dataCenter}`;
    let img = this.images.get(key);
    if (!img) this.images.set(key, (img = Object.freeze({ logical, real: this.input.pack.images[logical]?.[dataCenter] ?? null })));
    return img;
  }

  path(from: string, to: string): string[] | undefined {
    return this.lc.path(from, to);
  }

  steps(path: string[], member: Step['member']): Step[] {
    return stepsAlong(this.lc, path, member);
  }

  /** The fields of a change every action shares, from the spec (not the record). */
  base(spec: LoadedFleet, index: number, dataCenter: string) {
    return {
      address: formatVmAddress(spec.name, index),
      fleet: spec.name,
      index,
      name: memberName(this.input.stack.name, spec.name, index),
      dataCenter,
      image: this.image(spec.image, dataCenter),
      size: spec.size,
      specHash: spec.specHash,
      encryptedDisk: spec.encryptedDisk,
    };
  }

  take(dc: string, size: VmSize): void {
    const c = this.capacity?.get(dc);
    if (!c) return;
    c.vms -= 1;
    c.cpu -= size.cpu;
    c.memoryGiB -= size.memoryGiB;
  }

  release(dc: string, size: VmSize): void {
    const c = this.capacity?.get(dc);
    if (!c) return;
    c.vms += 1;
    c.cpu += size.cpu;
    c.memoryGiB += size.memoryGiB;
  }
}
