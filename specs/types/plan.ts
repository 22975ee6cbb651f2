/* generated from specs/schema/plan.schema.json by `npm run gen:types` — do not edit */

/**
 * A plan document, formatVersion "2" (docs/plan-format.md): what `fleet plan --out` writes and `fleet apply PLANFILE` reads. engine/model/plan-document.ts holds the same shape as TypeScript; engine/model/plan-document.test.ts keeps the two in step.
 */
export interface PlanDocumentFile {
  /**
   * Always "2" (docs/plan-format.md); "1" listed every unchanged member as a noop change.
   */
  formatVersion: '2';
  /**
   * Random id; apply journals every step under it.
   */
  id: string;
  stack: string;
  createdAt: string;
  /**
   * Pack name@version.
   */
  policyPack: string;
  /**
   * Fleets in scope.
   */
  fleets: string[];
  options: PlanOptionsDoc;
  basis: PlanBasisDoc;
  /**
   * Every change that does something (no noops: unchanged members are summarised in `unchanged`), sorted by fleet name then index.
   */
  changes: PlanChange[];
  /**
   * Per fleet in scope with unchanged members, sorted by fleet: how many there are, where and in which state.
   */
  unchanged: PlanUnchangedFleet[];
  policy: {
    violations: {
      policy: string;
      level: 'advisory' | 'mandatory' | 'disabled';
      address: string;
      message: string;
      hint: string;
    }[];
    grants: {
      fleet: string;
      requested: number;
      granted: number;
      reason: string;
      policy: string;
    }[];
  };
  /**
   * The rollout of each fleet with disruptive changes, by fleet name; absent when there is none.
   */
  rollouts?: PlanRollout[];
  /**
   * What the plan changes of fleets themselves, by fleet name: a spec's protect that the record's fleet row does not hold, or an owner other than the row's (apply writes them before any step). Only fleets in scope with a spec, less those a program manages; a fleet the record has no row of yet reads as unprotected (from: false, with new: true), so a new fleet with protect: true is listed, and has no owner to change (its row is made with its spec's); absent when there is none.
   */
  fleetChanges?: {
    fleet: string;
    /**
     * The record has no row of this fleet yet (decided from the record at plan time, not inferred from its basis version): apply makes the row with protect.to. Renderers show it as a new fleet's setting (`+ fleet web: protect true`). Absent for a fleet with a row.
     */
    new?: true;
    /**
     * The record's protection (from) and the spec's (to); absent when they agree.
     */
    protect?: {
      from: boolean;
      to: boolean;
    };
    /**
     * The record's owner (from) and the spec's (to), of a fleet the record has a row of; absent when they agree.
     */
    owner?: {
      from: string;
      to: string;
    };
  }[];
  /**
   * Counts per action, every action present.
   */
  summary: {
    create: number;
    transition: number;
    update: number;
    replace: number;
    delete: number;
    noop: number;
  };
  /**
   * True when a mandatory violation exists.
   */
  blocked: boolean;
  seal?: PlanSeal;
}
export interface PlanOptionsDoc {
  /**
   * Fleets or members (`web/3`) the plan is narrowed to.
   */
  targets: string[];
  excludes: string[];
  allowDestroy: string[];
  refresh: boolean;
  /**
   * Members forced to be replaced (`--replace ADDRESS`).
   */
  replace?: string[];
}
/**
 * What the plan was computed against; apply refuses the plan if any of it changed.
 */
export interface PlanBasisDoc {
  /**
   * VM id -> record version.
   */
  vms: {
    [k: string]: number;
  };
  /**
   * Fleet name -> fleet version (0: not in the record yet).
   */
  fleets: {
    [k: string]: number;
  };
}
/**
 * What apply does to one member.
 */
