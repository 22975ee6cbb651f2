// One Pulumi dynamic provider per data center, over that data center's DMZ
// client. The same object serves `fleet apply` (called directly) and a Pulumi
// program (`new pulumi.dynamic.Resource(provider, ...)`), so it must stay
// serializable by Pulumi's closure serializer: it holds only plain data (the
// data center's name, the DMZ client's URL, the NAME of the environment
// variable with the token, and the lifecycle's edges), never a token value,
// a socket or a pack object. The token is read from the environment at call time.
// Node built-ins are reached through globals (globalThis.crypto, fetch), not
// imports: a captured import of a native module cannot be serialized.
//
// Failure rules (pulumi sdk/nodejs/dynamic/index.ts):
// - create: if it fails, nothing must remain created: the VM is walked to the
//   terminal state before the error is thrown.
// - delete: if it fails, the VM still exists (the error says in which state).
import type * as pulumi from '@pulumi/pulumi';
import { FleetError, diag } from '../engine/diags/index.ts';
import type { VmSize } from '../engine/plan/types.ts';
import { DmzHttpClient } from './client.ts';
import type { NewVmRequest, StepResult } from '../protocol/index.ts';

/** What a VM resource is declared with: the create request's VM (protocol/, NewVmRequest) without the id the provider proposes. */
export type VmInputs = Omit<NewVmRequest, 'id' | 'replaces'> & { planId?: string | null };

/** What the provider knows after a call. */
export interface VmOutputs extends VmInputs {
  vmId: string;
  dataCenter: string;
  state: string;
  cloudId: string | null;
  realImage: string | null;
  version: number;
}

export interface DataCenterProviderOptions {
  dataCenter: string;
  /** Base URL of the DMZ client. */
  url: string;
  /** Name of the environment variable holding the bearer token. */
  tokenEnv: string;
  /** The pack's lifecycle as plain data. */
  lifecycle: { initial: string; terminal: string; edges: readonly { from: string; to: string }[] };
  timeoutMs?: number;
  retries?: number;
}

/** Inputs whose change needs a new VM. */
const REPLACE_KEYS = ['stack', 'fleet', 'index', 'name', 'image', 'encryptedDisk'] as const;

/** Shortest path of states along the edges (BFS, ties by edge order); undefined when none. */
export function statePath(edges: readonly { from: string; to: string }[], from: string, to: string): string[] | undefined {
  if (from === to) return [from];
  const prev = new Map<string, string>([[from, '']]);
  const queue = [from];
  while (queue.length > 0) {
    const s = queue.shift() as string;
    for (const e of edges) {
      if (e.from !== s || prev.has(e.to)) continue;
      prev.set(e.to, s);
      if (e.to === to) {
        const path = [to];
        for (let p = s; p !== ''; p = prev.get(p) as string) path.unshift(p);
        return path;
      }
      queue.push(e.to);
    }
  }
  return undefined;
}

export class DataCenterProvider implements pulumi.dynamic.ResourceProvider<VmInputs, VmOutputs> {
  readonly dataCenter: string;
  readonly url: string;
  readonly tokenEnv: string;
  readonly lifecycle: DataCenterProviderOptions['lifecycle'];
  readonly timeoutMs: number;
  readonly retries: number;

  constructor(o: DataCenterProviderOptions) {
    this.dataCenter = o.dataCenter;
    this.url = o.url;
    this.tokenEnv = o.tokenEnv;
    this.lifecycle = { initial: o.lifecycle.initial, terminal: o.lifecycle.terminal, edges: o.lifecycle.edges.map((e) => ({ from: e.from, to: e.to })) };
    this.timeoutMs = o.timeoutMs ?? 120_000;
    this.retries = o.retries ?? 5;
  }

  /** A client for this call; the token is looked up now, never stored. */
  client(): DmzHttpClient {
    const env = this.tokenEnv;
    const dc = this.dataCenter;
    return new DmzHttpClient({
      dataCenter: dc,
      baseUrl: this.url,
      timeoutMs: this.timeoutMs,
      retries: this.retries,
      token: () => {
        const t = process.env[env];
        if (!t) throw new FleetError(diag('apply.token-missing', `Set ${env} to the bearer token of the DMZ client of data center ${dc}.`));
        return t;
      },
    });
  }

