// The Azure components under Pulumi's mocks: every security property holds for
// what they declare, and each check catches its property broken (a table of
// broken variants of the declared resources); the custom roles are
// docs/drivers/azure.md's, the host writes a DmzClient config the azure driver
// accepts, and the stack entry names the broker principal.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { checkDmzClientConfig } from '../../../providers/drivers/config.ts';
import { azureChecks, runChecks, type DeclaredResource } from '../checks/index.ts';
import { CONFIG_FILE, TAG_DATA_CENTER, TAG_STACK } from '../common.ts';
import { MOCK_SUBSCRIPTION, broken, mockPulumi, HOST_SECRETS, registered, secretsFound, valueOf } from '../testing.ts';
import { BROKER_ROLE, BUILT_IN_ROLES, DMZ_CLIENT_READER_ROLE, DmzClientHost, DmzNetwork, FLEET_SUBNET_JOIN_ROLE, SUBNET_JOIN_ACTION, type DmzClientHostArgs } from './index.ts';

const mocks = mockPulumi();
const TENANT_ID = '11111111-1111-1111-1111-111111111111';
const BROKER = { tenantId: TENANT_ID, clientId: '22222222-2222-2222-2222-222222222222', principalId: '33333333-3333-3333-3333-333333333333', clientSecretEnv: 'DMZFLEET_DALLAS_SECRET' };
const FLEET_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIfleet operators@tenant.example';
const expectations = {
  admitted: [
    { port: 8443, cidr: '192.168.0.0/16', why: 'tenant' },
    { port: 8443, cidr: '10.30.2.0/24', why: 'boot from the fleet subnet' },
  ],
  tags: { [TAG_STACK]: 'prod', [TAG_DATA_CENTER]: 'dallas' },
  brokerPrincipalId: BROKER.principalId,
  fleetSubnetPrefix: '10.30.2.0/24',
};
let resources: DeclaredResource[];
let network: DmzNetwork;
let host: DmzClientHost;
let hostArgs: DmzClientHostArgs;
let vmOptions: pulumi.CustomResourceOptions | undefined;

beforeAll(async () => {
  network = new DmzNetwork('dallas', {
    stack: 'prod',
    dataCenter: 'dallas',
    location: 'southcentralus',
    addressSpace: '10.30.0.0/16',
    dmzSubnetPrefix: '10.30.1.0/24',
    fleetSubnetPrefix: '10.30.2.0/24',
    tenantCidrs: ['192.168.0.0/16'],
    authorityPort: 7400,
  });
  hostArgs = {
    network,
    facts: { location: { lat: 32.8, lon: -96.8 }, hardware: ['general'], capacity: { vms: 100, cpu: 400 } },
    authorityUrl: 'https://authority.tenant.example:7400',
    subscriptionId: MOCK_SUBSCRIPTION,
    tenantId: TENANT_ID,
    broker: BROKER,
    sshPublicKey: 'ssh-ed25519 AAAA test',
    fleetSshPublicKey: FLEET_KEY,
    secrets: { tlsCert: 'pem-cert-value', tlsKey: 'pem-key-value', clientToken: 'client-token-value', authorityToken: 'authority-token-value' },
  };
  // The options the host gives its VM, as a transformation of the component (inherited by its children) sees them.
  const capture: pulumi.ResourceTransformation = (a) => {
    if (a.type === 'azure-native:compute:VirtualMachine') vmOptions = a.opts;
    return undefined;
  };
  host = new DmzClientHost('dallas', hostArgs, { transformations: [capture] });
  await registered(network, host);
  resources = [...mocks.resources];
});

