// The PostgreSQL adapter under a server that drops its connection, or a network that drops it without a word.
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../diags/index.ts';
import { retryingRecord } from '../apply/record-retry.ts';
import { arrayLiteral } from './array-literal.ts';
import { RecordUnreachableError, isTransientRecordFault } from './errors.ts';
import { openRecord } from './open.ts';
import { DEFAULT_QUERY_TIMEOUT_MS, openPostgres, poolConfig } from './postgres.ts';
import type { SqlAdapter } from './sql.ts';
import { createTestDatabase, testPostgresUrl } from './testing.ts';

const base = testPostgresUrl();
/** node-postgres's own URL parser (pg-connection-string, as pg resolves it): the sslmode pg reads. */
const pgParse = (createRequire(createRequire(import.meta.url).resolve('pg')) ('pg-connection-string') as { parse: (url: string) => Record<string, unknown> }).parse;

const execFileAsync = promisify(execFile);

/** Runs `fn` with FLEET_RECORD_QUERY_TIMEOUT_MS set to `ms` (openPostgres reads it), then puts the variable back. */
async function withQueryTimeout<T>(ms: string, fn: () => Promise<T>): Promise<T> {
  const before = process.env.FLEET_RECORD_QUERY_TIMEOUT_MS;
  process.env.FLEET_RECORD_QUERY_TIMEOUT_MS = ms;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env.FLEET_RECORD_QUERY_TIMEOUT_MS;
    else process.env.FLEET_RECORD_QUERY_TIMEOUT_MS = before;
  }
}

/**
 * A TCP relay to `target` whose connections can be made silent: `silence()`
 * drops whatever either side sends on the connections open now, closing
 * nothing (a network that loses a connection without a word: a NAT or a
 * firewall that forgot it). Connections made after it relay as before.
 */
async function silentRelay(target: string): Promise<{ url: string; silence(): void; close(): Promise<void> }> {
  const t = new URL(target);
  const open = new Set<{ client: Socket; up: Socket; silent: boolean }>();
  const server = createServer((client) => {
    const up = connect(Number(t.port || 5432), t.hostname);
    const pair = { client, up, silent: false };
    open.add(pair);
    client.on('data', (b: Buffer) => void (pair.silent || up.write(b)));
    up.on('data', (b: Buffer) => void (pair.silent || client.write(b)));
    const end = () => {
      client.destroy();
      up.destroy();
      open.delete(pair);
    };
    client.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as { port: number }).port);
  return {
    url: url.toString(),
    silence: () => {
      for (const p of open) p.silent = true;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const p of open) {
          p.client.destroy();
          p.up.destroy();
        }
        server.close(() => r());
      }),
  };
}

// The pool set no TCP keepalive and no query timeout: a connection the network dropped without a word made a record
// call wait for minutes (for TCP to give up on its own) instead of failing fast enough to be tried again.
describe('PostgreSQL pool settings', () => {
  it('keeps TCP connections alive and times a statement out (FLEET_RECORD_QUERY_TIMEOUT_MS, default 2 minutes, 0: none)', () => {
    const url = 'postgres://fleet@db:5432/fleet';
    expect(poolConfig(url, {})).toMatchObject({ keepAlive: true, keepAliveInitialDelayMillis: 10_000, query_timeout: DEFAULT_QUERY_TIMEOUT_MS, connectionTimeoutMillis: 5000 });
    expect(DEFAULT_QUERY_TIMEOUT_MS).toBe(120_000);
    expect(poolConfig(url, { FLEET_RECORD_QUERY_TIMEOUT_MS: '250' }).query_timeout).toBe(250);
    expect(poolConfig(url, { FLEET_RECORD_QUERY_TIMEOUT_MS: '0' }).query_timeout).toBe(0);
    expect(() => poolConfig(url, { FLEET_RECORD_QUERY_TIMEOUT_MS: '2m' })).toThrow(/FLEET_RECORD_QUERY_TIMEOUT_MS takes a whole number of milliseconds \(0 or more; default 120000, 0 for none\), not "2m"/);
  });
});

