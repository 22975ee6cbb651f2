import { randomBytes, randomUUID } from 'node:crypto';
import { FleetError, diag, fail } from '../diags/index.ts';
import type { PlanBasis } from '../plan/types.ts';
import { parseVmAddress } from '../model/index.ts';
import { VersionConflictError } from './errors.ts';
import { JournalWriter } from './journal.ts';
import type { Queryable, SqlAdapter } from './sql.ts';
import type {
  AppliedPlan,
  BootAttempt,
  BootCheck,
  BootCheckResult,
  ChangeContext,
  FleetRecord,
  FleetRow,
  HistoryItem,
  HistoryRow,
  InsertItem,
  JournalRow,
  LockHandle,
  LockHolder,
  LockRow,
  NewVm,
  Onward,
  Outcome,
  PlanVmRow,
  StaleEntry,
  TransitionItem,
  UsageRow,
  VmPatch,
  VmRow,
} from './types.ts';

// Timestamps leave the database as UTC text (`2026-01-02 03:04:05.678901`) and
// become ISO strings by slicing (pgTimeToIso): the same result on both
// backends, whatever the session time zone, and far cheaper than Date parsing.
const VM_COLS = `id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, real_image,
  cpu, memory_gib, disk_gib, encrypted_disk, cloud_id, version,
  (created_at AT TIME ZONE 'UTC')::text AS created_at, (updated_at AT TIME ZONE 'UTC')::text AS updated_at,
  (retired_at AT TIME ZONE 'UTC')::text AS retired_at, (deposed_at IS NOT NULL) AS deposed`;

/**
 * listVms' columns as one text array per row, aggregated into one JSON text:
 * for 100k rows, one JSON.parse beats per-field parsing of 2M protocol values
 * by an order of magnitude, and text arrays build faster in the database than
 * json_build_array (bench/record). Positions are read by vmFromArray; if you
 * change one, change the other.
 */
const VM_TEXT_ARRAY = `ARRAY[id, stack, fleet, idx::text, name, data_center, state, desired_state, spec_hash, image, real_image,
  cpu::text, memory_gib::text, disk_gib::text, encrypted_disk::text, cloud_id, version::text,
  (created_at AT TIME ZONE 'UTC')::text, (updated_at AT TIME ZONE 'UTC')::text, (retired_at AT TIME ZONE 'UTC')::text, (deposed_at IS NOT NULL)::text]`;

type VmArray = (string | null)[];

/**
 * listVms' hot path for live VMs: the same as VM_TEXT_ARRAY without what the
 * caller knows or can derive (stack, name = `<stack>-<fleet>-<index>`,
 * retired_at = null). Fewer and cheaper columns: 100k rows read in ~0.85 s
 * instead of ~1.4 s on PGlite (bench/record). Positions are read by
 * liveVmFromArray; if you change one, change the other.
 */
const LIVE_VM_TEXT_ARRAY = `ARRAY[id, fleet, idx::text, data_center, state, desired_state, spec_hash, image, real_image,
  cpu::text, memory_gib::text, disk_gib::text, encrypted_disk::text, cloud_id, version::text,
  (created_at AT TIME ZONE 'UTC')::text, (updated_at AT TIME ZONE 'UTC')::text, (deposed_at IS NOT NULL)::text]`;

function liveVmFromArray(stack: string, a: VmArray): VmRow {
  return {
    id: a[0]!,
    stack,
    fleet: a[1]!,
    index: Number(a[2]),
    address: `${a[1]}/${a[2]}`,
    name: `${stack}-${a[1]}-${a[2]}`,
    dataCenter: a[3]!,
    state: a[4]!,
    desiredState: a[5]!,
    specHash: a[6]!,
    image: a[7]!,
    realImage: a[8],
    size: { cpu: Number(a[9]), memoryGiB: Number(a[10]), diskGiB: Number(a[11]) },
    encryptedDisk: a[12] === 'true',
    cloudId: a[13],
    version: Number(a[14]),
    createdAt: pgTimeToIso(a[15]!),
    updatedAt: pgTimeToIso(a[16]!),
    retiredAt: null,
    deposed: a[17] === 'true',
  };
}

/**
 * listPlanVms' columns: the live VM columns the planner reads (PlanVmRow), as
 * one text array per row like LIVE_VM_TEXT_ARRAY. No timestamps, whose text
 * conversion is the dearest part of listVms, and 14 values instead of 18:
 * 100k rows in ~0.55 s of database time and parsing instead of ~1 s on PGlite
 * (bench/plan). Positions are read by planVmFromArray; if you change one,
 * change the other.
 */
const PLAN_VM_TEXT_ARRAY = `ARRAY[id, fleet, idx::text, data_center, state, spec_hash, image, real_image,
  cpu::text, memory_gib::text, disk_gib::text, encrypted_disk::text, version::text, (deposed_at IS NOT NULL)::text]`;

/**
 * Appends listPlanVms' rows to `out`. Consecutive rows of one size share one
 * frozen size object (rows come in fleet order, and a fleet's members mostly
 * have one size): 100k fewer objects for the planner's process to collect.
 */
function appendPlanVms(out: PlanVmRow[], stack: string, arrays: VmArray[]): void {
  let size: VmRow['size'] = { cpu: NaN, memoryGiB: NaN, diskGiB: NaN };
  let cpu: string | null = null;
  let mem: string | null = null;
  let disk: string | null = null;
  for (let i = 0; i < arrays.length; i++) {
    const a = arrays[i];
    if (a[8] !== cpu || a[9] !== mem || a[10] !== disk) {
      cpu = a[8];
      mem = a[9];
      disk = a[10];
      size = Object.freeze({ cpu: Number(cpu), memoryGiB: Number(mem), diskGiB: Number(disk) });
    }
    out.push({
      id: a[0]!,
      stack,
      fleet: a[1]!,
      index: Number(a[2]),
      address: `${a[1]}/${a[2]}`,
      name: `${stack}-${a[1]}-${a[2]}`,
      dataCenter: a[3]!,
      state: a[4]!,
      specHash: a[5]!,
      image: a[6]!,
      realImage: a[7],
      size,
      encryptedDisk: a[11] === 'true',
      version: Number(a[12]),
      retiredAt: null,
      deposed: a[13] === 'true',
    });
  }
}

/**
 * About how many rows one listPlanVms statement reads. PostgreSQL builds a
 * statement's whole JSON aggregate in its memory, and PGlite's WebAssembly
 * memory never shrinks: 100k rows in one statement grew it by 137 MB and cost
 * ~65k page faults; in statements of ~10k rows it does not grow, and the
 * read takes ~30% less CPU (bench/plan).
 */
const PLAN_CHUNK_ROWS = 10_000;

function vmFromArray(a: VmArray): VmRow {
  return {
    id: a[0]!,
    stack: a[1]!,
    fleet: a[2]!,
    index: Number(a[3]),
    address: `${a[2]}/${a[3]}`,
    name: a[4]!,
    dataCenter: a[5]!,
    state: a[6]!,
    desiredState: a[7]!,
    specHash: a[8]!,
    image: a[9]!,
    realImage: a[10],
    size: { cpu: Number(a[11]), memoryGiB: Number(a[12]), diskGiB: Number(a[13]) },
    encryptedDisk: a[14] === 'true',
    cloudId: a[15],
    version: Number(a[16]),
    createdAt: pgTimeToIso(a[17]!),
    updatedAt: pgTimeToIso(a[18]!),
    retiredAt: a[19] === null ? null : pgTimeToIso(a[19]),
    deposed: a[20] === 'true',
  };
}

/** `2026-01-02 03:04:05.678901` or `2026-01-02T03:04:05.6` (UTC, from PostgreSQL) -> `2026-01-02T03:04:05.678Z`. */
export function pgTimeToIso(s: string): string {
  const base = `${s.slice(0, 10)}T${s.slice(11, 19)}`;
  if (s[19] !== '.') return `${base}.000Z`;
  let frac = '';
  for (let i = 20; i < 23 && s[i] >= '0' && s[i] <= '9'; i++) frac += s[i];
  return `${base}.${frac.padEnd(3, '0')}Z`;
}

