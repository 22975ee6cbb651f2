// The DMZ of an Azure data center (one region, two resource groups) as Pulumi
// components, the Azure twin of ../aws:
//
//   DmzNetwork     a resource group of its own (the DMZ's: network, host, vault)
//                  and one for the fleet VMs, their NICs and disks (nothing
//                  else: the only group the broker may write in); a VNet with
//                  a DMZ subnet and a fleet subnet (no default outbound
//                  access, no public IPs on a VM), NSGs that admit only the
//                  tenant's CIDRs to the DMZ client's API port and only the
//                  fleet subnet to its boot endpoint, and deny every other
//                  inbound flow (Azure's defaults admit the whole VNet and
//                  the load balancer). Out
//                  of the DMZ subnet only: Azure Resource Manager (443, through
//                  a NAT gateway: ARM has no private endpoint a resource group
//                  can make), the instance metadata service (the host
//                  identity's tokens), private endpoints in the DMZ subnet
//                  (its Key Vault) and the authority in the tenant network;
//                  the fleet subnet reaches the boot endpoint only.
//   DmzClientHost  the VM running `fleet serve dmz-client --driver azure
//                  --config ...` at a fixed private address, with a
//                  user-assigned managed identity that only reads (the custom
//                  role *dmzfleet DMZ client reader* on the fleet's resource
//                  group, Key Vault Secrets User on its own vault); for the
//                  authority's broker principal, whose tokens alone can change
//                  anything, the custom role *dmzfleet broker* (VMs, NICs,
//                  disks) on the fleet's resource group and *dmzfleet fleet
//                  subnet join* on the fleet subnet alone, so it can neither
//                  touch the DMZ host nor put a VM in the DMZ subnet
//                  (docs/drivers/azure.md, "Credentials"); the driver's config
//                  names the fleet's group and the VNet's; its
//                  TLS certificate and tokens in a Key Vault (RBAC, no public
//                  network access) reached through a private endpoint in the
//                  DMZ subnet and the privatelink.vaultcore.azure.net zone
//                  linked to the VNet; encryption at host (disks encrypted at
//                  rest, temp disk and caches included) and no public IP.
//
// checks/azure.ts states each security property as a function over the
// declared resources; azure.test.ts runs them under Pulumi's mocks.
import { createHash } from 'node:crypto';
import * as pulumi from '@pulumi/pulumi';
import * as authorization from '@pulumi/azure-native/authorization/index.js';
import * as compute from '@pulumi/azure-native/compute/index.js';
import * as keyvault from '@pulumi/azure-native/keyvault/index.js';
import * as managedidentity from '@pulumi/azure-native/managedidentity/index.js';
import * as network from '@pulumi/azure-native/network/index.js';
import * as privatedns from '@pulumi/azure-native/privatedns/index.js';
import * as resources from '@pulumi/azure-native/resources/index.js';
import { DEFAULT_API_PORT, authorityPortOf, bootPortOf, checkAdmittedCidrs, checkNetworkCidrs, dataCenterEntry, inCidr, dmzClientConfig, dmzTags, hostAddress, hostScript, type DataCenterEntry, type DataCenterFacts } from '../common.ts';
import { BROKER_ROLE, BUILT_IN_ROLES, DMZ_CLIENT_READER_ROLE, FLEET_SUBNET_JOIN_ROLE, type CustomRole } from './roles.ts';

export { BROKER_ROLE, BUILT_IN_ROLES, DMZ_CLIENT_READER_ROLE, FLEET_SUBNET_JOIN_ROLE, SUBNET_JOIN_ACTION, type CustomRole } from './roles.ts';

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
  /** The port the DMZ client reaches the authority on, in the tenant's networks (default 443; the authorityUrl's port). */
  authorityPort?: number;
  tags?: Record<string, string>;
}

/** Private DNS zone of Key Vault private endpoints (Azure public cloud). */
export const VAULT_PRIVATE_ZONE = 'privatelink.vaultcore.azure.net';

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

