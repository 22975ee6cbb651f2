// A cloud VM (aws, azure) that powers itself off during its boot without a report its DMZ client can believe is a
// denied boot only when this boot was denied: the DMZ client saw the authority deny a boot request carrying the token
// the driver booted the VM with (it relays the authority's answers at its boot endpoint: Driver.bootDenied).
// Otherwise it is a failed boot, the VM kept powered off (its disk with it), which the next apply boots again under a
// fresh token.
//
// Before, any such power-off was taken for a denial: awaitReady terminated (deleted) the VM, its data disk gone, and
// failed `driver.boot-denied`. The boot endpoint is open to the DMZ network: anyone who knows a VM's id, cloud id and
// image can POST a boot check with a made-up token while it boots, and the authority writes that denial into the VM's
// history. With an agent that powered off unheard (its boot endpoint out of its reach, its reports lost) and a delete
// that failed (TerminateInstances, ARM's DELETE), the record then held both signals of a denied boot
// (FleetRecord.deniedBoots: the DMZ client's `driver.boot-denied` and the authority's denial), so the next plan
// deleted the VM and created it again (`recover: BootFailed after a denied boot`) instead of booting it again; with a
// delete that went through, the disk was gone at once.
//
// Over the real pieces: the authority and a DMZ client running the cloud's driver over loopback HTTP, the cloud's API
// served by nock (EC2's Query API: fake-ec2.ts; ARM: arm-fake.ts), each VM running the shipped boot agent (agent.sh,
// with sh). The agents reach the boot endpoint through a proxy that, per case, loses their reports (so nothing they
// say is believed), answers their boot request 404 (the endpoint out of their reach), or forwards it claiming another
// image (so the authority denies the VM's own token).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootedStates } from '../engine/policy/index.ts';
import type { FleetRecord } from '../engine/record/types.ts';
import type { AgentRun } from './boot-agent/testing.ts';
import type { DmzHttpClient } from './client.ts';
import { startAwsWorld } from './drivers/aws/world.ts';
import { resourceNames } from './drivers/azure/names.ts';
import { startAzureWorld } from './drivers/azure/world.ts';
import { createRequest, defaultPack, newVm, walk } from './testing.ts';

interface ProxyModes {
  /** The agent's boot request: forwarded, forwarded claiming another image (its token denied), or answered 404. */
  boot: 'forward' | 'other image' | 'lost';
  /** The agent's reports: forwarded, or answered 404 (never reach the driver). */
  reports: 'forward' | 'lost';
}

