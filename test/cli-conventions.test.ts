// The conventions platform teams expect of a CLI: --version from
// package.json, --no-color, options from environment variables, typo hints,
// shell completion, one warning said once, and the example files kept out
// of the test suite's way.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fg from 'fast-glob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { REPO, tempStack } from './helpers/stack.ts';

const example = 'test/fixtures/example-stack';

describe('fleet --version', () => {
  it('prints the version of package.json', async () => {
    const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) expect(await runCli([flag], { cwd: REPO })).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
  });
});

describe('--no-color', () => {
  it('takes the colour out of a plan on a terminal', async () => {
    const env = { FLEET_RECORD_URL: `pglite://${await mkdtemp(join(tmpdir(), 'fleet-nocolor-'))}` };
    const coloured = await runCli(['plan', '--stack', example], { cwd: REPO, tty: true, env });
    expect(coloured.code, coloured.stderr).toBe(0);
    expect(coloured.stdout).toContain('\x1b[');
    for (const args of [['--no-color', 'plan', '--stack', example], ['plan', '--stack', example, '--no-color']]) {
      const plain = await runCli(args, { cwd: REPO, tty: true, env });
      expect(plain.code).toBe(0);
      expect(plain.stdout).not.toContain('\x1b[');
      expect(plain.stdout).toContain('Plan: ');
    }
  });
});

// `fleet apply --yes | head -1`: the CLI died of an unhandled EPIPE (a stack trace, exit 1) once the reader
// had gone, at the end of the apply or in the middle of it.
describe('a reader of stdout that goes away', () => {
  it('leaves the apply to finish: exit 0, no EPIPE, every VM created', async () => {
    const stack = await tempStack();
    try {
      await stack.spec('web', 'apiVersion: fleet/v1\nkind: Fleet\nmetadata: { name: web, owner: team-a }\nspec:\n  count: 6\n  image: ubuntu-22.04\n  size: { cpu: 1, memoryGiB: 2, diskGiB: 10 }\n');
      const child = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), 'apply', '--yes', '--stack', stack.dir], { cwd: stack.dir, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      // Like `head -1`: read the first chunk, then close the pipe.
      child.stdout.once('data', () => child.stdout.destroy());
      const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
      expect(stderr).not.toContain('EPIPE');
      expect(code).toBe(0);
      const list = await runCli(['state', 'list', '--stack', stack.dir, '--format', 'json'], { cwd: stack.dir });
      expect((JSON.parse(list.stdout) as { vms: { state: string }[] }).vms.map((v) => v.state)).toEqual(Array(6).fill('Running'));
    } finally {
      await stack.remove();
    }
  });
});

