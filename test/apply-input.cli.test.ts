// `fleet apply PLANFILE` and `fleet plan --out` on input a person gets wrong:
// flags that do not go with a saved plan, plan files that are not JSON, an
// --out file that already exists. Everything here is refused (or written)
// before a record or a data center is touched, so most cases need no stack.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { PLAN_FILE_MAX_BYTES, readPlanFile } from '../engine/cli/commands/apply.ts';
import type { CliIO } from '../engine/cli/io.ts';
import { FleetError } from '../engine/diags/index.ts';
import { fleetYaml, useTempStack } from './helpers/stack.ts';
import { fleetYaml as fuzzFleetYaml, stackYaml as fuzzStackYaml } from './helpers/fuzz.ts';

describe('fleet apply PLANFILE: input checked before anything is opened', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'fleet-apply-input-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  // A saved plan is applied as it was made. These flags used to be ignored
  // without a word: `fleet apply plan.json --target web` applied every fleet
  // of the plan.
  it.each([
    { flags: ['--target', 'web'], named: '--target' },
    { flags: ['--exclude', 'batch'], named: '--exclude' },
    { flags: ['--allow-destroy', 'web'], named: '--allow-destroy' },
    { flags: ['--replace', 'web/0'], named: '--replace' },
    { flags: ['--target', 'web', '--replace', 'web/0'], named: '--target, --replace' },
  ])('$named with a plan file is a usage error, before the file is read', async ({ flags, named }) => {
    const r = await runCli(['apply', join(tmp, 'no-such-plan.json'), '--stack', join(tmp, 'no-stack'), ...flags]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error\[cli\.usage\]: Invalid command line\n/);
    expect(r.stderr).toContain(`${named} shape`);
    expect(r.stderr).toContain('is applied exactly as it was made');
    expect(r.stderr).not.toContain('apply.plan-file');
  });

  // The refusal named only Node's code (EISDIR, ENOENT).
  it.each([
    { name: 'a folder', path: () => tmp, says: 'it is a folder, not a file (EISDIR)' },
    { name: 'a missing file', path: () => join(tmp, 'gone.json'), says: 'no such file (ENOENT)' },
  ])('a plan file that is $name is refused in words', async ({ path, says }) => {
    const r = await runCli(['apply', path(), '--stack', join(tmp, 'no-stack')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('apply.plan-file');
    expect(r.stderr).toContain(says);
  });

  // A missing plan file said only ENOENT: now what PLANFILE is, and for a fleet's name given as one (`fleet apply
  // web`), the --target it meant.
  it.each([
    { arg: 'web', says: 'Cannot read web: no such file (ENOENT). PLANFILE is a plan saved with `fleet plan --out FILE`; to apply fleet web alone, give it with --target: `fleet apply --target web`.' },
    { arg: 'gone.json', says: 'Cannot read gone.json: no such file (ENOENT). PLANFILE is a plan saved with `fleet plan --out gone.json`; without one, `fleet apply` plans afresh.' },
  ])('a missing plan file $arg says what PLANFILE is', async ({ arg, says }) => {
    const r = await runCli(['apply', arg, '--stack', join(tmp, 'no-stack')], { cwd: tmp });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(says);
  });

  // The pull-request comment saved as the plan said "not JSON: Unexpected token '<'" and to plan again.
  it("a plan's markdown given as the plan file is named for what it is", async () => {
    const md = join(tmp, 'plan.md');
    writeFileSync(md, '<!-- fleet-plan stack=local -->\n## Plan for stack local\n');
    const r = await runCli(['apply', md, '--stack', join(tmp, 'no-stack')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is the markdown of `fleet plan --format markdown` (the pull-request comment), not a plan file; write one with `fleet plan --out FILE`');
  });

  it('--format json: the refusal is a diagnostic event on stdout', async () => {
    const r = await runCli(['apply', join(tmp, 'plan.json'), '--target', 'web', '--format', 'json', '--stack', join(tmp, 'no-stack')]);
    expect(r.code).toBe(1);
    expect(r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; code: string })).toMatchObject([{ type: 'diagnostic', code: 'cli.usage' }]);
  });
});

// A saved plan is read with a bound (PLAN_FILE_MAX_BYTES). A plan file that was /dev/zero read ~640 MB, then failed
// with "Invalid string length" naming neither the file nor why; a huge regular file was read whole before anything
// was said.
describe('fleet apply PLANFILE: a file past the most a plan can be', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'fleet-apply-bound-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const cli: CliIO = { stdout: new PassThrough(), stderr: new PassThrough(), stdin: new PassThrough(), env: {}, cwd: '/' };
  const refusal = async (read: Promise<unknown>) => {
    const err = await read.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FleetError);
    return (err as FleetError).diagnostics;
  };

  // Sparse: no disk used. Refused by its size before a byte of it is read.
  it('a regular file over the bound is refused by its size, naming the file and the bound', async () => {
    const big = join(tmp, 'big.json');
    writeFileSync(big, '');
    truncateSync(big, 256 * 1024 * 1024 + 1);
    const r = await runCli(['apply', big, '--stack', join(tmp, 'no-stack')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error[apply.plan-file]');
    expect(r.stderr).toContain(`${big} is over 256 MiB, the most of a plan file \`fleet apply\` reads`);
    expect(r.stderr).not.toContain('cli.internal');
    expect(PLAN_FILE_MAX_BYTES).toBe(256 * 1024 * 1024);
  });

  // A pipe never says how long it is: it is read until it has given more than the bound. The stream here is bounded
  // (64 MiB) so that code reading without a bound would not eat memory without end; the bound is set small.
  it('an endless pipe is refused once it gives more than the bound', async () => {
    const fifo = join(tmp, 'zero.fifo');
    execFileSync('mkfifo', [fifo]);
    const feed = spawn('sh', ['-c', 'exec head -c 67108864 /dev/zero > "$1"', 'sh', fifo], { stdio: 'ignore' });
    try {
      const diags = await refusal(readPlanFile(cli, fifo, 4096));
      expect(diags).toMatchObject([{ code: 'apply.plan-file', file: fifo }]);
      expect(diags[0]!.detail).toContain(`${fifo} is over 4096 bytes, the most of a plan file`);
    } finally {
      feed.kill();
    }
  });

  // \`fleet apply <(cat plan.json)\`: a pipe within the bound is read whole (here it is no plan: the check after reading says so).
  it('a pipe within the bound is read and checked as a plan', async () => {
    const fifo = join(tmp, 'small.fifo');
    execFileSync('mkfifo', [fifo]);
    const feed = spawn('sh', ['-c', 'printf %s "$2" > "$1"', 'sh', fifo, '{"formatVersion": "2"}'], { stdio: 'ignore' });
    try {
      const diags = await refusal(readPlanFile(cli, fifo, 4096));
      expect(diags.length).toBeGreaterThan(0);
      for (const d of diags) expect(d.detail).not.toContain('the most of a plan file');
    } finally {
      feed.kill();
    }
  });
});

// commander keeps the last --format given; the usage error of a bad command
// line was printed in the form of the first one (`--format text --format
// json --bogus` gave text on stderr to a caller reading JSON on stdout).
describe('a usage error is printed in the --format that wins: the last one given', () => {
  it.each([
    { args: ['validate', '--format', 'text', '--format', 'json', '--bogus'], json: true },
    { args: ['plan', '--format=text', '--format=json', '--bogus'], json: true },
    { args: ['plan', '--format', 'json', '--format', 'text', '--bogus'], json: false },
  ])('$args', async ({ args, json }) => {
    const r = await runCli(args);
    expect(r.code).toBe(1);
    if (json) {
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout)).toMatchObject({ diagnostics: [{ code: 'cli.usage' }] });
    } else {
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^error\[cli\.usage\]/);
    }
  });

  it('fleet apply: as diagnostic events', async () => {
    const r = await runCli(['apply', '--format', 'text', '--format', 'json', '--bogus']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ type: 'diagnostic', code: 'cli.usage' });
  });
});

