// The record's contract: what the planner, the authority and apply may ask of
// it, as one small interface per store (VMs, history, locks, plans, boot);
// FleetRecord is all of them. Both backends (PGlite and PostgreSQL) implement
// it with the same SQL (record.ts, one file per store). If you add an
// operation here, add it to the contract suite in
// engine/record/record.contract.test.ts so it runs on both backends.
import type { FleetError } from '../diags/index.ts';
import type { PlanBasis } from '../model/index.ts';
import type { Approval, AppliedPlan, BootAttempt, BootAttemptRow, BootCheck, BootCheckResult, Budget, ChangeContext, FleetFence, FleetRow, FleetMembersPage, FleetShape, GrowItem, HistoryItem, HistoryRow, InsertItem, JournalPage, JournalRow, LockHandle, LockHolder, LockRow, NewVm, Outcome, PlanRead, PlanVmRow, SealedPlanRow, StackIdentity, StaleEntry, TransitionItem, UsageRow, VmCountRow, VmCountsPage, VmPatch, VmRow } from './shapes.ts';

export type * from './shapes.ts';

/** Reads of VMs and fleets. */
export interface VmReader {
  /** Live (not retired) VMs of a stack, only the given fleets when `fleets` is set. Ordered by fleet, index. */
  listVms(stack: string, opts?: { fleets?: readonly string[]; includeRetired?: boolean }): Promise<VmRow[]>;
  /**
   * listVms for planning: the same live VMs in the same order, as PlanVmRow.
   * `fleets` as in listVms.
   */
  listPlanVms(stack: string, opts?: { fleets?: readonly string[] }): Promise<PlanVmRow[]>;
  /**
   * What a plan reads of the live VMs of the fleets in `fleets` (every fleet
   * of the stack when absent), in one snapshot: the rows of members that
   * differ from their fleet's shape, in listPlanVms' order, and the members
   * that match it summed per fleet, data center and state, in that order. A
   * fleet with no shape, or whose live members not deposed and below its
   * count are fewer than its count (new members need the free indexes), has
   * all of its rows read. `splitPlanRows` (./plan-read.ts) is the definition.
   */
  readPlan(stack: string, opts: { fleets?: readonly string[]; shapes: readonly FleetShape[] }): Promise<PlanRead>;
  getVm(id: string): Promise<VmRow | undefined>;
  /** getVm for many ids in one query, in order (undefined where unknown). */
  getVms(ids: readonly string[]): Promise<(VmRow | undefined)[]>;
  /** The live VM at an address. */
  findVm(stack: string, address: string): Promise<VmRow | undefined>;
  listFleets(stack: string, fleets?: readonly string[]): Promise<FleetRow[]>;
  /**
   * Live VMs of a stack summed per fleet and data center, leaving out the
   * fleets in `excludeFleets`. Ordered by fleet, data center. With `byOwner`:
   * summed per owner (the fleets table's) and data center instead, `fleet`
   * '' in every row; ordered by owner, data center.
   */
  usage(stack: string, opts: { excludeFleets: readonly string[]; byOwner?: boolean }): Promise<UsageRow[]>;
  /**
   * Live VMs of a stack (deposed ones included, as listVms) counted per
   * fleet, data center and state, in SQL (a GROUP BY over the stack's VMs).
   * Only the given fleets when `fleets` is set. Ordered by fleet, data
   * center, state (code point order).
   */
  countVms(stack: string, opts?: { fleets?: readonly string[] }): Promise<VmCountRow[]>;
  /**
   * The dashboard's overview: how many fleets of the stack have live VMs,
   * the stack's live VMs per data center, and countVms' rows of `limit` of
   * those fleets from `offset` in name (code point) order. The fleets and
   * the totals come from one snapshot of vm_usage read at most
   * OVERVIEW_CACHE_MS (5 s) before, and anew after any statement of this
   * process that may have changed vm_usage (overview-cache.ts): never stale
   * after this process's writes, at most 5 s behind another process's. The
   * page's rows are read on each call. What it reads grows with the VMs of
   * the page's fleets and, once per 5 s at most, with the stack's vm_usage
   * rows (fleets x data centers), never with the stack's VMs; it adds
   * nothing to any write.
   */
  countVmsPage(stack: string, page: { offset: number; limit: number }): Promise<VmCountsPage>;
  /**
   * `limit` live members of one fleet (deposed ones included) from `offset`,
   * ordered by index, at one index the current VM before an old one being
   * replaced (deposed), then by creation; only those at `index` when set.
   * `total`: how many there are in all (the dashboard's pager). The rows are
   * listVms' rows.
   */
  fleetMembers(stack: string, fleet: string, page: { offset: number; limit: number; index?: number }): Promise<FleetMembersPage>;
}

