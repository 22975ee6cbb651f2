// What `fleet apply` prints when members fail, in-process over an embedded
// stack whose sim data center fails a cloud call (failCalls): stdout and
// stderr captured together in the order they were written, as a terminal
// or a CI log shows them.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../engine/cli/main.ts';
import type { CliIO } from '../engine/cli/io.ts';
import { schemaErrors } from './helpers/schemas.ts';
import { REPO, oneDcStackYaml } from './helpers/stack.ts';

const stackYaml = (failCalls: string[], latencyMs = 1) => oneDcStackYaml('output', { failCalls, latencyMs });

const fleetYaml = (count: number) => `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-web }
spec:
  count: ${count}
  image: ubuntu-22.04
  size: { cpu: 1, memoryGiB: 2, diskGiB: 10 }
`;

/** `fleet ARGS` in-process, no terminal; `all` is stdout and stderr in the order written. */
async function fleetRun(dir: string, ...args: string[]): Promise<{ code: number; stdout: string; all: string }> {
  let all = '';
  let stdout = '';
  const sink = (onto: (s: string) => void) =>
    new Writable({
      write(chunk: Buffer, _enc, done) {
        onto(chunk.toString());
        done();
      },
    });
  const io: CliIO = {
    stdout: Object.assign(
      sink((s) => {
        all += s;
        stdout += s;
      }),
      { isTTY: false },
    ),
    stderr: Object.assign(
      sink((s) => (all += s)),
      { isTTY: false },
    ),
    stdin: Object.assign(Readable.from([]), { isTTY: false }),
    env: { ...process.env, NO_COLOR: '1' },
    cwd: dir,
  };
  const code = await main(['node', 'fleet', ...args, '--stack', dir], io);
  return { code, stdout, all };
}

describe('fleet apply: what a failed apply prints', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-output-'));
    await mkdir(join(dir, 'specs'));
    await writeFile(join(dir, 'stack.yaml'), stackYaml(['boot']));
    await writeFile(join(dir, 'specs', 'web.yaml'), fleetYaml(3));
  }, 60_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // docs/apply.md, "Flow": the last line counts what happened. It was printed
  // before the failures, so with many of them it scrolled out of sight.
  it('every member fails: exit 1, a diagnostic per member saying what, where and why, and the count last', async () => {
    const r = await fleetRun(dir, 'apply', '--yes');
    expect(r.code, r.all).toBe(1);
    const lines = r.all.trimEnd().split('\n');
    expect(lines.at(-1)).toMatch(/^Apply failed: 0 VMs changed, 3 failed; 12 steps done, 3 failed, 3 not carried out; in [0-9.]+s\.$/);
    for (const address of ['web/0', 'web/1', 'web/2']) {
      const at = lines.indexOf(`  at ${address}`);
      expect(at, r.all).toBeGreaterThan(0);
      expect(lines[at - 1]).toBe('error[apply.member-failed]: Member failed');
      // The step and the data center once, then the cloud's answer.
      expect(lines[at + 1]).toBe('  create stopped at PoweredOn -> Starting in miami: Cloud operation failed: boot failed in miami: sim miami: boot is configured to fail (failCalls)');
      // Then what to do about a cloud's failure (it had no such sentence): re-run, the plan recovers the failure state.
      expect(lines[at + 2]).toBe(
        "  Run `fleet apply` again: the plan retries it from the state the record holds (CreateFailed, BootFailed: along the pack's recovery edges; docs/recovery.md). If the cloud fails the same way again, fix what its error names first.",
      );
    }
  }, 60_000);

  it('--format json: only events on stdout, each valid, the failures as step, member and diagnostic events', async () => {
    const r = await fleetRun(dir, 'apply', '--yes', '--format', 'json');
    expect(r.code, r.all).toBe(1);
    const events = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; status?: string; code?: string; address?: string; detail?: string });
    for (const e of events) expect(schemaErrors('apply-event', e), JSON.stringify(e)).toEqual([]);
    expect(events.filter((e) => e.type === 'member' && e.status === 'failed').map((e) => e.address).sort()).toEqual(['web/0', 'web/1', 'web/2']);
    expect(events.filter((e) => e.type === 'step' && e.status === 'failed')).toHaveLength(3);
    const failed = events.filter((e) => e.type === 'diagnostic' && e.code === 'apply.member-failed');
    expect(failed.map((e) => e.address).sort()).toEqual(['web/0', 'web/1', 'web/2']);
    expect(failed[0].detail).toContain('boot is configured to fail (failCalls)');
    expect(events.find((e) => e.type === 'summary')).toMatchObject({ succeeded: 0, failed: 3 });
    // The summary is the last event, after the failures' diagnostics (it came before them), as the text summary is the last line.
    expect(events.at(-1)?.type, r.stdout).toBe('summary');
  }, 60_000);
});

