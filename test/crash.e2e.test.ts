// Crash harness (issue 14): `fleet apply` killed with SIGKILL at a kill
// point, then run once more. Every run must converge in that one re-run:
// it exits 0, the next plan says "No changes", the record equals the data
// centers (every live VM present once in its data center, nothing else
// there: nothing orphaned, nothing duplicated), and the re-run waits for
// nothing longer than a boot.
//
// A kill point is "after the n-th step done" of the apply's JSON events
// (stdout, --format json). Two modes:
// - embedded: the default stack (PGlite record, sims in the CLI process);
// - deployed: `fleet serve orchestrator` and `fleet serve dmz-client` as
//   child processes, a PostgreSQL record (needs FLEET_TEST_POSTGRES_URL;
//   PGlite is one process's database). Here the killed CLI's runs go on at
//   the DMZ client while the re-run starts: fencing keeps them from acting.
//   The same mode also restarts the DMZ client mid-apply: no member fails;
//   and cuts PostgreSQL off for a second (a failover) at each kill point:
//   the apply's own record calls retry (engine/apply/record-retry.ts), it
//   exits 0 without a re-run.
//
// Every kill lands mid-apply, by construction: the sims' gate file (sim
// gateFile, providers/drivers/sim/gate.ts) lets the calls of the first steps
// through and holds the next ones unanswered, so the apply cannot end on its
// own before the kill, and each case checks that the kill is what ended it
// (exit code null). Without it a loaded machine let the apply end before the
// test read its step and killed it: the case then passed having killed
// nothing. Each kill point runs twice: the held calls not carried out (the
// request lost), and carried out with only their answers held (the cloud did
// it, the apply never heard). Deployed, the gate is removed after the kill,
// and the killed apply's held runs go on at the DMZ client.
//
// Kill points during boot, found from the events (not a sleep): once the
// first boot step is done (its agent booting for BOOT_LONG_MS; deployed: the
// DMZ client killed with the CLI), and, deployed, the very moment the
// authority approved a boot (a proxy holds that answer, kills both, drops
// it): the re-run resumes the boots, waits only for them (no step fails, no
// VM passes BootFailed, no boot is denied) and converges.
//
// CI runs a few kill points per mode; FLEET_CRASH_FULL=1 runs one per step
// and prints the figures (`npm run bench:crash`).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CARRIED_OUT_DETAIL } from '../engine/apply/interrupted.ts';
import { openRecord } from '../engine/record/index.ts';
import type { SqlRecord } from '../engine/record/record.ts';
import { bootAttempts, createTestDatabase, pgCutProxy, testPostgresUrl } from '../engine/record/testing.ts';
import { readSimState } from '../providers/drivers/sim/index.ts';
import { fleetYaml, REPO, tempStack, type TempStack } from './helpers/stack.ts';
import { listenOnLoopback } from './helpers/proxy.ts';

const FULL = process.env.FLEET_CRASH_FULL === '1';
/** Members of the fleet each run brings up; 3 in CI. */
const COUNT = FULL ? 4 : 3;
/** A member's requests to Running: its create and five edges. */
const STEPS = COUNT * 6;
const BOOT_MS = 300;
const CI_POINTS = [2, Math.floor(STEPS / 2), STEPS - 2];
const POINTS = FULL ? Array.from({ length: STEPS - 1 }, (_, i) => i + 1) : CI_POINTS;
/** How the gate holds the calls after a kill point: before they act, or carried out with only their answers held. */
const HOLDS = ['request held', 'answer held'] as const;
type Hold = (typeof HOLDS)[number];
const KILLS = POINTS.flatMap((point) => HOLDS.map((hold) => [point, hold] as const));

/**
 * The gate (sim gateFile) of a kill "after step `point`": a member's first two steps (its create, Requested ->
 * BeingCreated) make no cloud call and each later one makes one, and every member starts at once (parallelism 10 >
 * COUNT); so letting point - 2 * COUNT calls through (none for an earlier point) takes the apply to step `point`
 * and holds it there, mid-call, never to end on its own (point < STEPS: a call is left).
 */
function gateAfter(point: number, hold: Hold = 'request held'): string {
  return JSON.stringify({ calls: Math.max(0, point - 2 * COUNT), ...(hold === 'answer held' ? { acted: true } : {}) });
}
/** The gate of a kill during boot: 3 calls per member (create, power on, boot) go through; a boot is done before they are used up (a member with no boot done has had 2 at most), and an awaitReady is left held. */
const GATE_BOOT = JSON.stringify({ calls: 3 * COUNT });

const FLEET_BIN = join(REPO, 'bin', 'fleet.mjs');

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * `fleet ARGS` as a child. killAfterDone: SIGKILL it once that many steps are
 * done; killWhen: once an event line (stdout, --format json) matches, SIGKILL
 * it and call `also` first (another process to kill at the same moment).
 */
function fleet(
  args: string[],
  env: NodeJS.ProcessEnv,
  opts: { killAfterDone?: number; onDone?: (n: number, stdout: string) => void; killWhen?: (event: StepEvent) => boolean; also?: () => void; started?: (child: ChildProcess) => void; onStderr?: (text: string) => void } = {},
): Promise<Exit & { killed: boolean }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [FLEET_BIN, ...args], { cwd: REPO, env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  opts.started?.(child);
  let stdout = '';
  let stderr = '';
  let done = 0;
  let killed = false;
  child.stdout!.on('data', (c: Buffer) => {
    stdout += c.toString();
    done = stdout.split('\n').filter((l) => l.includes('"type":"step"') && l.includes('"status":"done"')).length;
    opts.onDone?.(done, stdout);
    if (opts.killWhen && !killed && events(stdout).some(opts.killWhen)) {
      killed = true;
      opts.also?.();
      child.kill('SIGKILL');
    }
    if (opts.killAfterDone === undefined || killed) return;
    if (done >= opts.killAfterDone) {
      killed = true;
      child.kill('SIGKILL');
    }
  });
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
    opts.onStderr?.(stderr);
  });
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr, killed, ms: Math.round(performance.now() - t0) })));
}

