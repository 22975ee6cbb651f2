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
//   The same mode also restarts the DMZ client mid-apply: no member fails.
//
// CI runs a few kill points per mode; FLEET_CRASH_FULL=1 runs one per step
// and prints the figures (`npm run bench:crash`).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openRecord } from '../engine/record/index.ts';
import { createTestDatabase, testPostgresUrl } from '../engine/record/testing.ts';
import { readSimState } from '../providers/drivers/sim/index.ts';
import { fleetYaml, REPO, tempStack, type TempStack } from './helpers/stack.ts';

const FULL = process.env.FLEET_CRASH_FULL === '1';
/** Members of the fleet each run brings up; 3 in CI. */
const COUNT = FULL ? 4 : 3;
/** A member's requests to Running: its create and five edges. */
const STEPS = COUNT * 6;
const BOOT_MS = 300;
const CI_POINTS = [2, Math.floor(STEPS / 2), STEPS - 2];
const POINTS = FULL ? Array.from({ length: STEPS - 1 }, (_, i) => i + 1) : CI_POINTS;

const FLEET_BIN = join(REPO, 'bin', 'fleet.mjs');

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function fleet(args: string[], env: NodeJS.ProcessEnv, opts: { killAfterDone?: number; onDone?: (n: number) => void } = {}): Promise<Exit & { killed: boolean }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [FLEET_BIN, ...args], { cwd: REPO, env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let done = 0;
  let killed = false;
  child.stdout!.on('data', (c: Buffer) => {
    stdout += c.toString();
    done = stdout.split('\n').filter((l) => l.includes('"type":"step"') && l.includes('"status":"done"')).length;
    opts.onDone?.(done);
    if (opts.killAfterDone === undefined || killed) return;
    if (done >= opts.killAfterDone) {
      killed = true;
      child.kill('SIGKILL');
    }
  });
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr, killed, ms: Math.round(performance.now() - t0) })));
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
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

interface Figure {
  mode: string;
  point: number;
  killedAfterMs: number;
  rerunMs: number;
}
const figures: Figure[] = [];

afterAll(() => {
  if (figures.length === 0) return;
  const lines = figures.map((f) => (f.point === 0 ? `${f.mode}\twhole apply ${f.rerunMs} ms` : `${f.mode}\tkill after step ${f.point}\tkilled at ${f.killedAfterMs} ms\tre-run ${f.rerunMs} ms`));
  const worst = Math.max(...figures.map((f) => f.rerunMs));
  process.stderr.write(`crash harness: ${figures.length} kill points, slowest re-run ${worst} ms (boot ${BOOT_MS} ms)\n${lines.join('\n')}\n`);
});

describe('crash harness: embedded data centers (PGlite record, sims in the CLI)', () => {
  it.each(POINTS)('killed after step %i, converges in one re-run', async (point) => {
    const stack = await tempStack({ latencyMs: 2, bootMs: BOOT_MS });
    try {
      await stack.spec('web', fleetYaml('web', { count: COUNT }));
      const env = { FLEET_RECORD_BUSY_TIMEOUT_MS: '60000' };
      const first = await fleet(['apply', '--yes', '--format', 'json', '--stack', stack.dir], env, { killAfterDone: point });
      expect(first.killed, `the apply ended before step ${point}: ${first.stderr}`).toBe(true);
      const again = await fleet(['apply', '--yes', '--stack', stack.dir], env);
      expect({ code: again.code, stderr: again.stderr.slice(0, 3000) }).toMatchObject({ code: 0 });
      figures.push({ mode: 'embedded', point, killedAfterMs: first.ms, rerunMs: again.ms });
      const plan = await fleet(['plan', '--detailed-exitcode', '--stack', stack.dir], env);
      expect({ code: plan.code, out: plan.stdout }).toMatchObject({ code: 0 });
      await converged(stack, `pglite://${join(stack.dir, '.fleet', 'record')}`, 'e2e', ['miami', 'richmond'], COUNT);
    } finally {
      await stack.remove();
    }
  }, 300_000);
});

const pg = testPostgresUrl();

describe.skipIf(!pg)('crash harness: deployed (fleet serve orchestrator + dmz-client children, PostgreSQL record)', () => {
  /** A stack whose miami is a served DMZ client, richmond left out; the record a fresh PostgreSQL database. */
  async function deployed(): Promise<{ stack: TempStack; recordUrl: string; env: NodeJS.ProcessEnv; dmzPort: number; close: () => Promise<void> }> {
    const stack = await tempStack({ latencyMs: 2, bootMs: BOOT_MS, name: 'crashdep' });
    const db = await createTestDatabase(pg!);
    const dmzPort = await freePort();
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
    return { stack, recordUrl: db.url, env, dmzPort, close: async () => (await stack.remove(), await db.drop()) };
  }

  async function services(d: Awaited<ReturnType<typeof deployed>>) {
    const authority = await serve(['orchestrator', '--stack', d.stack.dir, '--port', '0'], d.env);
    const dmzArgs = ['dmz-client', '--stack', d.stack.dir, '--data-center', 'miami', '--authority', authority.url, '--port', String(d.dmzPort)];
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

  it.each(POINTS)('killed after step %i, its runs still at the DMZ client: converges in one re-run', async (point) => {
    const d = await deployed();
    const svc = await services(d);
    try {
      await d.stack.spec('web', fleetYaml('web', { count: COUNT, strategy: 'pack' }));
      const first = await fleet(['apply', '--yes', '--format', 'json', '--stack', d.stack.dir], d.env, { killAfterDone: point });
      expect(first.killed, `the apply ended before step ${point}: ${first.stderr}`).toBe(true);
      const again = await fleet(['apply', '--yes', '--stack', d.stack.dir], d.env);
      expect({ code: again.code, stderr: again.stderr.slice(0, 3000) }).toMatchObject({ code: 0 });
      figures.push({ mode: 'deployed', point, killedAfterMs: first.ms, rerunMs: again.ms });
      const plan = await fleet(['plan', '--detailed-exitcode', '--stack', d.stack.dir], d.env);
      expect({ code: plan.code, out: plan.stdout }).toMatchObject({ code: 0 });
      // The killed apply's runs may still finish at the DMZ client: wait for it to have answered them all, then compare.
      await svc.stop();
      await converged(d.stack, d.recordUrl, 'crashdep', ['miami'], COUNT);
    } finally {
      await svc.stop();
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
      let underWay = () => {};
      const going = new Promise<void>((r) => (underWay = r));
      const applying = fleet(['apply', '--yes', '--format', 'json', '--stack', d.stack.dir], d.env, { onDone: (n) => n >= 1 && underWay() });
      await Promise.race([going, applying]);
      await svc.stopDmz();
      await new Promise((res) => setTimeout(res, 3_000));
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
