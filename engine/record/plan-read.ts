// What plans read of the live VMs: every row (listPlanVms), or only the
// members that differ from their fleet's shape, the others summed
// (readPlan). `splitPlanRows` below is readPlan's definition in plain code;
// the SQL computes the same in the database, so an unchanged member of a big
// stack costs a few comparisons there instead of a row sent, parsed and
// diffed (docs/planning.md, "What a plan reads").
import { sameSize } from '../model/index.ts';
import { PLAN_VM, aggregateVms, appendPlanVms, type VmArray } from './rows.ts';
import type { Queryable, RecordSql } from './sql.ts';
import type { FleetShape, PlanRead, PlanVmRow, UnchangedRow, VmReader } from './types.ts';

/**
 * About how many rows one statement reads. PostgreSQL builds a statement's
 * whole JSON aggregate in its memory, and PGlite's WebAssembly memory never
 * shrinks: 100k rows in one statement grew it by 137 MB and cost ~65k page
 * faults; in statements of ~10k rows it does not grow, and the read takes
 * ~30% less CPU (bench/plan).
 */
const PLAN_CHUNK_ROWS = 10_000;

/** Code point order, like the "C" collation of the record's text columns. */
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Whether a live row is one of its fleet's unchanged members (FleetShape). */
export function matchesShape(row: PlanVmRow, shape: FleetShape): boolean {
  return (
    !row.deposed &&
    row.index < shape.count &&
    row.state === shape.state &&
    row.specHash === shape.specHash &&
    row.image === shape.image &&
    row.encryptedDisk === shape.encryptedDisk &&
    sameSize(row.size, shape.size)
  );
}

/**
 * readPlan in plain code, over the live rows of a stack in listPlanVms'
 * order: the rows of the fleets in `fleets` (all when absent) that differ
 * from their shape, and the matching ones summed. A fleet's rows are all
 * kept when it has no shape, or when its live members not deposed and below
 * its count are fewer than its count.
 */
export function splitPlanRows(all: readonly PlanVmRow[], shapes: readonly FleetShape[], fleets?: readonly string[]): PlanRead {
  const scope = fleets ? new Set(fleets) : undefined;
  const inScope = scope ? all.filter((r) => scope.has(r.fleet)) : all;
  const byFleet = new Map(shapes.map((s) => [s.fleet, s]));
  const kept = new Map<string, number>();
  for (const r of inScope) {
    const s = byFleet.get(r.fleet);
    if (s && !r.deposed && r.index < s.count) kept.set(r.fleet, (kept.get(r.fleet) ?? 0) + 1);
  }
  for (const s of shapes) if ((kept.get(s.fleet) ?? 0) < s.count) byFleet.delete(s.fleet);
  const rows: PlanVmRow[] = [];
  const sums = new Map<string, UnchangedRow>();
  for (const r of inScope) {
    const s = byFleet.get(r.fleet);
    if (!s || !matchesShape(r, s)) {
      rows.push(r);
      continue;
    }
    const key = `${r.fleet}\u0000${r.dataCenter}`;
    const u = sums.get(key);
    sums.set(key, summed(s, r.dataCenter, (u?.vms ?? 0) + 1));
  }
  return { rows, unchanged: sortUnchanged([...sums.values()]) };
}

/** `n` unchanged members of a fleet in a data center: all in its shape's state and of its size. */
function summed(s: FleetShape, dataCenter: string, n: number): UnchangedRow {
  return { fleet: s.fleet, dataCenter, state: s.state, vms: n, cpu: n * s.size.cpu, memoryGiB: n * s.size.memoryGiB };
}

/** `list` sorted by `key`, keeping the order of equal keys. */
function stableSortBy<T>(list: T[], key: (x: T) => number): T[] {
  return list
    .map((x, i) => [key(x), i, x] as const)
    .sort((a, b) => a[0] - b[0] || a[1] - b[1])
    .map((e) => e[2]);
}

