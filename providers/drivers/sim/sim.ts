// The `sim` driver: a real simulated data center. Its VMs outlive the
// process: a snapshot file per data center plus an append-only log of
// changed VMs (state-file.ts, written by log.ts; group commit: a change is answered once
// an append including it completed); every call takes `latencyMs`; capacity
// is finite; calls can be told to fail or hang; and each booting VM runs a
// small agent (an in-process timer making real HTTP calls) that asks the
// boot endpoint for approval, unlocks its encrypted disk with the released
// key, and reports ready or failed. A test can also reboot or power off a
// running VM from inside its guest (rebootFromInside, powerOffFromInside):
// the agent then runs again with the token of the VM's last boot, as a real
// VM's agent does at every boot (docs/recovery.md, "In-guest reboots and
// power-offs").
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { scopedTokenProblem, sha256 } from '../../../protocol/index.ts';
import { backoffMs, gaveUp, mayRetry, retryAfterMs, type RetryPolicy } from '../../retry.ts';
import type { VmSize } from '../../../engine/plan/types.ts';
import type { BootResponse } from '../../../protocol/index.ts';
import {
  DriverError,
  checkCredentials,
  createdFor,
  type CloudVm,
  type CreateVmInput,
  type Driver,
  type DriverCall,
  type ScopedCredentials,
  type VmRef,
} from '../types.ts';
import { AgentHttp } from './agent-http.ts';
import { takeTurn } from './gate.ts';
import { SimLog } from './log.ts';
import { SIM_READY_TIMEOUT_MS, simBootWindowMs, type SimOptions } from './options.ts';
import type { SimVm } from './state-file.ts';


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

export class SimDriver implements Driver {
  readonly kind = 'sim';
  readonly dataCenter: string;
  private bootUrl: string | undefined;
  /** The agents' HTTP client of bootUrl, made at the first boot (agent-http.ts: its connections are the data center's). */
  private bootClient: AgentHttp | undefined;
  /** The CA bundle the agents verify an https boot endpoint with (absent: the system's); no client certificate, as a real VM has none. */
  private bootCa: string | undefined;
  private readonly random: () => number;
  /** Faults set after opening (setFaults); they add to the options'. */
  private faults: Pick<SimOptions, 'failCalls' | 'hangCalls' | 'failWith' | 'forgeBootTokens'> = {};
  private readonly events = new EventEmitter();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Agents asking or acting now (agentsIdle). */
  private readonly agents = new Set<Promise<void>>();
  /** Per cloud id, how many awaitReady calls wait for its boot now (settle): a denial terminates the VM only then. */
  private readonly awaiting = new Map<string, number>();
  /** The data center's disk: changes appended by group commit, compacted into the snapshot (log.ts). */
  private readonly log: SimLog;
  private readonly byCloudId = new Map<string, SimVm>();
  /** Per VM id, its VMs in creation order (a VM id is reused only after a terminate). */
  private readonly byVmId = new Map<string, SimVm[]>();
  /** Capacity used by present VMs, kept as VMs come, change and go. */
  private readonly usage = { vms: 0, cpu: 0, memoryGiB: 0 };
  /**
   * Per cloud id, the latest boot, bumped by every change that ends a boot
   * in progress (a new `boot`, power on or off, shutdown, delete): an agent
   * of an older boot gives up instead of acting on its answer, as a real
   * VM's agent dies with the boot it ran in.
   */
  private readonly bootGeneration = new Map<string, number>();
  private closed = false;
  /**
   * Scoped tokens whose signature verified, with the expiry (ms) it covers: the
   * MAC is checked once per token, as a cloud's token service is asked once
   * per token, not per call (an approval's token is shared by the approvals
   * issued with it). Scope and expiry are still checked at every call.
   */
  private readonly verified = new Map<string, number>();
  /** Calls made, per name (tests and benchmarks read it). */
  readonly calls = new Map<string, number>();

