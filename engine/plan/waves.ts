// Rollout waves: how a fleet's disruptive changes are split so that no
// instant has more than `maxUnavailable` of its members out of Running, and
// at most `maxSurge` extra VMs exist (docs/rollouts.md).
//
// A change is *disruptive* when its member is in the serving state (the
// max-disruption rule's `state`, Running by default) and the change takes
// it out of that state: a replace, a resize (update), a transition. Each
// takes one place of a wave:
//
// | change                                   | takes      | the member                          |
// | ---------------------------------------- | ---------- | ----------------------------------- |
// | replace, create-before-delete            | a surge    | keeps serving until its new VM runs |
// | replace, delete-before-create            | unavailable| is out until its new VM runs        |
// | update (resize) or transition            | unavailable| is out until it is back (or for good) |
//
// A replace takes a surge place while the wave has one and its data center
// has room for a second VM of the member's size (room other fleets' surge
// VMs do not take: their waves run at the same time); otherwise it goes
// delete-before-create. Members of the fleet already out of the serving
// state, whose change brings them back (a failed wave's members, say), go
// in the first wave and hold its places: resuming a stopped rollout never
// puts more members out at once than the first run would have (their
// replaces go delete-before-create: a new VM first would be a VM beyond
// maxSurge, and they serve nothing meanwhile). One whose
// surge replace failed, its old VM still serving (deposed) beside the new
// one, is not out but has an extra VM: it holds a surge place instead.
//
// Members with no VM (lost, or added by a higher count) are out too, as
// Kubernetes counts a pod not ready yet (at least count - maxUnavailable
// serve at every point): their creates go in the first wave and hold its
// places the same way. Members out that the plan leaves out (a failed one
// --target leaves out of the plan) hold a place of every wave: they lower
// the rollout's maxUnavailable.
//
// Deletes (a lower count, a removed fleet), and creates of a fleet that
// does not roll out, are not waved: they run beside the first wave. A change whose goal is to leave the serving
// state for good (state: PoweredOff) is waved like the others, in waves of
// maxUnavailable; the max-disruption rule judges how many may leave at all.
//
// Pure: the planner calls assignWaves on its draft changes, before the
// basis and the rules.
import { resolveAmount, showAmount, type RolloutAmount } from '../model/index.ts';
import type { Enforcement } from '../model/index.ts';
import type { LoadedPack, Lifecycle } from '../policy/types.ts';
import type { LoadedFleet } from '../spec/types.ts';
import { fits } from './placement.ts';
import type { CapacityLeft } from './policy-port.ts';
import { stepsAlong } from './member.ts';
import type { Change, Rollout, RolloutWave, Violation, VmSize } from './types.ts';

/** What the max-disruption rule contributes: the serving state, its share, and how binding it is. */
export interface DisruptionRule {
  state: string;
  maxShare: number;
  enforcement: Enforcement;
}

export function disruptionRule(pack: LoadedPack): DisruptionRule {
  const r = pack.rules.get('max-disruption');
  return {
    state: (r?.config.state as string | undefined) ?? 'Running',
    maxShare: (r?.config.maxShare as number | undefined) ?? 0.5,
    enforcement: r?.enforcement ?? 'disabled',
  };
}

/** The resolved settings of one fleet's rollout, and in words how they were reached. */
export interface RolloutSettings {
  maxUnavailable: number;
  maxSurge: number;
  failureThreshold: number;
  /**
   * Both came out 0 with no maxSurge in the spec (a fleet smaller than 1 / maxShare): one member per wave, by a
   * surge VM where it can be (Kubernetes' default maxSurge, 25% rounded up, gives a small fleet 1).
   */
  oneAtATime: boolean;
  /**
   * Both came out 0 with a maxSurge in the spec (0, or `1%` of a few) and Kubernetes' rule (maxUnavailable 1,
   * maxSurge stays 0) was vetoed by a mandatory max-disruption that allows no member out: no wave can take a
   * member out, and the plan is blocked at plan time, saying so.
   */
  bothZeroVetoed: boolean;
  /** Where maxUnavailable came from: the spec's setting, or the max-disruption rule (its share, or lowered by it). */
  unavailableFrom: 'spec' | 'max-disruption';
  notes: string[];
}

