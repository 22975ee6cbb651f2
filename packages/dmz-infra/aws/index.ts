// The DMZ of an AWS data center (one region) as Pulumi components:
//
//   DmzNetwork     VPC with a DMZ subnet (the DMZ client) and a fleet subnet
//                  (the fleet's VMs), no internet gateway and no public IPs;
//                  interface endpoints so the DMZ client reaches EC2, STS and
//                  Secrets Manager privately; security groups that admit only
//                  the tenant's CIDRs to the DMZ client's API port and only the
//                  fleet subnet to its boot endpoint; EBS encryption by default.
//   DmzClientHost  the VM running `fleet serve dmz-client --driver aws
//                  --config ...` at a fixed private address, with an instance
//                  profile that may only read (DescribeInstances in this
//                  region), its own secret and key; its TLS certificate and
//                  tokens in a KMS-encrypted secret only it may read, an
//                  encrypted root disk and IMDSv2 only. And the data center's
//                  broker role, which only the authority may assume: every
//                  mutating EC2 call of the DMZ client runs on the short-lived
//                  credentials the authority hands out with an approval
//                  (docs/drivers/aws.md), never on the host's own identity.
//
// The host's outputs give the stack's data-center entry (URL, location,
// hardware, capacity, driver and broker role), so stack.yaml can be written
// from a deployment.
// checks/aws.ts states each security property as a function over the declared
// resources; aws.test.ts runs them under Pulumi's mocks.
import * as pulumi from '@pulumi/pulumi';
import * as ebs from '@pulumi/aws/ebs/index.js';
import * as ec2 from '@pulumi/aws/ec2/index.js';
import * as iam from '@pulumi/aws/iam/index.js';
import * as kms from '@pulumi/aws/kms/index.js';
import * as secretsmanager from '@pulumi/aws/secretsmanager/index.js';
import {
  DEFAULT_API_PORT,
  VM_TAG_DATA_CENTER,
  VM_TAG_SIZE,
  VM_TAG_STACK,
  authorityPortOf,
  checkAdmittedCidrs,
  checkNetworkCidrs,
  bootPortOf,
  dataCenterEntry,
  dmzClientConfig,
  dmzTags,
  hostAddress,
  hostScript,
  inCidr,
  type DataCenterEntry,
  type DataCenterFacts,
} from '../common.ts';

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
  /** Port of the boot endpoint: the API's port (the DMZ client serves /v1/boot there); another is refused (bootPortOf). */
  bootPort?: number;
  /**
   * Port of the authority in the tenant network (its URL's port; `fleet serve
   * orchestrator` listens on 7400 unless told otherwise): the DMZ client's only
   * way out to the tenant's CIDRs. Default 443; DmzClientHost refuses an
   * authorityUrl on another port.
   */
  authorityPort?: number;
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
  /** What DmzClientHost needs of the network (networkName: the component's name, for its errors). */
  readonly networkName: string;
  readonly stack: string;
  readonly dataCenter: string;
  readonly region: string;
  readonly apiPort: number;
  readonly bootPort: number;
  /** The port the DMZ client may reach the tenant's CIDRs on (the authority's). */
  readonly authorityPort: number;
  readonly dmzSubnetCidr: string;
  readonly tags: Record<string, string>;

  constructor(name: string, args: DmzNetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super('dmzfleet:aws:DmzNetwork', name, {}, opts);
    checkAdmittedCidrs(`DmzNetwork ${name} tenantCidrs`, args.tenantCidrs);
    checkNetworkCidrs(`DmzNetwork ${name}`, { name: 'vpcCidr', cidr: args.vpcCidr }, [
      { name: 'dmzSubnetCidr', cidr: args.dmzSubnetCidr },
      { name: 'fleetSubnetCidr', cidr: args.fleetSubnetCidr },
    ]);
    // An availability zone is named after its region (us-east-1a, us-east-1-bos-1a): another region's would be refused at the subnets.
    if (!args.availabilityZone.startsWith(`${args.region}`) || args.availabilityZone === args.region) {
      throw new Error(`DmzNetwork ${name}: availabilityZone ${args.availabilityZone} is not a zone of region ${args.region} (such as ${args.region}a).`);
    }
    const apiPort = args.apiPort ?? DEFAULT_API_PORT;
    const bootPort = bootPortOf(`DmzNetwork ${name}`, apiPort, args.bootPort);
    const tags = dmzTags(args.stack, args.dataCenter, args.tags);
    const child = { parent: this };
    this.networkName = name;
    this.stack = args.stack;
    this.dataCenter = args.dataCenter;
    this.region = args.region;
    this.apiPort = apiPort;
    this.bootPort = bootPort;
    this.authorityPort = args.authorityPort ?? 443;
    this.dmzSubnetCidr = args.dmzSubnetCidr;
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
          { description: 'the authority, in the tenant network', protocol: 'tcp', fromPort: this.authorityPort, toPort: this.authorityPort, cidrBlocks: [...args.tenantCidrs] },
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
    // Every new EBS volume of the region is encrypted, whoever creates it (the fleet's VMs included). The setting is the
    // account's, per region: deleting the resource turns it off for everyone there (another DMZ of the region, other
    // teams), so a destroy leaves it on (retainOnDelete).
    this.encryptionByDefault = new ebs.EncryptionByDefault(`${name}-ebs-encryption`, { enabled: true }, { parent: this, retainOnDelete: true });
    this.registerOutputs({ vpcId: this.vpc.id, dmzSubnetId: this.dmzSubnet.id, fleetSubnetId: this.fleetSubnet.id });
  }
}

