// The VM writer: inserts, state changes and patches. Concurrency: every
// write to a VM is conditional on the version the caller read (UPDATE …
// WHERE version = $n), in one statement with its fleet's version bump and
// its history row (data-modifying CTEs, history rows by ./history.ts's
// insertHistory): one round trip, atomic on its own.
//
// What the live VMs use per fleet and data center (vm_usage) is kept by
// triggers on vms (migrations.ts, version 8), not here. The one rule for
// writers: a statement that inserts, retires, resizes or moves a VM also
// bumps its fleet's row in `fleets` (the trigger's locks then come after
// the fleet's; see withFleetBump).
import { randomUUID } from 'node:crypto';
import type { FleetError } from '../diags/index.ts';
import { formatVmAddress } from '../model/index.ts';
import { issuedAfter, upsertBootTokens } from './boot.ts';
import { CloudIdTakenError, ManagerMismatchError, VersionConflictError, whyNotAt, whyNotAtMany } from './errors.ts';
import { fitBudgets, guarded, lockBudget, ownerMismatch, readBudgetUsage, readFleetOwners } from './budget.ts';
import { OnwardRows, insertHistory, type HistorySource } from './history.ts';
import { usageUnchanged } from './overview-cache.ts';
import { FULL_VM, LEGACY_PROGRAM, otherManagerSql, vmFromRow, vmName } from './rows.ts';
import type { Queryable, RecordSql } from './sql.ts';
import type { Budget, ChangeContext, InsertItem, NewVm, VmPatch, VmRow, VmWriter } from './types.ts';

/** The columns of a new VM row, in the order of insertValues. */
const INSERT_COLUMNS = 'id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, real_image, cpu, memory_gib, disk_gib, encrypted_disk';
/** Their unnest types, for inserts of many rows. */
const INSERT_TYPES = ['text', 'text', 'text', 'int', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'float8', 'float8', 'float8', 'boolean'];
/** Their parameters, for an insert of one row. */
const INSERT_PARAMS = INSERT_TYPES.map((_, c) => `$${c + 1}`).join(', ');
/** The same, typed, for an INSERT … SELECT. */
const TYPED_PARAMS = INSERT_TYPES.map((t, c) => `$${c + 1}::${t}`).join(', ');
/** SQL true unless the fleet of a VM in parameters $2 (stack) and $3 (fleet) has live VMs of another manager than parameter `manager`. */
const NO_OTHER_MANAGER = (manager: string) => `NOT EXISTS (SELECT 1 FROM fleets fo WHERE fo.stack = $2 AND fo.fleet = $3 AND ${otherManagerSql('fo', `${manager}::text`)})`;

/**
 * A statement writing VMs of one fleet (`write`, RETURNING the rows) and
 * bumping that fleet's version (creating its row, version 1 and owner
 * `owner`, a parameter, on its first member; an existing row keeps its
 * owner), returning the written rows. In one statement because vm_usage's trigger (migrations.ts, version 8) runs at the
 * statement's end: the fleet's row is locked before its usage rows, as in
 * every other writer, so two writers of one fleet never wait on each other in
 * opposite orders.
 */
function withFleetBump(write: string, owner: string, manager: string): string {
  return `WITH w AS (${write}),
    f AS (
      INSERT INTO fleets (stack, fleet, owner, version, updated_at, managed_by) SELECT DISTINCT stack, fleet, ${owner}::text, 1, now(), ${manager}::text FROM w
      ON CONFLICT (stack, fleet) DO UPDATE SET version = fleets.version + 1, updated_at = now(), managed_by = EXCLUDED.managed_by, ${PROTECTED_ON_CLAIM}
      WHERE ${CLAIM_HOLDS}
      RETURNING stack, fleet
    )
    SELECT * FROM w WHERE ${claimed('w', 'f')}`;
}

/**
 * The WHERE of a create's upsert of its fleet's row (ON CONFLICT DO UPDATE),
 * which PostgreSQL evaluates on the row's latest version, locked, after
 * waiting for a concurrent writer of it to commit. A create checks the
 * fleet's owner and manager in its statement's snapshot (the NOT EXISTS of
 * its insert), which does not see a concurrent first create of the fleet:
 * two managers (or owners) creating one empty fleet at one moment both passed
 * it. So the upsert also takes the row only when it holds the create's owner
 * and either its manager, or (any manager) is the version the snapshot
 * checked: a row written since, or made since (no version in the snapshot),
 * by another manager means a concurrent create got in first. Every writer of
 * live VMs writes the fleet's row in the same statement, so the snapshot's
 * version is the latest unless one committed since. Where this is false the
 * statement fails (claimed) and the caller asks again (retryClaim), in a
 * snapshot that sees the winner's VMs and refuses with why.
 */
const CLAIM_HOLDS = `fleets.owner = EXCLUDED.owner AND (fleets.managed_by IS NOT DISTINCT FROM EXCLUDED.managed_by
        OR coalesce(fleets.managed_by = '${LEGACY_PROGRAM}' AND EXCLUDED.managed_by LIKE '${LEGACY_PROGRAM}:%', false)
        OR fleets.version = (SELECT s.version FROM fleets s WHERE s.stack = EXCLUDED.stack AND s.fleet = EXCLUDED.fleet))`;

