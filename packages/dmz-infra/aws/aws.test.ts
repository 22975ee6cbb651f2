// The AWS components under Pulumi's mocks: every security property holds for
// what they declare, and each check catches its property broken (a table of
// broken variants of the declared resources).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as pulumi from '@pulumi/pulumi';
import { beforeAll, describe, expect, it } from 'vitest';
import { TAGS } from '../../../providers/drivers/aws/instances.ts';
import { loadDmzClientConfig } from '../../../providers/drivers/config.ts';
import { sessionPolicy } from '../../../engine/authority/credentials/aws.ts';
import { awsChecks, runChecks, type DeclaredResource } from '../checks/index.ts';
import { CONFIG_FILE, TAG_DATA_CENTER, TAG_STACK, VM_TAG_DATA_CENTER, VM_TAG_SIZE, VM_TAG_STACK } from '../common.ts';
import { broken, mockPulumi, HOST_SECRETS, registered, secretsFound, valueOf } from '../testing.ts';
import { DmzClientHost, DmzNetwork } from './index.ts';

const mocks = mockPulumi();
const expectations = {
  region: 'us-east-1',
  admitted: [
    { port: 8443, cidr: '192.168.0.0/16', why: 'tenant' },
    { port: 8443, cidr: '10.20.2.0/24', why: 'boot from the fleet subnet' },
    { port: 443, cidr: '10.20.1.0/24', why: 'VPC endpoints from the DMZ subnet' },
  ],
  tags: { [TAG_STACK]: 'prod', [TAG_DATA_CENTER]: 'virginia' },
  vmTags: { [VM_TAG_STACK]: 'prod', [VM_TAG_DATA_CENTER]: 'virginia' },
  authorityPrincipal: 'arn:aws:iam::123456789012:role/dmzfleet-authority',
};
let resources: DeclaredResource[];
let host: DmzClientHost;
let instanceOptions: pulumi.CustomResourceOptions | undefined;
let encryptionOptions: pulumi.CustomResourceOptions | undefined;

beforeAll(async () => {
  const network = new DmzNetwork('virginia', {
    stack: 'prod',
    dataCenter: 'virginia',
    region: 'us-east-1',
    availabilityZone: 'us-east-1a',
    vpcCidr: '10.20.0.0/16',
    dmzSubnetCidr: '10.20.1.0/24',
    fleetSubnetCidr: '10.20.2.0/24',
    tenantCidrs: ['192.168.0.0/16'],
    authorityPort: 7400,
  }, {
    transformations: [
      (a) => {
        if (a.type === 'aws:ebs/encryptionByDefault:EncryptionByDefault') encryptionOptions = a.opts;
        return undefined;
      },
    ],
  });
  host = new DmzClientHost('virginia', {
    network,
    facts: { location: { lat: 38.9, lon: -77.4 }, hardware: ['general'], capacity: { vms: 200 } },
    authorityUrl: 'https://authority.tenant.example:7400',
    ami: 'ami-0123456789abcdef0',
    secrets: { tlsCert: 'pem-cert-value', tlsKey: 'pem-key-value', clientToken: 'client-token-value', authorityToken: 'authority-token-value' },
    authorityPrincipalArn: 'arn:aws:iam::123456789012:role/dmzfleet-authority',
    externalId: 'dmzfleet-prod',
  }, {
    // The options the host gives its instance, as a transformation of the component (inherited by its children) sees them.
    transformations: [
      (a) => {
        if (a.type === 'aws:ec2/instance:Instance') instanceOptions = a.opts;
        return undefined;
      },
    ],
  });
  await registered(network, host);
  resources = [...mocks.resources]; // a snapshot: later tests declare more components
});

