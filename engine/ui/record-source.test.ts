// recordSource over a real (in-memory) record: the pages get one stack's
// rows, in the orders the pages promise, with only the fields they show.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIFECYCLE } from '../policy/testdata/fixtures.ts';
import { openRecord, type LockRow, type SqlRecord } from '../record/index.ts';
import { recordSource, type UiRecord } from './record-source.ts';

let record: SqlRecord;
const pack = { name: 'default', version: '1.0.0', lifecycle: DEFAULT_LIFECYCLE };
const newVm = (stack: string, fleet: string, index: number) => ({
  stack, fleet, owner: 'team', index, dataCenter: 'miami', state: 'Requested', desiredState: 'Running', specHash: 'secret-ish-spec-hash', image: 'ubuntu-22.04',
  size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, encryptedDisk: true,
});

beforeAll(async () => {
  record = await openRecord('memory://');
  const a = await record.insertVm(newVm('one', 'web', 0), { actor: 'ana', planId: 'p-1', requestId: 'req-1' });
  await record.insertVm(newVm('two', 'web', 0), { actor: 'bob' });
  await record.addHistory(a.id, { from: 'Requested', to: 'Requested', outcome: 'drift', actor: 'refresh', detail: 'first' });
  await record.addHistory(a.id, { from: 'Requested', to: 'Requested', outcome: 'drift', actor: 'refresh', detail: 'second' });
  await record.addBootAttempts([
    { vmId: a.id, dataCenter: 'miami', cloudId: 'c-1', image: 'img', approved: false, reason: 'no token' },
    { vmId: a.id, dataCenter: 'miami', cloudId: 'c-1', image: 'img', approved: true, reason: 'matches the record' },
  ]);
  await record.startPlan({ id: 'p-1', stack: 'one', digest: 'd1', who: 'ana', startedAt: '2026-12-01T09:00:00.000Z' });
  await record.startPlan({ id: 'p-2', stack: 'two', digest: 'd2', who: 'bob', startedAt: '2026-12-01T10:00:00.000Z' });
  await record.journal({ planId: 'p-1', address: 'web/0', seq: 0, vmId: a.id, from: 'Requested', to: 'BeingCreated', idempotencyKey: 'idem-key-1', status: 'started', detail: null });
  await record.acquireLocks('one', ['web'], { who: 'ci', host: 'h', pid: 1, planId: 'p-1' });
});
afterAll(() => record?.close());

describe('recordSource', () => {
  it('reads one stack only, with the fields the pages show and nothing else', async () => {
    const src = recordSource(record, 'one', pack);
    expect(src.pack.name).toBe('default@1.0.0');
    const vms = await src.listVms();
    expect(vms.map((v) => v.address)).toEqual(['web/0']);
    expect(Object.keys(vms[0]).sort()).toEqual(
      ['address', 'cloudId', 'dataCenter', 'deposed', 'desiredState', 'encryptedDisk', 'fleet', 'id', 'image', 'index', 'realImage', 'size', 'state', 'updatedAt', 'version'].sort(),
    );
    expect(JSON.stringify(vms)).not.toContain('secret-ish-spec-hash');
    const history = await src.history('web/0', 10);
    expect(history.map((h) => h.detail)).toEqual([null, 'first', 'second']);
    expect(JSON.stringify(history)).not.toContain('req-1');
    expect((await src.drift(10)).map((h) => h.detail)).toEqual(['second', 'first']);
    expect((await src.bootAttempts(vms[0].id, 10)).map((b) => [b.approved, b.reason])).toEqual([
      [true, 'matches the record'],
      [false, 'no token'],
    ]);
    expect((await src.recentPlans(10)).map((p) => p.id)).toEqual(['p-1']);
    const journal = await src.planJournal('p-1');
    expect(journal).toMatchObject([{ address: 'web/0', from: 'Requested', to: 'BeingCreated', status: 'started' }]);
    expect(JSON.stringify(journal)).not.toContain('idem-key-1');
    const [lock] = await src.listLocks();
    expect(lock).toMatchObject({ fleet: 'web', who: 'ci', planId: 'p-1' });
    // The record numbers every lock acquisition (fencing tokens): the first lock has token 1.
    expect(lock.fencingToken).toBe(1);
    expect((await recordSource(record, 'two', pack).listLocks())).toEqual([]);
  });

  it('shows a lock\'s fencing token when the record keeps one', async () => {
    const withToken: UiRecord = { ...record, listLocks: async (s) => (await record.listLocks(s)).map((l): LockRow & { fencingToken: number } => ({ ...l, fencingToken: 42 })) };
    expect((await recordSource(withToken, 'one', pack).listLocks())[0].fencingToken).toBe(42);
  });
});
