// The instance-type catalog of cloud data centers: which type a VM size
// runs as. Pure functions, shared by `fleet validate` (a fleet's size must
// fit a type of each cloud data center it may land in) and the cloud
// drivers (the type of RunInstances / ModifyInstanceAttribute).
import type { VmSize } from '../model/index.ts';
import type { InstanceType, LoadedPack } from './types.ts';

/** The first listed type with at least the size's CPUs and memory (the catalog lists them smallest first); undefined when none fits. */
export function fitInstanceType(types: readonly InstanceType[], size: Pick<VmSize, 'cpu' | 'memoryGiB'>): InstanceType | undefined {
  return types.find((t) => t.cpu >= size.cpu && t.memoryGiB >= size.memoryGiB);
}

/** The catalog entry of a data center, or undefined. */
export function instanceTypesOf(pack: Pick<LoadedPack, 'instanceTypes'>, dataCenter: string): readonly InstanceType[] | undefined {
  return pack.instanceTypes?.[dataCenter];
}
