// The plan document, formatVersion "2" (DESIGN.md, "The plan document";
// schema specs/schema/plan.schema.json). It is the contract between the
// planner (engine/plan, which builds it), the renderers (which only display
// it), the policy engine (engine/policy, which checks it) and apply (which
// executes it exactly); it lives in the data model so that policy and the
// record read it without importing the planner. If you add a field here, also
// update specs/schema/plan.schema.json (then `npm run gen:types`),
// docs/plan-format.md and the golden plans under test/fixtures/plan/.

import type { Enforcement } from './enforcement.ts';
import type { Operation } from './operation.ts';
import type { ReplaceOrder } from './replace-order.ts';
import type { PlanBasis } from './basis.ts';
import type { VmSize } from './size.ts';

/** What apply does to a member. A closed set: branch on this, never on `reason`. */
export type Action = 'create' | 'transition' | 'update' | 'replace' | 'delete' | 'noop';

export const ACTIONS: readonly Action[] = ['create', 'transition', 'update', 'replace', 'delete', 'noop'];

/** True when the action removes an existing VM (delete, or replace's delete half). */
export function isDestructive(action: Action): boolean {
  return action === 'delete' || action === 'replace';
}


/** Why a new member goes to its data center, for people reading the plan. */
export interface PlacementExplanation {
  strategy: 'nearest' | 'spread' | 'pack' | 'existing';
  /** Candidates that passed the filters, in the order the strategy ranked them. */
  candidates: string[];
  /** Data centers ruled out, each with why ("no hardware trait gpu", "no capacity left", "image not in catalog"). */
  excluded: { dataCenter: string; why: string }[];
  /** One sentence, e.g. "richmond: nearest with general, 412 km". */
  summary: string;
  /** Great-circle distance in km from the reference point, for `nearest`. */
  distanceKm?: number;
}

/**
 * One edge-by-edge step of a change. `replace` holds the steps of the new VM
 * (`member: 'new'`) and of the old one (`member: 'old'`); other actions hold only `current`.
 */
export interface Step {
  from: string;
  to: string;
  /** Which VM of the change the step acts on. */
  member: 'current' | 'new' | 'old';
  /** The cloud operation of the edge, from the pack's diagram (`createVm`, `powerOn`, … or `none`). */
  operation: Operation;
}

export interface Change {
  /** `<fleet>/<index>` */
  address: string;
  fleet: string;
  index: number;
  /** The VM's stable name, `<stack>-<fleet>-<index>`. */
  name: string;
  dataCenter: string;
  action: Action;
  /** Current state (the initial state for a create). */
  from: string;
  /** Desired state. */
  to: string;
  /** Every diagram state the VM passes through, from `from` to `to` inclusive. For replace: the new VM's path. */
  path: string[];
  /** For replace: the old VM's path to the terminal state. For delete it is `path` itself. */
  oldPath?: string[];
  /** For replace: which VM goes first (the new one when the data center has room for both). */
  replaceOrder?: ReplaceOrder;
  steps: Step[];
  /** Display only; apply never branches on it. */
  reason: string;
  image: { logical: string; real: string | null };
  size: VmSize;
  /** What changes in place (for update), e.g. { size: { from, to } }. */
  diff?: Record<string, { from: unknown; to: unknown }>;
  placement?: PlacementExplanation;
  /** The record id of the existing VM (absent for create). */
  vmId?: string;
  specHash: string;
  encryptedDisk: boolean;
  /**
   * The rollout wave the change belongs to (1, 2, …; the fleet's entry in
   * the plan's `rollouts`): apply starts a wave only once every member of
   * the one before is back in its desired state. Absent: not waved (deletes,
   * members not serving, creates of a fleet with no rollout), run beside the
   * first wave. A create into the serving state of a fleet that rolls out is
   * in wave 1: its member is out of service until it runs.
   */
  wave?: number;
  /** A delete of the deposed (old) VM of a replace that did not finish; its address also has a current VM. */
  deposed?: boolean;
}

export interface Violation {
  policy: string;
  level: Enforcement;
  /** A VM address or a fleet name. */
  address: string;
  message: string;
  /** How to fix it. */
  hint: string;
}

export interface Grant {
  fleet: string;
  requested: number;
  granted: number;
  /** e.g. "requested 10, granted 6: quota of team-payments". */
  reason: string;
  policy: string;
}


/** One wave of a fleet's rollout. */
export interface RolloutWave {
  /** 1, 2, … in the order they run. */
  wave: number;
  /** Addresses of the members the wave takes out of service or replaces, in index order. */
  members: string[];
  /** How many of them go out of service (resize, transition, delete-before-create replace). */
  unavailable: number;
  /** How many are replaced by a surge VM first (create-before-delete). */
  surge: number;
  /**
   * Members out of service already, brought back in this wave; they hold its places: a stopped rollout's failed
   * members, and members with no VM (lost, or added by a higher count) that the wave creates.
   */
  returning?: string[];
}

/**
 * How a fleet's disruptive changes are rolled out (docs/rollouts.md): the
 * settings as counts, and the waves in order. Apply stops the rollout once
 * `failureThreshold` members failed.
 */
