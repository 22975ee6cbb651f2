import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { diag, type Diagnostic } from '../diags/index.ts';
import { DRIVER_CALLS } from '../model/index.ts';
import type { Lifecycle, LoadedPack } from '../policy/types.ts';
import { loadStack, specHash, type PackLoader } from './index.ts';
import { ROLLOUT_AMOUNT_MAX } from './schema.ts';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const packPath = join(repo, 'policies/default');

async function scratch(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fleet-spec-'));
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeFile(join(dir, rel), text);
  }
  return dir;
}

/** Loads a stack of `files` and expects one spec.out-of-range, at `at`, saying `limit` and `why`, within 600 characters. */
async function expectOneBound(files: Record<string, string>, at: string, limit: string, why: string): Promise<void> {
  const dir = await scratch(files);
  const r = await loadStack(dir, { cwd: dir, env: {} });
  const bounded = r.diagnostics.filter((d) => d.code === 'spec.out-of-range');
  expect(bounded.map((d) => `${d.code} ${d.file}:${d.line}:${d.col}`)).toEqual([`spec.out-of-range ${at}`]);
  expect(bounded[0].detail).toContain(limit);
  expect(bounded[0].detail).toContain(why);
  expect(bounded[0].detail.length).toBeLessThan(600);
}

function stackYaml(opts: { record?: string; pack?: string; extra?: string } = {}): string {
  return `apiVersion: fleet/v1
kind: Stack
metadata: { name: t }
spec:
  specs: [specs/*.yaml]
  record: ${opts.record ?? 'pglite://.fleet/record'}
  policyPack: { path: ${opts.pack ?? packPath} }
  site: { name: home, location: { lat: 35, lon: -80 } }
  dataCenters:
    - name: miami
      address: embedded
      location: { lat: 25.7617, lon: -80.1918 }
      hardware: [general]
      capacity: { vms: 10 }
    - name: richmond
      address: https://dmz.richmond.example:8443
      location: { lat: 37.5407, lon: -77.4360 }
      capacity: {}
${opts.extra ?? ''}`;
}

const minimalFleet = (name = 'web', extra = ''): string => `apiVersion: fleet/v1
kind: Fleet
metadata: { name: ${name}, owner: team-a }
spec:
  count: 2
  image: ubuntu-22.04
  size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }
${extra}`;

const codes = (ds: readonly Diagnostic[]): string[] => ds.map((d) => d.code);

describe('loadStack on a copy of the example stack (test/fixtures/example-stack)', () => {
  it('loads the example stack with its three fleets and the default pack', async () => {
    const r = await loadStack('test/fixtures/example-stack', { cwd: repo, env: {} });
    expect(r.diagnostics).toEqual([]);
    expect(r.fleets.map((f) => f.name)).toEqual(['batch', 'build-farm', 'web']);
    expect(r.pack?.name).toBe('default');
    const s = r.stack!;
    expect(s.name).toBe('local');
    expect(s.file).toBe(join(repo, 'test/fixtures/example-stack/stack.yaml'));
    expect(s.dir).toBe(join(repo, 'test/fixtures/example-stack'));
    expect(s.recordUrl).toBe(`pglite://${join(repo, 'test/fixtures/example-stack/.fleet/record')}`);
    expect(s.stateDir).toBe(join(repo, 'test/fixtures/example-stack/.fleet'));
    expect(s.packDir).toBe(join(repo, 'policies/default'));
    expect(s.site.name).toBe('charlotte');
    expect(s.dataCenters.map((d) => [d.name, d.hardware])).toEqual([
      ['miami', ['general', 'software-dev-optimized']],
      ['richmond', ['general', 'product-dev-optimized']],
    ]);
    expect(s.apply).toEqual({ parallelism: 10, lockTimeoutSeconds: 0 });
    expect(s.ruleConfig).toEqual({ 'owner-quota': { enforcement: 'mandatory', limits: { 'team-payments': { vms: 40 } } } });
    const web = r.fleets.find((f) => f.name === 'web')!;
    expect(web).toMatchObject({ owner: 'team-payments', protect: true, encryptedDisk: true, state: 'Running' });
    expect(web.placement).toEqual({ dataCenters: ['miami', 'richmond'], strategy: 'spread', near: null });
    expect(web.where).toEqual({ file: 'test/fixtures/example-stack/specs/web.yaml', line: 3, col: 1 });
  });

  it('accepts the stack file itself as well as its folder', async () => {
    const r = await loadStack('test/fixtures/example-stack/stack.yaml', { cwd: repo, env: {} });
    expect(r.diagnostics).toEqual([]);
    expect(r.fleets).toHaveLength(3);
  });
});

