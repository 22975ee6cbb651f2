// Rollouts end to end: the real default pack, a real authority, a sim data
// center behind its DMZ client, a real record, all over loopback HTTP. What
// the issue asks is proved from the record's history: at no instant more
// than maxUnavailable members out of Running, and with a surge never fewer
// than the fleet's count Running nor more than count + maxSurge VMs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computePlan } from '../plan/planner.ts';
import { noRulesPolicy } from '../plan/policy-port.ts';
import { dataCenter, makeFleet, makePack, makeStack, vmRow } from '../plan/test-support.ts';
import type { PlanDocument } from '../plan/types.ts';
import type { LoadedPack } from '../policy/types.ts';
import type { HistoryRow } from '../record/types.ts';
import type { LoadedFleet } from '../spec/types.ts';
import { specHash } from '../spec/index.ts';
import { startTestWorld, type TestWorld } from '../../providers/testing.ts';
import { ConnectedProvider, lifecycleData, type MemberProvider, type PlannedCall, type VmInputs, type VmOutputs } from '../../providers/provider.ts';
import type { FleetRecord } from '../record/types.ts';
import { applyPlan, type ApplyEvent } from './executor.ts';
import { runWaves } from './rollout.ts';
import type { RolloutSpec } from '../model/index.ts';
import { seededRandom } from '../model/seeded-random.ts';

const COUNT = 12;

/** The fleet `web` of 12 members in miami, with an image and rollout settings. */
function web(image: string, rollout: RolloutSpec): LoadedFleet {
  const f = makeFleet('web', { count: COUNT, image, placement: { dataCenters: ['miami'] }, rollout });
  return { ...f, specHash: specHash(f) };
}

/** The world's pack with max-disruption set as given. */
function withDisruption(pack: LoadedPack, enforcement: 'advisory' | 'mandatory', maxShare: number): LoadedPack {
  const rules = new Map(pack.rules);
  const r = rules.get('max-disruption')!;
  rules.set('max-disruption', { ...r, enforcement, config: { ...r.config, maxShare } });
  return { ...pack, rules };
}

let seq = 0;
async function plan(world: TestWorld, pack: LoadedPack, fleet: LoadedFleet): Promise<PlanDocument> {
  const fleetVersions = Object.fromEntries((await world.record.listFleets(world.stack)).map((f) => [f.fleet, f.version]));
  return computePlan({
    stack: { ...makeStack([dataCenter('miami', 25.76, -80.19, ['general'], { vms: 50 })]), name: world.stack },
    pack,
    fleets: [fleet],
    record: await world.record.listPlanVms(world.stack),
    fleetVersions,
    options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
    id: `rollout-${++seq}-${Math.random().toString(16).slice(2)}`,
  });
}

async function apply(world: TestWorld, p: PlanDocument, onEvent?: (e: ApplyEvent) => void) {
  const lifecycle = lifecycleData(world.pack.lifecycle);
  const providers = new Map(
    [...world.dcs].map(([dc, d]) => [dc, new ConnectedProvider({ dataCenter: dc, url: 'http://127.0.0.1:1', tokenEnv: '', lifecycle }, d.client)]),
  );
  return applyPlan({ plan: p, record: world.record, providers, owners: { web: 'team-a' }, parallelism: 10, ...(onEvent ? { onEvent } : {}) });
}

interface Timeline {
  /** Most members out of Running at once. */
  maxOut: number;
  /** Fewest members Running at once (after the first VM reached Running). */
  minRunning: number;
  /** Most VMs existing at once (from their insert to their Deleted). */
  maxVms: number;
}

/**
 * Replays the history rows of the plans given, in the order the record wrote
 * them (ids follow commit order; rows with one timestamp are one instant):
 * per VM its state, per member whether any of its VMs is Running.
 */
function timeline(rows: readonly HistoryRow[], planIds: ReadonlySet<string>, start: ReadonlyMap<string, { address: string; state: string }>): Timeline {
  const state = new Map(start);
  const measure = () => {
    const running = new Set<string>();
    let vms = 0;
    for (const v of state.values()) {
      if (v.state === 'Deleted') continue;
      vms++;
      if (v.state === 'Running') running.add(v.address);
    }
    return { running: running.size, vms };
  };
  let { running: minRunning, vms: maxVms } = measure();
  let maxOut = COUNT - minRunning;
  // An intent row (the authority approved an edge, before its cloud call) is not a state change: only the report that follows is.
  const moves = (r: HistoryRow) => r.outcome === 'ok' && !(r.detail ?? '').startsWith('intent approved');
  const sorted = [...rows].filter((r) => r.planId !== null && planIds.has(r.planId) && moves(r)).sort((a, b) => a.id - b.id);
  for (let i = 0; i < sorted.length; i++) {
    const r = sorted[i];
    state.set(r.vmId, { address: r.address, state: r.to });
    // Rows of one instant (same timestamp) are one step: measure after the last of them.
    if (i + 1 < sorted.length && sorted[i + 1].at === r.at) continue;
    const m = measure();
    minRunning = Math.min(minRunning, m.running);
    maxOut = Math.max(maxOut, COUNT - m.running);
    maxVms = Math.max(maxVms, m.vms);
  }
  return { maxOut, minRunning, maxVms };
}

async function snapshot(world: TestWorld): Promise<Map<string, { address: string; state: string }>> {
  const vms = await world.record.listVms(world.stack);
  return new Map(vms.map((v) => [v.id, { address: v.address, state: v.state }]));
}

