// Apply's journal, group-committed. Every step of `fleet apply` writes two
// journal rows (`started` before its request, `done`/`failed` after), and
// with hundreds of members in flight one INSERT round trip per row cost the
// CLI and the database more than anything else it did per step.
//
// What must stay true:
// - `add()` resolves only once its row is committed: a step's `started` row
//   is in the record before its request is sent.
// - Rows added while an INSERT runs share the next one (one multi-row INSERT
//   over unnest arrays, one round trip and one commit); one INSERT runs at a
//   time, so rows of one step (added one after the other) keep their order.
// - When a batch fails, every `add()` of that batch rejects and none of its
//   rows is written (one statement); the next `add()` starts a new batch.
// - A row is written once: a row of the same plan, step key and status that
//   is there already is skipped (ON CONFLICT DO NOTHING on the unique index
//   journal_once, migration 10). So a batch whose connection died around
//   its COMMIT (written or not: nobody knows) is retried safely
//   (engine/apply/record-retry.ts).
import { GroupCommit } from '../durability/index.ts';
import type { Queryable } from './sql.ts';
import type { JournalRow } from './types.ts';

export type JournalInput = Omit<JournalRow, 'at'>;

// Columns in the order of the unnest arrays below; `at` is the default
// (clock_timestamp(), per row). unnest yields rows in array order, so ids
// follow the order rows were added.
const INSERT = `INSERT INTO journal (plan_id, address, seq, vm_id, from_state, to_state, idempotency_key, status, detail)
  SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
  ON CONFLICT (plan_id, idempotency_key, status) DO NOTHING`;

export class JournalWriter {
  #queue: JournalInput[] = [];
  readonly #commits: GroupCommit;

  constructor(db: Queryable) {
    this.#commits = new GroupCommit(async () => {
      const rows = this.#queue;
      this.#queue = [];
      if (rows.length === 0) return;
      const n = rows.length;
      const cols: unknown[][] = Array.from({ length: 9 }, () => new Array<unknown>(n));
      for (let i = 0; i < n; i++) {
        const r = rows[i];
        cols[0][i] = r.planId;
        cols[1][i] = r.address;
        cols[2][i] = r.seq;
        cols[3][i] = r.vmId;
        cols[4][i] = r.from;
        cols[5][i] = r.to;
        cols[6][i] = r.idempotencyKey;
        cols[7][i] = r.status;
        cols[8][i] = r.detail;
      }
      await db.query(INSERT, cols);
    });
  }

  /** INSERTs started so far (tests and benchmarks read it). */
  get batches(): number {
    return this.#commits.writes;
  }

  /** Resolves once the row is committed; rejects when its batch failed. */
  add(row: JournalInput): Promise<void> {
    this.#queue.push(row);
    return this.#commits.commit();
  }

  /** Resolves when no INSERT runs or waits (failures ignored). */
  settled(): Promise<void> {
    return this.#commits.settled();
  }
}
