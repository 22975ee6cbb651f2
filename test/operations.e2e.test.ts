// The services as a platform team runs them (docs/operations.md): a full
// `fleet apply` against `fleet serve orchestrator` and one `fleet serve
// dmz-client` per data center over a PostgreSQL record, then
// - logs: every line is JSON with the fields a person searches by, and no
//   secret that crossed the wire (CLI and DMZ tokens, the authority's
//   secret, every boot token, disk key and credential token the tap saw)
//   appears in any service's log;
// - metrics: a scrape after the apply shows the approvals, boot approvals,
//   step latencies by operation, record latencies and request counts;
// - replicas: two authorities behind a round-robin proxy, many concurrent
//   applies, the record checked against the data centers;
// - shutdown: SIGTERM to a DMZ client (a child process) mid-apply drains it
//   (exit 0); restarted, the apply converges without a failed member.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { testPostgresUrl } from '../engine/record/testing.ts';
import { openSession } from '../engine/apply/index.ts';
import { REPO, fleetYaml } from './helpers/stack.ts';
import { holdingProxy } from './helpers/proxy.ts';
import { DATA_CENTERS, serveStack, stackYaml, type ServedStack } from './helpers/services.ts';

const pgUrl = testPostgresUrl();

/** Every string under one of `keys`, anywhere in a JSON value. */
function collect(value: unknown, keys: ReadonlySet<string>, out: Set<string>): void {
  if (Array.isArray(value)) for (const v of value) collect(v, keys, out);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (keys.has(k) && typeof v === 'string') out.add(v);
      collect(v, keys, out);
    }
  }
}

/** The value of the sample `name` with all of `labels`, summed over the rest (0 when none). */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

