// A dmzfleet fleet as one Pulumi resource: `new Fleet(name, args)`. Its
// provider expands the fleet the way `fleet plan` does (engine/plan's
// computePlan: member indexes and names, placement over the stack's data
// centers, which members to create, change, replace or delete, along which
// lifecycle paths), with the fleet's members kept in the resource's outputs
// standing in for the record's rows of this fleet. Each member's change then
// goes through its data center's provider (providers/provider.ts), so the
// authority approves every step, as with `fleet apply`.
//
// Pulumi serializes this provider into its state, so it holds the stack as
// plain data (FleetStack) and nothing else; the tokens are inputs (Pulumi
// secrets, per data center) and outputs (so read, update and delete have them),
// never part of the provider.
//
// Failure rules (pulumi sdk/nodejs/dynamic/index.ts):
// - create: members created before a failure are deleted again, then the
//   error is thrown: nothing remains. Members that cannot be deleted again
//   are answered in the error as a partial resource (`id`, `properties`),
//   so Pulumi's state keeps them rather than losing VMs that still run.
// - update: members keep whatever they reached; the error carries the
//   fleet's outputs as they are now (`id`, `properties`, `reasons`: Pulumi's
//   "created but failed to initialize" form), so the state matches the data
//   centers and the next `pulumi up` goes on from there.
// - delete: a member that could not be deleted still exists; the error names it.
import * as pulumi from '@pulumi/pulumi';
import { FleetError, REASON_LIMIT, clip, diag, unseenRefusal, visible, type Diagnostic } from '../../engine/diags/index.ts';
import { computePlan, noRulesPolicy, type Change } from '../../engine/plan/index.ts';
import { buildLifecycle } from '../../engine/policy/lifecycle.ts';
import type { LoadedPack } from '../../engine/policy/types.ts';
import type { PlanVmRow } from '../../engine/record/types.ts';
import { specHash, type LoadedFleet, type LoadedStack, type Location } from '../../engine/spec/index.ts';
import { PULUMI_UNKNOWN, SPEC_LIMITS, fleetNameProblem, ownerChange, tokenProblem, type DataCenterProvider, type VmInputs, type VmOutputs } from '../provider.ts';
import { programManager, providerOptions, refuseUrlCredentials, type FleetStack } from './stack.ts';
import { providerFor } from './vm.ts';

/** A fleet spec (DESIGN.md, "Fleet") as the resource's inputs: the same keys and defaults as a fleet file's `metadata` and `spec`. */
export interface FleetSpecInputs {
  name: string;
  owner: string;
  labels?: Record<string, string>;
  count: number;
  minCount?: number;
  image: string;
  size: { cpu: number; memoryGiB: number; diskGiB: number };
  hardware?: string[];
  placement?: { dataCenters?: string[]; strategy?: 'nearest' | 'spread' | 'pack'; near?: string | Location };
  /** One of the pack's requestable states; default Running. */
  state?: string;
  encryptedDisk?: boolean;
  protect?: boolean;
}

export interface FleetInputs {
  spec: FleetSpecInputs;
  /**
   * engine/spec's specHash of the spec (image, size, hardware, encryptedDisk),
   * computed by the Fleet resource in the program: the hash needs node:crypto,
   * which a serialized provider cannot capture.
   */
  specHash: string;
  /** Token of each data center's DMZ client; a data center missing here is reached with the token in its tokenEnv variable. */
  tokens?: Record<string, string>;
  planId?: string | null;
  /**
   * The program, as its creates name it to the record (fleets.managed_by:
   * programManager(), computed by the Fleet resource in the program);
   * default `pulumi`. The authority refuses a create into a fleet with live
   * VMs of another manager (`manager-mismatch`): a Fleet never takes over a
   * fleet that fleet files (`fleet apply`) or another program made.
   */
  managedBy?: string;
}

/** One member as its data center's provider left it. */
export type FleetMember = VmOutputs & { address: string };

export interface FleetOutputs extends FleetInputs {
  stack: string;
  members: FleetMember[];
}

const STRATEGIES = ['nearest', 'spread', 'pack'] as const;
/** The keys of FleetSpecInputs (a fleet file's metadata and spec, as the resource takes them). */
const SPEC_KEYS = ['name', 'owner', 'labels', 'count', 'minCount', 'image', 'size', 'hardware', 'placement', 'state', 'encryptedDisk', 'protect'] as const;
/** What Pulumi's dynamic-provider host passes for a value not known yet (a preview of an input computed from another resource). */
const UNKNOWN = PULUMI_UNKNOWN;
const known = (...vs: unknown[]) => vs.every((v) => v !== UNKNOWN);
/** A fleet file's limits (fleet.schema.json): count, lengths in characters (code points, as ajv counts them), how many labels. */
const MAX_COUNT = SPEC_LIMITS.count;
const MAX_OWNER = SPEC_LIMITS.owner;
const MAX_LABEL_KEY = SPEC_LIMITS.labelKey;
const MAX_LABEL_VALUE = SPEC_LIMITS.labelValue;
const MAX_LABELS = SPEC_LIMITS.labels;
const length = (s: string) => [...s].length;

