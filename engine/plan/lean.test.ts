// Reading only what differs changes nothing in the plan: over generated
// stacks, records, rules and options, computePlan given every row makes the
// same document as computePlan given what FleetRecord.readPlan returns (the
// rows that differ from their fleet's shape and the others summed; its
// definition, splitPlanRows) plus the other fleets' usage, as planStack
// reads them.
import { describe, expect, it } from 'vitest';
import { formatVmAddress, type Enforcement } from '../model/index.ts';
import { BUILTIN_RULES } from '../policy/rules/builtin.ts';
import type { LoadedPack, ResolvedRule, Rule } from '../policy/types.ts';
import { splitPlanRows } from '../record/plan-read.ts';
import type { UsageRow, VmRow } from '../record/types.ts';
import type { LoadedFleet } from '../spec/types.ts';
import { computePlan, type PlanInput } from './planner.ts';
import { resolveScope } from './scope.ts';
import { customPlanRules, planShapes } from './shapes.ts';
import { dataCenter, makeFleet, makePack, makeStack, vmRow } from './test-support.ts';
import { seededRandom, type SeededRandom } from '../model/seeded-random.ts';


const SIZES = [
  { cpu: 2, memoryGiB: 4, diskGiB: 20 },
  { cpu: 4, memoryGiB: 8, diskGiB: 20 },
];
const DCS = ['miami', 'richmond', 'dallas', 'seattle'];
const ENFORCEMENTS: Enforcement[] = ['mandatory', 'advisory', 'disabled'];

/** The default pack's diagram with the built-in rules at generated settings. */
function packFor(g: SeededRandom): LoadedPack {
  const pack = makePack();
  const rules = new Map<string, ResolvedRule>();
  const config: Record<string, Record<string, unknown>> = {
    'owner-quota': { limits: { 'team-a': { vms: 4 + g.int(20), ...(g.chance(0.3) ? { cpu: 10 + g.int(40) } : {}) } }, ...(g.chance(0.3) ? { unlisted: { vms: g.int(12) } } : {}) },
    'datacenter-capacity': {},
    protect: { override: 'any' },
    'allowed-images': {},
    'require-encrypted-disk': { match: {} },
    'max-disruption': { maxShare: g.pick([0, 0.25, 0.5, 1]), state: 'Running' },
  };
  for (const rule of BUILTIN_RULES) rules.set(rule.name, { rule, enforcement: g.pick(ENFORCEMENTS), config: config[rule.name] ?? {} });
  return { ...pack, rules };
}

function fleetsFor(g: SeededRandom): LoadedFleet[] {
  return Array.from({ length: 1 + g.int(5) }, (_, i) =>
    makeFleet(`f${i}`, {
      owner: g.pick(['team-a', 'team-b']),
      count: g.int(9),
      minCount: g.chance(0.2) ? g.int(4) : 0,
      state: g.pick(['Running', 'Running', 'PoweredOff']),
      size: g.pick(SIZES),
      image: g.pick(['ubuntu-22.04', 'ubuntu-22.04', 'ubuntu-24.04', 'rhel-9']),
      encryptedDisk: g.chance(0.2),
      protect: g.chance(0.2),
      rollout: g.chance(0.4) ? { maxUnavailable: 1 + g.int(3), maxSurge: g.int(3) } : {},
    }),
  );
}

/** Rows for the specs' fleets and for one fleet no spec names any more; most match their spec. */
function rowsFor(g: SeededRandom, fleets: LoadedFleet[]): VmRow[] {
  const rows: VmRow[] = [];
  const gone = makeFleet('gone', { count: 3 });
  for (const f of g.chance(0.3) ? [...fleets, gone] : fleets) {
    for (let index = 0; index < f.count + g.int(3); index++) {
      if (g.chance(0.15)) continue;
      const over: Partial<VmRow> = { dataCenter: g.pick(DCS), state: f.state };
      if (g.chance(0.35)) {
        const field = g.int(5);
        if (field === 0) Object.assign(over, { state: g.pick(['Running', 'PoweredOff', 'BootFailed', 'CreateFailed', 'Starting']), ...(g.chance(0.5) ? { cloudId: null } : {}) });
        else if (field === 1) over.specHash = 'old-hash';
        else if (field === 2) Object.assign(over, { image: 'ubuntu-24.04', specHash: 'old-hash' });
        else if (field === 3) Object.assign(over, { size: g.pick(SIZES), specHash: 'old-hash' });
        else Object.assign(over, { encryptedDisk: !f.encryptedDisk, specHash: 'old-hash' });
      }
      if (g.chance(0.05)) rows.push(vmRow(f, index, { ...over, id: `old-${f.name}-${index}`, deposed: true }));
      rows.push(vmRow(f, index, over));
    }
  }
  return rows;
}

function optionsFor(g: SeededRandom, fleets: LoadedFleet[], rows: VmRow[]): PlanInput['options'] {
  const names = [...new Set([...fleets.map((f) => f.name), ...rows.map((r) => r.fleet)])];
  const live = rows.filter((r) => !r.deposed);
  const targets: string[] = [];
  const excludes: string[] = [];
  const replace: string[] = [];
  if (g.chance(0.25)) targets.push(g.pick(names));
  if (g.chance(0.15) && live.length) targets.push(formatVmAddress(g.pick(live).fleet, g.pick(live).index));
  if (targets.length === 0 && g.chance(0.2)) excludes.push(g.pick(names));
  if (g.chance(0.15) && live.length) replace.push(g.pick(live).address);
  return { targets, excludes, allowDestroy: g.chance(0.3) ? [g.pick(names)] : [], refresh: false, ...(replace.length ? { replace } : {}) };
}

