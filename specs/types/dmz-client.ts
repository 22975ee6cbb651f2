/* generated from specs/schema/dmz-client.schema.json by `npm run gen:types` — do not edit */

/**
 * A DMZ client's own settings (`fleet serve dmz-client --config FILE`): how its driver reaches the data center's cloud. It holds no secret: cloud credentials come from the authority (mutating calls) and from the host's own identity (reads).
 */
export interface DmzClientConfig {
  /**
   * File format version. Always `fleet/v1`.
   */
  apiVersion: 'fleet/v1';
  /**
   * Document kind. Always `DmzClient`.
   */
  kind: 'DmzClient';
  metadata?: DmzClientMetadata;
  spec: DmzClientSpec;
}
/**
 * Identity of this DMZ client.
 */
export interface DmzClientMetadata {
  /**
   * Data center of the stack this client serves; when set, it must equal --data-center. At most 40 characters, as a data center's name in the stack file.
   */
  dataCenter?: string;
}
/**
 * Driver settings. Only the block of the driver the client runs (--driver) is read; it must be present for `aws` and `azure`.
 */
export interface DmzClientSpec {
  /**
   * URL of this client's boot endpoint as the data center's VMs reach it (for example `https://10.0.1.5:7401/v1/boot`); default: the address the client listens on, which the VMs must then reach (`fleet serve dmz-client` refuses --host 0.0.0.0 or :: without it for the aws and azure drivers). An https:// URL (http:// only on loopback: a VM sends its boot token to it and gets its disk key back, `tls.plain-remote`) with no query, fragment, trailing slash or white space: the VMs post their reports to `<bootUrl>/status`.
   */
  bootUrl?: string;
  /**
   * A cloud API call not answered within this fails with `timeout` (default 30000).
   */
  requestTimeoutMs?: number;
  /**
   * How long a booting VM has to report ready through the boot handshake (its OS boot, cloud-init, the agent and its retries) before its boot step fails with `timeout` (default 600000 for the aws and azure drivers: a cloud VM takes minutes to boot; 60000 for sim). The aws and azure drivers give their VMs' boot agent a window inside it (FLEET_BOOT_WINDOW: this less 2 minutes, or half of it when that is shorter), so the agent's retries end before the wait does; the sim driver gives its agents the same window.
   */
  readyTimeoutMs?: number;
  bootLimit?: BootLimitSettings;
  aws?: AwsDriverSettings;
  azure?: AzureDriverSettings;
}
/**
 * The boot endpoint's limit of denials per source address (docs/dmz-client.md, "The boot endpoint's limit"): POST /v1/boot and /v1/boot/status need no credential, and every denied boot costs an authority call and two record rows. An address whose boot requests were denied, refused or malformed `denials` times within a window of `windowMs` is answered 429 `boot-rate-limited` until the window ends, without asking the authority. Approvals are never counted, so a healthy fleet never meets it, however large.
 */
export interface BootLimitSettings {
  /**
   * Denials an address may have in one window (default 30).
   */
  denials?: number;
  /**
   * Length of a window, ms (default 30000). The boot agent waits out a refusal's Retry-After (at most 60 s a try, 12 tries, within its boot window: 480 s with the default readyTimeoutMs); keep the window below its retries without one (12 tries, 5 s apart, for a proxy that drops the header): a VM refused because another caller shares its address still boots once the window ends.
   */
  windowMs?: number;
  /**
   * Source addresses counted at once, at most (default 10000; about 125 bytes each). When the table is full the address whose window is closest to its end is dropped and judged afresh.
   */
  maxAddresses?: number;
}
/**
 * Where the `aws` driver creates its EC2 instances.
 */
export interface AwsDriverSettings {
  /**
   * AWS region of the data center, e.g. `us-east-1` (at most 20 characters, as in the stack file).
   */
  region: string;
  /**
   * Subnet the instances are launched in.
   */
  subnetId: string;
  /**
   * Security groups of the instances.
   *
   * @minItems 1
   */
  securityGroupIds: [string, ...string[]];
  /**
   * EC2 key pair for operator SSH access (optional).
   */
  keyName?: string;
  /**
   * IAM instance profile name given to the instances (optional; the boot agent needs none).
   */
  instanceProfile?: string;
  /**
   * EC2 endpoint URL (a local emulator, a VPC endpoint); the environment variable AWS_ENDPOINT_URL_EC2 overrides it.
   */
  endpoint?: string;
  /**
   * Device of the encrypted data volume inside the VM. Default: udev's link by the EBS volume id, `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<id>` (Nitro instances; docs/drivers/aws.md, "The data volume's device"). Set it for instance types that are not Nitro (e.g. `/dev/xvdf`).
   */
  dataVolumeDevice?: string;
  /**
   * How often the driver reads an instance's state while waiting for it (default 2000; at most 600000).
   */
  pollMs?: number;
}
/**
 * Where the `azure` driver creates its VMs.
 */
export interface AzureDriverSettings {
  /**
   * Azure subscription id.
   */
  subscriptionId: string;
  /**
   * Resource group holding the data center's VMs, NICs and disks.
   */
  resourceGroup: string;
  /**
   * Azure region, e.g. `eastus`.
   */
  location: string;
  /**
   * Virtual network of the VMs' NICs.
   */
  vnet: string;
  /**
   * Subnet of the VMs' NICs.
   */
  subnet: string;
  /**
   * Resource manager URL (an emulator or a sovereign cloud); default `https://management.azure.com`. HTTPS only: bearer tokens never travel over plain HTTP (an emulator with a self-signed certificate: NODE_EXTRA_CA_CERTS).
   */
  endpoint?: string;
  /**
   * Resource group of the virtual network, when it is not `resourceGroup`.
   */
  vnetResourceGroup?: string;
  /**
   * OpenSSH public key of the operators' login on the VMs (Azure requires a login; password login is disabled). Not a secret.
   */
  sshPublicKey: string;
  /**
   * Login name on the VMs (default `fleetadmin`).
   */
  adminUsername?: string;
  /**
   * How often the driver polls a long-running operation when Azure gives no Retry-After (default 2000; at most 600000).
   */
  pollMs?: number;
}
