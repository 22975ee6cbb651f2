// The boot store: the boot check (row match, one-time token of the boot the
// VM is in, answered again for a repeat of its approved boot while the VM
// stays in it, approved attempt row in one statement)
// and the record of denied attempts. Boot
// tokens are stored by the writes that approve a boot edge (vm-writes.ts,
// history.ts), with upsertBootTokens.
import { usageUnchanged } from './overview-cache.ts';
import { FULL_VM, iso, vmFromRow } from './rows.ts';
import type { RecordSql } from './sql.ts';
import type { BootCheck, BootCheckResult } from './shapes.ts';
import type { BootStore } from './types.ts';

/**
 * A statement's boot tokens, as a data-modifying CTE's body: `token` of each
 * row of `from` where it is set, issued after `history` (the id of the last
 * history row of the VM the statement writes: its own rows are the way to
 * the boot, not out of it), a VM's new token replacing its earlier one
 * (created now, unused). The earlier one, if it was never used, is kept as
 * the VM's previous token (prev_hash), with its issue: its boot may be under
 * way in the cloud (approved, carried out, its report lost to a crash) and
 * is answered once still, while the VM has not left the booting states
 * since it was issued (the boot check reads the history after it:
 * leftBoot); a used one, and the one kept before, are dropped. Rows in
 * vm_id order, as authorizeBoots locks them (the lock order: record.ts).
 */
export function upsertBootTokens(from: string, vmId: string, token: string, history: string): string {
  return `INSERT INTO boot_tokens (vm_id, token_hash, issued_history)
         SELECT ${vmId}, ${token}, (${history})::bigint FROM ${from} WHERE ${token} IS NOT NULL ORDER BY ${vmId}
         ON CONFLICT (vm_id) DO UPDATE SET token_hash = EXCLUDED.token_hash, created_at = now(), used_at = NULL, used_version = NULL,
           issued_history = EXCLUDED.issued_history,
           prev_hash = CASE WHEN ${KEEP} THEN boot_tokens.token_hash END,
           prev_issued_history = CASE WHEN ${KEEP} THEN boot_tokens.issued_history END,
           prev_used_at = NULL, prev_used_version = NULL`;
}

/** upsertBootTokens: the replaced token is kept (unused, and not the new one). */
const KEEP = 'boot_tokens.used_at IS NULL AND boot_tokens.token_hash <> EXCLUDED.token_hash';

/**
 * The id of the last of a statement's history rows of VM `vmId`, for
 * upsertBootTokens: `cte` names the statement's `INSERT INTO history …
 * RETURNING id, vm_id`.
 */
export const issuedAfter = (cte: string, vmId: string): string => `(SELECT max(${cte}.id) FROM ${cte} WHERE ${cte}.vm_id = ${vmId})`;

/**
 * Whether VM `vmId` has a history row after `issued` (boot_tokens.issued_history
 * or prev_issued_history; NULL: every row) that took it out of the booting
 * states (`states`, an SQL text[] expression), or brought it into the record
 * (an import of a row removed by fleet state rm, whatever its state): it left
 * the boot its token was issued for. A move is a row of outcome ok or drift
 * (a transition, refresh's drift) that is no intent (`intent approved: …`);
 * denied, vetoed and failed rows move nothing. A move into the booting states
 * (a token issued ahead of its boot, while the VM was being created or
 * powered off) or between them (the boot edge's report) does not end it.
 * One range of history_vm (vm_id, id) per check.
 */
function leftBoot(vmId: string, issued: string, states: string): string {
  return `EXISTS (SELECT 1 FROM history h WHERE h.vm_id = ${vmId} AND h.id > coalesce(${issued}, 0)
    AND (h.from_state IS NULL OR h.outcome IN ('removed', 'imported')
      OR (h.outcome IN ('ok', 'drift') AND h.from_state = ANY(${states}) AND NOT h.to_state = ANY(${states})
        AND NOT coalesce(h.detail, '') LIKE 'intent approved:%')))`;
}

