// The `sim` driver: a real simulated data center. Its VMs are kept in one
// JSON file per data center (written atomically: temp file + rename, group
// commit: a change is answered once a write including it completed) so they
// outlive the process; every call takes `latencyMs`; capacity is finite; calls
// can be told to fail or hang; and each booting VM runs a small agent (an
// in-process timer making real HTTP calls) that asks the boot endpoint for
// approval, unlocks its encrypted disk with the released key, and reports
// ready or failed.
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import { FleetError, diag } from '../../../engine/diags/index.ts';
import { sha256 } from '../../../engine/authority/keys.ts';
import { GroupCommit } from '../../../engine/durability/index.ts';
import { postJson } from '../../http-send.ts';
import type { VmSize } from '../../../engine/plan/types.ts';
import type { AgentState, BootResponse } from '../../protocol.ts';
import {
  DriverError,
  checkCredentials,
  type CloudVm,
  type CreateVmInput,
  type Driver,
  type DriverCall,
  type ScopedCredentials,
  type VmRef,
} from '../types.ts';

export interface SimOptions {
  dataCenter: string;
  /** Folder of the state file `sim-<dataCenter>.json`. */
  stateDir: string;
  capacity?: { vms?: number; cpu?: number; memoryGiB?: number };
  /** Time each call takes. Default 5. */
  latencyMs?: number;
  /** Time a VM's agent takes to boot before it calls the boot endpoint. Default latencyMs. */
  bootMs?: number;
  /** Share of mutating calls that fail with a transient error, 0 to 1. */
  errorRate?: number;
  /** Calls that always fail. */
  failCalls?: readonly string[];
  /** Calls that never answer. */
  hangCalls?: readonly string[];
  /** Seed of errorRate's PRNG. Default 1. */
  seed?: number;
  /** How long awaitReady waits by default. Default 30 000. */
  readyTimeoutMs?: number;
}

interface SimVm {
  vmId: string;
  cloudId: string;
  name: string;
  image: string;
  size: VmSize;
  encryptedDisk: boolean;
  diskKeyHash: string | null;
  status: 'present' | 'terminated';
  power: 'on' | 'off';
  agent: AgentState;
  agentDetail: string | null;
  diskUnlocked: boolean;
  /** Marks a VM injected without a record entry (tests). */
  rogue?: boolean;
  createdAt: string;
  updatedAt: string;
}

interface SimFile {
  formatVersion: 1;
  dataCenter: string;
  vms: SimVm[];
}

/** mulberry32: small, fast, good enough for repeatable failure injection. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MUTATING: ReadonlySet<string> = new Set(['createVm', 'powerOn', 'boot', 'awaitReady', 'shutdown', 'powerOff', 'resize', 'deleteVm']);

export function simStateFile(stateDir: string, dataCenter: string): string {
  return join(stateDir, `sim-${dataCenter}.json`);
}

/** Opens (or creates) the simulated data center whose VMs live under `stateDir`. */
export async function createSimDriver(opts: SimOptions): Promise<SimDriver> {
  const file = simStateFile(opts.stateDir, opts.dataCenter);
  let vms: SimVm[] = [];
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text !== undefined) {
    try {
      const parsed = JSON.parse(text) as SimFile;
      if (!Array.isArray(parsed.vms)) throw new Error('no vms array');
      vms = parsed.vms;
    } catch (err) {
      throw new FleetError(diag('apply.sim-state', `${file} is not a sim state file: ${(err as Error).message}.`, { file }));
    }
  }
  await mkdir(opts.stateDir, { recursive: true });
  return new SimDriver(opts, file, vms);
}

export class SimDriver implements Driver {
  readonly kind = 'sim';
  readonly dataCenter: string;
  private bootUrl: string | undefined;
  private readonly random: () => number;
  private readonly events = new EventEmitter();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Whole-file writes (temp file + rename), each of the state as it is when it starts. */
  private readonly commits = new GroupCommit(async () => {
    const tmp = `${this.file}.${process.pid}.${randomUUID()}.tmp`;
    await writeFile(tmp, serialize(this.dataCenter, this.vms));
    await rename(tmp, this.file);
  });
  /** Per cloud id, the latest boot; an agent of an older boot (a retried `boot`) gives up instead of acting. */
  private readonly bootGeneration = new Map<string, number>();
  private closed = false;
  /** Calls made, per name (tests and benchmarks read it). */
  readonly calls = new Map<string, number>();

  constructor(
    private readonly o: SimOptions,
    private readonly file: string,
    private readonly vms: SimVm[],
  ) {
    this.dataCenter = o.dataCenter;
    this.random = seededRandom(o.seed ?? 1);
    this.events.setMaxListeners(0);
  }

