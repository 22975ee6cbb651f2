// Rollouts under injected faults, end to end over generated cases (adversarial review, docs/rollouts.md
// "Apply"): the real default pack, a real authority, a sim data center behind its DMZ client and an embedded
// (PGlite) record. Each case makes a fleet, may leave some of its members failed by an earlier faulted apply,
// then rolls out an image change (its count sometimes changed too) with generated settings, a fault (a failing
// boot or create) injected as one of its waves starts; then plans and applies again without the fault until
// nothing is left. Proved from the record's history, for the faulted apply and every resume:
// - no instant has more members out of Running than maxUnavailable (or than were out before the apply);
// - no instant has more VMs than the fleet's count plus maxSurge (or than existed before the apply);
// - a failed apply stops its rollout once failureThreshold members failed (no member of a later wave starts),
//   and leaves at least count - maxUnavailable members Running;
// - the re-runs converge: every member Running on the new image, and the next plan has nothing to do.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computePlan } from '../plan/planner.ts';
import { dataCenter, makeFleet, makeStack } from '../plan/test-support.ts';
import type { PlanDocument } from '../plan/types.ts';
import type { HistoryRow } from '../record/types.ts';
import type { LoadedFleet } from '../spec/types.ts';
import type { LoadedPack } from '../policy/types.ts';
import { specHash } from '../spec/index.ts';
import { startTestWorld, type TestWorld } from '../../providers/testing.ts';
import { ConnectedProvider, lifecycleData } from '../../providers/provider.ts';
import { applyPlan, type ApplyEvent } from './executor.ts';
import { resolveAmount, type RolloutAmount, type RolloutSpec } from '../model/index.ts';
import { seededRandom } from '../model/seeded-random.ts';

const CAPACITY = { vms: 1000, cpu: 4000, memoryGiB: 16000 };

function fleet(name: string, count: number, image: string, rollout: RolloutSpec): LoadedFleet {
  const f = makeFleet(name, { count, image, owner: 'team-a', placement: { dataCenters: ['miami'] }, rollout });
  return { ...f, specHash: specHash(f) };
}

let seq = 0;
/** The pack a case plans with (max-disruption mandatory, say); the world's when unset. */
let pack: LoadedPack | undefined;
async function plan(world: TestWorld, f: LoadedFleet): Promise<PlanDocument> {
  const fleetVersions = Object.fromEntries((await world.record.listFleets(world.stack)).map((x) => [x.fleet, x.version]));
  return computePlan({
    stack: { ...makeStack([dataCenter('miami', 25.76, -80.19, ['general'], CAPACITY)]), name: world.stack },
    pack: pack ?? world.pack,
    fleets: [f],
    record: await world.record.listPlanVms(world.stack),
    fleetVersions,
    // Each case's fleet alone: the other cases' fleets are not in its specs, and stay as they are.
    options: { targets: [f.name], excludes: [], allowDestroy: [], refresh: false },
    id: `faults-${++seq}`,
  });
}

async function apply(world: TestWorld, p: PlanDocument, f: LoadedFleet, onEvent?: (e: ApplyEvent) => void) {
  const lifecycle = lifecycleData(world.pack.lifecycle);
  const providers = new Map([...world.dcs].map(([dc, d]) => [dc, new ConnectedProvider({ dataCenter: dc, url: 'http://127.0.0.1:1', tokenEnv: '', lifecycle }, d.client)]));
  return applyPlan({ plan: p, record: world.record, providers, owners: { [f.name]: 'team-a' }, parallelism: 10, ...(onEvent ? { onEvent } : {}) });
}

type Vms = Map<string, { address: string; index: number; state: string }>;

async function snapshot(world: TestWorld, name: string): Promise<Vms> {
  const vms = await world.record.listVms(world.stack);
  return new Map(vms.filter((v) => v.fleet === name).map((v) => [v.id, { address: v.address, index: v.index, state: v.state }]));
}