// FLEET_PARALLELISM=abc was reported as `--parallelism takes a whole number
// ..., not "abc"` to someone who never typed --parallelism.
describe('a bad --parallelism or --lock-timeout names where it came from', () => {
  it.each([
    { args: ['--parallelism', '0'], env: {}, says: '--parallelism takes a whole number from 1 to 1000, not "0".' },
    { args: [], env: { FLEET_PARALLELISM: 'abc' }, says: '--parallelism (from FLEET_PARALLELISM) takes a whole number from 1 to 1000, not "abc".' },
    // Above 1000 every member failed at its DMZ client (400: lane/width must be <= 1000) after the plan was shown.
    { args: ['--parallelism', '1001'], env: {}, says: '--parallelism takes a whole number from 1 to 1000, not "1001".' },
    { args: ['--parallelism', '1e9'], env: {}, says: '--parallelism takes a whole number from 1 to 1000, not "1e9".' },
    // Number() read 0x10 as 16, 1e2 as 100 and " 5" as 5: decimal digits only.
    { args: ['--parallelism', '0x10'], env: {}, says: '--parallelism takes a whole number from 1 to 1000, not "0x10".' },
    { args: ['--parallelism', '1e2'], env: {}, says: '--parallelism takes a whole number from 1 to 1000, not "1e2".' },
    { args: ['--parallelism', ' 5'], env: {}, says: '--parallelism takes a whole number from 1 to 1000, not " 5".' },
    { args: ['--lock-timeout', '0x10'], env: {}, says: '--lock-timeout takes a number of seconds (0 or more), not "0x10".' },
    // An empty value given to any option is a usage error (engine/cli/options.ts rejectEmptyValues).
    { args: ['--lock-timeout', ''], env: {}, says: "Option '--lock-timeout <seconds>' argument is empty: give it a value (an unset shell variable?), or leave the option out. Run `fleet apply --help` for the usage." },
    { args: ['--lock-timeout', '-1'], env: {}, says: '--lock-timeout takes a number of seconds (0 or more), not "-1".' },
    { args: [], env: { FLEET_LOCK_TIMEOUT: '-5' }, says: '--lock-timeout (from FLEET_LOCK_TIMEOUT) takes a number of seconds (0 or more), not "-5".' },
    // A flag given wins over its variable, bad or not.
    { args: ['--parallelism', '0'], env: { FLEET_PARALLELISM: '4' }, says: '--parallelism takes a whole number from 1 to 1000, not "0".' },
  ])('$args $env', async ({ args, env, says }) => {
    const r = await runCli(['apply', '--stack', '/nonexistent/stack', ...args], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`error[cli.usage]: Invalid command line\n  ${says}\n`);
  });
});