const RG_ID = `/subscriptions/${MOCK_SUBSCRIPTION}/resourceGroups/dallas-rg`;
/** The fleet VMs' resource group: the broker's writes, the host identity's reads. */
const FLEET_RG_ID = `/subscriptions/${MOCK_SUBSCRIPTION}/resourceGroups/dallas-fleet-rg`;
const FLEET_SUBNET_ID = `${RG_ID}/providers/network/Subnet/dallas-fleet`;
const ASSIGN = 'azure-native:authorization:RoleAssignment';
const DEFINE = 'azure-native:authorization:RoleDefinition';
const named = (type: string, name: string) => resources.find((r) => r.type === type && r.name === name)!;
/** The host's start-up script, as cloud-init gets it (the VM's custom data). */
const userData = () => Buffer.from(resources.find((r) => r.type === 'azure-native:compute:VirtualMachine')!.inputs.osProfile.customData, 'base64').toString();
/** The DmzClient document the user data writes (between its heredoc markers). */
function writtenConfig(script: string): string {
  const lines = script.split('\n');
  const start = lines.indexOf(`cat > ${CONFIG_FILE} <<'DMZFLEET_CONFIG_END'`);
  const end = lines.indexOf('DMZFLEET_CONFIG_END', start + 1);
  expect(start).toBeGreaterThan(0);
  expect(end).toBeGreaterThan(start);
  return `${lines.slice(start + 1, end).join('\n')}\n`;
}
/** The JSON role definitions of docs/drivers/azure.md, by Name. */
function documentedRoles(): Map<string, { Name: string; Description: string; Actions: string[]; NotActions: string[] }> {
  const md = readFileSync(join(import.meta.dirname, '..', '..', '..', 'docs', 'drivers', 'azure.md'), 'utf8');
  const blocks = [...md.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1]));
  return new Map(blocks.filter((b) => b.Name).map((b) => [b.Name, b]));
}

