// The DMZ of an Azure data center (one region, one resource group) as Pulumi
// components, the Azure twin of ../aws:
//
//   DmzNetwork     a resource group of its own, a VNet with a DMZ subnet and a
//                  fleet subnet (no default outbound access, no public IPs),
//                  NSGs that admit only the tenant's CIDRs to the DMZ client's
//                  API port and only the fleet subnet to its boot endpoint, and
//                  deny every other inbound flow (Azure's defaults admit the
//                  whole VNet and the load balancer).
//   DmzClientHost  the VM running `fleet serve dmz-client --driver azure`, with a
//                  user-assigned managed identity whose roles hold only on the
//                  data center's resource group, its TLS certificate and tokens
//                  in a Key Vault (RBAC, no public network access) only it may
//                  read, encryption at host (disks encrypted at rest, temp disk
//                  and caches included) and no public IP.
//
// checks/azure.ts states each security property as a function over the
// declared resources; azure.test.ts runs them under Pulumi's mocks.
import * as pulumi from '@pulumi/pulumi';
import * as authorization from '@pulumi/azure-native/authorization/index.js';
import * as compute from '@pulumi/azure-native/compute/index.js';
import * as keyvault from '@pulumi/azure-native/keyvault/index.js';
import * as managedidentity from '@pulumi/azure-native/managedidentity/index.js';
import * as network from '@pulumi/azure-native/network/index.js';
import * as resources from '@pulumi/azure-native/resources/index.js';
import { DEFAULT_API_PORT, checkAdmittedCidrs, dataCenterEntry, dmzTags, hostScript, type DataCenterEntry, type DataCenterFacts } from '../common.ts';

/** Built-in role definitions (ids are the same in every Azure cloud). */
export const ROLES = {
  virtualMachineContributor: '9980e02c-c2be-4d73-94e8-173b1dc7cf3c',
  networkContributor: '4d97b98b-1d4f-4787-a291-c67834d212e7',
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6',
} as const;

export interface DmzNetworkArgs {
  stack: string;
  dataCenter: string;
  /** Azure region, e.g. eastus2. */
  location: string;
  addressSpace: string;
  dmzSubnetPrefix: string;
  fleetSubnetPrefix: string;
  /** The tenant's networks (VPN, ExpressRoute): the only sources admitted to the DMZ client's API. */
  tenantCidrs: string[];
  apiPort?: number;
  bootPort?: number;
  tags?: Record<string, string>;
}

/** An NSG rule denying every inbound flow the rules above it did not admit. */
const denyAllInbound = {
  name: 'deny-all-inbound',
  priority: 4096,
  direction: 'Inbound',
  access: 'Deny',
  protocol: '*',
  sourceAddressPrefix: '*',
  sourcePortRange: '*',
  destinationAddressPrefix: '*',
  destinationPortRange: '*',
};

export class DmzNetwork extends pulumi.ComponentResource {
  readonly resourceGroup: resources.ResourceGroup;
  readonly vnet: network.VirtualNetwork;
  readonly dmzSecurityGroup: network.NetworkSecurityGroup;
  readonly fleetSecurityGroup: network.NetworkSecurityGroup;
  readonly dmzSubnet: network.Subnet;
  readonly fleetSubnet: network.Subnet;
  readonly stack: string;
  readonly dataCenter: string;
  readonly location: string;
  readonly apiPort: number;
  readonly tags: Record<string, string>;

