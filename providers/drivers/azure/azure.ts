// The `azure` driver: a data center is one resource group of one Azure
// subscription. Each fleet VM owns a NIC, a VM, its OS disk and a data disk,
// all named from the VM id (names.ts), so a create is a name-keyed PUT and a
// retried create finds the first VM. Mutating calls go out with the token
// the authority brokered for this data center (engine/authority/credentials/
// azure.ts), reads with the DMZ client's own read-only identity.
//
// | operation  | ARM calls                                                                                 |
// | ---------- | ----------------------------------------------------------------------------------------- |
// | createVm   | GET VM (there already: wait out Creating/Updating/Deleting, redo a Failed one, else      |
// |            | answer it; redo a Canceled one too),                                                      |
// |            | PUT NIC, PUT VM (custom data: the bootstrap), then                                        |
// |            | POST powerOff or deallocate (Azure starts a VM it creates; the diagram wants PoweredOff); |
// |            | a create that failed otherwise than transiently is cleaned up (nothing left behind)       |
// | powerOn    | POST start                                                                                |
// | boot       | PATCH VM userData: the boot agent with this boot's one-time token (bootstrap.ts runs it)  |
// | awaitReady | waits for the agent's report (agentStatus), reading the VM's instance view between        |
// |            | reports (the read identity's in the brokered token's last minute); a denied VM (its       |
// |            | report, or it powered itself off while booting after the boot endpoint denied this boot's |
// |            | token: bootDenied) is deleted with the token the wait began with (the step's scoped       |
// |            | credentials may have expired meanwhile: deleteDenied); one that powered itself off with   |
// |            | no such denial (a denied check with another token is anyone's), or was deallocated        |
// |            | meanwhile (ARM's doing, never its guest's), is kept: boot-failed                          |
// | shutdown   | POST powerOff (graceful: the OS shuts down)                                               |
// | powerOff   | POST powerOff?skipShutdown=true, or POST deallocate when the pack says `deallocate`       |
// | resize     | GET VM (must be powered off), PATCH VM hardwareProfile.vmSize and the size tag            |
// | deleteVm   | DELETE VM, NIC, OS disk, data disk (each 404 is fine)                                     |
// | get        | GET VM ?$expand=instanceView                                                              |
// | list       | GET VMs of the resource group (paged over nextLink, each page its own deadline, at most   |
// |            | LIST_MAX_PAGES, a repeated nextLink a failure), stack tag, instance view of each          |
//
// Long-running operations (201/202 with Azure-AsyncOperation / Location) are
// polled by the SDK's poller. The SDK retries nothing (retryOptions.maxRetries
// 0): the DMZ client owns retries, so errors.ts maps every failure to a kind.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { VirtualMachine } from '@azure/arm-compute';
import type { TokenCredential } from '@azure/core-auth';
import { formatSize, type VmSize } from '../../../engine/model/index.ts';
import type { AgentState } from '../../../protocol/index.ts';
import { DriverError, checkCredentials, createdFor, type AgentReport, type CloudVm, type CreateVmInput, type Driver, type ScopedCredentials, type VmRef } from '../types.ts';
import { AgentLedger, isCurrentReport } from '../agent-ledger.ts';
import { armClients, staticTokenCredential, type Clients } from './clients.ts';
import { AZURE_DATA_DEVICE, DEFAULT_ARM_ENDPOINT, type AzureDriverOptions } from './options.ts';
import { toDriverError } from './errors.ts';
import { TAG, formatSizeTag, imageReference, nicResourceId, parseSizeTag, resourceNames, subnetResourceId, vmResourceId, vmName } from './names.ts';
import { mapAzureState, powerStateOf, provisionedAt, provisioningStateOf } from './states.ts';

