// The plan store: what apply asks of the record about a plan. Is it still
// valid (checkBasis), it started and finished (the plans table), and the
// journal of its steps (group-committed by ./journal.ts).
import { fail } from '../diags/index.ts';
import type { JournalWriter } from './journal.ts';
import { iso } from './rows.ts';
import type { RecordSql } from './sql.ts';
import type { AppliedPlan, JournalPage, JournalRow, PlanStore, StaleEntry } from './types.ts';

interface JournalSqlRow {
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
}

function journalFromRow(r: JournalSqlRow): JournalRow {
  return {
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
  };
}

/** The plan store; journal rows go through `journal`, shared by the record's calls. */
export function planStore({ db }: RecordSql, journal: JournalWriter): PlanStore {
  return {
    async checkBasis(stack, basis) {
      const ids = Object.keys(basis.vms);
      const fleets = Object.keys(basis.fleets);
      return db.transaction(async (q) => {
        const vms = await q.query<{ id: string; version: number }>('SELECT id, version FROM vms WHERE id = ANY($1::text[])', [ids]);
        const fl = await q.query<{ fleet: string; version: number }>('SELECT fleet, version FROM fleets WHERE stack = $1 AND fleet = ANY($2::text[])', [
          stack,
          fleets,
        ]);
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
    },

    async startPlan(plan) {
      const params = [plan.id, plan.stack, plan.digest, plan.who, plan.startedAt];
      // Written once: the same call again (a retry after its connection died
      // around COMMIT) finds its own row (same id, stack, digest, who and
      // start) and writes nothing. Another run of the plan id (a saved plan
      // applied twice, its first run having changed nothing, so it is not
      // stale) is refused: apply.plan-applied.
      const [{ ok }] = await db.query<{ ok: boolean }>(
        `WITH ins AS (
           INSERT INTO plans (id, stack, digest, who, started_at, finished_at, result) VALUES ($1, $2, $3, $4, $5, NULL, 'running')
           ON CONFLICT (id) DO NOTHING RETURNING id
         )
         SELECT EXISTS (SELECT 1 FROM ins)
           OR EXISTS (SELECT 1 FROM plans WHERE id = $1 AND stack = $2 AND digest = $3 AND who = $4 AND started_at = $5::timestamptz) AS ok`,
        params,
      );
      if (!ok) {
        const [was] = await db.query<{ started_at: Date; result: string; who: string }>('SELECT started_at, result, who FROM plans WHERE id = $1', [plan.id]);
        const how = was ? ` (started ${iso(was.started_at)} by ${was.who}, ${was.result})` : '';
        fail(
          'apply.plan-applied',
          `plan ${plan.id} was applied already${how}: a plan is applied once, since the data centers keep each of its steps' first answer. Run \`fleet plan\` again (or \`fleet apply\` without a plan file).`,
        );
      }
    },

    // Idempotent: the same call again writes the same result.
    async finishPlan(id, result) {
      await db.query('UPDATE plans SET finished_at = now(), result = $2 WHERE id = $1', [id, result]);
    },

    journal(rows, opts) {
      return journal.add(rows, opts?.again === true);
    },

    async unfinishedSteps(stack) {
      const rows = await db.query<JournalSqlRow>(
        `SELECT * FROM (
           SELECT DISTINCT ON (j.plan_id, j.address, j.seq) j.*
           FROM journal j JOIN plans p ON p.id = j.plan_id
           WHERE p.stack = $1
           ORDER BY j.plan_id, j.address, j.seq, j.id DESC
         ) last WHERE status IN ('started', 'failed') ORDER BY id`,
        [stack],
      );
      return rows.map(journalFromRow);
    },

    async listPlans(stack, opts = {}) {
      const rows = await db.query<{
        id: string;
        stack: string;
        digest: string;
        who: string;
        started_at: Date;
        finished_at: Date | null;
        result: AppliedPlan['result'];
      }>(
        opts.id === undefined
          ? 'SELECT * FROM plans WHERE stack = $1 ORDER BY started_at DESC, id DESC LIMIT $2'
          : 'SELECT * FROM plans WHERE stack = $1 AND id = $3 ORDER BY started_at DESC, id DESC LIMIT $2',
        opts.id === undefined ? [stack, Math.max(0, Math.floor(opts.limit ?? 100))] : [stack, Math.max(0, Math.floor(opts.limit ?? 100)), opts.id],
      );
      return rows.map((r) => ({
        id: r.id,
        stack: r.stack,
        digest: r.digest,
        who: r.who,
        startedAt: iso(r.started_at),
        finishedAt: r.finished_at === null ? null : iso(r.finished_at),
        result: r.result,
      }));
    },

    async planJournal(planId) {
      return (await db.query<JournalSqlRow>('SELECT * FROM journal WHERE plan_id = $1 ORDER BY id', [planId])).map(journalFromRow);
    },

    async planJournalPage(planId, page) {
      const limit = Math.max(0, Math.floor(page.limit));
      const failures = Math.max(0, Math.floor(page.failures));
      // Which rows: after a row (keyset, forward), before one (keyset, backward), or from an offset (skipping the rows before it).
      const keyed = page.after !== undefined ? { after: page.after } : page.before !== undefined ? { before: page.before } : undefined;
      const pageSql =
        keyed === undefined
          ? `SELECT 0 AS part, * FROM journal WHERE plan_id = $1 AND id >= (SELECT lo FROM n) ORDER BY id LIMIT $2 OFFSET $4`
          : 'after' in keyed
            ? `SELECT 0 AS part, * FROM journal WHERE plan_id = $1 AND id > $4::bigint AND id <= (SELECT hi FROM n) ORDER BY id LIMIT $2`
            : `SELECT 0 AS part, * FROM journal WHERE plan_id = $1 AND id < $4::bigint AND id >= (SELECT lo FROM n) ORDER BY id DESC LIMIT $2`;
      const fourth = keyed === undefined ? Math.max(0, Math.floor(page.offset ?? 0)) : 'after' in keyed ? keyed.after : keyed.before;
      // One statement (one snapshot): the counts and the plan's first and
      // last ids (the count an index-only pass over journal_step), the page
      // (part 0) and the first failures (part 1, along journal_failed), as
      // planJournal's rows. The page is read along the primary key from
      // where it starts, between the plan's first and last ids (other
      // plans' rows among them skipped): sorts and bitmap scans are priced
      // out, as the plan's rows in journal_step are in address order.
      return db.transaction(async (q) => {
        await q.query('SET LOCAL enable_sort = off');
        await q.query('SET LOCAL enable_bitmapscan = off');
        const rows = await q.query<JournalSqlRow & { part: number; id: string; total: number | string; failed_total: number | string }>(
          `WITH n AS (SELECT count(*) AS total, min(id) AS lo, max(id) AS hi FROM journal WHERE plan_id = $1),
             f AS (SELECT count(*) AS failed_total FROM journal WHERE plan_id = $1 AND status = 'failed')
           SELECT r.*, n.total, f.failed_total FROM n CROSS JOIN f LEFT JOIN (
             (${pageSql})
             UNION ALL
             (SELECT 1 AS part, * FROM journal WHERE plan_id = $1 AND status = 'failed' ORDER BY id LIMIT $3)
           ) r ON true`,
          [planId, limit, failures, fourth],
        );
        const out: JournalPage = { total: Number(rows[0].total), rows: [], failedTotal: Number(rows[0].failed_total), failed: [], firstId: null, lastId: null };
        const pageRows = rows.filter((r) => r.part === 0).sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
        out.rows = pageRows.map(journalFromRow);
        out.failed = rows
          .filter((r) => r.part === 1)
          .sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1))
          .map(journalFromRow);
        if (pageRows.length) {
          out.firstId = String(pageRows[0].id);
          out.lastId = String(pageRows[pageRows.length - 1].id);
        }
        return out;
      });
    },
  };
}