/** The same outbound: Azure's defaults let a subnet out to the whole VNet and the Internet. */
const denyAllOutbound = { ...denyAllInbound, name: 'deny-all-outbound', direction: 'Outbound' };

export class DmzNetwork extends pulumi.ComponentResource {
  /** The DMZ's own resource group: VNet, subnets, NSGs, NAT gateway, and the DmzClientHost's VM, NIC, identity and vault. */
  readonly resourceGroup: resources.ResourceGroup;
  /** The fleet VMs' resource group (the driver's resourceGroup): their VMs, NICs and disks and nothing else, the broker's only writable scope. */
  readonly fleetResourceGroup: resources.ResourceGroup;
  readonly vnet: network.VirtualNetwork;
  readonly dmzSecurityGroup: network.NetworkSecurityGroup;
  readonly fleetSecurityGroup: network.NetworkSecurityGroup;
  readonly dmzSubnet: network.Subnet;
  readonly fleetSubnet: network.Subnet;
  /** The DMZ subnet's way out to Azure Resource Manager (the NSG admits nothing else of the Internet), and its address. */
  readonly natGateway: network.NatGateway;
  readonly egressIp: network.PublicIPAddress;
  readonly stack: string;
  readonly dataCenter: string;
  readonly location: string;
  readonly apiPort: number;
  /** Port of the DMZ client's boot endpoint as the fleet subnet reaches it. */
  readonly bootPort: number;
  readonly authorityPort: number;
  readonly dmzSubnetPrefix: string;
  readonly fleetSubnetPrefix: string;
  readonly tags: Record<string, string>;

