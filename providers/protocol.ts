// Wire types between the CLI (apply, refresh, providers) and a DMZ client.
// docs/protocol.md describes the same routes for people; the JSON Schemas the
// DMZ client validates with live in providers/dmz-client/schemas.ts.
// If you add a field here, also add it to those schemas and to docs/protocol.md.
import type { VmSize } from '../engine/plan/types.ts';

export type Decision = 'approved' | 'modified' | 'vetoed';
export type StepOutcome = 'ok' | 'failed' | 'vetoed';

/** What the CLI knows of a VM it asks to create; the DMZ client adds its own data center. */
export interface NewVmRequest {
  /** UUID proposed by the CLI; retries and the record use the same id. */
  id: string;
  stack: string;
  fleet: string;
  owner: string;
  index: number;
  name: string;
  /** Logical image; the authority translates it for the data center. */
  image: string;
  size: VmSize;
  encryptedDisk: boolean;
  desiredState: string;
  specHash: string;
  /** Id of the live VM at the same address this one replaces (create-before-delete); deposed when this one is inserted. */
  replaces?: string;
}

/** POST /v1/vms: the VM enters the pack's initial state in the record (no cloud call yet). */
export interface CreateVmRequest {
  idempotencyKey: string;
  planId: string | null;
  vm: NewVmRequest;
}

/**
 * POST /v1/vms/:id/transitions: exactly one edge of the lifecycle diagram.
 * A resize is `{ from: 'PoweredOff', to: 'PoweredOff', operation: 'resize', size }`.
 */
export interface TransitionRequest {
  idempotencyKey: string;
  planId: string | null;
  from: string;
  to: string;
  operation?: 'resize';
  size?: VmSize;
}

/** DELETE /v1/vms/:id: the edge into the terminal state (from is the VM's current state, e.g. BeingDeleted). */
export interface DeleteVmRequest {
  idempotencyKey: string;
  planId: string | null;
  from: string;
  /** The terminal state; defaults to the pack's first terminal state. */
  to?: string;
}

/** The VM as the record holds it after the step. */
export interface StepVm {
  id: string;
  address: string;
  state: string;
  cloudId: string | null;
  realImage: string | null;
  version: number;
}

/**
 * Answer to every mutating call. A vetoed or failed step is a 200 with
 * outcome `vetoed` / `failed`: the request was carried out as far as allowed,
 * and a retry with the same idempotency key returns this same result.
 */
export interface StepResult {
  requestId: string;
  decision: Decision;
  /** Always set: why the authority approved, modified or vetoed. */
  reason: string;
  outcome: StepOutcome;
  /** Absent only when the authority vetoed a request about a VM it does not know. */
  vm?: StepVm;
  /** Cloud operation the edge ran (`none` when only the record changed). */
  operation?: string;
  error?: { code: string; message: string };
}

/** What the cloud says, independent of the record (for refresh). */
export type PowerState = 'on' | 'off';
export type AgentState = 'none' | 'booting' | 'ready' | 'failed' | 'stopping';

export interface ActualVm {
  vmId: string;
  cloudId: string;
  dataCenter: string;
  name: string;
  image: string;
  size: VmSize;
  encryptedDisk: boolean;
  /** `terminated` VMs are gone from the cloud (deleted, or killed after a denied boot). */
  status: 'present' | 'terminated';
  power: PowerState;
  agent: AgentState;
  /** The default pack's state this cloud state corresponds to (Deleted, PoweredOff, PoweredOn, Starting, Running, BootFailed, ShuttingDown). */
  observedState: string;
}

export interface HealthResponse {
  ok: boolean;
  service: 'dmz-client' | 'authority';
  dataCenter?: string;
  driver?: string;
}

/** POST /v1/boot, called by a booting VM's agent. */
export interface BootRequest {
  cloudId: string;
  vmId: string;
  image: string;
  bootToken: string;
}

export interface BootResponse {
  approved: boolean;
  reason: string;
  /** Released only on approval, and only for an encrypted disk. */
  diskKey?: string;
}

/** Error body of every non-2xx answer from the DMZ client and the authority. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** Most steps in one POST /v1/batch. */
export const STEP_BATCH_MAX = 500;

/** One step of a POST /v1/batch: the body of the single route it stands for, and the VM id of its path. */
export type BatchStep =
  | { op: 'create'; body: CreateVmRequest }
  | { op: 'transition'; vmId: string; body: TransitionRequest }
  | { op: 'delete'; vmId: string; body: DeleteVmRequest };

/** Most steps in one run. */
export const RUN_STEPS_MAX = 50;

/**
 * A member's steps, sent at once (docs/protocol.md, "Runs"): the DMZ client
 * carries them out in order, each exactly as its single request (same
 * idempotency key, same answer), and stops at the first that is not ok. It
 * answers each step as soon as it is done, so the caller still sees (and
 * journals) every step on its own.
 */
export interface BatchRun {
  op: 'run';
  steps: BatchStep[];
  /**
   * The apply's lane (docs/protocol.md, "Lanes"): of the runs naming lane
   * `id`, at most `width` do cloud work at once at this DMZ client; the
   * others wait, approved, for a place. Without it the run starts at once.
   */
  lane?: RunLane;
}

export interface RunLane {
  /** One per apply (and DMZ client). */
  id: string;
  /** The apply's --parallelism. */
  width: number;
}

/**
 * POST /v1/batch: answered with NDJSON lines (BatchAnswerLine,
 * engine/authority/protocol.ts) in the order things finish: one line
 * `{ i, status, body }` per step, and for a run one line `{ i, k, status, body }`
 * per step k it carried out, the last being its last step or the first not ok.
 */
export interface StepBatchRequest {
  steps: (BatchStep | BatchRun)[];
}
