// vm_usage (migration 8): what the live VMs use per fleet and data center,
// kept by triggers on vms (the update trigger one per row since migration
// 17). Checked against a GROUP BY over vms after many
// generated sequences of writes through every writer (and raw SQL, which
// the triggers must follow too), after a migration of an existing record,
// and under concurrent writers on PostgreSQL.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../diags/index.ts';
import { seededRandom } from '../model/seeded-random.ts';
import { readBudgetUsage, type BudgetUsage } from './budget.ts';
import { MIGRATIONS, SCHEMA_VERSION, migrate } from './migrations.ts';
import { openRecord } from './open.ts';
import { openPglite } from './pglite.ts';
import { openPostgres } from './postgres.ts';
import type { SqlRecord } from './record.ts';
import type { SqlAdapter } from './sql.ts';
import { postgresBackend, testBackends, testPostgresUrl, usageDrift, type TestBackend, type TestRecord } from './testing.ts';
import type { NewVm, UsageRow } from './types.ts';

const FLEETS = ['web', 'db', 'api'];
const OWNER: Record<string, string> = { web: 'team-a', db: 'team-b', api: 'team-a' };
const DCS = ['miami', 'richmond', 'austin'];
// Fractional sizes whose float sums are inexact (0.1 + 0.2): the table's numeric sums must still come back to the GROUP BY's.
const SIZES = [
  { cpu: 1, memoryGiB: 2, diskGiB: 10 },
  { cpu: 0.5, memoryGiB: 0.25, diskGiB: 10 },
  { cpu: 0.1, memoryGiB: 0.2, diskGiB: 10 },
  { cpu: 3.3, memoryGiB: 1.1, diskGiB: 10 },
  { cpu: 16, memoryGiB: 64, diskGiB: 100 },
];
const ctx = { actor: 'prop' };

/** Per-fleet usage rows summed per owner and data center (fleet ''); usage()'s byOwner order. */
function byOwner(rows: UsageRow[]): UsageRow[] {
  const sums = new Map<string, UsageRow>();
  for (const r of rows) {
    const fleet = '';
    const key = `${fleet}/${r.owner}/${r.dataCenter}`;
    const u = sums.get(key) ?? { fleet, owner: r.owner, dataCenter: r.dataCenter, vms: 0, cpu: 0, memoryGiB: 0 };
    u.vms += r.vms;
    u.cpu += r.cpu;
    u.memoryGiB += r.memoryGiB;
    sums.set(key, u);
  }
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return [...sums.values()].sort((a, b) => cmp(a.fleet, b.fleet) || cmp(a.owner, b.owner) || cmp(a.dataCenter, b.dataCenter));
}

/** Sums to 9 decimals: the database adds exactly, JavaScript in floating point. */
const rounded = (rows: UsageRow[]) => rows.map((r) => ({ ...r, cpu: Number(r.cpu.toFixed(9)), memoryGiB: Number(r.memoryGiB.toFixed(9)) }));

/** What usage() answered before migration 8: the GROUP BY over vms (sums taken exactly), owners from fleets. */
async function usageByGroupBy(record: SqlRecord, stack: string, excludeFleets: string[]): Promise<UsageRow[]> {
  const rows = await record.sql.query<{ fleet: string; owner: string | null; data_center: string; vms: string; cpu: string; memory_gib: string }>(
    `SELECT v.fleet, f.owner, v.data_center, count(*)::text AS vms, sum(v.cpu::numeric)::text AS cpu, sum(v.memory_gib::numeric)::text AS memory_gib
     FROM vms v LEFT JOIN fleets f ON f.stack = v.stack AND f.fleet = v.fleet
     WHERE v.stack = $1 AND v.retired_at IS NULL AND v.fleet <> ALL($2::text[])
     GROUP BY v.fleet, f.owner, v.data_center`,
    [stack, excludeFleets],
  );
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return rows
    .map((r) => ({ fleet: r.fleet, owner: r.owner ?? '', dataCenter: r.data_center, vms: Number(r.vms), cpu: Number(r.cpu), memoryGiB: Number(r.memory_gib) }))
    .sort((a, b) => cmp(a.fleet, b.fleet) || cmp(a.dataCenter, b.dataCenter));
}