  constructor(name: string, args: DmzNetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super('dmzfleet:azure:DmzNetwork', name, {}, opts);
    checkAdmittedCidrs(`DmzNetwork ${name} tenantCidrs`, args.tenantCidrs);
    checkNetworkCidrs(`DmzNetwork ${name}`, { name: 'addressSpace', cidr: args.addressSpace }, [
      { name: 'dmzSubnetPrefix', cidr: args.dmzSubnetPrefix },
      { name: 'fleetSubnetPrefix', cidr: args.fleetSubnetPrefix },
    ]);
    const apiPort = args.apiPort ?? DEFAULT_API_PORT;
    const bootPort = bootPortOf(`DmzNetwork ${name}`, apiPort, args.bootPort);
    const tags = dmzTags(args.stack, args.dataCenter, args.tags);
    const child = { parent: this };
    this.stack = args.stack;
    this.dataCenter = args.dataCenter;
    this.location = args.location;
    this.apiPort = apiPort;
    this.bootPort = bootPort;
    this.authorityPort = args.authorityPort ?? 443;
    if (!Number.isInteger(this.authorityPort) || this.authorityPort < 1 || this.authorityPort > 65535) throw new Error(`DmzNetwork ${name}: authorityPort ${args.authorityPort} is not a TCP port.`);
    this.dmzSubnetPrefix = args.dmzSubnetPrefix;
    this.fleetSubnetPrefix = args.fleetSubnetPrefix;
    this.tags = tags;

    this.resourceGroup = new resources.ResourceGroup(`${name}-rg`, { location: args.location, tags }, child);
    // Apart from the DMZ's: the broker writes VMs, NICs and disks here, and nowhere that holds the DMZ host or its network.
    this.fleetResourceGroup = new resources.ResourceGroup(`${name}-fleet-rg`, { location: args.location, tags }, child);
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
          // The DMZ client's calls: the cloud's API, its identity's tokens, its vault, the authority. Nothing else.
          { name: 'allow-resource-manager', priority: 100, direction: 'Outbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefix: args.dmzSubnetPrefix, sourcePortRange: '*', destinationAddressPrefix: 'AzureResourceManager', destinationPortRange: '443' },
          { name: 'allow-instance-metadata', priority: 110, direction: 'Outbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefix: args.dmzSubnetPrefix, sourcePortRange: '*', destinationAddressPrefix: 'AzurePlatformIMDS', destinationPortRange: '80' },
          { name: 'allow-private-endpoints', priority: 120, direction: 'Outbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefix: args.dmzSubnetPrefix, sourcePortRange: '*', destinationAddressPrefix: args.dmzSubnetPrefix, destinationPortRange: '443' },
          { name: 'allow-authority', priority: 130, direction: 'Outbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefix: args.dmzSubnetPrefix, sourcePortRange: '*', destinationAddressPrefixes: [...args.tenantCidrs], destinationPortRange: String(this.authorityPort) },
          denyAllOutbound,
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
          denyAllOutbound,
        ],
        tags,
      },
      child,
    );
    // Outbound only: no VM holds this address, and the NSG lets nothing but ARM through it.
    this.egressIp = new network.PublicIPAddress(`${name}-egress`, { resourceGroupName: rg, location: args.location, sku: { name: 'Standard' }, publicIPAllocationMethod: 'Static', tags }, child);
    this.natGateway = new network.NatGateway(`${name}-nat`, { resourceGroupName: rg, location: args.location, sku: { name: 'Standard' }, publicIpAddresses: [{ id: this.egressIp.id }], tags }, child);
    const subnet = (role: string, prefix: string, nsg: network.NetworkSecurityGroup, nat?: network.NatGateway) =>
      new network.Subnet(
        `${name}-${role}`,
        {
          resourceGroupName: rg,
          virtualNetworkName: this.vnet.name,
          addressPrefix: prefix,
          networkSecurityGroup: { id: nsg.id },
          defaultOutboundAccess: false,
          ...(nat ? { natGateway: { id: nat.id } } : {}),
        },
        child,
      );
    this.dmzSubnet = subnet('dmz', args.dmzSubnetPrefix, this.dmzSecurityGroup, this.natGateway);
    // No way out: a fleet VM reaches the boot endpoint and nothing else.
    this.fleetSubnet = subnet('fleet', args.fleetSubnetPrefix, this.fleetSecurityGroup);
    this.registerOutputs({ resourceGroupName: rg, fleetResourceGroupName: this.fleetResourceGroup.name, dmzSubnetId: this.dmzSubnet.id, fleetSubnetId: this.fleetSubnet.id });
  }
}

/**
 * The authority's broker principal of this data center: an Entra app
 * registration and its service principal, made outside Pulumi (azure-native
 * cannot create app registrations). Its client secret stays in the
 * authority's environment, named by clientSecretEnv; the component only
 * grants it the *dmzfleet broker* role (fleet's resource group) and *dmzfleet
 * fleet subnet join* (fleet subnet) and names it in the stack entry.
 */
export interface BrokerPrincipal {
  /** Entra tenant of the app. */
  tenantId: string;
  /** Application (client) id of the app. */
  clientId: string;
  /** Object id of the app's service principal (not the app's object id): the role assignment's principal. */
  principalId: string;
  /** The authority's environment variable holding the app's client secret (default AZURE_CLIENT_SECRET). */
  clientSecretEnv?: string;
}

export interface DmzClientHostArgs {
  network: DmzNetwork;
  facts: Omit<DataCenterFacts, 'name'>;
  authorityUrl: string;
  /** The subscription and Entra tenant of the data center. */
  subscriptionId: string;
  tenantId: string;
  /** The principal the authority gets the DMZ client's mutating tokens for. */
  broker: BrokerPrincipal;
  /** The host's private address in the DMZ subnet (default: hostAddress of the subnet, its 10th address). */
  privateIp?: string;
  vmSize?: string;
  image?: { publisher: string; offer: string; sku: string; version: string };
  adminUsername?: string;
  /** SSH public key of the host's admin user (password login is off). */
  sshPublicKey: pulumi.Input<string>;
  /** OpenSSH public key of the operators' login on the fleet VMs the DMZ client creates (the DmzClient config's azure.sshPublicKey). */
  fleetSshPublicKey: string;
  /** Login name on the fleet VMs (the driver's default: fleetadmin). */
  fleetAdminUsername?: string;
  secrets: {
    tlsCert: pulumi.Input<string>;
    tlsKey: pulumi.Input<string>;
    clientToken: pulumi.Input<string>;
    authorityToken: pulumi.Input<string>;
  };
  install?: string[];
  stackDir?: string;
}

/** The schema's patterns (specs/schema/dmz-client.schema.json, azureSettings): a bad key fails `pulumi preview`, not the host's start. */
const SSH_PUBLIC_KEY = /^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)) /;
const ADMIN_USERNAME = /^[a-z_][a-z0-9_-]{0,31}$/;
const SUBSCRIPTION_ID = /^[0-9a-fA-F-]{36}$/;
const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;

