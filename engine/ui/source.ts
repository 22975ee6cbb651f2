// What the dashboard reads, and nothing else: a narrow read-only view of the
// record for one stack. The dashboard never holds a FleetRecord with write
// methods in reach; recordSource adapts one. Every read is bounded whatever
// the size of the stack, fleet or apply (the authority serves these pages on
// the event loop that answers its DMZ clients, and any read-only token may
// ask for them again and again): counts are summed by the record, lists are
// read a page at a time.
import type { DiagramInput } from './diagram.ts';
import type { UiBoot, UiHistory, UiJournalPage, UiLock, UiPlan, UiVm, UiVmCount } from './pages.ts';

export interface UiSource {
  stack: string;
  /** The pack's name@version and lifecycle, for the diagram page. */
  pack: { name: string; lifecycle: DiagramInput };
  /** The stack's live VMs (old VMs of a replace included) counted per fleet, data center and state. */
  vmCounts(): Promise<UiVmCount[]>;
  /** `limit` live members of one fleet from `offset` (by index, a current VM before the old one it replaces), and how many it has. */
  fleetMembers(fleet: string, offset: number, limit: number): Promise<{ total: number; members: UiVm[] }>;
  /** The current (not deposed) live VM at a fleet and index. */
  vm(fleet: string, index: number): Promise<UiVm | undefined>;
  /** One address's history, oldest first (the newest `limit` rows). */
  history(address: string, limit: number): Promise<UiHistory[]>;
  /** The stack's drift rows (what `fleet refresh` found and recorded), newest first. */
  drift(limit: number): Promise<UiHistory[]>;
  listLocks(): Promise<UiLock[]>;
  /** Newest first. */
  recentPlans(limit: number): Promise<UiPlan[]>;
  /** One apply of the stack by its plan id, however old; undefined when the stack has none. */
  plan(id: string): Promise<UiPlan | undefined>;
  /** `limit` journal rows of an apply from `offset` and its first `failures` failed ones, in the order written, with their counts. */
  planJournal(planId: string, offset: number, limit: number, failures: number): Promise<UiJournalPage>;
  /** Newest first. */
  bootAttempts(vmId: string, limit: number): Promise<UiBoot[]>;
}
