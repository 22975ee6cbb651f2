// The example files are what people copy: each starts with a yaml-language-server
// modeline whose schema path resolves from the file, and each is valid on its own.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fg from 'fast-glob';
import { describe, expect, it } from 'vitest';
import { validateDoc } from './schema.ts';
import { parseYaml } from './yaml.ts';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const files = [...fg.sync('specs/examples/*.yaml', { cwd: repo }), 'stacks/local/stack.yaml'].sort();

describe('example files', () => {
  it('exist', () => {
    expect(files).toEqual(['specs/examples/batch.yaml', 'specs/examples/build-farm.yaml', 'specs/examples/web.yaml', 'stacks/local/stack.yaml']);
  });

  it.each(files)('%s has a modeline that resolves and is schema-valid', (file) => {
    const text = readFileSync(resolve(repo, file), 'utf8');
    const m = /^# yaml-language-server: \$schema=(\S+)\n/.exec(text);
    expect(m, 'first line must be the yaml-language-server modeline').not.toBeNull();
    const schema = resolve(dirname(resolve(repo, file)), m![1]);
    expect(existsSync(schema), `${m![1]} does not resolve from ${file}`).toBe(true);
    const kind = file.endsWith('stack.yaml') ? 'Stack' : 'Fleet';
    expect(schema.endsWith(`${kind.toLowerCase()}.schema.json`)).toBe(true);
    const parsed = parseYaml(text, file);
    expect(parsed.diagnostics).toEqual([]);
    for (const doc of parsed.docs) expect(validateDoc(doc, kind)).toEqual([]);
  });
});
