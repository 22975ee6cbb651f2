// The `aws` driver: a data center is one AWS region (and subnet) reached
// through EC2's API with @aws-sdk/client-ec2. docs/drivers/aws.md is the
// people's version of this header.
//
// | call       | EC2                                                                                   |
// | ---------- | ------------------------------------------------------------------------------------- |
// | createVm   | RunInstances (ClientToken = VM id, then <vm id>.<instance id> past each instance it    |
// |            | answers terminated; tags, user data = boot agent without a token), wait                |
// |            | until it runs, StopInstances, wait until stopped: the diagram's PoweredOff; a create  |
// |            | failing for good after RunInstances terminates the instance (nothing left behind)     |
// | powerOn    | DescribeInstances: the instance is stopped and can start (EC2 cannot power on without |
// |            | booting; boot starts it)                                                              |
// | boot       | ModifyInstanceAttribute UserData (boot agent with this boot's one-time token), then   |
// |            | StartInstances                                                                        |
// | awaitReady | DescribeInstances and the agent's reports until it is ready; a denied boot (its       |
// |            | agent's report, or it powered itself off, Client.InstanceInitiatedShutdown, after     |
// |            | the boot endpoint denied this boot's token: bootDenied): TerminateInstances           |
// |            | (failing: still boot-denied, "not terminated yet", terminateDenied); a power-off of   |
// |            | its own with no such denial (a denied check with another token is anyone's): kept,    |
// |            | boot-failed;                                                                          |
// |            | stopped by EC2 for another reason (no capacity after StartInstances): kept, an error;  |
// |            | only a stop after the start counts (seen up since, or a stop other than the one read   |
// |            | before StartInstances: stopMark); a stale read of the old stop is read again, unless   |
// |            | it is a failed start's (START_FAILURES) read past STALE_SETTLE_MS with no word from   |
// |            | this boot's agent: this start failed too                                               |
// | shutdown   | StopInstances (graceful: the OS gets an ACPI shutdown)                                |
// | powerOff   | StopInstances Force, wait until stopped                                               |
// | resize     | ModifyInstanceAttribute InstanceType (the pack's instanceTypes catalog), tag the size |
// | deleteVm   | TerminateInstances (an instance already gone is fine)                                 |
// | get, list  | DescribeInstances by id or by tag (fleet:stack, fleet:data-center, fleet:vm-id), paged |
//
// Credentials: every mutating call (and the reads it makes on the way) uses
// the STS session credentials the authority brokered for this data center
// (ScopedCredentials.aws; session policy: this region, instances tagged
// with this stack); get and list use the DMZ client's own read-only
// identity (the SDK's default chain, or `readCredentials`). The SDK's
// retries are off (maxAttempts 1): the DMZ client retries `transient`.
import { createHash } from 'node:crypto';
import {
  CreateTagsCommand,
  DescribeInstancesCommand,
  EC2Client,
  ModifyInstanceAttributeCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  type Filter,
  type Instance,
  type RunInstancesCommandInput,
  type Tag,
} from '@aws-sdk/client-ec2';
import type { InstanceType } from '../../../engine/policy/types.ts';
import { parseVmAddress, type VmSize } from '../../../engine/model/index.ts';
import { USER_DATA_MAX_BYTES, agentWindowSeconds, renderAgentUserData } from '../../boot-agent/index.ts';
import type { AwsDriverSettings } from '../../../specs/types/dmz-client.ts';
import {
  DriverError,
  checkCredentials,
  createdFor,
  type AgentReport,
  type CloudVm,
  type CreateVmInput,
  type Driver,
  type DriverCall,
  type ScopedCredentials,
  type VmRef,
} from '../types.ts';
import { quietAwsSdkNodeWarning } from '../../../engine/transport/aws-sdk.ts';
import { AgentLedger, isCurrentReport } from '../agent-ledger.ts';
import { ec2Error } from './errors.ts';
import { mapEc2State, type Ec2State } from './states.ts';
import { TAGS, formatSizeTag, isGone, parseSize, sizeOfType, stateOf, tagMap, typeFor } from './instances.ts';

