// The PostgreSQL adapter under a server that drops its connection.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../diags/index.ts';
import { openPostgres } from './postgres.ts';
import type { SqlAdapter } from './sql.ts';
import { createTestDatabase, testPostgresUrl } from './testing.ts';

const base = testPostgresUrl();

describe.skipIf(!base)('PostgreSQL adapter: a connection the server ends', () => {
  let db: { url: string; drop(): Promise<void> };
  let adapter: SqlAdapter;
  beforeAll(async () => {
    db = await createTestDatabase(base!);
    adapter = await openPostgres(db.url, 'the test record');
  });
  afterAll(async () => {
    await adapter?.close();
    await db?.drop();
  });

  // A transaction's connection is checked out of the pool, which then no longer listens for its 'error' event: a
  // server ending it (a restart, a failover, pg_terminate_backend) between two statements crashed the process with
  // "Unhandled 'error' event" (node_modules/pg/lib/client.js) instead of failing the transaction with a diagnostic.
  // Seen in apply.e2e's record-outage case, about one run in two.
  it('ended mid-transaction: the transaction fails with record.unreachable, the process lives on, and the next statement gets a new connection', async () => {
    const failed = await adapter
      .transaction(async (q) => {
        const [{ pid }] = await q.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        // Another connection of the pool ends this one, and the server says so before the next statement is sent.
        await adapter.query('SELECT pg_terminate_backend($1)', [pid]);
        await expect.poll(async () => (await adapter.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1', [pid]))[0].n, { timeout: 10_000 }).toBe('0');
        return q.query('SELECT 1');
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(failed).toBeInstanceOf(FleetError);
    expect((failed as FleetError).diagnostics[0].code).toBe('record.unreachable');
    expect(await adapter.query<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });
});
