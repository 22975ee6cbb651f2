// FleetProvider called directly (as Pulumi's dynamic-provider host calls it)
// against the embedded authority and sim DMZ clients: what a platform team
// hits on `pulumi up` and `pulumi destroy` beyond serialization
// (serialized.test.ts covers the provider as Pulumi loads it).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../../engine/diags/index.ts';
import { planStack } from '../../engine/plan/index.ts';
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

// Found by QA: a Pulumi program and fleet files could manage fleets of one stack in one record, and `fleet plan`
// (and `fleet apply`) planned every member of the program's fleets for deletion, since no fleet file declares
// them; `protect: true` did not hold them (the record's fleet row, written by fleet apply only, said unprotected).
// The program's creates now name it as the fleet's manager in the record (fleets.managed_by).
describe('a program fleet and fleet files on one stack', () => {
  const program = 'pulumi:fleets/dev';
  const fleetFile = (name: string) => `apiVersion: fleet/v1
kind: Fleet
metadata: { name: ${name}, owner: team-payments }
spec:
  count: 1
  image: ubuntu-22.04
  size: { cpu: 1, memoryGiB: 2, diskGiB: 10 }
  encryptedDisk: true
`;
  // The fixture's one spec file (empty: the stack keeps its fleets in the program) holds the fleet file of each case.
  const specFile = () => join(es.dir, 'specs', 'none.yaml');
  let empty = '';
  const plan = () => planStack(es.dir, { cwd: es.dir, record: es.record, env: { ...process.env, FLEET_RECORD_URL: undefined } });
  let pul: { id: string; outs: FleetOutputs } | undefined;
  beforeAll(async () => {
    const p = new FleetProvider(es.fleetStack);
    const created = await p.create({ ...inputs({ ...base, name: 'pul', protect: true }), managedBy: program });
    pul = { id: created.id, outs: created.outs as FleetOutputs };
    empty = await readFile(specFile(), 'utf8');
  }, 120_000);
  afterAll(async () => {
    await writeFile(specFile(), empty);
    if (pul) await new FleetProvider(es.fleetStack).delete(pul.id, { ...pul.outs, spec: { ...pul.outs.spec, protect: false } });
  }, 120_000);

  it('records the program as the fleet\'s manager', async () => {
    expect((await es.record.listFleets(es.stack.name, ['pul'])).map((f) => [f.fleet, f.managedBy])).toEqual([['pul', program]]);
  });

  it('fleet plan with a fleet file of another fleet plans no delete of the program\'s members, and says once that it leaves the fleet alone', async () => {
    await writeFile(specFile(), fleetFile('other'));
    const { plan: doc, diagnostics } = await plan();
    const mine = doc.changes.filter((c) => c.fleet === 'pul' || c.fleet === 'other');
    expect(mine.map((c) => `${c.address} ${c.action}`)).toEqual(['other/0 create']);
    expect(doc.changes.filter((c) => c.action === 'delete' || c.action === 'replace')).toEqual([]);
    const notes = diagnostics.filter((d) => d.code === 'plan.program-fleet');
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatchObject({ severity: 'warning', address: 'pul' });
    expect(notes[0].detail).toContain(program);
    expect(notes[0].detail).toContain('pulumi destroy');
    expect(await states(pul!.outs)).toEqual(['Running', 'Running']);
  });

  it('a fleet file that declares the program\'s fleet is refused before any step: two managers', async () => {
    await writeFile(specFile(), fleetFile('pul'));
    const e = await rejection(plan());
    expect(e.diagnostics.map((d) => [d.code, d.address])).toEqual([['plan.two-managers', 'pul']]);
    expect(e.diagnostics[0].file).toMatch(/none\.yaml$/);
    expect(e.diagnostics[0].detail).toContain(program);
    expect(e.diagnostics[0].detail).toContain('pulumi destroy');
    await writeFile(specFile(), empty);
  });

  it('the Fleet provider refuses to take over a fleet whose live VMs fleet files made, and creates nothing', async () => {
    const stack = es.stack.name;
    await es.record.insertVm(
      { stack, fleet: 'filed', owner: 'team-payments', index: 0, dataCenter: 'miami', state: 'Running', desiredState: 'Running', specHash: 'h', image: 'ubuntu-22.04', size: base.size, encryptedDisk: true },
      { actor: 'fleet apply' },
    );
    const p = new FleetProvider(es.fleetStack);
    const e = await rejection(p.create({ ...inputs({ ...base, name: 'filed' }), managedBy: program }));
    expect(e.message).toContain('fleet filed has live VMs managed by fleet files');
    expect(e.message).toContain(program);
    expect((await es.record.listVms(stack)).filter((v) => v.fleet === 'filed').map((v) => `${v.address} ${v.state}`)).toEqual(['filed/0 Running']);
    expect((await es.record.listFleets(stack, ['filed']))[0].managedBy).toBeNull();
  }, 120_000);
});
