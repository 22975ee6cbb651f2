// The boot agent (agent.sh) as a real VM runs it: user data the aws driver
// rendered, run with sh against a real DMZ client's boot endpoint on
// loopback (authority and record real, EC2 and STS served by nock), with a
// fake cryptsetup that records its arguments and the hash of its stdin.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diskKey } from '../../engine/authority/keys.ts';
import { sha256 } from '../../protocol/index.ts';
import { TO_RUNNING, createRequest, newVm, walk } from '../testing.ts';
import { AWS_SECRET, startAwsWorld, type AwsWorld } from '../drivers/aws/world.ts';
import { parseAgentUserData, renderAgentUserData } from './index.ts';
import { runUserData } from './testing.ts';

/** Every file under `dir`, read as text. */
function filesUnder(dir: string): { file: string; text: string }[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile())
    .map((file) => ({ file, text: readFileSync(file, 'latin1') }));
}

describe('boot agent', () => {
  let w: AwsWorld;
  beforeAll(async () => {
    w = await startAwsWorld();
  });
  afterAll(async () => {
    await w?.close();
  });

  it('an approved boot unlocks the data volume with the released key on stdin; the key is in no argv, file or log line', async () => {
    const vm = newVm(w.stack);
    await w.client.createVm(createRequest(vm));
    const steps = await walk(w.client, vm.id, TO_RUNNING);
    expect(steps.at(-1)).toMatchObject({ outcome: 'ok', vm: { state: 'Running' } });
    await w.ec2.settled();
    const inst = [...w.ec2.instances.values()].find((i) => i.tags.get('fleet:vm-id') === vm.id)!;
    const runs = await Promise.all(inst.runs);
    expect(runs.map((r) => r.code)).toEqual([0]);
    expect(runs[0].opened).toBe(true);
    const key = diskKey(AWS_SECRET, vm.id);
    const dir = w.ec2.vmDir(inst.id);
    // First boot formats the volume, then opens it: both read the released key on stdin.
    expect(readFileSync(join(dir, 'cryptsetup.stdin-sha256'), 'utf8').trim().split('\n')).toEqual([sha256(key), sha256(key)]);
    const argv = readFileSync(join(dir, 'cryptsetup.argv'), 'utf8');
    expect(argv).toContain('open --type luks --key-file=- /dev/nvme1n1 fleet-data');
    for (const { file, text } of [...filesUnder(dir), ...filesUnder(w.dir)]) expect(text.includes(key), `${file} holds the disk key`).toBe(false);
    expect(runs[0].stdout + runs[0].stderr).not.toContain(key);
    // The user data EC2 holds never carried the key either.
    for (const r of w.ec2.calls('ModifyInstanceAttribute').concat(w.ec2.calls('RunInstances'))) expect(r.params.toString()).not.toContain(key);
  });

  it('a boot with a token the authority never issued is denied: no key, no cryptsetup, the VM powers itself off', async () => {
    const vm = newVm(w.stack, { index: 1 });
    await w.client.createVm(createRequest(vm));
    await walk(w.client, vm.id, ['Requested', 'BeingCreated', 'PoweredOff']);
    const inst = [...w.ec2.instances.values()].find((i) => i.tags.get('fleet:vm-id') === vm.id)!;
    // The user data of its first launch, as EC2 holds it: no boot token, no key.
    expect(parseAgentUserData(inst.userData)).toMatchObject({ FLEET_VM_ID: vm.id, FLEET_BOOT_TOKEN: '', FLEET_ENCRYPTED: '1' });
    const userData = renderAgentUserData({
      bootUrl: `${w.dmz.url}/v1/boot`,
      vmId: vm.id,
      cloudId: inst.id,
      image: inst.imageId,
      bootToken: 'made-up-token',
      encrypted: true,
      dataDevice: '/dev/nvme1n1',
    });
    const dir = w.ec2.vmDir(`${inst.id}-rogue`);
    const r = await runUserData(userData, join(w.ec2.vmDir(''), 'bin'), dir);
    expect(r.code).toBe(1);
    expect(r.poweredOff).toBe(true);
    expect(r.opened).toBe(false);
    expect(r.stderr).toContain('boot denied');
    expect(filesUnder(dir).map((f) => f.file.slice(dir.length + 1))).toEqual(['powered-off']);
  });

  it('first launch (no boot token yet) does nothing and leaves the VM running for the driver to stop', async () => {
    const r = await runUserData(
      renderAgentUserData({ bootUrl: 'http://127.0.0.1:1/v1/boot', vmId: 'v', cloudId: '', image: 'ami-1', encrypted: true, dataDevice: '/dev/nvme1n1' }),
      join(w.ec2.vmDir(''), 'bin'),
      w.ec2.vmDir('first-launch'),
    );
    expect(r).toMatchObject({ code: 0, poweredOff: false, opened: false });
  });

  it('POST /v1/boot/status believes no report without the boot token the driver booted the VM with', async () => {
    const inst = [...w.ec2.instances.values()][0];
    const res = await fetch(`${w.dmz.url}/v1/boot/status`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cloudId: inst.id, vmId: inst.tags.get('fleet:vm-id'), bootToken: 'guessed', state: 'ready' }),
    });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('agent-report-refused');
  });

  it('rendered user data quotes every setting for sh', () => {
    const text = renderAgentUserData({ bootUrl: "http://x/'; rm -rf /; '", vmId: 'v', cloudId: 'c', image: 'i', encrypted: false, dataDevice: '/dev/x' });
    expect(parseAgentUserData(text).FLEET_BOOT_URL).toBe("http://x/'; rm -rf /; '");
    expect(text.startsWith('#!/bin/sh\n')).toBe(true);
  });
});
