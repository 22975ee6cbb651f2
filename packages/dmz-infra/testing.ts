// Test support: Pulumi's engine replaced by pulumi.runtime.setMocks, recording
// every resource a program declares (type, name, inputs) for the checks in
// ./checks, and answering with the outputs the clouds would compute (ids,
// ARNs, private IPs) so the components' outputs resolve.
import { createHash } from 'node:crypto';
import * as pulumi from '@pulumi/pulumi';
import type { DeclaredResource } from './checks/index.ts';

export const MOCK_SUBSCRIPTION = '00000000-0000-0000-0000-000000000000';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function computed(type: string, name: string, inputs: Record<string, any>, region: string): { id: string; state: Record<string, unknown> } {
  if (type.startsWith('aws:')) {
    const svc = type.split(':')[1].split('/')[0];
    // IAM is global: its ARNs name no region (arn:aws:iam::ACCOUNT:role/NAME).
    const arn = svc === 'iam' ? `arn:aws:iam::123456789012:${type.split(':')[2].toLowerCase()}/${name}` : `arn:aws:${svc}:${region}:123456789012:${name}`;
    const extra: Record<string, unknown> = { arn, name: inputs.name ?? name };
    if (type === 'aws:ec2/instance:Instance') extra.privateIp = inputs.privateIp ?? '10.20.1.10';
    // EC2's own id shapes where the DMZ client's config must carry them (its schema checks subnet-… and sg-…).
    const prefix = { 'aws:ec2/subnet:Subnet': 'subnet', 'aws:ec2/securityGroup:SecurityGroup': 'sg', 'aws:ec2/vpc:Vpc': 'vpc', 'aws:ec2/instance:Instance': 'i' }[type];
    const id = prefix ? `${prefix}-${createHash('sha256').update(name).digest('hex').slice(0, 17)}` : `${name}-id`;
    return { id, state: { ...inputs, ...extra } };
  }
  const rg = `/subscriptions/${MOCK_SUBSCRIPTION}/resourceGroups`;
  if (type === 'azure-native:resources:ResourceGroup') return { id: `${rg}/${name}`, state: { ...inputs, name } };
  const id = `${rg}/${inputs.resourceGroupName ?? 'rg'}/providers/${type.split(':').slice(1).join('/')}/${name}`;
  const extra: Record<string, unknown> = { name };
  if (type === 'azure-native:managedidentity:UserAssignedIdentity') Object.assign(extra, { principalId: `${name}-principal`, clientId: `${name}-client` });
  if (type === 'azure-native:network:NetworkInterface') extra.ipConfigurations = (inputs.ipConfigurations ?? []).map((c: object) => ({ ...c, privateIPAddress: '10.30.1.4' }));
  return { id, state: { ...inputs, ...extra } };
}

/** Installs the mocks; `resources` fills as the program declares resources. */
export function mockPulumi(config: Record<string, string> = {}): { resources: DeclaredResource[] } {
  const resources: DeclaredResource[] = [];
  /** Region of each AWS provider by its name: an ARN names the region of the provider that made it. */
  const regions = new Map<string, string>();
  pulumi.runtime.setAllConfig(config);
  void pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        resources.push({ type: args.type, name: args.name, inputs: args.inputs });
        if (args.type === 'pulumi:providers:aws') regions.set(args.name, String(args.inputs.region));
        const provider = /pulumi:providers:aws::([^:]+)::/.exec(String(args.provider ?? ''))?.[1];
        const c = computed(args.type, args.name, args.inputs, (provider && regions.get(provider)) || 'us-east-1');
        return { id: c.id, state: c.state };
      },
      call: (args) => args.inputs,
    },
    'dmz-test',
    'test',
    false,
  );
  return { resources };
}

/** An output's value, once the mocks have answered. */
export function valueOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

/** Waits until every resource reachable from the components' fields (and arrays of them) is registered. */
export async function registered(...roots: object[]): Promise<void> {
  const found: pulumi.Resource[] = [];
  const seen = new Set<object>();
  const visit = (v: unknown, depth: number) => {
    if (depth > 3 || v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (pulumi.Resource.isInstance(v)) found.push(v);
    if (Array.isArray(v)) for (const x of v) visit(x, depth + 1);
    else if (pulumi.Resource.isInstance(v) || depth === 0) for (const x of Object.values(v)) visit(x, depth + 1);
  };
  for (const r of roots) visit(r, 0);
  await valueOf(pulumi.all(found.map((r) => r.urn)));
}

/** A deep copy of the declared resources with `edit` applied to the first of `type` (named `name` when given). */
export function broken(resources: readonly DeclaredResource[], type: string, edit: (r: DeclaredResource) => void, name?: string): DeclaredResource[] {
  const copy = structuredClone(resources) as DeclaredResource[];
  const target = copy.find((r) => r.type === type && (name === undefined || r.name === name));
  if (!target) throw new Error(`bug: no ${type}${name ? ` named ${name}` : ''} among the declared resources`);
  edit(target);
  return copy;
}

/** Pulumi's marker of a secret value on the wire (sdk/nodejs/runtime/rpc.ts specialSigKey), as the mocks receive it. */
const SECRET_SIG = '4dabf18193072939515e22adb298388d';

/**
 * The texts of `v` a Pulumi state keeps in clear: every string outside a
 * value marked secret, and the base64 decoding of each (Azure's custom data
 * travels so). `secret` collects the texts inside values marked secret.
 */
export function plainTexts(v: unknown, secret: string[] = []): string[] {
  const out: string[] = [];
  const visit = (x: unknown, inSecret: boolean) => {
    if (typeof x === 'string') {
      const decoded = /^[A-Za-z0-9+/]+=*$/.test(x) && x.length % 4 === 0 ? Buffer.from(x, 'base64').toString('utf8') : undefined;
      (inSecret ? secret : out).push(x, ...(decoded ? [decoded] : []));
    } else if (Array.isArray(x)) x.forEach((y) => visit(y, inSecret));
    else if (x !== null && typeof x === 'object') {
      const o = x as Record<string, unknown>;
      const marked = inSecret || SECRET_SIG in o;
      for (const [k, y] of Object.entries(o)) if (k !== SECRET_SIG) visit(y, marked);
    }
  };
  visit(v, false);
  return out;
}

/** The secrets the components' tests give a DMZ host (TLS certificate and key, its tokens). */
export const HOST_SECRETS = ['pem-cert-value', 'pem-key-value', 'client-token-value', 'authority-token-value'];

/**
 * Where each of `secrets` stands in what a Pulumi state keeps of `resources`
 * (every input, base64 custom data decoded) and of the host's outputs: the
 * clear texts holding it (none expected), whether a value marked secret holds
 * it (expected), and whether the outputs do (not expected).
 */
export async function secretsFound(
  resources: readonly DeclaredResource[],
  host: object,
  secrets: readonly string[] = HOST_SECRETS,
): Promise<{ secret: string; plain: string[]; inSecret: boolean; inOutputs: boolean }[]> {
  const secret: string[] = [];
  const plain = resources.flatMap((r) => plainTexts(r.inputs, secret));
  const outputs = JSON.stringify(await valueOf(pulumi.all(Object.values(host).filter((v) => pulumi.Output.isInstance(v)) as pulumi.Output<unknown>[])));
  return secrets.map((s) => ({ secret: s, plain: plain.filter((t) => t.includes(s)), inSecret: secret.some((t) => t.includes(s)), inOutputs: outputs.includes(s) }));
}
