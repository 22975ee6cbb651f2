/* generated from protocol/schemas/ by `npm run gen:types` — do not edit */
// Every wire message between the CLI, the DMZ clients and the authority (docs/protocol.md).

import type { VmSize } from '../engine/model/size.ts';
export type { VmSize };

export type PowerState = 'on' | 'off';
/**
 * The boot agent of the VM's current run, as this DMZ client's last report of it says (AgentState); `unknown`: the VM runs and this client holds no report of its agent's current run (it restarted without its state folder, another client booted it, or the VM was started again since the report it holds: a start from the cloud's console), so nothing here says its boot handshake completed (the aws and azure drivers; observedState is Running all the same).
 */
export type ObservedAgent = 'none' | 'booting' | 'ready' | 'failed' | 'stopping' | 'unknown';
export type AuthorizeKind = 'create' | 'transition' | 'resize';
/**
 * The VM a create asks for, as the DMZ client forwards it (its data center added).
 */
export type AuthorizeVm = VmSpec & {
  dataCenter: string;
};
export type Decision = 'approved' | 'modified' | 'vetoed';
/**
 * One call in a batch: the body of the single route it stands for (/v1/authorize, /v1/reports, /v1/advance, /v1/boot/authorize).
 */
export type BatchCall =
  | {
      call: 'authorize';
      body: AuthorizeRequest;
    }
  | {
      call: 'report';
      body: ReportRequest;
    }
  | {
      call: 'advance';
      body: AdvanceRequest;
    }
  | {
      call: 'boot';
      body: BootAuthorizeRequest;
    };
/**
 * One step of a POST /v1/batch: the body of the single route it stands for, and the VM id of its path.
 */
export type BatchStep =
  | {
      op: 'create';
      body: CreateVmRequest;
    }
  | {
      op: 'transition';
      vmId: string;
      body: TransitionRequest;
    }
  | {
      op: 'delete';
      vmId: string;
      body: DeleteVmRequest;
    };
/**
 * What the CLI knows of a VM it asks to create; the DMZ client adds its own data center.
 */
export type NewVmRequest = VmSpec & {
  /**
   * UUID proposed by the CLI; retries and the record use the same id.
   */
  id: string;
};
/**
 * The authority's answer to a DMZ client's boot check: the VM's answer (BootResponse), and a denial's cause for the DMZ client only.
 */
export type BootAuthorizeResponse = BootResponse & {
  /**
   * A denial's cause (the VM's address and state, the record's cloud id or image, a used token), as the VM's history says it; only for a VM id that is not another data center's. The DMZ client never passes it to the booting VM: it puts it in the failed step's message of the VM it boots.
   */
  detail?: string;
};
export type StepOutcome = 'ok' | 'failed' | 'vetoed';

/**
 * What the cloud says, independent of the record (for refresh).
 */
export interface ActualVm {
  vmId: string;
  cloudId: string;
  dataCenter: string;
  name: string;
  image: string;
  size: VmSize;
  encryptedDisk: boolean;
  /**
   * `terminated` VMs are gone from the cloud (deleted, or killed after a denied boot).
   */
  status: 'present' | 'terminated';
  power: PowerState;
  agent: ObservedAgent;
  /**
   * When the VM's current run began, as its cloud says (EC2: launchTime, its last start; Azure: the time of the instance view's provisioning state, its last operation's end, a start or restart among them). Evidence that its boot completed the handshake (an agent report, an approved boot attempt) counts only from after it (fleet import). Absent when the cloud says nothing of it (the sim, whose agents are its own).
   */
  startedAt?: string;
  /**
   * The fleet the VM was created for, as its cloud tags name it (the sim: the address it was created with; EC2: fleet:fleet; Azure: fleet-address's fleet). Absent when its tags name none (a VM made before the tag, or not by fleet apply).
   */
  fleet?: string;
  /**
   * The member (`fleet/index`) the VM was created as, as its cloud tags name it (the sim: its address; EC2: fleet:address; Azure: fleet-address). Absent when its tags name none.
   */
  address?: string;
  /**
   * The default pack's state this cloud state corresponds to (Deleted, PoweredOff, PoweredOn, Starting, Running, BootFailed, ShuttingDown; the azure driver also BeingCreated, BeingDeleted and CreateFailed, from ARM's provisioning state).
   */
  observedState: string;
}
/**
 * POST /v1/plans/admin-check (the authority, the CLI's token), POST /v1/admin-check (the DMZ client, the CLI's token; it passes the body on unchanged to its authority's POST /v1/admin-check, a data center's token): `fleet apply` proves it holds the admin token before any change starts, when its plan overrides a protected fleet's deletion and the protect rule says `override: admin`. The token itself is never sent. Read-only: nothing is written.
 */
