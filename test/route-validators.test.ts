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
import { ROUTE_SCHEMAS, SCHEMA_ERRORS_KEPT, SERVICE_AJV_OPTIONS } from '../protocol/schemas/routes.ts';
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

// Bodies that break each schema in different ways: ajv's errors (allErrors) must be the same, in the same order, up to
// the SCHEMA_ERRORS_KEPT the precompiled ones stop at.
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
  // More errors than are kept.
  { calls: Array.from({ length: 40 }, () => ({ call: 'authorize', body: {} })), steps: Array.from({ length: 40 }, () => 0) },
  Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, i])),
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
      expect(ahead.errors ?? null).toEqual(atStart.errors?.slice(0, SCHEMA_ERRORS_KEPT) ?? null);
      expect(a).toEqual(b);
    }
  });
});

// A body of 1 MiB (the services' limit) may hold 500 000 wrong items or 90 000 unknown keys: validating it walked
// every one (allErrors), up to a second of CPU on the event loop for one request, before a 400 that names 20 of them.
// The precompiled validators stop at SCHEMA_ERRORS_KEPT errors: here every array of every route's schema filled with
// wrong items (items read counted), and every closed object with unknown keys, at each place the schema has one.
describe("a hostile body's validation stops at SCHEMA_ERRORS_KEPT errors, however much of it is wrong", () => {
  type Schema = { type?: unknown; additionalProperties?: unknown; properties?: Record<string, Schema>; items?: Schema; oneOf?: Schema[]; discriminator?: { propertyName: string }; enum?: unknown[] };
  const WRONG_ITEMS = 200_000;
  const UNKNOWN_KEYS = 50_000;
  interface Hostile {
    where: string;
    body: unknown;
    /** Items of the filled array read by the validator, for an array. */
    reads?: () => number;
  }
  /** The hostile bodies of `schema`, each placed into a whole body by `place`. */
  function hostile(schema: Schema, where: string, place: (v: unknown) => unknown): Hostile[] {
    const out: Hostile[] = [];
    if (schema.discriminator && schema.oneOf) {
      const tag = schema.discriminator.propertyName;
      for (const branch of schema.oneOf) {
        const name = String(branch.properties?.[tag]?.enum?.[0]);
        out.push(...hostile(branch, `${where}(${tag} ${name})`, (v) => place({ ...(v as object), [tag]: name })));
      }
      return out;
    }
    if (schema.type === 'array' && schema.items) {
      let reads = 0;
      const items = new Proxy(new Array<number>(WRONG_ITEMS).fill(0), {
        get(target, key, receiver) {
          if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
          return Reflect.get(target, key, receiver) as unknown;
        },
      });
      out.push({ where: `${where}: ${WRONG_ITEMS} wrong items`, body: place(items), reads: () => reads });
      out.push(...hostile(schema.items, `${where}/0`, (v) => place([v])));
    }
    if (schema.properties) {
      // Where unknown keys are errors.
      if (schema.additionalProperties === false) out.push({ where: `${where}: ${UNKNOWN_KEYS} unknown keys`, body: place(Object.fromEntries(Array.from({ length: UNKNOWN_KEYS }, (_, k) => [`k${k}`, 0]))) });
      for (const [key, sub] of Object.entries(schema.properties)) out.push(...hostile(sub, `${where}/${key}`, (v) => place({ [key]: v })));
    }
    return out;
  }
  const cases = Object.entries(ROUTE_SCHEMAS).flatMap(([name, schema]) => hostile(schema as Schema, 'body', (v) => v).map((h) => ({ name, ...h })));

  it('covers every body', () => {
    // vmIdParams: a path's parameters, neither array nor closed object (the URL's length bounds them).
    expect(new Set(cases.map((c) => c.name))).toEqual(new Set(Object.keys(ROUTE_SCHEMAS).filter((n) => n !== 'vmIdParams')));
  });

  it.each(cases)('$name, $where', ({ name, body, reads }) => {
    const validate = (compiled as Record<string, ValidateFunction>)[name];
    expect(validate(body)).toBe(false);
    expect(validate.errors?.length).toBe(SCHEMA_ERRORS_KEPT);
    // Each wrong item is an error at least: the walk stopped where its errors did.
    if (reads) expect(reads()).toBeLessThanOrEqual(SCHEMA_ERRORS_KEPT);
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
