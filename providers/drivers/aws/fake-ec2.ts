// Test support: EC2 as nock serves it, answering the Query API
// (`Action=...&Version=2016-11-15`, form-encoded POST) in EC2's documented
// XML wire format: <XResponse xmlns=...> bodies with instancesSet /
// reservationSet / tagSet lists of <item>, `nextToken` paging, and errors as
// <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>.
// No real account and no network: the endpoint is a loopback address nock
// intercepts. Instances move along EC2's states one step per later read
// (pending -> running, stopping -> stopped, shutting-down -> terminated), so
// tests never wait on time; a started instance whose user data carries a
// boot token runs it (providers/boot-agent/agent.sh) with sh, the fake
// cryptsetup and poweroff first on PATH; a `poweroff` stops the instance.
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nock from 'nock';
import { parseAgentUserData } from '../../boot-agent/index.ts';
import { cloudInitBoot, runUserData, stopFakeVm, writeFakeVmTools, type AgentRun } from '../../boot-agent/testing.ts';
import type { Ec2State } from './states.ts';

const XMLNS = 'http://ec2.amazonaws.com/doc/2016-11-15/';
const CODES: Record<Ec2State, number> = { pending: 0, running: 16, 'shutting-down': 32, terminated: 48, stopping: 64, stopped: 80 };

export interface FakeInstance {
  id: string;
  imageId: string;
  type: string;
  state: Ec2State;
  tags: Map<string, string>;
  /** Decoded user data as last set. */
  userData: string;
  clientToken?: string;
  /** EC2's launchTime: when the instance was last launched, its RunInstances or its latest StartInstances. */
  launchTime: string;
  /** When its volumes were attached (its RunInstances): DescribeInstances' blockDeviceMapping attachTime. */
  attachTime: string;
  /** Set by staleAfterStart: DescribeInstances answers the instance as it read before its start this many more times. */
  stale?: { reads: number; xml: string };
  subnetId?: string;
  securityGroups: string[];
  keyName?: string;
  /** The agent runs of this instance, in order. */
  runs: Promise<AgentRun>[];
  /** The EBS volumes RunInstances' block device mappings made, with the root volume first (DescribeInstances' blockDeviceMapping). */
  volumes: { deviceName: string; volumeId: string }[];
  /** cloud-init's scripts-user ran at a boot of this instance (its first launch on): a per-instance script runs no more. */
  scriptsUserRan: boolean;
  /** EC2's stateReason of the last state change: why it stopped or terminated (`Client.InstanceInitiatedShutdown`, ...). */
  stateReason?: { code: string; message: string };
  /** Set by startFailure: the instance goes back from pending to stopped with this reason at its next read (before it, when unseen). */
  failStart?: { code: string; message: string; unseen?: boolean };
}

export interface FakeRequest {
  action: string;
  params: URLSearchParams;
  /** The access key id the request was signed with. */
  accessKeyId: string;
}

/** How the fake answers a faulted action. */
export type Ec2Fault =
  /** `date`: the answer's Date header (EC2's clock, which the SDK corrects its own by). */
  | { error: string; status: number; message?: string; date?: string }
  | { reset: true }
  /** EC2 carries the request out, then the connection drops before its answer arrives (a retry must not act twice). */
  | { lostAnswer: true }
  | { hang: true };

/** The EC2 answer of each fault kind (docs/drivers/aws.md, error table). */
export const EC2_FAULTS = {
  credentials: { error: 'AuthFailure', status: 401, message: 'AWS was not able to validate the provided access credentials' },
  capacity: { error: 'InsufficientInstanceCapacity', status: 500, message: 'We currently do not have sufficient m6i.large capacity in the Availability Zone you requested.' },
  'not-found': { error: 'InvalidInstanceID.NotFound', status: 400, message: "The instance ID 'i-0' does not exist" },
  'invalid-state': { error: 'IncorrectInstanceState', status: 400, message: 'The instance is not in a state from which it can be started.' },
  transient: { error: 'RequestLimitExceeded', status: 503, message: 'Request limit exceeded.' },
  timeout: { hang: true },
  unavailable: { error: 'Unavailable', status: 503, message: 'The server is overloaded.' },
  internal: { error: 'InternalError', status: 500, message: 'An internal error has occurred.' },
  reset: { reset: true },
} as const satisfies Record<string, Ec2Fault>;

