import { describe, expect, it } from 'vitest';
import type { LoadedDataCenter, LoadedFleet } from '../spec/types.ts';
import { byName } from './scope.ts';
import { Placer, fits, fleetPlacement, type FleetPlacement } from './placement.ts';
import type { CapacityLeft } from './policy-port.ts';
import { dataCenter, makeFleet, makePack, makeStack } from './test-support.ts';
import type { PlacementExplanation } from './types.ts';
import { seededRandom } from '../model/seeded-random.ts';

/**
 * The placement before the Placer, kept here as the reference: every
 * eligible data center filtered by capacity and sorted again for each member.
 */
function referencePlace(fp: FleetPlacement, capacity: ReadonlyMap<string, CapacityLeft> | null, members: ReadonlyMap<string, number>): { dataCenter?: string; explanation: PlacementExplanation } {
  const { fleet } = fp;
  const excluded = [...fp.excluded];
  const open: LoadedDataCenter[] = [];
  for (const dc of fp.eligible) {
    if (capacity && !fits(capacity.get(dc.name), fleet.size)) excluded.push({ dataCenter: dc.name, why: 'no capacity left' });
    else open.push(dc);
  }
  const strategy = fleet.placement.strategy;
  const count = (n: string) => members.get(n) ?? 0;
  const ranked = open.map((d) => d.name);
  if (strategy === 'nearest') ranked.sort((a, b) => fp.distance.get(a)! - fp.distance.get(b)! || byName(a, b));
  else if (strategy === 'spread') ranked.sort((a, b) => count(a) - count(b) || byName(a, b));
  else ranked.sort((a, b) => count(b) - count(a) || byName(a, b));
  const explanation: PlacementExplanation = { strategy, candidates: ranked, excluded, summary: '' };
  const chosen = ranked[0];
  if (chosen === undefined) {
    explanation.summary = 'no data center can take it';
    return { explanation };
  }
  if (strategy === 'nearest') {
    const km = Math.round(fp.distance.get(chosen)!);
    explanation.distanceKm = km;
    const hw = fleet.hardware.length > 0 ? ` with ${fleet.hardware.join(', ')}` : '';
    explanation.summary = `${chosen}: nearest${hw}, ${km} km from ${fp.nearName}`;
  } else if (strategy === 'spread') {
    explanation.summary = `${chosen}: spread, fewest members (${count(chosen)} before this one)`;
  } else {
    explanation.summary = `${chosen}: pack, fullest with room (${count(chosen)} before this one)`;
  }
  return { dataCenter: chosen, explanation };
}

interface Case {
  fp: FleetPlacement;
  capacity: Map<string, CapacityLeft> | null;
  members: Map<string, number>;
  wanted: number;
  size: LoadedFleet['size'];
}

/**
 * A generated stack: 1-12 data centers, some sharing a location (distance
 * ties), some without the fleet's hardware trait or image, limited or
 * unlimited capacity (some already nearly full), members already there, and
 * a fleet of any strategy asking for up to 300 new members.
 */
