// The fingerprint an idempotency key is kept with is written to the DMZ
// client's log (requests.jsonl): its form must never change, or a request
// retried after an upgrade would be refused as idempotency-conflict.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fingerprint } from './requests.ts';
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