let nextPort = 64000;

export class FakeEc2 {
  readonly endpoint: string;
  readonly instances = new Map<string, FakeInstance>();
  readonly requests: FakeRequest[] = [];
  /** Largest page of DescribeInstances. */
  pageSize = 1000;
  /** Changes an instance's user data as it starts (someone tampering with the VM): tests of a denied boot. */
  tamper: ((userData: string) => string) | undefined;
  /** The environment the image gives its boot agent (FLEET_RETRY_SECONDS, …; agent.sh's optional settings). */
  agentEnv: Record<string, string> = {};
  /**
   * StartInstances is accepted, then the instance goes back from pending to stopped with this stateReason (EC2
   * finding no capacity for a start after it answered: `Server.InsufficientInstanceCapacity`); its OS never boots.
   * `unseen`: EC2 fails the start before any read sees it pending (the answer of StartInstances still says
   * pending), and its launchTime stays that of its last launch (it never launched).
   */
  startFailure: { code: string; message: string; unseen?: boolean } | undefined;
  /**
   * EC2's eventual consistency after StartInstances: the next this-many DescribeInstances of a started instance
   * answer it as it was before the start (stopped, with the stateReason and launchTime of its last stop), and it
   * moves along no state meanwhile. Infinity: EC2's reads never catch up.
   */
  staleAfterStart = 0;
  /**
   * Session credentials by access key id, with the time (ms) they expire at: a request signed with one after that
   * is refused as EC2 refuses an expired session token (RequestExpired, 400).
   */
  readonly sessionExpiry = new Map<string, number>();
  private readonly faults = new Map<string, { fault: Ec2Fault; times: number }>();
  private readonly interceptor: nock.Interceptor;
  private hung: (() => void)[] = [];
  private binDir = '';
  private vmRoot = '';

  private constructor() {
    this.endpoint = `http://127.0.0.1:${nextPort++}`;
    this.interceptor = nock(this.endpoint).persist().post('/');
  }

  static async start(): Promise<FakeEc2> {
    const f = new FakeEc2();
    f.vmRoot = await mkdtemp(join(tmpdir(), 'dmzfleet-fake-ec2-'));
    f.binDir = join(f.vmRoot, 'bin');
    await writeFakeVmTools(f.binDir);
    const fake = f;
    f.interceptor.reply(function (_uri, body, cb) {
      const auth = String(this.req.headers.authorization ?? '');
      fake.handle(typeof body === 'string' ? body : new URLSearchParams(body as Record<string, string>).toString(), auth, (err, res) =>
        err ? cb(err, [500, '']) : cb(null, res ?? [500, '']),
      );
    });
    return f;
  }

  /** Folder of a VM's fake disk and tool records. */
  vmDir(id: string): string {
    return join(this.vmRoot, id);
  }

  /** Every later `action` (or its next `times`) fails as `fault` says. */
  fail(action: string, fault: Ec2Fault, times = Infinity): void {
    this.faults.set(action, { fault, times });
  }

  heal(): void {
    this.faults.clear();
    for (const release of this.hung.splice(0)) release();
  }

  /** The instance disappears (terminated and forgotten by EC2). */
  vanish(id: string): void {
    this.instances.delete(id);
  }

  /** The requests of one action, in order. */
  calls(action: string): FakeRequest[] {
    return this.requests.filter((r) => r.action === action);
  }

  /** Waits for every agent run started so far. */
  async settled(): Promise<void> {
    await Promise.all([...this.instances.values()].flatMap((i) => i.runs));
  }

  async close(): Promise<void> {
    this.heal();
    nock.removeInterceptor(this.interceptor);
    await this.settled();
    await rm(this.vmRoot, { recursive: true, force: true });
  }

