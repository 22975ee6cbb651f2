// What the dashboard reads, and nothing else: a narrow read-only view of the
// record for one stack. The dashboard never holds a FleetRecord with write
// methods in reach; recordSource adapts one.
import type { DiagramInput } from './diagram.ts';
import type { UiBoot, UiHistory, UiJournal, UiLock, UiPlan, UiVm } from './pages.ts';

export interface UiSource {
  stack: string;
  /** The pack's name@version and lifecycle, for the diagram page. */
  pack: { name: string; lifecycle: DiagramInput };
  /** The stack's live VMs (old VMs of a replace included), or one fleet's: its page and its VMs' never read the others. */
  listVms(fleet?: string): Promise<UiVm[]>;
  /** One address's history, oldest first (the newest `limit` rows). */
  history(address: string, limit: number): Promise<UiHistory[]>;
  /** The stack's drift rows (what `fleet refresh` found and recorded), newest first. */
  drift(limit: number): Promise<UiHistory[]>;
  listLocks(): Promise<UiLock[]>;
  /** Newest first. */
  recentPlans(limit: number): Promise<UiPlan[]>;
  /** One apply of the stack by its plan id, however old; undefined when the stack has none. */
  plan(id: string): Promise<UiPlan | undefined>;
  planJournal(planId: string): Promise<UiJournal[]>;
  /** Newest first. */
  bootAttempts(vmId: string, limit: number): Promise<UiBoot[]>;
}