/**
 * A fleet's rollout settings as counts: the spec's, or the max-disruption
 * rule's share of `count` (all members when the rule is disabled); a
 * mandatory rule lowers maxUnavailable to what it allows of the `serving`
 * members. Both zero with no maxSurge in the spec (a small fleet): one
 * member per wave, replaced by a surge VM where its data center has room,
 * else (advisory rule only) taken out of service, as Kubernetes' default
 * maxSurge (25%, rounded up) gives a small fleet 1. Both zero with a
 * maxSurge in the spec (0, `1%` of a few): Kubernetes' rule, maxUnavailable
 * 1 and maxSurge stays 0 (the spec said no extra VM: often an owner quota),
 * so one member at a time is taken out; unless a mandatory max-disruption
 * allows none out, which vetoes it and leaves both 0 (`bothZeroVetoed`): the
 * waves then block the plan.
 * Undefined when neither the spec nor the rule asks for a rollout (the rule
 * disabled, no spec.rollout): the change is made at once, as before rollouts.
 */
export function rolloutSettings(spec: LoadedFleet, rule: DisruptionRule, serving: number, waved: number, leavingForGood = 0, members = spec.count): RolloutSettings | undefined {
  const notes: string[] = [];
  // The fleet's size as granted: addresses an owner quota or capacity left out are not members.
  const n = members;
  const r = spec.rollout;
  if (rule.enforcement === 'disabled' && r.maxUnavailable === undefined && r.maxSurge === undefined && r.failureThreshold === undefined) return undefined;
  let maxUnavailable: number;
  let unavailableFrom: RolloutSettings['unavailableFrom'] = 'max-disruption';
  if (r.maxUnavailable !== undefined) {
    unavailableFrom = 'spec';
    maxUnavailable = resolveAmount(r.maxUnavailable, n, 'down');
    notes.push(`maxUnavailable ${showAmount(r.maxUnavailable)}${typeof r.maxUnavailable === 'string' ? ` of ${n}` : ''} from the spec`);
  } else if (rule.enforcement === 'disabled') {
    maxUnavailable = n;
    notes.push('maxUnavailable: every member (max-disruption is disabled)');
  } else {
    maxUnavailable = Math.floor(rule.maxShare * n + 1e-9);
    notes.push(`maxUnavailable ${maxUnavailable} of ${n} from max-disruption maxShare ${rule.maxShare}`);
    // The rule counts the members a lower count deletes beside the widest wave: its own default leaves them
    // their places (when they fit its share), or an advisory rule would flag the waves its default sized.
    // A mandatory rule caps every setting below, with the same arithmetic. A fleet leaving the serving state
    // for good (state: PoweredOff) is judged as a whole, which no wave width changes.
    const share = Math.floor(rule.maxShare * serving + 1e-9);
    if (rule.enforcement === 'advisory' && spec.state === rule.state && leavingForGood > 0 && leavingForGood <= share && maxUnavailable > share - leavingForGood) {
      maxUnavailable = share - leavingForGood;
      notes.push(`lowered to ${maxUnavailable}: ${leavingForGood} deleted beside its waves (maxShare ${rule.maxShare} of ${serving} ${rule.state})`);
    }
  }
  /** What a mandatory rule allows out at once (Infinity: no mandatory rule). */
  let allowed = Infinity;
  if (rule.enforcement === 'mandatory') {
    // The rule counts the members deleted beside the widest wave. When they alone are more than it allows, it
    // blocks the plan itself: the waves keep its share rather than add a second finding.
    const share = Math.floor(rule.maxShare * serving + 1e-9);
    allowed = leavingForGood <= share ? share - leavingForGood : share;
    if (maxUnavailable > allowed) {
      maxUnavailable = allowed;
      unavailableFrom = 'max-disruption';
      notes.push(`lowered to ${allowed} by mandatory max-disruption (maxShare ${rule.maxShare} of ${serving} ${rule.state}${leavingForGood && allowed < share ? `, ${leavingForGood} deleted` : ''})`);
    }
  }
  let maxSurge = 0;
  if (r.maxSurge !== undefined) {
    maxSurge = resolveAmount(r.maxSurge, n, 'up');
    notes.push(`maxSurge ${showAmount(r.maxSurge)}${typeof r.maxSurge === 'string' ? ` of ${n}` : ''} from the spec`);
  }
  let oneAtATime = false;
  let bothZeroVetoed = false;
  if (maxUnavailable === 0 && maxSurge === 0 && r.maxSurge === undefined) {
    // No maxSurge in the spec: Kubernetes' default (25%, rounded up) would give a small fleet 1, so a replace keeps
    // its member serving by a new VM first (a one-VM fleet's image change has no downtime), one member per wave.
    oneAtATime = true;
    maxSurge = 1;
    if (rule.enforcement === 'mandatory') {
      unavailableFrom = 'max-disruption';
      notes.push(`no member may leave ${rule.state}: replacements are created first, one at a time`);
    } else {
      maxUnavailable = 1;
      notes.push('one member at a time, replaced by a surge VM where there is room');
    }
  } else if (maxUnavailable === 0 && maxSurge === 0) {
    // The spec's maxSurge resolves to 0: Kubernetes' Deployment rule (ResolveFenceposts), maxUnavailable 1 and
    // maxSurge stays 0. A surge VM here would be a VM the user did not allow (maxSurge 0 is often an owner quota's).
    if (allowed >= 1) {
      maxUnavailable = 1;
      notes.push('maxUnavailable and maxSurge both resolve to 0: maxUnavailable 1, as Kubernetes does (maxSurge stays 0, no extra VM)');
    } else {
      bothZeroVetoed = true;
      unavailableFrom = 'max-disruption';
      notes.push(`maxUnavailable and maxSurge both resolve to 0: the maxUnavailable 1 Kubernetes would use is vetoed by mandatory max-disruption (maxShare ${rule.maxShare} of ${serving} ${rule.state} allows none out)`);
    }
  }
  const ft: RolloutAmount = r.failureThreshold ?? 1;
  const failureThreshold = Math.max(1, resolveAmount(ft, waved, 'up'));
  const ftFrom =
    r.failureThreshold === undefined
      ? ' (default)'
      : typeof r.failureThreshold === 'string'
        ? ` from the spec's ${showAmount(r.failureThreshold)} of ${waved} member${waved === 1 ? '' : 's'} changed`
        : ' from the spec';
  notes.push(`failureThreshold ${failureThreshold}${ftFrom}`);
  return { maxUnavailable, maxSurge, failureThreshold, oneAtATime, bothZeroVetoed, unavailableFrom, notes };
}

