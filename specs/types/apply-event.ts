/* generated from specs/schema/apply-event.schema.json by `npm run gen:types` — do not edit */

/**
 * One line of `fleet apply --format json` on stdout: each line is one JSON event, in order (`plan` for a fresh plan, `protect` for each fleet whose protection the plan's `fleetChanges` wrote, `start`, `step`s and `member`s, `wave-start` / `wave-done` around each rollout wave, `summary` last); diagnostics are events too. Nothing else is written to stdout.
 */
export type ApplyEvent =
  | PlanEvent
  | StartEvent
  | StepEvent
  | MemberEvent
  | LockBrokenEvent
  | ProtectEvent
  | WaveStartEvent
  | WaveDoneEvent
  | SummaryEvent
  | DiagnosticEvent;

/**
 * A fresh plan was made (apply without PLANFILE).
 */
export interface PlanEvent {
  type: 'plan';
  planId: string;
  summary: {
    create: number;
    transition: number;
    update: number;
    replace: number;
    delete: number;
    noop: number;
  };
  blocked: boolean;
  /**
   * When the event was written.
   */
  at: string;
}
/**
 * The apply starts: members and steps in all, and per data center.
 */
export interface StartEvent {
  type: 'start';
  planId: string;
  members: number;
  steps: number;
  perDataCenter: {
    [k: string]: {
      members: number;
      steps: number;
    };
  };
  /**
   * When the event was written.
   */
  at: string;
}
/**
 * One diagram edge of a member: started, then done or failed.
 */
export interface StepEvent {
  type: 'step';
  address: string;
  dataCenter: string;
  from: string | null;
  to: string;
  operation: string;
  status: 'started' | 'done' | 'failed';
  detail?: string;
  /**
   * When the event was written.
   */
  at: string;
}
/**
 * A member reached its planned state (done) or stopped (failed).
 */
export interface MemberEvent {
  type: 'member';
  address: string;
  dataCenter: string;
  action: 'create' | 'transition' | 'update' | 'replace' | 'delete' | 'noop';
  status: 'done' | 'failed';
  elapsedMs: number;
  detail?: string;
  /**
   * When the event was written.
   */
  at: string;
}
/**
 * A fleet lock whose holder no longer runs on this host was broken.
 */
export interface LockBrokenEvent {
  type: 'lock-broken';
  lockId: string;
  fleet: string;
  holder: string;
  /**
   * When the event was written.
   */
  at: string;
}
/**
 * A fleet's protection was written to the record as the plan lists it (`fleetChanges`, docs/plan-format.md), under the fleet's lock after the stale check and before any step; one per fleet whose row changed.
 */
export interface ProtectEvent {
  type: 'protect';
  fleet: string;
  protect: ProtectChange;
  /**
   * When the event was written.
   */
  at: string;
}
/**
 * The fleet's protection in the record before (`from`) and as written (`to`), as in the plan's `fleetChanges`.
 */
export interface ProtectChange {
  /**
   * The record's protection before (false for a fleet the record had no row of).
   */
  from: boolean;
  /**
   * The protection written: the plan's `fleetChanges` entry's `to`.
   */
  to: boolean;
}
/**
 * A fleet's rollout wave starts: every member of the wave before it is back in its planned state and ready (docs/rollouts.md).
 */
export interface WaveStartEvent {
  type: 'wave-start';
  fleet: string;
  wave: number;
  /**
   * Waves of the rollout in all.
   */
  waves: number;
  /**
   * Addresses of the wave's members.
   */
  members: string[];
  /**
   * When the event was written.
   */
  at: string;
}
/**
 * A fleet's rollout wave ended. `stopped`: the rollout stops here (failureThreshold reached, or the apply was interrupted); no further wave of the fleet starts.
 */
export interface WaveDoneEvent {
  type: 'wave-done';
  fleet: string;
  wave: number;
  waves: number;
  succeeded: number;
  failed: number;
  status: 'done' | 'failed' | 'stopped';
  /**
   * Why the rollout stopped.
   */
  detail?: string;
  /**
   * When the event was written.
   */
  at: string;
}
/**
 * The apply ended: the last event of every apply that was not refused. With nothing to apply (no change, or every change vetoed) it follows `plan` (or is the only event, for a saved plan) and every count is 0. An apply refused before its first request (a blocked, stale or foreign plan, a lock held, a missing token) writes none: its last event is the error diagnostic.
 */
export interface SummaryEvent {
  type: 'summary';
  planId: string;
  succeeded: number;
  failed: number;
  /**
   * Requests carried out (answered ok).
   */
  steps: number;
  /**
   * Requests that failed or were vetoed: the one each failed member stopped at.
   */
  stepsFailed: number;
  /**
   * Requests sent with a failed member's run but never carried out.
   */
  stepsSkipped: number;
  elapsedMs: number;
  /**
   * Members not started because the apply was interrupted; present only then.
   */
  notStarted?: number;
  /**
   * The apply was interrupted (Ctrl-C, SIGTERM), even after every member had started; present only then (the command exits 130).
   */
  interrupted?: true;
  /**
   * The fleets whose protection the apply wrote (its `protect` events), by fleet name in the plan's order; present only when there is one.
   */
  fleetChanges?: {
    fleet: string;
    protect: ProtectChange;
  }[];
  /**
   * When the event was written.
   */
  at: string;
}
/**
 * A diagnostic (docs/diagnostics.md): loader warnings, a member's failure (apply.member-failed), or the error that stopped the apply.
 */
export interface DiagnosticEvent {
  type: 'diagnostic';
  /**
   * An error makes the command exit 1; a warning does not.
   */
  severity: 'error' | 'warning';
  /**
   * `<area>.<name>`, fixed per kind of problem (docs/diagnostics.md).
   */
  code: string;
  /**
   * Short and fixed per code.
   */
  summary: string;
  /**
   * This occurrence: what was found and what to do.
   */
  detail: string;
  /**
   * File the problem is in, relative to the working folder when under it.
   */
  file?: string;
  /**
   * 1-based line in `file`.
   */
  line?: number;
  /**
   * 1-based column in `file`.
   */
  col?: number;
  /**
   * A VM address (`web/3`), a fleet, a data center or a lock id.
   */
  address?: string;
  /**
   * When the event was written.
   */
  at: string;
}
