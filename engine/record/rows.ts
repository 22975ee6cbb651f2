// How a VM row leaves the database and becomes a VmRow or PlanVmRow.
//
// Every VM read selects from one table of column definitions (VM_COLUMNS):
// a selection names the columns it needs, and from that one list come both
// its SQL (a text array per row, or named columns) and the position of each
// column in it (`at`), which its decoder reads by name. Reordering, adding or
// dropping a column therefore cannot shift what a decoder reads; a decoder
// naming a column its selection lacks does not compile, and rows.test.ts
// checks that every decoder reads every column of its selection.
//
// Every value leaves the database as text, the same on both backends:
// timestamps as UTC text (`2026-01-02 03:04:05.678901`), made ISO strings by
// slicing (pgTimeToIso), whatever the session time zone and far cheaper than
// Date parsing; numbers and booleans as their text.
import { formatVmAddress } from '../model/index.ts';
import type { PlanVmRow, VmRow } from './types.ts';

const utc = (col: string) => `(${col} AT TIME ZONE 'UTC')::text`;

/**
 * Every column a VM read may select: name -> SQL giving its text. The
 * names are `vms`' own column names, so a selection's named form
 * (`list`) can stand where `vms` rows are expected (RETURNING, CTEs).
 */
const VM_COLUMNS = {
  id: 'id',
  stack: 'stack',
  fleet: 'fleet',
  idx: 'idx::text',
  name: 'name',
  data_center: 'data_center',
  state: 'state',
  desired_state: 'desired_state',
  spec_hash: 'spec_hash',
  image: 'image',
  real_image: 'real_image',
  cpu: 'cpu::text',
  memory_gib: 'memory_gib::text',
  disk_gib: 'disk_gib::text',
  encrypted_disk: 'encrypted_disk::text',
  cloud_id: 'cloud_id',
  version: 'version::text',
  created_at: utc('created_at'),
  updated_at: utc('updated_at'),
  retired_at: utc('retired_at'),
  deposed: '(deposed_at IS NOT NULL)::text',
} as const;

export type VmColumn = keyof typeof VM_COLUMNS;

/** One selected row: the column texts in the selection's order. */
export type VmArray = (string | null)[];

/** Some VM columns: their SQL in two forms, and where each sits in a row. */
export interface VmSelection<C extends VmColumn> {
  readonly columns: readonly C[];
  /** `ARRAY[…]`: one text array per row, for reads aggregated into one JSON text. */
  readonly array: string;
  /** `expr AS name, …`: named text columns, for RETURNING and statements that use them by name. */
  readonly list: string;
  /** The position of each column in a row (the array, or `toArray` of a named row). */
  readonly at: { readonly [K in C]: number };
  /** A named row as an array in the selection's order. */
  toArray(row: Record<string, unknown>): VmArray;
}

export function selectVm<const C extends VmColumn>(columns: readonly C[]): VmSelection<C> {
  const at = Object.freeze(Object.fromEntries(columns.map((c, i) => [c, i]))) as { readonly [K in C]: number };
  return {
    columns,
    array: `ARRAY[${columns.map((c) => VM_COLUMNS[c]).join(', ')}]`,
    list: columns.map((c) => ((VM_COLUMNS[c] as string) === c ? c : `${VM_COLUMNS[c]} AS ${c}`)).join(', '),
    at,
    toArray: (row) => columns.map((c) => row[c] as string | null),
  };
}

/** Every column: getVm, findVm, listVms with retired rows, RETURNING of writes. */
export const FULL_VM = selectVm(Object.keys(VM_COLUMNS) as VmColumn[]);

/**
 * listVms' hot path for live VMs: FULL_VM without what the caller knows or
 * can derive (stack, name = `<stack>-<fleet>-<index>`, retired_at = null).
 * Fewer and cheaper columns: 100k rows read in ~0.85 s instead of ~1.4 s on
 * PGlite (bench/record).
 */
export const LIVE_VM = selectVm([
  'id',
  'fleet',
  'idx',
  'data_center',
  'state',
  'desired_state',
  'spec_hash',
  'image',
  'real_image',
  'cpu',
  'memory_gib',
  'disk_gib',
  'encrypted_disk',
  'cloud_id',
  'version',
  'created_at',
  'updated_at',
  'deposed',
]);