/** The LoadedFleet the planner reads, with the spec loader's defaults (engine/spec/fleet.ts toLoadedFleet). */
function loadedFleet(s: FleetSpecInputs, hash: string): LoadedFleet {
  const size = { cpu: s.size.cpu, memoryGiB: s.size.memoryGiB, diskGiB: s.size.diskGiB };
  const hardware = [...(s.hardware ?? [])];
  const encryptedDisk = s.encryptedDisk ?? false;
  const near = s.placement?.near;
  return {
    name: s.name,
    owner: s.owner,
    labels: { ...(s.labels ?? {}) },
    count: s.count,
    minCount: s.minCount ?? 0,
    image: s.image,
    size,
    hardware,
    placement: {
      dataCenters: s.placement?.dataCenters ? [...s.placement.dataCenters] : null,
      strategy: s.placement?.strategy ?? 'nearest',
      near: near === undefined ? null : typeof near === 'string' ? near : { lat: near.lat, lon: near.lon },
    },
    state: s.state ?? 'Running',
    encryptedDisk,
    protect: s.protect ?? false,
    rollout: {},
    specHash: hash,
    where: {},
    pointers: new Map(),
    raw: {} as LoadedFleet['raw'],
  };
}

/**
 * Runs `f` over every item at once; the results in order, each fulfilled or
 * rejected. A throw before `f`'s promise (a member's data center the stack no
 * longer has) is that item's rejection: it neither stops the items after it
 * nor leaves those before it running after the answer.
 */
function settleAll<T, R>(items: readonly T[], f: (t: T) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  return Promise.allSettled(items.map(async (t) => f(t)));
}

/** What a member's call threw, each diagnostic at the member's address unless it names one. */
function diagnosticsOf(err: unknown, address: string): Diagnostic[] {
  if (err instanceof FleetError) return err.diagnostics.map((d) => (d.address === undefined && d.file === undefined ? { ...d, address } : d));
  return [diag('apply.step-failed', `${clip(address)}: ${clip(err instanceof Error ? err.message : String(err), REASON_LIMIT)}`, { address })];
}

export class FleetProvider implements pulumi.dynamic.ResourceProvider<FleetInputs, FleetOutputs> {
  readonly stack: FleetStack;

  constructor(stack: FleetStack) {
    this.stack = JSON.parse(JSON.stringify(stack)) as FleetStack;
  }

  /** The provider of one data center for this call. */
  private dc(name: string, tokens: Record<string, string> | undefined): DataCenterProvider {
    return providerFor(providerOptions(this.stack, name), tokens?.[name]);
  }