export interface AdminCheckRequest {
  /**
   * Fresh random base64url, chosen by the CLI per check.
   */
  nonce: string;
  /**
   * hex HMAC-SHA256 under the admin token of `admin-check`, the stack name and the nonce joined by newlines (protocol/hash.ts adminCheckProof).
   */
  proof: string;
}
export interface AdminCheckResponse {
  ok: true;
}
/**
 * What was just done to a VM and the authorization of its next edges, in one call (POST /v1/advance, docs/protocol.md "Advance"): answered as the report (or the create), then each edge's authorize and, for a `none` edge in the middle, its ok report would be answered one by one, with the same checks and history rows.
 */
export interface AdvanceRequest {
  /**
   * What was just done to the VM: the report of an edge ...
   */
  report?: ReportRequest;
  /**
   * ... or its create (kind create), authorized (inserted) first. Exactly one of report and create.
   */
  create?: AuthorizeRequest;
  /**
   * The VM's next edges in order (1..n; transitions or resizes, each from the state the one before leads to). Each but the last must be an edge whose operation is `none`: it is approved and moved at once. The last is authorized only, for the DMZ client to carry out.
   *
   * @minItems 1
   * @maxItems 20
   */
  next: AuthorizeRequest[];
  /**
   * With `ahead`, `next` may go on past the edge to carry out: the edges after it are approved ahead, as far as they would be approved on the rows the edges before them leave (same checks). Their intent rows are written by the statement of the ok report of the edge before each; anything but that report (a failure, a refusal, another authorize or advance about the VM) drops the VM's approvals ahead.
   */
  ahead?: boolean;
}
export interface AuthorizeRequest {
  dataCenter: string;
  /**
   * The step's id at the authority, its report's too. The DMZ client makes it from its data center, the step's idempotency key and request (a UUID), so the same step sent again has the same id: the authority finds a step it recorded the report of done (`already`), with or without a plan id.
   */
  requestId: string;
  planId: string | null;
  kind: AuthorizeKind;
  vmId: string;
  /**
   * null for a create (the VM does not exist yet).
   */
  from: string | null;
  /**
   * Required for a transition; for a create it may be left out (the pack's initial state).
   */
  to?: string;
  vm?: AuthorizeVm;
  /**
   * New size, for a resize.
   */
  size?: VmSize;
  /**
   * The fencing token the CLI's request carried (the DMZ client passes it on).
   */
  fencingToken?: number;
  override?: Override;
}
/**
 * The VM a create asks for.
 */
export interface VmSpec {
  stack: string;
  fleet: string;
  owner: string;
  index: number;
  name: string;
  /**
   * Logical image; the authority translates it for the data center.
   */
  image: string;
  size: VmSize;
  encryptedDisk: boolean;
  desiredState: string;
  specHash: string;
  /**
   * Id of the live VM at the same address that this one replaces (create-before-delete): it is deposed when this one is inserted.
   */
  replaces?: string;
  /**
   * The program the create comes from, e.g. `pulumi:<project>/<stack>` (a Pulumi Fleet or Vm); left out by fleet apply. The record keeps it as the fleet's manager (fleets.managed_by) and refuses a create by another manager while the fleet has live VMs (manager-mismatch).
   */
  managedBy?: string;
}
/**
 * An override a person gave with the plan (`--allow-destroy <fleet>`), carried with each request of that fleet's deleting steps. The authority records who and why in the VM's history; the stack may accept it only with a proof made with the admin token (the protect rule's `override: admin`).
 */
