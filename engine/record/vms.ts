// The VM reader: live VMs, fleets and what they use. The rows and their
// decoders are ./rows.ts; the writes are ./vm-writes.ts.
import { parseVmAddress } from '../model/index.ts';
import { FULL_VM, LIVE_VM, PLAN_VM, appendPlanVms, liveVmFromArray, pgTimeToIso, vmFromArray, vmFromRow, type VmArray } from './rows.ts';
import type { RecordSql } from './sql.ts';
import type { FleetRow, PlanVmRow, UsageRow, VmReader, VmRow } from './types.ts';

/**
 * About how many rows one listPlanVms statement reads. PostgreSQL builds a
 * statement's whole JSON aggregate in its memory, and PGlite's WebAssembly
 * memory never shrinks: 100k rows in one statement grew it by 137 MB and cost
 * ~65k page faults; in statements of ~10k rows it does not grow, and the
 * read takes ~30% less CPU (bench/plan).
 */
const PLAN_CHUNK_ROWS = 10_000;

/**
 * A selection's rows as one JSON text (an array of text arrays): for 100k
 * rows, one JSON.parse beats per-field parsing of 2M protocol values by an
 * order of magnitude, and text arrays build faster in the database than
 * json_build_array (bench/record).
 */
const aggregate = (array: string) => `coalesce(array_to_json(array_agg(${array} ORDER BY fleet, idx, created_at, id)), '[]')::text AS j`;

export function vmReader({ db }: RecordSql): VmReader {
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
      const [row] = await db.query<{ j: string }>(`SELECT ${aggregate(live ? LIVE_VM.array : FULL_VM.array)} FROM vms WHERE ${where}`, params);
      const arrays = JSON.parse(row.j) as VmArray[];
      const out = new Array<VmRow>(arrays.length);
      if (live) for (let i = 0; i < arrays.length; i++) out[i] = liveVmFromArray(stack, arrays[i]);
      else for (let i = 0; i < arrays.length; i++) out[i] = vmFromArray(arrays[i]);
      return out;
    },

    async listPlanVms(stack, opts = {}) {
      if (opts.fleets?.length === 0) return [];
      return db.transaction(async (q) => {
        // One snapshot for every statement below (PostgreSQL's default gives each its own).
        await q.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
        // The (stack, fleet, idx) index gives the rows almost in order, so only
        // rows at one address need sorting (incremental sort). PGlite never
        // analyzes, and without statistics the planner picks a bitmap scan and
        // a full sort of every row, which spills to disk past work_mem (for
        // 100k rows: 33 MB of temp files written and read back on every plan).
        // SET LOCAL ends with the transaction.
        await q.query('SET LOCAL enable_sort = off');
        await q.query('SET LOCAL enable_bitmapscan = off');
        // Read fleet by fleet in groups of about PLAN_CHUNK_ROWS rows, in fleet
        // order. Every VM's fleet has a fleets row (each insert bumps it), and
        // the planner's scope comes from that table too.
        const fleets = (
          await q.query<{ fleet: string }>(
            `SELECT fleet FROM fleets WHERE stack = $1${opts.fleets ? ' AND fleet = ANY($2::text[])' : ''} ORDER BY fleet`,
            opts.fleets ? [stack, [...opts.fleets]] : [stack],
          )
        ).map((r) => r.fleet);
        const out: PlanVmRow[] = [];
        let per = 50;
        for (let i = 0; i < fleets.length; ) {
          const group = fleets.slice(i, i + per);
          i += group.length;
          const [row] = await q.query<{ j: string }>(
            `SELECT ${aggregate(PLAN_VM.array)} FROM vms WHERE stack = $1 AND retired_at IS NULL AND fleet = ANY($2::text[])`,
            [stack, group],
          );
          const arrays = JSON.parse(row.j) as VmArray[];
          appendPlanVms(out, stack, arrays);
          // Size the next group from this one's rows per fleet.
          per = Math.max(1, Math.min(per * 4, Math.round((group.length * PLAN_CHUNK_ROWS) / Math.max(1, arrays.length))));
        }
        return out;
      });
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
        `SELECT coalesce(json_agg(json_build_array(fleet, owner, version, (updated_at AT TIME ZONE 'UTC')::text, protected) ORDER BY fleet), '[]')::text AS j
         FROM fleets WHERE ${where}`,
        params,
      );
      const arrays = JSON.parse(row.j) as [string, string, number, string, boolean][];
      return arrays.map(([fleet, owner, version, updatedAt, isProtected]): FleetRow => ({ stack, fleet, owner, version, updatedAt: pgTimeToIso(updatedAt), protected: isProtected }));
    },

    async usage(stack, opts) {
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
