// The DMZ of an AWS data center (one region) as Pulumi components:
//
//   DmzNetwork     VPC with a DMZ subnet (the DMZ client) and a fleet subnet
//                  (the fleet's VMs), no internet gateway and no public IPs;
//                  interface endpoints so the DMZ client reaches EC2, STS and
//                  Secrets Manager privately; security groups that admit only
//                  the tenant's CIDRs to the DMZ client's API port and only the
//                  fleet subnet to its boot endpoint; EBS encryption by default.
//   DmzClientHost  the VM running `fleet serve dmz-client --driver aws`, with an
//                  instance profile whose policy holds only in this region (and
//                  only on resources tagged with this stack and data center),
//                  its TLS certificate and tokens in a KMS-encrypted secret only
//                  it may read, an encrypted root disk and IMDSv2 only.
//
// The host's outputs give the stack's data-center entry (URL, location,
// hardware, capacity), so stack.yaml can be written from a deployment.
// checks/aws.ts states each security property as a function over the declared
// resources; aws.test.ts runs them under Pulumi's mocks.
import * as pulumi from '@pulumi/pulumi';
import * as ebs from '@pulumi/aws/ebs/index.js';
import * as ec2 from '@pulumi/aws/ec2/index.js';
import * as iam from '@pulumi/aws/iam/index.js';
import * as kms from '@pulumi/aws/kms/index.js';
import * as secretsmanager from '@pulumi/aws/secretsmanager/index.js';
import { DEFAULT_API_PORT, TAG_DATA_CENTER, TAG_STACK, checkAdmittedCidrs, dataCenterEntry, dmzTags, hostScript, type DataCenterEntry, type DataCenterFacts } from '../common.ts';

export interface DmzNetworkArgs {
  /** The dmzfleet stack and the data center (its name in stack.yaml). */
  stack: string;
  dataCenter: string;
  /** AWS region of the data center (e.g. us-east-1): the interface endpoints' service names. */
  region: string;
  /** Availability zone of both subnets (e.g. us-east-1a). */
  availabilityZone: string;
  /** The VPC's CIDR, and the two subnets inside it. */
  vpcCidr: string;
  dmzSubnetCidr: string;
  fleetSubnetCidr: string;
  /** The tenant's networks (VPN, Direct Connect): the only sources admitted to the DMZ client's API. */
  tenantCidrs: string[];
  /** Default 8443. */
  apiPort?: number;
  /** Port of the boot endpoint (today the API's port: /v1/boot). */
  bootPort?: number;
  tags?: Record<string, string>;
}

export class DmzNetwork extends pulumi.ComponentResource {
  readonly vpc: ec2.Vpc;
  readonly dmzSubnet: ec2.Subnet;
  readonly fleetSubnet: ec2.Subnet;
  readonly dmzSecurityGroup: ec2.SecurityGroup;
  readonly fleetSecurityGroup: ec2.SecurityGroup;
  readonly endpointSecurityGroup: ec2.SecurityGroup;
  readonly endpoints: ec2.VpcEndpoint[];
  readonly encryptionByDefault: ebs.EncryptionByDefault;
  /** What DmzClientHost needs of the network. */
  readonly stack: string;
  readonly dataCenter: string;
  readonly region: string;
  readonly apiPort: number;
  readonly tags: Record<string, string>;

