import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { FORMATS_DOC_PATH, renderFormatsDoc } from './gen-formats.ts';

describe('docs/formats.md', () => {
  it('is up to date with specs/schema/ and the example files', async () => {
    const doc = await readFile(FORMATS_DOC_PATH, 'utf8');
    expect(doc === renderFormatsDoc(), 'docs/formats.md is stale: run `npm run gen:docs` and commit docs/formats.md').toBe(true);
  });

  it('documents every field of the fleet and stack formats, with the modeline hint', () => {
    const doc = renderFormatsDoc();
    for (const key of ['spec.placement.near', 'spec.size.memoryGiB', 'spec.dataCenters[].capacity.vms', 'spec.policyPack.config']) {
      expect(doc).toContain(`| \`${key}\` |`);
    }
    expect(doc).toContain('# yaml-language-server: $schema=../schema/fleet.schema.json');
  });
});