/** What readBudgetUsage answered before migration 8: a GROUP BY over the live VMs (sums taken exactly), each at the larger of its size and its pending grow. */
async function budgetUsageByGroupBy(record: SqlRecord, stack: string, except?: string): Promise<BudgetUsage[]> {
  const rows = await record.sql.query<{ fleet: string; owner: string | null; data_center: string; vms: string; cpu: string; memory_gib: string }>(
    `SELECT u.fleet, f.owner, u.data_center, u.vms::text AS vms, u.cpu::text AS cpu, u.memory_gib::text AS memory_gib
     FROM (SELECT v.fleet, v.data_center, count(*) AS vms,
             sum(greatest(v.cpu, coalesce(r.cpu, 0))::numeric) AS cpu, sum(greatest(v.memory_gib, coalesce(r.memory_gib, 0))::numeric) AS memory_gib
           FROM vms v LEFT JOIN vm_reservations r ON r.vm_id = v.id AND r.expires_at > now()
           WHERE v.stack = $1 AND v.retired_at IS NULL AND v.id <> $2
           GROUP BY v.fleet, v.data_center) u
     LEFT JOIN fleets f ON f.stack = $1 AND f.fleet = u.fleet`,
    [stack, except ?? ''],
  );
  return rows.map((r) => ({ fleet: r.fleet, owner: r.owner ?? '', dataCenter: r.data_center, vms: Number(r.vms), cpu: Number(r.cpu), memoryGiB: Number(r.memory_gib) }));
}

const byKey = (rows: BudgetUsage[]) => [...rows].sort((a, b) => (a.fleet + '\u0000' + a.dataCenter < b.fleet + '\u0000' + b.dataCenter ? -1 : 1));

