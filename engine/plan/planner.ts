// The planner's pure core: specs + record + pack in, plan document out. No
// I/O here (the policy-test runner and the benchmark call it directly);
// engine/plan/run.ts does the reading. See docs/planning.md for the rules.
//
// This file drives a run, fleet by fleet; the parts live beside it:
//
// | file              | job                                                      |
// | ----------------- | -------------------------------------------------------- |
// | plan-state.ts     | what the parts share: changes, capacity left, caches     |
// | member-changes.ts | the change of each existing member                       |
// | creates.ts        | new members: their data center (placement.ts), creates   |
// | waves.ts          | rollout waves of disruptive changes                      |
// | assemble.ts       | the document: changes, unchanged summary, basis, summary |
import type { Diagnostic } from '../diags/index.ts';
import type { LoadedPack } from '../policy/types.ts';
import type { PlanVmRow, UnchangedRow, UsageRow } from '../record/types.ts';
import type { LoadedFleet, LoadedStack } from '../spec/types.ts';
import { assemble, summedUnchanged } from './assemble.ts';
import { placeNew } from './creates.ts';
import { deleteMember, diffMember } from './member-changes.ts';
import { staticExclusion } from './placement.ts';
import { PlanState } from './plan-state.ts';
import type { PlanPolicy } from './policy-port.ts';
import { byName, resolveScope } from './scope.ts';
import type { Change, PlanDocument } from './types.ts';
import { assignWaves } from './waves.ts';

export { memberName } from './plan-state.ts';

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
   * data center, or per owner and data center with `fleet` ''
   * (FleetRecord.usage): counted like their rows would be. A narrowed plan
   * passes rows for its scope and this for the rest.
   */
  usage?: UsageRow[];
  /**
   * Members of fleets in scope that match their spec, summed (FleetRecord.readPlan)
   * instead of passed in `record`: each is the noop its row would have made,
   * counted in the unchanged summary, waves, rules, quota and capacity. Only
   * for a fleet whose every index below its count has a live member (one
   * with members missing needs their indexes: pass all of its rows).
   */
  unchanged?: UnchangedRow[];
  /** Record version of each fleet (missing means 0: not in the record yet). */
  fleetVersions: Record<string, number>;
  options: PlanOptions;
  /**
   * Owner of each fleet the record knows (FleetRow.owner), so quotas count
   * fleets no spec names any more; of a fleet in fleetProtection, a spec
   * naming another owner is a fleet change of the plan (`fleetChanges`).
   */
  owners?: Record<string, string>;
  /** Fleets the record holds as protected (FleetRow.protected): the protect rule's word for a fleet whose spec is gone. */
  protectedFleets?: readonly string[];
  /**
   * The record's protection of each fleet in scope it has a row of, less
   * those a program manages (FleetRow.protected, managedBy): a spec whose
   * `protect` differs is a fleet change of the plan (`fleetChanges`). A
   * fleet in scope with no entry has no row yet, which reads as unprotected:
   * a new fleet with `protect: true` is listed too.
   * Absent: no fleet change is planned (the Pulumi providers' plans).
   */
  fleetProtection?: Readonly<Record<string, boolean>>;
  now?: Date;
  id?: string;
  /** The policy functions; engine/policy's by default. */
  policy?: PlanPolicy;
  /**
   * Where the run reports what is not a violation of the plan: a custom
   * rule stopped at the pack's deadline (policy.rule-timeout; its mandatory
   * violation is in the plan too).
   */
  diagnostics?: Diagnostic[];
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
  const s = new PlanState(input);
  const specs = new Map(input.fleets.map((f) => [f.name, f]));
  const rowsByFleet = new Map<string, PlanVmRow[]>();
  for (const row of input.record) {
    if (s.lc.isTerminal(row.state)) continue;
    let list = rowsByFleet.get(row.fleet);
    if (!list) rowsByFleet.set(row.fleet, (list = []));
    list.push(row);
  }
  const scope = resolveScope(specs.keys(), rowsByFleet.keys(), input.options.targets, input.options.excludes).fleets;
  s.settleOwners(scope);
  const grantedSoFar: Record<string, number> = {};
  const { changes } = s;
  /**
   * Members --target web/3 leaves out of the plan (their fleet's other existing members): the plan does not touch
   * them, so they serve on as they are, and the waves and the rules count them as they count unchanged members.
   */
  const untouched: Change[] = [];
  for (const name of scope) {
    const all = (rowsByFleet.get(name) ?? []).sort((a, b) => a.index - b.index);
    const spec = specs.get(name);
    const start = changes.length;
    // The old VM of an interrupted create-before-delete replace: its
    // replacement is the member now, so the old one only has to go.
    const rows = all.filter((r) => !r.deposed);
    for (const r of all) if (r.deposed) deleteMember(s, r, 'deposed: the old VM of a replace that did not finish', true);
    if (spec) planFleet(s, spec, rows, grantedSoFar);
    else for (const r of rows) deleteMember(s, r, `fleet ${name} is no longer in the specs`);
    // Scope is in name order, so only each fleet's own changes may need sorting (new members come last).
    if (changes.length - start > 1) sortSlice(changes, start, (a, b) => a.index - b.index);
    // --target web/3: only the named members of a fleet not also targeted whole.
    const only = s.memberTargets.get(name);
    if (only) {
      const kept = changes.slice(start).filter((c) => only.has(c.index));
      for (const c of changes.slice(start)) if (!only.has(c.index) && c.action !== 'create') untouched.push(c);
      changes.length = start;
      changes.push(...kept);
    }
  }
  // Members whose change a violation vetoed serve on as they are, like those --target leaves out.
  untouched.push(...s.held);
  const waves = assignWaves({
    changes,
    specs,
    pack: input.pack,
    lifecycle: s.lc,
    capacity: s.capacity,
    unchangedIn: (fleet, state) => s.unchangedIn(fleet, state) + untouched.filter((c) => c.fleet === fleet && c.from === state).length,
    granted: (fleet) => grantedSoFar[fleet],
    quotaRoom: (spec, extra, surging) => {
      // Other fleets' surge VMs live beside their members: they count as members of those fleets while they do.
      const granted = { ...grantedSoFar };
      for (const [fleet, n] of surging) if (Object.hasOwn(granted, fleet)) granted[fleet] += n;
      const q = s.policy.ownerQuota(input.pack, s.ctx, spec, spec.count + extra, granted);
      return Math.max(0, q.granted - spec.count);
    },
  });
  s.violations.push(...waves.violations);
  const plan = assemble(s, scope, changes, waves.rollouts);
  // Rules judge every member, noops included, as they did when the document
  // listed noops (a rule counting a fleet's Running members needs them):
  // they see the plan with all of its changes, and in `unchanged` only the
  // members summed rather than read (PlanInput.unchanged) and the members
  // --target left out (untouched), each member once.
  const everyMember: PlanDocument = { ...plan, changes, unchanged: summedUnchanged(s, scope, untouched) };
  s.violations.push(...s.policy.evaluateRules(everyMember, s.ctx, input.pack, input.diagnostics ? (d) => input.diagnostics!.push(d) : undefined));
  s.violations.sort((a, b) => byName(a.address, b.address) || byName(a.policy, b.policy) || byName(a.message, b.message));
  s.grants.sort((a, b) => byName(a.fleet, b.fleet) || byName(a.policy, b.policy));
  plan.blocked = s.violations.some((v) => v.level === 'mandatory');
  return plan;
}

