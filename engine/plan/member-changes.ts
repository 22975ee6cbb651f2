// The change of each existing member: compared with its spec (./member.ts
// decides the action), then the path, steps and reason of a noop,
// transition, update, replace or delete. Pushed onto the run's changes in the
// order the planner calls these; see docs/planning.md for the rules.
import { commitsToDeletion } from '../policy/index.ts';
import type { PlanVmRow } from '../record/types.ts';
import type { LoadedFleet } from '../spec/types.ts';
import type { ReplaceOrder } from '../model/index.ts';
import { classifyMember, deletePath, needsCloudVm, resizeSteps, type FieldDiff } from './member.ts';
import { fits, staticExclusion } from './placement.ts';
import type { PlanState } from './plan-state.ts';
import type { Step } from './types.ts';

const NO_STEPS = Object.freeze([]) as unknown as Step[];

/** The change of a member the record holds and its spec still wants (index below count). */
export function diffMember(s: PlanState, row: PlanVmRow, spec: LoadedFleet): void {
  const classified = classifyMember(row, spec);
  const { diff } = classified;
  // --replace ADDRESS: a new VM whatever differs (a replace covers a resize and a state change too).
  const forced = s.forceReplace.has(row.address);
  const action = forced ? 'replace' : classified.action;
  if (action === 'noop') {
    // The common case on a big stack: built in the document's key order, with
    // shared frozen parts, because it runs once per unchanged member. The
    // document summarises it (assemble.ts); rules and waves see it.
    s.changes.push({
      address: row.address,
      fleet: spec.name,
      index: row.index,
      name: row.name,
      dataCenter: row.dataCenter,
      action: 'noop',
      from: row.state,
      to: row.state,
      path: s.statePath(row.state),
      steps: NO_STEPS,
      reason: 'matches the spec',
      image: s.image(spec.image, row.dataCenter),
      size: spec.size,
      vmId: row.id,
      specHash: spec.specHash,
      encryptedDisk: spec.encryptedDisk,
    });
    return;
  }
  s.touched.set(row.id, row.version);
  if (action === 'replace') return replaceMember(s, row, spec, diff, forced);
  // A VM whose boot the authority denied is not booted again, whatever else its spec changes (a resize would boot it
  // after): it goes along the recovery edges, and a new VM takes its place.
  if (deniedAndPresent(s, row)) return recreateMember(s, row, spec, action === 'update' ? diff : undefined);
  // A VM an earlier apply committed to deletion and did not finish deleting, which the spec still wants: nothing
  // leads back from there, so its deletion is finished and a new VM takes its place.
  if (committedToDeletion(s, row)) return recreateMember(s, row, spec, action === 'update' ? diff : undefined);
  if (action === 'update') return updateMember(s, row, spec, diff);
  transitionMember(s, row, spec);
}

/**
 * A member stuck in a failure state whose latest boot was denied
 * (PlanVmRow.bootDenied: its own agent, not someone else's boot check), its
 * VM still in the cloud (a cloud id): the driver
 * could not delete it (its step's credentials expired during the wait, or
 * the cloud refused or failed the delete), so it stays, powered off by its
 * agent. Booting it again along the recovery edges would give the VM the
 * authority refused (the same disk) a fresh boot token, so a denial would
 * not stick: it is deleted and created again instead (recreateMember).
 */
function deniedAndPresent(s: PlanState, row: PlanVmRow): boolean {
  return row.bootDenied === true && row.cloudId != null && s.lc.failure.includes(row.state);
}

/**
 * A member whose VM an earlier apply committed to deletion (BeingDeleted in
 * the default pack: no state a spec may ask for is reachable from it) and did
 * not finish deleting: its `deleteVm` failed or did not answer (the old VM of
 * a replace, e.g. one whose boot the authority denied and whose data center
 * still refused the delete). Its spec wants it again (its count, or the
 * replace's new VM): walking on to the spec's state has no path (the plan
 * said `no path from BeingDeleted to Running` and every apply was blocked),
 * so it is deleted along the rest of its way (`BeingDeleted » Deleted`) and
 * created again (recreateMember). Not a failure state (those have their
 * recovery edges) nor a terminal one (retired).
 */
