// Azure Resource Manager as nock serves it to the azure driver's tests: the
// virtualMachines, networkInterfaces and disks calls of one resource group,
// answered in ARM's documented wire format (azure-rest-api-specs examples
// and the ARM async-operation guide):
// - bodies `{ name, id, type, location, tags, properties: { ...,
//   provisioningState, instanceView? } }`, errors `{ error: { code, message } }`;
// - PUT answers 201 (new) or 200 with `Azure-AsyncOperation`; POST actions
//   and DELETE answer 202 with `Azure-AsyncOperation` and `Location`; the
//   operation's status resource reads `InProgress` `pollsToComplete` times,
//   then `Succeeded` (the change happens then) or `Failed` with its error;
//   the Location URL answers 202 until then, 200 after;
// - lists page over `nextLink`.
// Its VMs run the boot protocol the way the shipped boot agent does: once a
// VM runs and its userData holds a boot script it has not run, it posts
// { cloudId, vmId, image, bootToken } to the script's boot URL, then its
// state to <bootUrl>/status; a denied VM powers itself off.
// Faults (inject) answer a call as Azure fails it: an error status and
// code (with Retry-After), a failed long-running operation, a connection
// reset, or no answer at all.
// Test helper only: never imported by the driver.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import nock from 'nock';
import { runUserData, stopFakeVm, type AgentRun } from '../../boot-agent/testing.ts';

/** The ARM calls the driver makes, as fault targets. */
export type ArmCall =
  | 'getVm'
  | 'putVm'
  | 'patchVm'
  | 'deleteVm'
  | 'start'
  | 'powerOff'
  | 'deallocate'
  | 'instanceView'
  | 'listVms'
  | 'putNic'
  | 'getNic'
  | 'deleteNic'
  | 'deleteDisk'
  | 'poll';

export type ArmFault =
  /** Answers the call with this status and `{ error: { code, message } }`. */
  | { call: ArmCall; status: number; code: string; message?: string; retryAfter?: number; times?: number; after?: number }
  /** Accepts the call, then its long-running operation fails with this error. */
  | { call: ArmCall; failOperation: { code: string; message?: string }; times?: number }
  /** The connection is reset before any answer. */
  | { call: ArmCall; reset: true; times?: number }
  /** Never answers. */
  | { call: ArmCall; hang: true; times?: number }
  /** Answers as ARM would, `delayMs` late (a slow page of a large list). */
  | { call: ArmCall; delayMs: number; times?: number };

export interface ArmRequest {
  method: string;
  call: ArmCall | 'result' | 'other';
  path: string;
  query: URLSearchParams;
  body: unknown;
  authorization: string | undefined;
}

type Power = 'starting' | 'running' | 'stopping' | 'stopped' | 'deallocating' | 'deallocated';

interface FakeVm {
  name: string;
  location: string;
  tags: Record<string, string>;
  properties: Record<string, unknown>;
  provisioningState: string;
  power: Power;
  /** base64 custom data as PUT (ARM never returns it). */
  customData?: string;
  userData?: string;
  /** The boot token the VM's agent last acted on. */
  agentToken?: string;
  /** When its last operation ended (create, PATCH, start, power-off, deallocate): the instance view's ProvisioningState `time`. */
  provisionedAt?: string;
}

interface Operation {
  polls: number;
  error?: { code: string; message: string };
  /** Applies the change when the operation succeeds. */
  apply: () => void;
  done: boolean;
}

export interface ArmFakeOptions {
  endpoint?: string;
  subscriptionId: string;
  resourceGroup: string;
  location: string;
  /** Polls answered InProgress before the operation ends. Default 1. */
  pollsToComplete?: number;
  /** VMs per list page. Default 50. */
  pageSize?: number;
  /** A faulty ARM: every page's nextLink is the first page's (the walk would never end). */
  loopNextLink?: boolean;
  /**
   * Run a rendered boot agent (providers/boot-agent agent.sh) found in userData
   * with sh, as the VM would (fake cryptsetup and poweroff from `binDir`, see
   * boot-agent/testing.ts; each VM's files under `vmRoot/<name>`). Without it
   * the agent's protocol is followed in process.
   */
  agentShell?: { binDir: string; vmRoot: string };
}

