import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../model/seeded-random.ts';
import type { VmRow } from '../record/types.ts';
import type { LoadedFleet } from '../spec/types.ts';
import { canonicalJson, planContentDigest, sealPlan } from './integrity.ts';
import { CHUNK, writeCanonicalJson, writeJson } from './json-text.ts';
import { computePlan } from './planner.ts';
import { writePlanJson, renderJson } from './render/index.ts';
import { dataCenter, makeFleet, makePack, makeStack, vmRow } from './test-support.ts';
import type { PlanDocument } from './types.ts';

/** The canonical JSON as integrity.ts wrote it before json-text.ts: the reference the seal must keep matching. */
function referenceCanonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : referenceCanonical(v))).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${referenceCanonical(obj[k])}`).join(',')}}`;
}

const pieces = (write: (sink: (s: string) => void) => void): string[] => {
  const out: string[] = [];
  write((s) => out.push(s));
  return out;
};

/**
 * A plan over generated fleets and a generated record: creates by each
 * strategy, some data centers short of capacity, members in other states,
 * images, sizes, fleets gone from the specs, rollouts.
 */
function generatedPlan(seed: number, members = 40): PlanDocument {
  const rand = seededRandom(seed);
  const r = rand.next;
  const { pick } = rand;
  const stack = makeStack([
    dataCenter('miami', 25.7617, -80.1918, ['general'], { vms: 5 + Math.floor(r() * members) }),
    dataCenter('richmond', 37.5407, -77.436, ['general'], {}),
    dataCenter('dallas', 32.7767, -96.797, ['general', 'gpu'], { cpu: 40 + Math.floor(r() * 200) }),
    dataCenter('seattle', 47.6062, -122.3321, ['general'], {}),
  ]);
  const fleets: LoadedFleet[] = [];
  const record: VmRow[] = [];
  for (let f = 0; f < 6; f++) {
    const fleet = makeFleet(`f${f}-ünï`, {
      count: Math.floor(r() * members),
      image: pick(['ubuntu-22.04', 'ubuntu-24.04']),
      size: pick([{ cpu: 2, memoryGiB: 4, diskGiB: 20 }, { cpu: 4, memoryGiB: 8, diskGiB: 40 }]),
      state: pick(['Running', 'PoweredOff']),
      placement: { strategy: pick(['nearest', 'spread', 'pack'] as const), near: pick([null, 'dallas', { lat: 40, lon: -100 }]) },
      rollout: r() < 0.5 ? { maxUnavailable: 1 + Math.floor(r() * 3) } : {},
    });
    const old = makeFleet(fleet.name, { count: fleet.count, image: pick(['ubuntu-22.04', 'ubuntu-24.04']) });
    if (f < 5) fleets.push(fleet);
    const live = Math.floor(r() * members);
    for (let i = 0; i < live; i++) {
      if (r() < 0.2) continue;
      const base = r() < 0.7 ? fleet : old;
      record.push(vmRow(base, i, { dataCenter: pick(['miami', 'richmond', 'dallas', 'seattle']), state: pick(['Running', 'Running', 'PoweredOff', 'BootFailed']) }));
    }
  }
  return computePlan({
    stack,
    pack: makePack(),
    fleets,
    record,
    fleetVersions: Object.fromEntries(fleets.map((f, i) => [f.name, i])),
    options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
    id: `p-${seed}`,
    now: new Date(0),
  });
}