  /**
   * The spec as a fleet file's schema (specs/schema/fleet.schema.json) would
   * take it, checked by hand (a compiled schema validator cannot be
   * serialized into the provider): the keys it knows (a misspelt one is a
   * failure, not dropped), the name grammar members are addressed by, the
   * count and size limits, characters that do not show in the owner and
   * labels; then what the stack and pack say (state, image and hardware
   * offered where the fleet may live, data centers, near). If you add a key
   * to FleetSpecInputs, add it to SPEC_KEYS. fleet-check.test.ts holds the
   * two to one verdict over generated specs: change both together.
   */
  async check(olds: FleetInputs, news: FleetInputs): Promise<pulumi.dynamic.CheckResult<FleetInputs>> {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    // A value computed from another resource is not known in a preview (Pulumi's host passes a sentinel, UNKNOWN): judged once it is.
    if (!known(news.spec)) return { inputs: news, failures };
    if (news.spec === null || typeof news.spec !== 'object') return { inputs: news, failures: [{ property: 'spec', reason: 'spec must be an object: a fleet file\'s metadata and spec keys' }] };
    const s = news.spec;
    const fail = (property: string, reason: string) => failures.push({ property: `spec.${property}`, reason });
    const unknownKeys = (v: object, keys: readonly string[], what: string, property: string) => {
      for (const k of Object.keys(v)) if (!keys.includes(k)) fail(property === '' ? clip(k) : property, `${visible(k)} is not a key of ${what}; its keys are ${keys.join(', ')}`);
    };
    unknownKeys(s, SPEC_KEYS, 'a fleet spec', '');
    for (const k of ['name', 'owner', 'image'] as const) if (typeof s[k] !== 'string' || s[k] === '') fail(k, `${k} must be a non-empty string`);
    const nameProblem = typeof s.name === 'string' && s.name !== '' && s.name !== UNKNOWN ? fleetNameProblem(s.name) : undefined;
    if (nameProblem) fail('name', nameProblem);
    if (!known(s.count)) {
      /* judged when known */
    } else if (!Number.isInteger(s.count) || s.count < 0 || s.count > MAX_COUNT) fail('count', `count must be an integer from 0 to ${MAX_COUNT}`);
    if (s.minCount !== undefined && known(s.minCount) && (!Number.isInteger(s.minCount) || s.minCount < 0 || (known(s.count) && s.minCount > s.count))) fail('minCount', 'minCount must be an integer from 0 to count');
    const z = s.size;
    if (typeof news.specHash !== 'string' || news.specHash === '') failures.push({ property: 'specHash', reason: 'specHash must be engine/spec specHash of the spec' });
    if (!known(z, z?.cpu, z?.memoryGiB, z?.diskGiB)) {
      /* judged when known */
    } else if (!z || typeof z !== 'object' || !Number.isInteger(z.cpu) || !(z.cpu >= 1 && z.cpu <= 256) || !(z.memoryGiB >= 0.5 && z.memoryGiB <= 4096) || !(Number.isInteger(z.diskGiB) && z.diskGiB >= 1 && z.diskGiB <= 65536)) {
      fail('size', 'size needs an integer cpu from 1 to 256, memoryGiB from 0.5 to 4096 and an integer diskGiB from 1 to 65536');
    }
    if (z && typeof z === 'object' && known(z)) unknownKeys(z, ['cpu', 'memoryGiB', 'diskGiB'], 'size', 'size');
    // The owner and the labels are matched exactly (quota limits, rules' label matches): what does not show is refused, as in a fleet file.
    const readable = (property: string, what: string, v: unknown) => {
      if (typeof v !== 'string' || !known(v)) return;
      const refusal = unseenRefusal(what, v);
      if (refusal) fail(property, refusal);
    };
    readable('owner', 'owner', s.owner);
    if (typeof s.owner === 'string' && known(s.owner) && length(s.owner) > MAX_OWNER) {
      fail('owner', `owner must be at most ${MAX_OWNER} characters (it is ${length(s.owner)}): it is matched exactly against quota limits and kept with every VM in the record`);
    }
    // The record keeps an existing fleet's owner, and only `fleet apply` writes it: a create naming another is vetoed.
    const was = olds?.spec as Partial<FleetSpecInputs> | undefined;
    if (was && typeof was === 'object' && was.name === s.name && typeof was.owner === 'string' && typeof s.owner === 'string' && known(s.owner) && was.owner !== s.owner) {
      fail('owner', ownerChange(s.name, was.owner, s.owner));
    }
    const unique = (list: readonly unknown[]) => new Set(list).size === list.length;
    const nonEmptyStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((t) => typeof t === 'string' && t !== '');
    const hardwareOk = s.hardware === undefined || !known(s.hardware) || (nonEmptyStrings(s.hardware) && unique(s.hardware));
    if (!hardwareOk) fail('hardware', 'hardware must be a list of trait names, each listed once');
    if (s.labels !== undefined && known(s.labels)) {
      if (s.labels === null || typeof s.labels !== 'object' || Array.isArray(s.labels) || Object.values(s.labels).some((v) => typeof v !== 'string')) {
        fail('labels', 'labels must map names to strings');
      } else {
        const count = Object.keys(s.labels).length;
        if (count > MAX_LABELS) fail('labels', `a fleet has at most ${MAX_LABELS} labels (it has ${count}): every label is matched by the policy rules at each plan and shown in plans and reviews`);
        for (const [k, v] of Object.entries(s.labels)) {
          if (k === '') fail('labels', 'a label key must not be empty: policy rules match labels by their key, and an empty one shows as nothing in plans and reviews');
          readable(`labels.${clip(k)}`, 'label key', k);
          readable(`labels.${clip(k)}`, `the value of label ${visible(k)}`, v);
          if (length(k) > MAX_LABEL_KEY) fail(`labels.${clip(k)}`, `a label key must be at most ${MAX_LABEL_KEY} characters (it is ${length(k)}), as in Kubernetes`);
          if (typeof v === 'string' && known(v) && length(v) > MAX_LABEL_VALUE) fail(`labels.${clip(k)}`, `the value of label ${visible(k)} must be at most ${MAX_LABEL_VALUE} characters (it is ${length(v)}), as in Kubernetes`);
        }
      }
    }
    for (const k of ['encryptedDisk', 'protect'] as const) if (s[k] !== undefined && known(s[k]) && typeof s[k] !== 'boolean') fail(k, `${k} must be true or false`);
    const lc = this.stack.lifecycle;
    const state = s.state ?? 'Running';
    if (known(state) && !lc.requestable.includes(state)) fail('state', `state ${typeof state === 'string' ? visible(state) : `of type ${typeof state}`} is not one a fleet may ask for: ${lc.requestable.join(', ')}`);
    const dcNames = this.stack.dataCenters.map((d) => d.name);
    // The data centers this fleet may use: its allow-list (known names only), else all of the stack's.
    let candidates = dcNames;
    const p = s.placement as unknown;
    if (p !== undefined && known(p)) {
      if (p === null || typeof p !== 'object' || Array.isArray(p)) fail('placement', 'placement must be an object');
      else {
        const pl = p as Record<string, unknown>;
        unknownKeys(pl, ['dataCenters', 'strategy', 'near'], 'placement', 'placement');
        const dcs = pl.dataCenters;
        if (dcs !== undefined && known(dcs)) {
          if (!nonEmptyStrings(dcs) || dcs.length === 0 || !unique(dcs)) fail('placement.dataCenters', 'placement.dataCenters must list at least one data center name, each once');
          else {
            for (const name of dcs) if (!dcNames.includes(name)) fail('placement.dataCenters', `${visible(name)} is not a data center of stack ${this.stack.name} (${dcNames.join(', ')})`);
            candidates = dcs.filter((name) => dcNames.includes(name));
          }
        }
        if (pl.strategy !== undefined && known(pl.strategy) && !STRATEGIES.includes(pl.strategy as (typeof STRATEGIES)[number])) fail('placement.strategy', `strategy must be one of ${STRATEGIES.join(', ')}`);
        const near = pl.near;
        if (near !== undefined && known(near)) {
          if (typeof near === 'string') {
            if (near !== this.stack.site.name && !dcNames.includes(near)) fail('placement.near', `near ${visible(near)} is neither the stack's site (${this.stack.site.name}) nor one of its data centers (${dcNames.join(', ')})`);
          } else if (near === null || typeof near !== 'object' || Array.isArray(near)) {
            fail('placement.near', 'near must be a data center or site name, or coordinates { lat, lon }');
          } else {
            const at = near as Record<string, unknown>;
            unknownKeys(at, ['lat', 'lon'], 'placement.near', 'placement.near');
            const inRange = (v: unknown, limit: number) => typeof v === 'number' && v >= -limit && v <= limit;
            if (!inRange(at.lat, 90) || !inRange(at.lon, 180)) fail('placement.near', 'near needs lat from -90 to 90 and lon from -180 to 180');
          }
        }
      }
    }
    // Hardware traits and the image must be offered where the fleet may live (as `fleet validate` says of a fleet file).
    const offers = (dc: string) => this.stack.dataCenters.find((d) => d.name === dc)?.hardware ?? [];
    if (hardwareOk && Array.isArray(s.hardware) && candidates.length > 0) {
      const missing = s.hardware.filter((t) => !candidates.some((dc) => offers(dc).includes(t)));
      for (const t of missing) fail('hardware', `hardware trait ${visible(t)} is offered by none of the data centers the fleet may use (${candidates.join(', ')})`);
      if (missing.length === 0 && s.hardware.length > 1 && !candidates.some((dc) => s.hardware!.every((t) => offers(dc).includes(t)))) {
        fail('hardware', `no single data center among ${candidates.join(', ')} offers all of ${s.hardware.map((t) => visible(t)).join(', ')}`);
      }
    }
    if (typeof s.image === 'string' && s.image !== '' && known(s.image)) {
      const entry = Object.hasOwn(this.stack.images, s.image) ? this.stack.images[s.image] : undefined;
      if (!entry) fail('image', `image ${visible(s.image)} is not in the pack's catalog (${Object.keys(this.stack.images).join(', ')})`);
      else if (candidates.length > 0 && !candidates.some((dc) => Object.hasOwn(entry, dc))) fail('image', `image ${visible(s.image)} has no translation for ${candidates.join(', ')} in the pack's catalog`);
    }
    // Tokens a program computes from another resource are not known in a preview: the whole object is the sentinel.
    const tokens = news.tokens as unknown;
    if (tokens !== undefined && known(tokens)) {
      if (tokens === null || typeof tokens !== 'object' || Array.isArray(tokens)) failures.push({ property: 'tokens', reason: 'tokens must map data center names to their DMZ clients\' tokens' });
      else {
        for (const [name, token] of Object.entries(tokens)) {
          if (!dcNames.includes(name)) failures.push({ property: 'tokens', reason: `tokens names ${visible(name)}, which is not a data center of stack ${this.stack.name}` });
          // Never quoted: a token is a secret. An empty one is left to the data center's token variable (the programs pass '' for none).
          const bad = token === '' || !known(token) ? undefined : tokenProblem(token);
          if (bad) failures.push({ property: 'tokens', reason: `the token of data center ${visible(name)} ${bad}` });
        }
      }
    }
    const planId = news.planId as unknown;
    if (planId != null && known(planId) && (typeof planId !== 'string' || planId.length > SPEC_LIMITS.protocolName)) {
      failures.push({ property: 'planId', reason: `planId must be a string of at most ${SPEC_LIMITS.protocolName} characters, or left out` });
    }
    const managedBy = news.managedBy as unknown;
    if (managedBy !== undefined && known(managedBy) && (typeof managedBy !== 'string' || managedBy === '' || managedBy.length > SPEC_LIMITS.protocolName)) {
      failures.push({ property: 'managedBy', reason: `managedBy must be a non-empty string of at most ${SPEC_LIMITS.protocolName} characters (the Fleet resource sets it: pulumi:<project>/<stack>)` });
    }
    return { inputs: news, failures };
  }