describe('defaults', () => {
  it('fills every optional field of a minimal fleet', async () => {
    const dir = await scratch({ 'stack.yaml': stackYaml(), 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { env: {} });
    expect(r.diagnostics).toEqual([]);
    const f = r.fleets[0];
    expect({
      state: f.state,
      placement: f.placement,
      hardware: f.hardware,
      minCount: f.minCount,
      encryptedDisk: f.encryptedDisk,
      protect: f.protect,
      labels: f.labels,
    }).toEqual({
      state: 'Running',
      placement: { dataCenters: null, strategy: 'nearest', near: null },
      hardware: [],
      minCount: 0,
      encryptedDisk: false,
      protect: false,
      labels: {},
    });
    expect(r.stack!.dataCenters[1]).toMatchObject({ name: 'richmond', hardware: [], capacity: {}, address: 'https://dmz.richmond.example:8443' });
    expect(r.stack!.dataCenters[1].where).toMatchObject({ line: 15, col: 7 });
  });

  it('keeps coordinates given as near', async () => {
    const dir = await scratch({ 'stack.yaml': stackYaml(), 'specs/web.yaml': minimalFleet('web', '  placement: { near: { lat: 30, lon: -81 } }\n') });
    const r = await loadStack(dir, { env: {} });
    expect(r.fleets[0].placement.near).toEqual({ lat: 30, lon: -81 });
  });

  it('reads apply settings when given', async () => {
    const dir = await scratch({ 'stack.yaml': stackYaml({ extra: '  apply: { parallelism: 3, lockTimeoutSeconds: 30 }\n' }), 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { env: {} });
    expect(r.stack!.apply).toEqual({ parallelism: 3, lockTimeoutSeconds: 30 });
  });
});

describe('record URL', () => {
  const cases: [string, string | undefined, string | undefined, (dir: string) => string | undefined][] = [
    ['relative pglite folder is made absolute against the stack folder', 'pglite://state/db', undefined, (d) => `pglite://${join(d, 'state/db')}`],
    ['absolute pglite folder is kept', 'pglite:///var/lib/fleet', undefined, () => 'pglite:///var/lib/fleet'],
    ['postgres URL is kept', 'postgres://fleet@db.example:5432/fleet', undefined, () => 'postgres://fleet@db.example:5432/fleet'],
    ['FLEET_RECORD_URL overrides the file', 'pglite://.fleet/record', 'postgres://ci@127.0.0.1:5432/postgres', () => 'postgres://ci@127.0.0.1:5432/postgres'],
    ['malformed FLEET_RECORD_URL is an error', 'pglite://.fleet/record', 'mysql://x', () => undefined],
    ['pglite:// without folder is an error', 'pglite://', undefined, () => undefined],
  ];
  it.each(cases)('%s', async (_name, record, envUrl, want) => {
    const dir = await scratch({ 'stack.yaml': stackYaml({ record }), 'specs/web.yaml': minimalFleet() });
    const told: string[] = [];
    const r = await loadStack(dir, { env: envUrl ? { FLEET_RECORD_URL: envUrl } : {}, onRecordUrl: (url) => told.push(url) });
    const expected = want(dir);
    if (expected === undefined) {
      expect(codes(r.diagnostics)).toEqual(['spec.record-url']);
      expect(r.stack).toBeUndefined();
      // A malformed URL is not handed on (the record is not prepared for it).
      expect(told).toEqual([]);
    } else {
      expect(r.diagnostics).toEqual([]);
      expect(r.stack!.recordUrl).toBe(expected);
      // onRecordUrl is told the URL the stack ends with, once.
      expect(told).toEqual([expected]);
    }
  });

  // planStack starts compiling PGlite's WebAssembly from onRecordUrl (engine/record prepareRecord): it must come
  // before the pack and the fleet files, which are most of the loading it is meant to overlap.
  it('tells onRecordUrl before the policy pack loads', async () => {
    const dir = await scratch({ 'stack.yaml': stackYaml(), 'specs/web.yaml': minimalFleet() });
    const order: string[] = [];
    const loadPack: PackLoader = async () => {
      order.push('pack');
      return { diagnostics: [diag('spec.read-error', 'no pack here', {})] };
    };
    await loadStack(dir, { env: {}, loadPack, onRecordUrl: (url) => order.push(url) });
    expect(order).toEqual([`pglite://${join(dir, '.fleet/record')}`, 'pack']);
  });

  it('names the environment variable when it is the culprit', async () => {
    const dir = await scratch({ 'stack.yaml': stackYaml(), 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { env: { FLEET_RECORD_URL: 'postgres://' } });
    expect(r.diagnostics[0].detail).toMatch(/^FLEET_RECORD_URL is "postgres:\/\/"/);
    expect(r.diagnostics[0].file).toBeUndefined();
  });

  it.each([
    ['FLEET_RECORD_URL', undefined, 'mysql://root:s3cret@db/fleet'],
    ['FLEET_RECORD_URL', undefined, 'postgres://fleet:s3cret@db:notaport/fleet'],
    ['FLEET_RECORD_URL', undefined, 'postgres://fleet@db:notaport/fleet?password=s3cret'],
    ['stack.yaml', 'mysql://root:s3cret@db/fleet', undefined],
  ])('a malformed record URL in %s is quoted without its password', async (_where, record, envUrl) => {
    const dir = await scratch({ 'stack.yaml': stackYaml(record ? { record } : {}), 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { env: envUrl ? { FLEET_RECORD_URL: envUrl } : {} });
    expect(codes(r.diagnostics)).toEqual(['spec.record-url']);
    expect(r.diagnostics[0].detail).not.toContain('s3cret');
    expect(r.diagnostics[0].detail).toContain('***');
  });
});

// policyPack.path naming the pack's policy.yaml (not its folder) was
// reported as "…/policy.yaml does not exist", of a file that plainly does.
describe('policyPack.path', () => {
  it.each([
    { name: "the pack's policy.yaml itself", pack: join(packPath, 'policy.yaml'), detail: `is the pack's file; policyPack.path names the folder holding it: ${packPath.slice(1)}.` },
    { name: 'another file', pack: join(packPath, 'tests', '01-quota-partial-grant.yaml'), detail: 'is a file, not a folder holding policy.yaml.' },
    { name: 'a folder without policy.yaml', pack: join(packPath, 'tests'), detail: 'has no policy.yaml.' },
    { name: 'nothing at all', pack: join(packPath, 'nope'), detail: 'does not exist.' },
  ])('$name: said as it is', async ({ pack, detail }) => {
    const dir = await scratch({ 'stack.yaml': stackYaml({ pack }), 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { env: {}, cwd: '/' });
    expect(codes(r.diagnostics)).toEqual(['spec.pack-not-found']);
    expect(r.diagnostics[0].detail).toBe(`policyPack.path "${pack}": ${pack.slice(1)} ${detail}`);
  });
});

describe('stackOnly (commands that only read the record)', () => {
  it('reads the stack file alone: neither the fleet files nor the pack, so a broken spec or a missing pack is not its concern', async () => {
    const dir = await scratch({ 'stack.yaml': stackYaml({ pack: '/nonexistent/pack' }), 'specs/web.yaml': 'kind: [unclosed' });
    const full = await loadStack(dir, { env: {} });
    expect(codes(full.diagnostics)).toEqual(expect.arrayContaining(['spec.pack-not-found']));
    const r = await loadStack(dir, { env: {}, stackOnly: true });
    expect(r.diagnostics).toEqual([]);
    expect(r.fleets).toEqual([]);
    expect(r.pack).toBeUndefined();
    expect(r.stack?.name).toBe('t');
    expect(r.stack?.recordUrl).toBe(`pglite://${join(dir, '.fleet/record')}`);
  });

  it('still reports a broken stack file', async () => {
    const dir = await scratch({ 'stack.yaml': stackYaml({ record: 'mysql://x' }) });
    const r = await loadStack(dir, { env: {}, stackOnly: true });
    expect(codes(r.diagnostics)).toEqual(['spec.record-url']);
    expect(r.stack).toBeUndefined();
  });
});

describe('freezing', () => {
  it('returns fleets and stack consumers cannot mutate', async () => {
    const r = await loadStack('test/fixtures/example-stack', { cwd: repo, env: {} });
    const web = r.fleets.find((f) => f.name === 'web')!;
    expect(() => {
      (web.size as { cpu: number }).cpu = 64;
    }).toThrow(TypeError);
    expect(() => (web.hardware as string[]).push('gpu')).toThrow(TypeError);
    expect(() => (web.placement.dataCenters as string[]).pop()).toThrow(TypeError);
    expect(() => {
      (web.raw.spec as { count: number }).count = 99;
    }).toThrow(TypeError);
    expect(() => (web.pointers as Map<string, unknown>).set('x', {})).toThrow(TypeError);
    expect(() => {
      (r.stack!.dataCenters[0].capacity as { vms?: number }).vms = 1;
    }).toThrow(TypeError);
    expect(() => (r.fleets as unknown as unknown[]).push({})).toThrow(TypeError);
  });
});

describe('specHash and pointers', () => {
  it('is 16 hex characters, ignores hardware order, count and labels, and follows build inputs', () => {
    const base = { image: 'ubuntu-22.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, hardware: ['general', 'gpu'], encryptedDisk: false };
    const h = specHash(base);
    expect(h).toMatch(/^[0-9a-f]{16}$/);
    expect(specHash({ ...base, hardware: ['gpu', 'general'] })).toBe(h);
    expect(specHash({ ...base, size: { diskGiB: 20, memoryGiB: 4, cpu: 2 } })).toBe(h);
    expect(specHash({ ...base, image: 'rhel-9' })).not.toBe(h);
    expect(specHash({ ...base, encryptedDisk: true })).not.toBe(h);
    expect(specHash({ ...base, size: { cpu: 4, memoryGiB: 4, diskGiB: 20 } })).not.toBe(h);
  });

  it('is the same for two fleets differing only in count, and pinned for the example web fleet', async () => {
    const r = await loadStack('test/fixtures/example-stack', { cwd: repo, env: {} });
    // Changing this value means every existing VM looks changed to the planner: only on purpose.
    expect(r.fleets.find((f) => f.name === 'web')!.specHash).toBe('7ff64bb0f2964cf2');
  });

  it('maps dotted paths to positions', async () => {
    const dir = await scratch({ 'stack.yaml': stackYaml(), 'specs/web.yaml': minimalFleet('web', '  hardware: [general]\n') });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    const p = r.fleets[0].pointers;
    expect(p.get('spec.count')).toEqual({ file: 'specs/web.yaml', line: 5, col: 10 });
    expect(p.get('metadata.name')).toEqual({ file: 'specs/web.yaml', line: 3, col: 19 });
    expect(p.get('spec.size.diskGiB')).toEqual({ file: 'specs/web.yaml', line: 7, col: 42 });
    expect(p.get('spec.hardware.0')).toEqual({ file: 'specs/web.yaml', line: 8, col: 14 });
  });
});

describe('problems', () => {
  it('shows files relative to the working folder', async () => {
    const dir = await scratch({ 'stack.yaml': stackYaml(), 'specs/web.yaml': minimalFleet('Web') });
    const r = await loadStack('.', { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => `${d.code} ${d.file}:${d.line}:${d.col}`)).toEqual(['spec.invalid-fleet-name specs/web.yaml:3:19']);
  });

  it('names the other location of a duplicate fleet in each detail', async () => {
    const dir = await scratch({ 'stack.yaml': stackYaml(), 'specs/a.yaml': minimalFleet(), 'specs/b.yaml': `${minimalFleet('db')}---\n${minimalFleet()}` });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => [d.file, d.detail])).toEqual([
      ['specs/a.yaml', 'Fleet "web" is also defined at specs/b.yaml:11:19.'],
      ['specs/b.yaml', 'Fleet "web" is also defined at specs/a.yaml:3:19.'],
    ]);
  });

  // One file reached by two paths is one definition. A symbolic link to a
  // folder (a shared specs folder linked in, or specs/loop -> .) under a
  // `**` glob made every fleet of it a duplicate of itself: the loop gave
  // 3,003 errors, each listing some 40 paths of one file.
  it.each([
    { name: 'a link to a file', glob: 'specs/*.yaml', links: [['web.yaml', 'specs/alias.yaml']] },
    { name: 'a link to a folder the glob also reaches', glob: 'specs/**/*.yaml', links: [['../shared', 'specs/linked']] },
    { name: 'a link loop', glob: 'specs/**/*.yaml', links: [['.', 'specs/loop']] },
  ])('a file reached by several paths is read once: $name', async ({ glob, links }) => {
    const dir = await scratch({ 'stack.yaml': stackYaml().replace('specs: [specs/*.yaml]', `specs: ["${glob}", "shared/*.yaml"]`), 'specs/web.yaml': minimalFleet(), 'shared/db.yaml': minimalFleet('db') });
    for (const [target, path] of links) await symlink(target, join(dir, path));
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics).toEqual([]);
    expect(r.fleets.map((f) => `${f.name}@${f.where?.file}`).sort()).toEqual(['db@shared/db.yaml', 'web@specs/web.yaml']);
  });

  it('reports problems of every file in one run, and keeps loading valid fleets', async () => {
    const dir = await scratch({
      'stack.yaml': stackYaml(),
      'specs/a.yaml': 'kind: [\n',
      'specs/b.yaml': minimalFleet('b', '  colour: red\n'),
      'specs/c.yaml': minimalFleet('c'),
      'specs/d.yaml': '',
    });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => `${d.code} ${d.file}`)).toEqual([
      'spec.yaml-syntax specs/a.yaml',
      'spec.unknown-key specs/b.yaml',
      'spec.empty-file specs/d.yaml',
    ]);
    expect(r.fleets.map((f) => f.name)).toEqual(['c']);
  });

  // A data center's name is a folder and file name (.fleet/sim/<dc>/): `../../x`
  // put an embedded data center's state outside the stack folder, and a NUL
  // made `fleet apply` fail with cli.internal, both after `fleet validate` said valid.
  it.each([
    ['a path up', '"../../outside"', 'holds a path separator'],
    ['a slash', 'dc/a', 'holds a path separator'],
    ['a backslash', '"dc\\\\a"', 'holds a path separator'],
    ['a NUL', '"mi\\0ami"', 'holds a control character'],
    ['an escape', '"mi\\e[31mami"', 'holds a control character'],
    ['..', '".."', 'is a relative folder name'],
    ['.', '"."', 'is a relative folder name'],
  ])('refuses a data center name with %s, at the name', async (_what, yamlName, why) => {
    const extra = `    - name: ${yamlName}\n      address: embedded\n      location: { lat: 30, lon: -80 }\n      capacity: {}\n`;
    const dir = await scratch({ 'stack.yaml': stackYaml({ extra }), 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    // (A NUL is also reported as such by parseYaml, at the same place.)
    const named = r.diagnostics.filter((d) => d.detail.startsWith('Data center name'));
    expect(named.map((d) => `${d.code} ${d.file}:${d.line}:${d.col}`)).toEqual(['spec.invalid-value stack.yaml:19:13']);
    expect(named[0].detail).toContain(why);
    expect(r.diagnostics.map((d) => `${d.file}:${d.line}:${d.col}`)).toEqual(r.diagnostics.map(() => 'stack.yaml:19:13'));
  });

  // A data center's name is a tag on every VM it makes (fleet:data-center), in the record and in every plan, and a
  // site's is matched by placement.near: "miami" and a zero-width space loaded (only C0 controls were refused), and
  // read as miami everywhere. Refused as a stack's name and a fleet's owner are.
  it.each([
    ['a zero-width space', '"miami\\u200B"', 'holds U+200B at position 6, a character that does not show'],
    ['a direction character', '"mi\\u202Eami"', 'holds U+202E at position 3'],
    ['a byte-order mark', '"\\uFEFFmiami"', 'holds U+FEFF at position 1'],
    ['a no-break space', '"mi\\u00A0ami"', 'holds U+00A0 at position 3'],
    ['a space at the end', '"miami "', 'starts or ends with a space'],
  ])('refuses a data center name and a site name with %s, at the name', async (_what, yamlName, why) => {
    const extra = `    - name: ${yamlName}\n      address: embedded\n      location: { lat: 30, lon: -80 }\n      capacity: {}\n`;
    const dir = await scratch({ 'stack.yaml': stackYaml({ extra }).replace('site: { name: home,', `site: { name: ${yamlName},`), 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => `${d.code} ${d.file}:${d.line}:${d.col}`)).toEqual(['spec.invalid-value stack.yaml:8:17', 'spec.invalid-value stack.yaml:19:13']);
    expect(r.diagnostics[0].detail).toMatch(/^spec\.site\.name "/);
    expect(r.diagnostics[1].detail).toMatch(/^Data center name "/);
    for (const d of r.diagnostics) expect(d.detail).toContain(why);
  });

  // The stack's name is in every VM's name given to the data centers, in the record and in saved plans:
  // `name: "fz\e[2J"` validated, and `fleet state list` wrote the escape to the terminal.
  it.each([
    ['an escape', '"t\\e[2J"', 'holds U+001B at position 2, a character that does not show'],
    ['a direction character', '"t\\u202Eevil"', 'holds U+202E at position 2'],
    ['a zero-width space', '"t\\u200B"', 'holds U+200B at position 2'],
    ['a space at the end', '"t "', 'starts or ends with a space'],
  ])('refuses a stack name with %s, at the name', async (_what, yamlName, why) => {
    const dir = await scratch({ 'stack.yaml': stackYaml().replace('metadata: { name: t }', `metadata: { name: ${yamlName} }`), 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => `${d.code} ${d.file}:${d.line}:${d.col}`)).toEqual(['spec.invalid-value stack.yaml:3:19']);
    expect(r.diagnostics[0].detail).toContain(`metadata.name "t`);
    expect(r.diagnostics[0].detail).toContain(why);
  });

  // Names end up where lengths are limited: the stack's in every VM's name (`<stack>-<fleet>-<index>`, an EC2 or
  // Azure tag value: 256 characters) and in an AWS data center's session policy (STS: 2048 characters); a data
  // center's in file names (255 bytes). A 200,000-character stack name validated and went into every VM's name.
  describe('names are bounded, and the diagnostic says the limit and why', () => {
    const long = (n: number): string => 'a'.repeat(n);
    const dc = (name: string) => `    - name: ${name}\n      address: embedded\n      location: { lat: 30, lon: -80 }\n      capacity: {}\n`;
    const aws = (region: string) =>
      `    - name: virginia\n      address: https://dmz.virginia.example:8443\n      location: { lat: 38, lon: -77 }\n      capacity: {}\n      driver: aws\n      aws: { region: ${region}, roleArn: "arn:aws:iam::123456789012:role/dmz" }\n`;
    it.each([
      { what: 'a 200,000-character stack name', edit: (y: string) => y.replace('metadata: { name: t }', `metadata: { name: ${long(200_000)} }`), at: 'stack.yaml:3:19', limit: 'metadata.name must be at most 40 characters (it is 200000)', why: "in every VM's name" },
      { what: 'a 41-character stack name', edit: (y: string) => y.replace('metadata: { name: t }', `metadata: { name: ${long(41)} }`), at: 'stack.yaml:3:19', limit: 'at most 40', why: 'STS allows 2048' },
      { what: 'a 41-character site name', edit: (y: string) => y.replace('site: { name: home,', `site: { name: ${long(41)},`), at: 'stack.yaml:8:17', limit: 'spec.site.name must be at most 40 characters (it is 41)', why: 'placement.near' },
      { what: 'a 41-character data center name', edit: (y: string) => `${y}${dc(long(41))}`, at: 'stack.yaml:19:13', limit: 'must be at most 40 characters (it is 41)', why: 'file name' },
      { what: 'a 21-character AWS region', edit: (y: string) => `${y}${aws('us-easttttttttttttt-1')}`, at: 'stack.yaml:24:22', limit: 'must be at most 20 characters (it is 21)', why: 'session policy' },
    ])('refuses $what', async ({ edit, at, limit, why }) => {
      await expectOneBound({ 'stack.yaml': edit(stackYaml()), 'specs/web.yaml': minimalFleet() }, at, limit, why);
    });

    it('accepts names at the limits', async () => {
      const y = stackYaml({ extra: dc(long(40)) }).replace('metadata: { name: t }', `metadata: { name: ${'é'.repeat(40)} }`).replace('site: { name: home,', `site: { name: ${long(40)},`);
      const dir = await scratch({ 'stack.yaml': y, 'specs/web.yaml': minimalFleet() });
      const r = await loadStack(dir, { cwd: dir, env: {} });
      expect(r.diagnostics).toEqual([]);
    });

    // A fleet's owner and labels had no limit: a 200,000-character owner validated, went into every VM's record row
    // and every create the authority judges, and was quoted in plans. Owner at most 64; labels as Kubernetes' (a key
    // at most 63 characters, a value at most 256).
    const labels = (n: number) => Array.from({ length: n }, (_, i) => `    l${i}: v\n`).join('');
    const fleetWith = (meta: string) => `apiVersion: fleet/v1\nkind: Fleet\nmetadata:\n  name: web\n${meta}spec:\n  count: 2\n  image: ubuntu-22.04\n  size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }\n`;
    it.each([
      { what: 'a 200,000-character owner', meta: `  owner: ${long(200_000)}\n`, at: 'specs/web.yaml:5:10', limit: 'metadata.owner must be at most 64 characters (it is 200000)', why: 'quota limits' },
      { what: 'a 65-character owner', meta: `  owner: ${'é'.repeat(65)}\n`, at: 'specs/web.yaml:5:10', limit: 'metadata.owner must be at most 64 characters (it is 65)', why: 'quota limits' },
      { what: 'a 64-character label key', meta: `  owner: team-a\n  labels:\n    env: prod\n    ${long(64)}: x\n`, at: 'specs/web.yaml:8:5', limit: 'must be at most 63 characters (it is 64)', why: 'Kubernetes' },
      { what: 'a 200,000-character label value', meta: `  owner: team-a\n  labels:\n    env: ${long(200_000)}\n`, at: 'specs/web.yaml:7:10', limit: 'metadata.labels.env must be at most 256 characters (it is 200000)', why: 'Kubernetes' },
      // An empty key validated (`"": x`), and a fleet could carry any number of labels (every one in each plan, review
      // and record row): a key must not be empty, and a fleet has at most 64 labels; the refusal is at the 65th key.
      { what: 'an empty label key', meta: `  owner: team-a\n  labels:\n    env: prod\n    "": x\n`, at: 'specs/web.yaml:8:5', limit: 'Label key "" must not be empty', why: 'policy rules' },
      { what: '65 labels', meta: `  owner: team-a\n  labels:\n${labels(65)}`, at: 'specs/web.yaml:71:5', limit: 'metadata.labels must have at most 64 labels (it has 65); the 65th is "l64"', why: 'policy rules' },
      { what: '1,000 labels', meta: `  owner: team-a\n  labels:\n${labels(1_000)}`, at: 'specs/web.yaml:71:5', limit: 'metadata.labels must have at most 64 labels (it has 1000)', why: 'policy rules' },
    ])('refuses $what in a fleet file', async ({ meta, at, limit, why }) => {
      await expectOneBound({ 'stack.yaml': stackYaml(), 'specs/web.yaml': fleetWith(meta) }, at, limit, why);
    });

    it('accepts an owner and labels at the limits', async () => {
      const meta = `  owner: ${'𝔸'.repeat(64)}\n  labels:\n    ${long(63)}: ${'é'.repeat(256)}\n${labels(62)}    e: ""\n`;
      const dir = await scratch({ 'stack.yaml': stackYaml(), 'specs/web.yaml': fleetWith(meta) });
      const r = await loadStack(dir, { cwd: dir, env: {} });
      expect(r.diagnostics).toEqual([]);
    });
  });

  it('accepts data center names with dots, dashes, underscores and letters of any case', async () => {
    const extra = ['us-east-1', 'DC_2', 'eu.west', '..a'].map((n, i) => `    - name: ${n}\n      address: embedded\n      location: { lat: ${i}, lon: 0 }\n      capacity: {}\n`).join('');
    const dir = await scratch({ 'stack.yaml': stackYaml({ extra }), 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics).toEqual([]);
  });

  // The CLI sends a data center's token to its address, and its token at the authority to the authority's: over
  // plain HTTP off loopback both crossed the network in clear text (fleet plan --out and fleet refresh sent them).
  describe('plain http:// addresses off loopback (a token would cross the network in clear text)', () => {
    const dcAt = (address: string) => `    - name: remote\n      address: ${address}\n      location: { lat: 30, lon: -80 }\n      capacity: {}\n`;
    it.each([
      ['a data center by name', dcAt('http://dmz.remote.example:8443'), 'stack.yaml:20:16', 'Data center "remote"'],
      ['a data center by a private IPv4 address', dcAt('http://10.0.0.7:7401'), 'stack.yaml:20:16', 'Data center "remote"'],
      ['a data center by an IPv6 address', dcAt("'http://[fd00::7]:7401'"), 'stack.yaml:20:16', 'Data center "remote"'],
      ['a data center on every interface', dcAt('http://0.0.0.0:7401'), 'stack.yaml:20:16', 'Data center "remote"'],
      ['a data center, in capitals', dcAt('HTTP://dmz.remote.example'), 'stack.yaml:20:16', 'Data center "remote"'],
      ['the authority', "  authority: { address: 'http://authority.example:7400' }\n", 'stack.yaml:19:25', 'The authority'],
    ])('refuses %s, at the address', async (_what, extra, where, who) => {
      const dir = await scratch({ 'stack.yaml': stackYaml({ extra }), 'specs/web.yaml': minimalFleet() });
      const r = await loadStack(dir, { cwd: dir, env: {} });
      expect(r.diagnostics.map((d) => `${d.code} ${d.file}:${d.line}:${d.col}`)).toEqual([`tls.plain-remote ${where}`]);
      expect(r.diagnostics[0].detail).toMatch(new RegExp(`^${who} is reached at .* in plain HTTP`));
      expect(r.diagnostics[0].detail).toContain('https://');
    });

    it.each([
      ['localhost', dcAt('http://localhost:7401')],
      ['127.0.0.1', dcAt('http://127.0.0.1:7401')],
      ['::1', dcAt("'http://[::1]:7401'")],
      ['https off loopback', dcAt('https://dmz.remote.example:8443')],
      ['the authority on loopback', "  authority: { address: 'http://127.0.0.1:7400' }\n"],
    ])('accepts %s', async (_what, extra) => {
      const dir = await scratch({ 'stack.yaml': stackYaml({ extra }), 'specs/web.yaml': minimalFleet() });
      const r = await loadStack(dir, { cwd: dir, env: {} });
      expect(r.diagnostics).toEqual([]);
    });
  });

  it("resolves the authority's caFile, certFile and keyFile against the stack folder", async () => {
    const extra = "  authority: { address: 'https://authority.example:7400', caFile: certs/ca.pem, certFile: certs/cli.pem, keyFile: /abs/cli-key.pem }\n";
    const dir = await scratch({ 'stack.yaml': stackYaml({ extra }), 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics).toEqual([]);
    expect(r.stack!.authority).toMatchObject({ caFile: join(dir, 'certs/ca.pem'), certFile: join(dir, 'certs/cli.pem'), keyFile: '/abs/cli-key.pem' });
  });

  it('never throws for a folder that does not exist', async () => {
    const r = await loadStack('/nonexistent/stack', { env: {} });
    expect(codes(r.diagnostics)).toEqual(['spec.stack-not-found']);
    expect(r.fleets).toEqual([]);
  });

  it('reports a pack folder without policy.yaml', async () => {
    const dir = await scratch({ 'stack.yaml': stackYaml({ pack: 'pack' }), 'pack/README': 'x', 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => d.detail)).toEqual(['policyPack.path "pack": pack has no policy.yaml.']);
  });
});

describe('checks against a hand-built pack', () => {
  const lifecycle = {
    states: ['Requested', 'Running', 'PoweredOff'],
    initial: 'Requested',
    terminal: [],
    requestable: ['Running'],
    failure: [],
    edges: [],
    allows: () => false,
    path: () => undefined,
    operation: () => undefined,
    isTerminal: () => false,
  } satisfies Lifecycle;
  const pack: LoadedPack = {
    name: 'tiny',
    version: '0.0.1',
    dir: '/packs/tiny',
    file: '/packs/tiny/policy.yaml',
    lifecycle,
    images: { 'ubuntu-22.04': { miami: 'ami-1' }, 'rhel-9': { richmond: 'ami-2' } },
    rules: new Map(),
  };
  let seenConfig: unknown;
  const loader: PackLoader = async (_dir, config) => {
    seenConfig = config;
    return { pack, diagnostics: [diag('spec.read-error', 'from the pack', { file: join(packPath, 'policy.yaml'), line: 1, col: 1 }, 'warning')] };
  };

  it('uses the pack for state and image checks, passes the stack config, and shows pack files relative', async () => {
    const dir = await scratch({
      'stack.yaml': stackYaml({ pack: packPath }).replace(`{ path: ${packPath} }`, `{ path: ${packPath}, config: { owner-quota: { enforcement: advisory } } }`),
      'specs/web.yaml': minimalFleet('web', '  state: PoweredOff\n'),
      'specs/db.yaml': minimalFleet('db', '  placement: { dataCenters: [richmond] }\n'),
      'specs/ok.yaml': minimalFleet('ok'),
    });
    const r = await loadStack(dir, { cwd: dir, env: {}, loadPack: loader });
    expect(seenConfig).toEqual({ 'owner-quota': { enforcement: 'advisory' } });
    expect(r.pack).toBe(pack);
    expect(r.diagnostics.map((d) => `${d.code} ${d.file}:${d.line}`)).toEqual([
      expect.stringMatching(/^spec\.read-error .*policies\/default\/policy\.yaml:1$/),
      'spec.image-not-offered specs/db.yaml:6',
      'spec.state-not-requestable specs/web.yaml:8',
    ]);
    expect(r.diagnostics[0].file!.startsWith('/')).toBe(false);
  });
});

// The sim's settings are read by the simulator as they are: a fault named
// with a typo (`failCalls: [creatVm]`) injected nothing, silently, and a
// latency past setTimeout's 32-bit limit (3000000000) became 1 ms, with a
// TimeoutOverflowWarning printed at every cloud call.
// A specs folder that cannot be listed (no permission, a link loop) threw
// out of the glob: `fleet validate` said "error[cli.internal]: Internal
// error  EACCES: permission denied, scandir '/…/specs/fleets'", with no
// location. (As root a folder is always readable: a link loop, ELOOP, takes
// the same path here.)
// `specs: [spec/*.yaml]` beside a folder named specs/ said only "matches no file": which folder was missing, and
// which one was meant, was left to the reader.
describe('a specs glob that matches no file says what is missing and what would match', () => {
  const files = { 'specs/web.yaml': minimalFleet(), 'specs/db.yaml': minimalFleet('db'), 'fleets/prod/api.yaml': minimalFleet('api') };
  it.each([
    { glob: 'spec/*.yaml', hint: 'there is no folder "spec" beside the stack file; did you mean "specs/*.yaml"? It matches 2 files.' },
    { glob: './Specs/*.yaml', hint: 'there is no folder "Specs" beside the stack file; did you mean "./specs/*.yaml"? It matches 2 files.' },
    { glob: 'fleet/prod/*.yaml', hint: 'there is no folder "fleet" beside the stack file; did you mean "fleets/prod/*.yaml"? It matches 1 file.' },
    { glob: 'fleets/prd/*.yaml', hint: 'there is no folder "prd" in fleets; did you mean "fleets/prod/*.yaml"? It matches 1 file.' },
    { glob: 'spec/**/*.yaml', hint: 'there is no folder "spec" beside the stack file; did you mean "specs/**/*.yaml"? It matches 2 files.' },
    { glob: 'specs/*.yml', hint: 'did you mean "specs/*.yaml"? It matches 2 files.' },
    { glob: 'specs/wbe.yaml', hint: 'there is no file "wbe.yaml" in specs; did you mean "specs/web.yaml"? It matches 1 file.' },
    { glob: 'spec/web.yml', hint: 'there is no folder "spec" beside the stack file; did you mean "specs/web.yaml"? It matches 1 file.' },
    { glob: 'fleets/prod/*.json', hint: '' },
    { glob: 'nothing-like-it/*.yaml', hint: 'there is no folder "nothing-like-it" beside the stack file.' },
  ])('$glob', async ({ glob, hint }) => {
    const dir = await scratch({ 'stack.yaml': stackYaml().replace('specs: [specs/*.yaml]', `specs: ["${glob}"]`), ...files });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => `${d.code} ${d.file}:${d.line}:${d.col}`)).toEqual(['spec.glob-no-match stack.yaml:5:11']);
    expect(r.diagnostics[0].detail).toBe(`specs glob "${glob}" matches no file (globs are relative to the stack file)${hint ? `: ${hint}` : '.'}`);
  });
});

describe('a specs folder that cannot be read', () => {
  it.each([
    { name: 'a plain glob', glob: 'loop/*.yaml' },
    { name: 'a ** glob', glob: 'loop/**/*.yaml' },
  ])('is a spec.read-error at the glob: $name', async ({ glob }) => {
    const dir = await scratch({ 'stack.yaml': stackYaml().replace('specs: [specs/*.yaml]', `specs: [specs/*.yaml, "${glob}"]`), 'specs/web.yaml': minimalFleet() });
    await symlink('loop', join(dir, 'loop'));
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => `${d.code} ${d.file}:${d.line}:${d.col} ${d.detail}`)).toEqual([
      `spec.read-error stack.yaml:5:25 specs glob "${glob}": cannot read the folder loop: too many symbolic links (ELOOP).`,
    ]);
  });
});

describe('sim settings', () => {
  const simYaml = (sim: string) => stackYaml().replace('capacity: { vms: 10 }', `capacity: { vms: 10 }\n      sim: ${sim}`);

  it.each([
    { sim: '{ failCalls: [creatVm] }', at: '15:26', detail: 'spec.dataCenters[0].sim.failCalls[0] must be one of createVm, powerOn, boot, awaitReady, shutdown, powerOff, resize, deleteVm, get, list, not "creatVm" (did you mean "createVm"?).' },
    { sim: '{ hangCalls: [powerOn, reboot] }', at: '15:35', detail: 'spec.dataCenters[0].sim.hangCalls[1] must be one of createVm, powerOn, boot, awaitReady, shutdown, powerOff, resize, deleteVm, get, list, not "reboot" (did you mean "boot"?).' },
    { sim: '{ latencyMs: 3000000000 }', at: '15:25', detail: 'spec.dataCenters[0].sim.latencyMs must be at most 3600000, not 3000000000.' },
    { sim: '{ bootMs: 3600001 }', at: '15:22', detail: 'spec.dataCenters[0].sim.bootMs must be at most 3600000, not 3600001.' },
  ])('refuses $sim where it is written', async ({ sim, at, detail }) => {
    const dir = await scratch({ 'stack.yaml': simYaml(sim), 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => `${d.code} ${d.file}:${d.line}:${d.col} ${d.detail}`)).toEqual([`spec.${detail.includes('one of') ? 'invalid-value' : 'out-of-range'} stack.yaml:${at} ${detail}`]);
  });

  it('accepts every driver call in failCalls and hangCalls, and an hour of latency', async () => {
    const calls = DRIVER_CALLS.join(', ');
    const dir = await scratch({ 'stack.yaml': simYaml(`{ latencyMs: 3600000, bootMs: 0, failCalls: [${calls}], hangCalls: [${calls}] }`), 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics).toEqual([]);
  });
});

// A driver name the schema refuses was also judged as if it were a cloud
// driver: "runs the simm driver, so it must be reached by its DMZ client's
// URL" on an embedded data center, and "has an aws block but runs the simm
// driver" beside it: two errors more for one typo, the first of them wrong.
describe('an unknown driver', () => {
  it.each([
    { name: 'embedded', extra: '', want: ['spec.invalid-value stack.yaml:12:15 spec.dataCenters[0].driver must be one of sim, aws, azure, not "simm" (did you mean "sim"?).'] },
    {
      name: 'with an aws block',
      extra: '\n      aws: { region: us-east-1, roleArn: "arn:aws:iam::123456789012:role/x" }',
      want: ['spec.invalid-value stack.yaml:12:15 spec.dataCenters[0].driver must be one of sim, aws, azure, not "simm" (did you mean "sim"?).'],
    },
  ])('is reported once, at driver: $name', async ({ extra, want }) => {
    const yaml = stackYaml().replace('      address: embedded\n', `      address: embedded\n      driver: simm${extra}\n`);
    const dir = await scratch({ 'stack.yaml': yaml, 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => `${d.code} ${d.file}:${d.line}:${d.col} ${d.detail}`)).toEqual(want);
  });
});

// An unknown key was named with the key meant (cuont -> count); an unknown value of a closed set was not:
// `driver: simm`, `strategy: neerest`, `state: Runing` listed what is allowed and left the typo to be found.
describe('a value outside its set names the closest allowed value', () => {
  const dc = (line: string) => stackYaml().replace('      address: embedded\n', `      address: embedded\n      ${line}\n`);
  it.each([
    { name: 'driver: simm', stack: dc('driver: simm'), want: 'spec.dataCenters[0].driver must be one of sim, aws, azure, not "simm" (did you mean "sim"?).' },
    { name: 'driver: Azure', stack: dc('driver: Azure'), want: 'spec.dataCenters[0].driver must be one of sim, aws, azure, not "Azure" (did you mean "azure"?).' },
    { name: 'driver: gcp', stack: dc('driver: gcp'), want: 'spec.dataCenters[0].driver must be one of sim, aws, azure, not "gcp".' },
    {
      name: 'enforcement: advisroy',
      stack: stackYaml().replace(`{ path: ${packPath} }`, `{ path: ${packPath}, config: { owner-quota: { enforcement: advisroy } } }`),
      want: 'spec.policyPack.config.owner-quota.enforcement must be one of advisory, mandatory, disabled, not "advisroy" (did you mean "advisory"?).',
    },
    { name: 'strategy: neerest', spec: '  placement: { strategy: neerest }\n', want: 'spec.placement.strategy must be one of nearest, spread, pack, not "neerest" (did you mean "nearest"?).' },
    { name: 'strategy: random', spec: '  placement: { strategy: random }\n', want: 'spec.placement.strategy must be one of nearest, spread, pack, not "random".' },
    { name: 'state: Runing', spec: '  state: Runing\n', want: 'state "Runing" is not a state of pack default\'s lifecycle (did you mean "Running"?), and a spec may ask only for Running or PoweredOff.' },
    { name: 'state: running', spec: '  state: running\n', want: 'state "running" is not a state of pack default\'s lifecycle (did you mean "Running"?), and a spec may ask only for Running or PoweredOff.' },
    { name: 'state: PowerOff', spec: '  state: PowerOff\n', want: 'state "PowerOff" is not a state of pack default\'s lifecycle (did you mean "PoweredOff"?), and a spec may ask only for Running or PoweredOff.' },
    // A state of the lifecycle that may not be asked for is no typo: no hint.
    { name: 'state: Requested', spec: '  state: Requested\n', want: 'state "Requested" is a state of pack default\'s lifecycle, and a spec may ask only for Running or PoweredOff.' },
    { name: 'state: Deleted', spec: '  state: Gone\n', want: 'state "Gone" is not a state of pack default\'s lifecycle, and a spec may ask only for Running or PoweredOff.' },
  ])('$name', async ({ stack, spec, want }) => {
    const dir = await scratch({ 'stack.yaml': stack ?? stackYaml(), 'specs/web.yaml': minimalFleet('web', spec ?? '') });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => d.detail)).toEqual([want]);
  });
});

// A number past a double's precision was shown as the double it became: `count: 99999999999999999999` was
// "not 100000000000000000000", a value nobody wrote. Numbers are shown as written in the YAML source.
describe('an out-of-range or ill-typed number is shown as written', () => {
  const fleet = (size: string, extra = '') => `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-a }
spec:
  count: 2
  image: ubuntu-22.04
  size: ${size}
${extra}`;
  const ok = '{ cpu: 2, memoryGiB: 4, diskGiB: 20 }';
  it.each([
    { name: 'count: 99999999999999999999', spec: fleet(ok).replace('count: 2', 'count: 99999999999999999999'), want: 'spec.count must be at most 100000, not 99999999999999999999.' },
    { name: 'count: 100001', spec: fleet(ok).replace('count: 2', 'count: 100001'), want: 'spec.count must be at most 100000, not 100001.' },
    { name: 'diskGiB: -99999999999999999999', spec: fleet('{ cpu: 2, memoryGiB: 4, diskGiB: -99999999999999999999 }'), want: 'spec.size.diskGiB must be at least 1, not -99999999999999999999.' },
    { name: 'cpu: 0x100000', spec: fleet('{ cpu: 0x100000, memoryGiB: 4, diskGiB: 20 }'), want: 'spec.size.cpu must be at most 256, not 0x100000.' },
    { name: 'minCount: 0.10000000000000000001', spec: fleet(ok, '  minCount: 0.10000000000000000001\n'), want: 'spec.minCount must be a whole number, not 0.10000000000000000001.' },
    {
      name: 'maxSurge: 12345678901234567890',
      spec: fleet(ok, '  rollout: { maxSurge: 12345678901234567890 }\n'),
      want: 'spec.rollout.maxSurge must be a whole number of members (0 to 100000) or a percentage such as "25%" (0% to 100%), not 12345678901234567890.',
    },
  ])('$name', async ({ spec, want }) => {
    const dir = await scratch({ 'stack.yaml': stackYaml(), 'specs/web.yaml': spec });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => d.detail)).toEqual([want]);
  });

  // Found in the diagnostics sweep: written as it is, a number of 100,000 digits was quoted whole (300 of them shown,
  // by diag()'s backstop for a run) where a quoted value shows QUOTE_LIMIT.
  it.each([
    { name: 'count', edit: (t: string) => t.replace('count: 2', `count: ${'9'.repeat(100_000)}`), want: /^spec\.count must be a whole number, not 9{100}… \(99900 more characters\)\.$/ },
    { name: 'maxSurge', edit: (t: string) => `${t}  rollout: { maxSurge: ${'9'.repeat(100_000)} }\n`, want: /^spec\.rollout\.maxSurge must be a whole number of members .*, not 9{100}… \(99900 more characters\)\.$/ },
  ])('a number of 100,000 digits ($name) is clipped as a quoted value is', async ({ edit, want }) => {
    const dir = await scratch({ 'stack.yaml': stackYaml(), 'specs/web.yaml': edit(fleet(ok)) });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => d.detail)).toEqual([expect.stringMatching(want)]);
  });

  it('in the stack file too (capacity.vms: -99999999999999999999)', async () => {
    const dir = await scratch({ 'stack.yaml': stackYaml().replace('capacity: { vms: 10 }', 'capacity: { vms: -99999999999999999999 }'), 'specs/web.yaml': minimalFleet() });
    const r = await loadStack(dir, { cwd: dir, env: {} });
    expect(r.diagnostics.map((d) => d.detail)).toEqual(['spec.dataCenters[0].capacity.vms must be at least 0, not -99999999999999999999.']);
  });
});

