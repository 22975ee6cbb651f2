// Golden corpus: each test/fixtures/spec/NN-name/ is a tiny stack; expected.txt
// holds its diagnostics as `code file:line:col summary` lines (files relative
// to the case folder). UPDATE_GOLDEN=1 rewrites them; review the diff.
// Names ending in -valid must load cleanly, -warning with warnings only.
import { existsSync, readdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { location } from '../diags/index.ts';
import { loadStack } from './loader.ts';

const root = fileURLToPath(new URL('../../test/fixtures/spec/', import.meta.url));
const cases = readdirSync(root).filter((d) => /^\d\d-/.test(d)).sort();
const update = Boolean(process.env.UPDATE_GOLDEN);

describe('spec golden corpus', () => {
  it('has at least 25 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(25);
  });

  it.each(cases)('%s', async (name) => {
    const dir = join(root, name);
    const r = await loadStack(dir, { cwd: dir, env: {} });
    const got = r.diagnostics.map((d) => `${d.code} ${location(d)} ${d.summary}`).join('\n') + (r.diagnostics.length ? '\n' : '');
    const file = join(dir, 'expected.txt');
    if (update || !existsSync(file)) {
      await writeFile(file, got);
      if (!update) throw new Error(`${name}: wrote missing expected.txt; review it and rerun`);
      return;
    }
    expect(got, `${name}: diagnostics differ from expected.txt (rerun with UPDATE_GOLDEN=1 to rewrite, then review the diff)`).toBe(
      await readFile(file, 'utf8'),
    );
    // A case named -valid loads cleanly, one named -warning loads with warnings only; every other case reports an error.
    const errors = r.diagnostics.some((d) => d.severity === 'error');
    if (name.endsWith('-valid') || name.endsWith('-warning')) {
      expect(errors).toBe(false);
      expect(r.stack && r.pack && r.fleets.length).toBeTruthy();
      expect(r.diagnostics.length > 0).toBe(name.endsWith('-warning'));
    } else expect(errors).toBe(true);
  });
});