  /**
   * Changes when the inputs changed, and also when the members (as the last
   * read left them: `pulumi refresh`) are not what the spec asks for: a
   * member the cloud no longer has, or one stopped outside the program, is a
   * change the next update carries out, as `fleet plan` would plan it.
   */
  async diff(_id: string, olds: FleetOutputs, news: FleetInputs): Promise<pulumi.dynamic.DiffResult> {
    // In a preview, a key computed from another resource is not known yet (PULUMI_UNKNOWN): a change, judged once known.
    // The name alone decides a replace; a spec unknown as a whole (an Output given for all of it) may rename the fleet.
    const name = known(news.spec) ? news.spec.name : UNKNOWN;
    const replaces = olds.spec.name !== name || olds.stack !== this.stack.name ? ['spec.name'] : [];
    if (hasUnknown(news.spec) || !known(news.specHash)) return { changes: true, replaces, deleteBeforeReplace: true };
    const changes =
      replaces.length > 0 ||
      JSON.stringify(canonical(olds.spec)) !== JSON.stringify(canonical(news.spec)) ||
      JSON.stringify(canonical(olds.tokens ?? {})) !== JSON.stringify(canonical(news.tokens ?? {})) ||
      (olds.planId ?? null) !== (news.planId ?? null) ||
      this.drifted(news, olds.members ?? []);
    return { changes, replaces, deleteBeforeReplace: true };
  }

