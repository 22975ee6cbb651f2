// The shared HTTP layer: the OpenAPI document @fastify/swagger builds from the
// route schemas, token checks and error bodies, on a real loopback service.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WireError } from './errors.ts';
import { sendLines } from '../providers/http-send.ts';
import { createService, doc, listen, nulAt, streamAnswers, tokenTable } from './http.ts';
import { authorizeBodySchema, authorizeResponseSchema, authorityErrors } from './schemas/authority.ts';
import { healthResponseSchema } from './schemas/common.ts';

let url: string;
let close: () => Promise<void>;

beforeAll(async () => {
  const { app, openapi } = await createService({ title: 'test service', publicPaths: ['/v1/health', '/openapi.json'], authenticate: tokenTable([{ token: 'tok', who: 'miami' }]) });
  app.get('/v1/health', { schema: doc('Liveness', { response: { 200: healthResponseSchema } }) }, async () => ({ ok: true, service: 'authority' as const }));
  app.get('/openapi.json', { schema: doc('This document') }, async () => openapi());
  app.post('/v1/authorize', { schema: doc('Approve one request', { body: authorizeBodySchema, response: { 200: authorizeResponseSchema, ...authorityErrors } }) }, async (req) => {
    throw new WireError('state-moved', `refused for ${req.caller}`);
  });
  url = await listen(app, '127.0.0.1', 0);
  close = () => app.close();
});
afterAll(() => close());

type OpenApi = {
  openapi: string;
  info: { title: string };
  components: { securitySchemes: Record<string, unknown> };
  paths: Record<string, Record<string, { summary?: string; security?: unknown; requestBody?: { content: Record<string, { schema: { required?: string[]; properties?: Record<string, unknown> } }> }; responses: Record<string, unknown> }>>;
};

describe('the OpenAPI document', () => {
  it('is built by @fastify/swagger from the route schemas, served without a token', async () => {
    const res = await fetch(`${url}/openapi.json`);
    expect(res.status).toBe(200);
    const d = (await res.json()) as OpenApi;
    expect(d.openapi).toBe('3.0.3');
    expect(d.info.title).toBe('test service');
    expect(Object.keys(d.paths).sort()).toEqual(['/openapi.json', '/v1/authorize', '/v1/health']);
    const authorize = d.paths['/v1/authorize'].post;
    expect(authorize.summary).toBe('Approve one request');
    const body = authorize.requestBody!.content['application/json'].schema;
    expect(body.required).toEqual([...authorizeBodySchema.required]);
    expect(Object.keys(body.properties!).sort()).toEqual(Object.keys(authorizeBodySchema.properties).sort());
    expect(Object.keys(authorize.responses).sort()).toEqual(['200', '400', '401', '403', '404', '409']);
    expect(authorize.security).toEqual([{ bearer: [] }]);
    expect(d.components.securitySchemes).toEqual({ bearer: { type: 'http', scheme: 'bearer' } });
    expect(d.paths['/v1/health'].get.security).toBeUndefined();
    expect(d.paths['/v1/health'].get.responses['401']).toBeUndefined();
  });
});

