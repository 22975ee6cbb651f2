// The lock store: per-fleet leases, taken with INSERT … ON CONFLICT so two
// takers never both win, all of an apply's fleets or none.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { processAlive } from '../durability/index.ts';
import { FleetError, diag, fail } from '../diags/index.ts';
import { iso, managedBySql } from './rows.ts';
import type { RecordSql, SqlAdapter } from './sql.ts';
import type { LockHandle, LockRow, LockStore } from './types.ts';

interface LockDb {
  lock_id: string;
  stack: string;
  fleet: string;
  who: string;
  host: string;
  pid: number;
  plan_id: string | null;
  since: Date | string;
  expires_at: Date | string;
  fencing_token: string | number;
}

function toLock(r: LockDb): LockRow {
  return {
    lockId: r.lock_id,
    stack: r.stack,
    fleet: r.fleet,
    who: r.who,
    host: r.host,
    pid: Number(r.pid),
    planId: r.plan_id,
    since: iso(r.since),
    expiresAt: iso(r.expires_at),
    fencingToken: Number(r.fencing_token),
  };
}

/**
 * A lock's holder as people read it: `who@host pid N`. fleet apply's `who`
 * is `user@host` already (its actor), which is not repeated (`root@ci-7@ci-7`).
 */
export function lockHolder(l: Pick<LockRow, 'who' | 'host' | 'pid'>): string {
  const who = l.who.endsWith(`@${l.host}`) ? l.who : `${l.who}@${l.host}`;
  return `${who} pid ${l.pid}`;
}

/**
 * Whether a lock's apply is known gone: its process, of this host, no longer
 * runs (an apply killed with SIGKILL). A lock of another host cannot be told
 * so from here.
 */
export function holderGone(l: Pick<LockRow, 'host' | 'pid'>): boolean {
  return l.host === hostname() && l.pid !== process.pid && !processAlive(l.pid);
}

/**
 * The lock-held detail: who holds it, since when, and how to break it. A holder
 * known gone (a killed apply of this host, holderGone) is said to be: `fleet
 * state rm`, `fleet import` and `fleet unlock` do not break its lock themselves,
 * and "wait for that apply to finish" sent the user waiting for a dead process.
 */
export function lockHeldDetail(l: LockRow): string {
  const plan = l.planId ? ` for plan ${l.planId}` : '';
  const next = holderGone(l)
    ? `That process no longer runs on this host (an apply killed or lost): \`fleet unlock ${l.lockId}\` releases the lock, or the next \`fleet apply\` of the fleet breaks it.`
    : `Wait for that apply to finish or its lease to expire; if it is gone, run \`fleet unlock ${l.lockId}\`.`;
  return `fleet ${l.fleet} of stack ${l.stack} is locked by ${lockHolder(l)}${plan} since ${l.since} (lock id ${l.lockId}, lease until ${l.expiresAt}). ${next}`;
}

