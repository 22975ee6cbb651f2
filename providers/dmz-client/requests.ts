// What a step asks the authority, built from what the caller sent: the
// authorization request of a create, an edge or a resize, the state a step
// leaves its VM in, and the fingerprint its idempotency key is kept with.
// Pure functions of their arguments (request ids aside).
import { hash, randomUUID } from 'node:crypto';
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

/** The authorization request of one edge, or of a resize (a size, and the same state at both ends). */
export function edgeRequest(dataCenter: string, vmId: string, planId: string | null, from: string, to: string, size?: VmSize, fencingToken?: number, override?: Override): AuthorizeRequest {
  const kind = size && from === to ? 'resize' : 'transition';
  return { dataCenter, requestId: randomUUID(), planId, kind, vmId, from, to, ...(size ? { size } : {}), ...(fencingToken !== undefined ? { fencingToken } : {}), ...(override ? { override } : {}) };
}

/** The authorization request of an edge step (transition, resize or delete); the caller's fencing token goes on to the authority. */
export function stepRequest(d: RequestDefaults, s: EdgeStep): AuthorizeRequest {
  if (s.op === 'delete') return edgeRequest(d.dataCenter, s.vmId, s.body.planId, s.body.from, s.body.to ?? d.terminal, undefined, s.body.fencingToken, s.body.override);
  const t = s.body;
  return edgeRequest(d.dataCenter, s.vmId, t.planId, t.from, t.to, t.operation === 'resize' ? t.size : undefined, t.fencingToken, t.override);
}

/** The authorization request of a create: the VM enters the record in the initial state. */
export function createRequest(d: RequestDefaults, b: CreateVmRequest): AuthorizeRequest {
  const { id: vmId, ...vm } = b.vm;
  return {
    dataCenter: d.dataCenter,
    requestId: randomUUID(),
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
