import { describe, expect, it, vi } from 'vitest';
import { appliedPlans, createTestDatabase, memoryRecord, pgCutProxy, testPostgresUrl } from '../record/testing.ts';
import { openRecord } from '../record/open.ts';
import type { FleetRecord, JournalRow, LockHandle } from '../record/types.ts';
import { retryingRecord } from './record-retry.ts';
import { CARRIED_OUT_DETAIL, closeInterrupted } from './interrupted.ts';
import { computePlan } from '../plan/planner.ts';
import { noRulesPolicy } from '../plan/policy-port.ts';
import { dataCenter, makeFleet, makePack, makeStack } from '../plan/test-support.ts';
import type { PlanDocument } from '../plan/types.ts';
import type { BatchStep, StepResult } from '../../protocol/index.ts';
import { startTestWorld } from '../../providers/testing.ts';
import { ConnectedProvider, lifecycleData, type DmzConnection, type MemberProvider, type PlannedCall, type VmInputs, type VmOutputs } from '../../providers/provider.ts';
import { ApplyStoppedError, applyPlan, lockFleets, proposedVmId, recordFleets, stepCount, type ApplyEvent } from './executor.ts';
import { FleetError, REASON_LIMIT, formatDiagnostics } from '../diags/index.ts';
import { NOT_SENT_DETAIL, NOT_SENT_INTERRUPTED_DETAIL } from './member.ts';

const dcs = [dataCenter('miami', 25.76, -80.19, ['general']), dataCenter('richmond', 37.54, -77.43, ['general'])];

function plan(count: number): PlanDocument {
  return computePlan({
    stack: makeStack(dcs),
    pack: makePack(),
    fleets: [makeFleet('web', { count, placement: { strategy: 'spread' } })],
    record: [],
    fleetVersions: {},
    options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
    policy: noRulesPolicy,
    id: `plan-${Math.random().toString(16).slice(2)}`,
  });
}

/** A DMZ client stand-in that counts concurrent requests and can fail one member's steps. */
class FakeDmz implements DmzConnection {
  inFlight = 0;
  maxInFlight = 0;
  keys: string[] = [];
  /** The lane each run named. */
  runLanes: unknown[] = [];
  constructor(
    readonly dc: string,
    private readonly failVm?: string,
    readonly lanes?: boolean,
  ) {}
  private async answer(vmId: string, key: string): Promise<StepResult> {
    this.keys.push(key);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    await new Promise((r) => setTimeout(r, 2));
    this.inFlight--;
    const failed = vmId === this.failVm;
    return {
      requestId: key,
      decision: 'approved',
      reason: 'ok',
      outcome: failed ? 'failed' : 'ok',
      ...(failed ? { error: { code: 'failed', message: 'sim says no' } } : {}),
    };
  }
  /** Like DmzHttpClient.run: steps in order, stopping after the first not ok. */
  run: DmzConnection['run'] = async (steps, onStep, opts) => {
    this.runLanes.push(opts?.lane);
    for (let k = 0; k < steps.length; k++) {
      const r = await this.one(steps[k]);
      onStep(k, r);
      if (r.outcome !== 'ok') return;
    }
  };
  one(step: BatchStep): Promise<StepResult> {
    return this.answer(step.op === 'create' ? step.body.vm.id : step.vmId, step.body.idempotencyKey);
  }
  getVm(): Promise<undefined> {
    throw new Error('not used by apply');
  }
  listVms(): Promise<never[]> {
    throw new Error('not used by apply');
  }
}

/** Each data center's provider over its stand-in DMZ client, as fleet apply builds them over real ones. */
function over(conns: ReadonlyMap<string, DmzConnection>): Map<string, ConnectedProvider> {
  const lifecycle = lifecycleData(makePack().lifecycle);
  return new Map([...conns].map(([dc, c]) => [dc, new ConnectedProvider({ dataCenter: dc, url: 'http://127.0.0.1:1', tokenEnv: '', lifecycle }, c)]));
}

