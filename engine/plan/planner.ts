// The planner's pure core: specs + record + pack in, plan document out. No
// I/O here (the policy-test runner and the benchmark call it directly);
// engine/plan/run.ts does the reading. See docs/planning.md for the rules.
import type { Lifecycle, LoadedPack } from '../policy/types.ts';
import type { PlanVmRow, UsageRow } from '../record/types.ts';
import type { LoadedFleet, LoadedStack } from '../spec/types.ts';
import { fits, fleetPlacement, placeMember, staticExclusion } from './placement.ts';
import { type CapacityLeft, type PlanContext, type PlanPolicy } from './policy-port.ts';
import { defaultPolicy } from './policy-default.ts';
import { byName, resolveScope } from './scope.ts';
import { ACTIONS, type Action, type Change, type Grant, type PlanDocument, type Step, type Violation, type VmSize } from './types.ts';
import { formatVmAddress, type ReplaceOrder } from '../model/index.ts';
import { classifyMember, deletePath, needsCloudVm, resizeState, resizeSteps, stepsAlong, type FieldDiff } from './member.ts';
import { assignWaves } from './waves.ts';
import { memberTargets } from './scope.ts';

export type PlanOptions = PlanDocument['options'];

export interface PlanInput {
  stack: LoadedStack;
  pack: LoadedPack;
  /** Every fleet of the specs (the core narrows them to the scope itself). */
  fleets: LoadedFleet[];
  /**
   * Live VMs of the stack: at least every VM of the fleets in scope. VMs of
   * other fleets, when present, are only counted (owner quota, data center
   * capacity), never changed.
   */
  record: PlanVmRow[];
  /**
   * What the live VMs of the fleets NOT in `record` use, summed per fleet and
   * data center (FleetRecord.usage): counted like their rows would be. A
   * narrowed plan passes rows for its scope and this for the rest.
   */
  usage?: UsageRow[];
  /** Record version of each fleet (missing means 0: not in the record yet). */
  fleetVersions: Record<string, number>;
  options: PlanOptions;
  /** Owner of each fleet the record knows (FleetRow.owner), so quotas count fleets no spec names any more. */
  owners?: Record<string, string>;
  now?: Date;
  id?: string;
  /** The policy functions; engine/policy's by default. */
  policy?: PlanPolicy;
}

/** The VM name of a fleet member: `<stack>-<fleet>-<index>` (the record's VmRow.name). The Pulumi Vm resource names its VM the same way. */
export function memberName(stack: string, fleet: string, index: number): string {
  return `${stack}-${fleet}-${index}`;
}

/** Key order of a change in the JSON document: the contract's order (engine/plan/types.ts). */
const CHANGE_KEYS: readonly (keyof Change)[] = [
  'address', 'fleet', 'index', 'name', 'dataCenter', 'action', 'from', 'to', 'path', 'oldPath', 'replaceOrder', 'wave',
  'steps', 'reason', 'image', 'size', 'diff', 'placement', 'vmId', 'specHash', 'encryptedDisk',
];

const NO_STEPS = Object.freeze([]) as unknown as Step[];

function ordered(c: Change): Change {
  const out: Record<string, unknown> = {};
  for (const k of CHANGE_KEYS) if (c[k] !== undefined) out[k] = c[k];
  return out as unknown as Change;
}

/** Sorts `list[start..]` in place when it is not in order already. */
function sortSlice<T>(list: T[], start: number, cmp: (a: T, b: T) => number): void {
  let sorted = true;
  for (let i = start + 1; i < list.length && sorted; i++) sorted = cmp(list[i - 1], list[i]) <= 0;
  if (sorted) return;
  const tail = list.slice(start).sort(cmp);
  for (let i = 0; i < tail.length; i++) list[start + i] = tail[i];
}

/** Builds the plan document. Deterministic for the same input except `id` and `createdAt`. */
export function computePlan(input: PlanInput): PlanDocument {
  return new Planner(input).run();
}