  /** Whether the planner would change any member; a plan that cannot be made (unknown inputs in a preview, capacity) is left to update to report. */
  private drifted(news: FleetInputs, members: readonly FleetMember[]): boolean {
    try {
      return this.plan(news.spec, news.specHash, members).some((c) => c.action !== 'noop');
    } catch {
      return true;
    }
  }

  /** The planner's changes for this fleet, its members (olds) standing in for the record's rows. */
  private plan(spec: FleetSpecInputs, hash: string, members: readonly FleetMember[]): Change[] {
    const st = this.stack;
    const lifecycle = buildLifecycle(st.lifecycle);
    const stack = {
      name: st.name,
      site: st.site,
      dataCenters: st.dataCenters.map((d) => ({ name: d.name, address: d.url, location: d.location, hardware: d.hardware, capacity: d.capacity, where: {} })),
    } as unknown as LoadedStack;
    const pack = {
      name: 'pulumi',
      version: '0',
      lifecycle,
      images: st.images,
      rules: new Map([['datacenter-capacity', { enforcement: st.capacityEnforcement }]]),
    } as unknown as LoadedPack;
    const record: PlanVmRow[] = members.map((m) => ({
      id: m.vmId,
      stack: m.stack,
      fleet: m.fleet,
      index: m.index,
      address: m.address,
      name: m.name,
      dataCenter: m.dataCenter,
      state: m.state,
      // The record's cloud id and the denial of the VM's boot, as the member's last answer left them: the planner
      // deletes and creates again a VM whose boot the authority denied (docs/recovery.md), or whose cloud VM is gone.
      cloudId: m.cloudId,
      ...(m.bootDenied === true ? { bootDenied: true } : {}),
      specHash: m.specHash,
      image: m.image,
      realImage: m.realImage,
      size: m.size,
      encryptedDisk: m.encryptedDisk,
      version: m.version,
      retiredAt: null,
      deposed: false,
    }));
    const fleet = loadedFleet(spec, hash);
    // Quotas and the other rules are the authority's to enforce at each step; placement counts capacity.
    const plan = computePlan({
      stack,
      pack,
      fleets: [fleet],
      record,
      fleetVersions: {},
      options: { targets: [fleet.name], excludes: [], allowDestroy: [fleet.name], refresh: false },
      policy: noRulesPolicy,
    });
    const blocking = plan.policy.violations.filter((v) => v.level === 'mandatory');
    if (blocking.length > 0) {
      throw new FleetError(blocking.map((v) => diag('plan.blocked', `${v.policy}: ${v.message}; ${v.hint}.`, { address: v.address })));
    }
    return plan.changes;
  }