  /** Whole-file writes started (tests and benchmarks read it). */
  get writes(): number {
    return this.commits.writes;
  }

  attach(ctx: { bootUrl: string }): void {
    this.bootUrl = ctx.bootUrl;
  }

  private get latency(): number {
    return this.o.latencyMs ?? 5;
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  /** Latency, then the configured failures; every call goes through here first. */
  private async enter(call: DriverCall, creds: ScopedCredentials): Promise<void> {
    this.calls.set(call, (this.calls.get(call) ?? 0) + 1);
    checkCredentials(this.dataCenter, creds);
    if (this.o.hangCalls?.includes(call)) await new Promise<never>(() => undefined);
    await this.delay(this.latency);
    if (this.o.failCalls?.includes(call)) {
      throw new DriverError('failed', `sim ${this.dataCenter}: ${call} is configured to fail (failCalls)`);
    }
    if (MUTATING.has(call) && (this.o.errorRate ?? 0) > 0 && this.random() < (this.o.errorRate ?? 0)) {
      throw new DriverError('transient', `sim ${this.dataCenter}: ${call} failed with a simulated transient error (errorRate)`);
    }
  }

  /**
   * Makes every change made so far durable: resolves once a write of the
   * whole file (temp file + rename) that includes them has completed. Group
   * commit: one write is in flight at a time, and all changes made while it
   * runs share the next one, so a burst of N changes costs a couple of
   * writes instead of N (each write is the whole file, so one per change
   * was quadratic in the number of VMs).
   */
  private persist(): Promise<void> {
    return this.commits.commit();
  }

  private find(ref: VmRef): SimVm | undefined {
    if (ref.cloudId) return this.vms.find((v) => v.cloudId === ref.cloudId);
    return this.vms.filter((v) => v.vmId === ref.vmId && v.status === 'present').at(-1);
  }

  private mustFind(ref: VmRef): SimVm {
    const vm = this.find(ref);
    if (!vm || vm.status === 'terminated') {
      throw new DriverError('not-found', `sim ${this.dataCenter} has no VM ${ref.cloudId ?? ref.vmId}${vm ? ' (terminated)' : ''}`);
    }
    return vm;
  }

  private async change(vm: SimVm, patch: Partial<SimVm>): Promise<CloudVm> {
    Object.assign(vm, patch, { updatedAt: new Date().toISOString() });
    await this.persist();
    this.events.emit(vm.cloudId, vm);
    return view(this.dataCenter, vm);
  }

  private used(): { vms: number; cpu: number; memoryGiB: number } {
    const live = this.vms.filter((v) => v.status === 'present');
    return {
      vms: live.length,
      cpu: live.reduce((n, v) => n + v.size.cpu, 0),
      memoryGiB: live.reduce((n, v) => n + v.size.memoryGiB, 0),
    };
  }

  private checkCapacity(add: { vms: number; cpu: number; memoryGiB: number }): void {
    const cap = this.o.capacity ?? {};
    const used = this.used();
    for (const k of ['vms', 'cpu', 'memoryGiB'] as const) {
      const limit = cap[k];
      if (limit !== undefined && used[k] + add[k] > limit) {
        throw new DriverError('capacity', `sim ${this.dataCenter} is full: ${k} ${used[k]} + ${add[k]} exceeds the capacity ${limit}`);
      }
    }
  }

  async createVm(creds: ScopedCredentials, input: CreateVmInput): Promise<CloudVm> {
    await this.enter('createVm', creds);
    const existing = this.vms.find((v) => v.vmId === input.vmId && v.status === 'present');
    if (existing) return view(this.dataCenter, existing);
    this.checkCapacity({ vms: 1, cpu: input.size.cpu, memoryGiB: input.size.memoryGiB });
    const now = new Date().toISOString();
    const vm: SimVm = {
      vmId: input.vmId,
      cloudId: `sim-${this.dataCenter}-${randomUUID().slice(0, 8)}`,
      name: input.name,
      image: input.image,
      size: { ...input.size },
      encryptedDisk: input.encryptedDisk,
      diskKeyHash: input.diskKeyHash ?? null,
      status: 'present',
      power: 'off',
      agent: 'none',
      agentDetail: null,
      diskUnlocked: false,
      createdAt: now,
      updatedAt: now,
    };
    if (vm.encryptedDisk && vm.diskKeyHash === null) {
      throw new DriverError('failed', `an encrypted disk needs the hash of its key; the authority sent none for ${input.vmId}`);
    }
    this.vms.push(vm);
    await this.persist();
    return view(this.dataCenter, vm);
  }

  async powerOn(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm> {
    await this.enter('powerOn', creds);
    const vm = this.mustFind(ref);
    return this.change(vm, { power: 'on', agent: 'none', agentDetail: null });
  }

  async boot(creds: ScopedCredentials, ref: VmRef, opts: { bootToken: string }): Promise<CloudVm> {
    await this.enter('boot', creds);
    const vm = this.mustFind(ref);
    if (vm.power !== 'on') throw new DriverError('invalid-state', `VM ${vm.cloudId} is powered off; power it on before booting`);
    const out = await this.change(vm, { agent: 'booting', agentDetail: null, diskUnlocked: false });
    this.startAgent(vm, opts.bootToken);
    return out;
  }

  /**
   * The VM's agent: after bootMs it asks the boot endpoint for approval, then
   * unlocks its disk with the released key. A denied boot terminates the VM.
   */
  private startAgent(vm: SimVm, bootToken: string): void {
    const generation = (this.bootGeneration.get(vm.cloudId) ?? 0) + 1;
    this.bootGeneration.set(vm.cloudId, generation);
    const stale = () => this.closed || this.bootGeneration.get(vm.cloudId) !== generation;
    const run = async () => {
      if (stale() || vm.agent !== 'booting') return;
      const url = this.bootUrl;
      if (!url) {
        await this.change(vm, { agent: 'failed', agentDetail: 'no boot endpoint is known to the data center' });
        return;
      }
      let answer: BootResponse | undefined;
      let lastError = '';
      for (let attempt = 0; attempt < 5 && answer === undefined; attempt++) {
        try {
          const res = await postJson(new URL(url), { cloudId: vm.cloudId, vmId: vm.vmId, image: vm.image, bootToken }, 30_000);
          if (res.status >= 500) {
            lastError = `boot endpoint answered ${res.status}`;
          } else {
            answer = JSON.parse(res.text) as BootResponse;
          }
        } catch (err) {
          lastError = (err as Error).message;
        }
        if (answer === undefined) await this.delay(Math.max(this.latency, 10) * 2 ** attempt);
        if (stale()) return;
      }
      if (answer === undefined) {
        await this.change(vm, { agent: 'failed', agentDetail: `boot endpoint unreachable: ${lastError}` });
        return;
      }
      if (!answer.approved) {
        // The patent's trusted boot: a VM the authority does not recognise is not allowed to live.
        await this.change(vm, { agent: 'failed', agentDetail: `boot denied: ${answer.reason}`, status: 'terminated', power: 'off' });
        return;
      }
      if (vm.encryptedDisk) {
        if (answer.diskKey === undefined || sha256(answer.diskKey) !== vm.diskKeyHash) {
          await this.change(vm, { agent: 'failed', agentDetail: 'the released key does not unlock the encrypted disk' });
          return;
        }
      }
      await this.change(vm, { agent: 'ready', agentDetail: null, diskUnlocked: vm.encryptedDisk });
    };
    const t = setTimeout(() => {
      this.timers.delete(t);
      void run().catch(() => undefined);
    }, this.o.bootMs ?? this.latency);
    this.timers.add(t);
  }

  async awaitReady(creds: ScopedCredentials, ref: VmRef, opts: { timeoutMs?: number } = {}): Promise<CloudVm> {
    await this.enter('awaitReady', creds);
    const vm = this.find(ref);
    if (!vm) throw new DriverError('not-found', `sim ${this.dataCenter} has no VM ${ref.cloudId ?? ref.vmId}`);
    const timeoutMs = opts.timeoutMs ?? this.o.readyTimeoutMs ?? 30_000;
    const settled = () => vm.agent === 'ready' || vm.agent === 'failed' || vm.agent === 'none' || vm.status === 'terminated';
    if (!settled()) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          this.timers.delete(t);
          this.events.off(vm.cloudId, onChange);
          resolve();
        };
        const onChange = () => {
          if (settled()) done();
        };
        const t = setTimeout(done, timeoutMs);
        this.timers.add(t);
        this.events.on(vm.cloudId, onChange);
      });
    }
    if (vm.agent === 'ready' && vm.status === 'present') return view(this.dataCenter, vm);
    if (vm.agent === 'booting') throw new DriverError('timeout', `VM ${vm.cloudId} did not report ready within ${timeoutMs} ms`, false);
    throw new DriverError('boot-failed', `VM ${vm.cloudId} did not become ready: ${vm.agentDetail ?? (vm.agent === 'none' ? 'it was never booted' : vm.agent)}`);
  }

  async shutdown(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm> {
    await this.enter('shutdown', creds);
    const vm = this.mustFind(ref);
    return this.change(vm, { agent: 'stopping', agentDetail: null });
  }

  async powerOff(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm> {
    await this.enter('powerOff', creds);
    const vm = this.mustFind(ref);
    return this.change(vm, { power: 'off', agent: 'none', diskUnlocked: false });
  }

  async resize(creds: ScopedCredentials, ref: VmRef, size: VmSize): Promise<CloudVm> {
    await this.enter('resize', creds);
    const vm = this.mustFind(ref);
    if (vm.power !== 'off') throw new DriverError('invalid-state', `VM ${vm.cloudId} must be powered off to resize`);
    this.checkCapacity({ vms: 0, cpu: size.cpu - vm.size.cpu, memoryGiB: size.memoryGiB - vm.size.memoryGiB });
    return this.change(vm, { size: { ...size } });
  }

  async deleteVm(creds: ScopedCredentials, ref: VmRef): Promise<void> {
    await this.enter('deleteVm', creds);
    const vm = this.find(ref);
    if (!vm || vm.status === 'terminated') return;
    await this.change(vm, { status: 'terminated', power: 'off', agent: 'none' });
  }

  async get(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm | undefined> {
    await this.enter('get', creds);
    const vm = this.find(ref) ?? this.vms.filter((v) => v.vmId === ref.vmId).at(-1);
    return vm ? view(this.dataCenter, vm) : undefined;
  }

  async list(creds: ScopedCredentials): Promise<CloudVm[]> {
    await this.enter('list', creds);
    return this.vms.map((v) => view(this.dataCenter, v));
  }

  /**
   * Test helper: a VM that appears in the data center without any record
   * entry (someone used the cloud console) and boots with a made-up token.
   * The boot endpoint must deny it, and the sim then terminates it.
   */
  async injectRogueVm(opts: { image: string; vmId?: string; encryptedDisk?: boolean }): Promise<CloudVm> {
    const now = new Date().toISOString();
    const vm: SimVm = {
      vmId: opts.vmId ?? randomUUID(),
      cloudId: `sim-${this.dataCenter}-rogue-${randomUUID().slice(0, 8)}`,
      name: 'rogue',
      image: opts.image,
      size: { cpu: 1, memoryGiB: 1, diskGiB: 10 },
      encryptedDisk: opts.encryptedDisk ?? true,
      diskKeyHash: sha256('unknown'),
      status: 'present',
      power: 'on',
      agent: 'booting',
      agentDetail: null,
      diskUnlocked: false,
      rogue: true,
      createdAt: now,
      updatedAt: now,
    };
    this.vms.push(vm);
    await this.persist();
    this.startAgent(vm, 'made-up-boot-token');
    return view(this.dataCenter, vm);
  }

  /** Resolves when the VM's agent settled (ready, failed or terminated); test helper. */
  async waitSettled(cloudId: string, timeoutMs = 10_000): Promise<CloudVm> {
    const creds = { dataCenter: this.dataCenter, token: 'sim-internal', expiresAt: new Date(Date.now() + 60_000).toISOString() };
    try {
      return await this.awaitReady(creds, { vmId: '', cloudId }, { timeoutMs });
    } catch {
      const vm = this.vms.find((v) => v.cloudId === cloudId);
      if (!vm) throw new DriverError('not-found', `no VM ${cloudId}`);
      return view(this.dataCenter, vm);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.commits.settled();
  }
}

/** The state file's text: one VM per line, so it stays readable and diffable. */
function serialize(dataCenter: string, vms: readonly SimVm[]): string {
  const head = `{"formatVersion":1,"dataCenter":${JSON.stringify(dataCenter)},"vms":[`;
  return vms.length === 0 ? `${head}]}\n` : `${head}\n${vms.map((v) => JSON.stringify(v)).join(',\n')}\n]}\n`;
}

/** The default pack's state that a cloud state corresponds to (for refresh). */
export function observedState(vm: Pick<SimVm, 'status' | 'power' | 'agent'>): string {
  if (vm.status === 'terminated') return 'Deleted';
  if (vm.power === 'off') return 'PoweredOff';
  switch (vm.agent) {
    case 'none':
      return 'PoweredOn';
    case 'booting':
      return 'Starting';
    case 'ready':
      return 'Running';
    case 'failed':
      return 'BootFailed';
    case 'stopping':
      return 'ShuttingDown';
  }
}

function view(dataCenter: string, vm: SimVm): CloudVm {
  return {
    vmId: vm.vmId,
    cloudId: vm.cloudId,
    dataCenter,
    name: vm.name,
    image: vm.image,
    size: { ...vm.size },
    encryptedDisk: vm.encryptedDisk,
    status: vm.status,
    power: vm.power,
    agent: vm.agent,
    observedState: observedState(vm),
  };
}
