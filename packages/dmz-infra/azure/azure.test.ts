// The Azure components under Pulumi's mocks: every security property holds for
// what they declare, and each check catches its property broken (a table of
// broken variants of the declared resources).
import { beforeAll, describe, expect, it } from 'vitest';
import { azureChecks, runChecks, type DeclaredResource } from '../checks/index.ts';
import { TAG_DATA_CENTER, TAG_STACK } from '../common.ts';
import { MOCK_SUBSCRIPTION, broken, mockPulumi, registered, valueOf } from '../testing.ts';
import { DmzClientHost, DmzNetwork } from './index.ts';

const mocks = mockPulumi();
const expectations = {
  admitted: [
    { port: 8443, cidr: '192.168.0.0/16', why: 'tenant' },
    { port: 8443, cidr: '10.30.2.0/24', why: 'boot from the fleet subnet' },
  ],
  tags: { [TAG_STACK]: 'prod', [TAG_DATA_CENTER]: 'dallas' },
};
let resources: DeclaredResource[];
let host: DmzClientHost;

beforeAll(async () => {
  const network = new DmzNetwork('dallas', {
    stack: 'prod',
    dataCenter: 'dallas',
    location: 'southcentralus',
    addressSpace: '10.30.0.0/16',
    dmzSubnetPrefix: '10.30.1.0/24',
    fleetSubnetPrefix: '10.30.2.0/24',
    tenantCidrs: ['192.168.0.0/16'],
  });
  host = new DmzClientHost('dallas', {
    network,
    facts: { location: { lat: 32.8, lon: -96.8 }, hardware: ['general'], capacity: { vms: 100, cpu: 400 } },
    authorityUrl: 'https://authority.tenant.example:7400',
    subscriptionId: MOCK_SUBSCRIPTION,
    tenantId: '11111111-1111-1111-1111-111111111111',
    sshPublicKey: 'ssh-ed25519 AAAA test',
    secrets: { tlsCert: 'pem-cert-value', tlsKey: 'pem-key-value', clientToken: 'client-token-value', authorityToken: 'authority-token-value' },
  });
  await registered(network, host);
  resources = mocks.resources;
});

describe('Azure DMZ', () => {
  it('declares the network and the host', () => {
    const count = (t: string) => resources.filter((r) => r.type === t).length;
    expect(count('azure-native:resources:ResourceGroup')).toBe(1);
    expect(count('azure-native:network:NetworkSecurityGroup')).toBe(2);
    expect(count('azure-native:network:Subnet')).toBe(2);
    expect(count('azure-native:authorization:RoleAssignment')).toBe(3);
    expect(count('azure-native:compute:VirtualMachine')).toBe(1);
  });

  it('holds every security property', () => {
    expect(runChecks(azureChecks(expectations), resources).filter((r) => r.violations.length > 0)).toEqual([]);
  });

  it('produces the data center entry of stack.yaml', async () => {
    expect(await valueOf(host.dataCenterEntry)).toEqual({
      name: 'dallas',
      address: 'https://10.30.1.4:8443',
      location: { lat: 32.8, lon: -96.8 },
      hardware: ['general'],
      capacity: { vms: 100, cpu: 400 },
      auth: { tokenEnv: 'FLEET_CLI_TOKEN_DALLAS' },
    });
  });

  it('starts fleet serve dmz-client --driver azure and keeps secrets out of the user data', () => {
    const vm = resources.find((r) => r.type === 'azure-native:compute:VirtualMachine')!;
    const script = Buffer.from(vm.inputs.userData, 'base64').toString();
    expect(script).toContain("'fleet' 'serve' 'dmz-client' '--data-center' 'dallas' '--driver' 'azure'");
    for (const s of ['pem-cert-value', 'pem-key-value', 'client-token-value', 'authority-token-value']) expect(script).not.toContain(s);
  });

  const NSG = 'azure-native:network:NetworkSecurityGroup';
  const ASSIGN = 'azure-native:authorization:RoleAssignment';
  const VARIANTS: { name: string; property: string; type: string; resource?: string; edit: (r: DeclaredResource) => void }[] = [
    { name: 'an Internet inbound rule', property: 'ingress only from the admitted sources', type: NSG, resource: 'dallas-dmz-client', edit: (r) => r.inputs.securityRules.push({ name: 'oops', priority: 120, direction: 'Inbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefix: 'Internet', destinationPortRange: '8443' }) },
    { name: 'a 0.0.0.0/0 source', property: 'ingress only from the admitted sources', type: NSG, resource: 'dallas-dmz-client', edit: (r) => r.inputs.securityRules[0].sourceAddressPrefixes.push('0.0.0.0/0') },
    { name: 'SSH from the tenant', property: 'ingress only from the admitted sources', type: NSG, resource: 'dallas-fleet', edit: (r) => r.inputs.securityRules.push({ name: 'ssh', priority: 100, direction: 'Inbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefix: '192.168.0.0/16', destinationPortRange: '22' }) },
    { name: 'no deny-all inbound', property: 'ingress only from the admitted sources', type: NSG, resource: 'dallas-dmz-client', edit: (r) => (r.inputs.securityRules = r.inputs.securityRules.filter((x: { name: string }) => x.name !== 'deny-all-inbound')) },
    { name: 'a public IP on the NIC', property: 'no public IP', type: 'azure-native:network:NetworkInterface', edit: (r) => (r.inputs.ipConfigurations[0].publicIPAddress = { id: 'pip' }) },
    { name: 'default outbound access', property: 'no public IP', type: 'azure-native:network:Subnet', resource: 'dallas-fleet', edit: (r) => delete r.inputs.defaultOutboundAccess },
    { name: 'no encryption at host', property: 'encrypted at rest', type: 'azure-native:compute:VirtualMachine', edit: (r) => (r.inputs.securityProfile.encryptionAtHost = false) },
    { name: 'a vault open to public networks', property: 'encrypted at rest', type: 'azure-native:keyvault:Vault', edit: (r) => (r.inputs.properties.publicNetworkAccess = 'Enabled') },
    { name: 'a subscription-wide role', property: "identity holds only on the data center's resource group", type: ASSIGN, resource: 'dallas-vm-contributor', edit: (r) => (r.inputs.scope = `/subscriptions/${MOCK_SUBSCRIPTION}`) },
    { name: 'Owner on the group', property: "identity holds only on the data center's resource group", type: ASSIGN, resource: 'dallas-vm-contributor', edit: (r) => (r.inputs.roleDefinitionId = r.inputs.roleDefinitionId.replace(/[^/]+$/, '8e3af657-a8ff-443c-a75c-2fe8c4bcb635')) },
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