describe.runIf(pgUrl !== undefined)('operable services: logs and metrics of a full apply', () => {
  let s: ServedStack;
  /** Secret values seen on the wire between the DMZ clients and the authority, by kind. */
  const wire = { bootToken: new Set<string>(), diskKey: new Set<string>(), token: new Set<string>() };

  beforeAll(async () => {
    s = await serveStack({
      pgUrl: pgUrl!,
      logLevel: 'debug',
      tap: (_path, request, answer) => {
        for (const text of [request, ...answer.split('\n')]) {
          if (!text.startsWith('{')) continue;
          const body = JSON.parse(text) as unknown;
          for (const k of Object.keys(wire) as (keyof typeof wire)[]) collect(body, new Set([k]), wire[k]);
        }
      },
    });
    await s.spec('web', fleetYaml('web', { count: 4, encryptedDisk: true }));
    await s.spec('api', fleetYaml('api', { count: 3, encryptedDisk: true, strategy: 'pack' }));
  });
  afterAll(async () => {
    await s?.close();
  });

  it('apply converges; the logs carry the fields and none of the secrets; /metrics counts the approvals and times the steps', async () => {
    const r = await s.fleet('apply', '--yes');
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const session = await openSession(s.dir, { cwd: s.dir, env: { ...process.env, ...s.env } });
    const vms = await session.record.listVms('ops').finally(() => session.close());
    expect(vms.map((v) => v.state)).toEqual(Array(7).fill('Running'));

    // The secrets: what the environment holds and what crossed the wire.
    expect(wire.bootToken.size).toBe(7);
    expect(wire.diskKey.size).toBe(7);
    // Scoped tokens: approvals for one data center issued in the same millisecond of expiry share one (docs/security.md),
    // so there may be fewer than VMs; at least one crossed the wire, and every one is checked against the logs below.
    expect(wire.token.size).toBeGreaterThan(0);
    const secrets = [
      ...Object.entries(s.env)
        .filter(([k]) => /TOKEN|SECRET/.test(k))
        .map(([, v]) => v as string),
      ...wire.bootToken,
      ...wire.diskKey,
      ...wire.token,
    ];
    // Log lines reach the stream in batches (engine/observability/logs.ts LineBatcher: after 10 ms, or 16 KiB): wait for
    // the apply's last ones (every VM's decisions and createVm step, the seven approved boots) before reading them.
    const addresses = new Set(vms.map((v) => v.address));
    await vi.waitFor(() => {
      const lines = s.logs.authority[0].lines();
      expect(new Set(lines.filter((l) => l.msg === 'decision').map((l) => l.vm))).toEqual(addresses);
      expect(lines.filter((l) => l.msg === 'boot' && l.decision === 'approved')).toHaveLength(7);
      const created = DATA_CENTERS.flatMap((dc) => s.logs.dmz[dc].lines().filter((l) => l.msg === 'step' && l.operation === 'createVm'));
      expect(new Set(created.map((l) => l.vm))).toEqual(addresses);
    });
    const all = [...s.logs.authority, ...Object.values(s.logs.dmz)];
    const text = all.map((c) => c.text).join('\n');
    expect(text.length).toBeGreaterThan(1000);
    for (const secret of secrets) expect(text.includes(secret), `a secret (${secret.slice(0, 6)}…) is in the logs`).toBe(false);

    // Every line is JSON with a level and a time; requests carry id, route, status and latency.
    for (const c of all) for (const line of c.text.split('\n').filter((l) => l !== '' && !l.includes('listening on'))) expect(() => JSON.parse(line)).not.toThrow();
    const authority = s.logs.authority[0].lines();
    const requests = authority.filter((l) => l.msg === 'request');
    expect(requests.length).toBeGreaterThan(0);
    for (const l of requests) expect(l).toMatchObject({ level: 30, reqId: expect.any(String), route: expect.any(String), status: expect.any(Number), ms: expect.any(Number) });
    expect(requests.map((l) => l.route)).toContain('/v1/batch');

    // Decisions: data center, VM address, decision, reason and its code, latency; every VM decided on.
    const decisions = authority.filter((l) => l.msg === 'decision');
    for (const l of decisions) {
      expect(l).toMatchObject({ reqId: expect.any(String), dataCenter: expect.stringMatching(/^(miami|richmond)$/), vm: expect.stringMatching(/^(web|api)\/\d$/), decision: expect.any(String), reason: expect.any(String), code: expect.any(String), ms: expect.any(Number) });
    }
    expect(new Set(decisions.map((l) => l.vm))).toEqual(new Set(vms.map((v) => v.address)));
    // At debug here: approvals and steps carried out are debug lines (level 20); only what went otherwise is info.
    expect(decisions.filter((l) => l.decision !== 'vetoed').every((l) => l.level === 20)).toBe(true);
    const boots = authority.filter((l) => l.msg === 'boot');
    expect(boots.filter((l) => l.decision === 'approved')).toHaveLength(7);

    // Steps at the DMZ clients: the same VMs, each with its decision, reason, outcome and time.
    const steps = DATA_CENTERS.flatMap((dc) => s.logs.dmz[dc].lines().filter((l) => l.msg === 'step'));
    for (const l of steps) expect(l).toMatchObject({ level: 20, reqId: expect.any(String), dataCenter: expect.any(String), vm: expect.any(String), decision: expect.any(String), reason: expect.any(String), outcome: 'ok', ms: expect.any(Number) });
    expect(new Set(steps.filter((l) => l.operation === 'createVm').map((l) => l.vm))).toEqual(new Set(vms.map((v) => v.address)));

    // Metrics after the apply.
    const scrape = async (url: string) => (await fetch(`${url}/metrics`)).text();
    const auth = await scrape(s.authorities[0].url);
    expect(sample(auth, 'fleet_authority_decisions_total', { outcome: 'approved', reason: 'allowed' })).toBeGreaterThanOrEqual(7 * 5);
    expect(sample(auth, 'fleet_boot_requests_total', { outcome: 'approved', reason: 'matches' })).toBe(7);
    expect(sample(auth, 'fleet_boot_requests_total', { outcome: 'denied' })).toBe(0);
    expect(sample(auth, 'fleet_record_call_duration_seconds_count', { call: 'transitionVms', outcome: 'ok' })).toBeGreaterThan(0);
    expect(sample(auth, 'fleet_record_call_duration_seconds_count', { call: 'authorizeBoots', outcome: 'ok' })).toBeGreaterThan(0);
    expect(sample(auth, 'fleet_http_requests_total', { route: '/v1/batch', status: '200' })).toBeGreaterThan(0);
    let createVm = 0;
    for (const dc of DATA_CENTERS) {
      const m = await scrape(s.dmz[dc].url);
      createVm += sample(m, 'fleet_step_duration_seconds_count', { operation: 'createVm', outcome: 'ok', data_center: dc });
      expect(sample(m, 'fleet_step_duration_seconds_count', { operation: 'boot', outcome: 'ok' })).toBeGreaterThan(0);
      expect(sample(m, 'fleet_step_duration_seconds_sum', { operation: 'boot', outcome: 'ok' })).toBeGreaterThan(0);
      // The gauges are fed: nothing in flight once the apply is over.
      expect(m).toMatch(new RegExp(`^fleet_runs_in_flight\\{[^}]*data_center="${dc}"[^}]*\\} 0$`, 'm'));
      expect(m).toMatch(/^fleet_lane_places_busy\{[^}]*\} 0$/m);
    }
    expect(createVm).toBe(7);
  });

  it('/readyz: the authority while its record is at its schema version; a DMZ client while the authority takes its token', async () => {
    const ready = async (url: string) => {
      const res = await fetch(`${url}/readyz`);
      return { status: res.status, body: (await res.json()) as { ready: boolean; checks: Record<string, string> } };
    };
    expect(await ready(s.authorities[0].url)).toEqual({ status: 200, body: { ready: true, checks: { record: 'ok' } } });
    expect(await ready(s.dmz.miami.url)).toEqual({ status: 200, body: { ready: true, checks: { authority: 'ok' } } });
    expect((await fetch(`${s.dmz.miami.url}/livez`)).status).toBe(200);

    // A record migrated by a newer dmzfleet (its schema version moved on) is not this authority's.
    const session = await openSession(s.dir, { cwd: s.dir, env: { ...process.env, ...s.env } });
    const sql = (session.record as unknown as { sql: { query(q: string): Promise<unknown> } }).sql;
    try {
      await sql.query('UPDATE meta SET schema_version = schema_version + 1');
      const r = await ready(s.authorities[0].url);
      expect(r.status).toBe(503);
      expect(r.body.checks.record).toMatch(/^the record has schema version \d+, this authority knows \d+$/);
    } finally {
      await sql.query('UPDATE meta SET schema_version = schema_version - 1');
      await session.close();
    }
    expect((await ready(s.authorities[0].url)).status).toBe(200);

    // A DMZ client whose token the authority does not know is live but not ready, and says which variable to fix.
    const { serveDmzClient } = await import('../engine/cli/commands/serve-run.ts');
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const wrong = await serveDmzClient(
      { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, cwd: s.dir, env: { ...s.env, FLEET_DMZ_TOKEN_MIAMI: 'not-the-authoritys' } },
      { stack: s.dir, dataCenter: 'miami', driver: 'sim', authority: s.proxy.url, port: '0', host: '127.0.0.1', stateDir: await mkdtemp(join(tmpdir(), 'fleet-ops-wrong-')), logLevel: 'silent' },
    );
    try {
      expect((await fetch(`${wrong.url}/livez`)).status).toBe(200);
      const r = await ready(wrong.url);
      expect(r.status).toBe(503);
      expect(r.body.checks.authority).toBe('the authority refuses the token of data center miami (FLEET_DMZ_TOKEN_MIAMI must be the same for the authority and this DMZ client)');
      expect(JSON.stringify(r.body)).not.toContain('not-the-authoritys');
    } finally {
      await wrong.close();
    }
  });
});