describe('rollouts over a sim data center', () => {
  let world: TestWorld;
  beforeAll(async () => {
    world = await startTestWorld({ dataCenters: ['miami'], sim: { latencyMs: 1, bootMs: 1 } });
    const created = await apply(world, await plan(world, world.pack, web('ubuntu-22.04', {})));
    expect(created).toMatchObject({ failed: [], succeeded: COUNT });
  }, 120_000);
  afterAll(async () => {
    await world?.close();
  });

  it('applies an image change with maxUnavailable 3 in 4 waves, never more than 3 members out of Running', async () => {
    const p = await plan(world, world.pack, web('ubuntu-24.04', { maxUnavailable: 3 }));
    expect(p.blocked).toBe(false);
    expect(p.rollouts).toHaveLength(1);
    expect(p.rollouts![0].waves.map((w) => [w.members.length, w.unavailable, w.surge])).toEqual([
      [3, 3, 0],
      [3, 3, 0],
      [3, 3, 0],
      [3, 3, 0],
    ]);
    const before = await snapshot(world);
    const events: ApplyEvent[] = [];
    const result = await apply(world, p, (e) => events.push(e));
    expect(result).toMatchObject({ failed: [], succeeded: COUNT, notStarted: 0 });
    expect(result.rollouts).toEqual([expect.objectContaining({ fleet: 'web', waves: 4, wavesRun: 4, failed: [] })]);
    // Each wave starts after the one before it is done, and no member of a later wave started before.
    const order = events.flatMap((e) => (e.type === 'wave-start' || e.type === 'wave-done' ? [`${e.type}:${e.wave}`] : []));
    expect(order).toEqual(['wave-start:1', 'wave-done:1', 'wave-start:2', 'wave-done:2', 'wave-start:3', 'wave-done:3', 'wave-start:4', 'wave-done:4']);
    const waveOf = new Map(p.changes.map((c) => [c.address, c.wave]));
    let current = 0;
    for (const e of events) {
      if (e.type === 'wave-start') current = e.wave;
      if (e.type === 'step' && e.status === 'started') expect(waveOf.get(e.address)).toBe(current);
    }
    const t = timeline(await world.record.history(world.stack), new Set([p.id]), before);
    expect(t.maxOut).toBe(3);
    const vms = await world.record.listVms(world.stack);
    expect(vms.filter((v) => v.state === 'Running' && v.image === 'ubuntu-24.04')).toHaveLength(COUNT);
  }, 120_000);

  it('with maxSurge 2 (maxUnavailable 0) never has fewer than 12 members Running nor more than 14 VMs', async () => {
    const p = await plan(world, world.pack, web('rhel-9', { maxUnavailable: 0, maxSurge: 2 }));
    expect(p.blocked).toBe(false);
    expect(p.rollouts![0].waves).toHaveLength(6);
    expect(p.changes.every((c) => c.action === 'replace' && c.replaceOrder === 'create-before-delete')).toBe(true);
    const before = await snapshot(world);
    const result = await apply(world, p);
    expect(result).toMatchObject({ failed: [], succeeded: COUNT });
    const t = timeline(await world.record.history(world.stack), new Set([p.id]), before);
    expect(t.minRunning).toBe(COUNT);
    expect(t.maxOut).toBe(0);
    expect(t.maxVms).toBe(COUNT + 2);
  }, 120_000);

  it('stops at failureThreshold when wave 2 fails to boot, leaves waves 3–4 untouched, and the next apply finishes', async () => {
    const p = await plan(world, world.pack, web('ubuntu-22.04', { maxUnavailable: 3, failureThreshold: 1 }));
    expect(p.rollouts![0].waves).toHaveLength(4);
    const before = await snapshot(world);
    const beforeRows = new Map((await world.record.listVms(world.stack)).map((v) => [v.address, v]));
    const driver = world.dc('miami').driver;
    const result = await apply(world, p, (e) => {
      // The fault goes in as wave 2 starts, before any of its members' requests.
      if (e.type === 'wave-start' && e.wave === 2) driver.setFaults({ failCalls: ['boot'] });
    });
    driver.setFaults({});
    const wave = (n: number) => p.rollouts![0].waves[n - 1].members;
    expect(result.succeeded).toBe(3);
    expect(result.failed.map((f) => f.address).sort()).toEqual([...wave(2)].sort());
    expect(result.notStarted).toBe(0);
    expect(result.rollouts[0]).toMatchObject({ wavesRun: 2, waves: 4, stopped: { notStarted: [...wave(3), ...wave(4)] } });
    expect(result.rollouts[0].stopped!.reason).toMatch(/reached failureThreshold 1/);
    // Waves 3 and 4: the same VMs, unchanged, and no history under this plan.
    const after = new Map((await world.record.listVms(world.stack)).map((v) => [v.address, v]));
    const history = await world.record.history(world.stack);
    for (const a of [...wave(3), ...wave(4)]) {
      expect(after.get(a)).toMatchObject({ id: beforeRows.get(a)!.id, version: beforeRows.get(a)!.version, state: 'Running', image: 'rhel-9' });
      expect(history.filter((h) => h.planId === p.id && h.address === a)).toEqual([]);
    }

    // The fault removed, the next plan brings wave 2's members back first, then does the rest.
    const again = await plan(world, world.pack, web('ubuntu-22.04', { maxUnavailable: 3, failureThreshold: 1 }));
    expect(again.blocked).toBe(false);
    expect(again.rollouts![0].waves[0].returning).toEqual([...wave(2)].sort());
    const resumed = await apply(world, again);
    expect(resumed).toMatchObject({ failed: [], notStarted: 0 });
    const vms = await world.record.listVms(world.stack);
    expect(vms.filter((v) => v.state === 'Running' && v.image === 'ubuntu-22.04').map((v) => v.address).sort()).toEqual(
      Array.from({ length: COUNT }, (_, i) => `web/${i}`).sort(),
    );
    // Across the failed apply and the resumed one, never more than 3 members out at once.
    const t = timeline(await world.record.history(world.stack), new Set([p.id, again.id]), before);
    expect(t.maxOut).toBeLessThanOrEqual(3);
  }, 180_000);

  it('a mandatory max-disruption of 25% shapes a fleet-wide image change into waves of 25% instead of blocking it', async () => {
    const pack = withDisruption(world.pack, 'mandatory', 0.25);
    const p = await plan(world, pack, web('ubuntu-24.04', {}));
    expect(p.blocked).toBe(false);
    expect(p.policy.violations.filter((v) => v.policy === 'max-disruption')).toEqual([]);
    expect(p.rollouts![0]).toMatchObject({ maxUnavailable: 3, maxSurge: 0 });
    expect(p.rollouts![0].waves.map((w) => w.members.length)).toEqual([3, 3, 3, 3]);
    // A spec asking for more is lowered to what the rule allows.
    const wide = await plan(world, pack, web('ubuntu-24.04', { maxUnavailable: '50%' }));
    expect(wide.blocked).toBe(false);
    expect(wide.rollouts![0].maxUnavailable).toBe(3);
    expect(wide.rollouts![0].reason).toMatch(/lowered to 3 by mandatory max-disruption/);
    const before = await snapshot(world);
    const result = await apply(world, p);
    expect(result).toMatchObject({ failed: [], succeeded: COUNT });
    expect(timeline(await world.record.history(world.stack), new Set([p.id]), before).maxOut).toBe(3);
  }, 120_000);

  it('resuming a surge rollout whose new VMs failed deletes each old VM only once its new VM runs', async () => {
    const settings: RolloutSpec = { maxUnavailable: 0, maxSurge: 2, failureThreshold: 1 };
    const p = await plan(world, world.pack, web('rhel-9', settings));
    expect(p.changes.every((c) => c.action === 'replace' && c.replaceOrder === 'create-before-delete')).toBe(true);
    const before = await snapshot(world);
    const driver = world.dc('miami').driver;
    const result = await apply(world, p, (e) => {
      if (e.type === 'wave-start' && e.wave === 1) driver.setFaults({ failCalls: ['createVm'] });
    });
    const wave1 = [...p.rollouts![0].waves[0].members].sort();
    expect(result.failed.map((f) => f.address).sort()).toEqual(wave1);

    // Wave 1's old VMs are deposed and still Running; the next plan deletes them and brings their new VMs back.
    const again = await plan(world, world.pack, web('rhel-9', settings));
    expect(again.changes.filter((c) => c.deposed).map((c) => c.address).sort()).toEqual(wave1);
    expect(again.rollouts![0].waves[0].returning).toEqual(wave1);

    // The fault still there: the retries fail again (and wave 1's surge replaces), and the old VMs keep serving.
    const stillFailing = await apply(world, again);
    expect(stillFailing.failed.map((f) => f.address)).toEqual(expect.arrayContaining(wave1));
    const serving = new Set((await world.record.listVms(world.stack)).filter((v) => v.state === 'Running').map((v) => v.address));
    expect(serving.size).toBe(COUNT);

    driver.setFaults({});
    const last = await plan(world, world.pack, web('rhel-9', settings));
    const resumed = await apply(world, last);
    expect(resumed).toMatchObject({ failed: [], notStarted: 0 });
    const vms = await world.record.listVms(world.stack);
    expect(vms.filter((v) => v.state === 'Running' && v.image === 'rhel-9')).toHaveLength(COUNT);
    // Across the three applies every member kept a Running VM, and no more than maxSurge VMs were added (the surge
    // promise): a resumed member's old VM, deposed beside its new one, holds a surge place until it is deleted.
    const t = timeline(await world.record.history(world.stack), new Set([p.id, again.id, last.id]), before);
    expect(t.minRunning).toBe(COUNT);
    expect(t.maxOut).toBe(0);
    expect(t.maxVms).toBe(COUNT + 2);
  }, 180_000);

  it('an apply interrupted as wave 2 starts is resumed by the next plan from wave 2 on, never more than 3 members out', async () => {
    const settings: RolloutSpec = { maxUnavailable: 3, failureThreshold: 2 };
    const p = await plan(world, world.pack, web('ubuntu-24.04', settings));
    expect(p.rollouts![0].waves).toHaveLength(4);
    const before = await snapshot(world);
    const stop = new AbortController();
    const lifecycle = lifecycleData(world.pack.lifecycle);
    const providers = new Map(
      [...world.dcs].map(([dc, d]) => [dc, new ConnectedProvider({ dataCenter: dc, url: 'http://127.0.0.1:1', tokenEnv: '', lifecycle }, d.client)]),
    );
    const result = await applyPlan({
      plan: p,
      record: world.record,
      providers,
      owners: { web: 'team-a' },
      parallelism: 10,
      signal: stop.signal,
      onEvent: (e) => {
        // Ctrl-C as wave 2 starts, before any of its members took a slot.
        if (e.type === 'wave-start' && e.wave === 2) stop.abort();
      },
    });
    const wave = (n: number) => p.rollouts![0].waves[n - 1].members;
    expect(result).toMatchObject({ failed: [], succeeded: 3, notStarted: 9, interrupted: true });
    expect(result.rollouts[0].stopped).toEqual({ reason: 'the apply was interrupted', notStarted: [...wave(2), ...wave(3), ...wave(4)] });

    // The next plan changes only the 9 members not yet done, in 3 waves of 3: nothing failed, nothing to bring back.
    const again = await plan(world, world.pack, web('ubuntu-24.04', settings));
    expect(again.changes.map((c) => c.address).sort()).toEqual([...wave(2), ...wave(3), ...wave(4)].sort());
    expect(again.rollouts![0]).toMatchObject({ failureThreshold: 2 });
    expect(again.rollouts![0].waves.map((w) => [w.members.length, w.returning])).toEqual([
      [3, undefined],
      [3, undefined],
      [3, undefined],
    ]);
    const resumed = await apply(world, again);
    expect(resumed).toMatchObject({ failed: [], succeeded: 9, notStarted: 0 });
    const vms = await world.record.listVms(world.stack);
    expect(vms.filter((v) => v.state === 'Running' && v.image === 'ubuntu-24.04')).toHaveLength(COUNT);
    expect(timeline(await world.record.history(world.stack), new Set([p.id, again.id]), before).maxOut).toBe(3);
  }, 180_000);
});

