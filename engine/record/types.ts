// The record's contract: what the planner, the authority and apply may ask of
// it, as one small interface per store (VMs, history, locks, plans, boot);
// FleetRecord is all of them. Both backends (PGlite and PostgreSQL) implement
// it with the same SQL (record.ts, one file per store). If you add an
// operation here, add it to the contract suite in
// engine/record/record.contract.test.ts so it runs on both backends.
import type { FleetError } from '../diags/index.ts';
import type { PlanBasis, VmSize } from '../model/index.ts';

export interface VmRow {
  id: string;
  stack: string;
  fleet: string;
  /** Member index within the fleet. */
  index: number;
  /** `<fleet>/<index>` */
  address: string;
  /** `<stack>-<fleet>-<index>` */
  name: string;
  dataCenter: string;
  /** Current lifecycle state. */
  state: string;
  desiredState: string;
  specHash: string;
  image: string;
  realImage: string | null;
  size: VmSize;
  encryptedDisk: boolean;
  cloudId: string | null;
  /** Bumped by every write to the row. */
  version: number;
  createdAt: string;
  updatedAt: string;
  /** Set once the VM reached a terminal state; retired rows stay for history but are not listed by default. */
  retiredAt: string | null;
  /**
   * The old VM of a create-before-delete replace: still live (listed, it runs
   * until deleted) but no longer the member at its address. The planner
   * deletes deposed VMs.
   */
  deposed: boolean;
}

/**
 * What planning reads of a live VM (VmReader.listPlanVms): a VmRow without
 * the fields the planner and the policy rules never use (desired state,
 * timestamps). Leaving those out roughly halves the database's share of
 * reading a big stack (bench/plan). If the planner or a rule starts needing
 * one of them, add it here and to listPlanVms' columns.
 *
 * `cloudId` is read because a VM stuck in a failure state whose cloud VM is
 * gone (null: never created, or found missing by refresh or apply) is
 * deleted and created again instead of retried; absent (callers that do not
 * know, like the Pulumi Fleet provider) means a retry.
 */
export type PlanVmRow = Omit<VmRow, 'desiredState' | 'cloudId' | 'createdAt' | 'updatedAt'> & { cloudId?: string | null };

export interface FleetRow {
  stack: string;
  fleet: string;
  owner: string;
  /** Bumped whenever a member of the fleet is inserted, changed or retired. */
  version: number;
  updatedAt: string;
  /**
   * The fleet was last applied with `protect: true` (VmWriter.setFleetProtection):
   * kept when its spec file goes away, so deleting its members still needs
   * the override (the planner's protect rule and the authority read it).
   */
  protected: boolean;
}

/**
 * What the live VMs of one fleet use in one data center (VmReader.usage):
 * a plan narrowed to some fleets reads these for the fleets outside its scope
 * instead of their rows, to count owner quotas and data center capacity.
 */
export interface UsageRow {
  fleet: string;
  /** The fleet's owner in the record's fleet table ('' if the fleet has no row there). */
  owner: string;
  dataCenter: string;
  /** Live VMs (deposed ones included, like listVms). */
  vms: number;
  /** Their summed vCPUs. */
  cpu: number;
  /** Their summed memory in GiB. */
  memoryGiB: number;
}

/** Who asks for a change and under which plan / request; becomes the history row. */
export interface ChangeContext {
  actor: string;
  planId?: string | null;
  requestId?: string | null;
  detail?: string | null;
}

/** `removed`: forgotten by `fleet state rm`; `imported`: adopted by `fleet import`. */
export type Outcome = 'ok' | 'failed' | 'vetoed' | 'denied' | 'drift' | 'modified' | 'removed' | 'imported';

export interface HistoryRow {
  id: number;
  vmId: string;
  address: string;
  from: string | null;
  to: string;
  actor: string;
  planId: string | null;
  requestId: string | null;
  outcome: Outcome;
  detail: string | null;
  at: string;
}

export interface NewVm {
  stack: string;
  fleet: string;
  owner: string;
  index: number;
  dataCenter: string;
  /** The pack's initial state. */
  state: string;
  desiredState: string;
  specHash: string;
  image: string;
  realImage?: string | null;
  size: VmSize;
  encryptedDisk: boolean;
  /** Optional fixed id (the authority uses the id the CLI proposed, so retries find the same VM). */
  id?: string;
  /** Id of the live VM at the same address this one replaces: it is deposed in the same transaction. */
  replaces?: string;
}

