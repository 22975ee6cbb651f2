// The aws driver beyond the contract: what it sends EC2 (ClientToken, tags,
// user data, instance types, whose credentials), and EC2's faults as nock
// serves them: throttling then success, 5xx, connection reset, a hung call,
// capacity, an instance vanishing between calls, pagination.
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DriverError, type CreateVmInput } from '../types.ts';
import { parseAgentUserData } from '../../boot-agent/index.ts';
import { AwsDriver, dataDeviceOf } from './aws.ts';
import { awsDriverFactory } from './factory.ts';
import { ec2Error } from './errors.ts';
import { EC2_FAULTS, FakeEc2 } from './fake-ec2.ts';
import { EC2_STATES, mapEc2State } from './states.ts';
import { CONTRACT_TYPES, sessionCredentials } from './testing.ts';
import { defaultPack } from '../../testing.ts';
import { credentialKey } from '../../../protocol/index.ts';
import { callDriver } from '../../dmz-client/operations.ts';
import { importedState } from '../../../engine/cli/commands/import.ts';
import { expectRunningUnconfirmed } from '../contract.ts';

const DC = 'virginia';
const creds = () => sessionCredentials(DC);
const read = () => ({ dataCenter: DC, token: 'dmz-client-read-only', expiresAt: new Date(Date.now() + 60_000).toISOString() });
const input = (over: Partial<CreateVmInput> = {}): CreateVmInput => ({
  vmId: randomUUID(),
  address: 'web/3',
  name: 'hybrid-web-3',
  image: 'ami-0a1b2c3d4e5f60718',
  size: { cpu: 4, memoryGiB: 16, diskGiB: 100 },
  encryptedDisk: true,
  diskKeyHash: 'a'.repeat(64),
  ...over,
});

async function failure(p: Promise<unknown>): Promise<DriverError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof DriverError) return err;
    throw err;
  }
  throw new Error('expected a failure');
}

