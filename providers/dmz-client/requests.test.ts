// The fingerprint an idempotency key is kept with is written to the DMZ
// client's log (requests.jsonl): its form must never change, or a request
// retried after an upgrade would be refused as idempotency-conflict.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createRequest, fingerprint, stepFingerprint, stepRequest, type EdgeStep, type RequestDefaults } from './requests.ts';
import { seededRandom } from '../../engine/model/seeded-random.ts';

/** The fingerprint as every version so far computed it: sha256 hex of the route, a newline and the body's JSON without its fencing token. */
function reference(route: string, body: unknown): string {
  let b = body;
  if (b !== null && typeof b === 'object' && 'fencingToken' in b) {
    const { fencingToken: _f, ...rest } = b as Record<string, unknown>;
    b = rest;
  }
  return createHash('sha256').update(`${route}\n${JSON.stringify(b)}`).digest('hex');
}

const CHARS = ['a', 'Z', '0', ' ', '\n', '"', '\\', 'é', '漢', '😀', '\u0000', '\u2028'];
function text(r: () => number): string {
  let s = '';
  for (let n = Math.floor(r() * 12); n > 0; n--) s += CHARS[Math.floor(r() * CHARS.length)];
  return s;
}
function value(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 2 ? 4 : 6));
  if (k === 0) return text(r);
  if (k === 1) return Math.floor(r() * 1e6) - 5e5;
  if (k === 2) return r() < 0.5;
  if (k === 3) return null;
  if (k === 4) return Array.from({ length: Math.floor(r() * 4) }, () => value(r, depth + 1));
  const o: Record<string, unknown> = {};
  for (let n = Math.floor(r() * 5); n > 0; n--) o[text(r)] = value(r, depth + 1);
  return o;
}

describe('fingerprint', () => {
  it('is sha256 hex of the route and the body without its fencing token, for any body (2,000 generated)', () => {
    // The same cases on every run.
    const r = seededRandom(20).next;
    for (let i = 0; i < 2000; i++) {
      const route = r() < 0.5 ? 'create' : `transition ${text(r)}`;
      const body = value(r, 0);
      if (body !== null && typeof body === 'object' && !Array.isArray(body) && r() < 0.5) (body as Record<string, unknown>).fencingToken = Math.floor(r() * 100);
      const got = fingerprint(route, body);
      expect(got).toMatch(/^[0-9a-f]{64}$/);
      expect(got).toBe(reference(route, body));
    }
  });

  it('leaves out the fencing token only', () => {
    const body = { idempotencyKey: 'k', planId: 'p', from: 'A', to: 'B' };
    expect(fingerprint('transition v', { ...body, fencingToken: 7 })).toBe(fingerprint('transition v', body));
    expect(fingerprint('transition v', { ...body, to: 'C' })).not.toBe(fingerprint('transition v', body));
    expect(fingerprint('delete v', body)).not.toBe(fingerprint('transition v', body));
  });

  it('keeps the value stored by earlier versions', () => {
    expect(fingerprint('create', { idempotencyKey: 'k', fencingToken: 3 })).toBe(createHash('sha256').update('create\n{"idempotencyKey":"k"}').digest('hex'));
  });
});

// The request id a step is known by to the authority (stepRequestId): the same each time the step is sent, by any
// DMZ client process of its data center, so the authority finds a step it recorded the report of done; another for
// every other step, so it never finds a different request done.
describe('the request id of a step', () => {
  const d: RequestDefaults = { dataCenter: 'miami', initial: 'Requested', terminal: 'Deleted' };
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  const STATES = ['PoweredOff', 'PoweredOn', 'Starting', 'Running', 'ShuttingDown', 'BeingDeleted', 'Deleted'];

  function step(r: () => number): EdgeStep {
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
    const body = { idempotencyKey: `k${Math.floor(r() * 50)}`, planId: r() < 0.5 ? null : `p${Math.floor(r() * 3)}`, from: pick(STATES), to: pick(STATES) };
    const vmId = `vm-${Math.floor(r() * 3)}`;
    if (r() < 0.2) return { op: 'delete', vmId, body };
    if (r() < 0.2) return { op: 'transition', vmId, body: { ...body, to: body.from, operation: 'resize', size: { cpu: 1 + Math.floor(r() * 3), memoryGiB: 2, diskGiB: 10 } } };
    return { op: 'transition', vmId, body };
  }

  it('is one UUID per step: the same step sent again (any fencing token) has it, any other step (3,000 generated) another', () => {
    const r = seededRandom(21).next;
    const byStep = new Map<string, string>();
    const byId = new Map<string, string>();
    for (let i = 0; i < 3000; i++) {
      const s = step(r);
      const again = { ...s, body: { ...s.body, ...(r() < 0.5 ? { fencingToken: 1 + Math.floor(r() * 9) } : {}) } } as EdgeStep;
      const id = stepRequest(d, s).requestId;
      expect(id).toMatch(UUID);
      expect(stepRequest(d, again).requestId).toBe(id);
      expect(stepRequest(d, s, stepFingerprint(s)).requestId).toBe(id);
      // Another data center's client never gives it the same id.
      expect(stepRequest({ ...d, dataCenter: 'richmond' }, s).requestId).not.toBe(id);
      const what = `${s.op} ${s.vmId} ${JSON.stringify(s.body)}`;
      expect(byStep.get(what) ?? id).toBe(id);
      expect(byId.get(id) ?? what).toBe(what);
      byStep.set(what, id);
      byId.set(id, what);
    }
    expect(byId.size).toBeGreaterThan(1000);
  });

  it("a create's, from its key and request, likewise", () => {
    const vm = { id: '0b6c1f7e-3f4e-4a59-9d55-0a3d7a2b9c11', stack: 's', fleet: 'web', owner: 'o', index: 0, name: 's-web-0', image: 'ubuntu-22.04', size: { cpu: 1, memoryGiB: 2, diskGiB: 10 }, encryptedDisk: true, desiredState: 'Running', specHash: 'h' };
    const b = { idempotencyKey: 'c', planId: null, vm };
    const id = createRequest(d, b).requestId;
    expect(id).toMatch(UUID);
    expect(createRequest(d, { ...b, fencingToken: 4 }).requestId).toBe(id);
    expect(createRequest(d, { ...b, idempotencyKey: 'c2' }).requestId).not.toBe(id);
    expect(createRequest(d, { ...b, vm: { ...vm, index: 1 } }).requestId).not.toBe(id);
  });
});