export type VmPatch = Partial<
  Pick<VmRow, 'desiredState' | 'specHash' | 'image' | 'realImage' | 'size' | 'cloudId' | 'encryptedDisk'>
> & { retire?: boolean };

/** The history row of an approved edge's intent, written before the edge is carried out: from = the VM's state at that point, outcome `ok`. */
export type IntentRow = { to: string } & ChangeContext;

/**
 * A `none` edge passed at once (the authority's advance chains): the VM
 * moves along the edge whose intent row was written just before (to = that
 * intent's `to`; its version and its fleet's bumped as by a transition),
 * with its transition row, then the intent row of the edge after it, if any.
 */
export interface PassItem {
  /** The transition's history row. */
  ctx: ChangeContext & { outcome?: Outcome };
  intent?: IntentRow;
}

/**
 * What an insert or a transition of a batch may write after its own row, in
 * the same statement and only with it (no version check of their own: they
 * are written at the version that write made), history ids in this order:
 * the intent row of the VM's next edge, then each pass (its transition row,
 * then the intent of the edge after it). A pass needs the intent row of its
 * edge right before it: `intent`, or the previous pass's.
 */
export interface Onward {
  intent?: IntentRow;
  passes?: readonly PassItem[];
}

/** One state change of a batch (VmWriter.transitionVms): transitionVm's arguments, with only the patches a step's report makes. */
export interface TransitionItem extends Onward {
  id: string;
  expectedVersion: number;
  to: string;
  ctx: ChangeContext & { outcome?: Outcome };
  /** Applies to the row as the item leaves it (after its passes). */
  patch?: Pick<VmPatch, 'cloudId' | 'retire'>;
  /**
   * The hash of the one-time boot token of the edge the item's last intent
   * row approves (a `boot` edge), replacing the VM's earlier token, only
   * when the item is written.
   */
  bootTokenHash?: string;
}

/** What may be used: any of VMs, vCPUs, GiB of memory (a limit left out is no limit). */
export interface Limits {
  vms?: number;
  cpu?: number;
  memoryGiB?: number;
}

/**
 * The limits a create must stay within, checked by the record in the
 * transaction that inserts it (under a lock per stack, so concurrent
 * inserts never both take the last slot): the owner's quota over the live
 * VMs of the stack whose fleet the owner holds, and the capacity of the
 * VM's data center over the live VMs of the stack there. The new VM's own
 * fleet counts as the VM's owner's: an insert naming another owner than
 * the fleet's row holds is refused (OwnerMismatchError), with or without a
 * budget, and an insert never changes a fleet's owner.
 */
export interface Budget {
  owner?: Limits;
  dataCenter?: Limits;
  /**
   * Checked under the stack's budget lock even with no limits of its own:
   * the authority sets it for every create of a stack where some owner has
   * limits, so that no create (whatever owner it names) can land in a fleet
   * whose recorded owner is limited without being counted under the lock.
   */
  guard?: boolean;
}

/** One create of a batch (VmWriter.insertVms): insertVm's arguments, never replacing; with passes, the row is inserted in the state they reach. */
export interface InsertItem extends Onward {
  vm: NewVm;
  ctx: ChangeContext;
  /** Limits checked with the insert (Budget); over them the item answers BudgetExceededError and nothing of it is written. */
  budget?: Budget;
  /** As TransitionItem.bootTokenHash: a boot edge's token (approved with the create's chain), stored only when the row is inserted. */
  bootTokenHash?: string;
}

/** One history row of a batch (HistoryStore.addHistoryMany): addHistory's arguments. */
export interface HistoryItem {
  vmId: string;
  row: { from: string | null; to: string; outcome: Outcome } & ChangeContext;
  expectedVersion?: number;
  /** As TransitionItem.bootTokenHash: stored only when the row is written. */
  bootTokenHash?: string;
}

/**
 * One boot check of a batch (BootStore.authorizeBoots): the VM's row must
 * be in `dataCenter` with this cloud id and real image, in one of
 * `allowedStates`, and `tokenHash` must be its unused boot token.
 */
export interface BootCheck {
  vmId: string;
  dataCenter: string;
  cloudId: string;
  image: string;
  tokenHash: string;
  allowedStates: readonly string[];
  /** The approved attempt row's reason. */
  reason: string;
  /**
   * How long after its first use the token is still answered again (a repeat
   * of the approved boot: the agent lost the answer to a crash and presents
   * the same token again), while the row still matches. 0: never.
   */
  repeatWithinMs: number;
}