/** What a data center's cloud holds (its DMZ client's GET /v1/vms), by VM id. */
async function cloudOf(s: ServedStack, dc: string): Promise<Map<string, { cloudId: string; status: string; observedState: string }>> {
  const res = await fetch(`${s.dmz[dc].url}/v1/vms`, { headers: { authorization: `Bearer ${s.env[`FLEET_CLI_TOKEN_${dc.toUpperCase()}`]}` } });
  expect(res.status).toBe(200);
  const { vms } = (await res.json()) as { vms: { vmId: string; cloudId: string; status: string; observedState: string }[] };
  return new Map(vms.filter((v) => v.status === 'present').map((v) => [v.vmId, v]));
}

describe.runIf(pgUrl !== undefined)('two authority replicas behind one address over one PostgreSQL record', () => {
  const FLEETS = 6;
  const COUNT = 3;
  let s: ServedStack;

  beforeAll(async () => {
    s = await serveStack({ pgUrl: pgUrl!, authorities: 2, replicas: 2, logLevel: 'warn' });
    for (let i = 0; i < FLEETS; i++) await s.spec(`f${i}`, fleetYaml(`f${i}`, { count: COUNT }));
  });
  afterAll(async () => {
    await s?.close();
  });

  it('many concurrent applies (create, then stop half, then delete a third) leave the record equal to the data centers, each boot approved once', async () => {
    const targets = Array.from({ length: FLEETS }, (_, i) => `f${i}`);
    const applyAll = async () => {
      const runs = await Promise.all(targets.map((f) => s.fleet('apply', '--yes', '--target', f, '--lock-timeout', '120')));
      for (const r of runs) expect(r.code, r.stderr.slice(0, 3000)).toBe(0);
    };
    await applyAll();
    for (let i = 0; i < FLEETS; i += 2) await s.spec(`f${i}`, fleetYaml(`f${i}`, { count: COUNT, state: 'PoweredOff' }));
    await applyAll();
    for (let i = 0; i < FLEETS; i += 3) await s.spec(`f${i}`, fleetYaml(`f${i}`, { count: 1, state: i % 2 === 0 ? 'PoweredOff' : 'Running' }));
    await applyAll();
    // Both replicas decided.
    expect(s.proxy.counts.every((n) => n > 10)).toBe(true);

    const session = await openSession(s.dir, { cwd: s.dir, env: { ...process.env, ...s.env } });
    try {
      const live = await session.record.listVms('ops');
      const want = Array.from({ length: FLEETS }, (_, i) => (i % 3 === 0 ? 1 : COUNT)).reduce((a, b) => a + b, 0);
      expect(live).toHaveLength(want);
      for (const v of live) expect(v.state, v.address).toBe(Number(v.fleet.slice(1)) % 2 === 0 ? 'PoweredOff' : 'Running');
      // The record equals the data centers: every live VM in its own, with its cloud id and state; nothing else there.
      const clouds = Object.fromEntries(await Promise.all(DATA_CENTERS.map(async (dc) => [dc, await cloudOf(s, dc)] as const)));
      for (const v of live) expect(clouds[v.dataCenter].get(v.id), v.address).toMatchObject({ cloudId: v.cloudId, observedState: v.state });
      expect(DATA_CENTERS.reduce((n, dc) => n + clouds[dc].size, 0)).toBe(live.length);
      // Each VM's history: every state change once, in a chain (no lost or doubled update); each boot approved once.
      const sql = (session.record as unknown as { sql: { query<T>(q: string, p?: unknown[]): Promise<T[]> } }).sql;
      const boots = await sql.query<{ vm_id: string; n: string }>('SELECT vm_id, count(*) AS n FROM boot_attempts WHERE approved GROUP BY vm_id');
      expect(boots.every((b) => Number(b.n) === 1)).toBe(true);
      expect(boots.length).toBeGreaterThanOrEqual(FLEETS * COUNT);
      for (const v of live) {
        const moves = (await session.record.history('ops', v.address)).filter((h) => h.vmId === v.id && h.outcome === 'ok' && h.from !== h.to && !h.detail?.startsWith('intent approved'));
        let at: string | null = null;
        for (const h of [...moves].sort((x, y) => x.id - y.id)) {
          expect(h.from, `${v.address}: ${h.from} -> ${h.to} after ${at}`).toBe(at);
          at = h.to;
        }
        expect(at).toBe(v.state);
        // Every carried-out edge's intent row was written before it, whichever replica approved it (approvals ahead are off).
        const all = (await session.record.history('ops', v.address)).filter((h) => h.vmId === v.id);
        const intents = (op: string) => all.filter((h) => h.detail === `intent approved: ${op}`).length;
        const edges = (from: string, to: string) => moves.filter((h) => h.from === from && h.to === to).length;
        expect({ vm: v.address, createVm: intents('createVm'), boot: intents('boot') }).toEqual({ vm: v.address, createVm: edges('BeingCreated', 'PoweredOff'), boot: edges('PoweredOn', 'Starting') });
      }
    } finally {
      await session.close();
    }
  }, 240_000);
});