export interface Override {
  /**
   * Deleting a member of a protected fleet is allowed.
   */
  allowDestroy: boolean;
  /**
   * Who gave it (the apply's actor, e.g. user@host or the CI identity).
   */
  by: string;
  /**
   * Why: the plan and flag it came from.
   */
  reason: string;
  /**
   * hex HMAC-SHA256 under the admin token of `allow-destroy`, the VM id, plan id, `by` and `reason` joined by newlines (protocol/hash.ts overrideProof). Required when the stack accepts overrides from admins only.
   */
  proof?: string;
}
export interface AdvanceResponse {
  report?: ReportResponse;
  create?: AuthorizeResponse;
  /**
   * As far as decided, in order: each edge's authorization, and for a `none` edge moved at once, its report answer. Stops after the first that is not approved/modified or not moved; empty when the report left the VM anywhere but next[0].from or the create was vetoed.
   */
  next: AdvanceStep[];
}
export interface ReportResponse {
  /**
   * The record's VM after the report.
   */
  vm: AuthorityVm;
  /**
   * What the record did: `moved` along the edge, `failed` along a failure edge, `noted` a history row only, `already` (a repeated report).
   */
  effect: 'moved' | 'failed' | 'noted' | 'already';
  /**
   * Only on a failure report whose `code` is `driver.boot-denied`, and only `true`: the record now counts the VM's latest boot as denied (FleetRecord.deniedBoots: this report's code and the authority's own denial of that boot, docs/record.md "Denied boots"), so the VM is not booted again. The DMZ client passes it on in the step's answer (StepResult.bootDenied). An authority older than the field never sends it.
   */
  bootDenied?: boolean;
}
export interface AuthorizeResponse {
  decision: Decision;
  /**
   * Always set, also on approval.
   */
  reason: string;
  /**
   * Cloud operation of the edge (`none`: record only; `resize`; `insert` for a create).
   */
  operation: string;
  /**
   * The translated image for this data center.
   */
  realImage?: string;
  /**
   * Absent when vetoed.
   */
  credentials?: ScopedCredentials;
  /**
   * One-time token a VM presents at boot; issued with every approved `boot` edge.
   */
  bootToken?: string;
  /**
   * The edge was carried out and reported already by the same step (a step sent again after its answer was lost: a DMZ client restart, or the answer of its report lost on the way back), known by the plan id it carries or, without one, by its request id: nothing to do and nothing to report; the step is answered ok with the VM as the record has it.
   */
  already?: boolean;
  /**
   * sha256 (hex) of the disk key, issued with an approved `createVm` of an encrypted VM so the cloud can check the key later.
   */
  diskKeyHash?: string;
  /**
   * The record's VM after the authorization (absent when the VM is unknown).
   */
  vm?: AuthorityVm;
}
/**
 * One decided edge of an advance.
 */
export interface AdvanceStep {
  authorize: AuthorizeResponse;
  /**
   * Present when the edge (a `none` edge in the middle) was moved at once.
   */
  moved?: ReportResponse;
  /**
   * Approved ahead (AdvanceRequest.ahead): its intent row is written with the report of the edge before it.
   */
  ahead?: boolean;
}
/**
 * POST /v1/boot/status: a real VM's boot agent (providers/boot-agent) reports its state, proven by the one-time boot token it booted with. Drivers whose VMs run the shipped agent (aws, azure) learn readiness from it.
 */
export interface AgentReport {
  cloudId: string;
  vmId: string;
  bootToken: string;
  state: 'booting' | 'ready' | 'failed';
  /**
   * Why it failed (never a secret).
   */
  detail?: string;
  /**
   * The boot endpoint denied the boot (the VM powers itself off; the driver terminates it).
   */
  denied?: boolean;
}
/**
 * POST /v1/boot/status: the report was taken.
 */
export interface AgentReportAnswer {
  ok: true;
}
/**
 * The record's VM as the authority answers it.
 */
export interface AuthorityVm {
  id: string;
  address: string;
  name: string;
  size: VmSize;
  dataCenter: string;
  state: string;
  cloudId: string | null;
  realImage: string | null;
  encryptedDisk: boolean;
  version: number;
}
/**
 * A line of the NDJSON answer to either service's POST /v1/batch: item `i` got what its single route would have answered.
 */
