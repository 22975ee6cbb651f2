// Ten `fleet apply --target` processes at once on one stack whose data
// centers are embedded sims: before each sim had one owner, every CLI opened
// its own sim over the same state folder and compaction overwrote the
// others' VMs (ten applies exited 0, the record held 200 Running VMs, the
// sims 130). Now a sim's folder is held by one process at a time and the
// others wait (--lock-timeout): every apply succeeds and the record equals the
// data centers. On PostgreSQL when FLEET_TEST_POSTGRES_URL is set (fleet
// locks let the applies overlap), else on PGlite (whose own lock serializes).
import { spawn } from 'node:child_process';
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
