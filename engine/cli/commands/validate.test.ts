import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../../test/helpers/cli.ts';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const golden = fileURLToPath(new URL('../../../test/fixtures/spec/validate-text.golden', import.meta.url));

describe('fleet validate', () => {
  // The example stack's copy (test/fixtures/example-stack): editing stacks/local or specs/examples never changes these tests.
  const example = 'test/fixtures/example-stack';

  it('accepts the example stack with a one-line summary', async () => {
    const r = await runCli(['validate', '--stack', example], { cwd: repo, env: { FLEET_RECORD_URL: '' } });
    expect(r).toEqual({ code: 0, stdout: `${example}: 3 fleets, 2 data centers, policy pack default@1.0.0: valid\n`, stderr: '' });
  });

  it('takes --stack from FLEET_STACK, and defaults to stacks/local under the working folder', async () => {
    const fromEnv = await runCli(['validate'], { cwd: repo, env: { FLEET_STACK: example, FLEET_RECORD_URL: '' } });
    expect(fromEnv).toEqual({ code: 0, stdout: `${example}: 3 fleets, 2 data centers, policy pack default@1.0.0: valid\n`, stderr: '' });
    const flagWins = await runCli(['validate', '--stack', 'no/such'], { cwd: repo, env: { FLEET_STACK: example } });
    expect(flagWins.stderr).toContain('at no/such/stack.yaml');
    const byDefault = await runCli(['validate'], { cwd: `${repo}test`, env: { FLEET_STACK: '' } });
    expect(byDefault.code).toBe(1);
    expect(byDefault.stderr).toContain('error[spec.stack-not-found]: Stack file not found\n  at stacks/local/stack.yaml\n');
  });

  it('prints { valid, stack, fleets, dataCenters, policyPack, diagnostics } as JSON', async () => {
    const r = await runCli(['validate', '--stack', example, '--format', 'json'], { cwd: repo });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      valid: true,
      stack: 'local',
      fleets: ['batch', 'build-farm', 'web'],
      dataCenters: ['miami', 'richmond'],
      policyPack: 'default@1.0.0',
      diagnostics: [],
    });
  });

  it('exits 1 and prints every diagnostic of an invalid stack (golden)', async () => {
    const r = await runCli(['validate', '--stack', 'test/fixtures/spec/33-many-problems'], { cwd: repo });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    if (process.env.UPDATE_GOLDEN) await writeFile(golden, r.stderr);
    expect(r.stderr, 'rerun with UPDATE_GOLDEN=1 to rewrite test/fixtures/spec/validate-text.golden, then review the diff').toBe(
      await readFile(golden, 'utf8'),
    );
  });

  it('reports invalid stacks in JSON on stdout only', async () => {
    const r = await runCli(['validate', '--stack', 'test/fixtures/spec/14-duplicate-fleet', '--format', 'json'], { cwd: repo });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { valid: boolean; diagnostics: { code: string; file: string; line: number; col: number; detail: string }[] };
    expect(out.valid).toBe(false);
    expect(out.diagnostics.map((d) => [d.code, d.file, d.line, d.col])).toEqual([
      ['spec.duplicate-fleet', 'test/fixtures/spec/14-duplicate-fleet/specs/a.yaml', 4, 9],
      ['spec.duplicate-fleet', 'test/fixtures/spec/14-duplicate-fleet/specs/b.yaml', 15, 9],
    ]);
  });

  it('fails a pack whose edge names an unknown operation, at the operation\'s line and column', async () => {
    const r = await runCli(['validate', '--stack', 'test/fixtures/spec/41-unknown-operation', '--format', 'json'], { cwd: repo });
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as { valid: boolean; diagnostics: { code: string; file: string; line: number; col: number; detail: string }[] };
    expect(out.diagnostics.map((d) => [d.code, d.file, d.line, d.col])).toEqual([
      ['policy.unknown-operation', 'test/fixtures/spec/41-unknown-operation/pack/policy.yaml', 36, 44],
    ]);
    expect(out.diagnostics[0].detail).toContain('"powerOnn"');
  });

  it('exits 0 with warnings, printing them and counting them in the summary', async () => {
    const r = await runCli(['validate', '--stack', 'test/fixtures/spec/40-sim-ignored-warning'], { cwd: repo });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('warning[spec.sim-ignored]: Simulator settings apply only to a served DMZ client\n  at test/fixtures/spec/40-sim-ignored-warning/stack.yaml:20:7\n');
    expect(r.stdout).toBe('test/fixtures/spec/40-sim-ignored-warning: 1 fleet, 2 data centers, policy pack default@1.0.0: valid (1 warning)\n');
    const json = await runCli(['validate', '--stack', 'test/fixtures/spec/40-sim-ignored-warning', '--format', 'json'], { cwd: repo });
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ valid: true, diagnostics: [{ severity: 'warning', code: 'spec.sim-ignored' }] });
  });

  it('resolves --stack against the working folder', async () => {
    const r = await runCli(['validate', '--stack', 'example-stack'], { cwd: `${repo}test/fixtures` });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('example-stack: 3 fleets, 2 data centers, policy pack default@1.0.0: valid\n');
  });

  it('reports a missing stack without a stack trace', async () => {
    const r = await runCli(['validate', '--stack', 'no/such/stack'], { cwd: repo });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error[spec.stack-not-found]: Stack file not found\n  at no/such/stack/stack.yaml\n');
    expect(r.stderr).not.toMatch(/\n\s+at .*\.ts:\d+/);
  });

  it('rejects an unknown --format as a usage error', async () => {
    const r = await runCli(['validate', '--format', 'yaml'], { cwd: repo });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error[cli.usage]');
  });

  it('prints a failure as { diagnostics } on stdout with --format json, nothing on stderr', async () => {
    const r = await runCli(['validate', '--stack', 'no/such/stack', '--format', 'json'], { cwd: repo });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ valid: false, diagnostics: [{ code: 'spec.stack-not-found', file: 'no/such/stack/stack.yaml' }] });
  });
});