/** One IAM role or user (paths allowed): the only principal the broker role may trust. */
const PRINCIPAL_ARN = /^arn:aws(-[a-z]+)*:iam::\d{12}:(role|user)\/([\w+=,.@-]+\/)*[\w+=,.@-]+$/;

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
  /**
   * The authority's AWS principal (the ARN of its role or user): the only one
   * the data center's broker role trusts. The authority assumes that role for
   * every approval's credentials (stack.yaml `aws.roleArn`).
   */
  authorityPrincipalArn: string;
  /** External id the broker role's trust asks for (not a secret; goes into stack.yaml as `aws.externalId`). */
  externalId?: string;
  /** The host's private address; default the DMZ subnet's 10th (hostAddress): fixed, so its TLS certificate can name it ahead. */
  privateIp?: string;
  /** EC2 key pair given to the fleet's VMs (operators' SSH; optional). */
  vmKeyName?: string;
}

/** The DMZ client service on an EC2 instance in the network's DMZ subnet. */
export class DmzClientHost extends pulumi.ComponentResource {
  readonly key: kms.Key;
  readonly secret: secretsmanager.Secret;
  readonly secretVersion: secretsmanager.SecretVersion;
  /** The host's own identity: reads only. */
  readonly role: iam.Role;
  readonly policy: iam.RolePolicy;
  readonly profile: iam.InstanceProfile;
  /** The role the authority assumes to hand the DMZ client credentials for its mutating calls. */
  readonly brokerRole: iam.Role;
  readonly brokerPolicy: iam.RolePolicy;
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
    // The broker role may launch, stop and terminate the fleet: it trusts one role or user, never '*', an account or a service.
    if (!PRINCIPAL_ARN.test(args.authorityPrincipalArn)) {
      throw new Error(
        `DmzClientHost ${name}: authorityPrincipalArn ${args.authorityPrincipalArn} is not the ARN of one IAM role or user (arn:aws:iam::<account>:role/<name>): the broker role would trust more than the authority (anyone, a whole account, a service).`,
      );
    }
    // The network lets the DMZ client out to the tenant on one port: the authority must listen there, or no request is ever approved.
    const authorityPort = authorityPortOf(`DmzClientHost ${name}`, args.authorityUrl);
    if (authorityPort !== net.authorityPort) {
      throw new Error(
        `DmzClientHost ${name}: authorityUrl ${args.authorityUrl} is reached on port ${authorityPort}, but DmzNetwork ${net.networkName} admits the authority on port ${net.authorityPort}; pass authorityPort: ${authorityPort} to the network.`,
      );
    }

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
        description: `DMZ client host of ${net.dataCenter}: reads EC2 in ${region}, its own secret and key`,
        assumeRolePolicy: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }] }),
        tags,
      },
      child,
    );
    // The host's own identity reads only (the driver's get and list, docs/drivers/aws.md "DMZ client read-only
    // identity"): a DMZ client changes EC2 only with the credentials an approval carries.
    this.policy = new iam.RolePolicy(
      `${name}-policy`,
      {
        role: this.role.name,
        policy: pulumi.jsonStringify({
          Version: '2012-10-17',
          Statement: [
            { Sid: 'Read', Effect: 'Allow', Action: ['ec2:DescribeInstances'], Resource: '*', Condition: inRegion },
            { Sid: 'OwnSecrets', Effect: 'Allow', Action: ['secretsmanager:GetSecretValue'], Resource: this.secret.arn, Condition: inRegion },
            { Sid: 'OwnKey', Effect: 'Allow', Action: ['kms:Decrypt'], Resource: this.key.arn, Condition: inRegion },
          ],
        }),
      },
      child,
    );
    // The broker role: only the authority may assume it (its STS session policy narrows it again per stack,
    // engine/authority/credentials/aws.ts). Its statements name the tag keys the aws driver writes on every
    // VM (fleet:stack, fleet:data-center): it may start, stop, change or terminate only this data center's VMs of
    // this stack, launch only into the fleet subnet and security group, and tag only while launching (or
    // retag a VM's size).
    const own = { [`aws:ResourceTag/${VM_TAG_STACK}`]: net.stack, [`aws:ResourceTag/${VM_TAG_DATA_CENTER}`]: net.dataCenter };
    const tagging = { [`aws:RequestTag/${VM_TAG_STACK}`]: net.stack, [`aws:RequestTag/${VM_TAG_DATA_CENTER}`]: net.dataCenter };
    const arn = (type: string) => `arn:aws:ec2:${region}:*:${type}/*`;
    this.brokerRole = new iam.Role(
      `${name}-broker`,
      {
        description: `dmzfleet broker of ${net.dataCenter}: assumed by the authority only, for the DMZ client's approved EC2 calls in ${region}`,
        assumeRolePolicy: JSON.stringify({
          Version: '2012-10-17',
          Statement: [
            {
              Effect: 'Allow',
              Principal: { AWS: args.authorityPrincipalArn },
              Action: 'sts:AssumeRole',
              ...(args.externalId ? { Condition: { StringEquals: { 'sts:ExternalId': args.externalId } } } : {}),
            },
          ],
        }),
        maxSessionDuration: 3600,
        tags,
      },
      child,
    );
    this.brokerPolicy = new iam.RolePolicy(
      `${name}-broker-policy`,
      {
        role: this.brokerRole.name,
        policy: pulumi.jsonStringify({
          Version: '2012-10-17',
          Statement: [
            { Sid: 'ChangeOwn', Effect: 'Allow', Action: ['ec2:StartInstances', 'ec2:StopInstances', 'ec2:TerminateInstances', 'ec2:ModifyInstanceAttribute'], Resource: arn('instance'), Condition: { StringEquals: { 'aws:RequestedRegion': region, ...own } } },
            { Sid: 'RetagSizeOnly', Effect: 'Allow', Action: ['ec2:CreateTags'], Resource: arn('instance'), Condition: { StringEquals: { 'aws:RequestedRegion': region, ...own }, 'ForAllValues:StringEquals': { 'aws:TagKeys': [VM_TAG_SIZE] } } },
            { Sid: 'LaunchTagged', Effect: 'Allow', Action: ['ec2:RunInstances'], Resource: [arn('instance'), arn('volume')], Condition: { StringEquals: { 'aws:RequestedRegion': region, ...tagging } } },
            {
              Sid: 'LaunchIntoFleet',
              Effect: 'Allow',
              Action: ['ec2:RunInstances'],
              Resource: [
                `arn:aws:ec2:${region}::image/*`,
                pulumi.interpolate`arn:aws:ec2:${region}:*:subnet/${net.fleetSubnet.id}`,
                pulumi.interpolate`arn:aws:ec2:${region}:*:security-group/${net.fleetSecurityGroup.id}`,
                arn('network-interface'),
                arn('key-pair'),
              ],
              Condition: inRegion,
            },
            // Tags only while launching: CreateTags on an existing resource would relabel any instance as the stack's.
            { Sid: 'TagAtLaunch', Effect: 'Allow', Action: ['ec2:CreateTags'], Resource: [arn('instance'), arn('volume')], Condition: { StringEquals: { 'aws:RequestedRegion': region, 'ec2:CreateAction': 'RunInstances' } } },
            { Sid: 'Read', Effect: 'Allow', Action: ['ec2:DescribeInstances'], Resource: '*', Condition: inRegion },
          ],
        }),
      },
      child,
    );
    this.profile = new iam.InstanceProfile(`${name}-profile`, { role: this.role.name, tags }, child);
    const privateIp = args.privateIp ?? hostAddress(net.dmzSubnetCidr);
    if (!inCidr(privateIp, net.dmzSubnetCidr)) throw new Error(`DmzClientHost ${name}: privateIp ${privateIp} is not in the DMZ subnet ${net.dmzSubnetCidr}.`);
    // The driver's settings: VMs go into the fleet subnet with the fleet security group, and boot against this host.
    const config = pulumi.all([net.fleetSubnet.id, net.fleetSecurityGroup.id]).apply(([subnetId, sg]) =>
      dmzClientConfig(net.dataCenter, {
        bootUrl: `https://${privateIp}:${net.bootPort}/v1/boot`,
        aws: { region, subnetId, securityGroupIds: [sg], ...(args.vmKeyName ? { keyName: args.vmKeyName } : {}) },
      }),
    );
    const userData = pulumi.all([this.secret.arn, config]).apply(([secretArn, cfg]) =>
      hostScript({
        dataCenter: net.dataCenter,
        driver: 'aws',
        authorityUrl: args.authorityUrl,
        port: net.apiPort,
        stackDir: args.stackDir ?? '/opt/dmzfleet/stack',
        install: args.install ?? [],
        fetchSecrets: `aws secretsmanager get-secret-value --region ${region} --secret-id ${secretArn} --query SecretString --output text`,
        config: cfg,
      }),
    );
    this.instance = new ec2.Instance(
      `${name}-vm`,
      {
        ami: args.ami,
        instanceType: args.instanceType ?? 't3.small',
        subnetId: net.dmzSubnet.id,
        privateIp,
        vpcSecurityGroupIds: [net.dmzSecurityGroup.id],
        associatePublicIpAddress: false,
        iamInstanceProfile: this.profile.name,
        metadataOptions: { httpEndpoint: 'enabled', httpTokens: 'required', httpPutResponseHopLimit: 1 },
        rootBlockDevice: { encrypted: true, kmsKeyId: this.key.arn, volumeType: 'gp3', volumeSize: 20, deleteOnTermination: true },
        userData,
        userDataReplaceOnChange: true,
        tags: { ...tags, Name: `${name}-dmz-client` },
      },
      // A replacement (new user data, AMI or address) must let go of the fixed address first: EC2 refuses a second
      // instance at an address in use (InvalidIPAddress.InUse), and Pulumi replaces create-first unless told.
      { parent: this, dependsOn: [this.secretVersion, this.policy], deleteBeforeReplace: true },
    );
    this.url = pulumi.interpolate`https://${this.instance.privateIp}:${net.apiPort}`;
    this.dataCenterEntry = pulumi.all([this.url, this.brokerRole.arn]).apply(([url, roleArn]) =>
      dataCenterEntry({ name: net.dataCenter, ...args.facts }, url, {
        driver: 'aws',
        aws: { region, roleArn, ...(args.externalId ? { externalId: args.externalId } : {}) },
      }),
    );
    this.registerOutputs({ url: this.url, dataCenterEntry: this.dataCenterEntry, brokerRoleArn: this.brokerRole.arn });
  }
}
