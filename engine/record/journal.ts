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
// - A row is written once: a row added `again` (its first try's connection
//   died around its COMMIT: written or not, nobody knows;
//   engine/apply/record-retry.ts) is skipped when a row of the same plan,
//   step and status is there (a batch holding one such row is written with
//   INSERT_AGAIN, an anti-join on journal_step). The first try is a plain
//   INSERT: a unique index made every journal row, two per step, cost the
//   database more (migration 10 built one, migration 11 dropped it). Should
//   the first try's COMMIT land after the retry's look (a window of the dying
//   connection only), the step has two rows of one status, in order: every
//   reader takes a step's last row (unfinishedSteps) or lists them all.
import { GroupCommit } from '../durability/index.ts';
import type { Queryable } from './sql.ts';
import type { JournalRow } from './types.ts';

export type JournalInput = Omit<JournalRow, 'at'>;

// Columns in the order of the unnest arrays below; `at` is the default
// (clock_timestamp(), per row). unnest yields rows in array order, so ids
// follow the order rows were added.
const INSERT = `INSERT INTO journal (plan_id, address, seq, vm_id, from_state, to_state, idempotency_key, status, detail)
  SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])`;

// The same, skipping rows already there; journal_step (plan_id, address, seq)
// finds a step's rows. WITH ORDINALITY keeps the rows in the order added.
const INSERT_AGAIN = `INSERT INTO journal (plan_id, address, seq, vm_id, from_state, to_state, idempotency_key, status, detail)
  SELECT r.plan_id, r.address, r.seq, r.vm_id, r.from_state, r.to_state, r.idempotency_key, r.status, r.detail
  FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
    WITH ORDINALITY AS r(plan_id, address, seq, vm_id, from_state, to_state, idempotency_key, status, detail, n)
  WHERE NOT EXISTS (
    SELECT 1 FROM journal j
    WHERE j.plan_id = r.plan_id AND j.address = r.address COLLATE "C" AND j.seq = r.seq
      AND j.idempotency_key = r.idempotency_key AND j.status = r.status
  )
  ORDER BY r.n`;

function uniqueRows(rows: readonly JournalInput[]): JournalInput[] {
  const seen = new Set<string>();
  return rows.filter((r) => {
    const k = `${r.planId}\0${r.address}\0${r.seq}\0${r.idempotencyKey}\0${r.status}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export class JournalWriter {
  #queue: JournalInput[] = [];
  /** Whether a row of the queue was added `again`. */
  #again = false;
  readonly #commits: GroupCommit;

  constructor(db: Queryable) {
    this.#commits = new GroupCommit(async () => {
      const again = this.#again;
      // Retried rows are looked for in the table; two of one step and status in this batch are one.
      const rows = again ? uniqueRows(this.#queue) : this.#queue;
      this.#queue = [];
      this.#again = false;
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
      await db.query(again ? INSERT_AGAIN : INSERT, cols);
    });
  }

  /** INSERTs started so far (tests and benchmarks read it). */
  get batches(): number {
    return this.#commits.writes;
  }

  /**
   * Resolves once the row is committed; rejects when its batch failed.
   * `again`: skipped if a row of the same plan, step and status is there.
   */
  add(row: JournalInput, again = false): Promise<void> {
    this.#queue.push(row);
    if (again) this.#again = true;
    return this.#commits.commit();
  }

  /** Resolves when no INSERT runs or waits (failures ignored). */
  settled(): Promise<void> {
    return this.#commits.settled();
  }
}
