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
