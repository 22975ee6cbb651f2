// The boot agents' reports outlive a DMZ client restart, for both cloud
// drivers: a report sent to the restarted client is believed (the token's
// hash was kept), a failure or a denial reported before the restart still
// shows after it, and the file holds no token. The clouds are the nock fakes;
// the reports go to agentStatus as POST /v1/boot/status hands them over.
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentLedger, agentLedgerFile, isCurrentReport } from './agent-ledger.ts';
import { DriverError, type CloudVm, type Driver, type ScopedCredentials, type VmRef } from './types.ts';
import { AwsDriver } from './aws/aws.ts';
import { FakeEc2 } from './aws/fake-ec2.ts';
import { CONTRACT_TYPES, sessionCredentials } from './aws/testing.ts';
import { ArmFake } from './azure/arm-fake.ts';
import { AzureDriver } from './azure/azure.ts';
import { staticTokenCredential } from './azure/clients.ts';
import { azureBootstrap } from './azure/bootstrap.ts';

const DC = 'dc-ledger';
const far = () => new Date(Date.now() + 3_600_000).toISOString();

/** One cloud behind nock, and drivers over it that share a state folder (each `open` is a DMZ client (re)start). */
interface Cloud {
  open(stateDir: string): Driver;
  creds(): ScopedCredentials;
  /** Whether the cloud still has the VM live. */
  alive(vm: CloudVm): boolean;
  close(): Promise<void>;
}

const SUB = '00000000-0000-0000-0000-0000000000ee';
const RG = 'rg-ledger';

const CLOUDS: Record<'aws' | 'azure', () => Promise<Cloud>> = {
  aws: async () => {
    const ec2 = await FakeEc2.start();
    // The VM never runs its agent here: the test sends the agent's reports itself.
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']*'$/m, "FLEET_BOOT_TOKEN=''");
    return {
      open: (stateDir) => {
        const d = new AwsDriver({
          dataCenter: DC,
          stack: 'ledger',
          settings: { region: 'us-east-1', subnetId: 'subnet-0abc', securityGroupIds: ['sg-0abc'], pollMs: 1 },
          instanceTypes: CONTRACT_TYPES,
          endpoint: ec2.endpoint,
          readCredentials: { accessKeyId: 'AKIDREADONLY', secretAccessKey: 'read-secret' },
          requestTimeoutMs: 2000,
          stateDir,
        });
        d.attach({ bootUrl: 'http://127.0.0.1:9/v1/boot' });
        return d;
      },
      creds: () => sessionCredentials(DC),
      alive: (vm) => {
        const s = ec2.instances.get(vm.cloudId)?.state;
        return s !== undefined && s !== 'terminated' && s !== 'shutting-down';
      },
      close: () => ec2.close(),
    };
  },
  azure: async () => {
    const arm = new ArmFake({ subscriptionId: SUB, resourceGroup: RG, location: 'eastus' }).install();
    return {
      open: (stateDir) => {
        const d = new AzureDriver({
          dataCenter: DC,
          stack: 'ledger',
          subscriptionId: SUB,
          resourceGroup: RG,
          location: 'eastus',
          vnet: 'vnet',
          subnet: 'vms',
          vmSize: () => 'Standard_D2s_v5',
          readCredential: staticTokenCredential('read-only-token', far()),
          customData: azureBootstrap(),
          // The VM never runs its agent here (no token in its script): the test sends the agent's reports itself.
          bootScript: ({ bootToken: _t, ...ctx }) => JSON.stringify(ctx),
          sshPublicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest operator',
          pollIntervalMs: 1,
          requestTimeoutMs: 5_000,
          stateDir,
        });
        d.attach({ bootUrl: 'http://127.0.0.1:9/v1/boot' });
        return d;
      },
      creds: () => ({ dataCenter: DC, token: 'scoped', expiresAt: far(), azure: { accessToken: 'brokered-token', expiresOn: far(), subscriptionId: SUB, resourceGroup: RG } }),
      alive: (vm) => arm.vms.has(vm.cloudId.split('/').at(-1) ?? ''),
      close: () => arm.close(),
    };
  },
};

