import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../../test/helpers/cli.ts';
import { schemaErrors } from '../../../test/helpers/schemas.ts';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const golden = (name: string) => readFile(join(ROOT, 'engine/policy/testdata/golden', name), 'utf8');

async function packDir(policy: string, cases: Record<string, string> = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fleet-cli-policy-'));
  await writeFile(join(dir, 'policy.yaml'), policy);
  await mkdir(join(dir, 'tests'));
  for (const [n, t] of Object.entries(cases)) await writeFile(join(dir, 'tests', `${n}.yaml`), t);
  return dir;
}

describe('fleet policy graph', () => {
  it.each([
    [[], 'default.mmd'],
    [['--format', 'mermaid'], 'default.mmd'],
    [['--format', 'dot'], 'default.dot'],
  ])('%j prints %s', async (args, file) => {
    const r = await runCli(['policy', 'graph', 'policies/default', ...args], { cwd: ROOT });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(await golden(file));
  });

  it('rejects an unknown format', async () => {
    const r = await runCli(['policy', 'graph', 'policies/default', '--format', 'png'], { cwd: ROOT });
    expect(r.code).toBe(1);
  });

  it('prints located diagnostics for a broken pack, exit 1', async () => {
    const text = await readFile(join(ROOT, 'policies/default/policy.yaml'), 'utf8');
    const dir = await packDir(text.replace('{ from: PoweredOn, to: Starting,', '{ from: PoweredOn, to: Startng,'));
    const r = await runCli(['policy', 'graph', dir], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('error[policy.unknown-state]: Unknown lifecycle state\n  at policy.yaml:38:');
    expect(r.stderr).not.toContain('    at '); // no stack trace
  });

  // It said "The pack folder …/policy.yaml has no policy.yaml", at …/policy.yaml/policy.yaml.
  it("says which folder to give when given the pack's policy.yaml", async () => {
    const r = await runCli(['policy', 'graph', 'policies/default/policy.yaml'], { cwd: ROOT });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error[policy.pack-missing]: Policy pack not found\n  at policies/default/policy.yaml\n  ${join(ROOT, 'policies/default/policy.yaml')} is the pack's file; give the folder holding it: ${join(ROOT, 'policies/default')}.`);
  });

  // A stack folder is the likeliest wrong folder (`fleet policy test stacks/NAME`): it said only "has no
  // policy.yaml"; now it names the stack's own pack as the command to run.
  it.each([
    { command: ['policy', 'graph'], cwd: 'stack', dir: '.', says: "This is a stack folder (it holds stack.yaml); its policy pack is pack: `fleet policy graph pack`." },
    { command: ['policy', 'test'], cwd: 'root', dir: 'stack', says: 'stack is a stack folder (it holds stack.yaml); its policy pack is stack/pack: `fleet policy test stack/pack`.' },
  ])('names the pack of a stack folder given instead of it: $command', async ({ command, cwd, dir, says }) => {
    const root = await mkdtemp(join(tmpdir(), 'fleet-cli-policy-stack-'));
    try {
      await mkdir(join(root, 'stack'));
      await writeFile(join(root, 'stack', 'stack.yaml'), 'apiVersion: fleet/v1\nkind: Stack\nmetadata: { name: s }\nspec:\n  policyPack: { path: pack }\n');
      const r = await runCli([...command, dir], { cwd: cwd === 'root' ? root : join(root, 'stack') });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('error[policy.pack-missing]');
      expect(r.stderr).toContain(says);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('reports a missing pack', async () => {
    const r = await runCli(['policy', 'graph', 'policies/nope'], { cwd: ROOT });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error[policy.pack-missing]');
  });
});

/** The default pack with two cases of one fleet: `ok` passes, `ko` expects a grant the pack does not give. */
async function okAndKoPack(): Promise<string> {
  const policy = await readFile(join(ROOT, 'policies/default/policy.yaml'), 'utf8');
  const fleetDoc =
    '  - { apiVersion: fleet/v1, kind: Fleet, metadata: { name: web, owner: a }, spec: { count: 1, image: ubuntu-22.04, size: { cpu: 1, memoryGiB: 1, diskGiB: 10 } } }\n';
  return packDir(policy, {
    ok: `stack: { dataCenters: [{ name: miami }] }\nspecs:\n${fleetDoc}expect: { violations: [] }\n`,
    ko: `stack: { dataCenters: [{ name: miami }] }\nspecs:\n${fleetDoc}expect: { grants: [{ fleet: web, requested: 1, granted: 0 }] }\n`,
  });
}

describe('fleet policy test', () => {
  it('passes the default pack', async () => {
    const r = await runCli(['policy', 'test', 'policies/default'], { cwd: ROOT });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^PASS 01-quota-partial-grant$/m);
    expect(r.stdout).toMatch(/\d+ passed, 0 failed \(\d+ cases in policies\/default\)/);
  });

  it('counts one case as one case ("1 cases")', async () => {
    const dir = await okAndKoPack();
    await rm(join(dir, 'tests', 'ko.yaml'));
    const r = await runCli(['policy', 'test', '.'], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('PASS ok\n\n1 passed, 0 failed (1 case in .)\n');
  });

  it('exits 1 and shows a diff when a case fails', async () => {
    const dir = await okAndKoPack();
    const r = await runCli(['policy', 'test', '.'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(
      [
        'FAIL ko (tests/ko.yaml)',
        '  grants:',
        '    - expected { fleet: web, requested: 1, granted: 0 }',
        'PASS ok',
        '',
        '1 passed, 1 failed (2 cases in .)',
        '',
      ].join('\n'),
    );
  });

  // Every command that reports a result takes --format json (DESIGN.md, "The
  // CLI"); `fleet policy test` refused it as an unknown option, so a CI job
  // could only scrape PASS/FAIL lines.
  it('--format json: one document of every case, valid against its schema, exit as in text', async () => {
    const dir = await okAndKoPack();
    const r = await runCli(['policy', 'test', '.', '--format', 'json'], { cwd: dir });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as unknown;
    expect(schemaErrors('policy-test-output', out)).toEqual([]);
    expect(out).toEqual({
      pack: 'default@1.0.0',
      passed: 1,
      failed: 1,
      cases: [
        { name: 'ko', file: 'tests/ko.yaml', passed: false, diff: ['grants:', '  - expected { fleet: web, requested: 1, granted: 0 }'], diagnostics: [] },
        { name: 'ok', file: 'tests/ok.yaml', passed: true, diff: [], diagnostics: [] },
      ],
      diagnostics: [],
    });
    const ok = await runCli(['policy', 'test', 'policies/default', '--format', 'json'], { cwd: ROOT });
    expect(ok.code).toBe(0);
    expect(schemaErrors('policy-test-output', JSON.parse(ok.stdout))).toEqual([]);
  });

  // A case file that cannot be read (here a folder named like one; no permission alike) stopped the whole run with
  // 'error[cli.internal]: Internal error  EISDIR: illegal operation on a directory, read'; a tests folder that cannot
  // be listed was said not to exist.
  it('a case that cannot be read fails with policy.read-error, and the other cases still run', async () => {
    const dir = await okAndKoPack();
    await mkdir(join(dir, 'tests', 'zz.yaml'));
    const r = await runCli(['policy', 'test', '.'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('PASS ok');
    expect(r.stdout).toContain(['FAIL zz (tests/zz.yaml)', '  error[policy.read-error]: Cannot read file', '    at tests/zz.yaml', '    The case file cannot be read: it is a folder, not a file (EISDIR).'].join('\n'));
    expect(r.stdout).toContain('1 passed, 2 failed (3 cases in .)');
  });

  // A named pipe named like a case hung the run for ever (the read waited for a writer); a link to /dev/zero read
  // until memory ran out (not run here for that reason). Each is a case that cannot be read, the others still run;
  // so is a stack.yaml that is a pipe in a folder given as the pack (its hint read it).
  it('a case that is a named pipe fails with policy.read-error, and the other cases still run', async () => {
    const dir = await okAndKoPack();
    const fifo = join(dir, 'tests', 'zz.yaml');
    execFileSync('mkfifo', [fifo]);
    const stackFifo = join(dir, 'stack.yaml');
    execFileSync('mkfifo', [stackFifo]);
    try {
      const r = await runCli(['policy', 'test', '.'], { cwd: dir });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain('PASS ok');
      expect(r.stdout).toContain(['FAIL zz (tests/zz.yaml)', '  error[policy.read-error]: Cannot read file', '    at tests/zz.yaml', '    The case file cannot be read: it is a named pipe (FIFO), not a regular file.'].join('\n'));
      expect(r.stdout).toContain('1 passed, 2 failed (3 cases in .)');
      await rm(join(dir, 'policy.yaml'));
      const hint = await runCli(['policy', 'test', '.'], { cwd: dir });
      expect(hint.code).toBe(1);
      expect(hint.stderr).toContain('error[policy.pack-missing]');
    } finally {
      // A read blocked on a pipe (the bug) sees its end, so the worker is not left hung.
      for (const f of [fifo, stackFifo]) {
        try {
          closeSync(openSync(f, constants.O_WRONLY | constants.O_NONBLOCK));
        } catch {
          // No reader: nothing to unblock.
        }
      }
    }
  }, 10_000);

  it('a tests folder that cannot be listed is policy.read-error, not a missing folder', async () => {
    const dir = await packDir(await readFile(join(ROOT, 'policies/default/policy.yaml'), 'utf8'));
    await rm(join(dir, 'tests'), { recursive: true });
    await symlink('tests', join(dir, 'tests'));
    const r = await runCli(['policy', 'test', '.'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error[policy.read-error]: Cannot read file');
    expect(r.stderr).toContain(["  at tests", "  The pack's test folder cannot be read: too many symbolic links (ELOOP)."].join('\n'));
  });

  it('--format json: a pack that does not load is a failure document on stdout', async () => {
    const r = await runCli(['policy', 'test', 'no/such/pack', '--format', 'json'], { cwd: ROOT });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as unknown;
    expect(schemaErrors('policy-test-output', out)).toEqual([]);
    expect(out).toMatchObject({ diagnostics: [{ code: 'policy.pack-missing' }] });
  });
});
