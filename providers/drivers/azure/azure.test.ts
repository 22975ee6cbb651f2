// The azure driver against ARM served by nock (arm-fake.ts, ARM's documented
// wire format): what it sends (tags, custom data without any disk key, VM
// size, which token), the lifecycle, and Azure's failures as DriverError kinds.
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createHash, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DriverError, type AgentReport, type CreateVmInput, type ScopedCredentials } from '../types.ts';
import { ArmFake, type ArmCall, type ArmFault } from './arm-fake.ts';
import { AzureDriver } from './azure.ts';
import type { AzureDriverOptions } from './options.ts';
import { staticTokenCredential } from './clients.ts';
import { azureBootstrap } from './bootstrap.ts';
import { resourceNames } from './names.ts';
import { importedState } from '../../../engine/cli/commands/import.ts';
import { expectRunningUnconfirmed } from '../contract.ts';
import { defaultPack } from '../../testing.ts';
import { callDriver } from '../../dmz-client/operations.ts';

const SUB = '00000000-0000-0000-0000-0000000000aa';
const RG = 'rg-fleet-east';
const DC = 'east';
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const far = () => new Date(Date.now() + 3_600_000).toISOString();

const SIZES: Record<string, string> = { '2/8': 'Standard_D2s_v5', '4/16': 'Standard_D4s_v5' };

/**
 * A boot endpoint: approves the tokens the test issued, denies any other (telling the driver of the denial, as the
 * DMZ client does: Driver.bootDenied), and hands agent reports to the driver.
 */
