// The PostgreSQL adapter under a server that drops its connection.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../diags/index.ts';
import { arrayLiteral } from './array-literal.ts';
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

// The batch statements' arrays go as literals the adapter builds (arrayLiteral), no longer pg's: the same text, and the
// same values back from the server.
describe('PostgreSQL adapter: array parameters', () => {
  const samples: unknown[][] = [
    [],
    ['a', 'b c', ''],
    [null, undefined, 'x'],
    ['quote " in', 'back \\ slash', '\\"both\\"', '{braces},', 'NULL', 'tab\tnew\nline', 'é ☃ 𝄞'],
    [1, 0, -3, 2.5, 1e21],
    [true, false, null],
  ];
  it('makes the literal pg makes of a flat array of strings, numbers and booleans', async () => {
    const { createRequire } = await import('node:module');
    const pgUtils = createRequire(import.meta.url)('pg/lib/utils.js') as { prepareValue: (v: unknown) => unknown };
    for (const a of samples) expect(arrayLiteral(a)).toBe(pgUtils.prepareValue(a));
  });
  it('leaves any other array to pg', () => {
    expect(arrayLiteral([['nested']])).toBeUndefined();
    expect(arrayLiteral([Buffer.from('x')])).toBeUndefined();
    expect(arrayLiteral([new Date(0)])).toBeUndefined();
    expect(arrayLiteral([{ a: 1 }])).toBeUndefined();
  });
  it.skipIf(!base)('the server reads back every element as sent', async () => {
    const db = await createTestDatabase(base!);
    const adapter = await openPostgres(db.url, 'the test record');
    try {
      const texts = ['quote " in', 'back \\ slash', '\\"both\\"', '{braces},', 'NULL', 'tab\tnew\nline', 'é ☃ 𝄞', '', null];
      const [row] = await adapter.query<{ t: (string | null)[]; n: number[]; b: boolean[] }>('SELECT $1::text[] AS t, $2::int[] AS n, $3::boolean[] AS b', [texts, [1, -2, 3], [true, false]]);
      expect(row).toEqual({ t: texts, n: [1, -2, 3], b: [true, false] });
    } finally {
      await adapter.close();
      await db.drop();
    }
  });
});