export interface AwsCredentialIdentity {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface AwsDriverOptions {
  dataCenter: string;
  stack: string;
  settings: AwsDriverSettings;
  /** The pack's instance types of this data center, smallest first. */
  instanceTypes: readonly InstanceType[];
  /** Overrides settings.endpoint (AWS_ENDPOINT_URL_EC2). */
  endpoint?: string;
  /** The DMZ client's own read-only identity; default: the SDK's default credential chain. */
  readCredentials?: AwsCredentialIdentity;
  /** A call not answered within this fails with `timeout`. Default 30 000. */
  requestTimeoutMs?: number;
  /** Boot endpoint URL the VMs use; default: the DMZ client's (attach). */
  bootUrl?: string;
  /** The DMZ client's state folder: the agents' reports are kept there across restarts (agent-ledger.ts). Default: in memory. */
  stateDir?: string;
  /**
   * How long the DMZ client waits for a boot (its config's spec.readyTimeoutMs; default CLOUD_READY_TIMEOUT_MS): the
   * agent's boot window is cut to fit inside it (agentWindowSeconds).
   */
  readyTimeoutMs?: number;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
/** The data volume's device name in RunInstances' block device mapping. */
const DATA_VOLUME_MAPPING = '/dev/sdf';
/**
 * The data volume as the VM sees it when its EBS volume id is not known (the first launch, which runs no
 * handshake): the second NVMe device of a Nitro instance, which depends on the order the kernel finds them in.
 */
const DEFAULT_DEVICE = '/dev/nvme1n1';

/**
 * The data volume's stable device path on a Nitro instance: udev's link by the NVMe serial EBS gives the
 * volume (its id without the dash), e.g. /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc… for vol-0abc….
 * Undefined when DescribeInstances names no EBS volume at the data volume's mapping.
 */
export function dataDeviceOf(inst: Pick<Instance, 'BlockDeviceMappings'>): string | undefined {
  const vol = inst.BlockDeviceMappings?.find((m) => m.DeviceName === DATA_VOLUME_MAPPING)?.Ebs?.VolumeId;
  return vol && /^vol-[0-9a-f]+$/.test(vol) ? `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${vol.replace('-', '')}` : undefined;
}
/** A wait's reads leave the brokered session for the DMZ client's own identity this close to the session's end. */
const SESSION_READ_MARGIN_MS = 60_000;
/** RunInstances answered IdempotentParameterMismatch (createVm's launch). */
const MISMATCH = Symbol('mismatch');
/** A wait loop's read that failed transiently (pollRead): read again. */
const MISSED = Symbol('missed');
/** How many instances of one VM found terminated a create walks past (each a create that failed, within a day). */
const MAX_RELAUNCHES = 20;

/**
 * The ClientToken of a VM's launch after its instance `gone` terminated: `<vm id>.<instance id>` (EC2 takes 64
 * ASCII characters; a hash of both when longer).
 */
export function relaunchToken(vmId: string, gone: string): string {
  const t = `${vmId}.${gone}`;
  return t.length <= 64 && /^[\x21-\x7e]+$/.test(t) ? t : createHash('sha256').update(t).digest('hex').slice(0, 64);
}

/** EC2's stateReason code of an instance whose guest shut itself down (the boot agent's poweroff after a denial). */
const GUEST_SHUTDOWN = 'Client.InstanceInitiatedShutdown';
/**
 * What tells one stop of an instance from another: its stateReason, stateTransitionReason (a user-initiated stop's
 * carries its time) and launchTime (EC2's last launch: a StartInstances sets it). EC2's reads are eventually
 * consistent: right after StartInstances, DescribeInstances may still answer the instance stopped as before, with
 * the reason of its last stop; a stop with the same mark as the one read before the start is that stale read.
 */
export function stopMark(inst: Pick<Instance, 'StateReason' | 'StateTransitionReason' | 'LaunchTime'>): string {
  return JSON.stringify([inst.StateReason?.Code ?? '', inst.StateReason?.Message ?? '', inst.StateTransitionReason ?? '', inst.LaunchTime?.toISOString() ?? '']);
}

/**
 * stateReason codes EC2 gives a start (a launch) it failed, never a stop: the instance goes back to stopped
 * (EC2's StateReason: "insufficient capacity ... to satisfy the launch request", "an internal error ... during
 * launch", the EBS quota, a missing snapshot). A stop (StopInstances, the guest's halt, a scheduled stop) gives
 * others. When the last stop had one of these, a start that fails the same way before any read sees it pending
 * reads exactly as that stop (launchTime too: it never launched), as a stale read does, and as the reads of a start
 * that goes through but whose reads lag behind it. Such a read is taken for this start's failure once EC2's reads
 * have had STALE_SETTLE_MS to catch up (or at the wait's deadline), unless this boot's agent reported: evidence newer
 * than the start that it went through (a start whose reads lagged longer was reported capacity, its VM booting).
 */
const START_FAILURES = new Set(['Server.InsufficientInstanceCapacity', 'Server.InternalError', 'Client.InternalError', 'Client.VolumeLimitExceeded', 'Client.InvalidSnapshot.NotFound']);
/**
 * How long after awaitReady begins a read of the stop before the start may still be EC2's lag behind StartInstances
 * (its reads catch up in seconds), while no report of this boot's agent says the instance started.
 */
const STALE_SETTLE_MS = 20_000;

/** How long a wait for a state (running, stopped) may take before it is a timeout; the DMZ client's own deadline is usually shorter. */
const STATE_WAIT_MS = 10 * 60_000;

export class AwsDriver implements Driver {
  readonly kind = 'aws';
  readonly dataCenter: string;
  private bootUrl: string | undefined;
  /** The CA bundle the VMs verify an https boot endpoint with (the DMZ client's --boot-ca), carried in the user data. */
  private bootCa: string | undefined;
  private readonly readClient: EC2Client;
  private readonly clients = new Map<string, EC2Client>();
  /** Per instance, what its agent reported in the current boot; kept in the state folder across restarts (agent-ledger.ts). */
  private readonly agents: AgentLedger;
  private readonly waiters = new Set<() => void>();
  private closed = false;
  /** Calls made, per name (tests read it). */
  readonly calls = new Map<DriverCall, number>();

  constructor(private readonly o: AwsDriverOptions) {
    this.dataCenter = o.dataCenter;
    this.bootUrl = o.bootUrl;
    this.readClient = this.makeClient(o.readCredentials);
    this.agents = AgentLedger.open(o.stateDir, o.dataCenter);
  }

  private get endpoint(): string | undefined {
    return this.o.endpoint ?? this.o.settings.endpoint;
  }

  private makeClient(credentials: AwsCredentialIdentity | undefined): EC2Client {
    quietAwsSdkNodeWarning();
    return new EC2Client({
      region: this.o.settings.region,
      ...(this.endpoint ? { endpoint: this.endpoint } : {}),
      ...(credentials ? { credentials } : {}),
      maxAttempts: 1,
      requestHandler: { requestTimeout: this.o.requestTimeoutMs ?? 30_000, connectionTimeout: this.o.requestTimeoutMs ?? 30_000 },
    });
  }