// Every field is set in the constructor, none by an initializer: the Pulumi
// Fleet provider (providers/pulumi/fleet.ts) runs the planner from a closure
// serialized by Pulumi, which rewrites a class into a function from its
// constructor's text and drops field initializers.
class Planner {
  private readonly input: PlanInput;
  private readonly lc: Lifecycle;
  private readonly policy: PlanPolicy;
  private readonly changes: Change[];
  private readonly violations: Violation[];
  private readonly grants: Grant[];
  private readonly ctx: PlanContext;
  private readonly resizeAt: string;
  private readonly statePaths: Map<string, string[]>;
  private readonly images: Map<string, Change['image']>;
  /** Record version of each VM a change acts on (not noops), for the basis. */
  private readonly touched: Map<string, number>;
  /** Capacity left per data center, less what this plan has placed; null when the capacity rule is disabled. */
  private readonly capacity: Map<string, CapacityLeft> | null;
  /** --target web/3: per fleet targeted only by member addresses, the indexes to plan. */
  private readonly memberTargets: Map<string, Set<number>>;
  /** --replace: addresses whose member is replaced even when it matches its spec. */
  private readonly forceReplace: Set<string>;

  constructor(input: PlanInput) {
    this.input = input;
    this.changes = [];
    this.violations = [];
    this.grants = [];
    this.statePaths = new Map();
    this.images = new Map();
    this.touched = new Map();
    this.memberTargets = memberTargets(input.options.targets);
    this.forceReplace = new Set(input.options.replace ?? []);
    this.lc = input.pack.lifecycle;
    this.policy = input.policy ?? defaultPolicy;
    this.resizeAt = resizeState(this.lc);
    this.ctx = {
      stack: input.stack,
      lifecycle: this.lc,
      images: input.pack.images,
      fleets: input.fleets,
      record: input.record,
      allowDestroy: new Set(input.options.allowDestroy),
      ...(input.owners ? { owners: input.owners } : {}),
      ...(input.usage ? { usage: input.usage } : {}),
    };
    this.capacity =
      this.policy.capacityEnforcement(input.pack) === 'disabled' ? null : this.policy.capacityLeft(input.stack, input.record, input.usage ?? []);
  }