describe('aws driver', () => {
  let ec2: FakeEc2;
  let driver: AwsDriver;
  /** A driver of DC against the fake EC2 (a second one stands for the DMZ client restarted). */
  const makeDriver = (over: { dataVolumeDevice?: string } = {}, readyTimeoutMs?: number): AwsDriver => {
    const d = new AwsDriver({
      ...(readyTimeoutMs !== undefined ? { readyTimeoutMs } : {}),
      dataCenter: DC,
      stack: 'hybrid',
      settings: { region: 'us-east-1', subnetId: 'subnet-0abc', securityGroupIds: ['sg-0abc', 'sg-0def'], keyName: 'ops', pollMs: 1, ...over },
      instanceTypes: CONTRACT_TYPES,
      endpoint: ec2.endpoint,
      readCredentials: { accessKeyId: 'AKIDREADONLY', secretAccessKey: 'read-secret' },
      requestTimeoutMs: 1500,
    });
    d.attach({ bootUrl: 'http://10.0.0.5:7401/v1/boot' });
    return d;
  };
  beforeEach(async () => {
    ec2 = await FakeEc2.start();
    driver = makeDriver();
  });
  afterEach(async () => {
    await driver.close();
    await ec2.close();
  });

  it('ready (the DMZ client\'s readiness): one DescribeInstances page of at most 5 with its own read identity; refused credentials reject with the reason', async () => {
    await driver.ready();
    const [call] = ec2.calls('DescribeInstances');
    expect(Object.fromEntries(call.params)).toMatchObject({ MaxResults: '5' });
    expect(ec2.requests.at(-1)?.accessKeyId).toBe('AKIDREADONLY');
    ec2.fail('DescribeInstances', EC2_FAULTS.credentials);
    const err = await failure(driver.ready());
    expect(err.kind).toBe('credentials');
    expect(err.message).toContain('AWS was not able to validate the provided access credentials');
  });

  it('RunInstances carries ClientToken = VM id, the tags, the instance type of the size, the network, and user data with the agent but no token or key', async () => {
    const i = input();
    await driver.createVm(creds(), i);
    const [run] = ec2.calls('RunInstances');
    const p = Object.fromEntries(run.params);
    expect(p).toMatchObject({
      ClientToken: i.vmId,
      ImageId: 'ami-0a1b2c3d4e5f60718',
      InstanceType: 'm6i.xlarge',
      MinCount: '1',
      MaxCount: '1',
      SubnetId: 'subnet-0abc',
      'SecurityGroupId.1': 'sg-0abc',
      'SecurityGroupId.2': 'sg-0def',
      KeyName: 'ops',
      'MetadataOptions.HttpTokens': 'required',
      InstanceInitiatedShutdownBehavior: 'stop',
    });
    const tags = [...ec2.instances.values()][0].tags;
    expect(Object.fromEntries(tags)).toMatchObject({
      'fleet:stack': 'hybrid',
      'fleet:data-center': DC,
      'fleet:fleet': 'web',
      'fleet:address': 'web/3',
      'fleet:vm-id': i.vmId,
      Name: 'hybrid-web-3',
    });
    expect(p['TagSpecification.2.ResourceType']).toBe('volume');
    const userData = Buffer.from(p.UserData, 'base64').toString('utf8');
    expect(userData).toContain('dmzfleet boot agent');
    expect(parseAgentUserData(userData)).toMatchObject({ FLEET_BOOT_URL: 'http://10.0.0.5:7401/v1/boot', FLEET_VM_ID: i.vmId, FLEET_BOOT_TOKEN: '', FLEET_ENCRYPTED: '1' });
    expect(userData).not.toContain(i.diskKeyHash);
    // Mutating calls are signed with the brokered session credentials, never the client's own.
    expect(new Set(ec2.requests.map((r) => r.accessKeyId))).toEqual(new Set(['ASIABROKERED']));
    await driver.list(read());
    expect(ec2.requests.at(-1)?.accessKeyId).toBe('AKIDREADONLY');
  });

  it('user data over EC2\'s 16 KiB (a bootUrl too long) fails the create as `failed`, naming the setting, before RunInstances', async () => {
    driver.attach({ bootUrl: `https://dmz.example/${'a'.repeat(16 * 1024)}` });
    const err = await failure(driver.createVm(creds(), input()));
    expect(err.kind).toBe('failed');
    expect(err.message).toMatch(/over the cloud's limit of 16384; its longest setting is FLEET_BOOT_URL/);
    expect(ec2.calls('RunInstances')).toEqual([]);
  });

  it('boot writes this boot\'s token into the user data (ModifyInstanceAttribute) before StartInstances; resize sets the catalog type', async () => {
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    await driver.resize(creds(), ref, { cpu: 8, memoryGiB: 32, diskGiB: 100 });
    expect(ec2.calls('ModifyInstanceAttribute').at(-1)?.params.get('InstanceType.Value')).toBe('m6i.2xlarge');
    await driver.powerOn(creds(), ref);
    await driver.boot(creds(), ref, { bootToken: 'tok-123' });
    const mod = ec2.calls('ModifyInstanceAttribute').at(-1)!;
    const userData = Buffer.from(mod.params.get('UserData.Value')!, 'base64').toString('utf8');
    expect(parseAgentUserData(userData)).toMatchObject({ FLEET_BOOT_TOKEN: 'tok-123', FLEET_CLOUD_ID: vm.cloudId, FLEET_ENCRYPTED: '0' });
    const order = ec2.requests.map((r) => r.action).filter((a) => a === 'ModifyInstanceAttribute' || a === 'StartInstances');
    expect(order.slice(-2)).toEqual(['ModifyInstanceAttribute', 'StartInstances']);
  });

  // /dev/nvme1n1 is the second NVMe device the kernel found, not necessarily the data volume: a boot names the volume
  // by its EBS id (DescribeInstances' blockDeviceMapping), udev's stable link on Nitro; spec.aws.dataVolumeDevice wins.
  it.each([
    { name: 'the volume EC2 mapped at /dev/sdf, by id', setting: undefined, want: (vol: string) => `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol${vol.slice(4)}` },
    { name: 'spec.aws.dataVolumeDevice when set', setting: '/dev/xvdf', want: () => '/dev/xvdf' },
  ])('boot tells the agent its data device: $name', async ({ setting, want }) => {
    const d = setting ? makeDriver({ dataVolumeDevice: setting }) : driver;
    try {
      const vm = await d.createVm(creds(), input());
      const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
      // The first launch cannot know the volume id yet: it runs no handshake (no token).
      const first = Buffer.from(Object.fromEntries(ec2.calls('RunInstances')[0].params).UserData, 'base64').toString('utf8');
      expect(parseAgentUserData(first).FLEET_DATA_DEVICE).toBe(setting ?? '/dev/nvme1n1');
      await d.boot(creds(), ref, { bootToken: 'tok-1' });
      const userData = Buffer.from(ec2.calls('ModifyInstanceAttribute').at(-1)!.params.get('UserData.Value')!, 'base64').toString('utf8');
      const vol = ec2.instances.get(vm.cloudId)!.volumes.find((v) => v.deviceName === '/dev/sdf')!.volumeId;
      expect(parseAgentUserData(userData).FLEET_DATA_DEVICE).toBe(want(vol));
    } finally {
      if (d !== driver) await d.close();
    }
  });

  // The agent's retries end inside the DMZ client's wait for the boot (spec.readyTimeoutMs): its window is rendered from it.
  it.each([
    { name: 'the default wait', readyTimeoutMs: undefined, want: '480' },
    { name: 'spec.readyTimeoutMs 300000', readyTimeoutMs: 300_000, want: '180' },
  ])('boot tells the agent its boot window: $name, $want s', async ({ readyTimeoutMs, want }) => {
    const d = makeDriver({}, readyTimeoutMs);
    try {
      const vm = await d.createVm(creds(), input());
      await d.boot(creds(), { vmId: vm.vmId, cloudId: vm.cloudId }, { bootToken: 'tok-1' });
      const userData = Buffer.from(ec2.calls('ModifyInstanceAttribute').at(-1)!.params.get('UserData.Value')!, 'base64').toString('utf8');
      expect(parseAgentUserData(userData).FLEET_BOOT_WINDOW).toBe(want);
    } finally {
      await d.close();
    }
  });

  it.each([
    { name: 'no block device mapping', inst: {}, want: undefined },
    { name: 'the root volume only', inst: { BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { VolumeId: 'vol-0123456789abcdef0' } }] }, want: undefined },
    { name: 'the data volume without an id', inst: { BlockDeviceMappings: [{ DeviceName: '/dev/sdf', Ebs: {} }] }, want: undefined },
    {
      name: 'the data volume',
      inst: { BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { VolumeId: 'vol-0aaaaaaaaaaaaaaaa' } }, { DeviceName: '/dev/sdf', Ebs: { VolumeId: 'vol-0123456789abcdef0' } }] },
      want: '/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0',
    },
  ])('dataDeviceOf: $name', ({ inst, want }) => {
    expect(dataDeviceOf(inst)).toBe(want);
  });

  it('the DMZ client\'s boot CA (--boot-ca) reaches the agent in the user data; without one the agent uses the image\'s CAs', async () => {
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----';
    // Nothing serves 10.0.0.5 here: the agents the fake EC2 starts give up at once.
    ec2.agentEnv = { FLEET_TRIES: '1' };
    const booted = async (): Promise<Partial<Record<string, string>>> => {
      const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
      await driver.powerOn(creds(), { vmId: vm.vmId, cloudId: vm.cloudId });
      await driver.boot(creds(), { vmId: vm.vmId, cloudId: vm.cloudId }, { bootToken: 'tok-ca' });
      return parseAgentUserData(Buffer.from(ec2.calls('ModifyInstanceAttribute').at(-1)!.params.get('UserData.Value')!, 'base64').toString('utf8'));
    };
    expect((await booted()).FLEET_BOOT_CA).toBe('');
    driver.attach({ bootUrl: 'https://10.0.0.5:7401/v1/boot', bootCa: pem });
    expect(await booted()).toMatchObject({ FLEET_BOOT_URL: 'https://10.0.0.5:7401/v1/boot', FLEET_BOOT_CA: pem });
  });

  // A boot whose report was lost (a crash, an authority outage) is approved
  // again by the next apply with a new token, while the instance runs with
  // the first one and this DMZ client (restarted) no longer knows it: the
  // boot stops the instance and starts it with the new token rather than
  // failing with invalid-state at every apply (docs/recovery.md, "Resumed boots").
  it('boot of an instance started with another token (or one this DMZ client does not know) stops it, then starts it with this token', async () => {
    // No agent runs in these VMs (its token taken out as they start): an agent that cannot reach the boot
    // endpoint powers its VM off, which would race the states this test reads.
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    await driver.powerOn(creds(), ref);
    await driver.boot(creds(), ref, { bootToken: 'tok-first' });
    const restarted = makeDriver();
    try {
      const before = ec2.requests.length;
      const out = await restarted.boot(creds(), ref, { bootToken: 'tok-second' });
      const actions = ec2.requests.slice(before).map((r) => r.action).filter((a) => a !== 'DescribeInstances');
      expect(actions).toEqual(['StopInstances', 'ModifyInstanceAttribute', 'StartInstances']);
      const mod = ec2.calls('ModifyInstanceAttribute').at(-1)!;
      expect(parseAgentUserData(Buffer.from(mod.params.get('UserData.Value')!, 'base64').toString('utf8'))).toMatchObject({ FLEET_BOOT_TOKEN: 'tok-second' });
      expect(out.cloudId).toBe(vm.cloudId);
      expect(['pending', 'running']).toContain(ec2.instances.get(vm.cloudId)?.state);
      // The same boot again (a retry whose start went through) does nothing more.
      const again = ec2.requests.length;
      await restarted.boot(creds(), ref, { bootToken: 'tok-second' });
      expect(ec2.requests.slice(again).map((r) => r.action).filter((a) => a !== 'DescribeInstances')).toEqual([]);
    } finally {
      await restarted.close();
    }
  });

  it('a running instance with no agent report here reads Running with agent unknown, not ready: fleet import records it BootFailed unless the record confirms its boot', async () => {
    // `fleet state rm` + `fleet import` while the agent still boots, answered by a client without its state folder: the
    // instance read Running, agent ready, and was imported Running though its handshake never completed.
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    ec2.instances.get(vm.cloudId)!.state = 'running';
    const restarted = makeDriver();
    try {
      const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
      const seen = await expectRunningUnconfirmed(restarted, creds(), ref);
      const { lifecycle } = await defaultPack();
      expect(importedState(lifecycle, seen.observedState, 'none')).toEqual({ state: 'BootFailed' });
      expect(importedState(lifecycle, seen.observedState, 'authorized')).toEqual({ state: 'Running' });
    } finally {
      await restarted.close();
    }
  });

  it('an instance started again from EC2\'s console since its agent\'s ready report reads agent unknown, not ready: the report is of the run before (ActualVm.startedAt)', async () => {
    // `fleet state rm` of a Running member, then a stop and start from the console: until the agent of the new run is
    // denied (it presents the token of the boot before), the instance read Running with the old run's ready report,
    // and fleet import recorded it Running (evidence agent-ready), as refresh walked a PoweredOff record to Running.
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    await driver.boot(creds(), ref, { bootToken: 'tok-before' });
    expect(driver.agentStatus({ cloudId: vm.cloudId, vmId: vm.vmId, bootToken: 'tok-before', state: 'ready' })).toBe(true);
    const ready = await driver.awaitReady(creds(), ref, { timeoutMs: 5_000 });
    expect([ready.observedState, ready.agent]).toEqual(['Running', 'ready']);
    const launched = ec2.instances.get(vm.cloudId)!.launchTime;
    expect((await driver.get(read(), ref))?.agent).toBe('ready');
    // The console's StopInstances and StartInstances: EC2 sets a new launchTime; the new run's agent has not asked yet.
    const i = ec2.instances.get(vm.cloudId)!;
    i.launchTime = new Date(Date.parse(launched) + 60_000).toISOString().replace(/\.\d{3}Z$/, '.000Z');
    i.state = 'running';
    const seen = await expectRunningUnconfirmed(driver, read(), ref);
    expect([ready.startedAt, seen.startedAt]).toEqual([launched, i.launchTime]);
  });

  it('an instance rebooted since its agent\'s ready report (launchTime as it was) reads agent unknown and started at the reboot, once its agent starts over', async () => {
    // RebootInstances, or a reboot inside the guest, keeps launchTime, so the ready report still read as of the current
    // run until the instance stopped: `fleet state rm` + `fleet import` in that time recorded Running (evidence
    // agent-ready, or authorized: an approval after launchTime) a VM whose disk is locked again. EC2 shows nothing
    // until the agent runs again with the boot's token, used already; its first report says so.
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    await driver.boot(creds(), ref, { bootToken: 'tok-before' });
    const report = (state: 'booting' | 'ready' | 'failed', bootToken = 'tok-before') => driver.agentStatus({ cloudId: vm.cloudId, vmId: vm.vmId, bootToken, state });
    expect(report('booting')).toBe(true);
    expect(report('ready')).toBe(true);
    const ready = await driver.awaitReady(creds(), ref, { timeoutMs: 5_000 });
    expect([ready.observedState, ready.agent]).toEqual(['Running', 'ready']);
    const launched = ec2.instances.get(vm.cloudId)!.launchTime;
    expect(ready.startedAt).toBe(launched);
    // Reports that are not a run starting over change nothing: another token's, and this boot's ready again.
    expect(report('booting', 'tok-other')).toBe(false);
    expect(report('ready')).toBe(false);
    expect([(await driver.get(read(), ref))?.agent, (await driver.get(read(), ref))?.startedAt]).toEqual(['ready', launched]);
    // The reboot: EC2 still reads the instance running since the same launchTime. Its agent reports booting with the
    // used token: refused as before, and the run it reported ready for is over.
    const before = Date.now();
    expect(report('booting')).toBe(false);
    const after = Date.now();
    const i = ec2.instances.get(vm.cloudId)!;
    expect([i.state, i.launchTime]).toEqual(['running', launched]);
    const seen = await expectRunningUnconfirmed(driver, read(), ref);
    // The moment the report came, by this client's clock (EC2's launchTime may be a second ahead of it, as the fake's is).
    expect(Date.parse(seen.startedAt!)).toBeGreaterThanOrEqual(before);
    expect(Date.parse(seen.startedAt!)).toBeLessThanOrEqual(after);
    expect((await driver.list(read())).find((v) => v.cloudId === vm.cloudId)).toMatchObject({ agent: 'unknown', startedAt: seen.startedAt });
    const { lifecycle } = await defaultPack();
    expect(importedState(lifecycle, seen.observedState, 'none')).toEqual({ state: 'BootFailed' });
    // Started again from EC2's console after that: its launchTime, later, is the latest start.
    i.launchTime = new Date(Date.parse(seen.startedAt!) + 60_000).toISOString().replace(/\.\d{3}Z$/, '.000Z');
    expect(await driver.get(read(), ref)).toMatchObject({ agent: 'unknown', startedAt: i.launchTime });
  });

  // EC2 may accept StartInstances and then put the instance back to stopped with a stateReason saying why
  // (Server.InsufficientInstanceCapacity when the zone has no room for it after all; someone stopping it). Only a
  // guest powering itself off (Client.InstanceInitiatedShutdown: the agent after a denied boot) is a denied boot;
  // the others must not terminate the VM (its data volume goes with it) nor pass for a security denial.
  it.each([
    { code: 'Server.InsufficientInstanceCapacity', message: 'Server.InsufficientInstanceCapacity: Insufficient capacity.', kind: 'capacity' },
    { code: 'Client.UserInitiatedShutdown', message: 'Client.UserInitiatedShutdown: User initiated shutdown', kind: 'boot-failed' },
    { code: 'Server.InternalError', message: 'Server.InternalError: Internal error on launch', kind: 'boot-failed' },
  ] as const)('an instance EC2 stops during its boot with $code is $kind, keeps its disk and is not terminated', async ({ code, message, kind }) => {
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    await driver.powerOn(creds(), ref);
    ec2.startFailure = { code, message };
    await driver.boot(creds(), ref, { bootToken: 'tok-start' });
    const err = await failure(driver.awaitReady(creds(), ref, { timeoutMs: 5_000 }));
    expect(err.kind).toBe(kind);
    expect(err.message).toContain(message);
    expect(ec2.calls('TerminateInstances')).toEqual([]);
    expect(ec2.instances.get(vm.cloudId)?.state).toBe('stopped');
    expect(await driver.get(read(), ref)).toMatchObject({ status: 'present', observedState: 'PoweredOff' });
  });

  // EC2's reads are eventually consistent: right after StartInstances, DescribeInstances may still answer the
  // instance as it was before the start, stopped with the stateReason of its last stop (createVm's own StopInstances;
  // a guest that once halted itself). That stop is not this boot's: taken for one, a starting VM was reported
  // boot-failed, or terminated as a denied boot. Only a stop after this start counts (seen pending or running since,
  // or a stop reason or launch time other than the one read before StartInstances).
  it.each([
    { before: 'its create (Client.UserInitiatedShutdown)', reason: undefined },
    { before: 'its guest halting itself (Client.InstanceInitiatedShutdown)', reason: { code: 'Client.InstanceInitiatedShutdown', message: 'Client.InstanceInitiatedShutdown: Instance initiated shutdown' } },
  ])('reads right after StartInstances that still show the stop of $before are waited past: the boot becomes ready', async ({ reason }) => {
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    if (reason) ec2.instances.get(vm.cloudId)!.stateReason = reason;
    ec2.staleAfterStart = 3;
    await driver.boot(creds(), ref, { bootToken: 'tok-stale' });
    expect(driver.agentStatus({ cloudId: vm.cloudId, vmId: vm.vmId, bootToken: 'tok-stale', state: 'ready' })).toBe(true);
    expect(await driver.awaitReady(creds(), ref, { timeoutMs: 10_000 })).toMatchObject({ observedState: 'Running' });
    expect(ec2.calls('TerminateInstances')).toEqual([]);
  });

  it('a stop that shows through stale reads after the start still counts; reads that never catch up end as a timeout saying so, the VM kept', async () => {
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    ec2.staleAfterStart = 2;
    ec2.startFailure = { code: 'Server.InsufficientInstanceCapacity', message: 'Server.InsufficientInstanceCapacity: Insufficient capacity.' };
    await driver.boot(creds(), ref, { bootToken: 'tok-cap' });
    expect((await failure(driver.awaitReady(creds(), ref, { timeoutMs: 10_000 }))).kind).toBe('capacity');

    // Stopped by someone since (a stop's reason, which no failed start gives: after a failed start's, reads that
    // never catch up are that failure again, see below).
    ec2.instances.get(vm.cloudId)!.stateReason = { code: 'Client.UserInitiatedShutdown', message: 'Client.UserInitiatedShutdown: User initiated shutdown' };
    ec2.startFailure = undefined;
    ec2.staleAfterStart = Infinity;
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    await driver.boot(creds(), ref, { bootToken: 'tok-lag' });
    const err = await failure(driver.awaitReady(creds(), ref, { timeoutMs: 300 }));
    expect(err.kind).toBe('timeout');
    expect(err.message).toMatch(/still reads stopped as before its start/);
    expect(ec2.calls('TerminateInstances')).toEqual([]);
  });

  // A start EC2 fails before any read sees it pending goes straight back to stopped, with launchTime left as it was
  // (it never launched): after a start that failed the same way, its stop reads exactly as the last one, like a
  // stale read. The reason is one only a failed start gives (not a stop's: createVm's, a guest's halt), so once EC2's
  // reads had 20 s to catch up (here: the wait's deadline), with no word from its agent, it is this start's failure:
  // capacity, not timeout (with a word from its agent, a start that went through: see the next tests).
  it.each([
    { code: 'Server.InsufficientInstanceCapacity', message: 'Server.InsufficientInstanceCapacity: Insufficient capacity.', kind: 'capacity' },
    { code: 'Server.InternalError', message: 'Server.InternalError: Internal error on launch', kind: 'boot-failed' },
  ] as const)('a start failed with $code before any read saw it pending, as the last start was, is $kind, not a timeout; the VM kept', async ({ code, message, kind }) => {
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    ec2.startFailure = { code, message };
    await driver.boot(creds(), ref, { bootToken: 'tok-first' });
    expect((await failure(driver.awaitReady(creds(), ref, { timeoutMs: 5_000 }))).kind).toBe(kind);

    ec2.startFailure = { code, message, unseen: true };
    await driver.boot(creds(), ref, { bootToken: 'tok-again' });
    const err = await failure(driver.awaitReady(creds(), ref, { timeoutMs: 300 }));
    expect(err.kind).toBe(kind);
    expect(err.message).toContain(message);
    expect(ec2.calls('TerminateInstances')).toEqual([]);
    expect(ec2.instances.get(vm.cloudId)?.state).toBe('stopped');

    // Reads that lag behind a start that goes through, after that failed start, still reach ready.
    ec2.startFailure = undefined;
    ec2.staleAfterStart = 3;
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    await driver.boot(creds(), ref, { bootToken: 'tok-third' });
    expect(driver.agentStatus({ cloudId: vm.cloudId, vmId: vm.vmId, bootToken: 'tok-third', state: 'ready' })).toBe(true);
    expect(await driver.awaitReady(creds(), ref, { timeoutMs: 10_000 })).toMatchObject({ observedState: 'Running' });
  });

  // After a start EC2 failed (its stop's reason one only a failed start gives), a start that goes through but whose
  // DescribeInstances reads lag behind it for longer than a few seconds still reads as that old stop. The old reason is
  // no evidence of this start: it was taken for this start failing the same way once the reads had lagged 20 s, and
  // the booting VM (running, its agent ready) was reported `capacity` / `boot-failed`, powered off in the record.
  // EC2's clock here is the wait's reads: each comes `lagMs` after the one before (Date.now follows them).
  it.each([
    { code: 'Server.InsufficientInstanceCapacity', message: 'Server.InsufficientInstanceCapacity: Insufficient capacity.', kind: 'capacity', lagMs: 10_000 },
    { code: 'Server.InternalError', message: 'Server.InternalError: Internal error on launch', kind: 'boot-failed', lagMs: 10_000 },
    { code: 'Server.InsufficientInstanceCapacity', message: 'Server.InsufficientInstanceCapacity: Insufficient capacity.', kind: 'capacity', lagMs: 60_000 },
  ] as const)('after a start failed with $code, a start that goes through with reads lagging $lagMs ms apart reaches ready', async ({ code, message, kind, lagMs }) => {
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    ec2.startFailure = { code, message };
    await driver.boot(creds(), ref, { bootToken: 'tok-failed' });
    expect((await failure(driver.awaitReady(creds(), ref, { timeoutMs: 5_000 }))).kind).toBe(kind);

    ec2.startFailure = undefined;
    // boot's own read after StartInstances takes the first; awaitReady reads the old stop 4 times (40 s, 240 s).
    ec2.staleAfterStart = 5;
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    await driver.boot(creds(), ref, { bootToken: 'tok-lagging' });
    expect(driver.agentStatus({ cloudId: vm.cloudId, vmId: vm.vmId, bootToken: 'tok-lagging', state: 'ready' })).toBe(true);
    const reads = () => ec2.calls('DescribeInstances').length;
    const [from, realNow] = [reads(), Date.now.bind(Date)];
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + lagMs * (reads() - from));
    try {
      expect(await driver.awaitReady(creds(), ref, { timeoutMs: 10 * 60_000 })).toMatchObject({ observedState: 'Running' });
    } finally {
      clock.mockRestore();
    }
    expect(reads() - from).toBeGreaterThan(4);
    expect(ec2.calls('TerminateInstances')).toEqual([]);
    expect(ec2.instances.get(vm.cloudId)?.state).toBe('running');
  });

  // The same start failed again (EC2 never shows it pending), and no report from its agent: not waited out to the
  // wait's end (10 minutes on aws) but taken for this start's failure once the reads had 20 s to catch up. The agent's
  // report is what tells a lagging start that went through from a failed one.
  it.each([
    { code: 'Server.InsufficientInstanceCapacity', message: 'Server.InsufficientInstanceCapacity: Insufficient capacity.', kind: 'capacity' },
    { code: 'Server.InternalError', message: 'Server.InternalError: Internal error on launch', kind: 'boot-failed' },
  ] as const)('after a start failed with $code, the same failure again with no word from its agent is $kind within 20 s of reads, not at the end of a 10-minute wait', async ({ code, message, kind }) => {
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    ec2.startFailure = { code, message };
    await driver.boot(creds(), ref, { bootToken: 'tok-failed' });
    expect((await failure(driver.awaitReady(creds(), ref, { timeoutMs: 5_000 }))).kind).toBe(kind);

    ec2.startFailure = { code, message, unseen: true };
    await driver.boot(creds(), ref, { bootToken: 'tok-failed-again' });
    const reads = () => ec2.calls('DescribeInstances').length;
    const [from, realNow] = [reads(), Date.now.bind(Date)];
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 10_000 * (reads() - from));
    let err: DriverError;
    try {
      err = await failure(driver.awaitReady(creds(), ref, { timeoutMs: 10 * 60_000 }));
    } finally {
      clock.mockRestore();
    }
    expect(err.kind).toBe(kind);
    expect(err.message).toMatch(/its agent never heard from: EC2 failed this start the way it failed the last one/);
    // 10 s a read: the third read is 20 s in, far from the 60 reads of the whole wait.
    expect(reads() - from).toBeLessThanOrEqual(4);
    expect(ec2.calls('TerminateInstances')).toEqual([]);
  });

  // An instance that powers itself off during its boot (Client.InstanceInitiatedShutdown) without a report this client
  // believes (a report needs the boot token) is a denied boot only when the boot endpoint denied this boot's token
  // (Driver.bootDenied, which the DMZ client calls with each denial it relays). Any other denial says nothing of the
  // VM: the endpoint is open to the DMZ network, and anyone can have a boot check for it denied while it boots. Taken
  // for its denial, the instance was terminated (its data volume gone), or, TerminateInstances failing, deleted and
  // created again by the next apply (providers/boot-denied-cloud.test.ts goes through the DMZ client and the record).
  it.each([
    { name: 'no denial seen', denials: [] as string[], taken: [] as boolean[], kind: 'boot-failed', terminated: false },
    { name: 'a denial of a made-up token (someone else\'s boot check)', denials: ['a-token-someone-made-up'], taken: [false], kind: 'boot-failed', terminated: false },
    { name: 'a denial of an earlier boot\'s token', denials: ['tok-earlier'], taken: [false], kind: 'boot-failed', terminated: false },
    { name: 'a denial of this boot\'s token', denials: ['tok-start'], taken: [true], kind: 'boot-denied', terminated: true },
    { name: 'a made-up token\'s denial, then this boot\'s', denials: ['a-token-someone-made-up', 'tok-start'], taken: [false, true], kind: 'boot-denied', terminated: true },
  ])('an instance that powers itself off during its boot without a report, $name: $kind', async ({ denials, taken, kind, terminated }) => {
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    await driver.powerOn(creds(), ref);
    ec2.startFailure = { code: 'Client.InstanceInitiatedShutdown', message: 'Client.InstanceInitiatedShutdown: Instance initiated shutdown' };
    await driver.boot(creds(), ref, { bootToken: 'tok-start' });
    expect(denials.map((bootToken) => driver.bootDenied({ vmId: vm.vmId, cloudId: vm.cloudId, bootToken }))).toEqual(taken);
    const err = await failure(driver.awaitReady(creds(), ref, { timeoutMs: 5_000 }));
    expect(err.kind, err.message).toBe(kind);
    expect(ec2.calls('TerminateInstances').map((r) => r.params.get('InstanceId.1'))).toEqual(terminated ? [vm.cloudId] : []);
    if (!terminated) {
      expect(err.message).toMatch(/powered itself off during its boot without a report .*; it is kept \(powered off\), and the next apply boots it again/);
      expect(ec2.instances.get(vm.cloudId)?.state).toBe('stopped');
    }
  });

  it('a denial of this boot\'s token after its agent reported ready (an in-guest reboot presenting it again) is not taken as this boot\'s', async () => {
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    await driver.boot(creds(), ref, { bootToken: 'tok-ready' });
    expect(driver.agentStatus({ cloudId: vm.cloudId, vmId: vm.vmId, bootToken: 'tok-ready', state: 'ready' })).toBe(true);
    expect(await driver.awaitReady(creds(), ref, { timeoutMs: 5_000 })).toMatchObject({ observedState: 'Running' });
    expect(driver.bootDenied({ vmId: vm.vmId, cloudId: vm.cloudId, bootToken: 'tok-ready' })).toBe(false);
    expect(await driver.get(read(), ref)).toMatchObject({ observedState: 'Running' });
  });

  // Every booting VM's awaitReady (and every wait for a state) polls DescribeInstances; a fleet booting at once
  // meets EC2's request rate limit (RequestLimitExceeded) or a 5xx now and then. One such read is no reason to
  // end a wait that the next poll would finish: the waits read again, backing off, until their deadline.
  it.each([
    // Throttled once (each throttle is waited out for a second or two), the 5xx three times.
    { name: 'throttled (RequestLimitExceeded)', fault: EC2_FAULTS.transient, times: 1 },
    { name: 'a 5xx', fault: EC2_FAULTS.internal, times: 3 },
  ])('awaitReady and a wait for a state read past DescribeInstances $name', async ({ fault, times }) => {
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    // createVm's first read is its wait for the launched instance.
    ec2.fail('DescribeInstances', fault, times);
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    expect(vm).toMatchObject({ observedState: 'PoweredOff' });
    expect(ec2.instances.size).toBe(1);
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    await driver.boot(creds(), ref, { bootToken: 'tok-poll' });
    expect(driver.agentStatus({ cloudId: vm.cloudId, vmId: vm.vmId, bootToken: 'tok-poll', state: 'ready' })).toBe(true);
    ec2.fail('DescribeInstances', fault, times);
    expect(await driver.awaitReady(creds(), ref, { timeoutMs: 10_000 })).toMatchObject({ observedState: 'Running' });
  });

  it('a wait whose reads keep failing transiently ends at its deadline as a timeout naming the last failure', async () => {
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    await driver.boot(creds(), ref, { bootToken: 'tok-poll' });
    ec2.fail('DescribeInstances', EC2_FAULTS.transient);
    const err = await failure(driver.awaitReady(creds(), ref, { timeoutMs: 200 }));
    expect(err.kind).toBe('timeout');
    expect(err.message).toContain('RequestLimitExceeded');
  });

  // The approval of an awaitReady step carries the broker's session credentials as they are (900 s, renewed at two
  // thirds: often minutes left, at least 30 s), and a boot may be waited for 10 minutes: the wait must outlive them.
  it('awaitReady outlives the session credentials of its approval: its reads go on with the DMZ client\'s own identity', async () => {
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    await driver.boot(creds(), ref, { bootToken: 'tok-long' });
    const expiresAt = Date.now() + 400;
    const short = sessionCredentials(DC, 'ASIASHORT');
    short.aws!.expiration = new Date(expiresAt).toISOString();
    ec2.sessionExpiry.set('ASIASHORT', expiresAt);
    const waiting = driver.awaitReady(short, ref, { timeoutMs: 20_000 });
    // The agent reports ready once the session credentials have expired (waited on the clock, with a deadline).
    await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(expiresAt + 50), { timeout: 5_000, interval: 20 });
    driver.agentStatus({ cloudId: vm.cloudId, vmId: vm.vmId, bootToken: 'tok-long', state: 'ready' });
    expect(await waiting).toMatchObject({ observedState: 'Running' });
  });

  it('a denied boot found after the session credentials expired is boot-denied, saying the instance (powered off) could not be terminated yet', async () => {
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    await driver.boot(creds(), ref, { bootToken: 'tok-denied' });
    const expiresAt = Date.now() + 400;
    const short = sessionCredentials(DC, 'ASIASHORT');
    short.aws!.expiration = new Date(expiresAt).toISOString();
    ec2.sessionExpiry.set('ASIASHORT', expiresAt);
    const waiting = failure(driver.awaitReady(short, ref, { timeoutMs: 20_000 }));
    await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(expiresAt + 50), { timeout: 5_000, interval: 20 });
    driver.agentStatus({ cloudId: vm.cloudId, vmId: vm.vmId, bootToken: 'tok-denied', state: 'failed', denied: true, detail: 'boot denied: unknown boot token' });
    const err = await waiting;
    expect(err.kind).toBe('boot-denied');
    expect(err.message).toMatch(/not terminated.*expired/);
  });

  // The patent's trusted boot: a denied VM is terminated. When EC2 refuses or fails that TerminateInstances, the step
  // is still a denied boot (boot-denied), saying the instance was not terminated yet, why, and what happens next; the
  // TerminateInstances failure's own kind (credentials, transient) hid the denial: the member's advice was the wrong
  // one ("check the role", "run it again"), and a transient one was tried again as if the cloud were at fault.
  it.each([
    { name: 'refused (UnauthorizedOperation)', fault: { error: 'UnauthorizedOperation', status: 403, message: 'You are not authorized to perform this operation.' }, why: /UnauthorizedOperation: You are not authorized/ },
    { name: 'failing (InternalError 500) through every try', fault: EC2_FAULTS.internal, why: /InternalError: An internal error has occurred/ },
    { name: 'throttled (RequestLimitExceeded) through every try', fault: EC2_FAULTS.transient, why: /RequestLimitExceeded: Request limit exceeded/ },
  ])('a denied boot whose TerminateInstances is $name is boot-denied, saying the instance was not terminated yet and why', async ({ fault, why }) => {
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    await driver.boot(creds(), ref, { bootToken: 'tok-denied' });
    driver.agentStatus({ cloudId: vm.cloudId, vmId: vm.vmId, bootToken: 'tok-denied', state: 'failed', denied: true, detail: 'boot denied: unknown boot token' });
    ec2.fail('TerminateInstances', fault);
    // As the DMZ client calls it: 4 tries, a transient failure tried again (the pauses recorded, not waited).
    const pauses: number[] = [];
    const err = await failure(callDriver('awaitReady', () => driver.awaitReady(creds(), ref, { timeoutMs: 5_000 }), { attempts: 4, timeoutMs: 10_000, sleep: async (ms) => void pauses.push(ms) }));
    expect(err.kind).toBe('boot-denied');
    expect(err.message).toContain(`instance ${vm.cloudId}: boot denied: unknown boot token`);
    expect(err.message).toMatch(/it was not terminated yet \(EC2 TerminateInstances: /);
    expect(err.message).toMatch(why);
    expect(err.message).toContain('the next apply (docs/recovery.md, BootFailed) deletes it and creates the member again');
    expect(ec2.calls('TerminateInstances').length).toBe(fault === EC2_FAULTS.transient || fault === EC2_FAULTS.internal ? 4 : 1);
    expect(pauses).toHaveLength(fault === EC2_FAULTS.transient || fault === EC2_FAULTS.internal ? 3 : 0);
    // Not terminated: still there, for the next apply's delete.
    expect(ec2.instances.get(vm.cloudId)?.state).not.toBe('terminated');
  });

  it('a denied boot whose TerminateInstances fails once transiently is terminated on the next try', async () => {
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    await driver.boot(creds(), ref, { bootToken: 'tok-denied' });
    driver.agentStatus({ cloudId: vm.cloudId, vmId: vm.vmId, bootToken: 'tok-denied', state: 'failed', denied: true, detail: 'boot denied: unknown boot token' });
    ec2.fail('TerminateInstances', EC2_FAULTS.internal, 1);
    const err = await failure(callDriver('awaitReady', () => driver.awaitReady(creds(), ref, { timeoutMs: 5_000 }), { attempts: 4, timeoutMs: 10_000, sleep: async () => undefined }));
    expect(err.kind).toBe('boot-denied');
    expect(err.message).toBe(`instance ${vm.cloudId} was terminated: boot denied: unknown boot token`);
    expect(ec2.calls('TerminateInstances')).toHaveLength(2);
  });

  it('a size no catalog type fits fails before any EC2 call', async () => {
    const err = await failure(driver.createVm(creds(), input({ size: { cpu: 64, memoryGiB: 512, diskGiB: 10 } })));
    expect(err.kind).toBe('failed');
    expect(err.message).toContain('no instance type');
    expect(ec2.calls('RunInstances')).toEqual([]);
  });

  it('credentials without the brokered AWS part are refused with credentials', async () => {
    const { aws: _aws, ...bare } = creds();
    expect((await failure(driver.createVm(bare, input()))).kind).toBe('credentials');
    expect(ec2.requests).toEqual([]);
  });

  it('a retried RunInstances (same ClientToken) returns the first instance', async () => {
    const i = input();
    const a = await driver.createVm(creds(), i);
    const b = await driver.createVm(creds(), i);
    expect(b.cloudId).toBe(a.cloudId);
    expect(ec2.calls('RunInstances')).toHaveLength(2);
    expect(ec2.instances.size).toBe(1);
  });

  it.each([
    { name: 'throttling (RequestLimitExceeded, 503)', fault: EC2_FAULTS.transient, kind: 'transient' },
    { name: 'a 5xx (InternalError, 500)', fault: EC2_FAULTS.internal, kind: 'transient' },
    { name: 'Unavailable (503)', fault: EC2_FAULTS.unavailable, kind: 'transient' },
    { name: 'a connection reset', fault: EC2_FAULTS.reset, kind: 'transient' },
    { name: 'an answer lost after EC2 made the instance', fault: { lostAnswer: true }, kind: 'transient' },
    { name: 'a hung call', fault: EC2_FAULTS.timeout, kind: 'timeout' },
    { name: 'InsufficientInstanceCapacity', fault: EC2_FAULTS.capacity, kind: 'capacity' },
    { name: 'AuthFailure', fault: EC2_FAULTS.credentials, kind: 'credentials' },
  ] as const)('RunInstances failing once with $name is $kind; the retry makes one instance', async ({ fault, kind }) => {
    const i = input();
    ec2.fail('RunInstances', fault, 1);
    const err = await failure(driver.createVm(creds(), i));
    expect(err.kind).toBe(kind);
    expect(err.transient).toBe(kind === 'transient');
    await driver.createVm(creds(), i);
    expect([...ec2.instances.values()].filter((x) => x.tags.get('fleet:vm-id') === i.vmId)).toHaveLength(1);
  });

  // A DMZ client host whose clock is off by more than EC2's 5 minutes: EC2 refuses the signature (RequestExpired,
  // or SignatureDoesNotMatch / AuthFailure), and the SDK learns EC2's time from the answer's Date header and signs
  // the next request with it ($metadata.clockSkewCorrected). Trying again then works: transient, not credentials.
  // EC2 refills its request and resource token buckets per second (RunInstances' resource bucket: 2 a second) and
  // sends no Retry-After: the DMZ client's own backoff (tens of ms, 4 tries) spent every try inside the same second.
  // A throttled call asks the retry to wait at least a second, with jitter so a fleet's calls do not come back at once.
  it('a throttled call (RequestLimitExceeded) asks the DMZ client\'s retry to wait at least a second, and the retry makes one instance', async () => {
    const i = input();
    ec2.fail('RunInstances', EC2_FAULTS.transient, 2);
    const pauses: number[] = [];
    const vm = await callDriver('createVm', () => driver.createVm(creds(), i), { attempts: 4, timeoutMs: 30_000, sleep: async (ms) => void pauses.push(ms) });
    expect(vm.status).toBe('present');
    expect(pauses).toHaveLength(2);
    for (const ms of pauses) {
      expect(ms).toBeGreaterThanOrEqual(1000);
      expect(ms).toBeLessThan(2000);
    }
    expect(ec2.instances.size).toBe(1);
  });

  it('a request refused for a skewed clock that the SDK corrected is transient; the retry succeeds', async () => {
    const i = input();
    const ahead = new Date(Date.now() + 10 * 60_000).toUTCString();
    ec2.fail('RunInstances', { error: 'RequestExpired', status: 400, message: 'Request has expired.', date: ahead }, 1);
    const err = await failure(driver.createVm(creds(), i));
    expect(err.kind).toBe('transient');
    expect(err.message).toMatch(/clock/);
    expect((await driver.createVm(creds(), i)).status).toBe('present');
    expect(ec2.instances.size).toBe(1);
  });

  // EC2 refuses a call the IAM policy does not allow with UnauthorizedOperation and an encoded message (1-2 KB)
  // that only `aws sts decode-authorization-message` reads: it names the policy, action and condition that failed.
  // Cut short it decodes to nothing; whole, with how to decode it, it tells the person what to fix.
  it('UnauthorizedOperation keeps its whole encoded authorization message and says how to decode it', async () => {
    const encoded = `${'Zm9vYmFy'.repeat(200)}-_x`;
    ec2.fail('RunInstances', {
      error: 'UnauthorizedOperation',
      status: 403,
      message: `You are not authorized to perform this operation. User: arn:aws:sts::123456789012:assumed-role/dmzfleet-virginia-dmz/fleet is not authorized to perform: ec2:RunInstances on resource: arn:aws:ec2:us-east-1:123456789012:instance/* because no session policy allows the ec2:RunInstances action. Encoded authorization failure message: ${encoded}`,
    }, 1);
    const err = await failure(driver.createVm(creds(), input()));
    expect(err.kind).toBe('credentials');
    expect(err.message).toContain(encoded);
    expect(err.message).toContain('aws sts decode-authorization-message');
    expect(err.message).not.toMatch(/session-secret|session-token/);
  });

  // EC2's capacity refusal ends with what to do: the zones that have the type now. Cut at 300 characters, that
  // list was lost.
  it('InsufficientInstanceCapacity keeps its whole message, with the zones EC2 says have capacity', async () => {
    const message =
      'We currently do not have sufficient m6i.xlarge capacity in the Availability Zone you requested (us-east-1a). Our system will be working on provisioning additional capacity. You can currently get m6i.xlarge capacity by not specifying an Availability Zone in your request or choosing us-east-1b, us-east-1c, us-east-1d, us-east-1f.';
    ec2.fail('RunInstances', { error: 'InsufficientInstanceCapacity', status: 500, message }, 1);
    const err = await failure(driver.createVm(creds(), input()));
    expect(err.kind).toBe('capacity');
    expect(err.message).toContain('choosing us-east-1b, us-east-1c, us-east-1d, us-east-1f.');
  });

  it('RequestExpired without a skewed clock stays credentials', async () => {
    ec2.fail('RunInstances', { error: 'RequestExpired', status: 400, message: 'Request has expired.', date: new Date().toUTCString() }, 1);
    expect((await failure(driver.createVm(creds(), input()))).kind).toBe('credentials');
  });

  it('an instance EC2 does not show yet right after RunInstances (eventual consistency: InvalidInstanceID.NotFound) is waited for, not a failed create', async () => {
    const i = input();
    // EC2 documents that DescribeInstances may not know an instance RunInstances just returned.
    ec2.fail('DescribeInstances', EC2_FAULTS['not-found'], 2);
    const vm = await driver.createVm(creds(), i);
    expect(vm).toMatchObject({ vmId: i.vmId, status: 'present', observedState: 'PoweredOff' });
    expect(ec2.instances.size).toBe(1);
    expect(ec2.calls('TerminateInstances')).toHaveLength(0);
  });

  it('a create that fails for good after RunInstances (an instance-store AMI cannot be stopped: UnsupportedOperation) terminates the instance: nothing is left', async () => {
    const i = input();
    ec2.fail('StopInstances', { error: 'UnsupportedOperation', status: 400, message: "The instance 'i-0' does not have an 'ebs' root device type and cannot be stopped." });
    const err = await failure(driver.createVm(creds(), i));
    expect(err.kind).toBe('failed');
    expect(err.message).toContain('UnsupportedOperation');
    const [inst] = [...ec2.instances.values()];
    expect(ec2.calls('TerminateInstances').map((r) => r.params.get('InstanceId.1'))).toEqual([inst.id]);
    expect(['shutting-down', 'terminated']).toContain(inst.state);
    ec2.heal();
    expect((await driver.list(read())).filter((v) => v.status === 'present')).toEqual([]);
  });

  // EC2 answers a ClientToken with its first instance for at least 24 hours after that instance terminated
  // (docs: "Ensuring idempotency"). The record's way out of CreateFailed is the create again under the same VM id:
  // it must launch a new instance, not be answered the terminated one at every apply for a day.
  it('a create again after one whose instance was terminated (CreateFailed -> BeingCreated, same VM id) launches a new instance; a retry of it finds that one', async () => {
    const i = input();
    ec2.fail('StopInstances', { error: 'UnsupportedOperation', status: 400, message: "The instance 'i-0' does not have an 'ebs' root device type and cannot be stopped." }, 1);
    await failure(driver.createVm(creds(), i));
    const [first] = [...ec2.instances.values()];
    expect(['shutting-down', 'terminated']).toContain(first.state);
    const again = await driver.createVm(creds(), i);
    expect(again).toMatchObject({ vmId: i.vmId, status: 'present', observedState: 'PoweredOff' });
    expect(again.cloudId).not.toBe(first.id);
    const tokens = ec2.calls('RunInstances').map((r) => r.params.get('ClientToken'));
    expect(tokens[0]).toBe(i.vmId);
    expect(new Set(tokens).size).toBe(2);
    // A retry of that create (its answer lost) walks the same tokens to the same instance: no third one.
    expect((await driver.createVm(creds(), i)).cloudId).toBe(again.cloudId);
    expect(ec2.instances.size).toBe(2);
    expect(await driver.get(read(), { vmId: i.vmId, cloudId: null })).toMatchObject({ cloudId: again.cloudId, status: 'present' });
  });

  it('a create that fails for good and whose TerminateInstances fails too says the instance remains and what removes it', async () => {
    ec2.fail('StopInstances', { error: 'UnsupportedOperation', status: 400, message: "The instance 'i-0' does not have an 'ebs' root device type and cannot be stopped." }, 1);
    ec2.fail('TerminateInstances', EC2_FAULTS.unavailable);
    const err = await failure(driver.createVm(creds(), input()));
    expect(err.kind).toBe('failed');
    const [inst] = [...ec2.instances.values()];
    expect(inst.state).toBe('running');
    expect(err.message).toContain('UnsupportedOperation');
    expect(err.message).toMatch(new RegExp(`clean-up failed.*instance ${inst.id} remains.*next apply`));
  });

  // The create again under the same VM id often comes with another image or size (the one that failed was fixed):
  // EC2 answers its first token, used with other parameters, IdempotentParameterMismatch, for a day.
  it('a create again with another image after one whose instance was terminated launches it; a live instance of other parameters is named, not duplicated', async () => {
    const i = input();
    ec2.fail('StopInstances', { error: 'UnsupportedOperation', status: 400, message: "The instance 'i-0' does not have an 'ebs' root device type and cannot be stopped." }, 1);
    await failure(driver.createVm(creds(), i));
    const fixed = { ...i, image: 'ami-0fedcba9876543210' };
    const again = await driver.createVm(creds(), fixed);
    expect(again).toMatchObject({ status: 'present', observedState: 'PoweredOff', image: 'ami-0fedcba9876543210' });
    expect((await driver.createVm(creds(), fixed)).cloudId).toBe(again.cloudId);
    expect(ec2.instances.size).toBe(2);
    // That VM's instance lives: a create of it with yet another image is refused, naming the instance.
    const err = await failure(driver.createVm(creds(), { ...i, image: 'ami-0123123123123123a' }));
    expect(err.kind).toBe('failed');
    expect(err.message).toContain(again.cloudId);
    expect(ec2.instances.size).toBe(2);
  });

  it('an instance that vanishes between calls is not-found for the next call, gone for get, and deleted without complaint', async () => {
    const vm = await driver.createVm(creds(), input());
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    ec2.vanish(vm.cloudId);
    expect((await failure(driver.powerOff(creds(), ref))).kind).toBe('not-found');
    expect((await failure(driver.resize(creds(), ref, { cpu: 2, memoryGiB: 4, diskGiB: 10 }))).kind).toBe('not-found');
    expect(await driver.get(read(), ref)).toBeUndefined();
    await driver.deleteVm(creds(), ref);
  });

  it('a cloud id EC2 calls malformed (InvalidInstanceID.Malformed) is a failure naming it, never "the VM is gone"', async () => {
    // A record whose cloud id was mistyped (an import of the wrong string): EC2 looked nothing up, so nothing says the
    // VM vanished. get must not answer "gone" (refresh would record it missing), nor deleteVm "deleted".
    const vm = await driver.createVm(creds(), input());
    const ref = { vmId: vm.vmId, cloudId: 'i-0abc-typo' };
    for (const call of [() => driver.get(read(), ref), () => driver.powerOff(creds(), ref), () => driver.deleteVm(creds(), ref)]) {
      const err = await failure(call());
      expect(err.kind).toBe('failed');
      expect(err.transient).toBe(false);
      expect(err.message).toContain('i-0abc-typo');
      expect(err.message).toMatch(/not an EC2 instance id/);
    }
    expect(ec2.calls('TerminateInstances')).toHaveLength(0);
    expect(ec2.instances.get(vm.cloudId)?.state).toBe('stopped');
  });

  it('list reads every page of DescribeInstances, filtered by the stack and data center tags', async () => {
    ec2.pageSize = 2;
    const made = [];
    for (let k = 0; k < 5; k++) made.push(await driver.createVm(creds(), input({ address: `web/${k}` })));
    // An instance of another stack in the same account is never listed.
    ec2.instances.set('i-other', { ...[...ec2.instances.values()][0], id: 'i-other', tags: new Map([['fleet:stack', 'other']]), runs: [] });
    const before = ec2.calls('DescribeInstances').length;
    const all = await driver.list(read());
    expect(all.map((v) => v.cloudId).sort()).toEqual(made.map((v) => v.cloudId).sort());
    const pages = ec2.calls('DescribeInstances').slice(before);
    expect(pages).toHaveLength(3);
    expect(pages.map((p) => p.params.get('NextToken'))).toEqual([null, '2', '4']);
    expect(Object.fromEntries(pages[0].params)).toMatchObject({ 'Filter.1.Name': 'tag:fleet:stack', 'Filter.1.Value.1': 'hybrid', 'Filter.2.Name': 'tag:fleet:data-center', 'Filter.2.Value.1': DC });
  });

  it('shutdown is a graceful StopInstances, powerOff a forced one', async () => {
    const vm = await driver.createVm(creds(), input({ encryptedDisk: false, diskKeyHash: undefined }));
    const inst = ec2.instances.get(vm.cloudId)!;
    inst.state = 'running';
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    expect((await driver.shutdown(creds(), ref)).observedState).toBe('ShuttingDown');
    expect(ec2.calls('StopInstances').at(-1)?.params.get('Force')).toBeNull();
    inst.state = 'running';
    expect((await driver.powerOff(creds(), ref)).observedState).toBe('PoweredOff');
    expect(ec2.calls('StopInstances').at(-1)?.params.get('Force')).toBe('true');
  });

  // The region is written twice: in the stack entry (the authority's session policy allows that region only) and in
  // the DMZ client config (where the driver calls EC2). Apart, every mutating call is refused by the session policy
  // (UnauthorizedOperation) while reads work: the DMZ client starts, looks ready, and fails each step. Refused at start.
  it('the registry-made driver refuses a DMZ client config whose region is not the stack entry\'s', async () => {
    const pack = await defaultPack();
    const make = (region: string) =>
      awsDriverFactory({
        dataCenter: { name: DC, address: 'https://dmz.example', location: { lat: 0, lon: 0 }, hardware: [], capacity: {}, driver: 'aws', aws: { region: 'us-east-1', roleArn: 'arn:aws:iam::123456789012:role/dmz' }, where: {} },
        stack: 'hybrid',
        pack,
        config: { aws: { region, subnetId: 'subnet-0abc', securityGroupIds: ['sg-0abc'] } },
        stateDir: '/nonexistent',
        env: { AWS_ENDPOINT_URL_EC2: ec2.endpoint },
        credentialKey: credentialKey('dmz-token', DC),
      });
    const err = await make('us-west-2').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DriverError);
    expect((err as DriverError).message).toMatch(/us-west-2.*us-east-1/);
    await (await make('us-east-1')).close();
  });

  it('AWS_ENDPOINT_URL_EC2 points the registry-made driver at another endpoint; the config\'s readyTimeoutMs sets its agents\' boot window', async () => {
    const pack = await defaultPack();
    const d = await awsDriverFactory({
      dataCenter: { name: DC, address: 'https://dmz.example', location: { lat: 0, lon: 0 }, hardware: [], capacity: {}, driver: 'aws', where: {} },
      stack: 'hybrid',
      pack,
      config: { aws: { region: 'us-east-1', subnetId: 'subnet-0abc', securityGroupIds: ['sg-0abc'], endpoint: 'http://127.0.0.1:9' }, readyTimeoutMs: 300_000 },
      stateDir: '/nonexistent',
      env: { AWS_ENDPOINT_URL_EC2: ec2.endpoint, AWS_ACCESS_KEY_ID: 'AKIDENV', AWS_SECRET_ACCESS_KEY: 'env-secret' },
      credentialKey: credentialKey('dmz-token', DC),
    });
    try {
      expect(await d.list(read())).toEqual([]);
      expect(ec2.requests.at(-1)?.accessKeyId).toBe('AKIDENV');
      d.attach({ bootUrl: 'http://10.0.0.5:7401/v1/boot' });
      const vm = await d.createVm(creds(), input());
      await d.boot(creds(), { vmId: vm.vmId, cloudId: vm.cloudId }, { bootToken: 'tok-1' });
      const userData = Buffer.from(ec2.calls('ModifyInstanceAttribute').at(-1)!.params.get('UserData.Value')!, 'base64').toString('utf8');
      expect(parseAgentUserData(userData).FLEET_BOOT_WINDOW).toBe('180');
    } finally {
      await d.close();
    }
  });
});

