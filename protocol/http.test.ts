// The shared HTTP layer: the OpenAPI document @fastify/swagger builds from the
// route schemas, token checks and error bodies, on a real loopback service.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WireError } from './errors.ts';
import { createService, doc, listen, tokenTable } from './http.ts';
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

  it('an unknown route is not-found', async () => {
    const res = await fetch(`${url}/v1/nothing`, { headers: { authorization: 'Bearer tok' } });
    expect([res.status, ((await res.json()) as { error: { code: string } }).error.code]).toEqual([404, 'not-found']);
  });
});