export interface Rollout {
  fleet: string;
  maxUnavailable: number;
  maxSurge: number;
  failureThreshold: number;
  /** Where the settings came from, for display only. */
  reason: string;
  waves: RolloutWave[];
}

/**
 * The plan document's format. "2" summarises unchanged members per fleet
 * (`unchanged`) where "1" listed each as a noop change; `fleet apply PLANFILE`
 * refuses any other (apply.plan-format: plan again).
 */
export const PLAN_FORMAT_VERSION = '2';

/**
 * The members of one fleet a plan leaves as they are, summarised (one entry
 * per fleet in scope that has any): a plan of 100,000 VMs with 1% changed is
 * ~1,000 changes and 500 of these, not 100,000 changes.
 */
export interface UnchangedFleet {
  fleet: string;
  /** How many members match their spec (at least 1). */
  count: number;
  /**
   * The fleet's version in the record when the plan was made (0: not in the
   * record). For a fleet the plan also changes, `basis.fleets` holds the same
   * number and apply checks it there; for a fleet it leaves alone apply does
   * not (docs/plan-format.md, "Stale plans").
   */
  version: number;
  /** State -> how many of them are in it. */
  states: Record<string, number>;
  /** Data center -> how many of them live there. */
  dataCenters: Record<string, number>;
}

/**
 * A change of one fleet's own settings (docs/plan-format.md), kept in the
 * record's fleets row: its protection (docs/policy.md) and its owner (whose
 * quota its members count against, and whom the authority holds its
 * requests to). Only for a fleet in scope with a spec that no program
 * manages; each entry has at least one of `protect` and `owner`. A fleet
 * the record has no row of yet is unprotected (`from: false`), so a new
 * fleet with `protect: true` is listed: a saved plan says what apply
 * writes. A new fleet's owner is not listed: its row is made with its
 * spec's owner, the one the plan counted its quota against.
 */
export interface FleetChange {
  fleet: string;
  /**
   * The record has no row of this fleet yet (decided from the record at plan
   * time, not inferred from its basis version): apply makes the row, with
   * `protect.to`. Renderers show the setting
   * as a new fleet's (`+ fleet web: protect true`), not as a change from
   * false. Absent for a fleet with a row.
   */
  new?: true;
  /** The record's protection (`from`) and the spec's (`to`); absent when they agree. */
  protect?: { from: boolean; to: boolean };
  /** The record's owner (`from`) and the spec's (`to`), of a fleet the record has a row of; absent when they agree. */
  owner?: { from: string; to: string };
}

export interface PlanDocument {
  formatVersion: typeof PLAN_FORMAT_VERSION;
  /** Random id; apply journals every step under it. */
  id: string;
  stack: string;
  createdAt: string;
  /** Pack name@version. */
  policyPack: string;
  /** Fleets in scope (after --target / --exclude). */
  fleets: string[];
  /** `targets` may name fleets or members (`web/3`); `replace`: members forced to be replaced (`--replace`), absent when none. */
  options: { targets: string[]; excludes: string[]; allowDestroy: string[]; refresh: boolean; replace?: string[] };
  basis: PlanBasis;
  /** Every change that does something, sorted by fleet then index: no `noop` (see `unchanged`). */
  changes: Change[];
  /** Per fleet with unchanged members, sorted by fleet name. */
  unchanged: UnchangedFleet[];
  policy: { violations: Violation[]; grants: Grant[] };
  /** The rollout of each fleet with disruptive changes, by fleet name; absent when there is none (and in plans made before rollouts). */
  rollouts?: Rollout[];
  /**
   * What the plan changes of fleets themselves rather than of their members,
   * by fleet name: a spec's `protect` that the record's fleet row does not
   * hold, or an `owner` other than the row's (apply writes them before any
   * step). Absent when there is none.
   */
  fleetChanges?: FleetChange[];
  /** Counts per action, every action present (0 when none); `noop` is the sum of `unchanged` counts. */
  summary: Record<Action, number>;
  /** True when a mandatory violation exists: the plan cannot be applied. */
  blocked: boolean;
  /**
   * Who vouches for a saved plan: present in what `fleet plan --out` writes,
   * absent from a fresh plan that never leaves the process. Made and checked
   * by engine/plan/integrity.ts; `fleet apply PLANFILE` refuses a plan
   * without a seal that verifies.
   */
  seal?: PlanSeal;
}

/**
 * A saved plan's seal (engine/plan/integrity.ts): an HMAC over the plan's
 * canonical content (every field but the seal) under a key only the
 * stack's record holds. The key itself is never in the plan.
 */
export interface PlanSeal {
  alg: 'hmac-sha256';
  /** The record's stack id (a random id made once per stack in its record). */
  stackId: string;
  /** Which key signed it. */
  keyId: string;
  /** sha256 hex of the canonical content: what `fleet apply` checks the file against. */
  digest: string;
  /** base64url HMAC-SHA256 over the stack id and digest under the key. */
  signature: string;
}
