// A Vm whose program moves it to another data center (VmArgs.dataCenter changed). The data center is not an input
// of the resource but its provider's (each data center has its own serialized provider), and Pulumi's dynamic-provider
// host diffs and updates with the NEW provider against the old outputs (it takes no action of its own when a
// resource's provider changed). The diff compared no data center: the same VM answered no change (the program said
// richmond, the VM stayed in miami), and a state change sent the update to richmond's DMZ client for a VM that
// richmond does not hold. Now the diff replaces it (old VM first: its delete goes through the old provider, which
// Pulumi takes from the state), and an update all the same is refused before any request.
//
// Called directly, as the host calls them, against the embedded authority and sim DMZ clients.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../../engine/diags/index.ts';
import { specHash } from '../../engine/spec/index.ts';
import type { VmOutputs } from '../provider.ts';
import { FleetProvider, type FleetOutputs } from './fleet.ts';
import { providerOptions } from './stack.ts';
import { startEmbeddedStack, type EmbeddedStack } from './testing.ts';
import { VmProvider, type VmResourceInputs, type VmResourceOutputs } from './vm.ts';

let es: EmbeddedStack;
beforeAll(async () => {
  es = await startEmbeddedStack();
}, 120_000);
afterAll(async () => {
  await es?.close();
});

const size = { cpu: 1, memoryGiB: 2, diskGiB: 10 };
const hash = specHash({ image: 'ubuntu-22.04', size, hardware: [], encryptedDisk: true });
const vm = (desiredState: string, token: string): VmResourceInputs => ({
  stack: es.stack.name,
  fleet: 'moving',
  owner: 'team-payments',
  index: 0,
  name: `${es.stack.name}-moving-0`,
  image: 'ubuntu-22.04',
  size,
  encryptedDisk: true,
  desiredState,
  specHash: hash,
  planId: null,
  token,
});

describe('a Vm moved to another data center by its program', () => {
  it('is replaced (the old VM deleted first, through the old provider), never updated through the new one', async () => {
    const miami = new VmProvider(providerOptions(es.fleetStack, 'miami'));
    const richmond = new VmProvider(providerOptions(es.fleetStack, 'richmond'));
    const created = await miami.create(vm('Running', es.tokens.miami));
    const olds = created.outs as VmResourceOutputs;
    expect(olds.dataCenter).toBe('miami');

    // The program now says richmond (its token with it); nothing else changed.
    expect(await richmond.diff(created.id, olds, vm('Running', es.tokens.richmond))).toEqual({ changes: true, replaces: ['dataCenter'], deleteBeforeReplace: true });
    expect(await richmond.diff(created.id, olds, vm('PoweredOff', es.tokens.richmond))).toMatchObject({ replaces: ['dataCenter'], deleteBeforeReplace: true });
    // An update all the same is refused before any request.
    const before = (await es.record.history(es.stack.name, 'moving/0')).length;
    const e = await richmond.update(created.id, olds, vm('PoweredOff', es.tokens.richmond)).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(FleetError);
    expect((e as Error).message).toMatch(/moving\/0 is in data center miami.*richmond.*replace/);
    expect(await es.record.history(es.stack.name, 'moving/0')).toHaveLength(before);

    // Pulumi's replace: delete through the provider in the state (miami's), create through the new one.
    await miami.delete(created.id, olds);
    const moved = await richmond.create(vm('Running', es.tokens.richmond));
    expect(moved.outs as VmOutputs).toMatchObject({ dataCenter: 'richmond', state: 'Running' });
    expect((await es.record.getVm(created.id))?.state).toBe('Deleted');
    expect(await richmond.diff(moved.id, moved.outs as VmResourceOutputs, vm('Running', es.tokens.richmond))).toMatchObject({ changes: false, replaces: [] });
    await richmond.delete(moved.id, moved.outs as VmResourceOutputs);
  }, 120_000);
});

// A stack.yaml that no longer lists a data center where a Fleet still has members (the program loads the new one).
// Its provider cannot reach them (no URL): the delete threw at the first such member, before the members after it
// were tried, while the deletes it had started went on after the error (a destroy that failed whole, with some
// members deleted behind it); read did the same; neither said which member. Now each member is tried, the reachable
// ones finish before the answer, and each unreachable one is an error at its address.
describe('a Fleet whose stack no longer has a data center holding members', () => {
  it('delete and read reach every member they can and name each they cannot', async () => {
    const p = new FleetProvider(es.fleetStack);
    const ins = { spec: { name: 'dropped', owner: 'team-payments', count: 4, image: 'ubuntu-22.04', size, encryptedDisk: true, placement: { strategy: 'spread' as const } }, specHash: hash, tokens: { ...es.tokens } };
    const created = await p.create(ins);
    const outs = created.outs as FleetOutputs;
    const at = (dc: string) => outs.members.filter((m) => m.dataCenter === dc);
    expect(at('miami').length).toBeGreaterThan(0);
    expect(at('richmond').length).toBeGreaterThan(0);
    const without = new FleetProvider({ ...es.fleetStack, dataCenters: es.fleetStack.dataCenters.filter((d) => d.name !== 'richmond') });

    const read = await without.read(created.id, outs).then(
      () => undefined,
      (err: unknown) => err as FleetError,
    );
    expect(read).toBeInstanceOf(FleetError);
    expect(read!.diagnostics.map((d) => d.address).sort()).toEqual(at('richmond').map((m) => m.address).sort());

    const e = await without.delete(created.id, outs).then(
      () => undefined,
      (err: unknown) => err as FleetError,
    );
    expect(e).toBeInstanceOf(FleetError);
    expect(e!.diagnostics.map((d) => d.address).sort()).toEqual(at('richmond').map((m) => m.address).sort());
    expect(e!.message).toMatch(/Data center richmond is not one of stack/);
    // Every member it could reach is deleted by the time it answers; the others are untouched.
    for (const m of at('miami')) expect((await es.record.getVm(m.vmId))?.state).toBe('Deleted');
    for (const m of at('richmond')) expect((await es.record.getVm(m.vmId))?.state).toBe('Running');
    await p.delete(created.id, { ...outs, members: at('richmond') });
  }, 120_000);
});