describe('Azure DMZ', () => {
  it('declares the network and the host', () => {
    const count = (t: string) => resources.filter((r) => r.type === t).length;
    expect(count('azure-native:resources:ResourceGroup')).toBe(2);
    expect(count('azure-native:network:NetworkSecurityGroup')).toBe(2);
    expect(count('azure-native:network:Subnet')).toBe(2);
    expect(count(DEFINE)).toBe(3);
    expect(count(ASSIGN)).toBe(4);
    expect(count('azure-native:compute:VirtualMachine')).toBe(1);
    expect(count('azure-native:network:NatGateway')).toBe(1);
    expect(count('azure-native:network:PrivateEndpoint')).toBe(1);
  });

  // The host must reach ARM (its reads), the metadata service (its identity's tokens), its vault and the authority:
  // with no default outbound access and the vault closed to public networks, it reached none of them and never started.
  it('lets the DMZ subnet out to Resource Manager through a NAT gateway, and the fleet subnet nowhere', () => {
    const subnet = (n: string) => named('azure-native:network:Subnet', n).inputs;
    expect(subnet('dallas-dmz').natGateway?.id).toMatch(/NatGateway\/dallas-nat$/);
    expect(subnet('dallas-fleet').natGateway).toBeUndefined();
    const nat = named('azure-native:network:NatGateway', 'dallas-nat').inputs;
    expect(nat.publicIpAddresses).toEqual([{ id: expect.stringMatching(/PublicIPAddress\/dallas-egress$/) }]);
    const out = (nsg: string) =>
      named(NSG, nsg)
        .inputs.securityRules.filter((r: { direction: string }) => r.direction === 'Outbound')
        .map((r: { access: string; destinationAddressPrefix?: string; destinationAddressPrefixes?: string[]; destinationPortRange: string }) => [r.access, r.destinationAddressPrefix ?? r.destinationAddressPrefixes, r.destinationPortRange]);
    expect(out('dallas-dmz-client')).toEqual([
      ['Allow', 'AzureResourceManager', '443'],
      ['Allow', 'AzurePlatformIMDS', '80'],
      ['Allow', '10.30.1.0/24', '443'],
      ['Allow', ['192.168.0.0/16'], '7400'],
      ['Deny', '*', '*'],
    ]);
    expect(out('dallas-fleet')).toEqual([
      ['Allow', '10.30.1.0/24', '8443'],
      ['Deny', '*', '*'],
    ]);
  });

  it('reaches the vault at a private endpoint in the DMZ subnet, by a name the VNet resolves', () => {
    const ep = named('azure-native:network:PrivateEndpoint', 'dallas-vault-endpoint').inputs;
    expect(ep.subnet.id).toMatch(/Subnet\/dallas-dmz$/);
    expect(ep.privateLinkServiceConnections).toEqual([{ name: 'vault', privateLinkServiceId: expect.stringMatching(/Vault\/dallas-vault$/), groupIds: ['vault'] }]);
    expect(named('azure-native:privatedns:PrivateZone', 'dallas-vault-zone').inputs.privateZoneName).toBe('privatelink.vaultcore.azure.net');
    expect(named('azure-native:privatedns:VirtualNetworkLink', 'dallas-vault-zone-link').inputs).toMatchObject({ privateZoneName: 'dallas-vault-zone', virtualNetwork: { id: expect.stringMatching(/VirtualNetwork\/dallas-vnet$/) }, registrationEnabled: false });
    expect(named('azure-native:network:PrivateDnsZoneGroup', 'dallas-vault-zone-group').inputs).toMatchObject({ privateEndpointName: 'dallas-vault-endpoint', privateDnsZoneConfigs: [{ name: 'vault', privateDnsZoneId: expect.stringMatching(/PrivateZone\/dallas-vault-zone$/) }] });
  });

  it('holds every security property', () => {
    expect(runChecks(azureChecks(expectations), resources).filter((r) => r.violations.length > 0)).toEqual([]);
  });

  it("defines the three custom roles word for word as docs/drivers/azure.md, each on one resource group only", () => {
    const docs = documentedRoles();
    for (const [resource, role, groupId] of [
      ['dallas-reader-role', DMZ_CLIENT_READER_ROLE, FLEET_RG_ID],
      ['dallas-broker-role', BROKER_ROLE, FLEET_RG_ID],
      ['dallas-subnet-join-role', FLEET_SUBNET_JOIN_ROLE, RG_ID],
    ] as const) {
      const doc = docs.get(role.name)!;
      expect(doc, role.name).toBeDefined();
      expect({ name: role.name, description: role.description, actions: role.actions }).toEqual({ name: doc.Name, description: doc.Description, actions: doc.Actions });
      expect(doc.NotActions).toEqual([]);
      const r = named(DEFINE, resource);
      expect(r.inputs).toMatchObject({
        scope: groupId,
        assignableScopes: [groupId],
        roleName: `${role.name} (${groupId.split('/').pop()})`,
        description: role.description,
        permissions: [{ actions: [...role.actions], notActions: [], dataActions: [], notDataActions: [] }],
      });
      expect(r.inputs.roleDefinitionId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    }
    expect(new Set(['dallas-reader-role', 'dallas-broker-role', 'dallas-subnet-join-role'].map((n) => named(DEFINE, n).inputs.roleDefinitionId)).size).toBe(3);
    expect(FLEET_SUBNET_JOIN_ROLE.actions).toEqual([SUBNET_JOIN_ACTION]);
    expect(BROKER_ROLE.actions).not.toContain(SUBNET_JOIN_ACTION);
  });

  it("gives the host identity only the reader role on the fleet's group and its vault, and the broker principal the broker role on the fleet's group and the subnet join on the fleet subnet", () => {
    const roleId = (guid: string) => `/subscriptions/${MOCK_SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/${guid}`;
    const byAssignment = Object.fromEntries(resources.filter((r) => r.type === ASSIGN).map((r) => [r.name, { principalId: r.inputs.principalId, scope: r.inputs.scope, roleDefinitionId: r.inputs.roleDefinitionId }]));
    expect(byAssignment).toEqual({
      'dallas-reader': { principalId: 'dallas-identity-principal', scope: FLEET_RG_ID, roleDefinitionId: roleId(named(DEFINE, 'dallas-reader-role').inputs.roleDefinitionId) },
      'dallas-secrets-user': { principalId: 'dallas-identity-principal', scope: `${RG_ID}/providers/keyvault/Vault/dallas-vault`, roleDefinitionId: roleId(BUILT_IN_ROLES.keyVaultSecretsUser) },
      'dallas-broker': { principalId: BROKER.principalId, scope: FLEET_RG_ID, roleDefinitionId: roleId(named(DEFINE, 'dallas-broker-role').inputs.roleDefinitionId) },
      'dallas-broker-subnet-join': { principalId: BROKER.principalId, scope: FLEET_SUBNET_ID, roleDefinitionId: roleId(named(DEFINE, 'dallas-subnet-join-role').inputs.roleDefinitionId) },
    });
  });

  // Found in review: the broker's role was assigned on the resource group holding the DMZ host's own VM, its NIC and
  // the DMZ subnet, so a broker token could rewrite or delete the DMZ host and join a VM to the DMZ subnet (on AWS
  // the broker role reaches only tagged fleet VMs). Its VM, NIC and disk writes belong on a resource group of the
  // fleet's own, and its subnet join on the fleet subnet alone.
  it("keeps the broker off the DMZ host's resource group: writes on the fleet's group, subnet join on the fleet subnet alone", async () => {
    const JOIN = 'Microsoft.Network/virtualNetworks/subnets/join/action';
    const hostGroup = String(named('azure-native:compute:VirtualMachine', 'dallas-vm').inputs.resourceGroupName);
    const hostGroupId = `/subscriptions/${MOCK_SUBSCRIPTION}/resourceGroups/${hostGroup}`;
    const fleetSubnetId = await valueOf(network.fleetSubnet.id);
    const actionsOf = (a: DeclaredResource): string[] => {
      const def = resources.find((r) => r.type === DEFINE && String(a.inputs.roleDefinitionId).endsWith(`/${r.inputs.roleDefinitionId}`));
      expect(def, `the custom role of ${a.name}`).toBeDefined();
      return def!.inputs.permissions.flatMap((p: { actions: string[] }) => p.actions);
    };
    const broker = resources.filter((r) => r.type === ASSIGN && r.inputs.principalId === BROKER.principalId).map((a) => ({ scope: String(a.inputs.scope), actions: actionsOf(a) }));
    const inHostGroup = (scope: string) => scope.toLowerCase() === hostGroupId.toLowerCase() || scope.toLowerCase().startsWith(`${hostGroupId.toLowerCase()}/`);
    // At or under the host's group: one subnet join, on the fleet subnet (not the DMZ subnet, not the VNet).
    expect(broker.filter((b) => inHostGroup(b.scope))).toEqual([{ scope: fleetSubnetId, actions: [JOIN] }]);
    // The writes: one role, on a whole resource group that holds none of the DMZ's resources, joining no subnet there.
    const writes = broker.filter((b) => b.actions.some((x) => x !== JOIN));
    expect(writes).toHaveLength(1);
    expect(writes[0].scope).toMatch(/^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+$/);
    expect(writes[0].actions).not.toContain(JOIN);
    const writeGroup = writes[0].scope.split('/').pop();
    expect(resources.filter((r) => String(r.inputs.resourceGroupName) === writeGroup).map((r) => `${r.type} ${r.name}`)).toEqual([]);
  });

  it('gives the host a fixed private address in the DMZ subnet', () => {
    expect(host.privateIp).toBe('10.30.1.10');
    expect(named('azure-native:network:NetworkInterface', 'dallas-nic').inputs.ipConfigurations).toEqual([
      { name: 'dmz', subnet: { id: expect.stringContaining('dallas-dmz') }, privateIPAllocationMethod: 'Static', privateIPAddress: '10.30.1.10' },
    ]);
  });

  it('produces the data center entry of stack.yaml, with the broker principal and no secret', async () => {
    expect(await valueOf(host.url)).toBe('https://10.30.1.10:8443');
    expect(await valueOf(host.dataCenterEntry)).toEqual({
      name: 'dallas',
      address: 'https://10.30.1.10:8443',
      location: { lat: 32.8, lon: -96.8 },
      hardware: ['general'],
      capacity: { vms: 100, cpu: 400 },
      auth: { tokenEnv: 'FLEET_CLI_TOKEN_DALLAS' },
      driver: 'azure',
      // The group the broker's tokens are for: the fleet's, where the driver makes its VMs.
      azure: { tenantId: TENANT_ID, clientId: BROKER.clientId, subscriptionId: MOCK_SUBSCRIPTION, resourceGroup: 'dallas-fleet-rg', clientSecretEnv: 'DMZFLEET_DALLAS_SECRET' },
    });
  });

  // Found by QA: the script was the VM's userData, which cloud-init's Azure datasource never reads (it runs custom
  // data; docs/drivers/azure.md, "The boot agent on Azure"): the host booted, ran nothing, and no DMZ client ever
  // started. Azure refuses to change custom data in place, so a changed script replaces the VM, the old one first
  // (the new one takes the same NIC and address).
  it('hands its start-up script to cloud-init as custom data, and replaces the VM, old one first, when it changes', () => {
    const vm = resources.find((r) => r.type === 'azure-native:compute:VirtualMachine')!;
    expect(vm.inputs.userData).toBeUndefined();
    expect(Buffer.from(vm.inputs.osProfile.customData, 'base64').toString()).toMatch(/^#!\/bin\/bash\n/);
    expect(vmOptions).toMatchObject({ replaceOnChanges: ['osProfile.customData'], deleteBeforeReplace: true });
  });

  // The whole state, not only the start-up script: every input of every resource (base64 custom data decoded) and the
  // component's outputs hold the TLS key, the certificate and the tokens only inside a value marked secret.
  it('keeps every secret out of every resource\'s inputs and its outputs, but inside the one value marked secret', async () => {
    expect(await secretsFound(resources, host)).toEqual(HOST_SECRETS.map((secret) => ({ secret, plain: [], inSecret: true, inOutputs: false })));
  });

  it('starts fleet serve dmz-client --driver azure --config and keeps secrets out of the user data', () => {
    const script = userData();
    expect(script).toContain("'fleet' 'serve' 'dmz-client' '--data-center' 'dallas' '--driver' 'azure' '--config' '/etc/dmzfleet/dmz-client.yaml'");
    expect(script).toContain(`cat > ${CONFIG_FILE} <<'DMZFLEET_CONFIG_END'`);
    for (const s of ['pem-cert-value', 'pem-key-value', 'client-token-value', 'authority-token-value']) expect(script).not.toContain(s);
  });

  it("writes a DmzClient config the azure driver accepts, naming the fleet's resource group, the fleet subnet of the VNet in the DMZ's group and the boot URL", async () => {
    const text = writtenConfig(userData());
    expect(text).toBe(await valueOf(host.dmzClientConfig));
    const checked = checkDmzClientConfig(text, CONFIG_FILE, 'azure', 'dallas');
    expect(checked.diagnostics).toEqual([]);
    expect(parse(text)).toEqual({
      apiVersion: 'fleet/v1',
      kind: 'DmzClient',
      metadata: { dataCenter: 'dallas' },
      spec: {
        bootUrl: 'https://10.30.1.10:8443/v1/boot',
        azure: { subscriptionId: MOCK_SUBSCRIPTION, resourceGroup: 'dallas-fleet-rg', location: 'southcentralus', vnet: 'dallas-vnet', subnet: 'dallas-fleet', vnetResourceGroup: 'dallas-rg', sshPublicKey: FLEET_KEY },
      },
    });
    // The config holds no secret, and names no broker: the DMZ client never sees the broker's secret or its name.
    for (const s of ['pem-', 'token-value', BROKER.clientId, BROKER.clientSecretEnv]) expect(text).not.toContain(s);
  });

  it.each([
    ['a fleet key that is not an OpenSSH key', { fleetSshPublicKey: 'AAAA not a key' }, /fleetSshPublicKey/],
    ['an address outside the DMZ subnet', { privateIp: '10.30.2.10' }, /not in the DMZ subnet 10\.30\.1\.0\/24/],
    ['a broker without its service principal', { broker: { ...BROKER, principalId: '' } }, /broker\.principalId/],
    ['a secret variable that is no variable name', { broker: { ...BROKER, clientSecretEnv: 'my secret' } }, /clientSecretEnv/],
    ['an authority on a port the network does not let out to', { authorityUrl: 'https://authority.tenant.example:9443' }, /reached on port 9443, but its DmzNetwork admits the authority on port 7400/],
    ['an authority URL that is not https', { authorityUrl: 'http://authority.tenant.example:7400' }, /not an https:\/\/ URL/],
  ])('refuses %s when declared', (_what, over, message) => {
    expect(() => new DmzClientHost('refused', { ...hostArgs, ...over })).toThrow(message);
  });

  it.each([
    ['a fleet subnet outside the address space', { fleetSubnetPrefix: '10.40.2.0/24' }, /DmzNetwork nets: fleetSubnetPrefix 10\.40\.2\.0\/24 is not inside addressSpace 10\.30\.0\.0\/16/],
    ['subnets that overlap', { fleetSubnetPrefix: '10.30.1.128/25' }, /dmzSubnetPrefix 10\.30\.1\.0\/24 and fleetSubnetPrefix 10\.30\.1\.128\/25 overlap/],
    ['an address space that is no network CIDR', { addressSpace: '10.30.0.0' }, /addressSpace 10\.30\.0\.0 is not an IPv4 network CIDR/],
  ])('refuses a network with %s when declared', (_what, over, message) => {
    const base = { stack: 'prod', dataCenter: 'dallas', location: 'southcentralus', addressSpace: '10.30.0.0/16', dmzSubnetPrefix: '10.30.1.0/24', fleetSubnetPrefix: '10.30.2.0/24', tenantCidrs: ['192.168.0.0/16'] };
    expect(() => new DmzNetwork('nets', { ...base, ...over })).toThrow(message);
  });

  const NSG = 'azure-native:network:NetworkSecurityGroup';
  const EGRESS = 'egress only to Resource Manager, the metadata service and private networks';
  const PRIVATE_VAULT = 'the key vault is reached privately';
  const ROLES_ON_RG = "roles hold only on the data center's resource groups";
  const BROKER_SCOPE = "the broker writes only the fleet's resource group and joins only the fleet subnet";
  const ONLY_BROKER = 'only the broker principal may change anything';
  const DOCUMENTED = 'custom roles grant only the documented actions';
  const builtIn = (id: string) => (r: DeclaredResource) => (r.inputs.roleDefinitionId = r.inputs.roleDefinitionId.replace(/[^/]+$/, id));
  const VARIANTS: { name: string; property: string; type: string; resource?: string; edit: (r: DeclaredResource) => void }[] = [
    { name: 'an Internet inbound rule', property: 'ingress only from the admitted sources', type: NSG, resource: 'dallas-dmz-client', edit: (r) => r.inputs.securityRules.push({ name: 'oops', priority: 120, direction: 'Inbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefix: 'Internet', destinationPortRange: '8443' }) },
    { name: 'a 0.0.0.0/0 source', property: 'ingress only from the admitted sources', type: NSG, resource: 'dallas-dmz-client', edit: (r) => r.inputs.securityRules[0].sourceAddressPrefixes.push('0.0.0.0/0') },
    { name: 'SSH from the tenant', property: 'ingress only from the admitted sources', type: NSG, resource: 'dallas-fleet', edit: (r) => r.inputs.securityRules.push({ name: 'ssh', priority: 100, direction: 'Inbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefix: '192.168.0.0/16', destinationPortRange: '22' }) },
    { name: 'no deny-all inbound', property: 'ingress only from the admitted sources', type: NSG, resource: 'dallas-dmz-client', edit: (r) => (r.inputs.securityRules = r.inputs.securityRules.filter((x: { name: string }) => x.name !== 'deny-all-inbound')) },
    { name: 'a public IP on the NIC', property: 'no public IP', type: 'azure-native:network:NetworkInterface', edit: (r) => (r.inputs.ipConfigurations[0].publicIPAddress = { id: 'pip' }) },
    { name: 'default outbound access', property: 'no public IP', type: 'azure-native:network:Subnet', resource: 'dallas-fleet', edit: (r) => delete r.inputs.defaultOutboundAccess },
    { name: "a public IP that is not the NAT gateway's", property: 'no public IP', type: 'azure-native:network:NatGateway', edit: (r) => (r.inputs.publicIpAddresses = []) },
    { name: 'the DMZ let out to the Internet', property: EGRESS, type: NSG, resource: 'dallas-dmz-client', edit: (r) => r.inputs.securityRules.push({ name: 'web', priority: 140, direction: 'Outbound', access: 'Allow', protocol: 'Tcp', destinationAddressPrefix: 'Internet', destinationPortRange: '443' }) },
    { name: 'the DMZ let out to Storage', property: EGRESS, type: NSG, resource: 'dallas-dmz-client', edit: (r) => r.inputs.securityRules.push({ name: 'blobs', priority: 140, direction: 'Outbound', access: 'Allow', protocol: 'Tcp', destinationAddressPrefix: 'Storage', destinationPortRange: '443' }) },
    { name: 'Resource Manager on every port', property: EGRESS, type: NSG, resource: 'dallas-dmz-client', edit: (r) => (r.inputs.securityRules.find((x: { name: string }) => x.name === 'allow-resource-manager').destinationPortRange = '*') },
    { name: 'a public address let out', property: EGRESS, type: NSG, resource: 'dallas-fleet', edit: (r) => r.inputs.securityRules.push({ name: 'dns', priority: 110, direction: 'Outbound', access: 'Allow', protocol: 'Udp', destinationAddressPrefix: '8.8.8.8/32', destinationPortRange: '53' }) },
    { name: 'no deny-all outbound', property: EGRESS, type: NSG, resource: 'dallas-dmz-client', edit: (r) => (r.inputs.securityRules = r.inputs.securityRules.filter((x: { name: string }) => x.name !== 'deny-all-outbound')) },
    { name: 'no private endpoint for the vault', property: PRIVATE_VAULT, type: 'azure-native:network:PrivateEndpoint', edit: (r) => (r.inputs.privateLinkServiceConnections = []) },
    { name: 'the private zone linked to no VNet', property: PRIVATE_VAULT, type: 'azure-native:privatedns:VirtualNetworkLink', edit: (r) => delete r.inputs.virtualNetwork },
    { name: 'another private zone', property: PRIVATE_VAULT, type: 'azure-native:privatedns:PrivateZone', edit: (r) => (r.inputs.privateZoneName = 'privatelink.blob.core.windows.net') },
    { name: 'no DNS zone group on the endpoint', property: PRIVATE_VAULT, type: 'azure-native:network:PrivateDnsZoneGroup', edit: (r) => (r.inputs.privateEndpointName = 'elsewhere') },
    { name: 'no encryption at host', property: 'encrypted at rest', type: 'azure-native:compute:VirtualMachine', edit: (r) => (r.inputs.securityProfile.encryptionAtHost = false) },
    { name: 'a vault open to public networks', property: 'encrypted at rest', type: 'azure-native:keyvault:Vault', edit: (r) => (r.inputs.properties.publicNetworkAccess = 'Enabled') },
    { name: 'a subscription-wide reader', property: ROLES_ON_RG, type: ASSIGN, resource: 'dallas-reader', edit: (r) => (r.inputs.scope = `/subscriptions/${MOCK_SUBSCRIPTION}`) },
    { name: 'the broker role assigned on the subscription', property: ROLES_ON_RG, type: ASSIGN, resource: 'dallas-broker', edit: (r) => (r.inputs.scope = `/subscriptions/${MOCK_SUBSCRIPTION}`) },
    { name: 'the broker role assignable on the subscription', property: ROLES_ON_RG, type: DEFINE, resource: 'dallas-broker-role', edit: (r) => r.inputs.assignableScopes.push(`/subscriptions/${MOCK_SUBSCRIPTION}`) },
    { name: 'Owner on the group', property: ROLES_ON_RG, type: ASSIGN, resource: 'dallas-broker', edit: builtIn(BUILT_IN_ROLES.owner) },
    { name: 'the host identity with Virtual Machine Contributor', property: ONLY_BROKER, type: ASSIGN, resource: 'dallas-reader', edit: builtIn(BUILT_IN_ROLES.virtualMachineContributor) },
    { name: 'the host identity with Network Contributor', property: ONLY_BROKER, type: ASSIGN, resource: 'dallas-reader', edit: builtIn(BUILT_IN_ROLES.networkContributor) },
    { name: 'the host identity with Contributor', property: ONLY_BROKER, type: ASSIGN, resource: 'dallas-secrets-user', edit: builtIn(BUILT_IN_ROLES.contributor) },
    { name: 'the host identity with Owner', property: ONLY_BROKER, type: ASSIGN, resource: 'dallas-reader', edit: builtIn(BUILT_IN_ROLES.owner) },
    { name: 'the host identity with the broker role', property: ONLY_BROKER, type: ASSIGN, resource: 'dallas-broker', edit: (r) => (r.inputs.principalId = 'dallas-identity-principal') },
    { name: 'a reader role that may write VMs', property: ONLY_BROKER, type: DEFINE, resource: 'dallas-reader-role', edit: (r) => r.inputs.permissions[0].actions.push('Microsoft.Compute/virtualMachines/write') },
    { name: 'a reader role that may power VMs off', property: ONLY_BROKER, type: DEFINE, resource: 'dallas-reader-role', edit: (r) => r.inputs.permissions[0].actions.push('Microsoft.Compute/virtualMachines/powerOff/action') },
    { name: 'secrets read on the whole group', property: ONLY_BROKER, type: ASSIGN, resource: 'dallas-secrets-user', edit: (r) => (r.inputs.scope = RG_ID) },
    { name: 'the broker with Virtual Machine Contributor instead', property: ONLY_BROKER, type: ASSIGN, resource: 'dallas-broker', edit: builtIn(BUILT_IN_ROLES.virtualMachineContributor) },
    { name: 'the broker role given to another principal', property: ONLY_BROKER, type: ASSIGN, resource: 'dallas-broker', edit: (r) => (r.inputs.principalId = '44444444-4444-4444-4444-444444444444') },
    // The broker kept off the DMZ: its writes on the fleet's group, its subnet join on the fleet subnet alone.
    { name: "the broker role assigned on the DMZ host's group", property: BROKER_SCOPE, type: ASSIGN, resource: 'dallas-broker', edit: (r) => (r.inputs.scope = RG_ID) },
    { name: 'the broker role assigned on the DMZ host itself', property: BROKER_SCOPE, type: ASSIGN, resource: 'dallas-broker', edit: (r) => (r.inputs.scope = `${RG_ID}/providers/compute/VirtualMachine/dallas-vm`) },
    { name: "the broker role assigned on the subscription, the DMZ's group within", property: BROKER_SCOPE, type: ASSIGN, resource: 'dallas-broker', edit: (r) => (r.inputs.scope = `/subscriptions/${MOCK_SUBSCRIPTION}`) },
    { name: 'subnet join on the DMZ subnet', property: BROKER_SCOPE, type: ASSIGN, resource: 'dallas-broker-subnet-join', edit: (r) => (r.inputs.scope = `${RG_ID}/providers/network/Subnet/dallas-dmz`) },
    { name: 'subnet join on the whole VNet', property: BROKER_SCOPE, type: ASSIGN, resource: 'dallas-broker-subnet-join', edit: (r) => (r.inputs.scope = `${RG_ID}/providers/network/VirtualNetwork/dallas-vnet`) },
    { name: "subnet join on the DMZ's group", property: BROKER_SCOPE, type: ASSIGN, resource: 'dallas-broker-subnet-join', edit: (r) => (r.inputs.scope = RG_ID) },
    { name: 'no subnet join at all', property: BROKER_SCOPE, type: ASSIGN, resource: 'dallas-broker-subnet-join', edit: (r) => (r.inputs.principalId = 'dallas-identity-principal') },
    { name: 'a broker role that joins subnets too', property: BROKER_SCOPE, type: DEFINE, resource: 'dallas-broker-role', edit: (r) => r.inputs.permissions[0].actions.push(SUBNET_JOIN_ACTION) },
    { name: "the broker role assignable on the DMZ's group", property: BROKER_SCOPE, type: DEFINE, resource: 'dallas-broker-role', edit: (r) => r.inputs.assignableScopes.push(RG_ID) },
    { name: 'the subnet join role given to the host identity', property: ONLY_BROKER, type: ASSIGN, resource: 'dallas-broker-subnet-join', edit: (r) => (r.inputs.principalId = 'dallas-identity-principal') },
    { name: 'a broker role with Microsoft.Compute/*', property: DOCUMENTED, type: DEFINE, resource: 'dallas-broker-role', edit: (r) => r.inputs.permissions[0].actions.push('Microsoft.Compute/*') },
    { name: 'a reader role with */read', property: DOCUMENTED, type: DEFINE, resource: 'dallas-reader-role', edit: (r) => (r.inputs.permissions[0].actions = ['*/read']) },
    { name: 'a broker role that may assign roles', property: DOCUMENTED, type: DEFINE, resource: 'dallas-broker-role', edit: (r) => r.inputs.permissions[0].actions.push('Microsoft.Authorization/roleAssignments/write') },
    { name: 'a broker role with data actions', property: DOCUMENTED, type: DEFINE, resource: 'dallas-broker-role', edit: (r) => r.inputs.permissions[0].dataActions.push('Microsoft.KeyVault/vaults/secrets/getSecret/action') },
    { name: 'a missing stack tag', property: 'tagged with the stack and data center', type: 'azure-native:compute:VirtualMachine', edit: (r) => delete r.inputs.tags[TAG_STACK] },
  ];

  it.each(VARIANTS)('catches $name ($property)', ({ property, type, resource, edit }) => {
    const reports = runChecks(azureChecks(expectations), broken(resources, type, edit, resource));
    expect(reports.find((r) => r.property === property)?.violations.length).toBeGreaterThan(0);
  });

  it('has a broken variant for every property', () => {
    expect(new Set(VARIANTS.map((v) => v.property))).toEqual(new Set(azureChecks(expectations).map((c) => c.property)));
  });
});