  constructor(name: string, args: DmzNetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super('dmzfleet:azure:DmzNetwork', name, {}, opts);
    checkAdmittedCidrs(`DmzNetwork ${name} tenantCidrs`, args.tenantCidrs);
    const apiPort = args.apiPort ?? DEFAULT_API_PORT;
    const bootPort = args.bootPort ?? apiPort;
    const tags = dmzTags(args.stack, args.dataCenter, args.tags);
    const child = { parent: this };
    this.stack = args.stack;
    this.dataCenter = args.dataCenter;
    this.location = args.location;
    this.apiPort = apiPort;
    this.tags = tags;

    this.resourceGroup = new resources.ResourceGroup(`${name}-rg`, { location: args.location, tags }, child);
    const rg = this.resourceGroup.name;
    this.vnet = new network.VirtualNetwork(`${name}-vnet`, { resourceGroupName: rg, location: args.location, addressSpace: { addressPrefixes: [args.addressSpace] }, tags }, child);
    this.dmzSecurityGroup = new network.NetworkSecurityGroup(
      `${name}-dmz-client`,
      {
        resourceGroupName: rg,
        location: args.location,
        securityRules: [
          { name: 'allow-tenant-api', priority: 100, direction: 'Inbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefixes: [...args.tenantCidrs], sourcePortRange: '*', destinationAddressPrefix: args.dmzSubnetPrefix, destinationPortRange: String(apiPort) },
          { name: 'allow-fleet-boot', priority: 110, direction: 'Inbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefix: args.fleetSubnetPrefix, sourcePortRange: '*', destinationAddressPrefix: args.dmzSubnetPrefix, destinationPortRange: String(bootPort) },
          denyAllInbound,
        ],
        tags,
      },
      child,
    );
    this.fleetSecurityGroup = new network.NetworkSecurityGroup(
      `${name}-fleet`,
      {
        resourceGroupName: rg,
        location: args.location,
        securityRules: [
          denyAllInbound,
          { name: 'allow-boot-endpoint', priority: 100, direction: 'Outbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefix: args.fleetSubnetPrefix, sourcePortRange: '*', destinationAddressPrefix: args.dmzSubnetPrefix, destinationPortRange: String(bootPort) },
          { name: 'deny-all-outbound', priority: 4096, direction: 'Outbound', access: 'Deny', protocol: '*', sourceAddressPrefix: '*', sourcePortRange: '*', destinationAddressPrefix: '*', destinationPortRange: '*' },
        ],
        tags,
      },
      child,
    );
    const subnet = (role: string, prefix: string, nsg: network.NetworkSecurityGroup) =>
      new network.Subnet(
        `${name}-${role}`,
        { resourceGroupName: rg, virtualNetworkName: this.vnet.name, addressPrefix: prefix, networkSecurityGroup: { id: nsg.id }, defaultOutboundAccess: false },
        child,
      );
    this.dmzSubnet = subnet('dmz', args.dmzSubnetPrefix, this.dmzSecurityGroup);
    this.fleetSubnet = subnet('fleet', args.fleetSubnetPrefix, this.fleetSecurityGroup);
    this.registerOutputs({ resourceGroupName: rg, dmzSubnetId: this.dmzSubnet.id, fleetSubnetId: this.fleetSubnet.id });
  }
}

export interface DmzClientHostArgs {
  network: DmzNetwork;
  facts: Omit<DataCenterFacts, 'name'>;
  authorityUrl: string;
  /** The subscription and Entra tenant of the data center. */
  subscriptionId: string;
  tenantId: string;
  vmSize?: string;
  image?: { publisher: string; offer: string; sku: string; version: string };
  adminUsername?: string;
  /** SSH public key of the admin user (password login is off). */
  sshPublicKey: pulumi.Input<string>;
  secrets: {
    tlsCert: pulumi.Input<string>;
    tlsKey: pulumi.Input<string>;
    clientToken: pulumi.Input<string>;
    authorityToken: pulumi.Input<string>;
  };
  install?: string[];
  stackDir?: string;
}

export class DmzClientHost extends pulumi.ComponentResource {
  readonly identity: managedidentity.UserAssignedIdentity;
  readonly roleAssignments: authorization.RoleAssignment[];
  readonly vault: keyvault.Vault;
  readonly secret: keyvault.Secret;
  readonly nic: network.NetworkInterface;
  readonly vm: compute.VirtualMachine;
  readonly url: pulumi.Output<string>;
  readonly dataCenterEntry: pulumi.Output<DataCenterEntry>;

  constructor(name: string, args: DmzClientHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super('dmzfleet:azure:DmzClientHost', name, {}, opts);
    const net = args.network;
    const rg = net.resourceGroup.name;
    const tags = net.tags;
    const child = { parent: this };
    const role = (id: string) => `/subscriptions/${args.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${id}`;

    this.identity = new managedidentity.UserAssignedIdentity(`${name}-identity`, { resourceGroupName: rg, location: net.location, tags }, child);
    this.vault = new keyvault.Vault(
      `${name}-vault`,
      {
        resourceGroupName: rg,
        location: net.location,
        properties: {
          tenantId: args.tenantId,
          sku: { family: 'A', name: 'standard' },
          enableRbacAuthorization: true,
          enableSoftDelete: true,
          enablePurgeProtection: true,
          publicNetworkAccess: 'Disabled',
          networkAcls: { defaultAction: 'Deny', bypass: 'AzureServices' },
        },
        tags,
      },
      child,
    );
    this.secret = new keyvault.Secret(
      `${name}-secrets`,
      { resourceGroupName: rg, vaultName: this.vault.name, secretName: 'dmz-client', properties: { value: pulumi.secret(pulumi.jsonStringify(pulumi.output(args.secrets))) } },
      { parent: this, additionalSecretOutputs: ['properties'] },
    );
    // The identity may manage VMs and networking in the data center's resource group only, and read its own secret.
    const assign = (what: string, scope: pulumi.Input<string>, roleId: string) =>
      new authorization.RoleAssignment(`${name}-${what}`, { scope, principalId: this.identity.principalId, principalType: 'ServicePrincipal', roleDefinitionId: role(roleId) }, child);
    this.roleAssignments = [
      assign('vm-contributor', net.resourceGroup.id, ROLES.virtualMachineContributor),
      assign('network-contributor', net.resourceGroup.id, ROLES.networkContributor),
      assign('secrets-user', this.vault.id, ROLES.keyVaultSecretsUser),
    ];
    this.nic = new network.NetworkInterface(
      `${name}-nic`,
      { resourceGroupName: rg, location: net.location, ipConfigurations: [{ name: 'dmz', subnet: { id: net.dmzSubnet.id }, privateIPAllocationMethod: 'Dynamic' }], tags },
      child,
    );
    const userData = pulumi.all([this.vault.name, this.identity.clientId]).apply(([vault, clientId]) =>
      Buffer.from(
        hostScript({
          dataCenter: net.dataCenter,
          driver: 'azure',
          authorityUrl: args.authorityUrl,
          port: net.apiPort,
          stackDir: args.stackDir ?? '/opt/dmzfleet/stack',
          install: args.install ?? [],
          fetchSecrets: `az login --identity --username ${clientId} >/dev/null && az keyvault secret show --vault-name ${vault} --name dmz-client --query value --output tsv`,
        }),
      ).toString('base64'),
    );
    const image = args.image ?? { publisher: 'Canonical', offer: 'ubuntu-24_04-lts', sku: 'server', version: 'latest' };
    this.vm = new compute.VirtualMachine(
      `${name}-vm`,
      {
        resourceGroupName: rg,
        location: net.location,
        identity: { type: 'UserAssigned', userAssignedIdentities: [this.identity.id] },
        hardwareProfile: { vmSize: args.vmSize ?? 'Standard_B2s' },
        osProfile: {
          computerName: `${net.dataCenter}-dmz`.slice(0, 15),
          adminUsername: args.adminUsername ?? 'dmzadmin',
          linuxConfiguration: {
            disablePasswordAuthentication: true,
            ssh: { publicKeys: [{ path: `/home/${args.adminUsername ?? 'dmzadmin'}/.ssh/authorized_keys`, keyData: args.sshPublicKey }] },
          },
        },
        storageProfile: {
          imageReference: image,
          osDisk: { createOption: 'FromImage', managedDisk: { storageAccountType: 'Premium_LRS' }, deleteOption: 'Delete' },
        },
        securityProfile: { encryptionAtHost: true },
        networkProfile: { networkInterfaces: [{ id: this.nic.id, primary: true }] },
        userData,
        tags,
      },
      { parent: this, dependsOn: [...this.roleAssignments, this.secret] },
    );
    const privateIp = this.nic.ipConfigurations.apply((c) => c?.[0]?.privateIPAddress ?? '');
    this.url = pulumi.interpolate`https://${privateIp}:${net.apiPort}`;
    this.dataCenterEntry = this.url.apply((url) => dataCenterEntry({ name: net.dataCenter, ...args.facts }, url));
    this.registerOutputs({ url: this.url, dataCenterEntry: this.dataCenterEntry });
  }
}
