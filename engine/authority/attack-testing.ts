// Test helpers for attacking the authority as a data center's token holder
// would: straight HTTP, no CLI, no plan, no lock (policy.test.ts, owner.test.ts).
import { randomUUID } from 'node:crypto';
import type { AuthorizeRequest, AuthorizeVm, ReportRequest } from '../../protocol/index.ts';

/** A service under attack: its URL, the stack it serves and the token presented. */
export interface Target {
  stack: string;
  authority: { url: string };
}

export const TOKEN = 'tok-miami';

/** POSTs `body` to the authority with the data center's token; the status and the parsed answer. */
export async function post<T>(w: Target, path: string, body: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${w.authority.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** A member of `fleet` in miami, as a create request describes it. */
export function vm(w: Target, fleet: string, owner: string, index: number, over: Partial<AuthorizeVm> = {}): AuthorizeVm {
  return {
    stack: w.stack,
    fleet,
    owner,
    index,
    name: `${w.stack}-${fleet}-${index}`,
    dataCenter: 'miami',
    image: 'ubuntu-22.04',
    size: { cpu: 2, memoryGiB: 4, diskGiB: 20 },
    encryptedDisk: true,
    desiredState: 'Running',
    specHash: 'h',
    ...over,
  };
}

export function create(id: string, v: AuthorizeVm): AuthorizeRequest {
  return { dataCenter: 'miami', requestId: randomUUID(), planId: 'plan-attack', kind: 'create', vmId: id, from: null, vm: v };
}

export function edge(id: string, from: string, to: string, over: Partial<AuthorizeRequest> = {}): AuthorizeRequest {
  return { dataCenter: 'miami', requestId: randomUUID(), planId: 'plan-attack', kind: 'transition', vmId: id, from, to, ...over };
}

/** The report of approved request `a`, outcome ok unless `over` says otherwise. */
export function reportOf(a: AuthorizeRequest, over: Partial<ReportRequest> = {}): ReportRequest {
  return { dataCenter: 'miami', requestId: a.requestId, planId: a.planId, vmId: a.vmId, from: a.from!, to: a.to!, outcome: 'ok', ...over };
}
