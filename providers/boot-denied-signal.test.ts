// Which BootFailed VM the next plan deletes and creates again (docs/recovery.md, "A denied VM its data center still
// holds"): only one whose own boot was denied, never one whose boot failed otherwise while someone else's boot check
// for it was denied. The DMZ client's boot endpoint is open to the DMZ network: anyone who knows a VM's id (and its
// cloud id and image, which its history shows) can POST a boot check with a made-up token while the VM boots, and the
// authority writes that denial into the VM's history while it is Starting. The plan took any such denial for the
// VM's: when its real boot then failed (the agent failed, awaitReady timed out), it was deleted (its disk lost)
// instead of booted again. The driver knows whose boot was denied: its awaitReady fails `driver.boot-denied` only when
// the VM's own agent was; the DMZ client's failure report of that boot carries the code, and the record's
// deniedBoots needs it.
//
// Over the real pieces: a record, the authority, a sim data center (its agents ask the boot endpoint over HTTP) and
// its DMZ client over loopback HTTP; the plan is the CLI's (planStack) over that record. The sim's agents wait long
// (bootMs): each case says when the VM's agent asks (agentAsksNow), and with which token.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planStack } from '../engine/plan/index.ts';
import { bootedStates } from '../engine/policy/index.ts';
import { specHash } from '../engine/spec/index.ts';
import type { DriverErrorKind } from '../protocol/index.ts';
import { readSimState } from './drivers/sim/index.ts';
import { createRequest, newVm, startTestWorld, walk, type TestWorld } from './testing.ts';
import { oneDcStackYaml } from '../test/helpers/stack.ts';


let world: TestWorld;
beforeAll(async () => {
  world = await startTestWorld({ dataCenters: ['miami'], sim: () => ({ bootMs: 600_000 }) });
}, 120_000);
afterAll(() => world?.close());

const dc = () => world.dc('miami');

async function simVm(vmId: string) {
  return (await readSimState(dc().stateDir, 'miami')).vms.find((v) => v.vmId === vmId)!;
}

/** A boot check sent to the DMZ client's open boot endpoint by someone in the DMZ network who is not the VM. */
async function spoofBoot(vm: { id: string; cloudId: string; image: string }): Promise<unknown> {
  const res = await fetch(`${dc().dmz.url}/v1/boot`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ vmId: vm.id, cloudId: vm.cloudId, image: vm.image, bootToken: 'a-token-someone-made-up' }),
  });
  expect(res.status).toBe(200);
  return res.json();
}

interface Case {
  name: string;
  /** Someone else's boot check for the VM, denied while it is Starting. */
  spoofed: boolean;
  /** What the VM's own agent does, if it asks: with its own token (approved) or a made-up one (denied). */
  agent: 'none' | 'own token' | 'made-up token';
  /** How awaitReady fails apart from the agent (a sim fault). */
  fault?: DriverErrorKind;
  code: string;
  recreated: boolean;
}

const cases: Case[] = [
  { name: 'a spoofed denial, then the boot fails (boot-failed)', spoofed: true, agent: 'own token', fault: 'boot-failed', code: 'driver.boot-failed', recreated: false },
  { name: 'a spoofed denial, then the boot times out', spoofed: true, agent: 'none', fault: 'timeout', code: 'driver.timeout', recreated: false },
  { name: 'the VM itself denied (its agent presents a token nobody issued)', spoofed: false, agent: 'made-up token', code: 'driver.boot-denied', recreated: true },
  { name: 'the VM itself denied, after a spoofed denial', spoofed: true, agent: 'made-up token', code: 'driver.boot-denied', recreated: true },
  { name: 'a plain boot failure', spoofed: false, agent: 'own token', fault: 'boot-failed', code: 'driver.boot-failed', recreated: false },
];

/** The stack the plan is made of: the world's, one fleet of `count` members in miami, its record the world's. */
async function planDir(count: number): Promise<string> {
  const dir = join(world.dir, 'stack');
  await mkdir(join(dir, 'specs'), { recursive: true });
  await writeFile(join(dir, 'stack.yaml'), oneDcStackYaml(world.stack));
  await writeFile(
    join(dir, 'specs', 'sig.yaml'),
    `apiVersion: fleet/v1
kind: Fleet
metadata: { name: sig, owner: team-payments }
spec:
  count: ${count}
  image: ubuntu-22.04
  size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }
  state: Running
  encryptedDisk: true
`,
  );
  return dir;
}

describe('a BootFailed VM is deleted and created again only when its own boot was denied', () => {
  it('tells the VM denied from a boot that failed otherwise beside someone else\'s denied boot check', async () => {
    const ids: string[] = [];
    for (const [index, c] of cases.entries()) {
      const vm = newVm(world.stack, { fleet: 'sig', index });
      // Built as the fleet's spec (planDir) says: the plan has nothing to change but the failed boot.
      vm.specHash = specHash({ image: vm.image, size: vm.size, hardware: [], encryptedDisk: vm.encryptedDisk });
      await dc().client.createVm(createRequest(vm));
      const up = await walk(dc().client, vm.id, ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting']);
      expect(up.map((s) => s.outcome)).toEqual(['ok', 'ok', 'ok', 'ok']);
      const s = await simVm(vm.id);
      if (c.spoofed) expect(await spoofBoot({ id: vm.id, cloudId: s.cloudId, image: s.image })).toMatchObject({ approved: false });
      if (c.agent !== 'none') await dc().driver.agentAsksNow(s.cloudId, c.agent === 'made-up token' ? 'a-token-nobody-issued' : undefined);
      dc().driver.setFaults(c.fault ? { failWith: { awaitReady: c.fault } } : {});
      const [step] = await walk(dc().client, vm.id, ['Starting', 'Running']);
      dc().driver.setFaults({});
      expect([step.outcome, step.vm?.state, step.error?.code], c.name).toEqual(['failed', 'BootFailed', c.code]);
      // The step's answer says what the record says (both signals): a client that plans on its own (a Pulumi program) reads it.
      expect(step.bootDenied === true, c.name).toBe(c.recreated);
      // The VM is still in the data center (its cloud id in the record): what the plan decides on.
      expect((await world.record.getVm(vm.id))?.cloudId).toBe(s.cloudId);
      const history = await world.record.history(world.stack, `sig/${index}`);
      if (c.spoofed || c.agent === 'made-up token') expect(history.some((h) => h.outcome === 'denied' && h.from === 'Starting'), c.name).toBe(true);
      ids.push(vm.id);
    }
    const denied = await world.record.deniedBoots(ids, bootedStates(world.pack.lifecycle));
    expect(denied).toEqual(ids.filter((_, i) => cases[i].recreated));

    // The next plan: a replace along the recovery edges for the VM denied, a retry for the others.
    const { plan } = await planStack(await planDir(cases.length), { record: world.record, cwd: world.dir, env: {} });
    for (const [index, c] of cases.entries()) {
      const change = plan.changes.find((ch) => ch.address === `sig/${index}`)!;
      if (c.recreated) {
        expect([change.action, change.reason], c.name).toEqual(['replace', expect.stringContaining('recover: BootFailed after a denied boot')]);
      } else {
        expect(change.reason, c.name).toContain('recover: retry from BootFailed');
        expect(change.path, c.name).toEqual(['BootFailed', 'PoweredOff', 'PoweredOn', 'Starting', 'Running']);
      }
    }
  }, 120_000);
});