/**
 * A data center's provider over its real DMZ client that, once a member's
 * create has every step answered ok (its new VM Running and ready in the
 * record), moves that VM on in the record when the member is `victim`: as
 * its DMZ client would, told the VM stopped after it was ready.
 */
class StoppingAfterReady implements MemberProvider {
  victim: string | undefined;
  constructor(
    private readonly inner: ConnectedProvider,
    private readonly record: FleetRecord,
  ) {}
  get dataCenter() {
    return this.inner.dataCenter;
  }
  get lanes() {
    return this.inner.lanes;
  }
  async create(inputs: VmInputs, planned?: PlannedCall) {
    const r = await this.inner.create(inputs, planned);
    if (`${inputs.fleet}/${inputs.index}` === this.victim) {
      const vm = (await this.record.getVm(planned!.vmId!))!;
      await this.record.transitionVm(vm.id, vm.version, 'BootFailed', { actor: `dmz-client:${this.dataCenter}`, detail: 'the VM stopped after it was ready' });
    }
    return r;
  }
  update(id: string, olds: VmOutputs, news: VmInputs, planned?: PlannedCall) {
    return this.inner.update(id, olds, news, planned);
  }
  delete(id: string, props: VmOutputs, planned?: PlannedCall) {
    return this.inner.delete(id, props, planned);
  }
}

