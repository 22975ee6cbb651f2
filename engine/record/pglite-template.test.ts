// A new PGlite record made from the template cluster (bin/pglite-template.mjs)
// is a working, private record; a template of another PGlite version, or a
// folder that is not empty, is left alone.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRecord } from './open.ts';
import { fillFromTemplate, templateCluster } from './pglite-template.ts';

const REPO = resolve(import.meta.dirname, '..', '..');
const root = mkdtempSync(join(tmpdir(), 'fleet-pglite-template-'));
const template = join(root, 'template');

beforeAll(() => {
  const made = spawnSync(process.execPath, [join(REPO, 'bin', 'pglite-template.mjs'), '--out', template], { encoding: 'utf8' });
  expect(made.status, made.stderr).toBe(0);
}, 180_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Every entry under `dir` that group or others may use. */
function open(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const p = join(e.parentPath, e.name);
    if (statSync(p).mode & 0o077) out.push(p);
  }
  return out;
}

describe('PGlite template', () => {
  it('a new record is a copy of the template: migrated, usable, private, and the template unchanged', async () => {
    const before = readFileSync(join(template, 'data', 'global', 'pg_control'));
    const dir = join(root, 'rec-a');
    mkdirSync(dir);
    expect(await fillFromTemplate(dir, template)).toBe(true);
    expect(readdirSync(root).filter((n) => n.startsWith('rec-a.new-'))).toEqual([]);
    const record = await openRecord(`pglite://${dir}`);
    try {
      expect(await record.listFleets('s')).toEqual([]);
    } finally {
      await record.close();
    }
    expect(open(dir)).toEqual([]);
    expect(readFileSync(join(template, 'data', 'global', 'pg_control'))).toEqual(before);
  }, 120_000);

  it('is not used when another PGlite version made it, nor into a folder that is not empty', async () => {
    expect(templateCluster(template)).toBe(join(template, 'data'));
    const other = join(root, 'other');
    mkdirSync(other);
    writeFileSync(join(other, 'version.json'), '{"pglite":"0.0.1"}\n');
    expect(templateCluster(other)).toBeUndefined();
    expect(templateCluster(join(root, 'nowhere'))).toBeUndefined();
    const full = join(root, 'full');
    mkdirSync(full);
    writeFileSync(join(full, 'notes.txt'), 'mine');
    expect(await fillFromTemplate(full, template)).toBe(false);
    expect(readdirSync(full)).toEqual(['notes.txt']);
  });
});