  constructor(name: string, args: DmzNetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super('dmzfleet:aws:DmzNetwork', name, {}, opts);
    checkAdmittedCidrs(`DmzNetwork ${name} tenantCidrs`, args.tenantCidrs);
    const apiPort = args.apiPort ?? DEFAULT_API_PORT;
    const bootPort = args.bootPort ?? apiPort;
    const tags = dmzTags(args.stack, args.dataCenter, args.tags);
    const child = { parent: this };
    this.stack = args.stack;
    this.dataCenter = args.dataCenter;
    this.region = args.region;
    this.apiPort = apiPort;
    this.tags = tags;

    this.vpc = new ec2.Vpc(`${name}-vpc`, { cidrBlock: args.vpcCidr, enableDnsSupport: true, enableDnsHostnames: true, tags: { ...tags, Name: `${name}-vpc` } }, child);
    const subnet = (role: string, cidr: string) =>
      new ec2.Subnet(
        `${name}-${role}`,
        { vpcId: this.vpc.id, cidrBlock: cidr, availabilityZone: args.availabilityZone, mapPublicIpOnLaunch: false, tags: { ...tags, Name: `${name}-${role}`, 'dmzfleet-role': role } },
        child,
      );
    this.dmzSubnet = subnet('dmz', args.dmzSubnetCidr);
    this.fleetSubnet = subnet('fleet', args.fleetSubnetCidr);

    const ingress = [
      { description: 'DMZ client API from the tenant', protocol: 'tcp', fromPort: apiPort, toPort: apiPort, cidrBlocks: [...args.tenantCidrs] },
      { description: 'boot endpoint from the fleet subnet', protocol: 'tcp', fromPort: bootPort, toPort: bootPort, cidrBlocks: [args.fleetSubnetCidr] },
    ];
    this.dmzSecurityGroup = new ec2.SecurityGroup(
      `${name}-dmz-client`,
      {
        vpcId: this.vpc.id,
        description: `DMZ client of ${args.dataCenter}: API from the tenant, boot endpoint from the fleet subnet`,
        ingress,
        egress: [
          { description: 'AWS APIs through the VPC endpoints', protocol: 'tcp', fromPort: 443, toPort: 443, cidrBlocks: [args.vpcCidr] },
          { description: 'the authority, in the tenant network', protocol: 'tcp', fromPort: 443, toPort: 443, cidrBlocks: [...args.tenantCidrs] },
        ],
        tags: { ...tags, Name: `${name}-dmz-client` },
      },
      child,
    );
    this.fleetSecurityGroup = new ec2.SecurityGroup(
      `${name}-fleet`,
      {
        vpcId: this.vpc.id,
        description: `Fleet VMs of ${args.dataCenter}: nothing in; out only to the boot endpoint`,
        ingress: [],
        egress: [{ description: 'boot endpoint of the DMZ client', protocol: 'tcp', fromPort: bootPort, toPort: bootPort, cidrBlocks: [args.dmzSubnetCidr] }],
        tags: { ...tags, Name: `${name}-fleet` },
      },
      child,
    );
    this.endpointSecurityGroup = new ec2.SecurityGroup(
      `${name}-endpoints`,
      {
        vpcId: this.vpc.id,
        description: 'VPC interface endpoints: HTTPS from the DMZ subnet only',
        ingress: [{ description: 'HTTPS from the DMZ subnet', protocol: 'tcp', fromPort: 443, toPort: 443, cidrBlocks: [args.dmzSubnetCidr] }],
        egress: [],
        tags: { ...tags, Name: `${name}-endpoints` },
      },
      child,
    );
    this.endpoints = ['ec2', 'sts', 'secretsmanager', 'kms'].map(
      (svc) =>
        new ec2.VpcEndpoint(
          `${name}-${svc}`,
          {
            vpcId: this.vpc.id,
            serviceName: `com.amazonaws.${args.region}.${svc}`,
            vpcEndpointType: 'Interface',
            privateDnsEnabled: true,
            subnetIds: [this.dmzSubnet.id],
            securityGroupIds: [this.endpointSecurityGroup.id],
            tags: { ...tags, Name: `${name}-${svc}` },
          },
          child,
        ),
    );
    // Every new EBS volume of the region is encrypted, whoever creates it (the fleet's VMs included).
    this.encryptionByDefault = new ebs.EncryptionByDefault(`${name}-ebs-encryption`, { enabled: true }, child);
    this.registerOutputs({ vpcId: this.vpc.id, dmzSubnetId: this.dmzSubnet.id, fleetSubnetId: this.fleetSubnet.id });
  }
}