/**
 * Writes of VMs. Each checks `expectedVersion` and throws (or answers, for a
 * batch) `VersionConflictError` on mismatch, never overwriting silently;
 * each state change writes its history row and bumps its fleet's version in
 * the same statement.
 */
export interface VmWriter {
  /**
   * Inserts a VM in its initial state with a history row (from null); bumps the fleet's version. Throws VersionConflictError if the address is live already.
   * With `budget`, throws BudgetExceededError (inserting nothing) when the VM does not fit; a replacement counts without the VM it replaces.
   * Throws OwnerMismatchError (inserting nothing) when the fleet's row holds another owner than `vm.owner`; never changes a fleet's owner.
   */
  insertVm(vm: NewVm, ctx: ChangeContext, budget?: Budget): Promise<VmRow>;
  /** Seeding (benchmarks, imports): insertVm for many VMs in one transaction, all or none; each touched fleet's version is bumped once. Returns the count. */
  bulkInsertVms(vms: readonly NewVm[], ctx: ChangeContext, batchSize?: number): Promise<number>;
  /**
   * Many insertVm calls (none replacing) in one statement: per item, in
   * order, the new row or the error insertVm would have thrown. An item's
   * onward rows (Onward) are written with its insert or not at all.
   */
  insertVms(items: readonly InsertItem[]): Promise<(VmRow | FleetError)[]>;
  /** One state change plus its history row, atomically. */
  transitionVm(id: string, expectedVersion: number, to: string, ctx: ChangeContext & { outcome?: Outcome }, patch?: VmPatch): Promise<VmRow>;
  /**
   * Many transitionVm calls in one statement (one round trip, one commit):
   * per item, in order, the moved row, or the error transitionVm would have
   * thrown (VersionConflictError, record.vm-not-found); the other items are
   * written all the same. Ids must be distinct within a batch. An item's
   * onward rows (Onward) and boot token are written with its transition or
   * not at all; the row answered is the VM as the item leaves it.
   */
  transitionVms(items: readonly TransitionItem[]): Promise<(VmRow | FleetError)[]>;
  /**
   * `fleet import`: a VM that exists in the cloud becomes the live member at
   * its address, in the state the cloud reports, with its cloud id and a
   * history row (outcome `imported`), in one transaction. Its id is the
   * cloud VM's (the boot check and the disk key go by it): a retired row of
   * that id (a VM forgotten by `fleet state rm`) is brought back with the
   * new values. Throws VersionConflictError when the address is live, or the
   * id is a live VM already.
   */
  /**
   * With `budget` (its owner limits; fleet import), the owner's usage is
   * checked in the same transaction under the stack's budget lock, as
   * insertVm checks a create: past it, BudgetExceededError and nothing written.
   */
  adoptVm(vm: NewVm & { id: string; cloudId: string }, ctx: ChangeContext, budget?: Budget): Promise<VmRow>;
  /** A change that is not a state change (cloud id, size, spec hash…). */
  updateVm(id: string, expectedVersion: number, patch: VmPatch, ctx: ChangeContext): Promise<VmRow>;
  /**
   * Records whether a fleet is protected (FleetRow.protected) and who owns
   * it (FleetRow.owner), as the fleet spec an apply carries out says,
   * creating the fleet's row when it has none. `fleet apply` (which holds the
   * record's credentials) is the only writer of a fleet's owner once its row
   * exists: creates must name this owner (OwnerMismatchError). Taken under
   * the stack's budget lock (budget.ts), so no guarded insert is half-way
   * through counting the fleet under its old owner. Not a change of any
   * member, but of the fleet: when the row's protection or owner changes
   * (or the row is made) the fleet's version is bumped, so a saved plan
   * that holds the fleet in its basis is stale (checkBasis); writing what
   * the row holds already bumps nothing.
   */
  setFleetProtection(stack: string, fleet: string, owner: string, isProtected: boolean): Promise<void>;
}