/** A name-based (version 5) UUID: the same custom role keeps the same id on every run. */
function nameUuid(name: string): string {
  const ns = Buffer.from('6ba7b8119dad11d180b400c04fd430c8', 'hex'); // RFC 4122's URL namespace
  const h = createHash('sha1').update(ns).update(name).digest().subarray(0, 16);
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}


export class DmzClientHost extends pulumi.ComponentResource {
  readonly identity: managedidentity.UserAssignedIdentity;
  /** dmzfleet DMZ client reader (the host identity) and dmzfleet broker (the broker principal), both on the fleet's resource group. */
  readonly readerRole: authorization.RoleDefinition;
  readonly brokerRole: authorization.RoleDefinition;
  /** dmzfleet fleet subnet join (the broker principal): defined on the DMZ's resource group (the VNet's), assigned on the fleet subnet alone. */
  readonly subnetJoinRole: authorization.RoleDefinition;
  /** The host identity's reader role and Key Vault Secrets User, then the broker's role and its subnet join. */
  readonly roleAssignments: authorization.RoleAssignment[];
  readonly vault: keyvault.Vault;
  readonly secret: keyvault.Secret;
  /** The vault's private endpoint in the DMZ subnet, its DNS zone, the zone's link to the VNet and the endpoint's record in it. */
  readonly vaultEndpoint: network.PrivateEndpoint;
  readonly vaultZone: privatedns.PrivateZone;
  readonly vaultZoneLink: privatedns.VirtualNetworkLink;
  readonly vaultZoneGroup: network.PrivateDnsZoneGroup;
  readonly nic: network.NetworkInterface;
  readonly vm: compute.VirtualMachine;
  /** The host's fixed private address. */
  readonly privateIp: string;
  readonly url: pulumi.Output<string>;
  /** The DmzClient document the host's user data writes to CONFIG_FILE. */
  readonly dmzClientConfig: pulumi.Output<string>;
  readonly dataCenterEntry: pulumi.Output<DataCenterEntry>;

