import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { evaluateRules } from './evaluate.ts';
import { loadPack } from './load.ts';
import { change, ctx, packWith, plan } from './testdata/fixtures.ts';
import type { Finding, Rule } from './types.ts';

const CUSTOM_PACK_DIR = fileURLToPath(new URL('./testdata/custom-pack', import.meta.url));

describe('evaluateRules with a pack of custom rule modules', () => {
  it('runs the custom rules with their config, and reports the one that throws', async () => {
    const { pack, diagnostics } = await loadPack(CUSTOM_PACK_DIR);
    expect(diagnostics).toEqual([]);
    const big = change('web/0', 'create', { size: { cpu: 16, memoryGiB: 64, diskGiB: 100 } });
    const small = change('web/1', 'create');
    const vs = evaluateRules(plan([big, small]), ctx({ images: pack!.images }), pack!);
    expect(vs.map((v) => [v.policy, v.level, v.address])).toEqual([
      ['max-cpu', 'mandatory', 'web/0'],
      ['explodes', 'mandatory', 's'],
    ]);
    expect(vs[0].message).toBe('16 vCPU is more than 8.');
    expect(vs[1].message).toBe('Rule explodes failed: boom');
  });

  it('lets the stack raise a custom rule limit', async () => {
    const { pack } = await loadPack(CUSTOM_PACK_DIR, { 'max-cpu': { maxCpu: 32 }, explodes: { enforcement: 'disabled' } });
    const big = change('web/0', 'create', { size: { cpu: 16, memoryGiB: 64, diskGiB: 100 } });
    expect(evaluateRules(plan([big]), ctx({ images: pack!.images }), pack!)).toEqual([]);
  });
});

/**
 * A custom rule is someone else's code: what its checks return is checked
 * too. Findings without an address or a hint, or not objects at all, came
 * out as `advisory sloppy at undefined: undefined` / `hint: undefined`, and
 * `fleet plan --out` wrote a plan that `fleet apply` then refused as "not
 * written by fleet plan --out, or edited since".
 */
describe('evaluateRules: what a check returns', () => {
  const returning = (value: unknown): Rule => ({ name: 'sloppy', description: 'd', configSchema: { type: 'object' }, checkChange: () => value as Finding[] });
  const cases: { name: string; returns: unknown; want: [policy: string, level: string, address: string, message: string | RegExp][] }[] = [
    { name: 'well-formed findings', returns: [{ address: 'web/0', message: 'm', hint: 'h' }], want: [['sloppy', 'advisory', 'web/0', 'm']] },
    { name: 'nothing (undefined)', returns: undefined, want: [] },
    { name: 'a finding without an address or hint', returns: [{ message: 'no address here' }], want: [['sloppy', 'mandatory', 'web/0', /^Rule sloppy failed: finding 0 is not \{ address, message, hint \} strings: \{"message":"no address here"\}/]] },
    { name: 'a string for a finding', returns: ['just a string'], want: [['sloppy', 'mandatory', 'web/0', /^Rule sloppy failed: finding 0 is not \{ address, message, hint \} strings: "just a string"/]] },
    { name: 'fields of the wrong type', returns: [{ address: 42, message: null, hint: 'h' }], want: [['sloppy', 'mandatory', 'web/0', /finding 0 is not/]] },
    { name: 'a promise (an async check)', returns: Promise.resolve([]), want: [['sloppy', 'mandatory', 'web/0', /returned a Promise: checks are synchronous/]] },
    { name: 'an object, not an array', returns: { address: 'web/0', message: 'm', hint: 'h' }, want: [['sloppy', 'mandatory', 'web/0', /did not return an array of findings/]] },
  ];
  it.each(cases)('$name', ({ returns, want }) => {
    const vs = evaluateRules(plan([change('web/0', 'create')]), ctx(), packWith([[returning(returns), 'advisory']]));
    expect(vs.map((v) => [v.policy, v.level, v.address, v.message])).toEqual(want.map(([p, l, a, m]) => [p, l, a, typeof m === 'string' ? m : expect.stringMatching(m)]));
    for (const v of vs) expect(Object.values(v).every((x) => typeof x === 'string' && x !== '')).toBe(true);
  });
});
