// The protect rule's `override: admin`, through the built CLI: a plan made
// with --allow-destroy shows no violation, and the authority accepts the
// override only with a proof under the admin token. `fleet apply` without
// FLEET_ADMIN_TOKEN started anyway: it created the new fleet's member, then
// had the protected member's deletion vetoed (override-refused), a
// half-applied plan. It now refuses to start (apply.admin-token-missing),
// and with the token applies it all.
import { execFile } from 'node:child_process';
import http from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startAuthority, type RunningService } from '../engine/authority/server.ts';
import type { ServiceLogOptions } from '../engine/observability/index.ts';
import { loadPack } from '../engine/policy/load.ts';
import { openRecord } from '../engine/record/index.ts';
import { createTestDatabase, testPostgresUrl } from '../engine/record/testing.ts';
import type { FleetRecord } from '../engine/record/types.ts';
import { credentialKey } from '../protocol/index.ts';
import { createSimDriver, type SimDriver } from '../providers/drivers/sim/index.ts';
import { startDmzClient, type RunningDmzClient } from '../providers/dmz-client/server.ts';
import { runCli } from './helpers/cli.ts';
import { listenOnLoopback } from './helpers/proxy.ts';

const REPO = join(import.meta.dirname, '..');
const FLEET = join(REPO, 'bin', 'fleet.mjs');

function fleet(args: string[], cwd: string, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const base: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete base.FLEET_ADMIN_TOKEN;
  return new Promise((done) => {
    execFile(process.execPath, [FLEET, ...args], { cwd, env: { ...base, ...env }, timeout: 120_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string }) | null;
      done({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr });
    });
  });
}

const STACK = `apiVersion: fleet/v1
kind: Stack
metadata: { name: adm }
spec:
  specs: ["specs/*.yaml"]
  record: pglite://.fleet/record
  policyPack:
    path: ${JSON.stringify(join(REPO, 'policies', 'default'))}
    config:
      protect: { override: admin }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - { name: miami, address: embedded, location: { lat: 25.7617, lon: -80.1918 }, capacity: { vms: 100 } }
`;

const web = (count: number) => `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-a }
spec: { count: ${count}, image: ubuntu-22.04, size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, protect: true, state: PoweredOff }
`;
const API = `---
apiVersion: fleet/v1
kind: Fleet
metadata: { name: api, owner: team-a }
spec: { count: 1, image: ubuntu-22.04, size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, state: PoweredOff }
`;

describe("protect's override: admin, through the CLI", () => {
  let tmp: string;
  let stack: string;
  const addresses = async (): Promise<string[]> => {
    const r = await fleet(['state', 'list', '--stack', stack, '--format', 'json'], tmp);
    expect(r.code).toBe(0);
    return (JSON.parse(r.stdout) as { vms: { address: string }[] }).vms.map((v) => v.address).sort();
  };
  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'fleet-admin-override-'));
    stack = join(tmp, 'stack');
    mkdirSync(join(stack, 'specs'), { recursive: true });
    writeFileSync(join(stack, 'stack.yaml'), STACK);
    writeFileSync(join(stack, 'specs', 'fleets.yaml'), web(2));
    expect((await fleet(['apply', '--stack', stack, '--yes'], tmp)).code).toBe(0);
    writeFileSync(join(stack, 'specs', 'fleets.yaml'), web(1) + API);
  }, 130_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('without FLEET_ADMIN_TOKEN, fleet apply --allow-destroy starts nothing', { timeout: 130_000 }, async () => {
    const r = await fleet(['apply', '--stack', stack, '--yes', '--allow-destroy', 'web'], tmp);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error\[apply\.admin-token-missing\][\s\S]*web\/1[\s\S]*FLEET_ADMIN_TOKEN/);
    expect(await addresses()).toEqual(['web/0', 'web/1']);
  });

  it('with it, the plan is applied whole', { timeout: 130_000 }, async () => {
    const r = await fleet(['apply', '--stack', stack, '--yes', '--allow-destroy', 'web'], tmp, { FLEET_ADMIN_TOKEN: 'admin-token-for-tests' });
    expect(r.stderr).not.toMatch(/error\[/);
    expect(r.code).toBe(0);
    expect(await addresses()).toEqual(['api/0', 'web/0']);
  });
});

const CLI_TOKEN = 'cli-token-miami';
const DMZ_TOKEN = 'dmz-token-miami';
const RIGHT = 'the-right-admin-token';

/** What deployedStack started, for a describe block's tests and its afterAll. */
interface DeployedStack {
  dir: string;
  dmz: RunningDmzClient;
  /** The stack's stack.yaml with data center miami at `address` (its DMZ client's, or another to write a copy with). */
  stackYaml(address: string): string;
  /** The stack's members in the record, by address, sorted. */
  live(): Promise<string[]>;
  /** Stops what it started, in order, and removes its database and folder. */
  close(): Promise<void>;
}