function generate(seed: number): Case {
  const r = seededRandom(seed);
  const d = r.between(1, 12);
  const names = Array.from({ length: d }, (_, i) => `dc-${String.fromCharCode(97 + ((i * 7) % 26))}${i}`);
  const spots = [
    [25.76, -80.19],
    [37.54, -77.44],
    [32.78, -96.8],
    [47.61, -122.33],
  ];
  const dcs = names.map((name) => {
    const [lat, lon] = r.next() < 0.4 ? r.pick(spots) : [r.between(20, 50) + r.next(), r.between(-125, -70) + r.next()];
    return dataCenter(name, lat, lon, r.next() < 0.85 ? ['general'] : []);
  });
  const stack = makeStack(dcs);
  const base = makePack();
  const pack = { ...base, images: { 'ubuntu-22.04': Object.fromEntries(names.filter(() => r.next() < 0.9).map((n) => [n, `img-${n}`])) } };
  const strategy = r.pick(['nearest', 'spread', 'pack'] as const);
  const size = { cpu: r.between(1, 4), memoryGiB: r.pick([1, 2, 4, 8]), diskGiB: 20 };
  const allow = r.next() < 0.2 ? names.filter(() => r.next() < 0.6) : null;
  const near = r.next() < 0.3 ? r.pick(names) : null;
  const fleet = makeFleet('web', { count: 0, size, hardware: r.next() < 0.5 ? ['general'] : [], placement: { strategy, dataCenters: allow, near } });
  const fp = fleetPlacement(stack, pack, fleet);
  const limited = r.next() < 0.8;
  const capacity = limited
    ? new Map(
        names
          .filter(() => r.next() < 0.85)
          .map((n): [string, CapacityLeft] => [
            n,
            r.next() < 0.2
              ? { vms: Infinity, cpu: Infinity, memoryGiB: Infinity }
              : { vms: r.between(0, 60), cpu: r.next() < 0.3 ? r.between(0, 40) : Infinity, memoryGiB: r.next() < 0.3 ? r.between(0, 100) : Infinity },
          ]),
      )
    : null;
  const members = new Map<string, number>();
  for (const n of names) if (r.next() < 0.5) members.set(n, r.between(0, 20));
  return { fp, capacity, members, wanted: r.between(1, 300), size };
}

const take = (capacity: Map<string, CapacityLeft> | null, dc: string, size: LoadedFleet['size']) => {
  const c = capacity?.get(dc);
  if (!c) return;
  c.vms -= 1;
  c.cpu -= size.cpu;
  c.memoryGiB -= size.memoryGiB;
};

const cloneCapacity = (c: Map<string, CapacityLeft> | null) => (c ? new Map([...c].map(([k, v]) => [k, { ...v }])) : null);

/** Every member's placement as the planner asks for them: place, take its capacity, next. */
function runReference(c: Case) {
  const capacity = cloneCapacity(c.capacity);
  const members = new Map(c.members);
  const out: ReturnType<typeof referencePlace>[] = [];
  for (let i = 0; i < c.wanted; i++) {
    const got = referencePlace(c.fp, capacity, members);
    out.push(got);
    if (got.dataCenter === undefined) break;
    members.set(got.dataCenter, (members.get(got.dataCenter) ?? 0) + 1);
    take(capacity, got.dataCenter, c.size);
  }
  return out;
}

function runPlacer(c: Case) {
  const capacity = cloneCapacity(c.capacity);
  const placer = new Placer(c.fp, capacity, c.members);
  const out: ReturnType<Placer['next']>[] = [];
  for (let i = 0; i < c.wanted; i++) {
    const got = placer.next();
    out.push(got);
    if (got.dataCenter === undefined) break;
    take(capacity, got.dataCenter, c.size);
  }
  return out;
}

describe('Placer', () => {
  it('places every member where filtering and sorting every data center for each would, over 500 generated stacks', () => {
    let placed = 0;
    let filled = 0;
    for (let seed = 1; seed <= 500; seed++) {
      const c = generate(seed);
      const want = runReference(c);
      const got = runPlacer(c);
      // JSON: the same document text (the Placer shares frozen arrays between members; the reference builds new ones).
      if (JSON.stringify(got) !== JSON.stringify(want)) expect({ seed, got }).toEqual({ seed, got: want });
      placed += want.filter((w) => w.dataCenter !== undefined).length;
      if (want.some((w) => w.explanation.excluded.some((e) => e.why === 'no capacity left'))) filled++;
    }
    // The generator reaches the cases that matter: many members, and data centers filling up on the way.
    expect(placed).toBeGreaterThan(20_000);
    expect(filled).toBeGreaterThan(100);
  });

  it('does not change the members map it was given', () => {
    const c = generate(7);
    const before = new Map(c.members);
    runPlacer(c);
    expect(c.members).toEqual(before);
  });
});
