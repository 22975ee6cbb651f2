// Generated bad input through the real CLI (in-process, as a person runs it):
// mutated fleet spec files and stack.yaml given to `fleet validate` (and to
// `fleet plan` when validate takes them), and bad values of every numeric,
// duration and URL flag and of the variables that stand for them. Whatever
// the input, the CLI answers with diagnostics a person can act on: exit code
// 1 (0 for a mutation that keeps the file valid), no crash (cli.internal, a
// JavaScript error name, a stack trace), every error with a code and a place
// (file, line and column for a file's content), nothing written outside the
// stack's folder. The cases come from fixed seeds: the same every run.
// test/fuzz-plan.cli.test.ts does the same for saved plans.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { escapeUnseen } from '../engine/diags/index.ts';
import { runCli } from './helpers/cli.ts';
import { fleetYaml, judge, listTree, rng, stackYaml, type Outcome } from './helpers/fuzz.ts';

/** Values that are wrong for (nearly) every field, as YAML text. */
const BAD_VALUES: readonly string[] = [
  '-1',
  '-0',
  '1.5',
  '1e309',
  '-1e309',
  '99999999999999999999999',
  '9007199254740993',
  '.nan',
  '.inf',
  '-.inf',
  '0x10',
  '0o17',
  '~',
  'null',
  '""',
  "''",
  '[]',
  '{}',
  '[1, [2, [3]]]',
  '{ a: { b: { c: 1 } } }',
  'true',
  'no',
  '2020-01-01',
  '"\\0"',
  '"a\\0b"',
  '"\\u202Eevil"',
  '"\\e[31mred"',
  '"\\u0085"',
  '"\\uFEFF"',
  '"é"',
  '"💥"',
  '"../../outside"',
  '"/etc/passwd"',
  '"C:\\\\Windows"',
  '!!binary aGVsbG8=',
  '!!js/function "function(){}"',
  '!custom x',
  '!!str 5',
  '!!int "x"',
  '!!float "1"',
  '&a 1',
  '*undefined_alias',
  '"x".repeat',
  '__proto__',
  '{ __proto__: { polluted: 1 } }',
  '{ constructor: { prototype: { polluted: 1 } } }',
  '|\n    multi\n    line',
  `"${'x'.repeat(70_000)}"`,
  `${'9'.repeat(400)}`,
  `${'['.repeat(300)}${']'.repeat(300)}`,
  `${'{a: '.repeat(200)}1${'}'.repeat(200)}`,
];