describe('rollout amounts', () => {
  // A bad amount was told in the schema's words: `does not have the required form (^(100|[1-9]?[0-9])%$)` for "3",
  // `must be a whole number or a string` for 1.5: neither said what an amount may be.
  it.each([
    { value: '"3"', code: 'spec.invalid-value', shown: '"3"' },
    { value: '150%', code: 'spec.invalid-value', shown: '"150%"' },
    { value: '1.5', code: 'spec.wrong-type', shown: '1.5' },
    { value: 'true', code: 'spec.wrong-type', shown: 'true' },
    { value: '-1', code: 'spec.out-of-range', shown: '-1' },
  ])('maxSurge: $value is $code, said as a count or a percentage', async ({ value, code, shown }) => {
    const dir = await scratch({ 'stack.yaml': stackYaml(), 'specs/web.yaml': minimalFleet('web', `  rollout: { maxSurge: ${value} }\n`) });
    const r = await loadStack(dir, { env: {} });
    expect(r.diagnostics.map((d) => [d.code, d.detail, d.line])).toEqual([
      [code, `spec.rollout.maxSurge must be a whole number of members (0 to 100000) or a percentage such as "25%" (0% to 100%), not ${shown}.`, 8],
    ]);
  });

  it('says the largest count the schema allows', async () => {
    const schema = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'specs', 'schema', 'fleet.schema.json'), 'utf8')) as { definitions: { amount: { oneOf: { maximum?: number }[] } } };
    expect(schema.definitions.amount.oneOf[0].maximum).toBe(ROLLOUT_AMOUNT_MAX);
  });

  // Every edge of an amount as written, under each key, on one line (`    maxUnavailable: VALUE`, line 9): a
  // diagnostic at the value's line and column, or none, never a crash. A count past the schema's 100000 said
  // "(0 or more)" as spec.invalid-value: a whole number of 0 or more was what had been written.
  const edges: [string, string | null, string?][] = [
    ['"25%"', null],
    ['25%', null],
    ['0%', null],
    ['100%', null],
    ['100000', null],
    ['0x10', null],
    ['1.0', null],
    ['"101%"', 'spec.invalid-value', '"101%"'],
    ['"1000%"', 'spec.invalid-value', '"1000%"'],
    ['"-5%"', 'spec.invalid-value', '"-5%"'],
    ['"25.5%"', 'spec.invalid-value', '"25.5%"'],
    ['" 25%"', 'spec.invalid-value', '" 25%"'],
    ['"05%"', 'spec.invalid-value', '"05%"'],
    ['"%"', 'spec.invalid-value', '"%"'],
    ['"1e2%"', 'spec.invalid-value', '"1e2%"'],
    ['"3"', 'spec.invalid-value', '"3"'],
    ['-1', 'spec.out-of-range', '-1'],
    ['100001', 'spec.out-of-range', '100001'],
    ['1e30', 'spec.out-of-range', '1e30'],
    ['99999999999999999999', 'spec.out-of-range', '99999999999999999999'],
    ['1.5', 'spec.wrong-type', '1.5'],
    ['.inf', 'spec.wrong-type', '.inf'],
    ['.nan', 'spec.wrong-type', '.nan'],
    ['true', 'spec.wrong-type', 'true'],
    ['null', 'spec.wrong-type', 'empty'],
    ['[1]', 'spec.wrong-type', 'a list'],
  ];
  const keys = ['maxUnavailable', 'maxSurge', 'failureThreshold'];
  // Settings that allow no progress are spec.rollout-invalid at the offending key; each told once, as written.
  // maxUnavailable 0 beside `maxSurge: ~` also said "maxSurge is not set", beside the schema's wrong-type of it.
  it.each([
    ['0', '0', [['spec.rollout-invalid', '10:15', 'rollout.maxUnavailable and rollout.maxSurge are both 0: no member']]],
    ['"0%"', '"0%"', [['spec.rollout-invalid', '10:15', 'rollout.maxUnavailable and rollout.maxSurge are both "0%": no member']]],
    ['0', '"0%"', [['spec.rollout-invalid', '10:15', 'rollout.maxUnavailable and rollout.maxSurge are 0 and "0%": no member']]],
    ['0', null, [['spec.rollout-invalid', '9:21', 'rollout.maxUnavailable is 0 and maxSurge is not set']]],
    ['0', '~', [['spec.wrong-type', '10:15', 'spec.rollout.maxSurge must be a whole number']]],
    ['0', '1', []],
    ['"1%"', '0', []],
  ] as [string, string | null, [string, string, string][]][])('maxUnavailable %s, maxSurge %s', async (mu, ms, want) => {
    const rollout = `  rollout:\n    maxUnavailable: ${mu}\n${ms === null ? '' : `    maxSurge: ${ms}\n`}`;
    const dir = await scratch({ 'stack.yaml': stackYaml(), 'specs/web.yaml': minimalFleet('web', rollout) });
    const r = await loadStack(dir, { env: {} });
    expect(r.diagnostics.map((d) => [d.code, `${d.line}:${d.col}`, d.detail.slice(0, want.find((w) => w[0] === d.code)?.[2].length ?? 0)])).toEqual(want);
  });

  // (failureThreshold 0% is spec.rollout-invalid: a rollout that would stop before its first member.)
  const cases = keys.flatMap((key) => edges.filter(([value]) => !(key === 'failureThreshold' && value === '0%')).map(([value, code, shown]) => ({ key, value, code, shown })));
  it.each(cases)('$key: $value', async ({ key, value, code, shown }) => {
    // The other two keys valid (1), so only the edge is told.
    const rollout = keys.map((k) => `    ${k}: ${k === key ? value : 1}`).join('\n');
    const dir = await scratch({ 'stack.yaml': stackYaml(), 'specs/web.yaml': minimalFleet('web', `  rollout:\n${rollout}\n`) });
    const r = await loadStack(dir, { env: {} });
    const line = 9 + keys.indexOf(key);
    const col = 4 + key.length + 3;
    const want = code === null ? [] : [[code, `${line}:${col}`, `spec.rollout.${key} must be a whole number of members (0 to 100000) or a percentage such as "25%" (0% to 100%), not ${shown}.`]];
    expect(r.diagnostics.map((d) => [d.code, `${d.line}:${d.col}`, d.detail])).toEqual(want);
  });
});

