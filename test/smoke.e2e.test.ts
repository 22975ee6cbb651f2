// The smoke subset `.ci/run` also runs on Node 22 and 24 (npm run test:smoke):
// the real `fleet` program, as a child process of the Node under test,
// validates, plans and applies the embedded default (a copy of the example
// stack: PGlite record, authority and sim DMZ clients on loopback), then
// plans again and finds nothing to do.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyTree } from './helpers/workflow.ts';
import { REPO } from './helpers/stack.ts';

function fleet(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEET_')));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

describe(`smoke on Node ${process.versions.node}`, () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-smoke-'));
    copyTree(join(REPO, 'test/fixtures/example-stack'), dir, (n) => n === '.fleet');
    const stack = await readFile(join(dir, 'stack.yaml'), 'utf8');
    await writeFile(join(dir, 'stack.yaml'), stack.replace('path: ../../../policies/default', `path: ${join(REPO, 'policies/default')}`));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('validate, plan, apply and plan again on the embedded default', async () => {
    const valid = await fleet(['validate', '--stack', dir], dir);
    expect(valid.code, valid.stderr).toBe(0);
    const plan = await fleet(['plan', '--stack', dir, '--detailed-exitcode', '--out', 'plan.json'], dir);
    expect(plan.code, plan.stderr).toBe(2);
    expect(plan.stdout).toContain('Plan: 7 to create');
    const apply = await fleet(['apply', 'plan.json', '--stack', dir, '--format', 'json'], dir);
    expect(apply.code, apply.stderr).toBe(0);
    const last = JSON.parse(apply.stdout.trim().split('\n').at(-1)!) as { type: string; succeeded: number; failed: number };
    expect(last).toMatchObject({ type: 'summary', succeeded: 7, failed: 0 });
    const again = await fleet(['plan', '--stack', dir, '--detailed-exitcode'], dir);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('No changes.');
    // Four Node processes, each starting tsx and PGlite: generous for a shared CI machine.
  }, 300_000);
});
