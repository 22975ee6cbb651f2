// Fencing and lost answers, over the real pieces: a record, the authority,
// a sim data center and its DMZ client over loopback HTTP (issue 14).
//
// - A crashed CLI's runs still queued at a DMZ client arrive after the next
//   apply took the lock: they carry the old fencing token and the authority
//   vetoes them, so they can neither delete, power off nor re-boot the next
//   apply's VMs (a re-boot would issue a new boot token and get the running
//   agent denied and terminated).
// - A request without a fencing token (a Pulumi program, a script calling a
//   DMZ client) is outside any apply: refused (\`locked\`) while an apply
//   holds the fleet's lock, so it cannot race that apply; let through when
//   nobody holds it.
// - A step sent again after the DMZ client lost its answer (a restart
//   between its report and its idempotency log) is answered done, not vetoed.
import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRecord } from '../engine/record/index.ts';
import type { FleetRecord, LockHandle } from '../engine/record/types.ts';
import { idempotencyLogFile } from './dmz-client/idempotency.ts';
import type { BatchStep, StepResult } from '../protocol/index.ts';
import { TO_RUNNING, newVm, startTestWorld, type TestWorld } from './testing.ts';

let record: FleetRecord;
let world: TestWorld;
beforeAll(async () => {
  record = await openRecord('memory://');
  world = await startTestWorld({ record, dataCenters: ['miami'], sim: { bootMs: 5 } });
}, 120_000);
afterAll(async () => {
  await world?.close();
  await record?.close();
});

const holder = (who: string) => ({ who, host: 'ci-1', pid: 4242, planId: null });

/** The requests of a member along `path` (the first state its current), each carrying `fencingToken`. */
function steps(vmId: string, path: readonly string[], planId: string, fencingToken?: number): BatchStep[] {
  const fence = fencingToken !== undefined ? { fencingToken } : {};
  return path.slice(1).map((to, i) => {
    const body = { idempotencyKey: `${planId}/${vmId}/${i}`, planId, ...fence, from: path[i], to };
    return to === 'Deleted' ? { op: 'delete', vmId, body } : { op: 'transition', vmId, body };
  });
}

async function run(list: BatchStep[]): Promise<StepResult[]> {
  const out: StepResult[] = [];
  await world.dc('miami').client.run(list, (_k, r) => out.push(r));
  return out;
}

async function createRunning(index: number, planId: string, fencingToken: number): Promise<string> {
  const vm = newVm(world.stack, { index });
  const create: BatchStep = { op: 'create', body: { idempotencyKey: `${planId}/c${index}`, planId, fencingToken, vm } };
  const results = await run([create, ...steps(vm.id, TO_RUNNING, planId, fencingToken)]);
  expect(results.map((r) => r.outcome)).toEqual(TO_RUNNING.map(() => 'ok'));
  return vm.id;
}

describe('fencing: a killed apply\'s runs never act after the next apply took the lock', () => {
  it('old-token runs are vetoed (fenced) and leave the next apply\'s VMs running, in the record and in the data center', async () => {
    const stack = world.stack;
    // Apply A locks web and brings two VMs up.
    const a: LockHandle = await record.acquireLocks(stack, ['web'], holder('apply-a'));
    const ids = [await createRunning(0, 'plan-a', a.fencingToken), await createRunning(1, 'plan-a', a.fencingToken)];
    // A is killed: its lock is broken at once (a dead pid on this host), B takes it.
    await record.forceUnlock(a.lockId);
    const b = await record.acquireLocks(stack, ['web'], holder('apply-b'));
    expect(b.fencingToken).toBeGreaterThan(a.fencingToken);
    // B keeps web/1 running and creates web/2.
    const mine = await createRunning(2, 'plan-b', b.fencingToken);

    // A's queued runs reach the DMZ client now: delete web/0, re-boot web/1 (power cycle), create web/3.
    const toDelete = await run(steps(ids[0], ['Running', 'ShuttingDown', 'PoweredOff', 'BeingDeleted', 'Deleted'], 'plan-a2', a.fencingToken));
    const toCycle = await run(steps(ids[1], ['Running', 'ShuttingDown', 'PoweredOff', 'PoweredOn', 'Starting', 'Running'], 'plan-a3', a.fencingToken));
    const late = newVm(stack, { index: 3 });
    const created = await run([{ op: 'create', body: { idempotencyKey: 'plan-a/c3', planId: 'plan-a', fencingToken: a.fencingToken, vm: late } }]);
    for (const r of [toDelete, toCycle, created]) {
      expect(r).toHaveLength(1);
      expect(r[0]).toMatchObject({ outcome: 'vetoed', decision: 'vetoed' });
      expect(r[0].reason).toContain('newer apply locked fleet web');
    }
    // Nothing moved: the record and the data center still have the three VMs running, and no web/3.
    for (const id of [...ids, mine]) {
      expect((await record.getVm(id))?.state).toBe('Running');
      const actual = await world.dc('miami').client.getVm(id);
      expect(actual).toMatchObject({ status: 'present', power: 'on', agent: 'ready' });
    }
    expect(await record.getVm(late.id)).toBeUndefined();
    expect(await world.dc('miami').client.getVm(late.id)).toBeUndefined();
    // The veto is in the VM's history, with the plan that sent it.
    const hist = await record.history(stack, 'web/0');
    expect(hist.at(-1)).toMatchObject({ outcome: 'vetoed', planId: 'plan-a2' });

    await b.release();
    // A's token stays refused after B let go: the fence outlives the lock.
    const after = await run(steps(ids[0], ['Running', 'ShuttingDown'], 'plan-a4', a.fencingToken));
    expect(after[0]).toMatchObject({ outcome: 'vetoed' });
    // B's own token still works until a newer lock exists (its last runs finishing).
    const own = await run(steps(mine, ['Running', 'ShuttingDown', 'PoweredOff'], 'plan-b2', b.fencingToken));
    expect(own.map((r) => r.outcome)).toEqual(['ok', 'ok']);
  }, 120_000);
});

