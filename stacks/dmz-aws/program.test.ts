// The dmz-aws program under Pulumi's mocks (the pulumi CLI is not needed): with
// two data centers in two regions, every security property holds per data
// center, a broken variant of each is caught, a tenant CIDR of 0.0.0.0/0 is
// refused at once, and the stack.yaml it writes loads as a dmzfleet stack.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awsChecks, runChecks, type DeclaredResource } from '@dmzfleet/dmz-infra/checks';
import { TAG_DATA_CENTER, TAG_STACK, VM_TAG_DATA_CENTER, VM_TAG_STACK } from '@dmzfleet/dmz-infra';
import { broken, mockPulumi, registered, valueOf } from '../../packages/dmz-infra/testing.ts';
import { loadStack } from '../../engine/spec/index.ts';
import { deploy, readConfig, type AwsDataCenterConfig } from './program.ts';

const DCS: AwsDataCenterConfig[] = [
  { name: 'virginia', region: 'us-east-1', availabilityZone: 'us-east-1a', vpcCidr: '10.20.0.0/16', dmzSubnetCidr: '10.20.1.0/24', fleetSubnetCidr: '10.20.2.0/24', ami: 'ami-0aaa', location: { lat: 38.9, lon: -77.4 }, hardware: ['general'], capacity: { vms: 200 } },
  { name: 'oregon', region: 'us-west-2', availabilityZone: 'us-west-2a', vpcCidr: '10.21.0.0/16', dmzSubnetCidr: '10.21.1.0/24', fleetSubnetCidr: '10.21.2.0/24', ami: 'ami-0bbb', location: { lat: 45.8, lon: -119.7 }, hardware: ['general', 'gpu'], capacity: { vms: 100, cpu: 800 } },
];
const TENANT = ['192.168.0.0/16', '172.16.10.0/24'];
const AUTHORITY = 'arn:aws:iam::123456789012:role/dmzfleet-authority';
const SECRETS = Object.fromEntries(DCS.map((d) => [d.name, { tlsCert: `cert-${d.name}`, tlsKey: `key-${d.name}`, clientToken: `client-${d.name}`, authorityToken: `authority-${d.name}` }]));
const config = (over: Record<string, unknown> = {}) =>
  Object.fromEntries(
    Object.entries({
      stack: { name: 'prod', specs: ['specs/*.yaml'], record: 'postgres://fleet@db.tenant.example:5432/fleet', policyPack: '../../policies/default', site: { name: 'charlotte', location: { lat: 35.2271, lon: -80.8431 } } },
      tenantCidrs: TENANT,
      authorityUrl: 'https://authority.tenant.example:7400',
      authorityPrincipalArn: AUTHORITY,
      dataCenters: DCS,
      secrets: SECRETS,
      ...over,
    }).map(([k, v]) => [`dmz-aws:${k}`, typeof v === 'string' ? v : JSON.stringify(v)]),
  );

const mocks = mockPulumi(config());
let d: ReturnType<typeof deploy>;
let dir: string;

