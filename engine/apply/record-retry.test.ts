// fleet apply's record calls retried on a lost connection (record-retry.ts):
// each write retried after an unknown outcome (its connection died around
// COMMIT) is written once, on PGlite and PostgreSQL; a real outage of the
// PostgreSQL server (every connection cut) is ridden out; the budget ends it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../diags/index.ts';
import { RecordUnreachableError } from '../record/errors.ts';
import { migrate } from '../record/migrations.ts';
import { openRecord } from '../record/open.ts';
import { openPglite } from '../record/pglite.ts';
import { openPostgres } from '../record/postgres.ts';
import { sqlRecord, type SqlRecord } from '../record/record.ts';
import type { Queryable, SqlAdapter } from '../record/sql.ts';
import { createTestDatabase, pgCutProxy, testBackends, testPostgresUrl } from '../record/testing.ts';
import type { NewVm } from '../record/types.ts';
import { retryingRecord, type RecordRetryOptions } from './record-retry.ts';

const lost = () => new RecordUnreachableError('cannot use the PostgreSQL record at test:5432 (test): connection lost: Connection terminated unexpectedly.', true);

/**
 * An adapter that, when armed, lets the next statement (or transaction) whose
 * text matches run and commit, then throws a lost connection: the write's
 * outcome is unknown to its caller, as when a connection dies around COMMIT.
 * `down`: every call fails before it reaches the database. `dead`: that many
 * next calls fail so (each met a pooled connection that died with an outage:
 * the server restarted), the ones after them reach it.
 */
function faulty(inner: SqlAdapter) {
  const state = { arm: undefined as RegExp | undefined, down: false, dead: 0, calls: 0 };
  const gone = () => {
    if (state.down) return true;
    if (state.dead === 0) return false;
    state.dead--;
    return true;
  };
  const hit = (text: string) => {
    if (state.arm?.test(text)) {
      state.arm = undefined;
      return true;
    }
    return false;
  };
  const adapter: SqlAdapter = {
    kind: inner.kind,
    async query<T>(text: string, params?: readonly unknown[]) {
      state.calls++;
      if (gone()) throw lost();
      const out = await inner.query<T>(text, params);
      if (hit(text)) throw lost();
      return out;
    },
    async transaction<T>(fn: (q: Queryable) => Promise<T>) {
      state.calls++;
      if (gone()) throw lost();
      const seen: string[] = [];
      const out = await inner.transaction((q) => fn({ query: (text, params) => (seen.push(text), q.query(text, params)) }));
      if (seen.some(hit)) throw lost();
      return out;
    },
    close: () => inner.close(),
  };
  return { adapter, state };
}

const fast: RecordRetryOptions = { baseDelayMs: 1, maxDelayMs: 5 };

