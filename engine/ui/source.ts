// What the dashboard reads, and nothing else: a narrow read-only view of the
// record for one stack. The dashboard never holds a FleetRecord with write
// methods in reach; recordSource adapts one. Every read is bounded whatever
// the size of the stack, fleet or apply (the authority serves these pages on
// the event loop that answers its DMZ clients, and any read-only token may
// ask for them again and again): counts are summed by the record, lists are
// read a page at a time.
import type { DiagramInput } from './diagram.ts';
import type { UiBoot, UiHistory, UiJournalPage, UiLock, UiOverview, UiPlan, UiVm } from './pages.ts';

export interface UiSource {
  stack: string;
  /** The pack's name@version and lifecycle, for the diagram page. */
  pack: { name: string; lifecycle: DiagramInput };
  /**
   * The stack's live VMs (old VMs of a replace included): how many fleets have some, their sums per data center, and
   * the counts per fleet, data center and state of `limit` fleets from `offset` in name order.
   */
  overview(offset: number, limit: number): Promise<UiOverview>;
  /** `limit` live members of one fleet from `offset` (by index, a current VM before the old one it replaces), and how many it has. */
  fleetMembers(fleet: string, offset: number, limit: number): Promise<{ total: number; members: UiVm[] }>;
  /** The current (not deposed) live VM at a fleet and index. */
  vm(fleet: string, index: number): Promise<UiVm | undefined>;
  /** One address's history, oldest first (the newest `limit` rows). */
  history(address: string, limit: number): Promise<UiHistory[]>;
  /** The stack's drift rows (what `fleet refresh` found and recorded), newest first. */
  drift(limit: number): Promise<UiHistory[]>;
  /**
   * The stack's locks by fleet name: the first `limit`, or those of `fleets` only (a page's). Never all: an apply of
   * every fleet of a stack holds a lock per fleet (5,000 in bench:scale's stack).
   */
  listLocks(which: { limit: number } | { fleets: readonly string[] }): Promise<UiLock[]>;
  /** Newest first. */
  recentPlans(limit: number): Promise<UiPlan[]>;
  /** One apply of the stack by its plan id, however old; undefined when the stack has none. */
  plan(id: string): Promise<UiPlan | undefined>;
  /**
   * `limit` journal rows of an apply and its first `failures` failed ones, in the order written, with their counts. The
   * rows: right after the row of id `from.after`, right before `from.before` (a page's lastId and firstId: read from
   * there), or from `from.offset` (the rows before it read and skipped).
   */
  planJournal(planId: string, from: { offset: number } | { after: string } | { before: string }, limit: number, failures: number): Promise<UiJournalPage>;
  /** Newest first. */
  bootAttempts(vmId: string, limit: number): Promise<UiBoot[]>;
}