  run(): PlanDocument {
    const { input } = this;
    const specs = new Map(input.fleets.map((f) => [f.name, f]));
    const rowsByFleet = new Map<string, PlanVmRow[]>();
    for (const row of input.record) {
      if (this.lc.isTerminal(row.state)) continue;
      let list = rowsByFleet.get(row.fleet);
      if (!list) rowsByFleet.set(row.fleet, (list = []));
      list.push(row);
    }
    const scope = resolveScope(specs.keys(), rowsByFleet.keys(), input.options.targets, input.options.excludes).fleets;
    const grantedSoFar: Record<string, number> = {};
    for (const name of scope) {
      const all = (rowsByFleet.get(name) ?? []).sort((a, b) => a.index - b.index);
      const spec = specs.get(name);
      const start = this.changes.length;
      // The old VM of an interrupted create-before-delete replace: its
      // replacement is the member now, so the old one only has to go.
      const rows = all.filter((r) => !r.deposed);
      for (const r of all) if (r.deposed) this.deleteMember(r, 'deposed: the old VM of a replace that did not finish', true);
      if (spec) this.planFleet(spec, rows, grantedSoFar);
      else for (const r of rows) this.deleteMember(r, `fleet ${name} is no longer in the specs`);
      // Scope is in name order, so only each fleet's own changes may need sorting (new members come last).
      if (this.changes.length - start > 1) sortSlice(this.changes, start, (a, b) => a.index - b.index);
      // --target web/3: only the named members of a fleet not also targeted whole.
      const only = this.memberTargets.get(name);
      if (only) {
        const kept = this.changes.slice(start).filter((c) => only.has(c.index));
        this.changes.length = start;
        this.changes.push(...kept);
      }
    }
    const waves = assignWaves({
      changes: this.changes,
      specs,
      pack: input.pack,
      lifecycle: this.lc,
      capacity: this.capacity,
      quotaRoom: (spec, extra) => {
        const q = this.policy.ownerQuota(input.pack, this.ctx, spec, spec.count + extra, grantedSoFar);
        return Math.max(0, q.granted - spec.count);
      },
    });
    this.violations.push(...waves.violations);
    // The basis holds the VMs the plan acts on, in change order. A noop
    // member needs no entry: every write to a member bumps its fleet's
    // version, which the basis holds for every fleet in scope.
    const basisVms: Record<string, number> = {};
    for (let i = 0; i < this.changes.length; i++) {
      const c = this.changes[i];
      if (c.action === 'noop') continue;
      this.changes[i] = ordered(c);
      if (c.vmId !== undefined) basisVms[c.vmId] = this.touched.get(c.vmId)!;
    }

    const basisFleets: Record<string, number> = {};
    for (const name of scope) basisFleets[name] = input.fleetVersions[name] ?? 0;
    const summary = Object.fromEntries(ACTIONS.map((a) => [a, 0])) as Record<Action, number>;
    for (const c of this.changes) summary[c.action] += 1;

    const plan: PlanDocument = {
      formatVersion: '1',
      // globalThis.crypto, not an import of node:crypto: the Pulumi Fleet provider (providers/pulumi/fleet.ts) runs
      // the planner from a serialized closure, which cannot capture a native module's functions.
      id: input.id ?? globalThis.crypto.randomUUID(),
      stack: input.stack.name,
      createdAt: (input.now ?? new Date()).toISOString(),
      policyPack: `${input.pack.name}@${input.pack.version}`,
      fleets: scope,
      options: {
        targets: [...input.options.targets].sort(byName),
        excludes: [...input.options.excludes].sort(byName),
        allowDestroy: [...input.options.allowDestroy].sort(byName),
        refresh: input.options.refresh,
        ...(input.options.replace?.length ? { replace: [...input.options.replace].sort(byName) } : {}),
      },
      basis: { vms: basisVms, fleets: basisFleets },
      changes: this.changes,
      policy: { violations: this.violations, grants: this.grants },
      ...(waves.rollouts.length ? { rollouts: waves.rollouts } : {}),
      summary,
      blocked: false,
    };
    this.violations.push(...this.policy.evaluateRules(plan, this.ctx, input.pack));
    this.violations.sort(
      (a, b) => byName(a.address, b.address) || byName(a.policy, b.policy) || byName(a.message, b.message),
    );
    this.grants.sort((a, b) => byName(a.fleet, b.fleet) || byName(a.policy, b.policy));
    plan.blocked = this.violations.some((v) => v.level === 'mandatory');
    return plan;
  }

  private planFleet(spec: LoadedFleet, rows: PlanVmRow[], grantedSoFar: Record<string, number>): void {
    const { lc } = this;
    if (!lc.states.includes(spec.state) || !lc.requestable.includes(spec.state)) {
      this.violate('lifecycle', spec.name, `desired state ${spec.state} is not one the pack lets a fleet ask for`, `use one of: ${lc.requestable.join(', ')}`);
      return;
    }
    const kept: PlanVmRow[] = [];
    for (const row of rows) {
      if (row.index >= spec.count) this.deleteMember(row, `count lowered to ${spec.count}`);
      else {
        kept.push(row);
        this.diffMember(row, spec);
      }
    }
    const present = new Set(kept.map((r) => r.index));
    const missing: number[] = [];
    for (let i = 0; i < spec.count; i++) if (!present.has(i)) missing.push(i);

    const quota = this.policy.ownerQuota(this.input.pack, this.ctx, spec, spec.count, grantedSoFar);
    this.violations.push(...quota.violations);
    if (quota.grant) this.grants.push(quota.grant);
    const wanted = missing.slice(0, Math.max(0, Math.min(spec.count, quota.granted) - kept.length));

    const created = this.placeNew(spec, kept, wanted);
    const total = kept.length + created.changes.length;
    if (missing.length > 0 && total < spec.minCount) {
      // The minCount veto: the fleet gets no new members at all; changes to
      // its existing members stand (they do not depend on the grant).
      // The grant's policy reports the veto itself; say it here only when none did.
      created.undo();
      if (!this.violations.some((v) => v.address === spec.name && v.level === 'mandatory')) {
        this.violate(
          'min-count',
          spec.name,
          `${total} of ${spec.count} members granted, below minCount ${spec.minCount}: no members are added`,
          'raise the quota or free capacity, or lower minCount',
        );
      }
      grantedSoFar[spec.name] = kept.length;
      return;
    }
    this.changes.push(...created.changes);
    grantedSoFar[spec.name] = total;
  }

