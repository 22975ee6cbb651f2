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
//
// rows.ts turns VM rows into VmRow; errors.ts explains a write that matched
// no row.
import { bootStore } from './boot.ts';
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
  };
}