/** How many more VMs of `size` fit in what is left of a data center (Infinity with no limit). */
function room(left: CapacityLeft | undefined, size: VmSize): number {
  if (!left) return Infinity;
  if (!fits(left, size)) return 0;
  return Math.min(left.vms, Math.floor(left.cpu / size.cpu), Math.floor(left.memoryGiB / size.memoryGiB));
}

export interface WaveInput {
  /** The draft changes of the whole plan, in plan order; waved ones are rewritten in place. */
  changes: Change[];
  specs: ReadonlyMap<string, LoadedFleet>;
  pack: LoadedPack;
  lifecycle: Lifecycle;
  /** Capacity left per data center after this plan's creates; null when the capacity rule is disabled. */
  capacity: ReadonlyMap<string, CapacityLeft> | null;
  /**
   * Extra VMs the owner quota still allows each fleet (Infinity: no limit):
   * a surge VM counts against the quota while it lives. `surging`: the surge
   * VMs set aside for fleets planned before (their rollouts run at the same
   * time), which count against their owners' quotas too.
   */
  quotaRoom: (spec: LoadedFleet, extra: number, surging: ReadonlyMap<string, number>) => number;
  /** Members of a fleet in a state that the plan summed as unchanged rather than read (they serve like noops); 0 when absent. */
  unchangedIn?: (fleet: string, state: string) => number;
  /**
   * How many members each fleet may have after the grants (an owner quota or capacity that granted fewer than
   * `count`): the count the default maxUnavailable and the percentages take their share of. Absent: `count`.
   */
  granted?: (fleet: string) => number | undefined;
}

export interface WaveResult {
  rollouts: Rollout[];
  violations: Violation[];
}

/** True when the change takes a member in `state` out of it (for a while or for good). */
export function leavesState(c: Change, state: string): boolean {
  if (c.action === 'create' || c.action === 'noop' || c.from !== state) return false;
  if (c.action === 'delete' || c.action === 'replace') return true;
  return c.path.some((s) => s !== state);
}