describe('AWS DMZ', () => {
  it('declares the network, the endpoints and the host', () => {
    const count = (t: string) => resources.filter((r) => r.type === t).length;
    expect(count('aws:ec2/vpc:Vpc')).toBe(1);
    expect(count('aws:ec2/subnet:Subnet')).toBe(2);
    expect(count('aws:ec2/securityGroup:SecurityGroup')).toBe(3);
    expect(count('aws:ec2/vpcEndpoint:VpcEndpoint')).toBe(4);
    expect(count('aws:ec2/instance:Instance')).toBe(1);
    expect(count('aws:iam/role:Role')).toBe(2);
  });

  it('conditions the broker role on the tag keys the aws driver writes on its VMs', () => {
    // The role's statements must name what the driver tags, or every launch and stop would be refused.
    expect([VM_TAG_STACK, VM_TAG_DATA_CENTER, VM_TAG_SIZE]).toEqual([TAGS.stack, TAGS.dataCenter, TAGS.size]);
    // And the authority's session policy (which narrows the role per stack) names the same stack tag.
    expect(sessionPolicy('prod', 'us-east-1')).toContain(`aws:RequestTag/${TAGS.stack}`);
    const broker = resources.find((r) => r.name === 'virginia-broker-policy')!;
    const launch = JSON.parse(broker.inputs.policy).Statement.find((x: { Sid: string }) => x.Sid === 'LaunchTagged');
    expect(launch.Condition.StringEquals).toMatchObject({ [`aws:RequestTag/${TAGS.stack}`]: 'prod', [`aws:RequestTag/${TAGS.dataCenter}`]: 'virginia' });
    const into = JSON.parse(broker.inputs.policy).Statement.find((x: { Sid: string }) => x.Sid === 'LaunchIntoFleet');
    expect(into.Resource.some((r: string) => /:subnet\/subnet-[0-9a-f]+$/.test(r))).toBe(true);
    const trust = JSON.parse(resources.find((r) => r.name === 'virginia-broker')!.inputs.assumeRolePolicy).Statement[0];
    expect(trust).toMatchObject({ Principal: { AWS: expectations.authorityPrincipal }, Condition: { StringEquals: { 'sts:ExternalId': 'dmzfleet-prod' } } });
  });

  it('holds every security property', () => {
    expect(runChecks(awsChecks(expectations), resources).filter((r) => r.violations.length > 0)).toEqual([]);
  });

  it('produces the data center entry of stack.yaml', async () => {
    expect(await valueOf(host.dataCenterEntry)).toEqual({
      name: 'virginia',
      address: 'https://10.20.1.10:8443',
      location: { lat: 38.9, lon: -77.4 },
      hardware: ['general'],
      capacity: { vms: 200 },
      auth: { tokenEnv: 'FLEET_CLI_TOKEN_VIRGINIA' },
      driver: 'aws',
      aws: { region: 'us-east-1', roleArn: 'arn:aws:iam::123456789012:role/virginia-broker', externalId: 'dmzfleet-prod' },
    });
  });

  it('gives the host a fixed address and writes the DMZ client config the aws driver loads', async () => {
    const vm = resources.find((r) => r.type === 'aws:ec2/instance:Instance')!;
    expect(vm.inputs.privateIp).toBe('10.20.1.10');
    expect(vm.inputs.userData).toContain(`'--config' '${CONFIG_FILE}'`);
    const text = /<<'DMZFLEET_CONFIG_END'\n([\s\S]*?)\nDMZFLEET_CONFIG_END\n/.exec(vm.inputs.userData)?.[1];
    expect(text).toBeDefined();
    const dir = mkdtempSync(join(tmpdir(), 'dmz-aws-'));
    try {
      writeFileSync(join(dir, 'dmz-client.yaml'), `${text}\n`);
      const loaded = await loadDmzClientConfig(join(dir, 'dmz-client.yaml'), 'aws', 'virginia');
      expect(loaded.diagnostics).toEqual([]);
      const fleetSubnet = resources.find((r) => r.name === 'virginia-fleet' && r.type === 'aws:ec2/subnet:Subnet')!;
      expect(loaded.config?.spec).toMatchObject({ bootUrl: 'https://10.20.1.10:8443/v1/boot', aws: { region: 'us-east-1', subnetId: expect.stringMatching(/^subnet-/), securityGroupIds: [expect.stringMatching(/^sg-/)] } });
      expect(fleetSubnet).toBeDefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // Found by QA: the instance holds a fixed private address and replaces on a new user data (userDataReplaceOnChange),
  // AMI or address; Pulumi replaces create-first, and EC2 refuses a second instance at an address in use
  // (InvalidIPAddress.InUse, pulumi/pulumi#8679): every such change of the DMZ failed until the address was changed.
  // Found by QA: EBS encryption by default is the account's setting in the region, and deleting the resource turns it
  // off (the provider's documented delete): destroying one DMZ left every later volume of the region unencrypted,
  // another DMZ's in the same region and its fleet's root disks included.
  it('leaves EBS encryption by default on when the network is destroyed', () => {
    expect(encryptionOptions).toMatchObject({ retainOnDelete: true });
  });

  it('replaces its fixed-address instance old one first', () => {
    expect(instanceOptions).toMatchObject({ deleteBeforeReplace: true });
  });

  // The whole state, not only the start-up script: every input of every resource (base64 custom data decoded) and the
  // component's outputs hold the TLS key, the certificate and the tokens only inside a value marked secret.
  it('keeps every secret out of every resource\'s inputs and its outputs, but inside the one value marked secret', async () => {
    expect(await secretsFound(resources, host)).toEqual(HOST_SECRETS.map((secret) => ({ secret, plain: [], inSecret: true, inOutputs: false })));
  });

  it('starts fleet serve dmz-client --driver aws and keeps secrets out of the user data', () => {
    const vm = resources.find((r) => r.type === 'aws:ec2/instance:Instance')!;
    expect(vm.inputs.userData).toContain("'fleet' 'serve' 'dmz-client' '--data-center' 'virginia' '--driver' 'aws'");
    for (const s of ['pem-cert-value', 'pem-key-value', 'client-token-value', 'authority-token-value']) expect(vm.inputs.userData).not.toContain(s);
  });

  // Found by QA: the DMZ client's egress to the tenant network was port 443 only, while the authority listens on
  // 7400 by default (`fleet serve orchestrator`, and every example's authorityUrl): a DMZ client that could never
  // reach its authority, so no request of any fleet was ever approved.
  it('lets the DMZ client reach the authority at its URL\'s port, in the tenant network only', () => {
    const sg = resources.find((r) => r.name === 'virginia-dmz-client')!;
    const toAuthority = (sg.inputs.egress as { fromPort: number; toPort: number; cidrBlocks: string[] }[]).filter((e) => e.fromPort <= 7400 && e.toPort >= 7400);
    expect(toAuthority.map((e) => e.cidrBlocks)).toEqual([['192.168.0.0/16']]);
  });

  it.each([
    ['an authorityUrl on another port than the network admits', 'https://authority.tenant.example:9000', 7400, /authorityUrl https:\/\/authority\.tenant\.example:9000 is reached on port 9000, but DmzNetwork auth-port admits the authority on port 7400/],
    ['an authorityUrl on 7400 with the default authorityPort', 'https://authority.tenant.example:7400', undefined, /port 7400, but DmzNetwork auth-port admits the authority on port 443; pass authorityPort: 7400/],
    ['an authorityUrl that is not a URL', 'authority.tenant.example:7400', 7400, /authorityUrl authority\.tenant\.example:7400 is not an https:\/\/ URL/],
  ])('refuses %s', (_what, authorityUrl, authorityPort, message) => {
    const network = new DmzNetwork('auth-port', { stack: 's', dataCenter: 'd', region: 'us-east-1', availabilityZone: 'us-east-1a', vpcCidr: '10.9.0.0/16', dmzSubnetCidr: '10.9.1.0/24', fleetSubnetCidr: '10.9.2.0/24', tenantCidrs: ['192.168.0.0/16'], ...(authorityPort ? { authorityPort } : {}) });
    const args = { network, facts: { location: { lat: 0, lon: 0 }, hardware: [], capacity: {} }, authorityUrl, ami: 'ami-0', authorityPrincipalArn: 'arn:aws:iam::123456789012:role/a', secrets: { tlsCert: 'c', tlsKey: 'k', clientToken: 't', authorityToken: 'u' } };
    expect(() => new DmzClientHost('auth-port', args)).toThrow(message);
  });

  // Found by QA: the broker role (which may launch, stop and terminate the fleet's VMs) trusted whatever
  // authorityPrincipalArn said: '*' made a role any AWS account may assume, an account's root any principal of
  // that account; the checks compare against the same value, so they passed.
  it.each([
    ['anyone', '*'],
    ['a whole account (its root)', 'arn:aws:iam::123456789012:root'],
    ['a bare account id', '123456789012'],
    ['a wildcard in the role name', 'arn:aws:iam::123456789012:role/*'],
    ['a service', 'ec2.amazonaws.com'],
  ])('refuses a broker role trusting %s (%s)', (_what, authorityPrincipalArn) => {
    const network = new DmzNetwork('trust', { stack: 's', dataCenter: 'd', region: 'us-east-1', availabilityZone: 'us-east-1a', vpcCidr: '10.9.0.0/16', dmzSubnetCidr: '10.9.1.0/24', fleetSubnetCidr: '10.9.2.0/24', tenantCidrs: ['192.168.0.0/16'] });
    const args = { network, facts: { location: { lat: 0, lon: 0 }, hardware: [], capacity: {} }, authorityUrl: 'https://a', ami: 'ami-0', authorityPrincipalArn, secrets: { tlsCert: 'c', tlsKey: 'k', clientToken: 't', authorityToken: 'u' } };
    expect(() => new DmzClientHost('trust', args)).toThrow(/DmzClientHost trust: authorityPrincipalArn .* is not the ARN of one IAM role or user/);
  });

  it('refuses a host address outside the DMZ subnet', () => {
    const network = new DmzNetwork('elsewhere', { stack: 's', dataCenter: 'd', region: 'us-east-1', availabilityZone: 'us-east-1a', vpcCidr: '10.9.0.0/16', dmzSubnetCidr: '10.9.1.0/24', fleetSubnetCidr: '10.9.2.0/24', tenantCidrs: ['192.168.0.0/16'] });
    const args = { network, facts: { location: { lat: 0, lon: 0 }, hardware: [], capacity: {} }, authorityUrl: 'https://a', ami: 'ami-0', authorityPrincipalArn: 'arn:aws:iam::123456789012:role/a', secrets: { tlsCert: 'c', tlsKey: 'k', clientToken: 't', authorityToken: 'u' } };
    expect(() => new DmzClientHost('elsewhere', { ...args, privateIp: '10.9.2.10' })).toThrow(/privateIp 10\.9\.2\.10 is not in the DMZ subnet 10\.9\.1\.0\/24/);
  });

  it.each([
    ['a fleet subnet outside the VPC', { fleetSubnetCidr: '10.30.2.0/24' }, /DmzNetwork nets: fleetSubnetCidr 10\.30\.2\.0\/24 is not inside vpcCidr 10\.9\.0\.0\/16/],
    ['subnets that overlap', { dmzSubnetCidr: '10.9.0.0/22' }, /dmzSubnetCidr 10\.9\.0\.0\/22 and fleetSubnetCidr 10\.9\.2\.0\/24 overlap/],
    ['an availability zone of another region', { availabilityZone: 'us-west-2a' }, /availabilityZone us-west-2a is not a zone of region us-east-1/],
  ])('refuses %s when declared', (_what, over, why) => {
    const base = { stack: 's', dataCenter: 'd', region: 'us-east-1', availabilityZone: 'us-east-1a', vpcCidr: '10.9.0.0/16', dmzSubnetCidr: '10.9.1.0/24', fleetSubnetCidr: '10.9.2.0/24', tenantCidrs: ['192.168.0.0/16'] };
    expect(() => new DmzNetwork('nets', { ...base, ...over })).toThrow(why);
  });

  it('refuses tenant CIDRs that open the DMZ to everyone', () => {
    expect(() => new DmzNetwork('open', { stack: 's', dataCenter: 'd', region: 'us-east-1', availabilityZone: 'us-east-1a', vpcCidr: '10.0.0.0/16', dmzSubnetCidr: '10.0.1.0/24', fleetSubnetCidr: '10.0.2.0/24', tenantCidrs: ['0.0.0.0/0'] })).toThrow(/admits a \/0/);
  });

  const SG = 'aws:ec2/securityGroup:SecurityGroup';
  const VARIANTS: { name: string; property: string; type: string; resource?: string; edit: (r: DeclaredResource) => void }[] = [
    { name: 'a 0.0.0.0/0 ingress on the DMZ client', property: 'ingress only from the admitted sources', type: SG, resource: 'virginia-dmz-client', edit: (r) => r.inputs.ingress.push({ protocol: 'tcp', fromPort: 8443, toPort: 8443, cidrBlocks: ['0.0.0.0/0'] }) },
    { name: 'an ::/0 ingress on the fleet', property: 'ingress only from the admitted sources', type: SG, resource: 'virginia-fleet', edit: (r) => r.inputs.ingress.push({ protocol: 'tcp', fromPort: 22, toPort: 22, ipv6CidrBlocks: ['::/0'] }) },
    { name: 'the boot port opened to the tenant', property: 'ingress only from the admitted sources', type: SG, resource: 'virginia-dmz-client', edit: (r) => r.inputs.ingress.push({ protocol: 'tcp', fromPort: 8444, toPort: 8444, cidrBlocks: ['192.168.0.0/16'] }) },
    { name: 'all ports from the tenant', property: 'ingress only from the admitted sources', type: SG, resource: 'virginia-dmz-client', edit: (r) => (r.inputs.ingress[0] = { ...r.inputs.ingress[0], protocol: '-1', fromPort: 0, toPort: 0 }) },
    { name: 'a public IP on the host', property: 'no public IP', type: 'aws:ec2/instance:Instance', edit: (r) => (r.inputs.associatePublicIpAddress = true) },
    { name: 'public IPs on launch in the fleet subnet', property: 'no public IP', type: 'aws:ec2/subnet:Subnet', resource: 'virginia-fleet', edit: (r) => (r.inputs.mapPublicIpOnLaunch = true) },
    { name: 'an unencrypted root disk', property: 'encrypted at rest', type: 'aws:ec2/instance:Instance', edit: (r) => (r.inputs.rootBlockDevice.encrypted = false) },
    { name: 'EBS encryption by default off', property: 'encrypted at rest', type: 'aws:ebs/encryptionByDefault:EncryptionByDefault', edit: (r) => (r.inputs.enabled = false) },
    { name: 'the secret without its KMS key', property: 'encrypted at rest', type: 'aws:secretsmanager/secret:Secret', edit: (r) => delete r.inputs.kmsKeyId },
    { name: 'IMDSv1 allowed', property: 'instance metadata v2 only', type: 'aws:ec2/instance:Instance', edit: (r) => (r.inputs.metadataOptions.httpTokens = 'optional') },
    { name: 'a statement without the region condition', property: 'role holds only in us-east-1, on the stack\'s resources', type: 'aws:iam/rolePolicy:RolePolicy', edit: (r) => (r.inputs.policy = editPolicy(r.inputs.policy, (s) => delete s[0].Condition)) },
    { name: 'ec2:* allowed', property: 'role holds only in us-east-1, on the stack\'s resources', type: 'aws:iam/rolePolicy:RolePolicy', edit: (r) => (r.inputs.policy = editPolicy(r.inputs.policy, (s) => (s[0].Action = 'ec2:*'))) },
    { name: 'terminate on untagged instances', property: 'role holds only in us-east-1, on the stack\'s resources', type: 'aws:iam/rolePolicy:RolePolicy', resource: 'virginia-broker-policy', edit: (r) => (r.inputs.policy = editPolicy(r.inputs.policy, (s) => (s.find((x) => x.Sid === 'ChangeOwn')!.Condition = { StringEquals: { 'aws:RequestedRegion': 'us-east-1' } }))) },
    { name: 'stop held to the DMZ\'s own tag keys instead of the VMs\'', property: 'role holds only in us-east-1, on the stack\'s resources', type: 'aws:iam/rolePolicy:RolePolicy', resource: 'virginia-broker-policy', edit: (r) => (r.inputs.policy = editPolicy(r.inputs.policy, (s) => (s.find((x) => x.Sid === 'ChangeOwn')!.Condition = { StringEquals: { 'aws:RequestedRegion': 'us-east-1', [`aws:ResourceTag/${TAG_STACK}`]: 'prod', [`aws:ResourceTag/${TAG_DATA_CENTER}`]: 'virginia' } }))) },
    { name: 'launches without the VM tags', property: 'role holds only in us-east-1, on the stack\'s resources', type: 'aws:iam/rolePolicy:RolePolicy', resource: 'virginia-broker-policy', edit: (r) => (r.inputs.policy = editPolicy(r.inputs.policy, (s) => (s.find((x) => x.Sid === 'LaunchTagged')!.Condition = { StringEquals: { 'aws:RequestedRegion': 'us-east-1' } }))) },
    { name: 'CreateTags on existing resources (relabel another instance as the stack\'s)', property: 'role holds only in us-east-1, on the stack\'s resources', type: 'aws:iam/rolePolicy:RolePolicy', resource: 'virginia-broker-policy', edit: (r) => (r.inputs.policy = editPolicy(r.inputs.policy, (s) => delete s.find((x) => x.Sid === 'TagAtLaunch')!.Condition.StringEquals['ec2:CreateAction'])) },
    { name: 'the host may terminate on its own', property: 'the DMZ client host\'s own identity only reads', type: 'aws:iam/rolePolicy:RolePolicy', resource: 'virginia-policy', edit: (r) => (r.inputs.policy = editPolicy(r.inputs.policy, (s) => s.push({ Effect: 'Allow', Action: ['ec2:TerminateInstances'], Resource: '*', Condition: { StringEquals: { 'aws:RequestedRegion': 'us-east-1', [`aws:ResourceTag/${VM_TAG_STACK}`]: 'prod', [`aws:ResourceTag/${VM_TAG_DATA_CENTER}`]: 'virginia' } } }))) },
    { name: 'the broker role trusting any AWS account', property: 'roles trust only EC2 (the host) and the authority', type: 'aws:iam/role:Role', resource: 'virginia-broker', edit: (r) => (r.inputs.assumeRolePolicy = JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { AWS: '*' }, Action: 'sts:AssumeRole' }] })) },
    { name: 'another region', property: 'role holds only in us-east-1, on the stack\'s resources', type: 'aws:iam/rolePolicy:RolePolicy', edit: (r) => (r.inputs.policy = editPolicy(r.inputs.policy, (s) => (s[0].Condition.StringEquals['aws:RequestedRegion'] = 'eu-west-1'))) },
    { name: 'a missing data-center tag', property: 'tagged with the stack and data center', type: 'aws:ec2/vpc:Vpc', edit: (r) => delete r.inputs.tags[TAG_DATA_CENTER] },
  ];

  it.each(VARIANTS)('catches $name ($property)', ({ property, type, resource, edit }) => {
    const reports = runChecks(awsChecks(expectations), broken(resources, type, edit, resource));
    expect(reports.find((r) => r.property === property)?.violations.length).toBeGreaterThan(0);
  });

  it('has a broken variant for every property', () => {
    expect(new Set(VARIANTS.map((v) => v.property))).toEqual(new Set(awsChecks(expectations).map((c) => c.property)));
  });
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function editPolicy(policy: string, edit: (statements: any[]) => void): string {
  const doc = JSON.parse(policy);
  edit(doc.Statement);
  return JSON.stringify(doc);
}
