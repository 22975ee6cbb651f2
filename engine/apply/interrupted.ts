// What an apply that died (SIGKILL, its runner lost) left open in the
// record: its steps `started`, unanswered or answered with their `done` rows
// still held (member.ts), and its plan `running` in
// the list of applies (fleet ui, docs/dashboard.md). The next apply that
// holds the locks of those fleets knows that apply is gone, whether it
// applies a fresh plan or a saved one, and closes both.
import { parseVmAddress } from '../model/index.ts';
import type { FleetRecord } from '../record/types.ts';

/** The detail of a `done` row closeInterrupted writes: the step was answered, its row held when the apply stopped. */
export const CARRIED_OUT_DETAIL = 'carried out: the record holds this edge under this plan; the apply stopped before journalling its answer';

/** Rows per journal write when closing steps. */
const JOURNAL_CHUNK = 500;

export interface ClosedApplies {
  /** The plans whose applies were recorded `interrupted` (those with steps closed first). */
  plans: string[];
  /** Steps closed: `failed` ("interrupted: …"), or `done` when the record shows them carried out (`carriedOut` of them). */
  steps: number;
  carriedOut: number;
  /** Members those steps were of. */
  members: string[];
}

/**
 * Closes the steps left `started` in `fleets` and records their applies
 * `interrupted`. Only those of `fleets`, whose locks the caller holds: steps
 * of other fleets may belong to an apply still running, and an apply holds
 * the locks of its fleets from before its first step to after its plan's end.
 * So does an apply still `running` that holds no lock of the stack at all,
 * with or without steps left open: one that lost its record or its lock
 * mid-way, whose own try to record its end found the record still down
 * (ApplyStoppedError), or one killed before its first step. Every apply
 * takes its locks under its plan's id before its plan starts and releases
 * them after it ends, so `running` without one is over.
 */
export async function closeInterrupted(record: FleetRecord, stack: string, fleets: readonly string[]): Promise<ClosedApplies> {
  const mine = new Set(fleets);
  const open = (await record.unfinishedSteps(stack)).filter((s) => s.status === 'started' && mine.has(parseVmAddress(s.address)?.fleet ?? ''));
  const plans = [...new Set(open.map((s) => s.planId))];
  // A member's `done` rows are held and written together (member.ts): a step
  // answered meanwhile is `started` still. Its VM's history holds the move of
  // its edge under its plan when it was carried out (the authority wrote it
  // at the DMZ client's report; an insert, at the create): closed `done`.
  const moves = new Map<string, Set<string>>();
  for (const address of new Set(open.map((s) => s.address))) {
    for (const h of await record.history(stack, address)) {
      if (h.outcome !== 'ok' || h.planId === null || (h.detail ?? '').startsWith('intent approved')) continue;
      const key = `${h.planId}\n${h.vmId}`;
      let set = moves.get(key);
      if (!set) moves.set(key, (set = new Set()));
      set.add(`${h.from ?? ''}\n${h.to}`);
    }
  }
  let carried = 0;
  const rows = open.map((s) => {
    if (!moves.get(`${s.planId}\n${s.vmId}`)?.has(`${s.from}\n${s.to}`)) return { ...s, status: 'failed' as const, detail: 'interrupted: the apply stopped before this step answered' };
    carried++;
    return { ...s, status: 'done' as const, detail: CARRIED_OUT_DETAIL };
  });
  // One INSERT per JOURNAL_CHUNK rows, in order: a killed apply of P x data
  // centers members can leave over a thousand steps open.
  for (let i = 0; i < rows.length; i += JOURNAL_CHUNK) await record.journal(rows.slice(i, i + JOURNAL_CHUNK));
  const locked = new Set((await record.listLocks(stack)).map((l) => l.planId));
  const orphans = (await record.listPlans(stack)).filter((p) => p.result === 'running' && !locked.has(p.id) && !plans.includes(p.id)).map((p) => p.id);
  for (const id of [...plans, ...orphans]) await record.finishPlan(id, 'interrupted').catch(() => {});
  // A member's steps go out together (a run), so one member may leave several unanswered.
  return { plans: [...plans, ...orphans], steps: open.length, carriedOut: carried, members: [...new Set(open.map((s) => s.address))] };
}