/**
 * The SET of `protected` by a create's upsert of its fleet's row: a
 * program's create that takes the fleet from fleet files (the row's
 * managed_by NULL: an emptied fleet of fleet files) clears it. Only fleet
 * apply writes the flag (setFleetProtection, from the spec, before its
 * creates), and the authority holds a protected fleet's members: left set,
 * it held a program's fleet by a protect the program never said, where the
 * program's own `protect` (its provider) is what holds its fleet. Fleet
 * files taking a program's fleet keep what fleet apply just wrote.
 */
const PROTECTED_ON_CLAIM = 'protected = CASE WHEN fleets.managed_by IS NULL AND EXCLUDED.managed_by IS NOT NULL THEN false ELSE fleets.protected END';

/** What the statement fails with when a fleet's row was not taken (CLAIM_HOLDS). */
const CLAIM_LOST = 'dmzfleet: a concurrent create took the fleet row first';

/**
 * SQL true, or the statement fails (an integer cast of CLAIM_LOST: plain SQL
 * has no RAISE, and one failed statement writes nothing), when a fleet of
 * the VMs of `written` has no row in `claimedRows` (its upsert's RETURNING).
 */
function claimed(written: string, claimedRows: string): string {
  return `(SELECT ('${CLAIM_LOST} ' || x.fleet)::int FROM ${written} x WHERE NOT EXISTS (SELECT 1 FROM ${claimedRows} c WHERE c.stack = x.stack AND c.fleet = x.fleet) LIMIT 1) IS NULL`;
}

/**
 * Runs `write` (a statement or transaction) again when it failed on a fleet
 * row a concurrent create took (CLAIM_HOLDS): the next try sees that create
 * and refuses (another owner or manager) or gets in (the same).
 */
async function retryClaim<T>(write: () => Promise<T>, address: string): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (err) {
      if (!(err instanceof Error && err.message.includes(CLAIM_LOST))) throw err;
      if (attempt === 3) throw new VersionConflictError(address, null, null, `the row of fleet ${address.split('/')[0]} was written by concurrent creates three times while this one was made; nothing was created, try again.`, address);
    }
  }
}

/** The context of a history row given as parameters $2 (actor) to $5 (detail), outcome ok. */
const CTX_PARAMS = { actor: '$2', planId: '$3', requestId: '$4', outcome: "'ok'", detail: '$5' };

