import { randomUUID } from 'node:crypto';
import http, { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { FleetError } from '../engine/diags/index.ts';
import { openRecord } from '../engine/record/index.ts';
import type { FleetRecord } from '../engine/record/types.ts';
import { DEFAULT_RETRY_BUDGET_MS, DmzHttpClient, backoffMs, retryAfterMs, retrySchedule, type RetryInfo } from './client.ts';
import { AuthorityClient } from './dmz-client/authority-client.ts';
import type { BatchStep } from '../protocol/index.ts';
import { TO_RUNNING, createRequest, newVm, startTestWorld, walk, type TestWorld } from './testing.ts';

describe('backoff and Retry-After', () => {
  it.each([
    { attempt: 0, random: 0.5, want: 75 },
    { attempt: 3, random: 0.5, want: 600 },
    { attempt: 10, random: 0.999, want: 4997 },
    { attempt: 2, random: 0, want: 200 },
  ])('attempt $attempt with random $random waits $want ms', ({ attempt, random, want }) => {
    expect(backoffMs(attempt, 100, 5000, () => random)).toBe(want);
  });

  // The default rides out an outage of a DMZ client or the authority of 30 s
  // (issue 14): the pauses alone add up to the budget, whatever the draws, so
  // the last retry goes out at least that long after the first failure.
  it.each([0, 0.5, 0.999999])('the default schedule pauses at least 30 s in all (random %s)', (r) => {
    const client = new DmzHttpClient({ dataCenter: 'dc', baseUrl: 'http://127.0.0.1:9', token: () => 't' });
    const p = { budgetMs: DEFAULT_RETRY_BUDGET_MS, baseDelayMs: 100, maxDelayMs: 5_000 };
    const schedule = retrySchedule(p, () => r);
    const total = schedule.reduce((a, b) => a + b, 0);
    expect(DEFAULT_RETRY_BUDGET_MS).toBeGreaterThanOrEqual(30_000);
    expect(total).toBeGreaterThanOrEqual(30_000);
    expect(total).toBeGreaterThanOrEqual(DEFAULT_RETRY_BUDGET_MS);
    // and stops: no pause is longer than the cap, and the last one is what crossed the budget
    expect(Math.max(...schedule)).toBeLessThanOrEqual(5_000);
    expect(total - schedule[schedule.length - 1]).toBeLessThan(DEFAULT_RETRY_BUDGET_MS);
    expect(client.baseUrl).toBe('http://127.0.0.1:9');
  });

  it('a client with the default options retries a DMZ client that stays away for the whole budget, same key every time', async () => {
    const sleeps: number[] = [];
    const keys: (string | undefined)[] = [];
    const cli = new DmzHttpClient({
      dataCenter: 'dc',
      baseUrl: 'http://127.0.0.1:9',
      token: () => 't',
      random: () => 0,
      sleep: async (ms) => void sleeps.push(ms),
      onRetry: (i) => keys.push(i.idempotencyKey),
    });
    const err = (await cli.transition('v', { idempotencyKey: 'k-1', planId: null, from: 'A', to: 'B' }).catch((e: unknown) => e)) as FleetError;
    expect(err.diagnostics[0].code).toBe('apply.dmz-unreachable');
    expect(sleeps).toEqual(retrySchedule({ budgetMs: DEFAULT_RETRY_BUDGET_MS, baseDelayMs: 100, maxDelayMs: 5_000 }, () => 0));
    expect(sleeps.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(30_000);
    expect(new Set(keys)).toEqual(new Set(['k-1']));
    expect(err.diagnostics[0].detail).toMatch(/after \d+ attempts over \d+ s/);
  });

  it.each([
    { header: null, want: undefined },
    { header: '', want: undefined },
    { header: '3', want: 3000 },
    { header: '0.5', want: 500 },
    { header: 'Sat, 21 Nov 2026 04:00:10 GMT', want: 10_000 },
    { header: 'soon', want: undefined },
  ])('Retry-After $header -> $want', ({ header, want }) => {
    expect(retryAfterMs(header, Date.parse('Sat, 21 Nov 2026 04:00:00 GMT'))).toBe(want);
  });
});

/** A scripted server: answers request n with script[n] (the last entry repeats) and remembers every request. */
async function scripted(script: { status: number; body?: unknown; headers?: Record<string, string> }[]) {
  const seen: { method: string; url: string; key: string | undefined; auth: string | undefined; body: string }[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', key: req.headers['idempotency-key'] as string | undefined, auth: req.headers.authorization, body });
      const s = script[Math.min(seen.length - 1, script.length - 1)];
      res.writeHead(s.status, { 'content-type': 'application/json', ...s.headers });
      res.end(s.body === undefined ? '' : JSON.stringify(s.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, seen, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const ok = { requestId: 'r1', decision: 'approved', reason: 'fine', outcome: 'ok', vm: { id: 'v', address: 'web/0', state: 'Requested', cloudId: null, realImage: 'img', version: 1 } };

function client(url: string, extra: { retries?: number; timeoutMs?: number; retries_seen?: RetryInfo[]; sleeps?: number[] } = {}) {
  return new DmzHttpClient({
    dataCenter: 'miami',
    baseUrl: url,
    token: () => 'tok',
    retries: extra.retries ?? 3,
    timeoutMs: extra.timeoutMs ?? 5_000,
    random: () => 0.5,
    sleep: async (ms) => {
      extra.sleeps?.push(ms);
    },
    onRetry: (i) => extra.retries_seen?.push(i),
  });
}

describe('DmzHttpClient retries', () => {
  const transition = { idempotencyKey: 'key-1', planId: null, from: 'A', to: 'B' };

  it('retries 503 and 429 with the same idempotency key, honouring Retry-After', async () => {
    const srv = await scripted([{ status: 503, body: { error: { code: 'x', message: 'busy' } } }, { status: 429, headers: { 'retry-after': '2' } }, { status: 200, body: ok }]);
    const sleeps: number[] = [];
    try {
      const r = await client(srv.url, { sleeps }).transition('v', transition);
      expect(r).toEqual(ok);
      expect(srv.seen.map((s) => s.key)).toEqual(['key-1', 'key-1', 'key-1']);
      expect(srv.seen.every((s) => s.auth === 'Bearer tok' && JSON.parse(s.body).idempotencyKey === 'key-1')).toBe(true);
      expect(sleeps).toEqual([75, 2000]);
    } finally {
      await srv.close();
    }
  });

  it.each([
    { status: 400, code: 'apply.dmz-rejected' },
    { status: 401, code: 'apply.dmz-unauthorized' },
    { status: 422, code: 'apply.dmz-rejected' },
  ])('does not retry $status and throws $code', async ({ status, code }) => {
    const srv = await scripted([{ status, body: { error: { code: 'e', message: 'no' } } }]);
    try {
      const err = (await client(srv.url).transition('v', transition).catch((e: unknown) => e)) as FleetError;
      expect(err).toBeInstanceOf(FleetError);
      expect(err.diagnostics[0].code).toBe(code);
      expect(err.diagnostics[0].detail).toContain('miami');
      expect(srv.seen).toHaveLength(1);
    } finally {
      await srv.close();
    }
  });

  // A 401 said only "the bearer token is not valid here": not which variable
  // the CLI had read the token from, nor what to set it to.
  it.each([
    { tokenEnv: 'FLEET_CLI_TOKEN_MIAMI', says: 'Set FLEET_CLI_TOKEN_MIAMI to the token the DMZ client of miami was started with.' },
    { tokenEnv: undefined, says: "Set the variable named by the data center's auth.tokenEnv (default FLEET_CLI_TOKEN_<DC>) to the token the DMZ client of miami was started with." },
  ])('a 401 names the token variable to set ($tokenEnv)', async ({ tokenEnv, says }) => {
    const srv = await scripted([{ status: 401, body: { error: { code: 'unauthorized', message: 'the bearer token is not valid here' } } }]);
    try {
      const c = new DmzHttpClient({ dataCenter: 'miami', baseUrl: srv.url, token: () => 'tok', retries: 0, ...(tokenEnv ? { tokenEnv } : {}) });
      const err = (await c.transition('v', transition).catch((e: unknown) => e)) as FleetError;
      expect(err.diagnostics[0]).toMatchObject({ code: 'apply.dmz-unauthorized' });
      expect(err.diagnostics[0].detail).toBe(`POST ${srv.url}/v1/vms/v/transitions of data center miami answered 401: the bearer token is not valid here. ${says}`);
    } finally {
      await srv.close();
    }
  });

  it('gives up on 5xx after the retries with apply.dmz-error', async () => {
    const srv = await scripted([{ status: 502 }]);
    try {
      const err = (await client(srv.url, { retries: 2 }).transition('v', transition).catch((e: unknown) => e)) as FleetError;
      expect(err.diagnostics[0].code).toBe('apply.dmz-error');
      expect(err.diagnostics[0].detail).toContain('after 3 attempts');
      expect(srv.seen).toHaveLength(3);
    } finally {
      await srv.close();
    }
  });

  // A step the DMZ client kept answering 503 credentials-expiring (the credentials the authority issued for its data
  // center came expired, or too short for a try again) failed apply.dmz-error, whose advice is to wait for the DMZ
  // client to answer; it answered all along. Its own code says what to do (engine/apply/failure-cause.ts), alone and
  // batched; the last answer decides.
  it.each([false, true])('gives up on 503 credentials-expiring with apply.credentials-expiring (batch: %s)', async (batch) => {
    const expiring = { status: 503, body: { error: { code: 'credentials-expiring', message: 'createVm was not tried: the credentials … had expired' } } };
    const srv = await scripted([{ status: 502 }, expiring]);
    try {
      const c = new DmzHttpClient({ dataCenter: 'miami', baseUrl: srv.url, token: () => 'tok', retries: 2, baseDelayMs: 1, batch });
      const err = (await c.transition('v', transition).catch((e: unknown) => e)) as FleetError;
      expect(err.diagnostics[0]).toMatchObject({ code: 'apply.credentials-expiring', detail: expect.stringContaining('(DMZ client of data center miami) answered 503: createVm was not tried') });
      const gateway = await scripted([expiring, { status: 502 }]);
      try {
        const other = (await new DmzHttpClient({ dataCenter: 'miami', baseUrl: gateway.url, token: () => 'tok', retries: 2, baseDelayMs: 1, batch }).transition('v', transition).catch((e: unknown) => e)) as FleetError;
        expect(other.diagnostics[0].code).toBe('apply.dmz-error');
      } finally {
        await gateway.close();
      }
    } finally {
      await srv.close();
    }
  });

  // A DMZ client URL may carry basic auth (user:password@, http-send.ts sendTarget): every message and retry record
  // printed it whole, password and all, into the CLI's output, apply's journal and Pulumi's log.
  it.each([
    ['nothing listens', [] as { status: number; body?: unknown }[], 'apply.dmz-unreachable'],
    ['it answers 401', [{ status: 401, body: { error: { code: 'unauthorized', message: 'no' } } }], 'apply.dmz-unauthorized'],
    ['it answers 400', [{ status: 400, body: { error: { code: 'invalid-request', message: 'no' } } }], 'apply.dmz-rejected'],
    ['it keeps answering 502', [{ status: 502 }], 'apply.dmz-error'],
  ])('never shows the password of a URL with user:password when %s', async (_what, script, code) => {
    const srv = await scripted(script.length > 0 ? script : [{ status: 200 }]);
    if (script.length === 0) await srv.close();
    const seen: RetryInfo[] = [];
    const url = srv.url.replace('http://', 'http://fleet:pw-s3cret-9d1@');
    try {
      const err = (await client(url, { retries: 1, retries_seen: seen }).transition('v', transition).catch((e: unknown) => e)) as FleetError;
      expect(err.diagnostics[0].code).toBe(code);
      expect(err.message).not.toContain('pw-s3cret-9d1');
      expect(err.message).toContain('http://fleet:***@127.0.0.1');
      for (const r of seen) expect(JSON.stringify(r)).not.toContain('pw-s3cret-9d1');
    } finally {
      if (script.length > 0) await srv.close();
    }
  });

  it('names the data center and URL when nothing listens', async () => {
    const srv = await scripted([{ status: 200 }]);
    await srv.close();
    const seen: RetryInfo[] = [];
    const err = (await client(srv.url, { retries: 2, retries_seen: seen }).transition('v', transition).catch((e: unknown) => e)) as FleetError;
    expect(err.diagnostics[0].code).toBe('apply.dmz-unreachable');
    expect(err.diagnostics[0].detail).toContain(`${srv.url}/v1/vms/v/transitions (DMZ client of data center miami) could not be reached`);
    expect(seen.map((s) => s.idempotencyKey)).toEqual(['key-1', 'key-1']);
  });

  it('treats a timeout as retryable', async () => {
    const server = createServer(() => undefined); // never answers
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const err = (await client(url, { retries: 1, timeoutMs: 50 }).health().catch((e: unknown) => e)) as FleetError;
      expect(err.diagnostics[0].code).toBe('apply.dmz-unreachable');
      expect(err.diagnostics[0].detail).toContain('did not answer within 50 ms');
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  // A frozen DMZ client (accepts, never answers): the budget counted only the pauses, so with the default
  // 60 s timeout and 60 s budget `fleet refresh` waited ~17 minutes. Each silence now counts against the budget.
  it.each([
    { name: 'a single request', batch: false },
    { name: 'a batched step', batch: true },
  ])('$name to a DMZ client that never answers gives up once its silences use the budget', async ({ batch }) => {
    let requests = 0;
    const server = createServer(() => void requests++); // takes every request, answers none
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const sleeps: number[] = [];
    const cli = new DmzHttpClient({ dataCenter: 'miami', baseUrl: url, token: () => 'tok', timeoutMs: 40, retryBudgetMs: 100, baseDelayMs: 1, maxDelayMs: 1, random: () => 0.5, batch, sleep: async (ms) => void sleeps.push(ms) });
    try {
      const err = (await cli.transition('v', { idempotencyKey: 'key-1', planId: null, from: 'A', to: 'B' }).catch((e: unknown) => e)) as FleetError;
      expect(err.diagnostics[0].code).toBe('apply.dmz-unreachable');
      expect(err.diagnostics[0].detail).toContain('did not answer within 40 ms after 3 attempts');
      // 40 + 40 + 40 ms of silence (and 1 ms pauses): three attempts, where the pauses alone would have allowed a hundred.
      // The server may not have read the last one before the client gave up on it (a loaded machine: seen on a CI
      // run), so it counts at most three; the attempts are counted by the client's own message and pauses.
      expect(requests).toBeGreaterThanOrEqual(1);
      expect(requests).toBeLessThanOrEqual(3);
      expect(sleeps).toHaveLength(2);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('getVm answers undefined for a VM the cloud does not know', async () => {
    const srv = await scripted([{ status: 404, body: { error: { code: 'not-found', message: 'no' } } }]);
    try {
      expect(await client(srv.url).getVm('v')).toBeUndefined();
    } finally {
      await srv.close();
    }
  });
});

describe('network faults injected with nock between the CLI and a real DMZ client', () => {
  let record: FleetRecord;
  let world: TestWorld;
  beforeAll(async () => {
    record = await openRecord('memory://');
    world = await startTestWorld({ record, dataCenters: ['miami'] });
  });
  afterAll(async () => {
    await world.close();
    await record.close();
  });
  afterEach(() => {
    nock.cleanAll();
  });

  it('a dropped connection after the DMZ client did the work, then a 503, are retried and make one VM only', async () => {
    const dc = world.dc('miami');
    const port = new URL(dc.dmz.url).port;
    // The CLI talks to localhost:PORT, which nock intercepts; the real server is reached at 127.0.0.1:PORT.
    const viaNock = `http://localhost:${port}`;
    const retries: RetryInfo[] = [];
    const cli = new DmzHttpClient({ dataCenter: 'miami', baseUrl: viaNock, token: () => dc.clientToken, baseDelayMs: 1, onRetry: (i) => retries.push(i) });
    const vm = newVm(world.stack);
    await dc.client.createVm(createRequest(vm));
    await walk(dc.client, vm.id, ['Requested', 'BeingCreated']);

    const path = `/v1/vms/${vm.id}/transitions`;
    let forwarded = 0;
    nock(viaNock, { allowUnmocked: true })
      .post(path)
      .reply((_uri, body, callback) => {
        // The request reaches the real DMZ client (the VM gets created), then the answer is lost.
        forwarded++;
        void fetch(`${dc.dmz.url}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${dc.clientToken}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        }).then(
          () => callback(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), [500, '']),
          (err: Error) => callback(err, [500, '']),
        );
      })
      .post(path)
      .reply(503, { error: { code: 'overloaded', message: 'try later' } })
      .post(path)
      // An Error, as Node's own are (nock's plain-object form only reaches fetch, not node:http).
      .replyWithError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
    nock(viaNock, { allowUnmocked: true })
      .post(path)
      .reply(async (_uri, body) => {
        const res = await fetch(`${dc.dmz.url}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${dc.clientToken}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        return [res.status, await res.text(), { 'content-type': 'application/json' }];
      });

    const r = await cli.transition(vm.id, { idempotencyKey: 'nock-key', planId: 'p', from: 'BeingCreated', to: 'PoweredOff' });
    expect(forwarded).toBe(1);
    expect(retries.map((x) => x.idempotencyKey)).toEqual(['nock-key', 'nock-key', 'nock-key']);
    expect(retries.map((x) => x.reason)).toEqual([
      expect.stringContaining('could not be reached'),
      expect.stringContaining('answered 503'),
      expect.stringContaining('could not be reached'),
    ]);
    expect(r).toMatchObject({ outcome: 'ok', operation: 'createVm', vm: { state: 'PoweredOff' } });
    expect(nock.isDone()).toBe(true);
    expect(dc.driver.calls.get('createVm')).toBe(1);
    expect((await dc.client.listVms()).filter((v) => v.vmId === vm.id)).toHaveLength(1);
    // And the VM goes on to Running normally.
    expect((await walk(dc.client, vm.id, TO_RUNNING.slice(2))).at(-1)?.vm?.state).toBe('Running');
  });
});

/** One data center (miami) and a batching client for a describe block; nock and mocks reset after each test. */
function batchingWorld(): { record: FleetRecord; world: TestWorld } {
  const ctx = {} as { record: FleetRecord; world: TestWorld };
  beforeAll(async () => {
    ctx.record = await openRecord('memory://');
    ctx.world = await startTestWorld({ record: ctx.record, dataCenters: ['miami'], client: { batch: true, baseDelayMs: 1 } });
  });
  afterAll(async () => {
    await ctx.world.close();
    await ctx.record.close();
  });
  afterEach(() => {
    nock.cleanAll();
    vi.restoreAllMocks();
  });
  return ctx;
}

describe('steps in batches (POST /v1/batch) against a real DMZ client', () => {
  const ctx = batchingWorld();

  it('carries concurrent VMs to Running in a fraction of the requests, each step answered as its single route would', async () => {
    const dc = ctx.world.dc('miami');
    const paths: string[] = [];
    const real = http.request;
    vi.spyOn(http, 'request').mockImplementation(((opts: http.RequestOptions, cb?: () => void) => {
      paths.push(String(opts.path));
      return real(opts, cb);
    }) as typeof http.request);
    const vms = Array.from({ length: 6 }, (_, index) => newVm(ctx.world.stack, { fleet: 'batched', index }));
    const created = await Promise.all(vms.map((vm) => dc.client.createVm(createRequest(vm))));
    expect(created.map((c) => [c.outcome, c.vm?.state])).toEqual(vms.map(() => ['ok', 'Requested']));
    const walks = await Promise.all(vms.map((vm) => walk(dc.client, vm.id, TO_RUNNING)));
    for (const w of walks) expect(w.map((s) => s.vm?.state)).toEqual(TO_RUNNING.slice(1));
    // 6 creates + 30 transitions; one batch per round of steps (plus the VMs' own boot calls).
    const batches = paths.filter((p) => p.endsWith('/v1/batch')).length;
    expect(batches).toBeGreaterThanOrEqual(6);
    expect(batches).toBeLessThan(36);
    expect(paths.some((p) => p.includes('/v1/vms'))).toBe(false);
  });

  it('a step refused in a batch fails alone, with the single route\'s error; a veto stays an outcome', async () => {
    const dc = ctx.world.dc('miami');
    const vm = newVm(ctx.world.stack, { fleet: 'refused' });
    await dc.client.createVm(createRequest(vm));
    const [bad, vetoed] = await Promise.allSettled([
      dc.client.transition(vm.id, { idempotencyKey: randomUUID(), planId: 'p', from: 'Requested', to: 'BeingCreated', operation: 'resize' }),
      dc.client.transition(vm.id, { idempotencyKey: randomUUID(), planId: 'p', from: 'Requested', to: 'ShuttingDown' }),
    ]);
    expect(bad.status).toBe('rejected');
    expect(((bad as PromiseRejectedResult).reason as FleetError).diagnostics[0]).toMatchObject({
      code: 'apply.dmz-rejected',
      detail: expect.stringContaining(`/v1/vms/${vm.id}/transitions of data center miami answered 400: a resize is`),
    });
    expect(vetoed).toMatchObject({ status: 'fulfilled', value: { outcome: 'vetoed' } });
  });

  it('a wrong token fails every step of the batch as apply.dmz-unauthorized', async () => {
    const dc = ctx.world.dc('miami');
    const cli = new DmzHttpClient({ dataCenter: 'miami', baseUrl: dc.dmz.url, token: () => 'wrong', batch: true });
    const vm = newVm(ctx.world.stack, { fleet: 'unauthorized' });
    const err = (await cli.createVm(createRequest(vm)).catch((e: unknown) => e)) as FleetError;
    expect(err.diagnostics[0].code).toBe('apply.dmz-unauthorized');
    expect(await ctx.record.getVm(vm.id)).toBeUndefined();
  });

  it('a dropped batch after the DMZ client did the work, then a 503, are retried with the same keys and make one VM each', async () => {
    const dc = ctx.world.dc('miami');
    const port = new URL(dc.dmz.url).port;
    const viaNock = `http://localhost:${port}`;
    const retries: RetryInfo[] = [];
    // Both steps are sent again together, in one batch each time: their pauses end in the same tick (with real
    // 1 ms timers a loaded machine now and then fired them in two turns of the loop, two batches: a flaky count).
    const cli = new DmzHttpClient({
      dataCenter: 'miami',
      baseUrl: viaNock,
      token: () => dc.clientToken,
      baseDelayMs: 1,
      batch: true,
      random: () => 0.5,
      sleep: async () => {},
      onRetry: (i) => retries.push(i),
    });
    const vms = [newVm(ctx.world.stack, { fleet: 'dropped', index: 0 }), newVm(ctx.world.stack, { fleet: 'dropped', index: 1 })];
    for (const vm of vms) {
      await dc.client.createVm(createRequest(vm));
      await walk(dc.client, vm.id, ['Requested', 'BeingCreated']);
    }
    const forward = (body: unknown) =>
      fetch(`${dc.dmz.url}/v1/batch`, {
        method: 'POST',
        headers: { authorization: `Bearer ${dc.clientToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    let forwarded = 0;
    nock(viaNock, { allowUnmocked: true })
      .post('/v1/batch')
      .reply((_uri, body, callback) => {
        // The batch reaches the real DMZ client (both VMs get created), then the answer is lost.
        forwarded++;
        void forward(body)
          .then((res) => res.text())
          .then(
            () => callback(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), [500, '']),
            (err: Error) => callback(err, [500, '']),
          );
      })
      .post('/v1/batch')
      .reply(503, { error: { code: 'overloaded', message: 'try later' } });
    nock(viaNock, { allowUnmocked: true })
      .post('/v1/batch')
      .reply(async (_uri, body) => {
        const res = await forward(body);
        return [res.status, await res.text(), { 'content-type': 'application/x-ndjson' }];
      });

    const results = await Promise.all(
      vms.map((vm, i) => cli.transition(vm.id, { idempotencyKey: `batch-key-${i}`, planId: 'p', from: 'BeingCreated', to: 'PoweredOff' })),
    );
    expect(forwarded).toBe(1);
    expect(nock.isDone()).toBe(true);
    for (const r of results) expect(r).toMatchObject({ outcome: 'ok', operation: 'createVm', vm: { state: 'PoweredOff' } });
    // Each step was sent again with its own key, after a dropped connection and after a 503.
    expect(retries.map((x) => x.idempotencyKey).sort()).toEqual(['batch-key-0', 'batch-key-0', 'batch-key-1', 'batch-key-1']);
    expect(retries.filter((x) => x.reason.includes('answered 503'))).toHaveLength(2);
    const listed = await dc.client.listVms();
    for (const vm of vms) expect(listed.filter((v) => v.vmId === vm.id)).toHaveLength(1);
  });

  it('a DMZ client that stays away fails each step with apply.dmz-unreachable after its retries', async () => {
    const cli = new DmzHttpClient({ dataCenter: 'miami', baseUrl: 'http://127.0.0.1:9', token: () => 't', batch: true, retries: 2, baseDelayMs: 1 });
    const err = (await cli.transition('v1', { idempotencyKey: 'k', planId: null, from: 'A', to: 'B' }).catch((e: unknown) => e)) as FleetError;
    expect(err.diagnostics[0].code).toBe('apply.dmz-unreachable');
    expect(err.diagnostics[0].detail).toMatch(/^POST http:\/\/127\.0\.0\.1:9\/v1\/vms\/v1\/transitions \(DMZ client of data center miami\) could not be reached \(ECONNREFUSED\) after 3 attempts\.$/);
  });
});

/** A member's steps from nothing to Running: the create, then one per edge, keys `${prefix}/${seq}`. */
function toRunning(stack: string, fleet: string, prefix: string, index = 0): { vm: ReturnType<typeof newVm>; steps: BatchStep[] } {
  const vm = newVm(stack, { fleet, index });
  const steps: BatchStep[] = [{ op: 'create', body: createRequest(vm, `${prefix}/0`) }];
  for (let k = 1; k < TO_RUNNING.length; k++) {
    steps.push({ op: 'transition', vmId: vm.id, body: { idempotencyKey: `${prefix}/${k}`, planId: 'p', from: TO_RUNNING[k - 1], to: TO_RUNNING[k] } });
  }
  return { vm, steps };
}

describe('runs: a member\'s steps sent at once (DmzHttpClient.run) against a real DMZ client', () => {
  const ctx = batchingWorld();

  it('carries several members to Running, each in one run item, every step answered in order as its single route would', async () => {
    const dc = ctx.world.dc('miami');
    const paths: string[] = [];
    const real = http.request;
    vi.spyOn(http, 'request').mockImplementation(((opts: http.RequestOptions, cb?: () => void) => {
      paths.push(`${String(opts.port)}${String(opts.path)}`);
      return real(opts, cb);
    }) as typeof http.request);
    const advances = vi.spyOn(AuthorityClient.prototype, 'advance');
    const members = Array.from({ length: 4 }, (_, i) => toRunning(ctx.world.stack, 'run', `run-${randomUUID()}-${i}`, i));
    const seen = members.map(() => [] as [number, string | undefined, string][]);
    await Promise.all(members.map((m, i) => dc.client.run(m.steps, (k, r) => seen[i].push([k, r.vm?.state, r.outcome]))));
    for (const s of seen) expect(s).toEqual(TO_RUNNING.map((state, k) => [k, state, 'ok']));
    // Per member one: the create with all its edges, approved ahead (docs/protocol.md, "Advance").
    expect(advances).toHaveBeenCalledTimes(members.length);
    // All four runs went out in one request to the DMZ client (other requests: the VMs' boot calls, the DMZ client's to the authority).
    const port = new URL(dc.dmz.url).port;
    expect(paths.filter((p) => p === `${port}/v1/batch`)).toHaveLength(1);
    for (const m of members) {
      const vm = await ctx.record.getVm(m.vm.id);
      expect(vm?.state).toBe('Running');
      const history = await ctx.record.history(ctx.world.stack, vm!.address);
      // Each edge: intent (authorize) then the transition (report), in order.
      expect(history.filter((h) => h.detail?.startsWith('intent approved')).length).toBe(TO_RUNNING.length - 1);
    }
    // Repeating a run returns the first results (same keys) and does nothing again.
    const again: string[] = [];
    await dc.client.run(members[0].steps, (_k, r) => again.push(`${r.outcome}:${r.vm?.state}`));
    expect(again).toEqual(TO_RUNNING.map((s) => `ok:${s}`));
  });

  it('stops after a vetoed step: later steps are not carried out', async () => {
    const dc = ctx.world.dc('miami');
    const { vm, steps } = toRunning(ctx.world.stack, 'run-veto', `veto-${randomUUID()}`);
    // Skip BeingCreated: Requested -> PoweredOff is not an edge.
    steps.splice(1, 1);
    (steps[1] as Extract<BatchStep, { op: 'transition' }>).body.from = 'Requested';
    const seen: string[] = [];
    await dc.client.run(steps, (k, r) => seen.push(`${k}:${r.outcome}`));
    expect(seen).toEqual(['0:ok', '1:vetoed']);
    expect((await ctx.record.getVm(vm.id))?.state).toBe('Requested');
  });

  it.each([
    ['without a lane', undefined],
    ['with a lane (sent again with it)', { id: `apply-${randomUUID()}`, width: 1 }],
  ])('a run cut off after some steps is sent again from its first unanswered step, with the same keys, and makes one VM: %s', async (_name, lane) => {
    const dc = ctx.world.dc('miami');
    const port = new URL(dc.dmz.url).port;
    const viaNock = `http://localhost:${port}`;
    const retries: RetryInfo[] = [];
    const cli = new DmzHttpClient({ dataCenter: 'miami', baseUrl: viaNock, token: () => dc.clientToken, baseDelayMs: 1, batch: true, onRetry: (i) => retries.push(i) });
    const prefix = `cut-${randomUUID()}`;
    const { vm, steps } = toRunning(ctx.world.stack, lane ? 'run-cut-laned' : 'run-cut', prefix);
    const sent: BatchStep[][] = [];
    const lanes: unknown[] = [];
    const forward = (body: unknown) =>
      fetch(`${dc.dmz.url}/v1/batch`, {
        method: 'POST',
        headers: { authorization: `Bearer ${dc.clientToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    nock(viaNock)
      .post('/v1/batch')
      .reply((_uri, body, callback) => {
        // The whole run reaches the real DMZ client; only its first three answer lines come back, then the connection drops.
        sent.push((body as { steps: [{ steps: BatchStep[] }] }).steps[0].steps);
        lanes.push((body as { steps: [{ lane?: unknown }] }).steps[0].lane);
        void forward(body)
          .then((res) => res.text())
          .then((text) => {
            const firstThree = text.split('\n').filter(Boolean).slice(0, 3).join('\n') + '\n';
            callback(null, [200, firstThree, { 'content-type': 'application/x-ndjson' }]);
          }, (err: Error) => callback(err, [500, '']));
      })
      .post('/v1/batch')
      .reply(async (_uri, body) => {
        sent.push((body as { steps: [{ steps: BatchStep[] }] }).steps[0].steps);
        lanes.push((body as { steps: [{ lane?: unknown }] }).steps[0].lane);
        const res = await forward(body);
        return [res.status, await res.text(), { 'content-type': 'application/x-ndjson' }];
      });
    const seen: [number, string | undefined][] = [];
    await cli.run(steps, (k, r) => seen.push([k, r.vm?.state]), lane ? { lane } : {});
    expect(nock.isDone()).toBe(true);
    expect(lanes).toEqual([lane, lane]);
    expect(seen).toEqual(TO_RUNNING.map((s, k) => [k, s]));
    // The second send carried the steps from the fourth on, with their own keys.
    expect(sent[1].map((s) => s.body.idempotencyKey)).toEqual(steps.slice(3).map((s) => s.body.idempotencyKey));
    expect(retries).toHaveLength(1);
    expect(retries[0]).toMatchObject({ idempotencyKey: `${prefix}/3`, reason: expect.stringContaining('closed the connection') });
    const listed = (await dc.client.listVms()).filter((v) => v.vmId === vm.id);
    expect(listed).toHaveLength(1);
  });

  it('a step answered 503 in a run is sent again from that step; a step rejected (4xx) throws, the steps before it delivered', async () => {
    const dc = ctx.world.dc('miami');
    const port = new URL(dc.dmz.url).port;
    const viaNock = `http://localhost:${port}`;
    const cli = new DmzHttpClient({ dataCenter: 'miami', baseUrl: viaNock, token: () => dc.clientToken, baseDelayMs: 1, batch: true });
    const { steps } = toRunning(ctx.world.stack, 'run-503', `s503-${randomUUID()}`);
    const line = (i: number, k: number, status: number, body: unknown) => `${JSON.stringify({ i, k, status, body })}\n`;
    const ok = (state: string) => ({ requestId: 'r', decision: 'approved', reason: 'fine', outcome: 'ok', operation: 'none', vm: { id: 'v', address: 'a/0', state, cloudId: null, realImage: null, version: 1 } });
    const bodies: { steps: { steps: BatchStep[] }[] }[] = [];
    nock(viaNock)
      .post('/v1/batch')
      .reply(200, (_uri, body) => {
        bodies.push(body as never);
        return line(0, 0, 200, ok('Requested')) + line(0, 1, 503, { error: { code: 'busy', message: 'authority away' } });
      })
      .post('/v1/batch')
      .reply(200, (_uri, body) => {
        bodies.push(body as never);
        return line(0, 0, 200, ok('BeingCreated')) + line(0, 1, 422, { error: { code: 'idempotency-conflict', message: 'key used for another request' } });
      });
    const seen: [number, string | undefined][] = [];
    const err = (await cli.run(steps, (k, r) => seen.push([k, r.vm?.state])).catch((e: unknown) => e)) as FleetError;
    expect(nock.isDone()).toBe(true);
    expect(bodies[1].steps[0].steps[0].body.idempotencyKey).toBe(steps[1].body.idempotencyKey);
    expect(seen).toEqual([[0, 'Requested'], [1, 'BeingCreated']]);
    expect(err.diagnostics[0]).toMatchObject({ code: 'apply.dmz-rejected', detail: expect.stringContaining('answered 422: key used for another request') });
  });

  it('without batch, a run is one request per step, in order, stopping at the first not ok', async () => {
    const dc = ctx.world.dc('miami');
    const cli = new DmzHttpClient({ dataCenter: 'miami', baseUrl: dc.dmz.url, token: () => dc.clientToken, baseDelayMs: 1 });
    const { vm, steps } = toRunning(ctx.world.stack, 'run-single', `single-${randomUUID()}`);
    const seen: string[] = [];
    await cli.run(steps.slice(0, 3), (k, r) => seen.push(`${k}:${r.vm?.state}`));
    expect(seen).toEqual(['0:Requested', '1:BeingCreated', '2:PoweredOff']);
    expect((await ctx.record.getVm(vm.id))?.state).toBe('PoweredOff');
  });
});