interface VmDb {
  id: string;
  stack: string;
  fleet: string;
  idx: number;
  name: string;
  data_center: string;
  state: string;
  desired_state: string;
  spec_hash: string;
  image: string;
  real_image: string | null;
  cpu: number;
  memory_gib: number;
  disk_gib: number;
  encrypted_disk: boolean;
  cloud_id: string | null;
  version: number;
  created_at: string;
  updated_at: string;
  retired_at: string | null;
  deposed: boolean;
}

/** A timestamptz the driver parsed into a Date (non-VM tables), or VM_COLS' UTC text. */
function iso(v: Date | string): string {
  return v instanceof Date ? v.toISOString() : pgTimeToIso(v);
}

function isoOrNull(v: Date | string | null): string | null {
  return v === null ? null : iso(v);
}

// Hot path of listVms (100k rows for a big stack): a plain object literal, no spreads.
function toVm(r: VmDb): VmRow {
  return {
    id: r.id,
    stack: r.stack,
    fleet: r.fleet,
    index: r.idx,
    address: `${r.fleet}/${r.idx}`,
    name: r.name,
    dataCenter: r.data_center,
    state: r.state,
    desiredState: r.desired_state,
    specHash: r.spec_hash,
    image: r.image,
    realImage: r.real_image,
    size: { cpu: r.cpu, memoryGiB: r.memory_gib, diskGiB: r.disk_gib },
    encryptedDisk: r.encrypted_disk,
    cloudId: r.cloud_id,
    version: r.version,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
    retiredAt: isoOrNull(r.retired_at),
    deposed: r.deposed,
  };
}

/**
 * The 15 values of a new VM row, in the column order insertVm and
 * bulkInsertVms both name: (id, stack, fleet, idx, name, data_center, state,
 * desired_state, spec_hash, image, real_image, cpu, memory_gib, disk_gib,
 * encrypted_disk).
 */
function insertValues(id: string, vm: NewVm): unknown[] {
  return [
    id,
    vm.stack,
    vm.fleet,
    vm.index,
    `${vm.stack}-${vm.fleet}-${vm.index}`,
    vm.dataCenter,
    vm.state,
    vm.desiredState,
    vm.specHash,
    vm.image,
    vm.realImage ?? null,
    vm.size.cpu,
    vm.size.memoryGiB,
    vm.size.diskGiB,
    vm.encryptedDisk,
  ];
}

/** `web/3` -> { fleet: 'web', index: 3 }; undefined when malformed. */
/** Kept for the record's callers; the one parser is engine/model's parseVmAddress. */
export const parseAddress = parseVmAddress;

/** Thrown inside a lock transaction to roll it back when a fleet is held. */
class HeldSignal {
  constructor(readonly row: LockRow) {}
}

interface LockDb {
  lock_id: string;
  stack: string;
  fleet: string;
  who: string;
  host: string;
  pid: number;
  plan_id: string | null;
  since: Date | string;
  expires_at: Date | string;
}

function toLock(r: LockDb): LockRow {
  return {
    lockId: r.lock_id,
    stack: r.stack,
    fleet: r.fleet,
    who: r.who,
    host: r.host,
    pid: Number(r.pid),
    planId: r.plan_id,
    since: iso(r.since),
    expiresAt: iso(r.expires_at),
  };
}