  private handle(body: string, auth: string, cb: (err: NodeJS.ErrnoException | null, res?: [number, string, Record<string, string>]) => void): void {
    const params = new URLSearchParams(body);
    const action = params.get('Action') ?? '';
    const accessKeyId = /Credential=([^/]+)\//.exec(auth)?.[1] ?? '';
    this.requests.push({ action, params, accessKeyId });
    const expiry = this.sessionExpiry.get(accessKeyId);
    if (expiry !== undefined && Date.now() >= expiry) {
      cb(null, [400, errorXml('RequestExpired', 'Request has expired.'), XML]);
      return;
    }
    const f = this.faults.get(action);
    if (f && f.times > 0) {
      f.times--;
      const fault = f.fault;
      if ('hang' in fault) {
        // Answered (too late) only when healed or closed: the client's request timeout fires first.
        this.hung.push(() => cb(null, [503, errorXml('RequestTimeout', 'released'), XML]));
        return;
      }
      if ('reset' in fault) {
        cb(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
        return;
      }
      if ('lostAnswer' in fault) {
        try {
          this.act(action, params);
        } catch {
          // what EC2 answered is lost either way
        }
        cb(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
        return;
      }
      cb(null, [fault.status, errorXml(fault.error, fault.message ?? fault.error), fault.date ? { ...XML, date: fault.date } : XML]);
      return;
    }
    try {
      cb(null, [200, this.act(action, params), XML]);
    } catch (err) {
      const e = err as Ec2ApiError;
      cb(null, [e.status ?? 400, errorXml(e.code ?? 'InvalidParameterValue', e.message), XML]);
    }
  }

  private act(action: string, p: URLSearchParams): string {
    switch (action) {
      case 'RunInstances':
        return this.run(p);
      case 'DescribeInstances':
        return this.describe(p);
      case 'StartInstances':
        return this.change(action, p, (i) => this.start(i));
      case 'StopInstances':
        return this.change(action, p, (i) => {
          if (i.state === 'stopped' || i.state === 'stopping') return;
          if (i.state !== 'running' && !(i.state === 'pending' && p.get('Force') === 'true')) throw apiError('IncorrectInstanceState', `The instance '${i.id}' is not in a state from which it can be stopped.`);
          i.state = 'stopping';
          i.stateReason = { code: 'Client.UserInitiatedShutdown', message: 'Client.UserInitiatedShutdown: User initiated shutdown' };
        });
      case 'TerminateInstances':
        return this.change(action, p, (i) => {
          if (i.state !== 'terminated') i.state = 'shutting-down';
          i.stateReason = { code: 'Client.UserInitiatedShutdown', message: 'Client.UserInitiatedShutdown: User initiated shutdown' };
        });
      case 'ModifyInstanceAttribute':
        return this.modify(p);
      case 'CreateTags':
        for (const id of list(p, 'ResourceId')) {
          const i = this.must(id);
          for (const [k, v] of tags(p, 'Tag')) i.tags.set(k, v);
        }
        return `<CreateTagsResponse xmlns="${XMLNS}"><requestId>${randomUUID()}</requestId><return>true</return></CreateTagsResponse>`;
      default:
        throw apiError('InvalidAction', `The action ${action} is not valid for this web service.`);
    }
  }

  private must(id: string): FakeInstance {
    malformed([id]);
    const i = this.instances.get(id);
    if (!i) throw apiError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
    return i;
  }

  private run(p: URLSearchParams): string {
    const token = p.get('ClientToken') ?? undefined;
    let inst = token ? [...this.instances.values()].find((i) => i.clientToken === token) : undefined;
    // EC2 compares a repeated token's other parameters with the first request's (here: image and type).
    if (inst && (inst.imageId !== (p.get('ImageId') ?? '') || inst.type !== (p.get('InstanceType') ?? 'm1.small'))) {
      throw apiError('IdempotentParameterMismatch', 'Arguments on this idempotent request are inconsistent with arguments used in previous request(s).');
    }
    if (!inst) {
      const instanceTags = new Map<string, string>();
      for (let n = 1; p.has(`TagSpecification.${n}.ResourceType`); n++) {
        if (p.get(`TagSpecification.${n}.ResourceType`) === 'instance') for (const [k, v] of tags(p, `TagSpecification.${n}.Tag`)) instanceTags.set(k, v);
      }
      inst = {
        id: `i-${randomUUID().replace(/-/g, '').slice(0, 17)}`,
        imageId: p.get('ImageId') ?? '',
        type: p.get('InstanceType') ?? 'm1.small',
        state: 'pending',
        tags: instanceTags,
        userData: Buffer.from(p.get('UserData') ?? '', 'base64').toString('utf8'),
        launchTime: new Date().toISOString(),
        attachTime: new Date().toISOString(),
        securityGroups: list(p, 'SecurityGroupId'),
        runs: [],
        volumes: [{ deviceName: '/dev/xvda', volumeId: volumeId() }, ...mappedDevices(p).map((deviceName) => ({ deviceName, volumeId: volumeId() }))],
        // The first launch runs the user data's scripts (cloud-init, per instance): the agent finds no token.
        scriptsUserRan: true,
        ...(token ? { clientToken: token } : {}),
        ...(p.get('SubnetId') ? { subnetId: p.get('SubnetId')! } : {}),
        ...(p.get('KeyName') ? { keyName: p.get('KeyName')! } : {}),
      };
      this.instances.set(inst.id, inst);
    }
    return `<RunInstancesResponse xmlns="${XMLNS}"><requestId>${randomUUID()}</requestId><reservationId>r-${inst.id.slice(2)}</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet>${instanceXml(inst)}</instancesSet></RunInstancesResponse>`;
  }

  /** One step along EC2's own transitions, taken when an instance is read. */
  private advance(i: FakeInstance): void {
    if (i.state === 'pending' && i.failStart) {
      i.state = 'stopped';
      i.stateReason = { code: i.failStart.code, message: i.failStart.message };
      i.failStart = undefined;
    } else if (i.state === 'pending') i.state = 'running';
    else if (i.state === 'stopping') {
      i.state = 'stopped';
      stopFakeVm(this.vmDir(i.id));
    } else if (i.state === 'shutting-down') i.state = 'terminated';
  }

  private describe(p: URLSearchParams): string {
    const ids = list(p, 'InstanceId');
    let all: FakeInstance[];
    if (ids.length > 0) {
      malformed(ids);
      const missing = ids.filter((id) => !this.instances.has(id));
      if (missing.length > 0) throw apiError('InvalidInstanceID.NotFound', `The instance IDs '${missing.join(', ')}' do not exist`);
      all = ids.map((id) => this.instances.get(id)!);
    } else {
      all = [...this.instances.values()];
    }
    for (let n = 1; p.has(`Filter.${n}.Name`); n++) {
      const name = p.get(`Filter.${n}.Name`)!;
      const values = list(p, `Filter.${n}.Value`);
      const tag = /^tag:(.+)$/.exec(name)?.[1];
      if (tag) all = all.filter((i) => values.includes(i.tags.get(tag) ?? '\u0000'));
      else if (name === 'instance-state-name') all = all.filter((i) => values.includes(i.state));
      else throw apiError('InvalidParameterValue', `The filter '${name}' is invalid`);
    }
    const start = Number(p.get('NextToken') ?? '0');
    const max = Math.min(this.pageSize, Number(p.get('MaxResults') ?? '1000'));
    const page = all.slice(start, start + max);
    const next = start + max < all.length ? `<nextToken>${start + max}</nextToken>` : '';
    const stale = (i: FakeInstance): string | undefined => {
      if (!i.stale || i.stale.reads <= 0) return undefined;
      i.stale.reads--;
      return i.stale.xml;
    };
    // A start EC2 failed before any read saw it pending: the first read already shows it stopped.
    for (const i of page) if (i.failStart?.unseen && !(i.stale && i.stale.reads > 0)) this.advance(i);
    const shown = page.map((i) => ({ i, old: stale(i) }));
    const body = shown
      .map(({ i, old }) => `<item><reservationId>r-${i.id.slice(2)}</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet>${old ?? instanceXml(i)}</instancesSet></item>`)
      .join('');
    for (const { i, old } of shown) if (old === undefined) this.advance(i);
    return `<DescribeInstancesResponse xmlns="${XMLNS}"><requestId>${randomUUID()}</requestId><reservationSet>${body}</reservationSet>${next}</DescribeInstancesResponse>`;
  }

  private change(action: string, p: URLSearchParams, fn: (i: FakeInstance) => void): string {
    const items = list(p, 'InstanceId').map((id) => {
      const i = this.must(id);
      const before = i.state;
      fn(i);
      return `<item><instanceId>${i.id}</instanceId><currentState><code>${CODES[i.state]}</code><name>${i.state}</name></currentState><previousState><code>${CODES[before]}</code><name>${before}</name></previousState></item>`;
    });
    return `<${action}Response xmlns="${XMLNS}"><requestId>${randomUUID()}</requestId><instancesSet>${items.join('')}</instancesSet></${action}Response>`;
  }

  private start(i: FakeInstance): void {
    if (i.state === 'running' || i.state === 'pending') return;
    if (i.state !== 'stopped') throw apiError('IncorrectInstanceState', `The instance '${i.id}' is not in a state from which it can be started.`);
    if (this.staleAfterStart > 0) i.stale = { reads: this.staleAfterStart, xml: instanceXml(i) };
    // EC2's launchTime is the instance's last launch: a start sets it (EC2 gives seconds; one later than the last, at least).
    if (!this.startFailure?.unseen) i.launchTime = new Date(Math.max(Date.now(), Date.parse(i.launchTime) + 1000)).toISOString().replace(/\.\d{3}Z$/, '.000Z');
    i.state = 'pending';
    i.stateReason = undefined;
    if (this.startFailure) {
      i.failStart = this.startFailure;
      return;
    }
    if (this.tamper) i.userData = this.tamper(i.userData);
    this.bootOs(i);
  }

  /**
   * The instance's OS boots; stock cloud-init runs the user data's scripts (once per instance, or at every boot
   * when its cloud-config says so): the boot agent, against the real boot endpoint. A `poweroff` it runs stops
   * the instance. Answers this boot's agent runs.
   */
  private bootOs(i: FakeInstance): Promise<AgentRun>[] {
    const scripts = cloudInitBoot(i.userData, i.scriptsUserRan);
    i.scriptsUserRan = true;
    // A new boot: the marker of an earlier boot's poweroff is not this one's.
    rmSync(join(this.vmDir(i.id), 'powered-off'), { force: true });
    const runs: Promise<AgentRun>[] = [];
    for (const script of scripts.filter((x) => parseAgentUserData(x).FLEET_BOOT_TOKEN)) {
      const run = runUserData(script, this.binDir, this.vmDir(i.id), this.agentEnv).then((r) => {
        if (r.poweredOff && this.instances.get(i.id) === i && (i.state === 'running' || i.state === 'pending')) {
          i.state = 'stopped';
          i.stateReason = { code: 'Client.InstanceInitiatedShutdown', message: 'Client.InstanceInitiatedShutdown: Instance initiated shutdown' };
          stopFakeVm(this.vmDir(i.id));
        }
        return r;
      });
      i.runs.push(run);
      runs.push(run);
    }
    return runs;
  }

  /**
   * Test helper: the guest reboots from inside (`shutdown -r now`, a kernel update's reboot). EC2 keeps the
   * instance running and its user data; the reboot closes its device mappings, and cloud-init runs the user
   * data's scripts as at any boot: the boot agent, with the token of the instance's last boot. Resolves with
   * those runs once they ended.
   */
  async rebootFromInside(id: string): Promise<AgentRun[]> {
    const i = this.must(id);
    if (i.state !== 'running') throw new Error(`instance ${id} is ${i.state}; only a running instance reboots from inside`);
    stopFakeVm(this.vmDir(i.id));
    return Promise.all(this.bootOs(i));
  }

  private modify(p: URLSearchParams): string {
    const i = this.must(p.get('InstanceId') ?? '');
    const type = p.get('InstanceType.Value');
    const userData = p.get('UserData.Value');
    if (i.state !== 'stopped') throw apiError('IncorrectInstanceState', `The instance '${i.id}' is not in the 'stopped' state.`);
    if (type) i.type = type;
    if (userData !== null) i.userData = Buffer.from(userData, 'base64').toString('utf8');
    return `<ModifyInstanceAttributeResponse xmlns="${XMLNS}"><requestId>${randomUUID()}</requestId><return>true</return></ModifyInstanceAttributeResponse>`;
  }
}

const XML = { 'content-type': 'text/xml;charset=UTF-8' };

interface Ec2ApiError extends Error {
  code?: string;
  status?: number;
}

function apiError(code: string, message: string, status = 400): Ec2ApiError {
  return Object.assign(new Error(message), { code, status });
}

/**
 * EC2 checks an id's form before it looks it up: one that is not `i-` and 8 or 17 hex digits is
 * InvalidInstanceID.Malformed (400), never InvalidInstanceID.NotFound. The fake's own ids are of the long form.
 */
function malformed(ids: string[]): void {
  const bad = ids.find((id) => !/^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$/.test(id));
  if (bad !== undefined) throw apiError('InvalidInstanceID.Malformed', `Invalid id: "${bad}" (expecting "i-...")`);
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function errorXml(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${esc(code)}</Code><Message>${esc(message)}</Message></Error></Errors><RequestID>${randomUUID()}</RequestID></Response>`;
}

const volumeId = (): string => `vol-${randomUUID().replace(/-/g, '').slice(0, 17)}`;

function instanceXml(i: FakeInstance): string {
  // EC2's blockDeviceMapping: each attached EBS volume with its device name (the root one first).
  const bdm = i.volumes
    .map(
      (v) =>
        `<item><deviceName>${esc(v.deviceName)}</deviceName><ebs><volumeId>${v.volumeId}</volumeId><status>attached</status>` +
        `<attachTime>${i.attachTime}</attachTime><deleteOnTermination>true</deleteOnTermination></ebs></item>`,
    )
    .join('');
  const tagSet = [...i.tags].map(([k, v]) => `<item><key>${esc(k)}</key><value>${esc(v)}</value></item>`).join('');
  return (
    `<item><instanceId>${i.id}</instanceId><imageId>${esc(i.imageId)}</imageId>` +
    `<instanceState><code>${CODES[i.state]}</code><name>${i.state}</name></instanceState>` +
    (i.stateReason ? `<stateReason><code>${esc(i.stateReason.code)}</code><message>${esc(i.stateReason.message)}</message></stateReason>` : '') +
    `<instanceType>${esc(i.type)}</instanceType><launchTime>${i.launchTime}</launchTime>` +
    (i.subnetId ? `<subnetId>${esc(i.subnetId)}</subnetId>` : '') +
    (i.keyName ? `<keyName>${esc(i.keyName)}</keyName>` : '') +
    `<rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping>${bdm}</blockDeviceMapping>` +
    `<tagSet>${tagSet}</tagSet></item>`
  );
}

/** `Prefix.1`, `Prefix.2`, ... */
function list(p: URLSearchParams, prefix: string): string[] {
  const out: string[] = [];
  for (let n = 1; p.has(`${prefix}.${n}`); n++) out.push(p.get(`${prefix}.${n}`)!);
  return out;
}

/** The device names of RunInstances' `BlockDeviceMapping.N.DeviceName` entries with an `Ebs` volume. */
function mappedDevices(p: URLSearchParams): string[] {
  const out: string[] = [];
  for (let n = 1; p.has(`BlockDeviceMapping.${n}.DeviceName`); n++) {
    if ([...p.keys()].some((k) => k.startsWith(`BlockDeviceMapping.${n}.Ebs.`))) out.push(p.get(`BlockDeviceMapping.${n}.DeviceName`)!);
  }
  return out;
}

/** `Prefix.N.Key` / `Prefix.N.Value` pairs. */
function tags(p: URLSearchParams, prefix: string): [string, string][] {
  const out: [string, string][] = [];
  for (let n = 1; p.has(`${prefix}.${n}.Key`); n++) out.push([p.get(`${prefix}.${n}.Key`)!, p.get(`${prefix}.${n}.Value`) ?? '']);
  return out;
}
