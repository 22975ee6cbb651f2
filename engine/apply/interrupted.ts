// What an apply that died (SIGKILL, its runner lost) left open in the
// record: its steps `started` and never answered, and its plan `running` in
// the list of applies (fleet ui, docs/dashboard.md). The next apply that
// holds the locks of those fleets knows that apply is gone, whether it
// applies a fresh plan or a saved one, and closes both.
import { parseVmAddress } from '../model/index.ts';
import type { FleetRecord } from '../record/types.ts';

export interface ClosedApplies {
  /** The plans whose applies were recorded `interrupted`. */
  plans: string[];
  /** Steps closed (`failed`, "interrupted: …"). */
  steps: number;
  /** Members those steps were of. */
  members: string[];
}

/**
 * Closes the steps left `started` in `fleets` and records their applies
 * `interrupted`. Only those of `fleets`, whose locks the caller holds: steps
 * of other fleets may belong to an apply still running, and an apply holds
 * the locks of its fleets from before its first step to after its plan's end.
 */
export async function closeInterrupted(record: FleetRecord, stack: string, fleets: readonly string[]): Promise<ClosedApplies> {
  const mine = new Set(fleets);
  const open = (await record.unfinishedSteps(stack)).filter((s) => s.status === 'started' && mine.has(parseVmAddress(s.address)?.fleet ?? ''));
  const plans = [...new Set(open.map((s) => s.planId))];
  for (const s of open) {
    await record.journal({ ...s, status: 'failed', detail: 'interrupted: the apply stopped before this step answered' });
  }
  for (const id of plans) await record.finishPlan(id, 'interrupted').catch(() => {});
  // A member's steps go out together (a run), so one member may leave several unanswered.
  return { plans, steps: open.length, members: [...new Set(open.map((s) => s.address))] };
}