  /** The client of the brokered credentials of a mutating call; checks them first. */
  private writer(creds: ScopedCredentials): EC2Client {
    checkCredentials(this.dataCenter, creds);
    const a = creds.aws;
    if (!a) {
      throw new DriverError('credentials', `the authority issued no AWS credentials for ${this.dataCenter}; its stack entry needs driver: aws and an aws block (docs/drivers/aws.md)`);
    }
    if (Date.parse(a.expiration) <= Date.now()) throw new DriverError('credentials', `the AWS session credentials for ${this.dataCenter} expired at ${a.expiration}`);
    let c = this.clients.get(a.accessKeyId);
    if (!c) {
      // Session credentials last 15 minutes: forget older clients.
      if (this.clients.size > 16) {
        for (const old of this.clients.values()) old.destroy();
        this.clients.clear();
      }
      c = this.makeClient({ accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey, sessionToken: a.sessionToken });
      this.clients.set(a.accessKeyId, c);
    }
    return c;
  }

  private count(call: DriverCall): void {
    this.calls.set(call, (this.calls.get(call) ?? 0) + 1);
  }

  attach(ctx: { bootUrl: string; bootCa?: string }): void {
    this.bootUrl = this.o.bootUrl ?? ctx.bootUrl;
    this.bootCa = ctx.bootCa;
  }

  /** One EC2 call; its failure as a DriverError (errors.ts). */
  private async send<T = unknown>(client: EC2Client, what: string, command: object): Promise<T> {
    try {
      // Every command of the package is accepted by the client; the union of their types is too wide for TypeScript to check here.
      return (await client.send(command as never)) as T;
    } catch (err) {
        throw ec2Error(err, what);
    }
  }

  /** Tag filters that keep every read inside this stack and data center. */
  private scope(): Filter[] {
    return [
      { Name: `tag:${TAGS.stack}`, Values: [this.o.stack] },
      { Name: `tag:${TAGS.dataCenter}`, Values: [this.dataCenter] },
    ];
  }

  /** Every instance matching, over all pages. */
  private async describe(client: EC2Client, req: { InstanceIds?: string[]; Filters?: Filter[] }): Promise<Instance[]> {
    const out: Instance[] = [];
    let NextToken: string | undefined;
    do {
      const page = await this.send<{ Reservations?: { Instances?: Instance[] }[]; NextToken?: string }>(
        client,
        'DescribeInstances',
        new DescribeInstancesCommand({ ...req, ...(req.InstanceIds ? {} : { MaxResults: 1000 }), ...(NextToken ? { NextToken } : {}) }),
      );
      for (const r of page.Reservations ?? []) out.push(...(r.Instances ?? []));
      NextToken = page.NextToken || undefined;
    } while (NextToken);
    return out;
  }

  /** The instance of a ref: by cloud id, else the newest live one tagged with the VM id; undefined when EC2 has none. */
  private async find(client: EC2Client, ref: VmRef): Promise<Instance | undefined> {
    if (ref.cloudId) {
      try {
        const [inst] = await this.describe(client, { InstanceIds: [ref.cloudId] });
        return inst;
      } catch (err) {
        if (err instanceof DriverError && err.kind === 'not-found') return undefined;
        throw err;
      }
    }
    const all = await this.describe(client, { Filters: [...this.scope(), { Name: `tag:${TAGS.vmId}`, Values: [ref.vmId] }] });
    const live = all.filter((i) => !isGone(i));
    const pick = (l: Instance[]) => l.sort((a, b) => (a.LaunchTime?.getTime() ?? 0) - (b.LaunchTime?.getTime() ?? 0)).at(-1);
    return pick(live) ?? pick(all);
  }

  private async mustFind(client: EC2Client, ref: VmRef): Promise<Instance> {
    const inst = await this.find(client, ref);
    if (!inst || isGone(inst)) throw new DriverError('not-found', `EC2 in ${this.o.settings.region} has no live instance ${ref.cloudId ?? `tagged ${TAGS.vmId}=${ref.vmId}`}`);
    return inst;
  }

  /** A pause between reads; an agent report or close() ends it early. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.waiters.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  /**
   * Reads the instance until `until` holds; a deadline makes it a timeout. `justLaunched`: the id came from
   * RunInstances, which EC2's reads may not know yet (eventual consistency: DescribeInstances answers
   * InvalidInstanceID.NotFound for a while), so not finding it means "not visible yet", not "gone".
   */
  private async waitFor(client: EC2Client, id: string, what: string, until: (s: Ec2State) => boolean, opts: { timeoutMs?: number; justLaunched?: boolean } = {}): Promise<Instance> {
    const timeoutMs = opts.timeoutMs ?? STATE_WAIT_MS;
    const deadline = Date.now() + timeoutMs;
    const misses = { n: 0 };
    for (;;) {
      const read = await this.pollRead(() => (opts.justLaunched ? this.find(client, { vmId: '', cloudId: id }) : this.mustFind(client, { vmId: '', cloudId: id })), misses, deadline, `instance ${id} to be ${what}`);
      if (read === MISSED) continue;
      const found = read;
      const s = found ? stateOf(found) : undefined;
      if (found && s && until(s)) return found;
      if (found) opts = { ...opts, justLaunched: false };
      if (this.closed) throw new DriverError('failed', `the aws driver of ${this.dataCenter} closed while waiting for ${id} to be ${what}`);
      if (Date.now() > deadline) throw new DriverError('timeout', `instance ${id} was not ${what} within ${timeoutMs} ms (${found ? `it is ${s ?? 'unknown'}` : 'DescribeInstances does not show it yet'})`, false);
      await this.sleep(this.o.settings.pollMs ?? 2000);
    }
  }