// Ctrl-C in a real process, its stdout and stderr one file as in a CI log
// (`2>&1`): docs/apply.md, "Interrupted applies": exit 130, the count of
// what was done, and how many changes were not started, last.
describe('fleet apply: what an interrupted apply prints', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-output-int-'));
    await mkdir(join(dir, 'specs'));
    await writeFile(join(dir, 'stack.yaml'), stackYaml([], 30));
    await writeFile(join(dir, 'specs', 'web.yaml'), fleetYaml(12));
  }, 60_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('Ctrl-C once the apply started: exit 130, the summary, then how many changes were not started', async () => {
    const logPath = join(dir, 'log.txt');
    const log = await open(logPath, 'w');
    const child = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), 'apply', '--yes', '--parallelism', '1', '--stack', dir], {
      cwd: dir,
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', log.fd, log.fd],
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // The first progress line says the apply started: interrupt then.
    const deadline = Date.now() + 30_000;
    while (!(await readFile(logPath, 'utf8')).includes('apply: miami 0/72 steps') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGINT');
    const code = await exited;
    await log.close();
    const text = await readFile(logPath, 'utf8');
    expect(code, text).toBe(130);
    const lines = text.trimEnd().split('\n');
    const left = Number(/^Run `fleet apply` again to carry out the (\d+) changes? not started\.$/.exec(lines.at(-1)!)?.[1]);
    expect(left, text).toBeGreaterThan(0);
    expect(lines.at(-2)).toMatch(new RegExp(`^Apply interrupted: \\d+ VMs? changed, 0 failed, ${left} not started; \\d+ steps? done; in [0-9.]+s\\.$`));
    expect(text).toContain('SIGINT: no further VM will be started');
  }, 60_000);
});

// A Ctrl-C that lands once every member has started leaves nothing out, but
// the apply was still stopped on request: docs/apply.md says 130, and a CI
// job cancelled mid-apply must not read 0. It exited 0 (or 1). Slow sim
// calls keep both members in flight; the signal goes once each has sent its
// first step (its `step` event), so none can still be "not started".
describe('fleet apply: interrupted once every member has started', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-output-late-'));
    await mkdir(join(dir, 'specs'));
    await writeFile(join(dir, 'stack.yaml'), stackYaml([], 1500));
    await writeFile(join(dir, 'specs', 'web.yaml'), fleetYaml(2));
  }, 60_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('--format json: the members finish, exit 130, the summary (last) says interrupted', async () => {
    const child = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), 'apply', '--yes', '--format', 'json', '--parallelism', '2', '--stack', dir], {
      cwd: dir,
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const started = new Set<string>();
    let sent = false;
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      for (const line of stdout.split('\n').slice(0, -1)) {
        const e = JSON.parse(line) as { type: string; status?: string; address?: string };
        if (e.type === 'step' && e.status === 'started' && e.address) started.add(e.address);
      }
      if (!sent && started.size === 2) sent = child.kill('SIGINT');
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(sent).toBe(true);
    expect(stderr).toContain('SIGINT: no further VM will be started');
    expect(code, stderr).toBe(130);
    const events = stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string });
    for (const e of events) expect(schemaErrors('apply-event', e), JSON.stringify(e)).toEqual([]);
    const last = events.at(-1) as { type: string; succeeded?: number; failed?: number; notStarted?: number; interrupted?: boolean };
    expect(last).toMatchObject({ type: 'summary', succeeded: 2, failed: 0, interrupted: true });
    expect(last.notStarted).toBeUndefined();
  }, 60_000);
});

// docs/apply.md and apply-event.schema.json: "`summary` last". With nothing
// to apply the output ended after the `plan` event (and a saved plan printed
// nothing at all), so a CI job reading the last line for the counts found none.
describe('fleet apply --format json: nothing to apply', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-output-none-'));
    await mkdir(join(dir, 'specs'));
    await writeFile(join(dir, 'stack.yaml'), stackYaml([]));
    await writeFile(join(dir, 'specs', 'web.yaml'), fleetYaml(0));
  }, 60_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const zero = { type: 'summary', succeeded: 0, failed: 0, steps: 0, stepsFailed: 0, stepsSkipped: 0, elapsedMs: 0 };
  it.each([
    ['a fresh plan: plan, then a summary of nothing', [] as string[], ['plan', 'summary']],
    ['a saved plan: a summary of nothing', ['plan.json'], ['summary']],
  ])('%s', async (_name, planfile, types) => {
    if (planfile.length) expect((await fleetRun(dir, 'plan', '--out', join(dir, 'plan.json'))).code).toBe(0);
    const r = await fleetRun(dir, 'apply', ...planfile.map((f) => join(dir, f)), '--yes', '--format', 'json');
    expect(r.code, r.all).toBe(0);
    const events = r.stdout.trimEnd().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; planId?: string });
    for (const e of events) expect(schemaErrors('apply-event', e), JSON.stringify(e)).toEqual([]);
    expect(events.map((e) => e.type), r.all).toEqual(types);
    expect(events.at(-1)).toMatchObject(zero);
    if (events[0].type === 'plan') expect(events.at(-1)!.planId).toBe(events[0].planId);
  }, 60_000);
});