/** Splits each fleet's disruptive changes into waves (see the table at the top). */
export function assignWaves(input: WaveInput): WaveResult {
  const rule = disruptionRule(input.pack);
  const rollouts: Rollout[] = [];
  const violations: Violation[] = [];
  const byFleet = new Map<string, Change[]>();
  /**
   * Per fleet, its members in the serving state that a delete takes out for good (a lower count, a deposed VM),
   * which max-disruption counts beside the widest wave. A transition to another state for good is waved itself.
   */
  const forGood = new Map<string, number>();
  /**
   * Per fleet, the addresses whose deposed VM is in the serving state: the rule counts them among the serving
   * members, and the member brought back beside one is not out (see `returningSurge`).
   */
  const deposedServing = new Map<string, Set<string>>();
  /** The deposed old VMs this plan deletes: each still takes a place in its data center (`deposedHint`). */
  const deposed: Change[] = [];
  // A deposed old VM whose member's own VM the plan brings back to the serving state, or leaves there unchanged
  // (summed, when the plan read only what differs), hands the member over (apply deletes it only once that VM is
  // back): its delete takes no member out for good. The max-disruption rule counts it the same way.
  const stays = new Set<string>();
  const goes = new Set<string>();
  for (const c of input.changes) if (!c.deposed) (c.action !== 'delete' && c.to === rule.state ? stays : goes).add(c.address);
  const handedOver = (c: Change): boolean => {
    if (stays.has(c.address)) return true;
    if (goes.has(c.address)) return false;
    const spec = input.specs.get(c.fleet);
    return spec !== undefined && spec.state === rule.state && c.index < spec.count;
  };
  for (const c of input.changes) {
    if (c.action === 'delete' && c.from === rule.state && !(c.deposed && handedOver(c))) {
      forGood.set(c.fleet, (forGood.get(c.fleet) ?? 0) + 1);
    }
    if (c.deposed && c.from === rule.state) {
      let set = deposedServing.get(c.fleet);
      if (!set) deposedServing.set(c.fleet, (set = new Set()));
      set.add(c.address);
    }
    if (c.deposed) {
      deposed.push(c);
      continue;
    }
    let list = byFleet.get(c.fleet);
    if (!list) byFleet.set(c.fleet, (list = []));
    list.push(c);
  }
  // Different fleets' rollouts run side by side, so their surge VMs may exist at once: each fleet's widest
  // surge in a data center is set aside before the next fleet's waves (in plan order) are planned.
  const surgeLeft = new Map<string, CapacityLeft>();
  for (const [dc, left] of input.capacity ?? []) surgeLeft.set(dc, { ...left });
  // The same for owner quotas: each fleet's widest surge counts against its owner's quota for the fleets after it.
  const surging = new Map<string, number>();
  for (const [fleet, changes] of byFleet) {
    const spec = input.specs.get(fleet);
    if (!spec) continue;
    const state = rule.state;
    const disruptive = changes.filter((c) => c.action !== 'delete' && leavesState(c, state));
    // One pass over the fleet's changes (every member's, noops included):
    // - servingNow: members in the serving state now (the rule's share counts them);
    // - returning: members out of the serving state now, whose change brings them back: they hold places of the first wave;
    // - refills: members with no VM at all (lost, or added by a higher count), created into the serving state: out of
    //   service until they run, as Kubernetes counts a not-yet-ready pod; they hold places of the first wave too;
    // - lost: members of a serving fleet out of the serving state that the plan leaves there (a failed member --target
    //   leaves out of the plan): out of service through the whole rollout, so they hold places of every wave.
    //   Addresses the plan does not create (an owner quota's lower grant) are not members: the grant lowered the count.
    const serves = spec.state === state;
    let servingNow = 0;
    let lost = 0;
    const returning: Change[] = [];
    const refills: Change[] = [];
    for (const c of changes) {
      if (c.action === 'create') {
        if (c.to === state) refills.push(c);
      } else if (c.from === state) servingNow++;
      else if (c.action !== 'delete') {
        if (c.to === state) {
          if (c.action !== 'noop') returning.push(c);
        } else if (serves && c.index < spec.count) lost++;
      }
    }
    if (serves) for (const st of input.lifecycle.states) if (st !== state) lost += input.unchangedIn?.(fleet, st) ?? 0;
    const serving = servingNow + (deposedServing.get(fleet)?.size ?? 0) + (input.unchangedIn?.(fleet, state) ?? 0);
    // One whose failed surge replace left its old VM serving (deposed) is not out: its two VMs hold a surge place.
    const oldServing = deposedServing.get(fleet);
    const returningSurge = oldServing ? returning.filter((c) => oldServing.has(c.address)).length : 0;
    // A failureThreshold share counts every member the rollout changes: those it takes out and those it brings back.
    const members = Math.min(spec.count, input.granted?.(fleet) ?? spec.count);
    const settings = rolloutSettings(spec, rule, serving, disruptive.length + returning.length + refills.length, forGood.get(fleet) ?? 0, members);
    if (!settings) continue;
    if (disruptive.length === 0) {
      // No member leaves the serving state, so there is no wave; but a member out of it already whose replace
      // created its new VM first would only add a VM beyond maxSurge, each at once (rolling a stopped rollout's
      // failed members back to the image the rest still runs replaced every one of them by a surge VM together).
      // Their old VMs go first, as in a rollout's first wave.
      for (const c of returning) if (c.action === 'replace' && c.replaceOrder === 'create-before-delete') setReplaceOrder(c, 'delete-before-create', input.lifecycle, `it is out of ${state} already`);
      continue;
    }
    // Apply holds a wave to maxUnavailable less the places its failed members hold: the lost ones hold theirs
    // through the rollout, so the rollout's maxUnavailable is what they leave.
    const maxUnavailable = Math.max(0, settings.maxUnavailable - lost);
    if (lost > 0) settings.notes.splice(Math.max(1, settings.notes.findIndex((n) => /^(maxSurge|failureThreshold|one member|no member|maxUnavailable and maxSurge both)/.test(n))), 0, `lowered to ${maxUnavailable}: ${lost} member${lost === 1 ? ' is' : 's are'} out of ${state} and this plan leaves ${lost === 1 ? 'it' : 'them'} so`);
    const surgeQuota = settings.maxSurge > 0 ? Math.min(settings.maxSurge, input.quotaRoom(spec, settings.maxSurge, surging)) : 0;
    if (surgeQuota < settings.maxSurge) settings.notes.push(`maxSurge ${settings.maxSurge} lowered to ${surgeQuota} by the owner quota`);

    const waves: RolloutWave[] = [];
    let queue = [...disruptive].sort((a, b) => a.index - b.index);
    let heldOut = returning.length - returningSurge + refills.length;
    let heldSurge = returningSurge;
    const back = [...returning, ...refills];
    /** The data centers where a replace found no room for its surge VM. */
    const shortDcs = new Set<string>();
    /** Per data center, the most surge VMs of one wave of this fleet, with their size. */
    const widest = new Map<string, { n: number; size: VmSize }>();
    while (queue.length > 0) {
      const wave: RolloutWave = { wave: waves.length + 1, members: [], unavailable: 0, surge: 0 };
      const places = Math.max(0, maxUnavailable - heldOut);
      const surgePlaces = Math.max(0, surgeQuota - heldSurge);
      const usedRoom = new Map<string, number>();
      const rest: Change[] = [];
      for (const c of queue) {
        if (settings.oneAtATime && wave.members.length > 0) {
          rest.push(c);
          continue;
        }
        const dcRoom = room(surgeLeft.get(c.dataCenter), c.size) - (usedRoom.get(c.dataCenter) ?? 0);
        if (c.action === 'replace' && wave.surge < surgePlaces && dcRoom >= 1) {
          setReplaceOrder(c, 'create-before-delete', input.lifecycle);
          const n = (usedRoom.get(c.dataCenter) ?? 0) + 1;
          usedRoom.set(c.dataCenter, n);
          if (n > (widest.get(c.dataCenter)?.n ?? 0)) widest.set(c.dataCenter, { n, size: c.size });
          wave.surge++;
        } else if (wave.unavailable < places) {
          if (c.action === 'replace') setReplaceOrder(c, 'delete-before-create', input.lifecycle, wave.surge < surgePlaces ? 'no capacity for both' : 'no surge place in its wave');
          wave.unavailable++;
        } else {
          if (c.action === 'replace' && wave.surge < surgePlaces && dcRoom < 1) shortDcs.add(c.dataCenter);
          rest.push(c);
          continue;
        }
        c.wave = wave.wave;
        wave.members.push(c.address);
      }
      if (wave.members.length === 0 && heldOut + heldSurge === 0) break;
      if (wave.wave === 1 && back.length > 0) {
        for (const c of back) {
          c.wave = 1;
          // A member brought back by a replace is out of service already: its new VM first would only add a VM
          // beyond maxSurge (an apply killed mid-replace left its old VM ShuttingDown, and the re-run created
          // every such member's new VM beside its old one). Its old VM goes first, as the first run meant.
          if (c.action === 'replace' && c.replaceOrder === 'create-before-delete') setReplaceOrder(c, 'delete-before-create', input.lifecycle, `it is out of ${state} already`);
        }
        wave.returning = back.map((c) => c.address).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
      }
      heldOut = 0;
      heldSurge = 0;
      waves.push(wave);
      queue = rest;
    }
    const widestSurge = Math.max(0, ...waves.map((w) => w.surge));
    if (widestSurge > 0) surging.set(fleet, widestSurge);
    for (const [dc, { n, size }] of widest) {
      const left = surgeLeft.get(dc);
      if (left) surgeLeft.set(dc, { vms: left.vms - n, cpu: left.cpu - n * size.cpu, memoryGiB: left.memoryGiB - n * size.memoryGiB });
    }
    if (queue.length > 0 && lost > 0 && settings.maxUnavailable > 0) {
      // Members out of service through the whole rollout take every place maxUnavailable allows (and no surge VM
      // can stand in): taking out one more would leave fewer than count - maxUnavailable serving.
      const list = queue.map((c) => c.address);
      const bySpec = settings.unavailableFrom === 'spec';
      const keep = spec.count - settings.maxUnavailable;
      violations.push({
        policy: bySpec ? 'rollout' : 'max-disruption',
        level: 'mandatory',
        address: fleet,
        message: `${queue.length} change${queue.length === 1 ? '' : 's'} of fleet ${fleet} (${list.slice(0, 5).join(', ')}${list.length > 5 ? ', …' : ''}) cannot be rolled out: ${lost} of its ${spec.count} members ${lost === 1 ? 'is' : 'are'} out of ${state} and this plan does not bring ${lost === 1 ? 'it' : 'them'} back, and ${bySpec ? `spec.rollout.maxUnavailable ${showAmount(spec.rollout.maxUnavailable!)}` : 'max-disruption'} (${settings.maxUnavailable}) keeps at least ${keep} of ${spec.count} in ${state}.`,
        hint: `Plan the members out of ${state} too (without --target, or with their addresses), so that they come back in the first wave, or ${bySpec ? `allow a larger rollout.maxUnavailable in fleet ${fleet}'s spec` : "raise max-disruption.maxShare in the stack's policyPack.config"}${surgeHint(queue, settings.maxSurge, fleet)}.${deposedHint(deposed, shortDcs)}`,
      });
    } else if (queue.length > 0) {
      // Only a maxUnavailable of 0 (the spec's, or a mandatory max-disruption's) with changes that cannot surge gets
      // here: a resize or transition, a replace with no room for a surge VM, or no surge VM left by the owner quota.
      const list = queue.map((c) => c.address);
      const bySpec = settings.unavailableFrom === 'spec';
      const notReplace = queue.some((c) => c.action !== 'replace');
      const why = [
        shortDcs.size > 0 ? ' and the data center has no room for a surge VM' : '',
        surgeQuota === 0 && settings.maxSurge > 0 ? ' and the owner quota leaves no room for a surge VM' : '',
        notReplace ? ', and a resize or transition cannot use a surge VM' : '',
      ].join('');
      // Only a resize or transition can be made a replace instead; only a replace can use the room a surge VM needs.
      const orReplace = notReplace ? ', or make the change a replace (fleet plan --replace ADDRESS)' : '';
      const anyReplace = queue.some((c) => c.action === 'replace');
      // With no maxSurge at all (both resolved to 0, Kubernetes' maxUnavailable 1 vetoed), room is not what is missing.
      const orRoom = (first: string) =>
        !anyReplace
          ? `${first}${orReplace}.`
          : settings.maxSurge === 0
            ? `${first}${orReplace ? ',' : ' or'} give fleet ${fleet}'s spec a rollout.maxSurge of at least 1, so that a replace creates its new VM before the old one goes (with room and quota for it)${orReplace}.`
            : `${first}${orReplace ? ',' : ' or'} free capacity or quota for a surge VM${orReplace}.`;
      const bothZero = settings.bothZeroVetoed
        ? `maxUnavailable and maxSurge both resolve to 0 for its ${members} member${members === 1 ? '' : 's'}, and the maxUnavailable 1 Kubernetes' rule then uses is vetoed: `
        : '';
      violations.push({
        policy: bySpec ? 'rollout' : 'max-disruption',
        level: 'mandatory',
        address: fleet,
        message: `${queue.length} change${queue.length === 1 ? '' : 's'} of fleet ${fleet} (${list.slice(0, 5).join(', ')}${list.length > 5 ? ', …' : ''}) cannot be rolled out: ${bothZero}${bySpec ? `spec.rollout.maxUnavailable ${showAmount(spec.rollout.maxUnavailable!)}` : 'max-disruption'} allows no member out of ${state} at once${why}.`,
        hint: orRoom(bySpec ? `Allow rollout.maxUnavailable at least 1 in fleet ${fleet}'s spec` : "Raise max-disruption.maxShare in the stack's policyPack.config") + deposedHint(deposed, shortDcs),
      });
    }
    rollouts.push({
      fleet,
      maxUnavailable,
      maxSurge: surgeQuota,
      failureThreshold: settings.failureThreshold,
      reason: settings.notes.join('; '),
      waves,
    });
  }
  rollouts.sort((a, b) => (a.fleet < b.fleet ? -1 : a.fleet > b.fleet ? 1 : 0));
  return { rollouts, violations };
}

