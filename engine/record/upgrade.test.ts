// Upgrading a record a former dmzfleet made: from every earlier schema
// version, alone, by two processes at once, and after a migration killed
// midway. The old records are made by the migrations themselves (MIGRATIONS
// up to that version) and filled with generated rows (testdata/old-record.ts).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FleetError } from '../diags/index.ts';
import { MIGRATIONS, SCHEMA_VERSION, migrate } from './migrations.ts';
import { openRecord } from './open.ts';
import { openPglite } from './pglite.ts';
import { openPostgres } from './postgres.ts';
import type { SqlAdapter } from './sql.ts';
import { testBackends, usageDrift, type TestBackend } from './testing.ts';
import { columnsOf, fillOldRecord, tableRows } from './testdata/old-record.ts';
import { openAtOnce, startWorker, type Worker } from './testdata/spawn.ts';

function raw(backend: TestBackend, url: string): Promise<SqlAdapter> {
  return backend.name === 'pglite' ? openPglite(url.slice('pglite://'.length)) : openPostgres(url, url);
}

/** A record at `version` filled with generated rows; its rows and columns as they were. */
async function oldRecord(backend: TestBackend, version: number, seed: number) {
  const fresh = await backend.freshUrl();
  const db = await raw(backend, fresh.url);
  try {
    await migrate(db, { description: fresh.url }, MIGRATIONS.filter((m) => m.version <= version));
    const written = await fillOldRecord(db, seed);
    const cols = await columnsOf(db);
    return { ...fresh, written, cols, rows: await tableRows(db, cols) };
  } finally {
    await db.close();
  }
}

/** What an upgraded record must show: every row it had, at this version, with usage in step. */
async function expectKept(backend: TestBackend, old: Awaited<ReturnType<typeof oldRecord>>, label: string): Promise<void> {
  const record = await openRecord(old.url);
  try {
    expect(await record.schemaVersion(), label).toBe(SCHEMA_VERSION);
    expect(await tableRows(record.sql, old.cols), label).toEqual(old.rows);
    expect(await usageDrift(record), label).toEqual([]);
    // The reads the commands make still read every row.
    for (const stack of ['s1', 's2']) {
      const vms = await record.listVms(stack, { includeRetired: true });
      expect(vms.length, label).toBe(old.rows.vms.filter((j) => (JSON.parse(j) as { stack: string }).stack === stack).length);
      expect((await record.history(stack, undefined, { limit: 100_000 })).length, label).toBe(
        old.rows.history.filter((j) => (JSON.parse(j) as { stack: string }).stack === stack).length,
      );
      if (old.cols.has('locks')) {
        expect((await record.listLocks(stack)).length, label).toBe(old.rows.locks.filter((j) => (JSON.parse(j) as { stack: string }).stack === stack).length);
      }
    }
  } finally {
    await record.close();
  }
  void backend;
}

const EARLIER = MIGRATIONS.map((m) => m.version).filter((v) => v < SCHEMA_VERSION);

describe.each(testBackends())('a record of every earlier schema version on $name', (backend) => {
  it.each(EARLIER)('upgrades one at version %i keeping every row, lock and usage sum', async (version) => {
    const old = await oldRecord(backend, version, 1000 + version);
    try {
      expect(old.written.vms).toBeGreaterThan(0);
      await expectKept(backend, old, `from version ${version}`);
    } finally {
      await old.drop();
    }
  }, 60_000);
});

describe.each(testBackends())('upgrades racing or killed on $name', (backend) => {
  const workers: Worker[] = [];
  afterAll(async () => {
    for (const w of workers) w.child.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
  });
  const start = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const w = startWorker(args, env);
    workers.push(w);
    return w;
  };

  it.each([1, 11])('two processes upgrading one record at version %i: both open it, it is upgraded once', async (version) => {
    const old = await oldRecord(backend, version, 2000 + version);
    try {
      expect(await openAtOnce(old.url, start)).toEqual({ opened: ['OPENED', 'OPENED'], exited: [0, 0] });
      await expectKept(backend, old, `raced from ${version}`);
    } finally {
      await old.drop();
    }
  }, 120_000);

  // A server whose databases default to a stricter isolation (a DBA's default_transaction_isolation): the second
  // upgrader's snapshot must not predate the first one's commit, or it would run every migration again.
  it.runIf(backend.name === 'postgres').each(['repeatable read', 'serializable'])(
    'two processes upgrading one record whose database defaults to %s isolation: both open it',
    async (isolation) => {
      const old = await oldRecord(backend, 5, 2100);
      try {
        const db = await raw(backend, old.url);
        await db.query(`ALTER DATABASE ${new URL(old.url).pathname.slice(1)} SET default_transaction_isolation = '${isolation}'`);
        await db.close();
        expect(await openAtOnce(old.url, start)).toEqual({ opened: ['OPENED', 'OPENED'], exited: [0, 0] });
        await expectKept(backend, old, `raced under ${isolation}`);
      } finally {
        await old.drop();
      }
    },
    120_000,
  );

  // Kill points: the k-th statement of the upgrade's transaction, from version 1 (every migration runs).
  const statements = MIGRATIONS.flatMap((m) => (m.version > 1 ? m.statements : [])).length + 5;
  const kills = [1, 2, 5, 13, 34, statements - 2, statements].filter((k, i, a) => k <= statements && a.indexOf(k) === i);
  it.each(kills)('an upgrade killed at its statement %i leaves the old record; the next open upgrades it whole', async (k) => {
    const old = await oldRecord(backend, 1, 3000 + k);
    try {
      const w = start(['migrate-hang', old.url, String(k)]);
      const at = await w.line(/^(AT|DONE)/);
      w.child.kill('SIGKILL');
      await w.exited;
      if (at.startsWith('AT')) {
        // Nothing of the killed transaction stayed: the record reads as version 1, rows as they were.
        const db = await raw(backend, old.url);
        try {
          expect(await db.query('SELECT schema_version FROM meta')).toEqual([{ schema_version: 1 }]);
          expect(await tableRows(db, old.cols)).toEqual(old.rows);
        } finally {
          await db.close();
        }
      }
      await expectKept(backend, old, `killed at ${k}`);
    } finally {
      await old.drop();
    }
  }, 120_000);
});