/**
 * What the live VMs of the fleets outside `scope` use per fleet and data
 * center (FleetRecord.usage), or with `byOwner` per record owner and data
 * center (fleet '': usage's byOwner).
 */
function usageOutside(rows: VmRow[], scope: string[], owners: Record<string, string>, byOwner = false): UsageRow[] {
  const sums = new Map<string, UsageRow>();
  for (const r of rows) {
    if (scope.includes(r.fleet)) continue;
    const fleet = byOwner ? '' : r.fleet;
    const key = `${fleet}/${owners[r.fleet]}/${r.dataCenter}`;
    const u = sums.get(key) ?? { fleet, owner: owners[r.fleet], dataCenter: r.dataCenter, vms: 0, cpu: 0, memoryGiB: 0 };
    u.vms += 1;
    u.cpu += r.size.cpu;
    u.memoryGiB += r.size.memoryGiB;
    sums.set(key, u);
  }
  return [...sums.values()];
}

describe('reading only what differs', () => {
  it('makes the same plan as reading every row, over 400 generated stacks', () => {
    let summed = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const g = seededRandom(seed);
      const pack = packFor(g);
      const fleets = fleetsFor(g);
      const stack = makeStack(DCS.map((name, i) => dataCenter(name, 25 + i * 5, -80 - i * 10, ['general'], g.chance(0.4) ? { vms: 5 + g.int(30) } : {})));
      const rows = rowsFor(g, fleets).sort((a, b) => (a.fleet < b.fleet ? -1 : a.fleet > b.fleet ? 1 : a.index - b.index || (a.deposed ? -1 : 1)));
      const options = optionsFor(g, fleets, rows);
      const base: PlanInput = {
        stack,
        pack,
        fleets,
        record: rows,
        fleetVersions: Object.fromEntries(fleets.map((f, i) => [f.name, i + 1])),
        // The record's owners: mostly the spec's, now and then another (an owner changed in the spec).
        owners: { gone: 'team-a', ...Object.fromEntries(fleets.map((f) => [f.name, g.chance(0.15) ? 'team-c' : f.owner])) },
        options,
        now: new Date('2026-01-02T03:04:05.000Z'),
        id: `plan-${seed}`,
      };
      const whole = computePlan(base);
      const scope = resolveScope(fleets.map((f) => f.name), rows.map((r) => r.fleet), options.targets, options.excludes).fleets;
      const read = splitPlanRows(rows, planShapes(pack, fleets, scope, options), scope);
      const narrowed = scope.length < new Set([...fleets.map((f) => f.name), ...rows.map((r) => r.fleet)]).size;
      // The fleets outside the scope as planStack reads them: per record owner (a fleet outside the scope counts
      // under the owner its row holds, whatever its spec names now); per fleet for a pack with custom plan rules.
      const usage = usageOutside(rows, scope, base.owners!, seed % 2 === 1);
      const lean = computePlan({ ...base, record: read.rows, unchanged: read.unchanged, ...(narrowed ? { usage } : {}) });
      expect(lean, `seed ${seed}`).toEqual(whole);
      summed += read.unchanged.reduce((n, u) => n + u.vms, 0);
    }
    // Most members were summed rather than read.
    expect(summed).toBeGreaterThan(500);
  });

  it('reads every member for a pack with a custom rule that judges plans', () => {
    const custom: Rule = { name: 'count-noops', description: 'sees noops', configSchema: {}, checkChange: () => [] };
    const pack = makePack();
    const rules = new Map(pack.rules);
    rules.set('count-noops', { rule: custom, enforcement: 'advisory', config: {} });
    const web = makeFleet('web', { count: 2 });
    const options = { targets: [], excludes: [], allowDestroy: [], refresh: false };
    expect(customPlanRules({ ...pack, rules })).toEqual(['count-noops']);
    expect(planShapes({ ...pack, rules }, [web], ['web'], options)).toEqual([]);
    // Disabled, or request-level only: the plan still reads only what differs.
    rules.set('count-noops', { rule: custom, enforcement: 'disabled', config: {} });
    expect(planShapes({ ...pack, rules }, [web], ['web'], options)).toHaveLength(1);
    rules.set('count-noops', { rule: { ...custom, checkChange: undefined, checkRequest: () => [] }, enforcement: 'mandatory', config: {} });
    expect(planShapes({ ...pack, rules }, [web], ['web'], options)).toHaveLength(1);
  });

  it('reads member by member the fleets a --target or --replace address names, and fleets asking for a state no fleet may ask for', () => {
    const pack = makePack();
    const fleets = [makeFleet('web'), makeFleet('db'), makeFleet('api'), makeFleet('odd', { state: 'Starting' })];
    const shapes = planShapes(pack, fleets, ['api', 'db', 'odd', 'web'], { targets: ['web/1', 'db'], excludes: [], allowDestroy: [], refresh: false, replace: ['api/0'] });
    expect(shapes.map((s) => s.fleet)).toEqual(['db']);
  });
});