// FLEET_RETRY_BUDGET_MS=5s (or 30000ms) was ignored without a word: the
// apply kept the 60 s default its user meant to shorten.
describe('a bad FLEET_RETRY_BUDGET_MS is refused before the record is opened', () => {
  const stack = useTempStack();
  beforeAll(() => stack.spec('web', fleetYaml('web', { count: 1 })));

  it.each([
    { command: ['apply', '--yes'], value: '5s' },
    { command: ['apply', '--yes'], value: '30000ms' },
    { command: ['apply', '--yes'], value: '-1' },
    { command: ['apply', '--yes'], value: ' 500' },
    { command: ['refresh'], value: 'abc' },
    { command: ['plan', '--refresh'], value: '1e3' },
    { command: ['import', 'web/0', 'sim-miami-x'], value: 'soon' },
  ])('$command FLEET_RETRY_BUDGET_MS=$value', async ({ command, value }) => {
    const r = await runCli([...command, '--stack', stack.dir], { env: { FLEET_RETRY_BUDGET_MS: value } });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`error[cli.usage]: Invalid command line\n  FLEET_RETRY_BUDGET_MS takes a whole number of milliseconds (0 or more; default 60000), not ${JSON.stringify(value)}.\n`);
    expect(existsSync(join(stack.dir, '.fleet', 'record'))).toBe(false);
  });

  it('a whole number of milliseconds, or an empty value, is taken', async () => {
    for (const value of ['', '2000']) {
      const r = await runCli(['apply', '--yes', '--stack', stack.dir], { env: { FLEET_RETRY_BUDGET_MS: value } });
      expect(r.stderr).not.toContain('FLEET_RETRY_BUDGET_MS');
      expect(r.code).toBe(0);
    }
  });
});