describe('errors on the wire', () => {
  const post = (token?: string) =>
    fetch(`${url}/v1/authorize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ dataCenter: 'miami', requestId: 'r', planId: null, kind: 'transition', vmId: 'v', from: 'A', to: 'B' }),
    });

  it.each([
    ['no token', undefined, 401, 'unauthorized'],
    ['a wrong token', 'nope', 401, 'unauthorized'],
    ['a refusal thrown by the handler: the registry\'s status', 'tok', 409, 'state-moved'],
  ])('%s', async (_name, token, status, code) => {
    const res = await post(token);
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
  });

  // docs/protocol.md: a body that is not JSON is 415 unsupported-media-type. A text/plain body was parsed as a
  // string by Fastify's default parser and refused 400 bad-request by the schema ("body must be object").
  it.each([
    ['text/plain', 415, 'unsupported-media-type'],
    ['application/xml', 415, 'unsupported-media-type'],
    ['application/x-www-form-urlencoded', 415, 'unsupported-media-type'],
    ['application/json', 409, 'state-moved'],
    ['application/json; charset=utf-8', 409, 'state-moved'],
  ])('a body sent as %s: %i %s', async (type, status, code) => {
    const body = JSON.stringify({ dataCenter: 'miami', requestId: 'r', planId: null, kind: 'transition', vmId: 'v', from: 'A', to: 'B' });
    const res = await fetch(`${url}/v1/authorize`, { method: 'POST', headers: { 'content-type': type, authorization: 'Bearer tok' }, body });
    const answer = (await res.json()) as { error: { code: string; message: string } };
    expect([res.status, answer.error.code]).toEqual([status, code]);
    if (status === 415) expect(answer.error.message).toMatch(/content-type: application\/json/);
  });

  // The token is checked before the route (docs/protocol.md): a caller without a valid one gets the same 401 for every
  // path but the open ones, so a guessed path tells it nothing; only an authenticated caller learns a route is not there.
  it.each([
    ['an unknown route, with the token', 'GET', '/v1/nothing', 'tok', 404, 'not-found'],
    ['a known route by another method, with the token', 'GET', '/v1/authorize', 'tok', 404, 'not-found'],
    ['an unknown route, no token', 'GET', '/v1/nothing', undefined, 401, 'unauthorized'],
    ['an unknown route, a wrong token', 'GET', '/v1/nothing', 'nope', 401, 'unauthorized'],
    ['a known route by another method, no token', 'GET', '/v1/authorize', undefined, 401, 'unauthorized'],
    ['a path below an open one, no token', 'GET', '/v1/health/x', undefined, 401, 'unauthorized'],
  ])('%s: %s %s -> %i %s', async (_name, method, path, token, status, code) => {
    const res = await fetch(`${url}${path}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
    expect([res.status, ((await res.json()) as { error: { code: string } }).error.code]).toEqual([status, code]);
  });
});

describe("the router's own refusals, in the wire's error body", () => {
  // Found by QA: Fastify answered these itself, as {"error":"Bad Request","code":"FST_ERR_…","statusCode":…},
  // not the { error: { code, message } } every non-2xx answer has (a 414 for a long id).
  it.each([
    ['a URL that does not decode', '/v1/vms/%E0%A4%A'],
    ['a path parameter over its length', `/v1/vms/${'x'.repeat(200)}`],
  ])('%s: 400 bad-request', async (_name, path) => {
    const { app } = await createService({ title: 'router', publicPaths: [], authenticate: tokenTable([{ token: 'tok', who: 'miami' }]) });
    app.get('/v1/vms/:id', async () => ({ ok: true }));
    const res = await app.inject({ method: 'GET', url: path, headers: { authorization: 'Bearer tok' } });
    await app.close();
    expect([res.statusCode, (res.json() as { error: { code: string } }).error.code]).toEqual([400, 'bad-request']);
    expect((res.json() as { error: { message: string } }).error.message).toEqual(expect.any(String));
  });
});

