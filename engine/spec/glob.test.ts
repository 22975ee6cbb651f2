import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fg from 'fast-glob';
import { afterAll, describe, expect, it } from 'vitest';
import { matchGlob, simpleGlob } from './glob.ts';

const root = mkdtempSync(join(tmpdir(), 'fleet-glob-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** What fast-glob answers (the loader's options), normalised as the loader does (resolve, sort). */
async function fastGlob(glob: string, base: string): Promise<string[]> {
  const pattern = glob.startsWith('/') ? glob : `${fg.convertPathToPattern(base)}/${glob}`;
  return (await fg(pattern, { onlyFiles: true, absolute: true, dot: false })).map((f) => resolve(f)).sort();
}
const ours = async (glob: string, base: string) => (await matchGlob(glob, base)).map((f) => resolve(f)).sort();

describe('specs globs', () => {
  it('only `*` in the last name is matched without fast-glob', () => {
    expect(simpleGlob('../specs/*.yaml')).toBeDefined();
    expect(simpleGlob('*.yaml')).toBeDefined();
    for (const g of ['specs/**/*.yaml', 'sp*cs/a.yaml', 'specs/a.yaml', 'specs/{a,b}.yaml', 'specs/[ab].yaml', 'specs/?.yaml', 'specs/', 'specs/!(x).yaml', 'sp\\ecs/*.yaml']) {
      expect(simpleGlob(g)).toBeUndefined();
    }
  });

  it('matches what fast-glob matches, for generated folders and patterns', async () => {
    let seed = 11;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    const names = ['a.yaml', 'b.yml', '.hidden.yaml', 'a.yaml.bak', 'ab.yaml', 'x.YAML', 'yaml', '.yaml', 'a b.yaml', 'a$.yaml', 'a^b.yaml', 'c.d.yaml'];
    const patterns = ['*.yaml', '*', 'a*', '*.y*ml', '.*', '*.*.yaml', 'a*.yaml', '*b*', '*$.yaml', '*^*'];
    for (let round = 0; round < 25; round++) {
      const dir = join(root, `r${round}`);
      mkdirSync(join(dir, 'specs', 'sub.yaml'), { recursive: true });
      for (const n of names) if (rnd(2)) writeFileSync(join(dir, 'specs', n), '');
      if (rnd(2)) symlinkSync(join(dir, 'specs', 'missing'), join(dir, 'specs', 'dangling.yaml'));
      if (rnd(2)) {
        writeFileSync(join(dir, 'target'), '');
        symlinkSync(join(dir, 'target'), join(dir, 'specs', 'linked.yaml'));
      }
      const stackDir = join(dir, 'stack');
      mkdirSync(stackDir);
      for (const p of patterns) {
        for (const glob of [`../specs/${p}`, `${join(dir, 'specs')}/${p}`, `../nowhere/${p}`, `../specs/a.yaml/${p}`]) {
          expect(await ours(glob, stackDir), glob).toEqual(await fastGlob(glob, stackDir));
        }
      }
    }
  });
});