// stack.yaml a named pipe hung every command for ever (reading waited for a writer), and stack.yaml a link to
// /dev/zero took all the memory there was (10 GB after a minute, still reading; not run here for that reason).
// Neither is ever a file of a stack: refused as spec.read-error at the file, saying what it is.
describe('a stack file that is no regular file', () => {
  const cases: { name: string; make: (file: string) => Promise<() => void>; is: string }[] = [
    {
      name: 'a named pipe',
      make: async (file) => {
        execFileSync('mkfifo', [file]);
        // Opened for writing and closed: a read blocked on the pipe (the bug) sees its end, so the worker is not left hung.
        return () => {
          try {
            closeSync(openSync(file, constants.O_WRONLY | constants.O_NONBLOCK));
          } catch {
            // No reader: nothing to unblock.
          }
        };
      },
      is: 'a named pipe (FIFO)',
    },
    { name: 'a link to /dev/null', make: async (file) => (await symlink('/dev/null', file), () => {}), is: 'a device' },
    {
      name: 'a socket',
      make: async (file) => {
        const server = createServer();
        await new Promise<void>((r) => server.listen(file, r));
        return () => server.close();
      },
      is: 'a socket',
    },
  ];
  it.each(cases)('$name', async ({ make, is }) => {
    const dir = await scratch({});
    const file = join(dir, 'stack.yaml');
    const unblock = await make(file);
    try {
      const r = await loadStack(dir, { cwd: dir, env: {} });
      expect(r.stack).toBeUndefined();
      expect(r.diagnostics.map((d) => `${d.code} ${d.file}: ${d.detail}`)).toEqual([`spec.read-error stack.yaml: Cannot read stack.yaml: it is ${is}, not a regular file.`]);
    } finally {
      unblock();
    }
  }, 10_000);
});
