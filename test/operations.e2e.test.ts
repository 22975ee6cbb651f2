// The services as a platform team runs them (docs/operations.md): a full
// `fleet apply` against `fleet serve orchestrator` and one `fleet serve
// dmz-client` per data center over a PostgreSQL record, then
// - logs: every line is JSON with the fields a person searches by, and no
//   secret that crossed the wire (CLI and DMZ tokens, the authority's
//   secret, every boot token, disk key and credential token the tap saw)
//   appears in any service's log;
// - metrics: a scrape after the apply shows the approvals, boot approvals,
//   step latencies by operation, record latencies and request counts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPostgresUrl } from '../engine/record/testing.ts';
import { openSession } from '../engine/apply/index.ts';
import { fleetYaml } from './helpers/stack.ts';
import { DATA_CENTERS, serveStack, type ServedStack } from './helpers/services.ts';

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
    expect(wire.token.size).toBeGreaterThan(7);
    const secrets = [
      ...Object.entries(s.env)
        .filter(([k]) => /TOKEN|SECRET/.test(k))
        .map(([, v]) => v as string),
      ...wire.bootToken,
      ...wire.diskKey,
      ...wire.token,
    ];
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
    const boots = authority.filter((l) => l.msg === 'boot');
    expect(boots.filter((l) => l.decision === 'approved')).toHaveLength(7);

    // Steps at the DMZ clients: the same VMs, each with its decision, reason, outcome and time.
    const steps = DATA_CENTERS.flatMap((dc) => s.logs.dmz[dc].lines().filter((l) => l.msg === 'step'));
    for (const l of steps) expect(l).toMatchObject({ reqId: expect.any(String), dataCenter: expect.any(String), vm: expect.any(String), decision: expect.any(String), reason: expect.any(String), outcome: 'ok', ms: expect.any(Number) });
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
});