/** Whole-file mutations of a YAML text (the fleet file or stack.yaml). */
const FILE_MUTATIONS: readonly { name: string; valid?: boolean | 'maybe'; apply: (text: string) => string | Buffer }[] = [
  { name: 'empty', apply: () => '' },
  { name: 'only a BOM', apply: () => '\uFEFF' },
  { name: 'BOM then the file', valid: true, apply: (t) => `\uFEFF${t}` },
  { name: 'CRLF line ends', valid: true, apply: (t) => t.replace(/\n/g, '\r\n') },
  { name: 'CR line ends', apply: (t) => t.replace(/\n/g, '\r') },
  { name: 'only ---', apply: () => '---\n' },
  { name: 'only a comment', apply: () => '# nothing\n' },
  { name: 'twice, as two documents', apply: (t) => `${t}---\n${t}` },
  { name: 'a scalar', apply: () => 'just a string\n' },
  { name: 'a list', apply: () => '- 1\n- 2\n' },
  { name: 'a NUL byte', apply: (t) => t.replace('kind', 'ki\0nd') },
  { name: 'a NUL at the end', apply: (t) => `${t}\0` },
  { name: 'invalid UTF-8', apply: (t) => Buffer.concat([Buffer.from(t.slice(0, 20)), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from(t.slice(20))]) },
  { name: 'UTF-16LE with a BOM', apply: (t) => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(t, 'utf16le')]) },
  { name: 'tabs for indentation', apply: (t) => t.replace(/^ {2}/gm, '\t') },
  { name: 'truncated in half', apply: (t) => t.slice(0, Math.floor(t.length / 2)) },
  { name: 'truncated mid-line', apply: (t) => t.slice(0, t.indexOf('\n', 60) - 3) },
  { name: 'a duplicate top-level key', apply: (t) => t.replace('kind:', 'kind: Fleet\nkind:') },
  { name: 'a duplicate nested key', apply: (t) => t.replace(/^( +)name: /m, '$1name: dup\n$1name: ') },
  {
    name: 'billion laughs',
    apply: (t) =>
      `${t}x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n${Array.from({ length: 9 }, (_, i) => `x${i + 1}: &a${i + 1} [${Array(10).fill(`*a${i}`).join(', ')}]`).join('\n')}\n`,
  },
  {
    name: 'billion laughs in a merge key',
    apply: (t) => `${t}base: &b0 { a: 1 }\n${Array.from({ length: 12 }, (_, i) => `m${i + 1}: &b${i + 1} { <<: [${Array(8).fill(`*b${i}`).join(', ')}] }`).join('\n')}\n`,
  },
  { name: 'a self-referencing alias', apply: (t) => `${t}loop: &l [*l]\n` },
  { name: 'deep nesting (flow)', apply: (t) => `${t}deep: ${'['.repeat(5000)}${']'.repeat(5000)}\n` },
  { name: 'deep nesting (block)', apply: (t) => `${t}deep:\n${Array.from({ length: 400 }, (_, i) => `${' '.repeat(2 * (i + 1))}k${i}:`).join('\n')} 1\n` },
  { name: 'a very long line', valid: true, apply: (t) => `# ${'x'.repeat(2_000_000)}\n${t}` },
  { name: 'a very long key', apply: (t) => `${t}${'k'.repeat(100_000)}: 1\n` },
  { name: 'many documents', apply: (t) => `${t}${'---\na: 1\n'.repeat(3000)}` },
  { name: 'a merge key of a scalar', apply: (t) => t.replace('metadata:\n', 'metadata:\n  <<: 5\n') },
  { name: '__proto__ key', apply: (t) => t.replace('metadata:\n', 'metadata:\n  __proto__: { polluted: 1 }\n') },
  { name: '__proto__ top-level', apply: (t) => `__proto__:\n  polluted: 1\n${t}` },
  { name: 'a complex key', apply: (t) => t.replace('kind:', '? [a, b]\n: 1\nkind:') },
  { name: 'an unknown tag on the document', apply: (t) => `--- !weird\n${t}` },
  { name: 'a %YAML directive of another version', apply: (t) => `%YAML 9.9\n---\n${t}` },
  { name: 'an unknown tag on a value', apply: (t) => t.replace(/(image|name): /, '$1: !custom ') },
  { name: 'a stray document end', valid: 'maybe', apply: (t) => `${t}...\n...\n` },
  { name: 'control characters', apply: (t) => t.replace('\n', '\n\u0001\u001b[2J\n') },
  { name: 'a lone surrogate escape', valid: 'maybe', apply: (t) => t.replace(/(owner|name): .*/, '$1: "\\uD800"') },
];

interface Leaf {
  /** Index of the line in the text. */
  line: number;
  key: string;
  indent: string;
  dash: boolean;
}

/** The `key: value` and `- value` lines of a block-style YAML text. */
function leaves(text: string): Leaf[] {
  const out: Leaf[] = [];
  text.split('\n').forEach((l, line) => {
    const kv = /^( *)([A-Za-z-]+): (.+)$/.exec(l);
    if (kv) out.push({ line, key: kv[2], indent: kv[1], dash: false });
    const item = /^( *)- (.+)$/.exec(l);
    if (item) out.push({ line, key: '-', indent: item[1], dash: true });
  });
  return out;
}

function setLeaf(text: string, leaf: Leaf, value: string): string {
  const lines = text.split('\n');
  const ind = `${leaf.indent}${leaf.dash ? '  ' : '  '}`;
  const v = value.replace(/\n/g, `\n${ind}`);
  lines[leaf.line] = leaf.dash ? `${leaf.indent}- ${v}` : `${leaf.indent}${leaf.key}: ${v}`;
  return lines.join('\n');
}