// A plan file of another stack was refused with no hint of what to do
// (`plan.json was made for stack a, not b.`); it was never tested.
describe('a plan file of another stack', () => {
  const made = useTempStack({ name: 'made-here' });
  const other = useTempStack({ name: 'applied-here' });
  beforeAll(async () => {
    await made.spec('web', fleetYaml('web', { count: 1 }));
    await other.spec('web', fleetYaml('web', { count: 1 }));
  });

  it('is refused as apply.plan-stack, naming both stacks and what to do', async () => {
    const file = join(made.dir, 'plan.json');
    expect((await made.fleet('plan', '--out', file)).code).toBe(0);
    const r = await other.fleet('apply', file);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `error[apply.plan-stack]: Plan made for another stack\n  at ${file}\n  ${file} was made for stack made-here, not for stack applied-here (--stack ${other.dir}). Apply it with the --stack of stack made-here, or make a plan for this stack with \`fleet plan --out\`.\n`,
    );
    // Refused before the stack's record is opened: this fresh stack's was created, then the plan refused.
    expect(existsSync(join(other.dir, '.fleet'))).toBe(false);
  });
});

// A plan of a stack of the same name but another record, applied to a stack that has no record yet: the record was
// created (and the sim's state with it), then the plan refused as foreign. A saved plan needs the record it was made
// against (`fleet plan --out` creates it), so none is created.
describe('a plan file on a stack without a record', () => {
  const made = useTempStack({ name: 'twin' });
  const fresh = useTempStack({ name: 'twin' });
  beforeAll(async () => {
    await made.spec('web', fleetYaml('web', { count: 1 }));
    await fresh.spec('web', fleetYaml('web', { count: 1 }));
  });

  it('is refused as apply.plan-foreign, and nothing is created', async () => {
    const file = join(made.dir, 'plan.json');
    expect((await made.fleet('plan', '--out', file)).code).toBe(0);
    const r = await fresh.fleet('apply', '--yes', file);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error[apply.plan-foreign]');
    expect(r.stderr).toContain(`${file} was made against a record this stack does not have (there is no record at pglite://${join(fresh.dir, '.fleet', 'record')}`);
    expect(r.stderr).toContain('Nothing was created; make a plan for this stack with `fleet plan --out` and apply that.');
    expect(existsSync(join(fresh.dir, '.fleet'))).toBe(false);
    // Its own plan applies: the record is created by the plan, as before.
    const own = join(fresh.dir, 'own.json');
    expect((await fresh.fleet('plan', '--out', own)).code).toBe(0);
    expect((await fresh.fleet('apply', '--yes', own)).code).toBe(0);
  });
});

// `fleet plan --out plan.json` where plan.json was a symbolic link wrote the plan into the link's target and made it
// 0600: a link left in a shared CI workspace (plan.json -> ~/.ssh/authorized_keys) had any file the job may write
// overwritten, and a dangling one created its target wherever it pointed. A link to a device (`--out /dev/stdout`)
// is still written through.
describe('fleet plan --out a symbolic link', () => {
  const stack = useTempStack();

  it.each([
    { name: 'to a file', target: 'victim.txt', exists: true },
    { name: 'dangling', target: 'nowhere.txt', exists: false },
  ])('$name: refused as plan.out-failed before planning, its target untouched', async ({ target, exists }) => {
    await stack.spec('web', fleetYaml('web', { count: 1 }));
    const victim = join(stack.dir, target);
    if (exists) writeFileSync(victim, 'keep me\n', { mode: 0o644 });
    const link = join(stack.dir, `link-${target}.json`);
    symlinkSync(victim, link);
    const r = await stack.fleet('plan', '--out', link);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error[plan.out-failed]');
    expect(r.stderr).toContain('is a symbolic link');
    if (exists) {
      expect(readFileSync(victim, 'utf8')).toBe('keep me\n');
      expect(statSync(victim).mode & 0o777).toBe(0o644);
    } else expect(existsSync(victim)).toBe(false);
  });

  it('to a device is written through', async () => {
    await stack.spec('web', fleetYaml('web', { count: 1 }));
    const link = join(stack.dir, 'null.json');
    symlinkSync('/dev/null', link);
    const r = await stack.fleet('plan', '--out', link);
    expect(r.code, r.stderr).toBe(0);
  });
});