// docs/rollouts.md, "Apply" item 1: a member whose VM is not in its planned state once its steps answered ok
// "counts as failed". The rollout counted it so, the apply did not: result.failed empty, the summary "0 failed", the
// plan recorded `succeeded`, and `fleet apply` exited 0 under a rollout line saying "1 failed" (or, the rollout
// stopped by it, exited 1 with the plan still recorded `succeeded`).
describe('a rollout member not in its planned state after its steps answered ok', () => {
  let world: TestWorld;
  let providers: Map<string, StoppingAfterReady>;
  const fleet = (image: string, rollout: RolloutSpec): LoadedFleet => {
    const f = makeFleet('web', { count: 4, image, placement: { dataCenters: ['miami'] }, rollout });
    return { ...f, specHash: specHash(f) };
  };
  const run = (p: PlanDocument, victim: string, events: ApplyEvent[]) => {
    for (const pr of providers.values()) pr.victim = victim;
    return applyPlan({ plan: p, record: world.record, providers, owners: { web: 'team-a' }, parallelism: 10, onEvent: (e) => events.push(e) });
  };
  const recorded = async (id: string) => (await world.record.listPlans(world.stack, { id, limit: 1 }))[0]?.result;
  beforeAll(async () => {
    world = await startTestWorld({ dataCenters: ['miami'], sim: { latencyMs: 1, bootMs: 1 } });
    const lifecycle = lifecycleData(world.pack.lifecycle);
    providers = new Map(
      [...world.dcs].map(([dc, d]) => [dc, new StoppingAfterReady(new ConnectedProvider({ dataCenter: dc, url: 'http://127.0.0.1:1', tokenEnv: '', lifecycle }, d.client), world.record)]),
    );
    expect(await run(await plan(world, world.pack, fleet('ubuntu-22.04', {})), '', [])).toMatchObject({ failed: [], succeeded: 4 });
  }, 120_000);
  afterAll(async () => {
    await world?.close();
  });

  it('counts it failed with apply.member-unhealthy naming the VM and its state; the summary, the record and the rollout agree', async () => {
    // 2 waves of 2; failureThreshold 2: the rollout goes on past web/0 (which keeps one of the 2 places).
    const p = await plan(world, world.pack, fleet('ubuntu-24.04', { maxUnavailable: 2, failureThreshold: 2 }));
    expect(p.rollouts![0].waves.map((w) => w.members)).toEqual([['web/0', 'web/1'], ['web/2', 'web/3']]);
    const events: ApplyEvent[] = [];
    const result = await run(p, 'web/0', events);
    const vm = (await world.record.listVms(world.stack)).find((v) => v.address === 'web/0')!;
    expect(vm.state).toBe('BootFailed');
    expect(result.failed).toEqual([
      {
        address: 'web/0',
        dataCenter: 'miami',
        action: 'replace',
        step: 'the health check',
        cause: 'unhealthy',
        diagnostic: expect.objectContaining({
          code: 'apply.member-unhealthy',
          address: 'web/0',
          detail: `the health check in miami: every step of web/0 was answered ok, but the record holds its VM ${vm.id} in BootFailed, not Running as planned.`,
        }),
      },
    ]);
    expect(result).toMatchObject({ succeeded: 3, stepsFailed: 0, notStarted: 0, interrupted: false });
    expect(result.rollouts).toEqual([expect.objectContaining({ fleet: 'web', wavesRun: 2, failed: ['web/0'], succeeded: ['web/1', 'web/2', 'web/3'] })]);
    expect(result.rollouts[0].stopped).toBeUndefined();
    expect(events.filter((e) => e.type === 'member' && e.address === 'web/0')).toEqual([expect.objectContaining({ status: 'failed', detail: result.failed[0].diagnostic.detail })]);
    expect(events.at(-1)).toMatchObject({ type: 'summary', succeeded: 3, failed: 1 });
    expect(await recorded(p.id)).toBe('failed');
  }, 120_000);

  it('one that stops its rollout: the plan is recorded failed, not succeeded', async () => {
    // web/0 is BootFailed: brought back in wave 1 (failureThreshold 1), and found stopped again after its steps.
    const p = await plan(world, world.pack, fleet('rhel-9', { maxUnavailable: 1, failureThreshold: 1 }));
    expect(p.rollouts![0].waves.map((w) => [...w.members, ...(w.returning ?? [])])).toEqual([['web/0'], ['web/1'], ['web/2'], ['web/3']]);
    const events: ApplyEvent[] = [];
    const result = await run(p, 'web/0', events);
    expect(result.failed.map((f) => [f.address, f.diagnostic.code])).toEqual([['web/0', 'apply.member-unhealthy']]);
    expect(result.rollouts[0].stopped?.reason).toBe('1 failed member (web/0) reached failureThreshold 1');
    expect(events.at(-1)).toMatchObject({ type: 'summary', succeeded: 0, failed: 1 });
    expect(await recorded(p.id)).toBe('failed');
  }, 120_000);
});

