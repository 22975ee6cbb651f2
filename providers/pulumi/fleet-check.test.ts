// The Fleet resource's check (providers/pulumi/fleet.ts) restates by hand what
// a fleet file's schema and checks say (a compiled validator cannot be
// serialized into a provider). This holds the two to one verdict: over
// generated specs, the resource refuses exactly what `fleet validate` would
// refuse in a fleet file of the same stack.
import { describe, expect, it } from 'vitest';
import { QUOTE_LIMIT } from '../../engine/diags/index.ts';
import { resolve } from 'node:path';
import { loadStack } from '../../engine/spec/index.ts';
import { checkFleet, type StackContext } from '../../engine/spec/fleet.ts';
import { validateDoc } from '../../engine/spec/schema.ts';
import { parseYaml } from '../../engine/spec/yaml.ts';
import { FleetProvider, type FleetInputs, type FleetSpecInputs } from './fleet.ts';
import { toFleetStack } from './stack.ts';

// The tests' copy of the embedded default (two data centers, the default pack).
const STACK_DIR = resolve(import.meta.dirname, '..', '..', 'test', 'fixtures', 'example-stack');

/** Each key's values: valid ones and refused ones; `undefined` leaves the key out. */
const VALUES: Record<string, unknown[]> = {
  name: ['web', 'web-2', 'Web', '1web', 'a'.repeat(40), 'a'.repeat(41), '', 5],
  owner: ['team-a', '', 'team\u200ba', ' team-a', 'te\u202eam', 'cafe\u0301', 'caf\u00e9', 7, 'a'.repeat(64), 'a'.repeat(65), '\u{1d538}'.repeat(64), '\u{1d538}'.repeat(65)],
  labels: [
    undefined,
    { env: 'prod' },
    {},
    { env: 5 },
    { 'e\u200bnv': 'x' },
    { env: 'pr\u202eod' },
    [],
    null,
    { ['k'.repeat(63)]: 'v'.repeat(256) },
    { ['k'.repeat(64)]: 'v' },
    { env: 'v'.repeat(257) },
    { env: '\u{1d538}'.repeat(256) },
    { ['\u{1d538}'.repeat(64)]: 'v' },
    // An empty key, and the number of labels (at most 64).
    { '': 'x' },
    { env: 'prod', '': '' },
    { env: '' },
    Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`l${i}`, 'v'])),
    Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`l${i}`, 'v'])),
  ],
  count: [0, 3, 100_000, 100_001, -1, 1.5, '3'],
  minCount: [undefined, 0, 2, 3, 4, -1, 1.5, 100_001],
  image: ['ubuntu-22.04', '', 'no-such-image', 'constructor', '__proto__', 3],
  size: [
    { cpu: 2, memoryGiB: 4, diskGiB: 20 },
    { cpu: 1, memoryGiB: 0.5, diskGiB: 1 },
    { cpu: 0, memoryGiB: 4, diskGiB: 20 },
    { cpu: 257, memoryGiB: 4, diskGiB: 20 },
    { cpu: 1.5, memoryGiB: 4, diskGiB: 20 },
    { cpu: 2, memoryGiB: 0.4, diskGiB: 20 },
    { cpu: 2, memoryGiB: 4096.5, diskGiB: 20 },
    { cpu: 2, memoryGiB: 4, diskGiB: 0 },
    { cpu: 2, memoryGiB: 4, diskGiB: 2.5 },
    { cpu: 2, memoryGiB: 4, diskGiB: 20, gpu: 1 },
    { cpu: 2, memoryGiB: 4 },
    null,
  ],
  hardware: [undefined, ['general'], [], ['general', 'general'], [''], ['general', 3], 'general', ['gpu']],
  placement: [
    undefined,
    {},
    { dataCenters: ['miami'] },
    { dataCenters: [] },
    { dataCenters: ['miami', 'miami'] },
    { dataCenters: ['nowhere'] },
    { dataCenters: [''] },
    { dataCenters: 'miami' },
    { strategy: 'spread' },
    { strategy: 'random' },
    { near: 'miami' },
    { near: 'charlotte' },
    { near: 'nowhere' },
    { near: '' },
    { near: { lat: 10, lon: 20 } },
    { near: { lat: 91, lon: 0 } },
    { near: { lat: 0 } },
    { near: { lat: 0, lon: 0, alt: 1 } },
    { near: 5 },
    { zone: 'a' },
    null,
  ],
  state: [undefined, 'Running', 'PoweredOff', 'Bogus', ''],
  encryptedDisk: [undefined, true, false, 'yes'],
  protect: [undefined, true, 1],
};

const BASE: Record<string, unknown> = { name: 'web', owner: 'team-a', count: 3, image: 'ubuntu-22.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 } };

/** A small seeded generator (mulberry32): the same cases on every run. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every single change of the base, then `n` specs with two to four keys changed at random. */
function cases(n: number): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const put = (spec: Record<string, unknown>, k: string, v: unknown) => {
    if (v === undefined) delete spec[k];
    else spec[k] = v;
  };
  for (const [k, vs] of Object.entries(VALUES)) {
    for (const v of vs) {
      const spec = structuredClone(BASE);
      put(spec, k, v);
      out.push(spec);
    }
  }
  const rnd = random(20261204);
  const keys = Object.keys(VALUES);
  for (let i = 0; i < n; i++) {
    const spec = structuredClone(BASE);
    const changes = 2 + Math.floor(rnd() * 3);
    for (let c = 0; c < changes; c++) {
      const k = keys[Math.floor(rnd() * keys.length)];
      const vs = VALUES[k];
      put(spec, k, structuredClone(vs[Math.floor(rnd() * vs.length)]));
    }
    out.push(spec);
  }
  return out;
}

