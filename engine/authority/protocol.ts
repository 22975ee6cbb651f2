// Wire types between a DMZ client and the authority (docs/protocol.md).
// If you add a field here, also add it to ./schemas.ts and docs/protocol.md.
import type { VmSize } from '../plan/types.ts';
import type { Decision } from '../../providers/protocol.ts';

export type AuthorizeKind = 'create' | 'transition' | 'resize';

/** The VM a create asks for, as the DMZ client forwards it (its data center added). */
export interface AuthorizeVm {
  stack: string;
  fleet: string;
  owner: string;
  index: number;
  name: string;
  dataCenter: string;
  image: string;
  size: VmSize;
  encryptedDisk: boolean;
  desiredState: string;
  specHash: string;
  /** Id of the live VM at the same address this one replaces (create-before-delete); deposed when this one is inserted. */
  replaces?: string;
}

export interface AuthorizeRequest {
  dataCenter: string;
  requestId: string;
  planId: string | null;
  kind: AuthorizeKind;
  vmId: string;
  /** null for a create (the VM does not exist yet). */
  from: string | null;
  /** Required for a transition; for a create it may be left out (the pack's initial state). */
  to?: string;
  vm?: AuthorizeVm;
  /** New size, for a resize. */
  size?: VmSize;
}

/** Short-lived, scoped to one data center; the driver refuses anything else. */
export interface ScopedCredentials {
  dataCenter: string;
  token: string;
  expiresAt: string;
  /** For an `aws` data center: STS session credentials the broker got for it (engine/authority/credentials/aws.ts); a secret, never logged or stored. */
  aws?: { accessKeyId: string; secretAccessKey: string; sessionToken: string; expiration: string };
  /** For an `azure` data center: an access token of the principal scoped to its resource group (engine/authority/credentials/azure.ts); a secret, never logged or stored. */
  azure?: { accessToken: string; expiresOn: string; subscriptionId: string; resourceGroup: string };
}

export interface AuthorizeResponse {
  decision: Decision;
  /** Always set, also on approval. */
  reason: string;
  /** Cloud operation of the edge (`none`: record only; `resize`; `insert` for a create). */
  operation: string;
  /** The translated image for this data center. */
  realImage?: string;
  /** Absent when vetoed. */
  credentials?: ScopedCredentials;
  /** One-time token a VM presents at boot; issued with every approved `boot` edge. */
  bootToken?: string;
  /** sha256 (hex) of the disk key, issued with an approved `createVm` of an encrypted VM so the cloud can check the key later. */
  diskKeyHash?: string;
  /** The record's VM after the authorization (absent when the VM is unknown). */
  vm?: AuthorityVm;
}

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

export interface ReportRequest {
  dataCenter: string;
  requestId: string;
  planId: string | null;
  vmId: string;
  from: string;
  to: string;
  outcome: 'ok' | 'failed';
  /** Set by a successful createVm. */
  cloudId?: string;
  /** New size of a successful resize. */
  size?: VmSize;
  detail?: string;
}

/** The detail of an ok report of an edge whose operation is `none` (no cloud call); a `none` edge an advance moves at once is written with it too. */
export const NONE_REPORT_DETAIL = 'record only';

export interface ReportResponse {
  /** The record's VM after the report. */
  vm: AuthorityVm;
  /** What the record did: `moved` along the edge, `failed` along a failure edge, `noted` a history row only, `already` (a repeated report). */
  effect: 'moved' | 'failed' | 'noted' | 'already';
}

export interface BootAuthorizeRequest {
  dataCenter: string;
  vmId: string;
  cloudId: string;
  image: string;
  bootToken: string;
}

export interface BootAuthorizeResponse {
  approved: boolean;
  reason: string;
  diskKey?: string;
}

/**
 * What was just done to a VM and the authorization of its next edges, in one
 * call (POST /v1/advance, docs/protocol.md "Advance"), one VM at a time:
 * answered as the report (or the create), then each edge's authorize and,
 * for a `none` edge in the middle, its ok report, would be answered one by
 * one, with the same checks and history rows.
 */
export interface AdvanceRequest {
  /** What was just done to the VM: the report of an edge ... */
  report?: ReportRequest;
  /** ... or its create (kind 'create'), authorized (inserted) first. Exactly one of report and create. */
  create?: AuthorizeRequest;
  /**
   * The VM's next edges in order (1..n; transitions or resizes, each from the
   * state the one before leads to). Each but the last must be an edge whose
   * operation is `none`: it is approved and moved at once (its intent row,
   * then its transition, as an authorize and an ok report would write them).
   * The last is authorized only, for the DMZ client to carry out.
   */
  next: AuthorizeRequest[];
  /**
   * With `ahead`, `next` may go on past the edge to carry out: the edges
   * after it are approved ahead, as far as they would be approved on the
   * rows the edges before them leave (same checks). Their intent rows are
   * not written now: each is written by the statement of the ok report of
   * the edge before it, so the DMZ client may start an edge approved ahead
   * as soon as the edge before it is done, its report on the way. Anything
   * but that report (a failure, a refusal, another authorize or advance
   * about the VM) drops the VM's approvals ahead.
   */
  ahead?: boolean;
}

export interface AdvanceResponse {
  report?: ReportResponse;
  create?: AuthorizeResponse;
  /**
   * As far as decided, in order: each edge's authorization, and for a `none`
   * edge moved at once, its report answer. Stops after the first that is not
   * approved/modified or not moved (a middle edge whose operation is not
   * `none` is answered as authorize would, not moved: the DMZ client carries
   * it out); empty when the report left the VM anywhere but next[0].from or
   * the create was vetoed.
   */
  next: AdvanceStep[];
}

/** One decided edge of an advance. */
export interface AdvanceStep {
  authorize: AuthorizeResponse;
  /** Present when the edge (a `none` edge in the middle) was moved at once. */
  moved?: ReportResponse;
  /** Approved ahead (AdvanceRequest.ahead): its intent row is written with the report of the edge before it. */
  ahead?: boolean;
}

/** One call in a batch: the body of the single route it stands for (/v1/authorize, /v1/reports, /v1/advance, /v1/boot/authorize). */
export type BatchCall =
  | { call: 'authorize'; body: AuthorizeRequest }
  | { call: 'report'; body: ReportRequest }
  | { call: 'advance'; body: AdvanceRequest }
  | { call: 'boot'; body: BootAuthorizeRequest };

export interface BatchRequest {
  calls: BatchCall[];
}

/** A line of the NDJSON answer to either service's POST /v1/batch (engine/authority/http.ts streamAnswers): item `i` got what its single route would have answered. */
export interface BatchAnswerLine {
  i: number;
  /** For a run of steps (the DMZ client's batch): which of its steps this line answers. */
  k?: number;
  status: number;
  body: unknown;
}