describe.skipIf(!base)('PostgreSQL adapter: a statement with no answer within the query timeout', () => {
  let db: { url: string; drop(): Promise<void> };
  beforeAll(async () => {
    db = await createTestDatabase(base!);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('fails as a transient record.unreachable naming the setting, alone or in a transaction; the next statement gets a new connection', async () => {
    const adapter = await withQueryTimeout('300', () => openPostgres(db.url, 'the test record'));
    try {
      const alone = await adapter.query('SELECT pg_sleep(30)').then(() => undefined, (e: unknown) => e);
      expect(alone).toBeInstanceOf(RecordUnreachableError);
      expect(isTransientRecordFault(alone)).toBe(true);
      const d = (alone as FleetError).diagnostics[0];
      expect(d.code).toBe('record.unreachable');
      expect(d.detail).toContain('no answer within 300 ms (FLEET_RECORD_QUERY_TIMEOUT_MS)');
      expect(d.detail).toContain('raise FLEET_RECORD_QUERY_TIMEOUT_MS (0: no limit)');
      const inTx = await adapter.transaction((q) => q.query('SELECT pg_sleep(30)')).then(() => undefined, (e: unknown) => e);
      expect(isTransientRecordFault(inTx)).toBe(true);
      expect(await adapter.query<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
      expect(await adapter.transaction((q) => q.query<{ one: number }>('SELECT 1 AS one'))).toEqual([{ one: 1 }]);
    } finally {
      await adapter.close();
    }
  });

  it('0 sets no limit: a statement longer than a small one would allow is answered', async () => {
    const adapter = await withQueryTimeout('0', () => openPostgres(db.url, 'the test record'));
    try {
      expect(await adapter.query<{ one: number }>('SELECT 1 AS one FROM pg_sleep(0.5)')).toEqual([{ one: 1 }]);
    } finally {
      await adapter.close();
    }
  });

  it('a pooled connection the network silenced: the record call is tried again on a new connection and answered', async () => {
    const relay = await silentRelay(db.url);
    const record = await withQueryTimeout('500', () => openRecord(relay.url));
    const outages: string[] = [];
    const retried = retryingRecord(record, { onOutage: (f) => outages.push(f.diagnostics[0].detail), baseDelayMs: 10, maxDelayMs: 50 });
    try {
      expect(await retried.listFleets('web')).toEqual([]);
      // The connection it used waits idle in the pool; the network now drops it without a word.
      relay.silence();
      expect(await retried.listFleets('web')).toEqual([]);
      expect(outages).toHaveLength(1);
      expect(outages[0]).toContain('no answer within 500 ms (FLEET_RECORD_QUERY_TIMEOUT_MS)');
    } finally {
      await record.close();
      await relay.close();
    }
  });
});

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

// A record URL whose parameters ask to connect in a way that cannot work failed as cli.internal ("Internal error",
// quoting pg: "-c x requires a value", "Port should be >= 0 and < 65536", "ENOENT: no such file or directory, open
// …"), and `options=-c statement_timeout=abc` as a transient "connection timeout" (the word timeout in the server's
// "invalid value for parameter"). Each is record.unreachable, not transient, naming the URL and what to check.
describe('PostgreSQL record URL parameters that cannot connect', () => {
  const refused = async (url: string) => {
    const err = await openRecord(url).then(
      async (r) => (await r.close(), undefined),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RecordUnreachableError);
    const e = err as RecordUnreachableError;
    expect(e.transient).toBe(false);
    expect(e.diagnostics.map((d) => d.code)).toEqual(['record.unreachable']);
    return e.diagnostics[0].detail;
  };
  // Refused before a server is reached: no server needed.
  it.each([
    { name: 'a port out of range', query: 'port=99999', says: 'Port should be >= 0 and < 65536' },
    { name: 'a socket folder that does not exist', query: 'host=/nonexistent-fleet-socket-dir', says: 'connect ENOENT /nonexistent-fleet-socket-dir/.s.PGSQL.1' },
    { name: 'a CA file that does not exist', query: 'sslmode=verify-full&sslrootcert=/nonexistent-fleet-ca.pem', says: "open '/nonexistent-fleet-ca.pem'" },
  ])('$name', async ({ query, says }) => {
    const detail = await refused(`postgres://postgres:secret@127.0.0.1:1/x?${query}`);
    expect(detail).toContain(`(postgres://postgres:***@127.0.0.1:1/x?${query}): the connection could not be made: `);
    expect(detail).toContain(says);
    expect(detail).not.toContain('secret');
  });
  // The server's refusal of a startup setting (the URL's `options`).
  it.skipIf(!base).each([
    { name: 'an option with no value', options: '-c x', says: '-c x requires a value' },
    { name: 'a setting of the wrong type', options: '-c statement_timeout=abc', says: 'invalid value for parameter "statement_timeout": "abc"' },
  ])('$name', async ({ options, says }) => {
    const url = new URL(base!);
    url.searchParams.set('options', options);
    const detail = await refused(url.toString());
    expect(detail).toContain(`the connection could not be made: ${says}. Check the URL's parameters`);
    expect(detail).not.toContain('connection timeout');
  });
});

// A URL whose query overrides its host or port (`postgres://u@127.0.0.1:5432/db?port=1`: pg connects to port 1) was
// named by its host part: "cannot use the PostgreSQL record at 127.0.0.1:5432 … ECONNREFUSED 127.0.0.1:1. Check that
// PostgreSQL runs and listens on 127.0.0.1:5432". The record is named where pg connected. No server needed: port 1 refuses.
describe('PostgreSQL record URL: the host and port pg uses', () => {
  it.each([
    { name: 'port= over the URL port', url: 'postgres://postgres@127.0.0.1:5432/x?port=1', at: '127.0.0.1:1', not: '127.0.0.1:5432 (' },
    { name: 'host= over the URL host', url: 'postgres://postgres@no-such-host.invalid:1/x?host=127.0.0.1', at: '127.0.0.1:1', not: 'no-such-host.invalid:1 (' },
    { name: 'both', url: 'postgres://postgres@no-such-host.invalid:5432/x?host=127.0.0.1&port=1', at: '127.0.0.1:1', not: ':5432 (' },
  ])('$name', async ({ url, at, not }) => {
    const err = await openRecord(url).then(
      async (r) => (await r.close(), undefined),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RecordUnreachableError);
    const detail = (err as RecordUnreachableError).diagnostics[0].detail;
    expect(detail).toContain(`cannot use the PostgreSQL record at ${at} (`);
    expect(detail).toContain(`Check that PostgreSQL runs and listens on ${at},`);
    expect(detail).not.toContain(not);
  });
});

// node-postgres (pg-connection-string 2.x) takes sslmode prefer, require and verify-ca as verify-full and says so in a
// 12-line warning once per process. The record gives it such a URL with sslmode=verify-full (pgConnectionString), so
// it has nothing to warn about, whatever its warning's words: held back by matching those words, as it was, a pg
// that reworded it would have printed it again unnoticed. Each case runs in a process of its own
// (testdata/sslmode-warning.ts), which pg has not warned in yet.
describe("PostgreSQL record URL with sslmode=require: node-postgres's warning", () => {
  const child = fileURLToPath(new URL('./testdata/sslmode-warning.ts', import.meta.url));
  const warnings = async (how: 'open' | 'pg', url: string, reworded = false): Promise<string[]> => {
    const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', child, how, url, ...(reworded ? ['reworded'] : [])], { timeout: 60_000 });
    return JSON.parse(stdout) as string[];
  };
  /** A server that refuses TLS ('N' to the SSLRequest): the open fails, after pg has parsed the URL. */
  let server: Server;
  let port: number;
  beforeAll(async () => {
    server = createServer((socket) => {
      socket.once('data', () => socket.write('N'));
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('is written by the installed node-postgres for such a URL given as it is (why the record rewrites it)', async () => {
    const seen = await warnings('pg', `postgres://postgres@127.0.0.1:${port}/x?sslmode=require`);
    expect(seen).toHaveLength(2);
    expect(seen[0]).toMatch(/sslmode/);
    expect(seen[0]).toMatch(/verify-full/);
    expect(seen[1]).toBe('another warning of the test');
  });

  it.each([
    { name: 'as installed', reworded: false },
    // As a pg upgrade might word it: matching its words let this one through.
    { name: 'reworded', reworded: true },
  ])('is not written when the record opens it ($name), and a warning of anything else still is', async ({ reworded }) => {
    // The last sslmode is the one pg reads: `disable` before `require` was taken for the URL's and the warning let out.
    // A name spelled with escapes is sslmode to pg as well: `ssl%6Dode=require` was given as written and warned.
    for (const query of ['sslmode=prefer', 'sslmode=require', 'sslmode=verify-ca', 'sslmode=disable&sslmode=require', 'ssl%6Dode=require']) {
      const seen = await warnings('open', `postgres://postgres@127.0.0.1:${port}/x?${query}`, reworded);
      expect(seen, query).toEqual(['another warning of the test']);
    }
  });

  // What pg does with the URL the record gives it is what it did with the URL as written: the same connection
  // parameters (host, port, user, password, database, options, TLS settings), for URLs that spell the rest
  // differently. Fails when a pg upgrade gives these modes a meaning of their own (pg 9: libpq's): decide then.
  it.each([
    'postgres://fleet@db.example:5432/fleet?sslmode=require',
    'postgres://fleet@db.example/fleet?sslmode=prefer',
    'postgres://fleet@db.example/fleet?sslmode=verify-ca&application_name=x',
    'postgres://fleet:p%40ss%20w@db.example:6432/fle%20et?options=-c%20search_path%3Dx&sslmode=require',
    'postgres://fleet:p ss@db.example/fleet?options=-c+a%3Db&sslmode=require#frag',
    'postgres://fleet@%2Fvar%2Frun%2Fpostgresql/fleet?sslmode=require',
    'postgres://fleet@[::1]:5432/fleet?host=db.example&port=6000&sslmode=require',
    'postgres://fleet@db.example/fleet?sslmode=disable&sslmode=require',
    'postgres://fleet@db.example/fleet?sslmode=require&sslmode=require&connect_timeout=3',
    // Every spelling pg's parser reads as sslmode (pgQuery): escapes in the name or the value, either case, tabs and
    // newlines its URL parser drops; after a space (pg encodeURIs the URL first) only escapes of two decimal digits.
    'postgres://fleet@db.example/fleet?ssl%6Dode=require',
    'postgres://fleet@db.example/fleet?ssl%6dode=verify-ca&application_name=x',
    'postgres://fleet@db.example/fleet?%73%73%6C%6D%6F%64%65=prefer',
    'postgres://fleet@db.example/fleet?sslmode=requir%65',
    'postgres://fleet@db.example/fleet?sslmode=disable&ssl%6Dode=require',
    'postgres://fleet@db.example/fleet?ssl%6Dode=disable&sslmode=require',
    'postgres://fleet@db.example/fleet?ssl\tmode=require',
    'postgres://fleet@db.example/fleet?ssl\nmode=require&connect_timeout=3',
    'postgres://fleet:p ss@db.example/fleet?%73slmode=require',
    'postgres://fleet@db.example/fleet?ssl%6Dode=require&',
    'postgres://fleet@db.example/fleet?ssl%6Dode=require#sslmode=disable',
    // The last uselibpqcompat wins too.
    'postgres://fleet@db.example/fleet?uselibpqcompat=true&sslmode=require&uselibpqcompat=false',
  ])('sslmode=require reaches pg as what pg made of it: %s', (url) => {
    const given = poolConfig(url, {}).connectionString!;
    expect(given).not.toBe(url);
    expect(pgParse(given).sslmode).toBe('verify-full');
    // Every other parameter pg reads, read the same (sslmode aside).
    const { sslmode: _a, ...rest } = quietly(() => pgParse(url));
    const { sslmode: _b, ...restGiven } = pgParse(given);
    expect(restGiven).toEqual(rest);
    // A Client's connectionParameters and ssl are what it connects with (not in pg's types).
    type Seen = { connectionParameters: { password?: unknown }; ssl: unknown };
    const asWritten = quietly(() => new pg.Client({ connectionString: url })) as unknown as Seen;
    const asGiven = new pg.Client({ connectionString: given }) as unknown as Seen;
    expect(asGiven.connectionParameters).toEqual(asWritten.connectionParameters);
    expect(asGiven.ssl).toEqual(asWritten.ssl);
    // Not enumerable, so not compared above.
    expect(asGiven.connectionParameters.password).toBe(asWritten.connectionParameters.password);
  });

  it.each([
    'postgres://fleet@db.example/fleet',
    'postgres://fleet@db.example/fleet?sslmode=verify-full',
    'postgres://fleet@db.example/fleet?sslmode=disable',
    'postgres://fleet@db.example/fleet?sslmode=no-verify',
    'postgres://fleet@db.example/fleet?sslmode=require&sslmode=disable',
    // libpq's meaning, asked for: pg does not warn, and the mode is kept.
    'postgres://fleet@db.example/fleet?uselibpqcompat=true&sslmode=require',
    'postgres://fleet@db.example/fleet?uselibpqcomp%61t=true&sslmode=require',
    'postgres://fleet@db.example/fleet?sslmode=require&ssl%6Dode=disable',
    // Not sslmode to pg: after a space, pg's encodeURI keeps `%6D` (not two decimal digits) an escape of its own.
    'postgres://fleet:p ss@db.example/fleet?ssl%6Dode=require',
    'postgres://fleet@db.example/fleet?ssl+mode=require',
    'postgres://fleet@db.example/fleet#?sslmode=require',
  ])('is given to pg as written when pg would not warn: %s', (url) => {
    expect(poolConfig(url, {}).connectionString).toBe(url);
    // pg reads no sslmode it would warn about (or libpq's meaning, asked for).
    const seen = pgParse(url);
    expect(seen.uselibpqcompat === 'true' || !['prefer', 'require', 'verify-ca'].includes(String(seen.sslmode))).toBe(true);
  });
});

/** `f()` with node-postgres's warnings held back (the URL as written warns, in this process). */
function quietly<T>(f: () => T): T {
  const emit = process.emitWarning;
  process.emitWarning = () => {};
  try {
    return f();
  } finally {
    process.emitWarning = emit;
  }
}
