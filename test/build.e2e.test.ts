// The built CLI (bin/build.mjs -> dist/cli, what `fleet` runs after `npm ci`):
// it is built from the sources, runs the same commands as the sources do
// (a TypeScript rule module included), and bin/fresh.mjs stops using a build
// once any of its sources changes.
// (The installed package's build, made by npm pack's prepare, is run by test/install.e2e.test.ts.)
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, utimes, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error a plain JavaScript module of the bin folder, no types
import { freshBuild } from '../bin/fresh.mjs';
import { REPO } from './helpers/stack.ts';

/** Runs node ARGS; `killAfterMs`: a deadline after which the child is killed (its code is then 1). */
function node(args: string[], cwd = REPO, env: NodeJS.ProcessEnv = {}, killAfterMs?: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd, env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...(killAfterMs ? { timeout: killAfterMs } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

type Fresh = (dist: URL, root: URL, env?: NodeJS.ProcessEnv) => URL | undefined;

describe('the built CLI', () => {
  let out: string;
  /** Runs `fleet ARGS` from the build under `out` (not through bin/fleet.mjs, which would pick dist/cli). */
  const fleet = (...args: string[]) =>
    node(['--input-type=module', '-e', `const { main } = await import(${JSON.stringify(pathToFileURL(join(out, 'main.js')).href)}); process.exitCode = await main(['node', 'fleet', ...${JSON.stringify(args)}]);`]);

  beforeAll(async () => {
    // A folder two levels below the repository, as dist/cli is: the sources' '../../x' paths resolve the same.
    out = join(REPO, 'dist', `test-${process.pid}`);
    const built = await node(['bin/build.mjs', '--out', out]);
    expect(built.code, built.stderr).toBe(0);
  }, 120_000);
  afterAll(async () => {
    if (out) await rm(out, { recursive: true, force: true });
  });

  it('lists every source it read, with size and modification time', async () => {
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { entry: string; inputs: Record<string, { size: number; mtimeMs: number }> };
    expect(manifest.entry).toBe('main.js');
    expect(Object.keys(manifest.inputs)).toEqual(expect.arrayContaining(['engine/cli/main.ts', 'engine/spec/loader.ts', 'engine/policy/load.ts']));
    expect(Object.keys(manifest.inputs).filter((f) => f.includes('node_modules'))).toEqual([]);
  });

  it('runs --version, validate and a policy pack with TypeScript rule modules, as the sources do', async () => {
    const version = await fleet('--version');
    expect(version.stdout).toBe(`${JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')).version}\n`);
    const valid = await fleet('validate', '--stack', join(REPO, 'test', 'fixtures', 'example-stack'));
    expect(valid.code, valid.stderr).toBe(0);
    expect(valid.stdout).toContain('3 fleets, 2 data centers, policy pack default@1.0.0: valid');
    // rules/max-cpu.ts: the build registers a TypeScript loader only when it meets such a module.
    const graph = await fleet('policy', 'graph', join(REPO, 'engine', 'policy', 'testdata', 'custom-pack'));
    expect(graph.code, graph.stderr).toBe(0);
    expect(graph.stdout).toContain('Requested');
  }, 120_000);

  // Every command starts from main.js, so what it imports statically (the chunks it names in `import … from`,
  // transitively; a command's own work is behind `await import()`) is loaded by `fleet --version` and `fleet
  // validate` too. One value import of the apply barrel by the apply command's module (a hint function) made that
  // the executor, the record, the DMZ client's protocol schemas, Fastify and prom-client: `--version` went from
  // 0.16 to 0.33 s and `validate` from 0.25 to 0.39 s (bench:start, issue 20's targets <= 0.25 s).
  it('loads at start-up only what every command needs: no service, record or apply code, no heavy package', async () => {
    const seen = new Set<string>();
    const packages = new Set<string>();
    const bundled = new Set<string>();
    const sources = new Set<string>();
    const walk = async (file: string): Promise<void> => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = await readFile(join(out, file), 'utf8');
      for (const m of text.matchAll(/^(?:import|export)\s[^;]*?from\s*"([^"]+)"|^import\s*"([^"]+)"/gms)) {
        const spec = m[1] ?? m[2];
        if (spec.startsWith('./')) await walk(spec.slice(2));
        else if (!spec.startsWith('node:')) packages.add(spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/'));
      }
      // esbuild names each source it bundles in a comment of its own (a bundled package's files too).
      for (const m of text.matchAll(/^\/\/ ((?:engine|providers|protocol|specs|policies)\/\S+)$/gm)) sources.add(m[1]);
      for (const m of text.matchAll(/^\/\/ node_modules\/((?:@[^/\s]+\/)?[^/\s]+)\/\S+$/gm)) bundled.add(m[1]);
    };
    await walk('main.js');
    expect(sources).toContain('engine/cli/main.ts');
    // Imported: none (commander is bundled, bin/build.mjs BUNDLED). Not yaml either, imported or bundled: `fleet
    // --version` loaded it (77 of 238 ms of CPU) through engine/diags/index.ts re-exporting duplicateKeyDetail.
    expect([...packages].sort()).toEqual([]);
    expect([...bundled].sort()).toEqual(['commander']);
    expect([...sources].filter((s) => /^(engine\/(apply\/(?!failure-cause\.ts)|authority\/|observability\/|plan\/(?!render\/formats\.ts))|providers\/|protocol\/schemas\/)|^engine\/record\/(record|open)\.ts$/.test(s))).toEqual([]);
  });

  // A pack kept in a repository of its own has no package.json with "type":
  // "module" above it, so Node takes its .ts modules for CommonJS, which the
  // ESM loader hooks do not reach: the built CLI and the sources alike said
  // "Importing rules/max-cpu.ts failed: Unexpected token ':'".
  it('loads the TypeScript rule modules of a pack outside any package, built and from the sources', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fleet-pack-'));
    try {
      const pack = join(dir, 'custom-pack');
      await cp(join(REPO, 'engine', 'policy', 'testdata', 'custom-pack'), pack, { recursive: true });
      const built = await fleet('policy', 'graph', pack);
      expect(built.code, built.stderr).toBe(0);
      expect(built.stdout).toContain('Requested');
      const sources = await node(['bin/fleet.mjs', 'policy', 'graph', pack], REPO, { FLEET_FROM_SOURCE: '1' });
      expect(sources.code, sources.stderr).toBe(0);
      expect(sources.stdout).toBe(built.stdout);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  // A rule module awaiting, at its top level, what nothing will ever resolve
  // left Node nothing to run: fleet exited 13, stdout and stderr empty.
  it('says which rule module never finishes loading, at once, built and from the sources', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fleet-pack-'));
    try {
      const pack = join(dir, 'pack');
      await cp(join(REPO, 'policies', 'default'), pack, { recursive: true });
      const file = join(pack, 'policy.yaml');
      await writeFile(file, (await readFile(file, 'utf8')).replace('  rules:\n', '  modules: [rules/stuck.mjs]\n  rules:\n'));
      await mkdir(join(pack, 'rules'));
      await writeFile(join(pack, 'rules', 'stuck.mjs'), 'await new Promise(() => {});\nexport default {};\n');
      for (const r of [await fleet('policy', 'graph', pack), await node(['bin/fleet.mjs', 'policy', 'graph', pack], REPO, { FLEET_FROM_SOURCE: '1' })]) {
        expect(r.code, r.stderr).toBe(1);
        expect(r.stderr).toMatch(/error\[policy\.module-load\][\s\S]*policy\.yaml:\d+:\d+\n {2}Importing rules\/stuck\.mjs never finished: it waits at its top level on what nothing will resolve/);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

// A rule module that loads fine and leaves a timer running (a cache it keeps
// fresh) kept the process alive once the command was done: fleet validate
// printed "valid" and never exited, and a CI job hung until its own timeout.
describe('bin/fleet.mjs', () => {
  it('exits once the command is done, even when a rule module left a timer running', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fleet-pack-'));
    try {
      const pack = join(dir, 'pack');
      await cp(join(REPO, 'policies', 'default'), pack, { recursive: true });
      const file = join(pack, 'policy.yaml');
      await writeFile(file, (await readFile(file, 'utf8')).replace('  rules:\n', '  modules: [rules/cached.mjs]\n  rules:\n'));
      await mkdir(join(pack, 'rules'));
      await writeFile(
        join(pack, 'rules', 'cached.mjs'),
        'setInterval(() => {}, 60_000);\nexport default { name: "cached", description: "keeps a cache fresh", configSchema: { type: "object" }, checkPlan() { return []; } };\n',
      );
      // Killed past the deadline (a hang) it exits 1, not 0.
      const r = await node(['bin/fleet.mjs', 'policy', 'graph', pack], REPO, {}, 40_000);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('stateDiagram-v2');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('bin/fresh.mjs', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'fleet-fresh-'));
    await mkdir(join(root, 'src'));
    await mkdir(join(root, 'dist'));
    await writeFile(join(root, 'src', 'a.ts'), 'export const a = 1;\n');
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  const urls = () => ({ dist: pathToFileURL(join(root, 'dist') + '/'), root: pathToFileURL(root + '/') });
  async function manifest(): Promise<void> {
    const { stat } = await import('node:fs/promises');
    const { createHash } = await import('node:crypto');
    const s = await stat(join(root, 'src', 'a.ts'));
    const sha1 = createHash('sha1').update(await readFile(join(root, 'src', 'a.ts'))).digest('hex');
    await writeFile(join(root, 'dist', 'manifest.json'), JSON.stringify({ entry: 'main.js', inputs: { 'src/a.ts': { size: s.size, mtimeMs: s.mtimeMs, sha1 } }, packages: { dep: '1.0.0' } }));
  }
  /** A package `dep` of the project, as npm installs it: its entry under node_modules/dep, its version in its package.json. */
  const installDep = async (version: string) => {
    await mkdir(join(root, 'node_modules', 'dep', 'lib'), { recursive: true });
    await writeFile(join(root, 'node_modules', 'dep', 'package.json'), JSON.stringify({ name: 'dep', version, main: 'lib/index.js' }));
    await writeFile(join(root, 'node_modules', 'dep', 'lib', 'index.js'), 'module.exports = 1;\n');
  };

  it.each([
    { name: 'fresh: every source unchanged', change: async () => {}, env: {}, fresh: true },
    { name: 'FLEET_FROM_SOURCE=1 asks for the sources', change: async () => {}, env: { FLEET_FROM_SOURCE: '1' }, fresh: false },
    // An installed package: npm pack gives every file one fixed time; the content decides.
    { name: 'a source touched since, same content', change: () => utimes(join(root, 'src', 'a.ts'), new Date(0), new Date(499162860000)), env: {}, fresh: true },
    { name: 'a source edited, same size, other time', change: async () => {
        await writeFile(join(root, 'src', 'a.ts'), 'export const a = 2;\n');
        await utimes(join(root, 'src', 'a.ts'), new Date(0), new Date(499162860000));
      }, env: {}, fresh: false },
    { name: 'a source edited (same time, other size)', change: async () => {
        const { stat } = await import('node:fs/promises');
        const before = await stat(join(root, 'src', 'a.ts'));
        await writeFile(join(root, 'src', 'a.ts'), 'export const a = 12;\n');
        await utimes(join(root, 'src', 'a.ts'), before.atime, before.mtime);
      }, env: {}, fresh: false },
    { name: 'a source removed', change: () => rm(join(root, 'src', 'a.ts')), env: {}, fresh: false },
    { name: 'no build', change: () => rm(join(root, 'dist', 'manifest.json')), env: {}, fresh: false },
    // A package bundled into the build (bin/build.mjs BUNDLED): its installed version decides.
    { name: 'a bundled package upgraded since', change: () => installDep('1.1.0'), env: {}, fresh: false },
    { name: 'a bundled package removed', change: () => rm(join(root, 'node_modules', 'dep'), { recursive: true }), env: {}, fresh: false },
  ])('$name', async ({ change, env, fresh }) => {
    await writeFile(join(root, 'src', 'a.ts'), 'export const a = 1;\n');
    await writeFile(join(root, 'package.json'), JSON.stringify({ name: 'project', version: '0.0.0' }));
    await installDep('1.0.0');
    await manifest();
    await change();
    const { dist, root: r } = urls();
    const got = (freshBuild as Fresh)(dist, r, env);
    expect(got?.href).toBe(fresh ? new URL('main.js', dist).href : undefined);
  });
});
