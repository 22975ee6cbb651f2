// What a failed Pulumi call leaves behind, and whether the next `pulumi up`
// (or `pulumi destroy`) can go on from there: the Vm resource's provider
// called directly, as Pulumi's dynamic-provider host calls it, against the
// embedded authority and sim DMZ clients, through a proxy that stops
// answering mid-walk (a DMZ client that went away).
import type { KeyObject } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refreshStack } from '../../engine/apply/refresh.ts';
import type { StackSession } from '../../engine/apply/session.ts';
import { FleetError } from '../../engine/diags/index.ts';
import { specHash } from '../../engine/spec/index.ts';
import { signedCredentials } from '../drivers/sim/testing.ts';
import { connectProvider, type ConnectedProvider, type VmOutputs } from '../provider.ts';
import { providerOptions } from './stack.ts';
import { failingProxy, startEmbeddedStack, type EmbeddedStack } from './testing.ts';
import { VmProvider, type VmResourceInputs, type VmResourceOutputs } from './vm.ts';

let es: EmbeddedStack;
beforeAll(async () => {
  es = await startEmbeddedStack();
}, 120_000);
afterAll(async () => {
  await es?.close();
});

function vm(fleet: string, size = { cpu: 1, memoryGiB: 2, diskGiB: 10 }): VmResourceInputs {
  const base = { image: 'ubuntu-22.04', size, encryptedDisk: true };
  return { stack: es.stack.name, fleet, owner: 'team-payments', index: 0, name: `${es.stack.name}-${fleet}-0`, ...base, desiredState: 'Running', specHash: specHash({ ...base, hardware: [] }), planId: null, token: es.tokens.miami };
}

// Found by QA: an update that failed mid-walk threw a plain error, so Pulumi kept the old outputs (Running, the old
// size) while the record held the VM where the walk stopped (PoweredOn); every later `pulumi up` started from
// Running and was vetoed ("the request assumes VM ... is Running but the record has it PoweredOn"), and so was
// `pulumi destroy`: nothing the program could do brought it back.
describe('a Vm update that fails mid-walk', () => {
  it.each([
    ['after the resize', '"to":"Starting"', 'PoweredOn', true],
    ['before the resize', '"operation":"resize"', 'PoweredOff', false],
  ])('%s answers the VM as the record holds it, and the next update goes on from there', async (_when, trigger, stoppedAt, resized) => {
    const direct = new VmProvider(providerOptions(es.fleetStack, 'miami'));
    const fleet = `mid-${stoppedAt.toLowerCase()}`;
    const ins = vm(fleet);
    const created = await direct.create(ins);
    const bigger = vm(fleet, { cpu: 2, memoryGiB: 4, diskGiB: 10 });
    const proxy = await failingProxy(es.fleetStack.dataCenters.find((d) => d.name === 'miami')!.url, trigger);
    try {
      const p = new VmProvider({ ...providerOptions(es.fleetStack, 'miami'), url: proxy.url, retries: 0 });
      const e = (await p.update(created.id, created.outs as VmResourceOutputs, bigger).then(
        () => undefined,
        (err: unknown) => err,
      )) as FleetError & { id?: string; properties?: VmResourceOutputs };
      expect(e).toBeInstanceOf(FleetError);
      expect((await es.record.getVm(created.id))?.state).toBe(stoppedAt);
      expect(e.id).toBe(created.id);
      expect(e.properties).toMatchObject({ vmId: created.id, state: stoppedAt, size: resized ? bigger.size : ins.size, specHash: resized ? bigger.specHash : ins.specHash, token: es.tokens.miami });
      // The next `pulumi up`: diff against what the state now holds, then update from there.
      const olds = e.properties!;
      expect(await direct.diff(created.id, olds, bigger)).toMatchObject({ changes: true, replaces: [] });
      const updated = (await direct.update(created.id, olds, bigger)).outs as VmOutputs;
      expect(updated).toMatchObject({ state: 'Running', size: bigger.size });
      expect((await es.record.getVm(created.id))?.state).toBe('Running');
      await direct.delete(created.id, { ...updated, token: es.tokens.miami } as VmResourceOutputs);
    } finally {
      await proxy.close();
    }
  }, 120_000);
});

