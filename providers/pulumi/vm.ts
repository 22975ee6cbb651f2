// A dmzfleet VM as a Pulumi resource: `new Vm(name, args)` in a Pulumi
// program. Its dynamic provider is the data center's DataCenterProvider
// (providers/provider.ts), so the same lifecycle paths are walked and the
// authority approves every step, as with `fleet apply`.
//
// The token of the DMZ client is an input of the resource, a Pulumi secret:
// Pulumi keeps it encrypted in the state, hands it to each call (create gets
// the inputs; read, update and delete get the outputs, so it is an output too,
// marked secret), and it never sits in the provider object Pulumi serializes.
// Without a token, the provider reads the data center's token variable
// (auth.tokenEnv) in the environment of `pulumi up`, as the CLI does.
import * as pulumi from '@pulumi/pulumi';
import { visible } from '../../engine/diags/index.ts';
import { memberName } from '../../engine/plan/index.ts';
import { specHash } from '../../engine/spec/index.ts';
import { DmzHttpClient } from '../client.ts';
import { DataCenterProvider, PULUMI_UNKNOWN, tokenProblem, type DataCenterProviderOptions, type DmzConnection, type VmInputs, type VmOutputs } from '../provider.ts';
import { programManager, providerOptions, refuseUrlCredentials, type FleetStack } from './stack.ts';

/** A provider call's inputs: the VM, and the token when the program gave one. */
export type VmResourceInputs = VmInputs & { token?: string };
export type VmResourceOutputs = VmOutputs & { token?: string };

/**
 * The data center's provider for one call, presenting `token`. Built per
 * call: Pulumi's host shares one deserialized provider object between all
 * resources of the same data center, so a token must never be kept on it.
 */
class TokenProvider extends DataCenterProvider {
  private readonly token: string;
  constructor(o: DataCenterProviderOptions, token: string) {
    super(o);
    this.token = token;
  }

  override connect(): DmzConnection {
    const token = this.token;
    return new DmzHttpClient({ dataCenter: this.dataCenter, baseUrl: this.url, timeoutMs: this.timeoutMs, retries: this.retries, token: () => token });
  }
}

/** The DataCenterProvider of `o`, presenting `token` when given, else reading o.tokenEnv at call time. */
export function providerFor(o: DataCenterProviderOptions, token: string | undefined): DataCenterProvider {
  return token ? new TokenProvider(o, token) : new DataCenterProvider(o);
}

/** Splits the token off, so it is never sent to the DMZ client as part of the VM. */
function split<T extends { token?: string }>(x: T): [string | undefined, Omit<T, 'token'>] {
  const { token, ...rest } = x;
  return [token, rest];
}

/**
 * The dynamic provider of `Vm`: DataCenterProvider's contract (and failure
 * rules), with the token taken from the call instead of the environment.
 * Holds only the data center's options (plain data).
 */
export class VmProvider implements pulumi.dynamic.ResourceProvider<VmResourceInputs, VmResourceOutputs> {
  readonly options: DataCenterProviderOptions;
  /** The logical images the pack's catalog translates for this data center (FleetStack.images); undefined: not checked. */
  readonly images: string[] | undefined;

  constructor(options: DataCenterProviderOptions, images?: readonly string[]) {
    this.options = { ...options };
    this.images = images ? [...images] : undefined;
  }

  async check(olds: VmResourceInputs, news: VmResourceInputs): Promise<pulumi.dynamic.CheckResult<VmResourceInputs>> {
    const [token, vm] = split(news);
    // Judged here, not by a provider presenting it: a token that cannot be sent would fail the check's caller later.
    const tokenBad = token !== undefined && token !== PULUMI_UNKNOWN ? tokenProblem(token) : undefined;
    const r = await providerFor(this.options, tokenBad ? undefined : token).check(split(olds ?? {})[1] as VmInputs, vm);
    const failures = [...(r.failures ?? [])];
    if (tokenBad) failures.push({ property: 'token', reason: `token ${tokenBad}` });
    // As a fleet file's image (spec.image-not-in-catalog): the authority would veto the create.
    const image = vm.image as unknown;
    if (this.images && typeof image === 'string' && image !== '' && image !== PULUMI_UNKNOWN && !this.images.includes(image) && !failures.some((f) => f.property === 'image')) {
      failures.push({ property: 'image', reason: `image ${visible(image)} is not in the pack's catalog for data center ${this.options.dataCenter} (${this.images.join(', ')})` });
    }
    return { inputs: { ...news, ...(r.inputs ?? {}) }, failures };
  }

  async diff(id: string, olds: VmResourceOutputs, news: VmResourceInputs): Promise<pulumi.dynamic.DiffResult> {
    const [oldToken, o] = split(olds);
    const [newToken, n] = split(news);
    const r = await providerFor(this.options, newToken).diff(id, o, n);
    // A rotated token changes the outputs (later calls must present it) but not the VM.
    return oldToken !== newToken ? { ...r, changes: true } : r;
  }