/** Runs one generated sequence of `steps` writes on `stack`; returns the operations run, for the failure message. */
async function runSequence(record: SqlRecord, stack: string, seed: number, steps: number, checkEach: boolean): Promise<string[]> {
  const random = seededRandom(seed);
  const rand = random.next;
  const pick = random.pick;
  const log: string[] = [];
  const all = () => record.listVms(stack, { includeRetired: true });
  const live = async () => (await all()).filter((v) => v.retiredAt === null);
  const current = async () => (await live()).filter((v) => !v.deposed);
  /** A free address (no current VM) of a random fleet; undefined when none in a few tries. */
  const freeAddress = async (taken: Set<string> = new Set()) => {
    const used = new Set([...(await current()).map((v) => `${v.fleet}/${v.index}`), ...taken]);
    for (let i = 0; i < 8; i++) {
      const fleet = pick(FLEETS);
      const index = Math.floor(rand() * 6);
      if (!used.has(`${fleet}/${index}`)) return { fleet, index };
    }
    return undefined;
  };
  const newVm = (a: { fleet: string; index: number }): NewVm => ({
    stack,
    fleet: a.fleet,
    owner: OWNER[a.fleet],
    index: a.index,
    dataCenter: pick(DCS),
    state: 'Requested',
    desiredState: 'Running',
    specHash: 'h',
    image: 'ubuntu',
    size: pick(SIZES),
    encryptedDisk: false,
  });
  const expectRefusal = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (err) {
      if (!(err instanceof FleetError)) throw err;
    }
  };
  const ops: Record<string, () => Promise<void>> = {
    async insert() {
      const a = await freeAddress();
      if (a) await record.insertVm(newVm(a), ctx);
    },
    async insertGuarded() {
      const a = await freeAddress();
      if (a) await expectRefusal(record.insertVm(newVm(a), ctx, { owner: { vms: 12 }, dataCenter: { cpu: 60 } }));
    },
    async insertWrongOwner() {
      const a = await freeAddress();
      // Refused when the fleet's row holds another owner (a new fleet would take the owner named).
      if (a && (await record.listFleets(stack, [a.fleet])).length) await expectRefusal(record.insertVm({ ...newVm(a), owner: 'team-z' }, ctx));
    },
    async insertMany() {
      // Addresses may repeat or be live: those items are refused, the rest written.
      const items = [];
      for (let i = 0, n = 1 + Math.floor(rand() * 4); i < n; i++) items.push({ vm: newVm({ fleet: pick(FLEETS), index: Math.floor(rand() * 6) }), ctx });
      await record.insertVms(items);
    },
    async bulk() {
      const taken = new Set<string>();
      const vms: NewVm[] = [];
      for (let i = 0, n = 1 + Math.floor(rand() * 5); i < n; i++) {
        const a = await freeAddress(taken);
        if (!a) break;
        taken.add(`${a.fleet}/${a.index}`);
        vms.push(newVm(a));
      }
      if (vms.length) await record.bulkInsertVms(vms, ctx, 2);
    },
    async replace() {
      const vms = await current();
      if (!vms.length) return;
      const old = pick(vms);
      await record.insertVm({ ...newVm({ fleet: old.fleet, index: old.index }), replaces: old.id }, ctx);
    },
    async state() {
      const vms = await live();
      if (vms.length) {
        const v = pick(vms);
        await record.transitionVm(v.id, v.version, pick(['Provisioning', 'Running', 'Stopped']), ctx);
      }
    },
    async retire() {
      const vms = await live();
      if (vms.length) {
        const v = pick(vms);
        await record.transitionVm(v.id, v.version, 'Deleted', ctx, { retire: true });
      }
    },
    async resize() {
      const vms = await live();
      if (vms.length) {
        const v = pick(vms);
        await record.updateVm(v.id, v.version, { size: pick(SIZES) }, ctx);
      }
    },
    async grow() {
      const vms = await live();
      if (!vms.length) return;
      const v = pick(vms);
      const size = pick(SIZES);
      try {
        await record.reserveGrow({
          stack,
          vmId: v.id,
          expectedVersion: v.version,
          owner: OWNER[v.fleet],
          size: { cpu: size.cpu, memoryGiB: size.memoryGiB },
          budget: { owner: { cpu: 40 } },
          row: { from: v.state, to: v.state, ...ctx },
          ttlMs: 60_000,
        });
      } catch (err) {
        if (!(err instanceof FleetError)) throw err;
        return;
      }
      // Reported (the size written), failed, or still pending (its reservation counts for budgets).
      const next = rand();
      if (next < 0.4) await record.updateVm(v.id, (await record.getVm(v.id))!.version, { size }, ctx);
      else if (next < 0.7) await record.dropGrow(v.id);
    },
    async batch() {
      const vms = await live();
      const chosen = [...new Set(Array.from({ length: 1 + Math.floor(rand() * 4) }, () => pick(vms)))].filter(Boolean);
      if (!chosen.length) return;
      await record.transitionVms(
        chosen.map((v, i) => ({
          id: v.id,
          // Now and then a stale version: that item is refused, the others written.
          expectedVersion: rand() < 0.2 ? v.version + 1 : v.version,
          to: i % 2 ? 'Deleted' : 'Running',
          ctx,
          patch: i % 2 ? { retire: true } : {},
        })),
      );
    },
    async stale() {
      const vms = await live();
      if (vms.length) {
        const v = pick(vms);
        await expectRefusal(record.transitionVm(v.id, v.version + 5, 'Deleted', ctx, { retire: true }));
      }
    },
    async adopt() {
      const a = await freeAddress();
      if (!a) return;
      // A retired VM's id comes back to life (perhaps in another fleet and data center), or a new one.
      const retired = (await all()).filter((v) => v.retiredAt !== null);
      const id = retired.length && rand() < 0.5 ? pick(retired).id : randomUUID();
      await record.adoptVm({ ...newVm(a), id, cloudId: `c-${id}` }, ctx);
    },
    async rawMove() {
      // Not through a writer: an operator's psql moving a VM to another data center.
      const vms = await all();
      if (vms.length) await record.sql.query('UPDATE vms SET data_center = $2, cpu = cpu + 1 WHERE id = $1', [pick(vms).id, pick(DCS)]);
    },
    async rawMany() {
      // An operator's psql changing several rows at once: places and sizes of live and retired VMs (a retired
      // one stays out of the sums whatever it holds), a retired one's retired_at moved (still retired).
      const vms = await all();
      const ids = [...new Set(Array.from({ length: 1 + Math.floor(rand() * 4) }, () => pick(vms)?.id))].filter(Boolean);
      if (ids.length) {
        await record.sql.query(
          `UPDATE vms SET data_center = CASE WHEN idx % 2 = 0 THEN $2 ELSE data_center END, cpu = cpu + $4, memory_gib = memory_gib + $3,
             retired_at = CASE WHEN retired_at IS NOT NULL THEN retired_at + interval '1 second' END
           WHERE id = ANY($1::text[])`,
          [ids, pick(DCS), pick([0, 0.2, 1]), pick([0, 0.1])],
        );
      }
    },
    async rawRefleet() {
      // A VM moved to another fleet (and stack, now and then: out of and into this one) by raw SQL, at an address no VM takes.
      const vms = await all();
      if (!vms.length) return;
      const v = pick(vms);
      const away = rand() < 0.3 ? `${stack}-away` : stack;
      try {
        await record.sql.query('UPDATE vms SET stack = $2, fleet = $3, idx = idx + 1000 * $4 WHERE id = $1', [v.id, away, pick(FLEETS), 1 + log.length]);
        if (away !== stack) await record.sql.query('UPDATE vms SET stack = $2 WHERE id = $1', [v.id, stack]);
      } catch (err) {
        if (!/duplicate key|unique/i.test(String(err))) throw err;
      }
    },
    async rawRetire() {
      // Retired and brought back by raw SQL (back only while its address is free: else the statement fails, writing nothing).
      const vms = await all();
      if (!vms.length) return;
      const v = pick(vms);
      try {
        await record.sql.query('UPDATE vms SET retired_at = CASE WHEN retired_at IS NULL THEN now() END WHERE id = $1', [v.id]);
      } catch (err) {
        if (!/duplicate key|unique/i.test(String(err))) throw err;
      }
    },
    async rawDelete() {
      const vms = await all();
      if (vms.length) await record.sql.query('DELETE FROM vms WHERE id = $1', [pick(vms).id]);
    },
  };
  const weights: [string, number][] = [
    ['insert', 4], ['insertGuarded', 2], ['insertWrongOwner', 1], ['insertMany', 3], ['bulk', 2], ['replace', 3], ['state', 3], ['retire', 3],
    ['resize', 3], ['grow', 2], ['batch', 3], ['stale', 1], ['adopt', 2], ['rawMove', 1], ['rawMany', 2],
    ['rawRefleet', 1], ['rawRetire', 1], ['rawDelete', 1],
  ];
  const total = weights.reduce((n, [, w]) => n + w, 0);
  for (let s = 0; s < steps; s++) {
    let x = rand() * total;
    const [name] = weights.find(([, w]) => (x -= w) < 0) ?? weights[0];
    log.push(name);
    await ops[name]();
    if (checkEach) {
      const drift = await usageDrift(record);
      if (drift.length) throw new Error(`vm_usage out of step after ${log.join(', ')} (seed ${seed}): ${JSON.stringify(drift)}`);
    }
  }
  return log;
}

