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
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openRecord } from './open.ts';
import type { SqlRecord } from './record.ts';
import { iso } from './rows.ts';
import type { AppliedPlan, BootAttempt } from './types.ts';

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

/** One in-memory record, for unit tests that do not care about the backend. */
export async function memoryRecord(): Promise<SqlRecord> {
  return openRecord('memory://');
}

// Readers of what the record writes but no store reads back, so tests can
// check it: the plans apply started and finished, the boot attempts, and
// the boot tokens.

/** The plans of a stack, oldest first. */
export async function appliedPlans(record: SqlRecord, stack: string): Promise<AppliedPlan[]> {
  const rows = await record.sql.query<{
    id: string;
    stack: string;
    digest: string;
    who: string;
    started_at: Date;
    finished_at: Date | null;
    result: AppliedPlan['result'];
  }>('SELECT * FROM plans WHERE stack = $1 ORDER BY started_at, id', [stack]);
  return rows.map((r) => ({
    id: r.id,
    stack: r.stack,
    digest: r.digest,
    who: r.who,
    startedAt: iso(r.started_at),
    finishedAt: r.finished_at === null ? null : iso(r.finished_at),
    result: r.result,
  }));
}

/** Boot attempts, oldest first; only one VM's with `vmId`. */
export async function bootAttempts(record: SqlRecord, opts: { vmId?: string } = {}): Promise<(BootAttempt & { at: string })[]> {
  const rows = await record.sql.query<{
    vm_id: string | null;
    data_center: string;
    cloud_id: string | null;
    image: string | null;
    approved: boolean;
    reason: string;
    at: Date;
  }>(`SELECT * FROM boot_attempts${opts.vmId !== undefined ? ' WHERE vm_id = $1' : ''} ORDER BY id`, opts.vmId !== undefined ? [opts.vmId] : []);
  return rows.map((r) => ({
    vmId: r.vm_id,
    dataCenter: r.data_center,
    cloudId: r.cloud_id,
    image: r.image,
    approved: r.approved,
    reason: r.reason,
    at: iso(r.at),
  }));
}

/** A VM's boot token: its hash and whether it was used; undefined when it has none. */
export async function bootToken(record: SqlRecord, vmId: string): Promise<{ hash: string; used: boolean } | undefined> {
  const [row] = await record.sql.query<{ token_hash: string; used: boolean }>('SELECT token_hash, used_at IS NOT NULL AS used FROM boot_tokens WHERE vm_id = $1', [vmId]);
  return row && { hash: row.token_hash, used: row.used };
}

/**
 * Where vm_usage (migration 8) and the live VMs disagree, over every stack:
 * each (stack, fleet, data center) whose count or sums differ from a GROUP BY
 * over vms, with both sides (null for a side without the row); [] when in step.
 * A vm_usage row down to no VMs must sum to nothing (it stays; readers skip it).
 */
export async function usageDrift(
  record: SqlRecord,
): Promise<{ stack: string; fleet: string; data_center: string; vms: string | null; cpu: string | null; memory_gib: string | null; ref_vms: string | null; ref_cpu: string | null; ref_memory_gib: string | null }[]> {
  return record.sql.query(
    `WITH ref AS (
       SELECT stack, fleet, data_center, count(*)::bigint AS vms, sum(cpu::numeric) AS cpu, sum(memory_gib::numeric) AS memory_gib
       FROM vms WHERE retired_at IS NULL GROUP BY stack, fleet, data_center
     ),
     u AS (SELECT * FROM vm_usage WHERE vms <> 0 OR cpu <> 0 OR memory_gib <> 0)
     SELECT coalesce(u.stack, ref.stack) AS stack, coalesce(u.fleet, ref.fleet) AS fleet, coalesce(u.data_center, ref.data_center) AS data_center,
       u.vms::text AS vms, u.cpu::text AS cpu, u.memory_gib::text AS memory_gib,
       ref.vms::text AS ref_vms, ref.cpu::text AS ref_cpu, ref.memory_gib::text AS ref_memory_gib
     FROM u FULL JOIN ref ON u.stack = ref.stack AND u.fleet = ref.fleet AND u.data_center = ref.data_center
     WHERE u.vms IS DISTINCT FROM ref.vms OR u.cpu IS DISTINCT FROM ref.cpu OR u.memory_gib IS DISTINCT FROM ref.memory_gib
     ORDER BY 1, 2, 3`,
  );
}

/**
 * A TCP proxy to the PostgreSQL server of `target` whose cut() drops every
 * connection at once and refuses new ones for `downMs`: a database failover,
 * as a client sees it. `url` is `target` through the proxy. restore() ends
 * the outage now (a test that decides when the server is back).
 */
export async function pgCutProxy(target: string): Promise<{ url: string; port: number; cut(downMs: number): void; restore(): void; close(): Promise<void> }> {
  const t = new URL(target);
  const open = new Set<Socket>();
  let downUntil = 0;
  const server = createServer((client) => {
    if (Date.now() < downUntil) return void client.destroy();
    const up = connect(Number(t.port || 5432), t.hostname);
    open.add(client).add(up);
    const drop = () => {
      client.destroy();
      up.destroy();
      open.delete(client);
      open.delete(up);
    };
    client.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
    client.pipe(up).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const proxied = new URL(target);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(port);
  return {
    url: proxied.toString(),
    port,
    cut: (downMs) => {
      downUntil = Date.now() + downMs;
      for (const s of open) s.destroy();
      open.clear();
    },
    restore: () => {
      downUntil = 0;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of open) s.destroy();
        server.close(() => r());
      }),
  };
}
