// Names, tags and custom data of the Azure resources one fleet VM owns. Every
// name derives from the VM id, so every create is a PUT keyed by a name the
// driver can compute again after a crash (Azure's idempotency: a second PUT
// of the same body changes nothing). Tag scheme: docs/drivers/azure.md.
import { createHash } from 'node:crypto';
import type { VmSize } from '../../../engine/model/index.ts';

/** Azure's limit on a Linux VM's name (and computer name). */
const VM_NAME_MAX = 64;

/** The VM's name: `fleet-<vm id>`, kept to Azure's characters and length (a hash stands in for an id too long). */
export function vmName(vmId: string): string {
  const clean = vmId.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  const name = `fleet-${clean}`;
  if (name.length <= VM_NAME_MAX && clean === vmId.toLowerCase()) return name;
  return `fleet-${createHash('sha256').update(vmId).digest('hex').slice(0, 40)}`;
}

/** The resources a VM owns, all deleted with it. */
export function resourceNames(vmId: string): { vm: string; nic: string; osDisk: string; dataDisk: string } {
  const vm = vmName(vmId);
  return { vm, nic: `${vm}-nic`, osDisk: `${vm}-os`, dataDisk: `${vm}-data` };
}

export function vmResourceId(subscriptionId: string, resourceGroup: string, name: string): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/virtualMachines/${name}`;
}

export function nicResourceId(subscriptionId: string, resourceGroup: string, name: string): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Network/networkInterfaces/${name}`;
}

export function subnetResourceId(subscriptionId: string, resourceGroup: string, vnet: string, subnet: string): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Network/virtualNetworks/${vnet}/subnets/${subnet}`;
}

/**
 * Tag names. `fleet-stack` is what list filters on and what the broker
 * principal's role conditions may key on; the others let list and get
 * answer without the record. If you add one, also document it in
 * docs/drivers/azure.md ("Tags").
 */
export const TAG = {
  stack: 'fleet-stack',
  dataCenter: 'fleet-data-center',
  vmId: 'fleet-vm-id',
  address: 'fleet-address',
  name: 'fleet-name',
  image: 'fleet-image',
  size: 'fleet-size',
  encrypted: 'fleet-encrypted-disk',
} as const;

/** A size as a tag value: `cpu=4,memoryGiB=16,diskGiB=100`. */
export function formatSizeTag(size: VmSize): string {
  return `cpu=${size.cpu},memoryGiB=${size.memoryGiB},diskGiB=${size.diskGiB}`;
}

/** formatSizeTag's inverse; undefined for anything else. */
export function parseSizeTag(text: string | undefined): VmSize | undefined {
  const m = /^cpu=(\d+(?:\.\d+)?),memoryGiB=(\d+(?:\.\d+)?),diskGiB=(\d+(?:\.\d+)?)$/.exec(text ?? '');
  return m ? { cpu: Number(m[1]), memoryGiB: Number(m[2]), diskGiB: Number(m[3]) } : undefined;
}

/**
 * An image as the VM's storageProfile.imageReference: an Azure resource id
 * (a managed image or a gallery image version, `/subscriptions/...`), a
 * marketplace URN `publisher:offer:sku:version`, or a bare name: the managed
 * image of that name in the data center's resource group. Undefined for
 * anything else.
 */
export function imageReference(
  image: string,
  subscriptionId: string,
  resourceGroup: string,
): { id: string } | { publisher: string; offer: string; sku: string; version: string } | undefined {
  if (image.startsWith('/subscriptions/')) return { id: image };
  const parts = image.split(':');
  if (parts.length === 4 && parts.every((p) => p !== '')) {
    const [publisher, offer, sku, version] = parts;
    return { publisher, offer, sku, version };
  }
  if (/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/.test(image)) {
    return { id: `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/images/${image}` };
  }
  return undefined;
}
