// The boot endpoint is open (a booting VM holds no credential but its
// one-time boot token), so what it answers a denied boot must tell the caller
// nothing of the record. Before, the denial's reason named, for a known VM id,
// the VM's address and lifecycle state and the record's cloud id and image
// ("cloud id X does not match the record's i-…", "VM web/0 is Running, not
// booting"), to anyone, before any boot token was checked. Now every denial is
// answered with one generic reason, the token is judged first, and the
// explanation goes to the operator: the VM's history, the boot attempts and
// the authority's log.
//
// Over the real pieces: a record, the authority, a sim data center and its
// DMZ client over loopback HTTP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BOOT_DENIED_REASON } from '../engine/authority/boot.ts';
import { bootAttempts } from '../engine/record/testing.ts';
import type { SqlRecord } from '../engine/record/record.ts';
import type { BatchStep, StepResult } from '../protocol/index.ts';
import { readSimState } from './drivers/sim/index.ts';
import { TO_RUNNING, newVm, runCollect, startTestWorld, transitionSteps, type TestWorld } from './testing.ts';

let world: TestWorld;
beforeAll(async () => {
  // The sim's agents wait long: the test presents each boot itself.
  world = await startTestWorld({ dataCenters: ['miami'], sim: () => ({ bootMs: 600_000 }) });
}, 120_000);
afterAll(() => world?.close());

const run = (list: BatchStep[]): Promise<StepResult[]> => runCollect(world.dc('miami').client, list);

const steps = transitionSteps;

type Presented = { vmId: string; cloudId: string; image: string; bootToken: string };

/** What anything on the fleet's network can post to the DMZ client's boot endpoint. */
async function present({ vmId, cloudId, image, bootToken }: Presented): Promise<unknown> {
  const body = JSON.stringify({ vmId, cloudId, image, bootToken });
  const res = await fetch(`${world.dc('miami').dmz.url}/v1/boot`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const answer: unknown = await res.json();
  expect({ status: res.status, answer }).toMatchObject({ status: 200 });
  return answer;
}

/** A VM of the record carried to Starting: booted, its agent not asked yet; what its agent would present. */
async function booting(index: number): Promise<Presented & { address: string }> {
  const vm = newVm(world.stack, { fleet: 'leak', index });
  const upTo = TO_RUNNING.slice(0, 5);
  const create: BatchStep = { op: 'create', body: { idempotencyKey: `plan-leak/c${index}`, planId: 'plan-leak', vm } };
  expect((await run([create, ...steps(vm.id, upTo, `plan-leak-${index}`)])).map((r) => r.outcome)).toEqual(upTo.map(() => 'ok'));
  const sim = (await readSimState(world.dc('miami').stateDir, 'miami')).vms.find((v) => v.vmId === vm.id)!;
  return { address: `leak/${index}`, vmId: vm.id, cloudId: sim.cloudId, image: sim.image, bootToken: sim.bootToken! };
}

describe('the boot endpoint tells a denied caller nothing of the record', () => {
  it('every denial of a known or unknown VM id is answered alike; the operator gets why', async () => {
    const vm = await booting(0);
    const running = await booting(1);
    expect(await present(running)).toMatchObject({ approved: true });
    // Its boot reported (as the sim's awaitReady would, its agent answered): Running in the record.
    await world.record.transitionVm(running.vmId, (await world.record.getVm(running.vmId))!.version, 'Running', { actor: 'test', outcome: 'drift' });
    expect((await world.record.getVm(running.vmId))?.state).toBe('Running');

    // The caller's guesses, and what the record would have given away (the operator's detail, in the VM's history).
    const cases: { name: string; body: Presented; vm?: Presented & { address: string }; detail?: RegExp }[] = [
      { name: 'a wrong token for a booting VM', body: { ...vm, bootToken: 'guess' }, vm, detail: /boot token is not one the authority issued for VM leak\/0/ },
      // The token first: a caller without one learns no mismatch (before: "cloud id … does not match the record's i-…").
      { name: 'a wrong token and cloud id', body: { ...vm, cloudId: 'i-guess', bootToken: 'guess' }, vm, detail: /boot token is not one the authority issued/ },
      { name: 'a wrong token and image', body: { ...vm, image: 'img-guess', bootToken: 'guess' }, vm, detail: /boot token is not one the authority issued/ },
      { name: 'a wrong token for a Running VM', body: { ...running, bootToken: 'guess' }, vm: running, detail: /boot token is not one the authority issued/ },
      // A used token (an in-guest reboot's): still only the generic answer to the caller.
      { name: 'the used token of a Running VM', body: running, vm: running, detail: /VM leak\/1 is Running, not booting/ },
      { name: 'an unknown VM id', body: { ...vm, vmId: '00000000-0000-4000-8000-000000000000' } },
      { name: 'a VM id that is no UUID', body: { ...vm, vmId: 'leak-0' } },
    ];
    // Each case's answer, what of the record it gives away, and what the operator's record says (the VM's last history
    // row and boot attempt: the cases are presented one after another).
    const told: { case: string; answer: unknown; gives: string[]; history?: string | null; attempt?: string }[] = [];
    for (const c of cases) {
      const answer = await present(c.body);
      const text = JSON.stringify(answer);
      const gives = [vm.address, running.address, vm.cloudId, running.cloudId, vm.image, 'Starting', 'Running', 'PoweredOn'].filter((x) => text.includes(x));
      const why = c.vm
        ? {
            history: (await world.record.history(world.stack, c.vm.address)).at(-1)?.detail,
            attempt: (await bootAttempts(world.record as SqlRecord, { vmId: c.vm.vmId })).at(-1)?.reason,
          }
        : {};
      told.push({ case: c.name, answer, gives, ...why });
    }
    // Before: "the boot token is not valid …", "cloud id i-guess does not match the record's sim-…", "image … does not
    // match the record's …", "VM leak/1 is Running, not booting", "no VM … in the record": each a different answer,
    // and the record said the cloud id or image mismatch of a caller that had no token of the VM.
    expect(told).toEqual(
      cases.map((c) => ({
        case: c.name,
        answer: { approved: false, reason: BOOT_DENIED_REASON },
        gives: [],
        ...(c.vm ? { history: expect.stringMatching(c.detail!), attempt: expect.stringMatching(c.detail!) } : {}),
      })),
    );

    // The VM itself, with its token, still boots and gets its disk key.
    expect(await present(vm)).toMatchObject({ approved: true, diskKey: expect.any(String) });
  }, 120_000);
});