const API = /\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.(Compute|Network)\/(virtualMachines|networkInterfaces|disks)(?:\/([^/?]+))?(?:\/([^/?]+))?$/i;
const OPERATION = /\/providers\/Microsoft\.(?:Compute|Network)\/locations\/[^/]+\/(operations|operationResults)\/([^/?]+)$/i;

function armError(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

export class ArmFake {
  readonly endpoint: string;
  readonly vms = new Map<string, FakeVm>();
  readonly nics = new Map<string, Record<string, unknown>>();
  readonly disks = new Set<string>();
  readonly requests: ArmRequest[] = [];
  /** When set, the token the VMs' agents present instead of the one in their userData (someone swapped it). */
  tamper: ((token: string) => string) | undefined;
  /** When set, the image the VMs' agents claim instead of the one in their userData (their own token is then denied). */
  tamperImage: ((image: string) => string) | undefined;
  /** What the VMs' agents were told by the boot endpoint, in order. */
  readonly boots: { vmName: string; approved: boolean }[] = [];
  /** The agent scripts run with sh (agentShell), in order. */
  readonly runs: { vmName: string; run: AgentRun }[] = [];
  private readonly ops = new Map<string, Operation>();
  /** `pass`: calls still answered normally before the fault starts (a fault's `after`). */
  private faults: (ArmFault & { left: number; pass: number })[] = [];
  private readonly resets = new Map<ArmCall, number>();
  private readonly scopes: nock.Scope[] = [];
  /** Agents in flight (tests wait for them before closing). */
  private readonly agents = new Set<Promise<void>>();

  constructor(private readonly o: ArmFakeOptions) {
    this.endpoint = (o.endpoint ?? 'https://management.azure.com').replace(/\/+$/, '');
  }

  /** Serves ARM through nock (loopback stays reachable: the VMs' agents and the DMZ client use it). */
  install(): this {
    nock.disableNetConnect();
    nock.enableNetConnect(/127\.0\.0\.1|localhost/);
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- nock hands the request to a reply function as its `this`
    const fake = this;
    for (const method of ['GET', 'PUT', 'PATCH', 'POST', 'DELETE']) {
      const scope = nock(this.endpoint)
        .persist()
        .intercept((p) => !this.resetArmed(method, p), method)
        .reply(function (uri, body) {
          try {
            return fake.handle(method, uri, body, this.req.headers);
          } catch (err) {
            // A body the fake cannot read: ARM's answer to a malformed request (a throw here would hang the request).
            return [400, armError('InvalidRequestContent', (err as Error).message)];
          }
        });
      this.scopes.push(scope);
      const resets = nock(this.endpoint)
        .persist()
        .intercept((p) => this.resetArmed(method, p), method)
        .replyWithError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
      resets.on('request', (_req, _i, _body) => {
        const call = this.classify(method, _req.path).call;
        if (call !== 'other' && call !== 'result') this.resets.set(call, (this.resets.get(call) ?? 1) - 1);
      });
      this.scopes.push(resets);
    }
    return this;
  }

  /** Waits for every agent run started so far. */
  async settled(): Promise<void> {
    await Promise.all([...this.agents]);
  }

  async close(): Promise<void> {
    await Promise.all([...this.agents]);
    for (const s of this.scopes) s.persist(false);
    nock.cleanAll();
    nock.enableNetConnect();
  }

  /** Later calls fail this way (each `times` times, default always) until heal(). */
  inject(fault: ArmFault): void {
    if ('reset' in fault) {
      this.resets.set(fault.call, fault.times ?? Number.POSITIVE_INFINITY);
      return;
    }
    this.faults.push({ ...fault, left: fault.times ?? Number.POSITIVE_INFINITY, pass: 'after' in fault ? (fault.after ?? 0) : 0 });
  }

  heal(): void {
    this.faults = [];
    this.resets.clear();
  }

  /** The VM is gone behind the driver's back (deleted in the portal), its NIC and disks with it. */
  vanish(vmName: string): void {
    this.vms.delete(vmName);
    this.nics.delete(`${vmName}-nic`);
    this.disks.delete(`${vmName}-os`);
    this.disks.delete(`${vmName}-data`);
  }

  /** Requests of one call, in order. */
  calls(call: ArmRequest['call']): ArmRequest[] {
    return this.requests.filter((r) => r.call === call);
  }

  private resetArmed(method: string, path: string): boolean {
    const { call } = this.classify(method, path);
    return call !== 'other' && call !== 'result' && (this.resets.get(call) ?? 0) > 0;
  }

  private classify(method: string, path: string): { call: ArmRequest['call']; kind?: string; name?: string; action?: string; opId?: string } {
    const pathOnly = path.split('?')[0];
    const op = OPERATION.exec(pathOnly);
    if (op) return { call: op[1].toLowerCase() === 'operations' ? 'poll' : 'result', opId: op[2] };
    const m = API.exec(pathOnly);
    if (!m) return { call: 'other' };
    const kind = m[4].toLowerCase();
    const name = m[5];
    const action = m[6];
    if (kind === 'virtualmachines') {
      if (!name) return { call: method === 'GET' ? 'listVms' : 'other', kind };
      if (action === 'instanceView' && method === 'GET') return { call: 'instanceView', kind, name };
      if (action && method === 'POST' && ['start', 'powerOff', 'deallocate'].includes(action)) return { call: action as ArmCall, kind, name, action };
      if (action) return { call: 'other' };
      const byMethod: Record<string, ArmCall> = { GET: 'getVm', PUT: 'putVm', PATCH: 'patchVm', DELETE: 'deleteVm' };
      return { call: byMethod[method] ?? 'other', kind, name };
    }
    if (kind === 'networkinterfaces' && name && !action) {
      const byMethod: Record<string, ArmCall> = { GET: 'getNic', PUT: 'putNic', DELETE: 'deleteNic' };
      return { call: byMethod[method] ?? 'other', kind, name };
    }
    if (kind === 'disks' && name && !action && method === 'DELETE') return { call: 'deleteDisk', kind, name };
    return { call: 'other' };
  }

  private handle(method: string, uri: string, body: unknown, headers: Record<string, string | string[] | undefined>): nock.ReplyFnResult | Promise<nock.ReplyFnResult> {
    const url = new URL(uri, this.endpoint);
    const c = this.classify(method, url.pathname);
    const auth = headers.authorization;
    let parsed: unknown = body;
    if (typeof body === 'string' && body !== '') {
      try {
        parsed = JSON.parse(body);
      } catch {
        parsed = body;
      }
    }
    this.requests.push({ method, call: c.call, path: url.pathname, query: url.searchParams, body: parsed, authorization: Array.isArray(auth) ? auth[0] : auth });
    if (c.call !== 'other' && c.call !== 'result') {
      const fault = this.faults.find((f) => f.call === c.call && f.left > 0);
      if (fault && fault.pass > 0) fault.pass--;
      else if (fault) {
        fault.left--;
        if ('hang' in fault) return new Promise<nock.ReplyFnResult>(() => undefined);
        if ('status' in fault) {
          return [fault.status, armError(fault.code, fault.message ?? `${fault.code} (injected)`), fault.retryAfter !== undefined ? { 'Retry-After': String(fault.retryAfter) } : {}];
        }
        if ('failOperation' in fault) return this.accept(c, parsed, { code: fault.failOperation.code, message: fault.failOperation.message ?? `${fault.failOperation.code} (injected)` });
        if ('delayMs' in fault) {
          // The answer as of now (a list page reads its request's query), sent late.
          const answer = this.accept(c, parsed);
          return new Promise<nock.ReplyFnResult>((resolve) => setTimeout(() => resolve(answer), fault.delayMs));
        }
      }
    }
    return this.accept(c, parsed);
  }

  private notFound(kind: string, name: string): nock.ReplyFnResult {
    const type = kind === 'virtualmachines' ? 'Microsoft.Compute/virtualMachines' : kind === 'disks' ? 'Microsoft.Compute/disks' : 'Microsoft.Network/networkInterfaces';
    return [404, armError('ResourceNotFound', `The Resource '${type}/${name}' under resource group '${this.o.resourceGroup}' was not found.`)];
  }

  /** An accepted call: its answer, and for a long-running one its operation (which fails with `error`, when given). */
  private accept(c: ReturnType<ArmFake['classify']>, body: unknown, error?: { code: string; message: string }): nock.ReplyFnResult {
    const name = c.name ?? '';
    switch (c.call) {
      case 'poll': {
        const op = this.ops.get(c.opId ?? '');
        if (!op) return [404, armError('NotFound', 'no such operation')];
        if (op.polls > 0) {
          op.polls--;
          return [200, { name: c.opId, status: 'InProgress', startTime: new Date().toISOString() }];
        }
        if (!op.done) {
          op.done = true;
          if (!op.error) op.apply();
        }
        return op.error
          ? [200, { name: c.opId, status: 'Failed', startTime: new Date().toISOString(), endTime: new Date().toISOString(), error: op.error }]
          : [200, { name: c.opId, status: 'Succeeded', startTime: new Date().toISOString(), endTime: new Date().toISOString() }];
      }
      case 'result': {
        const op = this.ops.get(c.opId ?? '');
        if (!op) return [404, armError('NotFound', 'no such operation')];
        if (!op.done) return [202, '', { Location: this.opUrl('operationResults', c.opId ?? '') }];
        return op.error ? [200, armError(op.error.code, op.error.message)] : [200, ''];
      }
      case 'getVm': {
        const vm = this.vms.get(name);
        return vm ? [200, this.vmBody(vm, true)] : this.notFound('virtualmachines', name);
      }
      case 'instanceView': {
        const vm = this.vms.get(name);
        return vm ? [200, this.instanceView(vm)] : this.notFound('virtualmachines', name);
      }
      case 'listVms': {
        const all = [...this.vms.values()].sort((a, b) => a.name.localeCompare(b.name));
        const size = this.o.pageSize ?? 50;
        const skip = Number(new URLSearchParams(this.requests.at(-1)?.query).get('$skiptoken') ?? '0');
        const page = all.slice(skip, skip + size);
        const nextSkip = this.o.loopNextLink ? size : skip + size;
        const next = nextSkip < all.length ? `${this.endpoint}${this.rgPath()}/providers/Microsoft.Compute/virtualMachines?api-version=2026-03-01&$skiptoken=${nextSkip}` : undefined;
        return [200, { value: page.map((v) => this.vmBody(v, false)), ...(next ? { nextLink: next } : {}) }];
      }
      case 'putVm': {
        const b = body as { location: string; tags?: Record<string, string>; properties: Record<string, unknown> };
        const existing = this.vms.get(name);
        if (existing) {
          return [200, this.vmBody(existing, false), { 'Azure-AsyncOperation': this.newOp(() => undefined, error) }];
        }
        const os = (b.properties.osProfile ?? {}) as { customData?: string };
        const props = { ...b.properties, vmId: randomUUID() };
        delete (props as { osProfile?: unknown }).osProfile;
        const vm: FakeVm = { name, location: b.location, tags: b.tags ?? {}, properties: props, provisioningState: 'Creating', power: 'starting', ...(os.customData ? { customData: os.customData } : {}) };
        this.vms.set(name, vm);
        const headers = {
          'Azure-AsyncOperation': this.newOp(() => {
            vm.provisioningState = 'Succeeded';
            vm.provisionedAt = new Date().toISOString();
            vm.power = 'running';
            this.disks.add(`${name}-os`);
            this.disks.add(`${name}-data`);
          }, error, () => {
            vm.provisioningState = 'Failed';
          }),
        };
        return [201, this.vmBody(vm, false), headers];
      }
      case 'patchVm': {
        const vm = this.vms.get(name);
        if (!vm) return this.notFound('virtualmachines', name);
        const b = body as { tags?: Record<string, string>; properties?: { hardwareProfile?: unknown; userData?: string } };
        vm.provisioningState = 'Updating';
        const headers = {
          'Azure-AsyncOperation': this.newOp(() => {
            vm.provisioningState = 'Succeeded';
            vm.provisionedAt = new Date().toISOString();
            if (b.tags) vm.tags = b.tags;
            if (b.properties?.hardwareProfile) vm.properties.hardwareProfile = b.properties.hardwareProfile;
            if (b.properties?.userData !== undefined) {
              vm.userData = b.properties.userData;
              this.runAgent(vm);
            }
          }, error, () => {
            vm.provisioningState = 'Failed';
          }),
        };
        return [200, this.vmBody(vm, false), headers];
      }
      case 'start':
      case 'powerOff':
      case 'deallocate': {
        const vm = this.vms.get(name);
        if (!vm) return this.notFound('virtualmachines', name);
        const target: Record<string, [Power, Power]> = { start: ['starting', 'running'], powerOff: ['stopping', 'stopped'], deallocate: ['deallocating', 'deallocated'] };
        const [during, after] = target[c.call];
        const before = vm.power;
        vm.power = during;
        return this.accepted(
          () => {
            vm.power = after;
            vm.provisionedAt = new Date().toISOString();
            if (c.call === 'start') this.runAgent(vm);
            else if (this.o.agentShell) stopFakeVm(join(this.o.agentShell.vmRoot, vm.name));
          },
          error,
          () => {
            vm.power = before;
          },
        );
      }
      case 'deleteVm': {
        const vm = this.vms.get(name);
        if (!vm) return [204, ''];
        vm.provisioningState = 'Deleting';
        return this.accepted(() => this.vanish(name), error, () => {
          vm.provisioningState = 'Failed';
        });
      }
      case 'putNic': {
        const b = body as Record<string, unknown>;
        const isNew = !this.nics.has(name);
        const nic = { ...b, name, id: `${this.rgPath()}/providers/Microsoft.Network/networkInterfaces/${name}`, type: 'Microsoft.Network/networkInterfaces' };
        return [isNew ? 201 : 200, { ...nic, properties: { ...(b.properties as object), provisioningState: 'Updating' } }, { 'Azure-AsyncOperation': this.newOp(() => this.nics.set(name, nic), error) }];
      }
      case 'getNic': {
        const nic = this.nics.get(name);
        return nic ? [200, { ...nic, properties: { ...(nic.properties as object), provisioningState: 'Succeeded' } }] : this.notFound('networkinterfaces', name);
      }
      case 'deleteNic':
        if (!this.nics.has(name)) return [204, ''];
        return this.accepted(() => this.nics.delete(name), error);
      case 'deleteDisk':
        if (!this.disks.has(name)) return [204, ''];
        return this.accepted(() => this.disks.delete(name), error);
      default:
        return [400, armError('InvalidRequest', `the ARM fake does not serve this call`)];
    }
  }

  private rgPath(): string {
    return `/subscriptions/${this.o.subscriptionId}/resourceGroups/${this.o.resourceGroup}`;
  }

  private opUrl(kind: 'operations' | 'operationResults', id: string): string {
    return `${this.endpoint}/subscriptions/${this.o.subscriptionId}/providers/Microsoft.Compute/locations/${this.o.location}/${kind}/${id}?api-version=2026-03-01`;
  }

  /** A new operation; returns its Azure-AsyncOperation URL. `undo` runs when it fails. */
  private newOp(apply: () => void, error?: { code: string; message: string }, undo?: () => void): string {
    const id = randomUUID();
    this.ops.set(id, { polls: this.o.pollsToComplete ?? 1, apply, done: false, ...(error ? { error } : {}) });
    if (error && undo) undo();
    return this.opUrl('operations', id);
  }

  /** 202 Accepted with both headers, as ARM answers POST actions and DELETE. */
  private accepted(apply: () => void, error?: { code: string; message: string }, undo?: () => void): nock.ReplyFnResult {
    const async = this.newOp(apply, error, undo);
    const id = new URL(async).pathname.split('/').at(-1) as string;
    return [202, '', { 'Azure-AsyncOperation': async, Location: this.opUrl('operationResults', id) }];
  }

  private statuses(vm: FakeVm): { code: string; level: string; displayStatus: string; time?: string }[] {
    const ps = vm.provisioningState.toLowerCase();
    const out: { code: string; level: string; displayStatus: string; time?: string }[] = [
      { code: `ProvisioningState/${ps}`, level: 'Info', displayStatus: `Provisioning ${ps}`, ...(vm.provisionedAt !== undefined ? { time: vm.provisionedAt } : {}) },
    ];
    if (vm.provisioningState !== 'Creating') out.push({ code: `PowerState/${vm.power}`, level: 'Info', displayStatus: `VM ${vm.power}` });
    return out;
  }

  private instanceView(vm: FakeVm): Record<string, unknown> {
    return { computerName: vm.name, osName: 'ubuntu', statuses: this.statuses(vm) };
  }

  private vmBody(vm: FakeVm, withInstanceView: boolean): Record<string, unknown> {
    const expand = withInstanceView && this.requests.at(-1)?.query.get('$expand') === 'instanceView';
    return {
      name: vm.name,
      id: `${this.rgPath()}/providers/Microsoft.Compute/virtualMachines/${vm.name}`,
      type: 'Microsoft.Compute/virtualMachines',
      location: vm.location,
      tags: vm.tags,
      properties: { ...vm.properties, provisioningState: vm.provisioningState, ...(expand ? { instanceView: this.instanceView(vm) } : {}) },
    };
  }

  /** The VM's custom data as PUT, decoded. */
  customData(vmName: string): string | undefined {
    const vm = this.vms.get(vmName);
    return vm?.customData === undefined ? undefined : Buffer.from(vm.customData, 'base64').toString('utf8');
  }

  /**
   * The agent settings in a VM's userData: the boot agent as providers/boot-agent renders it (`FLEET_X='...'`
   * lines), or JSON with the same settings (the driver's unit tests).
   */
  static agentSettings(userData: string): { bootUrl?: string; vmId?: string; cloudId?: string; image?: string; bootToken?: string } {
    const text = Buffer.from(userData, 'base64').toString('utf8');
    if (text.trimStart().startsWith('{')) return JSON.parse(text) as Record<string, string>;
    const v: Record<string, string> = {};
    for (const m of text.matchAll(/^(FLEET_[A-Z_]+)='((?:[^']|'\\'')*)'$/gm)) v[m[1]] = m[2].replace(/'\\''/g, "'");
    return { bootUrl: v.FLEET_BOOT_URL, vmId: v.FLEET_VM_ID, cloudId: v.FLEET_CLOUD_ID, image: v.FLEET_IMAGE, bootToken: v.FLEET_BOOT_TOKEN };
  }

  /** The VM's agent (bootstrap.ts runs it from userData): once running with a boot script it has not run, it asks the boot endpoint and reports. */
  private runAgent(vm: FakeVm): void {
    if (vm.power !== 'running' || !vm.userData) return;
    const text = Buffer.from(vm.userData, 'base64').toString('utf8');
    if (this.o.agentShell && !text.trimStart().startsWith('{')) {
      this.runShellAgent(vm, text, this.o.agentShell);
      return;
    }
    const settings = ArmFake.agentSettings(vm.userData);
    const { bootUrl, vmId = '', cloudId = '' } = settings;
    const image = this.tamperImage ? this.tamperImage(settings.image ?? '') : (settings.image ?? '');
    if (!settings.bootToken || settings.bootToken === vm.agentToken || !bootUrl) return;
    vm.agentToken = settings.bootToken;
    const bootToken = this.tamper ? this.tamper(settings.bootToken) : settings.bootToken;
    const post = async (url: string, payload: unknown) => {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload) });
      return (await res.json()) as { approved?: boolean; reason?: string };
    };
    const run = (async () => {
      try {
        const answer = await post(bootUrl, { cloudId, vmId, image, bootToken });
        this.boots.push({ vmName: vm.name, approved: answer.approved === true });
        if (answer.approved) {
          await post(`${bootUrl}/status`, { cloudId, vmId, bootToken, state: 'ready' });
        } else {
          await post(`${bootUrl}/status`, { cloudId, vmId, bootToken, state: 'failed', detail: `boot denied: ${answer.reason ?? ''}`, denied: true });
          vm.power = 'stopped';
        }
      } catch {
        // the boot endpoint went away with its test
      }
    })();
    this.agents.add(run);
    void run.finally(() => this.agents.delete(run));
  }

  /** The rendered agent run by sh, as bootstrap.ts runs it on the VM; a run that powers off stops the VM. */
  private runShellAgent(vm: FakeVm, text: string, shell: { binDir: string; vmRoot: string }): void {
    const token = /^FLEET_BOOT_TOKEN='([^']*)'$/m.exec(text)?.[1];
    if (!token || token === vm.agentToken) return;
    vm.agentToken = token;
    let script = this.tamper ? text.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, `FLEET_BOOT_TOKEN='${this.tamper(token)}'`) : text;
    const tamperImage = this.tamperImage;
    if (tamperImage) script = script.replace(/^FLEET_IMAGE='([^']*)'$/m, (_l, image: string) => `FLEET_IMAGE='${tamperImage(image)}'`);
    const run = (async () => {
      const r = await runUserData(script, shell.binDir, join(shell.vmRoot, vm.name));
      this.runs.push({ vmName: vm.name, run: r });
      this.boots.push({ vmName: vm.name, approved: !r.stderr.includes('boot denied') && r.code === 0 });
      if (r.poweredOff && this.vms.get(vm.name) === vm) {
        vm.power = 'stopped';
        stopFakeVm(join(shell.vmRoot, vm.name));
      }
    })().catch(() => undefined);
    this.agents.add(run);
    void run.finally(() => this.agents.delete(run));
  }
}