  async create(inputs: VmResourceInputs): Promise<pulumi.dynamic.CreateResult<VmResourceOutputs>> {
    const [token, vm] = split(inputs);
    try {
      const r = await providerFor(this.options, token).create(vm);
      return { id: r.id, outs: { ...(r.outs as VmOutputs), ...(token ? { token } : {}) } };
    } catch (err) {
      // A VM left by a failed create (a partial resource) keeps its token, which the later calls that reach it need.
      const partial = err as { properties?: VmOutputs };
      if (token && partial.properties) partial.properties = { ...partial.properties, token } as VmOutputs;
      throw err;
    }
  }

  async read(id: string, props?: VmResourceOutputs): Promise<pulumi.dynamic.ReadResult<VmResourceOutputs>> {
    const [token, o] = props ? split(props) : [undefined, undefined];
    const r = await providerFor(this.options, token).read(id, o);
    return r.props ? { ...r, props: { ...(r.props as VmOutputs), ...(token ? { token } : {}) } } : (r as pulumi.dynamic.ReadResult<VmResourceOutputs>);
  }

  async update(id: string, olds: VmResourceOutputs, news: VmResourceInputs): Promise<pulumi.dynamic.UpdateResult<VmResourceOutputs>> {
    const [token, n] = split(news);
    try {
      const r = await providerFor(this.options, token).update(id, split(olds)[1], n);
      return { outs: { ...(r.outs as VmOutputs), ...(token ? { token } : {}) } };
    } catch (err) {
      // The VM as a failed update left it (a partial resource) keeps its token, which the later calls that reach it need.
      const partial = err as { properties?: VmOutputs };
      if (token && partial.properties) partial.properties = { ...partial.properties, token } as VmOutputs;
      throw err;
    }
  }

  async delete(id: string, props: VmResourceOutputs): Promise<void> {
    const [token, o] = split(props);
    await providerFor(this.options, token).delete(id, o);
  }
}

export interface VmArgs {
  /** The stack the VM belongs to (loadFleetStack), and which of its data centers holds it. */
  stack: FleetStack;
  dataCenter: string;
  /** The DMZ client's token of that data center; pass it as a secret (pulumi.secret, config.requireSecret). */
  token?: pulumi.Input<string>;
  fleet: pulumi.Input<string>;
  owner: pulumi.Input<string>;
  index: number;
  image: pulumi.Input<string>;
  size: pulumi.Input<{ cpu: number; memoryGiB: number; diskGiB: number }>;
  hardware?: string[];
  encryptedDisk?: pulumi.Input<boolean>;
  /** One of the pack's requestable states; default Running. */
  desiredState?: pulumi.Input<string>;
  planId?: pulumi.Input<string>;
}

/**
 * One VM in one data center. Replacing inputs (stack, fleet, index, name,
 * image, encryptedDisk) make a new VM, the old one deleted first; size and
 * desired state change in place along the lifecycle.
 */
export class Vm extends pulumi.dynamic.Resource {
  declare readonly vmId: pulumi.Output<string>;
  declare readonly dataCenter: pulumi.Output<string>;
  declare readonly name: pulumi.Output<string>;
  declare readonly state: pulumi.Output<string>;
  declare readonly cloudId: pulumi.Output<string | null>;
  declare readonly realImage: pulumi.Output<string | null>;
  declare readonly version: pulumi.Output<number>;

  constructor(name: string, args: VmArgs, opts?: pulumi.CustomResourceOptions) {
    // Its provider goes into the Pulumi state in clear text: a DMZ client URL with credentials is refused.
    refuseUrlCredentials(args.stack, args.dataCenter);
    const images = Object.keys(args.stack.images).filter((i) => Object.hasOwn(args.stack.images[i], args.dataCenter));
    const provider = new VmProvider(providerOptions(args.stack, args.dataCenter), images);
    const encryptedDisk = args.encryptedDisk ?? false;
    const hash = pulumi
      .all([args.image, args.size, encryptedDisk])
      .apply(([image, size, enc]) => specHash({ image, size, hardware: args.hardware ?? [], encryptedDisk: enc }));
    const props = {
      stack: args.stack.name,
      fleet: args.fleet,
      owner: args.owner,
      index: args.index,
      name: pulumi.output(args.fleet).apply((f) => memberName(args.stack.name, f, args.index)),
      image: args.image,
      size: args.size,
      encryptedDisk,
      desiredState: args.desiredState ?? 'Running',
      specHash: hash,
      planId: args.planId ?? null,
      // The program, as its create names it to the record (fleets.managed_by): fleet plan leaves the fleet alone.
      managedBy: programManager(),
      ...(args.token !== undefined ? { token: pulumi.secret(args.token) } : {}),
      vmId: undefined,
      dataCenter: undefined,
      state: undefined,
      cloudId: undefined,
      realImage: undefined,
      version: undefined,
    };
    super(provider, name, props, { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), 'token'] }, 'dmzfleet', 'Vm');
  }
}