export interface BatchAnswerLine {
  i: number;
  /**
   * For a run of steps (the DMZ client's batch): which of its steps this line answers.
   */
  k?: number;
  status: number;
  /**
   * What the single route answered: its 200 body, or an ErrorBody.
   */
  body: unknown;
}
export interface ReportRequest {
  dataCenter: string;
  requestId: string;
  planId: string | null;
  vmId: string;
  from: string;
  to: string;
  outcome: 'ok' | 'failed';
  /**
   * Set by a successful createVm.
   */
  cloudId?: string;
  /**
   * New size of a successful resize.
   */
  size?: VmSize;
  detail?: string;
  /**
   * Only with outcome `failed`: the failed step's error code (`driver.<kind>`, docs/protocol.md "Wire errors"), kept with the VM's history row. `driver.boot-denied` of a boot's failure says the driver saw the VM's own agent denied: the next plan deletes and creates such a VM again instead of booting it again (docs/recovery.md). A DMZ client older than this field sends none; its failures count as not denied.
   */
  code?:
    | 'driver.credentials'
    | 'driver.capacity'
    | 'driver.not-found'
    | 'driver.invalid-state'
    | 'driver.transient'
    | 'driver.failed'
    | 'driver.boot-failed'
    | 'driver.boot-denied'
    | 'driver.timeout';
}
export interface BootAuthorizeRequest {
  dataCenter: string;
  vmId: string;
  cloudId: string;
  image: string;
  bootToken: string;
}
export interface BatchRequest {
  /**
   * @minItems 1
   * @maxItems 200
   */
  calls: BatchCall[];
}
/**
 * A member's steps, sent at once (docs/protocol.md, "Runs"): the DMZ client carries them out in order, each exactly as its single request (same idempotency key, same answer), and stops at the first that is not ok. It answers each step as soon as it is done.
 */
export interface BatchRun {
  op: 'run';
  /**
   * @minItems 1
   * @maxItems 50
   */
  steps: BatchStep[];
  lane?: RunLane;
}
/**
 * POST /v1/vms: the VM enters the pack's initial state in the record (no cloud call yet).
 */
export interface CreateVmRequest {
  idempotencyKey: string;
  planId: string | null;
  vm: NewVmRequest;
  /**
   * The fencing token of the apply's fleet lock (docs/recovery.md, "Fencing"): the authority refuses the request (`fenced`) once a newer lock of the VM's fleet exists, so a killed apply's runs still in flight never act after the next apply took over. A request without one is refused (`locked`) while an apply holds the fleet.
   */
  fencingToken?: number;
}
/**
 * POST /v1/vms/:id/transitions: exactly one edge of the lifecycle diagram. A resize is `{ from: 'PoweredOff', to: 'PoweredOff', operation: 'resize', size }`.
 */
export interface TransitionRequest {
  idempotencyKey: string;
  planId: string | null;
  /**
   * The fencing token of the apply's fleet lock (docs/recovery.md, "Fencing"): the authority refuses the request (`fenced`) once a newer lock of the VM's fleet exists, so a killed apply's runs still in flight never act after the next apply took over. A request without one is refused (`locked`) while an apply holds the fleet.
   */
  fencingToken?: number;
  from: string;
  to: string;
  operation?: 'resize';
  size?: VmSize;
  override?: Override;
}
/**
 * DELETE /v1/vms/:id: the edge into the terminal state (from is the VM's current state, e.g. BeingDeleted).
 */
export interface DeleteVmRequest {
  idempotencyKey: string;
  planId: string | null;
  /**
   * The fencing token of the apply's fleet lock (docs/recovery.md, "Fencing"): the authority refuses the request (`fenced`) once a newer lock of the VM's fleet exists, so a killed apply's runs still in flight never act after the next apply took over. A request without one is refused (`locked`) while an apply holds the fleet.
   */
  fencingToken?: number;
  from: string;
  /**
   * The terminal state; defaults to the pack's first terminal state.
   */
  to?: string;
  override?: Override;
}
/**
 * The apply's lane (docs/protocol.md, "Lanes"): of the runs naming lane `id`, at most `width` do cloud work at once at this DMZ client; the others wait, approved, for a place. Without it the run starts at once.
 */
export interface RunLane {
  /**
   * One per apply (and DMZ client).
   */
  id: string;
  /**
   * The apply's --parallelism.
   */
  width: number;
}
/**
 * The answer to a booting VM: the authority's answer (BootAuthorizeResponse) without its `detail`, which the DMZ client takes off.
 */
export interface BootResponse {
  approved: boolean;
  reason: string;
  /**
   * Released only on approval, and only for an encrypted disk.
   */
  diskKey?: string;
}
/**
 * POST /v1/boot, called by a booting VM's agent.
 */
export interface BootRequest {
  cloudId: string;
  vmId: string;
  image: string;
  bootToken: string;
}
/**
 * Body of every non-2xx answer from the DMZ client and the authority.
 */
export interface ErrorBody {
  error: WireErrorDetail;
}
/**
 * A wire error: `code` from the wire error registry (protocol/errors.ts, docs/protocol.md), `message` a sentence for people.
 */