const goldens = readdirSync(new URL('../../test/fixtures/plan/', import.meta.url), { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name);
const golden = (name: string): PlanDocument => JSON.parse(readFileSync(new URL(`../../test/fixtures/plan/${name}/expected.json`, import.meta.url), 'utf8')) as PlanDocument;

describe('writeJson: JSON.stringify in pieces', () => {
  it.each(Array.from({ length: 12 }, (_, i) => i + 1))('generated plan %i, sealed', (seed) => {
    const plan = generatedPlan(seed);
    plan.seal = sealPlan(plan, { id: 'k', secret: randomBytes(32) }, 'stk');
    expect(pieces((s) => writeJson(plan, s)).join('')).toBe(JSON.stringify(plan));
    expect(pieces((s) => writePlanJson(plan, s, { pretty: false })).join('')).toBe(`${JSON.stringify(plan)}\n`);
    expect(pieces((s) => writePlanJson(plan, s)).join('')).toBe(renderJson(plan));
  });

  it.each(goldens)('golden %s', (name) => {
    const plan = golden(name);
    expect(pieces((s) => writeJson(plan, s)).join('')).toBe(JSON.stringify(plan));
  });

  it('a plan of more than one piece: pieces end between tokens and their UTF-8 is the whole text\'s', () => {
    const plan = generatedPlan(7, 3000);
    const text = JSON.stringify(plan);
    expect(text.length).toBeGreaterThan(2 * CHUNK);
    const got = pieces((s) => writeJson(plan, s));
    expect(got.length).toBeGreaterThan(2);
    expect(got.join('')).toBe(text);
    expect(Buffer.concat(got.map((p) => Buffer.from(p))).equals(Buffer.from(text))).toBe(true);
  });

  it.each<[string, unknown]>([
    ['primitives', [1, -0, NaN, Infinity, 'a"\\\n\u2028', '\u007f\u0000\u001f é', 'plain', true, null, 1e21]],
    ['holes and omitted elements', [undefined, () => 1, Symbol('s'), , 2]], // eslint-disable-line no-sparse-arrays
    ['omitted members', { a: undefined, b: () => 1, c: Symbol('s'), d: 1 }],
    ['integer-like keys first, as Object.keys orders them', { b: 1, 2: 'x', a: { 10: 1, 1: 2 } }],
    ['toJSON at any depth, with its key', { when: new Date(0), nested: { x: { toJSON: (k: string) => `key ${k}` } }, list: [{ toJSON: (k: string) => k }] }],
    ['a Map, a boxed number, a class instance', { m: new Map([[1, 2]]), n: new Number(3), c: new (class { x = 1 })() }],
    ['surrogate pairs and lone surrogates', { '😀': '😀', lone: '\ud800x', [`k\udc00`]: 1 }],
    ['frozen objects shared and nested', (() => { const f = Object.freeze({ a: [1, 2], b: 'x' }); const g = Object.freeze([f, f]); return { a: [{ f, g }, { f, g }], f }; })()],
    ['a top-level toJSON', { toJSON: () => ({ z: 1, a: 2 }) }],
    ['null prototype', Object.assign(Object.create(null) as object, { b: 1, a: 2 })],
  ])('%s', (_, value) => {
    expect(pieces((s) => writeJson(value, s)).join('')).toBe(JSON.stringify(value));
  });

  it('writes nothing for what JSON.stringify turns into undefined', () => {
    expect(pieces((s) => writeJson(undefined, s))).toEqual([]);
    expect(pieces((s) => writeJson(() => 1, s))).toEqual([]);
  });
});

/**
 * Lists of objects with the same keys whose values come from a small pool
 * (shared objects, frozen or not, objects of the same keys nested, values
 * JSON leaves out): what a plan's changes look like to the writer, which
 * reuses the text of values and runs of members equal to the object before.
 */
function sameKeyObjects(seed: number): unknown {
  const r = seededRandom(seed).next;
  const keys = ['b', 'a', 'd', 'c', 'e', 'f'];
  const shared = { x: 1 };
  const frozen = Object.freeze({ y: [1, 2] });
  const pool: unknown[] = ['s', 'é', 1, 0, true, null, undefined, shared, frozen, [shared], () => 1, { toJSON: () => 'j' }];
  const make = (depth: number): Record<string, unknown> => {
    const o: Record<string, unknown> = {};
    for (const k of keys) o[k] = depth > 0 && r() < 0.2 ? make(depth - 1) : pool[Math.floor(r() * pool.length)];
    return o;
  };
  const list: Record<string, unknown>[] = [];
  for (let i = 0; i < 300; i++) {
    // Mostly the object before with a slot or two changed, as consecutive creates are.
    const o = i > 0 && r() < 0.8 ? { ...list[i - 1] } : make(2);
    for (let n = Math.floor(r() * 3); n > 0; n--) o[keys[Math.floor(r() * keys.length)]] = r() < 0.3 ? make(1) : pool[Math.floor(r() * pool.length)];
    list.push(o);
  }
  return { list, nested: list.slice(0, 20).map((o) => ({ ...o, a: { ...o } })) };
}

describe('values and runs written once', () => {
  it.each(Array.from({ length: 20 }, (_, i) => i + 1))('seed %i: JSON and canonical JSON as written whole', (seed) => {
    const value = sameKeyObjects(seed);
    expect(pieces((s) => writeJson(value, s)).join('')).toBe(JSON.stringify(value));
    expect(canonicalJson(value)).toBe(referenceCanonical(value));
  });
});

describe('canonical JSON in pieces', () => {
  it.each(Array.from({ length: 12 }, (_, i) => i + 1))('generated plan %i: the same text and digest as before', (seed) => {
    const plan = generatedPlan(seed);
    const want = referenceCanonical(plan);
    expect(canonicalJson(plan)).toBe(want);
    expect(pieces((s) => writeCanonicalJson(plan, s)).join('')).toBe(want);
    expect(planContentDigest(plan)).toBe(createHash('sha256').update(want).digest('hex'));
  });

  it.each(goldens)('golden %s, and the same plan parsed back from its file', (name) => {
    const plan = golden(name);
    const want = createHash('sha256').update(referenceCanonical(plan)).digest('hex');
    expect(planContentDigest(plan)).toBe(want);
    expect(planContentDigest(JSON.parse(JSON.stringify(plan)) as PlanDocument)).toBe(want);
  });

  it('a digest over many pieces, non-ASCII text included', () => {
    const plan = generatedPlan(3, 3000);
    const want = referenceCanonical(plan);
    expect(want.length).toBeGreaterThan(2 * CHUNK);
    expect(planContentDigest(plan)).toBe(createHash('sha256').update(want).digest('hex'));
    // The same content as `fleet apply` reads it from the file (nothing shared, nothing frozen).
    expect(planContentDigest(JSON.parse(renderJson(plan)) as PlanDocument)).toBe(planContentDigest(plan));
  });

  it.each<[string, unknown]>([
    ['primitives', [1, -0, NaN, 'a"\\\n', true, null, undefined]],
    ['a hole is written as nothing', [1, , 2]], // eslint-disable-line no-sparse-arrays
    ['a function member is null', { b: () => 1, a: undefined, c: 1 }],
    ['keys by code unit, integer-like ones too', { b: 1, 10: 'x', 9: 'y', a: { Z: 1, a: 2, é: 3, '😀': 4 } }],
    ['frozen objects shared and nested', (() => { const f = Object.freeze({ b: [1, 2], a: 'x' }); const g = Object.freeze([f, f]); return { z: [{ f, g }, { g, f }], f }; })()],
    ['a Date is an object with no keys', { when: new Date(0) }],
  ])('%s', (_, value) => {
    expect(canonicalJson(value)).toBe(referenceCanonical(value));
  });
});