/**
 * A deployed stack `name` in a temp folder: an authority (admin token RIGHT,
 * `planTokens` when it seals plans) and a sim DMZ client for miami over a
 * PostgreSQL record of their own, shared with the CLI (PGlite is one
 * process's), as in test/plan-seal-authority.e2e.test.ts. stack.yaml names
 * the authority only when `authorityInStackYaml`. web/0 and web/1 are applied
 * through the CLI, then the specs say web(1) + api: a plan that deletes the
 * protected web/1 (under --allow-destroy) and creates api/0. What started is
 * stopped again when a later step fails.
 */
async function deployedStack(o: {
  name: string;
  planTokens?: string[];
  logger?: ServiceLogOptions;
  authorityInStackYaml: boolean;
  env: Record<string, string>;
}): Promise<DeployedStack> {
  const dir = mkdtempSync(join(tmpdir(), `fleet-${o.name}-`));
  let db: { url: string; drop(): Promise<void> } | undefined;
  let record: FleetRecord | undefined;
  let authority: RunningService | undefined;
  let driver: SimDriver | undefined;
  let dmz: RunningDmzClient | undefined;
  const close = async () => {
    await dmz?.close();
    await driver?.close();
    await authority?.close();
    await record?.close();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    mkdirSync(join(dir, 'specs'));
    db = await createTestDatabase(testPostgresUrl()!);
    record = await openRecord(db.url);
    const pack = (await loadPack(join(REPO, 'policies', 'default'), { protect: { override: 'admin' } })).pack!;
    authority = await startAuthority({
      record,
      pack,
      stackName: o.name,
      dataCenters: [{ name: 'miami', token: DMZ_TOKEN }],
      ...(o.planTokens ? { planTokens: o.planTokens } : {}),
      adminTokens: [RIGHT],
      secret: 'the-authority-secret',
      ...(o.logger ? { logger: o.logger } : {}),
    });
    driver = await createSimDriver({ dataCenter: 'miami', stateDir: join(dir, 'sim'), latencyMs: 1, bootMs: 1, credentialKey: credentialKey(DMZ_TOKEN, 'miami') });
    dmz = await startDmzClient({ dataCenter: 'miami', driver, authorityUrl: authority.url, authorityToken: DMZ_TOKEN, clientToken: CLI_TOKEN, stateDir: join(dir, 'dmz'), pack, ...(o.logger ? { logger: o.logger } : {}) });
    const authorityUrl = authority.url;
    const dbUrl = db.url;
    const stackYaml = (address: string) => {
      const named = STACK.replace('metadata: { name: adm }', `metadata: { name: ${o.name} }`).replace('pglite://.fleet/record', dbUrl).replace('address: embedded', `address: ${address}`);
      return o.authorityInStackYaml ? named.replace('  site:', `  authority: { address: ${authorityUrl} }\n  site:`) : named;
    };
    writeFileSync(join(dir, 'stack.yaml'), stackYaml(dmz.url));
    writeFileSync(join(dir, 'specs', 'fleets.yaml'), web(2));
    const r = await runCli(['apply', '--yes', '--stack', dir], { cwd: REPO, env: o.env });
    expect(r.code, r.stderr).toBe(0);
    writeFileSync(join(dir, 'specs', 'fleets.yaml'), web(1) + API);
    const rec = record;
    return { dir, dmz, stackYaml, live: async () => (await rec.listVms(o.name)).map((v) => v.address).sort(), close };
  } catch (err) {
    await close();
    throw err;
  }
}

