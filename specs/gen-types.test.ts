// Fails when specs/types/ no longer matches what specs/schema/ generates, so a
// schema change cannot land without its regenerated types.
import { readFile, readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { generate } from './gen-types.ts';

const typesDir = fileURLToPath(new URL('./types/', import.meta.url));

describe('generated types', () => {
  it('are up to date with the schemas', async () => {
    const generated = await generate();
    expect(generated.size).toBeGreaterThan(0);
    const stale: string[] = [];
    for (const [name, text] of generated) {
      const current = await readFile(`${typesDir}${name}`, 'utf8').catch(() => '');
      if (current !== text) stale.push(`specs/types/${name}`);
    }
    expect(stale, 'stale generated types: run `npm run gen:types` and commit specs/types/').toEqual([]);
  });

  it('have no file without a schema', async () => {
    const generated = await generate();
    const orphans = (await readdir(typesDir)).filter((f) => f.endsWith('.ts') && !generated.has(f));
    expect(orphans, 'specs/types/ holds files no schema generates: delete them').toEqual([]);
  });
});
