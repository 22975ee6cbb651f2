// `fleet serve dmz-client --driver aws|azure --config FILE` as a person runs
// it (the real bin, a child process) on stacks/hybrid: it starts, answers
// /v1/health, drains and stops cleanly on SIGTERM, and a bad config is refused with
// its diagnostics at file:line:col before anything listens. No cloud is
// called: the drivers reach their clouds only for a VM.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO } from './helpers/stack.ts';

const HYBRID = join(REPO, 'stacks', 'hybrid');

const ENV = {
  FLEET_DMZ_TOKEN_VIRGINIA: 'virginia-authority-token',
  FLEET_CLI_TOKEN_VIRGINIA: 'virginia-cli-token',
  FLEET_DMZ_TOKEN_EASTUS: 'eastus-authority-token',
  FLEET_CLI_TOKEN_EASTUS: 'eastus-cli-token',
  AWS_ACCESS_KEY_ID: 'AKIDHOSTIDENTITY',
  AWS_SECRET_ACCESS_KEY: 'host-secret',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
};

interface Served {
  url?: string;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `fleet serve dmz-client ...`; once it says it listens, `whileUp(url)` runs, then SIGTERM. */
function serve(args: string[], whileUp: (url: string) => Promise<void>, env: Record<string, string> = ENV): Promise<Served> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), 'serve', 'dmz-client', ...args], {
      cwd: REPO,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Served = { code: null, stdout: '', stderr: '' };
    let upRun: Promise<void> | undefined;
    child.stdout.on('data', (c: Buffer) => {
      out.stdout += c.toString();
      const m = /listening on (\S+)/.exec(out.stdout);
      if (m && !upRun) {
        out.url = m[1];
        upRun = whileUp(m[1]).finally(() => child.kill('SIGTERM'));
      }
    });
    child.stderr.on('data', (c: Buffer) => (out.stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      out.code = code;
      void (upRun ?? Promise.resolve()).then(() => resolve(out), reject);
    });
  });
}

describe('fleet serve dmz-client with a cloud driver (child process, stacks/hybrid)', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'fleet-serve-clouds-'));
  });
  afterAll(() => rm(tmp, { recursive: true, force: true }));

  it.each([
    ['virginia', 'aws'],
    ['eastus', 'azure'],
  ])('%s with --driver %s --config starts, answers /v1/health and stops on SIGTERM', async (dc, driver) => {
    let health: unknown;
    const r = await serve(
      ['--stack', HYBRID, '--data-center', dc, '--driver', driver, '--config', join(HYBRID, `dmz-${dc}.yaml`), '--authority', 'http://127.0.0.1:1', '--port', '0', '--state-dir', join(tmp, dc)],
      async (url) => {
        const res = await fetch(`${url}/v1/health`);
        health = { status: res.status, body: await res.json() };
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(health).toMatchObject({ status: 200 });
    // Graceful close: it says it drains, then that it stopped (serve-run.ts).
    expect(r.stderr).toContain(`dmz-client ${dc}: SIGTERM, draining and shutting down`);
    expect(r.stderr).toContain(`dmz-client ${dc}: stopped`);
  });

  // On Node 20 (which the README lists as supported) the AWS SDK printed a 9-line NodeVersionSupportWarning
  // at the start of every `fleet serve dmz-client --driver aws`: about SDK versions fleet does not use (it pins
  // its own), nothing its user could act on. Without the SDK's opt-out variable set, nothing of it is printed.
  it('with --driver aws prints no AWS SDK Node version warning, and no other warning', async () => {
    const { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: _set, ...env } = ENV;
    const r = await serve(
      ['--stack', HYBRID, '--data-center', 'virginia', '--driver', 'aws', '--config', join(HYBRID, 'dmz-virginia.yaml'), '--authority', 'http://127.0.0.1:1', '--port', '0', '--state-dir', join(tmp, 'quiet')],
      async () => undefined,
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/NodeVersionSupportWarning|AWS SDK for JavaScript|Warning:/);
  });

  it.each([
    {
      driver: 'aws',
      dc: 'virginia',
      edit: (s: string) => s.replace('subnetId: subnet-0a1b2c3d4e5f60718', 'subnetId: my-subnet').replace('    keyName: dmzfleet-ops', '    keyname: dmzfleet-ops'),
      want: [/error\[spec\.invalid-value\][^\n]*\n\s+at .*bad-aws\.yaml:11:15/, /error\[spec\.unknown-key\][^\n]*\n\s+at .*bad-aws\.yaml:13:5/],
    },
    {
      driver: 'azure',
      dc: 'eastus',
      edit: (s: string) => s.replace('    location: eastus\n', ''),
      want: [/error\[spec\.missing-field\][^\n]*\n\s+at .*bad-azure\.yaml:9:3[^\n]*\n[^\n]*location/],
    },
  ])('a bad $driver config is refused with located diagnostics and nothing listens', async ({ driver, dc, edit, want }) => {
    const file = join(tmp, `bad-${driver}.yaml`);
    await writeFile(file, edit(await readFile(join(HYBRID, `dmz-${dc}.yaml`), 'utf8')));
    const r = await serve(['--stack', HYBRID, '--data-center', dc, '--driver', driver, '--config', file, '--authority', 'http://127.0.0.1:1', '--port', '0', '--state-dir', join(tmp, `bad-${dc}`)], async () => undefined);
    expect(r.code).toBe(1);
    expect(r.url).toBeUndefined();
    for (const w of want) expect(r.stderr).toMatch(w);
    expect(r.stderr).not.toContain('    at async');
  });
});
