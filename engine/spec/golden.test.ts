// Golden corpus: each test/fixtures/spec/NN-name/ is a tiny stack; expected.txt
// holds its diagnostics as `code file:line:col summary` lines (files relative
// to the case folder). UPDATE_GOLDEN=1 rewrites them; review the diff.
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
    // A case named -valid must load cleanly; every other case must report an error.
    if (name.endsWith('-valid')) expect(r.stack && r.pack && r.fleets.length).toBeTruthy();
    else expect(r.diagnostics.some((d) => d.severity === 'error')).toBe(true);
  });
});
