import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { evaluateRules } from './evaluate.ts';
import { loadPack } from './load.ts';
import { change, ctx, plan } from './testdata/fixtures.ts';

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