beforeAll(async () => {
  d = deploy(readConfig());
  await registered(...d.deployed.flatMap((x) => [x.network, x.host]));
  dir = await mkdtemp(join(tmpdir(), 'dmz-aws-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const expectationsFor = (dc: AwsDataCenterConfig) => ({
  region: dc.region,
  admitted: [
    ...TENANT.map((cidr) => ({ port: 8443, cidr, why: 'tenant' })),
    { port: 8443, cidr: dc.fleetSubnetCidr, why: 'boot' },
    { port: 443, cidr: dc.dmzSubnetCidr, why: 'VPC endpoints' },
  ],
  tags: { [TAG_STACK]: 'prod', [TAG_DATA_CENTER]: dc.name },
  vmTags: { [VM_TAG_STACK]: 'prod', [VM_TAG_DATA_CENTER]: dc.name },
  authorityPrincipal: AUTHORITY,
});
const of = (dc: AwsDataCenterConfig): DeclaredResource[] => mocks.resources.filter((r) => r.name.startsWith(`${dc.name}-`));

describe('stacks/dmz-aws', () => {
  it.each(DCS)('$name: every security property holds, in region $region', (dc) => {
    expect(of(dc).length).toBeGreaterThan(10);
    expect(runChecks(awsChecks(expectationsFor(dc)), of(dc)).filter((r) => r.violations.length > 0)).toEqual([]);
  });

  it.each(DCS)('$name: the DMZ client may reach the authority on its URL\'s port (7400), in the tenant network only', (dc) => {
    const sg = of(dc).find((r) => r.name === `${dc.name}-dmz-client` && r.type === 'aws:ec2/securityGroup:SecurityGroup')!;
    const out = (sg.inputs.egress as { fromPort: number; toPort: number; cidrBlocks: string[] }[]).filter((e) => e.fromPort <= 7400 && e.toPort >= 7400);
    expect(out.map((e) => e.cidrBlocks)).toEqual([TENANT]);
  });

  it('puts each data center in its own region', () => {
    const providers = mocks.resources.filter((r) => r.type === 'pulumi:providers:aws');
    expect(providers.map((p) => [p.name, p.inputs.region])).toEqual([['aws-virginia', 'us-east-1'], ['aws-oregon', 'us-west-2']]);
  });

  const VARIANTS: { name: string; property: string; type: string; edit: (r: DeclaredResource) => void }[] = [
    { name: '0.0.0.0/0 added to the DMZ client', property: 'ingress only from the admitted sources', type: 'aws:ec2/securityGroup:SecurityGroup', edit: (r) => r.inputs.ingress.push({ protocol: 'tcp', fromPort: 8443, toPort: 8443, cidrBlocks: ['0.0.0.0/0'] }) },
    { name: 'a public IP', property: 'no public IP', type: 'aws:ec2/instance:Instance', edit: (r) => (r.inputs.associatePublicIpAddress = true) },
    { name: 'an unencrypted disk', property: 'encrypted at rest', type: 'aws:ec2/instance:Instance', edit: (r) => (r.inputs.rootBlockDevice.encrypted = false) },
    { name: 'IMDSv1', property: 'instance metadata v2 only', type: 'aws:ec2/instance:Instance', edit: (r) => (r.inputs.metadataOptions.httpTokens = 'optional') },
    { name: 'the other region in the role', property: 'role holds only in us-east-1, on the stack\'s resources', type: 'aws:iam/rolePolicy:RolePolicy', edit: (r) => (r.inputs.policy = r.inputs.policy.replaceAll('us-east-1', 'us-west-2')) },
    { name: 'untagged security group', property: 'tagged with the stack and data center', type: 'aws:ec2/securityGroup:SecurityGroup', edit: (r) => (r.inputs.tags = {}) },
  ];
  it.each(VARIANTS)('virginia: catches $name', ({ property, type, edit }) => {
    const reports = runChecks(awsChecks(expectationsFor(DCS[0])), broken(of(DCS[0]), type, edit));
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
    await mkdir(stackDir, { recursive: true });
    await mkdir(join(stackDir, 'specs'));
    await writeFile(join(stackDir, 'specs', 'none.yaml'), '# fleets come later\n');
    // Only the stack file is judged here (the fleet files are the tenant's).
    await writeFile(join(stackDir, 'stack.yaml'), text.replace('../../policies/default', join(import.meta.dirname, '..', '..', 'policies', 'default')));
    const loaded = await loadStack(stackDir, { cwd: dir });
    // The pack is the tenant's: a cloud data center needs its instance types there (spec.no-instance-types), nothing else is missing.
    expect(loaded.diagnostics.filter((x) => x.severity === 'error' && x.file?.endsWith('stack.yaml') && x.code !== 'spec.no-instance-types')).toEqual([]);
    expect(loaded.stack?.dataCenters.map((x) => [x.name, x.address, x.auth?.tokenEnv, x.driver, x.aws])).toEqual([
      ['virginia', 'https://10.20.1.10:8443', 'FLEET_CLI_TOKEN_VIRGINIA', 'aws', { region: 'us-east-1', roleArn: expect.stringMatching(/virginia-broker$/) }],
      ['oregon', 'https://10.21.1.10:8443', 'FLEET_CLI_TOKEN_OREGON', 'aws', { region: 'us-west-2', roleArn: expect.stringMatching(/oregon-broker$/) }],
    ]);
  });
});
