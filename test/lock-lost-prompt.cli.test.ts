// `fleet apply` locks the fleets in scope before it plans and keeps them
// (a heartbeat every 10 s) until the apply takes them over. A lock lost
// meanwhile (the lease expired and another apply took it, or `fleet unlock`)
// while the apply waited at its confirmation prompt went on into the apply
// when the answer came before the next beat; lost earlier, it ended with the
// bare record.lock-lost ("lock … no longer holds fleet web …"), saying
// neither when nor that nothing was changed nor what to do. Now the lock is
// checked when the answer comes, and the diagnostic says all of it.
//
// In-process, on a terminal the test types into; the record on PostgreSQL,
// which the test opens beside the CLI to take the lock away (PGlite is one
// process's handle).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../engine/cli/main.ts';
import type { CliIO } from '../engine/cli/io.ts';
import { openRecord } from '../engine/record/index.ts';
import type { SqlRecord } from '../engine/record/record.ts';
import { createTestDatabase, testPostgresUrl } from '../engine/record/testing.ts';

const REPO = join(import.meta.dirname, '..');

describe.skipIf(!testPostgresUrl())('fleet apply: its lock lost while it waits at the confirmation prompt', () => {
  let dir: string;
  let db: { url: string; drop(): Promise<void> };
  let record: SqlRecord;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fleet-lock-lost-'));
    mkdirSync(join(dir, 'specs'));
    db = await createTestDatabase(testPostgresUrl()!);
    writeFileSync(
      join(dir, 'stack.yaml'),
      `apiVersion: fleet/v1
kind: Stack
metadata: { name: lost }
spec:
  specs: ["specs/*.yaml"]
  record: ${db.url}
  policyPack: { path: ${JSON.stringify(join(REPO, 'policies', 'default'))} }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - { name: miami, address: embedded, location: { lat: 25.7617, lon: -80.1918 }, capacity: { vms: 10 } }
`,
    );
    writeFileSync(
      join(dir, 'specs', 'web.yaml'),
      `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-a }
spec: { count: 1, image: ubuntu-22.04, size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, state: PoweredOff }
`,
    );
    record = (await openRecord(db.url)) as SqlRecord;
  }, 60_000);
  afterAll(async () => {
    await record?.close();
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is checked when the answer comes: nothing is changed, and the diagnostic says when, that nothing was changed, and to run it again', { timeout: 120_000 }, async () => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const stdin = new PassThrough();
    let err = '';
    let prompted: () => void = () => undefined;
    const atPrompt = new Promise<void>((resolve) => (prompted = resolve));
    stderr.on('data', (c: Buffer) => {
      err += c.toString();
      if (err.includes('Do you want to apply these changes?')) prompted();
    });
    stdout.resume();
    const io: CliIO = {
      stdout: Object.assign(stdout, { isTTY: false }),
      stderr: Object.assign(stderr, { isTTY: false }),
      stdin: Object.assign(stdin, { isTTY: true }),
      env: { ...process.env, NO_COLOR: '1' },
      cwd: dir,
    };
    const run = main(['node', 'fleet', 'apply', '--stack', dir], io);
    await atPrompt;
    // While it waits: the lock is taken away (as `fleet unlock` does), then the answer comes.
    const locks = await record.sql.query<{ lock_id: string }>('SELECT lock_id FROM locks');
    expect(locks).toHaveLength(1);
    await record.sql.query('DELETE FROM locks');
    stdin.write('yes\n');
    const code = await run;

    // Before: the apply went on (web/0 created, exit 0) under a lock it no longer held.
    expect(await record.listVms('lost')).toEqual([]);
    expect(code).toBe(1);
    expect(err).toMatch(/error\[record\.lock-lost\][\s\S]*no longer holds fleet web[\s\S]*while it planned or waited at its confirmation prompt[\s\S]*nothing was changed[\s\S]*run `fleet apply` again/);
  });
});
