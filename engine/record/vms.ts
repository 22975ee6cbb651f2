// The VM reader: live VMs, fleets and what they use. The rows and their
// decoders are ./rows.ts; what plans read, ./plan-read.ts; the writes are
// ./vm-writes.ts.
import { parseVmAddress } from '../model/index.ts';
import { FULL_VM, LIVE_VM, aggregateVms, liveVmFromArray, managedBySql, pgTimeToIso, vmFromArray, vmFromRow, type VmArray } from './rows.ts';
import { OverviewCache, type OverviewTotals } from './overview-cache.ts';
import type { RecordSql } from './sql.ts';
import type { FleetRow, UsageRow, VmReader, VmRow } from './types.ts';

export function vmReader({ db }: RecordSql, overview = new OverviewCache()): Omit<VmReader, 'listPlanVms' | 'readPlan'> {
  return {
    async listVms(stack, opts = {}) {
      const params: unknown[] = [stack];
      let where = 'stack = $1';
      if (opts.fleets) {
        params.push([...opts.fleets]);
        where += ' AND fleet = ANY($2::text[])';
      }
      const live = !opts.includeRetired;
      if (live) where += ' AND retired_at IS NULL';
      const [row] = await db.query<{ j: string }>(`SELECT ${aggregateVms(live ? LIVE_VM.array : FULL_VM.array)} FROM vms WHERE ${where}`, params);
      const arrays = JSON.parse(row.j) as VmArray[];
      const out = new Array<VmRow>(arrays.length);
      if (live) for (let i = 0; i < arrays.length; i++) out[i] = liveVmFromArray(stack, arrays[i]);
      else for (let i = 0; i < arrays.length; i++) out[i] = vmFromArray(arrays[i]);
      return out;
    },

    async countVms(stack, opts = {}) {
      const params: unknown[] = [stack];
      let where = 'stack = $1 AND retired_at IS NULL';
      if (opts.fleets) {
        params.push([...opts.fleets]);
        where += ' AND fleet = ANY($2::text[])';
      }
      // Summed in the database: a few rows per fleet, however many VMs (not vm_usage, which has no state).
      const rows = await db.query<{ fleet: string; data_center: string; state: string; n: number | string }>(
        `SELECT fleet, data_center, state, count(*) AS n FROM vms WHERE ${where}
         GROUP BY fleet, data_center, state ORDER BY fleet, data_center COLLATE "C", state COLLATE "C"`,
        params,
      );
      return rows.map((r) => ({ fleet: r.fleet, dataCenter: r.data_center, state: r.state, vms: Number(r.n) }));
    },

    async countVmsPage(stack, page) {
      const limit = Math.max(0, Math.floor(page.limit));
      const offset = Math.max(0, Math.floor(page.offset));
      // The stack's fleets and its VMs per data center, summed from vm_usage
      // (kept by triggers, one row per fleet and data center: migration 8)
      // at most once per OVERVIEW_CACHE_MS and anew after any VM write of
      // this process (overview-cache.ts); only the page's fleets' VMs are
      // counted per state, on each load, along vms_scope (stack, fleet,
      // idx). So a load reads the page's VMs, never the stack's (a GROUP BY
      // over 1,000,000 of them before), and no write pays for it: a table of
      // counts per state kept by triggers cost the apply's VM writes ~15%
      // more PostgreSQL CPU (docs/dashboard.md).
      const { fleets, totals } = await overview.get(stack, () => readOverviewTotals(db, stack));
      const shown = fleets.slice(offset, offset + limit);
      if (shown.length === 0) return { fleets: fleets.length, totals: totals.map((t) => ({ ...t })), rows: [] };
      const [row] = await db.query<{ rows: string }>(
        `SELECT coalesce(json_agg(json_build_array(fleet, data_center, state, n) ORDER BY fleet, data_center COLLATE "C", state COLLATE "C"), '[]')::text AS rows
         FROM (SELECT fleet, data_center, state, count(*) AS n FROM vms
               WHERE stack = $1 AND fleet = ANY($2::text[]) AND retired_at IS NULL
               GROUP BY fleet, data_center, state) c`,
        [stack, shown],
      );
      const rows = JSON.parse(row.rows) as [string, string, string, number | string][];
      return {
        fleets: fleets.length,
        // Copies: the kept totals are shared by the loads that read them.
        totals: totals.map((t) => ({ ...t })),
        rows: rows.map(([fleet, dataCenter, state, n]) => ({ fleet, dataCenter, state, vms: Number(n) })),
      };
    },

    async fleetMembers(stack, fleet, page) {
      const params: unknown[] = [stack, fleet, Math.max(0, Math.floor(page.limit)), Math.max(0, Math.floor(page.offset))];
      let where = 'stack = $1 AND fleet = $2 AND retired_at IS NULL';
      if (page.index !== undefined) {
        params.push(page.index);
        where += ' AND idx = $5';
      }
      // One statement (one snapshot): the count, and the page as one JSON text of LIVE_VM arrays, as listVms reads them.
      const [row] = await db.query<{ total: number | string; j: string }>(
        `SELECT (SELECT count(*) FROM vms WHERE ${where}) AS total,
           (SELECT coalesce(array_to_json(array_agg(p.a ORDER BY p.idx, p.deposed, p.created_at, p.id)), '[]')::text FROM (
              SELECT ${LIVE_VM.array} AS a, idx, (deposed_at IS NOT NULL) AS deposed, created_at, id FROM vms WHERE ${where}
              ORDER BY idx, (deposed_at IS NOT NULL), created_at, id LIMIT $3 OFFSET $4) p) AS j`,
        params,
      );
      const arrays = JSON.parse(row.j) as VmArray[];
      return { total: Number(row.total), vms: arrays.map((a) => liveVmFromArray(stack, a)) };
    },

    async getVm(id) {
      const rows = await db.query(`SELECT ${FULL_VM.list} FROM vms WHERE id = $1`, [id]);
      return rows.length ? vmFromRow(rows[0]) : undefined;
    },

    async getVms(ids) {
      if (ids.length === 0) return [];
      const rows = await db.query(`SELECT ${FULL_VM.list} FROM vms WHERE id = ANY($1::text[])`, [[...ids]]);
      const byId = new Map(rows.map((r) => [r.id as string, vmFromRow(r)]));
      return ids.map((id) => byId.get(id));
    },

    async findVm(stack, address) {
      const a = parseVmAddress(address);
      if (!a) return undefined;
      const rows = await db.query(
        `SELECT ${FULL_VM.list} FROM vms WHERE stack = $1 AND fleet = $2 AND idx = $3 AND retired_at IS NULL ORDER BY (deposed_at IS NOT NULL), created_at LIMIT 1`,
        [stack, a.fleet, a.index],
      );
      return rows.length ? vmFromRow(rows[0]) : undefined;
    },

    async listFleets(stack, fleets) {
      const params: unknown[] = [stack];
      let where = 'stack = $1';
      if (fleets) {
        params.push([...fleets]);
        where += ' AND fleet = ANY($2::text[])';
      }
      // One JSON text, as listVms: for 5,000 fleets, parsing 30,000 protocol
      // values and 5,000 dates cost ~10 ms of a targeted plan (bench/scale).
      const [row] = await db.query<{ j: string }>(
        // The manager counts while the fleet has live VMs (vm_usage, kept by triggers; looked up only for a managed fleet).
        `SELECT coalesce(json_agg(json_build_array(fleet, owner, version, (updated_at AT TIME ZONE 'UTC')::text, protected, ${managedBySql('fleets')}) ORDER BY fleet), '[]')::text AS j
         FROM fleets WHERE ${where}`,
        params,
      );
      const arrays = JSON.parse(row.j) as [string, string, number, string, boolean, string | null][];
      return arrays.map(([fleet, owner, version, updatedAt, isProtected, managedBy]): FleetRow => ({ stack, fleet, owner, version, updatedAt: pgTimeToIso(updatedAt), protected: isProtected, managedBy }));
    },

    async usage(stack, opts) {
      if (opts.byOwner) return usageByOwner(db, stack, opts.excludeFleets);
      // From vm_usage (migration 8), which triggers on vms keep in step with
      // every write: one row per fleet and data center, so a targeted plan
      // reads ~50k rows at 1M VMs instead of summing 999,800 (issue 20). The
      // owners are joined here rather than in SQL: PGlite never analyzes, and
      // without statistics would look up each row's fleet one by one.
      // One JSON text for the rows, as in listVms (50k rows at 1M VMs).
      const sums = await db.query<{ j: string }>(
        `SELECT coalesce(json_agg(json_build_array(fleet, data_center, vms, cpu, memory_gib)), '[]')::text AS j FROM vm_usage
         WHERE stack = $1 AND vms > 0 AND fleet <> ALL($2::text[])`,
        [stack, [...opts.excludeFleets]],
      );
      const fleets = await db.query<{ fleet: string; owner: string }>('SELECT fleet, owner FROM fleets WHERE stack = $1', [stack]);
      const owners = new Map(fleets.map((f) => [f.fleet, f.owner]));
      const rows = JSON.parse(sums[0].j) as [string, string, number, number, number][];
      const out: UsageRow[] = rows.map(([fleet, dataCenter, vms, cpu, memoryGiB]) => ({ fleet, owner: owners.get(fleet) ?? '', dataCenter, vms, cpu, memoryGiB }));
      // Code point order, like the "C" collation of listVms and listFleets.
      const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
      return out.sort((a, b) => cmp(a.fleet, b.fleet) || cmp(a.dataCenter, b.dataCenter));
    },
  };
}