  constructor(
    private readonly o: SimOptions,
    file: string,
    logFile: string,
    private readonly vms: SimVm[],
    seq: number,
    /** Lets go of the state folder (createSimDriver took it). */
    private readonly release: () => void = () => undefined,
  ) {
    this.dataCenter = o.dataCenter;
    this.random = seededRandom(o.seed ?? 1);
    this.events.setMaxListeners(0);
    this.log = new SimLog(o.dataCenter, file, logFile, vms, seq);
    for (const vm of vms) this.index(vm);
    if (o.gateFile !== undefined) this.gated(o.gateFile);
  }

  /**
   * Puts the gate file (SimOptions.gateFile) in front of every changing call: a call it holds waits, before it acts
   * or (acted) before it answers, until the file is removed; a closed sim's held calls never answer.
   */
  private gated(file: string): void {
    const self = this as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    for (const call of MUTATING) {
      const own = self[call].bind(this);
      self[call] = async (...args: unknown[]) => {
        const turn = takeTurn(file, this.dataCenter);
        if (turn === 'hold') await this.heldWhile(file);
        try {
          return await own(...args);
        } finally {
          if (turn === 'hold-answer') await this.heldWhile(file);
        }
      };
    }
  }

  private async heldWhile(file: string): Promise<void> {
    while (existsSync(file)) {
      if (this.closed) await new Promise<never>(() => undefined);
      await this.delay(10);
    }
  }

  /** Writes (appends and snapshots) started (tests and benchmarks read it). */
  get writes(): number {
    return this.log.writes;
  }

  private index(vm: SimVm): void {
    this.byCloudId.set(vm.cloudId, vm);
    const same = this.byVmId.get(vm.vmId);
    if (same) same.push(vm);
    else this.byVmId.set(vm.vmId, [vm]);
    this.account(vm, 1);
  }

  private account(vm: SimVm, sign: 1 | -1): void {
    if (vm.status !== 'present') return;
    this.usage.vms += sign;
    this.usage.cpu += sign * vm.size.cpu;
    this.usage.memoryGiB += sign * vm.size.memoryGiB;
  }

  private add(vm: SimVm): void {
    this.vms.push(vm);
    this.index(vm);
    this.log.changed(vm);
  }

  /** Folds the log into the snapshot now (after the writes in flight). */
  compact(): Promise<void> {
    return this.log.compact();
  }

  /**
   * Learns the boot endpoint, then resumes the boots a restart cut short:
   * every present, powered-on VM still `booting` with its token starts its
   * agent again (its earlier process is gone with its timers).
   */
  /** Replaces the faults set by an earlier call (the options' own stay); tests inject faults into a running data center with it. */
  setFaults(faults: Pick<SimOptions, 'failCalls' | 'hangCalls' | 'failWith' | 'forgeBootTokens'>): void {
    this.faults = { ...faults };
  }

  attach(ctx: { bootUrl: string; bootCa?: string }): void {
    this.bootUrl = ctx.bootUrl;
    this.bootCa = ctx.bootCa;
    this.bootClient?.close();
    this.bootClient = undefined;
    for (const vm of this.vms) {
      if (vm.status === 'present' && vm.power === 'on' && vm.agent === 'booting' && vm.bootToken && !this.bootGeneration.has(vm.cloudId)) {
        this.startAgent(vm, vm.bootToken);
      }
    }
  }