export type VmStore = VmReader & VmWriter;

/** History rows that are not state changes, and reading history. */
export interface HistoryStore {
  /**
   * A history row with no state change (a vetoed request, a denied boot, drift).
   * With `expectedVersion`, written only while the VM is at that version
   * (VersionConflictError otherwise): the authority's intent row doubles as
   * the check that what it decided on is still the record's current row.
   * With `once` (and a request id, no `expectedVersion`), written only when
   * the VM has no row of the same actor under that request id, checked under
   * the VM row's lock: a report sent to two authority replicas at once writes
   * its failure once.
   */
  addHistory(vmId: string, row: { from: string | null; to: string; outcome: Outcome } & ChangeContext, expectedVersion?: number, opts?: { once?: boolean }): Promise<void>;
  /**
   * Many addHistory calls in one statement: per item, in order, undefined
   * when written, else the error addHistory would have thrown. An item's
   * boot token is stored only when its row is written.
   */
  addHistoryMany(items: readonly HistoryItem[]): Promise<(FleetError | undefined)[]>;
  /**
   * The approval of request `requestId` about VM `vmId`: its intent row (an
   * ok row the authority wrote under that request id), or undefined when the
   * authority never approved it. How a report is matched to its approval
   * when the authority no longer remembers it (a restart in between).
   */
  approvalOf(vmId: string, requestId: string): Promise<Approval | undefined>;
  /**
   * The live VMs of `fleets` whose newest history row is an approval the
   * authority wrote (`intent approved: …`) with no report after it: an edge
   * approved and not yet reported, which a DMZ client may be carrying out
   * now (an interrupted apply's run goes on there). By address.
   */
  edgesInFlight(stack: string, fleets: readonly string[]): Promise<{ address: string; detail: string }[]>;
  /**
   * Of the live VMs `vmIds`, those whose latest boot was denied: after the
   * VM's latest move into one of `bootedStates` (the states the pack's `boot`
   * edges enter: `Starting`; that boot's start: its boot edge's report, a
   * drift, an import), its history holds both
   * - the DMZ client's failure report of that boot with error code
   *   `driver.boot-denied` (its `code`, migration 18: the driver saw the
   *   VM's own agent denied), from one of `bootedStates`, and
   * - a `denied` row the authority wrote while the VM was in one of them.
   * The planner deletes and creates such a VM again instead of booting it
   * again (docs/recovery.md, BootFailed). A denial alone does not count: the
   * boot endpoint is open to the DMZ network, and anyone who knows the VM's
   * id can have a boot check for it denied while it boots; nor does a denial
   * of a VM that was not in that boot (an agent asking after awaitReady gave
   * up, the record BootFailed; a stale agent before the boot edge). A
   * failure without a code (written before migration 18, or reported by a
   * DMZ client older than the field) is not a denial: its VM is booted again.
   * In vmIds' order.
   */
  deniedBoots(vmIds: readonly string[], bootedStates: readonly string[]): Promise<string[]>;
  /**
   * Oldest first; with `limit`, the newest `limit` rows (still oldest first);
   * with `outcome`, only rows of that outcome (the dashboard's drift). Includes
   * rows of retired VMs at the address.
   */
  history(stack: string, address?: string, opts?: { limit?: number; outcome?: Outcome }): Promise<HistoryRow[]>;
}

