// The services' request validators are compiled ahead (npm run gen:types,
// specs/validators/routes.js) instead of by Fastify at every start
// (protocol/schemas/routes.ts). What must hold: every route of the authority
// and the DMZ client gets one (none is compiled at start), each answers
// exactly as the validator Fastify would have compiled (same verdict, same
// errors), and a route whose schema is not listed still validates.
import AjvCompiler from '@fastify/ajv-compiler';
import type { ValidateFunction } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as compiled from '../specs/validators/routes.js';
import { compiledAtStart, createService, listen } from '../protocol/http.ts';
import { ROUTE_SCHEMAS, SERVICE_AJV_OPTIONS } from '../protocol/schemas/routes.ts';
import { startTestWorld, type TestWorld } from '../providers/testing.ts';

describe('the services start with their request validators compiled ahead', () => {
  let world: TestWorld;
  beforeAll(async () => {
    compiledAtStart.length = 0;
    world = await startTestWorld({ dataCenters: ['miami'] });
  }, 60_000);
  afterAll(() => world?.close());

  it('Fastify compiles no route schema of the authority or the DMZ client as they start', () => {
    expect(compiledAtStart, 'routes whose schema is not in protocol/schemas/routes.ts (add it, then npm run gen:types)').toEqual([]);
  });

  it('a DMZ client refuses a malformed body with the precompiled validator, field by field', async () => {
    const dc = world.dc('miami');
    const res = await fetch(`${dc.dmz.url}/v1/vms`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${dc.clientToken}` },
      body: JSON.stringify({ unexpected: true }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('bad-request');
    expect(body.error.message).toMatch(/must NOT have additional properties|must have required property/);
  });
});

// Bodies that break each schema in different ways: ajv's errors (allErrors) must be the same, in the same order.
const SAMPLES: unknown[] = [
  null,
  [],
  'text',
  42,
  {},
  { extra: 1 },
  { id: '' },
  { id: 'x'.repeat(101) },
  { calls: [] },
  { calls: [{ call: 'nope', body: {} }] },
  { calls: [{ call: 'authorize', body: { dataCenter: 1 } }] },
  { dataCenter: '', requestId: 5, planId: null, kind: 'create', vmId: 'v', from: 'Requested', to: 7 },
  { steps: [{ kind: 'transition' }], lane: { id: '', width: 0 } },
  { cloudId: 'i-1', vmId: 'v', image: 'ubuntu', bootToken: 'x'.repeat(5000) },
];

describe('each precompiled validator answers as the one Fastify compiles', () => {
  const fastifys = AjvCompiler()({}, { customOptions: { ...SERVICE_AJV_OPTIONS } }) as unknown as (route: { schema: unknown; method: string; url: string; httpPart: string }) => ValidateFunction;
  it.each(Object.keys(ROUTE_SCHEMAS))('%s', (name) => {
    const ahead = (compiled as Record<string, ValidateFunction>)[name];
    expect(ahead, `specs/validators/routes.js has no ${name}: npm run gen:types`).toBeTypeOf('function');
    const atStart = fastifys({ schema: structuredClone(ROUTE_SCHEMAS[name]), method: 'POST', url: `/${name}`, httpPart: 'body' });
    for (const sample of SAMPLES) {
      const a = structuredClone(sample);
      const b = structuredClone(sample);
      expect(ahead(a), JSON.stringify(sample)).toBe(atStart(b));
      expect(ahead.errors ?? null).toEqual(atStart.errors ?? null);
      expect(a).toEqual(b);
    }
  });
});

describe('a route whose schema is not listed', () => {
  it('is compiled as the service starts, and validates as before', async () => {
    compiledAtStart.length = 0;
    const { app } = await createService({ title: 'unlisted', publicPaths: ['/v1/echo'], authenticate: () => undefined });
    const schema = { type: 'object', additionalProperties: false, required: ['n'], properties: { n: { type: 'integer', minimum: 1 } } };
    app.post('/v1/echo', { schema: { body: schema } }, async (req) => req.body);
    const url = await listen(app, '127.0.0.1', 0);
    try {
      expect(compiledAtStart).toEqual(['POST /v1/echo body']);
      const post = (body: unknown) => fetch(`${url}/v1/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect((await post({ n: 2 })).status).toBe(200);
      const bad = await post({ n: 0, m: 1 });
      expect(bad.status).toBe(400);
      // allErrors: both problems, as the services' options ask
      const text = await bad.text();
      expect(text).toMatch(/must NOT have additional properties/);
      expect(text).toMatch(/must be >= 1/);
    } finally {
      await app.close();
    }
  });
});