  /**
   * The client a wait's reads use: the brokered session's while it has a minute left, then the DMZ client's own
   * read identity (which renews itself). An approval carries the broker's session credentials as they are (900 s,
   * renewed at two thirds: sometimes well under a minute left), and a boot may be waited for 10 minutes.
   */
  private reader(client: EC2Client, creds: ScopedCredentials): EC2Client {
    const exp = Date.parse(creds.aws?.expiration ?? '');
    return exp - Date.now() > SESSION_READ_MARGIN_MS ? client : this.readClient;
  }

  /**
   * Terminates a VM whose boot awaitReady found denied (the patent's trusted boot: it is not allowed to live), then
   * throws boot-denied. Whatever keeps it from being terminated, the step stays a denied boot (boot-denied), saying
   * the instance was not terminated yet, why, and what happens next: its agent powers it off, and the next apply
   * deletes it and creates the member again (docs/recovery.md, BootFailed). Before, the TerminateInstances failure's
   * own kind (credentials, transient) hid the denial, and the member's advice was that kind's.
   *
   * | what keeps it                                   | thrown                                                      |
   * | ----------------------------------------------- | ----------------------------------------------------------- |
   * | the step's session credentials have expired     | boot-denied at once (the call would be refused)             |
   * | (a long wait outlived them)                     |                                                             |
   * | EC2 refuses or fails TerminateInstances for good | boot-denied, naming EC2's error                             |
   * | (UnauthorizedOperation, a timeout, ...)          |                                                             |
   * | a transient failure (throttled, a 5xx, a reset)  | boot-denied, transient: the DMZ client tries awaitReady     |
   * |                                                 | again (with the Retry-After), which finds the denial and    |
   * |                                                 | terminates again; its last try's is the step's failure      |
   * | EC2 has no such instance any more               | terminated (gone is what the call wants)                    |
   */
  private async terminateDenied(client: EC2Client, creds: ScopedCredentials, id: string, why: string, terminated: string): Promise<never> {
    const next = 'its agent powers it off, and the next apply (docs/recovery.md, BootFailed) deletes it and creates the member again';
    const exp = creds.aws?.expiration ?? '';
    if (!(Date.parse(exp) - Date.now() > 5_000)) {
      throw new DriverError('boot-denied', `instance ${id}: ${why}; it was not terminated yet: this step's AWS session credentials expired at ${exp} during the wait; ${next}`);
    }
    try {
      await this.send(client, 'TerminateInstances', new TerminateInstancesCommand({ InstanceIds: [id] }));
    } catch (err) {
      const e = err instanceof DriverError ? err : ec2Error(err, 'TerminateInstances');
      if (e.kind !== 'not-found') {
        throw new DriverError('boot-denied', `instance ${id}: ${why}; it was not terminated yet (${e.message}); ${next}`, e.transient, e.retryAfterMs !== undefined ? { retryAfterMs: e.retryAfterMs } : {});
      }
    }
    throw new DriverError('boot-denied', terminated);
  }

  /**
   * One read of a wait loop. A transient failure (throttled: RequestLimitExceeded; a 5xx; a reset) does not end the
   * wait, which the next poll may finish: it pauses, longer after each miss in a row (EC2's rate limit refills per
   * second), and answers MISSED; past the deadline the wait is a timeout naming that failure.
   */
  private async pollRead<T>(read: () => Promise<T>, misses: { n: number }, deadline: number, what: string): Promise<T | typeof MISSED> {
    try {
      const out = await read();
      misses.n = 0;
      return out;
    } catch (err) {
      if (!(err instanceof DriverError && err.transient)) throw err;
      if (this.closed) throw err;
      const left = deadline - Date.now();
      if (left <= 0) throw new DriverError('timeout', `gave up waiting for ${what}: EC2's reads kept failing until the deadline (${err.message})`, false);
      misses.n++;
      await this.sleep(Math.min(left, Math.max(err.retryAfterMs ?? 0, (this.o.settings.pollMs ?? 2000) * 2 ** Math.min(misses.n, 4))));
      return MISSED;
    }
  }

  private view(inst: Instance): CloudVm {
    const tags = tagMap(inst.Tags);
    const id = inst.InstanceId ?? '';
    const state = stateOf(inst) ?? 'terminated';
    const launched = inst.LaunchTime?.toISOString();
    let a = this.agents.get(id);
    // The first read that shows a boot's instance up names the run it started (its launchTime): the boot's report is of
    // that run only. A stale read (EC2's lag behind StartInstances) shows it stopped, as boot() left it.
    if (a?.state === 'booting' && a.launch === undefined && launched !== undefined && (state === 'pending' || state === 'running')) {
      a = { ...a, launch: launched };
      this.agents.set(id, a);
    }
    // The VM's latest start: its launchTime, or a reboot its agent told of since (agentStatus: EC2 keeps launchTime). A
    // reboot is of the current launch when the boot's launch is still EC2's (not by the clocks: this client's and EC2's
    // may be seconds apart); in an older ledger, without a launch, when it came after the launchTime.
    const rebooted = a?.rerun !== undefined && (a.launch !== undefined ? a.launch === launched : launched === undefined || Date.parse(a.rerun) >= Date.parse(launched));
    const startedAt = rebooted ? a?.rerun : launched;
    // A ready report of an earlier run (the instance was started again since, from EC2's console) says nothing of this one.
    const known = a && !(a.state === 'ready' && !isCurrentReport(a, startedAt)) ? a : undefined;
    const mapped = mapEc2State(state, known ? (known.state === 'stopping' ? 'none' : known.state) : state === 'running' ? 'unknown' : 'none');
    const size = parseSize(tags[TAGS.size]) ?? this.sizeOfType(inst.InstanceType);
    return {
      vmId: tags[TAGS.vmId] ?? '',
      cloudId: id,
      dataCenter: this.dataCenter,
      name: tags[TAGS.name] ?? id,
      ...createdFor(tags[TAGS.address], tags[TAGS.fleet]),
      image: inst.ImageId ?? '',
      size,
      encryptedDisk: tags[TAGS.encrypted] === 'true',
      ...mapped,
      ...(startedAt !== undefined ? { startedAt } : {}),
    };
  }