/** The VMs' way to the DMZ client's boot endpoint (`target`), faulty as `modes` says. */
async function bootProxy(target: () => string): Promise<{ url: string; modes: ProxyModes; close(): Promise<void> }> {
  const modes: ProxyModes = { boot: 'forward', reports: 'forward' };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const mode = req.url === '/v1/boot' ? modes.boot : modes.reports;
      if (mode === 'lost') {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"not-found","message":"lost"}}');
        return;
      }
      const sent = mode === 'other image' ? JSON.stringify({ ...(JSON.parse(body) as object), image: 'not-the-image-of-this-vm' }) : body;
      void fetch(`${target()}${req.url ?? ''}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: sent }).then(
        async (r) => void res.writeHead(r.status, { 'content-type': 'application/json' }).end(await r.text()),
        () => void res.writeHead(502).end(),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/boot`, modes, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** One cloud's world, as the cases use it. */
interface Cloud {
  stack: string;
  client: DmzHttpClient;
  record: FleetRecord;
  dmzUrl: string;
  /** The cloud's delete of a VM (TerminateInstances; ARM's DELETE of the VM) is refused from now on, until heal(). */
  refuseDeletes(): void;
  heal(): void;
  /** Waits for the agent runs started so far. */
  settled(): Promise<void>;
  /** The VM as its cloud holds it: powered off, deleted (terminated, or terminating), or another state. */
  held(vmId: string, cloudId: string): string;
  /** The cloud's delete calls for the VM. */
  deletes(vmId: string, cloudId: string): number;
  /** The agent runs of the VM, in order. */
  runs(vmId: string, cloudId: string): Promise<AgentRun[]>;
  close(): Promise<void>;
}

async function awsCloud(proxyUrl: string): Promise<Cloud> {
  const w = await startAwsWorld();
  // Every start's agent asks the proxy (the user data as the instance runs it).
  const toProxy = (u: string) => u.replace(/^FLEET_BOOT_URL='[^']*'$/m, `FLEET_BOOT_URL='${proxyUrl}'`);
  w.ec2.tamper = toProxy;
  return {
    stack: w.stack,
    client: w.client,
    record: w.record,
    dmzUrl: w.dmz.url,
    refuseDeletes: () => w.ec2.fail('TerminateInstances', { error: 'UnauthorizedOperation', status: 403, message: 'You are not authorized to perform this operation.' }),
    heal: () => w.ec2.heal(),
    settled: () => w.ec2.settled(),
    held: (_vmId, cloudId) => {
      const st = w.ec2.instances.get(cloudId)?.state;
      return st === 'stopped' ? 'powered off' : st === 'shutting-down' || st === 'terminated' ? 'deleted' : String(st);
    },
    deletes: (_vmId, cloudId) => w.ec2.calls('TerminateInstances').filter((r) => r.params.get('InstanceId.1') === cloudId).length,
    runs: (_vmId, cloudId) => Promise.all(w.ec2.instances.get(cloudId)?.runs ?? []),
    close: () => w.close(),
  };
}

async function azureCloud(proxyUrl: string): Promise<Cloud> {
  const w = await startAzureWorld({ bootUrl: proxyUrl });
  const name = (vmId: string) => resourceNames(vmId).vm;
  return {
    stack: w.stack,
    client: w.client,
    record: w.record,
    dmzUrl: w.dmz.url,
    refuseDeletes: () => w.arm.inject({ call: 'deleteVm', status: 403, code: 'AuthorizationFailed', message: 'The client does not have authorization to perform action delete.' }),
    heal: () => w.arm.heal(),
    settled: () => w.arm.settled(),
    held: (vmId) => {
      const vm = w.arm.vms.get(name(vmId));
      return !vm ? 'deleted' : vm.power === 'stopped' ? 'powered off' : vm.power;
    },
    deletes: (vmId) => w.arm.calls('deleteVm').filter((r) => r.path.endsWith(`/${name(vmId)}`)).length,
    runs: async (vmId) => w.arm.runs.filter((r) => r.vmName === name(vmId)).map((r) => r.run),
    close: () => w.close(),
  };
}

interface Case {
  name: string;
  /** Someone in the DMZ network POSTs a boot check for the VM with a made-up token while it boots (denied). */
  spoofed: boolean;
  /** What the VM's agent meets (its reports always lost): its boot endpoint out of reach, or its own token denied. */
  agent: 'endpoint out of reach' | 'its own token denied';
  /** The cloud refuses to delete the VM: a denied one stays for the next apply. */
  deleteRefused: boolean;
  code: 'driver.boot-failed' | 'driver.boot-denied';
  /** The record holds both signals: the next plan deletes the VM and creates it again. */
  recreated: boolean;
  /** The VM as its cloud holds it after the step. */
  held: 'powered off' | 'deleted';
}

const cases: Case[] = [
  { name: 'a spoofed denial, the agent powers off unheard (endpoint out of reach), the delete refused', spoofed: true, agent: 'endpoint out of reach', deleteRefused: true, code: 'driver.boot-failed', recreated: false, held: 'powered off' },
  { name: 'a spoofed denial, the agent powers off unheard (endpoint out of reach)', spoofed: true, agent: 'endpoint out of reach', deleteRefused: false, code: 'driver.boot-failed', recreated: false, held: 'powered off' },
  { name: 'no denial at all, the agent powers off unheard (endpoint out of reach)', spoofed: false, agent: 'endpoint out of reach', deleteRefused: false, code: 'driver.boot-failed', recreated: false, held: 'powered off' },
  { name: 'its own token denied, its reports lost, the delete refused', spoofed: false, agent: 'its own token denied', deleteRefused: true, code: 'driver.boot-denied', recreated: true, held: 'powered off' },
  { name: 'its own token denied after a spoofed denial, its reports lost', spoofed: true, agent: 'its own token denied', deleteRefused: false, code: 'driver.boot-denied', recreated: true, held: 'deleted' },
];

describe.each([
  { cloud: 'aws', start: awsCloud },
  { cloud: 'azure', start: azureCloud },
])('$cloud: a VM that powers itself off during its boot, unheard, is a denied boot only when its own boot token was denied', ({ start }) => {
  let w: Cloud;
  let proxy: Awaited<ReturnType<typeof bootProxy>>;
  beforeAll(async () => {
    proxy = await bootProxy(() => w.dmzUrl);
    w = await start(proxy.url);
  }, 60_000);
  afterAll(async () => {
    await w?.close();
    await proxy?.close();
  });

  it.each(cases)('$name', async (c) => {
    const index = cases.indexOf(c);
    const vm = newVm(w.stack, { fleet: 'spoof', index });
    await w.client.createVm(createRequest(vm));
    proxy.modes.boot = 'forward';
    proxy.modes.reports = 'forward';
    expect((await walk(w.client, vm.id, ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn'])).map((s) => s.outcome)).toEqual(['ok', 'ok', 'ok']);
    proxy.modes.boot = c.agent === 'its own token denied' ? 'other image' : 'lost';
    proxy.modes.reports = 'lost';
    let step;
    try {
      const [boot] = await walk(w.client, vm.id, ['PoweredOn', 'Starting']);
      expect(boot.outcome).toBe('ok');
      if (c.spoofed) {
        const row = (await w.record.getVm(vm.id))!;
        const res = await fetch(`${w.dmzUrl}/v1/boot`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ vmId: vm.id, cloudId: row.cloudId, image: row.realImage, bootToken: 'a-token-someone-made-up' }),
        });
        expect(await res.json()).toMatchObject({ approved: false });
      }
      if (c.deleteRefused) w.refuseDeletes();
      [step] = await walk(w.client, vm.id, ['Starting', 'Running']);
    } finally {
      w.heal();
    }
    await w.settled();
    const cloudId = (await w.record.getVm(vm.id))!.cloudId!;
    const [run] = await w.runs(vm.id, cloudId);
    // The agent powered the VM off, and nothing it reported reached the DMZ client.
    expect(run.poweredOff).toBe(true);
    expect(run.stderr).toContain('could not report failed');
    expect([step.outcome, step.vm?.state, step.error?.code], step.error?.message).toEqual(['failed', 'BootFailed', c.code]);
    expect(step.bootDenied === true).toBe(c.recreated);
    const history = await w.record.history(w.stack, `spoof/${index}`);
    expect(history.some((h) => h.outcome === 'denied' && h.from === 'Starting')).toBe(c.spoofed || c.agent === 'its own token denied');
    // What the next plan decides on: recover: BootFailed after a denied boot (a replace), or a retry from BootFailed.
    expect(await w.record.deniedBoots([vm.id], bootedStates((await defaultPack()).lifecycle))).toEqual(c.recreated ? [vm.id] : []);
    expect(w.held(vm.id, cloudId)).toBe(c.held);
    if (c.code === 'driver.boot-failed') {
      expect(w.deletes(vm.id, cloudId)).toBe(0);
      expect(step.error?.message).toContain('it is kept (powered off');
      // The next apply's retry from BootFailed boots the same VM (its data disk) under a fresh token.
      proxy.modes.boot = 'forward';
      proxy.modes.reports = 'forward';
      const again = await walk(w.client, vm.id, ['BootFailed', 'PoweredOff', 'PoweredOn', 'Starting', 'Running']);
      expect(again.map((s) => s.outcome), again.at(-1)?.error?.message).toEqual(['ok', 'ok', 'ok', 'ok']);
      expect(again.at(-1)?.vm?.cloudId).toBe(cloudId);
      await w.settled();
      expect((await w.runs(vm.id, cloudId)).at(-1)?.opened).toBe(true);
    }
  }, 60_000);
});
