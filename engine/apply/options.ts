// What an apply is given (ApplyOptions) and what it says: its events, its
// result, a failed member. Shared by the executor (executor.ts), a member's
// run (member.ts) and the progress printer (progress.ts).
import { hostname, userInfo } from 'node:os';
import type { Diagnostic } from '../diags/index.ts';
import type { Change, FleetChange, PlanDocument } from '../model/index.ts';
import type { FleetRecord, LockHandle } from '../record/types.ts';
import type { MemberProvider } from '../../providers/provider.ts';
import type { RolloutEvent, RolloutReport } from './rollout.ts';
import type { FailureCause } from './failure-cause.ts';

export type ApplyEvent =
  | { type: 'start'; planId: string; members: number; steps: number; perDataCenter: Record<string, { members: number; steps: number }> }
  | { type: 'step'; address: string; dataCenter: string; from: string | null; to: string; operation: string; status: 'started' | 'done' | 'failed'; detail?: string }
  /** elapsedMs: from the member's first journal row to its last answer. */
  | { type: 'member'; address: string; dataCenter: string; action: Change['action']; status: 'done' | 'failed'; elapsedMs: number; detail?: string }
  | { type: 'lock-broken'; lockId: string; fleet: string; holder: string }
  /** A fleet's protection was written to the record, as the plan lists it (`fleetChanges`), before any step. */
  | { type: 'protect'; fleet: string; protect: NonNullable<FleetChange['protect']> }
  /** A fleet's owner was written to the record, as the plan lists it (`fleetChanges`), before any step. */
  | { type: 'owner'; fleet: string; owner: NonNullable<FleetChange['owner']> }
  /** A rollout wave starts / ends (rollout.ts). */
  | RolloutEvent
  /**
   * notStarted: members never started because the apply was interrupted (`signal`); present only then.
   * interrupted: `signal` was aborted during the apply, even after every member had started; present only then.
   */
  | {
      type: 'summary';
      planId: string;
      succeeded: number;
      failed: number;
      steps: number;
      stepsFailed: number;
      stepsSkipped: number;
      elapsedMs: number;
      notStarted?: number;
      interrupted?: true;
      /** The fleets whose protection or owner the apply wrote (its `protect` and `owner` events); present only when there is one. */
      fleetChanges?: FleetChange[];
    };

export interface MemberFailure {
  address: string;
  dataCenter: string;
  action: Change['action'];
  step: string;
  diagnostic: Diagnostic;
  /** Why, as a closed set: it picks what the member's diagnostic says to do (failureHint). */
  cause: FailureCause;
}

export interface ApplyResult {
  planId: string;
  succeeded: number;
  failed: MemberFailure[];
  /** Requests carried out (answered ok). */
  steps: number;
  /** Requests that failed or were vetoed (one per failed member). */
  stepsFailed: number;
  /** Requests sent with a failed member's run but never carried out. */
  stepsSkipped: number;
  elapsedMs: number;
  /** Members never started: `signal` was aborted, or a rollout stopped (0 when neither). */
  notStarted: number;
  /**
   * `signal` was aborted before the apply ended: true even when every member
   * had started already (notStarted 0), so `fleet apply` still exits 130.
   */
  interrupted: boolean;
  /** What each fleet's rollout did (empty when the plan has none). */
  rollouts: RolloutReport[];
  /** The fleets whose protection or owner the apply wrote before its steps (from the plan's `fleetChanges`). */
  fleetChanges: FleetChange[];
}

export interface ApplyOptions {
  plan: PlanDocument;
  record: FleetRecord;
  /**
   * The provider of each data center, by name: the only way the executor
   * reaches a DMZ client (providers/provider.ts; engine/apply may not import
   * providers/client.ts).
   */
  providers: ReadonlyMap<string, MemberProvider>;
  /**
   * Owner of each fleet as its spec says: the owner of a fleet's row made
   * by this apply (a new fleet). A fleet with a row keeps the row's owner
   * unless the plan's `fleetChanges` lists another; the creates' requests
   * carry the owner the row holds after that (recordFleets).
   */
  owners: Readonly<Record<string, string>>;
  /** The admin token (FLEET_ADMIN_TOKEN): overrides carry a proof made with it (protocol/hash.ts overrideProof). Never logged. */
  adminToken?: string;
  /** Concurrent members per data center. */
  parallelism: number;
  /** Who applies, for history and locks. Default user@host. */
  actor?: string;
  lockTimeoutMs?: number;
  leaseMs?: number;
  onEvent?: (e: ApplyEvent) => void;
  /**
   * Called once applyPlan took the plan's locks itself (no `lock`: a saved
   * plan), before the plan is checked against the record: fleet apply closes
   * what a killed apply of those fleets left open there (closeInterrupted)
   * and says so, as it does under a fresh plan's locks.
   */
  onLocked?: (fleets: readonly string[]) => Promise<void>;
  /**
   * Aborted: no further member starts; the members whose requests went out
   * go on to their end (their runs are at the DMZ clients already), are
   * journalled, and the plan is recorded as interrupted (fleet apply's first
   * Ctrl-C). A member given its place before it whose `started` rows were
   * still being written sends nothing: its rows are closed `skipped` ("not
   * sent: the apply was interrupted …") and it counts in `notStarted`.
   */
  signal?: AbortSignal;
  /**
   * Locks taken already (fleet apply without a plan file locks the fleets in
   * scope first and plans under them: lock, then plan). They must cover every
   * fleet of the plan; applyPlan heartbeats them and releases them at its end.
   * Without it, applyPlan takes the plan's locks itself (a saved plan).
   */
  lock?: LockHandle;
}

export function defaultActor(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    /* no passwd entry (containers) */
  }
  return `${user}@${hostname()}`;
}