  private sizeOfType(type: string | undefined): VmSize {
    return sizeOfType(this.o.instanceTypes, type);
  }

  private typeFor(size: VmSize): string {
    return typeFor(this.o.instanceTypes, size, this.dataCenter);
  }

  private userData(input: { vmId: string; cloudId: string; image: string; encrypted: boolean; bootToken?: string; dataDevice?: string }): string {
    if (!this.bootUrl) throw new DriverError('failed', `the aws driver of ${this.dataCenter} knows no boot endpoint yet`);
    return renderAgentUserData(
      {
        bootUrl: this.bootUrl,
        vmId: input.vmId,
        cloudId: input.cloudId,
        image: input.image,
        encrypted: input.encrypted,
        dataDevice: this.o.settings.dataVolumeDevice ?? input.dataDevice ?? DEFAULT_DEVICE,
        ...(input.bootToken !== undefined ? { bootToken: input.bootToken } : {}),
        ...(this.bootCa ? { bootCa: this.bootCa } : {}),
        windowSeconds: agentWindowSeconds(this.o.readyTimeoutMs),
      },
      USER_DATA_MAX_BYTES.aws,
      // cloud-init runs a user-data script once per instance; EC2 keeps the instance id across a stop and start.
      { cloudInitEveryBoot: true },
    );
  }

  async createVm(creds: ScopedCredentials, input: CreateVmInput): Promise<CloudVm> {
    this.count('createVm');
    const client = this.writer(creds);
    if (input.encryptedDisk && !input.diskKeyHash) {
      throw new DriverError('failed', `an encrypted disk needs the hash of its key; the authority sent none for ${input.vmId}`);
    }
    const s = this.o.settings;
    const tags: Tag[] = [
      { Key: TAGS.stack, Value: this.o.stack },
      { Key: TAGS.dataCenter, Value: this.dataCenter },
      { Key: TAGS.vmId, Value: input.vmId },
      { Key: TAGS.name, Value: input.name },
      { Key: TAGS.size, Value: formatSizeTag(input.size) },
      { Key: TAGS.encrypted, Value: String(input.encryptedDisk) },
    ];
    if (input.address) {
      const fleet = parseVmAddress(input.address)?.fleet;
      tags.push({ Key: TAGS.address, Value: input.address }, ...(fleet !== undefined ? [{ Key: TAGS.fleet, Value: fleet }] : []));
    }
    const params: Omit<RunInstancesCommandInput, 'ClientToken'> = {
      ImageId: input.image,
      InstanceType: this.typeFor(input.size) as never,
      MinCount: 1,
      MaxCount: 1,
      SubnetId: s.subnetId,
      SecurityGroupIds: [...s.securityGroupIds],
      ...(s.keyName ? { KeyName: s.keyName } : {}),
      ...(s.instanceProfile ? { IamInstanceProfile: { Name: s.instanceProfile } } : {}),
      // First launch: the agent finds no boot token and does nothing; the instance is stopped below.
      UserData: Buffer.from(this.userData({ vmId: input.vmId, cloudId: '', image: input.image, encrypted: input.encryptedDisk })).toString('base64'),
      InstanceInitiatedShutdownBehavior: 'stop',
      MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled' },
      BlockDeviceMappings: [{ DeviceName: DATA_VOLUME_MAPPING, Ebs: { VolumeSize: Math.max(1, input.size.diskGiB), VolumeType: 'gp3', Encrypted: true, DeleteOnTermination: true } }],
      TagSpecifications: [
        { ResourceType: 'instance', Tags: tags },
        { ResourceType: 'volume', Tags: tags },
      ],
    };
    // MISMATCH: EC2's IdempotentParameterMismatch, the token was used with other parameters.
    const launch = async (token: string): Promise<Instance | undefined | typeof MISMATCH> => {
      try {
        return ((await client.send(new RunInstancesCommand({ ClientToken: token, ...params }))) as { Instances?: Instance[] }).Instances?.[0];
      } catch (err) {
        if ((err as { name?: string }).name === 'IdempotentParameterMismatch') return MISMATCH;
        throw ec2Error(err, 'RunInstances');
      }
    };
    // EC2 answers a ClientToken with its first instance, in its current state, for at least 24 hours after that
    // instance terminated: a create again after one that failed (CreateFailed -> BeingCreated keeps the VM id)
    // would be answered the dead instance at every apply. Each instance found gone leads to the next token, derived
    // from it: every try of this create walks the same tokens to the same live instance (no second one).
    // The create again often comes with another image or size (what failed was fixed): EC2 answers the token used
    // with other parameters IdempotentParameterMismatch. Unless the VM has a live instance (then it is named, not
    // duplicated), the next token is derived from these parameters, as deterministic for every try.
    let token = input.vmId;
    let first: Instance | undefined;
    for (let hop = 0; ; hop++) {
      const got = await launch(token);
      if (got === MISMATCH) {
        // A live instance of this VM with this image and type is this create's (a try before this one launched it
        // with the token below, which answers it again); one with another image or type would be a second VM.
        const live = (await this.describe(client, { Filters: [...this.scope(), { Name: `tag:${TAGS.vmId}`, Values: [input.vmId] }] })).filter(
          (x) => !isGone(x) && (x.ImageId !== params.ImageId || x.InstanceType !== params.InstanceType),
        );
        if (live.length > 0) {
          throw new DriverError(
            'failed',
            `VM ${input.vmId} has a live instance ${live.map((x) => x.InstanceId).join(', ')} launched with other parameters (image, instance type or user data) than this create's: terminate it (aws ec2 terminate-instances) or restore the earlier image and size, then apply again`,
          );
        }
        if (hop >= MAX_RELAUNCHES) throw new DriverError('failed', `VM ${input.vmId}: EC2 refused ${hop + 1} client tokens as used with other parameters; not launching`);
        token = relaunchToken(input.vmId, `p-${sha256(JSON.stringify(params)).slice(0, 16)}`);
        continue;
      }
      first = got;
      if (!first?.InstanceId || !isGone(first)) break;
      if (hop >= MAX_RELAUNCHES) {
        throw new DriverError('failed', `VM ${input.vmId} had ${hop + 1} instances terminated in EC2 (the last ${first.InstanceId}); not launching another: see why in its stateReason (aws ec2 describe-instances)`);
      }
      token = relaunchToken(input.vmId, first.InstanceId);
    }
    const id = first?.InstanceId;
    if (!id) throw new DriverError('failed', 'EC2 RunInstances answered without an instance');
    // A retried RunInstances (same ClientToken) returns the first instance, in whatever state it reached.
    let up: Instance;
    try {
      up = await this.waitFor(client, id, 'running or stopped', (st) => st !== 'pending', { justLaunched: true });
      if (stateOf(up) === 'running') await this.send(client, 'StopInstances', new StopInstancesCommand({ InstanceIds: [id], Force: true }));
      if (!isGone(up)) return this.view(await this.waitFor(client, id, 'stopped', (x) => x === 'stopped'));
    } catch (err) {
      // A create that failed for good leaves nothing behind (DESIGN: a failed create must leave nothing created);
      // after a transient failure or a timeout the retried create (same ClientToken) finds this instance again.
      if (err instanceof DriverError && !err.transient && err.kind !== 'timeout') {
        const left = await this.send(client, 'TerminateInstances', new TerminateInstancesCommand({ InstanceIds: [id] })).then(
          () => undefined,
          (e: unknown) => e,
        );
        // An instance the clean-up could not terminate is said, never swallowed: the record holds the VM
        // (CreateFailed), and its next create (same ClientToken) or delete finds it.
        if (left !== undefined) {
          throw new DriverError(
            err.kind,
            `${err.message}; the clean-up failed (${left instanceof Error ? left.message : String(left)}): instance ${id} remains; the next apply's create again or delete terminates it`,
            err.transient,
          );
        }
      }
      throw err;
    }
    const why = up.StateReason?.Message ?? up.StateTransitionReason;
    throw new DriverError('failed', `instance ${id} of VM ${input.vmId} was terminated${why ? `: ${why}` : ''}`);
  }