export interface WireErrorDetail {
  code: string;
  message: string;
}
export interface HealthResponse {
  ok: boolean;
  service: 'dmz-client' | 'authority';
  dataCenter?: string;
  driver?: string;
}
export interface ListVmsResponse {
  vms: ActualVm[];
}
export interface PlanRegisterRequest {
  /**
   * The sealed plan about to be applied, exactly as sealed.
   */
  plan: {
    id: string;
    stack: string;
    fleets: string[];
    basis: {
      fleets: {
        [k: string]: number;
      };
      vms: {
        [k: string]: number;
      };
    };
    changes: {
      address: string;
      fleet: string;
      index: number;
      dataCenter: string;
      action: string;
      vmId?: string;
    }[];
  };
}
export interface PlanRegisterResponse {
  planId: string;
  digest: string;
  /**
   * How many members the plan changes: the authority approves requests about these only, under this plan id.
   */
  members: number;
}
export interface PlanSealRequest {
  /**
   * The plan to seal; a `seal` it carries is ignored (left out of the content).
   */
  plan: {
    id: string;
    stack: string;
    fleets: string[];
    basis: {
      fleets: {
        [k: string]: number;
      };
      vms: {
        [k: string]: number;
      };
    };
    changes: {
      address: string;
      fleet: string;
      index: number;
      dataCenter: string;
      action: string;
      vmId?: string;
    }[];
  };
}
export interface PlanSealResponse {
  seal: WirePlanSeal;
}
/**
 * A seal (the plan document's `seal`): HMAC-SHA256 over the stack id and the sha256 of the plan's canonical content.
 */
export interface WirePlanSeal {
  alg: 'hmac-sha256';
  stackId: string;
  keyId: string;
  digest: string;
  signature: string;
}
/**
 * Short-lived, scoped to one data center; the driver refuses anything else.
 */
export interface ScopedCredentials {
  dataCenter: string;
  /**
   * v1.<nonce>.<expiresAtMs>.<mac>: HMAC-SHA256 under the data center's credential key, derived from its DMZ client token (protocol/scoped-token.ts); the sim verifies it. A secret: never logged or stored.
   */
  token: string;
  expiresAt: string;
  /**
   * For an `aws` data center: STS session credentials the authority brokered for it (engine/authority/credentials/aws.ts). A secret: never logged or stored.
   */
  aws?: {
    accessKeyId: string;
    secretAccessKey: string;
    sessionToken: string;
    expiration: string;
  };
  /**
   * For an `azure` data center: an access token of the principal scoped to its resource group, which the authority brokered (engine/authority/credentials/azure.ts), with the subscription and resource group it is for. A secret: never logged or stored.
   */
  azure?: {
    accessToken: string;
    expiresOn: string;
    subscriptionId: string;
    resourceGroup: string;
  };
}
/**
 * POST /v1/batch: answered with NDJSON lines (BatchAnswerLine) in the order things finish: one line `{ i, status, body }` per step, and for a run one line `{ i, k, status, body }` per step k it carried out, the last being its last step or the first not ok.
 */
export interface StepBatchRequest {
  /**
   * @minItems 1
   * @maxItems 500
   */
  steps: (BatchStep | BatchRun)[];
}
/**
 * Answer to every mutating call. A vetoed or failed step is a 200 with outcome `vetoed` / `failed`: the request was carried out as far as allowed, and a retry with the same idempotency key returns this same result.
 */
export interface StepResult {
  requestId: string;
  decision: Decision;
  /**
   * Always set: why the authority approved, modified or vetoed.
   */
  reason: string;
  outcome: StepOutcome;
  /**
   * Cloud operation the edge ran (`none` when only the record changed).
   */
  operation?: string;
  /**
   * Absent only when the authority vetoed a request about a VM it does not know.
   */
  vm?: StepVm;
  /**
   * A failed step: `driver.<kind>` (protocol/errors.ts).
   */
  error?: WireErrorDetail;
  /**
   * Only on a failed boot (`driver.boot-denied`), and only `true`: the authority counts the VM's boot as denied, both its own denial and this failure (ReportResponse.bootDenied), so the VM is not to be booted again. A client that plans on its own (a Pulumi Vm or Fleet, docs/pulumi.md) deletes such a VM still in its failure state and creates it again; `fleet apply` reads the record instead. Absent from a DMZ client or authority older than the field: the VM is booted again.
   */
  bootDenied?: boolean;
}
/**
 * The VM as the record holds it after the step.
 */
export interface StepVm {
  id: string;
  address: string;
  state: string;
  cloudId: string | null;
  realImage: string | null;
  version: number;
}