export interface DmzClientHostArgs {
  network: DmzNetwork;
  /** Where the data center sits and what it offers: its stack.yaml entry. */
  facts: Omit<DataCenterFacts, 'name'>;
  /** URL of the authority (`fleet serve orchestrator`), reached through the tenant network. */
  authorityUrl: string;
  /** AMI of the host (a Linux with systemd, jq and the AWS CLI) and its instance type. */
  ami: pulumi.Input<string>;
  instanceType?: pulumi.Input<string>;
  /** The DMZ client's TLS certificate and key (PEM), its token for the CLI and its token at the authority: Pulumi secrets. */
  secrets: {
    tlsCert: pulumi.Input<string>;
    tlsKey: pulumi.Input<string>;
    clientToken: pulumi.Input<string>;
    authorityToken: pulumi.Input<string>;
  };
  /** Shell lines that install the `fleet` command on the host (e.g. from the team's artifact store). */
  install?: string[];
  /** Folder of the stack (stack.yaml and its pack) on the host. */
  stackDir?: string;
}

/** The DMZ client service on an EC2 instance in the network's DMZ subnet. */
export class DmzClientHost extends pulumi.ComponentResource {
  readonly key: kms.Key;
  readonly secret: secretsmanager.Secret;
  readonly secretVersion: secretsmanager.SecretVersion;
  readonly role: iam.Role;
  readonly policy: iam.RolePolicy;
  readonly profile: iam.InstanceProfile;
  readonly instance: ec2.Instance;
  /** https://<private IP>:<port> */
  readonly url: pulumi.Output<string>;
  /** The stack.yaml entry of this data center. */
  readonly dataCenterEntry: pulumi.Output<DataCenterEntry>;