/**
 * A boot check's outcome. Approved: the token was used (now, or within
 * `repeatWithinMs` by an approved check of the same VM and token: a repeat)
 * and, the first time only, the approved attempt row written, by the same
 * statement. Not approved: nothing was written; `vm` is the row the check saw
 * (undefined when there is none), so the caller can say why and record the
 * denial.
 */
export type BootCheckResult = { approved: true; vm: VmRow } | { approved: false; vm: VmRow | undefined };

export interface LockHolder {
  who: string;
  host: string;
  planId: string | null;
  pid: number;
}

export interface LockRow extends LockHolder {
  lockId: string;
  stack: string;
  fleet: string;
  since: string;
  expiresAt: string;
  /** The acquisition's fencing token (see LockHandle.fencingToken). */
  fencingToken: number;
}

/** A fleet's fence: the fencing token of its latest lock acquisition, and whether that lock is still held (unexpired). */
export interface FleetFence {
  fleet: string;
  token: number;
  held: boolean;
}

export interface LockHandle {
  lockId: string;
  fleets: string[];
  /**
   * Grows with every acquisition (one record-wide sequence). Every request
   * the apply sends carries it; the authority refuses work under an older
   * token once a newer acquisition of the fleet exists (fencesOf), so a
   * killed apply's runs still in flight never race the next apply's.
   */
  fencingToken: number;
  /** Extends the lease; throws FleetError(record.lock-lost) if another holder took it over. */
  heartbeat(): Promise<void>;
  release(): Promise<void>;
}

export interface StaleEntry {
  kind: 'vm' | 'fleet';
  key: string;
  expected: number;
  actual: number | null;
}

/** `skipped`: sent in a run of steps but not carried out, since an earlier step of the member failed. */
export type StepStatus = 'started' | 'done' | 'failed' | 'skipped';

/** Apply's journal: a step is written `started` before its call and `done`/`failed` after. */
export interface JournalRow {
  planId: string;
  address: string;
  seq: number;
  vmId: string | null;
  from: string;
  to: string;
  idempotencyKey: string;
  status: StepStatus;
  detail: string | null;
  at: string;
}

export interface BootAttempt {
  vmId: string | null;
  dataCenter: string;
  cloudId: string | null;
  image: string | null;
  approved: boolean;
  reason: string;
}

/** A boot attempt as the record holds it (BootStore.listBootAttempts). */
export interface BootAttemptRow extends BootAttempt {
  at: string;
}

export interface AppliedPlan {
  id: string;
  stack: string;
  digest: string;
  who: string;
  startedAt: string;
  finishedAt: string | null;
  result: 'running' | 'succeeded' | 'failed' | 'interrupted';
}

/**
 * What the authority approved under a request id, as its intent row says
 * (HistoryStore.approvalOf): the edge, the intent row's detail (a resize's
 * names the approved size) and whether a report of it was taken already.
 */
export interface Approval {
  from: string | null;
  to: string;
  detail: string | null;
  /** A report of the request (a row written by a DMZ client under the same request id) is in the history. */
  reported: boolean;
}

