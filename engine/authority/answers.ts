// The authority's wire answers built from record rows.
import type { VmRow } from '../record/index.ts';
import type { AuthorityVm, AuthorizeRequest, AuthorizeResponse } from '../../protocol/index.ts';
import { judgeCaller } from './decisions.ts';

/** The record's row as the authority answers it on the wire. */
export function toAuthorityVm(vm: VmRow): AuthorityVm {
  return {
    id: vm.id,
    address: vm.address,
    name: vm.name,
    size: vm.size,
    dataCenter: vm.dataCenter,
    state: vm.state,
    cloudId: vm.cloudId,
    realImage: vm.realImage,
    encryptedDisk: vm.encryptedDisk,
    version: vm.version,
  };
}

/** The wire code of a veto, kept beside the answer (never on the wire): for logs and metrics. */
const CODES = new WeakMap<object, string>();

/** Why an answer is what it is, as a closed code: a veto's wire code, `image-translated` for a modified create, else `allowed`. */
export function reasonCode(r: AuthorizeResponse): string {
  if (r.decision === 'vetoed') return CODES.get(r) ?? 'vetoed';
  return r.decision === 'modified' ? 'image-translated' : 'allowed';
}

/** Tags an answer (a boot denial, say) with its wire code for logs and metrics; returns it. */
export function withCode<T extends object>(answer: T, code: string): T {
  CODES.set(answer, code);
  return answer;
}

/** The code `withCode` gave an answer. */
export function codeOf(answer: object): string | undefined {
  return CODES.get(answer);
}

/** A boot denial's reason for the operator, kept beside the generic answer the caller gets (never on the wire): for the log. */
const DETAILS = new WeakMap<object, string>();

/** Keeps `detail` beside an answer for the service's log line (the caller gets the answer only); returns it. */
export function withDetail<T extends object>(answer: T, detail: string): T {
  DETAILS.set(answer, detail);
  return answer;
}

/** The detail `withDetail` kept beside an answer. */
export function detailOf(answer: object): string | undefined {
  return DETAILS.get(answer);
}

/** authorize's refusal: no credentials; the record's VM when it is known; `code`: its wire code (logs and metrics). */
export function veto(reason: string, vm?: VmRow, code = 'vetoed'): AuthorizeResponse {
  return withCode({ decision: 'vetoed', reason, operation: 'none', ...(vm ? { vm: toAuthorityVm(vm) } : {}) } satisfies AuthorizeResponse, code);
}

/** The veto of an authorization whose body names another data center than the caller's token. */
export function vetoForeign(caller: string, req: AuthorizeRequest): AuthorizeResponse | undefined {
  const judged = judgeCaller(caller, req);
  return judged.ok ? undefined : veto(judged.reason, undefined, judged.refusal);
}