function committedToDeletion(s: PlanState, row: PlanVmRow): boolean {
  const { lc } = s;
  return !lc.isTerminal(row.state) && !lc.failure.includes(row.state) && commitsToDeletion(lc, row.state);
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
function transitionMember(s: PlanState, row: PlanVmRow, spec: LoadedFleet): void {
  const path = s.path(row.state, spec.state);
  if (!path) {
    s.violate('lifecycle', row.address, `no path from ${row.state} to ${spec.state} in the diagram`, 'fix the pack lifecycle, or move the VM by hand');
    return s.hold(row, spec);
  }
  const { lc } = s;
  const steps = s.steps(path, 'current');
  const failed = lc.failure.includes(row.state);
  if (failed && row.cloudId === null && needsCloudVm(steps)) return recreateMember(s, row, spec);
  const reason = failed
    ? `recover: retry from ${row.state} to ${spec.state} along the pack's recovery edges`
    : lc.requestable.includes(row.state)
      ? `desired state is ${spec.state}`
      : `continue from ${row.state}, where an earlier apply stopped`;
  s.changes.push({
    ...s.base(spec, row.index, row.dataCenter),
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
 * A member stuck in a failure state with no VM in the cloud, or with the VM
 * whose boot the authority denied (deniedAndPresent), or whose VM an earlier
 * apply did not finish deleting (committedToDeletion): a replace whose old VM
 * goes first (there is nothing to keep serving), along the recovery edges to
 * the terminal state (its deleteVm deletes the cloud VM, or finds nothing to
 * delete), and a new VM at the same address and data center. `diff`: what
 * else the spec changes (a resize of the denied VM), shown with it.
 */
function recreateMember(s: PlanState, row: PlanVmRow, spec: LoadedFleet, diff?: FieldDiff): void {
  const oldEnd = deletePath(s.lc, row.state);
  const path = s.path(s.lc.initial, spec.state);
  if (!oldEnd || !path) {
    s.violate('lifecycle', row.address, `no path to delete ${row.address} from ${row.state} and create it again`, 'fix the pack lifecycle');
    return s.hold(row, spec);
  }
  const denied = deniedAndPresent(s, row);
  if (diff) takeGrowth(s, row, spec);
  s.changes.push({
    ...s.base(spec, row.index, row.dataCenter),
    action: 'replace',
    from: row.state,
    to: spec.state,
    path,
    oldPath: oldEnd,
    replaceOrder: 'delete-before-create',
    steps: [...s.steps(oldEnd, 'old'), ...s.steps(path, 'new')],
    reason: denied
      ? `recover: ${row.state} after a denied boot; the authority refused VM ${row.cloudId}, which ${row.dataCenter} still holds (powered off), so it is not booted again: delete it along the recovery edges and create it again`
      : s.lc.failure.includes(row.state)
        ? `recover: ${row.state} and ${row.dataCenter} has no VM of it; delete it along the recovery edges and create it again`
        : `recover: ${row.state}, where an earlier apply did not finish deleting ${row.cloudId ? `VM ${row.cloudId}` : 'it'} (its deleteVm failed or did not answer), and nothing leads from there to ${spec.state}: finish deleting it and create it again`,
    ...(diff ? { diff } : {}),
    placement: {
      strategy: 'existing',
      candidates: [row.dataCenter],
      excluded: [],
      summary: `${row.dataCenter}: the new VM stays where the member lives`,
    },
    vmId: row.id,
  });
}

/**
 * Takes what a member grows by (its new size less its old, per resource) from
 * its data center's capacity left: once its change is done it holds that much
 * more. When the data center has not that much left, says so (a
 * datacenter-capacity violation at the rule's level): the authority would
 * refuse the bigger VM, and a replace would have deleted the old one first.
 */
function takeGrowth(s: PlanState, row: PlanVmRow, spec: LoadedFleet): void {
  const left = s.capacity?.get(row.dataCenter);
  if (!left) return;
  const cpu = Math.max(0, spec.size.cpu - row.size.cpu);
  const memoryGiB = Math.max(0, spec.size.memoryGiB - row.size.memoryGiB);
  if (cpu === 0 && memoryGiB === 0) return;
  const short: string[] = [];
  if (cpu > left.cpu) short.push(`${left.cpu} vCPU${left.cpu === 1 ? '' : 's'}`);
  if (memoryGiB > left.memoryGiB) short.push(`${left.memoryGiB} GiB of memory`);
  if (short.length === 0) {
    left.cpu -= cpu;
    left.memoryGiB -= memoryGiB;
    return;
  }
  const by = [cpu ? `${cpu} vCPU${cpu === 1 ? '' : 's'}` : '', memoryGiB ? `${memoryGiB} GiB of memory` : ''].filter(Boolean).join(' and ');
  const level = s.policy.capacityEnforcement(s.input.pack) === 'advisory' ? 'advisory' : 'mandatory';
  s.violate(
    'datacenter-capacity',
    row.address,
    `${row.address} grows by ${by} in ${row.dataCenter}, which has ${short.join(' and ')} left for it.`,
    `Free capacity in ${row.dataCenter} or raise its capacity in the stack, or keep the size of fleet ${spec.name}.`,
    level,
  );
}

function updateMember(s: PlanState, row: PlanVmRow, spec: LoadedFleet, diff: FieldDiff): void {
  const r = resizeSteps(s.lc, row.state, spec.state);
  if ('missing' in r) {
    s.violate('lifecycle', row.address, `no path from ${r.missing.from} to ${r.missing.to} in the diagram`, 'fix the pack lifecycle, or move the VM by hand');
    return s.hold(row, spec);
  }
  takeGrowth(s, row, spec);
  const { path, steps } = r;
  s.changes.push({
    ...s.base(spec, row.index, row.dataCenter),
    action: 'update',
    from: row.state,
    to: spec.state,
    path,
    steps,
    reason: `size changes; resized at ${s.resizeAt}`,
    diff,
    vmId: row.id,
  });
}

function replaceMember(s: PlanState, row: PlanVmRow, spec: LoadedFleet, diff: FieldDiff, forced = false): void {
  const { stack, pack } = s.input;
  const dc = stack.dataCenters.find((d) => d.name === row.dataCenter);
  const why = dc ? staticExclusion(dc, spec, pack) : `data center ${row.dataCenter} is not in the stack`;
  if (why) {
    // Taking the member out means a count of at most its index, which minCount may forbid: the hint says so.
    const minCount = spec.minCount > row.index ? ` and spec.minCount (${spec.minCount} now)` : '';
    s.violate(
      'placement',
      row.address,
      `${row.address} cannot be replaced in ${row.dataCenter}: ${why}; members never move, so it stays there as it is.`,
      `Let fleet ${spec.name} use ${row.dataCenter} again, or lower spec.count (${spec.count} now)${minCount} to ${row.index} or less to delete ${row.address}, then raise it to create the member where the fleet may live.`,
    );
    return s.hold(row, spec);
  }
  const oldEnd = deletePath(s.lc, row.state);
  const path = s.path(s.lc.initial, spec.state);
  if (!oldEnd || !path) {
    s.violate('lifecycle', row.address, `no path to replace ${row.address} from ${row.state}`, 'fix the pack lifecycle');
    return s.hold(row, spec);
  }
  // Create-then-delete keeps the member serving, but needs room for a second VM for a while.
  const replaceOrder: ReplaceOrder = s.capacity === null || fits(s.capacity.get(row.dataCenter), spec.size) ? 'create-before-delete' : 'delete-before-create';
  takeGrowth(s, row, spec);
  const newSteps = s.steps(path, 'new');
  const oldSteps = s.steps(oldEnd, 'old');
  const what = Object.keys(diff)
    .map((k) => (k === 'hardware' ? 'hardware traits' : k))
    .join(' and ');
  const because = forced ? 'replaced by --replace' : `new VM for the ${what} change`;
  s.changes.push({
    ...s.base(spec, row.index, row.dataCenter),
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

/** A member that goes: past the count, its fleet gone from the specs, or the deposed old VM of an unfinished replace. */
export function deleteMember(s: PlanState, row: PlanVmRow, reason: string, deposed = false): void {
  s.touched.set(row.id, row.version);
  const path = deletePath(s.lc, row.state);
  if (!path) {
    s.violate('lifecycle', row.address, `no path from ${row.state} to a terminal state`, 'fix the pack lifecycle');
    return;
  }
  s.changes.push({
    address: row.address,
    fleet: row.fleet,
    index: row.index,
    name: row.name,
    dataCenter: row.dataCenter,
    action: 'delete',
    from: row.state,
    to: path[path.length - 1],
    path,
    steps: s.steps(path, 'current'),
    reason,
    image: { logical: row.image, real: row.realImage },
    size: row.size,
    vmId: row.id,
    specHash: row.specHash,
    encryptedDisk: row.encryptedDisk,
    ...(deposed ? { deposed: true } : {}),
  });
}
