// Request ids claimed by authority replicas (docs/operations.md, "Replicas"):
// the record, not a replica's memory, binds a request id of a data center to
// one request. One authority process keeps that rule in memory (its approvals
// waiting for their reports, Authority.hold); replicas each keep their own, so
// two requests under one id sent to two replicas at once would both be
// approved. With replicas, each edge request claims its id here before it is
// decided: the primary key (stack, data center, request id) makes the first
// claim win, and INSERT … ON CONFLICT decides in one statement, under the
// key's lock, whether a later claim is the same request again (taken) or
// another one (refused), so of two replicas deciding at once only one goes on.
import type { RecordSql } from './sql.ts';
import type { ClaimStore } from './types.ts';

export function claimStore({ db }: RecordSql): ClaimStore {
  return {
    async claimRequests(stack, items, ttlMs) {
      if (items.length === 0) return [];
      // One row per key: concurrent sendings of one request share a batch (ON CONFLICT may touch a row once per statement).
      const byKey = new Map<string, (typeof items)[number]>();
      for (const it of items) byKey.set(`${it.dataCenter}\u0000${it.requestId}`, it);
      const uniq = [...byKey.values()];
      const cols = [uniq.map((c) => c.dataCenter), uniq.map((c) => c.requestId), uniq.map((c) => c.vmId), uniq.map((c) => c.kind), uniq.map((c) => c.from), uniq.map((c) => c.to), uniq.map((c) => c.size)];
      // Taken: a new key, an expired claim, or the same request sent again (its claim lives on from now).
      const taken = await db.query<{ data_center: string; request_id: string }>(
        `INSERT INTO request_claims AS c (stack, data_center, request_id, vm_id, kind, from_state, to_state, size, expires_at)
         SELECT $1, i.dc, i.req, i.vm, i.kind, i.from_state, i.to_state, i.size, now() + $9::double precision * interval '1 millisecond'
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) AS i(dc, req, vm, kind, from_state, to_state, size)
         ORDER BY i.dc, i.req
         ON CONFLICT (stack, data_center, request_id) DO UPDATE
           SET vm_id = EXCLUDED.vm_id, kind = EXCLUDED.kind, from_state = EXCLUDED.from_state, to_state = EXCLUDED.to_state, size = EXCLUDED.size, expires_at = EXCLUDED.expires_at
           WHERE c.expires_at <= now()
              OR (c.vm_id = EXCLUDED.vm_id AND c.kind = EXCLUDED.kind AND c.from_state IS NOT DISTINCT FROM EXCLUDED.from_state
                  AND c.to_state IS NOT DISTINCT FROM EXCLUDED.to_state AND c.size IS NOT DISTINCT FROM EXCLUDED.size)
         RETURNING c.data_center, c.request_id`,
        [stack, ...cols, ttlMs],
      );
      const ok = new Set(taken.map((t) => `${t.data_center}\u0000${t.request_id}`));
      const lost = uniq.filter((c) => !ok.has(`${c.dataCenter}\u0000${c.requestId}`));
      const holders = new Map<string, { vmId: string; kind: string; from: string | null; to: string | null; size: string | null }>();
      if (lost.length > 0) {
        // The rare case (a caller reusing an id): what holds each id lost, for its refusal.
        const rows = await db.query<{ data_center: string; request_id: string; vm_id: string; kind: string; from_state: string | null; to_state: string | null; size: string | null }>(
          `SELECT c.data_center, c.request_id, c.vm_id, c.kind, c.from_state, c.to_state, c.size FROM request_claims c
           JOIN unnest($2::text[], $3::text[]) AS i(dc, req) ON c.data_center = i.dc AND c.request_id = i.req
           WHERE c.stack = $1`,
          [stack, lost.map((c) => c.dataCenter), lost.map((c) => c.requestId)],
        );
        for (const r of rows) holders.set(`${r.data_center}\u0000${r.request_id}`, { vmId: r.vm_id, kind: r.kind, from: r.from_state, to: r.to_state, size: r.size });
      }
      return items.map((it) => {
        const key = `${it.dataCenter}\u0000${it.requestId}`;
        if (ok.has(key)) return undefined;
        // Gone between the two statements (expired and pruned): held a moment ago all the same.
        return holders.get(key) ?? { vmId: '?', kind: '?', from: null, to: null, size: null };
      });
    },

    async pruneRequestClaims() {
      await db.query('DELETE FROM request_claims WHERE expires_at <= now()');
    },
  };
}