  async check(_olds: VmInputs, news: VmInputs): Promise<pulumi.dynamic.CheckResult<VmInputs>> {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    for (const k of ['stack', 'fleet', 'owner', 'name', 'image', 'desiredState', 'specHash'] as const) {
      if (typeof news[k] !== 'string' || news[k] === '') failures.push({ property: k, reason: `${k} must be a non-empty string` });
    }
    if (!Number.isInteger(news.index) || news.index < 0) failures.push({ property: 'index', reason: 'index must be an integer >= 0' });
    const s = news.size;
    if (!s || !(s.cpu >= 1) || !(s.memoryGiB > 0) || !(s.diskGiB > 0)) failures.push({ property: 'size', reason: 'size needs cpu >= 1, memoryGiB > 0 and diskGiB > 0' });
    if (typeof news.encryptedDisk !== 'boolean') failures.push({ property: 'encryptedDisk', reason: 'encryptedDisk must be a boolean' });
    if (news.desiredState && !statePath(this.lifecycle.edges, this.lifecycle.initial, news.desiredState)) {
      failures.push({ property: 'desiredState', reason: `${news.desiredState} cannot be reached from ${this.lifecycle.initial}` });
    }
    return { inputs: news, failures };
  }

  async diff(_id: string, olds: VmOutputs, news: VmInputs): Promise<pulumi.dynamic.DiffResult> {
    const replaces = REPLACE_KEYS.filter((k) => olds[k] !== news[k]);
    const changed = replaces.length > 0 || olds.desiredState !== news.desiredState || olds.specHash !== news.specHash || !sameSize(olds.size, news.size) || olds.owner !== news.owner;
    return { changes: changed, replaces: [...replaces], deleteBeforeReplace: true };
  }

  /** Walks `vmId` along `path`; stops at the first step that is not ok. `state` is where the VM is afterwards. */
  private async walk(client: DmzHttpClient, vmId: string, path: readonly string[], planId: string | null): Promise<Walked> {
    let last: StepResult | undefined;
    let state = path[0];
    for (let i = 1; i < path.length; i++) {
      const req = { idempotencyKey: globalThis.crypto.randomUUID(), planId, from: path[i - 1], to: path[i] };
      last = path[i] === this.lifecycle.terminal ? await client.deleteVm(vmId, req) : await client.transition(vmId, req);
      if (last.outcome !== 'ok') {
        return { last, state: last.vm?.state ?? state, error: this.stepError(last, `${path[i - 1]} -> ${path[i]}`) };
      }
      state = last.vm?.state ?? path[i];
    }
    return { last, state };
  }

  /** Like walk, but throws the step's error. */
  private async walkOrThrow(client: DmzHttpClient, vmId: string, path: readonly string[], planId: string | null): Promise<StepResult | undefined> {
    const w = await this.walk(client, vmId, path, planId);
    if (w.error) throw w.error;
    return w.last;
  }

  private stepError(r: StepResult, what: string): FleetError {
    const where = r.vm ? { address: r.vm.address } : {};
    if (r.outcome === 'vetoed') return new FleetError(diag('apply.step-vetoed', `${what} in ${this.dataCenter}: ${r.reason}.`, where));
    return new FleetError(diag('apply.step-failed', `${what} in ${this.dataCenter}: ${r.error?.message ?? r.reason}; the VM is now ${r.vm?.state ?? 'unknown'}.`, where));
  }

  private path(from: string, to: string): string[] {
    const p = statePath(this.lifecycle.edges, from, to);
    if (!p) throw new FleetError(diag('apply.step-vetoed', `No path of lifecycle edges leads from ${from} to ${to}.`));
    return p;
  }

  private outputs(vmId: string, inputs: VmInputs, r: StepResult | undefined, prev?: VmOutputs): VmOutputs {
    return {
      ...inputs,
      planId: inputs.planId ?? null,
      vmId,
      dataCenter: this.dataCenter,
      state: r?.vm?.state ?? prev?.state ?? this.lifecycle.initial,
      cloudId: r?.vm?.cloudId ?? prev?.cloudId ?? null,
      realImage: r?.vm?.realImage ?? prev?.realImage ?? null,
      version: r?.vm?.version ?? prev?.version ?? 0,
    };
  }

