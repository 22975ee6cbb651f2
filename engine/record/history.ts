// The history store, and the one INSERT every writer of history rows uses.
//
// Every state change writes its history row in the statement that makes it
// (vm-writes.ts), so the INSERT is built here from SQL expressions over that
// statement's relations (insertHistory) rather than written out by each
// writer: the column list, the address and the ordering exist once.
import type { FleetError } from '../diags/index.ts';
import { fail } from '../diags/index.ts';
import { whyNotAt, whyNotAtMany } from './errors.ts';
import { issuedAfter, upsertBootTokens } from './boot.ts';
import { usageUnchanged } from './overview-cache.ts';
import { addressSql, iso } from './rows.ts';
import type { RecordSql } from './sql.ts';
import type { ChangeContext, HistoryRow, HistoryStore, Onward, Outcome } from './types.ts';

const HISTORY_COLUMNS = 'vm_id, stack, fleet, address, from_state, to_state, actor, plan_id, request_id, outcome, detail, code';

/**
 * History rows drawn from one relation of a statement, each value an SQL
 * expression over it. `vm` names a relation (a table, CTE or alias in
 * `from`) with the VM's `id`, `stack`, `fleet` and `idx`.
 */
export interface HistorySource {
  vm: string;
  /** The FROM clause, without FROM (joins and WHERE allowed). */
  from: string;
  fromState: string;
  toState: string;
  actor: string;
  planId: string;
  requestId: string;
  outcome: string;
  detail: string;
  /** The failed step's error code (ChangeContext.code); absent: NULL (every row but a DMZ client's failure report). */
  code?: string;
  /**
   * Sort keys giving the rows' order (history ids follow it): one
   * expression, or two (item, place within it) when sources are combined.
   */
  order?: readonly string[];
}

/**
 * `INSERT INTO history … SELECT …` of the rows of `sources`: one source's
 * rows in its `order`; several sources' rows together, ordered by their
 * sort keys (every source then gives as many keys). `tail` follows the
 * statement (e.g. `RETURNING id`).
 */
export function insertHistory(sources: readonly HistorySource[], tail = ''): string {
  const values = (s: HistorySource) =>
    [`${s.vm}.id`, `${s.vm}.stack`, `${s.vm}.fleet`, addressSql(s.vm), s.fromState, s.toState, s.actor, s.planId, s.requestId, s.outcome, s.detail, s.code ?? 'NULL'].join(', ');
  const end = tail ? `\n${tail}` : '';
  if (sources.length === 1) {
    const [s] = sources;
    return `INSERT INTO history (${HISTORY_COLUMNS})\nSELECT ${values(s)} FROM ${s.from}${s.order ? ` ORDER BY ${s.order.join(', ')}` : ''}${end}`;
  }
  const keys = sources[0].order?.length ?? 0;
  if (keys === 0 || sources.some((s) => s.order?.length !== keys)) throw new Error('bug: combined history sources need sort keys, as many each');
  const names = HISTORY_COLUMNS.split(', ').map((c) => `h_${c}`);
  const sortNames = Array.from({ length: keys }, (_, i) => `h_sort${i}`);
  const union = sources.map((s) => `SELECT ${values(s)}, ${s.order!.join(', ')} FROM ${s.from}`).join('\n  UNION ALL\n  ');
  return `INSERT INTO history (${HISTORY_COLUMNS})
SELECT ${names.join(', ')} FROM (
  ${union}
) AS rows_(${[...names, ...sortNames].join(', ')})
ORDER BY ${sortNames.join(', ')}${end}`;
}

/**
 * An item's onward history rows (types.ts Onward) as the columns of one
 * unnest: per row the item's ordinal `k` (1-based, as WITH ORDINALITY
 * numbers the items), its place after the item's own row, and the row; the
 * state the item leaves the VM in and how many moves it makes (1 + passes).
 */
export class OnwardRows {
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

  /** The unnest of the columns, from parameter $n on: a(a_k, a_seq, a_from, a_to, a_actor, a_plan, a_request, a_outcome, a_detail). */
  static unnest(n: number): string {
    const types = ['int', 'int', 'text', 'text', 'text', 'text', 'text', 'text', 'text'];
    return `unnest(${types.map((t, c) => `$${n + c}::${t}[]`).join(', ')}) AS a(a_k, a_seq, a_from, a_to, a_actor, a_plan, a_request, a_outcome, a_detail)`;
  }

  /** The onward rows of the items written, as a history source: `vm` the written rows, joined to `a` by `k` (the item's ordinal). */
  static source(vm: string, join: string, k: string): HistorySource {
    return {
      vm,
      from: `${join} JOIN a ON a.a_k = ${k}`,
      fromState: 'a.a_from',
      toState: 'a.a_to',
      actor: 'a.a_actor',
      planId: 'a.a_plan',
      requestId: 'a.a_request',
      outcome: 'a.a_outcome',
      detail: 'a.a_detail',
      order: ['a.a_k', 'a.a_seq'],
    };
  }
}

