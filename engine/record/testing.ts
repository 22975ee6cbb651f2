// Test helpers for every engineer who needs a real record: the backends to
// run a suite against (PGlite always, PostgreSQL when FLEET_TEST_POSTGRES_URL
// is set), each giving a fresh, empty record that is removed afterwards.
//
//   import { testBackends } from '../record/testing.ts';
//   describe.each(testBackends())('my thing on $name', (backend) => {
//     let t: TestRecord;
//     beforeAll(async () => { t = await backend.create(); });
//     afterAll(() => t.cleanup());
//     it('…', async () => { await t.record.insertVm(…); });
//   });
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openRecord } from './open.ts';
import type { SqlRecord } from './record.ts';

export interface TestRecord {
  record: SqlRecord;
  /** The URL the record was opened with; child processes may open it too (PostgreSQL only: PGlite is single-process). */
  url: string;
  /** Closes the record and removes its directory or database. */
  cleanup(): Promise<void>;
}

export interface TestBackend {
  name: 'pglite' | 'postgres';
  /** A fresh empty record (a new temp dir, or a new database). */
  create(): Promise<TestRecord>;
  /** A fresh empty URL, not opened yet; `drop` removes what it names. */
  freshUrl(): Promise<{ url: string; drop(): Promise<void> }>;
}

/** The PostgreSQL server for tests, or undefined (those tests are then skipped). */
export function testPostgresUrl(): string | undefined {
  return process.env.FLEET_TEST_POSTGRES_URL || undefined;
}

export const pgliteBackend: TestBackend = {
  name: 'pglite',
  async freshUrl() {
    const dir = await mkdtemp(join(tmpdir(), 'fleet-record-'));
    return { url: `pglite://${join(dir, 'record')}`, drop: () => rm(dir, { recursive: true, force: true }) };
  },
  async create() {
    const { url, drop } = await this.freshUrl();
    const record = await openRecord(url);
    return {
      record,
      url,
      cleanup: async () => {
        await record.close();
        await drop();
      },
    };
  },
};

/**
 * Creates `fleet_test_<random>` on the server of `baseUrl` and returns its URL
 * and a drop function (which forces other sessions off first).
 */
export async function createTestDatabase(baseUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `fleet_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl, connectionTimeoutMillis: 5000 });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(baseUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: baseUrl, connectionTimeoutMillis: 5000 });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

export function postgresBackend(baseUrl: string): TestBackend {
  return {
    name: 'postgres',
    freshUrl: () => createTestDatabase(baseUrl),
    async create() {
      const { url, drop } = await createTestDatabase(baseUrl);
      const record = await openRecord(url);
      return {
        record,
        url,
        cleanup: async () => {
          await record.close();
          await drop();
        },
      };
    },
  };
}

/** The backends to run a record-backed suite on: PGlite always, PostgreSQL when FLEET_TEST_POSTGRES_URL is set. */
export function testBackends(): TestBackend[] {
  const pgUrl = testPostgresUrl();
  return pgUrl ? [pgliteBackend, postgresBackend(pgUrl)] : [pgliteBackend];
}

/** Alias kept for readers of the issue text. */
export const withTestRecords = testBackends;

/** One in-memory record, for unit tests that do not care about the backend. */
export async function memoryRecord(): Promise<SqlRecord> {
  return openRecord('memory://');
}