async function rawAdapter(backend: TestBackend, url: string): Promise<SqlAdapter> {
  return backend.name === 'pglite' ? openPglite(url.slice('pglite://'.length)) : openPostgres(url, url);
}

/** Runs `fn` on the record's database without the record's code (no migrations run on open), then closes it. */
async function withRaw(backend: TestBackend, url: string, fn: (raw: SqlAdapter) => Promise<void>): Promise<void> {
  const raw = await rawAdapter(backend, url);
  try {
    await fn(raw);
  } finally {
    await raw.close();
  }
}

describe.each(testBackends())('vm_usage on $name', (backend) => {
  let t: TestRecord;
  beforeAll(async () => {
    t = await backend.create();
  });
  afterAll(() => t?.cleanup());

  it('equals the GROUP BY over the live VMs after every generated sequence of writes', async () => {
    const sequences = 24;
    const ran = new Map<string, number>();
    for (let seed = 1; seed <= sequences; seed++) {
      const stack = `prop-${seed}`;
      // Every step checked in the first sequences (the failing write is then named); the rest at their end.
      const log = await runSequence(t.record, stack, seed, 30, seed <= 4);
      for (const op of log) ran.set(op, (ran.get(op) ?? 0) + 1);
      expect(await usageDrift(t.record), `seed ${seed}: ${log.join(', ')}`).toEqual([]);
      const exclude = seed % 3 === 0 ? [] : [FLEETS[seed % FLEETS.length], 'nonesuch'];
      expect(await t.record.usage(stack, { excludeFleets: exclude }), `seed ${seed}`).toEqual(await usageByGroupBy(t.record, stack, exclude));
      // Per owner (what a narrowed plan reads): the per-fleet sums added up, every row's fleet ''.
      expect(rounded(await t.record.usage(stack, { excludeFleets: exclude, byOwner: true })), `seed ${seed} by owner`).toEqual(
        rounded(byOwner(await usageByGroupBy(t.record, stack, exclude))),
      );
      // The budget check's sums, with and without a VM left out (a live one, a retired one).
      const vms = await t.record.listVms(stack, { includeRetired: true });
      for (const except of [undefined, ...vms.slice(0, 3).map((v) => v.id), ...vms.filter((v) => v.retiredAt !== null).slice(0, 1).map((v) => v.id)]) {
        const got = await readBudgetUsage(t.record.sql, stack, except);
        expect(byKey(got), `seed ${seed}, except ${except}`).toEqual(byKey(await budgetUsageByGroupBy(t.record, stack, except)));
      }
    }
    // Every kind of write ran.
    expect([...ran.keys()].sort()).toEqual(
      [
        'adopt', 'batch', 'bulk', 'grow', 'insert', 'insertGuarded', 'insertMany', 'insertWrongOwner', 'rawDelete', 'rawMany', 'rawMove', 'rawRefleet',
        'rawRetire', 'replace', 'resize', 'retire', 'stale', 'state',
      ].sort(),
    );
  }, 240_000);

  it('is emptied with vms by TRUNCATE', async () => {
    const { url, drop } = await backend.freshUrl();
    const record = await openRecord(url);
    try {
      await runSequence(record, 'trunc', 99, 10, false);
      await record.sql.query('TRUNCATE vms');
      expect(await record.sql.query('SELECT count(*)::int AS n FROM vm_usage')).toEqual([{ n: 0 }]);
      await runSequence(record, 'trunc', 100, 10, false);
      expect(await usageDrift(record)).toEqual([]);
    } finally {
      await record.close();
      await drop();
    }
  });

  it('is filled from the existing VMs when a record at schema 7 is migrated', async () => {
    const { url, drop } = await backend.freshUrl();
    try {
      await withRaw(backend, url, async (raw) => {
        await migrate(raw, { description: url }, MIGRATIONS.filter((m) => m.version <= 7));
        await raw.query(`INSERT INTO fleets (stack, fleet, owner) VALUES ('s', 'web', 'team-a'), ('s', 'db', 'team-b'), ('t', 'web', 'team-c')`);
        const vm = (id: string, stack: string, fleet: string, idx: number, dc: string, cpu: number, mem: number, extra = '') =>
          raw.query(
            `INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, cpu, memory_gib, disk_gib, encrypted_disk${extra ? ', ' + extra : ''})
             VALUES ($1, $2, $3, $4, $1, $5, 'Running', 'Running', 'h', 'img', $6, $7, 10, false${extra ? ', now()' : ''})`,
            [id, stack, fleet, idx, dc, cpu, mem],
          );
        await vm('a', 's', 'web', 0, 'miami', 2, 4);
        await vm('b', 's', 'web', 1, 'miami', 0.1, 0.2);
        await vm('c', 's', 'web', 2, 'miami', 0.2, 0.1);
        await vm('d', 's', 'web', 3, 'austin', 1, 1);
        await vm('e', 's', 'web', 0, 'miami', 8, 8, 'deposed_at'); // deposed: still counted
        await vm('f', 's', 'db', 0, 'miami', 4, 16, 'retired_at'); // retired: not counted
        await vm('g', 's', 'db', 1, 'austin', 0.5, 0.5);
        await vm('h', 't', 'web', 0, 'miami', 1, 1);
        expect(await raw.query(`SELECT to_regclass('vm_usage') AS t`)).toEqual([{ t: null }]);
      });
      const record = await openRecord(url);
      try {
        expect(await record.schemaVersion()).toBe(SCHEMA_VERSION);
        expect(await usageDrift(record)).toEqual([]);
        expect(await record.usage('s', { excludeFleets: [] })).toEqual([
          { fleet: 'db', owner: 'team-b', dataCenter: 'austin', vms: 1, cpu: 0.5, memoryGiB: 0.5 },
          { fleet: 'web', owner: 'team-a', dataCenter: 'austin', vms: 1, cpu: 1, memoryGiB: 1 },
          // 2 + 0.1 + 0.2 + 8 summed exactly: 10.3, where double precision gives 10.299999999999999.
          { fleet: 'web', owner: 'team-a', dataCenter: 'miami', vms: 4, cpu: 10.3, memoryGiB: 12.3 },
        ]);
        expect(await record.usage('t', { excludeFleets: ['web'] })).toEqual([]);
        // And kept in step from then on.
        await record.transitionVm('b', 1, 'Deleted', ctx, { retire: true });
        expect(await record.usage('s', { excludeFleets: ['db'] })).toEqual([
          { fleet: 'web', owner: 'team-a', dataCenter: 'austin', vms: 1, cpu: 1, memoryGiB: 1 },
          { fleet: 'web', owner: 'team-a', dataCenter: 'miami', vms: 3, cpu: 10.2, memoryGiB: 12.1 },
        ]);
      } finally {
        await record.close();
      }
    } finally {
      await drop();
    }
  });

  it('stays in step across the upgrade to schema 17 (the update trigger a row trigger)', async () => {
    const { url, drop } = await backend.freshUrl();
    try {
      // Written at 16 (the statement trigger), then upgraded: the table is kept as it was and followed from then on.
      await withRaw(backend, url, async (at16) => {
        await migrate(at16, { description: url }, MIGRATIONS.filter((m) => m.version <= 16));
        await at16.query(`INSERT INTO fleets (stack, fleet, owner) VALUES ('u', 'web', 'team-a')`);
        for (const [id, idx, dc, cpu] of [['a', 0, 'miami', 0.1], ['b', 1, 'miami', 0.2], ['c', 2, 'austin', 3.3]] as const) {
          await at16.query(
            `INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, cpu, memory_gib, disk_gib, encrypted_disk)
             VALUES ($1, 'u', 'web', $2, $1, $3, 'Running', 'Running', 'h', 'img', $4, 1, 10, false)`,
            [id, idx, dc, cpu],
          );
        }
        await at16.query(`UPDATE vms SET retired_at = now() WHERE id = 'c'`);
        expect(await at16.query(`SELECT schema_version FROM meta`)).toEqual([{ schema_version: 16 }]);
      });
      const record = await openRecord(url);
      try {
        expect(await record.schemaVersion()).toBe(SCHEMA_VERSION);
        expect(await record.sql.query(`SELECT (tgtype & 1) = 1 AS per_row FROM pg_trigger WHERE tgname = 'vm_usage_update'`)).toEqual([{ per_row: true }]);
        expect(await usageDrift(record)).toEqual([]);
        const a = (await record.getVm('a'))!;
        await record.transitionVm('a', a.version, 'Stopped', ctx);
        await record.transitionVm('b', 1, 'Deleted', ctx, { retire: true });
        await record.sql.query(`UPDATE vms SET retired_at = NULL, data_center = 'miami' WHERE id = 'c'`);
        expect(await usageDrift(record)).toEqual([]);
        expect(await record.usage('u', { excludeFleets: [] })).toEqual([{ fleet: 'web', owner: 'team-a', dataCenter: 'miami', vms: 2, cpu: 3.4, memoryGiB: 2 }]);
      } finally {
        await record.close();
      }
    } finally {
      await drop();
    }
  });
});

