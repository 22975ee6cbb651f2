// Generated bad requests against both services on loopback (the authority and
// a DMZ client with its sim, over one record): every route's valid body is
// mutated many ways (a field removed or of another type, an unknown key, a
// NUL, a truncated or deeply nested text, a huge array, another content type).
// Whatever the route's own validator (specs/validators/routes.js) and the
// services' NUL check would refuse must be refused with a 4xx in the wire's
// error body (a registered code, a short message, nothing of a token or a
// stack), and nothing may change: the record, the sim's calls; both services
// answer on. Seeded (the sim's generator), so every run sends the same cases.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as validators from '../specs/validators/routes.js';
import { WIRE_ERRORS } from '../protocol/errors.ts';
import { ADVANCE_NEXT_MAX, BATCH_EDGES_MAX, BOOT_BODY_LIMIT, RUN_STEPS_MAX, STEP_BATCH_MAX } from '../protocol/index.ts';
import { nulAt } from '../protocol/http.ts';
import { createRequest, newVm, startTestWorld, type TestWorld } from '../providers/testing.ts';
import { rng } from './helpers/fuzz.ts';

const CASES_PER_ROUTE = 16;
/** No answer of a refusal is longer. */
const MAX_ANSWER = 4096;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
interface Route {
  service: 'authority' | 'dmz';
  method: 'POST' | 'DELETE';
  path: string;
  /** The route's validator's name in specs/validators/routes.js. */
  schema: keyof typeof validators;
  /** A valid body. */
  body: () => Json;
  /** Sent without a token (the boot endpoint). */
  open?: boolean;
}

const JUNK: Json[] = [null, true, 0, -1, 1.5, 2 ** 53 + 2, 1e308, '', 'x'.repeat(600), '\u0000', 'a\u0000b', '\ud800', 'ｒｅｑ', '../../etc/passwd', [], {}, [1, 'a'], { a: { b: [] } }];

/** Every path to a node of `v` (objects' keys and arrays' indexes). */
function nodes(v: Json, at: (string | number)[] = []): (string | number)[][] {
  const out = [at];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...nodes(x, [...at, i])));
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...nodes(x, [...at, k]));
  return out;
}

function setAt(v: Json, at: (string | number)[], to: Json | undefined): Json {
  if (at.length === 0) return to ?? null;
  const copy = structuredClone(v) as Record<string | number, Json>;
  let o = copy;
  for (const k of at.slice(0, -1)) o = o[k] as Record<string | number, Json>;
  const last = at[at.length - 1];
  if (to === undefined) {
    if (Array.isArray(o)) o.splice(last as number, 1);
    else delete o[last];
  } else o[last] = to;
  return copy as Json;
}

interface Case {
  name: string;
  text: string;
  contentType: string;
}

