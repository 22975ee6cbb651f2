// Two applies on PostgreSQL competing for the last quota slots never exceed
// the quota (issue 13, "Done when"). Deployed mode on loopback: the authority
// and a sim DMZ client as child processes (test/helpers/deployed.ts), and per
// round two `fleet apply` child processes from two CLI folders of one stack,
// each applying a saved plan of its own fleet; both fleets belong to one
// owner whose quota holds fewer VMs than the two plans create together.
//
// Both plans are made before either apply starts, so both were granted their
// full count (each saw the quota free): the authority, checking the quota in
// the transaction that inserts each VM, approves exactly the free slots, and
// the apply that got the veto says so in a diagnostic and exits 1. A saved
// plan's basis holds only the fleet it changes, so neither plan is stale
// when the other fleet is applied first (docs/plan-format.md, "Stale plans").
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRecord } from '../engine/record/index.ts';
import { testPostgresUrl } from '../engine/record/testing.ts';
import { deployedStack, type Deployed } from './helpers/deployed.ts';
import { REPO, fleetYaml } from './helpers/stack.ts';

const pg = testPostgresUrl();
const ROUNDS = 8;
/** Each round's owner may hold 3 VMs; its two fleets ask for 2 each. */
const QUOTA = 3;
const COUNT = 2;

interface Child {
  code: number | null;
  stdout: string;
  stderr: string;
}

function fleetChild(env: NodeJS.ProcessEnv, args: string[]): Promise<Child> {
  const child = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), ...args], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

/** Fleet `name` of `owner` (fleetYaml names the owner after the fleet). */
const ownedYaml = (name: string, owner: string) => fleetYaml(name, { count: COUNT, cpu: 1 }).replace(`owner: team-${name}`, `owner: ${owner}`);

describe.skipIf(!pg)('two applies racing for the last quota slots (deployed, PostgreSQL)', () => {
  let d: Deployed;
  /** The two CLI folders of the stack: d.dir and a second one with its own specs. */
  let dirs: string[];

  beforeAll(async () => {
    const limits = [...Array.from({ length: ROUNDS }, (_, r) => `team-r${r}: { vms: ${QUOTA} }`), 'team-c: { vms: 1 }'].join(', ');
    d = await deployedStack(pg!, '{ latencyMs: 1, bootMs: 20 }', { config: `      owner-quota: { enforcement: mandatory, limits: { ${limits} } }\n` });
    const second = join(d.dir, '..', 'cli-b');
    await mkdir(join(second, 'specs'), { recursive: true });
    await writeFile(join(second, 'stack.yaml'), await readFile(join(d.dir, 'stack.yaml'), 'utf8'));
    dirs = [d.dir, second];
  }, 120_000);
  afterAll(async () => {
    await d?.stop();
  });

  it(`never exceed the quota; the apply that got the veto reports it and exits 1 (${ROUNDS} rounds)`, async () => {
    const record = await openRecord(d.recordUrl);
    try {
      for (let r = 0; r < ROUNDS; r++) {
        const owner = `team-r${r}`;
        const fleets = [`a${r}`, `b${r}`];
        // Each folder holds its own fleet's spec only (the last round's is replaced).
        await Promise.all(dirs.map((dir, k) => writeFile(join(dir, 'specs', 'fleet.yaml'), ownedYaml(fleets[k], owner))));
        const plans = dirs.map((dir) => join(dir, `plan-${r}.json`));
        const planned = await Promise.all(dirs.map((dir, k) => fleetChild(d.env, ['plan', '--stack', dir, '--target', fleets[k], '--out', plans[k]])));
        for (const p of planned) {
          expect(p.code, p.stderr).toBe(0);
          expect(p.stdout).toContain(`Plan: ${COUNT} to create`);
        }
        // Both applies at once.
        const applied = await Promise.all(dirs.map((dir, k) => fleetChild(d.env, ['apply', '--stack', dir, '--yes', plans[k]])));

        const live = (await record.listVms('e2e')).filter((v) => fleets.includes(v.fleet));
        const codes = applied.map((a) => a.code);
        const report = { round: r, live: live.length, codes, stderr: applied.map((a) => a.stderr) };
        // Never more than the quota, and every free slot was taken.
        expect(live.length, JSON.stringify(report)).toBe(QUOTA);
        // 2 + 2 creates for 3 slots: exactly one veto, so one apply fails and the other succeeds.
        expect([...codes].sort(), JSON.stringify(report)).toEqual([0, 1]);
        const loser = applied[codes.indexOf(1)];
        expect(loser.stderr).toContain('Request vetoed by the authority');
        expect(loser.stderr).toContain(`the quota of owner ${owner} is ${QUOTA} VMs`);
        expect(applied[codes.indexOf(0)].stderr).not.toContain('vetoed');
        expect(live.every((v) => v.state === 'Running')).toBe(true);
      }
      // Across the rounds, no owner holds more than its quota.
      const all = await record.listVms('e2e');
      for (let r = 0; r < ROUNDS; r++) expect(all.filter((v) => v.fleet === `a${r}` || v.fleet === `b${r}`)).toHaveLength(QUOTA);
    } finally {
      await record.close();
    }
  }, 300_000);

  it("with the DMZ client's CLI token and curl: a create naming another owner (one without a quota) for a full owner's fleet is vetoed, nothing changed", async () => {
    const dmz = /address: (http\S+)/.exec(await readFile(join(d.dir, 'stack.yaml'), 'utf8'))![1];
    // Fleet c of team-c, whose quota of 1 VM it uses up.
    await writeFile(join(dirs[0], 'specs', 'fleet.yaml'), fleetYaml('c', { count: 1, cpu: 1 }));
    const applied = await fleetChild(d.env, ['apply', '--stack', dirs[0], '--yes', '--target', 'c']);
    expect(applied.code, applied.stderr).toBe(0);
    const record = await openRecord(d.recordUrl);
    try {
      const before = (await record.listVms('e2e')).length;
      for (const owner of ['team-free', 'team-r1']) {
        // Fleet c's next member, claimed for another owner.
        const res = await fetch(`${dmz}/v1/vms`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${d.env.E2E_CLI_TOKEN_MIAMI}` },
          body: JSON.stringify({
            idempotencyKey: randomUUID(),
            planId: null,
            vm: {
              id: randomUUID(),
              stack: 'e2e',
              fleet: 'c',
              owner,
              index: 1,
              name: 'e2e-c-1',
              image: 'ubuntu-22.04',
              // Within the data center's capacity: only the owner's quota stands in the way.
              size: { cpu: 1, memoryGiB: 4, diskGiB: 20 },
              encryptedDisk: true,
              desiredState: 'Running',
              specHash: 'forged',
            },
          }),
        });
        const body = (await res.json()) as { outcome?: string; reason?: string };
        expect(body.outcome, JSON.stringify(body)).toBe('vetoed');
        expect(body.reason).toContain(`fleet c is owned by team-c in the record, not ${owner}`);
      }
      expect((await record.listVms('e2e')).length).toBe(before);
      expect((await record.listFleets('e2e', ['c']))[0].owner).toBe('team-c');
    } finally {
      await record.close();
    }
  }, 60_000);
});