  /** How long each of its VMs' agents may spend asking the boot endpoint (simBootWindowMs). */
  get bootWindowMs(): number {
    return simBootWindowMs(this.o);
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

  /**
   * The credentials check, then latency, then the configured failures; every
   * call goes through here first. A mutating call needs credentials the
   * authority issued for this data center (their scoped token verified under
   * credentialKey, as a cloud verifies what its token service issued); reads
   * use the DMZ client's own read-only identity, checked for scope and expiry.
   */
  private async enter(call: DriverCall, creds: ScopedCredentials): Promise<void> {
    this.calls.set(call, (this.calls.get(call) ?? 0) + 1);
    if (MUTATING.has(call)) {
      const problem = this.tokenProblem(creds);
      if (problem !== undefined) throw new DriverError('credentials', `sim ${this.dataCenter} refuses ${call}: ${problem}`);
    } else {
      checkCredentials(this.dataCenter, creds);
    }
    if (this.o.hangCalls?.includes(call) || this.faults.hangCalls?.includes(call)) {
      const limit = this.o.callTimeoutMs;
      if (limit === undefined) await new Promise<never>(() => undefined);
      await this.delay(limit as number);
      throw new DriverError('timeout', `sim ${this.dataCenter}: ${call} did not answer within ${limit} ms (hangCalls)`, false);
    }
    await this.delay(this.latency);
    if (this.o.failCalls?.includes(call) || this.faults.failCalls?.includes(call)) {
      throw new DriverError('failed', `sim ${this.dataCenter}: ${call} is configured to fail (failCalls)`);
    }
    const kind = this.faults.failWith?.[call] ?? this.o.failWith?.[call];
    if (kind !== undefined) throw new DriverError(kind, `sim ${this.dataCenter}: ${call} is configured to fail with ${kind} (failWith)`);
    if (MUTATING.has(call) && (this.o.errorRate ?? 0) > 0 && this.random() < (this.o.errorRate ?? 0)) {
      throw new DriverError('transient', `sim ${this.dataCenter}: ${call} failed with a simulated transient error (errorRate)`);
    }
  }

  /**
   * Why a deleteVm would fail now by a configured fault (failCalls, failWith; as enter() words it), or undefined.
   * awaitReady's termination of a VM whose boot was denied fails the same way (a cloud refusing or failing the
   * terminate): the VM stays, powered off, for the next apply.
   */
  private deleteFault(): string | undefined {
    if (this.o.failCalls?.includes('deleteVm') || this.faults.failCalls?.includes('deleteVm')) return `sim ${this.dataCenter}: deleteVm is configured to fail (failCalls)`;
    const kind = this.faults.failWith?.deleteVm ?? this.o.failWith?.deleteVm;
    return kind === undefined ? undefined : `sim ${this.dataCenter}: deleteVm is configured to fail with ${kind} (failWith)`;
  }

  /** scopedTokenProblem, its MAC checked once per token (verified). */
  private tokenProblem(creds: ScopedCredentials): string | undefined {
    const ms = this.verified.get(creds.token);
    if (ms !== undefined && creds.dataCenter === this.dataCenter && Date.parse(creds.expiresAt) === ms && ms > Date.now()) return undefined;
    const problem = scopedTokenProblem(this.o.credentialKey, this.dataCenter, creds);
    if (problem === undefined) {
      if (this.verified.size >= 1_024) this.verified.clear();
      this.verified.set(creds.token, Date.parse(creds.expiresAt));
    }
    return problem;
  }

  /**
   * Makes every change made so far durable: resolves once a write that
   * includes them (an append of the changed VMs, or a snapshot) has
   * completed. Group commit: one write is in flight at a time, and all
   * changes made while it runs share the next one.
   */
  private persist(): Promise<void> {
    return this.log.commit();
  }

  private find(ref: VmRef): SimVm | undefined {
    if (ref.cloudId) return this.byCloudId.get(ref.cloudId);
    return this.byVmId.get(ref.vmId)?.filter((v) => v.status === 'present').at(-1);
  }

  private mustFind(ref: VmRef): SimVm {
    const vm = this.find(ref);
    if (!vm || vm.status === 'terminated') {
      throw new DriverError('not-found', `sim ${this.dataCenter} has no VM ${ref.cloudId ?? ref.vmId}${vm ? ' (terminated)' : ''}`);
    }
    return vm;
  }

  private async change(vm: SimVm, patch: Partial<SimVm>): Promise<CloudVm> {
    this.account(vm, -1);
    Object.assign(vm, patch, { updatedAt: new Date().toISOString() });
    this.account(vm, 1);
    this.log.changed(vm);
    await this.persist();
    this.events.emit(vm.cloudId, vm);
    return view(this.dataCenter, vm);
  }

  private checkCapacity(add: { vms: number; cpu: number; memoryGiB: number }): void {
    const cap = this.o.capacity ?? {};
    const used = this.usage;
    for (const k of ['vms', 'cpu', 'memoryGiB'] as const) {
      const limit = cap[k];
      if (limit !== undefined && used[k] + add[k] > limit) {
        throw new DriverError('capacity', `sim ${this.dataCenter} is full: ${k} ${used[k]} + ${add[k]} exceeds the capacity ${limit}`);
      }
    }
  }

  async createVm(creds: ScopedCredentials, input: CreateVmInput): Promise<CloudVm> {
    await this.enter('createVm', creds);
    const existing = this.byVmId.get(input.vmId)?.find((v) => v.status === 'present');
    if (existing) {
      // A create carried out again answers the VM it made, powered off, as the aws and azure drivers' createVm does
      // (they stop an instance their earlier try left running): the edge's state is a VM created and powered off.
      // Before, a VM of that id booted since (by edges the record no longer holds) was answered running, the record
      // said PoweredOff of it, and an apply to PoweredOff said it was done.
      if (existing.power === 'on') {
        this.endBoot(existing);
        return this.change(existing, { power: 'off', agent: 'none', agentDetail: null, diskUnlocked: false, bootToken: null, guestBoot: false });
      }
      return view(this.dataCenter, existing);
    }
    this.checkCapacity({ vms: 1, cpu: input.size.cpu, memoryGiB: input.size.memoryGiB });
    const now = new Date().toISOString();
    const vm: SimVm = {
      vmId: input.vmId,
      cloudId: `sim-${this.dataCenter}-${randomUUID().slice(0, 8)}`,
      name: input.name,
      ...(input.address !== undefined ? { address: input.address } : {}),
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
    this.add(vm);
    await this.persist();
    return view(this.dataCenter, vm);
  }

  /** Ends the boot `vm` is in, if any (see bootGeneration), at once, before the change that ends it is written; the new generation. */
  private endBoot(vm: SimVm): number {
    const generation = (this.bootGeneration.get(vm.cloudId) ?? 0) + 1;
    this.bootGeneration.set(vm.cloudId, generation);
    return generation;
  }

  async powerOn(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm> {
    await this.enter('powerOn', creds);
    const vm = this.mustFind(ref);
    this.endBoot(vm);
    return this.change(vm, { power: 'on', agent: 'none', agentDetail: null, bootToken: null, guestBoot: false, bootDenied: false });
  }

  async boot(creds: ScopedCredentials, ref: VmRef, opts: { bootToken: string }): Promise<CloudVm> {
    await this.enter('boot', creds);
    const vm = this.mustFind(ref);
    if (vm.power !== 'on') throw new DriverError('invalid-state', `VM ${vm.cloudId} is powered off; power it on before booting`);
    // The older agent stands down now, not once this change is written: its answer may come meanwhile.
    const generation = this.endBoot(vm);
    const out = await this.change(vm, { agent: 'booting', agentDetail: null, diskUnlocked: false, bootToken: opts.bootToken, userDataToken: opts.bootToken, guestBoot: false, bootDenied: false });
    // forgeBootTokens (a test fault): the agent presents a token its boot edge did not issue, and is denied.
    this.startAgent(vm, this.o.forgeBootTokens || this.faults.forgeBootTokens ? `forged-${randomUUID()}` : opts.bootToken, generation);
    return out;
  }

  /**
   * The VM's agent: after bootMs it asks the boot endpoint for approval, then
   * unlocks its disk with the released key. A denied boot terminates the VM
   * while an awaitReady waits for it, or once one comes for that boot (what
   * the aws and azure drivers' awaitReady does with one); with none (a boot started inside the
   * guest, guestBoot; an apply that gave up on it, timed out or was killed,
   * whose agent asks later or again once the data center restarts) the VM
   * only powers itself off, as the boot agent does, and keeps its disk: the
   * next apply finds it where the record left it, powered off. So does one
   * whose awaitReady cannot terminate it (deleteVm faulted: settle fails it
   * boot-denied, "not deleted yet"). A rogue VM (injectRogueVm, no record
   * entry) is terminated either way.
   * `generation`: the boot it runs in (endBoot); once another change ended
   * that boot, it gives up without acting.
   */
  private startAgent(vm: SimVm, bootToken: string, generation: number = this.endBoot(vm), afterMs: number = this.o.bootMs ?? this.latency): void {
    const stale = () => this.closed || this.bootGeneration.get(vm.cloudId) !== generation;
    const run = async () => {
      if (stale() || vm.agent !== 'booting') return;
      const url = this.bootUrl;
      if (!url) {
        await this.change(vm, { agent: 'failed', agentDetail: 'no boot endpoint is known to the data center', bootToken: null });
        return;
      }
      let answer: BootResponse | undefined;
      let lastError = '';
      // As the boot agent does (providers/boot-agent/agent.sh, post): a 408, a 429 (the boot endpoint's limit,
      // boot-rate-limited) and a 5xx are lost answers, asked again. A 429 was read as a denial: the VM terminated.
      // A Retry-After is waited out (the limit's window: asked again sooner, every try is refused, and the five were
      // spent in 150 ms, failing the boot), within the retry budget; without one, the backoff (10 ms doubling, at most
      // 2 s apart). 12 tries, as the agent's: a boot endpoint whose authority restarts (a second or two, more on a
      // loaded machine) answers 503 meanwhile, and five tries in 150 ms failed the boot of a VM the apply rode out.
      // All of it within the agent's boot window (simBootWindowMs), measured from its first try as agent.sh measures
      // its own: it gives up, and the boot fails, while the DMZ client's awaitReady still waits for it.
      const policy: RetryPolicy = { retries: 11, budgetMs: simBootWindowMs(this.o), baseDelayMs: Math.max(this.latency, 10), maxDelayMs: 2_000 };
      const began = Date.now();
      const spent = () => Date.now() - began;
      let retried = 0;
      for (; ; retried++) {
        let asked: number | undefined;
        try {
          this.bootClient ??= new AgentHttp(new URL(url), this.bootCa || undefined);
          // Each try gets at most the window's time left (30 s at most, 1 s at least), as agent.sh's tries do.
          const tryMs = Math.min(30_000, Math.max(1_000, policy.budgetMs - spent()));
          const res = await this.bootClient.post(JSON.stringify({ cloudId: vm.cloudId, vmId: vm.vmId, image: vm.image, bootToken }), tryMs);
          if (res.status === 408 || res.status === 429 || res.status >= 500) {
            lastError = `boot endpoint answered ${res.status}`;
            asked = retryAfterMs(res.retryAfter);
          } else {
            answer = JSON.parse(res.text) as BootResponse;
          }
        } catch (err) {
          lastError = (err as Error).message;
        }
        if (answer !== undefined || stale() || !mayRetry(policy, retried, spent())) break;
        // The backoff's upper end (no jitter: the sim's random draws are errorRate's, and stay so), or the answer's wait.
        const wait = Math.min(Math.max(backoffMs(retried, policy.baseDelayMs, policy.maxDelayMs, () => 1), asked ?? 0), policy.budgetMs - spent());
        await this.delay(Math.max(0, wait));
        if (stale()) return;
      }
      const slept = spent();
      // An answer that came after another change ended this boot is not acted on.
      if (stale()) return;
      if (answer === undefined) {
        await this.change(vm, { agent: 'failed', agentDetail: `boot endpoint unreachable ${gaveUp(retried, slept)}: ${lastError}`, bootToken: null });
        return;
      }
      if (!answer.approved) {
        const agentDetail = `boot denied: ${answer.reason}`;
        if (vm.guestBoot || (!vm.rogue && (!this.awaiting.get(vm.cloudId) || this.deleteFault() !== undefined))) {
          // No awaitReady to terminate it (an in-guest reboot, or an apply that gave up on this boot), or one whose
          // termination fails (deleteVm faulted: settle says so): the agent powers the VM off (agent.sh `fail ...
          // true`); it keeps its disk and waits for an approved boot.
          await this.change(vm, { agent: 'failed', agentDetail, power: 'off', diskUnlocked: false, bootToken: null, guestBoot: false, bootDenied: true });
          return;
        }
        // The patent's trusted boot: a VM the authority does not recognise (an injected rogue) is not allowed to live.
        await this.change(vm, { agent: 'failed', agentDetail, status: 'terminated', power: 'off', bootToken: null, bootDenied: true });
        return;
      }
      if (vm.encryptedDisk) {
        if (answer.diskKey === undefined || sha256(answer.diskKey) !== vm.diskKeyHash) {
          await this.change(vm, { agent: 'failed', agentDetail: 'the released key does not unlock the encrypted disk', bootToken: null });
          return;
        }
      }
      await this.change(vm, { agent: 'ready', agentDetail: null, diskUnlocked: vm.encryptedDisk, bootToken: null, guestBoot: false });
    };
    const t = setTimeout(() => {
      this.timers.delete(t);
      const running = run().catch(() => undefined);
      this.agents.add(running);
      void running.finally(() => this.agents.delete(running));
    }, afterMs);
    this.timers.add(t);
  }

  async awaitReady(creds: ScopedCredentials, ref: VmRef, opts: { timeoutMs?: number } = {}): Promise<CloudVm> {
    await this.enter('awaitReady', creds);
    return this.settle(ref, { ...opts, awaited: true });
  }

  /** awaitReady past the call's checks; `awaited`: a driver call waits (a denial meanwhile terminates the VM), not a test. */
  private async settle(ref: VmRef, opts: { timeoutMs?: number; awaited?: boolean }): Promise<CloudVm> {
    const vm = this.find(ref);
    if (!vm) throw new DriverError('not-found', `sim ${this.dataCenter} has no VM ${ref.cloudId ?? ref.vmId}`);
    const timeoutMs = opts.timeoutMs ?? this.o.readyTimeoutMs ?? SIM_READY_TIMEOUT_MS;
    const settled = () => vm.agent === 'ready' || vm.agent === 'failed' || vm.agent === 'none' || vm.status === 'terminated';
    if (!settled()) {
      const awaited = opts.awaited === true;
      if (awaited) this.awaiting.set(vm.cloudId, (this.awaiting.get(vm.cloudId) ?? 0) + 1);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          this.timers.delete(t);
          this.events.off(vm.cloudId, onChange);
          if (awaited) {
            const left = (this.awaiting.get(vm.cloudId) ?? 1) - 1;
            if (left > 0) this.awaiting.set(vm.cloudId, left);
            else this.awaiting.delete(vm.cloudId);
          }
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
    // A denial that came before this awaitReady began (the VM powered itself off): it terminates the VM now, as the
    // aws and azure drivers' awaitReady does on reading the agent's report.
    if (opts.awaited && vm.agent === 'failed' && vm.bootDenied && vm.status === 'present' && !vm.rogue) {
      // ... unless deleteVm is faulted (failCalls, failWith): the termination fails as a cloud's TerminateInstances or
      // DELETE can, and the VM stays, powered off; still a denied boot, saying so (the aws and azure drivers' words).
      const fault = this.deleteFault();
      if (fault !== undefined) {
        if (vm.power !== 'off') await this.change(vm, { power: 'off', diskUnlocked: false, bootToken: null });
        throw new DriverError(
          'boot-denied',
          `VM ${vm.cloudId} did not become ready: ${vm.agentDetail ?? 'boot denied'}; it was not deleted yet (${fault}); it powered itself off, and the next apply (docs/recovery.md, BootFailed) deletes it and creates the member again`,
        );
      }
      await this.change(vm, { status: 'terminated', power: 'off', bootToken: null });
    }
    if (vm.agent === 'ready' && vm.status === 'present') return view(this.dataCenter, vm);
    if (vm.agent === 'booting') throw new DriverError('timeout', `VM ${vm.cloudId} did not report ready within ${timeoutMs} ms`, false);
    throw new DriverError(vm.bootDenied ? 'boot-denied' : 'boot-failed', `VM ${vm.cloudId} did not become ready: ${vm.agentDetail ?? (vm.agent === 'none' ? 'it was never booted' : vm.agent)}`);
  }

  async shutdown(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm> {
    await this.enter('shutdown', creds);
    const vm = this.mustFind(ref);
    this.endBoot(vm);
    return this.change(vm, { agent: 'stopping', agentDetail: null, bootToken: null, guestBoot: false });
  }

  async powerOff(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm> {
    await this.enter('powerOff', creds);
    const vm = this.mustFind(ref);
    this.endBoot(vm);
    return this.change(vm, { power: 'off', agent: 'none', diskUnlocked: false, bootToken: null, guestBoot: false });
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
    this.endBoot(vm);
    await this.change(vm, { status: 'terminated', power: 'off', agent: 'none', bootToken: null, guestBoot: false });
  }

  async get(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm | undefined> {
    await this.enter('get', creds);
    const vm = this.find(ref) ?? this.byVmId.get(ref.vmId)?.at(-1);
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
    this.add(vm);
    await this.persist();
    this.startAgent(vm, 'made-up-boot-token');
    return view(this.dataCenter, vm);
  }

  /**
   * Test helper: the VM reboots from inside its guest (a kernel update's
   * reboot, `shutdown -r now`, a watchdog), with no apply running. Its disk
   * mapping is gone with the old boot; its agent runs again with the token in
   * its user data (the last `boot`'s, used already) and asks the boot
   * endpoint, which denies it unless the record has the VM booting: the agent
   * then powers the VM off (guestBoot). A VM never booted has no token: its
   * agent does nothing (powered on, not booted). Resolves once the reboot
   * began (the agent asks after bootMs; waitSettled waits for its answer).
   */
  async rebootFromInside(cloudId: string): Promise<CloudVm> {
    const vm = this.mustFind({ vmId: '', cloudId });
    if (vm.power !== 'on') throw new DriverError('invalid-state', `VM ${cloudId} is powered off; a guest cannot reboot it`);
    const generation = this.endBoot(vm);
    const token = vm.userDataToken ?? null;
    if (token === null) return this.change(vm, { agent: 'none', agentDetail: null, diskUnlocked: false, bootToken: null, guestBoot: false });
    const out = await this.change(vm, { agent: 'booting', agentDetail: null, diskUnlocked: false, bootToken: token, guestBoot: true, bootDenied: false });
    this.startAgent(vm, token, generation);
    return out;
  }

  /**
   * Test helper: the agent of a booting VM asks the boot endpoint now (not after bootMs), presenting `token`: by
   * default the token it was booted with; another one is a VM whose user data was tampered with or still holds an
   * earlier boot's token. Its earlier agent stands down. Resolves once the agent acted on the answer (waitSettled).
   */
  async agentAsksNow(cloudId: string, token?: string): Promise<CloudVm> {
    const vm = this.mustFind({ vmId: '', cloudId });
    const presented = token ?? vm.bootToken;
    if (vm.power !== 'on' || vm.agent !== 'booting' || !presented) throw new DriverError('invalid-state', `VM ${cloudId} is not booting`);
    this.startAgent(vm, presented, this.endBoot(vm), 0);
    return this.waitSettled(cloudId);
  }

  /** Test helper: the VM powers itself off from inside its guest (`poweroff`, a halt), with no apply running. Nothing else happens to it. */
  async powerOffFromInside(cloudId: string): Promise<CloudVm> {
    const vm = this.mustFind({ vmId: '', cloudId });
    this.endBoot(vm);
    return this.change(vm, { power: 'off', agent: 'none', agentDetail: null, diskUnlocked: false, bootToken: null, guestBoot: false });
  }

  /** Resolves once every agent asking or acting now is done (written what it made of its answer, or given up); test helper. */
  async agentsIdle(): Promise<void> {
    while (this.agents.size > 0) await Promise.all([...this.agents]);
  }

  /** Resolves when the VM's agent settled (ready, failed or terminated); test helper. */
  async waitSettled(cloudId: string, timeoutMs = 10_000): Promise<CloudVm> {
    try {
      return await this.settle({ vmId: '', cloudId }, { timeoutMs });
    } catch {
      const vm = this.byCloudId.get(cloudId);
      if (!vm) throw new DriverError('not-found', `no VM ${cloudId}`);
      return view(this.dataCenter, vm);
    }
  }

  /** Stops the agents, waits for the writes in flight, and folds the log into the snapshot (best effort: the log holds every answered change). */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.bootClient?.close();
    await this.log.close();
    this.release();
  }
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
    ...createdFor(vm.address),
    image: vm.image,
    size: { ...vm.size },
    encryptedDisk: vm.encryptedDisk,
    status: vm.status,
    power: vm.power,
    agent: vm.agent,
    observedState: observedState(vm),
  };
}

/** The registry's factory (providers/drivers/registry.ts): the stack's capacity and sim settings, and the key of the DMZ client's scoped tokens. */
