import { FleetError, diag, fail } from '../diags/index.ts';
import { formatVmAddress } from '../model/index.ts';
import type { Queryable } from './sql.ts';

/**
 * A write was based on a version of a VM (or an address) that is no longer
 * current: someone else changed it first. Callers re-read and retry, or
 * report a stale plan; the record never overwrites silently.
 */
export class VersionConflictError extends FleetError {
  /** The VM id, or the address for an insert that found the address live. */
  readonly key: string;
  readonly expected: number | null;
  readonly actual: number | null;
  constructor(key: string, expected: number | null, actual: number | null, detail: string, address?: string) {
    super(diag('record.version-conflict', detail, address !== undefined ? { address } : {}));
    this.name = 'VersionConflictError';
    this.key = key;
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * An adopt (fleet import) of a cloud id that a live VM of the same stack
 * and data center holds under another VM id: one cloud VM would be two
 * members.
 * Nothing was written. `holder` is that VM (its stack, address and id).
 * Checked in the adopt's transaction: no unique constraint holds cloud_id.
 */
export class CloudIdTakenError extends FleetError {
  readonly holder: { id: string; stack: string; address: string };
  constructor(cloudId: string, dataCenter: string, holder: { id: string; stack: string; address: string }, address?: string) {
    super(
      diag(
        'record.version-conflict',
        `cloud id ${cloudId} of ${dataCenter} is held by VM ${holder.id} at ${holder.address} (stack ${holder.stack}), live in the record.`,
        address !== undefined ? { address } : {},
      ),
    );
    this.name = 'CloudIdTakenError';
    this.holder = holder;
  }
}

function notFound(id: string, description: string): FleetError {
  return new FleetError(diag('record.vm-not-found', `no VM with id ${id} in the record ${description}.`));
}

function conflict(id: string, expected: number | null | undefined, cur: { fleet: string; idx: number; version: number }): VersionConflictError {
  const address = formatVmAddress(cur.fleet, Number(cur.idx));
  return new VersionConflictError(
    id,
    expected ?? null,
    cur.version,
    `VM ${address} (${id}) is at version ${cur.version}, not ${expected}: it changed since it was read.`,
    address,
  );
}

/**
 * Throws why a conditional write on VM `id` at `expectedVersion` matched no
 * row: record.vm-not-found, or VersionConflictError naming both versions.
 */
export async function whyNotAt(q: Queryable, description: string, id: string, expectedVersion: number): Promise<never> {
  const rows = await q.query<{ fleet: string; idx: number; version: number }>('SELECT fleet, idx, version FROM vms WHERE id = $1', [id]);
  if (rows.length === 0) fail('record.vm-not-found', `no VM with id ${id} in the record ${description}.`);
  throw conflict(id, expectedVersion, rows[0]);
}

/** whyNotAt for the writes of a batch that matched no row, in one query: per VM id, the error. */
export async function whyNotAtMany(
  q: Queryable,
  description: string,
  items: readonly { id: string; expectedVersion?: number }[],
): Promise<Map<string, FleetError>> {
  const out = new Map<string, FleetError>();
  if (items.length === 0) return out;
  const rows = await q.query<{ id: string; fleet: string; idx: number; version: number }>('SELECT id, fleet, idx, version FROM vms WHERE id = ANY($1::text[])', [
    items.map((it) => it.id),
  ]);
  const found = new Map(rows.map((r) => [r.id, r]));
  for (const it of items) {
    const cur = found.get(it.id);
    out.set(it.id, cur ? conflict(it.id, it.expectedVersion, cur) : notFound(it.id, description));
  }
  return out;
}

/**
 * A create the record refused because it does not fit its Budget: `which`
 * limit (the owner's quota or the data center's capacity) and a sentence
 * naming the limit, what is used and what the VM needs. Nothing was written.
 */
export class BudgetExceededError extends FleetError {
  readonly which: 'owner' | 'dataCenter';
  constructor(which: 'owner' | 'dataCenter', detail: string, address?: string) {
    super(diag('record.over-budget', detail, address !== undefined ? { address } : {}));
    this.name = 'BudgetExceededError';
    this.which = which;
  }
}

/**
 * A create the record refused because it names another owner than the
 * fleet's row holds (FleetRow.owner): a create never changes a fleet's
 * owner. Nothing was written.
 */
export class OwnerMismatchError extends FleetError {
  constructor(detail: string, address?: string) {
    super(diag('record.owner-mismatch', detail, address !== undefined ? { address } : {}));
    this.name = 'OwnerMismatchError';
  }
}

/**
 * A create the record refused because the fleet has live VMs made by
 * another manager (FleetRow.managedBy: a Pulumi program, or fleet files when
 * null): one fleet has one manager. Nothing was written.
 */
export class ManagerMismatchError extends FleetError {
  constructor(detail: string, address?: string) {
    super(diag('record.manager-mismatch', detail, address !== undefined ? { address } : {}));
    this.name = 'ManagerMismatchError';
  }
}

/**
 * The record's PostgreSQL server could not be used (record.unreachable).
 * `transient`: the connection was lost or refused, or the server is starting,
 * stopping or full of connections (a failover, a restart): the same call may
 * succeed in a moment, and a caller whose write is idempotent may retry it
 * (engine/apply/record-retry.ts). Not transient: a password refused, a
 * database that does not exist; trying again changes nothing.
 */
export class RecordUnreachableError extends FleetError {
  readonly transient: boolean;
  constructor(detail: string, transient: boolean) {
    super(diag('record.unreachable', detail));
    this.name = 'RecordUnreachableError';
    this.transient = transient;
  }
}

/** Whether `err` is a record fault that may go away by itself (RecordUnreachableError.transient). */
export function isTransientRecordFault(err: unknown): err is RecordUnreachableError {
  return err instanceof RecordUnreachableError && err.transient;
}