  /** Places the wanted new members one by one; returns their changes and a way to give the capacity back. */
  private placeNew(spec: LoadedFleet, kept: PlanVmRow[], wanted: number[]): { changes: Change[]; undo: () => void } {
    const changes: Change[] = [];
    const taken: string[] = [];
    const undo = () => {
      for (const dc of taken) this.release(dc, spec.size);
    };
    if (wanted.length === 0) return { changes, undo };
    const fp = fleetPlacement(this.input.stack, this.input.pack, spec);
    if (fp.unknownNear !== undefined) {
      this.violate('placement', spec.name, `near names ${fp.unknownNear}, which is neither the site nor a data center; using the site ${fp.nearName}`, 'set placement.near to a data center, the site, or {lat, lon}', 'advisory');
    }
    if (fp.eligible.length === 0) {
      const why = fp.excluded.map((e) => `${e.dataCenter}: ${e.why}`).join('; ');
      this.violate('placement', spec.name, `no data center can hold members of ${spec.name} (${why})`, 'change hardware, image or placement.dataCenters');
      return { changes, undo };
    }
    const members = new Map<string, number>();
    for (const r of kept) members.set(r.dataCenter, (members.get(r.dataCenter) ?? 0) + 1);
    for (const index of wanted) {
      const { dataCenter, explanation } = placeMember(fp, this.capacity, members);
      if (dataCenter === undefined) break;
      members.set(dataCenter, (members.get(dataCenter) ?? 0) + 1);
      this.take(dataCenter, spec.size);
      taken.push(dataCenter);
      const path = this.path(this.lc.initial, spec.state);
      if (!path) {
        this.violate('lifecycle', formatVmAddress(spec.name, index), `no path from ${this.lc.initial} to ${spec.state} in the diagram`, 'fix the pack lifecycle');
        break;
      }
      changes.push({
        ...this.base(spec, index, dataCenter),
        action: 'create',
        from: this.lc.initial,
        to: spec.state,
        path,
        steps: this.steps(path, 'current'),
        reason: `count is ${spec.count}; ${formatVmAddress(spec.name, index)} does not exist`,
        placement: explanation,
      });
    }
    if (changes.length < wanted.length) {
      const cap = this.policy.capacityGrantFor(this.input.pack, spec, wanted.length, changes.length, {
        existing: kept.length,
        dataCenters: fp.eligible.map((d) => d.name),
      });
      this.violations.push(...cap.violations);
      if (cap.grant) this.grants.push(cap.grant);
    }
    return { changes, undo };
  }

  private diffMember(row: PlanVmRow, spec: LoadedFleet): void {
    const classified = classifyMember(row, spec);
    const { diff } = classified;
    // --replace ADDRESS: a new VM whatever differs (a replace covers a resize and a state change too).
    const forced = this.forceReplace.has(row.address);
    const action = forced ? 'replace' : classified.action;
    if (action === 'noop') {
      // The common case on a big stack: built in the document's key order, with
      // shared frozen parts, because it runs once per unchanged member.
      this.changes.push({
        address: row.address,
        fleet: spec.name,
        index: row.index,
        name: row.name,
        dataCenter: row.dataCenter,
        action: 'noop',
        from: row.state,
        to: row.state,
        path: this.statePath(row.state),
        steps: NO_STEPS,
        reason: 'matches the spec',
        image: this.image(spec.image, row.dataCenter),
        size: spec.size,
        vmId: row.id,
        specHash: spec.specHash,
        encryptedDisk: spec.encryptedDisk,
      });
      return;
    }
    this.touched.set(row.id, row.version);
    if (action === 'replace') return this.replaceMember(row, spec, diff, forced);
    if (action === 'update') return this.updateMember(row, spec, diff);
    this.transitionMember(row, spec);
  }

