// What a failed Pulumi call leaves behind, and whether the next `pulumi up`
// (or `pulumi destroy`) can go on from there: the Vm resource's provider
// called directly, as Pulumi's dynamic-provider host calls it, against the
// embedded authority and sim DMZ clients, through a proxy that stops
// answering mid-walk (a DMZ client that went away).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../../engine/diags/index.ts';
import { specHash } from '../../engine/spec/index.ts';
import type { VmOutputs } from '../provider.ts';
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
