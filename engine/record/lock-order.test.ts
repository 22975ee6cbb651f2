// The order a batch statement locks rows in: two authority replicas batch the
// reports of the same VMs in different orders (each replica its own batch), and
// PostgreSQL aborts one of two transactions that lock the same rows in opposite
// orders ("deadlock detected": the replica answered 500 internal; seen in
// test/replicas.e2e.test.ts, a report sent to both replicas at once). Runs
// when FLEET_TEST_POSTGRES_URL is set (PGlite is one connection).
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPostgresUrl, postgresBackend, type TestRecord } from './testing.ts';
import type { NewVm } from './index.ts';

const pgUrl = testPostgresUrl();

describe.runIf(pgUrl !== undefined)('the lock order of a batch of transitions (PostgreSQL)', () => {
  let t: TestRecord;
  let holder: pg.Client;
  let watcher: pg.Client;
  beforeAll(async () => {
    t = await postgresBackend(pgUrl!).create();
    holder = new pg.Client({ connectionString: t.url });
    watcher = new pg.Client({ connectionString: t.url });
    await Promise.all([holder.connect(), watcher.connect()]);
  });
  afterAll(async () => {
    await holder?.end();
    await watcher?.end();
    await t?.cleanup();
  });

  const vmOf = (id: string, index: number): NewVm => ({
    id,
    stack: 'lo',
    fleet: 'web',
    owner: 'o',
    index,
    dataCenter: 'miami',
    state: 'S0',
    desiredState: 'Running',
    specHash: '0',
    image: 'ubuntu',
    size: { cpu: 1, memoryGiB: 1, diskGiB: 1 },
    encryptedDisk: false,
  });

  /** Until a backend of the record other than the holder waits for a lock (the batch is blocked). */
  async function blocked(): Promise<void> {
    const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    for (;;) {
      const { rows } = await watcher.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> $1 AND pid <> pg_backend_pid()",
        [holderPid],
      );
      if (rows.length > 0) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  it('locks the VM rows in id order, whatever the order of its items: it holds none while it waits for the first', async () => {
    // Ten pairs: each batch names the VM whose id sorts last first (and that VM is inserted first).
    for (let pair = 0; pair < 10; pair++) {
      const p = randomUUID();
      const [first, last] = [`${p}-a`, `${p}-b`];
      await t.record.insertVm(vmOf(last, 2 * pair), { actor: 'test' });
      await t.record.insertVm(vmOf(first, 2 * pair + 1), { actor: 'test' });
      // Another transaction (another replica's batch) holds the VM whose id sorts first.
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM vms WHERE id = $1 FOR UPDATE', [first]);
      const batch = t.record.transitionVms([last, first].map((id) => ({ id, expectedVersion: 1, to: 'S1', ctx: { actor: 'test' } })));
      await blocked();
      // The batch, blocked on `first`, holds no lock the holder's next one needs: locked in
      // item order it would hold `last`, and the two would wait for each other.
      const next = await holder.query('SELECT 1 FROM vms WHERE id = $1 FOR UPDATE NOWAIT', [last]).then(
        () => 'locked',
        (err: Error) => err.message,
      );
      await holder.query('ROLLBACK');
      expect(next, `pair ${pair}`).toBe('locked');
      expect((await batch).map((r) => (r instanceof Error ? r.message : r.state))).toEqual(['S1', 'S1']);
    }
  });
});
