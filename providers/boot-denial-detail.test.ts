// A denied boot's cause reaches the operator running the apply. Since the
// boot endpoint answers every denial with one fixed reason (BOOT_DENIED_REASON:
// it is open, boot-denial-leak.test.ts), the failed step (`driver.boot-denied`,
// what `fleet apply` prints for the member) said only that reason, and the
// operator had to read `fleet history` to learn why. The authority now tells
// the DMZ client (authenticated) the cause beside the fixed reason; the DMZ
// client takes it off before answering the VM and puts it in the message of
// the step awaiting that boot, and only for the boot token it booted the VM
// with (a caller guessing at the VM's id cannot put words there; the cases of
// another token, an earlier token and a restarted DMZ client:
// boot-denial-cause.test.ts).
//
// Over the real pieces: a record, the authority, a sim data center (its agents
// ask the boot endpoint over HTTP) and its DMZ client over loopback HTTP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BOOT_DENIED_REASON } from '../engine/authority/boot.ts';
import { readSimState } from './drivers/sim/index.ts';
import { createRequest, newVm, runCollect, startTestWorld, transitionSteps, walk, type TestWorld } from './testing.ts';

let world: TestWorld;
beforeAll(async () => {
  world = await startTestWorld({ dataCenters: ['miami'] });
}, 120_000);
afterAll(() => world?.close());

describe("a denied boot's failed step names its cause; the VM is told only the fixed reason", () => {
  // What the record is made to hold after the VM was powered on (so its boot no longer matches), and the cause the
  // step must name.
  const cases = [
    { name: 'the record holds another image', edit: { realImage: 'img-other' }, cause: /; the authority's reason: image img-\S+ does not match the record's img-other$/ },
    { name: 'the record holds another image (a guesser asked for the VM meanwhile)', edit: { realImage: 'img-elsewhere' }, guess: true, cause: /; the authority's reason: image img-\S+ does not match the record's img-elsewhere$/ },
    // As `fleet apply` sends a member's edges: one run (the awaitReady edge approved ahead with the boot's report).
    { name: 'the record holds another image (one run, as fleet apply sends it)', edit: { realImage: 'img-in-run' }, run: true, cause: /; the authority's reason: image img-\S+ does not match the record's img-in-run$/ },
  ];
  it.each(cases.map((c, i) => ({ ...c, index: i })))('$name', async ({ edit, guess, run, cause, index }) => {
    const { client, dmz, stateDir } = world.dc('miami');
    const vm = newVm(world.stack, { fleet: 'detail', index });
    await client.createVm(createRequest(vm));
    expect((await walk(client, vm.id, ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn'])).map((s) => s.outcome)).toEqual(['ok', 'ok', 'ok']);
    const row = (await world.record.getVm(vm.id))!;
    await world.record.updateVm(vm.id, row.version, edit, { actor: 'test' });
    if (guess) {
      // Anything on the network may post a boot for the VM's id; without its token, its denial is not the step's.
      const res = await fetch(`${dmz.url}/v1/boot`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ vmId: vm.id, cloudId: row.cloudId, image: row.realImage, bootToken: 'guess' }),
      });
      expect(await res.json()).toEqual({ approved: false, reason: BOOT_DENIED_REASON });
    }
    const boot = ['PoweredOn', 'Starting', 'Running'];
    const steps = run ? await runCollect(client, transitionSteps(vm.id, boot, `plan-detail-${index}`)) : await walk(client, vm.id, boot);
    expect(steps.map((s) => [s.outcome, s.vm?.state])).toEqual([
      ['ok', 'Starting'],
      ['failed', 'BootFailed'],
    ]);
    // What `fleet apply` prints for the member (engine/apply/member.ts: the step's error message).
    expect(steps[1].error).toMatchObject({ code: 'driver.boot-denied', message: expect.stringMatching(cause) });
    expect(steps[1].error?.message).not.toContain('the boot token is not one the authority issued');
    // The VM (the sim's agent, as the boot agent) was told the fixed reason and nothing else.
    const sim = (await readSimState(stateDir, 'miami')).vms.find((v) => v.vmId === vm.id)!;
    expect(sim.agentDetail).toBe(`boot denied: ${BOOT_DENIED_REASON}`);
  }, 60_000);
});
