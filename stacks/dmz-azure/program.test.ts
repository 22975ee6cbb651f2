// The dmz-azure program under Pulumi's mocks: every security property holds per
// data center, a broken variant of each is caught, each host writes a DmzClient
// config the azure driver accepts, a tenant CIDR of 0.0.0.0/0 or a data center
// without its broker principal is refused at once, and the stack.yaml it
// writes loads as a dmzfleet stack naming each data center's broker.
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDmzClientConfig } from '../../providers/drivers/config.ts';
import { azureChecks, runChecks, type DeclaredResource } from '@dmzfleet/dmz-infra/checks';
import { CONFIG_FILE, TAG_DATA_CENTER, TAG_STACK } from '@dmzfleet/dmz-infra';
import { MOCK_SUBSCRIPTION, broken, mockPulumi, registered, valueOf } from '../../packages/dmz-infra/testing.ts';
import { loadStack } from '../../engine/spec/index.ts';
import { deploy, readConfig, type AzureDataCenterConfig } from './program.ts';

const DCS: AzureDataCenterConfig[] = [
  {
    name: 'dallas', region: 'southcentralus', addressSpace: '10.30.0.0/16', dmzSubnetPrefix: '10.30.1.0/24', fleetSubnetPrefix: '10.30.2.0/24',
    broker: { clientId: 'aaaaaaaa-0000-0000-0000-000000000001', principalId: 'bbbbbbbb-0000-0000-0000-000000000001', clientSecretEnv: 'DMZFLEET_DALLAS_SECRET' },
    location: { lat: 32.8, lon: -96.8 }, hardware: ['general'], capacity: { vms: 100 },
  },
  {
    name: 'amsterdam', region: 'westeurope', addressSpace: '10.31.0.0/16', dmzSubnetPrefix: '10.31.1.0/24', fleetSubnetPrefix: '10.31.2.0/24', privateIp: '10.31.1.20',
    broker: { tenantId: '99999999-9999-9999-9999-999999999999', clientId: 'aaaaaaaa-0000-0000-0000-000000000002', principalId: 'bbbbbbbb-0000-0000-0000-000000000002' },
    location: { lat: 52.4, lon: 4.9 }, hardware: ['general'], capacity: { vms: 50 },
  },
];
const FLEET_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIfleet operators@tenant.example';
const TENANT = ['192.168.0.0/16'];
const SECRETS = Object.fromEntries(DCS.map((d) => [d.name, { tlsCert: `cert-${d.name}`, tlsKey: `key-${d.name}`, clientToken: `client-${d.name}`, authorityToken: `authority-${d.name}` }]));
const config = (over: Record<string, unknown> = {}) =>
  Object.fromEntries(
    Object.entries({
      stack: { name: 'prod', specs: ['specs/*.yaml'], record: 'postgres://fleet@db.tenant.example:5432/fleet', policyPack: '../../policies/default', site: { name: 'charlotte', location: { lat: 35.2271, lon: -80.8431 } } },
      subscriptionId: MOCK_SUBSCRIPTION,
      tenantId: '11111111-1111-1111-1111-111111111111',
      tenantCidrs: TENANT,
      authorityUrl: 'https://authority.tenant.example:7400',
      sshPublicKey: 'ssh-ed25519 AAAA test',
      fleetSshPublicKey: FLEET_KEY,
      dataCenters: DCS,
      secrets: SECRETS,
      ...over,
    }).map(([k, v]) => [`dmz-azure:${k}`, typeof v === 'string' ? v : JSON.stringify(v)]),
  );

const mocks = mockPulumi(config());
let d: ReturnType<typeof deploy>;
let dir: string;