function newVm(stack: string, index: number): NewVm {
  return { stack, fleet: 'web', owner: 'team', index, dataCenter: 'miami', state: 'Requested', desiredState: 'Running', specHash: 'h1', image: 'ubuntu-22.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 50 }, encryptedDisk: true };
}

let n = 0;
const freshStack = () => `rr${++n}-${Date.now().toString(36)}`;
const holder = { who: 'ci', host: 'ci-1', pid: 4242, planId: null };

describe.each(testBackends())('retried record writes after an unknown outcome, on $name', (backend) => {
  let drop: () => Promise<void>;
  let raw: SqlAdapter;
  let f: ReturnType<typeof faulty>;
  let plain: SqlRecord;
  let told: { outages: number; backs: number };
  let r: SqlRecord;
  beforeAll(async () => {
    const fresh = await backend.freshUrl();
    drop = fresh.drop;
    raw = backend.name === 'pglite' ? await openPglite(fresh.url.slice('pglite://'.length)) : await openPostgres(fresh.url, fresh.url);
    await migrate(raw, { description: fresh.url });
    f = faulty(raw);
    plain = sqlRecord(f.adapter, fresh.url);
    told = { outages: 0, backs: 0 };
    r = retryingRecord(plain, { ...fast, onOutage: () => told.outages++, onBack: () => told.backs++ });
  });
  afterAll(async () => {
    await raw?.close();
    await drop?.();
  });

  it('a journal row whose COMMIT answer was lost is retried and written once; the outage is told once, and its end', async () => {
    const s = freshStack();
    const planId = `${s}-p`;
    await r.startPlan({ id: planId, stack: s, digest: 'd', who: 'ci', startedAt: '2026-01-01T00:00:00.000Z' });
    const row = { planId, address: 'web/0', seq: 0, vmId: null, from: 'A', to: 'B', idempotencyKey: `${planId}/web/0/0`, detail: null };
    const before = { ...told };
    f.state.arm = /INSERT INTO journal/;
    await r.journal({ ...row, status: 'started' });
    expect(told).toEqual({ outages: before.outages + 1, backs: before.backs + 1 });
    f.state.arm = /INSERT INTO journal/;
    await r.journal({ ...row, status: 'done' });
    expect((await r.planJournal(planId)).map((j) => j.status)).toEqual(['started', 'done']);
    // Without the retry the same lost answer stops the caller (what the apply did before).
    f.state.arm = /INSERT INTO journal/;
    await expect(plain.journal({ ...row, status: 'failed' })).rejects.toThrow(/connection lost/);
  });

  it('startPlan, finishPlan and setFleetProtection whose answers were lost are written once', async () => {
    const s = freshStack();
    const plan = { id: `${s}-p`, stack: s, digest: 'd', who: 'ci', startedAt: '2026-01-01T00:00:00.000Z' };
    f.state.arm = /INSERT INTO plans/;
    await r.startPlan(plan);
    f.state.arm = /UPDATE plans/;
    await r.finishPlan(plan.id, 'succeeded');
    expect((await r.listPlans(s)).map((p) => [p.id, p.result])).toEqual([[plan.id, 'succeeded']]);
    f.state.arm = /INSERT INTO fleets/;
    await r.setFleetProtection(s, 'web', 'team', true);
    expect((await r.listFleets(s)).map((x) => [x.fleet, x.protected])).toEqual([['web', true]]);
  });

  it('acquireLocks whose answer was lost takes the locks once, under the retry\'s token; heartbeat and release retried likewise', async () => {
    const s = freshStack();
    f.state.arm = /INSERT INTO locks/;
    const h = await r.acquireLocks(s, ['web', 'db'], holder);
    const locks = await r.listLocks(s);
    expect(locks.map((l) => [l.fleet, l.lockId, l.fencingToken])).toEqual([
      ['db', h.lockId, h.fencingToken],
      ['web', h.lockId, h.fencingToken],
    ]);
    f.state.arm = /UPDATE locks/;
    await h.heartbeat();
    f.state.arm = /DELETE FROM locks/;
    await h.release();
    expect(await r.listLocks(s)).toEqual([]);
  });

  it('updateVm whose answer was lost answers the row it wrote (the retry meets its own version)', async () => {
    const s = freshStack();
    const vm = await r.insertVm(newVm(s, 0), { actor: 'a' });
    f.state.arm = /UPDATE vms/;
    const row = await r.updateVm(vm.id, vm.version, { specHash: 'h2', desiredState: 'PoweredOff' }, { actor: 'a' });
    expect(row).toMatchObject({ id: vm.id, specHash: 'h2', desiredState: 'PoweredOff', version: vm.version + 1 });
    // Someone else's write in between is still a conflict.
    await expect(r.updateVm(vm.id, vm.version, { specHash: 'h3' }, { actor: 'a' })).rejects.toThrow(/changed since it was read/);
  });

  it('a write that is not safe to repeat (a transition) is not retried: the lost connection is its answer', async () => {
    const s = freshStack();
    const vm = await r.insertVm(newVm(s, 0), { actor: 'a' });
    f.state.arm = /UPDATE vms/;
    const err = await r.transitionVm(vm.id, vm.version, 'BeingCreated', { actor: 'a' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RecordUnreachableError);
  });

  it('gives up once the outage outlasts the budget: record.unreachable saying so, every call of that outage at once', async () => {
    const outages: number[] = [];
    const short = retryingRecord(plain, { ...fast, budgetMs: 50, onOutage: (_e, ms) => outages.push(ms) });
    f.state.down = true;
    try {
      const err = await short.listFleets('x').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FleetError);
      expect((err as FleetError).diagnostics[0].code).toBe('record.unreachable');
      expect((err as FleetError).diagnostics[0].detail).toMatch(/connection lost: .* Retried for [\d.]+ s, the retry budget \(FLEET_RETRY_BUDGET_MS, 0.05 s\)\.$/);
      expect((err as RecordUnreachableError).transient).toBe(false);
      // A call begun once the budget is spent, the record still down: its try and one more at once (the first may
      // have met a connection that died with the outage: see below), no pause, no budget of its own.
      const calls = f.state.calls;
      const late = await short.listFleets('x').catch((e: unknown) => e);
      expect(f.state.calls - calls).toBe(2);
      expect((late as FleetError).diagnostics[0].detail).toMatch(
        /connection lost: .* The record has been unreachable for [\d.]+ s, past the retry budget \(FLEET_RETRY_BUDGET_MS, 0\.05 s\): tried twice, not retried further\.$/,
      );
      expect((late as RecordUnreachableError).transient).toBe(false);
      expect(outages).toEqual([50]);
    } finally {
      f.state.down = false;
    }
  });

  it('after an outage that spent its budget, the record back: a call that meets a connection which died with the outage is tried again, written once; the next outage has a budget of its own', async () => {
    const told: string[] = [];
    const short = retryingRecord(plain, { ...fast, budgetMs: 50, onOutage: () => told.push('outage'), onBack: () => told.push('back') });
    const s = freshStack();
    const planId = `${s}-p`;
    await short.startPlan({ id: planId, stack: s, digest: 'd', who: 'ci', startedAt: '2026-01-01T00:00:00.000Z' });
    const row = { planId, address: 'web/0', seq: 0, vmId: null, from: 'A', to: 'B', idempotencyKey: `${planId}/web/0/0`, detail: null };
    f.state.down = true;
    try {
      await expect(short.journal({ ...row, status: 'started' })).rejects.toThrow(/Retried for/);
    } finally {
      f.state.down = false;
    }
    // The server is back; the pool's connection the next call takes died with the outage (the server restarted).
    f.state.dead = 1;
    await short.journal({ ...row, status: 'started' });
    await short.journal({ ...row, status: 'done' });
    expect((await short.planJournal(planId)).map((j) => j.status)).toEqual(['started', 'done']);
    expect(told).toEqual(['outage', 'back']);
    // A later outage is retried for a budget of its own (its calls pause and try again), and its end is told.
    f.state.dead = 4;
    await short.finishPlan(planId, 'succeeded');
    expect(f.state.dead).toBe(0);
    expect(told).toEqual(['outage', 'back', 'outage', 'back']);
    expect((await short.listPlans(s)).map((p) => p.result)).toEqual(['succeeded']);
  });
});

const pg = testPostgresUrl();

describe.skipIf(!pg)('a real outage of the PostgreSQL server (every connection cut, new ones refused)', () => {
  it('the retried calls ride it out: locks, journal, reads; each write once', async () => {
    const db = await createTestDatabase(pg!);
    const proxy = await pgCutProxy(db.url);
    const told: string[] = [];
    const record = retryingRecord(await openRecord(proxy.url), {
      onOutage: (e) => told.push(`outage: ${e.diagnostics[0].detail}`),
      onBack: () => told.push('back'),
    });
    try {
      const s = freshStack();
      const lock = await record.acquireLocks(s, ['web'], holder);
      const planId = `${s}-p`;
      await record.startPlan({ id: planId, stack: s, digest: 'd', who: 'ci', startedAt: '2026-01-01T00:00:00.000Z' });
      const row = { planId, address: 'web/0', seq: 0, vmId: null, from: 'A', to: 'B', idempotencyKey: `${planId}/web/0/0`, detail: null };
      await record.journal({ ...row, status: 'started' });
      // The pool's connections die; a new one is refused until the server is back.
      proxy.cut(300);
      await Promise.all([record.journal({ ...row, status: 'done' }), lock.heartbeat(), record.listVms(s)]);
      expect(told).toHaveLength(2);
      expect(told[0]).toMatch(/^outage: cannot use the PostgreSQL record at 127\.0\.0\.1:\d+ .*(ECONNRESET|connection lost)/);
      expect(told[1]).toBe('back');
      await record.finishPlan(planId, 'succeeded');
      await lock.release();
      expect((await record.planJournal(planId)).map((j) => j.status)).toEqual(['started', 'done']);
      expect(await record.listLocks(s)).toEqual([]);
    } finally {
      await record.close();
      await proxy.close();
      await db.drop();
    }
  });
});