/** A change made in the data center's cloud, outside any program or apply: the VM deleted, or powered off from inside. */
async function outside(vmId: string, cloudId: string | null, how: 'deleted' | 'stopped'): Promise<void> {
  const sim = es.embedded.drivers.get('miami')!;
  if (how === 'stopped') {
    await sim.powerOffFromInside(cloudId!);
    return;
  }
  // The cloud's console: the sim's own key signs the call, no DMZ client or authority is asked.
  const key = (sim as unknown as { o: { credentialKey: KeyObject } }).o.credentialKey;
  await sim.deleteVm(signedCredentials('miami', { key }), { vmId, cloudId });
}

/** `fleet refresh` of the fixture's stack: its record, its data centers through their DMZ clients. */
async function fleetRefresh(): Promise<void> {
  const providers = new Map<string, ConnectedProvider>();
  for (const d of es.fleetStack.dataCenters) providers.set(d.name, connectProvider({ dataCenter: d.name, url: d.url, token: () => es.tokens[d.name], lifecycle: es.pack.lifecycle }));
  const session: StackSession = { stack: es.stack, pack: es.pack, fleets: [], warnings: [], record: es.record, providers, missingTokens: () => [], close: async () => undefined };
  await refreshStack(session, { actor: 'test' });
}

async function rejection(p: Promise<unknown>): Promise<FleetError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(FleetError);
  return e as FleetError;
}

// Found by QA: docs/pulumi.md said a VM a `pulumi refresh` found gone or stopped is planned again, as fleet plan would.
// But a program never writes the record: after a VM was deleted or stopped in the cloud, the record still held it
// Running, so the next create at its address was vetoed ("address ... already has a live VM"), the update from the
// state the refresh read was vetoed ("the request assumes ... PoweredOff but the record has it Running"), and a destroy
// failed ("shutdown failed ... has no VM"), each with nothing saying that `fleet refresh` records such a change.
describe('a VM changed outside the program', () => {
  it('deleted, then dropped by pulumi refresh: the create again names fleet refresh, and goes through after it', async () => {
    const p = new VmProvider(providerOptions(es.fleetStack, 'miami'));
    const ins = vm('gone-up');
    const created = await p.create(ins);
    await outside(created.id, (created.outs as VmOutputs).cloudId, 'deleted');
    expect(await p.read(created.id, created.outs as VmResourceOutputs)).toEqual({});
    const e = await rejection(p.create(ins));
    expect(e.message).toMatch(/already has a live VM/);
    expect(e.message).toMatch(/deleted outside the program.*`fleet refresh`/);
    await fleetRefresh();
    const again = await p.create(ins);
    expect((again.outs as VmOutputs).state).toBe('Running');
    await p.delete(again.id, again.outs as VmResourceOutputs);
  }, 120_000);

  it('deleted, then destroyed without a refresh: the destroy names fleet refresh, and finishes after it', async () => {
    const p = new VmProvider(providerOptions(es.fleetStack, 'miami'));
    const created = await p.create(vm('gone-destroy'));
    await outside(created.id, (created.outs as VmOutputs).cloudId, 'deleted');
    const e = await rejection(p.delete(created.id, created.outs as VmResourceOutputs));
    expect(e.message).toMatch(/is gone from data center miami \(deleted outside the program\), but the record still holds it Running: run `fleet refresh`/);
    await fleetRefresh();
    await p.delete(created.id, created.outs as VmResourceOutputs);
    expect((await es.record.getVm(created.id))?.state).toBe('Deleted');
  }, 120_000);

  it('stopped, then read so by pulumi refresh: the update names fleet refresh, and brings it back after it', async () => {
    const p = new VmProvider(providerOptions(es.fleetStack, 'miami'));
    const ins = vm('stopped');
    const created = await p.create(ins);
    await outside(created.id, (created.outs as VmOutputs).cloudId, 'stopped');
    const read = (await p.read(created.id, created.outs as VmResourceOutputs)).props as VmResourceOutputs;
    expect(read.state).toBe('PoweredOff');
    expect(await p.diff(created.id, read, ins)).toMatchObject({ changes: true, replaces: [] });
    const e = await rejection(p.update(created.id, read, ins));
    expect(e.message).toMatch(/The record holds stopped\/0 Running, the Pulumi state PoweredOff.*`fleet refresh`/);
    await fleetRefresh();
    const updated = (await p.update(created.id, read, ins)).outs as VmOutputs;
    expect(updated.state).toBe('Running');
    expect((await es.record.getVm(created.id))?.state).toBe('Running');
    await p.delete(created.id, { ...updated, token: es.tokens.miami } as VmResourceOutputs);
  }, 120_000);
});
