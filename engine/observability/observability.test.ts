import { createRequire } from 'node:module';
import type * as PerfHooks from 'node:perf_hooks';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { EVENT_LOOP_SAMPLE_MS } from './metrics.ts';
import { LineBatcher, SECRET_KEYS, censor, createMetrics, recordMetrics, registerHealth, registerMetrics, resolveLogLevel, timeCalls, timed, type Readiness, type ReadinessCheck } from './index.ts';

let app: FastifyInstance | undefined;

/** The value of the sample of `name` that has all of `labels` (in any order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)\{(.*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}
afterEach(async () => {
  await app?.close();
  app = undefined;
});

describe('metrics', () => {
  it('counts requests by route pattern and status, and serves the Prometheus text format', async () => {
    const m = createMetrics('authority', { stack: 'local' });
    app = Fastify();
    registerMetrics(app, m);
    app.get('/v1/vms/:id', async (req, reply) => ((req.params as { id: string }).id === 'gone' ? reply.code(404).send({ error: 'unknown-vm' }) : { ok: true }));
    for (const id of ['a', 'b', 'gone']) await app.inject({ method: 'GET', url: `/v1/vms/${id}` });
    await app.inject({ method: 'GET', url: '/nowhere' });
    m.decisions.inc({ outcome: 'vetoed' });
    const d = createMetrics('dmz-client', { data_center: 'miami' });
    await timed(d.stepSeconds, { operation: 'createVm', outcome: 'ok' }, async () => undefined);

    const res = await app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    const text = res.body;
    const service = { service: 'authority', stack: 'local' };
    expect(sample(text, 'fleet_http_requests_total', { ...service, route: '/v1/vms/:id', method: 'GET', status: '200' })).toBe(2);
    expect(sample(text, 'fleet_http_requests_total', { ...service, route: '/v1/vms/:id', method: 'GET', status: '404' })).toBe(1);
    expect(sample(text, 'fleet_http_requests_total', { route: 'unmatched', status: '404' })).toBe(1);
    expect(sample(text, 'fleet_http_request_duration_seconds_count', { route: '/v1/vms/:id' })).toBe(3);
    expect(sample(text, 'fleet_authority_decisions_total', { ...service, outcome: 'vetoed' })).toBe(1);
    expect(sample(await d.registry.metrics(), 'fleet_step_duration_seconds_count', { service: 'dmz-client', data_center: 'miami', operation: 'createVm', outcome: 'ok' })).toBe(1);
    expect(text).toMatch(/^fleet_process_cpu_seconds_total/m);
    // Concrete URLs (VM ids) never become labels.
    expect(text).not.toContain('/v1/vms/gone');
  });

  it("samples the event loop's lag every EVENT_LOOP_SAMPLE_MS (100 ms), not prom-client's 10 ms that wakes an idle service 100 times a second", () => {
    // prom-client's collector asks the CommonJS perf_hooks for its monitor.
    const perfHooks = createRequire(import.meta.url)('node:perf_hooks') as typeof PerfHooks;
    const spy = vi.spyOn(perfHooks, 'monitorEventLoopDelay');
    try {
      createMetrics('dmz-client', { data_center: 'miami' });
      expect(spy).toHaveBeenCalledWith({ resolution: EVENT_LOOP_SAMPLE_MS });
      expect(EVENT_LOOP_SAMPLE_MS).toBe(100);
    } finally {
      spy.mockRestore();
    }
  });

  it('times every record call by method and outcome, through one wrapper per method that follows a replaced method', async () => {
    const m = createMetrics('authority');
    const h = recordMetrics(m);
    class Target {
      calls = 0;
      async get(x: number): Promise<number> {
        this.calls++;
        return x * 2;
      }
      async fail(): Promise<never> {
        throw new Error('no');
      }
      plain(): string {
        return 'sync';
      }
    }
    const target = new Target();
    const timedTarget = timeCalls(target, h);
    // The same wrapper every time (not a new closure per call), bound to the target.
    expect(timedTarget.get).toBe(timedTarget.get);
    expect(await timedTarget.get(2)).toBe(4);
    const get = timedTarget.get;
    expect(await get(3)).toBe(6);
    expect(target.calls).toBe(2);
    await expect(timedTarget.fail()).rejects.toThrow('no');
    expect(timedTarget.plain()).toBe('sync');
    // A method replaced on the target is the one called (and timed) from then on.
    target.get = async (x: number) => x * 10;
    expect(await timedTarget.get(2)).toBe(20);
    const text = await m.registry.metrics();
    expect(sample(text, 'fleet_record_call_duration_seconds_count', { call: 'get', outcome: 'ok' })).toBe(3);
    expect(sample(text, 'fleet_record_call_duration_seconds_count', { call: 'fail', outcome: 'error' })).toBe(1);
    expect(sample(text, 'fleet_record_call_duration_seconds_count', { call: 'plain', outcome: 'ok' })).toBeUndefined();
  });

  it('keeps two services in one process apart', async () => {
    const a = createMetrics('authority');
    const b = createMetrics('dmz-client', { data_center: 'miami' });
    const c = createMetrics('authority');
    a.boots.inc({ outcome: 'approved' });
    a.requests.inc({ route: '/v1/boot/authorize', method: 'POST', status: '200' });
    expect(a.registry).not.toBe(b.registry);
    expect(await a.registry.getSingleMetricAsString('fleet_boot_requests_total')).toMatch(/} 1$/m);
    expect(await c.registry.getSingleMetricAsString('fleet_boot_requests_total')).not.toMatch(/} 1$/m);
    expect(await b.registry.getSingleMetricAsString('fleet_http_requests_total')).not.toMatch(/} 1$/m);
    // A DMZ client has no authority families at all (engine/observability/families.test.ts: each service's own only).
    expect(b.registry.getSingleMetric('fleet_boot_requests_total')).toBeUndefined();
  });
});

describe('health probes', () => {
  it.each<{ name: string; checks: Record<string, ReadinessCheck>; draining: boolean; status: number; body: Readiness }>([
    { name: 'all checks pass', checks: { record: async () => undefined }, draining: false, status: 200, body: { ready: true, checks: { record: 'ok' } } },
    {
      name: 'a check fails',
      checks: { record: async () => undefined, authority: () => Promise.reject(new Error('ECONNREFUSED 127.0.0.1:7400')) },
      draining: false,
      status: 503,
      body: { ready: false, checks: { record: 'ok', authority: 'ECONNREFUSED 127.0.0.1:7400' } },
    },
    { name: 'a check hangs', checks: { driver: () => new Promise<void>(() => undefined) }, draining: false, status: 503, body: { ready: false, checks: { driver: 'no answer within 50 ms' } } },
    { name: 'shutting down', checks: { record: async () => undefined }, draining: true, status: 503, body: { ready: false, checks: { record: 'ok', shutdown: 'the service is shutting down' } } },
  ])('/readyz: $name -> $status', async ({ checks, draining, status, body }) => {
    app = Fastify();
    registerHealth(app, { checks, timeoutMs: 50, draining: () => draining });
    const live = await app.inject({ method: 'GET', url: '/livez' });
    expect(live.json()).toEqual({ live: true });
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(status);
    expect(res.json()).toEqual(body);
  });
});

describe('log level', () => {
  it.each([
    { flag: undefined, env: {}, level: 'info' },
    { flag: undefined, env: { FLEET_LOG_LEVEL: 'debug' }, level: 'debug' },
    { flag: 'warn', env: { FLEET_LOG_LEVEL: 'debug' }, level: 'warn' },
    { flag: undefined, env: { FLEET_LOG_LEVEL: '' }, level: 'info' },
    { flag: 'loud', env: {}, error: '--log-level "loud" is not a log level; levels are fatal, error, warn, info, debug, trace, silent.' },
    { flag: undefined, env: { FLEET_LOG_LEVEL: 'INFO' }, error: 'FLEET_LOG_LEVEL "INFO" is not a log level; levels are fatal, error, warn, info, debug, trace, silent.' },
  ])('--log-level $flag, env $env -> $level$error', ({ flag, env, level, error }) => {
    const r = resolveLogLevel(flag, env);
    expect(r.level).toBe(level);
    expect(r.diagnostics.map((d) => [d.code, d.detail])).toEqual(error ? [['apply.serve-config', error]] : []);
  });
});

describe('log lines', () => {
  it('censors every secret name at the top level and two levels down, copying only what holds one', () => {
    const inner = { note: 'kept', deeper: { token: 'too-deep-is-fine' } };
    const err = Object.assign(new Error('boom'), { credentials: 'err-secret' });
    const obj = {
      vm: 'web/0',
      token: 'top-secret',
      answer: { diskKey: 'k1', more: { bootToken: 'b1' }, inner },
      arr: [{ password: 'p1' }, 'plain'],
      headers: { authorization: 'Bearer x', cookie: 'c=1' },
      err,
    };
    const before = JSON.stringify(obj);
    const out = censor(obj);
    expect(JSON.stringify(obj)).toBe(before);
    expect(out).toMatchObject({
      vm: 'web/0',
      token: '[redacted]',
      answer: { diskKey: '[redacted]', more: { bootToken: '[redacted]' } },
      arr: [{ password: '[redacted]' }, 'plain'],
      headers: { authorization: '[redacted]', cookie: '[redacted]' },
    });
    // Three levels down is past the reach (as the redact paths `*.*.k` were).
    expect(out.answer.inner).toBe(inner);
    // An error stays an error, its secret field censored.
    expect(out.err).toBeInstanceOf(Error);
    expect(out.err.message).toBe('boom');
    expect((out.err as unknown as { credentials: string }).credentials).toBe('[redacted]');
    // Nothing to censor: the same object back.
    const clean = { a: 1, b: { c: [1, 2] } };
    expect(censor(clean)).toBe(clean);
  });

  it('for generated objects, no secret value reachable within two levels survives', () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    const names = [...SECRET_KEYS, 'vm', 'reason', 'answer', 'list', 'x'];
    const gen = (depth: number): unknown => {
      const kind = depth > 3 ? 0 : rnd(3);
      if (kind === 0) return `v${rnd(1000)}`;
      if (kind === 1) return Array.from({ length: rnd(3) }, () => gen(depth + 1));
      return Object.fromEntries(Array.from({ length: rnd(4) }, () => [names[rnd(names.length)], gen(depth + 1)]));
    };
    /** Values under a secret name within the reach (keys at depth 0..2). */
    const leaks = (v: unknown, depth: number): boolean => {
      if (typeof v !== 'object' || v === null || depth > 2) return false;
      return Object.entries(v).some(([k, x]) => (SECRET_KEYS.includes(k) && x !== '[redacted]') || leaks(x, depth + 1));
    };
    for (let i = 0; i < 500; i++) {
      const obj = gen(0) as Record<string, unknown>;
      const before = JSON.stringify(obj);
      expect(leaks(censor(obj), 0)).toBe(false);
      expect(JSON.stringify(obj)).toBe(before);
    }
  });

  it('gathers lines into one write, in order, and writes them on flush', () => {
    const writes: string[] = [];
    const b = new LineBatcher({ write: (s) => void writes.push(s) });
    b.write('a\n');
    b.write('b\n');
    expect(writes).toEqual([]);
    b.flush();
    expect(writes).toEqual(['a\nb\n']);
    b.flush();
    expect(writes).toHaveLength(1);
  });

  it('writes at the size limit without waiting', () => {
    const writes: string[] = [];
    const b = new LineBatcher({ write: (s) => void writes.push(s) });
    const line = `${'x'.repeat(1023)}\n`;
    for (let i = 0; i < 16; i++) b.write(line);
    expect(writes).toEqual([line.repeat(16)]);
  });
});