  /** `[state]`, one frozen array per state (noops share them). */
  private statePath(state: string): string[] {
    let p = this.statePaths.get(state);
    if (!p) this.statePaths.set(state, (p = Object.freeze([state]) as string[]));
    return p;
  }

  /** The image of a member, one frozen object per (logical image, data center). */
  private image(logical: string, dataCenter: string): Change['image'] {
    const key = `${logical}\u0000${dataCenter}`;
    let img = this.images.get(key);
    if (!img) this.images.set(key, (img = Object.freeze({ logical, real: this.input.pack.images[logical]?.[dataCenter] ?? null })));
    return img;
  }

  /**
   * A member that only has to reach another state. Out of a failure state
   * (the way out of every stuck VM, docs/recovery.md) the path leaves along
   * the pack's recovery edges: a retry when the cloud still holds the VM (or
   * the path creates it again, CreateFailed -> BeingCreated); when the record
   * knows the cloud has no VM of it (cloudId null: refresh or apply found it
   * missing), a retry would act on nothing, so the VM is deleted along the
   * recovery edges and created again at the same address.
   */
  private transitionMember(row: PlanVmRow, spec: LoadedFleet): void {
    const path = this.memberPath(row, spec.state);
    if (!path) return;
    const { lc } = this;
    const steps = this.steps(path, 'current');
    const failed = lc.failure.includes(row.state);
    if (failed && row.cloudId === null && needsCloudVm(steps)) return this.recreateMember(row, spec);
    const reason = failed
      ? `recover: retry from ${row.state} to ${spec.state} along the pack's recovery edges`
      : lc.requestable.includes(row.state)
        ? `desired state is ${spec.state}`
        : `continue from ${row.state}, left by an interrupted apply`;
    this.changes.push({
      ...this.base(spec, row.index, row.dataCenter),
      action: 'transition',
      from: row.state,
      to: spec.state,
      path,
      steps,
      reason,
      vmId: row.id,
    });
  }

  /**
   * A member stuck in a failure state with no VM in the cloud: a replace
   * whose old VM goes first (there is nothing to keep serving), along the
   * recovery edges to the terminal state, and a new VM at the same address
   * and data center.
   */
  private recreateMember(row: PlanVmRow, spec: LoadedFleet): void {
    const oldEnd = deletePath(this.lc, row.state);
    const path = this.path(this.lc.initial, spec.state);
    if (!oldEnd || !path) {
      this.violate('lifecycle', row.address, `no path to delete ${row.address} from ${row.state} and create it again`, 'fix the pack lifecycle');
      return;
    }
    this.changes.push({
      ...this.base(spec, row.index, row.dataCenter),
      action: 'replace',
      from: row.state,
      to: spec.state,
      path,
      oldPath: oldEnd,
      replaceOrder: 'delete-before-create',
      steps: [...this.steps(oldEnd, 'old'), ...this.steps(path, 'new')],
      reason: `recover: ${row.state} and ${row.dataCenter} has no VM of it; delete it along the recovery edges and create it again`,
      placement: {
        strategy: 'existing',
        candidates: [row.dataCenter],
        excluded: [],
        summary: `${row.dataCenter}: the new VM stays where the member lives`,
      },
      vmId: row.id,
    });
  }

  private updateMember(row: PlanVmRow, spec: LoadedFleet, diff: FieldDiff): void {
    const r = resizeSteps(this.lc, row.state, spec.state);
    if ('missing' in r) {
      this.violate('lifecycle', row.address, `no path from ${r.missing.from} to ${r.missing.to} in the diagram`, 'fix the pack lifecycle, or move the VM by hand');
      return;
    }
    const { path, steps } = r;
    this.changes.push({
      ...this.base(spec, row.index, row.dataCenter),
      action: 'update',
      from: row.state,
      to: spec.state,
      path,
      steps,
      reason: `size changes; resized at ${this.resizeAt}`,
      diff,
      vmId: row.id,
    });
  }