/** The changes of one fleet whose spec exists: its existing members, then (within quota and capacity) its new ones. */
function planFleet(s: PlanState, spec: LoadedFleet, rows: PlanVmRow[], grantedSoFar: Record<string, number>): void {
  const { lc } = s;
  // This fleet's violations are those from here on (strandedMembers reads them, not every fleet's).
  const ownViolations = s.violations.length;
  if (!lc.states.includes(spec.state) || !lc.requestable.includes(spec.state)) {
    s.violate('lifecycle', spec.name, `desired state ${spec.state} is not one the pack lets a fleet ask for`, `use one of: ${lc.requestable.join(', ')}`);
    return;
  }
  const kept: PlanVmRow[] = [];
  for (const row of rows) {
    if (row.index >= spec.count) deleteMember(s, row, `count lowered to ${spec.count}`);
    else {
      kept.push(row);
      diffMember(s, row, spec);
    }
  }
  strandedMembers(s, spec, kept, ownViolations);
  // Members summed rather than read (PlanInput.unchanged) keep their indexes too.
  const summed = s.unchangedCount(spec.name);
  const present = new Set(kept.map((r) => r.index));
  const missing: number[] = [];
  if (summed === 0) {
    for (let i = 0; i < spec.count; i++) if (!present.has(i)) missing.push(i);
  } else if (kept.length + summed < spec.count) {
    throw new Error(`bug: fleet ${spec.name} has members summed as unchanged and members missing below its count ${spec.count}; such a fleet's rows must all be read`);
  }
  const existing = kept.length + summed;

  const quota = s.policy.ownerQuota(s.input.pack, s.ctx, spec, spec.count, grantedSoFar);
  s.violations.push(...quota.violations);
  if (quota.grant) s.grants.push(quota.grant);
  // A grant caps new members only; existing members that grow (a replace or resize to a bigger size) must fit
  // at their new size too: the authority checks each bigger VM, and a replace whose old VM went first would
  // lose its member.
  // A fleet re-owned (its spec names another owner than its record row: a fleet change of the plan) takes its
  // members to the new owner: once apply writes the row, they count against that owner's quota, in the plan and
  // at the authority alike (which counts a fleet's VMs under the owner its row holds). A grant only caps new
  // members, so members that do not fit are a veto of the plan, not left over the quota.
  const recordedOwner = s.input.owners?.[spec.name];
  if (quota.grant && quota.granted < existing && recordedOwner !== undefined && recordedOwner !== spec.owner) {
    const why = quota.grant.reason.slice(quota.grant.reason.indexOf(': ') + 2);
    s.violate(
      'owner-quota',
      spec.name,
      `Fleet ${spec.name} moves from ${recordedOwner} to ${spec.owner} with its ${existing} member${existing === 1 ? '' : 's'}, and only ${quota.granted} fit the ${why}: the record would hold ${spec.owner} over its quota.`,
      `Raise the quota of ${spec.owner} in the stack's policyPack.config, lower spec.count of ${spec.name}, or keep its owner ${recordedOwner}.`,
    );
  } else if (quota.grant && quota.granted < existing && kept.some((r) => r.size.cpu < spec.size.cpu || r.size.memoryGiB < spec.size.memoryGiB)) {
    s.violate(
      'owner-quota',
      spec.name,
      `The ${existing} members of fleet ${spec.name} grow to ${spec.size.cpu} vCPUs and ${spec.size.memoryGiB} GiB each, and only ${quota.granted} of that size fit the quota of ${spec.owner}: the authority would refuse the bigger VMs.`,
      `Raise the quota of ${spec.owner} in the stack's policyPack.config, lower spec.count of ${spec.name}, or keep its size.`,
    );
  }
  const wanted = missing.slice(0, Math.max(0, Math.min(spec.count, quota.granted) - existing));

  const created = placeNew(s, spec, kept, wanted);
  const total = existing + created.changes.length;
  if (missing.length > 0 && total < spec.minCount) {
    // The minCount veto: the fleet gets no new members at all; changes to
    // its existing members stand (they do not depend on the grant).
    // The grant's policy reports the veto itself; say it here only when none did.
    created.undo();
    if (!s.violations.some((v) => v.address === spec.name && v.level === 'mandatory')) {
      s.violate(
        'min-count',
        spec.name,
        `${total} of ${spec.count} members granted, below minCount ${spec.minCount}: no members are added`,
        'raise the quota or free capacity, or lower minCount',
      );
    }
    grantedSoFar[spec.name] = existing;
    return;
  }
  pushAll(s.changes, created.changes);
  grantedSoFar[spec.name] = total;
}