function sortUnchanged(list: UnchangedRow[]): UnchangedRow[] {
  return list.sort((a, b) => cmp(a.fleet, b.fleet) || cmp(a.dataCenter, b.dataCenter) || cmp(a.state, b.state));
}

/** The shapes as a relation `w` with columns w_fleet, w_count, ... (no name a vms column has). */
const SHAPES = `json_to_recordset($SHAPES::json) AS w(w_fleet text, w_count integer, w_state text, w_hash text, w_image text, w_enc boolean, w_cpu float8, w_mem float8, w_disk float8)`;
const shapesSql = (param: number) => SHAPES.replace('$SHAPES', `$${param}`);
const shapesJson = (shapes: readonly FleetShape[]) =>
  JSON.stringify(
    shapes.map((s) => ({
      w_fleet: s.fleet,
      w_count: s.count,
      w_state: s.state,
      w_hash: s.specHash,
      w_image: s.image,
      w_enc: s.encryptedDisk,
      w_cpu: s.size.cpu,
      w_mem: s.size.memoryGiB,
      w_disk: s.size.diskGiB,
    })),
  );

/** matchesShape in SQL, over a vms row joined to its fleet's shape. */
const MATCH = `(deposed_at IS NULL AND idx < w_count AND state = w_state AND spec_hash = w_hash AND image = w_image
  AND encrypted_disk = w_enc AND cpu = w_cpu AND memory_gib = w_mem AND disk_gib = w_disk)`;

/**
 * Plans for these statements. PGlite never analyzes: without statistics its
 * planner picks a bitmap scan and a full sort of every row (which spills to
 * disk past work_mem: for 100k rows, 33 MB of temp files on every plan), a
 * sort for GROUP BY, and nested loops over the shapes. The (stack, fleet,
 * idx) index gives the rows almost in order, so only rows at one address
 * need sorting (incremental sort); joins to the shapes are hashed. SET LOCAL
 * ends with the transaction.
 */
async function planSettings(q: Queryable): Promise<void> {
  // One snapshot for every statement of the read (PostgreSQL's default gives each its own).
  await q.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
  await q.query('SET LOCAL enable_sort = off');
  await q.query('SET LOCAL enable_bitmapscan = off');
  await q.query('SET LOCAL enable_nestloop = off');
  await q.query('SET LOCAL enable_mergejoin = off');
}

/**
 * The live rows of `fleets` (in fleet order) less the members matching
 * `lean`'s shapes, read fleet by fleet in groups of about PLAN_CHUNK_ROWS
 * rows, in listPlanVms' order.
 */
async function readRows(q: Queryable, stack: string, fleets: readonly string[], lean: readonly FleetShape[]): Promise<PlanVmRow[]> {
  const out: PlanVmRow[] = [];
  const json = lean.length ? shapesJson(lean) : undefined;
  const select = json
    ? `SELECT ${aggregateVms(PLAN_VM.array)} FROM vms LEFT JOIN ${shapesSql(3)} ON fleet = w_fleet
       WHERE stack = $1 AND retired_at IS NULL AND fleet = ANY($2::text[]) AND NOT coalesce(${MATCH}, false)`
    : `SELECT ${aggregateVms(PLAN_VM.array)} FROM vms WHERE stack = $1 AND retired_at IS NULL AND fleet = ANY($2::text[])`;
  let per = 50;
  for (let i = 0; i < fleets.length; ) {
    const group = fleets.slice(i, i + per);
    i += group.length;
    const [row] = await q.query<{ j: string }>(select, json ? [stack, group, json] : [stack, group]);
    const arrays = JSON.parse(row.j) as VmArray[];
    appendPlanVms(out, stack, arrays);
    // Size the next group from this one's rows per fleet.
    per = Math.max(1, Math.min(per * 4, Math.round((group.length * PLAN_CHUNK_ROWS) / Math.max(1, arrays.length))));
  }
  return out;
}