interface StepEvent {
  type: string;
  address: string;
  from: string | null;
  to: string;
  operation: string;
  status: string;
  detail?: string;
}

/** The step events of an apply's JSON output (whole lines only). */
function events(stdout: string): StepEvent[] {
  return stdout
    .split('\n')
    .slice(0, -1)
    .filter((l) => l.includes('"type":"step"'))
    .map((l) => JSON.parse(l) as StepEvent);
}

/**
 * A free port, held by a listener until `release`. A port picked and let go
 * at once was handed to the next bind to port 0: the authority, started
 * before the DMZ client the stack names at that port, took it (seen in CI:
 * `--authority http://127.0.0.1:42533 --port 42533`, EADDRINUSE).
 */
async function holdPort(): Promise<{ port: number; release: () => Promise<void> }> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  let released: Promise<void> | undefined;
  return { port, release: () => (released ??= new Promise<void>((r) => srv.close(() => r()))) };
}

async function freePort(): Promise<number> {
  const held = await holdPort();
  await held.release();
  return held.port;
}

/** A `fleet serve …` child, resolved once it says where it listens. */
async function serve(args: string[], env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [FLEET_BIN, 'serve', ...args], { cwd: REPO, env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`fleet serve ${args.join(' ')} exited ${code}: ${err}`)));
  });
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.on('exit', () => resolve());
      child.kill('SIGKILL');
    });
  return { child, url, stop };
}

/** The record equals the data centers: every live VM present once in its own, and nothing else present there. */
async function converged(stack: TempStack, recordUrl: string, stackName: string, dcs: readonly string[], want: number): Promise<void> {
  const record = await openRecord(recordUrl);
  const live = await record.listVms(stackName);
  await record.close();
  expect(live.map((v) => v.state)).toEqual(Array.from({ length: want }, () => 'Running'));
  const present: { cloudId: string; vmId: string; dc: string }[] = [];
  for (const dc of dcs) {
    const { vms } = await readSimState(join(stack.dir, '.fleet', 'sim', dc), dc);
    for (const v of vms) if (v.status === 'present') present.push({ cloudId: v.cloudId, vmId: v.vmId, dc });
  }
  // Nothing orphaned (present but not recorded) or duplicated (two present for one VM).
  expect(present.map((p) => p.vmId).sort()).toEqual(live.map((v) => v.id).sort());
  expect(live.map((v) => present.find((p) => p.cloudId === v.cloudId)?.dc)).toEqual(live.map((v) => v.dataCenter));
}

/** Kill point "during boot": the first boot step (PoweredOn -> Starting) done; its VM's agent boots for BOOT_LONG_MS. */
const bootDone = (e: StepEvent) => e.operation === 'boot' && e.status === 'done';
const BOOT_LONG_MS = 3_000;

/** The VMs of the record by id: address and state, read between the kill and the re-run. */
async function recordStates(recordUrl: string, stackName: string): Promise<Map<string, { address: string; state: string }>> {
  const record = await openRecord(recordUrl);
  try {
    return new Map((await record.listVms(stackName)).map((v) => [v.id, { address: v.address, state: v.state }]));
  } finally {
    await record.close();
  }
}

/** The sims' VMs booting (agent started, not settled) right after the kill. */
async function bootingNow(stack: TempStack, dcs: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const dc of dcs) for (const v of (await readSimState(join(stack.dir, '.fleet', 'sim', dc), dc)).vms) if (v.status === 'present' && v.agent === 'booting') out.push(v.vmId);
  return out;
}

/**
 * A re-run after a kill during boot resumed the boots instead of waiting for
 * them to time out (issue 14: "no wait longer than the boot itself"): no
 * step failed; a VM the record had at Starting with its agent booting was
 * only awaited (Starting -> Running), not booted again; no VM passed
 * BootFailed (an awaitReady that waited out readyTimeoutMs ends there) and no
 * boot was denied; every VM's boot was approved. So every wait of the re-run
 * ended when an agent reported ready, without a clock.
 */
async function bootsResumed(recordUrl: string, stackName: string, rerun: string, before: Map<string, { address: string; state: string }>, booting: readonly string[]): Promise<void> {
  const steps = events(rerun);
  expect(steps.filter((e) => e.status === 'failed')).toEqual([]);
  const resumed = booting.filter((id) => before.get(id)?.state === 'Starting');
  // At least the VM whose boot was the kill point: its boot was reported (the done event follows the report).
  expect(resumed.length).toBeGreaterThanOrEqual(1);
  for (const id of resumed) {
    const address = before.get(id)!.address;
    expect(steps.filter((e) => e.address === address && e.status === 'done').map((e) => `${e.from} -> ${e.to}`), address).toEqual(['Starting -> Running']);
  }
  const record = await openRecord(recordUrl);
  try {
    const history = await record.history(stackName);
    expect(history.filter((h) => h.to === 'BootFailed' || h.outcome === 'denied')).toEqual([]);
    for (const vm of await record.listVms(stackName)) {
      const attempts = await bootAttempts(record as SqlRecord, { vmId: vm.id });
      expect(attempts.filter((a) => !a.approved), vm.address).toEqual([]);
      expect(attempts.filter((a) => a.approved).length, vm.address).toBeGreaterThanOrEqual(1);
    }
  } finally {
    await record.close();
  }
}