const pgUrl = testPostgresUrl();

describe.runIf(pgUrl !== undefined)('vm_usage under concurrent writers on PostgreSQL', () => {
  let t: TestRecord;
  let other: SqlRecord;
  let raw: SqlAdapter;
  beforeAll(async () => {
    t = await postgresBackend(pgUrl!).create();
    other = await openRecord(t.url);
    raw = await openPostgres(t.url, t.url);
  });
  afterAll(async () => {
    await raw?.close();
    await other?.close();
    await t?.cleanup();
  });

  const vm = (fleet: string, index: number, dataCenter = 'miami'): NewVm => ({
    stack: 'cc',
    fleet,
    owner: 'o',
    index,
    dataCenter,
    state: 'Running',
    desiredState: 'Running',
    specHash: 'h',
    image: 'ubuntu',
    size: { cpu: 1, memoryGiB: 2, diskGiB: 10 },
    encryptedDisk: false,
  });

  it('lets writers of other fleets through while a transaction holds a fleet\'s usage rows', async () => {
    const b0 = await t.record.insertVm(vm('b', 0), ctx);
    // Inside one open transaction that has changed fleet a's usage in miami,
    // the other connection's writes of fleet b (same data center) finish: if
    // they waited for this transaction's locks, this would never return.
    await raw.transaction(async (q) => {
      await q.query(
        `WITH w AS (
           INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, cpu, memory_gib, disk_gib, encrypted_disk)
           VALUES ($1, 'cc', 'a', 0, 'a-0', 'miami', 'Running', 'Running', 'h', 'ubuntu', 1, 2, 10, false) RETURNING stack, fleet
         )
         INSERT INTO fleets (stack, fleet, owner) SELECT stack, fleet, 'o' FROM w ON CONFLICT (stack, fleet) DO UPDATE SET version = fleets.version + 1`,
        [randomUUID()],
      );
      await other.insertVm(vm('b', 1), ctx);
      await other.insertVms([{ vm: vm('b', 2), ctx }]);
      await other.bulkInsertVms([vm('b', 3), vm('b', 4)], ctx);
      await other.updateVm(b0.id, b0.version, { size: { cpu: 4, memoryGiB: 8, diskGiB: 10 } }, ctx);
      const b1 = (await other.findVm('cc', 'b/1'))!;
      await other.insertVm({ ...vm('b', 1), replaces: b1.id }, ctx);
      await other.transitionVm(b1.id, b1.version + 1, 'Deleted', ctx, { retire: true });
    });
    expect(await usageDrift(t.record)).toEqual([]);
    expect(await t.record.usage('cc', { excludeFleets: [] })).toEqual([
      { fleet: 'a', owner: 'o', dataCenter: 'miami', vms: 1, cpu: 1, memoryGiB: 2 },
      { fleet: 'b', owner: 'o', dataCenter: 'miami', vms: 5, cpu: 8, memoryGiB: 16 },
    ]);
  });

  it('never deadlocks writers of one fleet and data center, whatever their statements (and stays in step)', async () => {
    const records = [t.record, other];
    const errors: unknown[] = [];
    const worker = async (w: number) => {
      const record = records[w % 2];
      const rand = seededRandom(1000 + w).next;
      for (let i = 0; i < 20; i++) {
        try {
          const live = (await record.listVms('cc', { fleets: ['hot'] })).filter((v) => !v.deposed);
          const v = live.length ? live[Math.floor(rand() * live.length)] : undefined;
          const free = Array.from({ length: 12 }, (_, k) => k).filter((k) => !live.some((l) => l.index === k));
          const index = free.length ? free[Math.floor(rand() * free.length)] : 0;
          const op = Math.floor(rand() * 7);
          if (op === 0 || !v) await record.insertVm(vm('hot', index), ctx);
          else if (op === 1) await record.insertVm({ ...vm('hot', v.index), replaces: v.id }, ctx);
          else if (op === 2) await record.transitionVm(v.id, v.version, 'Deleted', ctx, { retire: true });
          else if (op === 3) await record.updateVm(v.id, v.version, { size: { cpu: 2, memoryGiB: 3, diskGiB: 10 } }, ctx);
          else if (op === 4) await record.adoptVm({ ...vm('hot', index), id: randomUUID(), cloudId: 'c' }, ctx);
          else if (op === 5) await record.bulkInsertVms([vm('hot', index)], ctx);
          // One VM per batch: two batches sharing VMs lock them in no set order and can deadlock on the vms rows themselves, with
          // or without vm_usage (the authority never sends one VM in two batches at once: the fleet's lock is held by one apply).
          else await record.transitionVms([{ id: v.id, expectedVersion: v.version, to: 'Deleted', ctx, patch: { retire: true } }]);
        } catch (err) {
          // Losing a race (a version or an address taken meanwhile) is answered, not a failure; anything else is.
          if (!(err instanceof FleetError) || /deadlock/i.test(String(err))) errors.push(err);
        }
      }
    };
    await Promise.all(Array.from({ length: 6 }, (_, w) => worker(w)));
    expect(errors).toEqual([]);
    expect(await usageDrift(t.record)).toEqual([]);
  }, 120_000);
});

