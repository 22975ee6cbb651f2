// The dmz-azure program under Pulumi's mocks: every security property holds per
// data center, a broken variant of each is caught, a tenant CIDR of 0.0.0.0/0
// is refused at once, and the stack.yaml it writes loads as a dmzfleet stack.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { azureChecks, runChecks, type DeclaredResource } from '@dmzfleet/dmz-infra/checks';
import { TAG_DATA_CENTER, TAG_STACK } from '@dmzfleet/dmz-infra';
import { MOCK_SUBSCRIPTION, broken, mockPulumi, registered, valueOf } from '../../packages/dmz-infra/testing.ts';
import { loadStack } from '../../engine/spec/index.ts';
import { deploy, readConfig, type AzureDataCenterConfig } from './program.ts';

const DCS: AzureDataCenterConfig[] = [
  { name: 'dallas', region: 'southcentralus', addressSpace: '10.30.0.0/16', dmzSubnetPrefix: '10.30.1.0/24', fleetSubnetPrefix: '10.30.2.0/24', location: { lat: 32.8, lon: -96.8 }, hardware: ['general'], capacity: { vms: 100 } },
  { name: 'amsterdam', region: 'westeurope', addressSpace: '10.31.0.0/16', dmzSubnetPrefix: '10.31.1.0/24', fleetSubnetPrefix: '10.31.2.0/24', location: { lat: 52.4, lon: 4.9 }, hardware: ['general'], capacity: { vms: 50 } },
];
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
});
const of = (dc: AzureDataCenterConfig): DeclaredResource[] => mocks.resources.filter((r) => r.name.startsWith(`${dc.name}-`));

describe('stacks/dmz-azure', () => {
  it.each(DCS)('$name: every security property holds', (dc) => {
    expect(of(dc).length).toBeGreaterThan(10);
    expect(runChecks(azureChecks(expectationsFor(dc)), of(dc)).filter((r) => r.violations.length > 0)).toEqual([]);
  });

  it('scopes each host identity to its own data center\'s resource group', () => {
    for (const dc of DCS) {
      const scopes = of(dc).filter((r) => r.type === 'azure-native:authorization:RoleAssignment').map((r) => String(r.inputs.scope));
      for (const s of scopes) expect(s).toMatch(new RegExp(`/resourceGroups/(${dc.name}-rg)(/|$)`));
    }
  });

  const VARIANTS: { name: string; property: string; type: string; edit: (r: DeclaredResource) => void }[] = [
    { name: '0.0.0.0/0 added to the DMZ client', property: 'ingress only from the admitted sources', type: 'azure-native:network:NetworkSecurityGroup', edit: (r) => r.inputs.securityRules.push({ name: 'open', priority: 120, direction: 'Inbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefix: '0.0.0.0/0', destinationPortRange: '8443' }) },
    { name: 'a public IP', property: 'no public IP', type: 'azure-native:network:NetworkInterface', edit: (r) => (r.inputs.ipConfigurations[0].publicIPAddress = { id: 'pip' }) },
    { name: 'no encryption at host', property: 'encrypted at rest', type: 'azure-native:compute:VirtualMachine', edit: (r) => delete r.inputs.securityProfile },
    { name: 'a subscription-wide role', property: "identity holds only on the data center's resource group", type: 'azure-native:authorization:RoleAssignment', edit: (r) => (r.inputs.scope = `/subscriptions/${MOCK_SUBSCRIPTION}`) },
    { name: 'an untagged NSG', property: 'tagged with the stack and data center', type: 'azure-native:network:NetworkSecurityGroup', edit: (r) => (r.inputs.tags = {}) },
  ];
  it.each(VARIANTS)('dallas: catches $name', ({ property, type, edit }) => {
    const reports = runChecks(azureChecks(expectationsFor(DCS[0])), broken(of(DCS[0]), type, edit));
    expect(reports.find((r) => r.property === property)?.violations.length).toBeGreaterThan(0);
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
    await writeFile(join(stackDir, 'stack.yaml'), text.replace('../../policies/default', join(import.meta.dirname, '..', '..', 'policies', 'default')));
    const loaded = await loadStack(stackDir, { cwd: dir });
    // Only the stack file is judged here (the fleet files are the tenant's).
    expect(loaded.diagnostics.filter((x) => x.severity === 'error' && x.file?.endsWith('stack.yaml'))).toEqual([]);
    expect(loaded.stack?.dataCenters.map((x) => [x.name, x.address])).toEqual([
      ['dallas', 'https://10.30.1.4:8443'],
      ['amsterdam', 'https://10.30.1.4:8443'],
    ]);
  });
});