// A data center token read with its line end (`$(cat token.txt)` of a file saved with Windows line ends keeps the
// "\r") could not go in a header: Node refused every request (ERR_INVALID_CHAR) before sending it, and the apply
// took that for an unreachable DMZ client, retried it for its whole budget and failed every member. It is refused
// before any member starts, naming the variable and the character, never the token.
describe('a data center token a header cannot carry', () => {
  let root: string;
  let stack: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'fleet-token-char-'));
    stack = join(root, 'stack');
    mkdirSync(join(stack, 'specs'), { recursive: true });
    // Nothing listens at port 1: a request that went out would fail as unreachable.
    writeFileSync(join(stack, 'stack.yaml'), fuzzStackYaml().replace('address: embedded', 'address: http://127.0.0.1:1'));
    writeFileSync(join(stack, 'specs', 'web.yaml'), fuzzFleetYaml);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it.each([
    { name: 'a carriage return at its end', token: 'tok-9f3a\r', bad: 'U+000D at position 9' },
    { name: 'a line break inside', token: 'tok-9f3a\nX-Other: 1', bad: 'U+000A at position 9' },
    { name: 'a character past U+00FF', token: 'tok-9f3a\u2028', bad: 'U+2028 at position 9' },
  ])('$name: apply.token-invalid at the data center, no VM recorded', async ({ token, bad }) => {
    const env = { FLEET_CLI_TOKEN_MIAMI: token, FLEET_RETRY_BUDGET_MS: '0' };
    const r = await runCli(['apply', '--yes', '--stack', stack], { cwd: root, env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `error[apply.token-invalid]: Token cannot be sent\n  at ${join('stack', 'stack.yaml')}:23:7\n  FLEET_CLI_TOKEN_MIAMI, the bearer token for the DMZ client of data center miami, holds ${bad}, a character an HTTP header cannot carry (a line end read with the token from a file?): set it to the token alone. No request was sent with it.\n`,
    );
    expect(r.stderr).not.toContain('tok-9f3a');
    expect(r.stderr).not.toContain('apply.dmz-unreachable');
    const list = await runCli(['state', 'list', '--format', 'json', '--stack', stack], { cwd: root });
    expect((JSON.parse(list.stdout) as { vms: unknown[] }).vms).toEqual([]);
  });

  it("the CLI's token at the stack's authority: fleet plan --out refuses it, not as an unreachable authority", async () => {
    const deployed = join(root, 'deployed');
    mkdirSync(join(deployed, 'specs'), { recursive: true });
    writeFileSync(join(deployed, 'stack.yaml'), fuzzStackYaml().replace('  apply:\n', '  authority:\n    address: http://127.0.0.1:1\n  apply:\n'));
    writeFileSync(join(deployed, 'specs', 'web.yaml'), fuzzFleetYaml);
    const out = join(root, 'plan.json');
    const r = await runCli(['plan', '--out', out, '--stack', deployed], { cwd: root, env: { FLEET_AUTHORITY_TOKEN: 'tok-9f3a\r', FLEET_RETRY_BUDGET_MS: '0' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      "error[apply.token-invalid]: Token cannot be sent\n  at deployed/stack.yaml:20:5\n  FLEET_AUTHORITY_TOKEN, the bearer token for the stack's authority http://127.0.0.1:1, holds U+000D at position 9,",
    );
    expect(r.stderr).not.toContain('tok-9f3a');
    expect(r.stderr).not.toContain('authority-unreachable');
    expect(existsSync(out)).toBe(false);
  });

  it('fleet refresh says so too, not that the data center is unreachable', async () => {
    const r = await runCli(['refresh', '--stack', stack], { cwd: root, env: { FLEET_CLI_TOKEN_MIAMI: 'tok-9f3a\r', FLEET_RETRY_BUDGET_MS: '0' } });
    expect(r.code).toBe(1);
    expect(`${r.stdout}${r.stderr}`).toContain('FLEET_CLI_TOKEN_MIAMI, the bearer token for the DMZ client of data center miami, holds U+000D at position 9');
    expect(`${r.stdout}${r.stderr}`).not.toContain('tok-9f3a');
  });
});