  constructor(name: string, args: DmzClientHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super('dmzfleet:azure:DmzClientHost', name, {}, opts);
    const net = args.network;
    const rg = net.resourceGroup.name;
    const tags = net.tags;
    const child = { parent: this };
    const broker = args.broker;
    if (!SUBSCRIPTION_ID.test(args.subscriptionId)) throw new Error(`DmzClientHost ${name}: subscriptionId ${args.subscriptionId} is not a subscription id (36 hex digits and dashes).`);
    if (!SSH_PUBLIC_KEY.test(args.fleetSshPublicKey)) throw new Error(`DmzClientHost ${name}: fleetSshPublicKey must be an OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp*).`);
    if (args.fleetAdminUsername !== undefined && !ADMIN_USERNAME.test(args.fleetAdminUsername)) throw new Error(`DmzClientHost ${name}: fleetAdminUsername ${args.fleetAdminUsername} is not a Linux login name.`);
    for (const k of ['tenantId', 'clientId', 'principalId'] as const) if (!broker[k]) throw new Error(`DmzClientHost ${name}: broker.${k} is missing.`);
    if (broker.clientSecretEnv !== undefined && !ENV_NAME.test(broker.clientSecretEnv)) throw new Error(`DmzClientHost ${name}: broker.clientSecretEnv ${broker.clientSecretEnv} is not an environment variable name.`);
    this.privateIp = args.privateIp ?? hostAddress(net.dmzSubnetPrefix);
    if (!inCidr(this.privateIp, net.dmzSubnetPrefix)) throw new Error(`DmzClientHost ${name}: privateIp ${this.privateIp} is not in the DMZ subnet ${net.dmzSubnetPrefix}.`);
    // The network lets the DMZ client out to the tenant on one port: the authority must listen there, or no request is ever approved.
    const authorityPort = authorityPortOf(`DmzClientHost ${name}`, args.authorityUrl);
    if (authorityPort !== net.authorityPort) {
      throw new Error(
        `DmzClientHost ${name}: authorityUrl ${args.authorityUrl} is reached on port ${authorityPort}, but its DmzNetwork admits the authority on port ${net.authorityPort}; pass authorityPort: ${authorityPort} to the network.`,
      );
    }
    const roleId = (id: pulumi.Input<string>) => pulumi.interpolate`/subscriptions/${args.subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${id}`;

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
    // The vault admits no public network: the host reaches it at a private endpoint in its own subnet, by the vault's usual
    // name, which the linked privatelink zone answers inside the VNet.
    this.vaultZone = new privatedns.PrivateZone(`${name}-vault-zone`, { resourceGroupName: rg, location: 'Global', privateZoneName: VAULT_PRIVATE_ZONE, tags }, child);
    this.vaultZoneLink = new privatedns.VirtualNetworkLink(
      `${name}-vault-zone-link`,
      { resourceGroupName: rg, location: 'Global', privateZoneName: this.vaultZone.name, virtualNetwork: { id: net.vnet.id }, registrationEnabled: false, tags },
      child,
    );
    this.vaultEndpoint = new network.PrivateEndpoint(
      `${name}-vault-endpoint`,
      { resourceGroupName: rg, location: net.location, subnet: { id: net.dmzSubnet.id }, privateLinkServiceConnections: [{ name: 'vault', privateLinkServiceId: this.vault.id, groupIds: ['vault'] }], tags },
      child,
    );
    this.vaultZoneGroup = new network.PrivateDnsZoneGroup(
      `${name}-vault-zone-group`,
      { resourceGroupName: rg, privateEndpointName: this.vaultEndpoint.name, privateDnsZoneConfigs: [{ name: 'vault', privateDnsZoneId: this.vaultZone.id }] },
      child,
    );

    // The three custom roles of docs/drivers/azure.md, each defined and assignable on one resource group only: the reader
    // and the broker on the fleet's, the subnet join on the DMZ's (the VNet's; a custom role is assignable on resource
    // groups or wider, never on one subnet, so only its assignment is narrower). Custom role names are unique per Entra
    // tenant, so each carries its resource group's name; ids derive from the resource group.
    const customRole = (what: string, r: CustomRole, group: resources.ResourceGroup) => {
      const roleDefinitionId = group.id.apply((id) => nameUuid(`dmzfleet:${id}:${r.name}`));
      const definition = new authorization.RoleDefinition(
        `${name}-${what}`,
        {
          scope: group.id,
          roleDefinitionId,
          roleName: pulumi.interpolate`${r.name} (${group.name})`,
          description: r.description,
          roleType: 'CustomRole',
          permissions: [{ actions: [...r.actions], notActions: [], dataActions: [], notDataActions: [] }],
          assignableScopes: [group.id],
        },
        child,
      );
      return { definition, id: roleId(roleDefinitionId) };
    };
    const reader = customRole('reader-role', DMZ_CLIENT_READER_ROLE, net.fleetResourceGroup);
    const brokerRole = customRole('broker-role', BROKER_ROLE, net.fleetResourceGroup);
    const joinRole = customRole('subnet-join-role', FLEET_SUBNET_JOIN_ROLE, net.resourceGroup);
    this.readerRole = reader.definition;
    this.brokerRole = brokerRole.definition;
    this.subnetJoinRole = joinRole.definition;
    const assign = (what: string, principalId: pulumi.Input<string>, scope: pulumi.Input<string>, roleDefinitionId: pulumi.Input<string>, dependsOn: pulumi.Resource[] = []) =>
      new authorization.RoleAssignment(`${name}-${what}`, { scope, principalId, principalType: 'ServicePrincipal', roleDefinitionId }, { parent: this, dependsOn });
    this.roleAssignments = [
      // The host's own identity reads the fleet's VMs and its own secret, nothing more: a stolen host changes nothing.
      assign('reader', this.identity.principalId, net.fleetResourceGroup.id, reader.id, [this.readerRole]),
      assign('secrets-user', this.identity.principalId, this.vault.id, roleId(BUILT_IN_ROLES.keyVaultSecretsUser)),
      // Every change goes through a token the authority gets for the broker, one approval at a time: VMs, NICs and disks
      // in the fleet's group (never the DMZ host's), NICs joined to the fleet subnet (never the DMZ subnet).
      assign('broker', broker.principalId, net.fleetResourceGroup.id, brokerRole.id, [this.brokerRole]),
      assign('broker-subnet-join', broker.principalId, net.fleetSubnet.id, joinRole.id, [this.subnetJoinRole]),
    ];
    this.nic = new network.NetworkInterface(
      `${name}-nic`,
      { resourceGroupName: rg, location: net.location, ipConfigurations: [{ name: 'dmz', subnet: { id: net.dmzSubnet.id }, privateIPAllocationMethod: 'Static', privateIPAddress: this.privateIp }], tags },
      child,
    );
    this.url = pulumi.output(`https://${this.privateIp}:${net.apiPort}`);
    // The driver makes its VMs in the fleet's group (the one its broker tokens are for) and joins them to the fleet
    // subnet of the VNet in the DMZ's group.
    this.dmzClientConfig = pulumi.all([net.fleetResourceGroup.name, rg, net.vnet.name, net.fleetSubnet.name]).apply(([resourceGroup, vnetResourceGroup, vnet, subnet]) =>
      dmzClientConfig(net.dataCenter, {
        bootUrl: `https://${this.privateIp}:${net.bootPort}/v1/boot`,
        azure: {
          subscriptionId: args.subscriptionId,
          resourceGroup,
          location: net.location,
          vnet,
          subnet,
          vnetResourceGroup,
          sshPublicKey: args.fleetSshPublicKey,
          ...(args.fleetAdminUsername ? { adminUsername: args.fleetAdminUsername } : {}),
        },
      }),
    );
    // The start-up script goes in custom data, which cloud-init runs at the first boot: cloud-init's Azure datasource
    // never reads the VM's userData (docs/drivers/azure.md, "The boot agent on Azure"), so a script there never ran
    // and the DMZ client never started. Azure refuses to change custom data in place (PropertyChangeNotAllowed):
    // a changed script replaces the VM (replaceOnChanges), the old one first, since the new one takes its NIC.
    const customData = pulumi.all([this.vault.name, this.identity.clientId, this.dmzClientConfig]).apply(([vault, clientId, config]) =>
      Buffer.from(
        hostScript({
          dataCenter: net.dataCenter,
          driver: 'azure',
          authorityUrl: args.authorityUrl,
          port: net.apiPort,
          stackDir: args.stackDir ?? '/opt/dmzfleet/stack',
          install: args.install ?? [],
          config,
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
          customData,
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
        tags,
      },
      {
        parent: this,
        dependsOn: [...this.roleAssignments, this.secret, this.vaultZoneLink, this.vaultZoneGroup],
        replaceOnChanges: ['osProfile.customData'],
        deleteBeforeReplace: true,
      },
    );
    // The broker's tokens are for the fleet's group: the driver refuses one for any other.
    this.dataCenterEntry = pulumi.all([this.url, net.fleetResourceGroup.name]).apply(([url, resourceGroup]) =>
      dataCenterEntry({ name: net.dataCenter, ...args.facts }, url, {
        driver: 'azure',
        azure: {
          tenantId: broker.tenantId,
          clientId: broker.clientId,
          subscriptionId: args.subscriptionId,
          resourceGroup,
          ...(broker.clientSecretEnv ? { clientSecretEnv: broker.clientSecretEnv } : {}),
        },
      }),
    );
    this.registerOutputs({ url: this.url, dmzClientConfig: this.dmzClientConfig, dataCenterEntry: this.dataCenterEntry });
  }
}