describe.each(testBackends())('records this dmzfleet must not upgrade, on $name', (backend) => {
  /** What openRecord threw: its first diagnostic's code and detail. */
  async function refusal(url: string): Promise<{ code: string; detail: string }> {
    try {
      const r = await openRecord(url);
      await r.close();
    } catch (err) {
      if (err instanceof FleetError) return { code: err.diagnostics[0].code, detail: err.diagnostics[0].detail };
      throw err;
    }
    throw new Error('opened');
  }

  it('a record newer than this dmzfleet: refused naming both versions, not written', async () => {
    const fresh = await backend.freshUrl();
    try {
      const db = await raw(backend, fresh.url);
      await migrate(db, { description: fresh.url }, [...MIGRATIONS, { version: SCHEMA_VERSION + 1, description: 'future', statements: ['ALTER TABLE vms ADD COLUMN future text'] }]);
      await fillOldRecord(db, 42);
      const before = await tableRows(db);
      const meta = await db.query('SELECT * FROM meta');
      await db.close();
      const r = await refusal(fresh.url);
      expect(r.code).toBe('record.newer-schema');
      expect(r.detail).toContain(`schema version ${SCHEMA_VERSION + 1}`);
      expect(r.detail).toContain(`versions up to ${SCHEMA_VERSION}`);
      const after = await raw(backend, fresh.url);
      try {
        expect(await tableRows(after)).toEqual(before);
        expect(await after.query('SELECT * FROM meta')).toEqual(meta);
      } finally {
        await after.close();
      }
    } finally {
      await fresh.drop();
    }
  }, 60_000);

  it.each<[string, string[], RegExp]>([
    ['tables of another tool', ['CREATE TABLE invoices (id int PRIMARY KEY)', 'INSERT INTO invoices VALUES (1)'], /has tables \(invoices\) but no dmzfleet record/],
    ['a meta table of another shape', ['CREATE TABLE meta (k text, v text)', "INSERT INTO meta VALUES ('a', 'b')"], /has a "meta" table that dmzfleet did not write/],
    ["another app's meta", ['CREATE TABLE meta (id int PRIMARY KEY, app text, schema_version int)', "INSERT INTO meta VALUES (1, 'billing', 3)"], /belongs to "billing", not dmzfleet/],
    // Same shape as dmzfleet's, no row: no record's meta is ever without one (it is written in the transaction that makes it).
    ['a meta table of the same shape with no row', ['CREATE TABLE meta (id int PRIMARY KEY, app text, schema_version int)', 'CREATE TABLE things (x int)'], /has a "meta" table but no dmzfleet record in it/],
  ])('a database holding %s: refused (record.foreign-database), untouched', async (_name, statements, detail) => {
    const fresh = await backend.freshUrl();
    try {
      const db = await raw(backend, fresh.url);
      for (const s of statements) await db.query(s);
      const before = await tableRows(db);
      await db.close();
      const r = await refusal(fresh.url);
      expect(r).toMatchObject({ code: 'record.foreign-database' });
      expect(r.detail).toMatch(detail);
      const after = await raw(backend, fresh.url);
      try {
        expect(await tableRows(after)).toEqual(before);
      } finally {
        await after.close();
      }
    } finally {
      await fresh.drop();
    }
  }, 60_000);

  it.runIf(backend.name === 'pglite')('an upgraded PGlite record keeps every file 0600 and every folder 0700', async () => {
    const old = await oldRecord(backend, 1, 77);
    try {
      await expectKept(backend, old, 'permissions');
      const dir = old.url.slice('pglite://'.length);
      const open: string[] = [];
      const walk = (d: string) => {
        for (const e of readdirSync(d, { withFileTypes: true })) {
          const p = join(d, e.name);
          const mode = statSync(p).mode & 0o777;
          if (e.isDirectory()) {
            if (mode !== 0o700) open.push(`${p} ${mode.toString(8)}`);
            walk(p);
          } else if (mode & 0o077) open.push(`${p} ${mode.toString(8)}`);
        }
      };
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      walk(dir);
      expect(open).toEqual([]);
    } finally {
      await old.drop();
    }
  }, 60_000);
});
