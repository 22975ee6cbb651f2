// The built CLI (bin/build.mjs -> dist/cli, what `fleet` runs after `npm ci`):
// it is built from the sources, runs the same commands as the sources do
// (a TypeScript rule module included), and bin/fresh.mjs stops using a build
// once any of its sources changes.
// (The installed package's build, made by npm pack's prepare, is run by test/install.e2e.test.ts.)
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, cp, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error a plain JavaScript module of the bin folder, no types
import { checkBuild, freshBuild, VERIFIED } from '../bin/fresh.mjs';
import { seededRandom } from '../engine/model/seeded-random.ts';
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
type Check = (dist: URL, root: URL, env?: NodeJS.ProcessEnv) => { entry: URL | undefined; hashed: number; recorded: boolean };

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

// An installed package (npm pack, then npm install) has every file with the
// time of its install, none with the manifest's: each start hashed all ~230
// sources again (20-60 ms of issue 20's 0.25 s). A content check that passed
// is now remembered (dist/cli/verified-stat.json); the next start takes a
// source whose size, mtime and ctime are the verified ones as unchanged.
describe('bin/fresh.mjs in an installed package: the verified stat', () => {
  const FILES = ['src/a.ts', 'src/b.ts', 'src/c/d.ts'];
  const original = (file: string) => `export const ${file.replace(/\W/g, '_')} = 'the original text of ${file}';\n`;
  let root: string;
  let dist: string;
  const urls = () => ({ dist: pathToFileURL(dist + '/'), root: pathToFileURL(root + '/') });
  const check = () => {
    const u = urls();
    return (checkBuild as Check)(u.dist, u.root, {});
  };
  const fresh = (r: ReturnType<Check>) => r.entry?.href === new URL('main.js', urls().dist).href;
  const verifiedPath = () => join(dist, VERIFIED as string);
  /**
   * Waits until the file system's clock has moved past every time it gave so
   * far (a new file's ctime, polled), so the next check may record what it
   * hashes: a source is recorded only when older than the check (fresh.mjs).
   */
  async function clockTick(): Promise<void> {
    const probe = join(root, 'probe');
    await writeFile(probe, '');
    const then = (await stat(probe)).ctimeMs;
    for (let i = 0; i < 100_000; i++) {
      await writeFile(probe, '');
      if ((await stat(probe)).ctimeMs > then) return;
    }
    throw new Error('the file system clock did not move');
  }
  /**
   * Sources with the install's time, a manifest with npm pack's fixed time (1985-10-26): the layout an npm install
   * leaves. The install's time in whole seconds, as a Date (utimes' argument) holds it exactly.
   */
  async function install(): Promise<void> {
    await rm(root, { recursive: true, force: true });
    await mkdir(dist, { recursive: true });
    const inputs: Record<string, { size: number; mtimeMs: number; sha1: string }> = {};
    const installed = new Date(Math.floor(Date.now() / 1000) * 1000 - 1000);
    for (const file of FILES) {
      await mkdir(join(root, file, '..'), { recursive: true });
      await writeFile(join(root, file), original(file));
      await utimes(join(root, file), installed, installed);
      inputs[file] = { size: Buffer.byteLength(original(file)), mtimeMs: 499162860000, sha1: createHash('sha1').update(original(file)).digest('hex') };
    }
    await writeFile(join(dist, 'manifest.json'), JSON.stringify({ entry: 'main.js', inputs, packages: {} }));
    await clockTick();
  }
  /** Rewrites FILE with TEXT of the same length, its mtime put back as it was (its ctime moves: utimes cannot set it). */
  async function editKeepingTime(file: string, text: string): Promise<void> {
    const before = await stat(join(root, file));
    expect(Buffer.byteLength(text)).toBe(before.size);
    await writeFile(join(root, file), text);
    await utimes(join(root, file), before.atime, before.mtime);
    expect((await stat(join(root, file))).mtimeMs).toBe(before.mtimeMs);
  }
  const sameSize = (text: string) => text.replace(/original/, 'ORIGINAL');
  const leftovers = async () => (await readdir(dist)).filter((f) => f.includes('.tmp-'));

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'fleet-verified-'));
    dist = join(root, 'dist', 'cli');
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  /**
   * One start of `fleet` as far as bin/fresh.mjs goes, in a process of its own: whether it found the build fresh,
   * and how many SHA-1 hashes it made (node:crypto's createHash counted, so bin/fresh.mjs is not asked).
   */
  async function start(): Promise<{ fresh: boolean; sha1: number }> {
    const script = `import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
let sha1 = 0;
const createHash = crypto.createHash;
crypto.createHash = (algorithm, ...rest) => { if (algorithm === 'sha1') sha1++; return createHash(algorithm, ...rest); };
syncBuiltinESMExports();
const { freshBuild } = await import(${JSON.stringify(pathToFileURL(join(REPO, 'bin', 'fresh.mjs')).href)});
const entry = freshBuild(new URL(${JSON.stringify(urls().dist.href)}), new URL(${JSON.stringify(urls().root.href)}), {});
console.log(JSON.stringify({ fresh: entry?.href === ${JSON.stringify(new URL('main.js', urls().dist).href)}, sha1 }));`;
    const r = await node(['--input-type=module', '-e', script], tmpdir());
    expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
    return JSON.parse(r.stdout) as { fresh: boolean; sha1: number };
  }

  it('hashes every source at the first start and none at the next ones', async () => {
    await install();
    expect(await start()).toEqual({ fresh: true, sha1: FILES.length });
    expect(await start()).toEqual({ fresh: true, sha1: 0 });
    expect(await start()).toEqual({ fresh: true, sha1: 0 });
  });

  it('says how many sources it hashed, and writes its record readable by every user, as the manifest is', async () => {
    await install();
    const first = check();
    expect(first).toMatchObject({ hashed: FILES.length, recorded: true });
    expect(fresh(first)).toBe(true);
    // Not a secret: the package's own file names, sizes, times and hashes, readable by every user of the install.
    expect((await stat(verifiedPath())).mode & 0o777).toBe(0o644 & ~process.umask());
    for (let i = 0; i < 2; i++) {
      const next = check();
      expect(next).toMatchObject({ hashed: 0, recorded: false });
      expect(fresh(next)).toBe(true);
    }
    expect(await leftovers()).toEqual([]);
  });

  const corrupt = (text: string) => async () => writeFile(verifiedPath(), text);
  const editRecord = (edit: (entry: Record<string, unknown>) => void) => async () => {
    const record = JSON.parse(await readFile(verifiedPath(), 'utf8')) as { inputs: Record<string, Record<string, unknown>> };
    edit(record.inputs['src/b.ts']);
    await writeFile(verifiedPath(), JSON.stringify(record));
  };
  it.each([
    { name: 'nothing changed', change: async () => {}, fresh: true, hashed: 0 },
    { name: 'a source touched, same content', change: () => utimes(join(root, 'src/b.ts'), new Date(0), new Date(1_700_000_000_000)), fresh: true, hashed: 1 },
    { name: 'a source edited, same size, other time', change: async () => {
        await writeFile(join(root, 'src/b.ts'), sameSize(original('src/b.ts')));
        await utimes(join(root, 'src/b.ts'), new Date(0), new Date(1_700_000_000_000));
      }, fresh: false, hashed: 1 },
    // What the size-and-mtime shortcut of a checkout cannot see; the verified ctime does.
    { name: 'a source edited, same size, its mtime put back', change: () => editKeepingTime('src/b.ts', sameSize(original('src/b.ts'))), fresh: false, hashed: 1 },
    { name: 'a source edited and put back as it was, its mtime too', change: async () => {
        await editKeepingTime('src/b.ts', sameSize(original('src/b.ts')));
        await editKeepingTime('src/b.ts', original('src/b.ts'));
      }, fresh: true, hashed: 1 },
    { name: 'a source edited, other size', change: () => writeFile(join(root, 'src/b.ts'), 'export {};\n'), fresh: false, hashed: 0 },
    { name: 'a source removed', change: () => rm(join(root, 'src/b.ts')), fresh: false, hashed: 0 },
    { name: 'the record removed', change: () => rm(verifiedPath()), fresh: true, hashed: FILES.length },
    { name: 'the record cut short', change: async () => writeFile(verifiedPath(), (await readFile(verifiedPath(), 'utf8')).slice(0, 40)), fresh: true, hashed: FILES.length },
    { name: 'the record empty', change: corrupt(''), fresh: true, hashed: FILES.length },
    { name: 'the record null', change: corrupt('null'), fresh: true, hashed: FILES.length },
    { name: 'the record an array', change: corrupt('[1, 2]'), fresh: true, hashed: FILES.length },
    { name: 'the record of another version', change: async () => writeFile(verifiedPath(), (await readFile(verifiedPath(), 'utf8')).replace('"version":1', '"version":2')), fresh: true, hashed: FILES.length },
    { name: "a record's inputs an array", change: corrupt('{"version":1,"inputs":[]}'), fresh: true, hashed: FILES.length },
    { name: 'an entry with another size', change: editRecord((e) => (e.size = Number(e.size) + 1)), fresh: true, hashed: 1 },
    { name: 'an entry with another mtime', change: editRecord((e) => (e.mtimeMs = Number(e.mtimeMs) - 1)), fresh: true, hashed: 1 },
    { name: 'an entry with another ctime', change: editRecord((e) => (e.ctimeMs = Number(e.ctimeMs) + 0.5)), fresh: true, hashed: 1 },
    { name: 'an entry with another hash', change: editRecord((e) => (e.sha1 = '0'.repeat(40))), fresh: true, hashed: 1 },
    { name: 'an entry with a size in words', change: editRecord((e) => (e.size = String(e.size))), fresh: true, hashed: 1 },
    { name: 'an entry without its ctime', change: editRecord((e) => delete e.ctimeMs), fresh: true, hashed: 1 },
    // A record consistent with an edited source (its stat, its own hash), as one verified for another build would be.
    { name: 'a source edited, and recorded with the hash of its new content', change: async () => {
        const text = sameSize(original('src/b.ts'));
        await writeFile(join(root, 'src/b.ts'), text);
        const s = await stat(join(root, 'src/b.ts'));
        await editRecord((e) => Object.assign(e, { size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs, sha1: createHash('sha1').update(text).digest('hex') }))();
      }, fresh: false, hashed: 1 },
  ])('after a verified start: $name', async ({ change, fresh: isFresh, hashed }) => {
    await install();
    expect(fresh(check())).toBe(true);
    await change();
    const got = check();
    expect({ fresh: fresh(got), hashed: got.hashed }).toEqual({ fresh: isFresh, hashed });
    expect(await leftovers()).toEqual([]);
    if (!isFresh) return;
    // A record that did not hold is written again: the start after hashes nothing.
    await clockTick();
    check();
    expect(check().hashed).toBe(0);
  });

  // The file system gave it a time not older than the check's (an edit in the same clock tick as the check, or a
  // clock behind the file's): the content might change again within that tick, keeping size and times.
  it('does not record a source not older than the check, and hashes it at every start', async () => {
    await install();
    const future = new Date(Date.now() + 3_600_000);
    await utimes(join(root, 'src/a.ts'), future, future);
    expect(check()).toMatchObject({ hashed: FILES.length, recorded: true });
    for (let i = 0; i < 2; i++) expect(check()).toMatchObject({ hashed: 1, recorded: false });
    expect(await leftovers()).toEqual([]);
  });

  it('checks by content where the record cannot be written, silently, and leaves nothing behind', async () => {
    await install();
    // The record's place taken by a folder: the rename fails, as root too.
    await mkdir(verifiedPath());
    for (let i = 0; i < 2; i++) {
      const got = check();
      expect(fresh(got)).toBe(true);
      expect(got).toMatchObject({ hashed: FILES.length, recorded: false });
    }
    expect(await leftovers()).toEqual([]);
  });

  // A global install owned by root, run by another user: dist/cli is not theirs to write.
  it('runs a build in a folder it may not write, by content, silently, as before', async () => {
    await install();
    await chmod(root, 0o755);
    await chmod(dist, 0o555);
    try {
      const script = `const { checkBuild } = await import(${JSON.stringify(pathToFileURL(join(REPO, 'bin', 'fresh.mjs')).href)});
const u = [${JSON.stringify(urls().dist.href)}, ${JSON.stringify(urls().root.href)}].map((h) => new URL(h));
const runs = [checkBuild(u[0], u[1], {}), checkBuild(u[0], u[1], {})];
console.log(JSON.stringify(runs.map((r) => ({ entry: r.entry?.href, hashed: r.hashed, recorded: r.recorded }))));`;
      // As root, chmod stops nobody: the check runs as the user nobody then.
      const asOther = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
      const got = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: tmpdir(), stdio: ['ignore', 'pipe', 'pipe'], ...asOther });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
      expect(got).toMatchObject({ code: 0, stderr: '' });
      const main = new URL('main.js', urls().dist).href;
      expect(JSON.parse(got.stdout)).toEqual([
        { entry: main, hashed: FILES.length, recorded: false },
        { entry: main, hashed: FILES.length, recorded: false },
      ]);
      expect(await readdir(dist)).toEqual(['manifest.json']);
    } finally {
      await chmod(dist, 0o755);
    }
  });

  // Whatever is done to the sources and to the record, in any order, the build runs exactly while every source has
  // the content it was built from; and a start after one that found the build fresh hashes nothing.
  it.each([1, 2, 3, 4, 5, 6])('is fresh exactly while every source has its built content, over generated edits (seed %i)', async (seed) => {
    const r = seededRandom(seed);
    await install();
    const current = new Map(FILES.map((f) => [f, original(f)]));
    /** Any time in the past, in whole milliseconds (utimes' Date keeps no finer). */
    const past = () => new Date(r.between(1, Date.now() - 1000));
    const ops: Record<string, () => Promise<void>> = {
      touch: () => utimes(join(root, r.pick(FILES)), past(), past()),
      'edit keeping size and mtime': async () => {
        const f = r.pick(FILES);
        const text = r.chance(0.5) ? original(f) : sameSize(original(f));
        if (current.get(f)!.length === text.length) await editKeepingTime(f, text);
        else await writeFile(join(root, f), text).then(() => utimes(join(root, f), past(), past()));
        current.set(f, text);
      },
      'edit, other size': async () => {
        const f = r.pick(FILES);
        const text = r.chance(0.3) ? original(f) : `${original(f)}// ${r.int(1000)}\n`;
        await writeFile(join(root, f), text);
        await utimes(join(root, f), past(), past());
        current.set(f, text);
      },
      'record removed': () => rm(verifiedPath(), { force: true }),
      'record garbled': async () => {
        const text = await readFile(verifiedPath(), 'utf8').catch(() => '');
        const at = r.int(text.length + 1);
        await writeFile(verifiedPath(), text.slice(0, at) + r.pick(['', '0', '9', '"', '}', 'x']) + text.slice(at + r.int(3)));
      },
    };
    const names = Object.keys(ops);
    for (let step = 0; step < 40; step++) {
      const op = r.pick(names);
      await ops[op]();
      await clockTick();
      const want = FILES.every((f) => current.get(f) === original(f));
      const first = check();
      expect(fresh(first), `seed ${seed} step ${step} (${op})`).toBe(want);
      if (want) expect(check().hashed, `seed ${seed} step ${step} (${op}): the start after`).toBe(0);
    }
    expect(await leftovers()).toEqual([]);
  });
});