describe('a body with very many schema errors', () => {
  it('is answered 400 naming the first 20 and saying there are more, not every one', async () => {
    // 60 000 unknown properties (and the required ones missing): every one a schema error.
    const body = JSON.stringify(Object.fromEntries(Array.from({ length: 60_000 }, (_, i) => [`k${i}`, 0])));
    const res = await fetch(`${url}/v1/authorize`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer tok' }, body });
    const text = await res.text();
    expect(res.status).toBe(400);
    const { error } = JSON.parse(text) as { error: { code: string; message: string } };
    expect(error.code).toBe('bad-request');
    expect(error.message).toMatch(/^body must have required property 'dataCenter', /);
    expect(error.message.split(', ')).toHaveLength(21);
    // The validator stopped at its 21st error (SCHEMA_ERRORS_KEPT): the rest were never looked for.
    expect(error.message).toMatch(/, and more schema errors$/);
  });
});

describe("Node's own refusals of a request (before any route), in the wire's error body", () => {
  // Fastify's default answered these as {"error":"Bad Request","message":"Client Error","statusCode":400}: not the
  // { error: { code, message } } every non-2xx answer has, so a caller read "no details".
  const rawAnswer = (text: string) =>
    new Promise<string>((resolve) => {
      const socket = connect(Number(new URL(url).port), '127.0.0.1');
      let answer = '';
      socket.on('data', (d) => (answer += String(d)));
      socket.on('error', () => {});
      socket.on('close', () => resolve(answer));
      socket.write(text);
    });
  it.each([
    { name: 'headers over the limit', text: `GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Long: ${'a'.repeat(20_000)}\r\n\r\n`, status: 431, code: 'headers-too-large' },
    { name: 'a URL over the header limit', text: `GET /v1/health?${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, status: 431, code: 'headers-too-large' },
    { name: 'both Content-Length and Transfer-Encoding', text: 'POST /v1/authorize HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', status: 400, code: 'bad-request' },
    { name: 'a request line that is not HTTP', text: 'HELLO\r\n\r\n', status: 400, code: 'bad-request' },
  ])('$name: $status $code, the connection closed', async ({ text, status, code }) => {
    const answer = await rawAnswer(text);
    expect(answer).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    expect(body.error.message).toEqual(expect.any(String));
    expect((await fetch(`${url}/v1/health`)).status).toBe(200);
  });
});

describe('nulAt: where a request holds a NUL', () => {
  const deep = (n: number, inner: unknown): unknown => {
    let v = inner;
    for (let i = 0; i < n; i++) v = [v];
    return v;
  };
  it.each([
    { name: 'nothing', value: { a: 'x', b: [1, true, null, { c: 'y' }] }, at: undefined },
    { name: 'a string', value: 'a\u0000b', at: 'body' },
    { name: 'a field', value: { vm: { owner: 'team\u0000pay', n: 3 } }, at: 'body/vm/owner' },
    { name: 'an item', value: { calls: [{ x: 'ok' }, { x: 'no\u0000' }] }, at: 'body/calls/1/x' },
    { name: 'a key', value: { vm: { 'ow\u0000ner': 'x' } }, at: 'body/vm (a key)' },
    { name: 'the first of two, in order', value: { a: ['\u0000'], b: '\u0000' }, at: 'body/a/0' },
    { name: 'nested deeper than the call stack', value: deep(100_000, 'x\u0000'), at: `body${'/0'.repeat(100_000)}` },
    { name: 'nested deeper than the call stack, clean', value: deep(100_000, 'x'), at: undefined },
  ])('$name', ({ value, at }) => {
    expect(nulAt(value, 'body')).toBe(at);
  });
});

describe('service logs', () => {
  /** A service logging at `level` into a buffer, with one route that logs a secret-shaped object. */
  async function logged(level: 'info' | 'warn' | 'debug', headers: Record<string, string> = {}) {
    let text = '';
    const { app } = await createService({
      title: 'logs',
      publicPaths: [],
      authenticate: tokenTable([{ token: 'the-bearer-token', who: 'miami' }]),
      logger: { level, stream: { write: (line: string) => void (text += line) } },
    });
    app.post('/v1/vms/:id', async (req) => {
      req.log.info({ vm: 'web/0', bootToken: 'boot-secret', credentials: { token: 'cred-secret' }, answer: { diskKey: 'disk-secret' } }, 'decision');
      return { ok: true };
    });
    await app.inject({ method: 'POST', url: '/v1/vms/abc', headers: { authorization: 'Bearer the-bearer-token', ...headers }, payload: { token: 'body-secret' } });
    await app.close();
    return text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  it('one request line (id, route pattern, status, time, caller) and no secret, even in a field named for one', async () => {
    const lines = await logged('info', { 'x-request-id': 'lb-7f3a' });
    const text = JSON.stringify(lines);
    for (const secret of ['the-bearer-token', 'boot-secret', 'cred-secret', 'disk-secret', 'body-secret']) expect(text).not.toContain(secret);
    expect(lines.find((l) => l.msg === 'decision')).toMatchObject({ reqId: 'lb-7f3a', vm: 'web/0', bootToken: '[redacted]', credentials: '[redacted]', answer: { diskKey: '[redacted]' } });
    expect(lines.filter((l) => l.msg === 'request')).toEqual([
      expect.objectContaining({ level: 30, reqId: 'lb-7f3a', route: '/v1/vms/:id', method: 'POST', status: 200, caller: 'miami', ms: expect.any(Number) }),
    ]);
    // Fastify's own two lines per request (no route, the raw URL) are off.
    expect(lines.some((l) => l.msg === 'incoming request' || l.msg === 'request completed')).toBe(false);
  });

  it.each([
    { header: 'has spaces in it', fresh: true },
    { header: 'x'.repeat(129), fresh: true },
    { header: 'trace-01.02:ab_C', fresh: false },
  ])('x-request-id $header -> a fresh id: $fresh', async ({ header, fresh }) => {
    const [line] = (await logged('info', { 'x-request-id': header })).filter((l) => l.msg === 'request');
    if (fresh) expect(line.reqId).toMatch(/^[0-9a-f-]{36}$/);
    else expect(line.reqId).toBe(header);
  });

  it('at warn, info lines are not written', async () => {
    expect(await logged('warn')).toEqual([]);
  });
});

// Found by QA: a caller that sent its headers and then a byte of its body every few seconds held its connection (and
// a socket of the service) for as long as it liked; 130 s later it was still open. The boot endpoint needs no token, so
// any VM of a data center could hold as many as it opened.
describe('a request that never finishes arriving', () => {
  it('is answered 408 and its connection closed once the receipt bound passes; a slow handler after a whole body is not cut', async () => {
    const { app } = await createService({ title: 'slow', publicPaths: ['/v1/boot', '/v1/slow'], authenticate: () => undefined, requestTimeoutMs: 300 });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    app.post('/v1/boot', async () => ({ ok: true }));
    app.post('/v1/slow', async () => {
      await held;
      return { ok: true };
    });
    const base = new URL(await listen(app, '127.0.0.1', 0));
    try {
      const socket = connect(Number(base.port), '127.0.0.1');
      let answer = '';
      socket.on('data', (d) => (answer += String(d)));
      socket.write('POST /v1/boot HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{');
      const trickle = setInterval(() => socket.writable && socket.write(' '), 50);
      await new Promise((closed) => socket.on('close', closed));
      clearInterval(trickle);
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: { code: 'request-timeout', message: expect.any(String) } });

      // A whole body whose handler takes longer than the bound is answered when the handler is done.
      const slow = fetch(`${base.origin}/v1/slow`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      // Held past the bound (this wait only makes the handler outlast it; the outcome is the 200 below).
      await new Promise((r) => setTimeout(r, 700));
      release();
      expect((await slow).status).toBe(200);
    } finally {
      release();
      await app.close();
    }
  });
});

// A batch step may take minutes (a cloud VM's boot: spec.readyTimeoutMs), and the callers give up on an answer silent for
// their idle timeout (60 s): the CLI lost every boot step longer than that, and sent it again, and again.
describe("a batch's answer while its steps take longer than the caller's idle timeout", () => {
  it('writes an empty line into each silence, which the caller skips; the step is answered when it is done', async () => {
    const { app } = await createService({ title: 'batch', publicPaths: ['/v1/batch'], authenticate: () => undefined });
    // Beats every 10 ms against an idle timeout of 500 ms; the step lasts 1.5 s (this wait only makes it outlast the
    // timeout; the outcome is whether the caller still gets its line).
    app.post('/v1/batch', (_req, reply) =>
      streamAnswers(
        reply,
        [async () => ({ quick: true }), () => new Promise((r) => setTimeout(() => r({ slow: true }), 1_500))],
        () => {},
        10,
      ),
    );
    const base = new URL(await listen(app, '127.0.0.1', 0));
    try {
      const lines: string[] = [];
      const res = await sendLines(new URL('/v1/batch', base), {}, '{}', 500, (line) => lines.push(line));
      expect(res.status).toBe(200);
      expect(lines.map((l) => JSON.parse(l) as { i: number; body: unknown })).toEqual([
        { i: 0, status: 200, body: { quick: true } },
        { i: 1, status: 200, body: { slow: true } },
      ]);
    } finally {
      await app.close();
    }
  });
});