/** Reads of VMs and fleets. */
export interface VmReader {
  /** Live (not retired) VMs of a stack, only the given fleets when `fleets` is set. Ordered by fleet, index. */
  listVms(stack: string, opts?: { fleets?: readonly string[]; includeRetired?: boolean }): Promise<VmRow[]>;
  /**
   * listVms for planning: the same live VMs in the same order, as PlanVmRow.
   * `fleets` as in listVms.
   */
  listPlanVms(stack: string, opts?: { fleets?: readonly string[] }): Promise<PlanVmRow[]>;
  getVm(id: string): Promise<VmRow | undefined>;
  /** getVm for many ids in one query, in order (undefined where unknown). */
  getVms(ids: readonly string[]): Promise<(VmRow | undefined)[]>;
  /** The live VM at an address. */
  findVm(stack: string, address: string): Promise<VmRow | undefined>;
  listFleets(stack: string, fleets?: readonly string[]): Promise<FleetRow[]>;
  /**
   * Live VMs of a stack summed per fleet and data center, leaving out the
   * fleets in `excludeFleets`. Ordered by fleet, data center.
   */
  usage(stack: string, opts: { excludeFleets: readonly string[] }): Promise<UsageRow[]>;
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
  adoptVm(vm: NewVm & { id: string; cloudId: string }, ctx: ChangeContext): Promise<VmRow>;
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
   * member: no version is bumped.
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
   */
  addHistory(vmId: string, row: { from: string | null; to: string; outcome: Outcome } & ChangeContext, expectedVersion?: number): Promise<void>;
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
   * Oldest first; with `limit`, the newest `limit` rows (still oldest first);
   * with `outcome`, only rows of that outcome (the dashboard's drift). Includes
   * rows of retired VMs at the address.
   */
  history(stack: string, address?: string, opts?: { limit?: number; outcome?: Outcome }): Promise<HistoryRow[]>;
}

/** Per-fleet leases held by an apply. */
export interface LockStore {
  /** Takes all the fleets' locks or none. Waits up to `timeoutMs`, then throws FleetError(record.lock-held) naming the holder. */
  acquireLocks(stack: string, fleets: readonly string[], holder: LockHolder, opts?: { leaseMs?: number; timeoutMs?: number }): Promise<LockHandle>;
  listLocks(stack: string): Promise<LockRow[]>;
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
  /** Group-committed: resolves once the row is committed; concurrent calls share one INSERT. */
  journal(row: Omit<JournalRow, 'at'>): Promise<void>;
  /** Steps whose last status is `started` or `failed` (an interrupted or failed apply). */
  unfinishedSteps(stack: string): Promise<JournalRow[]>;
  /** The stack's applied plans, newest first (by start), at most `limit` (default 100). */
  listPlans(stack: string, opts?: { limit?: number }): Promise<AppliedPlan[]>;
  /** Every journal row of one plan, in the order they were written. */
  planJournal(planId: string): Promise<JournalRow[]>;
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
}

/**
 * A key saved plans are sealed with (engine/plan/integrity.ts's SealKey).
 * `secret` is not enumerable: JSON and util.inspect never show it.
 */
export interface RecordSealKey {
  readonly id: string;
  readonly secret: Buffer;
}

/** Who a stack is in this record (engine/record/identity.ts). */
export interface StackIdentity {
  stack: string;
  /** Random, made once per stack in this record: two stacks that share a name differ here. */
  stackId: string;
  /** The key new seals are made with. */
  sealKey: RecordSealKey;
  /** A key by id (older keys stay verifiable while kept); undefined when this record holds none. */
  key(id: string): RecordSealKey | undefined;
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

/** A plan the authority verified and registered (migration 7; engine/authority/plan-seals.ts). */
export interface SealedPlanRow {
  stack: string;
  planId: string;
  /** sha256 of the plan's canonical content, as sealed. */
  digest: string;
  /** What the plan may touch: its locked fleets and each member it changes. */
  scope: { fleets: string[]; members: { address: string; dataCenter: string; action: string; vmId?: string }[] };
  /** The authority's MAC over stack, planId, digest and scope: a row it did not write is not believed. */
  mac: string;
  registeredAt: string;
}

/** Plans registered with the authority; written and read by the authority only. */
export interface SealedPlanStore {
  /** Inserts the row unless one of that stack and plan id exists; returns the row the record holds (the first one registered). */
  registerSealedPlan(row: Omit<SealedPlanRow, 'registeredAt'>): Promise<SealedPlanRow>;
  sealedPlan(stack: string, planId: string): Promise<SealedPlanRow | undefined>;
}

/**
 * The global record: every store. Every method is one transaction (one
 * statement where it can). Writes that change a VM check `expectedVersion`
 * and throw `VersionConflictError` on mismatch, never overwrite silently.
 * Every state change writes its history row in the same transaction.
 */
/** A resize that grows, approved by the authority: checked and reserved in one transaction (grow.ts). */
export interface GrowItem {
  stack: string;
  vmId: string;
  /** The intent row is written only while the VM is at this version (VersionConflictError otherwise). */
  expectedVersion: number;
  /** The fleet's owner as the caller read it, whose limits `budget.owner` are; another owner now: VersionConflictError. */
  owner: string;
  /** The size asked (what grows of it is checked). */
  size: { cpu: number; memoryGiB: number };
  budget: Budget;
  /** The approval's intent row (HistoryStore.addHistory's row). */
  row: { from: string | null; to: string } & ChangeContext;
  /** How long the reservation lasts unless reported (the approval's credentials' lifetime). */
  ttlMs: number;
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

export interface FleetRecord extends VmReader, VmWriter, HistoryStore, LockStore, PlanStore, BootStore, IdentityStore, GrowStore, SealedPlanStore {
  /** The URL with any password removed, for messages. */
  readonly description: string;
  /** The schema version the record is at (migrations.ts; 0: not migrated): a readiness probe compares it with SCHEMA_VERSION. */
  schemaVersion(): Promise<number>;
  close(): Promise<void>;
}
