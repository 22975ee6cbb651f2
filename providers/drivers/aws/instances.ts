// How an EC2 instance maps to what the driver reports: the tags the driver
// writes, the size tag, the instance type catalog, and the instance's state.
import type { Instance, Tag } from '@aws-sdk/client-ec2';
import { fitInstanceType } from '../../../engine/policy/instance-types.ts';
import type { InstanceType } from '../../../engine/policy/types.ts';
import type { VmSize } from '../../../engine/model/index.ts';
import { DriverError } from '../types.ts';
import { isEc2State, type Ec2State } from './states.ts';

/** Tag keys the driver writes on every instance and its volumes (docs/drivers/aws.md, "Tags"). */
export const TAGS = {
  stack: 'fleet:stack',
  dataCenter: 'fleet:data-center',
  fleet: 'fleet:fleet',
  address: 'fleet:address',
  vmId: 'fleet:vm-id',
  size: 'fleet:size',
  encrypted: 'fleet:encrypted',
  name: 'Name',
} as const;

/** The size of an instance type of the catalog (0s for a type the catalog does not list). */
export function sizeOfType(types: readonly InstanceType[], type: string | undefined): VmSize {
  const t = types.find((x) => x.name === type);
  return { cpu: t?.cpu ?? 0, memoryGiB: t?.memoryGiB ?? 0, diskGiB: 0 };
}

/** The smallest instance type of the catalog that fits `size`. */
export function typeFor(types: readonly InstanceType[], size: VmSize, dataCenter: string): string {
  const t = fitInstanceType(types, size);
  if (!t) {
    throw new DriverError('failed', `no instance type of ${dataCenter} fits ${size.cpu} CPU / ${size.memoryGiB} GiB (the pack's instanceTypes catalog)`);
  }
  return t.name;
}

export function stateOf(inst: Instance): Ec2State | undefined {
  const n = inst.State?.Name;
  return isEc2State(n) ? n : undefined;
}

export function isGone(inst: Instance): boolean {
  const s = stateOf(inst);
  return s === 'terminated' || s === 'shutting-down';
}

export function tagMap(tags: Tag[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of tags ?? []) if (t.Key !== undefined) out[t.Key] = t.Value ?? '';
  return out;
}

/** `cpu=4,memoryGiB=16,diskGiB=100`: the size the record asked for (the instance type may be larger). */
export function formatSizeTag(s: VmSize): string {
  return `cpu=${s.cpu},memoryGiB=${s.memoryGiB},diskGiB=${s.diskGiB}`;
}

export function parseSize(tag: string | undefined): VmSize | undefined {
  const m = tag ? /^cpu=(\d+),memoryGiB=([\d.]+),diskGiB=(\d+)$/.exec(tag) : null;
  return m ? { cpu: Number(m[1]), memoryGiB: Number(m[2]), diskGiB: Number(m[3]) } : undefined;
}