/** Per-fleet leases held by an apply. */
export interface LockStore {
  /**
   * Takes all the fleets' locks or none. Waits up to `timeoutMs`, then throws FleetError(record.lock-held) naming the holder.
   * `lockId` (default: a new random one): called again with the same id, host and pid, it takes over the locks
   * it took before (with a new fencing token), so a retry whose first try's outcome is unknown is safe.
   */
  acquireLocks(stack: string, fleets: readonly string[], holder: LockHolder, opts?: { leaseMs?: number; timeoutMs?: number; lockId?: string }): Promise<LockHandle>;
  /**
   * The stack's locks by fleet name; bounded reads for the dashboard (a whole-stack apply holds one per fleet):
   * `fleets`: those fleets' only; `planIds`: only those plans' locks, and of each plan one per holder (host and
   * pid), its first fleet's (whether a plan's holder is gone, without reading every fleet it locked); `limit`: at
   * most that many.
   */
  listLocks(stack: string, opts?: { fleets?: readonly string[]; planIds?: readonly string[]; limit?: number }): Promise<LockRow[]>;
  /** Like listLocks, over every stack, only the rows of one lock id. */
  findLock(lockId: string): Promise<LockRow[]>;
  /** Returns false when no such lock exists. */
  forceUnlock(lockId: string): Promise<boolean>;
  /** Per fleet asked for that was ever locked: its latest fencing token and whether that lock is held now (the authority's fence check). */
  fencesOf(stack: string, fleets: readonly string[]): Promise<FleetFence[]>;
}

/** What apply records of a plan: whether it is still valid, its run, and the journal of its steps. */
export interface PlanStore {
  /** What changed since `basis` was taken (the plan's basis); empty when the plan is still valid. */
  checkBasis(stack: string, basis: PlanBasis): Promise<StaleEntry[]>;
  startPlan(plan: Omit<AppliedPlan, 'finishedAt' | 'result'>): Promise<void>;
  finishPlan(id: string, result: AppliedPlan['result']): Promise<void>;
  /**
   * Writes one journal row, or several (in order, in one INSERT: a member's
   * `started` rows). Group-committed: resolves once the rows are committed;
   * concurrent calls share one INSERT. `again`: these rows may be in already
   * (a try whose connection died around its COMMIT): each is written only if
   * no row of the same plan, step and status is there.
   */
  journal(rows: Omit<JournalRow, 'at'> | readonly Omit<JournalRow, 'at'>[], opts?: { again?: boolean }): Promise<void>;
  /** Steps whose last status is `started` or `failed` (an interrupted or failed apply). */
  unfinishedSteps(stack: string): Promise<JournalRow[]>;
  /** The stack's applied plans, newest first (by start), at most `limit` (default 100); with `id`, only that plan (if the stack has it). */
  listPlans(stack: string, opts?: { limit?: number; id?: string }): Promise<AppliedPlan[]>;
  /** Every journal row of one plan, in the order they were written. */
  planJournal(planId: string): Promise<JournalRow[]>;
  /**
   * `limit` journal rows of one plan, and its first `failures` rows of
   * status `failed`, each in the order they were written (as planJournal),
   * with how many there are of each: the dashboard's page of an apply, which
   * must not read every row (an apply of 100,000 VMs journals over a
   * million) to show a thousand. The rows are those right after the row
   * whose id is `after` (a page's `lastId`: the next page), right before
   * `before` (a page's `firstId`: the page before), or else from `offset`:
   * the first two are read from there (keyset), an offset reads and skips
   * the rows before it.
   */
  planJournalPage(planId: string, page: { offset?: number; after?: string; before?: string; limit: number; failures: number }): Promise<JournalPage>;
}