// A deployed stack (an `authority` address in stack.yaml) whose authority holds
// another admin token than the CLI's FLEET_ADMIN_TOKEN: the authority judges
// each override's proof per request, so apply created api/0 and then had
// web/1's deletion vetoed (override-refused), a half-applied plan. apply now
// asks the authority first (POST /v1/plans/admin-check) and starts nothing.
// The record on PostgreSQL, shared by the CLI and the authority (PGlite is
// one process's), as in test/plan-seal-authority.e2e.test.ts.
describe.skipIf(!testPostgresUrl())("protect's override: admin, a deployed authority and a wrong FLEET_ADMIN_TOKEN", () => {
  const PLAN_TOKEN = 'plan-token-at-the-authority';
  const env = { FLEET_AUTHORITY_TOKEN: PLAN_TOKEN, FLEET_CLI_TOKEN_MIAMI: CLI_TOKEN, FLEET_RETRY_BUDGET_MS: '1000' };
  let stack: DeployedStack;
  let dir: string;
  const live = () => stack.live();

  beforeAll(async () => {
    stack = await deployedStack({ name: 'admd', planTokens: [PLAN_TOKEN], authorityInStackYaml: true, env });
    dir = stack.dir;
  }, 130_000);
  afterAll(() => stack?.close());

  it('a wrong FLEET_ADMIN_TOKEN: fleet apply --allow-destroy starts nothing, and says why', { timeout: 130_000 }, async () => {
    const r = await runCli(['apply', '--yes', '--stack', dir, '--allow-destroy', 'web'], { cwd: REPO, env: { ...env, FLEET_ADMIN_TOKEN: 'a-wrong-admin-token' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error\[apply\.admin-token-invalid\][\s\S]*FLEET_ADMIN_TOKEN/);
    expect(r.stderr + r.stdout).not.toContain('a-wrong-admin-token');
    expect(await live()).toEqual(['web/0', 'web/1']);
  });

  it('a saved plan (fleet plan --out, then fleet apply FILE) with a wrong FLEET_ADMIN_TOKEN changes nothing either', { timeout: 130_000 }, async () => {
    const file = join(dir, 'saved.plan.json');
    const made = await runCli(['plan', '--stack', dir, '--allow-destroy', 'web', '--out', file], { cwd: REPO, env });
    expect(made.code, made.stderr).toBe(0);
    const r = await runCli(['apply', '--yes', '--stack', dir, file], { cwd: REPO, env: { ...env, FLEET_ADMIN_TOKEN: 'a-wrong-admin-token' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error\[apply\.admin-token-invalid\][\s\S]*FLEET_ADMIN_TOKEN/);
    expect(r.stderr + r.stdout).not.toContain('a-wrong-admin-token');
    expect(await live()).toEqual(['web/0', 'web/1']);
  });

  it('the right one: the plan is applied whole', { timeout: 130_000 }, async () => {
    const r = await runCli(['apply', '--yes', '--stack', dir, '--allow-destroy', 'web'], { cwd: REPO, env: { ...env, FLEET_ADMIN_TOKEN: RIGHT } });
    expect(r.stderr).not.toMatch(/error\[/);
    expect(r.code).toBe(0);
    expect(await live()).toEqual(['api/0', 'web/0']);
  });
});

// A stack with a deployed data center and NO `authority` address: its DMZ
// client answers to an authority the CLI cannot reach. Nothing checked
// FLEET_ADMIN_TOKEN before the apply started: a wrong one created api/0 and
// then had web/1's deletion vetoed (override-refused), a half-applied plan.
// The next fix refused every such apply before anything started
// (apply.admin-token-unverifiable), a correct token too. fleet apply now has
// the data center's DMZ client ask its authority (POST /v1/admin-check, a
// proof, never the token): a wrong token is apply.admin-token-invalid with
// nothing started, for a fresh plan and a saved one alike; with no DMZ client
// answering it is still refused (unverifiable), saying why; the right one
// applies the plan whole.
describe.skipIf(!testPostgresUrl())("protect's override: admin, a deployed data center, no authority address in stack.yaml", () => {
  let stack: DeployedStack;
  let dir: string;
  let dmz: RunningDmzClient;
  /** A port that takes connections and cuts each at once: a DMZ client that does not answer. */
  let dead: Server | undefined;
  const logs: string[] = [];
  const keep = { level: 'debug' as const, stream: { write: (l: string) => void logs.push(l) } };
  const env = { FLEET_CLI_TOKEN_MIAMI: CLI_TOKEN, FLEET_RETRY_BUDGET_MS: '1000' };
  const live = () => stack.live();

  beforeAll(async () => {
    // No plan tokens: an authority that seals no plans, as one the stack does not name runs.
    stack = await deployedStack({ name: 'admr', logger: keep, authorityInStackYaml: false, env });
    ({ dir, dmz } = stack);
    const closed = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    dead = closed;
    // The same stack, its data center at the dead port.
    mkdirSync(join(dir, 'unreachable', 'specs'), { recursive: true });
    writeFileSync(join(dir, 'unreachable', 'stack.yaml'), stack.stackYaml(`http://127.0.0.1:${(closed.address() as AddressInfo).port}`));
    writeFileSync(join(dir, 'unreachable', 'specs', 'fleets.yaml'), web(1) + API);
  }, 130_000);
  afterAll(async () => {
    await stack?.close();
    await new Promise((resolve) => (dead ? dead.close(resolve) : resolve(undefined)));
  });

  it.each([
    { name: 'fresh', saved: false },
    { name: 'saved', saved: true },
  ])('a $name plan under --allow-destroy with a wrong FLEET_ADMIN_TOKEN: refused by the authority through the DMZ client, before anything starts', { timeout: 130_000 }, async ({ saved }) => {
    const file = join(dir, 'saved.plan.json');
    if (saved) {
      const made = await runCli(['plan', '--stack', dir, '--allow-destroy', 'web', '--out', file], { cwd: REPO, env });
      expect(made.code, made.stderr).toBe(0);
    }
    const args = saved ? ['apply', '--yes', '--stack', dir, file] : ['apply', '--yes', '--stack', dir, '--allow-destroy', 'web'];
    const r = await runCli(args, { cwd: REPO, env: { ...env, FLEET_ADMIN_TOKEN: 'a-wrong-admin-token' } });
    expect(r.code).toBe(1);
    // Before the first fix: api/0 was created, then web/1's deletion vetoed (override-refused).
    expect(await live()).toEqual(['web/0', 'web/1']);
    expect(r.stderr).toMatch(/error\[apply\.admin-token-invalid\][\s\S]*miami[\s\S]*DMZ client[\s\S]*web\/1[\s\S]*Nothing was started[\s\S]*FLEET_ADMIN_TOKEN/);
    expect(r.stderr).not.toMatch(/override-refused|admin-token-unverifiable/);
    expect(r.stderr + r.stdout).not.toContain('a-wrong-admin-token');
  });

  it('no DMZ client answers: refused before anything starts, saying why and what to do', { timeout: 130_000 }, async () => {
    const r = await runCli(['apply', '--yes', '--stack', join(dir, 'unreachable'), '--allow-destroy', 'web'], { cwd: REPO, env: { ...env, FLEET_ADMIN_TOKEN: RIGHT } });
    expect(r.code).toBe(1);
    expect(await live()).toEqual(['web/0', 'web/1']);
    expect(r.stderr).toMatch(/error\[apply\.admin-token-unverifiable\][\s\S]*web\/1[\s\S]*miami[\s\S]*POST \/v1\/admin-check[\s\S]*miami: [\s\S]*Nothing was started[\s\S]*spec\.authority/);
    expect(r.stderr + r.stdout).not.toContain(RIGHT);
  });

  it('the right FLEET_ADMIN_TOKEN: checked through the DMZ client, and the plan is applied whole', { timeout: 130_000 }, async () => {
    const r = await runCli(['apply', '--yes', '--stack', dir, '--allow-destroy', 'web'], { cwd: REPO, env: { ...env, FLEET_ADMIN_TOKEN: RIGHT } });
    // Before: refused (apply.admin-token-unverifiable) whatever the token.
    expect(r.stderr).not.toMatch(/error\[/);
    expect(r.code).toBe(0);
    expect(await live()).toEqual(['api/0', 'web/0']);
    // The DMZ client passed the check on and its authority judged it; neither logged the token.
    // Log lines reach the stream in batches (engine/observability/logs.ts LineBatcher: after 10 ms, or 16 KiB): wait for the line.
    await vi.waitFor(() => expect(logs.join('')).toMatch(/"dataCenter":"miami"[^\n]*"outcome":"ok"[^\n]*"admin check"/));
    const logged = logs.join('');
    expect(logged).not.toContain(RIGHT);
    expect(logged).not.toContain('a-wrong-admin-token');
  });

  // The check grants nothing: a DMZ client that answers ok for any token (compromised; here a proxy in front of it that
  // fakes the answer) gets the apply started, and the authority still vetoes the overridden deletion, judging the
  // deleting request's own proof (bound to the VM and the plan) against its own admin token.
  it('a DMZ client that lies (ok for a wrong token): the authority still vetoes the deletion; the override is not granted', { timeout: 130_000 }, async () => {
    const agent = new http.Agent({ keepAlive: true });
    const liar = http.createServer((req, res) => {
      if (req.url === '/v1/admin-check') {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
        return;
      }
      const target = new URL(req.url ?? '/', dmz.url);
      const up = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host }, agent }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    const { url, close } = await listenOnLoopback(liar, agent);
    try {
      const lied = join(dir, 'lied');
      mkdirSync(join(lied, 'specs'), { recursive: true });
      writeFileSync(join(lied, 'stack.yaml'), readFileSync(join(dir, 'stack.yaml'), 'utf8').replace(dmz.url, url));
      writeFileSync(join(lied, 'specs', 'fleets.yaml'), web(0) + API);
      const r = await runCli(['apply', '--yes', '--stack', lied, '--allow-destroy', 'web'], { cwd: REPO, env: { ...env, FLEET_ADMIN_TOKEN: 'a-wrong-admin-token' } });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/error\[apply\.member-failed\][\s\S]*web\/0[\s\S]*vetoed by the authority[\s\S]*admin token's proof/);
      expect(await live()).toEqual(['api/0', 'web/0']);
      expect(r.stderr + r.stdout).not.toContain('a-wrong-admin-token');
    } finally {
      await close();
    }
  });
});