  async create(inputs: VmInputs): Promise<pulumi.dynamic.CreateResult<VmOutputs>> {
    const client = this.client();
    const vmId = globalThis.crypto.randomUUID();
    const planId = inputs.planId ?? null;
    const { planId: _p, ...vm } = inputs;
    const created = await client.createVm({ idempotencyKey: globalThis.crypto.randomUUID(), planId, vm: { id: vmId, ...vm } });
    if (created.outcome !== 'ok') throw this.stepError(created, `create ${inputs.fleet}/${inputs.index}`);
    const from = created.vm?.state ?? this.lifecycle.initial;
    let w: Walked;
    try {
      w = await this.walk(client, vmId, this.path(from, inputs.desiredState), planId);
    } catch (err) {
      w = { state: from, error: err instanceof FleetError ? err : new FleetError(diag('apply.step-failed', String(err))) };
    }
    if (w.error) {
      // Leave nothing created: walk the VM from where it stopped to the terminal state, then fail.
      let cleanup: Walked;
      try {
        cleanup = await this.walk(client, vmId, this.path(w.state, this.lifecycle.terminal), planId);
      } catch (err) {
        cleanup = { state: w.state, error: err instanceof FleetError ? err : new FleetError(diag('apply.step-failed', String(err))) };
      }
      if (cleanup.error) {
        throw new FleetError([
          ...w.error.diagnostics,
          diag('apply.step-failed', `Cleaning up VM ${vmId} after the failed create failed too; it may still exist in ${this.dataCenter} (${cleanup.state}): ${cleanup.error.message}`, {
            address: `${inputs.fleet}/${inputs.index}`,
          }),
        ]);
      }
      throw w.error;
    }
    return { id: vmId, outs: this.outputs(vmId, inputs, w.last ?? created) };
  }

  async read(id: string, props?: VmOutputs): Promise<pulumi.dynamic.ReadResult<VmOutputs>> {
    const actual = await this.client().getVm(id);
    if (!actual || actual.status === 'terminated') return {};
    if (!props) return { id };
    return { id, props: { ...props, state: actual.observedState, cloudId: actual.cloudId, size: actual.size } };
  }

  async update(id: string, olds: VmOutputs, news: VmInputs): Promise<pulumi.dynamic.UpdateResult<VmOutputs>> {
    const client = this.client();
    const planId = news.planId ?? null;
    let state = olds.state;
    let last: StepResult | undefined;
    if (!sameSize(olds.size, news.size)) {
      // A resize happens powered off: walk there, resize, then on to the desired state.
      last = (await this.walkOrThrow(client, id, this.path(state, 'PoweredOff'), planId)) ?? last;
      state = 'PoweredOff';
      const r = await client.transition(id, { idempotencyKey: globalThis.crypto.randomUUID(), planId, from: state, to: state, operation: 'resize', size: news.size });
      if (r.outcome !== 'ok') throw this.stepError(r, 'resize');
      last = r;
    }
    last = (await this.walkOrThrow(client, id, this.path(state, news.desiredState), planId)) ?? last;
    return { outs: this.outputs(id, news, last, olds) };
  }

  async delete(id: string, props: VmOutputs): Promise<void> {
    // If a step fails the VM still exists; the error names the step and the state it is in.
    await this.walkOrThrow(this.client(), id, this.path(props.state, this.lifecycle.terminal), props.planId ?? null);
  }
}

interface Walked {
  last?: StepResult;
  state: string;
  error?: FleetError;
}

function sameSize(a: VmSize | undefined, b: VmSize | undefined): boolean {
  return a?.cpu === b?.cpu && a?.memoryGiB === b?.memoryGiB && a?.diskGiB === b?.diskGiB;
}

/** Builds one provider per data center from a stack's data centers and their DMZ client URLs. */
export function providersFor(
  dataCenters: readonly { name: string; url: string; tokenEnv: string }[],
  lifecycle: { initial: string; terminal: readonly string[]; edges: readonly { from: string; to: string }[] },
): Map<string, DataCenterProvider> {
  const out = new Map<string, DataCenterProvider>();
  for (const d of dataCenters) {
    out.set(
      d.name,
      new DataCenterProvider({ dataCenter: d.name, url: d.url, tokenEnv: d.tokenEnv, lifecycle: { initial: lifecycle.initial, terminal: lifecycle.terminal[0], edges: lifecycle.edges } }),
    );
  }
  return out;
}
