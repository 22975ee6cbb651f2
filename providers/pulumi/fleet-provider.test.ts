// FleetProvider called directly (as Pulumi's dynamic-provider host calls it)
// against the embedded authority and sim DMZ clients: what a platform team
// hits on `pulumi up` and `pulumi destroy` beyond serialization
// (serialized.test.ts covers the provider as Pulumi loads it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../../engine/diags/index.ts';
import { specHash } from '../../engine/spec/index.ts';
import { FleetProvider, type FleetInputs, type FleetOutputs, type FleetSpecInputs } from './fleet.ts';
import { startEmbeddedStack, type EmbeddedStack } from './testing.ts';

let es: EmbeddedStack;
beforeAll(async () => {
  es = await startEmbeddedStack();
}, 120_000);
afterAll(async () => {
  await es?.close();
});

const base = { owner: 'team-payments', count: 2, image: 'ubuntu-22.04', size: { cpu: 1, memoryGiB: 2, diskGiB: 10 }, encryptedDisk: true, placement: { strategy: 'spread' as const } };
function inputs(spec: FleetSpecInputs): FleetInputs {
  return { spec, specHash: specHash({ image: spec.image, size: spec.size, hardware: spec.hardware ?? [], encryptedDisk: spec.encryptedDisk ?? false }), tokens: { ...es.tokens } };
}
async function states(outs: FleetOutputs): Promise<(string | undefined)[]> {
  return Promise.all(outs.members.map(async (m) => (await es.record.getVm(m.vmId))?.state));
}
async function rejection(p: Promise<unknown>): Promise<FleetError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(FleetError);
  return e as FleetError;
}

// Found by QA: `spec.protect: true` was accepted by check and then ignored. The provider planned with
// --allow-destroy of its own fleet, and the authority judges protect from the record's fleet row, which only
// `fleet apply` writes: lowering count, a replacing change and `pulumi destroy` deleted a protected fleet's members.
describe('a protected fleet (spec.protect: true)', () => {
  const changes: [string, Partial<FleetSpecInputs>][] = [
    ['count lowered', { count: 1 }],
    ['a new image (replace)', { image: 'ubuntu-24.04' }],
  ];
  it.each(changes)('update refuses %s, naming the members and the way out, and deletes nothing', async (what, over) => {
    const p = new FleetProvider(es.fleetStack);
    const name = `prot-${what.split(' ')[0]}`.replace(/[^a-z-]/g, '');
    const created = await p.create(inputs({ ...base, name, protect: true }));
    const outs = created.outs as FleetOutputs;
    const e = await rejection(p.update(created.id, outs, inputs({ ...base, name, protect: true, ...over })));
    expect(e.diagnostics.map((d) => d.code)).toContain('plan.blocked');
    expect(e.message).toMatch(/is protected/);
    expect(e.message).toMatch(/protect: false/);
    expect(await states(outs)).toEqual(['Running', 'Running']);
    // The way out: the same change with protect: false goes through.
    const updated = await p.update(created.id, outs, inputs({ ...base, name, protect: false, ...over }));
    await p.delete(created.id, updated.outs as FleetOutputs);
  }, 120_000);

  it('delete (pulumi destroy) refuses and deletes nothing; after protect: false it deletes every member', async () => {
    const p = new FleetProvider(es.fleetStack);
    const created = await p.create(inputs({ ...base, name: 'prot-destroy', protect: true }));
    const outs = created.outs as FleetOutputs;
    const e = await rejection(p.delete(created.id, outs));
    expect(e.diagnostics.map((d) => d.code)).toContain('plan.blocked');
    expect(e.message).toMatch(/prot-destroy is protected/);
    expect(await states(outs)).toEqual(['Running', 'Running']);
    const news = inputs({ ...base, name: 'prot-destroy', protect: false });
    expect(await p.diff(created.id, outs, news)).toMatchObject({ changes: true, replaces: [] });
    const updated = (await p.update(created.id, outs, news)).outs as FleetOutputs;
    expect(updated.members.map((m) => m.vmId)).toEqual(outs.members.map((m) => m.vmId));
    await p.delete(created.id, updated);
    expect(await states(outs)).toEqual(['Deleted', 'Deleted']);
  }, 120_000);

  it('a pack whose protect rule is not mandatory lets the change through, as fleet apply does', async () => {
    const p = new FleetProvider({ ...es.fleetStack, protectEnforcement: 'advisory' });
    const created = await p.create(inputs({ ...base, name: 'prot-advisory', protect: true }));
    const updated = (await p.update(created.id, created.outs as FleetOutputs, inputs({ ...base, name: 'prot-advisory', protect: true, count: 1 }))).outs as FleetOutputs;
    expect(updated.members.map((m) => m.address)).toEqual(['prot-advisory/0']);
    await p.delete(created.id, updated);
    expect(await states(created.outs as FleetOutputs)).toEqual(['Deleted', 'Deleted']);
  }, 120_000);
});