export interface PlanChange {
  /**
   * `<fleet>/<index>` (engine/model/address.ts).
   */
  address: string;
  fleet: string;
  index: number;
  /**
   * The VM's stable name, `<stack>-<fleet>-<index>`.
   */
  name: string;
  dataCenter: string;
  /**
   * Apply branches on this, never on reason.
   */
  action: 'create' | 'transition' | 'update' | 'replace' | 'delete' | 'noop';
  /**
   * Current state (the initial state for a create).
   */
  from: string;
  /**
   * Desired state.
   */
  to: string;
  /**
   * Every diagram state the VM passes through, from to to inclusive.
   */
  path: string[];
  /**
   * Replace only: the old VM's path to a terminal state.
   */
  oldPath?: string[];
  /**
   * Replace only: which VM goes first.
   */
  replaceOrder?: 'create-before-delete' | 'delete-before-create';
  /**
   * The rollout wave of the change (the fleet's entry in `rollouts`); absent: not waved, runs beside the first wave.
   */
  wave?: number;
  steps: PlanStep[];
  /**
   * Display only.
   */
  reason: string;
  image: {
    logical: string;
    real: string | null;
  };
  size: PlanSize;
  /**
   * Update and replace: what changes, { field: { from, to } }.
   */
  diff?: {
    [k: string]: {
      from: unknown;
      to: unknown;
    };
  };
  placement?: PlanPlacement;
  /**
   * Record id of the existing VM (absent for create).
   */
  vmId?: string;
  specHash: string;
  encryptedDisk: boolean;
  /**
   * Delete only: the deposed old VM of a replace that did not finish.
   */
  deposed?: boolean;
}
/**
 * One edge of the lifecycle diagram (or the in-place resize, from === to).
 */
export interface PlanStep {
  /**
   * State before.
   */
  from: string;
  /**
   * State after.
   */
  to: string;
  /**
   * Which VM of the change the step acts on.
   */
  member: 'current' | 'new' | 'old';
  /**
   * The edge's cloud operation (engine/model/operation.ts).
   */
  operation: 'createVm' | 'powerOn' | 'boot' | 'awaitReady' | 'shutdown' | 'powerOff' | 'resize' | 'deleteVm' | 'none';
}
/**
 * Whole CPUs, memory and boot disk in GiB.
 */
export interface PlanSize {
  cpu: number;
  memoryGiB: number;
  diskGiB: number;
}
/**
 * Why a new member goes to its data center.
 */
export interface PlanPlacement {
  strategy: 'nearest' | 'spread' | 'pack' | 'existing';
  candidates: string[];
  excluded: {
    dataCenter: string;
    why: string;
  }[];
  summary: string;
  distanceKm?: number;
}
/**
 * The members of one fleet that the plan leaves as they are, summarised: a v2 plan lists no noop change.
 */
export interface PlanUnchangedFleet {
  fleet: string;
  /**
   * How many members match their spec.
   */
  count: number;
  /**
   * The fleet's version in the record when the plan was made (0: not in the record). Apply checks it only for a fleet the plan also changes, through basis.fleets.
   */
  version: number;
  /**
   * State -> how many of the unchanged members are in it.
   */
  states: {
    [k: string]: number;
  };
  /**
   * Data center -> how many of the unchanged members live there.
   */
  dataCenters: {
    [k: string]: number;
  };
}
/**
 * How a fleet's disruptive changes are rolled out, in waves (docs/rollouts.md).
 */
export interface PlanRollout {
  fleet: string;
  /**
   * Most members out of Running at once.
   */
  maxUnavailable: number;
  /**
   * Most extra VMs at once (replacements created before the old VM goes).
   */
  maxSurge: number;
  /**
   * Failed members that stop the rollout.
   */
  failureThreshold: number;
  /**
   * Where the settings came from; display only.
   */
  reason: string;
  waves: PlanRolloutWave[];
}
export interface PlanRolloutWave {
  wave: number;
  /**
   * Addresses of the members the wave changes, in index order.
   */
  members: string[];
  /**
   * How many of them go out of Running.
   */
  unavailable: number;
  /**
   * How many are replaced by a surge VM first.
   */
  surge: number;
  /**
   * Members out of Running already (failed, or missing: created again, or added by a higher count), brought back in this wave (they hold its places).
   */
  returning?: string[];
}
/**
 * Who vouches for a saved plan (docs/plan-format.md, "Seal"): written by `fleet plan --out`, checked by `fleet apply PLANFILE`, which refuses a plan without one that verifies. An HMAC-SHA256 over the plan's canonical content (every field but `seal`, keys sorted, no whitespace) under a key only the stack's record holds (the embedded default) or, in a deployed stack, only its authority holds.
 */
export interface PlanSeal {
  /**
   * The seal's algorithm.
   */
  alg: 'hmac-sha256';
  /**
   * The stack's id in its record: a random id made once per stack, so two stacks sharing a name differ.
   */
  stackId: string;
  /**
   * Which of the record's keys signed the plan.
   */
  keyId: string;
  /**
   * sha256 (hex) of the plan's canonical content.
   */
  digest: string;
  /**
   * base64url HMAC-SHA256 over the stack id and digest under the key.
   */
  signature: string;
}