describe('applyPlan', () => {
  it('bounds members in flight per data center by parallelism, and sends each step once in order', async () => {
    const record = await memoryRecord();
    try {
      const p = plan(12);
      const clients = new Map(dcs.map((d) => [d.name, new FakeDmz(d.name)]));
      const events: ApplyEvent[] = [];
      const result = await applyPlan({ plan: p, record, providers: over(clients), owners: { web: 'team' }, parallelism: 2, onEvent: (e) => events.push(e) });
      expect(result.failed).toEqual([]);
      expect(result.succeeded).toBe(12);
      for (const c of clients.values()) {
        expect(c.maxInFlight).toBe(2);
        expect(new Set(c.keys).size).toBe(c.keys.length);
      }
      const perVm = p.changes.map((c) => stepCount(c));
      expect(result.steps).toBe(perVm.reduce((a, b) => a + b, 0));
      // Steps of one member are journalled in order, each started before done.
      const web0 = events.filter((e) => e.type === 'step' && e.address === 'web/0');
      expect(web0.map((e) => (e.type === 'step' ? `${e.from ?? '-'}>${e.to}:${e.status}` : ''))).toEqual(
        ['->Requested', 'Requested>BeingCreated', 'BeingCreated>PoweredOff', 'PoweredOff>PoweredOn', 'PoweredOn>Starting', 'Starting>Running'].flatMap((s) => [
          `${s}:started`,
          `${s}:done`,
        ]),
      );
      expect(events.at(-1)).toMatchObject({ type: 'summary', succeeded: 12, failed: 0 });
      expect((await appliedPlans(record, p.stack)).map((x) => x.result)).toEqual(['succeeded']);
      expect(await record.listLocks(p.stack)).toEqual([]);
    } finally {
      await record.close();
    }
  });

  it('with a client that has lanes, sends as many members again ahead, each run naming the apply\'s lane and its parallelism', async () => {
    const record = await memoryRecord();
    try {
      const p = plan(16);
      const clients = new Map(dcs.map((d) => [d.name, new FakeDmz(d.name, undefined, true)]));
      const result = await applyPlan({ plan: p, record, providers: over(clients), owners: { web: 'team' }, parallelism: 2 });
      expect(result).toMatchObject({ failed: [], succeeded: 16 });
      const lanes = [...clients.values()].flatMap((c) => c.runLanes);
      expect(lanes).toHaveLength(16);
      // One lane for the apply (each DMZ client keeps its own places), as wide as --parallelism.
      expect(new Set(lanes.map((l) => JSON.stringify(l))).size).toBe(1);
      expect(lanes[0]).toEqual({ id: expect.any(String), width: 2 });
      // The DMZ client bounds the cloud work; the executor keeps 2 more members queued there.
      for (const c of clients.values()) expect(c.maxInFlight).toBe(4);
      // Without lanes: no lane, and parallelism members in flight (the first test).
      const plain = new Map(dcs.map((d) => [d.name, new FakeDmz(d.name)]));
      await applyPlan({ plan: plan(4), record, providers: over(plain), owners: {}, parallelism: 2 });
      expect([...plain.values()].flatMap((c) => c.runLanes)).toEqual([undefined, undefined, undefined, undefined]);
    } finally {
      await record.close();
    }
  });

  it('stops starting members once its signal is aborted; the members started finish, and the plan is recorded as interrupted', async () => {
    const record = await memoryRecord();
    try {
      const p = plan(12);
      const clients = new Map(dcs.map((d) => [d.name, new FakeDmz(d.name)]));
      const stop = new AbortController();
      const events: ApplyEvent[] = [];
      const result = await applyPlan({
        plan: p,
        record,
        providers: over(clients),
        owners: { web: 'team' },
        parallelism: 2,
        signal: stop.signal,
        onEvent: (e) => {
          events.push(e);
          if (e.type === 'step' && e.status === 'done') stop.abort();
        },
      });
      // Two members in flight per data center when the first step was done: they finish, the other eight never start.
      expect(result).toMatchObject({ failed: [], succeeded: 4, notStarted: 8 });
      const started = new Set(events.flatMap((e) => (e.type === 'step' && e.status === 'started' ? [e.address] : [])));
      const finished = new Set(events.flatMap((e) => (e.type === 'member' && e.status === 'done' ? [e.address] : [])));
      expect(finished).toEqual(started);
      expect(events.at(-1)).toMatchObject({ type: 'summary', succeeded: 4, failed: 0, notStarted: 8 });
      expect((await appliedPlans(record, p.stack)).map((x) => x.result)).toEqual(['interrupted']);
      expect(await record.unfinishedSteps(p.stack)).toEqual([]);
      expect(await record.listLocks(p.stack)).toEqual([]);
    } finally {
      await record.close();
    }
  });

  it.each([
    { name: 'its `skipped` rows written', skippedLost: false },
    { name: 'its `skipped` rows lost too (the process gone: a second Ctrl-C), closed by the next apply', skippedLost: true },
  ])('interrupted (its signal) while a member\'s `started` rows are still being written: that member sends nothing, counts as not started, and the next apply goes on; $name', async ({ skippedLost }) => {
    const base = await memoryRecord();
    try {
      const p = plan(2);
      // web/0 (miami) and web/1 (richmond) start together; web/1's `started` rows are held until the test lets them go.
      let web1Writing!: () => void;
      const web1Started = new Promise<void>((r) => (web1Writing = r));
      let letWeb1!: () => void;
      const web1Let = new Promise<void>((r) => (letWeb1 = r));
      const record = new Proxy(base, {
        get(target, key) {
          if (key === 'journal') {
            return async (...a: Parameters<FleetRecord['journal']>) => {
              const first = Array.isArray(a[0]) ? (a[0] as Omit<JournalRow, 'at'>[])[0] : (a[0] as Omit<JournalRow, 'at'>);
              if (first.address === 'web/1' && first.status === 'started') {
                web1Writing();
                await web1Let;
              }
              if (skippedLost && first.address === 'web/1' && first.status === 'skipped') throw new Error('the process is gone');
              return target.journal(...a);
            };
          }
          const v = Reflect.get(target, key, target) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
      const clients = new Map(dcs.map((d) => [d.name, new GatedDmz(d.name)]));
      const stop = new AbortController();
      const events: ApplyEvent[] = [];
      const applying = applyPlan({ plan: p, record, providers: over(clients), owners: { web: 'team' }, parallelism: 1, signal: stop.signal, onEvent: (e) => events.push(e) });
      // web/0's requests are at miami (in flight); Ctrl-C while web/1's `started` rows are still on their way to the
      // record (a slow record, or one retried through an outage).
      await Promise.all([clients.get('miami')!.sent, web1Started]);
      stop.abort();
      letWeb1();
      for (const c of clients.values()) c.open();
      const result = await applying;
      expect(result).toMatchObject({ succeeded: 1, failed: [], notStarted: 1, interrupted: true });
      expect(events.at(-1)).toMatchObject({ type: 'summary', succeeded: 1, failed: 0, notStarted: 1, interrupted: true });
      // Nothing of web/1 went to richmond, nor is it told as sent.
      expect(clients.get('richmond')!.keys).toEqual([]);
      expect(events.filter((e) => (e.type === 'step' || e.type === 'member') && e.address === 'web/1')).toEqual([]);
      expect((await appliedPlans(base, p.stack)).map((x) => x.result)).toEqual(['interrupted']);
      expect(await base.listLocks(p.stack)).toEqual([]);
      const web1 = (await base.planJournal(p.id)).filter((r) => r.address === 'web/1');
      expect(web1.length).toBeGreaterThan(0);
      const open = (await base.unfinishedSteps(p.stack)).filter((st) => st.address === 'web/1');
      if (skippedLost) {
        // Left `started`: the next apply of the fleet closes them, under its lock.
        expect(open.length).toBe(stepCount(p.changes[1]));
        const next = await base.acquireLocks(p.stack, ['web'], { who: 'ci', host: 'h', pid: 2, planId: 'plan-next' });
        expect(await closeInterrupted(base, p.stack, ['web'])).toEqual({ plans: [p.id], steps: open.length, carriedOut: 0, members: ['web/1'] });
        await next.release();
        expect((await base.unfinishedSteps(p.stack)).map((st) => `${st.address} ${st.status}: ${st.detail}`)).toEqual(
          open.map(() => 'web/1 failed: interrupted: the apply stopped before this step answered'),
        );
      } else {
        expect(new Set(web1.filter((r) => r.status !== 'started').map((r) => `${r.status}: ${r.detail}`))).toEqual(new Set([`skipped: ${NOT_SENT_INTERRUPTED_DETAIL}`]));
        expect(await base.unfinishedSteps(p.stack)).toEqual([]);
      }
      // The next apply sends web/1's requests.
      const again = plan(2);
      expect(await applyPlan({ plan: again, record: base, providers: over(clients), owners: { web: 'team' }, parallelism: 1 })).toMatchObject({ succeeded: 2, notStarted: 0, interrupted: false });
      expect(clients.get('richmond')!.keys).toEqual(Array.from({ length: stepCount(again.changes[1]) }, (_, k) => `${again.id}/web/1/${k}`));
    } finally {
      await base.close();
    }
  });

  it('journals every step of a member started before its run is sent, and each done as its answer comes', async () => {
    const record = await memoryRecord();
    try {
      const p = plan(3);
      // At each step's request: the member's journal rows (last status per step).
      const atSend: [string, string[]][] = [];
      const fakes = new Map(dcs.map((d) => [d.name, new FakeDmz(d.name)]));
      const journalOf = async (address: string) => {
        const open = (await record.unfinishedSteps(p.stack)).filter((j) => j.address === address);
        return open.map((j) => `${j.seq}:${j.status}`);
      };
      const clients = new Map(
        [...fakes].map(([dc, f]): [string, DmzConnection] => [
          dc,
          {
            getVm: () => f.getVm(),
            listVms: () => f.listVms(),
            run: async (steps, onStep) => {
              for (let k = 0; k < steps.length; k++) {
                const key = steps[k].body.idempotencyKey;
                atSend.push([key, await journalOf(key.split('/').slice(1, 3).join('/'))]);
                onStep(k, await f.one(steps[k]));
              }
            },
          },
        ]),
      );
      const before = record.journalBatches;
      const result = await applyPlan({ plan: p, record, providers: over(clients), owners: {}, parallelism: 1 });
      expect(result.failed).toEqual([]);
      expect(atSend).toHaveLength(result.steps);
      for (const [key, open] of atSend) {
        const seq = Number(key.split('/').at(-1));
        // Every step from this one on is still open (`started`); those before may or may not have had their done row committed yet.
        const total = p.changes.find((c) => key.includes(`/${c.address}/`))!;
        const expected = Array.from({ length: stepCount(total) - seq }, (_, i) => `${seq + i}:started`);
        expect(open.slice(-expected.length)).toEqual(expected);
      }
      expect(await record.unfinishedSteps(p.stack)).toEqual([]);
      // Two rows per step, rows of one turn in one batch: the started rows of a member in one.
      expect(record.journalBatches - before).toBeLessThanOrEqual(result.steps + p.changes.length);
    } finally {
      await record.close();
    }
  });

  it('lets the other members go on when one fails, and reports the failure with its step and cause', async () => {
    const record = await memoryRecord();
    try {
      const p = plan(4);
      const victim = p.changes.find((c) => c.address === 'web/1')!;
      const clients = new Map(dcs.map((d) => [d.name, new FakeDmz(d.name, proposedVmId(p.id, 'web/1'))]));
      const result = await applyPlan({ plan: p, record, providers: over(clients), owners: {}, parallelism: 1 });
      expect(result.succeeded).toBe(3);
      expect(result.failed).toHaveLength(1);
      expect(result.failed[0]).toMatchObject({ address: 'web/1', dataCenter: victim.dataCenter, step: 'create Requested' });
      expect(result.failed[0].diagnostic).toMatchObject({ code: 'apply.step-failed', address: 'web/1' });
      expect(result.failed[0].diagnostic.detail).toContain('sim says no');
      const journal = await record.unfinishedSteps(p.stack);
      expect(journal.map((j) => [j.address, j.status])).toEqual([['web/1', 'failed']]);
      // Its later steps, sent with the run and journalled started, are closed (skipped): only the failed one is left.
      expect(stepCount(victim)).toBeGreaterThan(1);
      expect((await appliedPlans(record, p.stack)).map((x) => x.result)).toEqual(['failed']);
    } finally {
      await record.close();
    }
  });

  // The real client answers every step of a run or throws; a provider that returned with steps unanswered left their
  // rows `started` and counted the member done.
  it('a provider that returns from a member\'s run with steps unanswered fails that member at its first unanswered step, never counts it done', async () => {
    const record = await memoryRecord();
    try {
      const p = plan(2);
      /** Answers the first `answers` requests of each run ok, then returns without a word of the rest. */
      const stub = (dataCenter: string, answers: number): MemberProvider => ({
        dataCenter,
        lanes: false,
        create: async (inputs: VmInputs, planned?: PlannedCall) => {
          const n = Math.min(answers, planned!.steps.length + 1);
          for (let k = 0; k < n; k++) planned!.onStep(k, { requestId: planned!.key(k), decision: 'approved', reason: 'ok', outcome: 'ok' });
          return { id: planned!.vmId!, outs: { ...inputs } as unknown as VmOutputs };
        },
        update: () => Promise.reject(new Error('not used')),
        delete: () => Promise.reject(new Error('not used')),
      });
      const [short, full] = p.changes;
      const providers = new Map([
        [short.dataCenter, stub(short.dataCenter, 3)],
        [full.dataCenter, stub(full.dataCenter, Infinity)],
      ]);
      const events: ApplyEvent[] = [];
      const result = await applyPlan({ plan: p, record, providers, owners: {}, parallelism: 1, onEvent: (e) => events.push(e) });
      expect(result.succeeded).toBe(1);
      expect(result.failed).toEqual([
        expect.objectContaining({ address: short.address, dataCenter: short.dataCenter, step: 'PoweredOff -> PoweredOn', cause: 'unreachable' }),
      ]);
      expect(result.failed[0].diagnostic).toMatchObject({ code: 'apply.step-unanswered', address: short.address });
      expect(result.failed[0].diagnostic.detail).toBe(
        `PoweredOff -> PoweredOn in ${short.dataCenter}: the provider of ${short.dataCenter} returned from ${short.address}'s run without an answer to this step (request ${p.id}/${short.address}/3), nor an error: whether it was carried out is not known.`,
      );
      expect(result).toMatchObject({ steps: 3 + stepCount(full), stepsFailed: 1, stepsSkipped: stepCount(short) - 4 });
      // No row is left `started`: the unanswered step is closed failed, the ones after it skipped.
      const last = new Map((await record.planJournal(p.id)).filter((r) => r.address === short.address).map((r) => [r.seq, r.status]));
      expect([...last.values()]).toEqual(['done', 'done', 'done', 'failed', ...Array(stepCount(short) - 4).fill('skipped')]);
      expect(events.filter((e) => e.type === 'member').map((e) => e.type === 'member' && [e.address, e.status])).toEqual(
        expect.arrayContaining([[short.address, 'failed'], [full.address, 'done']]),
      );
      expect((await appliedPlans(record, p.stack)).map((x) => x.result)).toEqual(['failed']);
    } finally {
      await record.close();
    }
  });

  it('a journal write that fails mid-member (the record\'s disk full) stops the apply with apply.stopped and that error, never as an unhandled rejection', async () => {
    const record = await memoryRecord();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const p = plan(2);
      const full = new Error('could not extend file "base/5/16509": No space left on device');
      // The member's `started` rows are written; every `done` row fails, while its later steps are still being answered (2 ms each).
      const failing = new Proxy(record, {
        get(target, key) {
          // A member's `done` rows are written together (member.ts): one call of several rows.
          if (key === 'journal') return (rows: { status: string } | { status: string }[]) => ([rows].flat().some((r) => r.status === 'done') ? Promise.reject(full) : target.journal(rows as Parameters<typeof target.journal>[0]));
          const v = Reflect.get(target, key, target) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
      const clients = new Map(dcs.map((d) => [d.name, new FakeDmz(d.name)]));
      const err = await applyPlan({ plan: p, record: failing, providers: over(clients), owners: {}, parallelism: 1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ApplyStoppedError);
      const stopped = err as ApplyStoppedError;
      expect(stopped.stop.cause).toBe(full);
      expect(stopped.diagnostics.map((d) => d.code)).toEqual(['apply.stopped', 'cli.internal']);
      expect(stopped.diagnostics[1].detail).toBe(full.message);
      // Its end is recorded (only the journal's `done` rows fail here).
      expect(stopped.stop.recorded).toBe(true);
      expect((await appliedPlans(record, p.stack)).map((x) => x.result)).toEqual(['interrupted']);
      // Rejections are reported after a macrotask: give them one.
      await new Promise((r) => setTimeout(r, 0));
      expect(unhandled).toEqual([]);
      expect(await record.listLocks(p.stack)).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await record.close();
    }
  });

  it('a member started before the apply stopped whose `started` rows are written only after it sends nothing: its rows are closed skipped, it counts as not started', async () => {
    const base = await memoryRecord();
    try {
      const p = plan(4);
      const full = new Error('could not extend file "base/5/16509": No space left on device');
      // web/0's `done` rows fail when the test says; web/2's `started` rows are held until then.
      let loseWeb0!: () => void;
      const web0Lost = new Promise<void>((_, reject) => (loseWeb0 = () => reject(full)));
      web0Lost.catch(() => {});
      let web2Writing!: () => void;
      const web2Started = new Promise<void>((r) => (web2Writing = r));
      let letWeb2!: () => void;
      const web2Let = new Promise<void>((r) => (letWeb2 = r));
      const record = new Proxy(base, {
        get(target, key) {
          if (key === 'journal') {
            return async (...a: Parameters<FleetRecord['journal']>) => {
              const first = Array.isArray(a[0]) ? (a[0] as Omit<JournalRow, 'at'>[])[0] : (a[0] as Omit<JournalRow, 'at'>);
              if (first.address === 'web/0' && first.status === 'done') return web0Lost;
              if (first.address === 'web/2' && first.status === 'started') {
                web2Writing();
                await web2Let;
              }
              return target.journal(...a);
            };
          }
          const v = Reflect.get(target, key, target) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
      const clients = new Map(dcs.map((d) => [d.name, new GatedDmz(d.name)]));
      const events: ApplyEvent[] = [];
      const applying = applyPlan({ plan: p, record, providers: over(clients), owners: { web: 'team' }, parallelism: 1, onEvent: (e) => events.push(e) }).catch((e: unknown) => e);
      await Promise.all([...clients.values()].map((c) => c.sent));
      // web/0 (miami) has its answers: its slot goes to web/2, whose `started` rows are being written.
      clients.get('miami')!.open();
      await web2Started;
      // Then web/0's answers are lost to the record: the apply stops (promise callbacks only, all run before the next
      // turn of the event loop); only then are web/2's `started` rows written.
      loseWeb0();
      await new Promise((r) => setImmediate(r));
      letWeb2();
      clients.get('richmond')!.open();
      const err = await applying;
      expect(err).toBeInstanceOf(ApplyStoppedError);
      const { result, stop, diagnostics } = err as ApplyStoppedError;
      expect(result).toMatchObject({ succeeded: 1, failed: [], notStarted: 2, interrupted: true });
      expect(stop).toMatchObject({ running: ['web/0', 'web/1'], recorded: true });
      expect(stop.cause).toBe(full);
      expect(stop.unrecorded.map((u) => u.address)).toEqual(['web/0']);
      expect(diagnostics[0].detail).toContain('No further VM was started (2 not started). In flight when it stopped: web/0, web/1;');
      // Nothing of web/2 went to miami, nor is it told as sent; its rows are closed, none left `started`.
      expect(clients.get('miami')!.keys).toEqual(Array.from({ length: stepCount(p.changes[0]) }, (_, k) => `${p.id}/web/0/${k}`));
      expect(events.filter((e) => (e.type === 'step' || e.type === 'member') && e.address === 'web/2')).toEqual([]);
      const web2 = (await base.planJournal(p.id)).filter((r) => r.address === 'web/2');
      expect(web2.length).toBeGreaterThan(0);
      expect(new Set(web2.filter((r) => r.status !== 'started').map((r) => `${r.status}: ${r.detail}`))).toEqual(new Set([`skipped: ${NOT_SENT_DETAIL}`]));
      expect((await base.unfinishedSteps(p.stack)).filter((st) => st.address === 'web/2')).toEqual([]);
    } finally {
      await base.close();
    }
  });

  it('a fleet another apply holds (live, elsewhere): the refusal says how an apply waits for it, or how long it waited', async () => {
    const record = await memoryRecord();
    try {
      await record.acquireLocks('s', ['web'], { who: 'ci', host: 'runner-elsewhere', pid: 7, planId: 'p-1' }, { leaseMs: 3_600_000 });
      const refusal = async (timeoutMs: number) => {
        const err = await lockFleets(record, 's', ['web'], { actor: 'me', planId: 'p-2', timeoutMs }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(FleetError);
        const d = (err as FleetError).diagnostics[0];
        expect(d).toMatchObject({ code: 'record.lock-held', address: 'web' });
        expect(d.detail).toContain('is locked by ci@runner-elsewhere pid 7 for plan p-1');
        return d.detail;
      };
      // It said only to wait for the holder, not that --lock-timeout does.
      expect(await refusal(0)).toMatch(/ `fleet apply --lock-timeout SECONDS` waits for it\.$/);
      expect(await refusal(50)).toMatch(/ This apply waited 0\.05 s for it \(--lock-timeout\)\.$/);
    } finally {
      await record.close();
    }
  });

  // Found by QA: a saved plan whose first apply changed nothing (interrupted before its first step, every member
  // vetoed) is not stale, and its second apply failed on the plans table's primary key with the database's own words.
  it('refuses a plan applied once already, even one that changed nothing, before any lock or request', async () => {
    const record = await memoryRecord();
    try {
      const p = plan(4);
      const clients = new Map(dcs.map((d) => [d.name, new FakeDmz(d.name)]));
      const stop = new AbortController();
      stop.abort();
      const first = await applyPlan({ plan: p, record, providers: over(clients), owners: { web: 'team' }, parallelism: 2, signal: stop.signal });
      expect(first).toMatchObject({ succeeded: 0, notStarted: 4 });
      const again = applyPlan({ plan: p, record, providers: over(clients), owners: { web: 'team' }, parallelism: 2 });
      await expect(again).rejects.toMatchObject({ diagnostics: [{ code: 'apply.plan-applied' }] });
      await again.catch((e: FleetError) => expect(e.diagnostics[0].detail).toMatch(new RegExp(`plan ${p.id} was applied already \\(started .+, interrupted\\)`)));
      for (const c of clients.values()) expect(c.keys).toEqual([]);
      expect((await appliedPlans(record, p.stack)).map((x) => x.result)).toEqual(['interrupted']);
      expect(await record.listLocks(p.stack)).toEqual([]);
    } finally {
      await record.close();
    }
  });

  it('refuses a blocked plan and a plan made stale by a record change, before any request', async () => {
    const record = await memoryRecord();
    try {
      const clients = new Map(dcs.map((d) => [d.name, new FakeDmz(d.name)]));
      // Both said where nothing (`fleet plan`'s plan.blocked is at the stack), and "fix them" of one violation.
      const p1 = plan(1);
      const blocked = { ...p1, blocked: true, policy: { ...p1.policy, violations: [{ policy: 'protect', level: 'mandatory' as const, address: 'web/0', message: 'm', hint: 'h' }] } };
      await expect(applyPlan({ plan: blocked, record, providers: over(clients), owners: {}, parallelism: 1 })).rejects.toMatchObject({
        diagnostics: [{ code: 'apply.plan-blocked', address: blocked.stack, detail: 'The plan has 1 mandatory policy violation (protect at web/0); resolve it and plan again.' }],
      });
      const stale = plan(1);
      await record.insertVm(
        { stack: stale.stack, fleet: 'web', owner: 't', index: 5, dataCenter: 'miami', state: 'Running', desiredState: 'Running', specHash: 'h', image: 'i', size: { cpu: 1, memoryGiB: 1, diskGiB: 1 }, encryptedDisk: false },
        { actor: 'someone else' },
      );
      await expect(applyPlan({ plan: stale, record, providers: over(clients), owners: {}, parallelism: 1 })).rejects.toMatchObject({
        diagnostics: [{ code: 'apply.stale-plan', address: stale.stack }],
      });
      for (const c of clients.values()) expect(c.keys).toEqual([]);
      expect(await record.listLocks(stale.stack)).toEqual([]);
    } finally {
      await record.close();
    }
  });
});

/**
 * A provider that records every call and passes it on to a real provider
 * over a stand-in DMZ client. The executor is given only these (its options
 * hold providers, not DMZ clients): every request the DMZ client sees must
 * have come through a recorded call.
 */
class RecordingProvider implements MemberProvider {
  calls: { method: string; id: string | null; steps: string[]; keys: string[] }[] = [];
  constructor(private readonly inner: ConnectedProvider) {}
  get dataCenter(): string {
    return this.inner.dataCenter;
  }
  get lanes(): boolean {
    return this.inner.lanes;
  }
  private note(method: string, id: string | null, planned: PlannedCall | undefined): void {
    const steps = (planned?.steps ?? []).map((st) => `${st.member}:${st.from}>${st.to}`);
    const n = (method === 'create' ? 1 : 0) + steps.length;
    this.calls.push({ method, id, steps, keys: Array.from({ length: n }, (_, k) => planned!.key(k)) });
  }
  create(inputs: VmInputs, planned?: PlannedCall) {
    this.note('create', planned?.vmId ?? null, planned);
    return this.inner.create(inputs, planned);
  }
  update(id: string, olds: VmOutputs, news: VmInputs, planned?: PlannedCall) {
    this.note('update', id, planned);
    return this.inner.update(id, olds, news, planned);
  }
  delete(id: string, props: VmOutputs, planned?: PlannedCall) {
    this.note('delete', id, planned);
    return this.inner.delete(id, props, planned);
  }
}

describe('applyPlan through providers', () => {
  it('drives every member through its data center\'s provider (create, update, delete; a replace as create then delete), and the DMZ client sees only what the providers sent', async () => {
    const record = await memoryRecord();
    try {
      const stack = makeStack(dcs);
      const pack = makePack();
      const web = makeFleet('web', { count: 4, placement: { dataCenters: ['miami'] } });
      const old = (over: Partial<Parameters<typeof record.insertVm>[0]>) => ({
        stack: stack.name, fleet: 'web', owner: 'team', index: 0, dataCenter: 'miami', state: 'Running', desiredState: 'Running',
        specHash: web.specHash, image: web.image, size: web.size, encryptedDisk: web.encryptedDisk, ...over,
      });
      // web/0 as specified (noop), web/1 powered off (transition), web/2 too small (update), web/3 another image (replace), web/4 past the count (delete).
      await record.insertVm(old({ index: 0 }), { actor: 't' });
      await record.insertVm(old({ index: 1, state: 'PoweredOff' }), { actor: 't' });
      await record.insertVm(old({ index: 2, size: { cpu: 1, memoryGiB: 4, diskGiB: 20 }, specHash: 'small' }), { actor: 't' });
      await record.insertVm(old({ index: 3, image: 'rhel-9', specHash: 'rhel' }), { actor: 't' });
      await record.insertVm(old({ index: 4 }), { actor: 't' });
      const fleetVersions = Object.fromEntries((await record.listFleets(stack.name)).map((f) => [f.fleet, f.version]));
      const p = computePlan({
        stack, pack, fleets: [web], record: await record.listPlanVms(stack.name), fleetVersions,
        options: { targets: [], excludes: [], allowDestroy: [], refresh: false }, policy: noRulesPolicy, id: 'plan-through-providers',
      });
      expect(p.changes.map((c) => `${c.address}:${c.action}`)).toEqual(['web/1:transition', 'web/2:update', 'web/3:replace', 'web/4:delete']);
      expect(p.unchanged.map((u) => `${u.fleet}:${u.count}`)).toEqual(['web:1']);

      const fakes = new Map(dcs.map((d) => [d.name, new FakeDmz(d.name)]));
      const recording = new Map([...over(fakes)].map(([dc, pr]) => [dc, new RecordingProvider(pr)]));
      const result = await applyPlan({ plan: p, record, providers: recording, owners: { web: 'team' }, parallelism: 1 });
      expect(result).toMatchObject({ failed: [], succeeded: 4 });

      const calls = recording.get('miami')!.calls;
      const member = (i: number) => p.changes.find((c) => c.index === i)!;
      const id = (i: number) => member(i).vmId!;
      const replace = member(3);
      expect(replace.replaceOrder).toBe('create-before-delete');
      expect(calls.map((c) => [c.method, c.id])).toEqual(
        expect.arrayContaining([
          ['update', id(1)],
          ['update', id(2)],
          ['create', proposedVmId(p.id, 'web/3')],
          ['delete', id(3)],
          ['delete', id(4)],
        ]),
      );
      expect(calls).toHaveLength(5);
      // The replace: the new VM's create, then the old one's delete, each with its own steps of the plan.
      const rc = calls.findIndex((c) => c.method === 'create');
      expect(calls[rc + 1]).toMatchObject({ method: 'delete', id: id(3) });
      expect(calls[rc].steps.every((st) => st.startsWith('new:'))).toBe(true);
      expect(calls[rc + 1].steps.every((st) => st.startsWith('old:'))).toBe(true);
      // Every request the DMZ client saw came through a provider call, under the key the provider was given.
      const viaProviders = calls.flatMap((c) => c.keys);
      expect([...fakes.get('miami')!.keys].sort()).toEqual([...viaProviders].sort());
      expect(fakes.get('richmond')!.keys).toEqual([]);
      expect(result.steps).toBe(viaProviders.length);
    } finally {
      await record.close();
    }
  });

  it('takes providers only: its options have no way to name a DMZ client', () => {
    type Options = Parameters<typeof applyPlan>[0];
    // @ts-expect-error -- a DMZ client is not an option of the executor
    const bad: Options['clients'] = undefined;
    const providers: Options['providers'] = new Map<string, MemberProvider>();
    expect([bad, providers.size]).toEqual([undefined, 0]);
  });
});

describe('applyPlan over real DMZ clients (lanes)', () => {
  it('keeps at most --parallelism VMs doing cloud work per data center, with as many again queued and approved there', async () => {
    const world = await startTestWorld({ client: { batch: true, baseDelayMs: 1 }, sim: { latencyMs: 5 } });
    try {
      // Per data center: which VMs are between their createVm call and the end of their awaitReady.
      const most = new Map<string, number>();
      for (const [name, dc] of world.dcs) {
        const busy = new Set<string>();
        const createVm = dc.driver.createVm.bind(dc.driver);
        const awaitReady = dc.driver.awaitReady.bind(dc.driver);
        vi.spyOn(dc.driver, 'createVm').mockImplementation(async (creds, input) => {
          busy.add(input.vmId);
          most.set(name, Math.max(most.get(name) ?? 0, busy.size));
          return createVm(creds, input);
        });
        vi.spyOn(dc.driver, 'awaitReady').mockImplementation(async (creds, ref, o) => {
          try {
            return await awaitReady(creds, ref, o);
          } finally {
            busy.delete(ref.vmId);
          }
        });
      }
      const p = computePlan({
        stack: { ...makeStack(dcs), name: world.stack },
        pack: makePack(),
        fleets: [makeFleet('web', { count: 12, placement: { strategy: 'spread' } })],
        record: [],
        fleetVersions: {},
        options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
        policy: noRulesPolicy,
        id: `plan-${Math.random().toString(16).slice(2)}`,
      });
      const clients = new Map([...world.dcs].map(([name, dc]) => [name, dc.client]));
      const inFlight = new Map<string, number>();
      const sent = new Map<string, number>();
      for (const [name, c] of clients) {
        const run = c.run.bind(c);
        vi.spyOn(c, 'run').mockImplementation(async (steps, onStep, o) => {
          inFlight.set(name, (inFlight.get(name) ?? 0) + 1);
          sent.set(name, Math.max(sent.get(name) ?? 0, inFlight.get(name)!));
          try {
            return await run(steps, onStep, o);
          } finally {
            inFlight.set(name, inFlight.get(name)! - 1);
          }
        });
      }
      const result = await applyPlan({ plan: p, record: world.record, providers: over(clients), owners: { web: 'team' }, parallelism: 2 });
      expect(result).toMatchObject({ failed: [], succeeded: 12 });
      expect(Object.fromEntries(most)).toEqual({ miami: 2, richmond: 2 });
      expect(Object.fromEntries(sent)).toEqual({ miami: 4, richmond: 4 });
      const vms = await world.record.listVms(world.stack);
      expect(vms.map((v) => v.state)).toEqual(Array(12).fill('Running'));
    } finally {
      vi.restoreAllMocks();
      await world.close();
    }
  });
});

// A spec's new owner was written to the fleet's row by every apply whatever its plan said (and not at all with
// nothing else to apply): a saved plan's apply wrote the spec's owner as it was at apply time. The row's owner
// is now the plan's fleetChanges' alone, and the creates' requests carry the owner the row holds.
describe('recordFleets: the owner', () => {
  const events: ApplyEvent[] = [];
  const write = (record: Awaited<ReturnType<typeof memoryRecord>>, p: PlanDocument, owners: Record<string, string>) => recordFleets(record, p, ['web'], owners, (e) => events.push(e));
  const owner = async (record: Awaited<ReturnType<typeof memoryRecord>>, stack: string) => (await record.listFleets(stack, ['web']))[0]?.owner;

  it.each([
    { name: 'listed: written as the plan says, whatever the spec says now', listed: true, spec: 'team-c', want: 'team-b', written: [{ fleet: 'web', owner: { from: 'team-a', to: 'team-b' } }] },
    { name: 'not listed: the row keeps its owner, which the requests carry', listed: false, spec: 'team-c', want: 'team-a', written: [] },
  ])('$name', async ({ listed, spec, want, written }) => {
    const record = await memoryRecord();
    events.length = 0;
    try {
      const p: PlanDocument = { ...plan(0), ...(listed ? { fleetChanges: [{ fleet: 'web', owner: { from: 'team-a', to: 'team-b' } }] } : {}) };
      await record.setFleetProtection(p.stack, 'web', 'team-a', false);
      const r = await write(record, p, { web: spec });
      expect(r).toEqual({ written, owners: { web: want } });
      expect(await owner(record, p.stack)).toBe(want);
      expect(events).toEqual(written.map((w) => ({ type: 'owner', ...w })));
    } finally {
      await record.close();
    }
  });

  it("a new fleet's row gets its spec's owner, which is no change", async () => {
    const record = await memoryRecord();
    events.length = 0;
    try {
      const p = plan(0);
      expect(await write(record, p, { web: 'team-c' })).toEqual({ written: [], owners: { web: 'team-c' } });
      expect(await owner(record, p.stack)).toBe('team-c');
      expect(events).toEqual([]);
    } finally {
      await record.close();
    }
  });
});

/** A stand-in DMZ client whose runs wait for `open()` before their first step; `sent` resolves once a run is waiting. */
class GatedDmz extends FakeDmz {
  private gate!: Promise<void>;
  open!: () => void;
  sent: Promise<void>;
  private wasSent!: () => void;
  constructor(dc: string) {
    super(dc);
    this.gate = new Promise((r) => (this.open = r));
    this.sent = new Promise((r) => (this.wasSent = r));
  }
  override run: DmzConnection['run'] = async (steps, onStep, opts) => {
    this.wasSent();
    await this.gate;
    for (let k = 0; k < steps.length; k++) {
      const r = await this.one(steps[k]);
      onStep(k, r);
      if (r.outcome !== 'ok') return;
    }
    void opts;
  };
}

/** `record` whose lock handles tell `onLost` when a renewal finds the lock gone (record.lock-lost). */
function watchingLocks<R extends FleetRecord>(record: R, onLost: () => void): R {
  return new Proxy(record, {
    get(target, key) {
      if (key === 'acquireLocks') {
        return async (...args: Parameters<FleetRecord['acquireLocks']>): Promise<LockHandle> => {
          const h = await target.acquireLocks(...args);
          return { ...h, heartbeat: () => h.heartbeat().catch((e: unknown) => (onLost(), Promise.reject(e))) };
        };
      }
      const v = Reflect.get(target, key, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

describe('applyPlan that loses its lock or its record mid-way', () => {
  it('lock taken over by another apply: starts nothing more, lets the members in flight finish, records itself interrupted, and throws apply.stopped naming the apply and the members in flight', async () => {
    const base = await memoryRecord();
    let lost!: () => void;
    const noticed = new Promise<void>((r) => (lost = r));
    const record = watchingLocks(base, lost);
    try {
      const p = plan(6);
      const clients = new Map(dcs.map((d) => [d.name, new GatedDmz(d.name)]));
      const events: ApplyEvent[] = [];
      const applying = applyPlan({ plan: p, record, providers: over(clients), owners: { web: 'team' }, parallelism: 1, leaseMs: 150, onEvent: (e) => events.push(e) }).catch((e: unknown) => e);
      await Promise.all([...clients.values()].map((c) => c.sent));
      // Another session: the lock is broken (as `fleet unlock` does) and taken by another apply, with a newer fencing token.
      const [held] = await base.listLocks(p.stack);
      await base.forceUnlock(held.lockId);
      const other = await base.acquireLocks(p.stack, ['web'], { who: 'other', host: 'elsewhere', pid: 1, planId: 'plan-other' });
      // This apply's next renewal finds it gone; only then do the two members in flight get their answers.
      await noticed;
      for (const c of clients.values()) c.open();
      const err = await applying;
      expect(err).toBeInstanceOf(ApplyStoppedError);
      const { result, stop, diagnostics } = err as ApplyStoppedError;
      expect(result).toMatchObject({ succeeded: 2, failed: [], notStarted: 4, interrupted: true });
      expect(stop).toMatchObject({ running: ['web/0', 'web/1'], unrecorded: [], recorded: true });
      expect(diagnostics.map((d) => d.code)).toEqual(['apply.stopped', 'record.lock-lost']);
      expect(diagnostics[0].detail).toBe(
        `Apply ${p.id} stopped mid-way: its lock was taken over or released by someone else (record.lock-lost, below). No further VM was started (4 not started). In flight when it stopped: web/0, web/1; they were let finish (a request after another apply took the lock is vetoed \`fenced\`), and are counted below. It is recorded as interrupted. Run \`fleet apply\` again once the other apply is done; it continues from what the record holds.`,
      );
      // Nothing else was sent; the summary still came, last.
      expect(new Set(events.flatMap((e) => (e.type === 'step' ? [e.address] : [])))).toEqual(new Set(['web/0', 'web/1']));
      expect(events.at(-1)).toMatchObject({ type: 'summary', succeeded: 2, notStarted: 4, interrupted: true });
      expect((await appliedPlans(base, p.stack)).map((x) => x.result)).toEqual(['interrupted']);
      expect(await base.unfinishedSteps(p.stack)).toEqual([]);
      // The other apply's lock is its own still.
      expect((await base.listLocks(p.stack)).map((l) => l.lockId)).toEqual([other.lockId]);
    } finally {
      await base.close();
    }
  });
});

const pgUrl = testPostgresUrl();

describe.skipIf(!pgUrl)('applyPlan whose PostgreSQL record goes away mid-apply (every connection cut, new ones refused past the retry budget)', () => {
  /** A fresh database behind a cut proxy, opened as fleet apply opens it (retried calls, a short budget). */
  async function outageWorld() {
    const db = await createTestDatabase(pgUrl!);
    const proxy = await pgCutProxy(db.url);
    const opened = await openRecord(proxy.url);
    const retrying = retryingRecord(opened, { budgetMs: 300, baseDelayMs: 20, maxDelayMs: 50 });
    // Tells the test when journal writes gave up (the member's run is then lost to the record): how many, by member.
    const gaveUp = new Map<string, number>();
    const waiting: { address: string; n: number; resolve: () => void }[] = [];
    const gave = (address: string) => {
      gaveUp.set(address, (gaveUp.get(address) ?? 0) + 1);
      for (const w of waiting) if (w.address === address && gaveUp.get(address)! >= w.n) w.resolve();
    };
    const record = new Proxy(retrying, {
      get(target, key) {
        if (key === 'journal') {
          return (...a: Parameters<FleetRecord['journal']>) => {
            const address = (Array.isArray(a[0]) ? (a[0] as Omit<JournalRow, 'at'>[])[0] : (a[0] as Omit<JournalRow, 'at'>)).address;
            return target.journal(...a).catch((e: unknown) => (gave(address), Promise.reject(e)));
          };
        }
        const v = Reflect.get(target, key, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    return {
      record,
      proxy,
      /** Resolves once `n` journal calls of `address`'s rows gave up. */
      journalGaveUp: (address: string, n: number) => new Promise<void>((resolve) => (gaveUp.get(address) ?? 0) >= n ? resolve() : waiting.push({ address, n, resolve })),
      cleanup: async () => {
        await opened.close().catch(() => {});
        await proxy.close();
        await db.drop();
      },
    };
  }

  it('back before the apply ends: its end is recorded interrupted; the member whose answers were lost is named with its steps', async () => {
    const w = await outageWorld();
    try {
      const p = plan(6);
      const labels = ['create Requested', 'Requested -> BeingCreated', 'BeingCreated -> PoweredOff', 'PoweredOff -> PoweredOn', 'PoweredOn -> Starting', 'Starting -> Running'];
      const clients = new Map(dcs.map((d) => [d.name, new GatedDmz(d.name)]));
      const applying = applyPlan({ plan: p, record: w.record, providers: over(clients), owners: { web: 'team' }, parallelism: 1 }).catch((e: unknown) => e);
      await Promise.all([...clients.values()].map((c) => c.sent));
      w.proxy.cut(3_600_000);
      // web/0 (miami) gets its answers while the record is down: its `done` rows (held, written together in one call
      // at the member's end) give up after the budget. The record stays down until that write did: one begun a moment
      // later would else be retried into the record once it is back, and journalled.
      clients.get('miami')!.open();
      await w.journalGaveUp('web/0', 1);
      // The executor learns it through promise callbacks only (web/0's run rejects, the apply stops): all run before
      // the next turn of the event loop, so the stop is set before the record comes back.
      await new Promise((r) => setImmediate(r));
      // The record is back; web/1 (richmond) gets its answers and journals them. web/2 (miami), started once web/0 had
      // its answers, sends nothing whether its `started` rows gave up with the outage or were written once it ended.
      w.proxy.restore();
      clients.get('richmond')!.open();
      const err = await applying;
      expect(err).toBeInstanceOf(ApplyStoppedError);
      const { result, stop, diagnostics } = err as ApplyStoppedError;
      expect(result).toMatchObject({ succeeded: 1, failed: [], notStarted: 4, interrupted: true });
      expect(stop).toMatchObject({ running: ['web/0', 'web/1'], unrecorded: [{ address: 'web/0', steps: labels }], recorded: true });
      expect(diagnostics.map((d) => d.code)).toEqual(['apply.stopped', 'record.unreachable']);
      expect(diagnostics[0].detail).toContain(`Apply ${p.id} stopped mid-way: the record failed under it (below). No further VM was started (4 not started).`);
      expect(diagnostics[0].detail).toContain(`web/0: ${labels.join(', ')} answered by its data center but not journalled; \`fleet state show web/0\` shows where it stands.`);
      expect(diagnostics[0].detail).toContain('It is recorded as interrupted. Run `fleet apply` again once the record is back');
      expect((await w.record.listPlans(p.stack)).map((x) => x.result)).toEqual(['interrupted']);
    } finally {
      await w.cleanup();
    }
  });

  it('still down when it ends: the message says the next apply records it, and the next apply of the fleet does', async () => {
    const w = await outageWorld();
    try {
      const p = plan(6);
      const clients = new Map(dcs.map((d) => [d.name, new GatedDmz(d.name)]));
      const applying = applyPlan({ plan: p, record: w.record, providers: over(clients), owners: { web: 'team' }, parallelism: 1, leaseMs: 400 }).catch((e: unknown) => e);
      await Promise.all([...clients.values()].map((c) => c.sent));
      w.proxy.cut(3_600_000);
      for (const c of clients.values()) c.open();
      const err = await applying;
      expect(err).toBeInstanceOf(ApplyStoppedError);
      const { result, stop, diagnostics } = err as ApplyStoppedError;
      expect(result).toMatchObject({ succeeded: 0, notStarted: 4 });
      expect(stop).toMatchObject({ running: ['web/0', 'web/1'], recorded: false, released: false });
      expect(stop.unrecorded.map((u) => u.address)).toEqual(['web/0', 'web/1']);
      expect(diagnostics[0].detail).toContain(
        'The record could not be told that it ended: the next `fleet apply` of fleet web records it interrupted and closes its unanswered steps. Its lock could not be released either: free once the lease runs out (0.4 s), at once for the next `fleet apply` on this host; `fleet state list` shows it.',
      );
      w.proxy.restore();
      expect((await w.record.listPlans(p.stack)).map((x) => x.result)).toEqual(['running']);
      // The next apply (of another host), under the fleet's lock once its lease ran out.
      const next = await w.record.acquireLocks(p.stack, ['web'], { who: 'ci', host: 'h', pid: 2, planId: 'plan-next' }, { timeoutMs: 30_000 });
      const closed = await closeInterrupted(w.record, p.stack, ['web']);
      expect(closed.plans).toEqual([p.id]);
      expect((await w.record.listPlans(p.stack)).map((x) => x.result)).toEqual(['interrupted']);
      // Its steps whose answers the journal never got are closed (failed, "interrupted: …"), none left `started`.
      expect((await w.record.unfinishedSteps(p.stack)).filter((st) => st.status === 'started')).toEqual([]);
      await next.release();
    } finally {
      await w.cleanup();
    }
  });
});

describe('closeInterrupted', () => {
  // A member's `done` rows are held and written together (member.ts), so a CLI killed after its data center carried
  // a step out, before that write, leaves the step `started`. closeInterrupted closed every such step `failed:
  // interrupted`, a journal that said a carried-out step was not; it closes `done` those whose edge the record's
  // history holds under their plan. Here the apply runs against a real authority and DMZ client, its record
  // dropping what a killed CLI never wrote (every `done` row, its plan's end).
  it('closes `done` the steps left `started` whose edge the record shows carried out under their plan, `failed` the others', async () => {
    const world = await startTestWorld({ client: { batch: true, baseDelayMs: 1 }, sim: { latencyMs: 2 } });
    try {
      const p = computePlan({
        stack: { ...makeStack(dcs), name: world.stack },
        pack: makePack(),
        fleets: [makeFleet('web', { count: 2, placement: { strategy: 'spread' } })],
        record: [],
        fleetVersions: {},
        options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
        policy: noRulesPolicy,
        id: `plan-${Math.random().toString(16).slice(2)}`,
      });
      const killed = new Proxy(world.record, {
        get(target, key) {
          if (key === 'journal')
            return (rows: Parameters<FleetRecord['journal']>[0], o?: Parameters<FleetRecord['journal']>[1]) => {
              const kept = [rows].flat().filter((r) => r.status !== 'done');
              return kept.length === 0 ? Promise.resolve() : target.journal(kept, o);
            };
          if (key === 'finishPlan') return () => Promise.resolve();
          const v = Reflect.get(target, key, target) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
      const clients = new Map([...world.dcs].map(([name, dc]) => [name, dc.client]));
      const result = await applyPlan({ plan: p, record: killed, providers: over(clients), owners: { web: 'team' }, parallelism: 2 });
      expect(result).toMatchObject({ failed: [], succeeded: 2 });
      // A step of the plan no data center carried out (its row `started`, its request never sent).
      const [vm] = await world.record.listVms(world.stack);
      await world.record.journal({ planId: p.id, address: vm.address, seq: 99, vmId: vm.id, from: 'Running', to: 'ShuttingDown', idempotencyKey: `${p.id}/${vm.address}/99`, status: 'started', detail: null });
      const open = await world.record.unfinishedSteps(world.stack);
      expect(open.length).toBe(13);
      const closed = await closeInterrupted(world.record, world.stack, ['web']);
      expect(closed).toMatchObject({ plans: [p.id], steps: 13, carriedOut: 12 });
      expect(await world.record.unfinishedSteps(world.stack)).toEqual([
        expect.objectContaining({ seq: 99, status: 'failed', detail: 'interrupted: the apply stopped before this step answered' }),
      ]);
      const rows = await world.record.planJournal(p.id);
      const last = new Map(rows.map((r) => [`${r.address}/${r.seq}`, r]));
      expect([...last.values()].filter((r) => r.seq !== 99).map((r) => `${r.status}: ${r.detail}`)).toEqual(Array(12).fill(`done: ${CARRIED_OUT_DETAIL}`));
      expect((await world.record.listPlans(world.stack, { id: p.id })).map((x) => x.result)).toEqual(['interrupted']);
    } finally {
      await world.close();
    }
  });

  it('closes a killed apply\'s 1,200 open steps in a few journal writes, in order, not one write per step', async () => {
    const record = await memoryRecord();
    try {
      await record.startPlan({ stack: 'st', digest: 'd', who: 'ci', startedAt: new Date().toISOString(), id: 'gone' });
      const started = Array.from({ length: 1200 }, (_, i) => ({
        planId: 'gone',
        address: `web/${Math.floor(i / 6)}`,
        seq: i % 6,
        vmId: `vm-${Math.floor(i / 6)}`,
        from: 'Planned',
        to: 'BeingCreated',
        idempotencyKey: `gone/web/${i}`,
        status: 'started' as const,
        detail: null,
      }));
      await record.journal(started);
      let writes = 0;
      const counted = new Proxy(record, {
        get(target, key) {
          const v = Reflect.get(target, key, target) as unknown;
          if (key === 'journal') writes++;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
      expect(await closeInterrupted(counted, 'st', ['web'])).toMatchObject({ plans: ['gone'], steps: 1200, carriedOut: 0 });
      expect(writes).toBeLessThanOrEqual(3);
      expect(await record.unfinishedSteps('st')).toHaveLength(1200);
      expect((await record.unfinishedSteps('st')).every((r) => r.status === 'failed')).toBe(true);
      const last = (await record.planJournal('gone')).slice(1200);
      expect(last.map((r) => `${r.address}/${r.seq}`)).toEqual(started.map((r) => `${r.address}/${r.seq}`));
    } finally {
      await record.close();
    }
  });

  it('records `interrupted` an apply left `running` with no step open and no lock (it stopped with the record down, or died before its first step); one that holds a lock is left alone', async () => {
    const record = await memoryRecord();
    try {
      const started = { stack: 'st', digest: 'd', who: 'ci', startedAt: new Date().toISOString() };
      await record.startPlan({ ...started, id: 'gone' });
      await record.startPlan({ ...started, id: 'live' });
      await record.startPlan({ ...started, id: 'done' });
      await record.finishPlan('done', 'succeeded');
      // A live apply of another fleet: its lock names its plan.
      const live = await record.acquireLocks('st', ['db'], { who: 'ci', host: 'h', pid: 1, planId: 'live' });
      // The caller's own lock (web), under its own plan id.
      const mine = await record.acquireLocks('st', ['web'], { who: 'ci', host: 'h', pid: 2, planId: 'next' });
      expect(await closeInterrupted(record, 'st', ['web'])).toEqual({ plans: ['gone'], steps: 0, carriedOut: 0, members: [] });
      const result = Object.fromEntries((await record.listPlans('st')).map((x) => [x.id, x.result]));
      expect(result).toEqual({ gone: 'interrupted', live: 'running', done: 'succeeded' });
      await live.release();
      await mine.release();
    } finally {
      await record.close();
    }
  });
});

// An apply stopped by a fault fleet does not know (a record driver's own error, a PostgreSQL server's message) says
// it as it came: a line break in it forged a diagnostic line under `fleet apply`, and 100 KB of it was 4,000
// characters. Clipped now (REASON_LIMIT).
describe('ApplyStoppedError: a cause fleet does not know, clipped', () => {
  const result = { planId: 'p', succeeded: 0, failed: [], steps: 0, stepsFailed: 0, stepsSkipped: 0, elapsedMs: 0, notStarted: 1, interrupted: true, rollouts: [], fleetChanges: [] };
  const stop = { running: [], unrecorded: [], recorded: true, released: true, leaseMs: 30_000, stack: 's', fleets: ['web'] };
  it.each([
    ['a line break and a forged diagnostic', 'm\nerror[apply.fake]: Forged\n  at web/9'],
    ['100 KB of words', 'yy '.repeat(34_000)],
  ])('%s', (_name, message) => {
    const err = new ApplyStoppedError(result, { ...stop, cause: new Error(message) });
    expect(err.diagnostics.map((d) => d.code)).toEqual(['apply.stopped', 'cli.internal']);
    expect(formatDiagnostics(err.diagnostics)).not.toMatch(/^\s*error\[apply\.fake\]/m);
    expect(err.diagnostics[1].detail.length).toBeLessThanOrEqual(REASON_LIMIT + 30);
  });
});
