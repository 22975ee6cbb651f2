// A boot whose approval was lost to a crash (issue 14): the authority
// accepted the VM's one-time boot token, then the data center's process
// died before the agent acted on the answer. The resumed agent presents the
// same token again; the authority answers it with the same approval (the
// same VM, cloud id and token, still booting, within the repeat window), so
// the VM boots instead of being terminated as "used already".
//
// Over the real pieces: a record, the authority, a sim data center and its
// DMZ client over loopback HTTP. The crash is a restart of the DMZ client and
// its sim from disk (state as the sim kept it: booting, with its token).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BOOT_DENIED_REASON } from '../engine/authority/boot.ts';
import { openRecord } from '../engine/record/index.ts';
import { bootAttempts } from '../engine/record/testing.ts';
import type { SqlRecord } from '../engine/record/record.ts';
import type { FleetRecord } from '../engine/record/types.ts';
import type { BatchStep, StepResult } from '../protocol/index.ts';
import { readSimState } from './drivers/sim/index.ts';
import { TO_RUNNING, newVm, runCollect, startTestWorld, transitionSteps, type TestWorld } from './testing.ts';

let record: FleetRecord;
let world: TestWorld;
/** The boot time of the sim's agents: long at first (the test presents the token itself), short after the "crash". */
let bootMs = 600_000;
beforeAll(async () => {
  record = await openRecord('memory://');
  world = await startTestWorld({ record, dataCenters: ['miami'], sim: () => ({ bootMs }) });
}, 120_000);
afterAll(async () => {
  await world?.close();
  await record?.close();
});

const run = (list: BatchStep[]): Promise<StepResult[]> => runCollect(world.dc('miami').client, list);

const steps = transitionSteps;

/** What the VM's agent posts to its DMZ client's boot endpoint. */
async function present(body: { vmId: string; cloudId: string; image: string; bootToken: string }): Promise<{ approved: boolean; reason: string; diskKey?: string }> {
  const res = await fetch(`${world.dc('miami').dmz.url}/v1/boot`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status).toBe(200);
  return (await res.json()) as { approved: boolean; reason: string; diskKey?: string };
}

describe('a boot token of a boot its VM has left', () => {
  it('is denied when the VM comes back into a booting state without a new boot edge, unused or not, saying why', async () => {
    // Before: an unused token stayed good, once, whatever the VM went through after it was issued: a VM that ran,
    // was shut down and powered on again (no boot edge: no new token) got its disk key for the old one.
    const dc = world.dc('miami');
    const vm = newVm(world.stack, { fleet: 'boots', index: 1 });
    const upTo = TO_RUNNING.slice(0, 5); // Requested … Starting: booted, its agent not asked yet (bootMs is long)
    const create: BatchStep = { op: 'create', body: { idempotencyKey: 'plan-l/c1', planId: 'plan-l', vm } };
    expect((await run([create, ...steps(vm.id, upTo, 'plan-l')])).map((r) => r.outcome)).toEqual(upTo.map(() => 'ok'));
    const booting = (await readSimState(dc.stateDir, 'miami')).vms.find((v) => v.vmId === vm.id)!;
    const body = { vmId: vm.id, cloudId: booting.cloudId, image: booting.image, bootToken: booting.bootToken! };
    // The record sees the VM leave its boot and come back (as refresh records a drift, and a power cycle).
    for (const to of ['Running', 'ShuttingDown', 'PoweredOff', 'PoweredOn']) {
      await record.transitionVm(vm.id, (await record.getVm(vm.id))!.version, to, { actor: 'test', outcome: 'drift' });
    }
    const denied = await present(body);
    expect(denied).toEqual({ approved: false, reason: BOOT_DENIED_REASON });
    expect((await record.history(world.stack, 'boots/1')).at(-1)?.detail).toMatch(/left the booting states since this boot token was issued/);
    expect((await bootAttempts(record as SqlRecord, { vmId: vm.id })).map((a) => a.approved)).toEqual([false]);
  }, 120_000);
});

describe('a boot token re-presented after a crash', () => {
  it('the authority accepted it, the data center died before acting; the resumed agent presents it again and the VM boots (not terminated)', async () => {
    const dc = world.dc('miami');
    const vm = newVm(world.stack, { fleet: 'boots', index: 0 });
    const upTo = TO_RUNNING.slice(0, 5); // Requested … Starting: booted, its agent not asked yet
    const create: BatchStep = { op: 'create', body: { idempotencyKey: 'plan-b/c0', planId: 'plan-b', vm } };
    expect((await run([create, ...steps(vm.id, upTo, 'plan-b')])).map((r) => r.outcome)).toEqual(upTo.map(() => 'ok'));

    // The agent's presentation, as the sim keeps the VM while it boots.
    const booting = (await readSimState(dc.stateDir, 'miami')).vms.find((v) => v.vmId === vm.id)!;
    expect(booting).toMatchObject({ status: 'present', agent: 'booting' });
    const body = { vmId: vm.id, cloudId: booting.cloudId, image: booting.image, bootToken: booting.bootToken! };
    const first = await present(body);
    expect(first).toMatchObject({ approved: true });
    // … and the answer is lost: the data center's process dies before the agent acts on it.
    bootMs = 5;
    await dc.restart();

    // The restarted sim resumes the agent with the same token; the apply's awaitReady waits for it.
    const ready = await run(steps(vm.id, ['Starting', 'Running'], 'plan-b2'));
    // (Before the fix: denied as "used already", the VM terminated by its data center, the record BootFailed.)
    expect(await dc.client.getVm(vm.id)).toMatchObject({ status: 'present', agent: 'ready' });
    expect((await readSimState(dc.stateDir, 'miami')).vms.find((v) => v.vmId === vm.id)).toMatchObject({ diskUnlocked: true, bootToken: null });
    expect(ready.map((r) => [r.outcome, r.vm?.state])).toEqual([['ok', 'Running']]);
    expect((await record.getVm(vm.id))?.state).toBe('Running');
    // The approval is recorded once; nothing was denied.
    const attempts = await bootAttempts(record as SqlRecord, { vmId: vm.id });
    expect(attempts.map((a) => [a.approved, a.reason])).toEqual([[true, 'matches the record']]);
    expect((await record.history(world.stack, 'boots/0')).filter((h) => h.outcome === 'denied')).toEqual([]);

    // The VM has moved on (Running): the same token is denied now (the sim would terminate whoever presents it).
    expect(await present(body)).toEqual({ approved: false, reason: BOOT_DENIED_REASON });
    expect((await record.history(world.stack, 'boots/0')).at(-1)?.detail).toContain('not booting');
  }, 120_000);
});
