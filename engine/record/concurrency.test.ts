// Two separate processes on one PostgreSQL record: the guarantees that only
// a real server can show (PGlite is single-process). Runs when
// FLEET_TEST_POSTGRES_URL is set.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPostgresUrl, postgresBackend, type TestRecord } from './testing.ts';
import { openAtOnce, startWorker, type Worker } from './testdata/spawn.ts';

const pgUrl = testPostgresUrl();

describe.runIf(pgUrl !== undefined)('two processes on one PostgreSQL record', () => {
  let t: TestRecord;
  const workers: Worker[] = [];
  beforeAll(async () => {
    t = await postgresBackend(pgUrl!).create();
  });
  afterAll(async () => {
    for (const w of workers) w.child.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
    await t?.cleanup();
  });

  function start(args: string[]): Worker {
    const w = startWorker(args);
    workers.push(w);
    return w;
  }

  it('lets two processes open (and migrate) one fresh database at once', async () => {
    const fresh = await postgresBackend(pgUrl!).freshUrl();
    try {
      expect(await openAtOnce(fresh.url, start)).toEqual({ opened: ['OPENED', 'OPENED'], exited: [0, 0] });
    } finally {
      await fresh.drop();
    }
  });

  it('gives a fleet lock to exactly one of two takers', async () => {
    const ws = [start(['lock', t.url, 'lk', 'web', '60000']), start(['lock', t.url, 'lk', 'web', '60000'])];
    await Promise.all(ws.map((w) => w.line(/^READY$/)));
    for (const w of ws) w.child.stdin!.write('go\n');
    const results = await Promise.all(ws.map((w) => w.line(/^(WON|HELD)/)));
    expect(results.filter((l) => l.startsWith('WON'))).toHaveLength(1);
    expect(results.filter((l) => l === 'HELD')).toHaveLength(1);
    const won = results.find((l) => l.startsWith('WON'))!.split(' ')[1];
    expect((await t.record.listLocks('lk')).map((l) => l.lockId)).toEqual([won]);
    for (const w of ws) w.child.stdin!.end();
    expect(await Promise.all(ws.map((w) => w.exited))).toEqual([0, 0]);
  });

  it('loses no update when two processes increment one VM', async () => {
    const vm = await t.record.insertVm(
      {
        stack: 'inc',
        fleet: 'web',
        owner: 'o',
        index: 0,
        dataCenter: 'miami',
        state: 'S0',
        desiredState: 'Running',
        specHash: '0',
        image: 'ubuntu',
        size: { cpu: 1, memoryGiB: 1, diskGiB: 1 },
        encryptedDisk: false,
      },
      { actor: 'test' },
    );
    const times = 25;
    const ws = [start(['increment', t.url, vm.id, String(times)]), start(['increment', t.url, vm.id, String(times)])];
    await Promise.all(ws.map((w) => w.line(/^READY$/)));
    for (const w of ws) w.child.stdin!.write('go\n');
    await Promise.all(ws.map((w) => w.line(/^DONE/)));
    const after = await t.record.getVm(vm.id);
    expect(after).toMatchObject({ specHash: String(2 * times), version: 1 + 2 * times });
    // Each worker transitions on its even steps (13 of 25); each transition wrote exactly one history row.
    expect(await t.record.history('inc')).toHaveLength(1 + 2 * Math.ceil(times / 2));
    expect(await t.record.listFleets('inc')).toMatchObject([{ version: 1 + 2 * times }]);
  });

  it('takes over the lease of a killed holder', async () => {
    const w = start(['lock', t.url, 'lease', 'web', '500']);
    await w.line(/^READY$/);
    w.child.stdin!.write('go\n');
    const won = (await w.line(/^WON/)).split(' ')[1];
    w.child.kill('SIGKILL');
    await w.exited;
    expect((await t.record.listLocks('lease'))[0].lockId).toBe(won);
    const h = await t.record.acquireLocks('lease', ['web'], { who: 'me', host: 'here', pid: process.pid, planId: null }, { timeoutMs: 30_000 });
    expect((await t.record.listLocks('lease'))[0]).toMatchObject({ lockId: h.lockId, who: 'me' });
    await h.release();
  });
});