/** Repeatable cases (mulberry32, engine/model/seeded-random.ts). */
const rng = (seed: number): (() => number) => seededRandom(seed).next;

type Kind = 'old' | 'out' | 'deposed' | 'leftover' | 'gone';

/**
 * A resumed rollout as a stopped one leaves it: per member `old` (Running
 * its old image), `out` (BootFailed) or `deposed` (its surge replace failed:
 * the old VM deposed and Running, the new one CreateFailed), or `gone`
 * (Running its old image past the count: the plan deletes it; last only).
 * Planned from
 * those rows, its waves run over a fake member runner where `failing`
 * members fail; returns what broke the settings as a member started: more
 * than maxUnavailable members out of Running (those it takes out, members
 * out already, failed ones still out), or more than maxSurge extra VMs
 * (surge VMs, and a deposed VM beside its member's new one).
 */
async function runFake(kinds: readonly Kind[], rollout: RolloutSpec, failing: ReadonlySet<string>, seed = 0) {
  const f = makeFleet('web', { count: kinds.filter((k) => k !== 'gone').length, image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] }, rollout });
  const rows = kinds.flatMap((kind, i) => {
    const old = { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old' };
    if (kind === 'out') return [vmRow(f, i, { dataCenter: 'miami', state: 'BootFailed' })];
    if (kind === 'deposed') return [vmRow(f, i, { ...old, id: `old-${i}`, deposed: true }), vmRow(f, i, { dataCenter: 'miami', state: 'CreateFailed' })];
    // Its new VM runs; deleting its old one failed half-way (a powerOff fault), so the old VM is left deposed.
    if (kind === 'leftover') return [vmRow(f, i, { ...old, id: `old-${i}`, deposed: true, state: 'ShuttingDown' }), vmRow(f, i, { dataCenter: 'miami' })];
    return [vmRow(f, i, old)];
  });
  const p = computePlan({
    stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'], { vms: 100 })]),
    pack: makePack(),
    fleets: [f],
    record: rows,
    fleetVersions: {},
    options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
    policy: noRulesPolicy,
    id: `fake-${seed}`,
  });
  const broke: string[] = [];
  const out = new Set(kinds.flatMap((k, i) => (k === 'out' ? [`web/${i}`] : [])));
  const extra = new Set(kinds.flatMap((k, i) => (k === 'deposed' || k === 'leftover' || k === 'gone' ? [`web/${i}`] : [])));
  const ro = p.rollouts?.[0];
  if (!ro) return { plan: p, broke, result: undefined };
  const returning = new Set(ro.waves.flatMap((w) => w.returning ?? []));
  const result = await runWaves(p.changes, {
    plan: p,
    run: async (c) => {
      const surge = c.action === 'replace' && c.replaceOrder === 'create-before-delete';
      if (!c.deposed && c.action !== 'delete' && !returning.has(c.address)) {
        (surge ? extra : out).add(c.address);
        if (surge && extra.size > ro.maxSurge) broke.push(`${c.address} started with ${extra.size} extra VMs (maxSurge ${ro.maxSurge}): ${[...extra].join(' ')}`);
        if (!surge && out.size > ro.maxUnavailable) broke.push(`${c.address} started with ${out.size} out (maxUnavailable ${ro.maxUnavailable}): ${[...out].join(' ')}`);
      }
      await Promise.resolve();
      if (c.deposed || c.action === 'delete') {
        // A delete takes a while (its VM shuts down first): more turns of the event loop than a member's run.
        for (let i = 0; i < 50; i++) await Promise.resolve();
        // `web/N:old` in `failing`: its delete fails, and the old VM stays.
        if (failing.has(`${c.address}:old`)) return { ok: false };
        extra.delete(c.address);
        return { ok: true };
      }
      if (failing.has(c.address)) return { ok: false };
      out.delete(c.address);
      // A surge replace deletes its old VM itself; a returning member's old VM goes by a deposed delete of its own.
      if (!returning.has(c.address)) extra.delete(c.address);
      return { ok: true };
    },
    emit: () => undefined,
    interrupted: () => false,
  });
  return { plan: p, broke, result };
}

describe('a rollout while a member is missing (no VM for its address)', () => {
  // A lost member is out of service until its create runs. The create ran beside wave 1, which still took its
  // full maxUnavailable: 4 of 12 members out of Running at once with maxUnavailable 3.
  let world: TestWorld;
  beforeAll(async () => {
    world = await startTestWorld({ dataCenters: ['miami'], sim: { latencyMs: 1, bootMs: 1 } });
    const created = await apply(world, await plan(world, world.pack, web('ubuntu-22.04', {})));
    expect(created).toMatchObject({ failed: [], succeeded: COUNT });
  }, 120_000);
  afterAll(async () => {
    await world?.close();
  });

  it('creates it in wave 1, holding one of its 3 places: never more than 3 members out of Running', async () => {
    // The record forgets web/5 as `fleet state rm` does: the member has no VM.
    const lost = (await world.record.findVm(world.stack, 'web/5'))!;
    await world.record.transitionVm(lost.id, lost.version, lost.state, { actor: 'test', outcome: 'removed', detail: 'lost' }, { retire: true });
    const p = await plan(world, world.pack, web('ubuntu-24.04', { maxUnavailable: 3 }));
    expect(p.blocked).toBe(false);
    expect(p.rollouts![0].waves.map((w) => [w.members.length, w.unavailable, w.returning ?? []])).toEqual([
      [2, 2, ['web/5']],
      [3, 3, []],
      [3, 3, []],
      [3, 3, []],
    ]);
    const before = await snapshot(world);
    const result = await apply(world, p);
    expect(result).toMatchObject({ failed: [], succeeded: COUNT, notStarted: 0 });
    const t = timeline(await world.record.history(world.stack), new Set([p.id]), before);
    expect(t.maxOut).toBe(3);
    const vms = await world.record.listVms(world.stack);
    expect(vms.filter((v) => v.state === 'Running' && v.image === 'ubuntu-24.04')).toHaveLength(COUNT);
  }, 120_000);
});

