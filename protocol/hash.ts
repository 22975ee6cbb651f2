// Hashes and comparisons the wire relies on, for every party: boot tokens and
// disk keys are sent and stored only as sha256 hex (diskKeyHash), bearer
// tokens are compared in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';

/** sha256 hex; boot tokens and disk keys are stored and compared only as hashes. */
export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Constant-time string comparison (for bearer tokens). */
export function sameSecret(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}
