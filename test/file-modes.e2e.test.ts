// Files the CLI and the services keep are private (docs/security.md, "Files":
// files 0600, folders 0700): the record (PGlite's data directory, whose
// template files PGlite writes world-readable), the authority's secret, the
// simulated data centers' state, the DMZ clients' idempotency logs and the
// lock files. Whole program: an apply on the embedded default, then
// every entry under the stack's .fleet folder is checked.
import { chmod, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { REPO, fleetYaml, tempStack, type TempStack } from './helpers/stack.ts';

/** Every entry under `dir` whose mode is not 0700 (folders) or 0600 (files), as `mode path`. */
async function notPrivate(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const mode = (await stat(p)).mode & 0o777;
      if (mode !== (e.isDirectory() ? 0o700 : 0o600)) out.push(`${mode.toString(8)} ${p.slice(dir.length + 1)}`);
      if (e.isDirectory()) await walk(p);
    }
  };
  const top = (await stat(dir)).mode & 0o777;
  if (top !== 0o700) out.push(`${top.toString(8)} .`);
  await walk(dir);
  return out;
}

describe('what the CLI and the embedded services keep on disk is private', () => {
  let st: TempStack;
  beforeAll(async () => {
    st = await tempStack();
    await st.spec('web', fleetYaml('web', { count: 2 }));
  });
  afterAll(() => st?.remove());

  it('every folder under .fleet is 0700 and every file 0600 after an apply', async () => {
    const r = await runCli(['apply', '--yes', '--stack', st.dir], { cwd: REPO });
    expect(r.code, r.stderr).toBe(0);
    const fleetDir = join(st.dir, '.fleet');
    const names = await readdir(fleetDir);
    expect(names).toEqual(expect.arrayContaining(['record', 'authority.secret', 'sim']));
    expect(await notPrivate(fleetDir)).toEqual([]);
  });

  // Found by QA: what was there before kept its mode (the PGlite record alone was made private when opened): a stack
  // whose .fleet was made by hand, restored from a backup or written by an older version kept its folders 0755 and
  // its data centers' idempotency logs and state files 0644 through every apply.
  it('makes what was already there private: folders made 0755, files left 0644', async () => {
    const loose = await tempStack();
    try {
      await loose.spec('web', fleetYaml('web', { count: 1 }));
      const fleetDir = join(loose.dir, '.fleet');
      for (const dc of ['miami', 'richmond']) {
        await mkdir(join(fleetDir, 'sim', dc), { recursive: true, mode: 0o755 });
        await writeFile(join(fleetDir, 'sim', dc, 'requests.jsonl'), '', { mode: 0o644 });
      }
      await writeFile(join(fleetDir, 'authority.secret'), '', { mode: 0o644 });
      for (const d of [fleetDir, join(fleetDir, 'sim'), join(fleetDir, 'sim', 'miami'), join(fleetDir, 'sim', 'richmond')]) await chmod(d, 0o755);
      const r = await runCli(['apply', '--yes', '--stack', loose.dir], { cwd: REPO });
      expect(r.code, r.stderr).toBe(0);
      expect(await notPrivate(fleetDir)).toEqual([]);
    } finally {
      await loose.remove();
    }
  });
});