/**
 * listPlanVms' columns: the live VM columns the planner reads (PlanVmRow),
 * as LIVE_VM. No timestamps, whose text conversion is the dearest part of
 * listVms, and 15 values instead of 18: 100k rows in ~0.55 s of database
 * time and parsing instead of ~1 s on PGlite (bench/plan).
 */
export const PLAN_VM = selectVm([
  'id',
  'fleet',
  'idx',
  'data_center',
  'state',
  'spec_hash',
  'image',
  'real_image',
  'cpu',
  'memory_gib',
  'disk_gib',
  'encrypted_disk',
  'cloud_id',
  'version',
  'deposed',
]);

/**
 * A selection's rows (`array`, a selection's `array` expression) as one JSON
 * text, an array of text arrays, in listVms' order: for 100k rows, one
 * JSON.parse beats per-field parsing of 2M protocol values by an order of
 * magnitude, and text arrays build faster in the database than
 * json_build_array (bench/record).
 */
export const aggregateVms = (array: string): string =>
  `coalesce(array_to_json(array_agg(${array} ORDER BY fleet, idx, created_at, id)), '[]')::text AS j`;

/** A VM's name, `<stack>-<fleet>-<index>`, as inserts store it and LIVE_VM's decoder derives it. */
export function vmName(stack: string, fleet: string, index: number): string {
  return `${stack}-${fleet}-${index}`;
}

/**
 * A VM's address computed in SQL from a relation `alias` with `fleet` and
 * `idx` (history rows store it): formatVmAddress's form, which this is the
 * one SQL copy of (the contract suite checks the two agree).
 */
export function addressSql(alias: string): string {
  return `${alias}.fleet || '/' || ${alias}.idx`;
}

// The decoders below are the hot path of listVms and listPlanVms (100k rows
// for a big stack): plain object literals, no spreads or loops over columns
// (a loop over a column table decodes ~30% slower).

/** A FULL_VM row. */
export function vmFromArray(a: VmArray): VmRow {
  const p = FULL_VM.at;
  const fleet = a[p.fleet]!;
  const index = Number(a[p.idx]);
  const retired = a[p.retired_at];
  return {
    id: a[p.id]!,
    stack: a[p.stack]!,
    fleet,
    index,
    address: formatVmAddress(fleet, index),
    name: a[p.name]!,
    dataCenter: a[p.data_center]!,
    state: a[p.state]!,
    desiredState: a[p.desired_state]!,
    specHash: a[p.spec_hash]!,
    image: a[p.image]!,
    realImage: a[p.real_image],
    size: { cpu: Number(a[p.cpu]), memoryGiB: Number(a[p.memory_gib]), diskGiB: Number(a[p.disk_gib]) },
    encryptedDisk: a[p.encrypted_disk] === 'true',
    cloudId: a[p.cloud_id],
    version: Number(a[p.version]),
    createdAt: pgTimeToIso(a[p.created_at]!),
    updatedAt: pgTimeToIso(a[p.updated_at]!),
    retiredAt: retired === null ? null : pgTimeToIso(retired),
    deposed: a[p.deposed] === 'true',
  };
}

/** A FULL_VM row in its named form (RETURNING, getVm). */
export function vmFromRow(row: Record<string, unknown>): VmRow {
  return vmFromArray(FULL_VM.toArray(row));
}

/** A LIVE_VM row of `stack`. */
export function liveVmFromArray(stack: string, a: VmArray): VmRow {
  const p = LIVE_VM.at;
  const fleet = a[p.fleet]!;
  const index = Number(a[p.idx]);
  return {
    id: a[p.id]!,
    stack,
    fleet,
    index,
    address: formatVmAddress(fleet, index),
    name: vmName(stack, fleet, index),
    dataCenter: a[p.data_center]!,
    state: a[p.state]!,
    desiredState: a[p.desired_state]!,
    specHash: a[p.spec_hash]!,
    image: a[p.image]!,
    realImage: a[p.real_image],
    size: { cpu: Number(a[p.cpu]), memoryGiB: Number(a[p.memory_gib]), diskGiB: Number(a[p.disk_gib]) },
    encryptedDisk: a[p.encrypted_disk] === 'true',
    cloudId: a[p.cloud_id],
    version: Number(a[p.version]),
    createdAt: pgTimeToIso(a[p.created_at]!),
    updatedAt: pgTimeToIso(a[p.updated_at]!),
    retiredAt: null,
    deposed: a[p.deposed] === 'true',
  };
}

