// readPlan against its definition (splitPlanRows over listPlanVms), on every
// backend, over generated records: fleets with and without shapes, members
// that match or differ in each compared field, deposed and retired rows,
// members missing below the count, and plans narrowed to some fleets.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitPlanRows } from './plan-read.ts';
import type { SqlRecord } from './record.ts';
import { testBackends, type TestRecord } from './testing.ts';
import type { FleetShape, NewVm } from './types.ts';
import { seededRandom } from '../model/seeded-random.ts';


const SIZES = [
  { cpu: 2, memoryGiB: 4, diskGiB: 20 },
  { cpu: 4, memoryGiB: 8.5, diskGiB: 20 },
  { cpu: 2, memoryGiB: 4, diskGiB: 40 },
];
const STATES = ['Running', 'PoweredOff', 'BootFailed', 'BeingCreated'];
const DCS = ['miami', 'richmond', 'dallas'];
const ctx = { actor: 'test' };

interface Case {
  stack: string;
  shapes: FleetShape[];
  fleets?: string[];
}

/** Writes one generated record into `r` under a fresh stack; returns what to ask readPlan. */
async function generate(r: SqlRecord, seed: number): Promise<Case> {
  const g = seededRandom(seed);
  const stack = `pr-${seed}-${Math.random().toString(36).slice(2, 8)}`;
  const names = Array.from({ length: 1 + g.int(6) }, (_, i) => `f${i}`);
  const shapes: FleetShape[] = [];
  const first: NewVm[] = [];
  for (const fleet of names) {
    const shape: FleetShape = {
      fleet,
      count: g.int(7),
      state: g.pick(['Running', 'PoweredOff']),
      specHash: g.pick(['h1', 'h2']),
      image: g.pick(['ubuntu-22.04', 'rhel-9']),
      encryptedDisk: g.chance(0.5),
      size: g.pick(SIZES),
    };
    // Some fleets have no shape (their spec is gone, or the plan reads them whole).
    if (g.chance(0.8)) shapes.push(shape);
    for (let index = 0; index < shape.count + g.int(3); index++) {
      if (g.chance(0.15)) continue;
      const vm: NewVm = {
        stack,
        fleet,
        owner: 'team-a',
        index,
        dataCenter: g.pick(DCS),
        state: shape.state,
        desiredState: shape.state,
        specHash: shape.specHash,
        image: shape.image,
        size: shape.size,
        encryptedDisk: shape.encryptedDisk,
      };
      // About a third differ from the shape, in one field each.
      if (g.chance(0.35)) {
        const field = g.int(6);
        if (field === 0) vm.state = g.pick(STATES);
        else if (field === 1) vm.specHash = 'h3';
        else if (field === 2) vm.image = 'debian-12';
        else if (field === 3) vm.encryptedDisk = !vm.encryptedDisk;
        else vm.size = g.pick(SIZES);
      }
      first.push(vm);
    }
  }
  // A shape for a fleet the record has never seen.
  if (g.chance(0.3)) shapes.push({ fleet: 'new', count: g.int(3), state: 'Running', specHash: 'h1', image: 'ubuntu-22.04', encryptedDisk: false, size: SIZES[0] });
  if (first.length) await r.bulkInsertVms(first, ctx);
  const live = await r.listVms(stack);
  // Deposed rows (the old VM of a replace), most with their replacement live at the same index.
  const deposed = live.filter(() => g.chance(0.1));
  if (deposed.length) {
    await r.sql.query('UPDATE vms SET deposed_at = now() WHERE id = ANY($1::text[])', [deposed.map((v) => v.id)]);
    const again = deposed.filter(() => g.chance(0.7)).map((v): NewVm => ({ ...first.find((f) => f.fleet === v.fleet && f.index === v.index)!, dataCenter: g.pick(DCS) }));
    if (again.length) await r.bulkInsertVms(again, ctx);
  }
  // Retired rows are never read.
  const retired = live.filter((v) => !deposed.includes(v) && g.chance(0.1));
  if (retired.length) await r.sql.query('UPDATE vms SET retired_at = now() WHERE id = ANY($1::text[])', [retired.map((v) => v.id)]);
  const fleets = g.chance(0.3) ? names.filter(() => g.chance(0.5)) : undefined;
  return { stack, shapes, ...(fleets ? { fleets } : {}) };
}

describe.each(testBackends())('readPlan on $name', (backend) => {
  let t: TestRecord;
  beforeAll(async () => {
    t = await backend.create();
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it('reads what splitPlanRows makes of every row, over 60 generated records', async () => {
    let lean = 0;
    let whole = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const c = await generate(t.record, seed);
      const got = await t.record.readPlan(c.stack, { shapes: c.shapes, ...(c.fleets ? { fleets: c.fleets } : {}) });
      const want = splitPlanRows(await t.record.listPlanVms(c.stack), c.shapes, c.fleets);
      expect(got, `seed ${seed}`).toEqual(want);
      lean += want.unchanged.length;
      whole += want.rows.length;
    }
    // The generator makes both kinds: members summed and rows read.
    expect(lean).toBeGreaterThan(50);
    expect(whole).toBeGreaterThan(50);
  });

  it('sums the matching members and reads the others', async () => {
    const stack = `pr-fixed-${Math.random().toString(36).slice(2, 8)}`;
    const base = { stack, fleet: 'web', owner: 'team-a', desiredState: 'Running', specHash: 'h1', image: 'ubuntu-22.04', size: SIZES[0], encryptedDisk: false };
    await t.record.bulkInsertVms(
      [
        { ...base, index: 0, dataCenter: 'miami', state: 'Running' },
        { ...base, index: 1, dataCenter: 'miami', state: 'Running' },
        { ...base, index: 2, dataCenter: 'dallas', state: 'Running' },
        { ...base, index: 3, dataCenter: 'dallas', state: 'PoweredOff' },
        { ...base, index: 4, dataCenter: 'dallas', state: 'Running' },
      ],
      ctx,
    );
    const shape: FleetShape = { fleet: 'web', count: 4, state: 'Running', specHash: 'h1', image: 'ubuntu-22.04', encryptedDisk: false, size: SIZES[0] };
    const got = await t.record.readPlan(stack, { shapes: [shape] });
    // web/3 is in another state, web/4 is past the count: both read; the rest summed.
    expect(got.rows.map((r) => r.address)).toEqual(['web/3', 'web/4']);
    expect(got.unchanged).toEqual([
      { fleet: 'web', dataCenter: 'dallas', state: 'Running', vms: 1, cpu: 2, memoryGiB: 4 },
      { fleet: 'web', dataCenter: 'miami', state: 'Running', vms: 2, cpu: 4, memoryGiB: 8 },
    ]);
    // Count 6: web/5 is missing, so the fleet is read whole (its new member needs the free index).
    const grown = await t.record.readPlan(stack, { shapes: [{ ...shape, count: 6 }] });
    expect(grown.rows.map((r) => r.address)).toEqual(['web/0', 'web/1', 'web/2', 'web/3', 'web/4']);
    expect(grown.unchanged).toEqual([]);
    // No shape: every row; out of scope: nothing.
    expect((await t.record.readPlan(stack, { shapes: [] })).rows).toHaveLength(5);
    expect(await t.record.readPlan(stack, { shapes: [shape], fleets: [] })).toEqual({ rows: [], unchanged: [] });
    expect(await t.record.readPlan(stack, { shapes: [shape], fleets: ['db'] })).toEqual({ rows: [], unchanged: [] });
  });
});
