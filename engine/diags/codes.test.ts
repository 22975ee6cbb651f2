// The code registry stays honest: every code documented, used, and listed in
// docs/diagnostics.md, which is generated from the registry.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import fg from 'fast-glob';
import { describe, expect, it } from 'vitest';
import { CODES } from './codes/index.ts';
import { DOC_PATH, renderDiagnosticsDoc } from './gen-docs.ts';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const entries = Object.entries(CODES) as [string, { summary: string; doc: string; severity: string }][];

/** Source files that may emit codes: engine/ and providers/, minus the registry and tests. */
async function sources(): Promise<string> {
  const files = await fg(['engine/**/*.ts', 'providers/**/*.ts'], {
    cwd: repo,
    ignore: ['engine/diags/codes/**', '**/*.test.ts', '**/node_modules/**'],
  });
  const texts = await Promise.all(files.map((f) => readFile(`${repo}${f}`, 'utf8')));
  return texts.join('\n');
}

describe('diagnostic code registry', () => {
  it('has codes', () => {
    expect(entries.length).toBeGreaterThan(0);
  });

  it.each(entries)('%s is well formed', (code, e) => {
    expect(code, 'codes are <area>.<kebab-name>').toMatch(/^[a-z]+\.[a-z0-9]+(-[a-z0-9]+)*$/);
    expect(e.summary.trim(), 'summary is required').not.toBe('');
    expect(e.summary, 'summary: sentence case, no trailing period').toMatch(/^[A-Za-z].*[^.]$/);
    expect(e.doc.trim().length, 'doc must say what it means and what to do').toBeGreaterThan(20);
    expect(['error', 'warning']).toContain(e.severity);
  });

  it('summaries are distinct within an area', () => {
    const seen = new Map<string, string>();
    const clashes: string[] = [];
    for (const [code, e] of entries) {
      const key = `${code.split('.')[0]}:${e.summary}`;
      if (seen.has(key)) clashes.push(`${seen.get(key)} and ${code}: "${e.summary}"`);
      seen.set(key, code);
    }
    expect(clashes).toEqual([]);
  });

  it('every code is used in engine/ or providers/ source', async () => {
    const text = await sources();
    const unused = entries
      .map(([code]) => code)
      .filter((code) => !["'", '"', '`'].some((q) => text.includes(`${q}${code}${q}`)));
    expect(unused.join(', '), 'these codes are registered but no source file (outside engine/diags/codes/ and tests) names them: use or remove them').toBe('');
  });

  it('every code appears in docs/diagnostics.md', async () => {
    const doc = await readFile(DOC_PATH, 'utf8');
    const missing = entries.map(([code]) => code).filter((code) => !doc.includes(`### ${code}\n`));
    expect(missing.join(', '), 'docs/diagnostics.md lacks these codes: run `npm run gen:docs` and commit docs/diagnostics.md').toBe('');
  });

  it('docs/diagnostics.md is up to date with the registry', async () => {
    const doc = await readFile(DOC_PATH, 'utf8');
    expect(doc === renderDiagnosticsDoc(), 'docs/diagnostics.md is stale: run `npm run gen:docs` and commit docs/diagnostics.md').toBe(true);
  });
});