/** Members (index < count) out of Running, and VMs existing, at the worst instant of the plans' history. */
function timeline(rows: readonly HistoryRow[], name: string, planIds: ReadonlySet<string>, start: Vms, count: number) {
  const state = new Map(start);
  const measure = () => {
    const running = new Set<number>();
    let vms = 0;
    for (const v of state.values()) {
      if (v.state === 'Deleted') continue;
      vms++;
      if (v.state === 'Running' && v.index < count) running.add(v.index);
    }
    return { out: count - running.size, vms };
  };
  const first = measure();
  let { out: maxOut, vms: maxVms } = first;
  const moves = (r: HistoryRow) => r.outcome === 'ok' && !(r.detail ?? '').startsWith('intent approved');
  const sorted = rows.filter((r) => r.planId !== null && planIds.has(r.planId) && r.address.startsWith(`${name}/`) && moves(r)).sort((a, b) => a.id - b.id);
  for (let i = 0; i < sorted.length; i++) {
    const r = sorted[i];
    const index = Number(r.address.split('/')[1]);
    state.set(r.vmId, { address: r.address, index, state: r.to });
    if (i + 1 < sorted.length && sorted[i + 1].at === r.at) continue;
    const m = measure();
    maxOut = Math.max(maxOut, m.out);
    maxVms = Math.max(maxVms, m.vms);
  }
  return { atStart: first, maxOut, maxVms, end: measure() };
}

/** The settings as counts, as docs/rollouts.md defines them (max-disruption advisory: the spec's, else maxShare 0.5 of count). */
function limits(f: LoadedFleet): { mu: number; ms: number } {
  const r = f.rollout;
  let mu = r.maxUnavailable !== undefined ? resolveAmount(r.maxUnavailable, f.count, 'down') : Math.floor(0.5 * f.count);
  let ms = resolveAmount(r.maxSurge ?? 0, f.count, 'up');
  if (mu === 0 && ms === 0) [mu, ms] = [1, 1];
  return { mu, ms };
}

