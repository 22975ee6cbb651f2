import type { VmRow } from '../record/index.ts';
import type { AuthorityVm } from '../../protocol/index.ts';

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