/** The boot endpoint's writes. Boot tokens are stored by the VM writes that approve a boot edge (`bootTokenHash`). */
export interface BootStore {
  /**
   * The boot check, one statement for many: per item, in order, whether its
   * row matched and its token was used (the approved attempt row then
   * written by the same statement), with the row it saw. A token is used
   * once: its first approval writes the attempt row; a repeat (the same VM
   * and token, the row still matching, within `repeatWithinMs` of the first
   * use; also a second item of the same batch) is approved again and writes
   * nothing.
   */
  authorizeBoots(items: readonly BootCheck[]): Promise<BootCheckResult[]>;
  /** Records boot attempts (approved or denied), one statement for many. */
  addBootAttempts(attempts: readonly BootAttempt[]): Promise<void>;
  /** One VM's boot attempts, newest first, at most `limit` (default 100). */
  listBootAttempts(vmId: string, opts?: { limit?: number }): Promise<BootAttemptRow[]>;
  /**
   * Whether the record confirms that the last boot it issued VM `vmId` a
   * token for was authorized in cloud VM `cloudId`: that token was used (the
   * boot endpoint released the disk key) and an approved boot attempt of
   * that cloud id was written since its issue. False for a VM the record
   * never booted, or whose last token no agent presented yet (a boot still
   * under way, or never started). Survives a DMZ client's lost state folder:
   * `fleet import` reads it for a running VM of whose agent its DMZ client
   * holds no report. `since` (the VM's latest start as its cloud says,
   * ActualVm.startedAt): only an approved attempt after it counts; one
   * before it approved a run a start from the cloud's console has ended
   * since, whose agent now presents that used token again and is denied.
   */
  bootAuthorized(vmId: string, cloudId: string, since?: string): Promise<boolean>;
}

/** The stack's identity and plan-seal key. */
export interface IdentityStore {
  /**
   * This stack's identity; undefined when it has none yet, unless `create`
   * (then made once, with a random id and key: concurrent first calls get
   * the same one).
   */
  stackIdentity(stack: string, opts?: { create?: boolean }): Promise<StackIdentity | undefined>;
}

/** Plans registered with the authority; written and read by the authority only. */
export interface SealedPlanStore {
  /** Inserts the row unless one of that stack and plan id exists; returns the row the record holds (the first one registered). */
  registerSealedPlan(row: Omit<SealedPlanRow, 'registeredAt'>): Promise<SealedPlanRow>;
  sealedPlan(stack: string, planId: string): Promise<SealedPlanRow | undefined>;
}

export interface GrowStore {
  /**
   * Checks a grow against `budget` over the stack's live VMs and their
   * grows reserved (budget.ts fitGrow), under the stack's budget lock, and
   * in the same transaction writes the intent row and reserves the size:
   * throws BudgetExceededError (writing nothing) when it does not fit. The
   * reservation ends when the VM's size is written (updateVm), at dropGrow,
   * or after `ttlMs`.
   */
  reserveGrow(item: GrowItem): Promise<void>;
  /** Ends a VM's reservation (its resize failed). */
  dropGrow(vmId: string): Promise<void>;
}

/** A request id's claim (ClaimStore): the request it names, by data center and id. */
export interface RequestClaim {
  dataCenter: string;
  requestId: string;
  vmId: string;
  /** `transition` or `resize` (an authorize's kind). */
  kind: string;
  from: string | null;
  to: string | null;
  /** A resize's size, as the authority writes it (historySize); null otherwise. */
  size: string | null;
}

/**
 * Request ids bound to one request each, across authority replicas
 * (claims.ts). A claim lives `ttlMs` from its last sending.
 */
export interface ClaimStore {
  /**
   * Claims each item's (data center, request id) for its request, in one
   * statement: per item undefined when it is taken (a new id, an expired
   * claim, or the same request again: its claim is renewed), else the
   * request that holds the id (another VM, kind, edge or size).
   */
  claimRequests(stack: string, items: readonly RequestClaim[], ttlMs: number): Promise<(Omit<RequestClaim, 'dataCenter' | 'requestId'> | undefined)[]>;
  /** Deletes the expired claims (of every stack). */
  pruneRequestClaims(): Promise<void>;
}

/**
 * The global record: every store. Every method is one transaction (one
 * statement where it can). Writes that change a VM check `expectedVersion`
 * and throw `VersionConflictError` on mismatch, never overwrite silently.
 * Every state change writes its history row in the same transaction.
 */
export interface FleetRecord extends VmReader, VmWriter, HistoryStore, LockStore, PlanStore, BootStore, IdentityStore, GrowStore, SealedPlanStore, ClaimStore {
  /** The URL with any password removed, for messages. */
  readonly description: string;
  /** The schema version the record is at (migrations.ts; 0: not migrated): a readiness probe compares it with SCHEMA_VERSION. */
  schemaVersion(): Promise<number>;
  close(): Promise<void>;
}
