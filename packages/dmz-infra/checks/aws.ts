// The AWS DMZ's security properties (see ./index.ts).
import { OPEN_SOURCES, missingTags, ofType, type Admitted, type Check, type DeclaredResource } from './types.ts';

export interface AwsExpectations {
  region: string;
  /** Every inbound flow allowed: port and source. */
  admitted: Admitted[];
  /** Tags every taggable resource carries. */
  tags: Record<string, string>;
  /** Tags the aws driver writes on every VM it creates (fleet:stack, fleet:data-center): what the mutating statements must be held to. */
  vmTags: Record<string, string>;
  /** The authority's principal ARN: the only AWS principal a role may trust. */
  authorityPrincipal: string;
}

const SG = 'aws:ec2/securityGroup:SecurityGroup';
const SG_RULE = 'aws:ec2/securityGroupRule:SecurityGroupRule';
const SG_INGRESS = 'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule';
const INSTANCE = 'aws:ec2/instance:Instance';
const SUBNET = 'aws:ec2/subnet:Subnet';
const TAGGED = [
  'aws:ec2/vpc:Vpc', SUBNET, SG, 'aws:ec2/vpcEndpoint:VpcEndpoint', INSTANCE,
  'aws:kms/key:Key', 'aws:secretsmanager/secret:Secret', 'aws:iam/role:Role', 'aws:iam/instanceProfile:InstanceProfile',
];
/** EC2 actions that change or remove a resource: only on the VMs tagged with the stack and the data center. */
const MUTATING = /^ec2:(Start|Stop|Terminate|Modify|Delete|Attach|Detach|Reboot)/;

interface Ingress {
  where: string;
  protocol: string;
  fromPort: number;
  toPort: number;
  sources: string[];
}

function ingressRules(rs: readonly DeclaredResource[]): Ingress[] {
  const out: Ingress[] = [];
  for (const r of ofType(rs, SG)) {
    for (const [i, g] of ((r.inputs.ingress ?? []) as Record<string, unknown>[]).entries()) {
      out.push({
        where: `security group ${r.name} ingress ${i}`,
        protocol: String(g.protocol),
        fromPort: Number(g.fromPort),
        toPort: Number(g.toPort),
        sources: [...((g.cidrBlocks as string[]) ?? []), ...((g.ipv6CidrBlocks as string[]) ?? []), ...((g.securityGroups as string[]) ?? []).map((s) => `sg:${s}`), ...((g.prefixListIds as string[]) ?? []).map((p) => `pl:${p}`)],
      });
    }
  }
  for (const r of ofType(rs, SG_RULE).filter((x) => x.inputs.type === 'ingress')) {
    out.push({ where: `security group rule ${r.name}`, protocol: String(r.inputs.protocol), fromPort: Number(r.inputs.fromPort), toPort: Number(r.inputs.toPort), sources: [...(r.inputs.cidrBlocks ?? []), ...(r.inputs.ipv6CidrBlocks ?? [])] });
  }
  for (const r of ofType(rs, SG_INGRESS)) {
    out.push({ where: `security group ingress rule ${r.name}`, protocol: String(r.inputs.ipProtocol), fromPort: Number(r.inputs.fromPort), toPort: Number(r.inputs.toPort), sources: [r.inputs.cidrIpv4, r.inputs.cidrIpv6].filter((x): x is string => typeof x === 'string') });
  }
  return out;
}

interface Statement {
  Sid?: string;
  Effect?: string;
  Action?: string | string[];
  Resource?: string | string[];
  Condition?: Record<string, Record<string, string | string[]>>;
}

function statements(rs: readonly DeclaredResource[]): { where: string; role: unknown; s: Statement }[] {
  const out: { where: string; role: unknown; s: Statement }[] = [];
  for (const r of [...ofType(rs, 'aws:iam/rolePolicy:RolePolicy'), ...ofType(rs, 'aws:iam/policy:Policy')]) {
    const doc = (typeof r.inputs.policy === 'string' ? JSON.parse(r.inputs.policy) : r.inputs.policy) as { Statement?: Statement[] };
    for (const [i, s] of (doc.Statement ?? []).entries()) out.push({ where: `policy ${r.name} statement ${s.Sid ?? i}`, role: r.inputs.role, s });
  }
  return out;
}