/** The fleets of a stack (all, or those of `only` the record knows), in fleet order. Every VM's fleet has a fleets row (each insert bumps it). */
async function fleetNames(q: Queryable, stack: string, only?: readonly string[]): Promise<string[]> {
  const rows = await q.query<{ fleet: string }>(
    `SELECT fleet FROM fleets WHERE stack = $1${only ? ' AND fleet = ANY($2::text[])' : ''} ORDER BY fleet`,
    only ? [stack, [...only]] : [stack],
  );
  return rows.map((r) => r.fleet);
}

export function planReader({ db }: RecordSql): Pick<VmReader, 'listPlanVms' | 'readPlan'> {
  return {
    async listPlanVms(stack, opts = {}) {
      if (opts.fleets?.length === 0) return [];
      return db.transaction(async (q) => {
        await planSettings(q);
        return readRows(q, stack, await fleetNames(q, stack, opts.fleets), []);
      });
    },

    async readPlan(stack, opts) {
      if (opts.fleets?.length === 0) return { rows: [], unchanged: [] };
      const scope = opts.fleets ? new Set(opts.fleets) : undefined;
      const shapes = new Map((scope ? opts.shapes.filter((s) => scope.has(s.fleet)) : opts.shapes).map((s) => [s.fleet, s]));
      return db.transaction(async (q) => {
        await planSettings(q);
        const fleets = await fleetNames(q, stack, opts.fleets);
        const shaped = fleets.filter((f) => shapes.has(f));
        if (shaped.length === 0) return { rows: await readRows(q, stack, fleets, []), unchanged: [] };
        // One pass over the rows in the database: those that differ from
        // their shape. A matching member has its shape's state and size, so
        // the others are known from how many live VMs each fleet has per
        // data center (vm_usage, kept in step with vms by triggers), less
        // the rows read.
        const differing = await readRows(q, stack, fleets, [...shapes.values()]);
        // One JSON text, as usage() reads it; the shaped fleets joined as a hashed set
        // (a list compared row by row cost ~60 ms for 500 fleets on PGlite).
        const [counts] = await q.query<{ j: string }>(
          `SELECT coalesce(json_agg(json_build_array(fleet, data_center, vms)), '[]')::text AS j
           FROM vm_usage JOIN unnest($2::text[]) AS f(name) ON fleet = f.name WHERE stack = $1 AND vms > 0`,
          [stack, shaped],
        );
        const live = JSON.parse(counts.j) as [fleet: string, dataCenter: string, vms: number][];
        const read = new Map<string, number>();
        const kept = new Map<string, number>();
        for (const r of differing) {
          const s = shapes.get(r.fleet);
          if (!s) continue;
          const key = `${r.fleet}\u0000${r.dataCenter}`;
          read.set(key, (read.get(key) ?? 0) + 1);
          if (!r.deposed && r.index < s.count) kept.set(r.fleet, (kept.get(r.fleet) ?? 0) + 1);
        }
        const unchanged: UnchangedRow[] = [];
        for (const [fleet, dataCenter, vms] of live) {
          const n = vms - (read.get(`${fleet}\u0000${dataCenter}`) ?? 0);
          if (n <= 0) continue;
          kept.set(fleet, (kept.get(fleet) ?? 0) + n);
          unchanged.push(summed(shapes.get(fleet)!, dataCenter, n));
        }
        // A fleet with members missing below its count is read whole: its new members need the free indexes.
        const whole = new Set(shaped.filter((f) => (kept.get(f) ?? 0) < shapes.get(f)!.count));
        if (whole.size === 0) return { rows: differing, unchanged: sortUnchanged(unchanged) };
        const wholeRows = await readRows(q, stack, [...whole], []);
        const rows = [...differing.filter((r) => !whole.has(r.fleet)), ...wholeRows];
        // Back in fleet order; each fleet's rows came from one statement, in order already.
        const rank = new Map(fleets.map((f, i) => [f, i]));
        const byFleet = stableSortBy(rows, (r) => rank.get(r.fleet)!);
        return { rows: byFleet, unchanged: sortUnchanged(unchanged.filter((u) => !whole.has(u.fleet))) };
      });
    },
  };
}