describe('runWaves: failures and resumed rollouts never exceed maxUnavailable or maxSurge (fake members)', () => {
  const failing = (...idx: number[]) => new Set(idx.map((i) => `web/${i}`));
  it.each([
    {
      // A failure in a wave's first group did not shrink its next group: web/3 went out beside failed web/0 and web/2.
      name: 'a failure in a wave holds its place for the rest of that wave',
      kinds: ['old', 'old', 'old', 'old', 'old', 'old'] as Kind[],
      rollout: { maxUnavailable: 2, failureThreshold: 5 },
      failing: failing(0, 2),
      stoppedBefore: ['web/3', 'web/4', 'web/5'],
    },
    {
      // A returning member that failed again gave its place back: wave 2 took two more out beside web/0 and web/1.
      name: 'a member brought back that fails again keeps its unavailable place',
      kinds: ['out', 'out', 'old', 'old', 'old', 'old'] as Kind[],
      rollout: { maxUnavailable: 2, failureThreshold: 3 },
      failing: failing(0, 1),
      stoppedBefore: ['web/2', 'web/3', 'web/4', 'web/5'],
    },
    {
      // Its deposed old VM is an extra VM: it held no surge place, so wave 1 surged two more beside both; and the
      // next wave's surge VMs started while its delete was still running.
      name: 'a member whose surge replace failed holds a surge place while its old VM lives',
      kinds: ['deposed', 'deposed', 'old', 'old', 'old', 'old'] as Kind[],
      rollout: { maxUnavailable: 0, maxSurge: 2, failureThreshold: 3 },
      failing: failing(),
      stoppedBefore: undefined,
    },
    {
      name: 'and keeps it when it fails again',
      kinds: ['deposed', 'old', 'old', 'old', 'old', 'old'] as Kind[],
      rollout: { maxUnavailable: 0, maxSurge: 1, failureThreshold: 3 },
      failing: failing(0),
      stoppedBefore: ['web/1', 'web/2', 'web/3', 'web/4', 'web/5'],
    },
    {
      // Its old VM was deleted beside wave 1 as an unwaved delete, holding no place: wave 1's surge VM was created
      // beside it, 2 VMs beyond the fleet's with maxSurge 1.
      name: "an old VM left deposed beside its member's running new VM holds a surge place until it is deleted",
      kinds: ['leftover', 'old', 'old', 'old'] as Kind[],
      rollout: { maxUnavailable: 0, maxSurge: 1, failureThreshold: 3 },
      failing: failing(),
      stoppedBefore: undefined,
    },
    {
      name: 'and for good when its delete fails',
      kinds: ['leftover', 'old', 'old', 'old'] as Kind[],
      rollout: { maxUnavailable: 0, maxSurge: 1, failureThreshold: 3 },
      failing: new Set(['web/0:old']),
      stoppedBefore: ['web/1', 'web/2', 'web/3'],
    },
    {
      // Count 5 to 3 beside the image change: web/3 and web/4 were deleted beside wave 1 while it created its 2 surge
      // VMs, 4 VMs beyond the fleet's with maxSurge 2 (and an owner quota sized for count + maxSurge vetoed them).
      name: 'a member a lower count deletes holds a surge place until it is gone',
      kinds: ['old', 'old', 'old', 'gone', 'gone'] as Kind[],
      rollout: { maxUnavailable: 0, maxSurge: 2, failureThreshold: 3 },
      failing: failing(),
      stoppedBefore: undefined,
    },
    {
      name: 'and for good when its delete fails',
      kinds: ['old', 'old', 'gone'] as Kind[],
      rollout: { maxUnavailable: 0, maxSurge: 1, failureThreshold: 3 },
      failing: new Set(['web/2:old']),
      stoppedBefore: ['web/0', 'web/1'],
      reason: /1 failed member \(web\/2, not deleted\) holds every place maxUnavailable 0 and maxSurge 1 allow/,
    },
    {
      // Its member was done once the delete ended, failed or not: the next wave surged beside the old VM still there.
      name: "a member brought back whose old VM's delete fails keeps its surge place",
      kinds: ['deposed', 'old', 'old', 'old'] as Kind[],
      rollout: { maxUnavailable: 0, maxSurge: 1, failureThreshold: 3 },
      failing: new Set(['web/0:old']),
      stoppedBefore: ['web/1', 'web/2', 'web/3'],
    },
  ])('$name', async (c) => {
    const { broke, result } = await runFake(c.kinds, c.rollout, c.failing);
    expect(broke).toEqual([]);
    expect(result!.reports[0].stopped?.notStarted).toEqual(c.stoppedBefore);
    if (c.stoppedBefore) expect(result!.reports[0].stopped!.reason).toMatch(('reason' in c && c.reason) || /holds? every place/);
  });

  it('ends when a member of a fleet that does not roll out is brought back beside its serving old VM, and deletes that VM', async () => {
    // One member, its surge replace's new VM failed to boot: the retry is no rollout's (nothing else of the fleet
    // changes). The gate of its old VM was settled `failed` as soon as the (no) rollouts ended, while the retry
    // still ran: the old VM's delete never ran, and the retry waited for it for ever (`fleet apply` hung).
    const f = makeFleet('web', { count: 1, image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] } });
    const p = computePlan({
      stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'], { vms: 100 })]),
      pack: makePack(),
      fleets: [f],
      record: [vmRow(f, 0, { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old', id: 'old-0', deposed: true }), vmRow(f, 0, { dataCenter: 'miami', state: 'BootFailed' })],
      fleetVersions: {},
      options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
      policy: noRulesPolicy,
      id: 'no-rollout',
    });
    expect(p.rollouts ?? []).toEqual([]);
    const ran: string[] = [];
    const done = runWaves(p.changes, {
      plan: p,
      run: async (c) => {
        for (let i = 0; i < 20; i++) await Promise.resolve();
        ran.push(`${c.address}${c.deposed ? ' (old VM)' : ''}`);
        return { ok: true };
      },
      emit: () => undefined,
      interrupted: () => false,
    }).then(() => 'ended');
    // Bounded by turns of the event loop, not by time: each run above takes 20 microtasks.
    const stuck = (async () => {
      for (let i = 0; i < 1000; i++) await new Promise((res) => setImmediate(res));
      return 'stuck';
    })();
    expect(await Promise.race([done, stuck])).toBe('ended');
    expect(ran).toEqual(['web/0', 'web/0 (old VM)']);
  });

  it('stops within a wave once failureThreshold is reached: its next group never starts', async () => {
    // Waves as a planner could make them with data centers of different room: wave 1 web/0 by a surge VM;
    // wave 2 web/1 out of service, web/2 and web/3 by surge VMs. maxUnavailable 1, maxSurge 2, failureThreshold 2.
    // web/0 fails (it holds a surge place), so wave 2 runs as [web/1, web/2] then [web/3]; web/1 fails too, the
    // threshold is reached, and web/3 used to be replaced all the same.
    const { plan: p } = await runFake(['old', 'old', 'old', 'old'], { maxUnavailable: 1, maxSurge: 2, failureThreshold: 2 }, new Set());
    const shape: Record<string, [number, 'create-before-delete' | 'delete-before-create']> = {
      'web/0': [1, 'create-before-delete'],
      'web/1': [2, 'delete-before-create'],
      'web/2': [2, 'create-before-delete'],
      'web/3': [2, 'create-before-delete'],
    };
    for (const c of p.changes) [c.wave, c.replaceOrder] = shape[c.address];
    p.rollouts![0].waves = [
      { wave: 1, members: ['web/0'], unavailable: 0, surge: 1 },
      { wave: 2, members: ['web/1', 'web/2', 'web/3'], unavailable: 1, surge: 2 },
    ];
    const started: string[] = [];
    const failing = new Set(['web/0', 'web/1']);
    const result = await runWaves(p.changes, {
      plan: p,
      run: async (c) => {
        started.push(c.address);
        await Promise.resolve();
        return { ok: !failing.has(c.address) };
      },
      emit: () => undefined,
      interrupted: () => false,
    });
    expect(started).toEqual(['web/0', 'web/1', 'web/2']);
    expect(result.reports[0].stopped).toEqual({ reason: '2 failed members (web/0, web/1) reached failureThreshold 2', notStarted: ['web/3'] });
  });

  it('holds over 300 generated resumed rollouts and failure sets', async () => {
    const next = rng(29);
    const int = (n: number) => Math.floor(next() * n);
    let checked = 0;
    for (let k = 0; k < 300; k++) {
      const count = 2 + int(12);
      const rollout: RolloutSpec = { maxUnavailable: int(4), maxSurge: int(3), failureThreshold: 1 + int(count) };
      if (rollout.maxUnavailable === 0 && rollout.maxSurge === 0) rollout.maxSurge = 1;
      const kinds = Array.from({ length: count }, () => (['out', 'deposed', 'old', 'old', 'old'] as const)[int(5)]);
      const f = new Set(kinds.flatMap((_, i) => (next() < 0.3 ? [`web/${i}`] : [])));
      const { plan: p, broke } = await runFake(kinds, rollout, f, k);
      if (p.rollouts) checked++;
      expect(broke, `case ${k}: ${JSON.stringify(rollout)}, ${kinds.join(' ')}, failing ${[...f].join(' ')}`).toEqual([]);
    }
    expect(checked).toBeGreaterThan(250);
  });
});

describe('runWaves: a wave whose one kind of place is full still runs its members of the other kind (fake members)', () => {
  type Order = 'create-before-delete' | 'delete-before-create';
  const SURGE: Order = 'create-before-delete';
  const OUT: Order = 'delete-before-create';
  /**
   * Runs `shape` (member → [wave, how it is replaced]) as one rollout, each member failing when in `failing`.
   * Returns the members started in order, the report, and each limit broken (a member started while more
   * members than maxUnavailable were out, or more surge VMs than maxSurge existed).
   */
  async function runShaped(shape: readonly [number, Order][], limits: { maxUnavailable: number; maxSurge: number; failureThreshold: number }, failing: ReadonlySet<string>) {
    const { plan: p } = await runFake(
      shape.map(() => 'old'),
      { maxUnavailable: Math.max(1, limits.maxUnavailable), maxSurge: limits.maxSurge, failureThreshold: limits.failureThreshold },
      new Set(),
    );
    const ro = p.rollouts![0];
    Object.assign(ro, limits);
    for (const c of p.changes) [c.wave, c.replaceOrder] = shape[Number(c.address.split('/')[1])];
    const waves = Math.max(...shape.map(([w]) => w));
    ro.waves = Array.from({ length: waves }, (_, i) => {
      const members = shape.flatMap(([w], m) => (w === i + 1 ? [`web/${m}`] : []));
      const surge = shape.filter(([w, o]) => w === i + 1 && o === SURGE).length;
      return { wave: i + 1, members, unavailable: members.length - surge, surge };
    }).filter((w) => w.members.length > 0);
    const started: string[] = [];
    const out = new Set<string>();
    const extra = new Set<string>();
    const broke: string[] = [];
    const result = await runWaves(p.changes, {
      plan: p,
      run: async (c) => {
        started.push(c.address);
        const set = c.replaceOrder === SURGE ? extra : out;
        set.add(c.address);
        if (out.size > limits.maxUnavailable) broke.push(`${c.address}: ${out.size} out (maxUnavailable ${limits.maxUnavailable})`);
        if (extra.size > limits.maxSurge) broke.push(`${c.address}: ${extra.size} surge VMs (maxSurge ${limits.maxSurge})`);
        await Promise.resolve();
        // A failed member stays out (or keeps its surge VM beside its old one) for the rest of the apply.
        if (failing.has(c.address)) return { ok: false };
        set.delete(c.address);
        return { ok: true };
      },
      emit: () => undefined,
      interrupted: () => false,
    });
    return { started, report: result.reports[0], broke };
  }

  it.each([
    {
      // web/0's failed surge replace holds the one surge place: the whole rollout stopped before wave 2, web/1
      // (out of service, with its place free) untouched with it.
      name: 'a failed surge member holds the surge place: the wave members that go out of service still go',
      shape: [
        [1, SURGE],
        [2, OUT],
        [2, SURGE],
      ] as [number, Order][],
      failing: ['web/0'],
      started: ['web/0', 'web/1'],
      reason: '1 failed member (web/0) holds every place maxSurge 1 allows',
      notStarted: ['web/2'],
    },
    {
      // The same with the surge member first in its wave: the group ended at it, taking nobody.
      name: 'whatever the order of the members in the wave',
      shape: [
        [1, SURGE],
        [2, SURGE],
        [2, OUT],
        [3, OUT],
      ] as [number, Order][],
      failing: ['web/0'],
      started: ['web/0', 'web/2'],
      reason: '1 failed member (web/0) holds every place maxSurge 1 allows',
      notStarted: ['web/1', 'web/3'],
    },
    {
      name: 'and the other way round: a failed member out of service holds the place maxUnavailable allows',
      shape: [
        [1, OUT],
        [2, OUT],
        [2, SURGE],
      ] as [number, Order][],
      failing: ['web/0'],
      started: ['web/0', 'web/2'],
      reason: '1 failed member (web/0) holds every place maxUnavailable 1 allows',
      notStarted: ['web/1'],
    },
    {
      name: 'both kinds held: nothing of the wave starts',
      shape: [
        [1, OUT],
        [1, SURGE],
        [2, OUT],
        [2, SURGE],
      ] as [number, Order][],
      failing: ['web/0', 'web/1'],
      started: ['web/0', 'web/1'],
      reason: '2 failed members (web/0, web/1) hold every place maxUnavailable 1 and maxSurge 1 allow',
      notStarted: ['web/2', 'web/3'],
    },
  ])('$name', async ({ shape, failing, started, reason, notStarted }) => {
    const run = await runShaped(shape, { maxUnavailable: 1, maxSurge: 1, failureThreshold: 5 }, new Set(failing));
    expect(run.broke).toEqual([]);
    expect(run.started).toEqual(started);
    expect(run.report.stopped).toEqual({ reason, notStarted });
  });

  it('over 400 generated mixed waves: no limit is broken, and a member is left untouched only when no place of its kind was left (or the threshold was reached)', async () => {
    const next = rng(31);
    const int = (n: number) => Math.floor(next() * n);
    let leftForPlaces = 0;
    let ranPast = 0;
    for (let k = 0; k < 400; k++) {
      const count = 2 + int(10);
      const limits = { maxUnavailable: int(3), maxSurge: int(3), failureThreshold: 1 + int(count) };
      if (limits.maxUnavailable === 0) limits.maxSurge = Math.max(1, limits.maxSurge);
      if (limits.maxSurge === 0) limits.maxUnavailable = Math.max(1, limits.maxUnavailable);
      // Waves as the planner makes them: each within maxUnavailable and maxSurge.
      const shape: [number, Order][] = [];
      let wave = 1;
      const used = { out: 0, surge: 0 };
      for (let m = 0; m < count; m++) {
        let order: Order = next() < 0.5 ? SURGE : OUT;
        if ((order === SURGE ? limits.maxSurge : limits.maxUnavailable) === 0) order = order === SURGE ? OUT : SURGE;
        const kind = order === SURGE ? 'surge' : 'out';
        if (used[kind] >= (order === SURGE ? limits.maxSurge : limits.maxUnavailable)) {
          wave++;
          used.out = used.surge = 0;
        }
        used[kind]++;
        shape.push([wave, order]);
      }
      const failing = new Set(shape.flatMap((_, m) => (next() < 0.3 ? [`web/${m}`] : [])));
      const what = `case ${k}: ${JSON.stringify(limits)}, ${shape.map(([w, o]) => `${w}${o === SURGE ? 's' : 'o'}`).join(' ')}, failing ${[...failing].join(' ')}`;
      const run = await runShaped(shape, limits, failing);
      expect(run.broke, what).toEqual([]);
      const stopped = run.report.stopped;
      if (!stopped) {
        expect([...run.started].sort(), what).toEqual(shape.map((_, m) => `web/${m}`).sort());
        continue;
      }
      if (/reached failureThreshold/.test(stopped.reason)) continue;
      leftForPlaces++;
      // Stopped for want of places: each member of the first wave left untouched needs a kind whose places
      // failed members all hold.
      const failed = new Set(run.report.failed);
      const held = { out: 0, surge: 0 };
      for (const a of failed) held[shape[Number(a.split('/')[1])][1] === SURGE ? 'surge' : 'out']++;
      const firstLeft = Math.min(...stopped.notStarted.map((a) => shape[Number(a.split('/')[1])][0]));
      for (const a of stopped.notStarted) {
        const [w, order] = shape[Number(a.split('/')[1])];
        if (w !== firstLeft) continue;
        if (order === SURGE) expect(held.surge, `${what}: ${a} left with a surge place free`).toBeGreaterThanOrEqual(limits.maxSurge);
        else expect(held.out, `${what}: ${a} left with a place out of service free`).toBeGreaterThanOrEqual(limits.maxUnavailable);
      }
      if (run.started.some((a) => shape[Number(a.split('/')[1])][0] === firstLeft)) ranPast++;
    }
    // The generator reaches stops for want of places, some of them in a wave that ran its other kind.
    expect(leftForPlaces).toBeGreaterThan(20);
    expect(ranPast).toBeGreaterThan(5);
  });
});