/** The fleet file the resource's spec stands for: its name, owner and labels are the file's metadata. */
function fleetFile(spec: Record<string, unknown>): string {
  const { name, owner, labels, ...rest } = spec;
  const metadata: Record<string, unknown> = {};
  if (name !== undefined) metadata.name = name;
  if (owner !== undefined) metadata.owner = owner;
  if (labels !== undefined) metadata.labels = labels;
  // JSON is YAML: the file's values are exactly these.
  return JSON.stringify({ apiVersion: 'fleet/v1', kind: 'Fleet', metadata, spec: rest });
}

describe('the Fleet resource refuses exactly what a fleet file would', async () => {
  const loaded = await loadStack(STACK_DIR);
  if (!loaded.stack || !loaded.pack) throw new Error(`the example stack did not load: ${JSON.stringify(loaded.diagnostics)}`);
  const { stack, pack } = loaded;
  const ctx: StackContext = {
    siteName: stack.site.name,
    dataCenters: new Map(stack.dataCenters.map((d) => [d.name, d.hardware])),
    cloudDrivers: new Map(),
  };
  const provider = new FleetProvider(toFleetStack(stack, pack, { urls: Object.fromEntries(stack.dataCenters.map((d) => [d.name, `http://127.0.0.1:1/${d.name}`])) }));

  const fileErrors = (spec: Record<string, unknown>): string[] => {
    const parsed = parseYaml(fleetFile(spec), 'fleet.yaml');
    const src = parsed.docs[0];
    const diags = [...parsed.diagnostics, ...validateDoc(src, 'Fleet')];
    // checkFleet reads a document that passed its schema (the loader runs it only then).
    if (!diags.some((d) => d.severity === 'error')) diags.push(...checkFleet(src, ctx, pack));
    return diags.filter((d) => d.severity === "error").map((d) => `${d.code}: ${d.detail}`);
  };
  const resourceFailures = async (spec: Record<string, unknown>): Promise<string[]> => {
    const inputs: FleetInputs = { spec: spec as unknown as FleetSpecInputs, specHash: 'h' };
    const r = await provider.check(inputs, inputs);
    return (r.failures ?? []).map((f) => `${f.property}: ${f.reason}`);
  };

  it('over every single change of a valid spec and 600 generated ones', async () => {
    const disagree: string[] = [];
    let refused = 0;
    const all = cases(600);
    for (const spec of all) {
      const file = fileErrors(spec);
      const resource = await resourceFailures(spec);
      if (file.length > 0) refused++;
      if (file.length > 0 !== resource.length > 0) {
        disagree.push(`${JSON.stringify(spec)}\n    fleet file: ${file.join('; ') || 'accepted'}\n    resource:   ${resource.join('; ') || 'accepted'}`);
      }
    }
    // The cases are worth something only if both verdicts occur often.
    expect(refused).toBeGreaterThan(all.length / 4);
    expect(all.length - refused).toBeGreaterThan(30);
    expect(disagree.join('\n')).toBe('');
  });
});

// Pulumi prints each check failure as it is. A name the program gives (it may read it from a file) was written raw in
// the failure's reason and property: a line break and a forged `error[...]` line in it printed that line as Pulumi's,
// and a 100 KB one was printed whole. Now clip()ped (QUOTE_LIMIT).
describe("the Fleet resource's check: a program's names in its failures, one line, clipped", async () => {
  const loaded = await loadStack(STACK_DIR);
  if (!loaded.stack || !loaded.pack) throw new Error(`the example stack did not load: ${JSON.stringify(loaded.diagnostics)}`);
  const provider = new FleetProvider(toFleetStack(loaded.stack, loaded.pack, { urls: Object.fromEntries(loaded.stack.dataCenters.map((d) => [d.name, `http://127.0.0.1:1/${d.name}`])) }));
  const valid = { name: 'web', owner: 'team-a', count: 1, image: 'ubuntu-22.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 } };
  const FORGED = 'm\nerror[apply.fake]: Forged\n  at web/9';
  const HUGE = 'y'.repeat(100_000);
  it.each(
    [
      { name: 'an unknown key', spec: (v: string) => ({ ...valid, [v]: 1 }) },
      { name: 'the name', spec: (v: string) => ({ ...valid, name: v }) },
      { name: 'the state', spec: (v: string) => ({ ...valid, state: v }) },
      { name: 'the image', spec: (v: string) => ({ ...valid, image: v }) },
      { name: 'a data center of its placement', spec: (v: string) => ({ ...valid, placement: { dataCenters: [v] } }) },
      { name: 'the place it is near', spec: (v: string) => ({ ...valid, placement: { near: v } }) },
      { name: 'a hardware trait', spec: (v: string) => ({ ...valid, hardware: [v] }) },
      { name: 'a label key too long', spec: (v: string) => ({ ...valid, labels: { [`${v}${'k'.repeat(64)}`]: 'x' } }) },
      { name: "a data center its tokens name", spec: () => valid, tokens: (v: string) => ({ [v]: 't' }) },
    ].flatMap((c) => [{ ...c, value: 'a line break and a forged diagnostic', v: FORGED }, { ...c, value: 'a 100 KB value', v: HUGE }]),
  )('$name: $value', async ({ spec, tokens, v }) => {
    const inputs: FleetInputs = { spec: spec(v) as unknown as FleetSpecInputs, specHash: 'h', ...(tokens ? { tokens: tokens(v) } : {}) };
    const failures = (await provider.check(inputs, inputs)).failures ?? [];
    expect(failures.length).toBeGreaterThan(0);
    for (const f of failures) {
      for (const text of [f.property, f.reason]) {
        expect(text).not.toContain('\n');
        expect(text).not.toContain('y'.repeat(QUOTE_LIMIT + 1));
      }
    }
  });
});