/** Thrown inside a lock transaction to roll it back when a fleet is held. */
class HeldSignal {
  constructor(readonly row: LockRow) {}
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function handle(db: SqlAdapter, stack: string, fleets: string[], lockId: string, leaseMs: number, fencingToken: number): LockHandle {
  return {
    lockId,
    fleets: [...fleets],
    fencingToken,
    // Both are idempotent and touch only this acquisition's rows (its lock id
    // and fencing token), so fleet apply retries them on a lost connection
    // (engine/apply/record-retry.ts): a renewal again extends the same lease;
    // a release again finds nothing; neither can touch a newer holder's lock.
    heartbeat: async () => {
      const kept = await db.query<{ fleet: string }>(
        `UPDATE locks SET expires_at = now() + $4 * interval '1 millisecond'
         WHERE lock_id = $1 AND stack = $2 AND fleet = ANY($3::text[]) AND fencing_token = $5 RETURNING fleet`,
        [lockId, stack, fleets, leaseMs, fencingToken],
      );
      if (kept.length !== fleets.length) {
        const have = new Set(kept.map((k) => k.fleet));
        const lost = fleets.filter((f) => !have.has(f));
        fail(
          'record.lock-lost',
          `lock ${lockId} no longer holds fleet${lost.length > 1 ? 's' : ''} ${lost.join(', ')} of stack ${stack}: its lease expired and another apply took it, or it was unlocked.`,
          { address: lost[0] },
        );
      }
    },
    release: async () => {
      await db.query('DELETE FROM locks WHERE lock_id = $1 AND stack = $2 AND fencing_token = $3', [lockId, stack, fencingToken]);
    },
  };
}

export function lockStore({ db }: RecordSql): LockStore {
  return {
    async acquireLocks(stack, fleets, holder, opts = {}) {
      const leaseMs = opts.leaseMs ?? 30_000;
      const timeoutMs = opts.timeoutMs ?? 0;
      const sorted = [...new Set(fleets)].sort();
      // A caller's lock id makes the call idempotent: the same call again (a
      // retry after its connection died around COMMIT, when nobody knows
      // whether it took the locks) takes over the rows it may have written,
      // same id, host and pid, with a new fencing token.
      const lockId = opts.lockId ?? randomBytes(4).toString('hex');
      const deadline = Date.now() + timeoutMs;
      let backoff = 25;
      for (;;) {
        const held = await db
          .transaction(async (q) => {
            // One token per acquisition, from a sequence: larger than any
            // taken before, by any process (a rolled-back try only leaves a gap).
            const [{ t }] = await q.query<{ t: string | number }>(`SELECT nextval('fencing_tokens') AS t`);
            const token = Number(t);
            for (const fleet of sorted) {
              const won = await q.query(
                `INSERT INTO locks (stack, fleet, lock_id, who, host, pid, plan_id, since, expires_at, fencing_token)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now() + $8 * interval '1 millisecond', $9)
                 ON CONFLICT (stack, fleet) DO UPDATE SET
                   lock_id = EXCLUDED.lock_id, who = EXCLUDED.who, host = EXCLUDED.host, pid = EXCLUDED.pid,
                   plan_id = EXCLUDED.plan_id, since = EXCLUDED.since, expires_at = EXCLUDED.expires_at,
                   fencing_token = EXCLUDED.fencing_token
                 WHERE locks.expires_at < now()
                    OR (locks.lock_id = EXCLUDED.lock_id AND locks.host = EXCLUDED.host AND locks.pid = EXCLUDED.pid)
                 RETURNING fleet`,
                [stack, fleet, lockId, holder.who, holder.host, holder.pid, holder.planId, leaseMs, token],
              );
              if (won.length === 0) {
                const cur = await q.query<LockDb>('SELECT * FROM locks WHERE stack = $1 AND fleet = $2', [stack, fleet]);
                throw new HeldSignal(toLock(cur[0]));
              }
            }
            await q.query(
              `INSERT INTO lock_fences (stack, fleet, token) SELECT $1, f, $3 FROM unnest($2::text[]) AS f
               ON CONFLICT (stack, fleet) DO UPDATE SET token = GREATEST(lock_fences.token, EXCLUDED.token)`,
              [stack, sorted, token],
            );
            return token;
          })
          .catch((err: unknown) => {
            if (err instanceof HeldSignal) return err.row;
            throw err;
          });
        if (typeof held === 'number') return handle(db, stack, sorted, lockId, leaseMs, held);
        const left = deadline - Date.now();
        if (left <= 0) throw new FleetError(diag('record.lock-held', lockHeldDetail(held), { address: held.fleet }));
        await sleep(Math.min(backoff, left));
        backoff = Math.min(backoff * 2, 500);
      }
    },

    async listLocks(stack, opts = {}) {
      const where = ['stack = $1'];
      const params: unknown[] = [stack];
      if (opts.fleets !== undefined) where.push(`fleet = ANY($${params.push([...opts.fleets])}::text[])`);
      if (opts.planIds !== undefined) where.push(`plan_id = ANY($${params.push([...opts.planIds])}::text[])`);
      const limit = opts.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(opts.limit))}` : '';
      const rows =
        opts.planIds !== undefined
          ? // One row per plan and holder, its first fleet's; then by fleet, as every other answer.
            await db.query<LockDb>(`SELECT * FROM (SELECT DISTINCT ON (plan_id, host, pid) * FROM locks WHERE ${where.join(' AND ')} ORDER BY plan_id, host, pid, fleet) l ORDER BY fleet${limit}`, params)
          : await db.query<LockDb>(`SELECT * FROM locks WHERE ${where.join(' AND ')} ORDER BY fleet${limit}`, params);
      return rows.map(toLock);
    },

    async findLock(lockId) {
      const rows = await db.query<LockDb>('SELECT * FROM locks WHERE lock_id = $1 ORDER BY stack, fleet', [lockId]);
      return rows.map(toLock);
    },

    async forceUnlock(lockId) {
      const rows = await db.query('DELETE FROM locks WHERE lock_id = $1 RETURNING fleet', [lockId]);
      return rows.length > 0;
    },

    async fencesOf(stack, fleets) {
      const rows = await db.query<{ fleet: string; token: string | number; held: boolean; managed_by: string | null }>(
        `SELECT f.fleet, f.token, (l.expires_at IS NOT NULL AND l.expires_at >= now()) AS held, ${managedBySql('fl')} AS managed_by
         FROM lock_fences f LEFT JOIN locks l ON l.stack = f.stack AND l.fleet = f.fleet AND l.fencing_token = f.token
         LEFT JOIN fleets fl ON fl.stack = f.stack AND fl.fleet = f.fleet
         WHERE f.stack = $1 AND f.fleet = ANY($2::text[]) ORDER BY f.fleet`,
        [stack, [...new Set(fleets)]],
      );
      return rows.map((r) => ({ fleet: r.fleet, token: Number(r.token), held: r.held === true, managedBy: r.managed_by ?? null }));
    },
  };
}
