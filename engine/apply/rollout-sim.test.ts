// Rollouts as a whole, over many generated stacks: the real planner makes
// the plan from a record, runWaves carries it out over a fake world that
// plays each member's change (and its failure), the record the world leaves
// is planned and applied again, until a run without failures. What must
// hold for every case (docs/rollouts.md):
// - no member is taken out while the spec's maxUnavailable members are out
//   of Running, and no surge VM is created while maxSurge extra VMs exist
//   (counted from the spec's settings, not the plan's);
// - no member of a fleet starts once failureThreshold of its members failed;
// - the report of every rollout names each waved member once (succeeded,
//   failed or left untouched): none is lost behind a success;
// - a deposed old VM is a VM beyond the fleet's until it is deleted;
// - the re-runs converge: every member Running on its spec, no deposed VM,
//   and the next plan has nothing to do.
// The second set sets no maxUnavailable: the pack's max-disruption rule's
// default (maxShare of the count, rounded down) governs, and the same holds.
import { describe, expect, it } from 'vitest';
import { computePlan } from '../plan/planner.ts';
import { noRulesPolicy } from '../plan/policy-port.ts';
import { makeFleet, makePack, makeStack, dataCenter, vmRow } from '../plan/test-support.ts';
import type { Change, PlanDocument, Rollout as PlanRollout } from '../plan/types.ts';
import type { VmRow } from '../record/types.ts';
import type { LoadedFleet } from '../spec/types.ts';
import type { LoadedPack } from '../policy/types.ts';
import { resolveAmount, type Enforcement, type RolloutAmount, type RolloutSpec } from '../model/index.ts';
import { seededRandom } from '../model/seeded-random.ts';
import { runWaves } from './rollout.ts';

/** Repeatable cases (mulberry32, engine/model/seeded-random.ts). */
const rng = (seed: number): (() => number) => seededRandom(seed).next;