  /**
   * The protect rule, as `fleet plan` judges it: members of a fleet whose spec
   * says `protect: true` are neither deleted nor replaced. The authority
   * cannot judge it for this fleet (it reads protection from the record's
   * fleet row, which only `fleet apply` writes), so the provider refuses
   * before any step; the program's way out is `protect: false`, as a fleet
   * file's is without --allow-destroy.
   */
  private holdProtected(spec: FleetSpecInputs, destructive: readonly { address: string; action: string }[]): void {
    if (spec?.protect !== true || destructive.length === 0 || (this.stack.protectEnforcement ?? 'mandatory') !== 'mandatory') return;
    throw new FleetError(
      destructive.map((c) =>
        diag(
          'plan.blocked',
          `protect: ${c.address} would be ${c.action === 'delete' ? 'deleted' : 'replaced (deleted and created again)'}, but fleet ${spec.name} is protected (spec.protect: true); nothing was changed. Review the change, then set protect: false in the program and run \`pulumi up\` first.`,
          { address: c.address },
        ),
      ),
    );
  }

  /** Carries out one member's change; the member afterwards, or undefined when it is gone. */
  private async carry(c: Change, spec: FleetSpecInputs, inputs: FleetInputs, old: FleetMember | undefined): Promise<FleetMember | undefined> {
    const p = this.dc(c.dataCenter, inputs.tokens);
    const vm: VmInputs = {
      stack: this.stack.name,
      fleet: c.fleet,
      owner: spec.owner,
      index: c.index,
      name: c.name,
      image: c.image.logical,
      size: c.size,
      encryptedDisk: c.encryptedDisk,
      desiredState: c.to,
      specHash: c.specHash,
      planId: inputs.planId ?? null,
      managedBy: inputs.managedBy ?? 'pulumi',
    };
    const member = (outs: VmOutputs): FleetMember => ({ ...outs, address: c.address });
    switch (c.action) {
      case 'noop':
        return old;
      case 'create':
        return member((await p.create(vm)).outs as VmOutputs);
      case 'transition':
      case 'update':
        return member((await p.update(c.vmId as string, old as FleetMember, vm)).outs as VmOutputs);
      case 'replace':
        // The new VM is created by the provider's create, which cannot name the VM it replaces: the old one goes first.
        await p.delete(c.vmId as string, old as FleetMember);
        return member((await p.create(vm)).outs as VmOutputs);
      case 'delete':
        await p.delete(c.vmId as string, old as FleetMember);
        return undefined;
    }
  }