export function bootStore({ db }: RecordSql): BootStore {
  /**
   * One statement updates a VM's boot_tokens row once: of two checks of one
   * VM with different tokens (its token and the one it replaced, both
   * valid), one may lose. Those are checked again, in a statement of their
   * own, as if they had come a moment later.
   */
  const authorizeBoots = async (items: readonly BootCheck[]): Promise<BootCheckResult[]> => {
    const out = await checkBoots(items);
    const again = items.flatMap((it, k) =>
      !out[k].approved && items.some((o, j) => out[j].approved && o.vmId === it.vmId && o.tokenHash !== it.tokenHash) ? [k] : [],
    );
    if (again.length === 0) return out;
    const later = await authorizeBoots(again.map((k) => items[k]));
    again.forEach((k, i) => (out[k] = later[i]));
    return out;
  };

  const checkBoots = async (items: readonly BootCheck[]): Promise<BootCheckResult[]> => {
    if (items.length === 0) return [];
    const states: [number[], string[]] = [[], []];
    items.forEach((it, k) => {
      for (const s of it.allowedStates) {
        states[0].push(k + 1);
        states[1].push(s);
      }
    });
    // The token use guarded by the row check, and the approved attempt
    // rows, in one statement. ok: the items whose row matches; m: of
    // those, the first per (VM, token) (UPDATE … FROM uses one source row
    // per target row). used: the tokens m may use: the VM's token, or the
    // one a newer approval replaced unused (prev_hash: a boot that may be
    // in flight, docs/recovery.md "Resumed boots"), each unused, or used
    // within the item's repeat window (a resumed agent presenting the
    // token it was approved with; a concurrent use makes the row's recheck
    // see the new used_at, so both are approved) while the VM has not left
    // that boot: its row (v_version, as `ok` saw it) is at most one write
    // past the version the first use saw (used_version: the boot edge's own
    // report, PoweredOn -> Starting, may land after the use). Every write
    // bumps a row's version, and leaving the booting states and coming back
    // takes two writes (or one with passes, which adds one per move), so a
    // VM that went to BootFailed, PoweredOff, a drift, an import or an edit
    // and is booting again is not answered with a token used before: only
    // a new boot edge's token boots it (used_version is NULL for a use
    // before schema 14: not answered again). And whatever its use, a token
    // whose VM's history since its issue (boot_tokens.issued_history,
    // prev_issued_history: migration 15) has a move out of the item's states,
    // or an import, is not used: it was issued for a boot the VM has left
    // (leftBoot). Read here, once per check, rather than kept by a trigger on
    // every write of vms (twice the apply's PostgreSQL CPU). Without a window, only
    // unused: a use that committed while this statement waited can be
    // stamped after this transaction's now(), and `used_at > now() - 0`
    // then let it through. fresh: used now (the row lk locked had no use:
    // not `used_at = now()`, which a concurrent use stamped the same
    // microsecond as this transaction began also met): only those write
    // the approved attempt row, so an approval is recorded once however
    // often it is repeated.
    // The answer: every item with the row as the statement saw it,
    // approved when its row matched and its token was used; for a denied
    // item whose row matched and whose token was used within its window but
    // the VM moved since, the version the use saw (used_at_version, from the
    // token row as the statement saw it: bootDenial says why).
    // In `ok`, the VM is found by id only (vms_pkey): the stack is compared
    // with IS NOT DISTINCT FROM (never null here), which no index serves.
    // With `vms.stack = i.i_stack`, a plan made while the table was small
    // (statistics stale mid-apply) looked each VM up through vms_scope,
    // reading every VM of the stack per boot (bench:apply, 4,000 VMs at
    // P=10: 9.3 ms per call instead of 0.4, 5 s of PostgreSQL CPU).
    // Reads vms, writes boot tokens and attempts only: the overview's totals stay kept (overview-cache.ts).
    const rows = await db.query<Record<string, unknown> & { k: number | string; approved: boolean; found: boolean; used_at_version: number | null; left_boot: boolean | null; token_known: boolean | null }>(
      usageUnchanged(`WITH i AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $9::float8[], $10::text[]) WITH ORDINALITY
           AS i(i_vm, i_dc, i_cloud, i_image, i_hash, i_reason, i_repeat, i_stack, i_k)
       ),
       s AS (SELECT * FROM unnest($7::int[], $8::text[]) AS s(s_k, s_state)),
       ok AS (
         SELECT i.*, vms.version AS v_version, vms.retired_at AS v_retired, ARRAY(SELECT s.s_state FROM s WHERE s.s_k = i.i_k) AS v_states
         FROM i JOIN vms ON vms.id = i.i_vm
         WHERE vms.stack IS NOT DISTINCT FROM i.i_stack AND vms.data_center = i.i_dc AND vms.cloud_id = i.i_cloud AND vms.real_image = i.i_image
           AND EXISTS (SELECT 1 FROM s WHERE s.s_k = i.i_k AND s.s_state = vms.state)
       ),
       m AS (SELECT DISTINCT ON (i_vm, i_hash) * FROM ok ORDER BY i_vm, i_hash, i_k),
       -- The token rows m may use, locked in vm_id order (two replicas' batches of one VM set in different orders
       -- never wait on each other), as they are now: after a wait for a concurrent use, its used_at. A use is this
       -- statement's (fresh) when the row it locked had none.
       lk AS (
         SELECT bt.vm_id AS l_vm, bt.used_at AS l_used_at, bt.prev_used_at AS l_prev_used_at FROM boot_tokens bt
         WHERE bt.vm_id IN (SELECT m.i_vm FROM m WHERE m.v_retired IS NULL) ORDER BY bt.vm_id FOR UPDATE OF bt
       ),
       used AS (
         UPDATE boot_tokens SET
           used_at = CASE WHEN boot_tokens.token_hash = m.i_hash THEN COALESCE(boot_tokens.used_at, now()) ELSE boot_tokens.used_at END,
           used_version = CASE WHEN boot_tokens.token_hash = m.i_hash AND boot_tokens.used_at IS NULL THEN m.v_version ELSE boot_tokens.used_version END,
           prev_used_at = CASE WHEN boot_tokens.token_hash = m.i_hash THEN boot_tokens.prev_used_at ELSE COALESCE(boot_tokens.prev_used_at, now()) END,
           prev_used_version = CASE WHEN boot_tokens.token_hash <> m.i_hash AND boot_tokens.prev_used_at IS NULL THEN m.v_version ELSE boot_tokens.prev_used_version END
         FROM m JOIN lk ON lk.l_vm = m.i_vm
         -- A retired row (fleet state rm while it booted) uses no token: checked here, not in ok, where \`retired_at IS
         -- NULL\` with the cloud id let the planner read every live VM through vms_cloud_id (a partial index on both).
         WHERE boot_tokens.vm_id = m.i_vm AND m.v_retired IS NULL AND (
           (boot_tokens.token_hash = m.i_hash AND NOT ${leftBoot('m.i_vm', 'boot_tokens.issued_history', 'm.v_states')}
             AND (boot_tokens.used_at IS NULL OR (m.i_repeat > 0 AND boot_tokens.used_at > now() - m.i_repeat * interval '1 millisecond'
               AND m.v_version <= boot_tokens.used_version + 1)))
           OR (boot_tokens.prev_hash = m.i_hash AND NOT ${leftBoot('m.i_vm', 'boot_tokens.prev_issued_history', 'm.v_states')}
             AND (boot_tokens.prev_used_at IS NULL OR (m.i_repeat > 0 AND boot_tokens.prev_used_at > now() - m.i_repeat * interval '1 millisecond'
               AND m.v_version <= boot_tokens.prev_used_version + 1))))
         RETURNING m.i_k AS u_k, m.i_vm AS u_vm, m.i_hash AS u_hash, m.i_dc AS u_dc, m.i_cloud AS u_cloud, m.i_image AS u_image, m.i_reason AS u_reason,
           (CASE WHEN boot_tokens.token_hash = m.i_hash THEN lk.l_used_at ELSE lk.l_prev_used_at END) IS NULL AS u_fresh
       ),
       att AS (
         INSERT INTO boot_attempts (vm_id, data_center, cloud_id, image, approved, reason)
         SELECT u_vm, u_dc, u_cloud, u_image, true, u_reason FROM used WHERE u_fresh ORDER BY u_k
       )
       SELECT i.i_k AS k, (ok.i_k IS NOT NULL AND used.u_k IS NOT NULL) AS approved, (vms.id IS NOT NULL) AS found,
         -- Read only for a denied item whose row matched (a scalar subquery in a CASE branch runs only when reached):
         -- a join for every item cost the approvals, nearly all of them, a boot_tokens lookup each.
         CASE WHEN ok.i_k IS NOT NULL AND used.u_k IS NULL AND i.i_repeat > 0 THEN (
           SELECT CASE WHEN t.token_hash = i.i_hash AND t.used_at > now() - i.i_repeat * interval '1 millisecond' AND vms.version > t.used_version + 1 THEN t.used_version
                       WHEN t.prev_hash = i.i_hash AND t.prev_used_at > now() - i.i_repeat * interval '1 millisecond' AND vms.version > t.prev_used_version + 1
                         THEN t.prev_used_version
                  END
           FROM boot_tokens t WHERE t.vm_id = i.i_vm)
         END AS used_at_version,
         CASE WHEN ok.i_k IS NOT NULL AND used.u_k IS NULL THEN (
           SELECT (t.token_hash = i.i_hash AND ${leftBoot('t.vm_id', 't.issued_history', 'ok.v_states')}) OR (t.prev_hash = i.i_hash AND ${leftBoot('t.vm_id', 't.prev_issued_history', 'ok.v_states')})
           FROM boot_tokens t WHERE t.vm_id = i.i_vm)
         END AS left_boot,
         -- Whether a denied item's token is one the record holds for its VM (its last, or the one that one replaced unused):
         -- the boot token is judged first (bootDenial), so a caller without one is told apart from the VM itself.
         CASE WHEN vms.id IS NOT NULL AND used.u_k IS NULL THEN
           EXISTS (SELECT 1 FROM boot_tokens t WHERE t.vm_id = i.i_vm AND (t.token_hash = i.i_hash OR t.prev_hash = i.i_hash))
         END AS token_known,
         ${FULL_VM.list}
       FROM i LEFT JOIN vms ON vms.id = i.i_vm LEFT JOIN ok ON ok.i_k = i.i_k
         LEFT JOIN used ON used.u_vm = i.i_vm AND used.u_hash = i.i_hash AND (used.u_k = i.i_k OR i.i_repeat > 0)
       ORDER BY i.i_k`),
      [
        items.map((i) => i.vmId),
        items.map((i) => i.dataCenter),
        items.map((i) => i.cloudId),
        items.map((i) => i.image),
        items.map((i) => i.tokenHash),
        items.map((i) => i.reason),
        ...states,
        items.map((i) => Math.max(0, i.repeatWithinMs)),
        items.map((i) => i.stack),
      ],
    );
    return rows.map((r): BootCheckResult => {
      const vm = r.found ? vmFromRow(r) : undefined;
      if (r.approved && vm) return { approved: true, vm };
      return {
        approved: false,
        vm,
        ...(r.used_at_version !== null && r.used_at_version !== undefined ? { usedAtVersion: Number(r.used_at_version) } : {}),
        ...(r.left_boot === true ? { leftBoot: true as const } : {}),
        ...(r.token_known === true || r.token_known === false ? { tokenKnown: r.token_known } : {}),
      };
    });
  };

  return {
    authorizeBoots,

    async addBootAttempts(attempts) {
      if (attempts.length === 0) return;
      await db.query(
        `INSERT INTO boot_attempts (vm_id, data_center, cloud_id, image, approved, reason)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::text[])`,
        [
          attempts.map((a) => a.vmId),
          attempts.map((a) => a.dataCenter),
          attempts.map((a) => a.cloudId),
          attempts.map((a) => a.image),
          attempts.map((a) => a.approved),
          attempts.map((a) => a.reason),
        ],
      );
    },

    async bootAuthorized(vmId, cloudId, since) {
      const rows = await db.query<{ ok: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM boot_tokens t WHERE t.vm_id = $1 AND t.used_at IS NOT NULL
           AND EXISTS (SELECT 1 FROM boot_attempts a WHERE a.vm_id = t.vm_id AND a.cloud_id = $2 AND a.approved AND a.at >= t.created_at
             AND ($3::timestamptz IS NULL OR a.at > $3::timestamptz))) AS ok`,
        [vmId, cloudId, since ?? null],
      );
      return rows[0]?.ok === true;
    },

    async listBootAttempts(vmId, opts = {}) {
      const rows = await db.query<{
        vm_id: string | null;
        data_center: string;
        cloud_id: string | null;
        image: string | null;
        approved: boolean;
        reason: string;
        at: Date;
      }>('SELECT vm_id, data_center, cloud_id, image, approved, reason, at FROM boot_attempts WHERE vm_id = $1 ORDER BY id DESC LIMIT $2', [
        vmId,
        Math.max(0, Math.floor(opts.limit ?? 100)),
      ]);
      return rows.map((r) => ({ vmId: r.vm_id, dataCenter: r.data_center, cloudId: r.cloud_id, image: r.image, approved: r.approved, reason: r.reason, at: iso(r.at) }));
    },
  };
}
