// A denied boot's cause reaches the failed step (what `fleet apply` prints for
// the member, and its journal row) in the cases boot-denial-detail.test.ts
// leaves out. The DMZ client kept the authority's cause only for the one token
// it last booted the VM with, in memory: the step said only the fixed reason
// when the VM presented another token (its user data tampered with), after the
// DMZ client restarted (its memory gone, the denial before or after the
// restart), or when the VM presented the token of an earlier boot edge of it,
// replaced (unused) by the boot edge approved again. The VM is still told the
// fixed reason only (boot-denial-leak.test.ts).
//
// Over the real pieces: a record, the authority, a sim data center (its agents
// ask the boot endpoint over HTTP) and its DMZ client over loopback HTTP. The
// sim's agents wait long; each case has its VM's agent ask when it needs
// (agentAsksNow).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BOOT_DENIED_REASON } from '../engine/authority/boot.ts';
import type { StepResult } from '../protocol/index.ts';
import { readSimState } from './drivers/sim/index.ts';
import { createRequest, newVm, startTestWorld, walk, type TestWorld } from './testing.ts';

let world: TestWorld;
beforeAll(async () => {
  world = await startTestWorld({ dataCenters: ['miami'], sim: () => ({ bootMs: 600_000 }) });
}, 120_000);
afterAll(() => world?.close());

const dc = () => world.dc('miami');

/** The sim's view of the VM: its cloud id, the token it was last booted with, what its agent was told. */
async function simVm(vmId: string) {
  return (await readSimState(dc().stateDir, 'miami')).vms.find((v) => v.vmId === vmId)!;
}

/** Makes the record hold another image for the VM: its boot no longer matches (image-mismatch). */
async function otherImage(vmId: string, image: string): Promise<void> {
  const row = (await world.record.getVm(vmId))!;
  await world.record.updateVm(vmId, row.version, { realImage: image }, { actor: 'test' });
}

interface Case {
  name: string;
  /** From a VM booted (the record at Starting, its agent not asked yet) to the awaitReady step's result. */
  act: (vm: { id: string; cloudId: string; index: number }) => Promise<StepResult>;
  cause: RegExp;
}

const awaitReady = (vmId: string) => walk(dc().client, vmId, ['Starting', 'Running']).then((r) => r[0]);

const cases: Case[] = [
  {
    name: 'the VM presents a token other than the one it was booted with',
    act: async ({ id, cloudId }) => {
      await dc().driver.agentAsksNow(cloudId, 'a-token-nobody-issued');
      return awaitReady(id);
    },
    cause: /; it did not present the boot token it was booted with: a boot for it with another token was denied; the authority's reason: the boot token is not one the authority issued for VM cause\/0 /,
  },
  {
    name: 'the DMZ client restarted after the boot, before the VM asked',
    act: async ({ id, cloudId, index }) => {
      await otherImage(id, `img-restart-${index}`);
      await dc().restart();
      await dc().driver.agentAsksNow(cloudId);
      return awaitReady(id);
    },
    cause: /; the authority's reason: image img-\S+ does not match the record's img-restart-1$/,
  },
  {
    name: 'the DMZ client restarted after the denial, before awaitReady',
    act: async ({ id, cloudId, index }) => {
      await otherImage(id, `img-denied-${index}`);
      await dc().driver.agentAsksNow(cloudId);
      await dc().restart();
      return awaitReady(id);
    },
    cause: /; the authority's reason: image img-\S+ does not match the record's img-denied-2$/,
  },
  {
    name: 'the VM presents the token of the boot edge before, replaced unused by the boot approved again',
    act: async ({ id, cloudId, index }) => {
      const first = (await simVm(id)).bootToken!;
      // The boot's report lost (the record back before the boot edge, still booting): the next apply approves the
      // boot edge again, with a new token; the first stays good once beside it (the record's prev_hash).
      await world.record.transitionVm(id, (await world.record.getVm(id))!.version, 'PoweredOn', { actor: 'test', outcome: 'drift' });
      expect((await walk(dc().client, id, ['PoweredOn', 'Starting'])).map((s) => s.outcome)).toEqual(['ok']);
      expect((await simVm(id)).bootToken).not.toBe(first);
      await otherImage(id, `img-replaced-${index}`);
      await dc().driver.agentAsksNow(cloudId, first);
      return awaitReady(id);
    },
    cause: /; the authority's reason \(for the boot token of an earlier boot of it, replaced since\): image img-\S+ does not match the record's img-replaced-3$/,
  },
];

describe("a denied boot's failed step names its cause when the DMZ client's memory of it would not", () => {
  it.each(cases.map((c, index) => ({ ...c, index })))('$name', async ({ act, cause, index }) => {
    const vm = newVm(world.stack, { fleet: 'cause', index });
    await dc().client.createVm(createRequest(vm));
    const up = await walk(dc().client, vm.id, ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting']);
    expect(up.map((s) => s.outcome)).toEqual(['ok', 'ok', 'ok', 'ok']);
    const step = await act({ id: vm.id, cloudId: (await simVm(vm.id)).cloudId, index });
    expect([step.outcome, step.vm?.state, step.error?.code]).toEqual(['failed', 'BootFailed', 'driver.boot-denied']);
    expect(step.error?.message).toMatch(cause);
    // The VM history's row of the failed step (what the journal and `fleet history` say) carries it too.
    const history = await world.record.history(world.stack, `cause/${index}`);
    expect(history.at(-1)?.detail).toMatch(cause);
    // The VM (the sim's agent, as the boot agent) was told the fixed reason and nothing else.
    expect((await simVm(vm.id)).agentDetail).toBe(`boot denied: ${BOOT_DENIED_REASON}`);
  }, 60_000);
});
