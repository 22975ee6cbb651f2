// Fails when protocol/types.ts no longer matches what protocol/schemas/
// generates, so a wire schema change cannot land without its types.
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { TYPES_PATH, generate } from './gen-types.ts';

describe('protocol types', () => {
  it('are up to date with the schemas', async () => {
    expect((await readFile(TYPES_PATH, 'utf8')) === (await generate()), 'protocol/types.ts is stale: run `npm run gen:types` and commit it').toBe(true);
  });
});
