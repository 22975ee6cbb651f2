// The azure driver's settings (the factory fills them from the DMZ client
// config and the pack) and what each boot's agent is told.
import type { TokenCredential } from '@azure/core-auth';
import type { VmSize } from '../../../engine/model/index.ts';

/** Azure Resource Manager in the public cloud. */
export const DEFAULT_ARM_ENDPOINT = 'https://management.azure.com';

/** What the boot agent of one boot is told (in the VM's userData; never a disk key). */
export interface BootAgentContext {
  vmId: string;
  cloudId: string;
  image: string;
  /** Where the VM reaches the DMZ client's boot endpoint. */
  bootUrl: string;
  /** The one-time token of this boot. */
  bootToken: string;
  encryptedDisk: boolean;
  /** The data volume inside the VM: LUN 0 as Azure's udev rules name it. */
  dataDevice: string;
  /** PEM CA bundle of an https boot endpoint (the DMZ client's --boot-ca); absent: the image's CAs. */
  bootCa?: string;
}

/** The data disk (LUN 0) inside an Azure Linux VM. */
export const AZURE_DATA_DEVICE = '/dev/disk/azure/scsi1/lun0';

export interface AzureDriverOptions {
  dataCenter: string;
  /** Stack name: the `fleet-stack` tag list filters on. */
  stack: string;
  subscriptionId: string;
  resourceGroup: string;
  location: string;
  vnet: string;
  subnet: string;
  /** Resource group of the VNet, when not the data center's. */
  vnetResourceGroup?: string;
  /** Resource manager URL (an emulator, a sovereign cloud). Default https://management.azure.com. HTTPS only: bearer tokens never go over plain HTTP. */
  endpoint?: string;
  /** Size -> Azure VM size (`Standard_D4s_v5`), from the pack's catalog for this data center; undefined: the catalog has none. */
  vmSize(size: VmSize): string | undefined;
  /** What the `powerOff` edge does: `stop` keeps the VM allocated (billed, quick to start), `deallocate` releases its hardware. Default stop. */
  powerOffMode?: 'stop' | 'deallocate';
  /** The DMZ client's own identity for reads (get, list): a managed identity or a principal with Reader on the resource group. */
  readCredential: TokenCredential;
  /** The VM's custom data, run once by cloud-init at first start: the bootstrap that runs each boot's agent from userData (bootstrap.ts). */
  customData: string;
  /** The VM's userData for one boot: the boot agent with its settings (providers/boot-agent renderAgentUserData). */
  bootScript(ctx: BootAgentContext): string;
  /** Operator login on the VMs (Azure requires one); password login is disabled. */
  adminUsername?: string;
  sshPublicKey: string;
  /** Each HTTP call (and each poll) not answered within this fails with `timeout`. Default 30 000. */
  requestTimeoutMs?: number;
  /** A long-running operation not done within this fails with `timeout`. Default 900 000. */
  operationTimeoutMs?: number;
  /** Between polls of a long-running operation when ARM gives no Retry-After. Default 2000. */
  pollIntervalMs?: number;
  /** The boot endpoint as the VMs reach it (the DMZ client config's bootUrl); default: the DMZ client's own address (attach). */
  bootUrl?: string;
  /** The DMZ client's state folder: the agents' reports are kept there across restarts (agent-ledger.ts). Default: in memory. */
  stateDir?: string;
}