/** Code point order, like the "C" collation of listVms and listFleets. */
const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * usage() summed per owner (the fleets table's) and data center, with
 * `fleet` '' in each row. For a plan narrowed to a few fleets of a big
 * stack: its quotas need the other fleets' VMs per owner and its capacity
 * per data center, not per fleet (1M VMs: ~200 rows instead of ~50,000), and
 * a fleet outside its scope counts under the owner its record row holds
 * (PlanState.settleOwners), so no fleet needs rows of its own. One
 * statement; the join to `fleets` is hashed whatever the statistics say
 * (PGlite never analyzes).
 */
async function usageByOwner(db: RecordSql['db'], stack: string, exclude: readonly string[]): Promise<UsageRow[]> {
  return db.transaction(async (q) => {
    await q.query('SET LOCAL enable_nestloop = off');
    await q.query('SET LOCAL enable_mergejoin = off');
    await q.query('SET LOCAL enable_sort = off');
    const [row] = await q.query<{ j: string }>(
      `SELECT coalesce(json_agg(json_build_array(owner, data_center, vms, cpu, memory_gib)), '[]')::text AS j FROM (
         SELECT f.owner, u.data_center, sum(u.vms) AS vms, sum(u.cpu) AS cpu, sum(u.memory_gib) AS memory_gib
         FROM vm_usage u JOIN fleets f ON f.stack = u.stack AND f.fleet = u.fleet
         WHERE u.stack = $1 AND u.vms > 0 AND u.fleet <> ALL($2::text[])
         GROUP BY 1, 2) s`,
      [stack, [...exclude]],
    );
    const rows = JSON.parse(row.j) as [string, string, number | string, number | string, number | string][];
    const out: UsageRow[] = rows.map(([owner, dataCenter, vms, cpu, mem]) => ({ fleet: '', owner, dataCenter, vms: Number(vms), cpu: Number(cpu), memoryGiB: Number(mem) }));
    return out.sort((a, b) => byCodePoint(a.owner, b.owner) || byCodePoint(a.dataCenter, b.dataCenter));
  });
}

/**
 * The overview's stack-wide totals (OverviewCache) in one statement: one
 * pass over the stack's vm_usage rows grouped two ways at once (per fleet
 * for the names, per data center for the sums). At 990,000 rows on
 * PostgreSQL (bench:overview, load average 11) a load reading it took
 * 0.61 s, where the statement before (the rows materialized, then grouped
 * per fleet, spilling to disk, and per data center) took 1.13 s on every
 * load; a loose index scan (a recursive CTE stepping from fleet to fleet
 * along the primary key) took 1.15 s for the 99,000 fleets alone: with ten
 * rows a fleet, stepping costs more than reading (docs/dashboard.md).
 * Ordered by code point (COLLATE "C", as the page's rows are), whatever the
 * database's collation: the pages slice this list.
 */
async function readOverviewTotals(db: RecordSql['db'], stack: string): Promise<OverviewTotals> {
  const [row] = await db.query<{ fleets: string; totals: string }>(
    `WITH g AS (
       SELECT fleet, data_center, sum(vms) AS n, grouping(fleet) AS per_dc FROM vm_usage
       WHERE stack = $1 AND vms > 0 GROUP BY GROUPING SETS ((fleet), (data_center)))
     SELECT (SELECT coalesce(json_agg(fleet ORDER BY fleet COLLATE "C"), '[]')::text FROM g WHERE per_dc = 0) AS fleets,
       (SELECT coalesce(json_agg(json_build_array(data_center, n) ORDER BY data_center COLLATE "C"), '[]')::text FROM g WHERE per_dc = 1) AS totals`,
    [stack],
  );
  const totals = JSON.parse(row.totals) as [string, number | string][];
  return { fleets: JSON.parse(row.fleets) as string[], totals: totals.map(([dataCenter, n]) => ({ dataCenter, vms: Number(n) })) };
}
