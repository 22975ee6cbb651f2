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

/** authorize's refusal: no credentials; the record's VM when it is known. */
export function veto(reason: string, vm?: VmRow): AuthorizeResponse {
  return { decision: 'vetoed', reason, operation: 'none', ...(vm ? { vm: toAuthorityVm(vm) } : {}) };
}

/** The veto of an authorization whose body names another data center than the caller's token. */
export function vetoForeign(caller: string, req: AuthorizeRequest): AuthorizeResponse | undefined {
  const judged = judgeCaller(caller, req);
  return judged.ok ? undefined : veto(judged.reason);
}