/**
 * An HTTP proxy to the authority that passes everything through, except the
 * first answer carrying a boot approval (`"approved":true`, in a batch's
 * NDJSON lines or a single answer): then it calls `crash` (which kills the
 * DMZ client and the CLI) and drops the answer. After that it passes
 * everything through.
 */
async function bootCrashProxy(upstream: string, crash: () => void): Promise<{ url: string; close: () => Promise<void> }> {
  const agent = new http.Agent({ keepAlive: true });
  let crashed = false;
  const server = http.createServer((req, res) => {
    const target = new URL(req.url ?? '/', upstream);
    const up = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host }, agent }, (answer) => {
      let seen = '';
      let headed = false;
      answer.on('data', (c: Buffer) => {
        if (res.destroyed) return;
        seen += c.toString();
        if (!crashed && seen.includes('"approved":true')) {
          crashed = true;
          crash();
          res.destroy();
          return;
        }
        if (!headed) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          headed = true;
        }
        res.write(c);
      });
      answer.on('end', () => {
        if (res.destroyed) return;
        if (!headed) res.writeHead(answer.statusCode ?? 502, answer.headers);
        res.end();
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  return listenOnLoopback(server, agent);
}

interface Figure {
  mode: string;
  point: number;
  killedAfterMs: number;
  rerunMs: number;
}
const figures: Figure[] = [];

afterAll(() => {
  if (figures.length === 0) return;
  const lines = figures.map((f) =>
    f.point === 0
      ? `${f.mode}\twhole apply ${f.rerunMs} ms`
      : `${f.mode}\t${f.point < 0 ? 'killed during boot' : `kill after step ${f.point}`}\tkilled at ${f.killedAfterMs} ms\tre-run ${f.rerunMs} ms`,
  );
  const worst = Math.max(...figures.map((f) => f.rerunMs));
  process.stderr.write(`crash harness: ${figures.length} kill points, slowest re-run ${worst} ms (boot ${BOOT_MS} ms)\n${lines.join('\n')}\n`);
});

describe('crash harness: embedded data centers (PGlite record, sims in the CLI)', () => {
  it.each(KILLS)('killed after step %i (%s), converges in one re-run', async (point, hold) => {
    const stack = await tempStack({ latencyMs: 2, bootMs: BOOT_MS, gate: true });
    try {
      await stack.spec('web', fleetYaml('web', { count: COUNT }));
      const env = { FLEET_RECORD_BUSY_TIMEOUT_MS: '60000' };
      await writeFile(stack.gate, gateAfter(point, hold));
      const first = await fleet(['apply', '--yes', '--format', 'json', '--stack', stack.dir], env, { killAfterDone: point });
      expect(first.killed, `the apply ended before step ${point}: ${first.stderr}`).toBe(true);
      expect(first.code, 'the apply ended on its own, not by the kill').toBeNull();
      await rm(stack.gate);
      const again = await fleet(['apply', '--yes', '--stack', stack.dir], env);
      expect(again.code, `the re-run failed: ${again.stderr.slice(0, 3000)}`).toBe(0);
      figures.push({ mode: 'embedded', point, killedAfterMs: first.ms, rerunMs: again.ms });
      const plan = await fleet(['plan', '--detailed-exitcode', '--stack', stack.dir], env);
      expect({ code: plan.code, out: plan.stdout }).toMatchObject({ code: 0 });
      await converged(stack, `pglite://${join(stack.dir, '.fleet', 'record')}`, 'e2e', ['miami', 'richmond'], COUNT);
    } finally {
      await stack.remove();
    }
  }, 300_000);
});

describe('a re-run given --lock-timeout (embedded)', () => {
  it("breaks the killed apply's locks at once (lock-broken), instead of waiting out their lease", async () => {
    const stack = await tempStack({ latencyMs: 2, bootMs: BOOT_MS });
    try {
      await stack.spec('web', fleetYaml('web', { count: COUNT }));
      const env = { FLEET_RECORD_BUSY_TIMEOUT_MS: '60000' };
      // The first apply's boots never answer, so it still runs, its locks held, when it is killed after step 2. Without
      // it a loaded machine let the apply (3 VMs, 2 ms calls) end on its own before this process read its step 2 and
      // killed it: no lock was left to break, and the re-run's lock-broken never came.
      const file = join(stack.dir, 'stack.yaml');
      const plain = await readFile(file, 'utf8');
      const sim = `sim: { latencyMs: 2, bootMs: ${BOOT_MS} }`;
      expect(plain).toContain(sim);
      await writeFile(file, plain.replaceAll(sim, `sim: { latencyMs: 2, bootMs: ${BOOT_MS}, hangCalls: [boot, awaitReady] }`));
      const first = await fleet(['apply', '--yes', '--format', 'json', '--stack', stack.dir], env, { killAfterDone: 2 });
      expect(first.killed, `the apply ended before step 2: ${first.stderr}`).toBe(true);
      expect(first.code, 'the apply ended on its own, not by the kill').toBeNull();
      await writeFile(file, plain);
      // The lease (30 s) outlives the kill; a re-run that waited for the lock before looking for a dead holder took it only once the lease ran out, without a lock-broken event.
      const again = await fleet(['apply', '--yes', '--format', 'json', '--lock-timeout', '300', '--stack', stack.dir], env);
      expect(again.code, `the re-run failed: ${again.stderr.slice(0, 3000)}`).toBe(0);
      const broken = again.stdout.split('\n').filter((l) => l.includes('"type":"lock-broken"'));
      expect(broken.map((l) => (JSON.parse(l) as { fleet: string }).fleet)).toEqual(['web']);
      await converged(stack, `pglite://${join(stack.dir, '.fleet', 'record')}`, 'e2e', ['miami', 'richmond'], COUNT);
    } finally {
      await stack.remove();
    }
  }, 300_000);
});

// A saved plan (the CI's apply on merge) killed mid-apply: the same file applied again is refused, since a saved plan
// is applied exactly and once, but the refusal said only "The record changed since plan … was made", as if another
// apply had raced it. It says now that this very plan was applied in part, and that a fresh `fleet apply` continues.
// And the killed apply stayed `running` in the record's list of applies (the dashboard's "recent applies") when its
// only re-run was the saved plan applied again: only a fresh `fleet apply` recorded dead applies `interrupted`. The
// refused re-run holds the plan's locks (a live apply of the plan would too), so it knows that apply is gone.
describe('a saved plan killed mid-apply (embedded)', () => {
  it('applied again: refused as applied in part already, naming the way on, the killed apply recorded interrupted with its unanswered steps closed; a fresh apply converges in one re-run', async () => {
    const stack = await tempStack({ latencyMs: 2, bootMs: BOOT_MS, gate: true });
    try {
      await stack.spec('web', fleetYaml('web', { count: COUNT }));
      const env = { FLEET_RECORD_BUSY_TIMEOUT_MS: '60000' };
      const file = join(stack.dir, 'plan.json');
      const plan = await fleet(['plan', '--out', file, '--stack', stack.dir], env);
      expect(plan.code, plan.stderr).toBe(0);
      await writeFile(stack.gate, gateAfter(CI_POINTS[1]));
      const first = await fleet(['apply', file, '--format', 'json', '--stack', stack.dir], env, { killAfterDone: CI_POINTS[1] });
      expect(first.killed, `the apply ended before step ${CI_POINTS[1]}: ${first.stderr}`).toBe(true);
      expect(first.code, 'the apply ended on its own, not by the kill').toBeNull();
      await rm(stack.gate);
      const id = (JSON.parse(await readFile(file, 'utf8')) as { id: string }).id;
      const recordUrl = `pglite://${join(stack.dir, '.fleet', 'record')}`;
      const applies = async () => {
        const record = await openRecord(recordUrl);
        try {
          const [applied] = await record.listPlans('e2e', { id, limit: 1 });
          const open = (await record.unfinishedSteps('e2e')).filter((s) => s.planId === id && s.status === 'started');
          return { result: applied?.result, open: open.length };
        } finally {
          await record.close();
        }
      };
      // Killed mid-apply: its plan `running`, its last steps `started` (the kill came between a step's start and its answer or not).
      expect((await applies()).result).toBe('running');
      const again = await fleet(['apply', file, '--format', 'json', '--stack', stack.dir], env);
      expect(again.code).toBe(1);
      const diags = again.stdout
        .split('\n')
        .filter((l) => l.includes('"type":"diagnostic"'))
        .map((l) => JSON.parse(l) as { code: string; detail: string });
      const stale = diags.find((e) => e.code === 'apply.stale-plan');
      expect(stale?.detail).toContain(`Plan ${id} was applied in part already: its apply (by `);
      expect(stale?.detail).toContain('stopped before it ended (killed, or interrupted)');
      expect(stale?.detail).toContain('Run `fleet apply` (a fresh plan, which continues from what the record holds)');
      expect(await applies()).toEqual({ result: 'interrupted', open: 0 });
      const fresh = await fleet(['apply', '--yes', '--stack', stack.dir], env);
      expect(fresh.code, `the re-run failed: ${fresh.stderr.slice(0, 3000)}`).toBe(0);
      await converged(stack, recordUrl, 'e2e', ['miami', 'richmond'], COUNT);
    } finally {
      await stack.remove();
    }
  }, 300_000);
});

// A member's `done` rows are held and written together (engine/apply/member.ts: at its end, or HOLD_MS after the
// first), its `step` events after them: when one member's first `done` event is out, the members sent with it
// have answers held. Killed then, the re-run closes each step left `started` as the record shows it: `done` when
// the VM's history holds the step's edge under the killed plan, `failed` (interrupted) when it does not. Before,
// every one was closed `failed`, carried out or not. Embedded: the sims die with the CLI, so nothing lands after.
describe("kill -9 while a member's done rows are held (embedded)", () => {
  it('the re-run converges and closes every step left started as the record shows it: done when carried out, failed otherwise', async () => {
    const stack = await tempStack({ latencyMs: 2, bootMs: BOOT_MS, gate: true });
    try {
      await stack.spec('web', fleetYaml('web', { count: COUNT }));
      const env = { FLEET_RECORD_BUSY_TIMEOUT_MS: '60000' };
      const recordUrl = `pglite://${join(stack.dir, '.fleet', 'record')}`;
      // Only the apply's last call is held: it runs as it would, and cannot end before the kill.
      await writeFile(stack.gate, JSON.stringify({ calls: 4 * COUNT - 1 }));
      const first = await fleet(['apply', '--yes', '--format', 'json', '--stack', stack.dir], env, { killWhen: (e) => e.status === 'done' });
      expect(first.killed, `the apply ended before a step was done: ${first.stderr}`).toBe(true);
      expect(first.code, 'the apply ended on its own, not by the kill').toBeNull();
      await rm(stack.gate);
      const id = (JSON.parse(first.stdout.split('\n').find((l) => l.includes('"type":"start"'))!) as { planId: string }).planId;
      const again = await fleet(['apply', '--yes', '--stack', stack.dir], env);
      expect(again.code, `the re-run failed: ${again.stderr.slice(0, 3000)}`).toBe(0);
      expect(again.stderr).toContain(`note: apply ${id} was interrupted with `);
      const record = await openRecord(recordUrl);
      try {
        const moved = new Set((await record.history('e2e')).filter((h) => h.planId === id && h.outcome === 'ok' && !(h.detail ?? '').startsWith('intent approved')).map((h) => `${h.vmId} ${h.from ?? ''} -> ${h.to}`));
        const rows = await record.planJournal(id);
        const last = new Map(rows.map((r) => [`${r.address}/${r.seq}`, r]));
        const closed = [...last.values()].filter((r) => r.detail === CARRIED_OUT_DETAIL || (r.detail ?? '').startsWith('interrupted:'));
        expect(closed.length).toBeGreaterThan(0);
        // Closed as the record shows it: done exactly when the VM's history holds the step's edge under the plan.
        expect(closed.map((r) => `${r.address}/${r.seq} ${r.status}`)).toEqual(closed.map((r) => `${r.address}/${r.seq} ${moved.has(`${r.vmId} ${r.from} -> ${r.to}`) ? 'done' : 'failed'}`));
        process.stderr.write(`held done rows: ${closed.filter((r) => r.status === 'done').length} of ${closed.length} steps left started closed done\n`);
      } finally {
        await record.close();
      }
      await converged(stack, recordUrl, 'e2e', ['miami', 'richmond'], COUNT);
    } finally {
      await stack.remove();
    }
  }, 300_000);
});

describe('kill -9 during boot (embedded): one re-run resumes the boots', () => {
  it('killed once the first boot is done (agents booting), the re-run only awaits them: every VM once, record == data centers, exit 0', async () => {
    const stack = await tempStack({ latencyMs: 2, bootMs: BOOT_LONG_MS, gate: true });
    try {
      await stack.spec('web', fleetYaml('web', { count: COUNT }));
      const env = { FLEET_RECORD_BUSY_TIMEOUT_MS: '60000' };
      const recordUrl = `pglite://${join(stack.dir, '.fleet', 'record')}`;
      await writeFile(stack.gate, GATE_BOOT);
      const first = await fleet(['apply', '--yes', '--format', 'json', '--stack', stack.dir], env, { killWhen: bootDone });
      expect(first.killed, `the apply ended before a boot: ${first.stderr}`).toBe(true);
      expect(first.code, 'the apply ended on its own, not by the kill').toBeNull();
      await rm(stack.gate);
      // The kill came during boot: the sims hold VMs whose agents were still booting.
      const booting = await bootingNow(stack, ['miami', 'richmond']);
      expect(booting.length).toBeGreaterThanOrEqual(1);
      const before = await recordStates(recordUrl, 'e2e');
      const again = await fleet(['apply', '--yes', '--format', 'json', '--stack', stack.dir], env);
      expect(again.code, `the re-run failed: ${again.stderr.slice(0, 3000)}`).toBe(0);
      figures.push({ mode: 'embedded, killed during boot', point: -1, killedAfterMs: first.ms, rerunMs: again.ms });
      await bootsResumed(recordUrl, 'e2e', again.stdout, before, booting);
      await converged(stack, recordUrl, 'e2e', ['miami', 'richmond'], COUNT);
    } finally {
      await stack.remove();
    }
  }, 300_000);
});

const pg = testPostgresUrl();

describe.skipIf(!pg)('crash harness: deployed (fleet serve orchestrator + dmz-client children, PostgreSQL record)', () => {
  /** A stack whose miami is a served DMZ client, richmond left out; the record a fresh PostgreSQL database. */
  async function deployed(
    bootMs = BOOT_MS,
  ): Promise<{ stack: TempStack; recordUrl: string; env: NodeJS.ProcessEnv; dmzPort: number; releaseDmzPort: () => Promise<void>; close: () => Promise<void> }> {
    const stack = await tempStack({ latencyMs: 2, bootMs, name: 'crashdep', gate: true });
    const db = await createTestDatabase(pg!);
    // Held until the DMZ client is started on it (services): the authority, started first on port 0, cannot take it.
    const dmzHeld = await holdPort();
    const dmzPort = dmzHeld.port;
    const file = join(stack.dir, 'stack.yaml');
    let yaml = (await readFile(file, 'utf8')).replace('pglite://.fleet/record', db.url);
    yaml = yaml.replace(/- name: miami\n {6}address: embedded/, `- name: miami\n      address: http://127.0.0.1:${dmzPort}\n      auth: { tokenEnv: MIAMI_CLI_TOKEN }`);
    yaml = yaml.replace(/\n {4}- name: richmond[\s\S]*$/, '\n');
    await writeFile(file, yaml);
    const env = {
      FLEET_DMZ_TOKEN_MIAMI: 'miami-authority-token',
      MIAMI_CLI_TOKEN: 'miami-cli-token',
      FLEET_AUTHORITY_SECRET: 'crash-test-secret',
    };
    return { stack, recordUrl: db.url, env, dmzPort, releaseDmzPort: dmzHeld.release, close: async () => (await dmzHeld.release(), await stack.remove(), await db.drop()) };
  }

  /** The next plan has no changes, and once `stopDmz` (the DMZ client has answered every run it had), the record equals the data center. */
  async function expectSettled(d: Awaited<ReturnType<typeof deployed>>, stopDmz: () => Promise<void>): Promise<void> {
    const plan = await fleet(['plan', '--detailed-exitcode', '--stack', d.stack.dir], d.env);
    expect({ code: plan.code, out: plan.stdout }).toMatchObject({ code: 0 });
    await stopDmz();
    await converged(d.stack, d.recordUrl, 'crashdep', ['miami'], COUNT);
  }

  /** The authority and miami's DMZ client as children; `via` puts something (a proxy) between them. */
  async function services(d: Awaited<ReturnType<typeof deployed>>, via?: (authorityUrl: string) => Promise<string>) {
    const authority = await serve(['orchestrator', '--stack', d.stack.dir, '--port', '0'], d.env);
    const authorityUrl = via ? await via(authority.url) : authority.url;
    const dmzArgs = ['dmz-client', '--stack', d.stack.dir, '--data-center', 'miami', '--authority', authorityUrl, '--port', String(d.dmzPort)];
    await d.releaseDmzPort();
    let dmz = await serve(dmzArgs, d.env);
    return {
      restartDmz: async () => {
        await dmz.stop();
        dmz = await serve(dmzArgs, d.env);
      },
      stopDmz: () => dmz.stop(),
      startDmz: async () => {
        dmz = await serve(dmzArgs, d.env);
      },
      stop: async () => {
        await dmz.stop();
        await authority.stop();
      },
    };
  }

  it.each(KILLS)('killed after step %i (%s), its runs still at the DMZ client: converges in one re-run', async (point, hold) => {
    const d = await deployed();
    const svc = await services(d);
    try {
      await d.stack.spec('web', fleetYaml('web', { count: COUNT, strategy: 'pack' }));
      await writeFile(d.stack.gate, gateAfter(point, hold));
      const first = await fleet(['apply', '--yes', '--format', 'json', '--stack', d.stack.dir], d.env, { killAfterDone: point });
      expect(first.killed, `the apply ended before step ${point}: ${first.stderr}`).toBe(true);
      expect(first.code, 'the apply ended on its own, not by the kill').toBeNull();
      // The killed apply's held runs go on at the DMZ client while the re-run starts.
      await rm(d.stack.gate);
      const again = await fleet(['apply', '--yes', '--stack', d.stack.dir], d.env);
      expect(again.code, `the re-run failed: ${again.stderr.slice(0, 3000)}`).toBe(0);
      figures.push({ mode: 'deployed', point, killedAfterMs: first.ms, rerunMs: again.ms });
      // The killed apply's runs may still finish at the DMZ client: wait for it to have answered them all, then compare.
      await expectSettled(d, () => svc.stop());
    } finally {
      await svc.stop();
      await d.close();
    }
  }, 300_000);

  const RESTARTS = POINTS.flatMap((point) => [
    ['the authority', point] as const,
    ['the DMZ client', point] as const,
  ]);

  it.each(RESTARTS)('%s killed after step %i and started again on its port, the other processes living on: the apply rides it out and converges', async (who, point) => {
    const d = await deployed();
    const authorityPort = await freePort();
    const authorityArgs = ['orchestrator', '--stack', d.stack.dir, '--port', String(authorityPort)];
    let authority = await serve(authorityArgs, d.env);
    const dmzArgs = ['dmz-client', '--stack', d.stack.dir, '--data-center', 'miami', '--authority', authority.url, '--port', String(d.dmzPort)];
    await d.releaseDmzPort();
    let dmz = await serve(dmzArgs, d.env);
    let restarted: Promise<void> | undefined;
    let endedBefore: boolean | undefined;
    try {
      await d.stack.spec('web', fleetYaml('web', { count: COUNT, strategy: 'pack' }));
      // The apply is held at step `point` until the process is up again: the outage certainly comes mid-apply.
      await writeFile(d.stack.gate, gateAfter(point));
      const first = await fleet(['apply', '--yes', '--format', 'json', '--stack', d.stack.dir], d.env, {
        onDone: (n, stdout) => {
          if (n < point || restarted) return;
          endedBefore = stdout.includes('"type":"summary"');
          // SIGKILL mid-apply: the authority's transactions in flight roll back, the DMZ client's
          // runs and the sim's agents die with it; a new process takes the same port.
          restarted =
            who === 'the authority'
              ? authority.stop().then(async () => {
                  authority = await serve(authorityArgs, d.env);
                })
              : dmz.stop().then(async () => {
                  dmz = await serve(dmzArgs, d.env);
                });
          restarted = restarted.then(() => rm(d.stack.gate));
        },
      });
      expect(restarted, `the apply ended before step ${point}: ${first.stderr}`).toBeDefined();
      await restarted;
      expect(endedBefore, 'the apply had ended before the restart').toBe(false);
      // The restart takes a second or two, well within the retry budget: the apply rides it out.
      // Before (the authority): a step carried out behind one whose report the outage cut answered
      // 409 earlier-step-failed, and its member failed (5 of 23 kill points in one run).
      const summary = first.stdout.split('\n').find((l) => l.includes('"type":"summary"'));
      expect(first.code, `the apply failed: ${first.stdout.split('\n').filter((l) => l.includes('"status":"failed"')).join('\n').slice(0, 3000)} ${first.stderr.slice(0, 2000)}`).toBe(0);
      expect(JSON.parse(summary!)).toMatchObject({ succeeded: COUNT, failed: 0 });
      await expectSettled(d, () => dmz.stop());
    } finally {
      await dmz.stop();
      await authority.stop();
      await d.close();
    }
  }, 300_000);

  it.each(POINTS)('PostgreSQL cut off after step %i for a second (every connection dropped, as a failover does): the apply rides it out, exits 0 and converges without a re-run', async (point) => {
    const d = await deployed();
    const proxy = await pgCutProxy(d.recordUrl);
    const file = join(d.stack.dir, 'stack.yaml');
    await writeFile(file, (await readFile(file, 'utf8')).replace(d.recordUrl, proxy.url));
    const svc = await services(d);
    let cut = false;
    let endedBefore: boolean | undefined;
    try {
      await d.stack.spec('web', fleetYaml('web', { count: COUNT, strategy: 'pack' }));
      // The apply is held at step `point` until the cut has begun: the outage certainly comes mid-apply.
      await writeFile(d.stack.gate, gateAfter(point));
      const first = await fleet(['apply', '--yes', '--format', 'json', '--stack', d.stack.dir], d.env, {
        onDone: (n, stdout) => {
          if (n < point || cut) return;
          cut = true;
          endedBefore = stdout.includes('"type":"summary"');
          proxy.cut(1000);
          void rm(d.stack.gate);
        },
      });
      expect(cut, `the apply ended before step ${point}: ${first.stderr}`).toBe(true);
      expect(endedBefore, 'the apply had ended before the cut').toBe(false);
      // The authority's pool reconnects, and the CLI retries its own record calls (journal, locks, run
      // bookkeeping) within its retry budget, each write idempotent. Before, those were not retried: the
      // apply stopped with record.unreachable and needed a re-run (7 of 23 points with FLEET_CRASH_FULL=1,
      // 2026-12-03). No stack trace, no unhandled rejection.
      expect(first.stderr).not.toMatch(/Unhandled|TypeError|ReferenceError|\n\s+at .*:\d+:\d+\)?\n/);
      const summary = first.stdout.split('\n').find((l) => l.includes('"type":"summary"'));
      expect(first.code, `the apply failed: ${first.stdout.split('\n').filter((l) => l.includes('"severity":"error"') || l.includes('"status":"failed"')).join('\n').slice(0, 3000)} ${first.stderr.slice(0, 2000)}`).toBe(0);
      expect(JSON.parse(summary!)).toMatchObject({ succeeded: COUNT, failed: 0 });
      // Said at most once per outage, in words.
      const said = first.stderr.match(/the record is unreachable/g)?.length ?? 0;
      expect(said).toBeLessThanOrEqual(1);
      if (said === 1) expect(first.stderr).toMatch(/note: the record is reachable again after [\d.]+ s; the apply goes on\./);
      await expectSettled(d, () => svc.stop());
    } finally {
      await svc.stop();
      await proxy.close();
      await d.close();
    }
  }, 300_000);

  it('CLI killed once the first boot is done, its DMZ client carrying on with the edges approved ahead: the re-run waits for their reports before it plans, and converges', async () => {
    // Breaking the dead apply's lock fences its runs' next authorizations, not the edges the authority
    // approved ahead (here an awaitReady the gate holds): a plan made before that
    // edge's report asked for it again and saw it vetoed, or saw the record move under it.
    // The killed apply's held calls (an awaitReady at least) stay held at the DMZ client until the re-run says it
    // waits for them: a re-run that took longer to start than the edges took to end (a loaded machine, even with
    // 8 s boots: seen with 3 busy loops beside the tests) found them reported already, and the note this case
    // checks was not printed.
    const d = await deployed();
    const svc = await services(d);
    try {
      await d.stack.spec('web', fleetYaml('web', { count: COUNT, strategy: 'pack' }));
      await writeFile(d.stack.gate, GATE_BOOT);
      const first = await fleet(['apply', '--yes', '--format', 'json', '--stack', d.stack.dir], d.env, { killWhen: bootDone });
      expect(first.killed, `the apply ended before a boot: ${first.stderr}`).toBe(true);
      expect(first.code, 'the apply ended on its own, not by the kill').toBeNull();
      let released = false;
      const again = await fleet(['apply', '--yes', '--format', 'json', '--stack', d.stack.dir], d.env, {
        onStderr: (text) => {
          if (released || !/note: waiting up to 10 s for \d+ steps? the interrupted apply had approved/.test(text)) return;
          released = true;
          void rm(d.stack.gate);
        },
      });
      expect(again.code, `the re-run failed: ${again.stderr.slice(0, 3000)}`).toBe(0);
      expect(again.stderr).toMatch(/note: waiting up to 10 s for \d+ steps? the interrupted apply had approved/);
      expect(again.stderr).toContain('note: they are done.');
      figures.push({ mode: 'deployed, CLI killed during boot', point: -1, killedAfterMs: first.ms, rerunMs: again.ms });
      await svc.stop();
      await converged(d.stack, d.recordUrl, 'crashdep', ['miami'], COUNT);
      // No edge was asked for twice: the re-run planned from the reports of the edges in flight, not before them.
      const record = await openRecord(d.recordUrl);
      try {
        const approvals = (await record.history('crashdep')).filter((h) => h.actor === 'authority' && (h.detail ?? '').startsWith('intent approved:'));
        const twice = approvals.filter((h, i) => approvals.findIndex((o) => o.vmId === h.vmId && o.from === h.from && o.to === h.to) !== i);
        expect(twice.map((h) => `${h.address} ${h.from} -> ${h.to}`)).toEqual([]);
      } finally {
        await record.close();
      }
    } finally {
      await svc.stop();
      await d.close();
    }
  }, 300_000);

  it('CLI and DMZ client killed once the first boot is done (agents booting), the DMZ client started again: one re-run converges, awaiting the resumed boots', async () => {
    const d = await deployed(BOOT_LONG_MS);
    const svc = await services(d);
    try {
      await d.stack.spec('web', fleetYaml('web', { count: COUNT, strategy: 'pack' }));
      await writeFile(d.stack.gate, GATE_BOOT);
      const first = await fleet(['apply', '--yes', '--format', 'json', '--stack', d.stack.dir], d.env, { killWhen: bootDone, also: () => void svc.stopDmz() });
      expect(first.killed, `the apply ended before a boot: ${first.stderr}`).toBe(true);
      expect(first.code, 'the apply ended on its own, not by the kill').toBeNull();
      await svc.stopDmz();
      await rm(d.stack.gate);
      const booting = await bootingNow(d.stack, ['miami']);
      expect(booting.length).toBeGreaterThanOrEqual(1);
      const before = await recordStates(d.recordUrl, 'crashdep');
      await svc.startDmz();
      const again = await fleet(['apply', '--yes', '--format', 'json', '--stack', d.stack.dir], d.env);
      expect(again.code, `the re-run failed: ${again.stderr.slice(0, 3000)}`).toBe(0);
      figures.push({ mode: 'deployed, CLI and DMZ client killed during boot', point: -1, killedAfterMs: first.ms, rerunMs: again.ms });
      await svc.stop();
      await bootsResumed(d.recordUrl, 'crashdep', again.stdout, before, booting);
      await converged(d.stack, d.recordUrl, 'crashdep', ['miami'], COUNT);
    } finally {
      await svc.stop();
      await d.close();
    }
  }, 300_000);

  it('CLI and DMZ client killed just after the authority approved a boot, before the answer reached the agent: the resumed agent presents the token again and the one re-run converges (no VM terminated)', async () => {
    // The crash window of a boot (issue 14): between the authority's approval (the token used) and the agent acting on it.
    // A proxy between the DMZ client and the authority holds the first boot approval, kills both processes, and drops it.
    const d = await deployed(BOOT_LONG_MS);
    let crash: (() => void) | undefined;
    let proxy: { close: () => Promise<void> } | undefined;
    const svc = await services(d, async (upstream) => {
      const p = await bootCrashProxy(upstream, () => crash?.());
      proxy = p;
      return p.url;
    });
    try {
      await d.stack.spec('web', fleetYaml('web', { count: COUNT, strategy: 'pack' }));
      let cli: ChildProcess | undefined;
      crash = () => {
        void svc.stopDmz();
        cli?.kill('SIGKILL');
      };
      const first = await fleet(['apply', '--yes', '--format', 'json', '--stack', d.stack.dir], d.env, { started: (c) => (cli = c) });
      expect(first.code, `the apply was not killed at the boot approval: ${first.stderr.slice(0, 2000)}`).toBeNull();
      await svc.stopDmz();
      const booting = await bootingNow(d.stack, ['miami']);
      expect(booting.length).toBeGreaterThanOrEqual(1);
      const before = await recordStates(d.recordUrl, 'crashdep');
      await svc.startDmz();
      const again = await fleet(['apply', '--yes', '--format', 'json', '--stack', d.stack.dir], d.env);
      expect(again.code, `the re-run failed: ${again.stderr.slice(0, 3000)} ${again.stdout.split("\n").filter((l) => l.includes("failed")).join(" ").slice(0, 2000)}`).toBe(0);
      figures.push({ mode: 'deployed, killed at a boot approval', point: -1, killedAfterMs: first.ms, rerunMs: again.ms });
      await svc.stop();
      await bootsResumed(d.recordUrl, 'crashdep', again.stdout, before, booting);
      await converged(d.stack, d.recordUrl, 'crashdep', ['miami'], COUNT);
    } finally {
      await svc.stop();
      await proxy?.close();
      await d.close();
    }
  }, 300_000);

  it('a DMZ client killed mid-apply and started again 3 s later fails no member (the CLI rides the outage out)', async () => {
    const d = await deployed();
    const svc = await services(d);
    try {
      await d.stack.spec('web', fleetYaml('web', { count: COUNT, strategy: 'pack' }));
      const t0 = performance.now();
      // Take the DMZ client away once the apply is under way (its first step done): an outage longer than the old ~1.5 s of retries.
      // The apply is held at its first step (no call goes through) until the DMZ client is started again: the outage certainly comes mid-apply.
      await writeFile(d.stack.gate, gateAfter(1));
      let underWay = (_ended: boolean) => {};
      const going = new Promise<boolean>((r) => (underWay = r));
      const applying = fleet(['apply', '--yes', '--format', 'json', '--stack', d.stack.dir], d.env, { onDone: (n, stdout) => n >= 1 && underWay(stdout.includes('"type":"summary"')) });
      const endedBefore = await Promise.race([going, applying.then(() => true)]);
      expect(endedBefore, 'the apply had ended before the DMZ client was stopped').toBe(false);
      await svc.stopDmz();
      await new Promise((res) => setTimeout(res, 3_000));
      await rm(d.stack.gate);
      await svc.startDmz();
      const done = await applying;
      expect({ code: done.code, stderr: done.stderr.slice(0, 3000) }).toMatchObject({ code: 0 });
      const summary = done.stdout.split('\n').filter((l) => l.includes('"type":"summary"')).map((l) => JSON.parse(l) as { succeeded: number; failed: number });
      expect(summary.at(-1)).toMatchObject({ succeeded: COUNT, failed: 0 });
      figures.push({ mode: 'deployed, DMZ client down 3 s', point: 0, killedAfterMs: 0, rerunMs: Math.round(performance.now() - t0) });
      await svc.stop();
      await converged(d.stack, d.recordUrl, 'crashdep', ['miami'], COUNT);
    } finally {
      await svc.stop();
      await d.close();
    }
  }, 300_000);
});