describe.each(['aws', 'azure'] as const)('%s driver: the agents\' reports across a DMZ client restart', (kind) => {
  let cloud: Cloud;
  let dir: string;
  let open: Driver[];
  const start = () => {
    const d = cloud.open(dir);
    open.push(d);
    return d;
  };
  /** A VM booting with `token` under a first driver, which then stops (the DMZ client goes down). */
  const bootThenRestart = async (token: string, report?: { state: 'ready' | 'failed'; denied?: boolean }) => {
    const first = start();
    const vmId = randomUUID();
    const made = await first.createVm(cloud.creds(), { vmId, address: 'web/0', name: 'web-0', image: kind === 'aws' ? 'ami-0a1b2c3d4e5f60718' : 'Canonical:ubuntu-24_04-lts:server:latest', size: { cpu: 2, memoryGiB: 8, diskGiB: 20 }, encryptedDisk: false });
    const ref: VmRef = { vmId, cloudId: made.cloudId };
    await first.powerOn(cloud.creds(), ref);
    await first.boot(cloud.creds(), ref, { bootToken: token });
    if (report) expect(first.agentStatus?.({ cloudId: made.cloudId, vmId, bootToken: token, state: report.state, detail: report.denied ? 'boot denied: unknown boot token' : 'cryptsetup open failed', ...(report.denied ? { denied: true } : {}) })).toBe(true);
    await first.close();
    return { vm: made, ref, second: start() };
  };

  beforeEach(async () => {
    cloud = await CLOUDS[kind]();
    dir = mkdtempSync(join(tmpdir(), `dmzfleet-ledger-${kind}-`));
    open = [];
  });
  afterEach(async () => {
    for (const d of open) await d.close();
    await cloud.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a report sent to the restarted client is believed, and the VM becomes Running', async () => {
    const { vm, ref, second } = await bootThenRestart('tok-booting');
    expect(second.agentStatus?.({ cloudId: vm.cloudId, vmId: ref.vmId, bootToken: 'another-token', state: 'ready' })).toBe(false);
    expect(second.agentStatus?.({ cloudId: vm.cloudId, vmId: ref.vmId, bootToken: 'tok-booting', state: 'ready' })).toBe(true);
    expect(await second.awaitReady(cloud.creds(), ref, { timeoutMs: 5_000 })).toMatchObject({ observedState: 'Running', agent: 'ready' });
  });

  it('a failure reported before the restart still shows after it (BootFailed, not Running)', async () => {
    const { ref, second } = await bootThenRestart('tok-failed', { state: 'failed' });
    expect(await second.get(cloud.creds(), ref)).toMatchObject({ observedState: 'BootFailed', agent: 'failed' });
    const err = await second.awaitReady(cloud.creds(), ref, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DriverError);
    expect(err).toMatchObject({ kind: 'boot-failed', message: expect.stringContaining('cryptsetup open failed') });
  });

  it('a boot denied before the restart is terminated by the restarted client', async () => {
    const { vm, ref, second } = await bootThenRestart('tok-denied', { state: 'failed', denied: true });
    const err = await second.awaitReady(cloud.creds(), ref, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'boot-denied', message: expect.stringContaining('boot denied') });
    expect(cloud.alive(vm)).toBe(false);
  });

  it('the ledger is private and holds the token\'s hash, never the token', async () => {
    await bootThenRestart('tok-secret-4f1c', { state: 'ready' });
    const file = agentLedgerFile(dir, DC);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain('tok-secret-4f1c');
    expect(text).toMatch(/"tokenHash":"[0-9a-f]{64}"/);
  });
});

describe('AgentLedger', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'dmzfleet-ledger-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('without a state folder it keeps nothing on disk', () => {
    const l = AgentLedger.open(undefined, DC);
    l.set('i-1', { state: 'booting', tokenHash: 'a'.repeat(64) });
    expect(l.get('i-1')?.state).toBe('booting');
  });

  it('keeps entries across opens, and forgets deleted ones', () => {
    const a = AgentLedger.open(dir, DC);
    a.set('i-1', { state: 'ready', tokenHash: 'a'.repeat(64) });
    a.set('i-2', { state: 'booting', tokenHash: 'b'.repeat(64) });
    a.delete('i-2');
    const b = AgentLedger.open(dir, DC);
    expect([b.get('i-1')?.state, b.get('i-2')]).toEqual(['ready', undefined]);
  });

  it.each([
    ['not JSON', '{"version":1,"vms":', /not JSON/],
    ['another version', '{"version":7,"vms":{}}', /not version 1/],
  ])('a ledger that is %s stops the driver with the file named, instead of forgetting denied VMs', (_name, text, want) => {
    writeFileSync(agentLedgerFile(dir, DC), text);
    const err = (() => {
      try {
        AgentLedger.open(dir, DC);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(DriverError);
    expect((err as Error).message).toMatch(want);
    expect((err as Error).message).toContain(agentLedgerFile(dir, DC));
  });

  it.runIf(process.getuid?.() !== 0)('an unreadable ledger is a failure naming the file', () => {
    const file = agentLedgerFile(dir, DC);
    writeFileSync(file, '{"version":1,"vms":{}}');
    chmodSync(file, 0o000);
    expect(() => AgentLedger.open(dir, DC)).toThrow(/cannot read .*EACCES/);
  });
});

// Whether a report is of the VM's current run, which began at startedAt (the cloud's launchTime or provisioning time):
// a report of a run a start from the console ended is not (fleet import and refresh took it for this run's handshake).
describe('isCurrentReport', () => {
  const start = '2026-12-06T10:00:00.000Z';
  const cases: { name: string; entry: { at?: string; launch?: string }; startedAt: string | undefined; want: boolean }[] = [
    { name: 'the cloud says nothing of the start: as before', entry: {}, startedAt: undefined, want: true },
    { name: 'a start time that does not parse: as before', entry: { at: '2026-12-06T09:00:00.000Z' }, startedAt: 'soon', want: true },
    { name: 'aws: bound to this launch', entry: { launch: start, at: '2026-12-06T09:00:00.000Z' }, startedAt: start, want: true },
    { name: 'aws: bound to another launch (started again since)', entry: { launch: '2026-12-06T09:00:00.000Z', at: '2026-12-06T11:00:00.000Z' }, startedAt: start, want: false },
    { name: 'reported after the start', entry: { at: '2026-12-06T10:00:00.001Z' }, startedAt: start, want: true },
    { name: 'reported at the start itself (no later)', entry: { at: start }, startedAt: start, want: false },
    { name: 'reported before the start (a run before)', entry: { at: '2026-12-06T09:59:59.999Z' }, startedAt: start, want: false },
    { name: 'an older ledger: no time, no launch', entry: {}, startedAt: start, want: false },
  ];
  it.each(cases)('$name', ({ entry, startedAt, want }) => {
    expect(isCurrentReport(entry, startedAt)).toBe(want);
  });
});