const NEW = { image: 'ubuntu-24.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 } };

/** The spec's settings as counts, as docs/rollouts.md defines them (max-disruption disabled). */
function expected(f: LoadedFleet) {
  const r = f.rollout;
  let mu = resolveAmount(r.maxUnavailable ?? f.count, f.count, 'down');
  let ms = resolveAmount(r.maxSurge ?? 0, f.count, 'up');
  if (mu === 0 && ms === 0) [mu, ms] = [1, 1];
  return { mu, ms };
}

interface World {
  rows: VmRow[];
  seq: number;
}

function plan(world: World, fleets: LoadedFleet[], id: string, pack: LoadedPack = makePack()): PlanDocument {
  return computePlan({
    stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'])]),
    pack,
    fleets,
    record: world.rows,
    fleetVersions: {},
    options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
    policy: noRulesPolicy,
    id,
  });
}

/** The limits a rollout must keep, by the fleet's spec (and the plan's rollout, for what the rule lowered). */
type Limits = (f: LoadedFleet, ro?: PlanRollout) => { mu: number; ms: number };

async function applyOnce(world: World, fleets: LoadedFleet[], p: PlanDocument, fails: (c: Change) => boolean, label: string, limits: Limits = expected) {
  const broke: string[] = [];
  const specs = new Map(fleets.map((f) => [f.name, f]));
  const serving = (fleet: string, index: number) => world.rows.some((r) => r.fleet === fleet && r.index === index && r.state === 'Running');
  // Per fleet: members (index < count) with no serving VM, and VMs beyond one per member (surge VMs, deposed VMs).
  const out = new Map<string, Set<number>>();
  const extra = new Map<string, number>();
  for (const f of fleets) {
    out.set(f.name, new Set(Array.from({ length: f.count }, (_, i) => i).filter((i) => !serving(f.name, i))));
    extra.set(f.name, world.rows.filter((r) => r.fleet === f.name && r.deposed).length);
  }
  const failedIn = new Map<string, number>();
  const rollouts = new Map((p.rollouts ?? []).map((r) => [r.fleet, r]));
  const result = await runWaves(
    p.changes.filter((c) => c.action !== 'noop'),
    {
      plan: p,
      run: async (c) => {
        const f = specs.get(c.fleet)!;
        const ro = rollouts.get(c.fleet);
        const { mu, ms } = limits(f, ro);
        const o = out.get(c.fleet)!;
        const member = c.index < f.count;
        if (ro && c.wave !== undefined && (failedIn.get(c.fleet) ?? 0) >= ro.failureThreshold) broke.push(`${c.address} started after ${failedIn.get(c.fleet)} failures (failureThreshold ${ro.failureThreshold})`);
        const surge = c.action === 'replace' && c.replaceOrder === 'create-before-delete';
        // Only a member whose own (not deposed) VM serves is taken out: a retry beside a serving deposed VM is not.
        const own = world.rows.find((r) => r.fleet === c.fleet && r.index === c.index && !r.deposed);
        const takesOut = member && !c.deposed && own?.state === 'Running' && !o.has(c.index) && c.action !== 'create' && !surge && c.action !== 'delete';
        if (surge) {
          extra.set(c.fleet, extra.get(c.fleet)! + 1);
          if (ro && extra.get(c.fleet)! > ms) broke.push(`${c.address} surged with ${extra.get(c.fleet)} extra VMs (maxSurge ${ms})`);
        }
        if (takesOut) {
          o.add(c.index);
          if (ro && o.size > mu) broke.push(`${c.address} taken out with ${o.size} out of Running (maxUnavailable ${mu}): ${[...o].join(',')}`);
        }
        const fail = fails(c);
        // Let the other members of its group start first.
        for (let i = 0; i < 20; i++) await Promise.resolve();
        const mine = (r: VmRow) => r.fleet === c.fleet && r.index === c.index;
        if (c.deposed || c.action === 'delete') {
          if (fail) return { ok: false };
          world.rows = world.rows.filter((r) => !(mine(r) && r.deposed === !!c.deposed && (c.deposed || !r.deposed)));
          if (c.deposed) extra.set(c.fleet, extra.get(c.fleet)! - 1);
          return { ok: true };
        }
        const current = world.rows.find((r) => mine(r) && !r.deposed);
        const fresh = (state: string): VmRow => ({ ...vmRow(f, c.index, { dataCenter: 'miami', state, id: `vm-${++world.seq}`, version: 1 }) });
        if (!fail) {
          world.rows = world.rows.filter((r) => !(mine(r) && !r.deposed));
          world.rows.push(fresh('Running'));
          o.delete(c.index);
          if (surge) extra.set(c.fleet, extra.get(c.fleet)! - 1);
          return { ok: true };
        }
        failedIn.set(c.fleet, (failedIn.get(c.fleet) ?? 0) + 1);
        if (surge) {
          // Its new VM failed to boot: the old one, deposed, keeps serving beside it (an extra VM, counted already).
          world.rows = world.rows.map((r) => (r === current ? { ...r, deposed: true, desiredState: 'Deleted' } : r));
          world.rows.push(fresh('BootFailed'));
        } else if (c.action === 'replace' && current && current.state === 'Running') {
          // delete-before-create: half the time its old VM stops half-way (ShuttingDown), else its new VM fails to boot.
          world.rows = world.rows.filter((r) => r !== current);
          world.rows.push(c.index % 2 ? { ...current, state: 'ShuttingDown' } : fresh('BootFailed'));
        } else {
          world.rows = world.rows.filter((r) => r !== current);
          world.rows.push(fresh('BootFailed'));
        }
        return { ok: false };
      },
      emit: () => undefined,
      interrupted: () => false,
    },
  );
  // Every waved member is accounted for once.
  for (const ro of p.rollouts ?? []) {
    const waved = p.changes.filter((c) => c.fleet === ro.fleet && c.wave !== undefined && !c.deposed).map((c) => c.address);
    const rep = result.reports.find((r) => r.fleet === ro.fleet)!;
    const said = [...rep.succeeded, ...rep.failed, ...(rep.stopped?.notStarted ?? [])];
    expect([...said].sort(), `${label}: report of ${ro.fleet}`).toEqual([...waved].sort());
  }
  return { broke, result };
}

function amount(next: () => number, count: number, zeroOk: boolean): RolloutAmount {
  const int = (n: number) => Math.floor(next() * n);
  const v = next() < 0.5 ? int(Math.max(2, count)) : `${[0, 10, 25, 33, 50, 75, 100][int(7)]}%`;
  if (!zeroOk && (v === 0 || v === '0%')) return 1;
  return v as RolloutAmount;
}

/** The record a fleet starts from: one to count + 1 members, each old, resized, current, failed, half-way, deposed or missing. */
function startingRows(next: () => number, world: World, f: LoadedFleet): void {
  const int = (n: number) => Math.floor(next() * n);
  const before = f.count + int(3) - 1;
  for (let i = 0; i < before; i++) {
    const kind = ['old', 'old', 'old', 'resize', 'same', 'out', 'off', 'half', 'deposed', 'leftover', 'missing'][int(11)];
    const old = { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old', id: `vm-${++world.seq}` };
    if (kind === 'missing') continue;
    if (kind === 'old') world.rows.push(vmRow(f, i, old));
    if (kind === 'resize') world.rows.push(vmRow(f, i, { dataCenter: 'miami', size: { cpu: 1, memoryGiB: 2, diskGiB: 20 }, specHash: 'small', id: `vm-${++world.seq}` }));
    if (kind === 'same') world.rows.push(vmRow(f, i, { dataCenter: 'miami', id: `vm-${++world.seq}` }));
    if (kind === 'out') world.rows.push(vmRow(f, i, { dataCenter: 'miami', state: 'BootFailed', id: `vm-${++world.seq}` }));
    if (kind === 'off') world.rows.push(vmRow(f, i, { ...old, state: 'PoweredOff' }));
    if (kind === 'half') world.rows.push(vmRow(f, i, { ...old, state: 'ShuttingDown' }));
    if (kind === 'leftover') world.rows.push(vmRow(f, i, { ...old, deposed: true, desiredState: 'Deleted', state: 'ShuttingDown' }), vmRow(f, i, { dataCenter: 'miami', id: `vm-${++world.seq}` }));
    if (kind === 'deposed') world.rows.push(vmRow(f, i, { ...old, deposed: true, desiredState: 'Deleted' }), vmRow(f, i, { dataCenter: 'miami', state: 'BootFailed', id: `vm-${++world.seq}` }));
  }
}

/**
 * One generated case, planned (with `pack`) and applied over the fake world until its plan is all noops: at most 12
 * runs, a quarter of the changes failing in the first 3, each plan first given to `check`. 'blocked' when a plan is
 * blocked (its violations must say `blockedWhy`: the only reasons docs/rollouts.md gives); else it must converge, every
 * member Running and none deposed.
 */
async function converge(o: {
  world: World;
  fleets: LoadedFleet[];
  label0: string;
  id: string;
  next: () => number;
  blockedWhy: RegExp;
  pack?: LoadedPack;
  limits?: Limits;
  check?: (p: PlanDocument, label: string) => void;
}): Promise<'converged' | 'blocked'> {
  const { world, fleets, label0 } = o;
  let done = false;
  for (let run = 0; run < 12 && !done; run++) {
    const label = `${label0}; run ${run}`;
    const p = plan(world, fleets, `${o.id}-${run}`, o.pack);
    if (p.blocked) {
      expect(p.policy.violations.map((v) => v.message).join('\n'), label).toMatch(o.blockedWhy);
      return 'blocked';
    }
    o.check?.(p, label);
    const rate = run < 3 ? 0.25 : 0;
    const { broke } = await applyOnce(world, fleets, p, () => o.next() < rate, label, o.limits);
    expect(broke, label).toEqual([]);
    const again = plan(world, fleets, `${o.id}-${run}-check`, o.pack);
    done = again.changes.every((c) => c.action === 'noop');
  }
  expect(done, `${label0}: converged`).toBe(true);
  for (const f of fleets) {
    const rows = world.rows.filter((r) => r.fleet === f.name);
    expect(rows.map((r) => [r.index, r.state, r.deposed]).sort(), label0).toEqual(Array.from({ length: f.count }, (_, i) => [i, 'Running', false]).sort());
  }
  return 'converged';
}

describe('rollouts over generated stacks: limits hold, failures stop in time, re-runs converge', () => {
  it('holds over 400 generated cases', { timeout: 60_000 }, async () => {
    const next = rng(7);
    const int = (n: number) => Math.floor(next() * n);
    let blocked = 0;
    for (let k = 0; k < 400; k++) {
      const fleets: LoadedFleet[] = [];
      const world: World = { rows: [], seq: 0 };
      const nFleets = 1 + int(2);
      for (let j = 0; j < nFleets; j++) {
        const count = 1 + int(9);
        const rollout: RolloutSpec = { maxUnavailable: amount(next, count, true), maxSurge: amount(next, count, true), failureThreshold: amount(next, count, false) };
        const isZero = (a: RolloutAmount | undefined) => a === 0 || a === '0%';
        if (isZero(rollout.maxUnavailable) && isZero(rollout.maxSurge)) rollout.maxSurge = 1;
        const f = makeFleet(`f${j}`, { count, ...NEW, placement: { dataCenters: ['miami'] }, rollout });
        fleets.push(f);
        startingRows(next, world, f);
      }
      const label0 = `case ${k}: ${fleets.map((f) => `${f.name} count ${f.count} ${JSON.stringify(f.rollout)}`).join('; ')}; rows ${world.rows.map((r) => `${r.address}:${r.state}${r.deposed ? '(deposed)' : ''}:${r.specHash.slice(0, 5)}`).join(' ')}`;
      // Only what docs/rollouts.md says blocks: maxUnavailable 0 and a change that cannot use a surge VM (a resize).
      if ((await converge({ world, fleets, label0, id: `c${k}`, next, blockedWhy: /maxUnavailable \S+ allows no member out of Running at once, and a resize/ })) === 'blocked') blocked++;
    }
    expect(blocked).toBeLessThan(80);
  });
});

// A fleet that sets no rollout.maxUnavailable takes its default from the pack's max-disruption rule: maxShare of
// its count, rounded down (engine/plan/waves.ts rolloutSettings; docs/rollouts.md). Nothing above exercised it
// (every generated fleet set its own). The rule may only lower that default (advisory: the members a lower count
// deletes beside the waves; mandatory: its share of the members serving), never raise it. Both zero with no maxSurge
// in the spec is one member at a time by a surge VM (advisory: or taken out, 1); with a maxSurge in the spec (0, 0%)
// Kubernetes' rule: maxUnavailable 1 and no surge VM, unless a mandatory rule allows none (vetoed: the plan is blocked).
function ruleDefault(maxShare: number, enforcement: Enforcement): Limits {
  return (f, ro) => {
    const unset = f.rollout.maxSurge === undefined;
    let mu = Math.floor(maxShare * f.count + 1e-9);
    let ms = resolveAmount(f.rollout.maxSurge ?? 0, f.count, 'up');
    if (mu === 0 && ms === 0) [mu, ms] = unset ? [enforcement === 'mandatory' ? 0 : 1, 1] : [1, 0];
    // What the rule lowered the default to when planned (the deletes beside the waves; a mandatory rule's share of
    // the members serving) holds too. Lowered to 0 with no maxSurge in the spec, it is one member at a time by a
    // surge VM; with the spec's maxSurge 0, a mandatory rule that allows none vetoes Kubernetes' 1 (both stay 0).
    if (ro && ro.maxUnavailable < mu) mu = ro.maxUnavailable;
    if (ro && unset && ms === 0 && ro.maxSurge === 1) ms = 1;
    return { mu, ms };
  };
}

function packWithDisruption(maxShare: number, enforcement: Enforcement): LoadedPack {
  const pack = makePack({ 'max-disruption': enforcement });
  const rule = pack.rules.get('max-disruption')!;
  (pack.rules as Map<string, typeof rule>).set('max-disruption', { ...rule, config: { maxShare } });
  return pack;
}

describe("rollouts whose maxUnavailable is the max-disruption rule's default", () => {
  it('no applied wave takes out more than maxShare of the count, over 400 generated cases; re-runs converge', { timeout: 60_000 }, async () => {
    const next = rng(11);
    const int = (n: number) => Math.floor(next() * n);
    let blocked = 0;
    let waved = 0;
    for (let k = 0; k < 400; k++) {
      const maxShare = next() < 0.7 ? [0, 0.1, 0.25, 1 / 3, 0.5, 0.75, 1][int(7)] : Math.round(next() * 100) / 100;
      const enforcement: Enforcement = next() < 0.6 ? 'advisory' : 'mandatory';
      const pack = packWithDisruption(maxShare, enforcement);
      const limits = ruleDefault(maxShare, enforcement);
      const fleets: LoadedFleet[] = [];
      const world: World = { rows: [], seq: 0 };
      const nFleets = 1 + int(2);
      for (let j = 0; j < nFleets; j++) {
        const count = 1 + int(12);
        // No maxUnavailable: mostly no rollout at all, else only a surge or a failure threshold.
        const pick = int(4);
        const rollout: RolloutSpec = pick === 1 ? { maxSurge: amount(next, count, true) } : pick === 2 ? { failureThreshold: amount(next, count, false) } : {};
        const f = makeFleet(`f${j}`, { count, ...NEW, placement: { dataCenters: ['miami'] }, rollout });
        fleets.push(f);
        startingRows(next, world, f);
      }
      const label0 = `case ${k}: max-disruption ${enforcement} maxShare ${maxShare}; ${fleets.map((f) => `${f.name} count ${f.count} ${JSON.stringify(f.rollout)} (default maxUnavailable ${limits(f).mu})`).join('; ')}; rows ${world.rows.map((r) => `${r.address}:${r.state}${r.deposed ? '(deposed)' : ''}:${r.specHash.slice(0, 5)}`).join(' ')}`;
      const check = (p: PlanDocument, label: string) => {
        for (const ro of p.rollouts ?? []) {
          const f = fleets.find((x) => x.name === ro.fleet)!;
          const { mu, ms } = limits(f);
          const specMs = resolveAmount(f.rollout.maxSurge ?? 0, f.count, 'up');
          expect(ro.maxUnavailable, `${label}: ${ro.fleet}'s maxUnavailable`).toBeLessThanOrEqual(mu);
          // maxSurge is the spec's, or 1 where both resolve to 0 and the spec sets none (one member at a time); a
          // spec's maxSurge resolving to 0 never gets a surge VM (Kubernetes' rule).
          const surgeOk = ro.maxSurge === specMs || (f.rollout.maxSurge === undefined && ro.maxSurge === 1 && ro.maxUnavailable <= 1);
          expect(surgeOk, `${label}: ${ro.fleet}'s maxSurge ${ro.maxSurge} (spec ${specMs}, default ${ms})`).toBe(true);
          if (p.changes.some((c) => c.fleet === ro.fleet && c.wave !== undefined)) waved++;
        }
      };
      // Only a rule that allows no member out, and a change no surge VM can make (a resize), or the spec's maxSurge
      // resolving to 0 (both 0: the rule vetoes Kubernetes' maxUnavailable 1).
      const blockedWhy = /allows no member out of Running at once, and a resize|the maxUnavailable 1 Kubernetes' rule then uses is vetoed/;
      if ((await converge({ world, fleets, label0, id: `d${k}`, next, blockedWhy, pack, limits, check })) === 'blocked') blocked++;
    }
    // The cases did reach waves, and few were blocked (seed 11: 724 waved, 51 of 400 blocked).
    expect(waved).toBeGreaterThan(200);
    expect(blocked).toBeLessThan(80);
  });
});