/** The lock-held detail: who holds it, since when, and how to break it. */
export function lockHeldDetail(l: LockRow): string {
  const plan = l.planId ? ` for plan ${l.planId}` : '';
  return (
    `fleet ${l.fleet} of stack ${l.stack} is locked by ${l.who}@${l.host} pid ${l.pid}${plan} since ${l.since} ` +
    `(lock id ${l.lockId}, lease until ${l.expiresAt}). Wait for that apply to finish or its lease to expire; ` +
    `if it is gone, run \`fleet unlock ${l.lockId}\`.`
  );
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Builds `col = $n` assignments for a patch; `params` grows. */
function patchSets(patch: VmPatch | undefined, params: unknown[]): string[] {
  const sets: string[] = [];
  if (!patch) return sets;
  const add = (col: string, v: unknown) => {
    params.push(v);
    sets.push(`${col} = $${params.length}`);
  };
  if (patch.desiredState !== undefined) add('desired_state', patch.desiredState);
  if (patch.specHash !== undefined) add('spec_hash', patch.specHash);
  if (patch.image !== undefined) add('image', patch.image);
  if (patch.realImage !== undefined) add('real_image', patch.realImage);
  if (patch.size !== undefined) {
    add('cpu', patch.size.cpu);
    add('memory_gib', patch.size.memoryGiB);
    add('disk_gib', patch.size.diskGiB);
  }
  if (patch.cloudId !== undefined) add('cloud_id', patch.cloudId);
  if (patch.encryptedDisk !== undefined) add('encrypted_disk', patch.encryptedDisk);
  if (patch.retire === true) sets.push('retired_at = coalesce(retired_at, now())');
  return sets;
}

/**
 * An item's onward history rows (types.ts Onward) as the columns of one
 * unnest: per row the item's ordinal `k` (1-based, as WITH ORDINALITY
 * numbers the items), its place after the item's own row, and the row; the
 * state the item leaves the VM in and how many moves it makes (1 + passes).
 */
class OnwardRows {
  readonly cols: unknown[][] = Array.from({ length: 9 }, () => []);

  /** Adds item `k`'s rows, its own write leaving the VM at `state`; returns the final state and the moves. */
  add(k: number, state: string, item: Onward): { final: string; moves: number } {
    let seq = 0;
    let moves = 1;
    let intended: string | undefined;
    const row = (from: string, to: string, ctx: ChangeContext & { outcome?: Outcome }) => {
      const v = [k, ++seq, from, to, ctx.actor, ctx.planId ?? null, ctx.requestId ?? null, ctx.outcome ?? 'ok', ctx.detail ?? null];
      for (let c = 0; c < 9; c++) this.cols[c].push(v[c]);
    };
    if (item.intent) {
      row(state, item.intent.to, item.intent);
      intended = item.intent.to;
    }
    for (const p of item.passes ?? []) {
      if (intended === undefined) throw new Error('bug: a pass needs the intent row of its edge right before it');
      row(state, intended, p.ctx);
      state = intended;
      moves++;
      intended = undefined;
      if (p.intent) {
        row(state, p.intent.to, p.intent);
        intended = p.intent.to;
      }
    }
    return { final: state, moves };
  }
}

/** The unnest of OnwardRows' columns, from parameter $n on: a(a_k, a_seq, a_from, a_to, a_actor, a_plan, a_request, a_outcome, a_detail). */
/** A statement's boot tokens (setBootTokens' upsert: a VM's new token replaces its earlier one): `token` of each row of `from` where it is set. */
function bootTokensFrom(from: string, vmId: string, token: string): string {
  return `INSERT INTO boot_tokens (vm_id, token_hash)
         SELECT ${vmId}, ${token} FROM ${from} WHERE ${token} IS NOT NULL
         ON CONFLICT (vm_id) DO UPDATE SET token_hash = EXCLUDED.token_hash, created_at = now(), used_at = NULL`;
}

function onwardUnnest(n: number): string {
  const types = ['int', 'int', 'text', 'text', 'text', 'text', 'text', 'text', 'text'];
  return `unnest(${types.map((t, c) => `$${n + c}::${t}[]`).join(', ')}) AS a(a_k, a_seq, a_from, a_to, a_actor, a_plan, a_request, a_outcome, a_detail)`;
}

/**
 * The one FleetRecord implementation; PGlite and PostgreSQL differ only in
 * the SqlAdapter underneath. Concurrency: VM writes are conditional on the
 * version the caller read (UPDATE … WHERE version = $n, one statement with
 * the fleet's version bump and the history row); locks are rows with a
 * lease, taken with INSERT … ON CONFLICT so two takers never both win.
 */
export class SqlRecord implements FleetRecord {
  readonly description: string;
  readonly #db: SqlAdapter;

  constructor(db: SqlAdapter, description: string) {
    this.#db = db;
    this.description = description;
  }

  /** The backend kind, for tests and benchmarks. */
  get backend(): SqlAdapter['kind'] {
    return this.#db.kind;
  }

  close(): Promise<void> {
    return this.#db.close();
  }

  // ---- reads ----

  async listVms(stack: string, opts: { fleets?: readonly string[]; includeRetired?: boolean } = {}): Promise<VmRow[]> {
    const params: unknown[] = [stack];
    let where = 'stack = $1';
    if (opts.fleets) {
      params.push([...opts.fleets]);
      where += ' AND fleet = ANY($2::text[])';
    }
    const live = !opts.includeRetired;
    if (live) where += ' AND retired_at IS NULL';
    const [row] = await this.#db.query<{ j: string }>(
      `SELECT coalesce(array_to_json(array_agg(${live ? LIVE_VM_TEXT_ARRAY : VM_TEXT_ARRAY} ORDER BY fleet, idx, created_at, id)), '[]')::text AS j FROM vms WHERE ${where}`,
      params,
    );
    const arrays = JSON.parse(row.j) as VmArray[];
    const out = new Array<VmRow>(arrays.length);
    if (live) for (let i = 0; i < arrays.length; i++) out[i] = liveVmFromArray(stack, arrays[i]);
    else for (let i = 0; i < arrays.length; i++) out[i] = vmFromArray(arrays[i]);
    return out;
  }

  async listPlanVms(stack: string, opts: { fleets?: readonly string[] } = {}): Promise<PlanVmRow[]> {
    if (opts.fleets?.length === 0) return [];
    return this.#db.transaction(async (q) => {
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
          `SELECT coalesce(array_to_json(array_agg(${PLAN_VM_TEXT_ARRAY} ORDER BY fleet, idx, created_at, id)), '[]')::text AS j
           FROM vms WHERE stack = $1 AND retired_at IS NULL AND fleet = ANY($2::text[])`,
          [stack, group],
        );
        const arrays = JSON.parse(row.j) as VmArray[];
        appendPlanVms(out, stack, arrays);
        // Size the next group from this one's rows per fleet.
        per = Math.max(1, Math.min(per * 4, Math.round((group.length * PLAN_CHUNK_ROWS) / Math.max(1, arrays.length))));
      }
      return out;
    });
  }

  async getVm(id: string): Promise<VmRow | undefined> {
    const rows = await this.#db.query<VmDb>(`SELECT ${VM_COLS} FROM vms WHERE id = $1`, [id]);
    return rows.length ? toVm(rows[0]) : undefined;
  }

  async findVm(stack: string, address: string): Promise<VmRow | undefined> {
    const a = parseAddress(address);
    if (!a) return undefined;
    const rows = await this.#db.query<VmDb>(
      `SELECT ${VM_COLS} FROM vms WHERE stack = $1 AND fleet = $2 AND idx = $3 AND retired_at IS NULL ORDER BY (deposed_at IS NOT NULL), created_at LIMIT 1`,
      [stack, a.fleet, a.index],
    );
    return rows.length ? toVm(rows[0]) : undefined;
  }

  async listFleets(stack: string, fleets?: readonly string[]): Promise<FleetRow[]> {
    const params: unknown[] = [stack];
    let where = 'stack = $1';
    if (fleets) {
      params.push([...fleets]);
      where += ' AND fleet = ANY($2::text[])';
    }
    const rows = await this.#db.query<{ stack: string; fleet: string; owner: string; version: number; updated_at: Date }>(
      `SELECT stack, fleet, owner, version, updated_at FROM fleets WHERE ${where} ORDER BY fleet`,
      params,
    );
    return rows.map((r) => ({ stack: r.stack, fleet: r.fleet, owner: r.owner, version: r.version, updatedAt: iso(r.updated_at) }));
  }

  async usage(stack: string, opts: { excludeFleets: readonly string[] }): Promise<UsageRow[]> {
    // One row per fleet and data center, not per VM: for the planner
    // benchmark's 100k-VM stack, 5k rows instead of 100k. Hash aggregation,
    // and the owners joined here rather than in SQL: PGlite never analyzes,
    // so with no statistics the planner would sort all 100k rows on disk for
    // a GroupAggregate and look up each VM's fleet row (bench/plan: 2.9 s
    // instead of 0.2 s). SET LOCAL ends with the transaction.
    return this.#db.transaction(async (q) => {
      await q.query('SET LOCAL enable_sort = off');
      await q.query('SET LOCAL enable_incremental_sort = off');
      const sums = await q.query<{ fleet: string; data_center: string; vms: string | number | bigint; cpu: number | string; memory_gib: number | string }>(
        `SELECT fleet, data_center, count(*) AS vms, sum(cpu) AS cpu, sum(memory_gib) AS memory_gib FROM vms
         WHERE stack = $1 AND retired_at IS NULL AND fleet <> ALL($2::text[])
         GROUP BY fleet, data_center`,
        [stack, [...opts.excludeFleets]],
      );
      const fleets = await q.query<{ fleet: string; owner: string }>('SELECT fleet, owner FROM fleets WHERE stack = $1', [stack]);
      const owners = new Map(fleets.map((f) => [f.fleet, f.owner]));
      const out: UsageRow[] = sums.map((r) => ({
        fleet: r.fleet,
        owner: owners.get(r.fleet) ?? '',
        dataCenter: r.data_center,
        vms: Number(r.vms),
        cpu: Number(r.cpu),
        memoryGiB: Number(r.memory_gib),
      }));
      // Code point order, like the "C" collation of listVms and listFleets.
      const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
      return out.sort((a, b) => cmp(a.fleet, b.fleet) || cmp(a.dataCenter, b.dataCenter));
    });
  }

  // ---- VM writes ----

  async insertVm(vm: NewVm, ctx: ChangeContext): Promise<VmRow> {
    const id = vm.id ?? randomUUID();
    if (vm.replaces !== undefined) return this.#db.transaction((q) => this.#insertReplacing(q, id, vm, ctx));
    // One statement (atomic on its own): the VM, its fleet's version and the
    // history row; the authority does this once per created VM.
    const rows = await this.#db.query<VmDb>(
      `WITH ins AS (
         INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, real_image,
           cpu, memory_gib, disk_gib, encrypted_disk)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT DO NOTHING
         RETURNING ${VM_COLS}
       ),
       f AS (
         INSERT INTO fleets (stack, fleet, owner, version, updated_at) SELECT stack, fleet, $16, 1, now() FROM ins
         ON CONFLICT (stack, fleet) DO UPDATE SET version = fleets.version + 1, owner = EXCLUDED.owner, updated_at = now()
       ),
       h AS (
         INSERT INTO history (vm_id, stack, fleet, address, from_state, to_state, actor, plan_id, request_id, outcome, detail)
         SELECT id, stack, fleet, fleet || '/' || idx, NULL, state, $17, $18, $19, 'ok', $20 FROM ins
       )
       SELECT * FROM ins`,
      [...insertValues(id, vm), vm.owner, ctx.actor, ctx.planId ?? null, ctx.requestId ?? null, ctx.detail ?? null],
    );
    if (rows.length === 0) await this.#whyNotInserted(this.#db, id, vm);
    return toVm(rows[0]);
  }

  async insertVms(items: readonly InsertItem[]): Promise<(VmRow | FleetError)[]> {
    if (items.length === 0) return [];
    const n = items.length;
    const ids = items.map((it) => it.vm.id ?? randomUUID());
    const cols: unknown[][] = Array.from({ length: 23 }, () => new Array<unknown>(n));
    const onward = new OnwardRows();
    for (let k = 0; k < n; k++) {
      const { vm, ctx } = items[k];
      cols[22][k] = items[k].bootTokenHash ?? null;
      if (vm.replaces !== undefined) throw new Error('bug: insertVms does not replace; use insertVm');
      const v = insertValues(ids[k], vm);
      for (let c = 0; c < 15; c++) cols[c][k] = v[c];
      cols[15][k] = vm.owner;
      cols[16][k] = ctx.actor;
      cols[17][k] = ctx.planId ?? null;
      cols[18][k] = ctx.requestId ?? null;
      cols[19][k] = ctx.detail ?? null;
      const { final, moves } = onward.add(k + 1, vm.state, items[k]);
      cols[20][k] = final;
      cols[21][k] = moves;
    }
    // insertVm's statement over unnest arrays (columns prefixed i_); a row
    // whose address or id is taken (also by an earlier row of the batch) is
    // left out and explained below. An item with passes is inserted in the
    // state they reach (i_final) at the version they make (i_version, one per
    // move); its history is the create row (to the initial state i_state),
    // then its onward rows (a), in item order.
    const rows = await this.#db.query<VmDb>(
      `WITH i AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
           $10::text[], $11::text[], $12::float8[], $13::float8[], $14::float8[], $15::boolean[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[],
           $21::text[], $22::int[], $23::text[])
           WITH ORDINALITY AS i(i_id, i_stack, i_fleet, i_idx, i_name, i_dc, i_state, i_desired, i_hash, i_image, i_real, i_cpu, i_mem, i_disk, i_enc,
             i_owner, i_actor, i_plan, i_request, i_detail, i_final, i_version, i_token, i_k)
       ),
       a AS (SELECT * FROM ${onwardUnnest(24)}),
       -- The item that got an id's row: the first with that id (rows go in item order).
       first AS (SELECT DISTINCT ON (i_id) * FROM i ORDER BY i_id, i_k),
       ins AS (
         INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, real_image, cpu, memory_gib, disk_gib, encrypted_disk, version)
         SELECT i_id, i_stack, i_fleet, i_idx, i_name, i_dc, i_final, i_desired, i_hash, i_image, i_real, i_cpu, i_mem, i_disk, i_enc, i_version FROM i ORDER BY i_k
         ON CONFLICT DO NOTHING
         RETURNING ${VM_COLS}
       ),
       f AS (
         INSERT INTO fleets (stack, fleet, owner, version, updated_at)
         SELECT ins.stack, ins.fleet, max(first.i_owner), sum(first.i_version), now() FROM ins JOIN first ON first.i_id = ins.id GROUP BY ins.stack, ins.fleet
         ON CONFLICT (stack, fleet) DO UPDATE SET version = fleets.version + EXCLUDED.version, owner = EXCLUDED.owner, updated_at = now()
       ),
       h AS (
         INSERT INTO history (vm_id, stack, fleet, address, from_state, to_state, actor, plan_id, request_id, outcome, detail)
         SELECT h_id, h_stack, h_fleet, h_address, h_from, h_to, h_actor, h_plan, h_request, h_outcome, h_detail FROM (
           SELECT ins.id, ins.stack, ins.fleet, ins.fleet || '/' || ins.idx, NULL, first.i_state, i_actor, i_plan, i_request, 'ok', i_detail, first.i_k, 0
           FROM ins JOIN first ON first.i_id = ins.id
           UNION ALL
           SELECT ins.id, ins.stack, ins.fleet, ins.fleet || '/' || ins.idx, a_from, a_to, a_actor, a_plan, a_request, a_outcome, a_detail, a_k, a_seq
           FROM ins JOIN first ON first.i_id = ins.id JOIN a ON a.a_k = first.i_k
         ) AS rows_(h_id, h_stack, h_fleet, h_address, h_from, h_to, h_actor, h_plan, h_request, h_outcome, h_detail, h_k, h_seq)
         ORDER BY h_k, h_seq
       ),
       t AS (${bootTokensFrom('ins JOIN first ON first.i_id = ins.id', 'ins.id', 'first.i_token')})
       SELECT * FROM ins`,
      [...cols, ...onward.cols],
    );
    const inserted = new Map(rows.map((r) => [r.id, toVm(r)]));
    const out: (VmRow | FleetError)[] = [];
    for (let k = 0; k < n; k++) {
      // Rows go in item order, so of two items with one id the first got the row.
      const row = inserted.get(ids[k]);
      inserted.delete(ids[k]);
      if (row) out.push(row);
      else out.push(await this.#whyNotInserted(this.#db, ids[k], items[k].vm).catch((err: FleetError) => err));
    }
    return out;
  }

  /** Create-before-delete: the old VM steps aside (deposed) in the same transaction, so the address never has two current VMs. */
  async #insertReplacing(q: Queryable, id: string, vm: NewVm, ctx: ChangeContext): Promise<VmRow> {
    const address = `${vm.fleet}/${vm.index}`;
    const old = await q.query<VmDb>(
      `UPDATE vms SET deposed_at = coalesce(deposed_at, now()), version = version + 1, updated_at = now()
       WHERE id = $1 AND stack = $2 AND fleet = $3 AND idx = $4 AND retired_at IS NULL
       RETURNING ${VM_COLS}`,
      [vm.replaces, vm.stack, vm.fleet, vm.index],
    );
    if (old.length === 0) {
      throw new VersionConflictError(vm.replaces!, null, null, `VM ${vm.replaces}, which ${address} should replace, is not live at that address.`, address);
    }
    await this.#history(q, old[0], old[0].state, old[0].state, { ...ctx, outcome: 'ok', detail: `deposed: replaced by ${id}` });
    const rows = await q.query<VmDb>(
      `INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, real_image,
         cpu, memory_gib, disk_gib, encrypted_disk)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
       ON CONFLICT DO NOTHING
       RETURNING ${VM_COLS}`,
      insertValues(id, vm),
    );
    if (rows.length === 0) await this.#whyNotInserted(q, id, vm);
    await this.#bumpFleet(q, vm.stack, vm.fleet, vm.owner);
    await this.#history(q, rows[0], null, vm.state, { ...ctx, outcome: 'ok' });
    return toVm(rows[0]);
  }

  /** Throws why an insert of VM `id` hit a conflict: its address is live, or the id exists. */
  async #whyNotInserted(q: Queryable, id: string, vm: NewVm): Promise<never> {
    const address = `${vm.fleet}/${vm.index}`;
    if ((await q.query('SELECT 1 FROM vms WHERE id = $1', [id])).length) {
      throw new VersionConflictError(id, null, null, `a VM with id ${id} exists already.`, address);
    }
    const live = await q.query<{ id: string; version: number }>(
      'SELECT id, version FROM vms WHERE stack = $1 AND fleet = $2 AND idx = $3 AND retired_at IS NULL AND deposed_at IS NULL',
      [vm.stack, vm.fleet, vm.index],
    );
    if (live.length) {
      throw new VersionConflictError(
        address,
        null,
        live[0].version,
        `address ${address} of stack ${vm.stack} is live already (VM ${live[0].id}, version ${live[0].version}).`,
        address,
      );
    }
    throw new VersionConflictError(id, null, null, `VM ${id} at ${address} could not be inserted: it conflicts with a row that is gone now; try again.`, address);
  }

  /**
   * Seeds many VMs at once (benchmarks, imports): multi-row inserts in one
   * transaction, one history row per VM, each touched fleet's version bumped
   * once. Throws VersionConflictError when any address is live already (and
   * inserts none).
   *
   * Then VACUUM (ANALYZE) of the vms table, outside the transaction: the
   * first reader of freshly inserted rows otherwise sets their hint bits,
   * which with PGlite's page checksums writes a full image of every page to
   * the WAL (100k VMs: 45 MB written by the first `fleet plan`, about a
   * second), and PGlite, which never analyzes on its own, gets statistics.
   */
  async bulkInsertVms(vms: readonly NewVm[], ctx: ChangeContext, batchSize = 2000): Promise<number> {
    if (vms.length === 0) return 0;
    const n = await this.#bulkInsert(vms, ctx, batchSize);
    await this.#db.query('VACUUM (ANALYZE) vms');
    return n;
  }

  #bulkInsert(vms: readonly NewVm[], ctx: ChangeContext, batchSize: number): Promise<number> {
    return this.#db.transaction(async (q) => {
      const owners = new Map<string, { stack: string; fleet: string; owner: string }>();
      for (let start = 0; start < vms.length; start += batchSize) {
        const batch = vms.slice(start, start + batchSize);
        const cols: unknown[][] = Array.from({ length: 15 }, () => new Array(batch.length));
        batch.forEach((vm, i) => {
          const v = insertValues(vm.id ?? randomUUID(), vm);
          for (let c = 0; c < 15; c++) cols[c][i] = v[c];
          owners.set(`${vm.stack}\u0000${vm.fleet}`, { stack: vm.stack, fleet: vm.fleet, owner: vm.owner });
        });
        const inserted = await q.query<{ id: string }>(
          `INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, real_image,
             cpu, memory_gib, disk_gib, encrypted_disk)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[],
             $9::text[], $10::text[], $11::text[], $12::float8[], $13::float8[], $14::float8[], $15::boolean[])
           ON CONFLICT DO NOTHING
           RETURNING id`,
          cols,
        );
        if (inserted.length !== batch.length) {
          throw new VersionConflictError(
            batch[0].stack,
            null,
            null,
            `${batch.length - inserted.length} of the VMs to insert have an address or id that is live already; none were inserted.`,
          );
        }
        await q.query(
          `INSERT INTO history (vm_id, stack, fleet, address, from_state, to_state, actor, plan_id, request_id, outcome, detail)
           SELECT id, stack, fleet, fleet || '/' || idx, NULL, state, $2, $3, $4, 'ok', $5 FROM vms WHERE id = ANY($1::text[])`,
          [inserted.map((r) => r.id), ctx.actor, ctx.planId ?? null, ctx.requestId ?? null, ctx.detail ?? null],
        );
      }
      for (const f of owners.values()) await this.#bumpFleet(q, f.stack, f.fleet, f.owner);
      return vms.length;
    });
  }

  async transitionVm(
    id: string,
    expectedVersion: number,
    to: string,
    ctx: ChangeContext & { outcome?: Outcome },
    patch?: VmPatch,
  ): Promise<VmRow> {
    // One statement (atomic on its own): the row moves only at the expected
    // version, the fleet's version is bumped and the history row written with
    // it. One round trip instead of six (BEGIN, lock, update, fleet, history,
    // COMMIT): the authority does this once per step of every apply.
    const params: unknown[] = [id, to, expectedVersion];
    const sets = ['state = $2', ...patchSets(patch, params)];
    params.push(ctx.actor, ctx.planId ?? null, ctx.requestId ?? null, ctx.outcome ?? 'ok', ctx.detail ?? null);
    const n = params.length;
    const rows = await this.#db.query<VmDb>(
      `WITH old AS (SELECT state FROM vms WHERE id = $1 AND version = $3),
       upd AS (
         UPDATE vms SET ${sets.join(', ')}, version = version + 1, updated_at = now() WHERE id = $1 AND version = $3
         RETURNING ${VM_COLS}
       ),
       f AS (UPDATE fleets SET version = fleets.version + 1, updated_at = now() FROM upd WHERE fleets.stack = upd.stack AND fleets.fleet = upd.fleet),
       h AS (
         INSERT INTO history (vm_id, stack, fleet, address, from_state, to_state, actor, plan_id, request_id, outcome, detail)
         SELECT upd.id, upd.stack, upd.fleet, upd.fleet || '/' || upd.idx, old.state, $2, $${n - 4}, $${n - 3}, $${n - 2}, $${n - 1}, $${n} FROM upd, old
       )
       SELECT * FROM upd`,
      params,
    );
    if (rows.length === 0) await this.#whyNotAt(id, expectedVersion);
    return toVm(rows[0]);
  }

  async updateVm(id: string, expectedVersion: number, patch: VmPatch, ctx: ChangeContext): Promise<VmRow> {
    void ctx; // Not a state change: no history row (see FleetRecord.addHistory for audit-only rows).
    const params: unknown[] = [id, expectedVersion];
    const sets = patchSets(patch, params);
    const rows = await this.#db.query<VmDb>(
      `WITH upd AS (
         UPDATE vms SET ${[...sets, 'version = version + 1', 'updated_at = now()'].join(', ')} WHERE id = $1 AND version = $2
         RETURNING ${VM_COLS}
       ),
       f AS (UPDATE fleets SET version = fleets.version + 1, updated_at = now() FROM upd WHERE fleets.stack = upd.stack AND fleets.fleet = upd.fleet)
       SELECT * FROM upd`,
      params,
    );
    if (rows.length === 0) await this.#whyNotAt(id, expectedVersion);
    return toVm(rows[0]);
  }

  async transitionVms(items: readonly TransitionItem[]): Promise<(VmRow | FleetError)[]> {
    if (items.length === 0) return [];
    const n = items.length;
    const cols: unknown[][] = Array.from({ length: 13 }, () => new Array<unknown>(n));
    const onward = new OnwardRows();
    const seen = new Set<string>();
    for (let k = 0; k < n; k++) {
      const it = items[k];
      if (seen.has(it.id)) throw new Error(`bug: transitionVms got VM ${it.id} twice in one batch`);
      seen.add(it.id);
      const { final, moves } = onward.add(k + 1, it.to, it);
      cols[0][k] = it.id;
      cols[1][k] = it.expectedVersion;
      cols[2][k] = it.to;
      cols[3][k] = it.patch?.cloudId ?? null;
      cols[4][k] = it.patch?.retire === true;
      cols[5][k] = it.ctx.actor;
      cols[6][k] = it.ctx.planId ?? null;
      cols[7][k] = it.ctx.requestId ?? null;
      cols[8][k] = it.ctx.outcome ?? 'ok';
      cols[9][k] = it.ctx.detail ?? null;
      cols[10][k] = final;
      cols[11][k] = moves;
      cols[12][k] = it.bootTokenHash ?? null;
    }
    // transitionVm's statement over unnest arrays; the items' columns are
    // prefixed i_ (a_ for their onward rows) so VM_COLS in RETURNING names
    // only vms' columns. The row ends in the state its passes reach
    // (i_final), one version and one fleet version per move (i_moves). The
    // history rows are inserted in item order, each transition's row before
    // its onward rows (ids follow insertion order); a boot token only for a
    // row that moved.
    const rows = await this.#db.query<VmDb>(
      `WITH i AS (
         SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::boolean[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
             $11::text[], $12::int[], $13::text[]) WITH ORDINALITY
           AS i(i_id, i_version, i_to, i_cloud, i_retire, i_actor, i_plan, i_request, i_outcome, i_detail, i_final, i_moves, i_token, i_k)
       ),
       a AS (SELECT * FROM ${onwardUnnest(14)}),
       old AS (SELECT vms.id AS o_id, vms.state AS o_state FROM vms JOIN i ON vms.id = i.i_id AND vms.version = i.i_version),
       upd AS (
         UPDATE vms SET state = i_final, cloud_id = coalesce(i_cloud, cloud_id),
           retired_at = CASE WHEN i_retire THEN coalesce(retired_at, now()) ELSE retired_at END,
           version = version + i_moves, updated_at = now()
         FROM i WHERE vms.id = i.i_id AND vms.version = i.i_version
         RETURNING ${VM_COLS}
       ),
       f AS (
         UPDATE fleets SET version = fleets.version + c.n, updated_at = now()
         FROM (SELECT stack AS c_stack, fleet AS c_fleet, sum(i.i_moves) AS n FROM upd JOIN i ON i.i_id = upd.id GROUP BY stack, fleet) c
         WHERE fleets.stack = c.c_stack AND fleets.fleet = c.c_fleet
       ),
       h AS (
         INSERT INTO history (vm_id, stack, fleet, address, from_state, to_state, actor, plan_id, request_id, outcome, detail)
         SELECT h_id, h_stack, h_fleet, h_address, h_from, h_to, h_actor, h_plan, h_request, h_outcome, h_detail FROM (
           SELECT upd.id, upd.stack, upd.fleet, upd.fleet || '/' || upd.idx, old.o_state, i.i_to, i.i_actor, i.i_plan, i.i_request, i.i_outcome, i.i_detail, i.i_k, 0
           FROM upd JOIN old ON old.o_id = upd.id JOIN i ON i.i_id = upd.id
           UNION ALL
           SELECT upd.id, upd.stack, upd.fleet, upd.fleet || '/' || upd.idx, a.a_from, a.a_to, a.a_actor, a.a_plan, a.a_request, a.a_outcome, a.a_detail, a.a_k, a.a_seq
           FROM upd JOIN i ON i.i_id = upd.id JOIN a ON a.a_k = i.i_k
         ) AS rows_(h_id, h_stack, h_fleet, h_address, h_from, h_to, h_actor, h_plan, h_request, h_outcome, h_detail, h_k, h_seq)
         ORDER BY h_k, h_seq
       ),
       t AS (${bootTokensFrom('upd JOIN i ON i.i_id = upd.id', 'upd.id', 'i.i_token')})
       SELECT * FROM upd`,
      [...cols, ...onward.cols],
    );
    const moved = new Map(rows.map((r) => [r.id, toVm(r)]));
    const missing = items.filter((it) => !moved.has(it.id));
    const why = await this.#whyNotAtMany(missing.map((it) => ({ id: it.id, expectedVersion: it.expectedVersion })));
    return items.map((it) => moved.get(it.id) ?? why.get(it.id)!);
  }

  async addHistoryMany(items: readonly HistoryItem[]): Promise<(FleetError | undefined)[]> {
    if (items.length === 0) return [];
    const n = items.length;
    const cols: unknown[][] = Array.from({ length: 11 }, () => new Array<unknown>(n));
    for (let k = 0; k < n; k++) {
      const { vmId, row, expectedVersion, bootTokenHash } = items[k];
      cols[0][k] = vmId;
      cols[1][k] = expectedVersion ?? null;
      cols[2][k] = row.from;
      cols[3][k] = row.to;
      cols[4][k] = row.actor;
      cols[5][k] = row.planId ?? null;
      cols[6][k] = row.requestId ?? null;
      cols[7][k] = row.outcome;
      cols[8][k] = row.detail ?? null;
      cols[9][k] = k;
      cols[10][k] = bootTokenHash ?? null;
    }
    // A row's boot token is stored with it (the last of a VM's in the batch, as setBootTokens).
    const written = await this.#db.query<{ k: number }>(
      `WITH i AS (
         SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::int[], $11::text[])
           AS i(i_id, i_version, i_from, i_to, i_actor, i_plan, i_request, i_outcome, i_detail, i_k, i_token)
       ),
       ok AS (
         SELECT vms.id, vms.stack, vms.fleet, vms.idx, i.* FROM i JOIN vms ON vms.id = i.i_id AND (i.i_version IS NULL OR vms.version = i.i_version)
       ),
       ins AS (
         INSERT INTO history (vm_id, stack, fleet, address, from_state, to_state, actor, plan_id, request_id, outcome, detail)
         SELECT id, stack, fleet, fleet || '/' || idx, i_from, i_to, i_actor, i_plan, i_request, i_outcome, i_detail FROM ok ORDER BY i_k
       ),
       t AS (
         INSERT INTO boot_tokens (vm_id, token_hash)
         SELECT DISTINCT ON (id) id, i_token FROM ok WHERE i_token IS NOT NULL ORDER BY id, i_k DESC
         ON CONFLICT (vm_id) DO UPDATE SET token_hash = EXCLUDED.token_hash, created_at = now(), used_at = NULL
       )
       SELECT i_k AS k FROM ok`,
      cols,
    );
    const ok = new Set(written.map((w) => Number(w.k)));
    const missing = items.filter((_, k) => !ok.has(k));
    const why = await this.#whyNotAtMany(missing.map((it) => ({ id: it.vmId, expectedVersion: it.expectedVersion })));
    return items.map((it, k) => (ok.has(k) ? undefined : why.get(it.vmId)));
  }

  async addHistory(
    vmId: string,
    row: { from: string | null; to: string; outcome: Outcome } & ChangeContext,
    expectedVersion?: number,
  ): Promise<void> {
    const params: unknown[] = [vmId, row.from, row.to, row.actor, row.planId ?? null, row.requestId ?? null, row.outcome, row.detail ?? null];
    if (expectedVersion !== undefined) params.push(expectedVersion);
    const rows = await this.#db.query(
      `INSERT INTO history (vm_id, stack, fleet, address, from_state, to_state, actor, plan_id, request_id, outcome, detail)
       SELECT id, stack, fleet, fleet || '/' || idx, $2, $3, $4, $5, $6, $7, $8 FROM vms WHERE id = $1${expectedVersion !== undefined ? ' AND version = $9' : ''}
       RETURNING id`,
      params,
    );
    if (rows.length === 0) {
      if (expectedVersion !== undefined) await this.#whyNotAt(vmId, expectedVersion);
      fail('record.vm-not-found', `no VM with id ${vmId} in the record ${this.description}.`);
    }
  }

  async history(stack: string, address?: string, opts: { limit?: number } = {}): Promise<HistoryRow[]> {
    const params: unknown[] = [stack];
    let where = 'stack = $1';
    if (address !== undefined) {
      params.push(address);
      where += ' AND address = $2';
    }
    let sql = `SELECT id, vm_id, address, from_state, to_state, actor, plan_id, request_id, outcome, detail, at FROM history WHERE ${where}`;
    if (opts.limit !== undefined) {
      params.push(Math.max(0, Math.floor(opts.limit)));
      sql = `SELECT * FROM (${sql} ORDER BY id DESC LIMIT $${params.length}) newest`;
    }
    const rows = await this.#db.query<{
      id: number | string;
      vm_id: string;
      address: string;
      from_state: string | null;
      to_state: string;
      actor: string;
      plan_id: string | null;
      request_id: string | null;
      outcome: Outcome;
      detail: string | null;
      at: Date;
    }>(`${sql} ORDER BY id`, params);
    return rows.map((r) => ({
      id: Number(r.id),
      vmId: r.vm_id,
      address: r.address,
      from: r.from_state,
      to: r.to_state,
      actor: r.actor,
      planId: r.plan_id,
      requestId: r.request_id,
      outcome: r.outcome,
      detail: r.detail,
      at: iso(r.at),
    }));
  }

  // ---- stale-plan checks ----

  async basis(stack: string, fleets: readonly string[]): Promise<PlanBasis> {
    return this.#db.transaction(async (q) => {
      const vms = await q.query<{ id: string; version: number }>(
        'SELECT id, version FROM vms WHERE stack = $1 AND fleet = ANY($2::text[]) AND retired_at IS NULL ORDER BY fleet, idx',
        [stack, [...fleets]],
      );
      const fl = await q.query<{ fleet: string; version: number }>(
        'SELECT fleet, version FROM fleets WHERE stack = $1 AND fleet = ANY($2::text[])',
        [stack, [...fleets]],
      );
      const basis: PlanBasis = { vms: {}, fleets: {} };
      for (const v of vms) basis.vms[v.id] = v.version;
      for (const f of [...fleets].sort()) basis.fleets[f] = 0;
      for (const f of fl) basis.fleets[f.fleet] = f.version;
      return basis;
    });
  }

  async checkBasis(stack: string, basis: PlanBasis): Promise<StaleEntry[]> {
    const ids = Object.keys(basis.vms);
    const fleets = Object.keys(basis.fleets);
    return this.#db.transaction(async (q) => {
      const vms = await q.query<{ id: string; version: number }>('SELECT id, version FROM vms WHERE id = ANY($1::text[])', [ids]);
      const fl = await q.query<{ fleet: string; version: number }>(
        'SELECT fleet, version FROM fleets WHERE stack = $1 AND fleet = ANY($2::text[])',
        [stack, fleets],
      );
      const vmNow = new Map(vms.map((v) => [v.id, v.version]));
      const fleetNow = new Map(fl.map((f) => [f.fleet, f.version]));
      const stale: StaleEntry[] = [];
      for (const f of fleets.sort()) {
        const actual = fleetNow.get(f) ?? 0;
        if (actual !== basis.fleets[f]) stale.push({ kind: 'fleet', key: f, expected: basis.fleets[f], actual });
      }
      for (const id of ids.sort()) {
        const actual = vmNow.get(id) ?? null;
        if (actual !== basis.vms[id]) stale.push({ kind: 'vm', key: id, expected: basis.vms[id], actual });
      }
      return stale;
    });
  }

  // ---- locks ----

  async acquireLocks(
    stack: string,
    fleets: readonly string[],
    holder: LockHolder,
    opts: { leaseMs?: number; timeoutMs?: number } = {},
  ): Promise<LockHandle> {
    const leaseMs = opts.leaseMs ?? 30_000;
    const timeoutMs = opts.timeoutMs ?? 0;
    const sorted = [...new Set(fleets)].sort();
    const lockId = randomBytes(4).toString('hex');
    const deadline = Date.now() + timeoutMs;
    let backoff = 25;
    for (;;) {
      const held = await this.#db
        .transaction(async (q) => {
          for (const fleet of sorted) {
            const won = await q.query(
              `INSERT INTO locks (stack, fleet, lock_id, who, host, pid, plan_id, since, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now() + $8 * interval '1 millisecond')
               ON CONFLICT (stack, fleet) DO UPDATE SET
                 lock_id = EXCLUDED.lock_id, who = EXCLUDED.who, host = EXCLUDED.host, pid = EXCLUDED.pid,
                 plan_id = EXCLUDED.plan_id, since = EXCLUDED.since, expires_at = EXCLUDED.expires_at
               WHERE locks.expires_at < now()
               RETURNING fleet`,
              [stack, fleet, lockId, holder.who, holder.host, holder.pid, holder.planId, leaseMs],
            );
            if (won.length === 0) {
              const cur = await q.query<LockDb>('SELECT * FROM locks WHERE stack = $1 AND fleet = $2', [stack, fleet]);
              throw new HeldSignal(toLock(cur[0]));
            }
          }
          return null;
        })
        .catch((err: unknown) => {
          if (err instanceof HeldSignal) return err.row;
          throw err;
        });
      if (held === null) return this.#handle(stack, sorted, lockId, leaseMs);
      const left = deadline - Date.now();
      if (left <= 0) throw new FleetError(diag('record.lock-held', lockHeldDetail(held), { address: held.fleet }));
      await sleep(Math.min(backoff, left));
      backoff = Math.min(backoff * 2, 500);
    }
  }

  #handle(stack: string, fleets: string[], lockId: string, leaseMs: number): LockHandle {
    const db = this.#db;
    return {
      lockId,
      fleets: [...fleets],
      heartbeat: async () => {
        const kept = await db.query<{ fleet: string }>(
          `UPDATE locks SET expires_at = now() + $4 * interval '1 millisecond'
           WHERE lock_id = $1 AND stack = $2 AND fleet = ANY($3::text[]) RETURNING fleet`,
          [lockId, stack, fleets, leaseMs],
        );
        if (kept.length !== fleets.length) {
          const have = new Set(kept.map((k) => k.fleet));
          const lost = fleets.filter((f) => !have.has(f));
          fail(
            'record.lock-lost',
            `lock ${lockId} no longer holds fleet${lost.length > 1 ? 's' : ''} ${lost.join(', ')} of stack ${stack}: its lease expired and another apply took it, or it was unlocked.`,
            { address: lost[0] },
          );
        }
      },
      release: async () => {
        await db.query('DELETE FROM locks WHERE lock_id = $1 AND stack = $2', [lockId, stack]);
      },
    };
  }

  async listLocks(stack: string): Promise<LockRow[]> {
    const rows = await this.#db.query<LockDb>('SELECT * FROM locks WHERE stack = $1 ORDER BY fleet', [stack]);
    return rows.map(toLock);
  }

  /** Like listLocks, over every stack, only the rows of one lock id. */
  async findLock(lockId: string): Promise<LockRow[]> {
    const rows = await this.#db.query<LockDb>('SELECT * FROM locks WHERE lock_id = $1 ORDER BY stack, fleet', [lockId]);
    return rows.map(toLock);
  }

  async forceUnlock(lockId: string): Promise<boolean> {
    const rows = await this.#db.query('DELETE FROM locks WHERE lock_id = $1 RETURNING fleet', [lockId]);
    return rows.length > 0;
  }

  // ---- plans and journal ----

  async startPlan(plan: Omit<AppliedPlan, 'finishedAt' | 'result'>): Promise<void> {
    await this.#db.query(
      `INSERT INTO plans (id, stack, digest, who, started_at, finished_at, result) VALUES ($1, $2, $3, $4, $5, NULL, 'running')`,
      [plan.id, plan.stack, plan.digest, plan.who, plan.startedAt],
    );
  }

  async finishPlan(id: string, result: AppliedPlan['result']): Promise<void> {
    await this.#db.query('UPDATE plans SET finished_at = now(), result = $2 WHERE id = $1', [id, result]);
  }

  async listPlans(stack: string): Promise<AppliedPlan[]> {
    const rows = await this.#db.query<{
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
      finishedAt: isoOrNull(r.finished_at),
      result: r.result,
    }));
  }

  #journalWriter: JournalWriter | undefined;

  /** Group-committed (./journal.ts): resolves once the row is committed; concurrent calls share one INSERT. */
  journal(row: Omit<JournalRow, 'at'>): Promise<void> {
    return (this.#journalWriter ??= new JournalWriter(this.#db)).add(row);
  }

  /** Journal INSERTs so far (tests and benchmarks read it). */
  get journalBatches(): number {
    return this.#journalWriter?.batches ?? 0;
  }

  async unfinishedSteps(stack: string): Promise<JournalRow[]> {
    const rows = await this.#db.query<{
      plan_id: string;
      address: string;
      seq: number;
      vm_id: string | null;
      from_state: string;
      to_state: string;
      idempotency_key: string;
      status: JournalRow['status'];
      detail: string | null;
      at: Date;
    }>(
      `SELECT * FROM (
         SELECT DISTINCT ON (j.plan_id, j.address, j.seq) j.*
         FROM journal j JOIN plans p ON p.id = j.plan_id
         WHERE p.stack = $1
         ORDER BY j.plan_id, j.address, j.seq, j.id DESC
       ) last WHERE status IN ('started', 'failed') ORDER BY id`,
      [stack],
    );
    return rows.map((r) => ({
      planId: r.plan_id,
      address: r.address,
      seq: r.seq,
      vmId: r.vm_id,
      from: r.from_state,
      to: r.to_state,
      idempotencyKey: r.idempotency_key,
      status: r.status,
      detail: r.detail,
      at: iso(r.at),
    }));
  }

  // ---- boot ----

  async getVms(ids: readonly string[]): Promise<(VmRow | undefined)[]> {
    if (ids.length === 0) return [];
    const rows = await this.#db.query<VmDb>(`SELECT ${VM_COLS} FROM vms WHERE id = ANY($1::text[])`, [[...ids]]);
    const byId = new Map(rows.map((r) => [r.id, toVm(r)]));
    return ids.map((id) => byId.get(id));
  }

  async setBootTokens(items: readonly { vmId: string; tokenHash: string }[]): Promise<void> {
    if (items.length === 0) return;
    await this.#db.query(
      `INSERT INTO boot_tokens (vm_id, token_hash)
       SELECT DISTINCT ON (vm_id) vm_id, token_hash FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(vm_id, token_hash, k) ORDER BY vm_id, k DESC
       ON CONFLICT (vm_id) DO UPDATE SET token_hash = EXCLUDED.token_hash, created_at = now(), used_at = NULL`,
      [items.map((i) => i.vmId), items.map((i) => i.tokenHash)],
    );
  }

  async consumeBootTokens(items: readonly { vmId: string; tokenHash: string }[]): Promise<boolean[]> {
    if (items.length === 0) return [];
    const rows = await this.#db.query<{ k: number | string }>(
      `WITH t AS (
         SELECT DISTINCT ON (t_vm, t_hash) * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(t_vm, t_hash, k) ORDER BY t_vm, t_hash, k
       ),
       used AS (
         UPDATE boot_tokens SET used_at = now() FROM t
         WHERE boot_tokens.vm_id = t.t_vm AND boot_tokens.token_hash = t.t_hash AND boot_tokens.used_at IS NULL
         RETURNING t.k
       )
       SELECT k FROM used`,
      [items.map((i) => i.vmId), items.map((i) => i.tokenHash)],
    );
    // A token is used once: of items presenting it in one batch, the first is answered true.
    const ok = new Set(rows.map((r) => Number(r.k) - 1));
    return items.map((_, k) => ok.has(k));
  }

  async authorizeBoots(items: readonly BootCheck[]): Promise<BootCheckResult[]> {
    if (items.length === 0) return [];
    const states: [number[], string[]] = [[], []];
    items.forEach((it, k) => {
      for (const s of it.allowedStates) {
        states[0].push(k + 1);
        states[1].push(s);
      }
    });
    // consumeBootTokens guarded by the row check, and the approved attempt
    // rows, in one statement. m: the items whose row matches, the first per
    // (VM, token) (UPDATE … FROM uses one source row per target row, so a
    // token presented twice is used by one item only); used: those whose
    // token was unused (a concurrent use makes the row's recheck fail).
    // The answer: every item with the row as the statement saw it.
    const rows = await this.#db.query<VmDb & { k: number | string; approved: boolean; found: boolean }>(
      `WITH i AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY
           AS i(i_vm, i_dc, i_cloud, i_image, i_hash, i_reason, i_k)
       ),
       s AS (SELECT * FROM unnest($7::int[], $8::text[]) AS s(s_k, s_state)),
       m AS (
         SELECT DISTINCT ON (i_vm, i_hash) i.* FROM i JOIN vms ON vms.id = i.i_vm
         WHERE vms.data_center = i.i_dc AND vms.cloud_id = i.i_cloud AND vms.real_image = i.i_image
           AND EXISTS (SELECT 1 FROM s WHERE s.s_k = i.i_k AND s.s_state = vms.state)
         ORDER BY i_vm, i_hash, i_k
       ),
       used AS (
         UPDATE boot_tokens SET used_at = now() FROM m
         WHERE boot_tokens.vm_id = m.i_vm AND boot_tokens.token_hash = m.i_hash AND boot_tokens.used_at IS NULL
         RETURNING m.i_k AS u_k, m.i_vm AS u_vm, m.i_dc AS u_dc, m.i_cloud AS u_cloud, m.i_image AS u_image, m.i_reason AS u_reason
       ),
       att AS (
         INSERT INTO boot_attempts (vm_id, data_center, cloud_id, image, approved, reason)
         SELECT u_vm, u_dc, u_cloud, u_image, true, u_reason FROM used ORDER BY u_k
       )
       SELECT i.i_k AS k, (used.u_k IS NOT NULL) AS approved, (vms.id IS NOT NULL) AS found, ${VM_COLS}
       FROM i LEFT JOIN vms ON vms.id = i.i_vm LEFT JOIN used ON used.u_k = i.i_k
       ORDER BY i.i_k`,
      [
        items.map((i) => i.vmId),
        items.map((i) => i.dataCenter),
        items.map((i) => i.cloudId),
        items.map((i) => i.image),
        items.map((i) => i.tokenHash),
        items.map((i) => i.reason),
        ...states,
      ],
    );
    return rows.map((r): BootCheckResult => {
      const vm = r.found ? toVm(r) : undefined;
      return r.approved && vm ? { approved: true, vm } : { approved: false, vm };
    });
  }

  async addBootAttempts(attempts: readonly BootAttempt[]): Promise<void> {
    if (attempts.length === 0) return;
    await this.#db.query(
      `INSERT INTO boot_attempts (vm_id, data_center, cloud_id, image, approved, reason)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::text[])`,
      [attempts.map((a) => a.vmId), attempts.map((a) => a.dataCenter), attempts.map((a) => a.cloudId), attempts.map((a) => a.image), attempts.map((a) => a.approved), attempts.map((a) => a.reason)],
    );
  }

  /** Boot attempts, newest last; for `fleet history` and tests. */
  async listBootAttempts(opts: { vmId?: string; limit?: number } = {}): Promise<(BootAttempt & { at: string })[]> {
    const params: unknown[] = [];
    let where = '';
    if (opts.vmId !== undefined) {
      params.push(opts.vmId);
      where = 'WHERE vm_id = $1';
    }
    params.push(opts.limit ?? 1000);
    const rows = await this.#db.query<{
      vm_id: string | null;
      data_center: string;
      cloud_id: string | null;
      image: string | null;
      approved: boolean;
      reason: string;
      at: Date;
    }>(`SELECT * FROM (SELECT * FROM boot_attempts ${where} ORDER BY id DESC LIMIT $${params.length}) b ORDER BY id`, params);
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

  // ---- helpers ----

  /** For each write that matched no row: record.vm-not-found, or the VersionConflictError naming both versions. */
  async #whyNotAtMany(items: readonly { id: string; expectedVersion?: number }[]): Promise<Map<string, FleetError>> {
    const out = new Map<string, FleetError>();
    if (items.length === 0) return out;
    const rows = await this.#db.query<{ id: string; fleet: string; idx: number; version: number }>(
      'SELECT id, fleet, idx, version FROM vms WHERE id = ANY($1::text[])',
      [items.map((it) => it.id)],
    );
    const found = new Map(rows.map((r) => [r.id, r]));
    for (const it of items) {
      const cur = found.get(it.id);
      if (!cur) {
        out.set(it.id, new FleetError(diag('record.vm-not-found', `no VM with id ${it.id} in the record ${this.description}.`)));
        continue;
      }
      const address = `${cur.fleet}/${cur.idx}`;
      out.set(
        it.id,
        new VersionConflictError(
          it.id,
          it.expectedVersion ?? null,
          cur.version,
          `VM ${address} (${it.id}) is at version ${cur.version}, not ${it.expectedVersion}: it changed since it was read.`,
          address,
        ),
      );
    }
    return out;
  }

  /**
   * Throws why a conditional write on VM `id` at `expectedVersion` matched no
   * row: record.vm-not-found, or VersionConflictError naming both versions.
   */
  async #whyNotAt(id: string, expectedVersion: number): Promise<never> {
    const rows = await this.#db.query<{ fleet: string; idx: number; version: number }>('SELECT fleet, idx, version FROM vms WHERE id = $1', [id]);
    if (rows.length === 0) fail('record.vm-not-found', `no VM with id ${id} in the record ${this.description}.`);
    const cur = rows[0];
    const address = `${cur.fleet}/${cur.idx}`;
    throw new VersionConflictError(
      id,
      expectedVersion,
      cur.version,
      `VM ${address} (${id}) is at version ${cur.version}, not ${expectedVersion}: it changed since it was read.`,
      address,
    );
  }

  /** Bumps the fleet's version; creates the row (version 1) with its owner on first insert. */
  async #bumpFleet(q: Queryable, stack: string, fleet: string, owner?: string): Promise<void> {
    if (owner !== undefined) {
      await q.query(
        `INSERT INTO fleets (stack, fleet, owner, version, updated_at) VALUES ($1, $2, $3, 1, now())
         ON CONFLICT (stack, fleet) DO UPDATE SET version = fleets.version + 1, owner = EXCLUDED.owner, updated_at = now()`,
        [stack, fleet, owner],
      );
    } else {
      await q.query('UPDATE fleets SET version = version + 1, updated_at = now() WHERE stack = $1 AND fleet = $2', [stack, fleet]);
    }
  }

  async #history(
    q: Queryable,
    vm: VmDb,
    from: string | null,
    to: string,
    ctx: ChangeContext & { outcome: Outcome },
  ): Promise<void> {
    await q.query(
      `INSERT INTO history (vm_id, stack, fleet, address, from_state, to_state, actor, plan_id, request_id, outcome, detail)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [vm.id, vm.stack, vm.fleet, `${vm.fleet}/${vm.idx}`, from, to, ctx.actor, ctx.planId ?? null, ctx.requestId ?? null, ctx.outcome, ctx.detail ?? null],
    );
  }
}
