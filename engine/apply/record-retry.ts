// fleet apply's record calls ride out a short outage of the record's
// PostgreSQL server (a failover drops every connection for a second or so):
// a call that failed for a lost or refused connection (a transient
// record.unreachable, engine/record/errors.ts) is tried again with backoff
// until the outage's retry budget is spent (FLEET_RETRY_BUDGET_MS, 60 s by
// default, as for the DMZ clients: providers/retry.ts). Only calls that are
// safe to repeat are retried. A write whose connection died around its
// COMMIT may or may not have been written; each one retried here is written
// so that doing it twice is doing it once:
//
// | call                                   | why a retry is safe                                                     |
// | -------------------------------------- | ----------------------------------------------------------------------- |
// | reads (READS below)                    | they write nothing                                                      |
// | journal                                | a try after the first is written `again`: skipped when a row of the     |
// |                                        | same plan, step and status is there (engine/record/journal.ts)          |
// | startPlan                              | the same call finds its own row (id, stack, digest, who, start)         |
// | finishPlan, setFleetProtection         | they set a value; again sets the same                                   |
// | acquireLocks                           | one lock id for every try: a try takes over the rows an earlier one     |
// |                                        | wrote (same id, host, pid), with a new fencing token                    |
// | handle.heartbeat, handle.release       | by lock id and fencing token: again renews or deletes the same rows,    |
// |                                        | never a newer holder's                                                  |
// | forceUnlock                            | deletes by lock id; again deletes nothing (answers false)               |
// | updateVm                               | at the version read: a try after one that was written meets a version   |
// |                                        | conflict; the VM read back then holds the patch: that row is the answer |
//
// Everything else passes through unretried: the VM and history writes
// (inserts, transitions, drift rows: the authority's, or `fleet refresh`'s
// before an apply starts any member), which a retry could double or refuse.
// PGlite never fails this way (it runs in the process): its calls pass
// through unchanged.
//
// The budget is per outage, not per call: every call failing in one outage
// gives up at the same moment, and the CLI is told once when an outage
// begins (onOutage) and once when it ends (onBack). An outage ends when a
// call succeeds; the next fault begins a new one, with a budget of its own.
// Once an outage's budget is spent, a call that fails is not retried for
// long (the apply has stopped; its last calls, its end and its locks, make
// one try each, docs/recovery.md): it gives up, but only after one more try
// at once. Its first try may have met a pooled connection that died with
// the outage (the server restarted) while the server is back, and nothing
// but a success ends the outage: without that try, the first call after the
// record came back gave up on such a connection, as every call did after it
// until one succeeded.
import { randomBytes } from 'node:crypto';
import { RecordUnreachableError, VersionConflictError, isTransientRecordFault } from '../record/errors.ts';
import type { FleetRecord, LockHandle, VmPatch, VmRow } from '../record/types.ts';
import { DEFAULT_RETRY_BUDGET_MS, backoffMs } from '../../providers/retry.ts';

export interface RecordRetryOptions {
  /** How long one outage may last before its calls give up (default DEFAULT_RETRY_BUDGET_MS, 60 s). */
  budgetMs?: number;
  /** First pause (default 100 ms), doubling up to maxDelayMs (default 2 s), equal jitter. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  random?: () => number;
  /** Told once when an outage begins: the fault the first call met, and the budget. */
  onOutage?: (fault: RecordUnreachableError, budgetMs: number) => void;
  /** Told once when a call succeeds after an outage: how long it lasted. */
  onBack?: (ms: number) => void;
}

/** The record's read-only calls: retried as they are. */
const READS = [
  'listVms',
  'listPlanVms',
  'readPlan',
  'getVm',
  'getVms',
  'findVm',
  'listFleets',
  'usage',
  'countVms',
  'countVmsPage',
  'fleetMembers',
  'checkBasis',
  'unfinishedSteps',
  'listPlans',
  'planJournal',
  'planJournalPage',
  'edgesInFlight',
  'deniedBoots',
  'history',
  'approvalOf',
  'listLocks',
  'findLock',
  'fencesOf',
  'schemaVersion',
] as const;

/** Writes written so that a second try is a no-op (see the table above). */
const IDEMPOTENT_WRITES = ['startPlan', 'finishPlan', 'setFleetProtection', 'forceUnlock'] as const;

/** Whether every field of `patch` holds in `row` (a retried updateVm whose first try was written). */
function holdsPatch(row: VmRow, patch: VmPatch): boolean {
  for (const [k, v] of Object.entries(patch) as [keyof VmPatch, unknown][]) {
    if (v === undefined) continue;
    if (k === 'retire') return false; // not told apart from a retire by someone else: left to the caller
    if (k === 'size') {
      const s = v as VmRow['size'];
      if (row.size.cpu !== s.cpu || row.size.memoryGiB !== s.memoryGiB || row.size.diskGiB !== s.diskGiB) return false;
    } else if (row[k] !== v) return false;
  }
  return true;
}

