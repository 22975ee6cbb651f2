// The one FleetRecord implementation: each store's SQL (one file each) over
// one SqlAdapter, so PGlite and PostgreSQL differ only in the adapter.
//
// | store (types.ts)       | file          | tables                         |
// | ---------------------- | ------------- | ------------------------------ |
// | VmReader               | vms.ts        | vms, fleets, vm_usage          |
// |   (overview totals)    | overview-cache.ts | (kept per stack, 5 s)      |
// | VmWriter               | vm-writes.ts  | vms, fleets, history, boot_tokens |
// | HistoryStore           | history.ts    | history, boot_tokens           |
// | LockStore              | locks.ts      | locks                          |
// | PlanStore              | plans.ts      | plans, journal (journal.ts), vms and fleets versions |
// | BootStore              | boot.ts       | boot_tokens, boot_attempts     |
// | IdentityStore          | identity.ts   | stack_identities               |
// | GrowStore              | grow.ts       | vm_reservations, history       |
// | ClaimStore             | claims.ts     | request_claims                 |
//
// rows.ts turns VM rows into VmRow; errors.ts explains a write that matched
// no row.
//
// The lock order. Writers of the same rows run at once (authority replicas,
// each batching the same requests in its own order; fleet apply; fleet
// import), and two transactions that take two locks in opposite orders wait
// for each other until PostgreSQL aborts one ("deadlock detected"). So every
// statement and transaction takes its locks in this order, each kind in the
// order given; a new writer keeps to it (lock-order.test.ts reproduces what
// broke it):
//
// | # | lock                                          | in the order of       | taken by |
// | - | --------------------------------------------- | --------------------- | -------- |
// | 1 | a stack's budget (advisory, budget.ts)        | stack                 | guarded insertVm(s), adoptVm, reserveGrow, setFleetProtection: first in their transaction |
// | 2 | an adopted cloud id (advisory)                | one per transaction   | adoptVm |
// | 3 | vms rows that exist (FOR UPDATE, UPDATE)      | id                    | transitionVms (old), addHistoryMany (ok), transitionVm, updateVm, addHistory once, a replace's deposed row |
// |   | vms rows inserted (an insert meeting another transaction's uncommitted row of its id or live address waits for it) | (stack, fleet, index) | insertVms (ins), insertVm |
// | 4 | fleets rows                                   | (stack, fleet), "C"   | every write of a VM (its statement bumps them after its VM rows), setFleetProtection |
// | 5 | vm_usage rows (triggers, at the statement's end) | (held under 4: only a holder of the fleet's row writes them) | |
// | 6 | boot_tokens rows                              | vm_id                 | upsertBootTokens (insertVms, transitionVms, addHistoryMany), authorizeBoots (lk) |
// | 7 | vm_reservations rows                          | (one per VM, or a stack's under 1) | updateVm of a size, reserveGrow |
//
// locks and lock_fences rows (acquireLocks, in fleet order) and the rows of
// plans, sealed_plans, stack_identities and request_claims (claimRequests: one
// statement, in (data center, request id) order) are written by transactions
// that take no other lock; history, journal and boot_attempts rows are only
// inserted, with no unique key to wait on.
import { bootStore } from './boot.ts';
import { claimStore } from './claims.ts';
import { growStore } from './grow.ts';
import { historyStore } from './history.ts';
import { identityStore } from './identity.ts';
import { sealedPlanStore } from './sealed-plans.ts';
import { JournalWriter } from './journal.ts';
import { lockStore } from './locks.ts';
import { OverviewCache, watchVmWrites } from './overview-cache.ts';
import { planReader } from './plan-read.ts';
import { planStore } from './plans.ts';
import type { Queryable, SqlAdapter } from './sql.ts';
import type { FleetRecord } from './types.ts';
import { vmWriter } from './vm-writes.ts';
import { vmReader } from './vms.ts';

/** FleetRecord over SQL, with what the record's own tests read. */
export interface SqlRecord extends FleetRecord {
  /** Journal INSERTs so far (tests and benchmarks read it). */
  readonly journalBatches: number;
  /**
   * The statements underneath, for the record's test helpers (testing.ts),
   * which read what no store reads back (applied plans, boot attempts and
   * tokens). Not part of FleetRecord: nothing else may query the tables.
   */
  readonly sql: Queryable;
}

export interface SqlRecordOptions {
  /** The overview's totals (countVmsPage) kept for this long (OVERVIEW_CACHE_MS; 0: read on every call), and the clock they are kept by. */
  overviewCacheMs?: number;
  now?: () => number;
}

export function sqlRecord(unwatched: SqlAdapter, description: string, opts: SqlRecordOptions = {}): SqlRecord {
  // Every statement of the record that may change vm_usage makes the overview read its totals anew (overview-cache.ts).
  const db = watchVmWrites(unwatched);
  const ctx = { db, description };
  const journal = new JournalWriter(db);
  return {
    description,
    close: () => db.close(),
    async schemaVersion() {
      const rows = await db.query<{ schema_version: number }>('SELECT schema_version FROM meta WHERE id = 1');
      return rows.length === 0 ? 0 : Number(rows[0].schema_version);
    },
    get journalBatches() {
      return journal.batches;
    },
    sql: db,
    ...vmReader(ctx, new OverviewCache(opts.overviewCacheMs, opts.now)),
    ...planReader(ctx),
    ...vmWriter(ctx),
    ...historyStore(ctx),
    ...lockStore(ctx),
    ...planStore(ctx, journal),
    ...bootStore(ctx),
    ...identityStore(ctx),
    ...growStore(ctx),
    ...sealedPlanStore(ctx),
    ...claimStore(ctx),
  };
}