/** The first clause of a replace's reason (what changes), without the order's explanation. */
function reasonHead(reason: string): string {
  const i = reason.indexOf(';');
  return i < 0 ? reason : reason.slice(0, i);
}

/** Sets a replace's order, with its steps and reason to match. */
function setReplaceOrder(c: Change, order: NonNullable<Change['replaceOrder']>, lc: Lifecycle, why = ''): void {
  const newSteps = stepsAlong(lc, c.path, 'new');
  const oldSteps = stepsAlong(lc, c.oldPath ?? [], 'old');
  c.replaceOrder = order;
  c.steps = order === 'create-before-delete' ? [...newSteps, ...oldSteps] : [...oldSteps, ...newSteps];
  const head = reasonHead(c.reason);
  c.reason = order === 'create-before-delete' ? `${head}; its new VM runs before the old one goes (a surge VM)` : `${head}; the old one goes first: ${why}`;
}

/**
 * The part of a blocked rollout's hint about surge VMs: only a replace can
 * use one (its new VM runs before the old one goes); with no maxSurge it
 * asks for one, with a maxSurge the room for it (capacity or quota) was
 * missing. Nothing for resizes and transitions.
 */
function surgeHint(queue: readonly Change[], maxSurge: number, fleet: string): string {
  if (!queue.some((c) => c.action === 'replace')) return '';
  return maxSurge > 0 ? ', or free capacity or quota for a surge VM' : `, or give fleet ${fleet}'s spec a rollout.maxSurge, so that a replace creates its new VM before the old one goes`;
}

/**
 * The part of a blocked rollout's hint about deposed old VMs in the data
 * centers that had no room for a surge VM. The plan deletes them, but their
 * places count as taken while it plans the surge VMs (a returning member's
 * old VM goes only once its new VM runs, and the authority checks capacity
 * as each VM is created), so the way out is a targeted apply that deletes
 * them first. Nothing when no deposed VM is there.
 */
function deposedHint(deposed: readonly Change[], shortDcs: ReadonlySet<string>): string {
  const here = deposed.filter((c) => shortDcs.has(c.dataCenter));
  if (here.length === 0) return '';
  const addrs = [...new Set(here.map((c) => c.address))].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const dcs = [...new Set(here.map((c) => c.dataCenter))].sort();
  const one = addrs.length === 1;
  const targets = addrs.map((a) => `--target ${a}`).join(' ');
  return ` The deposed old VM${one ? '' : 's'} of ${addrs.join(', ')} still take${one ? 's a place' : ' places'} in ${dcs.join(', ')} until this plan's apply deletes ${one ? 'it' : 'them'}: run fleet apply ${targets} first (review it with fleet plan ${targets}), which deletes ${one ? 'it' : 'them'}, then plan again.`;
}