/** The 15 values of a new VM row, in INSERT_COLUMNS' order. */
function insertValues(id: string, vm: NewVm): unknown[] {
  return [
    id,
    vm.stack,
    vm.fleet,
    vm.index,
    vmName(vm.stack, vm.fleet, vm.index),
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

/** A history source of context values given as parameters `$n`… (actor, plan, request, outcome, detail, code; null for one left out). */
function ctxSource(vm: string, from: string, fromState: string, toState: string, p: { actor: string; planId: string; requestId: string; outcome: string; detail: string; code?: string }): HistorySource {
  return { vm, from, fromState, toState, ...p };
}

/** Who a manager is, in a sentence (FleetRow.managedBy; null: fleet files). */
const managerName = (m: string | null | undefined) => (m ? `the program ${m}` : 'fleet files (`fleet apply`)');

/** The refusal of a create by `vm.managedBy` into a fleet whose live VMs `recorded` made. */
export function managerMismatch(vm: NewVm, recorded: string | null): ManagerMismatchError {
  const address = formatVmAddress(vm.fleet, vm.index);
  const fix = recorded
    ? `remove it there first (\`pulumi destroy\` of ${recorded}, or its resource removed from the program and \`pulumi up\`)`
    : 'remove it there first (delete its fleet file and run `fleet apply`, which deletes its VMs)';
  return new ManagerMismatchError(
    `${address}: fleet ${vm.fleet} has live VMs managed by ${managerName(recorded)} in the record, and this create comes from ${managerName(vm.managedBy)}; one fleet has one manager, or each would plan the other's VMs away. Nothing was created. Give this fleet another name, or to move the fleet, ${fix}.`,
    address,
  );
}

/** The manager of `fleet` if another than `manager` while the fleet has live VMs, else undefined. */
async function otherManager(q: Queryable, stack: string, fleet: string, manager: string | null): Promise<{ managedBy: string | null } | undefined> {
  const rows = await q.query<{ managed_by: string | null }>(`SELECT fo.managed_by FROM fleets fo WHERE fo.stack = $1 AND fo.fleet = $2 AND ${otherManagerSql('fo', '$3::text')}`, [stack, fleet, manager]);
  return rows.length ? { managedBy: rows[0].managed_by } : undefined;
}

/** Throws why an insert of VM `id` hit a conflict: its fleet has another owner or manager, its address is live, or the id exists. */
async function whyNotInserted(q: Queryable, id: string, vm: NewVm): Promise<never> {
  const address = formatVmAddress(vm.fleet, vm.index);
  const recorded = (await readFleetOwners(q, vm.stack, [vm.fleet])).get(vm.fleet);
  if (recorded !== undefined && recorded !== vm.owner) throw ownerMismatch(vm, recorded);
  const other = await otherManager(q, vm.stack, vm.fleet, vm.managedBy ?? null);
  if (other) throw managerMismatch(vm, other.managedBy);
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

/** Create-before-delete: the old VM steps aside (deposed) in the same transaction, so the address never has two current VMs. */
async function insertReplacing(q: Queryable, id: string, vm: NewVm, ctx: ChangeContext): Promise<VmRow> {
  const address = formatVmAddress(vm.fleet, vm.index);
  const old = await q.query(
    `UPDATE vms SET deposed_at = coalesce(deposed_at, now()), version = version + 1, updated_at = now()
     WHERE id = $1 AND stack = $2 AND fleet = $3 AND idx = $4 AND retired_at IS NULL
     RETURNING id`,
    [vm.replaces, vm.stack, vm.fleet, vm.index],
  );
  if (old.length === 0) {
    throw new VersionConflictError(vm.replaces!, null, null, `VM ${vm.replaces}, which ${address} should replace, is not live at that address.`, address);
  }
  // A history row of one VM (from `fromState` to its state now), ctx as parameters $2….
  const historyOf = (vmId: string, fromState: string, detail: string | null) =>
    q.query(insertHistory([ctxSource('vms', 'vms WHERE vms.id = $1', fromState, 'vms.state', CTX_PARAMS)]), [
      vmId,
      ctx.actor,
      ctx.planId ?? null,
      ctx.requestId ?? null,
      detail,
    ]);
  await historyOf(vm.replaces!, 'vms.state', `deposed: replaced by ${id}`);
  const rows = await q.query(withFleetBump(`INSERT INTO vms (${INSERT_COLUMNS}) SELECT ${TYPED_PARAMS} WHERE ${NO_OTHER_MANAGER('$17')} ON CONFLICT DO NOTHING RETURNING ${FULL_VM.list}`, '$16', '$17'), [
    ...insertValues(id, vm),
    vm.owner,
    vm.managedBy ?? null,
  ]);
  if (rows.length === 0) await whyNotInserted(q, id, vm);
  await historyOf(id, 'NULL', ctx.detail ?? null);
  return vmFromRow(rows[0]);
}

/** The advisory lock class of an adopt's cloud id (the second key hashes stack, data center and cloud id); taken after the budget's. */
const ADOPT_LOCK_CLASS = 4_242_019;

/** VmWriter.adoptVm in its transaction. */
async function adopt(q: Queryable, vm: NewVm & { id: string; cloudId: string }, ctx: ChangeContext): Promise<VmRow> {
  const address = formatVmAddress(vm.fleet, vm.index);
  const live = await q.query<{ id: string; version: number }>(
    'SELECT id, version FROM vms WHERE stack = $1 AND fleet = $2 AND idx = $3 AND retired_at IS NULL AND deposed_at IS NULL',
    [vm.stack, vm.fleet, vm.index],
  );
  if (live.length) {
    throw new VersionConflictError(address, null, live[0].version, `address ${address} of stack ${vm.stack} is live already (VM ${live[0].id}, version ${live[0].version}).`, address);
  }
  const same = await q.query<{ live: boolean; address: string }>(
    `SELECT retired_at IS NULL AS live, fleet || '/' || idx::text AS address FROM vms WHERE id = $1`,
    [vm.id],
  );
  if (same.length && same[0].live) {
    throw new VersionConflictError(vm.id, null, null, `VM ${vm.id} is live already in the record, at ${same[0].address}.`, address);
  }
  // One cloud VM, one live row: no unique constraint holds cloud_id (ids are per cloud: per data center of a stack;
  // another stack's data center of the same name may be another cloud), so the adopt checks it here, under a
  // transaction-scoped lock of the cloud id: two imports of one cloud VM into two fleets (two fleet locks) get one row.
  await q.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [ADOPT_LOCK_CLASS, JSON.stringify([vm.stack, vm.dataCenter, vm.cloudId])]);
  const holder = await q.query<{ id: string; stack: string; address: string }>(
    `SELECT id, stack, fleet || '/' || idx::text AS address FROM vms
     WHERE stack = $1 AND data_center = $2 AND cloud_id = $3 AND id <> $4 AND retired_at IS NULL LIMIT 1`,
    [vm.stack, vm.dataCenter, vm.cloudId, vm.id],
  );
  if (holder.length) throw new CloudIdTakenError(vm.cloudId, vm.dataCenter, holder[0], address);
  const values = insertValues(vm.id, vm);
  const rows = same.length
    ? await q.query(
        withFleetBump(
          `UPDATE vms SET (${INSERT_COLUMNS}) = (${INSERT_PARAMS}), cloud_id = $16, retired_at = NULL, deposed_at = NULL, version = version + 1, updated_at = now()
           WHERE id = $1 AND retired_at IS NOT NULL AND ${NO_OTHER_MANAGER('$18')} RETURNING ${FULL_VM.list}`,
          '$17',
          '$18',
        ),
        [...values, vm.cloudId, vm.owner, vm.managedBy ?? null],
      )
    : await q.query(
        withFleetBump(`INSERT INTO vms (${INSERT_COLUMNS}, cloud_id) SELECT ${TYPED_PARAMS}, $16::text WHERE ${NO_OTHER_MANAGER('$18')} ON CONFLICT DO NOTHING RETURNING ${FULL_VM.list}`, '$17', '$18'),
        [...values, vm.cloudId, vm.owner, vm.managedBy ?? null],
      );
  if (rows.length === 0) await whyNotInserted(q, vm.id, vm);
  await q.query(insertHistory([ctxSource('vms', 'vms WHERE vms.id = $1', 'NULL', 'vms.state', { ...CTX_PARAMS, outcome: "'imported'" })]), [
    vm.id,
    ctx.actor,
    ctx.planId ?? null,
    ctx.requestId ?? null,
    ctx.detail ?? null,
  ]);
  return vmFromRow(rows[0]);
}

// The batch statements' texts, made once: the same for every batch (its
// rows go in its parameters), and building them (the history and boot
// token parts) per batch took the authority's CPU and grew the functions
// V8 compiles and recompiles (insertMany, transitionVms).

// insertVm's statement over unnest arrays (columns prefixed i_); a row
// whose address or id is taken (also by a row of the batch inserted before
// it) is left out and explained below, and so is one whose fleet's row holds
// another owner (a create never changes a fleet's owner: the fleets
// upsert keeps it). An item with passes is inserted in the
// state they reach (i_final) at the version they make (i_version, one per
// move); its history is the create row (to the initial state i_state),
// then its onward rows (a), in item order.
//
// Rows are inserted in address order (stack, fleet, index; then item
// order), not item order: an insert that meets a row another transaction
// inserted (the same create, sent to another authority replica) waits for
// that transaction, so two batches of the same creates inserting in
// different orders each waited for the other (deadlock detected;
// lock-order.test.ts). The fleets' rows are bumped after, in (stack, fleet)
// order, as transitionVms locks them (the lock order: record.ts).
const WRITTEN = 'ins JOIN first ON first.i_id = ins.id AND first.i_stack = ins.stack AND first.i_fleet = ins.fleet AND first.i_idx = ins.idx::int';
const INSERT_MANY_SQL = `WITH i AS (
     SELECT * FROM unnest(${[...INSERT_TYPES, 'text', 'text', 'text', 'text', 'text', 'text', 'int', 'text', 'text'].map((t, c) => `$${c + 1}::${t}[]`).join(', ')})
       WITH ORDINALITY AS i(i_id, i_stack, i_fleet, i_idx, i_name, i_dc, i_state, i_desired, i_hash, i_image, i_real, i_cpu, i_mem, i_disk, i_enc,
         i_owner, i_actor, i_plan, i_request, i_detail, i_final, i_version, i_token, i_managed, i_k)
   ),
   a AS (SELECT * FROM ${OnwardRows.unnest(25)}),
   -- The item that got a row (WRITTEN): of the items with its id and address, the first (those go in item order).
   first AS (SELECT DISTINCT ON (i_id, i_stack, i_fleet, i_idx) * FROM i ORDER BY i_id, i_stack, i_fleet, i_idx, i_k),
   ins AS (
     INSERT INTO vms (${INSERT_COLUMNS}, version)
     SELECT i_id, i_stack, i_fleet, i_idx, i_name, i_dc, i_final, i_desired, i_hash, i_image, i_real, i_cpu, i_mem, i_disk, i_enc, i_version FROM i
     WHERE NOT EXISTS (SELECT 1 FROM fleets fo WHERE fo.stack = i.i_stack AND fo.fleet = i.i_fleet AND (fo.owner <> i.i_owner OR ${otherManagerSql('fo', 'i.i_managed')}))
     ORDER BY i_stack COLLATE "C", i_fleet COLLATE "C", i_idx, i_k
     ON CONFLICT DO NOTHING
     RETURNING ${FULL_VM.list}
   ),
   f AS (
     INSERT INTO fleets (stack, fleet, owner, version, updated_at, managed_by)
     SELECT ins.stack, ins.fleet, max(first.i_owner), sum(first.i_version), now(), max(first.i_managed) FROM ${WRITTEN} GROUP BY ins.stack, ins.fleet
     ORDER BY ins.stack COLLATE "C", ins.fleet COLLATE "C"
     ON CONFLICT (stack, fleet) DO UPDATE SET version = fleets.version + EXCLUDED.version, updated_at = now(), managed_by = EXCLUDED.managed_by, ${PROTECTED_ON_CLAIM}
     WHERE ${CLAIM_HOLDS}
     RETURNING stack, fleet
   ),
   h AS (${insertHistory([
     { ...ctxSource('ins', WRITTEN, 'NULL', 'first.i_state', { actor: 'first.i_actor', planId: 'first.i_plan', requestId: 'first.i_request', outcome: "'ok'", detail: 'first.i_detail' }), order: ['first.i_k', '0'] },
     OnwardRows.source('ins', WRITTEN, 'first.i_k'),
   ], 'RETURNING id, vm_id')}),
   t AS (${upsertBootTokens(WRITTEN, 'ins.id', 'first.i_token', issuedAfter('h', 'ins.id'))})
   SELECT * FROM ins WHERE ${claimed('ins', 'f')}`;

// transitionVm's statement over unnest arrays; the items' columns are
// prefixed i_ (a_ for their onward rows) so the RETURNING list names
// only vms' columns. The row ends in the state its passes reach
// (i_final), one version and one fleet version per move (i_moves). The
// history rows are inserted in item order, each transition's row before
// its onward rows (ids follow insertion order); a boot token only for a
// row that moved.
const MOVED = 'upd JOIN i ON i.i_id = upd.id';
const TRANSITION_MANY_SQL = `WITH i AS (
     SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::boolean[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
         $11::text[], $12::int[], $13::text[], $14::text[]) WITH ORDINALITY
       AS i(i_id, i_version, i_to, i_cloud, i_retire, i_actor, i_plan, i_request, i_outcome, i_detail, i_final, i_moves, i_token, i_code, i_k)
   ),
   a AS (SELECT * FROM ${OnwardRows.unnest(15)}),
   -- The rows to move, locked in id order (upd reads them from here): two batches of one VM set in
   -- different orders (two authority replicas, each batching the same reports) would otherwise each
   -- hold a row the other waits for, and PostgreSQL aborts one (deadlock detected). A row another
   -- transaction moved meanwhile is left out here (its version is rechecked once locked).
   old AS (SELECT vms.id AS o_id, vms.state AS o_state FROM vms JOIN i ON vms.id = i.i_id AND vms.version = i.i_version ORDER BY vms.id FOR UPDATE OF vms),
   upd AS (
     UPDATE vms SET state = i_final, cloud_id = coalesce(i_cloud, cloud_id),
       retired_at = CASE WHEN i_retire THEN coalesce(retired_at, now()) ELSE retired_at END,
       version = version + i_moves, updated_at = now()
     FROM old JOIN i ON i.i_id = old.o_id WHERE vms.id = old.o_id AND vms.version = i.i_version
     RETURNING ${FULL_VM.list}
   ),
   -- The fleets' rows after every VM row (f reads upd), in (stack, fleet) order, for the same reason.
   f AS (
     UPDATE fleets SET version = fleets.version + c.n, updated_at = now()
     FROM (SELECT fl.stack AS c_stack, fl.fleet AS c_fleet, m.n FROM fleets fl
       JOIN (SELECT stack AS m_stack, fleet AS m_fleet, sum(i.i_moves) AS n FROM ${MOVED} GROUP BY stack, fleet) m ON fl.stack = m.m_stack AND fl.fleet = m.m_fleet
       ORDER BY fl.stack, fl.fleet FOR UPDATE OF fl) c
     WHERE fleets.stack = c.c_stack AND fleets.fleet = c.c_fleet
   ),
   h AS (${insertHistory([
     {
       ...ctxSource('upd', `${MOVED} JOIN old ON old.o_id = upd.id`, 'old.o_state', 'i.i_to', { actor: 'i.i_actor', planId: 'i.i_plan', requestId: 'i.i_request', outcome: 'i.i_outcome', detail: 'i.i_detail', code: 'i.i_code' }),
       order: ['i.i_k', '0'],
     },
     OnwardRows.source('upd', MOVED, 'i.i_k'),
   ], 'RETURNING id, vm_id')}),
   t AS (${upsertBootTokens(MOVED, 'upd.id', 'i.i_token', issuedAfter('h', 'upd.id'))})
   SELECT * FROM upd`;

export function vmWriter({ db, description }: RecordSql): VmWriter {
  /**
   * Inserts in one transaction, multi-row, one history row per VM, each touched
   * fleet's version bumped once. Throws VersionConflictError (inserting none)
   * when any address or id is live already.
   */
  const bulkInsert = (vms: readonly NewVm[], ctx: ChangeContext, batchSize: number) =>
    db.transaction(async (q) => {
      // Each touched fleet's version is bumped once, by the batch with its
      // first VM, in the statement that inserts them (see withFleetBump for
      // why); a new fleet's row gets the owner its last VM names.
      const owners = new Map<string, { stack: string; fleet: string; owner: string; batch: number }>();
      vms.forEach((vm, i) => {
        const key = `${vm.stack}\u0000${vm.fleet}`;
        owners.set(key, { stack: vm.stack, fleet: vm.fleet, owner: vm.owner, batch: owners.get(key)?.batch ?? Math.floor(i / batchSize) });
      });
      const bumps = new Map<number, { stack: string; fleet: string; owner: string }[]>();
      for (const f of owners.values()) bumps.set(f.batch, [...(bumps.get(f.batch) ?? []), f]);
      for (let start = 0; start < vms.length; start += batchSize) {
        const batch = vms.slice(start, start + batchSize);
        const cols: unknown[][] = Array.from({ length: INSERT_TYPES.length }, () => new Array(batch.length));
        batch.forEach((vm, i) => {
          const v = insertValues(vm.id ?? randomUUID(), vm);
          for (let c = 0; c < v.length; c++) cols[c][i] = v[c];
        });
        const bump = bumps.get(start / batchSize) ?? [];
        const n = INSERT_TYPES.length;
        const inserted = await q.query<{ id: string }>(
          `WITH ins AS (
             INSERT INTO vms (${INSERT_COLUMNS})
             SELECT * FROM unnest(${INSERT_TYPES.map((t, c) => `$${c + 1}::${t}[]`).join(', ')})
             ON CONFLICT DO NOTHING
             RETURNING id
           ),
           f AS (
             INSERT INTO fleets (stack, fleet, owner, version, updated_at)
             SELECT b.stack, b.fleet, b.owner, 1, now() FROM unnest($${n + 1}::text[], $${n + 2}::text[], $${n + 3}::text[]) AS b(stack, fleet, owner)
             WHERE EXISTS (SELECT 1 FROM ins)
             ORDER BY b.stack, b.fleet
             ON CONFLICT (stack, fleet) DO UPDATE SET version = fleets.version + 1, updated_at = now()
           )
           SELECT id FROM ins`,
          [...cols, bump.map((f) => f.stack), bump.map((f) => f.fleet), bump.map((f) => f.owner)],
        );
        if (inserted.length !== batch.length) {
          throw new VersionConflictError(
            batch[0].stack,
            null,
            null,
            `${batch.length - inserted.length} of the VMs to insert have an address or id that is live already; none were inserted.`,
          );
        }
        await q.query(insertHistory([ctxSource('vms', 'vms WHERE vms.id = ANY($1::text[])', 'NULL', 'vms.state', CTX_PARAMS)]), [
          inserted.map((r) => r.id),
          ctx.actor,
          ctx.planId ?? null,
          ctx.requestId ?? null,
          ctx.detail ?? null,
        ]);
      }
      return vms.length;
    });

  const insertMany = async (q: Queryable, items: readonly InsertItem[]): Promise<(VmRow | FleetError)[]> => {
      if (items.length === 0) return [];
      // An item naming another owner for a fleet than an earlier item of the batch is refused before the statement.
      // Likewise one naming another manager (FleetRow.managedBy).
      const firstOwner = new Map<string, { owner: string; managedBy: string | null }>();
      const clash = items.map(({ vm }) => {
        const key = `${vm.stack}\u0000${vm.fleet}`;
        const o = firstOwner.get(key);
        if (o === undefined) firstOwner.set(key, { owner: vm.owner, managedBy: vm.managedBy ?? null });
        if (o !== undefined && o.owner !== vm.owner) return ownerMismatch(vm, o.owner);
        return o !== undefined && o.managedBy !== (vm.managedBy ?? null) ? managerMismatch(vm, o.managedBy) : undefined;
      });
      if (clash.some((c) => c !== undefined)) {
        const rest = await insertMany(q, items.filter((_, k) => clash[k] === undefined));
        let j = 0;
        return items.map((_, k) => clash[k] ?? rest[j++]);
      }
      const n = items.length;
      const ids = items.map((it) => it.vm.id ?? randomUUID());
      const cols: unknown[][] = Array.from({ length: 24 }, () => new Array<unknown>(n));
      const onward = new OnwardRows();
      for (let k = 0; k < n; k++) {
        const { vm, ctx } = items[k];
        cols[22][k] = items[k].bootTokenHash ?? null;
        cols[23][k] = vm.managedBy ?? null;
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
      const rows = await q.query(
        INSERT_MANY_SQL,
        [...cols, ...onward.cols],
      );
      const inserted = new Map(rows.map((r) => [r.id as string, vmFromRow(r)]));
      const out: (VmRow | FleetError)[] = [];
      for (let k = 0; k < n; k++) {
        // An id's row is the item's that has its address; of two such items, the first's (INSERT_MANY_SQL's order).
        const row = inserted.get(ids[k]);
        const { vm } = items[k];
        if (row && row.stack === vm.stack && row.fleet === vm.fleet && row.index === vm.index) {
          inserted.delete(ids[k]);
          out.push(row);
        } else out.push(await whyNotInserted(q, ids[k], vm).catch((err: FleetError) => err));
      }
      return out;
    };

  /** Which of `ids` the record holds a VM row of (live, retired or deposed). */
  const heldIds = async (q: Queryable, ids: readonly string[]): Promise<Set<string>> =>
    ids.length === 0 ? new Set() : new Set((await q.query<{ id: string }>('SELECT id FROM vms WHERE id = ANY($1::text[])', [ids])).map((r) => r.id));

  /** VmWriter.insertVm, once (retryClaim). */
  const insertOne = async (vm: NewVm, ctx: ChangeContext, budget: Budget | undefined): Promise<VmRow> => {
    const id = vm.id ?? randomUUID();
    const checked = guarded(budget);
    if (vm.replaces !== undefined || checked) {
      return db.transaction(async (q) => {
        if (checked) await lockBudget(q, vm.stack);
        // A replacement takes the slot of the VM it replaces. A VM the record holds already (a create sent
        // again) needs no place: its insert meets its row, a repeat (VersionConflictError).
        const held = checked && vm.id !== undefined && (await heldIds(q, [id])).size > 0;
        const [refused] = held ? [] : fitBudgets([{ vm, ...(checked ? { budget } : {}) }], checked ? await readBudgetUsage(q, vm.stack, vm.replaces) : [], await readFleetOwners(q, vm.stack, [vm.fleet]));
        if (refused) throw refused;
        if (vm.replaces !== undefined) return insertReplacing(q, id, vm, ctx);
        const [row] = await insertMany(q, [{ vm: { ...vm, id }, ctx }]);
        if (row instanceof Error) throw row;
        return row;
      });
    }
    // One statement (atomic on its own): the VM, its fleet's version and the
    // history row; the authority does this once per created VM. Not when
    // the fleet's row holds another owner (explained by whyNotInserted).
    const rows = await db.query(
      `WITH ins AS (
         INSERT INTO vms (${INSERT_COLUMNS})
         SELECT ${INSERT_TYPES.map((t, c) => `$${c + 1}::${t}`).join(', ')}
         WHERE NOT EXISTS (SELECT 1 FROM fleets fo WHERE fo.stack = $2 AND fo.fleet = $3 AND (fo.owner <> $16 OR ${otherManagerSql('fo', '$21::text')}))
         ON CONFLICT DO NOTHING
         RETURNING ${FULL_VM.list}
       ),
       f AS (
         INSERT INTO fleets (stack, fleet, owner, version, updated_at, managed_by) SELECT stack, fleet, $16, 1, now(), $21::text FROM ins
         ON CONFLICT (stack, fleet) DO UPDATE SET version = fleets.version + 1, updated_at = now(), managed_by = EXCLUDED.managed_by, ${PROTECTED_ON_CLAIM}
         WHERE ${CLAIM_HOLDS}
         RETURNING stack, fleet
       ),
       h AS (${insertHistory([ctxSource('ins', 'ins', 'NULL', 'ins.state', { actor: '$17', planId: '$18', requestId: '$19', outcome: "'ok'", detail: '$20' })])})
       SELECT * FROM ins WHERE ${claimed('ins', 'f')}`,
      [...insertValues(id, vm), vm.owner, ctx.actor, ctx.planId ?? null, ctx.requestId ?? null, ctx.detail ?? null, vm.managedBy ?? null],
    );
    if (rows.length === 0) await whyNotInserted(db, id, vm);
    return vmFromRow(rows[0]);
  };

  /** VmWriter.insertVms, once (retryClaim). */
  const insertVms = async (items: readonly InsertItem[]): Promise<(VmRow | FleetError)[]> => {
    if (!items.some((it) => guarded(it.budget))) return insertMany(db, items);
    // Guarded (budget.ts): the check and the insert in one transaction, under the stack's budget lock.
    return db.transaction(async (q) => {
      const stacks = [...new Set(items.map((it) => it.vm.stack))].sort();
      const refused: (FleetError | undefined)[] = new Array<FleetError | undefined>(items.length);
      for (const stack of stacks) {
        await lockBudget(q, stack);
        // A VM the record holds already (a create sent again: its first send inserted it) is no new VM: it
        // needs no place, nor takes one from the items after it (counted twice, it refused a create that
        // fit); its insert meets its row, a repeat (VersionConflictError).
        const held = await heldIds(q, items.filter((it) => it.vm.stack === stack && it.vm.id !== undefined).map((it) => it.vm.id!));
        const mine = items.map((it, k) => ({ it, k })).filter(({ it }) => it.vm.stack === stack && (it.vm.id === undefined || !held.has(it.vm.id)));
        const fit = fitBudgets(
          mine.map(({ it }) => it),
          await readBudgetUsage(q, stack),
          await readFleetOwners(q, stack, mine.map(({ it }) => it.vm.fleet)),
        );
        mine.forEach(({ k }, j) => (refused[k] = fit[j]));
      }
      const go = items.filter((_, k) => refused[k] === undefined);
      const done = await insertMany(q, go);
      let j = 0;
      return items.map((_, k) => refused[k] ?? done[j++]);
    });
  };

  return {
    adoptVm(vm, ctx, budget) {
      return retryClaim(() => db.transaction(async (q) => {
        if (guarded(budget)) {
          await lockBudget(q, vm.stack);
          // The VM forgotten from this stack (adopted back) counts once: its retired row is not in the usage.
          const [refused] = fitBudgets([{ vm, budget }], await readBudgetUsage(q, vm.stack, undefined), await readFleetOwners(q, vm.stack, [vm.fleet]));
          if (refused) throw refused;
        }
        return adopt(q, vm, ctx);
      }), formatVmAddress(vm.fleet, vm.index));
    },

    insertVm(vm, ctx, budget) {
      return retryClaim(() => insertOne(vm, ctx, budget), formatVmAddress(vm.fleet, vm.index));
    },

    async insertVms(items) {
      return items.length === 0 ? [] : retryClaim(() => insertVms(items), formatVmAddress(items[0].vm.fleet, items[0].vm.index));
    },

    /**
     * Then VACUUM (ANALYZE) of the vms table, outside the transaction: the
     * first reader of freshly inserted rows otherwise sets their hint bits,
     * which with PGlite's page checksums writes a full image of every page to
     * the WAL (100k VMs: 45 MB written by the first `fleet plan`, about a
     * second), and PGlite, which never analyzes on its own, gets statistics.
     */
    async bulkInsertVms(vms, ctx, batchSize = 2000) {
      if (vms.length === 0) return 0;
      const n = await bulkInsert(vms, ctx, batchSize);
      await db.query('VACUUM (ANALYZE) vms');
      return n;
    },

    async transitionVm(id, expectedVersion, to, ctx, patch) {
      // One statement (atomic on its own): the row moves only at the expected
      // version, the fleet's version is bumped and the history row written with
      // it. One round trip instead of six (BEGIN, lock, update, fleet, history,
      // COMMIT): the authority does this once per step of every apply.
      const params: unknown[] = [id, to, expectedVersion];
      const sets = ['state = $2', ...patchSets(patch, params)];
      params.push(ctx.actor, ctx.planId ?? null, ctx.requestId ?? null, ctx.outcome ?? 'ok', ctx.detail ?? null, ctx.code ?? null);
      const n = params.length;
      // A state change without a retirement or a size (most of an apply's) leaves vm_usage, so the overview's totals kept (overview-cache.ts).
      const rows = await db.query(
        usageUnchanged(`WITH old AS (SELECT state FROM vms WHERE id = $1 AND version = $3),
         upd AS (
           UPDATE vms SET ${sets.join(', ')}, version = version + 1, updated_at = now() WHERE id = $1 AND version = $3
           RETURNING ${FULL_VM.list}
         ),
         f AS (UPDATE fleets SET version = fleets.version + 1, updated_at = now() FROM upd WHERE fleets.stack = upd.stack AND fleets.fleet = upd.fleet),
         h AS (${insertHistory([ctxSource('upd', 'upd, old', 'old.state', '$2', { actor: `$${n - 5}`, planId: `$${n - 4}`, requestId: `$${n - 3}`, outcome: `$${n - 2}`, detail: `$${n - 1}`, code: `$${n}` })])})
         SELECT * FROM upd`, !patch?.retire && patch?.size === undefined),
        params,
      );
      if (rows.length === 0) await whyNotAt(db, description, id, expectedVersion);
      return vmFromRow(rows[0]);
    },

    async setFleetProtection(stack, fleet, owner, isProtected) {
      // A change of the row bumps its version, so a saved plan that read the
      // fleet before is stale (checkBasis); writing what the row holds
      // already writes nothing (a retry, record-retry.ts). A new row is
      // version 1 when protected; unprotected, it holds what a plan reads of
      // a fleet with no row (unprotected, version 0: apply makes such rows
      // before a new fleet's creates), so the same plan applied again after
      // it made one is still refused as applied, not as stale.
      await db.transaction(async (q) => {
        await lockBudget(q, stack);
        await q.query(
          `INSERT INTO fleets (stack, fleet, owner, version, updated_at, protected) VALUES ($1, $2, $3, CASE WHEN $4::boolean THEN 1 ELSE 0 END, now(), $4::boolean)
           ON CONFLICT (stack, fleet) DO UPDATE SET protected = EXCLUDED.protected, owner = EXCLUDED.owner, version = fleets.version + 1, updated_at = now()
           WHERE fleets.protected IS DISTINCT FROM EXCLUDED.protected OR fleets.owner IS DISTINCT FROM EXCLUDED.owner`,
          [stack, fleet, owner, isProtected],
        );
      });
    },

    async updateVm(id, expectedVersion, patch, ctx) {
      void ctx; // Not a state change: no history row (see HistoryStore.addHistory for audit-only rows).
      const params: unknown[] = [id, expectedVersion];
      const sets = patchSets(patch, params);
      // A size written ends the VM's grow reserved (grow.ts): it is the size now.
      const rows = await db.query(
        usageUnchanged(`WITH upd AS (
           UPDATE vms SET ${[...sets, 'version = version + 1', 'updated_at = now()'].join(', ')} WHERE id = $1 AND version = $2
           RETURNING ${FULL_VM.list}
         ),
         f AS (UPDATE fleets SET version = fleets.version + 1, updated_at = now() FROM upd WHERE fleets.stack = upd.stack AND fleets.fleet = upd.fleet)${
           patch.size !== undefined ? ',\n         r AS (DELETE FROM vm_reservations WHERE vm_id IN (SELECT id FROM upd))' : ''
         }
         SELECT * FROM upd`, !patch.retire && patch.size === undefined),
        params,
      );
      if (rows.length === 0) await whyNotAt(db, description, id, expectedVersion);
      return vmFromRow(rows[0]);
    },

    async transitionVms(items) {
      if (items.length === 0) return [];
      const n = items.length;
      const cols: unknown[][] = Array.from({ length: 14 }, () => new Array<unknown>(n));
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
        cols[13][k] = it.ctx.code ?? null;
      }
      const rows = await db.query(
        // Without a retirement, only states, cloud ids and versions move: vm_usage stays (overview-cache.ts).
        usageUnchanged(TRANSITION_MANY_SQL, !items.some((it) => it.patch?.retire === true)),
        [...cols, ...onward.cols],
      );
      const done = new Map(rows.map((r) => [r.id as string, vmFromRow(r)]));
      const missing = items.filter((it) => !done.has(it.id));
      const why = await whyNotAtMany(db, description, missing.map((it) => ({ id: it.id, expectedVersion: it.expectedVersion })));
      return items.map((it) => done.get(it.id) ?? why.get(it.id)!);
    },
  };
}