interface Trust {
  Effect?: string;
  Principal?: { Service?: string | string[]; AWS?: string | string[]; Federated?: string | string[] } | string;
}

/** The roles and who each trusts. */
function trusts(rs: readonly DeclaredResource[]): { role: DeclaredResource; s: Trust }[] {
  return ofType(rs, 'aws:iam/role:Role').flatMap((role) => {
    const doc = (typeof role.inputs.assumeRolePolicy === 'string' ? JSON.parse(role.inputs.assumeRolePolicy) : role.inputs.assumeRolePolicy) as { Statement?: Trust[] };
    return (doc?.Statement ?? []).filter((s) => s.Effect === 'Allow').map((s) => ({ role, s }));
  });
}

const list = (x: string | string[] | undefined) => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

export function awsChecks(e: AwsExpectations): Check[] {
  return [
    {
      property: 'ingress only from the admitted sources',
      run: (rs) => {
        const v: string[] = [];
        for (const g of ingressRules(rs)) {
          for (const src of g.sources) {
            if (OPEN_SOURCES.has(src)) v.push(`${g.where} admits ${src}: anyone`);
            else if (g.protocol !== 'tcp' || g.fromPort !== g.toPort || !e.admitted.some((a) => a.port === g.fromPort && a.cidr === src)) {
              v.push(`${g.where} admits ${g.protocol} ${g.fromPort}-${g.toPort} from ${src}, which is not one of the admitted flows`);
            }
          }
        }
        return v;
      },
    },
    {
      property: 'no public IP',
      run: (rs) => [
        ...ofType(rs, INSTANCE).filter((r) => r.inputs.associatePublicIpAddress !== false).map((r) => `instance ${r.name} does not set associatePublicIpAddress: false`),
        ...ofType(rs, SUBNET).filter((r) => r.inputs.mapPublicIpOnLaunch === true).map((r) => `subnet ${r.name} maps public IPs on launch`),
        ...ofType(rs, 'aws:ec2/eip:Eip').map((r) => `elastic IP ${r.name} gives a public address`),
        ...ofType(rs, 'aws:ec2/internetGateway:InternetGateway').map((r) => `internet gateway ${r.name} opens the VPC to the internet`),
      ],
    },
    {
      property: 'encrypted at rest',
      run: (rs) => [
        ...ofType(rs, INSTANCE).filter((r) => r.inputs.rootBlockDevice?.encrypted !== true).map((r) => `instance ${r.name} has an unencrypted root disk`),
        ...ofType(rs, INSTANCE).flatMap((r) => ((r.inputs.ebsBlockDevices ?? []) as { encrypted?: boolean; deviceName?: string }[]).filter((d) => d.encrypted !== true).map((d) => `instance ${r.name} volume ${d.deviceName} is unencrypted`)),
        ...ofType(rs, 'aws:ebs/volume:Volume').filter((r) => r.inputs.encrypted !== true).map((r) => `volume ${r.name} is unencrypted`),
        ...ofType(rs, 'aws:secretsmanager/secret:Secret').filter((r) => !r.inputs.kmsKeyId).map((r) => `secret ${r.name} has no customer-managed KMS key`),
        ...(ofType(rs, 'aws:ebs/encryptionByDefault:EncryptionByDefault').some((r) => r.inputs.enabled === true) ? [] : ['EBS encryption by default is not enabled: fleet volumes could be created unencrypted']),
      ],
    },
    {
      property: 'instance metadata v2 only',
      run: (rs) => ofType(rs, INSTANCE).filter((r) => r.inputs.metadataOptions?.httpTokens !== 'required').map((r) => `instance ${r.name} allows IMDSv1 (its role's credentials are one unauthenticated request away)`),
    },
    {
      property: `role holds only in ${e.region}, on the stack's resources`,
      run: (rs) => {
        const v: string[] = [];
        for (const { where, s } of statements(rs)) {
          if (s.Effect !== 'Allow') continue;
          const actions = list(s.Action);
          for (const a of actions) if (a === '*' || a.endsWith(':*')) v.push(`${where} allows ${a}`);
          if (s.Condition?.StringEquals?.['aws:RequestedRegion'] !== e.region) v.push(`${where} is not limited to region ${e.region}`);
          for (const res of list(s.Resource)) if (res.startsWith('arn:') && !res.includes(`:${e.region}:`) && !res.startsWith('arn:aws:iam')) v.push(`${where} names ${res}, outside ${e.region}`);
          // CreateTags on existing resources relabels any instance as the stack's, and so hands it to the mutating statements.
          if (actions.includes('ec2:CreateTags')) {
            const createAction = list(s.Condition?.StringEquals?.['ec2:CreateAction']);
            const onOwn = Object.entries(e.vmTags).every(([k, val]) => s.Condition?.StringEquals?.[`aws:ResourceTag/${k}`] === val);
            if (createAction.length === 0 && !onOwn) v.push(`${where} allows ec2:CreateTags on resources not tagged as the stack's and not being created (it could relabel any instance as the stack's)`);
          }
          if (actions.some((a) => MUTATING.test(a))) {
            for (const [k, val] of Object.entries(e.vmTags)) {
              if (s.Condition?.StringEquals?.[`aws:ResourceTag/${k}`] !== val) v.push(`${where} may change VMs not tagged ${k}=${val} (the tag the aws driver writes)`);
            }
          }
          if (actions.includes('ec2:RunInstances') && list(s.Resource).some((r) => r === '*' || /:(instance|volume)\/\*$/.test(r))) {
            for (const [k, val] of Object.entries(e.vmTags)) {
              if (s.Condition?.StringEquals?.[`aws:RequestTag/${k}`] !== val) v.push(`${where} may launch VMs not tagged ${k}=${val} (the tag the aws driver writes)`);
            }
          }
        }
        for (const r of ofType(rs, 'aws:iam/rolePolicyAttachment:RolePolicyAttachment')) v.push(`policy attachment ${r.name} attaches ${r.inputs.policyArn}, whose scope is not this region`);
        return v;
      },
    },
    {
      property: "the DMZ client host's own identity only reads",
      run: (rs) => {
        // A role EC2 instances assume is a host's: the DMZ client changes EC2 only with the credentials an approval carries.
        const hostRoles = new Set(
          trusts(rs)
            .filter(({ s }) => typeof s.Principal === 'object' && list(s.Principal.Service).includes('ec2.amazonaws.com'))
            .map(({ role }) => role.name),
        );
        return statements(rs)
          .filter(({ role, s }) => s.Effect === 'Allow' && typeof role === 'string' && hostRoles.has(role))
          .flatMap(({ where, s }) => list(s.Action).filter((a) => !/^ec2:Describe[A-Za-z]+$/.test(a) && a !== 'secretsmanager:GetSecretValue' && a !== 'kms:Decrypt').map((a) => `${where} gives the host ${a}: only reads, its secret and its key`));
      },
    },
    {
      property: 'roles trust only EC2 (the host) and the authority',
      run: (rs) =>
        trusts(rs).flatMap(({ role, s }) => {
          if (typeof s.Principal !== 'object') return [`role ${role.name} trusts ${String(s.Principal)}: anyone`];
          const v: string[] = [];
          for (const svc of list(s.Principal.Service)) if (svc !== 'ec2.amazonaws.com') v.push(`role ${role.name} trusts the service ${svc}`);
          for (const p of list(s.Principal.AWS)) if (p !== e.authorityPrincipal) v.push(`role ${role.name} trusts ${p}, not the authority (${e.authorityPrincipal})`);
          if (s.Principal.Federated !== undefined) v.push(`role ${role.name} trusts federated principals`);
          return v;
        }),
    },
    {
      property: 'tagged with the stack and data center',
      run: (rs) =>
        rs
          .filter((r) => TAGGED.includes(r.type))
          .flatMap((r) => {
            const m = missingTags(r, e.tags);
            return m.length ? [`${r.type.split(':').pop()} ${r.name} lacks tags ${m.join(', ')}`] : [];
          }),
    },
  ];
}