  /** Plans and carries out every member's change at once; the members afterwards and the failures. */
  private async converge(inputs: FleetInputs, olds: readonly FleetMember[]): Promise<{ members: FleetMember[]; failed: Diagnostic[]; created: FleetMember[]; stuck: FleetMember[] }> {
    const changes = this.plan(inputs.spec, inputs.specHash, olds);
    this.holdProtected(inputs.spec, changes.filter((c) => c.action === 'delete' || c.action === 'replace'));
    const byId = new Map(olds.map((m) => [m.vmId, m]));
    const results = await settleAll(changes, (c) => this.carry(c, inputs.spec, inputs, c.vmId ? byId.get(c.vmId) : undefined));
    const members: FleetMember[] = [];
    const created: FleetMember[] = [];
    const failed: Diagnostic[] = [];
    /** Members whose create failed and whose clean-up failed too: they exist. */
    const stuck: FleetMember[] = [];
    for (let i = 0; i < changes.length; i++) {
      const c = changes[i];
      const r = results[i];
      if (r.status === 'fulfilled') {
        if (r.value) members.push(r.value);
        if (r.value && c.action === 'create') created.push(r.value);
        continue;
      }
      failed.push(...diagnosticsOf(r.reason, c.address));
      // A failed create left nothing, unless its clean-up failed too: then the VM it answers as a partial resource is a member.
      const partial = (r.reason as { properties?: VmOutputs } | undefined)?.properties;
      if (c.action === 'create' && partial?.vmId) {
        const m = { ...partial, address: c.address };
        members.push(m);
        stuck.push(m);
        continue;
      }
      // A failed update or transition answers the VM as the record holds it now (where its walk stopped).
      if ((c.action === 'update' || c.action === 'transition') && partial?.vmId) {
        members.push({ ...partial, address: c.address });
        continue;
      }
      // Where the member is now: ask its data center.
      const old = c.vmId ? byId.get(c.vmId) : undefined;
      if (!old) continue;
      const now = await this.dc(c.dataCenter, inputs.tokens)
        .read(old.vmId, old)
        .catch(() => ({ id: old.vmId, props: old }));
      if (now.props) members.push({ ...(now.props as VmOutputs), address: old.address });
    }
    // Members no change acts on are unchanged: the plan document summarises them (formatVersion 2) instead of listing noops.
    const acted = new Set(changes.flatMap((c) => (c.vmId ? [c.vmId] : [])));
    for (const m of olds) if (!acted.has(m.vmId)) members.push(m);
    members.sort((a, b) => a.index - b.index);
    return { members, failed, created, stuck };
  }

  private outputs(inputs: FleetInputs, members: FleetMember[]): FleetOutputs {
    return { ...inputs, planId: inputs.planId ?? null, stack: this.stack.name, members };
  }

  async create(inputs: FleetInputs): Promise<pulumi.dynamic.CreateResult<FleetOutputs>> {
    const id = `${this.stack.name}:${inputs.spec.name}`;
    const { members, failed, created, stuck } = await this.converge(inputs, []);
    if (failed.length > 0) {
      // Leave nothing created: delete the members that were.
      const undone = await settleAll(created, (m) => this.dc(m.dataCenter, inputs.tokens).delete(m.vmId, m));
      const left: FleetMember[] = [...stuck];
      undone.forEach((r, i) => {
        if (r.status === 'rejected') {
          failed.push(diag('apply.step-failed', `Deleting ${created[i].address} after the fleet's create failed failed too; it still exists in ${created[i].dataCenter}.`, { address: created[i].address }));
          failed.push(...diagnosticsOf(r.reason, created[i].address));
          left.push(created[i]);
        }
      });
      const err = new FleetError(failed);
      if (left.length === 0) throw err;
      left.sort((a, b) => a.index - b.index);
      // What could not be deleted still exists: answered as Pulumi's partial resource ("created but failed to initialize"),
      // so the state keeps those members and the next update or destroy reaches them, instead of VMs no state knows.
      throw Object.assign(err, { id, properties: this.outputs(inputs, left), reasons: failed.map((d) => `${d.summary}: ${d.detail}`) });
    }
    return { id, outs: this.outputs(inputs, members) };
  }

  /**
   * Each member as its DMZ client sees it. The members come from the outputs
   * a create or update left: nothing else says which VMs are this fleet's
   * with the spec, hash and version they were made with, so a read without
   * them (`pulumi import`, the `import` option, a state that lost them; the
   * host then passes no properties or only its `__provider`) is refused
   * instead of answering a bare id that the next diff cannot compare.
   */
  async read(id: string, props?: FleetOutputs): Promise<pulumi.dynamic.ReadResult<FleetOutputs>> {
    if (!props || !Array.isArray(props.members) || props.spec === null || typeof props.spec !== 'object') {
      throw new FleetError([
        diag(
          'apply.import-refused',
          `Fleet ${id} cannot be read without the outputs its create left in the Pulumi state: a Fleet's members are known only from them, so a Fleet cannot be imported (\`pulumi import\` or the import option). Declare the fleet in the program and let \`pulumi up\` create it; a fleet that \`fleet apply\` made stays managed by \`fleet apply\` (or remove it there first, then declare it in the program).`,
        ),
      ]);
    }
    const results = await settleAll(props.members, (m) => this.dc(m.dataCenter, props.tokens).read(m.vmId, m));
    const members: FleetMember[] = [];
    const failed: Diagnostic[] = [];
    results.forEach((r, i) => {
      const m = props.members[i];
      if (r.status === 'rejected') failed.push(...diagnosticsOf(r.reason, m.address));
      else if (r.value.props) members.push({ ...(r.value.props as VmOutputs), address: m.address });
    });
    if (failed.length > 0) throw new FleetError(failed);
    return { id, props: { ...props, members } };
  }

