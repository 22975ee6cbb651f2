// The package installs and runs outside the repository: `npm pack`, then
// `npm install -g` of the tarball into a temporary prefix (dependencies from
// the npm cache, as `npm ci` left it), then the installed `fleet` run from an
// unrelated folder. npm pack builds the CLI's JavaScript first (package.json
// "prepare": bin/build.mjs), so the installed `fleet` runs dist/cli, not the
// TypeScript through tsx; `files` keeps tests out of the tarball.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../engine/cli/main.ts';
import { REPO, fleetYaml } from './helpers/stack.ts';

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

describe('npm pack + npm install -g', () => {
  let tmp: string;
  let fleet: string;
  let tarball: string;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEET_') && !k.startsWith('npm_')));

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'fleet-install-'));
    const pack = await run('npm', ['pack', '--pack-destination', tmp, '--json'], REPO, env);
    expect(pack.code, pack.stderr).toBe(0);
    tarball = join(tmp, (JSON.parse(pack.stdout) as { filename: string }[])[0].filename);
    const install = await run('npm', ['install', '-g', '--prefix', join(tmp, 'prefix'), '--prefer-offline', '--no-audit', '--no-fund', tarball], tmp, env);
    expect(install.code, install.stderr).toBe(0);
    fleet = join(tmp, 'prefix', 'bin', 'fleet');
  }, 600_000);
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('ships the sources, schemas and default pack, and no tests', async () => {
    const lib = join(tmp, 'prefix', 'lib', 'node_modules', 'dmzfleet');
    const entries = await readdir(lib, { recursive: true });
    expect(entries).toContain(join('bin', 'fleet.mjs'));
    expect(entries).toContain(join('dist', 'cli', 'main.js'));
    // npm install gave every file the time of the install, none the manifest's: the build is still fresh, by
    // content, and once its content is verified a stat of each source does (dist/cli/verified-stat.json, bin/fresh.mjs).
    type Check = (dist: URL, root: URL, env: NodeJS.ProcessEnv) => { entry: URL | undefined; hashed: number; recorded: boolean };
    const { checkBuild } = (await import(pathToFileURL(join(lib, 'bin', 'fresh.mjs')).href)) as { checkBuild: Check };
    const check = () => checkBuild(pathToFileURL(join(lib, 'dist', 'cli') + '/'), pathToFileURL(lib + '/'), {});
    const main = pathToFileURL(join(lib, 'dist', 'cli', 'main.js')).href;
    const first = check();
    expect(first.entry?.href).toBe(main);
    expect(first.hashed).toBeGreaterThan(200);
    expect(first.recorded).toBe(true);
    const second = check();
    expect(second.entry?.href).toBe(main);
    expect(second.hashed).toBe(0);
    expect(entries).toContain(join('specs', 'schema', 'apply-event.schema.json'));
    expect(entries).toContain(join('policies', 'default', 'policy.yaml'));
    expect(entries.filter((e) => !e.startsWith('node_modules') && (e.endsWith('.test.ts') || e.includes('testdata') || e.includes('.fleet')))).toEqual([]);
  });

  it('runs from any folder: --version, validate --stack PATH, plan, and the default stack under the working folder', async () => {
    const elsewhere = await mkdtemp(join(tmpdir(), 'fleet-elsewhere-'));
    try {
      const version = await run(fleet, ['--version'], elsewhere, env);
      expect(version.stdout).toBe(`${VERSION}\n`);
      const valid = await run(fleet, ['validate', '--stack', join(REPO, 'test/fixtures/example-stack')], elsewhere, env);
      expect(valid.code, valid.stderr).toBe(0);
      expect(valid.stdout).toContain('3 fleets, 2 data centers, policy pack default@1.0.0: valid');

      // A stack of its own in the working folder, using the installed package's default policy pack.
      const stack = join(elsewhere, 'stacks', 'local');
      await mkdir(join(stack, 'specs'), { recursive: true });
      const pack = join(tmp, 'prefix', 'lib', 'node_modules', 'dmzfleet', 'policies', 'default');
      await writeFile(
        join(stack, 'stack.yaml'),
        `apiVersion: fleet/v1\nkind: Stack\nmetadata: { name: mine }\nspec:\n  specs: ["specs/*.yaml"]\n  record: pglite://.fleet/record\n  policyPack: { path: ${pack} }\n  site: { name: charlotte, location: { lat: 35.2, lon: -80.8 } }\n  dataCenters:\n    - { name: miami, address: embedded, location: { lat: 25.7, lon: -80.1 }, hardware: [general], capacity: { vms: 10 } }\n`,
      );
      await writeFile(join(stack, 'specs', 'app.yaml'), fleetYaml('app', { count: 2 }));
      const plan = await run(fleet, ['plan', '--format', 'json', '--detailed-exitcode'], elsewhere, env);
      expect(plan.code, plan.stderr).toBe(2);
      expect(JSON.parse(plan.stdout)).toMatchObject({ plan: { stack: 'mine', summary: { create: 2 } }, diagnostics: [] });
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
    // Four Node processes (one with PGlite): generous for a shared CI machine.
  }, 300_000);
});