/** Per VM (cloud id), what this client knows of its boot agent. */
interface AgentEntry {
  state: AgentState;
  /** sha256 of the boot token of the latest boot; reports must carry it. */
  tokenHash?: string;
  detail?: string;
  /** The boot endpoint denied the boot: the VM powered itself off and is to be deleted. */
  denied?: boolean;
  /** The DMZ client saw the boot endpoint deny a request with this boot's token (bootDenied; agent-ledger.ts). */
  tokenDenied?: boolean;
  /** When this client believed the report (isCurrentReport: a ready report older than the VM's last operation is of a run before it). */
  at?: string;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** A wait loop's read that failed transiently (pollRead): read again. */
const MISSED = Symbol('missed');

/**
 * The most pages a VM list reads (each under its own requestTimeoutMs). A resource group holds at most 800 resources
 * of a type (Azure's limits), and ARM answers many to a page: a walk longer than this is ARM answering nextLinks
 * without end.
 */
const LIST_MAX_PAGES = 1000;

/** A wait's reads leave the brokered token for the DMZ client's own identity this close to the token's end (aws: SESSION_READ_MARGIN_MS). */
const TOKEN_READ_MARGIN_MS = 60_000;
/** A denied VM is deleted with the brokered token only while it has this much left (aws: terminateDenied). */
const DENIED_DELETE_MARGIN_MS = 5_000;

/** Client caches keep this many brokered tokens' clients (each approval brings a token; most are the same one, cached by the broker). */
const CLIENT_CACHE = 8;

export class AzureDriver implements Driver {
  readonly kind = 'azure';
  readonly dataCenter: string;
  private bootUrl: string | undefined;
  /** The CA bundle the VMs verify an https boot endpoint with (the DMZ client's --boot-ca), carried in userData. */
  private bootCa: string | undefined;
  private readonly endpoint: string;
  private readonly writeClients = new Map<string, Clients>();
  private readonly readClients: Clients;
  /** Per VM, what its agent reported; kept in the state folder across restarts (agent-ledger.ts). */
  private readonly agents: AgentLedger;
  private readonly events = new EventEmitter();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(private readonly o: AzureDriverOptions) {
    this.dataCenter = o.dataCenter;
    this.endpoint = (o.endpoint ?? DEFAULT_ARM_ENDPOINT).replace(/\/+$/, '');
    this.readClients = this.clients(o.readCredential);
    this.agents = AgentLedger.open(o.stateDir, o.dataCenter);
    this.events.setMaxListeners(0);
  }

  attach(ctx: { bootUrl: string; bootCa?: string }): void {
    this.bootUrl = this.o.bootUrl ?? ctx.bootUrl;
    this.bootCa = ctx.bootCa;
  }

  private clients(credential: TokenCredential): Clients {
    return armClients(credential, { endpoint: this.endpoint, subscriptionId: this.o.subscriptionId, requestTimeoutMs: this.o.requestTimeoutMs ?? 30_000 });
  }

  /** The clients that act with the authority's token for this data center (after checking it is for this data center and fresh). */
  private writer(creds: ScopedCredentials): Clients {
    checkCredentials(this.dataCenter, creds);
    const a = creds.azure;
    if (!a) {
      throw new DriverError('credentials', `the authority issued no Azure token for ${this.dataCenter}; its stack entry needs driver: azure and an azure block (docs/drivers/azure.md)`);
    }
    if (a.subscriptionId.toLowerCase() !== this.o.subscriptionId.toLowerCase() || a.resourceGroup.toLowerCase() !== this.rg.toLowerCase()) {
      throw new DriverError('credentials', `the Azure token is for resource group ${a.resourceGroup} of subscription ${a.subscriptionId}, not ${this.rg} of ${this.o.subscriptionId}`);
    }
    if (Date.parse(a.expiresOn) <= Date.now()) throw new DriverError('credentials', `the Azure token for ${this.dataCenter} expired at ${a.expiresOn}`);
    let c = this.writeClients.get(a.accessToken);
    if (!c) {
      c = this.clients(staticTokenCredential(a.accessToken, a.expiresOn));
      if (this.writeClients.size >= CLIENT_CACHE) this.writeClients.delete(this.writeClients.keys().next().value as string);
      this.writeClients.set(a.accessToken, c);
    }
    return c;
  }

  private get rg(): string {
    return this.o.resourceGroup;
  }

  /** Options of one call: its request deadline. */
  private call(): { abortSignal: AbortSignal } {
    return { abortSignal: AbortSignal.timeout(this.o.requestTimeoutMs ?? 30_000) };
  }

  /** Options of a long-running operation: the whole operation's deadline and the poll interval. */
  private lro(): { abortSignal: AbortSignal; updateIntervalInMs: number } {
    return { abortSignal: AbortSignal.timeout(this.o.operationTimeoutMs ?? 900_000), updateIntervalInMs: this.o.pollIntervalMs ?? 2000 };
  }