  private replaceMember(row: PlanVmRow, spec: LoadedFleet, diff: FieldDiff, forced = false): void {
    const dc = this.input.stack.dataCenters.find((d) => d.name === row.dataCenter);
    const why = dc ? staticExclusion(dc, spec, this.input.pack) : `data center ${row.dataCenter} is not in the stack`;
    if (why) {
      this.violate('placement', row.address, `cannot replace ${row.address} in ${row.dataCenter}: ${why}; members never move`, `lower count below ${row.index + 1} to delete it, then raise it to create it elsewhere`);
      return;
    }
    const oldEnd = deletePath(this.lc, row.state);
    const path = this.path(this.lc.initial, spec.state);
    if (!oldEnd || !path) {
      this.violate('lifecycle', row.address, `no path to replace ${row.address} from ${row.state}`, 'fix the pack lifecycle');
      return;
    }
    // Create-then-delete keeps the member serving, but needs room for a second VM for a while.
    const replaceOrder: ReplaceOrder = this.capacity === null || fits(this.capacity.get(row.dataCenter), spec.size) ? 'create-before-delete' : 'delete-before-create';
    const newSteps = this.steps(path, 'new');
    const oldSteps = this.steps(oldEnd, 'old');
    const what = Object.keys(diff)
      .map((k) => (k === 'hardware' ? 'hardware traits' : k))
      .join(' and ');
    const because = forced ? 'replaced by --replace' : `new VM for the ${what} change`;
    this.changes.push({
      ...this.base(spec, row.index, row.dataCenter),
      action: 'replace',
      from: row.state,
      to: spec.state,
      path,
      oldPath: oldEnd,
      replaceOrder,
      steps: replaceOrder === 'create-before-delete' ? [...newSteps, ...oldSteps] : [...oldSteps, ...newSteps],
      reason: `${because}${replaceOrder === 'create-before-delete' ? '' : '; the old one goes first: no capacity for both'}`,
      diff,
      placement: {
        strategy: 'existing',
        candidates: [row.dataCenter],
        excluded: [],
        summary: `${row.dataCenter}: the replacement stays where the member lives`,
      },
      vmId: row.id,
    });
  }

  private deleteMember(row: PlanVmRow, reason: string, deposed = false): void {
    this.touched.set(row.id, row.version);
    const path = deletePath(this.lc, row.state);
    if (!path) {
      this.violate('lifecycle', row.address, `no path from ${row.state} to a terminal state`, 'fix the pack lifecycle');
      return;
    }
    this.changes.push({
      address: row.address,
      fleet: row.fleet,
      index: row.index,
      name: row.name,
      dataCenter: row.dataCenter,
      action: 'delete',
      from: row.state,
      to: path[path.length - 1],
      path,
      steps: this.steps(path, 'current'),
      reason,
      image: { logical: row.image, real: row.realImage },
      size: row.size,
      vmId: row.id,
      specHash: row.specHash,
      encryptedDisk: row.encryptedDisk,
      ...(deposed ? { deposed: true } : {}),
    });
  }

  private memberPath(row: PlanVmRow, to: string, from = row.state): string[] | undefined {
    const p = this.path(from, to);
    if (!p) this.violate('lifecycle', row.address, `no path from ${from} to ${to} in the diagram`, 'fix the pack lifecycle, or move the VM by hand');
    return p;
  }

  private path(from: string, to: string): string[] | undefined {
    return this.lc.path(from, to);
  }

  private steps(path: string[], member: Step['member']): Step[] {
    return stepsAlong(this.lc, path, member);
  }

  private base(spec: LoadedFleet, index: number, dataCenter: string) {
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

  private take(dc: string, size: VmSize): void {
    const c = this.capacity?.get(dc);
    if (!c) return;
    c.vms -= 1;
    c.cpu -= size.cpu;
    c.memoryGiB -= size.memoryGiB;
  }

  private release(dc: string, size: VmSize): void {
    const c = this.capacity?.get(dc);
    if (!c) return;
    c.vms += 1;
    c.cpu += size.cpu;
    c.memoryGiB += size.memoryGiB;
  }

  private violate(policy: string, address: string, message: string, hint: string, level: Violation['level'] = 'mandatory'): void {
    this.violations.push({ policy, level, address, message, hint });
  }
}