beforeAll(async () => {
  d = deploy(readConfig());
  await registered(...d.deployed.flatMap((x) => [x.network, x.host]));
  dir = await mkdtemp(join(tmpdir(), 'dmz-azure-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const expectationsFor = (dc: AzureDataCenterConfig) => ({
  admitted: [...TENANT.map((cidr) => ({ port: 8443, cidr, why: 'tenant' })), { port: 8443, cidr: dc.fleetSubnetPrefix, why: 'boot' }],
  tags: { [TAG_STACK]: 'prod', [TAG_DATA_CENTER]: dc.name },
  brokerPrincipalId: dc.broker.principalId,
  fleetSubnetPrefix: dc.fleetSubnetPrefix,
});
const of = (dc: AzureDataCenterConfig): DeclaredResource[] => mocks.resources.filter((r) => r.name.startsWith(`${dc.name}-`));

describe('stacks/dmz-azure', () => {
  it.each(DCS)('$name: every security property holds', (dc) => {
    expect(of(dc).length).toBeGreaterThan(10);
    expect(runChecks(azureChecks(expectationsFor(dc)), of(dc)).filter((r) => r.violations.length > 0)).toEqual([]);
  });

  it('scopes every role and its assignments to the data center\'s own resource groups, the broker roles to that data center\'s broker', () => {
    for (const dc of DCS) {
      const roles = of(dc).filter((r) => r.type === 'azure-native:authorization:RoleDefinition');
      const assignments = of(dc).filter((r) => r.type === 'azure-native:authorization:RoleAssignment');
      const scopes = [...assignments.map((r) => r.inputs.scope), ...roles.flatMap((r) => [r.inputs.scope, ...r.inputs.assignableScopes])].map(String);
      for (const s of scopes) expect(s).toMatch(new RegExp(`/resourceGroups/(${dc.name}-rg|${dc.name}-fleet-rg)(/|$)`));
      // Custom role names are unique per Entra tenant: each data center's carry its resource group.
      expect(roles.map((r) => r.inputs.roleName).sort()).toEqual(
        [`dmzfleet DMZ client reader (${dc.name}-fleet-rg)`, `dmzfleet broker (${dc.name}-fleet-rg)`, `dmzfleet fleet subnet join (${dc.name}-rg)`].sort(),
      );
      expect(assignments.filter((r) => r.inputs.principalId === dc.broker.principalId).map((r) => r.name)).toEqual([`${dc.name}-broker`, `${dc.name}-broker-subnet-join`]);
    }
  });

  // Found in review: the broker's role sat on the group of the DMZ host's VM, NIC and DMZ subnet (a broker token could
  // change or delete the DMZ host, or put a VM in the DMZ subnet). Per data center: its writes on the fleet's group,
  // which holds nothing the program declares, and in the DMZ's group only a subnet join on the fleet subnet.
  it.each(DCS)("$name: the broker writes only the fleet's resource group and joins only the fleet subnet", (dc) => {
    const rs = of(dc);
    const actionsOf = (a: DeclaredResource): string[] =>
      rs.find((r) => r.type === 'azure-native:authorization:RoleDefinition' && String(a.inputs.roleDefinitionId).endsWith(`/${r.inputs.roleDefinitionId}`))!.inputs.permissions.flatMap((p: { actions: string[] }) => p.actions);
    const hostGroup = String(rs.find((r) => r.type === 'azure-native:compute:VirtualMachine')!.inputs.resourceGroupName);
    const broker = rs.filter((r) => r.type === 'azure-native:authorization:RoleAssignment' && r.inputs.principalId === dc.broker.principalId).map((a) => ({ scope: String(a.inputs.scope), actions: actionsOf(a) }));
    const JOIN = 'Microsoft.Network/virtualNetworks/subnets/join/action';
    const hostGroupId = `/subscriptions/${MOCK_SUBSCRIPTION}/resourceGroups/${hostGroup}`;
    expect(broker.filter((b) => b.scope === hostGroupId || b.scope.startsWith(`${hostGroupId}/`))).toEqual([{ scope: `${hostGroupId}/providers/network/Subnet/${dc.name}-fleet`, actions: [JOIN] }]);
    const writes = broker.filter((b) => b.actions.some((x) => x !== JOIN));
    expect(writes.map((b) => b.scope)).toEqual([`/subscriptions/${MOCK_SUBSCRIPTION}/resourceGroups/${dc.name}-fleet-rg`]);
    expect(writes[0].actions).not.toContain(JOIN);
    expect(rs.filter((r) => r.inputs.resourceGroupName === `${dc.name}-fleet-rg`).map((r) => r.name)).toEqual([]);
  });

  it.each(DCS)('$name: the host writes a DmzClient config the azure driver accepts and passes it with --config', (dc) => {
    const vm = of(dc).find((r) => r.type === 'azure-native:compute:VirtualMachine')!;
    const script = Buffer.from(vm.inputs.osProfile.customData, 'base64').toString();
    expect(script).toContain(`'--driver' 'azure' '--config' '${CONFIG_FILE}'`);
    const lines = script.split('\n');
    const start = lines.indexOf(`cat > ${CONFIG_FILE} <<'DMZFLEET_CONFIG_END'`);
    const text = `${lines.slice(start + 1, lines.indexOf('DMZFLEET_CONFIG_END', start + 1)).join('\n')}\n`;
    const checked = checkDmzClientConfig(text, CONFIG_FILE, 'azure', dc.name);
    expect(checked.diagnostics).toEqual([]);
    const ip = dc.privateIp ?? dc.dmzSubnetPrefix.replace(/0\/24$/, '10');
    expect(checked.config?.spec).toEqual({
      bootUrl: `https://${ip}:8443/v1/boot`,
      azure: { subscriptionId: MOCK_SUBSCRIPTION, resourceGroup: `${dc.name}-fleet-rg`, location: dc.region, vnet: `${dc.name}-vnet`, subnet: `${dc.name}-fleet`, vnetResourceGroup: `${dc.name}-rg`, sshPublicKey: FLEET_KEY },
    });
    for (const s of Object.values(SECRETS[dc.name])) expect(script).not.toContain(s);
  });

  const VARIANTS: { name: string; property: string; type: string; resource?: string; edit: (r: DeclaredResource) => void }[] = [
    { name: '0.0.0.0/0 added to the DMZ client', property: 'ingress only from the admitted sources', type: 'azure-native:network:NetworkSecurityGroup', edit: (r) => r.inputs.securityRules.push({ name: 'open', priority: 120, direction: 'Inbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefix: '0.0.0.0/0', destinationPortRange: '8443' }) },
    { name: 'a public IP', property: 'no public IP', type: 'azure-native:network:NetworkInterface', edit: (r) => (r.inputs.ipConfigurations[0].publicIPAddress = { id: 'pip' }) },
    { name: 'no encryption at host', property: 'encrypted at rest', type: 'azure-native:compute:VirtualMachine', edit: (r) => delete r.inputs.securityProfile },
    { name: 'a subscription-wide role', property: "roles hold only on the data center's resource groups", type: 'azure-native:authorization:RoleAssignment', edit: (r) => (r.inputs.scope = `/subscriptions/${MOCK_SUBSCRIPTION}`) },
    { name: 'Virtual Machine Contributor for the host identity', property: 'only the broker principal may change anything', type: 'azure-native:authorization:RoleAssignment', edit: (r) => (r.inputs.roleDefinitionId = r.inputs.roleDefinitionId.replace(/[^/]+$/, '9980e02c-c2be-4d73-94e8-173b1dc7cf3c')) },
    { name: "the broker's writes on the DMZ host's group", property: "the broker writes only the fleet's resource group and joins only the fleet subnet", type: 'azure-native:authorization:RoleAssignment', resource: 'dallas-broker', edit: (r) => (r.inputs.scope = `/subscriptions/${MOCK_SUBSCRIPTION}/resourceGroups/dallas-rg`) },
    { name: 'the subnet join on the DMZ subnet', property: "the broker writes only the fleet's resource group and joins only the fleet subnet", type: 'azure-native:authorization:RoleAssignment', resource: 'dallas-broker-subnet-join', edit: (r) => (r.inputs.scope = String(r.inputs.scope).replace(/dallas-fleet$/, 'dallas-dmz')) },
    { name: 'a wildcard in a custom role', property: 'custom roles grant only the documented actions', type: 'azure-native:authorization:RoleDefinition', edit: (r) => r.inputs.permissions[0].actions.push('Microsoft.Network/*') },
    { name: 'an untagged NSG', property: 'tagged with the stack and data center', type: 'azure-native:network:NetworkSecurityGroup', edit: (r) => (r.inputs.tags = {}) },
  ];
  it.each(VARIANTS)('dallas: catches $name', ({ property, type, resource, edit }) => {
    const reports = runChecks(azureChecks(expectationsFor(DCS[0])), broken(of(DCS[0]), type, edit, resource));
    expect(reports.find((r) => r.property === property)?.violations.length).toBeGreaterThan(0);
  });

  it('refuses a data center without its broker principal', () => {
    mockPulumi(config({ dataCenters: [{ ...DCS[0], broker: undefined }] }));
    expect(() => deploy(readConfig())).toThrow(/dallas needs broker\.clientId and broker\.principalId/);
  });

  it('refuses a tenant CIDR of 0.0.0.0/0 before declaring anything', () => {
    mockPulumi(config({ tenantCidrs: ['0.0.0.0/0'] }));
    expect(() => deploy(readConfig())).toThrow(/0\.0\.0\.0\/0 admits a \/0/);
  });

  it('writes a stack.yaml that loads as a dmzfleet stack, with no secret in it', async () => {
    const text = await valueOf(d.stackYaml);
    for (const s of Object.values(SECRETS).flatMap((x) => Object.values(x))) expect(text).not.toContain(s);
    const stackDir = join(dir, 'stacks', 'prod');
    await mkdir(join(stackDir, 'specs'), { recursive: true });
    await writeFile(join(stackDir, 'specs', 'none.yaml'), '# fleets come later\n');
    // The tenant's pack: the default one with an instance-type catalog for these azure data centers (a cloud data center needs one).
    const packDir = join(dir, 'pack');
    await mkdir(packDir, { recursive: true });
    const sizes = '      - { name: Standard_D2s_v5, cpu: 2, memoryGiB: 8 }\n      - { name: Standard_D4s_v5, cpu: 4, memoryGiB: 16 }\n';
    const pack = await readFile(join(import.meta.dirname, '..', '..', 'policies', 'default', 'policy.yaml'), 'utf8');
    expect(pack).toContain('\n  instanceTypes:\n');
    await writeFile(join(packDir, 'policy.yaml'), pack.replace('\n  instanceTypes:\n', `\n  instanceTypes:\n${DCS.map((x) => `    ${x.name}:\n${sizes}`).join('')}`));
    await writeFile(join(stackDir, 'stack.yaml'), text.replace('../../policies/default', packDir));
    const loaded = await loadStack(stackDir, { cwd: dir });
    // Only the stack file is judged here (the fleet files are the tenant's).
    expect(loaded.diagnostics.filter((x) => x.severity === 'error' && x.file?.endsWith('stack.yaml'))).toEqual([]);
    expect(loaded.stack?.dataCenters.map((x) => [x.name, x.address, x.driver, x.azure])).toEqual([
      ['dallas', 'https://10.30.1.10:8443', 'azure', { tenantId: '11111111-1111-1111-1111-111111111111', clientId: DCS[0].broker.clientId, subscriptionId: MOCK_SUBSCRIPTION, resourceGroup: 'dallas-fleet-rg', clientSecretEnv: 'DMZFLEET_DALLAS_SECRET' }],
      ['amsterdam', 'https://10.31.1.20:8443', 'azure', { tenantId: '99999999-9999-9999-9999-999999999999', clientId: DCS[1].broker.clientId, subscriptionId: MOCK_SUBSCRIPTION, resourceGroup: 'amsterdam-fleet-rg' }],
    ]);
  });
});
