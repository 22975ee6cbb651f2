// Ten `fleet apply --target` processes at once on one stack whose data
// centers are embedded sims: before each sim had one owner, every CLI opened
// its own sim over the same state folder and compaction overwrote the
// others' VMs (ten applies exited 0, the record held 200 Running VMs, the
// sims 130). Now a sim's folder is held by one process at a time and the
// others wait (--lock-timeout): every apply succeeds and the record equals the
// data centers. On PostgreSQL when FLEET_TEST_POSTGRES_URL is set (fleet
// locks let the applies overlap), else on PGlite (whose own lock serializes).
//
// And on PGlite, always: an apply given --lock-timeout waits that long for
// the record another apply holds (it waited FLEET_RECORD_BUSY_TIMEOUT_MS,
// 10 s, whatever --lock-timeout said, and failed with record.busy), saying
// whom it waits for; once the holder is killed, it breaks its fleet lock
// and converges.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSimState } from '../providers/drivers/sim/index.ts';
import { openRecord } from '../engine/record/index.ts';
import { createTestDatabase, testPostgresUrl } from '../engine/record/testing.ts';
import { fleetYaml, REPO, tempStack, type TempStack } from './helpers/stack.ts';

const FLEETS = 10;
const COUNT = 2;

function apply(dir: string, fleet: string): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), 'apply', '--yes', '--stack', dir, '--target', fleet, '--lock-timeout', '300'], {
    cwd: REPO,
    env: { ...process.env, NO_COLOR: '1', FLEET_RECORD_BUSY_TIMEOUT_MS: '300000' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
}

/** `fleet apply --yes --format json ARGS` as a child; `until` resolves once its stdout or stderr so far satisfies it (or rejects when it exits first). */
function applyChild(dir: string, args: string[], env: NodeJS.ProcessEnv) {
  const child: ChildProcess = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), 'apply', '--yes', '--format', 'json', '--stack', dir, ...args], {
    cwd: REPO,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const waiters: (() => void)[] = [];
  const poke = () => waiters.forEach((w) => w());
  child.stdout!.on('data', (c: Buffer) => ((stdout += c.toString()), poke()));
  child.stderr!.on('data', (c: Buffer) => ((stderr += c.toString()), poke()));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('exit', (code) => {
      poke();
      resolve({ code, stdout, stderr });
    }),
  );
  const until = (what: string, ok: (out: { stdout: string; stderr: string }) => boolean) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (ok({ stdout, stderr })) resolve();
        else if (child.exitCode !== null || child.signalCode !== null) reject(new Error(`exited (${child.exitCode ?? child.signalCode}) before ${what}: ${stderr.slice(0, 1000)} ${stdout.slice(-1000)}`));
      };
      waiters.push(check);
      check();
    });
  return { child, exited, until };
}

describe('an apply waiting for a PGlite record another apply holds', () => {
  let stack: TempStack;

  beforeAll(async () => {
    stack = await tempStack({ latencyMs: 1, bootMs: 1 });
    await stack.spec('web', fleetYaml('web', { count: 2 }));
  });
  afterAll(async () => {
    await stack?.remove();
  });

  it('waits --lock-timeout for it (not FLEET_RECORD_BUSY_TIMEOUT_MS), says so, and converges once the holder is killed', async () => {
    const file = join(stack.dir, 'stack.yaml');
    const plain = await readFile(file, 'utf8');
    // The holder's awaitReady never answers: it holds the record (and its fleet lock) until it is killed.
    await writeFile(file, plain.replaceAll('sim: { latencyMs: 1, bootMs: 1 }', 'sim: { latencyMs: 1, bootMs: 1, hangCalls: [awaitReady] }'));
    const holder = applyChild(stack.dir, [], {});
    // Started: the record is open and the fleet locked, its members at work.
    await holder.until('its apply started', (o) => o.stdout.includes('"type":"start"'));
    await writeFile(file, plain);

    // The record's own wait is 0 here: only --lock-timeout may keep it waiting.
    const waiter = applyChild(stack.dir, ['--lock-timeout', '120'], { FLEET_RECORD_BUSY_TIMEOUT_MS: '0' });
    await waiter.until('it said it waits for the record', (o) => o.stderr.includes('note: the PGlite record is open in pid'));
    expect(waiter.child.exitCode).toBeNull();
    holder.child.kill('SIGKILL');
    await holder.exited;

    const r = await waiter.exited;
    expect(r.code, r.stderr.slice(0, 3000)).toBe(0);
    expect(r.stderr).toContain('waiting up to 120 s for it (`--lock-timeout SECONDS` waits longer)');
    expect(r.stdout).toContain('"type":"lock-broken"');
    const record = await openRecord(`pglite://${join(stack.dir, '.fleet', 'record')}`);
    const live = await record.listVms('e2e');
    await record.close();
    expect(live.map((v) => [v.address, v.state]).sort()).toEqual([
      ['web/0', 'Running'],
      ['web/1', 'Running'],
    ]);
  }, 300_000);
});

describe('concurrent applies over embedded data centers', () => {
  let stack: TempStack;
  let recordUrl: string;
  let drop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    stack = await tempStack({ latencyMs: 1, bootMs: 1 });
    const pg = testPostgresUrl();
    if (pg) {
      const db = await createTestDatabase(pg);
      recordUrl = db.url;
      drop = db.drop;
      const file = join(stack.dir, 'stack.yaml');
      await writeFile(file, (await readFile(file, 'utf8')).replace('pglite://.fleet/record', recordUrl));
    } else {
      recordUrl = `pglite://${join(stack.dir, '.fleet', 'record')}`;
    }
    for (let i = 0; i < FLEETS; i++) await stack.spec(`f${i}`, fleetYaml(`f${i}`, { count: COUNT }));
  });
  afterAll(async () => {
    await drop?.();
    await stack?.remove();
  });

  it('lose no VM: every apply succeeds and the record equals the data centers', async () => {
    const runs = await Promise.all(Array.from({ length: FLEETS }, (_, i) => apply(stack.dir, `f${i}`)));
    for (const r of runs) expect({ code: r.code, stderr: r.stderr.slice(0, 2000) }).toMatchObject({ code: 0 });

    const record = await openRecord(recordUrl);
    const live = await record.listVms('e2e');
    await record.close();
    expect(live).toHaveLength(FLEETS * COUNT);
    expect(live.every((v) => v.state === 'Running')).toBe(true);

    const inClouds = new Map<string, string>();
    for (const dc of ['miami', 'richmond']) {
      const { vms } = await readSimState(join(stack.dir, '.fleet', 'sim', dc), dc);
      for (const v of vms) if (v.status === 'present') inClouds.set(v.cloudId, dc);
    }
    // Each recorded VM is in its data center (a lost one shows as dc: undefined), and nothing else is.
    expect(live.map((v) => ({ address: v.address, dc: inClouds.get(v.cloudId ?? '') }))).toEqual(live.map((v) => ({ address: v.address, dc: v.dataCenter })));
    expect(inClouds.size).toBe(FLEETS * COUNT);
  }, 300_000);
});