describe('EC2 errors and states', () => {
  it.each([
    ['RequestLimitExceeded', 503, 'transient'],
    ['InsufficientInstanceCapacity', 500, 'capacity'],
    // The subnet has no address left, the account no EBS storage left: the data center is full, not a cloud fault.
    ['InsufficientFreeAddressesInSubnet', 400, 'capacity'],
    ['VolumeLimitExceeded', 400, 'capacity'],
    ['IncorrectInstanceState', 400, 'invalid-state'],
    ['InvalidInstanceID.NotFound', 400, 'not-found'],
    // A cloud id of the wrong form: EC2 looked nothing up; the VM is not known to be gone.
    ['InvalidInstanceID.Malformed', 400, 'failed'],
    ['UnauthorizedOperation', 403, 'credentials'],
    ['AuthFailure', 401, 'credentials'],
    ['SomethingNew', 502, 'transient'],
    ['InvalidParameterValue', 400, 'failed'],
    ['TimeoutError', undefined, 'timeout'],
  ] as const)('%s (HTTP %s) is %s', (code, status, kind) => {
    expect(ec2Error({ name: code, message: 'm', $metadata: { httpStatusCode: status } }, 'X').kind).toBe(kind);
  });

  it('a reset socket the SDK names TimeoutError is transient', () => {
    expect(ec2Error({ name: 'TimeoutError', code: 'ECONNRESET', message: 'socket hang up' }, 'X').kind).toBe('transient');
  });

  it('every EC2 state maps to a state of the default pack', async () => {
    const pack = await defaultPack();
    for (const s of EC2_STATES) for (const a of ['unknown', 'none', 'booting', 'ready', 'failed'] as const) expect(pack.lifecycle.states).toContain(mapEc2State(s, a).observedState);
  });
});
