// What the record's stores take and give (types.ts holds the stores): rows
// of VMs, fleets, history, locks, journal, plans and boot attempts; the items
// of batched writes; budgets; the stack's identity and sealed plans.
import type { VmSize } from '../model/index.ts';

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
 *
 * `bootDenied` is set (not read with the row: FleetRecord.deniedBoots, for the
 * few rows in a failure state with a cloud VM) when the VM's latest boot was
 * denied (its failure reported `driver.boot-denied`, and the authority denied
 * it during that boot): such a VM is deleted and created again, not booted again
 * (docs/recovery.md, BootFailed); absent means it was not, or is not known.
 */
export type PlanVmRow = Omit<VmRow, 'desiredState' | 'cloudId' | 'createdAt' | 'updatedAt'> & { cloudId?: string | null; bootDenied?: boolean };

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
  /**
   * The program that manages the fleet (fleets.managed_by, migration 12), e.g.
   * `pulumi:<project>/<stack>`: the manager its live VMs were created by.
   * null for a fleet of fleet files (`fleet apply`), and for any fleet
   * with no live VM (then either manager may create it). `fleet plan`
   * leaves a managed fleet without a fleet file alone and refuses a fleet
   * file that declares one; a create by another manager is refused
   * (record.manager-mismatch).
   */
  managedBy: string | null;
}

/**
 * What the live VMs of one fleet use in one data center (VmReader.usage):
 * a plan narrowed to some fleets reads these for the fleets outside its scope
 * instead of their rows, to count owner quotas and data center capacity.
 */
export interface UsageRow {
  /** '' in a row that sums several fleets of one owner (VmReader.usage's `byOwner`). */
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

/**
 * What a fleet's spec wants of every member, for VmReader.readPlan: a live
 * member that is not deposed, has an index below `count` and matches every
 * other field is unchanged (the planner's noop, engine/plan/member.ts).
 */
export interface FleetShape {
  fleet: string;
  count: number;
  state: string;
  specHash: string;
  image: string;
  encryptedDisk: boolean;
  size: VmSize;
}

/** Unchanged members (see FleetShape) of one fleet in one data center and state, summed. */
export interface UnchangedRow {
  fleet: string;
  dataCenter: string;
  state: string;
  vms: number;
  /** Their summed vCPUs. */
  cpu: number;
  /** Their summed memory in GiB. */
  memoryGiB: number;
}

/**
 * What a plan reads of the fleets in its scope (VmReader.readPlan): the rows
 * of the members that differ from their fleet's shape (every row of a fleet
 * given no shape, or one with members missing below its count), and the
 * others summed.
 */
export interface PlanRead {
  rows: PlanVmRow[];
  unchanged: UnchangedRow[];
}

/** Who asks for a change and under which plan / request; becomes the history row. */
export interface ChangeContext {
  actor: string;
  planId?: string | null;
  requestId?: string | null;
  detail?: string | null;
  /**
   * A failed step's error code (`driver.<kind>`), as the DMZ client's failure
   * report names it (protocol ReportRequest.code): stored in the history
   * row's `code` (migration 18) by the writers of failures, transitionVm(s)
   * and addHistory(Many); NULL elsewhere. deniedBoots reads
   * `driver.boot-denied` of a boot's failure.
   */
  code?: string | null;
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
  /** The failed step's error code its DMZ client reported (ChangeContext.code, e.g. `driver.boot-denied`); null on every other row. */
  code: string | null;
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
  /**
   * The program whose create this is (FleetRow.managedBy); absent or null
   * for fleet apply. Written to the fleet's row with the VM; refused
   * (ManagerMismatchError, nothing inserted) while the fleet has live VMs
   * of another manager.
   */
  managedBy?: string | null;
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
 * be of `stack` (the asking authority's: stacks may share a record) and in
 * `dataCenter` with this cloud id and real image, in one of
 * `allowedStates`, and `tokenHash` must be its unused boot token (or the
 * one its last replaced unused), issued for the boot the VM is in: the VM
 * has not left `allowedStates` since the token was issued.
 */
export interface BootCheck {
  vmId: string;
  stack: string;
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
   * the same token again), while the row still matches and the VM has not
   * left that boot: its row at most one write past the version the first
   * use saw (the boot edge's own report). 0: never.
   */
  repeatWithinMs: number;
}

/**
 * A boot check's outcome. Approved: the token was used (now, or within
 * `repeatWithinMs` by an approved check of the same VM and token: a repeat)
 * and, the first time only, the approved attempt row written, by the same
 * statement. Not approved: nothing was written; `vm` is the row the check saw
 * (undefined when there is none), so the caller can say why and record the
 * denial. `usedAtVersion`: the row matched and the token was used within the
 * window, but the VM's row has moved on since that use (the version the use
 * saw; `vm.version` is two writes or more past it): a repeat of a boot the
 * VM has left. `leftBoot`: the row matched and the token is the VM's (or the
 * one it replaced unused), used or not, but the VM has left the booting
 * states since the token was issued (its history rows after
 * boot_tokens.issued_history): a token of a boot the VM has left, good for
 * no later one. `tokenKnown` (set when `vm` is): whether the token is one
 * the record holds for the VM (its last, or the one that one replaced unused),
 * used or not: a caller without one did not prove it is that VM.
 */
export type BootCheckResult = { approved: true; vm: VmRow } | { approved: false; vm: VmRow | undefined; usedAtVersion?: number; leftBoot?: true; tokenKnown?: boolean };

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
  /**
   * The fleet's manager (FleetRow.managedBy), read with its fence: the
   * authority refuses a request with a fencing token (fleet apply's) on a
   * fleet a program manages, without a read of its own per request.
   */
  managedBy: string | null;
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
/** Live VMs (deposed ones included, like listVms) of one fleet, data center and state: VmReader.countVms. */
export interface VmCountRow {
  fleet: string;
  dataCenter: string;
  state: string;
  vms: number;
}

/** The dashboard's overview of a stack's live VMs (VmReader.countVmsPage): its totals and one page of fleets. */
export interface VmCountsPage {
  /** Fleets with live VMs. */
  fleets: number;
  /** Live VMs per data center, the whole stack's; ordered by data center (code point order). */
  totals: { dataCenter: string; vms: number }[];
  /** The page's fleets' counts, as countVms gives them. */
  rows: VmCountRow[];
}

/** One page of a fleet's live members (VmReader.fleetMembers), and how many it has in all. */
export interface FleetMembersPage {
  /** The fleet's live members (deposed ones included), or those at the index asked for. */
  total: number;
  vms: VmRow[];
}

/** One page of a plan's journal and its first failed steps (PlanStore.planJournalPage), with how many of each there are. */
export interface JournalPage {
  /** Journal rows of the plan. */
  total: number;
  /** The page's rows, in the order they were written. */
  rows: JournalRow[];
  /** Rows of status `failed`. */
  failedTotal: number;
  /** The first of them, in the order they were written. */
  failed: JournalRow[];
  /** The ids of the page's first and last rows (null when it has none): where the pages before and after it start (planJournalPage's `before`, `after`). */
  firstId: string | null;
  lastId: string | null;
}

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
  /**
   * A DMZ client's ok row under another request id follows the intent row:
   * the VM moved (or was resized) along another approval since, so this
   * one, if unreported, was decided on a VM that is gone (report-superseded).
   */
  superseded: boolean;
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