/**
 * Appends PLAN_VM rows of `stack` to `out`. Consecutive rows of one size
 * share one frozen size object (rows come in fleet order, and a fleet's
 * members mostly have one size): 100k fewer objects for the planner's
 * process to collect.
 */
export function appendPlanVms(out: PlanVmRow[], stack: string, arrays: VmArray[]): void {
  const p = PLAN_VM.at;
  let size: VmRow['size'] = { cpu: NaN, memoryGiB: NaN, diskGiB: NaN };
  let cpu: string | null = null;
  let mem: string | null = null;
  let disk: string | null = null;
  for (let i = 0; i < arrays.length; i++) {
    const a = arrays[i];
    if (a[p.cpu] !== cpu || a[p.memory_gib] !== mem || a[p.disk_gib] !== disk) {
      cpu = a[p.cpu];
      mem = a[p.memory_gib];
      disk = a[p.disk_gib];
      size = Object.freeze({ cpu: Number(cpu), memoryGiB: Number(mem), diskGiB: Number(disk) });
    }
    const fleet = a[p.fleet]!;
    const index = Number(a[p.idx]);
    out.push({
      id: a[p.id]!,
      stack,
      fleet,
      index,
      address: formatVmAddress(fleet, index),
      name: vmName(stack, fleet, index),
      dataCenter: a[p.data_center]!,
      state: a[p.state]!,
      specHash: a[p.spec_hash]!,
      image: a[p.image]!,
      realImage: a[p.real_image],
      size,
      encryptedDisk: a[p.encrypted_disk] === 'true',
      cloudId: a[p.cloud_id],
      version: Number(a[p.version]),
      retiredAt: null,
      deposed: a[p.deposed] === 'true',
    });
  }
}

/** `2026-01-02 03:04:05.678901` or `2026-01-02T03:04:05.6` (UTC, from PostgreSQL) -> `2026-01-02T03:04:05.678Z`. */
export function pgTimeToIso(s: string): string {
  const base = `${s.slice(0, 10)}T${s.slice(11, 19)}`;
  if (s[19] !== '.') return `${base}.000Z`;
  let frac = '';
  for (let i = 20; i < 23 && s[i] >= '0' && s[i] <= '9'; i++) frac += s[i];
  return `${base}.${frac.padEnd(3, '0')}Z`;
}

/** A timestamptz the driver parsed into a Date (the tables other than vms), or UTC text. */
export function iso(v: Date | string): string {
  return v instanceof Date ? v.toISOString() : pgTimeToIso(v);
}

/**
 * The manager of fleet row `alias` (FleetRow.managedBy) as SQL: its
 * managed_by while the fleet has a live VM (vm_usage, migration 8), else
 * NULL: a fleet whose VMs are all gone may be created by either manager.
 * The live-VM look-up runs only for a managed row.
 */
export function managedBySql(alias: string): string {
  return `CASE WHEN ${alias}.managed_by IS NOT NULL AND EXISTS (SELECT 1 FROM vm_usage mu WHERE mu.stack = ${alias}.stack AND mu.fleet = ${alias}.fleet AND mu.vms > 0) THEN ${alias}.managed_by END`;
}

/**
 * The manager migration 12 gives a fleet a program made before it (no
 * name known): any program (`pulumi:…`) may create in it, and its name
 * then replaces this one.
 */
export const LEGACY_PROGRAM = 'pulumi';

/**
 * SQL true when fleet row `alias` has live VMs made by another manager than
 * `manager` (an SQL expression, NULL for fleet apply): a create there is refused.
 */
export function otherManagerSql(alias: string, manager: string): string {
  const same = `(${alias}.managed_by = '${LEGACY_PROGRAM}' AND ${manager} LIKE '${LEGACY_PROGRAM}:%')`;
  return `(${alias}.managed_by IS DISTINCT FROM ${manager} AND NOT coalesce(${same}, false) AND EXISTS (SELECT 1 FROM vm_usage mu WHERE mu.stack = ${alias}.stack AND mu.fleet = ${alias}.fleet AND mu.vms > 0))`;
}
