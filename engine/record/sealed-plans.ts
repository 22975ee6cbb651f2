// Sealed plans registered with the authority (migration 7): the scope of a
// plan whose seal the authority verified, which it then admits requests for
// (engine/authority/plan-seals.ts). The authority writes and reads these
// rows; it trusts a row only when its MAC verifies under its own key, so the
// record holds nothing here that lets its other holders forge a registration.
import type { RecordSql } from './sql.ts';
import type { SealedPlanRow, SealedPlanStore } from './types.ts';

interface Row {
  stack: string;
  plan_id: string;
  digest: string;
  scope: unknown;
  mac: string;
  registered_at: Date | string;
}

function rowOf(r: Row): SealedPlanRow {
  const scope = typeof r.scope === 'string' ? (JSON.parse(r.scope) as unknown) : r.scope;
  return { stack: r.stack, planId: r.plan_id, digest: r.digest, scope: scope as SealedPlanRow['scope'], mac: r.mac, registeredAt: new Date(r.registered_at).toISOString() };
}

export function sealedPlanStore({ db }: RecordSql): SealedPlanStore {
  const read = async (stack: string, planId: string) => {
    const rows = await db.query<Row>('SELECT stack, plan_id, digest, scope, mac, registered_at FROM sealed_plans WHERE stack = $1 AND plan_id = $2', [stack, planId]);
    return rows.length ? rowOf(rows[0]) : undefined;
  };
  return {
    async registerSealedPlan(row) {
      await db.query(`INSERT INTO sealed_plans (stack, plan_id, digest, scope, mac) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (stack, plan_id) DO NOTHING`, [
        row.stack,
        row.planId,
        row.digest,
        JSON.stringify(row.scope),
        row.mac,
      ]);
      return (await read(row.stack, row.planId)) as SealedPlanRow;
    },
    sealedPlan: read,
  };
}