describe.runIf(pgUrl !== undefined)('the budget read on PostgreSQL', () => {
  it('finds each VM it reads by id, also in a plan cached while the table was small', async () => {
    const t = await postgresBackend(pgUrl!).create();
    const c = new pg.Client({ connectionString: t.url });
    try {
      // A new record, its statistics not yet taken: the plan a pool connection caches for the budget read (a
      // generic plan, sequential scans priced out as on the record's connections) must not reach a VM through
      // vms_scope, which reads every VM of the stack (under the budget lock, on every guarded create).
      for (let i = 0; i < 40; i++) {
        await t.record.insertVm({ stack: 'bp', fleet: `f${i % 4}`, owner: 'o', index: i, dataCenter: 'miami', state: 'Running', desiredState: 'Running', specHash: 'h', image: 'ubuntu', size: { cpu: 1, memoryGiB: 2, diskGiB: 10 }, encryptedDisk: false }, ctx);
      }
      const seen: { text: string; params: readonly unknown[] }[] = [];
      await readBudgetUsage({ query: async <T,>(text: string, params: readonly unknown[] = []) => (seen.push({ text, params }), [] as T[]) }, 'bp', 'some-vm');
      expect(seen).toHaveLength(1);
      await c.connect();
      await c.query('SET enable_seqscan = off');
      await c.query('SET plan_cache_mode = force_generic_plan');
      await c.query(`PREPARE budget AS ${seen[0].text}`);
      const [{ 'QUERY PLAN': plan }] = (await c.query(`EXPLAIN (FORMAT JSON) EXECUTE budget('bp', 'some-vm')`)).rows;
      const scans: string[] = [];
      const walk = (n: { 'Relation Name'?: string; 'Index Name'?: string; 'Node Type': string; Plans?: unknown[] }) => {
        if (n['Relation Name'] === 'vms') scans.push(`${n['Node Type']} ${n['Index Name'] ?? ''}`.trim());
        for (const p of n.Plans ?? []) walk(p as typeof n);
      };
      walk(plan[0].Plan);
      expect(scans.length).toBeGreaterThan(0);
      expect(scans.filter((s) => !s.endsWith('vms_pkey'))).toEqual([]);
    } finally {
      await c.end().catch(() => undefined);
      await t.cleanup();
    }
  });
});