describe('generated bad spec files and stack files: diagnostics, never a crash', () => {
  let root: string;
  let stack: string;
  let cwd: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'fleet-fuzz-'));
    stack = join(root, 'stack');
    cwd = join(root, 'cwd');
    mkdirSync(cwd);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  /** The stack as it was, its record (made by the first plan) kept. */
  const reset = () => {
    for (const f of readdirSync(stack, { withFileTypes: true }).filter((e) => e.name !== '.fleet')) rmSync(join(stack, f.name), { recursive: true, force: true });
    mkdirSync(join(stack, 'specs'), { recursive: true });
    writeFileSync(join(stack, 'stack.yaml'), stackYaml());
    writeFileSync(join(stack, 'specs', 'web.yaml'), fleetYaml);
  };

  /**
   * `fleet validate` on the stack as `write` leaves it, in text or JSON; when
   * it is valid, `fleet plan` too. What is wrong with the runs, or nothing.
   */
  async function check(name: string, write: () => void, opts: { valid?: boolean | 'maybe'; json?: boolean }): Promise<Outcome[]> {
    reset();
    write();
    const found: Outcome[] = [];
    const before = listTree(stack, ['.fleet']);
    const r = await runCli(['validate', '--stack', stack, ...(opts.json ? ['--format', 'json'] : [])], { cwd });
    const bad = judge(name, r, opts);
    if (bad) found.push(bad);
    if (r.code === 0) {
      // Valid for validate: plan reads the same files, and must not fail in a way validate did not see.
      const p = await runCli(['plan', '--stack', stack], { cwd });
      const pb = judge(`${name} (plan)`, p, { valid: 'maybe' });
      if (pb) found.push(pb);
    }
    const after = listTree(stack, ['.fleet']);
    if (JSON.stringify(after) !== JSON.stringify(before)) found.push({ case: name, problem: `the stack folder changed: ${after.filter((f) => !before.includes(f)).join(', ')}` });
    if (readdirSync(root).sort().join() !== 'cwd,stack' || readdirSync(cwd).length) found.push({ case: name, problem: `written outside the stack: ${readdirSync(root).join()} / ${readdirSync(cwd).join()}` });
    return found;
  }

  beforeAll(() => {
    mkdirSync(stack);
    reset();
  });

  it.each([
    ['specs/web.yaml', fleetYaml],
    ['stack.yaml', stackYaml()],
  ])('%s: whole-file mutations (empty, BOM, CRLF, NUL, bad UTF-8, alias bombs, deep nesting, __proto__, …)', async (target, base) => {
    const found: Outcome[] = [];
    for (const m of FILE_MUTATIONS) {
      for (const json of [false, true]) found.push(...(await check(`${target}: ${m.name}${json ? ' (json)' : ''}`, () => writeFileSync(join(stack, target), m.apply(base)), { valid: m.valid, json })));
    }
    expect(found).toEqual([]);
  }, 60_000);

  it.each([
    ['specs/web.yaml', 1, fleetYaml],
    ['stack.yaml', 2, stackYaml()],
  ])('%s: every field given wrong values (seed %i)', async (target, seed, base) => {
    const found: Outcome[] = [];
    const random = rng(seed);
    let n = 0;
    for (const leaf of leaves(base)) {
      // Five of the bad values per field, drawn from the seed; some may be right for the field (a string).
      for (let k = 0; k < 5; k++, n++) {
        const value = BAD_VALUES[Math.floor(random() * BAD_VALUES.length)];
        found.push(...(await check(`${target}:${leaf.line + 1} ${leaf.key} = ${value.slice(0, 40)}`, () => writeFileSync(join(stack, target), setLeaf(base, leaf, value)), { json: random() < 0.5, valid: 'maybe' })));
      }
    }
    expect(n).toBeGreaterThan(90);
    expect(found).toEqual([]);
  }, 60_000);

  it('folders, links and globs where files are expected', async () => {
    const setStack = (f: (t: string) => string) => writeFileSync(join(stack, 'stack.yaml'), f(stackYaml()));
    const replace = (file: string, make: (path: string) => void) => () => {
      rmSync(join(stack, file), { recursive: true, force: true });
      make(join(stack, file));
    };
    const glob = (g: string) => () => setStack((t) => t.replace('"specs/*.yaml"', g));
    const cases: [string, () => void][] = [
      ['stack.yaml is a folder', replace('stack.yaml', (p) => mkdirSync(p))],
      ['stack.yaml is a link to nothing', replace('stack.yaml', (p) => symlinkSync(join(root, 'nothing'), p))],
      ['stack.yaml is a link loop', replace('stack.yaml', (p) => symlinkSync(p, p))],
      ['stack.yaml is /dev/null', replace('stack.yaml', (p) => symlinkSync('/dev/null', p))],
      ['the spec is a folder', replace('specs/web.yaml', (p) => mkdirSync(p))],
      ['the spec is a link to nothing', replace('specs/web.yaml', (p) => symlinkSync(join(root, 'nothing'), p))],
      ['the spec is a link loop', replace('specs/web.yaml', (p) => symlinkSync(p, p))],
      ['the spec is a link to /dev/zero', replace('specs/web.yaml', (p) => symlinkSync('/dev/zero', p))],
      ['the spec is a link to /etc/passwd', replace('specs/web.yaml', (p) => symlinkSync('/etc/passwd', p))],
      ['the specs folder is a file', replace('specs', (p) => writeFileSync(p, 'x'))],
      ['a link to the parent under a ** glob', () => (symlinkSync('..', join(stack, 'specs', 'up')), glob('"specs/**/*.yaml"')())],
      ['a glob up and out', glob('"../../../*.yaml"')],
      ['a glob with a NUL', glob('"specs/\\0*.yaml"')],
      ['a glob of nested braces', glob('"specs/{a,{b,{c,{d,{e,f}}}}}*.yaml"')],
      ['a glob of many stars', glob(`"specs/${'*a'.repeat(40)}*.yaml"`)],
      ['a glob of nested extglobs', glob(`"specs/${'+('.repeat(50)}a${')'.repeat(50)}.yaml"`)],
      ['a glob that is a folder', glob('"specs"')],
      ['a glob that is empty', glob('""')],
      ['a glob that is the stack file', glob('"stack.yaml"')],
      ['a glob into the record', glob('".fleet/**"')],
      ['the pack is the stack folder', () => setStack((t) => t.replace(/path: .*/, 'path: .'))],
      ['the pack is up and out', () => setStack((t) => t.replace(/path: .*/, 'path: ../../../../../../../..'))],
      ['the pack is /dev/null', () => setStack((t) => t.replace(/path: .*/, 'path: /dev/null'))],
      ['the record is a file', () => setStack((t) => t.replace('pglite://.fleet/record', 'pglite://stack.yaml'))],
      ['the authority CA is a folder', () => setStack((t) => t.replace('  apply:', '  authority:\n    address: https://127.0.0.1:1\n    caFile: .\n  apply:'))],
    ];
    const found: Outcome[] = [];
    for (const [name, write] of cases) found.push(...(await check(name, write, { valid: 'maybe' })));
    expect(found).toEqual([]);
  }, 60_000);
});