  constructor(name: string, args: DmzClientHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super('dmzfleet:aws:DmzClientHost', name, {}, opts);
    const net = args.network;
    const tags = net.tags;
    const child = { parent: this };
    const region = net.region;
    const inRegion = { StringEquals: { 'aws:RequestedRegion': region } };

    this.key = new kms.Key(`${name}-key`, { description: `DMZ client of ${net.dataCenter}: disk and secrets`, enableKeyRotation: true, deletionWindowInDays: 30, tags }, child);
    this.secret = new secretsmanager.Secret(`${name}-secrets`, { description: `TLS certificate and tokens of the DMZ client of ${net.dataCenter}`, kmsKeyId: this.key.arn, tags }, child);
    this.secretVersion = new secretsmanager.SecretVersion(
      `${name}-secrets`,
      { secretId: this.secret.id, secretString: pulumi.secret(pulumi.jsonStringify(pulumi.output(args.secrets))) },
      { parent: this, additionalSecretOutputs: ['secretString'] },
    );
    this.role = new iam.Role(
      `${name}-role`,
      {
        description: `DMZ client of ${net.dataCenter}: EC2 in ${region} only`,
        assumeRolePolicy: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }] }),
        tags,
      },
      child,
    );
    // Every statement holds only in this region; the mutating EC2 calls only on
    // resources tagged with this stack and data center (and must tag what they create so).
    const ours = { [`aws:ResourceTag/${TAG_STACK}`]: net.stack, [`aws:ResourceTag/${TAG_DATA_CENTER}`]: net.dataCenter };
    const tagging = { [`aws:RequestTag/${TAG_STACK}`]: net.stack, [`aws:RequestTag/${TAG_DATA_CENTER}`]: net.dataCenter };
    this.policy = new iam.RolePolicy(
      `${name}-policy`,
      {
        role: this.role.id,
        policy: pulumi.jsonStringify({
          Version: '2012-10-17',
          Statement: [
            { Sid: 'Describe', Effect: 'Allow', Action: ['ec2:DescribeInstances', 'ec2:DescribeInstanceStatus', 'ec2:DescribeImages', 'ec2:DescribeVolumes'], Resource: '*', Condition: inRegion },
            { Sid: 'CreateTagged', Effect: 'Allow', Action: ['ec2:RunInstances', 'ec2:CreateVolume'], Resource: '*', Condition: { StringEquals: { 'aws:RequestedRegion': region, ...tagging } } },
            // Tags only as part of a create: CreateTags on an existing resource would relabel any instance of the
            // region with this stack's tags, and ChangeOwn would then let this role stop or terminate it.
            { Sid: 'TagAtCreate', Effect: 'Allow', Action: ['ec2:CreateTags'], Resource: '*', Condition: { StringEquals: { 'aws:RequestedRegion': region, 'ec2:CreateAction': ['RunInstances', 'CreateVolume'], ...tagging } } },
            { Sid: 'LaunchFromNetworkAndImages', Effect: 'Allow', Action: ['ec2:RunInstances'], Resource: [`arn:aws:ec2:${region}:*:subnet/*`, `arn:aws:ec2:${region}:*:security-group/*`, `arn:aws:ec2:${region}::image/*`, `arn:aws:ec2:${region}:*:network-interface/*`], Condition: inRegion },
            { Sid: 'ChangeOwn', Effect: 'Allow', Action: ['ec2:StartInstances', 'ec2:StopInstances', 'ec2:TerminateInstances', 'ec2:ModifyInstanceAttribute', 'ec2:AttachVolume', 'ec2:DeleteVolume'], Resource: '*', Condition: { StringEquals: { 'aws:RequestedRegion': region, ...ours } } },
            { Sid: 'OwnSecrets', Effect: 'Allow', Action: ['secretsmanager:GetSecretValue'], Resource: this.secret.arn, Condition: inRegion },
            { Sid: 'OwnKey', Effect: 'Allow', Action: ['kms:Decrypt', 'kms:GenerateDataKey*', 'kms:CreateGrant'], Resource: this.key.arn, Condition: inRegion },
          ],
        }),
      },
      child,
    );
    this.profile = new iam.InstanceProfile(`${name}-profile`, { role: this.role.name, tags }, child);
    const userData = this.secret.arn.apply((arn) =>
      hostScript({
        dataCenter: net.dataCenter,
        driver: 'aws',
        authorityUrl: args.authorityUrl,
        port: net.apiPort,
        stackDir: args.stackDir ?? '/opt/dmzfleet/stack',
        install: args.install ?? [],
        fetchSecrets: `aws secretsmanager get-secret-value --region ${region} --secret-id ${arn} --query SecretString --output text`,
      }),
    );
    this.instance = new ec2.Instance(
      `${name}-vm`,
      {
        ami: args.ami,
        instanceType: args.instanceType ?? 't3.small',
        subnetId: net.dmzSubnet.id,
        vpcSecurityGroupIds: [net.dmzSecurityGroup.id],
        associatePublicIpAddress: false,
        iamInstanceProfile: this.profile.name,
        metadataOptions: { httpEndpoint: 'enabled', httpTokens: 'required', httpPutResponseHopLimit: 1 },
        rootBlockDevice: { encrypted: true, kmsKeyId: this.key.arn, volumeType: 'gp3', volumeSize: 20, deleteOnTermination: true },
        userData,
        userDataReplaceOnChange: true,
        tags: { ...tags, Name: `${name}-dmz-client` },
      },
      { parent: this, dependsOn: [this.secretVersion, this.policy] },
    );
    this.url = pulumi.interpolate`https://${this.instance.privateIp}:${net.apiPort}`;
    this.dataCenterEntry = this.url.apply((url) => dataCenterEntry({ name: net.dataCenter, ...args.facts }, url));
    this.registerOutputs({ url: this.url, dataCenterEntry: this.dataCenterEntry });
  }
}