describe('rollouts under injected faults, over generated cases', () => {
  let world: TestWorld;
  beforeAll(async () => {
    world = await startTestWorld({ dataCenters: ['miami'], sim: { latencyMs: 1, bootMs: 1, capacity: CAPACITY } });
  }, 120_000);
  afterAll(async () => {
    await world?.close();
  });

  it('stop at failureThreshold within their bounds, and resume to the end within them, over 16 generated cases', { timeout: 600_000 }, async () => {
    const r = seededRandom(1207);
    const driver = world.dc('miami').driver;
    const seen = { stoppedByThreshold: 0, stoppedByPlaces: 0, resumed: 0, preFailed: 0, surged: 0, countChanged: 0, mandatory: 0 };
    for (let k = 0; k < 16; k++) {
      const name = `f${k}`;
      const count = 2 + r.int(10);
      const amount = () => r.pick<RolloutAmount | undefined>([undefined, 0, 1, 2, 3, '25%', '34%', '50%', '1%', '100%']);
      let rollout: RolloutSpec = { maxUnavailable: amount(), maxSurge: amount(), failureThreshold: r.pick<RolloutAmount | undefined>([undefined, 1, 2, '50%']) };
      // What the loader refuses (spec.rollout-invalid) never reaches a plan.
      if (rollout.maxUnavailable === 0 && !rollout.maxSurge) rollout = { ...rollout, maxUnavailable: 1 };
      rollout = Object.fromEntries(Object.entries(rollout).filter(([, v]) => v !== undefined));
      const newCount = r.chance(0.3) ? Math.max(1, count + r.between(-2, 2)) : count;
      const label = `case ${k}: ${name} count ${count} -> ${newCount} ${JSON.stringify(rollout)}`;

      driver.setFaults({});
      pack = undefined;
      const made = await apply(world, await plan(world, fleet(name, count, 'ubuntu-22.04', {})), fleet(name, count, 'ubuntu-22.04', {}));
      expect(made.failed, label).toEqual([]);

      // Some members failed already: an earlier rollout to another image, its first wave's boots failing.
      if (r.chance(0.4)) {
        seen.preFailed++;
        const other = fleet(name, count, 'rhel-9', { maxUnavailable: 1 + r.int(2) });
        const pre = await plan(world, other);
        await apply(world, pre, other, (e) => {
          if (e.type === 'wave-start' && e.wave === 1) driver.setFaults({ failCalls: ['boot'] });
        });
        driver.setFaults({});
      }

      const target = fleet(name, newCount, 'ubuntu-24.04', rollout);
      // A third of the cases plan under a mandatory max-disruption, which shapes the waves (the bounds below, the
      // spec's or the advisory rule's, are never lower than what it allows).
      if (r.chance(1 / 3)) {
        const rules = new Map(world.pack.rules);
        const rule = rules.get('max-disruption')!;
        rules.set('max-disruption', { ...rule, enforcement: 'mandatory', config: { ...rule.config, maxShare: r.pick([0.25, 0.34, 0.5]) } });
        pack = { ...world.pack, rules };
        seen.mandatory++;
      } else pack = undefined;
      const { mu, ms } = limits(target);
      const p = await plan(world, target);
      expect(p.blocked, `${label}: ${p.policy.violations.map((v) => v.message).join('; ')}`).toBe(false);
      const ro = p.rollouts?.find((x) => x.fleet === name);
      if (newCount !== count) seen.countChanged++;
      if (ro?.waves.some((w) => w.surge > 0)) seen.surged++;
      const faultWave = 1 + r.int(Math.max(1, Math.min(2, ro?.waves.length ?? 1)));
      const fault = r.pick(['boot', 'createVm']);
      const start = await snapshot(world, name);
      const startedAfterStop: string[] = [];
      let failedSoFar = 0;
      const waveOf = new Map(p.changes.map((c) => [c.address, c.wave]));
      const faulted = await apply(world, p, target, (e) => {
        if (e.type === 'wave-start' && e.wave === faultWave) driver.setFaults({ failCalls: [fault] });
        if (e.type === 'wave-done') failedSoFar += e.failed;
        // No member of a later wave starts once failureThreshold members failed.
        if (ro && e.type === 'step' && e.status === 'started' && failedSoFar >= ro.failureThreshold && (waveOf.get(e.address) ?? 0) > 0) startedAfterStop.push(e.address);
      });
      driver.setFaults({});
      expect(startedAfterStop, label).toEqual([]);
      const report = faulted.rollouts.find((x) => x.fleet === name);
      if (ro && report && report.failed.length >= ro.failureThreshold && report.stopped) seen.stoppedByThreshold++;
      else if (report?.stopped) seen.stoppedByPlaces++;
      if (ro && report && report.failed.length >= ro.failureThreshold && report.wavesRun < ro.waves.length) expect(report.stopped, label).toBeDefined();
      const history = () => world.record.history(world.stack);
      const t = timeline(await history(), name, new Set([p.id]), start, newCount);
      expect(t.maxOut, `${label}: most members out of Running (${t.atStart.out} at start)`).toBeLessThanOrEqual(Math.max(mu, t.atStart.out));
      expect(t.maxVms, `${label}: most VMs (${t.atStart.vms} at start)`).toBeLessThanOrEqual(Math.max(newCount + ms, t.atStart.vms));
      expect(t.end.out, `${label}: members left out of Running`).toBeLessThanOrEqual(Math.max(mu, t.atStart.out));

      // Resume: plan and apply again, no fault, until nothing is left; each run within the same bounds.
      let done = false;
      for (let run = 0; run < 4 && !done; run++) {
        const again = await plan(world, target);
        if (again.changes.every((c) => c.action === 'noop')) {
          done = true;
          break;
        }
        seen.resumed++;
        expect(again.blocked, `${label}; resume ${run}: ${again.policy.violations.map((v) => `${v.policy} ${v.level}: ${v.message}`).join(' | ')}`).toBe(false);
        const before = await snapshot(world, name);
        const res = await apply(world, again, target);
        expect(res.failed, `${label}; resume ${run}`).toEqual([]);
        const tr = timeline(await history(), name, new Set([again.id]), before, newCount);
        expect(tr.maxOut, `${label}; resume ${run}: most members out (${tr.atStart.out} at start)`).toBeLessThanOrEqual(Math.max(mu, tr.atStart.out));
        expect(tr.maxVms, `${label}; resume ${run}: most VMs (${tr.atStart.vms} at start)`).toBeLessThanOrEqual(Math.max(newCount + ms, tr.atStart.vms));
      }
      expect(done, `${label}: converged`).toBe(true);
      const vms = (await world.record.listVms(world.stack)).filter((v) => v.fleet === name);
      expect(vms.map((v) => [v.index, v.state, v.image, v.deposed]).sort(), label).toEqual(
        Array.from({ length: newCount }, (_, i) => [i, 'Running', 'ubuntu-24.04', false]).sort(),
      );
    }
    // The cases reached what they meant to.
    expect(seen.stoppedByThreshold).toBeGreaterThan(3);
    expect(seen.resumed).toBeGreaterThan(8);
    expect(seen.preFailed).toBeGreaterThan(3);
    expect(seen.surged).toBeGreaterThan(3);
    expect(seen.countChanged).toBeGreaterThan(2);
    expect(seen.mandatory).toBeGreaterThan(2);
  });
});