// Every numeric, duration and URL flag, and the variables that stand for
// them: a bad value is a cli.usage (or the service's configuration)
// diagnostic that names the flag or variable, before a record or a service
// is opened.
describe('bad values of flags and variables: named, refused before anything is opened', () => {
  let root: string;
  let stack: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'fleet-fuzz-flags-'));
    stack = join(root, 'stack');
    mkdirSync(join(stack, 'specs'), { recursive: true });
    writeFileSync(join(stack, 'stack.yaml'), stackYaml());
    writeFileSync(join(stack, 'specs', 'web.yaml'), fleetYaml);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const NUMBERS = ['0', '-1', 'abc', '1.5', '1e3', '0x10', ' 5', '99999999999999999999', 'Infinity', 'NaN', '١٢'];
  const URLS = ['ftp://x', 'http://', 'https://[::1', 'http://example.com:99999', 'not a url', 'pglite://', 'postgres://', 'postgres://[::1', 'javascript:alert(1)'];
  // Values a flag may take (1 for --parallelism) are left out where they are; each row: flag, command, values, what names it.
  const FLAGS: { args: (v: string) => string[]; env?: Record<string, string>; processEnv?: boolean; values: readonly string[]; names: string; skip?: readonly string[] }[] = [
    { args: (v) => ['apply', '--yes', '--parallelism', v], values: NUMBERS, names: '--parallelism' },
    { args: () => ['apply', '--yes'], env: { FLEET_PARALLELISM: '' }, values: NUMBERS, names: 'FLEET_PARALLELISM' },
    // Seconds may be decimal (0.5), and as many as one likes (the wait polls; no timer holds them).
    { args: (v) => ['apply', '--yes', '--lock-timeout', v], values: NUMBERS, names: '--lock-timeout', skip: ['0', '1.5', '99999999999999999999'] },
    { args: () => ['apply', '--yes'], env: { FLEET_LOCK_TIMEOUT: '' }, values: NUMBERS, names: 'FLEET_LOCK_TIMEOUT', skip: ['0', '1.5', '99999999999999999999'] },
    { args: (v) => ['history', '--limit', v], values: NUMBERS, names: '--limit' },
    { args: () => ['apply', '--yes'], env: { FLEET_RETRY_BUDGET_MS: '' }, values: NUMBERS, names: 'FLEET_RETRY_BUDGET_MS', skip: ['0'] },
    // Read from the process's environment where the record is opened, not the CLI's (the same in a real run).
    { args: () => ['plan'], env: { FLEET_RECORD_BUSY_TIMEOUT_MS: '' }, processEnv: true, values: NUMBERS, names: 'FLEET_RECORD_BUSY_TIMEOUT_MS', skip: ['0'] },
    { args: (v) => ['plan', '--record-url', v], values: URLS, names: '--record-url' },
    { args: () => ['state', 'list'], env: { FLEET_RECORD_URL: '' }, values: URLS, names: 'FLEET_RECORD_URL' },
    { args: (v) => ['serve', 'orchestrator', '--port', v], values: NUMBERS, names: '--port', skip: ['0'] },
    { args: (v) => ['serve', 'orchestrator', '--port', '0', '--replicas', v], values: NUMBERS, names: '--replicas' },
    { args: () => ['serve', 'orchestrator', '--port', '0'], env: { FLEET_AUTHORITY_REPLICAS: '' }, values: NUMBERS, names: 'FLEET_AUTHORITY_REPLICAS' },
    { args: (v) => ['serve', 'orchestrator', '--port', '0', '--drain-timeout', v], values: NUMBERS, names: '--drain-timeout', skip: ['0', '1.5'] },
    { args: () => ['serve', 'orchestrator', '--port', '0'], env: { FLEET_DRAIN_TIMEOUT: '' }, values: NUMBERS, names: 'FLEET_DRAIN_TIMEOUT', skip: ['0', '1.5'] },
    { args: (v) => ['serve', 'orchestrator', '--port', '0', '--log-level', v], values: ['loud', 'INFO ', '0', '\u001b[2J'], names: '--log-level' },
    { args: (v) => ['serve', 'dmz-client', '--data-center', 'miami', '--port', '0', '--authority', v], values: URLS, names: '--authority' },
    { args: (v) => ['ui', '--port', v], values: NUMBERS, names: '--port', skip: ['0'] },
  ];

  it.each(FLAGS.map((f) => [f.names, f.args('V').join(' '), f] as const))('%s (fleet %s)', async (_names, _shown, f) => {
    const found: Outcome[] = [];
    for (const value of f.values.filter((v) => !f.skip?.includes(v))) {
      const name = `${f.names}=${JSON.stringify(value)}`;
      // The variables a bad value is read from: each row's own (set to the value), no token for a service to start with.
      const env = Object.fromEntries(Object.keys(f.env ?? {}).map((k) => [k, value]));
      if (f.processEnv) for (const k of Object.keys(env)) vi.stubEnv(k, value);
      const r = await runCli([...f.args(value), '--stack', stack], { cwd: root, env: { FLEET_DMZ_TOKEN_MIAMI: '', FLEET_CLI_TOKEN_MIAMI: '', ...env } });
      const bad = judge(name, r, { located: false });
      if (bad) found.push(bad);
      else if (!escapeUnseen(r.stderr).includes(f.names)) found.push({ case: name, problem: `the diagnostic does not name ${f.names}`, stderr: r.stderr.slice(0, 1000) });
      // Refused before the record (or a data center) is opened: the stack has none yet.
      if (readdirSync(stack).includes('.fleet')) {
        found.push({ case: name, problem: 'a record or state was created' });
        rmSync(join(stack, '.fleet'), { recursive: true, force: true });
      }
      if (readdirSync(root).sort().join() !== 'stack') found.push({ case: name, problem: `written outside the stack: ${readdirSync(root).join()}` });
      vi.unstubAllEnvs();
    }
    expect(found).toEqual([]);
  }, 30_000);
});