  async update(id: string, olds: FleetOutputs, news: FleetInputs): Promise<pulumi.dynamic.UpdateResult<FleetOutputs>> {
    // Members are reached with the new tokens (a rotated token is the one the DMZ clients now accept).
    const { members, failed } = await this.converge(news, olds.members);
    const outs = this.outputs(news, members);
    if (failed.length > 0) {
      throw Object.assign(new FleetError(failed), { id, properties: outs, reasons: failed.map((d) => `${d.summary}: ${d.detail}`) });
    }
    return { outs };
  }

  async delete(_id: string, props: FleetOutputs): Promise<void> {
    this.holdProtected(props.spec, props.members.map((m) => ({ address: m.address, action: 'delete' })));
    const results = await settleAll(props.members, (m) => this.dc(m.dataCenter, props.tokens).delete(m.vmId, m));
    const failed: Diagnostic[] = [];
    results.forEach((r, i) => {
      if (r.status === 'rejected') failed.push(...diagnosticsOf(r.reason, props.members[i].address));
    });
    if (failed.length > 0) throw new FleetError(failed);
  }
}

/** Whether a value holds the sentinel of a value not known in a preview anywhere inside it. */
function hasUnknown(v: unknown): boolean {
  if (v === UNKNOWN) return true;
  if (Array.isArray(v)) return v.some(hasUnknown);
  return v !== null && typeof v === 'object' && Object.values(v).some(hasUnknown);
}

/** Objects with their keys sorted, for comparing inputs. */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(
    Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
  );
}

/** A fleet spec as the Fleet resource takes it: `name` defaults to the resource's name. */
export type FleetSpecArg = Omit<FleetSpecInputs, 'name'> & { name?: string };
/** The same with each key an input of its own. */
export type FleetSpecArgInputs = { [K in keyof FleetSpecArg]: pulumi.Input<FleetSpecArg[K]> };

export interface FleetArgs {
  /** The stack (loadFleetStack); the fleet's members are placed over its data centers. */
  stack: FleetStack;
  /** The fleet; `name` defaults to the resource's name. Each key may be an input of its own (a value another resource computes). */
  spec: pulumi.Input<FleetSpecArg> | FleetSpecArgInputs;
  /** Tokens of the data centers' DMZ clients; pass them as secrets (pulumi.secret, config.requireSecret). */
  tokens?: Record<string, pulumi.Input<string>>;
  planId?: pulumi.Input<string>;
}

/** A fleet of VMs spread over the stack's data centers, as `fleet plan` and `fleet apply` would make it. */
export class Fleet extends pulumi.dynamic.Resource {
  declare readonly stack: pulumi.Output<string>;
  declare readonly members: pulumi.Output<FleetMember[]>;

  constructor(name: string, args: FleetArgs, opts?: pulumi.CustomResourceOptions) {
    // Its provider goes into the Pulumi state in clear text: a DMZ client URL with credentials is refused.
    refuseUrlCredentials(args.stack);
    const tokens = args.tokens ? pulumi.secret(pulumi.all(args.tokens)) : undefined;
    const hashOf = (s: Pick<FleetSpecArg, 'image' | 'size' | 'hardware' | 'encryptedDisk'>) =>
      specHash({ image: s.image, size: s.size, hardware: s.hardware ?? [], encryptedDisk: s.encryptedDisk ?? false });
    // A spec given as an object keeps each key its own input: a key not known in a preview (computed from another
    // resource) is then the only one unknown. Through one apply, the whole spec, its name with it, was unknown, and
    // diff answered a replace of the fleet (every member deleted first) in the preview of a mere count change.
    const whole = pulumi.Output.isInstance(args.spec) || args.spec instanceof Promise ? pulumi.output(args.spec as pulumi.Input<FleetSpecArg>) : undefined;
    const keys = whole ? undefined : (args.spec as FleetSpecArgInputs);
    const spec = whole ? whole.apply((s) => ({ ...s, name: s.name ?? name })) : { ...keys, name: keys!.name ?? name };
    const hash = whole
      ? whole.apply(hashOf)
      : pulumi.all([keys!.image, keys!.size, keys!.hardware, keys!.encryptedDisk]).apply(([image, size, hardware, encryptedDisk]) => hashOf({ image, size, hardware, encryptedDisk }));
    const props = {
      spec,
      specHash: hash,
      planId: args.planId ?? null,
      managedBy: programManager(),
      ...(tokens ? { tokens } : {}),
      stack: undefined,
      members: undefined,
    };
    super(new FleetProvider(args.stack), name, props, { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), 'tokens'] }, 'dmzfleet', 'Fleet');
  }
}