export function historyStore({ db, description }: RecordSql): HistoryStore {
  return {
    async addHistory(vmId, row, expectedVersion, opts) {
      const params: unknown[] = [vmId, row.from, row.to, row.actor, row.planId ?? null, row.requestId ?? null, row.outcome, row.detail ?? null, row.code ?? null];
      if (expectedVersion !== undefined) params.push(expectedVersion);
      if (opts?.once && row.requestId != null && expectedVersion === undefined) {
        // Under the VM row's lock, the look for the actor's row of this request and the write are one at a
        // time: of two writers at once (one report sent to two authority replicas), the second, reading
        // after the first committed (a statement of its own), finds its row.
        return db.transaction(async (q) => {
          if ((await q.query('SELECT 1 FROM vms WHERE id = $1 FOR UPDATE', [vmId])).length === 0) fail('record.vm-not-found', `no VM with id ${vmId} in the record ${description}.`);
          const seen = await q.query('SELECT 1 FROM history WHERE vm_id = $1 AND request_id = $2 AND actor = $3 LIMIT 1', [vmId, row.requestId, row.actor]);
          if (seen.length > 0) return;
          await q.query(usageUnchanged(insertHistory([{ vm: 'vms', from: 'vms WHERE vms.id = $1', fromState: '$2', toState: '$3', actor: '$4', planId: '$5', requestId: '$6', outcome: '$7', detail: '$8', code: '$9' }], 'RETURNING id')), params);
        });
      }
      // Reads vms, writes history only: the overview's totals stay kept (overview-cache.ts).
      const rows = await db.query(
        usageUnchanged(insertHistory(
          [
            {
              vm: 'vms',
              from: `vms WHERE vms.id = $1${expectedVersion !== undefined ? ' AND vms.version = $10' : ''}`,
              fromState: '$2',
              toState: '$3',
              actor: '$4',
              planId: '$5',
              requestId: '$6',
              outcome: '$7',
              detail: '$8',
              code: '$9',
            },
          ],
          'RETURNING id',
        )),
        params,
      );
      if (rows.length === 0) {
        if (expectedVersion !== undefined) await whyNotAt(db, description, vmId, expectedVersion);
        fail('record.vm-not-found', `no VM with id ${vmId} in the record ${description}.`);
      }
    },

    async addHistoryMany(items) {
      if (items.length === 0) return [];
      const n = items.length;
      const cols: unknown[][] = Array.from({ length: 12 }, () => new Array<unknown>(n));
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
        cols[11][k] = row.code ?? null;
      }
      // A row's boot token is stored with it (of a VM's rows in the batch, the last one's).
      // The VMs' rows are locked (in id order, as two batches lock them alike): a move of a VM
      // under way is waited for, and its new version then fails the row's version check; the
      // history ids are taken after the locks, so they follow the moves' (the boot check reads
      // a token's moves by id: leftBoot).
      const written = await db.query<{ k: number }>(
        usageUnchanged(`WITH i AS (
           SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::int[], $11::text[], $12::text[])
             AS i(i_id, i_version, i_from, i_to, i_actor, i_plan, i_request, i_outcome, i_detail, i_k, i_token, i_code)
         ),
         ok AS (
           SELECT vms.id, vms.stack, vms.fleet, vms.idx, i.* FROM i JOIN vms ON vms.id = i.i_id AND (i.i_version IS NULL OR vms.version = i.i_version)
           ORDER BY vms.id FOR UPDATE OF vms
         ),
         ins AS (${insertHistory([
           {
             vm: 'ok',
             from: 'ok',
             fromState: 'ok.i_from',
             toState: 'ok.i_to',
             actor: 'ok.i_actor',
             planId: 'ok.i_plan',
             requestId: 'ok.i_request',
             outcome: 'ok.i_outcome',
             detail: 'ok.i_detail',
             code: 'ok.i_code',
             order: ['ok.i_k'],
           },
         ], 'RETURNING id, vm_id')}),
         t AS (${upsertBootTokens('(SELECT DISTINCT ON (id) id, i_token FROM ok WHERE i_token IS NOT NULL ORDER BY id, i_k DESC) last', 'last.id', 'last.i_token', issuedAfter('ins', 'last.id'))})
         SELECT i_k AS k FROM ok`),
        cols,
      );
      const ok = new Set(written.map((w) => Number(w.k)));
      const missing = items.filter((_, k) => !ok.has(k));
      const why = await whyNotAtMany(db, description, missing.map((it) => ({ id: it.vmId, expectedVersion: it.expectedVersion })));
      return items.map((it, k): FleetError | undefined => (ok.has(k) ? undefined : why.get(it.vmId)));
    },

    async deniedBoots(vmIds, bootedStates) {
      if (vmIds.length === 0 || bootedStates.length === 0) return [];
      // The boot's start: the newest move into a booted state from outside them (the authority's `intent approved`
      // rows are no moves). After it, both: the DMZ client's failure of that boot reported driver.boot-denied (its
      // driver saw the VM's own agent denied), and the authority denied a boot check of the VM in that state. Either
      // alone is no denial of the VM: anyone in the DMZ network can have a boot check denied, and a driver also says
      // boot-denied of a VM that powered itself off without a report it could believe. history_vm narrows each to the
      // VM's rows.
      const rows = await db.query<{ id: string }>(
        `SELECT v.id FROM vms v
         CROSS JOIN LATERAL (
           SELECT COALESCE(max(b.id), 0) AS start FROM history b
           WHERE b.vm_id = v.id AND b.outcome IN ('ok', 'drift', 'imported', 'modified') AND b.to_state = ANY($2::text[])
             AND (b.from_state IS NULL OR NOT (b.from_state = ANY($2::text[])))
             AND NOT (b.actor = 'authority' AND COALESCE(b.detail, '') LIKE 'intent approved:%')
         ) boot
         WHERE v.id = ANY($1::text[]) AND v.retired_at IS NULL
           AND EXISTS (
             SELECT 1 FROM history f
             WHERE f.vm_id = v.id AND f.id > boot.start AND f.code = 'driver.boot-denied' AND f.outcome = 'failed'
               AND f.actor LIKE 'dmz-client:%' AND f.from_state = ANY($2::text[])
           )
           AND EXISTS (
             SELECT 1 FROM history d
             WHERE d.vm_id = v.id AND d.id > boot.start AND d.outcome = 'denied' AND d.actor = 'authority' AND d.from_state = ANY($2::text[])
           )`,
        [[...vmIds], [...bootedStates]],
      );
      const denied = new Set(rows.map((r) => r.id));
      return vmIds.filter((id) => denied.has(id));
    },

    async edgesInFlight(stack, fleets) {
      if (fleets.length === 0) return [];
      // Each VM's newest row (history_vm); an authority's approval is written after the report before it (ids follow insertion order).
      return db.query<{ address: string; detail: string }>(
        `SELECT v.fleet || '/' || v.idx AS address, last.detail FROM vms v
         JOIN LATERAL (SELECT h.actor, h.outcome, h.detail FROM history h WHERE h.vm_id = v.id ORDER BY h.id DESC LIMIT 1) last ON true
         WHERE v.stack = $1 AND v.fleet = ANY($2::text[]) AND v.retired_at IS NULL
           AND last.actor = 'authority' AND last.outcome = 'ok' AND last.detail LIKE 'intent approved:%'
         ORDER BY v.fleet, v.idx`,
        [stack, [...fleets]],
      );
    },

    async approvalOf(vmId, requestId) {
      // The latest ok row the authority wrote under the request id (history_vm
      // narrows to the VM's rows), whether a DMZ client's row under the
      // same id follows it (the report that settled it), and whether one
      // under another id that moved the VM does (Approval.superseded).
      const rows = await db.query<{ from_state: string | null; to_state: string; detail: string | null; reported: boolean; superseded: boolean }>(
        `SELECT h.from_state, h.to_state, h.detail,
           EXISTS (SELECT 1 FROM history r WHERE r.vm_id = $1 AND r.request_id = $2 AND r.id > h.id AND r.actor LIKE 'dmz-client:%') AS reported,
           EXISTS (SELECT 1 FROM history r WHERE r.vm_id = $1 AND r.request_id IS DISTINCT FROM $2 AND r.id > h.id AND r.actor LIKE 'dmz-client:%' AND r.outcome = 'ok') AS superseded
         FROM history h
         WHERE h.vm_id = $1 AND h.request_id = $2 AND h.actor = 'authority' AND h.outcome = 'ok'
         ORDER BY h.id DESC LIMIT 1`,
        [vmId, requestId],
      );
      if (rows.length === 0) return undefined;
      const r = rows[0];
      return { from: r.from_state, to: r.to_state, detail: r.detail, reported: Boolean(r.reported), superseded: Boolean(r.superseded) };
    },

    async history(stack, address, opts = {}) {
      const params: unknown[] = [stack];
      let where = 'stack = $1';
      if (address !== undefined) {
        params.push(address);
        where += ` AND address = $${params.length}`;
      }
      if (opts.outcome !== undefined) {
        params.push(opts.outcome);
        where += ` AND outcome = $${params.length}`;
      }
      let sql = `SELECT id, vm_id, address, from_state, to_state, actor, plan_id, request_id, outcome, detail, code, at FROM history WHERE ${where}`;
      if (opts.limit !== undefined) {
        params.push(Math.max(0, Math.floor(opts.limit)));
        sql = `SELECT * FROM (${sql} ORDER BY id DESC LIMIT $${params.length}) newest`;
      }
      const rows = await db.query<{
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
        code: string | null;
        at: Date;
      }>(`${sql} ORDER BY id`, params);
      return rows.map(
        (r): HistoryRow => ({
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
          code: r.code,
          at: iso(r.at),
        }),
      );
    },
  };
}