/**
 * Members never move (docs/planning.md): a member kept in a data center its
 * fleet may no longer use (the allow-list, its hardware traits or the image
 * catalog left it out) stays there. A replace there is vetoed already (a
 * mandatory placement violation at the member); the other members get one
 * advisory finding per data center, so that a plan with nothing to change
 * does not pass for a record that matches the specs. The finding counts
 * them without addresses: a plan that sums unchanged members rather than
 * reading them (PlanInput.unchanged) must say the same. `since`: the
 * index of this fleet's first violation in s.violations.
 */
function strandedMembers(s: PlanState, spec: LoadedFleet, kept: readonly PlanVmRow[], since: number): void {
  const why = new Map<string, string | undefined>();
  const excluded = (dcName: string): string | undefined => {
    if (!why.has(dcName)) {
      const dc = s.input.stack.dataCenters.find((d) => d.name === dcName);
      why.set(dcName, dc ? staticExclusion(dc, spec, s.input.pack) : undefined);
    }
    return why.get(dcName);
  };
  const vetoed = new Set<string>();
  for (let i = since; i < s.violations.length; i++) {
    const v = s.violations[i];
    if (v.policy === 'placement' && v.level === 'mandatory') vetoed.add(v.address);
  }
  const byDc = new Map<string, number>();
  for (const row of kept) if (!vetoed.has(row.address) && excluded(row.dataCenter)) byDc.set(row.dataCenter, (byDc.get(row.dataCenter) ?? 0) + 1);
  for (const [dc, n] of s.summed.get(spec.name)?.dataCenters ?? []) if (n > 0 && excluded(dc)) byDc.set(dc, (byDc.get(dc) ?? 0) + n);
  for (const [dc, n] of [...byDc].sort((a, b) => byName(a[0], b[0]))) {
    const one = n === 1;
    s.violate(
      'placement',
      spec.name,
      `${n} member${one ? '' : 's'} of fleet ${spec.name} live${one ? 's' : ''} in ${dc}, which the fleet may no longer use (${excluded(dc)}); members never move, so ${one ? 'it stays' : 'they stay'} there.`,
      `Let fleet ${spec.name} use ${dc} again, or lower spec.count to delete ${one ? 'it' : 'them'} (\`fleet state list\` shows which ${one ? 'one' : 'ones'}), then raise it to create ${one ? 'it' : 'them'} where the fleet may live.`,
      'advisory',
    );
  }
}

/** `list.push(...more)` without spreading 100,000 arguments onto the stack. */
function pushAll(list: Change[], more: readonly Change[]): void {
  for (const c of more) list.push(c);
}
