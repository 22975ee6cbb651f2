// What a step asks the authority, built from what the caller sent: the
// authorization request of a create, an edge or a resize, the state a step
// leaves its VM in, the fingerprint its idempotency key is kept with, and the
// request id the authority knows the step by. Pure functions of their
// arguments.
import { hash } from 'node:crypto';
import type { AuthorityVm, AuthorizeRequest } from '../../protocol/index.ts';
import type { VmSize } from '../../engine/model/index.ts';
import type { BatchStep, CreateVmRequest, Override, StepVm } from '../../protocol/index.ts';

/** What every request of one DMZ client shares: its data center, and the lifecycle's ends for requests that leave them out. */
export interface RequestDefaults {
  dataCenter: string;
  /** Where a create enters the record (the pack's initial state). */
  initial: string;
  /** Where a delete leads when it names no state (the pack's first terminal state). */
  terminal: string;
}

/** A step that carries a VM along an edge (not a create). */
export type EdgeStep = Exclude<BatchStep, { op: 'create' }>;

/** The VM a step acts on. */
export function stepVmId(s: BatchStep): string {
  return s.op === 'create' ? s.body.vm.id : s.vmId;
}

/** The authorization request of one edge, or of a resize (a size, and the same state at both ends), under request id `requestId` (stepRequestId). */
export function edgeRequest(
  dataCenter: string,
  requestId: string,
  vmId: string,
  planId: string | null,
  from: string,
  to: string,
  size?: VmSize,
  fencingToken?: number,
  override?: Override,
): AuthorizeRequest {
  const kind = size && from === to ? 'resize' : 'transition';
  return { dataCenter, requestId, planId, kind, vmId, from, to, ...(size ? { size } : {}), ...(fencingToken !== undefined ? { fencingToken } : {}), ...(override ? { override } : {}) };
}

/**
 * The request id a step is known by to the authority: a UUID made from the
 * data center, the step's idempotency key and its fingerprint, so the same
 * step sent again (same key, same request) has the same id, whichever DMZ
 * client process sends it. The authority recognizes a step that was carried
 * out and reported already by it (a DMZ client that crashed after the
 * report was recorded but before its idempotency log kept the answer): the
 * step is answered done, not vetoed on the state it moved itself
 * (docs/recovery.md, "Outages"). A different step, even for the
 * same edge, has another id. Version 8 (RFC 9562: custom), so it never
 * reads as a random one.
 */
export function stepRequestId(dataCenter: string, idempotencyKey: string, fingerprint: string): string {
  const h = hash('sha256', `dmzfleet step\n${dataCenter}\n${idempotencyKey}\n${fingerprint}`, 'hex');
  const variant = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The fingerprint of a step, as its single route keeps its idempotency key with (routes: create, transition <vm>, delete <vm>). */
export function stepFingerprint(s: BatchStep): string {
  return s.op === 'create' ? fingerprint('create', s.body) : fingerprint(`${s.op} ${s.vmId}`, s.body);
}

/**
 * The authorization request of an edge step (transition, resize or delete); the caller's fencing token goes on to the
 * authority. `fp`: the step's fingerprint (stepFingerprint), when the caller has it already.
 */
export function stepRequest(d: RequestDefaults, s: EdgeStep, fp: string = stepFingerprint(s)): AuthorizeRequest {
  const requestId = stepRequestId(d.dataCenter, s.body.idempotencyKey, fp);
  if (s.op === 'delete') return edgeRequest(d.dataCenter, requestId, s.vmId, s.body.planId, s.body.from, s.body.to ?? d.terminal, undefined, s.body.fencingToken, s.body.override);
  const t = s.body;
  return edgeRequest(d.dataCenter, requestId, s.vmId, t.planId, t.from, t.to, t.operation === 'resize' ? t.size : undefined, t.fencingToken, t.override);
}

/** The authorization request of a create: the VM enters the record in the initial state. `fp`: as stepRequest's. */
export function createRequest(d: RequestDefaults, b: CreateVmRequest, fp: string = fingerprint('create', b)): AuthorizeRequest {
  const { id: vmId, ...vm } = b.vm;
  return {
    dataCenter: d.dataCenter,
    requestId: stepRequestId(d.dataCenter, b.idempotencyKey, fp),
    planId: b.planId,
    kind: 'create',
    vmId,
    from: null,
    to: d.initial,
    vm: { ...vm, dataCenter: d.dataCenter },
    ...(b.fencingToken !== undefined ? { fencingToken: b.fencingToken } : {}),
  };
}

/** The state a step leaves its VM in when ok. */
export function reaches(d: RequestDefaults, s: BatchStep): string {
  return s.op === 'create' ? d.initial : s.op === 'delete' ? (s.body.to ?? d.terminal) : s.body.to;
}

/**
 * Identifies the request an idempotency key was first used for: its route
 * and its body, but for its fencing token (who sends it, not what it asks:
 * an apply that re-sends a killed apply's step gets that step's result).
 */
export function fingerprint(route: string, body: unknown): string {
  let b = body;
  if (b !== null && typeof b === 'object' && 'fencingToken' in b) {
    const { fencingToken: _f, ...rest } = b as Record<string, unknown>;
    b = rest;
  }
  // One-shot (no Hash object): every step computes one (Node >= 20.12, as package.json's engines).
  return hash('sha256', `${route}\n${JSON.stringify(b)}`, 'hex');
}

/** The record's VM as a step's result shows it. */
export function stepVm(vm: AuthorityVm): StepVm {
  return { id: vm.id, address: vm.address, state: vm.state, cloudId: vm.cloudId, realImage: vm.realImage, version: vm.version };
}