/** `fleet serve dmz-client` as a child process, logging at debug (a line per step); resolves once it listens. */
function dmzChild(s: { dir: string; env: NodeJS.ProcessEnv }, authority: string, port: number): Promise<{ child: ChildProcess; url: string; out: () => string; err: () => string; exited: Promise<number | null> }> {
  const child = spawn(
    process.execPath,
    [join(REPO, 'bin', 'fleet.mjs'), 'serve', 'dmz-client', '--data-center', 'miami', '--authority', authority, '--stack', s.dir, '--port', String(port), '--drain-timeout', '60', '--log-level', 'debug'],
    { cwd: s.dir, env: { ...process.env, ...s.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve({ child, url: m[1], out: () => out, err: () => err, exited });
    });
    void exited.then((code) => reject(new Error(`the DMZ client exited (${code}) before listening: ${err}`)));
  });
}

describe.runIf(pgUrl !== undefined)('graceful shutdown: SIGTERM to a DMZ client mid-apply', () => {
  it('it drains and exits 0; restarted, the apply converges without a failed member', async () => {
    // The authority and richmond's DMZ client in-process; miami's DMZ client a child process behind a
    // TCP proxy that holds new connections while it restarts (as a load balancer retrying its connect does).
    const s = await serveStack({ pgUrl: pgUrl!, sim: '{ latencyMs: 60, bootMs: 120 }', served: ['richmond'] });
    const first = await dmzChild(s, s.proxy.url, 0);
    const port = Number(new URL(first.url).port);
    const front = await holdingProxy(port);
    let second: Awaited<ReturnType<typeof dmzChild>> | undefined;
    try {
      await writeFile(join(s.dir, 'stack.yaml'), stackYaml({ miami: front.url, richmond: s.dmz.richmond.url }, '{ latencyMs: 60, bootMs: 120 }'));
      await s.spec('web', fleetYaml('web', { count: 8 }));
      const applying = s.fleet('apply', '--yes', '--parallelism', '8');
      // Mid-apply: once miami has carried out a few steps (its log lines), and before it is done.
      const steps = () => first.out().split('\n').filter((l) => l.includes('"msg":"step"')).length;
      await vi.waitFor(() => expect(steps()).toBeGreaterThanOrEqual(4), { timeout: 60_000, interval: 20 });
      first.child.kill('SIGTERM');
      expect(await first.exited).toBe(0);
      expect(first.err()).toContain('SIGTERM, draining');
      expect(first.err()).toContain('stopped');
      expect(first.out()).not.toContain('cutting its connections');
      // Every step it began was answered before it stopped: its idempotency log holds whole lines only.
      const log = await readFile(join(s.dir, '.fleet', 'sim', 'miami', 'requests.jsonl'), 'utf8');
      expect(log.endsWith('\n')).toBe(true);
      for (const line of log.trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();

      second = await dmzChild(s, s.proxy.url, port);
      const r = await applying;
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(r.stdout).toMatch(/8 VMs changed, 0 failed/);
      // The restarted DMZ client carried out the rest of miami's steps (the SIGTERM came mid-apply).
      // Its lines reach its stdout in batches (LineBatcher: after 10 ms, or 16 KiB), then through the pipe: waited for.
      await vi.waitFor(() => expect(second!.out()).toContain('"msg":"step"'));
      const session = await openSession(s.dir, { cwd: s.dir, env: { ...process.env, ...s.env } });
      const live = await session.record.listVms('ops').finally(() => session.close());
      expect(live.map((v) => v.state)).toEqual(Array(8).fill('Running'));
      const miami = await cloudOf({ ...s, dmz: { ...s.dmz, miami: { url: second.url, close: async () => undefined } } }, 'miami');
      const richmond = await cloudOf(s, 'richmond');
      for (const v of live) expect((v.dataCenter === 'miami' ? miami : richmond).get(v.id), v.address).toMatchObject({ cloudId: v.cloudId, observedState: 'Running' });
      expect(miami.size + richmond.size).toBe(8);
      expect(miami.size).toBeGreaterThan(0);
    } finally {
      second?.child.kill('SIGTERM');
      await second?.exited;
      await front.close();
      await s.close();
    }
  }, 180_000);
});