describe('options from environment variables', () => {
  // Each variable reaches its option: a bad value is reported under the option's name (and the variable it came from), and a flag given wins.
  it.each([
    { env: { FLEET_PARALLELISM: '0' }, args: ['apply', '--yes', '--stack', example], message: '--parallelism (from FLEET_PARALLELISM) takes a whole number from 1 to 1000, not "0"' },
    { env: { FLEET_LOCK_TIMEOUT: 'soon' }, args: ['apply', '--yes', '--stack', example], message: '--lock-timeout (from FLEET_LOCK_TIMEOUT) takes a number of seconds (0 or more), not "soon"' },
    { env: { FLEET_RECORD_URL: 'postgres://' }, args: ['state', 'list', '--stack', example], message: 'FLEET_RECORD_URL is "postgres://"' },
    { env: { FLEET_STACK: 'no/such/stack' }, args: ['validate'], message: 'no/such/stack/stack.yaml' },
  ])('$env', async ({ env, args, message }) => {
    const r = await runCli(args, { cwd: REPO, env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(message);
  });

  it('a flag wins over its variable', async () => {
    const r = await runCli(['apply', '--yes', '--stack', example, '--parallelism', 'x'], { cwd: REPO, env: { FLEET_PARALLELISM: '0' } });
    expect(r.stderr).toContain('not "x"');
    const url = await runCli(['state', 'list', '--stack', example, '--record-url', 'postgres://', '--format', 'json'], { cwd: REPO, env: { FLEET_RECORD_URL: '' } });
    expect(url.code).toBe(1);
    expect(JSON.parse(url.stdout)).toMatchObject({ diagnostics: [{ code: 'spec.record-url' }] });
  });

  // A bad --record-url was reported as FLEET_RECORD_URL, a variable the user never set.
  it.each([
    { env: {}, args: ['--record-url', 'bogus'], named: '--record-url is "bogus"' },
    { env: { FLEET_RECORD_URL: 'pglite://.fleet/r' }, args: ['--record-url', 'bogus'], named: '--record-url is "bogus"' },
    { env: { FLEET_RECORD_URL: 'bogus' }, args: [], named: 'FLEET_RECORD_URL is "bogus"' },
  ])('a bad record URL is named where it came from: $args $env', async ({ env, args, named }) => {
    const r = await runCli(['validate', '--stack', example, ...args], { cwd: REPO, env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(named);
  });

  // `--record-url ""` (an unset shell variable) was taken as not given: the stack's `record` was used, silently; `--target ""`
  // planned "no fleet named  ", `--out ""` was "cannot write : it is a folder". An empty variable still means unset.
  it.each([
    { args: ['validate', '--stack', example, '--record-url', ''], flag: "'--record-url <url>'", help: 'fleet validate --help' },
    { args: ['validate', '--stack', example, '--record-url='], flag: "'--record-url <url>'", help: 'fleet validate --help' },
    { args: ['plan', '--stack', example, '--record-url', '', '--format', 'json'], flag: "'--record-url <url>'", help: 'fleet plan --help', json: true },
    { args: ['validate', '--stack', ''], flag: "'--stack <dir>'", help: 'fleet validate --help' },
    { args: ['plan', '--stack', example, '--out', ''], flag: "'--out <file>'", help: 'fleet plan --help' },
    { args: ['plan', '--stack', example, '--target', 'web', '--target', ''], flag: "'--target <fleet>'", help: 'fleet plan --help' },
    { args: ['apply', '--stack', example, '--exclude', ''], flag: "'--exclude <fleet>'", help: 'fleet apply --help' },
    { args: ['state', 'list', '--stack', example, '--record-url', ''], flag: "'--record-url <url>'", help: 'fleet state list --help' },
  ])('an empty value given to an option is a usage error: $args', async ({ args, flag, help, json }) => {
    const r = await runCli(args, { cwd: REPO, env: { FLEET_RECORD_URL: 'bogus' } });
    expect(r.code).toBe(1);
    const detail = `Option ${flag} argument is empty: give it a value (an unset shell variable?), or leave the option out. Run \`${help}\` for the usage.`;
    if (json) expect(JSON.parse(r.stdout)).toMatchObject({ diagnostics: [{ code: 'cli.usage', detail }] });
    else expect(r.stderr).toBe(`error[cli.usage]: Invalid command line\n  ${detail}\n`);
  });

  // (An empty FLEET_STACK: validate.test.ts.)
  it('an empty FLEET_RECORD_URL is taken as unset', async () => {
    const r = await runCli(['validate', '--stack', example], { cwd: REPO, env: { FLEET_RECORD_URL: '' } });
    expect(r).toMatchObject({ code: 0, stderr: '' });
  });

  it('the CLI marks a --record-url value with the variable the loader reads', async () => {
    const { RECORD_URL_FLAG_ENV } = await import('../engine/cli/options.ts');
    const loader = await import('../engine/spec/loader.ts');
    expect(RECORD_URL_FLAG_ENV).toBe(loader.RECORD_URL_FLAG_ENV);
  });
});

// The help named was the top command's (`fleet state --help`) for an error in `fleet state rm`.
describe('a usage error names the help of the command it is in', () => {
  it.each([
    { args: ['plan', '--bogus'], help: '`fleet plan --help`' },
    { args: ['state', 'rm', '--bogus'], help: '`fleet state rm --help`' },
    { args: ['state', 'list', '--stack', 'x', '--bogus'], help: '`fleet state list --help`' },
    { args: ['policy', 'graph', '--bogus'], help: '`fleet policy graph --help`' },
    { args: ['serve', 'dmz-client', '--bogus'], help: '`fleet serve dmz-client --help`' },
    { args: ['--bogus'], help: '`fleet --help`' },
  ])('$args', async ({ args, help }) => {
    const r = await runCli(args, { cwd: REPO });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`Run ${help} for the usage.`);
  });
});

describe('typo hints', () => {
  it.each([
    { args: ['plna'], hint: '(Did you mean plan?)' },
    { args: ['valdiate'], hint: '(Did you mean validate?)' },
    { args: ['plan', '--stak', 'x'], hint: '(Did you mean --stack?)' },
    { args: ['refresh', '--chekc'], hint: '(Did you mean --check?)' },
    { args: ['state', 'lsit'], hint: '(Did you mean list?)' },
  ])('$args', async ({ args, hint }) => {
    const r = await runCli(args, { cwd: REPO });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error\[cli\.usage\]: Invalid command line\n {2}Unknown (command|option) /);
    expect(r.stderr).toContain(hint);
    expect(r.stderr).toContain('--help` for the usage.');
  });

  // An option in the wrong place was only "Unknown option '--stack'", as if no command took it.
  it.each([
    { args: ['--stack', 'x', 'validate'], says: 'Options go after the command: `fleet validate --stack x`. Run `fleet validate --help` for the usage.' },
    { args: ['--format', 'json', 'state', 'list'], says: 'Options go after the command: `fleet state list --format json`.' },
    { args: ['state', '--fleet', 'web', 'list'], says: 'Options go after the command: `fleet state list --fleet web`. Run `fleet state list --help` for the usage.' },
    { args: ['--yes', 'apply'], says: 'Options go after the command: `fleet apply --yes`.' },
    { args: ['plan', '--parallelism', '3'], says: '--parallelism is an option of `fleet apply`, not of this one. Run `fleet plan --help` for the usage.' },
    { args: ['validate', '--data-center', 'miami'], says: '--data-center is an option of `fleet import`, `fleet serve dmz-client`, not of this one.' },
  ])('says where an option goes: $args', async ({ args, says }) => {
    const r = await runCli(args, { cwd: REPO });
    expect(r.code).toBe(1);
    const detail = r.stdout ? (JSON.parse(r.stdout) as { diagnostics: { detail: string }[] }).diagnostics[0].detail : r.stderr;
    expect(detail).toContain(says);
  });

  it('adds nothing for an option no command takes', async () => {
    const r = await runCli(['plan', '--frobnicate'], { cwd: REPO });
    expect(r.stderr).toBe("error[cli.usage]: Invalid command line\n  Unknown option '--frobnicate'. Run `fleet plan --help` for the usage.\n");
  });

  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-typo-'));
    await mkdir(join(dir, 'specs'));
    const stack = (await readFile(join(REPO, example, 'stack.yaml'), 'utf8')).replace('path: ../../../policies/default', `path: ${join(REPO, 'policies/default')}`);
    await writeFile(join(dir, 'stack.yaml'), stack);
    const web = await readFile(join(REPO, example, 'specs/web.yaml'), 'utf8');
    await writeFile(join(dir, 'specs/web.yaml'), web.replace(/^ {2}count:/m, '  cuont:'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('names the spec key meant for a swapped pair of letters (cuont -> count)', async () => {
    const r = await runCli(['validate', '--stack', dir, '--format', 'json'], { cwd: dir });
    expect(r.code).toBe(1);
    const d = (JSON.parse(r.stdout) as { diagnostics: { code: string; detail: string }[] }).diagnostics.find((x) => x.code === 'spec.unknown-key');
    expect(d?.detail).toBe('Key "cuont" is not allowed in spec (did you mean "count"?).');
  });
});

describe('fleet completion', () => {
  async function complete(words: string[]): Promise<string[]> {
    const script = (await runCli(['completion', 'bash'], { cwd: REPO })).stdout;
    const probe = `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _fleet; printf '%s\\n' "\${COMPREPLY[@]}"`;
    return new Promise((resolve, reject) => {
      const child = spawn('bash', ['--noprofile', '--norc', '-c', probe], { cwd: REPO });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.on('error', reject);
      child.on('close', () => resolve(out.split('\n').filter(Boolean)));
    });
  }

  it.each([
    { words: ['fleet', 'pl'], expected: ['plan'] },
    { words: ['fleet', 'state', ''], expected: ['list', 'rm', 'show', '--help'] },
    { words: ['fleet', 'refresh', '--ch'], expected: ['--check'] },
    { words: ['fleet', 'plan', '--format', ''], expected: ['text', 'json', 'markdown'] },
    // The argument's choices too: it offered only --help.
    { words: ['fleet', 'completion', ''], expected: ['bash', 'zsh', 'fish', '--help'] },
    { words: ['fleet', 'completion', 'f'], expected: ['fish'] },
    { words: ['fleet', 'apply', '--lock'], expected: ['--lock-timeout'] },
  ])('bash completes $words', async ({ words, expected }) => {
    expect(await complete(words)).toEqual(expected);
  });

  it('zsh and fish scripts name every command; an unknown shell is a usage error', async () => {
    for (const shell of ['zsh', 'fish']) {
      const r = await runCli(['completion', shell], { cwd: REPO });
      expect(r.code).toBe(0);
      for (const c of ['validate', 'plan', 'apply', 'refresh', 'state', 'history', 'policy', 'unlock', 'serve', 'completion']) expect(r.stdout).toContain(c);
    }
    expect((await runCli(['completion', 'fish'], { cwd: REPO })).stdout).toContain("-l check -d 'report the drift only: write nothing to the record'");
    expect((await runCli(['completion', 'fish'], { cwd: REPO })).stdout).toContain("complete -c fleet -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'");
    const bad = await runCli(['completion', 'tcsh'], { cwd: REPO });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('Allowed choices are bash, zsh, fish');
    // A likely typo of a choice is named, as commander names a command's (`fleet plna`: did you mean plan?).
    expect((await runCli(['completion', 'bsh'], { cwd: REPO })).stderr).toContain('Allowed choices are bash, zsh, fish (did you mean "bash"?). Run `fleet completion --help`');
    expect((await runCli(['plan', '--format', 'jsn'], { cwd: REPO })).stderr).toContain('Allowed choices are text, json, markdown (did you mean "json"?). Run `fleet plan --help`');
    expect(bad.stderr).not.toContain('did you mean');
  });
});

describe('spec.sim-ignored', () => {
  const stack = 'test/fixtures/spec/40-sim-ignored-warning';
  it('goes with a refused import too (a failing import dropped the loader warnings)', async () => {
    const env = { FLEET_RECORD_URL: `pglite://${await mkdtemp(join(tmpdir(), 'fleet-sim-ignored-'))}` };
    const r = await runCli(['import', 'no-such-fleet/0', 'i-0123', '--stack', stack], { cwd: REPO, env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('apply.import-refused');
    expect(r.stderr).toContain('warning[spec.sim-ignored]');
    const json = await runCli(['import', 'no-such-fleet/0', 'i-0123', '--stack', stack, '--format', 'json'], { cwd: REPO, env });
    expect(JSON.parse(json.stdout).diagnostics.map((d: { code: string }) => d.code)).toEqual(expect.arrayContaining(['apply.import-refused', 'spec.sim-ignored']));
  });

  it('says what the sim settings of a URL data center are for, once per command', async () => {
    const env = { FLEET_RECORD_URL: `pglite://${await mkdtemp(join(tmpdir(), 'fleet-sim-ignored-'))}` };
    for (const args of [['validate'], ['plan']]) {
      const r = await runCli([...args, '--stack', stack], { cwd: REPO, env });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr.split('warning[spec.sim-ignored]').length - 1).toBe(1);
      expect(r.stderr).toContain('plan and apply start no simulator for it, so its sim settings are used only by `fleet serve dmz-client --data-center richmond` with the sim driver');
    }
  });
});

describe('the example files are the users\' to edit', () => {
  // Tests read test/fixtures/example-stack (a copy), never specs/examples or stacks/local, so editing the examples never breaks the suite.
  // Allowed: the examples' own validation, and tests naming the paths without reading the repository's files there.
  const allowed: Record<string, string> = {
    'engine/spec/examples.test.ts': "the examples' own validation (modeline, schema)",
    'engine/cli/commands/validate.test.ts': 'asserts the default --stack path under a folder that has no stacks/local',
    'test/workflows.e2e.test.ts': 'writes the fixture copies to specs/examples of a temporary workspace',
    'test/cli-conventions.test.ts': 'this test',
    'engine/cli/commands/state.test.ts': 'writes its own stacks/local in a temporary folder (the default --stack)',
    'test/install.e2e.test.ts': 'writes its own stacks/local in a temporary folder (the default --stack of the installed fleet)',
  };
  it('no other test file names specs/examples or stacks/local', async () => {
    const files = await fg(['**/*.test.ts', 'test/helpers/*.ts', 'test/fixtures/**/*.ts'], { cwd: REPO, ignore: ['**/node_modules/**', '.ci/**'] });
    expect(files.length).toBeGreaterThan(20);
    const offenders: string[] = [];
    for (const f of files) {
      if (f in allowed) continue;
      const text = await readFile(join(REPO, f), 'utf8');
      if (/specs\/examples|stacks\/local|'stacks', 'local'/.test(text)) offenders.push(f);
    }
    expect(offenders).toEqual([]);
  });
});