class BootEndpoint {
  server: Server | undefined;
  url = '';
  readonly issued = new Set<string>();
  /** When set, every request waits for it before it is answered (a boot the test lets go on at a moment it picks). */
  hold: Promise<void> | undefined;
  /** The agents' reports are lost on their way (answered 404, the driver never told). */
  loseReports = false;
  constructor(private readonly driver: () => AzureDriver) {}
  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', async () => {
        await this.hold;
        const b = JSON.parse(text) as Record<string, string>;
        res.writeHead(200, { 'content-type': 'application/json' });
        if (req.url?.endsWith('/status') && this.loseReports) {
          res.statusCode = 404;
          res.end(JSON.stringify({ error: { code: 'not-found', message: 'lost' } }));
        } else if (req.url?.endsWith('/status')) {
          res.end(JSON.stringify({ believed: this.driver().agentStatus(b as unknown as AgentReport) }));
        } else {
          const ok = this.issued.has(b.bootToken);
          if (!ok) this.driver().bootDenied({ vmId: b.vmId, cloudId: b.cloudId, bootToken: b.bootToken });
          res.end(JSON.stringify(ok ? { approved: true, reason: 'matches the record' } : { approved: false, reason: 'unknown boot token' }));
        }
      });
    });
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server?.address() as AddressInfo).port}/v1/boot`;
  }
  async close(): Promise<void> {
    await new Promise((r) => this.server?.close(r));
  }
}

let arm: ArmFake;
let boot: BootEndpoint;
let driver: AzureDriver;

function makeDriver(extra: Partial<AzureDriverOptions> = {}): AzureDriver {
  const d = new AzureDriver({
    dataCenter: DC,
    stack: 'prod',
    subscriptionId: SUB,
    resourceGroup: RG,
    location: 'eastus',
    vnet: 'vnet-fleet',
    subnet: 'vms',
    vmSize: (s) => SIZES[`${s.cpu}/${s.memoryGiB}`],
    readCredential: staticTokenCredential('read-only-token', far()),
    customData: azureBootstrap(),
    bootScript: (ctx) => JSON.stringify(ctx),
    sshPublicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest operator',
    pollIntervalMs: 1,
    requestTimeoutMs: 5_000,
    ...extra,
  });
  d.attach({ bootUrl: boot.url });
  return d;
}

/** What an approval carries: the authority's scoped token, and the Azure token its broker got for this data center. */
const creds = (over: Partial<ScopedCredentials> = {}): ScopedCredentials => ({
  dataCenter: DC,
  token: 'scoped-token',
  expiresAt: far(),
  azure: { accessToken: 'brokered-token', expiresOn: far(), subscriptionId: SUB, resourceGroup: RG },
  ...over,
});

function input(over: Partial<CreateVmInput> = {}): CreateVmInput {
  const vmId = randomUUID();
  return { vmId, address: 'web/0', name: 'web-0', image: 'Canonical:ubuntu-24_04-lts:server:latest', size: { cpu: 2, memoryGiB: 8, diskGiB: 64 }, encryptedDisk: true, diskKeyHash: sha256(`key-${vmId}`), ...over };
}

beforeEach(async () => {
  arm = new ArmFake({ subscriptionId: SUB, resourceGroup: RG, location: 'eastus' }).install();
  boot = new BootEndpoint(() => driver);
  await boot.start();
  driver = makeDriver();
});

afterEach(async () => {
  await driver.close();
  await arm.close();
  await boot.close();
});

async function failure(p: Promise<unknown>): Promise<DriverError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DriverError);
  return err as DriverError;
}

describe('azure driver: what it sends', () => {
  it('creates NIC and VM by name from the VM id, tagged, with the boot agent in custom data and no disk key, then powers the VM off', async () => {
    const i = input();
    const vm = await driver.createVm(creds(), i);
    const n = resourceNames(i.vmId);
    expect(vm).toMatchObject({ vmId: i.vmId, name: 'web-0', power: 'off', observedState: 'PoweredOff', size: i.size, encryptedDisk: true, status: 'present' });
    expect(vm.cloudId).toBe(`/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachines/${n.vm}`);

    const [nic] = arm.calls('putNic');
    expect(nic.path).toMatch(new RegExp(`/networkInterfaces/${n.nic}$`));
    expect(nic.body).toMatchObject({
      location: 'eastus',
      properties: { ipConfigurations: [{ properties: { subnet: { id: `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Network/virtualNetworks/vnet-fleet/subnets/vms` } } }] },
    });

    const [put] = arm.calls('putVm');
    expect(put.path).toMatch(new RegExp(`/virtualMachines/${n.vm}$`));
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the ARM body as sent, read field by field
    const body = put.body as { tags: Record<string, string>; properties: Record<string, any> };
    expect(body.tags).toEqual({
      'fleet-stack': 'prod',
      'fleet-data-center': DC,
      'fleet-vm-id': i.vmId,
      'fleet-address': 'web/0',
      'fleet-name': 'web-0',
      'fleet-image': i.image,
      'fleet-size': 'cpu=2,memoryGiB=8,diskGiB=64',
      'fleet-encrypted-disk': 'true',
    });
    expect(body.properties.hardwareProfile).toEqual({ vmSize: 'Standard_D2s_v5' });
    expect(body.properties.storageProfile.imageReference).toEqual({ publisher: 'Canonical', offer: 'ubuntu-24_04-lts', sku: 'server', version: 'latest' });
    expect(body.properties.storageProfile.dataDisks[0]).toMatchObject({ diskSizeGB: 64, deleteOption: 'Delete', createOption: 'Empty' });
    expect(body.properties.storageProfile.osDisk).toMatchObject({ deleteOption: 'Delete' });
    expect(body.properties.networkProfile.networkInterfaces[0]).toMatchObject({ properties: { primary: true, deleteOption: 'Delete' } });
    expect(body.properties.osProfile.linuxConfiguration.disablePasswordAuthentication).toBe(true);
    const custom = Buffer.from(body.properties.osProfile.customData as string, 'base64').toString('utf8');
    expect(custom).toBe(azureBootstrap());
    expect(custom).not.toContain(`key-${i.vmId}`);
    expect(JSON.stringify(put.body)).not.toContain(`key-${i.vmId}`);

    // Azure starts what it creates: the create ends with a forced power-off.
    const [off] = arm.calls('powerOff');
    expect(off.query.get('skipShutdown')).toBe('true');
    expect(arm.vms.get(n.vm)?.power).toBe('stopped');
  });

  it('acts with the brokered token and reads with the DMZ client own identity', async () => {
    const i = input();
    await driver.createVm(creds(), i);
    const { azure: _ignored, ...readOnly } = creds();
    await driver.get(readOnly, { vmId: i.vmId, cloudId: null });
    await driver.list(readOnly);
    for (const r of arm.requests) {
      const reads = r.call === 'instanceView' || r.call === 'listVms' || (r.call === 'getVm' && arm.requests.indexOf(r) > arm.requests.findIndex((q) => q.call === 'powerOff'));
      const polls = r.call === 'poll' || r.call === 'result';
      if (polls) continue;
      expect(r.authorization, `${r.method} ${r.path}`).toBe(reads ? 'Bearer read-only-token' : 'Bearer brokered-token');
    }
  });

  it('a retried create finds the VM it made: no second PUT', async () => {
    const i = input();
    const first = await driver.createVm(creds(), i);
    const again = await driver.createVm(creds(), i);
    expect(again.cloudId).toBe(first.cloudId);
    expect(arm.calls('putVm')).toHaveLength(1);
    expect(arm.calls('putNic')).toHaveLength(1);
  });

  it('refuses a VM of the same name that is not the fleet VM (its tag says otherwise)', async () => {
    const i = input();
    await driver.createVm(creds(), i);
    const vm = arm.vms.get(resourceNames(i.vmId).vm);
    if (vm) vm.tags['fleet-vm-id'] = 'someone-else';
    expect((await failure(driver.createVm(creds(), i))).kind).toBe('failed');
  });

  it('refuses credentials of another data center, expired ones, a token for another resource group or none, before calling Azure', async () => {
    expect((await failure(driver.createVm(creds({ dataCenter: 'west' }), input()))).kind).toBe('credentials');
    expect((await failure(driver.powerOn(creds({ expiresAt: new Date(Date.now() - 1000).toISOString() }), { vmId: 'x', cloudId: null }))).kind).toBe('credentials');
    const past = new Date(Date.now() - 1000).toISOString();
    expect((await failure(driver.powerOn(creds({ azure: { accessToken: 'old', expiresOn: past, subscriptionId: SUB, resourceGroup: RG } }), { vmId: 'x', cloudId: null }))).kind).toBe('credentials');
    const elsewhere = { accessToken: 'other-rg', expiresOn: far(), subscriptionId: SUB, resourceGroup: 'rg-someone-else' };
    expect((await failure(driver.powerOn(creds({ azure: elsewhere }), { vmId: 'x', cloudId: null }))).message).toMatch(/resource group rg-someone-else/);
    const { azure: _none, ...scopedOnly } = creds();
    expect((await failure(driver.powerOn(scopedOnly, { vmId: 'x', cloudId: null }))).message).toMatch(/issued no Azure token/);
    expect(arm.requests).toHaveLength(0);
  });

  // packages/dmz-infra's DmzClientHost writes this layout: the fleet VMs in a group of their own (the only one the
  // broker may write in), the VNet in the DMZ's group, where the broker may join only the fleet subnet.
  it('with vnetResourceGroup: makes the NIC, VM and disks in its own resource group and joins the subnet of the VNet in the other', async () => {
    await driver.close();
    driver = makeDriver({ vnetResourceGroup: 'rg-dmz-east' });
    const i = input();
    const vm = await driver.createVm(creds(), i);
    const n = resourceNames(i.vmId);
    expect(vm.cloudId).toBe(`/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachines/${n.vm}`);
    const [nic] = arm.calls('putNic');
    expect(nic.path).toBe(`/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Network/networkInterfaces/${n.nic}`);
    expect(nic.body).toMatchObject({
      properties: { ipConfigurations: [{ properties: { subnet: { id: `/subscriptions/${SUB}/resourceGroups/rg-dmz-east/providers/Microsoft.Network/virtualNetworks/vnet-fleet/subnets/vms` } } }] },
    });
    const [put] = arm.calls('putVm');
    expect(put.path).toBe(`/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachines/${n.vm}`);
    expect((put.body as { properties: { networkProfile: { networkInterfaces: { id: string }[] } } }).properties.networkProfile.networkInterfaces[0].id).toBe(
      `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Network/networkInterfaces/${n.nic}`,
    );
    // Every write went to the VMs' own group: nothing in the VNet's.
    expect(arm.requests.filter((r) => r.method !== 'GET' && !r.path.includes(`/resourceGroups/${RG}/`) && r.call !== 'poll' && r.call !== 'result').map((r) => `${r.method} ${r.path}`)).toEqual([]);
  });

  it('a size the catalog lacks, or an image that is neither a resource id nor a URN, fails before any PUT', async () => {
    expect((await failure(driver.createVm(creds(), input({ size: { cpu: 64, memoryGiB: 512, diskGiB: 10 } })))).message).toMatch(/no Azure VM size for/);
    expect((await failure(driver.createVm(creds(), input({ image: 'ubuntu 24.04' })))).message).toMatch(/neither an Azure image resource id/);
    expect(arm.calls('putVm')).toHaveLength(0);
  });
});

describe('azure driver: lifecycle', () => {
  it('create, power on, boot, ready, shut down, power off, resize, delete', async () => {
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    const made = await driver.createVm(creds(), i);
    expect((await driver.powerOn(creds(), ref)).observedState).toBe('PoweredOn');
    expect(arm.calls('start')).toHaveLength(1);

    boot.issued.add('token-1');
    const booting = await driver.boot(creds(), ref, { bootToken: 'token-1' });
    // The agent may report before boot's answer is back.
    expect(['Starting', 'Running']).toContain(booting.observedState);
    const [patch] = arm.calls('patchVm');
    const userData = JSON.parse(Buffer.from((patch.body as { properties: { userData: string } }).properties.userData, 'base64').toString('utf8')) as Record<string, unknown>;
    expect(userData).toEqual({ vmId: i.vmId, cloudId: booting.cloudId, image: i.image, bootUrl: boot.url, bootToken: 'token-1', encryptedDisk: true, dataDevice: '/dev/disk/azure/scsi1/lun0' });
    expect(JSON.stringify(userData)).not.toContain(`key-${i.vmId}`);

    const ready = await driver.awaitReady(creds(), ref, { timeoutMs: 10_000 });
    expect(ready).toMatchObject({ observedState: 'Running', power: 'on', agent: 'ready' });
    expect((await driver.get(creds(), ref))?.observedState).toBe('Running');

    await driver.shutdown(creds(), ref);
    expect(arm.calls('powerOff').at(-1)?.query.get('skipShutdown')).toBe('false');
    expect((await driver.powerOff(creds(), ref)).observedState).toBe('PoweredOff');

    const bigger = await driver.resize(creds(), ref, { cpu: 4, memoryGiB: 16, diskGiB: 64 });
    expect(bigger.size).toEqual({ cpu: 4, memoryGiB: 16, diskGiB: 64 });
    const resize = arm.calls('patchVm').at(-1)?.body as { properties: { hardwareProfile: unknown }; tags: Record<string, string> };
    expect(resize.properties.hardwareProfile).toEqual({ vmSize: 'Standard_D4s_v5' });
    expect(resize.tags['fleet-size']).toBe('cpu=4,memoryGiB=16,diskGiB=64');

    await driver.deleteVm(creds(), ref);
    const n = resourceNames(i.vmId);
    expect(arm.vms.has(n.vm)).toBe(false);
    expect(arm.nics.has(n.nic)).toBe(false);
    expect(arm.disks.size).toBe(0);
    expect(await driver.get(creds(), ref)).toBeUndefined();
    expect(made.cloudId).toContain(n.vm);
  });

  it('resize while running is invalid-state; nothing is patched', async () => {
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    await driver.createVm(creds(), i);
    await driver.powerOn(creds(), ref);
    expect((await failure(driver.resize(creds(), ref, { cpu: 4, memoryGiB: 16, diskGiB: 64 }))).kind).toBe('invalid-state');
    expect(arm.calls('patchVm')).toHaveLength(0);
  });

  it('a boot the authority denies: the agent reports failed, the VM powers itself off, awaitReady throws boot-denied and deletes the VM', async () => {
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    await driver.createVm(creds(), i);
    await driver.powerOn(creds(), ref);
    await driver.boot(creds(), ref, { bootToken: 'never-issued' });
    const err = await failure(driver.awaitReady(creds(), ref, { timeoutMs: 10_000 }));
    expect(err.kind).toBe('boot-denied');
    expect(err.message).toMatch(/boot denied/);
    expect(arm.boots).toEqual([{ vmName: resourceNames(i.vmId).vm, approved: false }]);
    expect(arm.vms.has(resourceNames(i.vmId).vm)).toBe(false);
    expect(await driver.get(creds(), ref)).toBeUndefined();
  });

  // A VM that powers itself off while booting, without a report this client believes (a report needs the token it was
  // booted with), is a denied boot only when the boot endpoint denied that token (Driver.bootDenied). A denial of any
  // other token says nothing of the VM: the endpoint is open to the DMZ network, and anyone can have a boot check for
  // it denied while it boots; taken for its denial, the VM was deleted, its data disk with it.
  it.each([
    { name: 'its own token denied, its reports lost', how: 'own token denied' as const, kind: 'boot-denied', deleted: true },
    { name: 'it presented another token (denied), its report not believed', how: 'swapped token' as const, kind: 'boot-failed', deleted: false },
    { name: 'someone else\'s boot check denied, then its guest halts unheard', how: 'spoofed check' as const, kind: 'boot-failed', deleted: false },
    { name: 'its guest halts unheard, no denial at all', how: 'halt' as const, kind: 'boot-failed', deleted: false },
  ])('a VM that powers itself off while booting, without a report this client believes: $name -> $kind', async ({ how, kind, deleted }) => {
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    const vm = await driver.createVm(creds(), i);
    await driver.powerOn(creds(), ref);
    if (how === 'swapped token') arm.tamper = () => 'swapped-token';
    boot.loseReports = how === 'own token denied';
    // The guest halts before its agent runs (the fake's agent takes the token for one it acted on already).
    if (how === 'spoofed check' || how === 'halt') arm.vms.get(resourceNames(i.vmId).vm)!.agentToken = 'token-issued';
    await driver.boot(creds(), ref, { bootToken: 'token-issued' });
    if (how !== 'own token denied') boot.issued.add('token-issued');
    if (how === 'spoofed check') expect(driver.bootDenied({ vmId: i.vmId, cloudId: vm.cloudId, bootToken: 'a-token-someone-made-up' })).toBe(false);
    if (how === 'spoofed check' || how === 'halt') arm.vms.get(resourceNames(i.vmId).vm)!.power = 'stopped';
    const err = await failure(driver.awaitReady(creds(), ref, { timeoutMs: 10_000 }));
    expect(err.kind, err.message).toBe(kind);
    expect(err.message).toMatch(/powered itself off during its boot/);
    if (how === 'own token denied' || how === 'swapped token') expect(arm.boots).toEqual([{ vmName: resourceNames(i.vmId).vm, approved: false }]);
    expect(arm.vms.has(resourceNames(i.vmId).vm)).toBe(!deleted);
    if (!deleted) {
      expect(err.message).toContain('it is kept (powered off: stopped, still allocated)');
      expect(arm.calls('deleteVm')).toEqual([]);
      expect((await driver.get(creds(), ref))?.observedState).toBe('PoweredOff');
    }
  });

  // A guest that powers itself off leaves its VM stopped (still allocated); only ARM deallocates (an operator, an
  // auto-shutdown schedule, a spot eviction). A VM deallocated during its boot is no denied boot: it is kept, with
  // its data disk, and awaitReady says what happened.
  it('a VM deallocated during its boot (not by its guest) is boot-failed and kept, not deleted as denied', async () => {
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    await driver.createVm(creds(), i);
    await driver.powerOn(creds(), ref);
    arm.vms.get(resourceNames(i.vmId).vm)!.power = 'deallocated';
    const err = await failure(driver.awaitReady(creds(), ref, { timeoutMs: 10_000 }));
    expect(err.kind).toBe('boot-failed');
    expect(err.message).toMatch(/deallocated/);
    expect(arm.calls('deleteVm')).toHaveLength(0);
    expect(arm.vms.has(resourceNames(i.vmId).vm)).toBe(true);
    expect((await driver.get(creds(), ref))?.observedState).toBe('PoweredOff');
  });

  it('an agent report with another token is not believed', async () => {
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    const vm = await driver.createVm(creds(), i);
    expect(driver.agentStatus({ cloudId: vm.cloudId, vmId: i.vmId, bootToken: 'guess', state: 'ready' })).toBe(false);
    await driver.powerOn(creds(), ref);
    // not yet booted: still no token to match
    expect(driver.agentStatus({ cloudId: vm.cloudId, vmId: i.vmId, bootToken: 'guess', state: 'ready' })).toBe(false);
    expect((await driver.get(creds(), ref))?.observedState).toBe('PoweredOn');
  });

  it('powerOff deallocates where the pack says so, and the create ends deallocated', async () => {
    await driver.close();
    driver = makeDriver({ powerOffMode: 'deallocate' });
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    expect((await driver.createVm(creds(), i)).observedState).toBe('PoweredOff');
    expect(arm.calls('deallocate')).toHaveLength(1);
    expect(arm.calls('powerOff')).toHaveLength(0);
    await driver.powerOn(creds(), ref);
    expect((await driver.powerOff(creds(), ref)).observedState).toBe('PoweredOff');
    expect(arm.calls('deallocate')).toHaveLength(2);
    expect(arm.vms.get(resourceNames(i.vmId).vm)?.power).toBe('deallocated');
  });

  it('lists the stack tag only, over several pages (nextLink)', async () => {
    await arm.close();
    arm = new ArmFake({ subscriptionId: SUB, resourceGroup: RG, location: 'eastus', pageSize: 2 }).install();
    const ids: string[] = [];
    for (let k = 0; k < 5; k++) {
      const i = input({ name: `web-${k}` });
      ids.push(i.vmId);
      await driver.createVm(creds(), i);
    }
    const other = arm.vms.get(resourceNames(ids[0]).vm);
    if (other) other.tags['fleet-stack'] = 'staging';
    const viewsBefore = arm.calls('instanceView').length;
    const listed = await driver.list(creds());
    expect(listed.map((v) => v.vmId).sort()).toEqual(ids.slice(1).sort());
    // ARM's resource-group list carries no power state ($expand=instanceView needs a scale-set $filter; statusOnly is
    // subscription-wide, beyond the reader's resource-group scope): one instance view per VM of this stack, none for others.
    expect(arm.calls('instanceView').slice(viewsBefore).map((q) => q.path.split('/').at(-2)).sort()).toEqual(ids.slice(1).map((id) => resourceNames(id).vm).sort());
    const pages = arm.calls('listVms');
    expect(pages).toHaveLength(3);
    expect(pages.map((p) => p.query.get('$skiptoken'))).toEqual([null, '2', '4']);
    expect(listed.every((v) => v.observedState === 'PoweredOff')).toBe(true);
  });

  it('each page of a list has its own deadline: a large resource group\'s pages, each answered in time, are all read', async () => {
    // Three pages, each answered in half the request deadline: together longer than one deadline. One deadline
    // for the whole walk (the list call's abort signal) timed the third page out.
    await arm.close();
    arm = new ArmFake({ subscriptionId: SUB, resourceGroup: RG, location: 'eastus', pageSize: 2 }).install();
    const ids: string[] = [];
    for (let k = 0; k < 6; k++) {
      const i = input({ name: `web-${k}` });
      ids.push(i.vmId);
      await driver.createVm(creds(), i);
    }
    await driver.close();
    driver = makeDriver({ requestTimeoutMs: 2_000 });
    arm.inject({ call: 'listVms', delayMs: 1_000, times: 3 });
    const listed = await driver.list(creds());
    expect(arm.calls('listVms')).toHaveLength(3);
    expect(listed.map((v) => v.vmId).sort()).toEqual([...ids].sort());
  });

  it('a list whose nextLink comes back again is a failure, not an endless walk', async () => {
    await arm.close();
    arm = new ArmFake({ subscriptionId: SUB, resourceGroup: RG, location: 'eastus', pageSize: 1, loopNextLink: true }).install();
    for (let k = 0; k < 2; k++) await driver.createVm(creds(), input({ name: `web-${k}` }));
    const err = await failure(driver.list(creds()));
    expect(err.kind).toBe('failed');
    expect(err.message).toMatch(/nextLink .* again/);
    expect(arm.calls('listVms')).toHaveLength(2);
  });

  it('a VM starting with no agent report here (another client, or this one before a restart without its state folder) reads Starting, which fleet import records BootFailed', async () => {
    // The rm+import race (docs/apply.md, "Forgetting and adopting a VM"): a VM forgotten while it boots is imported
    // from a client that knows nothing of its boot. Read PoweredOn, the next apply booted it with a new token while
    // its agent still asked with the old one (denied: it powers off, and the new boot's awaitReady deleted it).
    // Read Starting, as EC2's pending is: import records BootFailed, and the next apply powers it off first.
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    await driver.createVm(creds(), i);
    await driver.powerOn(creds(), ref);
    // Its start as ARM shows it while it runs (no boot agent runs here: none was handed a token).
    arm.vms.get(resourceNames(i.vmId).vm)!.power = 'starting';
    // The client that powered it on and handed it no token knows it is not booting.
    expect((await driver.get(creds(), ref))?.observedState).toBe('PoweredOn');
    const other = makeDriver();
    try {
      const seen = [(await other.get(creds(), ref))?.observedState, (await other.list(creds())).find((v) => v.vmId === i.vmId)?.observedState];
      expect(seen).toEqual(['Starting', 'Starting']);
      expect(importedState((await defaultPack()).lifecycle, seen[0]!, 'none')).toEqual({ state: 'BootFailed' });
    } finally {
      await other.close();
    }
  });

  it('a VM running with no agent report here reads Running with agent unknown, not ready: fleet import records it BootFailed unless the record confirms its boot', async () => {
    // `fleet state rm` + `fleet import` while the agent still boots, answered by a client without its state folder: the
    // VM read Running, agent ready, and was imported Running though its handshake never completed here or anywhere.
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    await driver.createVm(creds(), i);
    await driver.powerOn(creds(), ref);
    arm.vms.get(resourceNames(i.vmId).vm)!.power = 'running';
    const other = makeDriver();
    try {
      const seen = await expectRunningUnconfirmed(other, creds(), ref);
      const { lifecycle } = await defaultPack();
      expect(importedState(lifecycle, seen.observedState, 'none')).toEqual({ state: 'BootFailed' });
      expect(importedState(lifecycle, seen.observedState, 'authorized')).toEqual({ state: 'Running' });
    } finally {
      await other.close();
    }
  });

  it('a VM restarted from the portal since its agent\'s ready report reads agent unknown, not ready: the report is of the run before (ActualVm.startedAt)', async () => {
    // `fleet state rm` of a Running member, then a restart from the portal: until the agent of the new run is denied (it
    // presents the token of the boot before), the VM read Running with the old run's ready report, and fleet import
    // recorded it Running (evidence agent-ready).
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    await driver.createVm(creds(), i);
    await driver.powerOn(creds(), ref);
    boot.issued.add('token-before');
    await driver.boot(creds(), ref, { bootToken: 'token-before' });
    const ready = await driver.awaitReady(creds(), ref, { timeoutMs: 10_000 });
    expect([ready.observedState, ready.agent]).toEqual(['Running', 'ready']);
    const vm = arm.vms.get(resourceNames(i.vmId).vm)!;
    const bootedAt = vm.provisionedAt;
    // The portal's restart: starting, then running, its operation ended after the report; the new run's agent has not asked yet.
    const restartedAt = new Date(Date.now() + 60_000).toISOString();
    Object.assign(vm, { power: 'starting', provisionedAt: restartedAt });
    expect(await driver.get(creds(), ref)).toMatchObject({ observedState: 'Starting', agent: 'booting' });
    vm.power = 'running';
    const seen = await expectRunningUnconfirmed(driver, creds(), ref);
    expect([ready.startedAt, seen.startedAt]).toEqual([bootedAt, restartedAt]);
  });

  it('deleting a VM that is already gone succeeds', async () => {
    await driver.deleteVm(creds(), { vmId: randomUUID(), cloudId: null });
  });
});

describe('azure driver: failures as kinds', () => {
  // One call made by a driver method, failing as Azure fails it.
  const cases: { name: string; fault: ArmFault; act: 'create' | 'powerOn' | 'get'; kind: DriverError['kind']; message?: RegExp }[] = [
    { name: '429 with Retry-After', fault: { call: 'putVm', status: 429, code: 'TooManyRequests', retryAfter: 17 }, act: 'create', kind: 'transient', message: /retry after 17 s/ },
    { name: '500', fault: { call: 'start', status: 500, code: 'InternalServerError' }, act: 'powerOn', kind: 'transient' },
    { name: '503 while polling', fault: { call: 'poll', status: 503, code: 'ServiceUnavailable' }, act: 'powerOn', kind: 'transient' },
    { name: 'connection reset', fault: { call: 'getVm', reset: true }, act: 'get', kind: 'transient' },
    { name: 'AllocationFailed in the create operation', fault: { call: 'putVm', failOperation: { code: 'AllocationFailed', message: 'Allocation failed. We do not have sufficient capacity.' } }, act: 'create', kind: 'capacity', message: /sufficient capacity/ },
    { name: 'SkuNotAvailable', fault: { call: 'putVm', status: 409, code: 'SkuNotAvailable' }, act: 'create', kind: 'capacity' },
    { name: 'SubnetIsFull at the NIC', fault: { call: 'putNic', status: 400, code: 'SubnetIsFull', message: 'Subnet vms with address prefix 10.0.1.0/27 does not have enough available IP addresses to satisfy the request for 1 IP addresses.' }, act: 'create', kind: 'capacity', message: /enough available IP addresses/ },
    { name: 'quota (OperationNotAllowed)', fault: { call: 'putVm', status: 409, code: 'OperationNotAllowed', message: 'Operation could not be completed as it results in exceeding approved standardDSv5Family Cores quota.' }, act: 'create', kind: 'capacity' },
    { name: 'OperationNotAllowed on the wrong power state', fault: { call: 'start', status: 409, code: 'OperationNotAllowed', message: 'Cannot start the VM while it is being deleted.' }, act: 'powerOn', kind: 'invalid-state' },
    { name: '401 InvalidAuthenticationToken', fault: { call: 'putNic', status: 401, code: 'InvalidAuthenticationToken' }, act: 'create', kind: 'credentials' },
    { name: '403 AuthorizationFailed', fault: { call: 'start', status: 403, code: 'AuthorizationFailed' }, act: 'powerOn', kind: 'credentials' },
    // ARM's linked access check on the NIC's subnet: the broker may not join it (the role dmzfleet fleet subnet join, docs/drivers/azure.md, "Least-privilege role definitions").
    {
      name: '403 LinkedAuthorizationFailed (a subnet the broker may not join)',
      fault: { call: 'putNic', status: 403, code: 'LinkedAuthorizationFailed', message: "The client has permission to perform action 'Microsoft.Network/networkInterfaces/write' on scope '...'; however, it does not have permission to perform action 'Microsoft.Network/virtualNetworks/subnets/join/action' on the linked scope(s) '...'." },
      act: 'create',
      kind: 'credentials',
      message: /subnets\/join\/action/,
    },
    { name: '404 ResourceNotFound', fault: { call: 'start', status: 404, code: 'ResourceNotFound' }, act: 'powerOn', kind: 'not-found' },
    // ARM answers 404 SubscriptionNotFound to a principal with no role on the subscription (rather than 403), and for
    // a cancelled one: nothing says the VM is gone (get must not answer "absent": refresh would take the fleet for lost).
    { name: '404 SubscriptionNotFound on get', fault: { call: 'getVm', status: 404, code: 'SubscriptionNotFound', message: `The subscription '${SUB}' could not be found.` }, act: 'get', kind: 'credentials', message: /SubscriptionNotFound.*role/ },
    { name: '404 SubscriptionNotFound on start', fault: { call: 'start', status: 404, code: 'SubscriptionNotFound', message: `The subscription '${SUB}' could not be found.` }, act: 'powerOn', kind: 'credentials' },
  ];

  it('deleteVm answered 404 SubscriptionNotFound (no role on the subscription) fails: the VM is not known gone', async () => {
    const i = input();
    await driver.createVm(creds(), i);
    arm.inject({ call: 'deleteVm', status: 404, code: 'SubscriptionNotFound', message: `The subscription '${SUB}' could not be found.` });
    expect((await failure(driver.deleteVm(creds(), { vmId: i.vmId, cloudId: null }))).kind).toBe('credentials');
    expect(arm.vms.size).toBe(1);
  });

  it('ready (the DMZ client\'s readiness): the first page of the resource group\'s VMs with its own read token; a refused token rejects as credentials', async () => {
    await driver.ready();
    expect(arm.calls('listVms').map((r) => r.authorization)).toEqual(['Bearer read-only-token']);
    arm.inject({ call: 'listVms', status: 403, code: 'AuthorizationFailed' });
    const err = await failure(driver.ready());
    expect(err.kind).toBe('credentials');
    expect(err.message).toContain(`list VMs of resource group ${RG}`);
    expect(err.message).not.toContain('read-only-token');
  });

  for (const c of cases) {
    it(`${c.name} -> ${c.kind}`, async () => {
      const i = input();
      const ref = { vmId: i.vmId, cloudId: null };
      if (c.act !== 'create') await driver.createVm(creds(), i);
      arm.inject(c.fault);
      const act = c.act === 'create' ? driver.createVm(creds(), i) : c.act === 'powerOn' ? driver.powerOn(creds(), ref) : driver.get(creds(), ref);
      const err = await failure(act);
      expect(err.kind).toBe(c.kind);
      expect(err.transient).toBe(c.kind === 'transient');
      if (c.message) expect(err.message).toMatch(c.message);
      // Azure's Retry-After travels with the error: the DMZ client's retry waits at least that long (operations.ts).
      expect(err.retryAfterMs).toBe('retryAfter' in c.fault ? (c.fault.retryAfter ?? 0) * 1000 : undefined);
      expect(err.message).not.toMatch(/brokered-token|read-only-token/);
    });
  }

  it('throttled, then the retry (the DMZ client owns retries) succeeds', async () => {
    const i = input();
    arm.inject({ call: 'putVm', status: 429, code: 'TooManyRequests', retryAfter: 1, times: 1 });
    expect((await failure(driver.createVm(creds(), i))).kind).toBe('transient');
    const vm = await driver.createVm(creds(), i);
    expect(vm.observedState).toBe('PoweredOff');
    expect(arm.calls('putVm')).toHaveLength(2);
    expect(arm.vms.size).toBe(1);
  });

  it('a create that fails for good (AllocationFailed) leaves no VM, NIC or disk behind; a transient one leaves the VM for the retry', async () => {
    arm.inject({ call: 'putVm', failOperation: { code: 'AllocationFailed' }, times: 1 });
    await failure(driver.createVm(creds(), input()));
    expect([arm.vms.size, arm.nics.size, arm.disks.size]).toEqual([0, 0, 0]);
    arm.inject({ call: 'powerOff', status: 503, code: 'ServiceUnavailable', times: 1 });
    const i = input();
    expect((await failure(driver.createVm(creds(), i))).kind).toBe('transient');
    expect(arm.vms.size).toBe(1);
    expect(await driver.createVm(creds(), i)).toMatchObject({ vmId: i.vmId, observedState: 'PoweredOff' });
    expect(arm.vms.get(resourceNames(i.vmId).vm)?.power).toBe('stopped');
    expect(arm.calls('putVm')).toHaveLength(2);
  });

  // The cleanup of a create that failed for good can fail too (ARM throttles the DELETE, a 5xx): what it left
  // must be said, not swallowed, so a person knows a NIC or disk remains and what removes it.
  it('a create that fails for good and whose cleanup fails says what was left and what removes it', async () => {
    const i = input();
    const n = resourceNames(i.vmId);
    // ARM refuses the VM (no VM resource is made); the NIC made before it stays while its DELETE fails.
    arm.inject({ call: 'putVm', status: 409, code: 'SkuNotAvailable', message: 'The requested size is not available in location eastus.', times: 1 });
    arm.inject({ call: 'deleteNic', status: 503, code: 'ServiceUnavailable' });
    const err = await failure(driver.createVm(creds(), i));
    expect(err.kind).toBe('capacity');
    expect(arm.nics.has(n.nic)).toBe(true);
    expect(err.message).toContain('The requested size is not available');
    expect(err.message).toMatch(new RegExp(`clean-up failed.*${n.nic}`));
    expect(err.message).toMatch(/next apply/);
  });

  it.each(['InternalServerError', 'RetryableError', 'OperationPreempted'])(
    'a create whose VM operation failed transiently (%s) leaves a Failed VM; the retried create makes it again and ends powered off, not CreateFailed',
    async (code) => {
      const i = input();
      const n = resourceNames(i.vmId);
      arm.inject({ call: 'putVm', failOperation: { code }, times: 1 });
      expect((await failure(driver.createVm(creds(), i))).kind).toBe('transient');
      expect(arm.vms.get(n.vm)?.provisioningState).toBe('Failed');
      const vm = await driver.createVm(creds(), i);
      expect(vm).toMatchObject({ vmId: i.vmId, observedState: 'PoweredOff', power: 'off' });
      expect(arm.vms.get(n.vm)).toMatchObject({ provisioningState: 'Succeeded', power: 'stopped' });
      expect((await driver.get(creds(), { vmId: i.vmId, cloudId: null }))?.observedState).toBe('PoweredOff');
    },
  );

  // ARM ends an operation Canceled when another preempts it (someone's change in the portal, a delete): a VM whose
  // create was canceled is not a made VM, whatever power state it shows. A create again redoes it, as a Failed one.
  it('a create again that finds its VM with provisioning Canceled redoes it, not answers it', async () => {
    const i = input();
    const n = resourceNames(i.vmId);
    arm.nics.set(n.nic, { name: n.nic });
    arm.vms.set(n.vm, {
      name: n.vm,
      location: 'eastus',
      tags: { 'fleet-stack': 'prod', 'fleet-data-center': DC, 'fleet-vm-id': i.vmId, 'fleet-name': i.name, 'fleet-size': 'cpu=2,memoryGiB=8,diskGiB=64', 'fleet-encrypted-disk': 'true' },
      properties: { hardwareProfile: { vmSize: 'Standard_D2s_v5' } },
      provisioningState: 'Canceled',
      power: 'starting',
    });
    const vm = await driver.createVm(creds(), i);
    expect(vm).toMatchObject({ vmId: i.vmId, observedState: 'PoweredOff', power: 'off' });
    expect(arm.calls('deleteVm')).toHaveLength(1);
    expect(arm.calls('putVm')).toHaveLength(1);
    expect(arm.vms.get(n.vm)).toMatchObject({ provisioningState: 'Succeeded', power: 'stopped' });
  });

  // The first create's clean-up (a create that failed for good) may still be deleting the VM when the record's
  // create again (CreateFailed -> BeingCreated) comes: that VM is no answer (it goes), the create waits it out.
  it('a create again that finds the VM still Deleting waits until it is gone, then makes it anew', async () => {
    const i = input();
    const n = resourceNames(i.vmId);
    arm.vms.set(n.vm, {
      name: n.vm,
      location: 'eastus',
      tags: { 'fleet-stack': 'prod', 'fleet-data-center': DC, 'fleet-vm-id': i.vmId, 'fleet-name': i.name, 'fleet-size': 'cpu=2,memoryGiB=8,diskGiB=64', 'fleet-encrypted-disk': 'true' },
      properties: { hardwareProfile: { vmSize: 'Standard_D2s_v5' } },
      provisioningState: 'Deleting',
      power: 'stopped',
    });
    // ARM ends the delete while the create reads the VM (Azure's pace, not ours).
    const reads = arm.calls('getVm').length;
    const gone = setInterval(() => {
      if (arm.calls('getVm').length > reads + 1) {
        arm.vanish(n.vm);
        clearInterval(gone);
      }
    }, 1);
    try {
      const vm = await driver.createVm(creds(), i);
      expect(vm).toMatchObject({ vmId: i.vmId, observedState: 'PoweredOff', power: 'off' });
    } finally {
      clearInterval(gone);
    }
    expect(arm.calls('putVm')).toHaveLength(1);
    expect(arm.vms.get(n.vm)).toMatchObject({ provisioningState: 'Succeeded', power: 'stopped' });
  });

  it.each([
    { name: 'every read answered', throttled: false },
    { name: 'reading past throttled reads (429) meanwhile', throttled: true },
  ])('a retried create that finds the first VM still Creating waits for it, then powers it off (Azure starts what it creates): $name', async ({ throttled }) => {
    const i = input();
    // The create's first read (it finds the VM) goes through; two of the reads of its wait are throttled.
    if (throttled) arm.inject({ call: 'getVm', status: 429, code: 'TooManyRequests', retryAfter: 0, times: 2, after: 1 });
    const n = resourceNames(i.vmId);
    // The first create's PUT was accepted, then its wait timed out on our side while ARM goes on creating the VM.
    arm.nics.set(n.nic, { name: n.nic });
    arm.vms.set(n.vm, {
      name: n.vm,
      location: 'eastus',
      tags: { 'fleet-stack': 'prod', 'fleet-data-center': DC, 'fleet-vm-id': i.vmId, 'fleet-name': i.name, 'fleet-size': 'cpu=2,memoryGiB=8,diskGiB=64', 'fleet-encrypted-disk': 'true' },
      properties: { hardwareProfile: { vmSize: 'Standard_D2s_v5' } },
      provisioningState: 'Creating',
      power: 'starting',
    });
    // ARM finishes the create while the retry reads it (Azure's own pace, not ours).
    const reads = arm.calls('getVm').length;
    const finish = setInterval(() => {
      const vm = arm.vms.get(n.vm);
      if (vm && arm.calls('getVm').length > reads + 1) {
        Object.assign(vm, { provisioningState: 'Succeeded', power: 'running' });
        clearInterval(finish);
      }
    }, 1);
    try {
      const vm = await driver.createVm(creds(), i);
      expect(vm).toMatchObject({ vmId: i.vmId, observedState: 'PoweredOff', power: 'off' });
    } finally {
      clearInterval(finish);
    }
    expect(arm.vms.get(n.vm)).toMatchObject({ provisioningState: 'Succeeded', power: 'stopped' });
    expect(arm.calls('putVm')).toHaveLength(0);
  });

  it('a shutdown ARM refuses leaves a running, ready VM Running (get, list, and a restarted client), not ShuttingDown', async () => {
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    const dir = await mkdtemp(join(tmpdir(), 'dmzfleet-azure-agents-'));
    try {
      await driver.close();
      driver = makeDriver({ stateDir: dir });
      await driver.createVm(creds(), i);
      await driver.powerOn(creds(), ref);
      boot.issued.add('token-s');
      await driver.boot(creds(), ref, { bootToken: 'token-s' });
      await driver.awaitReady(creds(), ref, { timeoutMs: 10_000 });
      arm.inject({ call: 'powerOff', status: 409, code: 'OperationNotAllowed', message: 'The operation is not allowed in the VM\'s current state.', times: 1 });
      expect((await failure(driver.shutdown(creds(), ref))).kind).toBe('invalid-state');
      expect(arm.vms.get(resourceNames(i.vmId).vm)?.power).toBe('running');
      expect((await driver.get(creds(), ref))?.observedState).toBe('Running');
      expect((await driver.list(creds())).map((v) => v.observedState)).toEqual(['Running']);
      await driver.close();
      driver = makeDriver({ stateDir: dir });
      expect((await driver.get(creds(), ref))?.observedState).toBe('Running');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a boot whose userData PATCH ARM refuses leaves the powered-on VM PoweredOn, not Starting', async () => {
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    await driver.createVm(creds(), i);
    await driver.powerOn(creds(), ref);
    arm.inject({ call: 'patchVm', status: 409, code: 'OperationNotAllowed', message: 'The operation is not allowed in the VM\'s current state.', times: 1 });
    boot.issued.add('token-p');
    expect((await failure(driver.boot(creds(), ref, { bootToken: 'token-p' }))).kind).toBe('invalid-state');
    expect((await driver.get(creds(), ref))?.observedState).toBe('PoweredOn');
    // The boot approved again goes through.
    await driver.boot(creds(), ref, { bootToken: 'token-p' });
    expect((await driver.awaitReady(creds(), ref, { timeoutMs: 10_000 })).observedState).toBe('Running');
  });

  it('the SDK retries nothing: one 500, one request', async () => {
    const i = input();
    await driver.createVm(creds(), i);
    arm.inject({ call: 'start', status: 500, code: 'InternalServerError' });
    await failure(driver.powerOn(creds(), { vmId: i.vmId, cloudId: null }));
    expect(arm.calls('start')).toHaveLength(1);
  });

  it.each<[string, ArmCall, Partial<AzureDriverOptions>]>([
    ['a hung call', 'start', { requestTimeoutMs: 200 }],
    ['a hung poll of an operation', 'poll', { requestTimeoutMs: 200 }],
    ['a hung read', 'getVm', { requestTimeoutMs: 200 }],
  ])('%s hits the timeout', async (_name, call, opts) => {
    const i = input();
    await driver.createVm(creds(), i);
    await driver.close();
    driver = makeDriver(opts);
    arm.inject({ call, hang: true });
    const ref = { vmId: i.vmId, cloudId: null };
    const err = await failure(call === 'getVm' ? driver.get(creds(), ref) : driver.powerOn(creds(), ref));
    expect(err.kind).toBe('timeout');
    expect(err.transient).toBe(false);
  });

  it('a VM that vanished between calls: not-found for a change, undefined for get, and delete succeeds', async () => {
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    await driver.createVm(creds(), i);
    arm.vanish(resourceNames(i.vmId).vm);
    expect((await failure(driver.powerOn(creds(), ref))).kind).toBe('not-found');
    expect((await failure(driver.resize(creds(), ref, { cpu: 4, memoryGiB: 16, diskGiB: 64 }))).kind).toBe('not-found');
    expect(await driver.get(creds(), ref)).toBeUndefined();
    await driver.deleteVm(creds(), ref);
  });

  // awaitReady reads the VM between the agent's reports, and a retried create reads a VM still Creating until it
  // settles; a fleet booting at once meets ARM's read throttling (429 with Retry-After) or a 5xx now and then. One
  // such read is no reason to end the wait: it reads again after the Retry-After (or a backoff), up to its deadline.
  it.each([
    { name: '429 TooManyRequests', fault: { call: 'getVm', status: 429, code: 'TooManyRequests', retryAfter: 0, times: 3 } },
    { name: '503', fault: { call: 'getVm', status: 503, code: 'ServiceUnavailable', times: 3 } },
  ] as const)('awaitReady reads past a $name read of the VM', async ({ fault }) => {
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    await driver.createVm(creds(), i);
    await driver.powerOn(creds(), ref);
    boot.issued.add('token-poll');
    await driver.boot(creds(), ref, { bootToken: 'token-poll' });
    arm.inject(fault);
    expect(await driver.awaitReady(creds(), ref, { timeoutMs: 10_000 })).toMatchObject({ observedState: 'Running' });
  });

  it('awaitReady whose reads keep being throttled ends at its deadline as a timeout naming the failure', async () => {
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    await driver.createVm(creds(), i);
    await driver.powerOn(creds(), ref);
    arm.inject({ call: 'getVm', status: 429, code: 'TooManyRequests', retryAfter: 0 });
    const err = await failure(driver.awaitReady(creds(), ref, { timeoutMs: 200 }));
    expect(err.kind).toBe('timeout');
    expect(err.message).toContain('TooManyRequests');
  });

  it('awaitReady without a report times out', async () => {
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    await driver.createVm(creds(), i);
    await driver.powerOn(creds(), ref);
    const err = await failure(driver.awaitReady(creds(), ref, { timeoutMs: 50 }));
    expect(err.kind).toBe('timeout');
  });
});

// A boot may be waited for 10 minutes (the DMZ client's readyTimeoutMs), which is also the life of the step's scoped
// credentials; the brokered Azure token lives longer (handed out with at least 20 minutes left). A denial seen after
// the scoped credentials expired was a `credentials` failure, the denied VM left allocated. Only Date is faked: the
// clock jumps past the expiry while the boot endpoint holds the agent's request, then lets it go on.
describe('azure driver: a denied boot seen after the step\'s credentials expired', () => {
  /** How long awaitReady waits (readyTimeoutMs), and what is left of the step's credentials when it begins. */
  const STEP_MS = 600_000;
  const LEFT_MS = 300_000;
  const paths = [
    { path: 'its agent reports the denial', unheard: false },
    { path: 'it powers itself off unheard after the boot endpoint denied its token', unheard: true },
  ];

  /** Lets the held boot endpoint answer (a failed test too: the server closes only once its requests are answered). */
  let release = () => {};

  afterEach(() => {
    release();
    vi.useRealTimers();
  });

  /** Boots a powered-on VM with the boot endpoint holding its agent; answers the VM's names and the gate's release. */
  async function bootHeld(step: ScopedCredentials, unheard: boolean): Promise<{ ref: { vmId: string; cloudId: null }; n: ReturnType<typeof resourceNames> }> {
    const i = input();
    const ref = { vmId: i.vmId, cloudId: null };
    await driver.createVm(creds(), i);
    await driver.powerOn(creds(), ref);
    boot.hold = new Promise<void>((r) => (release = r));
    // Its report of the denial lost: what tells the driver is the endpoint's denial of its token (Driver.bootDenied).
    boot.loseReports = unheard;
    await driver.boot(step, ref, { bootToken: 'never-issued' });
    return { ref, n: resourceNames(i.vmId) };
  }

  it.each(paths)('scoped credentials expired, brokered token still good ($path): boot-denied, the VM, its NIC and disks deleted with the brokered token', async ({ unheard }) => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const step = creds({ expiresAt: new Date(Date.now() + LEFT_MS).toISOString() });
    const { ref, n } = await bootHeld(step, unheard);
    const waiting = failure(driver.awaitReady(step, ref, { timeoutMs: STEP_MS }));
    vi.setSystemTime(Date.now() + LEFT_MS + 1_000);
    release();
    const err = await waiting;
    expect(err.kind, err.message).toBe('boot-denied');
    expect(err.message).toMatch(/deleted/);
    const last = (call: 'deleteVm' | 'deleteNic' | 'deleteDisk') => arm.calls(call).map((r) => [r.path.split('/').at(-1), r.authorization]);
    expect(last('deleteVm')).toEqual([[n.vm, 'Bearer brokered-token']]);
    expect(last('deleteNic')).toEqual([[n.nic, 'Bearer brokered-token']]);
    expect(last('deleteDisk')).toEqual([
      [n.osDisk, 'Bearer brokered-token'],
      [n.dataDisk, 'Bearer brokered-token'],
    ]);
    expect(arm.vms.has(n.vm)).toBe(false);
    expect(arm.nics.has(n.nic)).toBe(false);
    expect(arm.disks.size).toBe(0);
  });

  it.each(paths)('the brokered token expired too ($path): reads go on with the read identity; boot-denied, saying the VM was not deleted yet', async ({ unheard }) => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const end = new Date(Date.now() + LEFT_MS).toISOString();
    const step = creds({ expiresAt: end, azure: { accessToken: 'brokered-token', expiresOn: end, subscriptionId: SUB, resourceGroup: RG } });
    const { ref, n } = await bootHeld(step, unheard);
    const waiting = failure(driver.awaitReady(step, ref, { timeoutMs: STEP_MS }));
    vi.setSystemTime(Date.now() + LEFT_MS + 1_000);
    // The wait reads the VM with the DMZ client's own identity once the token is (nearly) spent.
    await vi.waitFor(() => expect(arm.calls('getVm').at(-1)?.authorization).toBe('Bearer read-only-token'), { timeout: 5_000, interval: 5 });
    release();
    const err = await waiting;
    expect(err.kind, err.message).toBe('boot-denied');
    expect(err.message).toMatch(/not deleted yet.*expired/);
    expect(arm.calls('deleteVm')).toEqual([]);
    expect(arm.calls('deleteNic')).toEqual([]);
    expect(arm.calls('deleteDisk')).toEqual([]);
    expect(arm.vms.has(n.vm)).toBe(true);
  });

  it('a delete of the denied VM that ARM refuses for good is still boot-denied, saying what may remain', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const step = creds({ expiresAt: new Date(Date.now() + LEFT_MS).toISOString() });
    const { ref, n } = await bootHeld(step, false);
    arm.inject({ call: 'deleteVm', status: 403, code: 'AuthorizationFailed', message: 'The client does not have authorization to perform action delete.' });
    const waiting = failure(driver.awaitReady(step, ref, { timeoutMs: STEP_MS }));
    vi.setSystemTime(Date.now() + LEFT_MS + 1_000);
    release();
    const err = await waiting;
    expect(err.kind, err.message).toBe('boot-denied');
    expect(err.message).toMatch(/not deleted yet.*AuthorizationFailed|not deleted yet.*authorization/i);
    expect(err.message).toContain(RG);
    expect(arm.vms.has(n.vm)).toBe(true);
  });

  it('a delete of the denied VM that ARM keeps failing (503) through the DMZ client\'s tries is still boot-denied, not transient', async () => {
    const step = creds({ expiresAt: new Date(Date.now() + LEFT_MS).toISOString() });
    const { ref, n } = await bootHeld(step, false);
    arm.inject({ call: 'deleteVm', status: 503, code: 'ServiceUnavailable', message: 'The service is temporarily unavailable.' });
    const pauses: number[] = [];
    const waiting = failure(callDriver('awaitReady', () => driver.awaitReady(step, ref, { timeoutMs: STEP_MS }), { attempts: 4, timeoutMs: STEP_MS, sleep: async (ms) => void pauses.push(ms) }));
    release();
    const err = await waiting;
    expect(err.kind, err.message).toBe('boot-denied');
    expect(err.message).toMatch(/not deleted yet.*ServiceUnavailable/);
    expect(err.message).toContain('the next apply (docs/recovery.md, BootFailed) deletes it and creates the member again');
    expect(pauses).toHaveLength(3);
    expect(arm.vms.has(n.vm)).toBe(true);
  });
});