  async powerOn(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm> {
    this.count('powerOn');
    const client = this.writer(creds);
    const inst = await this.mustFind(client, ref);
    const st = stateOf(inst);
    if (st === 'stopping') return this.view(await this.waitFor(client, inst.InstanceId!, 'stopped', (x) => x === 'stopped'));
    if (st !== 'stopped' && st !== 'pending' && st !== 'running') throw new DriverError('invalid-state', `instance ${inst.InstanceId} is ${st}; it cannot start`);
    return this.view(inst);
  }

  async boot(creds: ScopedCredentials, ref: VmRef, opts: { bootToken: string }): Promise<CloudVm> {
    this.count('boot');
    const client = this.writer(creds);
    let inst = await this.mustFind(client, ref);
    const id = inst.InstanceId!;
    const prior = this.agents.get(id);
    const hash = sha256(opts.bootToken);
    // A retried boot whose start went through: nothing to do.
    if (prior?.tokenHash === hash && (stateOf(inst) === 'pending' || stateOf(inst) === 'running')) return this.view(inst);
    // Started with another token, or one this DMZ client no longer knows (it restarted): a boot whose report was
    // lost, approved again by the next apply with a new token. The instance is started again with this one
    // (stopped first: the agent reads its token from the user data at start), rather than refused at every apply.
    if (stateOf(inst) === 'pending' || stateOf(inst) === 'running') {
      this.agents.delete(id);
      await this.send(client, 'StopInstances', new StopInstancesCommand({ InstanceIds: [id], Force: true }));
      inst = await this.waitFor(client, id, 'stopped', (x) => x === 'stopped');
    }
    if (stateOf(inst) === 'stopping') inst = await this.waitFor(client, id, 'stopped', (x) => x === 'stopped');
    if (stateOf(inst) !== 'stopped') throw new DriverError('invalid-state', `instance ${id} is ${stateOf(inst)}; boot needs it stopped (power it off first)`);
    const tags = tagMap(inst.Tags);
    // The data volume by its EBS volume id (DescribeInstances names it once the instance launched): /dev/nvme1n1
    // depends on the order the kernel enumerates the NVMe devices in.
    const dataDevice = dataDeviceOf(inst);
    const userData = this.userData({
      vmId: tags[TAGS.vmId] ?? ref.vmId,
      cloudId: id,
      image: inst.ImageId ?? '',
      encrypted: tags[TAGS.encrypted] === 'true',
      bootToken: opts.bootToken,
      ...(dataDevice ? { dataDevice } : {}),
    });
    await this.send(client, 'ModifyInstanceAttribute', new ModifyInstanceAttributeCommand({ InstanceId: id, UserData: { Value: Buffer.from(userData) } }));
    this.agents.set(id, { tokenHash: hash, state: 'booting', stoppedAs: stopMark(inst) });
    await this.send(client, 'StartInstances', new StartInstancesCommand({ InstanceIds: [id] }));
    return this.view(await this.mustFind(client, { vmId: ref.vmId, cloudId: id }));
  }

  agentStatus(report: AgentReport): boolean {
    const a = this.agents.get(report.cloudId);
    if (!a || a.tokenHash !== sha256(report.bootToken)) return false;
    // This boot's agent starting over after its ready report: the instance rebooted (RebootInstances, or inside the
    // guest), which EC2 does not show (launchTime stays). Noted, so that the ready report no longer reads as of the
    // current run (view: startedAt), and refused as before. The agent reports in order, each report answered before
    // the next (agent.sh), so a booting report after ready is of a run after it.
    if (a.state === 'ready' && report.state === 'booting') {
      this.agents.set(report.cloudId, { ...a, rerun: new Date().toISOString() });
      return false;
    }
    if (a.state !== 'booting') return false;
    this.agents.set(report.cloudId, {
      ...a,
      state: report.state,
      at: new Date().toISOString(),
      heard: true,
      ...(report.detail ? { detail: report.detail } : {}),
      ...(report.denied ? { denied: true } : {}),
    });
    for (const wake of this.waiters) wake();
    return true;
  }

  bootDenied(boot: { vmId: string; cloudId: string; bootToken: string }): boolean {
    const a = this.agents.get(boot.cloudId);
    // Only this boot's token, while it boots: a made-up token (anyone's), an earlier boot's, or this one's presented
    // again after its ready report (an in-guest reboot: no awaitReady terminates that VM) is no denial of this boot.
    if (!a || a.state !== 'booting' || a.tokenHash !== sha256(boot.bootToken)) return false;
    if (!a.tokenDenied) this.agents.set(boot.cloudId, { ...a, tokenDenied: true });
    for (const wake of this.waiters) wake();
    return true;
  }

  async awaitReady(creds: ScopedCredentials, ref: VmRef, opts: { timeoutMs?: number } = {}): Promise<CloudVm> {
    this.count('awaitReady');
    const client = this.writer(creds);
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const began = Date.now();
    const deadline = began + timeoutMs;
    const misses = { n: 0 };
    for (;;) {
      const inst = await this.pollRead(() => this.mustFind(this.reader(client, creds), ref), misses, deadline, `${ref.cloudId ?? ref.vmId} to report ready`);
      if (inst === MISSED) continue;
      const id = inst.InstanceId!;
      const a = this.agents.get(id);
      const st = stateOf(inst);
      if (a?.state === 'ready' && st === 'running') return this.view(inst);
      if (a?.state === 'failed') {
        if (a.denied) {
          // The patent's trusted boot: a VM whose boot was denied is not allowed to live.
          await this.terminateDenied(client, creds, id, a.detail ?? 'boot denied', `instance ${id} was terminated: ${a.detail ?? 'boot denied'}`);
        }
        throw new DriverError('boot-failed', `instance ${id} did not become ready: ${a.detail ?? 'its agent failed'}`);
      }
      if (!a && st === 'running') return this.view(inst);
      if (a && !a.up && (st === 'pending' || st === 'running')) {
        this.agents.set(id, { ...a, up: true, ...(a.state === 'booting' && a.launch === undefined && inst.LaunchTime ? { launch: inst.LaunchTime.toISOString() } : {}) });
      }
      // Stopped as it read before this boot's StartInstances, and not seen up since: EC2's read still shows the stop
      // before the start (eventual consistency), whose reason is no stop of this boot. Read again until the deadline.
      const asBefore = (st === 'stopping' || st === 'stopped') && a && !a.up && a.stoppedAs !== undefined && a.stoppedAs === stopMark(inst);
      // ... unless the old stop is a failed start's (START_FAILURES), the reads have had STALE_SETTLE_MS to catch up
      // (or the wait is over), and this boot's agent never reported: then it is this start failing the way the last one
      // did, before any read saw it pending. An agent's report is evidence newer than the start: the instance runs,
      // and the reads lag (however long).
      const failedAgain =
        asBefore && !a.heard && START_FAILURES.has(inst.StateReason?.Code ?? '') && (Date.now() - began >= STALE_SETTLE_MS || Date.now() > deadline);
      const before = asBefore && !failedAgain;
      const again = failedAgain ? ` (read so from its start on, ${Math.round((Date.now() - began) / 1000)} s, its agent never heard from: EC2 failed this start the way it failed the last one)` : '';
      if (before) {
        if (Date.now() > deadline) {
          const why = inst.StateReason?.Message ?? inst.StateReason?.Code ?? inst.StateTransitionReason ?? 'no reason given';
          throw new DriverError(
            'timeout',
            `instance ${id} still reads stopped as before its start (${why}) after ${timeoutMs} ms: EC2's reads lag behind its StartInstances, or the start failed the way the last stop did; it is kept (powered off)`,
            false,
          );
        }
      } else if (st === 'stopping' || st === 'stopped') {
        // Stopped for another reason than its guest powering off (EC2's stateReason): EC2 found no capacity for the
        // start after it accepted it, someone stopped it, EC2 failed it. Not a denial: the VM and its disk stay.
        const reason = inst.StateReason;
        if (reason?.Code && reason.Code !== GUEST_SHUTDOWN) {
          const why = reason.Message ?? reason.Code;
          if (reason.Code === 'Server.InsufficientInstanceCapacity') {
            throw new DriverError('capacity', `instance ${id} went back to stopped during its boot: ${why}${again}; it is kept (powered off); try again later, or another instance type`);
          }
          throw new DriverError('boot-failed', `instance ${id} went back to stopped during its boot: ${why}${again}; it is kept (powered off)`);
        }
        // The VM powered itself off during its boot without a report we could believe (a report needs the boot token
        // the driver issued). A denied boot only when the boot endpoint denied this boot's token (bootDenied): the
        // trusted boot, it goes. Otherwise its agent failed for another reason (the endpoint out of its reach) and its
        // reports were lost, or its guest halted: it is kept, powered off, and the next apply boots it again under a
        // fresh token. A denied boot check with another token (anyone in the DMZ network can send one, and the
        // authority records that denial for the VM) says nothing of this VM: taken for its denial, the instance was
        // terminated, or, its TerminateInstances failing, deleted and created again by the next apply (disk lost).
        if (a?.tokenDenied) {
          const why = 'it powered itself off during its boot without reporting ready, after the boot endpoint denied its boot token (a denied boot)';
          await this.terminateDenied(client, creds, id, why, `instance ${id} ${why}; it was terminated`);
        }
        throw new DriverError(
          'boot-failed',
          `instance ${id} powered itself off during its boot without a report this DMZ client could believe (a report needs the boot token it was booted with), and no boot request with that token was denied: not a denied boot (its agent failed, its reports lost, or its guest halted); it is kept (powered off), and the next apply boots it again with a new token`,
        );
      }
      if (!before && st !== 'pending' && st !== 'running') throw new DriverError('boot-failed', `instance ${id} is ${st} before its agent reported ready`);
      if (this.closed) throw new DriverError('failed', `the aws driver of ${this.dataCenter} closed while waiting for ${id}`);
      if (Date.now() > deadline) throw new DriverError('timeout', `instance ${id} did not report ready within ${timeoutMs} ms`, false);
      await this.sleep(this.o.settings.pollMs ?? 2000);
    }
  }

  async shutdown(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm> {
    this.count('shutdown');
    const client = this.writer(creds);
    const inst = await this.mustFind(client, ref);
    const id = inst.InstanceId!;
    this.agents.delete(id);
    if (stateOf(inst) === 'stopped' || stateOf(inst) === 'stopping') return this.view(inst);
    await this.send(client, 'StopInstances', new StopInstancesCommand({ InstanceIds: [id] }));
    return this.view(await this.mustFind(client, { vmId: ref.vmId, cloudId: id }));
  }

  async powerOff(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm> {
    this.count('powerOff');
    const client = this.writer(creds);
    const inst = await this.mustFind(client, ref);
    const id = inst.InstanceId!;
    this.agents.delete(id);
    if (stateOf(inst) !== 'stopped') await this.send(client, 'StopInstances', new StopInstancesCommand({ InstanceIds: [id], Force: true }));
    return this.view(await this.waitFor(client, id, 'stopped', (x) => x === 'stopped'));
  }

  async resize(creds: ScopedCredentials, ref: VmRef, size: VmSize): Promise<CloudVm> {
    this.count('resize');
    const client = this.writer(creds);
    const inst = await this.mustFind(client, ref);
    const id = inst.InstanceId!;
    const type = this.typeFor(size);
    if (inst.InstanceType !== type) {
      await this.send(client, 'ModifyInstanceAttribute', new ModifyInstanceAttributeCommand({ InstanceId: id, InstanceType: { Value: type } }));
    }
    await this.send(client, 'CreateTags', new CreateTagsCommand({ Resources: [id], Tags: [{ Key: TAGS.size, Value: formatSizeTag(size) }] }));
    return this.view(await this.mustFind(client, { vmId: ref.vmId, cloudId: id }));
  }

  async deleteVm(creds: ScopedCredentials, ref: VmRef): Promise<void> {
    this.count('deleteVm');
    const client = this.writer(creds);
    const inst = await this.find(client, ref);
    if (!inst || isGone(inst)) return;
    const id = inst.InstanceId!;
    try {
      await this.send(client, 'TerminateInstances', new TerminateInstancesCommand({ InstanceIds: [id] }));
    } catch (err) {
      if (err instanceof DriverError && err.kind === 'not-found') return;
      throw err;
    }
    this.agents.delete(id);
  }

  async get(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm | undefined> {
    this.count('get');
    checkCredentials(this.dataCenter, creds);
    const inst = await this.find(this.readClient, ref);
    return inst ? this.view(inst) : undefined;
  }

  async list(creds: ScopedCredentials): Promise<CloudVm[]> {
    this.count('list');
    checkCredentials(this.dataCenter, creds);
    return (await this.describe(this.readClient, { Filters: this.scope() })).map((i) => this.view(i));
  }

  /** The DMZ client's own identity can read EC2: one DescribeInstances page of at most 5 (readiness). */
  async ready(): Promise<void> {
    await this.send(this.readClient, 'DescribeInstances', new DescribeInstancesCommand({ Filters: this.scope(), MaxResults: 5 }));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const wake of this.waiters) wake();
    this.waiters.clear();
    this.readClient.destroy();
    for (const c of this.clients.values()) c.destroy();
    this.clients.clear();
  }
}