describe('a step whose answer a DMZ client restart lost', () => {
  it('is answered done when sent again with its key, not vetoed as "the request assumes VM … is …"', async () => {
    const lock = await record.acquireLocks(world.stack, ['web'], holder('apply-c'));
    const vm = newVm(world.stack, { index: 7 });
    const plan = `plan-${randomUUID().slice(0, 6)}`;
    const create: BatchStep = { op: 'create', body: { idempotencyKey: `${plan}/c`, planId: plan, fencingToken: lock.fencingToken, vm } };
    const all = [create, ...steps(vm.id, TO_RUNNING, plan, lock.fencingToken)];
    expect((await run(all)).every((r) => r.outcome === 'ok')).toBe(true);
    // The DMZ client dies after reporting its last three steps but before its log kept their answers.
    const dc = world.dc('miami');
    const log = idempotencyLogFile(dc.stateDir);
    const kept = (await readFile(log, 'utf8')).split('\n').filter((l) => l !== '' && !all.slice(-3).some((s) => l.includes(`"${s.body.idempotencyKey}"`)));
    await writeFile(log, `${kept.join('\n')}\n`);
    await dc.restart();
    // The CLI sends what it had no answer for again, same keys.
    const again = await run(all.slice(-3));
    expect(again.map((r) => r.outcome)).toEqual(['ok', 'ok', 'ok']);
    expect(again.every((r) => r.vm?.state === 'Running')).toBe(true);
    expect(again[0].reason).toContain('carried out already');
    expect((await record.getVm(vm.id))?.state).toBe('Running');
    expect(await dc.client.getVm(vm.id)).toMatchObject({ status: 'present', agent: 'ready' });
    await lock.release();
  }, 120_000);
});

describe('a request without a fencing token (Pulumi, a direct caller)', () => {
  it('is refused (locked) while an apply holds the fleet, changing nothing; goes through when nobody holds it', async () => {
    const stack = world.stack;
    // Tokenless, nobody holds fleet "solo": a direct caller creates and boots a VM.
    const vm = newVm(stack, { fleet: 'solo', index: 0 });
    const create: BatchStep = { op: 'create', body: { idempotencyKey: 'direct/c0', planId: null, vm } };
    const up = await run([create, ...steps(vm.id, TO_RUNNING, 'direct')]);
    expect(up.map((r) => r.outcome)).toEqual(TO_RUNNING.map(() => 'ok'));

    // An apply takes the lock of "solo".
    const lock = await record.acquireLocks(stack, ['solo'], holder('apply-d'));
    try {
      // Tokenless now: an edge of the running VM and a create are refused; nothing moves, nothing is created.
      const down = await run(steps(vm.id, ['Running', 'ShuttingDown', 'PoweredOff'], 'direct-2'));
      const other = newVm(stack, { fleet: 'solo', index: 1 });
      const made = await run([{ op: 'create', body: { idempotencyKey: 'direct/c1', planId: null, vm: other } }]);
      for (const r of [down, made]) {
        expect(r).toHaveLength(1);
        expect(r[0]).toMatchObject({ outcome: 'vetoed', decision: 'vetoed' });
        expect(r[0].reason).toContain('fleet solo is locked by an apply');
      }
      expect((await record.getVm(vm.id))?.state).toBe('Running');
      expect(await world.dc('miami').client.getVm(vm.id)).toMatchObject({ status: 'present', power: 'on', agent: 'ready' });
      expect(await record.getVm(other.id)).toBeUndefined();
      expect(await world.dc('miami').client.getVm(other.id)).toBeUndefined();
      expect((await record.history(stack, 'solo/0')).at(-1)).toMatchObject({ outcome: 'vetoed', planId: 'direct-2' });
      // The apply itself, carrying its token, goes on.
      const own = await run(steps(vm.id, ['Running', 'ShuttingDown'], 'plan-d', lock.fencingToken));
      expect(own.map((r) => r.outcome)).toEqual(['ok']);
    } finally {
      await lock.release();
    }
    // Released: tokenless requests go through again.
    const after = await run(steps(vm.id, ['ShuttingDown', 'PoweredOff'], 'direct-3'));
    expect(after.map((r) => r.outcome)).toEqual(['ok']);
  }, 120_000);
});
