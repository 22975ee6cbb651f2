import { describe, expect, it } from 'vitest';
import { memoryRecord } from '../record/testing.ts';
import { computePlan } from '../plan/planner.ts';
import { noRulesPolicy } from '../plan/policy-port.ts';
import { dataCenter, makeFleet, makePack, makeStack } from '../plan/test-support.ts';
import type { PlanDocument } from '../plan/types.ts';
import type { StepResult } from '../../providers/protocol.ts';
import { applyPlan, proposedVmId, stepCount, type ApplyEvent, type DmzApi } from './executor.ts';

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
class FakeDmz implements DmzApi {
  inFlight = 0;
  maxInFlight = 0;
  keys: string[] = [];
  constructor(
    readonly dc: string,
    private readonly failVm?: string,
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
  createVm: DmzApi['createVm'] = (req) => this.answer(req.vm.id, req.idempotencyKey);
  transition: DmzApi['transition'] = (vmId, req) => this.answer(vmId, req.idempotencyKey);
  deleteVm: DmzApi['deleteVm'] = (vmId, req) => this.answer(vmId, req.idempotencyKey);
}

describe('applyPlan', () => {
  it('bounds members in flight per data center by parallelism, and sends each step once in order', async () => {
    const record = await memoryRecord();
    try {
      const p = plan(12);
      const clients = new Map(dcs.map((d) => [d.name, new FakeDmz(d.name)]));
      const events: ApplyEvent[] = [];
      const result = await applyPlan({ plan: p, record, clients, owners: { web: 'team' }, parallelism: 2, onEvent: (e) => events.push(e) });
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
      expect((await record.listPlans(p.stack)).map((x) => x.result)).toEqual(['succeeded']);
      expect(await record.listLocks(p.stack)).toEqual([]);
    } finally {
      await record.close();
    }
  });

  it('journals each step started before its request and done before the next request, the done row sharing a batch with the next started row', async () => {
    const record = await memoryRecord();
    try {
      const p = plan(3);
      // At each request: the record's open steps of that member (started, not done) must be exactly the one being sent.
      const openAtSend: [string, ...string[]][] = [];
      const fakes = new Map(dcs.map((d) => [d.name, new FakeDmz(d.name)]));
      const check = async (key: string) => {
        const address = key.split('/').slice(1, 3).join('/');
        const open = (await record.unfinishedSteps(p.stack)).filter((j) => j.address === address);
        openAtSend.push([key, ...open.map((j) => `${j.idempotencyKey}:${j.status}`)]);
        return key;
      };
      const clients = new Map(
        [...fakes].map(([dc, f]): [string, DmzApi] => [
          dc,
          {
            createVm: async (req) => (await check(req.idempotencyKey), f.createVm(req)),
            transition: async (vmId, req) => (await check(req.idempotencyKey), f.transition(vmId, req)),
            deleteVm: async (vmId, req) => (await check(req.idempotencyKey), f.deleteVm(vmId, req)),
          },
        ]),
      );
      const before = record.journalBatches;
      const result = await applyPlan({ plan: p, record, clients, owners: {}, parallelism: 1 });
      expect(result.failed).toEqual([]);
      expect(openAtSend).toHaveLength(result.steps);
      for (const [key, ...open] of openAtSend) expect(open).toEqual([`${key}:started`]);
      expect(await record.unfinishedSteps(p.stack)).toEqual([]);
      // Two rows per step, but a done row rides with the next started row: about one batch per step.
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
      const result = await applyPlan({ plan: p, record, clients, owners: {}, parallelism: 1 });
      expect(result.succeeded).toBe(3);
      expect(result.failed).toHaveLength(1);
      expect(result.failed[0]).toMatchObject({ address: 'web/1', dataCenter: victim.dataCenter, step: 'create Requested' });
      expect(result.failed[0].diagnostic).toMatchObject({ code: 'apply.step-failed', address: 'web/1' });
      expect(result.failed[0].diagnostic.detail).toContain('sim says no');
      const journal = await record.unfinishedSteps(p.stack);
      expect(journal.map((j) => [j.address, j.status])).toEqual([['web/1', 'failed']]);
      expect((await record.listPlans(p.stack)).map((x) => x.result)).toEqual(['failed']);
    } finally {
      await record.close();
    }
  });

  it('refuses a blocked plan and a plan made stale by a record change, before any request', async () => {
    const record = await memoryRecord();
    try {
      const clients = new Map(dcs.map((d) => [d.name, new FakeDmz(d.name)]));
      const blocked = { ...plan(1), blocked: true };
      await expect(applyPlan({ plan: blocked, record, clients, owners: {}, parallelism: 1 })).rejects.toMatchObject({
        diagnostics: [{ code: 'apply.plan-blocked' }],
      });
      const stale = plan(1);
      await record.insertVm(
        { stack: stale.stack, fleet: 'web', owner: 't', index: 5, dataCenter: 'miami', state: 'Running', desiredState: 'Running', specHash: 'h', image: 'i', size: { cpu: 1, memoryGiB: 1, diskGiB: 1 }, encryptedDisk: false },
        { actor: 'someone else' },
      );
      await expect(applyPlan({ plan: stale, record, clients, owners: {}, parallelism: 1 })).rejects.toMatchObject({
        diagnostics: [{ code: 'apply.stale-plan' }],
      });
      for (const c of clients.values()) expect(c.keys).toEqual([]);
      expect(await record.listLocks(stale.stack)).toEqual([]);
    } finally {
      await record.close();
    }
  });
});