/**
 * `record` whose calls listed above are retried on a transient
 * record.unreachable, within one budget per outage. After the budget, the
 * call throws record.unreachable (not transient any more) saying how long it
 * was retried.
 */
export function retryingRecord<R extends FleetRecord>(record: R, opts: RecordRetryOptions = {}): R {
  const budgetMs = opts.budgetMs ?? DEFAULT_RETRY_BUDGET_MS;
  const baseMs = opts.baseDelayMs ?? 100;
  const maxMs = opts.maxDelayMs ?? 2_000;
  const random = opts.random ?? Math.random;
  /** The outage going on: when its first call failed, and whether the budget is spent. */
  let outage: { since: number } | undefined;
  /** Outages ended so far: a try begun before the last one ended that fails now belongs to it. */
  let ended = 0;

  async function retried<T>(call: () => Promise<T>, afterRetry?: (err: unknown) => Promise<T>): Promise<T> {
    let attempt = 0;
    /** Whether its first try failed after the outage's budget was spent. */
    let late = false;
    for (;;) {
      const epoch = ended;
      try {
        const out = await call();
        if (outage !== undefined) {
          const ms = Date.now() - outage.since;
          outage = undefined;
          ended++;
          opts.onBack?.(ms);
        }
        return out;
      } catch (err) {
        if (!isTransientRecordFault(err)) {
          if (attempt > 0 && afterRetry) return afterRetry(err);
          throw err;
        }
        attempt++;
        // Begun before the record came back (a connection that died with the outage): one more try at once.
        if (outage === undefined && epoch !== ended) continue;
        const now = Date.now();
        if (outage === undefined) {
          outage = { since: now };
          opts.onOutage?.(err, budgetMs);
        }
        const left = outage.since + budgetMs - now;
        if (left <= 0) {
          // Its first try failed once the budget was spent: one more at once, on another connection (see the top).
          if (attempt === 1) {
            late = true;
            continue;
          }
          const s = Math.round((now - outage.since) / 100) / 10;
          const budget = `the retry budget (FLEET_RETRY_BUDGET_MS, ${budgetMs / 1000} s)`;
          throw new RecordUnreachableError(
            late
              ? `${err.diagnostics[0].detail} The record has been unreachable for ${s} s, past ${budget}: tried twice, not retried further.`
              : `${err.diagnostics[0].detail} Retried for ${s} s, ${budget}.`,
            false,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(backoffMs(attempt - 1, baseMs, maxMs, random), left)));
      }
    }
  }

  const handle = (h: LockHandle): LockHandle => ({
    ...h,
    heartbeat: () => retried(() => h.heartbeat()),
    release: () => retried(() => h.release()),
  });

  const wrapped = new Map<PropertyKey, unknown>();
  const fn = (name: string) => (record as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>)[name].bind(record);
  for (const name of [...READS, ...IDEMPOTENT_WRITES]) {
    if (typeof (record as unknown as Record<string, unknown>)[name] !== 'function') continue;
    const f = fn(name);
    wrapped.set(name, (...args: unknown[]) => retried(() => f(...args)));
  }
  const journal = fn('journal');
  wrapped.set('journal', (rows: unknown) => {
    let tries = 0;
    return retried(() => journal(rows, { again: tries++ > 0 }));
  });
  const acquire = fn('acquireLocks');
  wrapped.set('acquireLocks', async (stack: string, fleets: readonly string[], holder: unknown, o: { lockId?: string } = {}) => {
    const lockId = o.lockId ?? randomBytes(4).toString('hex');
    return handle((await retried(() => acquire(stack, fleets, holder, { ...o, lockId }))) as LockHandle);
  });
  const update = fn('updateVm');
  const getVm = fn('getVm');
  wrapped.set('updateVm', (id: string, expectedVersion: number, patch: VmPatch, ctx: unknown) =>
    retried(
      () => update(id, expectedVersion, patch, ctx),
      async (err) => {
        if (!(err instanceof VersionConflictError)) throw err;
        const row = (await retried(() => getVm(id))) as VmRow | undefined;
        if (row === undefined || !holdsPatch(row, patch)) throw err;
        return row;
      },
    ),
  );
  return new Proxy(record, {
    get(target, prop, receiver) {
      return wrapped.has(prop) ? wrapped.get(prop) : Reflect.get(target, prop, receiver);
    },
  });
}