/** One bad request made from `valid`. */
function mutate(valid: Json, r: () => number): Case {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)];
  const all = nodes(valid);
  const objects = all.filter((p) => {
    const n = p.reduce<Json>((o, k) => (o as Record<string | number, Json>)[k], valid);
    return n !== null && typeof n === 'object' && !Array.isArray(n);
  });
  const text = JSON.stringify(valid);
  const json = (name: string, v: Json): Case => ({ name, text: JSON.stringify(v), contentType: 'application/json' });
  switch (Math.floor(r() * 9)) {
    case 0: {
      const at = pick(all.filter((p) => p.length > 0));
      return json(`without ${at.join('/')}`, setAt(valid, at, undefined));
    }
    case 1: {
      const at = pick(all);
      const to = pick(JUNK);
      return json(`${at.join('/') || 'the body'} = ${JSON.stringify(to).slice(0, 20)}`, setAt(valid, at, to));
    }
    case 2: {
      const at = pick(objects);
      return json(`unknown key at ${at.join('/') || 'the top'}`, setAt(valid, [...at, pick(['admin', 'code', 'x\u0000', '__proto__x'])], true));
    }
    case 3: {
      const cut = 1 + Math.floor(r() * (text.length - 2));
      return { name: `cut at ${cut}`, text: text.slice(0, cut), contentType: 'application/json' };
    }
    case 4: {
      const depth = pick([1_000, 100_000]);
      return { name: `nested ${depth} deep`, text: `${'['.repeat(depth)}${']'.repeat(depth)}`, contentType: 'application/json' };
    }
    case 5: {
      // Every item (or key) a schema error: an array of the body made 20 000 wrong items long, or 20 000 unknown keys.
      const arrays = all.filter((p) => Array.isArray(p.reduce<Json>((o, k) => (o as Record<string | number, Json>)[k], valid)));
      if (arrays.length > 0 && r() < 0.5) {
        const at = pick(arrays);
        return json(`20 000 wrong items at ${at.join('/')}`, setAt(valid, at, Array.from({ length: 20_000 }, () => 0)));
      }
      const at = pick(objects);
      const node = at.reduce<Json>((o, k) => (o as Record<string | number, Json>)[k], valid) as Record<string, Json>;
      return json(`20 000 unknown keys at ${at.join('/') || 'the top'}`, setAt(valid, at, { ...node, ...Object.fromEntries(Array.from({ length: 20_000 }, (_, k) => [`k${k}`, 0])) }));
    }
    case 6:
      return { name: 'sent as text/plain', text, contentType: pick(['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) };
    case 7:
      return { name: 'a __proto__ key', text: text.replace(/^\{/, '{"__proto__":{"polluted":true},'), contentType: 'application/json' };
    default: {
      // A duplicate key: JSON.parse keeps the last, which is junk.
      const key = pick(Object.keys(valid as Record<string, Json>));
      return { name: `duplicate key ${key}`, text: text.replace(/\}$/, `,${JSON.stringify(key)}:${JSON.stringify(pick(JUNK))}}`), contentType: 'application/json' };
    }
  }
}

/** Whether a service must refuse the case (and so change nothing); false for a mutation that left a valid body. */
function refused(route: Route, c: Case): boolean {
  if (c.contentType !== 'application/json' || c.text.length > 1024 * 1024 || c.text.includes('"__proto__"')) return true;
  let body: unknown;
  try {
    body = JSON.parse(c.text);
  } catch {
    return true;
  }
  const validate = validators[route.schema] as unknown as (v: unknown) => boolean;
  return !validate(body) || nulAt(body, 'body') !== undefined;
}

describe('generated bad bodies on every route of both services', () => {
  let world: TestWorld;
  let tokens: string[];
  const id = randomUUID();
  const edge = () => ({ dataCenter: 'miami', requestId: randomUUID(), planId: 'p', kind: 'transition', vmId: id, from: 'PoweredOff', to: 'PoweredOn' });
  const report = () => ({ ...edge(), kind: undefined, outcome: 'ok' }) as unknown as Json;
  const proof = { nonce: 'n'.repeat(16), proof: 'ab'.repeat(32) };
  const routes: Route[] = [
    { service: 'authority', method: 'POST', path: '/v1/authorize', schema: 'authorizeBody', body: edge },
    { service: 'authority', method: 'POST', path: '/v1/reports', schema: 'reportBody', body: () => JSON.parse(JSON.stringify(report())) as Json },
    { service: 'authority', method: 'POST', path: '/v1/advance', schema: 'advanceBody', body: () => JSON.parse(JSON.stringify({ report: report(), next: [edge()] })) as Json },
    { service: 'authority', method: 'POST', path: '/v1/boot/authorize', schema: 'bootAuthorizeBody', body: () => ({ dataCenter: 'miami', vmId: id, cloudId: 'c', image: 'i', bootToken: 't' }) },
    { service: 'authority', method: 'POST', path: '/v1/batch', schema: 'batchBody', body: () => ({ calls: [{ call: 'authorize', body: edge() }] }) },
    { service: 'authority', method: 'POST', path: '/v1/admin-check', schema: 'adminCheckBody', body: () => proof },
    { service: 'dmz', method: 'POST', path: '/v1/vms', schema: 'createBody', body: () => createRequest(newVm(world.stack)) as unknown as Json },
    { service: 'dmz', method: 'POST', path: `/v1/vms/${id}/transitions`, schema: 'transitionBody', body: () => ({ idempotencyKey: randomUUID(), planId: 'p', from: 'PoweredOff', to: 'PoweredOn' }) },
    { service: 'dmz', method: 'DELETE', path: `/v1/vms/${id}`, schema: 'deleteBody', body: () => ({ idempotencyKey: randomUUID(), planId: 'p', from: 'BeingDeleted' }) },
    { service: 'dmz', method: 'POST', path: '/v1/batch', schema: 'stepBatchBody', body: () => ({ steps: [{ op: 'create', body: createRequest(newVm(world.stack)) as unknown as Json }] }) },
    { service: 'dmz', method: 'POST', path: '/v1/admin-check', schema: 'adminCheckBody', body: () => proof },
    { service: 'dmz', method: 'POST', path: '/v1/boot', schema: 'bootBody', body: () => ({ cloudId: 'c', vmId: id, image: 'i', bootToken: 't' }), open: true },
    { service: 'dmz', method: 'POST', path: '/v1/boot/status', schema: 'agentReport', body: () => ({ cloudId: 'c', vmId: id, bootToken: 't', state: 'ready' }), open: true },
  ];

  beforeAll(async () => {
    // Malformed boot and admin-check bodies count against the caller's address: a budget none of these cases reaches.
    world = await startTestWorld({ dataCenters: ['miami'], dmz: { bootLimit: { denials: 100_000 } } });
    tokens = [world.dc('miami').clientToken, world.dc('miami').authorityToken];
  });
  afterAll(() => world?.close());

  /** What these requests may not change. */
  const state = async () => ({
    vms: await world.record.listVms(world.stack, { includeRetired: true }),
    history: (await world.record.history(world.stack)).length,
    cloud: [...world.dc('miami').driver.calls.entries()],
  });

  it.each(routes.map((r, n) => ({ ...r, n })))('$service: $method $path', async (route) => {
    const before = await state();
    const r = rng(1000 + route.n);
    const dc = world.dc('miami');
    const base = route.service === 'authority' ? world.authority.url : dc.dmz.url;
    const token = route.service === 'authority' ? dc.authorityToken : dc.clientToken;
    let sent = 0;
    for (let i = 0; i < CASES_PER_ROUTE; i++) {
      const c = mutate(route.body(), r);
      if (!refused(route, c)) continue;
      sent++;
      const res = await fetch(`${base}${route.path}`, {
        method: route.method,
        headers: { 'content-type': c.contentType, ...(route.open ? {} : { authorization: `Bearer ${token}` }) },
        body: c.text,
      });
      const text = await res.text();
      const what = `${route.method} ${route.path}, ${c.name}: ${res.status} ${text.slice(0, 300)}`;
      expect(res.status, what).toBeGreaterThanOrEqual(400);
      expect(res.status, what).toBeLessThan(500);
      // The admin-check limit (5 refused checks per address) is a refusal of its own, in the same body.
      expect([400, 413, 415, 429], what).toContain(res.status);
      expect(text.length, what).toBeLessThanOrEqual(MAX_ANSWER);
      const error = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
      expect(Object.keys(WIRE_ERRORS), what).toContain(error?.code);
      expect(error?.message, what).toEqual(expect.any(String));
      expect(text, what).not.toMatch(/\n\s+at |node_modules|\.ts:\d/);
      for (const t of tokens) expect(text, what).not.toContain(t);
    }
    expect(sent, 'most mutations break the body').toBeGreaterThan(CASES_PER_ROUTE / 2);
    expect(await state()).toEqual(before);
    for (const url of [world.authority.url, dc.dmz.url]) expect((await fetch(`${url}/v1/health`)).status).toBe(200);
  });

  // Bounds of the wire contract past the schemas' own (docs/protocol.md): each refused with the diagnostic naming it,
  // nothing done. The open boot routes read at most BOOT_BODY_LIMIT (they took 1 MiB, parsed and validated, from any
  // address of the DMZ network); a DMZ client's batch holds at most STEP_BATCH_MAX steps, a run counting its steps; an
  // authority's batch at most BATCH_EDGES_MAX edges, an advance counting its report and each next edge.
  const transition = () => ({ op: 'transition', vmId: randomUUID(), body: { idempotencyKey: randomUUID(), planId: 'p', from: 'PoweredOff', to: 'PoweredOn' } });
  it.each([
    { name: 'a boot body over BOOT_BODY_LIMIT', path: '/v1/boot', open: true, body: () => ({ cloudId: 'c', vmId: id, image: 'i', bootToken: 't'.repeat(BOOT_BODY_LIMIT) }), status: 413, code: 'too-large' },
    { name: 'a boot agent report over BOOT_BODY_LIMIT', path: '/v1/boot/status', open: true, body: () => ({ cloudId: 'c', vmId: id, bootToken: 't', state: 'failed', detail: 'd'.repeat(BOOT_BODY_LIMIT) }), status: 413, code: 'too-large' },
    {
      name: 'a batch of runs holding more than STEP_BATCH_MAX steps',
      path: '/v1/batch',
      body: () => ({ steps: Array.from({ length: STEP_BATCH_MAX / RUN_STEPS_MAX + 1 }, () => ({ op: 'run', steps: Array.from({ length: RUN_STEPS_MAX }, transition) })) }),
      status: 400,
      code: 'bad-request',
      message: `body/steps holds ${STEP_BATCH_MAX + RUN_STEPS_MAX} steps, a run counting its steps; a batch holds at most ${STEP_BATCH_MAX}`,
    },
    {
      name: "an authority's batch of advances naming more than BATCH_EDGES_MAX edges",
      authority: true,
      path: '/v1/batch',
      body: () => ({
        calls: Array.from({ length: Math.floor(BATCH_EDGES_MAX / (ADVANCE_NEXT_MAX + 1)) + 1 }, () => ({ call: 'advance', body: { report: report(), next: Array.from({ length: ADVANCE_NEXT_MAX }, edge) } })),
      }),
      status: 400,
      code: 'bad-request',
      message: `body/calls holds ${(Math.floor(BATCH_EDGES_MAX / (ADVANCE_NEXT_MAX + 1)) + 1) * (ADVANCE_NEXT_MAX + 1)} edges, an advance counting its report or create and each next edge; a batch holds at most ${BATCH_EDGES_MAX}`,
    },
  ])('$name: $status $code', async ({ path, open, authority, body, status, code, message }) => {
    const before = await state();
    const dc = world.dc('miami');
    const [url, token] = authority ? [world.authority.url, dc.authorityToken] : [dc.dmz.url, dc.clientToken];
    const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(open ? {} : { authorization: `Bearer ${token}` }) }, body: JSON.stringify(body()) });
    const { error } = (await res.json()) as { error: { code: string; message: string } };
    expect([res.status, error.code]).toEqual([status, code]);
    if (message) expect(error.message).toContain(message);
    expect(await state()).toEqual(before);
  });

  it('a batch of exactly STEP_BATCH_MAX steps in runs is taken', async () => {
    const dc = world.dc('miami');
    const body = { steps: Array.from({ length: STEP_BATCH_MAX / RUN_STEPS_MAX }, () => ({ op: 'run', steps: Array.from({ length: RUN_STEPS_MAX }, transition) })) };
    const res = await fetch(`${dc.dmz.url}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${dc.clientToken}` }, body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    // Each run stops at its first step (a VM the record does not have): one line each.
    expect((await res.text()).trim().split('\n')).toHaveLength(STEP_BATCH_MAX / RUN_STEPS_MAX);
  });
});
