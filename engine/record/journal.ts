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
import { arrayElement as element } from './array-literal.ts';
import type { Queryable } from './sql.ts';
import type { JournalRow } from './types.ts';

export type JournalInput = Omit<JournalRow, 'at'>;

// Columns in the order of the unnest arrays below; `at` is the default
// (clock_timestamp(), per row). unnest yields rows in array order, so ids
// follow the order rows were added. Each array is sent as the text of its
// array literal, made here (arrayLiterals): the driver's own encoding of 9
// JavaScript arrays (two regular-expression replaces per element) cost the
// CLI more than the rest of the INSERT. A text parameter cast to an array is
// read by PostgreSQL's array input, as the driver's literal was.
const UNNEST = `unnest($1::text::text[], $2::text::text[], $3::text::int[], $4::text::text[], $5::text::text[], $6::text::text[], $7::text::text[], $8::text::text[], $9::text::text[])`;
const INSERT = `INSERT INTO journal (plan_id, address, seq, vm_id, from_state, to_state, idempotency_key, status, detail)
  SELECT * FROM ${UNNEST}`;

// The same, skipping rows already there; journal_step (plan_id, address, seq)
// finds a step's rows. WITH ORDINALITY keeps the rows in the order added.
const INSERT_AGAIN = `INSERT INTO journal (plan_id, address, seq, vm_id, from_state, to_state, idempotency_key, status, detail)
  SELECT r.plan_id, r.address, r.seq, r.vm_id, r.from_state, r.to_state, r.idempotency_key, r.status, r.detail
  FROM ${UNNEST}
    WITH ORDINALITY AS r(plan_id, address, seq, vm_id, from_state, to_state, idempotency_key, status, detail, n)
  WHERE NOT EXISTS (
    SELECT 1 FROM journal j
    WHERE j.plan_id = r.plan_id AND j.address = r.address COLLATE "C" AND j.seq = r.seq
      AND j.idempotency_key = r.idempotency_key AND j.status = r.status
  )
  ORDER BY r.n`;

/** The rows' 9 columns, each as the text of a PostgreSQL array literal, in INSERT's order. */
export function arrayLiterals(rows: readonly JournalInput[]): string[] {
  let plan = '';
  let address = '';
  let seq = '';
  let vm = '';
  let from = '';
  let to = '';
  let key = '';
  let status = '';
  let detail = '';
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    const sep = i === 0 ? '' : ',';
    plan += sep + element(r.planId);
    address += sep + element(r.address);
    seq += sep + String(r.seq);
    vm += sep + element(r.vmId);
    from += sep + element(r.from);
    to += sep + element(r.to);
    key += sep + element(r.idempotencyKey);
    status += sep + element(r.status);
    detail += sep + element(r.detail);
  }
  return [plan, address, seq, vm, from, to, key, status, detail].map((c) => `{${c}}`);
}

const isRowList = (rows: JournalInput | readonly JournalInput[]): rows is readonly JournalInput[] => Array.isArray(rows);

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
      await db.query(again ? INSERT_AGAIN : INSERT, arrayLiterals(rows));
    });
  }

  /** INSERTs started so far (tests and benchmarks read it). */
  get batches(): number {
    return this.#commits.writes;
  }

  /**
   * Resolves once the row (or every one of the rows, in one batch) is
   * committed; rejects when its batch failed. `again`: each skipped if a row
   * of the same plan, step and status is there.
   */
  add(rows: JournalInput | readonly JournalInput[], again = false): Promise<void> {
    if (isRowList(rows)) this.#queue.push(...rows);
    else this.#queue.push(rows);
    if (again) this.#again = true;
    return this.#commits.commit();
  }

  /** Resolves when no INSERT runs or waits (failures ignored). */
  settled(): Promise<void> {
    return this.#commits.settled();
  }
}