  /** Runs one ARM call, its failure as a DriverError. */
  private async arm<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toDriverError(`${what} in ${this.dataCenter}`, err);
    }
  }

  /** The VM with its instance view, or undefined when Azure has none by that name. */
  private async fetchVm(c: Clients, name: string): Promise<VirtualMachine | undefined> {
    try {
      return await this.arm(`get VM ${name}`, () => c.compute.virtualMachines.get(this.rg, name, { ...this.call(), expand: 'instanceView' }));
    } catch (err) {
      if (err instanceof DriverError && err.kind === 'not-found') return undefined;
      throw err;
    }
  }

  private async mustFetch(c: Clients, ref: VmRef): Promise<VirtualMachine> {
    const name = vmName(ref.vmId);
    const vm = await this.fetchVm(c, name);
    if (!vm) throw new DriverError('not-found', `Azure data center ${this.dataCenter} has no VM ${name} (VM id ${ref.vmId}) in resource group ${this.rg}`);
    return vm;
  }

  private cloudId(name: string): string {
    return vmResourceId(this.o.subscriptionId, this.rg, name);
  }

  /** ARM's VM as the DMZ client's CloudVm (states.ts maps its state). */
  private view(vm: VirtualMachine): CloudVm {
    const tags = vm.tags ?? {};
    const name = vm.name ?? '';
    const cloudId = this.cloudId(name);
    const statuses = vm.instanceView?.statuses;
    const startedAt = provisionedAt(statuses);
    const entry = this.agents.get(cloudId);
    // A ready report older than the VM's last operation (a start or restart from the portal among them) is of a run
    // before it: this client holds no report of the current one.
    const known = entry && !(entry.state === 'ready' && !isCurrentReport(entry, startedAt)) ? entry : undefined;
    const mapped = mapAzureState(provisioningStateOf(vm.provisioningState, statuses), powerStateOf(statuses), known?.state);
    return {
      vmId: tags[TAG.vmId] ?? '',
      cloudId,
      dataCenter: this.dataCenter,
      name: tags[TAG.name] ?? name,
      ...createdFor(tags[TAG.address]),
      image: tags[TAG.image] ?? '',
      size: parseSizeTag(tags[TAG.size]) ?? { cpu: 0, memoryGiB: 0, diskGiB: 0 },
      encryptedDisk: tags[TAG.encrypted] === 'true',
      status: 'present',
      power: mapped.power,
      agent: mapped.agent,
      observedState: mapped.observedState,
      ...(startedAt !== undefined ? { startedAt } : {}),
    };
  }

  private setAgent(cloudId: string, entry: AgentEntry): void {
    this.agents.set(cloudId, entry);
    this.events.emit(cloudId, entry);
  }

  async createVm(creds: ScopedCredentials, input: CreateVmInput): Promise<CloudVm> {
    const c = this.writer(creds);
    const n = resourceNames(input.vmId);
    const cloudId = this.cloudId(n.vm);
    // Idempotent by name: a VM already there (a retried create) is the answer, once its provisioning has settled.
    let existing = await this.fetchVm(c, n.vm);
    if (existing && existing.tags?.[TAG.vmId] !== input.vmId) {
      throw new DriverError('failed', `VM ${n.vm} in resource group ${this.rg} is not fleet VM ${input.vmId} (its ${TAG.vmId} tag says ${existing.tags?.[TAG.vmId] ?? 'nothing'})`);
    }
    // The first create's operation still runs (it timed out on our side): its end decides.
    if (existing) existing = await this.settled(c, n.vm, existing);
    if (existing && ['failed', 'canceled'].includes(provisioningStateOf(existing.provisioningState, existing.instanceView?.statuses).toLowerCase())) {
      // The first create's VM operation failed transiently (the VM stays, provisioning Failed), or ARM canceled it
      // (another operation preempted it: Canceled): not a VM to answer with. What it left goes, and the create runs
      // again from the start.
      await this.deleteVm(creds, { vmId: input.vmId, cloudId: null });
      existing = undefined;
    }
    if (existing) {
      // The first create got as far as the VM, which Azure started: finish it as the create would.
      const power = powerStateOf(existing.instanceView?.statuses);
      if (existing.provisioningState === 'Succeeded' && (power === 'running' || power === 'starting')) {
        await this.stop(c, n.vm, this.o.powerOffMode === 'deallocate' ? 'deallocate' : 'force');
        this.setAgent(cloudId, { state: 'none' });
        return this.view(await this.mustFetch(c, { vmId: input.vmId, cloudId }));
      }
      return this.view(existing);
    }
    const vmSize = this.o.vmSize(input.size);
    if (vmSize === undefined) {
      throw new DriverError('failed', `the pack's size catalog has no Azure VM size for ${formatSize(input.size)} in data center ${this.dataCenter}`);
    }
    const image = imageReference(input.image, this.o.subscriptionId, this.rg);
    if (!image) {
      throw new DriverError('failed', `image ${input.image} is neither an Azure image resource id (/subscriptions/...), a marketplace URN (publisher:offer:sku:version) nor the name of a managed image`);
    }
    if (input.encryptedDisk && input.diskKeyHash === undefined) {
      throw new DriverError('failed', `an encrypted disk needs the hash of its key; the authority sent none for ${input.vmId}`);
    }
    const tags: Record<string, string> = {
      [TAG.stack]: this.o.stack,
      [TAG.dataCenter]: this.dataCenter,
      [TAG.vmId]: input.vmId,
      [TAG.name]: input.name,
      [TAG.image]: input.image,
      [TAG.size]: formatSizeTag(input.size),
      [TAG.encrypted]: String(input.encryptedDisk),
      ...(input.address !== undefined ? { [TAG.address]: input.address } : {}),
    };
    try {
      return await this.makeVm(c, input, n, tags, vmSize, image);
    } catch (err) {
      // A create that failed for good leaves nothing behind (DESIGN: a failed create must leave nothing created);
      // after a transient failure or a timeout the VM may still come: the retried create finds it by name.
      if (err instanceof DriverError && !err.transient && err.kind !== 'timeout') {
        const left = await this.deleteVm(creds, { vmId: input.vmId, cloudId: null }).then(
          () => undefined,
          (e: unknown) => e,
        );
        // What the clean-up could not remove is said, never swallowed: the record holds the VM (CreateFailed), and
        // its next create or delete removes what is left by name.
        if (left !== undefined) {
          const why = left instanceof Error ? left.message : String(left);
          throw new DriverError(
            err.kind,
            `${err.message}; the clean-up failed (${why}): of VM ${n.vm}, its NIC ${n.nic} and disks ${n.osDisk}, ${n.dataDisk} may remain in resource group ${this.rg}; the next apply's create again or delete removes them`,
            err.transient,
          );
        }
      }
      throw err;
    }
  }

  private async makeVm(
    c: Clients,
    input: CreateVmInput,
    n: ReturnType<typeof resourceNames>,
    tags: Record<string, string>,
    vmSize: string,
    image: NonNullable<ReturnType<typeof imageReference>>,
  ): Promise<CloudVm> {
    const subnetId = subnetResourceId(this.o.subscriptionId, this.o.vnetResourceGroup ?? this.rg, this.o.vnet, this.o.subnet);
    await this.arm(`create NIC ${n.nic}`, () =>
      c.network.networkInterfaces.beginCreateOrUpdateAndWait(
        this.rg,
        n.nic,
        { location: this.o.location, tags, ipConfigurations: [{ name: 'ipconfig1', subnet: { id: subnetId }, privateIPAllocationMethod: 'Dynamic' }] },
        this.lro(),
      ),
    );
    const cloudId = this.cloudId(n.vm);
    const made = await this.arm(`create VM ${n.vm}`, () =>
      c.compute.virtualMachines.createOrUpdate(
        this.rg,
        n.vm,
        {
          location: this.o.location,
          tags,
          hardwareProfile: { vmSize },
          storageProfile: {
            imageReference: image,
            osDisk: { name: n.osDisk, createOption: 'FromImage', deleteOption: 'Delete', managedDisk: { storageAccountType: 'Premium_LRS' } },
            dataDisks: [{ lun: 0, name: n.dataDisk, createOption: 'Empty', diskSizeGB: input.size.diskGiB, deleteOption: 'Delete', managedDisk: { storageAccountType: 'Premium_LRS' } }],
          },
          osProfile: {
            computerName: n.vm,
            adminUsername: this.o.adminUsername ?? 'fleetadmin',
            customData: Buffer.from(this.o.customData).toString('base64'),
            linuxConfiguration: {
              disablePasswordAuthentication: true,
              ssh: { publicKeys: [{ path: `/home/${this.o.adminUsername ?? 'fleetadmin'}/.ssh/authorized_keys`, keyData: this.o.sshPublicKey }] },
            },
          },
          networkProfile: { networkInterfaces: [{ id: nicResourceId(this.o.subscriptionId, this.rg, n.nic), primary: true, deleteOption: 'Delete' }] },
        },
        this.lro(),
      ),
    );
    // Azure starts the VM it creates; the diagram's createVm ends powered off.
    await this.stop(c, n.vm, this.o.powerOffMode === 'deallocate' ? 'deallocate' : 'force');
    this.setAgent(cloudId, { state: 'none' });
    return this.view({ ...made, instanceView: { statuses: [{ code: this.o.powerOffMode === 'deallocate' ? 'PowerState/deallocated' : 'PowerState/stopped' }] } });
  }

  /** The VM once its provisioning is no longer Creating, Updating or Deleting (read again every poll interval, up to the operation deadline); undefined if it went. */
  private async settled(c: Clients, name: string, vm: VirtualMachine): Promise<VirtualMachine | undefined> {
    const timeoutMs = this.o.operationTimeoutMs ?? 900_000;
    const deadline = Date.now() + timeoutMs;
    let cur: VirtualMachine | undefined = vm;
    const misses = { n: 0 };
    // Deleting too: a VM still being deleted (an earlier create's clean-up) is no answer to a create; it is waited out.
    while (cur && ['creating', 'updating', 'deleting'].includes(provisioningStateOf(cur.provisioningState, cur.instanceView?.statuses).toLowerCase())) {
      if (this.closed) throw new DriverError('failed', `the azure driver of ${this.dataCenter} closed while waiting for VM ${name} to be provisioned`);
      if (Date.now() > deadline) throw new DriverError('timeout', `VM ${name} was still ${cur.provisioningState ?? 'being provisioned'} after ${timeoutMs} ms`, false);
      await this.pause(this.o.pollIntervalMs ?? 2000);
      let read: VirtualMachine | undefined | typeof MISSED;
      do read = await this.pollRead(() => this.fetchVm(c, name), misses, deadline, `VM ${name} to be provisioned`, (ms) => this.pause(ms));
      while (read === MISSED);
      cur = read;
    }
    return cur;
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  /**
   * One read of a wait loop. A transient failure (429 throttled, a 5xx, a reset) does not end the wait, which the
   * next read may finish: it waits ARM's Retry-After, or a pause doubling with each miss in a row, and answers
   * MISSED; past the deadline the wait is a timeout naming that failure.
   */
  private async pollRead<T>(read: () => Promise<T>, misses: { n: number }, deadline: number, what: string, pause: (ms: number) => Promise<void>): Promise<T | typeof MISSED> {
    try {
      const out = await read();
      misses.n = 0;
      return out;
    } catch (err) {
      if (!(err instanceof DriverError && err.transient) || this.closed) throw err;
      const left = deadline - Date.now();
      if (left <= 0) throw new DriverError('timeout', `gave up waiting for ${what}: ARM's reads kept failing until the deadline (${err.message})`, false);
      misses.n++;
      await pause(Math.min(left, Math.max(err.retryAfterMs ?? 0, (this.o.pollIntervalMs ?? 2000) * 2 ** Math.min(misses.n, 4))));
      return MISSED;
    }
  }

  /** POST powerOff (graceful or forced) or deallocate, polled to its end. */
  private stop(c: Clients, name: string, how: 'graceful' | 'force' | 'deallocate'): Promise<void> {
    if (how === 'deallocate') return this.arm(`deallocate VM ${name}`, () => c.compute.virtualMachines.deallocate(this.rg, name, this.lro()));
    return this.arm(`power off VM ${name}`, () => c.compute.virtualMachines.powerOff(this.rg, name, { ...this.lro(), skipShutdown: how === 'force' }));
  }

  /** Reads the VM back after a change (with the mutating token: the change's effect, not a stale read). */
  private async after(c: Clients, ref: VmRef): Promise<CloudVm> {
    return this.view(await this.mustFetch(c, ref));
  }

  async powerOn(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm> {
    const c = this.writer(creds);
    const name = vmName(ref.vmId);
    await this.arm(`start VM ${name}`, () => c.compute.virtualMachines.start(this.rg, name, this.lro()));
    this.setAgent(this.cloudId(name), { state: 'none' });
    return this.after(c, ref);
  }

  async boot(creds: ScopedCredentials, ref: VmRef, opts: { bootToken: string }): Promise<CloudVm> {
    const c = this.writer(creds);
    const name = vmName(ref.vmId);
    const cloudId = this.cloudId(name);
    const vm = await this.mustFetch(c, ref);
    const power = powerStateOf(vm.instanceView?.statuses);
    if (power !== 'running' && power !== 'starting') {
      throw new DriverError('invalid-state', `VM ${name} is ${power === 'none' ? 'not running' : power}; power it on before booting`);
    }
    if (!this.bootUrl) throw new DriverError('failed', 'the DMZ client has not told the driver its boot endpoint yet');
    const tags = vm.tags ?? {};
    // Rendered first: a script the cloud cannot take (too large) fails the boot with nothing changed.
    const script = this.o.bootScript({
      vmId: ref.vmId,
      cloudId,
      image: tags[TAG.image] ?? '',
      bootUrl: this.bootUrl,
      bootToken: opts.bootToken,
      encryptedDisk: tags[TAG.encrypted] === 'true',
      dataDevice: AZURE_DATA_DEVICE,
      ...(this.bootCa ? { bootCa: this.bootCa } : {}),
    });
    const userData = Buffer.from(script).toString('base64');
    // Known before the token reaches the VM: the agent's first report may come before the PATCH is answered.
    const prior = this.agents.get(cloudId);
    const booting: AgentEntry = { state: 'booting', tokenHash: sha256(opts.bootToken) };
    this.setAgent(cloudId, booting);
    try {
      await this.arm(`hand VM ${name} its boot token`, () => c.compute.virtualMachines.update(this.rg, name, { userData }, this.lro()));
    } catch (err) {
      // ARM refused the PATCH for good: the token never reached the VM, which is as it was (not Starting). After a
      // transient failure or a timeout the PATCH may have gone through, and the agent's report must still be believed.
      const now = this.agents.get(cloudId);
      if (err instanceof DriverError && !err.transient && err.kind !== 'timeout' && now?.state === 'booting' && now.tokenHash === booting.tokenHash) {
        if (prior) this.setAgent(cloudId, prior);
        else this.agents.delete(cloudId);
      }
      throw err;
    }
    return this.view(vm);
  }

  agentStatus(report: AgentReport): boolean {
    const entry = this.agents.get(report.cloudId);
    if (!entry?.tokenHash || entry.tokenHash !== sha256(report.bootToken)) return false;
    if (report.vmId !== '' && this.cloudId(vmName(report.vmId)) !== report.cloudId) return false;
    this.setAgent(report.cloudId, {
      state: report.state,
      tokenHash: entry.tokenHash,
      at: new Date().toISOString(),
      ...(report.detail !== undefined ? { detail: report.detail } : {}),
      ...(report.denied === true ? { denied: true } : {}),
      ...(entry.tokenDenied ? { tokenDenied: true } : {}),
    });
    return true;
  }

  bootDenied(boot: { vmId: string; cloudId: string; bootToken: string }): boolean {
    const entry = this.agents.get(boot.cloudId);
    // Only this boot's token, while it boots (aws: bootDenied): a made-up token is anyone's.
    if (entry?.state !== 'booting' || !entry.tokenHash || entry.tokenHash !== sha256(boot.bootToken)) return false;
    if (boot.vmId !== '' && this.cloudId(vmName(boot.vmId)) !== boot.cloudId) return false;
    if (!entry.tokenDenied) this.setAgent(boot.cloudId, { ...entry, tokenDenied: true });
    return true;
  }

  async awaitReady(creds: ScopedCredentials, ref: VmRef, opts: { timeoutMs?: number } = {}): Promise<CloudVm> {
    const c = this.writer(creds);
    const name = vmName(ref.vmId);
    const cloudId = this.cloudId(name);
    const timeoutMs = opts.timeoutMs ?? 300_000;
    const deadline = Date.now() + timeoutMs;
    const misses = { n: 0 };
    for (;;) {
      const entry = this.agents.get(cloudId);
      if (entry?.state === 'failed') {
        const why = `VM ${name} did not become ready: ${entry.detail ?? 'its boot agent reported a failure'}`;
        if (!entry.denied) throw new DriverError('boot-failed', why);
        // The patent's trusted boot: a VM the authority does not recognise is not allowed to live.
        await this.deleteDenied(c, creds, ref, why);
        throw new DriverError('boot-denied', `${why}; the VM was deleted`);
      }
      const vm = await this.pollRead(() => this.mustFetch(this.reader(c, creds), ref), misses, deadline, `VM ${name} to report ready`, (ms) => this.agentChange(cloudId, ms));
      if (vm === MISSED) continue;
      if (entry?.state === 'ready') return this.view(vm);
      // Between reports, the VM itself: one that powered off during its boot without a report this client believes
      // (a report needs the token it issued) had its boot denied only when the boot endpoint denied that token
      // (bootDenied): trusted boot, it goes. Otherwise its agent failed for another reason and its reports were lost,
      // or its guest halted: it is kept, powered off, and the next apply boots it again under a fresh token. A denied
      // boot check with another token (anyone in the DMZ network can send one) says nothing of this VM (aws: the same).
      const power = powerStateOf(vm.instanceView?.statuses);
      if (power === 'deallocating' || power === 'deallocated') {
        // A guest that powers itself off leaves its VM stopped, still allocated; only ARM deallocates (an operator, an
        // auto-shutdown schedule, a spot eviction). Not a denial: the VM and its data disk stay.
        throw new DriverError('boot-failed', `VM ${name} was ${power} during its boot, by ARM, not by its guest (a guest's poweroff leaves it stopped): someone or a schedule deallocated it; it is kept, powered off`);
      }
      if (power === 'stopping' || power === 'stopped') {
        if (this.agents.get(cloudId)?.tokenDenied) {
          const why = `VM ${name} powered itself off during its boot without reporting ready, after the boot endpoint denied its boot token (a denied boot)`;
          await this.deleteDenied(c, creds, ref, why);
          throw new DriverError('boot-denied', `${why}; it was deleted`);
        }
        throw new DriverError(
          'boot-failed',
          `VM ${name} powered itself off during its boot without a report this DMZ client could believe (a report needs the boot token it was booted with), and no boot request with that token was denied: not a denied boot (its agent failed, its reports lost, or its guest halted); it is kept (powered off: stopped, still allocated), and the next apply boots it again with a new token`,
        );
      }
      if (this.closed) throw new DriverError('failed', `the azure driver of ${this.dataCenter} closed while waiting for ${name}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new DriverError('timeout', `VM ${name} did not report ready within ${timeoutMs} ms`, false);
      await this.agentChange(cloudId, Math.min(left, this.o.pollIntervalMs ?? 2000));
    }
  }

  /**
   * The clients a wait's reads use: the brokered token's while it has a minute left, then the DMZ client's own read
   * identity (which renews itself). A boot may be waited for 10 minutes (aws: reader).
   */
  private reader(c: Clients, creds: ScopedCredentials): Clients {
    const exp = Date.parse(creds.azure?.expiresOn ?? '');
    return exp - Date.now() > TOKEN_READ_MARGIN_MS ? c : this.readClients;
  }

  /**
   * Deletes a VM whose boot awaitReady found denied, with the clients of the brokered token the wait began with
   * (`c`): the step's scoped credentials may have expired during the wait (they last as long as the longest wait),
   * and writer() would refuse them, a `credentials` failure hiding the denial and leaving the VM. The brokered token
   * outlives them (handed out with at least 20 minutes left); when it has expired too (the call would be refused),
   * or the delete fails, it throws boot-denied saying the VM was not deleted yet (aws: terminateDenied). A transient
   * failure is boot-denied too, and transient: the DMZ client tries awaitReady again, which finds the denial again
   * and deletes again; when the last try fails too, the step is still a denied boot (before, driver.transient).
   */
  private async deleteDenied(c: Clients, creds: ScopedCredentials, ref: VmRef, why: string): Promise<void> {
    const exp = creds.azure?.expiresOn ?? '';
    const next = 'its agent powers it off (stopped, still allocated); the next apply (docs/recovery.md, BootFailed) deletes it and creates the member again';
    if (!(Date.parse(exp) - Date.now() > DENIED_DELETE_MARGIN_MS)) {
      throw new DriverError('boot-denied', `${why}; it was not deleted yet: this step's Azure token expired at ${exp} during the wait; ${next}`);
    }
    try {
      await this.remove(c, ref.vmId);
    } catch (err) {
      const left = err instanceof Error ? err.message : String(err);
      const transient = err instanceof DriverError && err.transient;
      const retryAfterMs = err instanceof DriverError ? err.retryAfterMs : undefined;
      throw new DriverError(
        'boot-denied',
        `${why}; it was not deleted yet (${left}): of VM ${vmName(ref.vmId)}, its NIC and disks may remain in resource group ${this.rg}; ${next}`,
        transient,
        retryAfterMs !== undefined ? { retryAfterMs } : {},
      );
    }
  }

  /** Resolves on the VM's next agent report, or after `ms`. */
  private agentChange(cloudId: string, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.timers.delete(t);
        this.events.off(cloudId, done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.timers.add(t);
      this.events.on(cloudId, done);
    });
  }

  async shutdown(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm> {
    const c = this.writer(creds);
    const name = vmName(ref.vmId);
    const cloudId = this.cloudId(name);
    // The boot's reports are void from here (no token hash: a late report is not believed) ...
    const prior = this.agents.get(cloudId);
    this.setAgent(cloudId, { state: 'stopping' });
    try {
      await this.stop(c, name, 'graceful');
    } catch (err) {
      // ... unless ARM refused the shutdown: the VM runs on as it was, and must not read as ShuttingDown.
      if (prior) this.setAgent(cloudId, prior);
      else this.agents.delete(cloudId);
      throw err;
    }
    return this.after(c, ref);
  }

  async powerOff(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm> {
    const c = this.writer(creds);
    const name = vmName(ref.vmId);
    await this.stop(c, name, this.o.powerOffMode === 'deallocate' ? 'deallocate' : 'force');
    this.setAgent(this.cloudId(name), { state: 'none' });
    return this.after(c, ref);
  }

  async resize(creds: ScopedCredentials, ref: VmRef, size: VmSize): Promise<CloudVm> {
    const c = this.writer(creds);
    const name = vmName(ref.vmId);
    const vm = await this.mustFetch(c, ref);
    const power = powerStateOf(vm.instanceView?.statuses);
    if (power === 'running' || power === 'starting' || power === 'stopping') {
      throw new DriverError('invalid-state', `VM ${name} is ${power}; it must be powered off to resize`);
    }
    const vmSize = this.o.vmSize(size);
    if (vmSize === undefined) throw new DriverError('failed', `the pack's size catalog has no Azure VM size for ${formatSize(size)} in data center ${this.dataCenter}`);
    const updated = await this.arm(`resize VM ${name} to ${vmSize}`, () =>
      c.compute.virtualMachines.update(this.rg, name, { hardwareProfile: { vmSize }, tags: { ...(vm.tags ?? {}), [TAG.size]: formatSizeTag(size) } }, this.lro()),
    );
    return this.view({ ...updated, instanceView: vm.instanceView });
  }

  async deleteVm(creds: ScopedCredentials, ref: VmRef): Promise<void> {
    await this.remove(this.writer(creds), ref.vmId);
  }

  /** DELETE the VM, its NIC and disks with clients that may (each 404 is fine). */
  private async remove(c: Clients, vmId: string): Promise<void> {
    const n = resourceNames(vmId);
    const gone = (err: unknown) => {
      if (err instanceof DriverError && err.kind === 'not-found') return;
      throw err;
    };
    // The VM first: its NIC and disks cannot go while it holds them (deleteOption Delete usually takes them along).
    await this.arm(`delete VM ${n.vm}`, () => c.compute.virtualMachines.delete(this.rg, n.vm, this.lro())).catch(gone);
    await this.arm(`delete NIC ${n.nic}`, () => c.network.networkInterfaces.beginDeleteAndWait(this.rg, n.nic, this.lro())).catch(gone);
    for (const disk of [n.osDisk, n.dataDisk]) {
      await this.arm(`delete disk ${disk}`, () => c.compute.disks.delete(this.rg, disk, this.lro())).catch(gone);
    }
    this.agents.delete(this.cloudId(n.vm));
  }

  async get(_creds: ScopedCredentials, ref: VmRef): Promise<CloudVm | undefined> {
    const vm = await this.fetchVm(this.readClients, vmName(ref.vmId));
    return vm ? this.view(vm) : undefined;
  }

  /** The DMZ client's own principal can read the resource group's VMs: the first page of the list (readiness). */
  async ready(): Promise<void> {
    await this.arm(`list VMs of resource group ${this.rg}`, async () => {
      await this.readClients.compute.virtualMachines.list(this.rg, this.call()).byPage().next();
    });
  }

  /**
   * Every page of the resource group's VM list, over nextLink. Each page is its own request under its own deadline
   * (requestTimeoutMs: the clients' per-request policy, and the abort signal of its list call), so a listing of many
   * pages takes as long as its pages do, up to LIST_MAX_PAGES of them; a nextLink ARM answers a second time is a
   * failure, not a walk that never ends.
   */
  private async listPages(): Promise<VirtualMachine[]> {
    const all: VirtualMachine[] = [];
    const seen = new Set<string>();
    let token: string | undefined;
    for (let page = 1; ; page++) {
      const got = await this.arm(`list VMs of resource group ${this.rg} (page ${page})`, async () => {
        const pages = this.readClients.compute.virtualMachines.list(this.rg, this.call()).byPage(token !== undefined ? { continuationToken: token } : undefined);
        const r = await pages.next();
        return r.done ? undefined : (r.value as VirtualMachine[] & { continuationToken?: string });
      });
      if (!got) return all;
      all.push(...got);
      const next = got.continuationToken;
      if (!next) return all;
      if (seen.has(next)) {
        throw new DriverError('failed', `ARM answered page ${page} of the VM list of resource group ${this.rg} with a nextLink it gave before (${next}) again: the listing would never end`);
      }
      if (page >= LIST_MAX_PAGES) {
        throw new DriverError('failed', `the VM list of resource group ${this.rg} goes on past ${LIST_MAX_PAGES} pages (ARM keeps answering a nextLink): not read to its end`);
      }
      seen.add(next);
      token = next;
    }
  }

  async list(_creds: ScopedCredentials): Promise<CloudVm[]> {
    const ours = (await this.listPages()).filter((vm) => vm.tags?.[TAG.stack] === this.o.stack && vm.name);
    // ARM lists without power states; each VM's instance view, a few at a time.
    const out: CloudVm[] = [];
    for (let i = 0; i < ours.length; i += 8) {
      const views = await Promise.all(
        ours.slice(i, i + 8).map(async (vm) => {
          const name = vm.name as string;
          const iv = await this.arm(`read VM ${name}'s instance view`, () => this.readClients.compute.virtualMachines.instanceView(this.rg, name, this.call())).catch(
            (err: unknown) => {
              if (err instanceof DriverError && err.kind === 'not-found') return undefined; // gone since the list
              throw err;
            },
          );
          return iv ? this.view({ ...vm, instanceView: iv }) : undefined;
        }),
      );
      for (const v of views) if (v) out.push(v);
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.events.removeAllListeners();
  }
}
