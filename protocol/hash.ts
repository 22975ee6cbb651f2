// Hashes and comparisons the wire relies on, for every party: boot tokens and
// disk keys are sent and stored only as sha256 hex (diskKeyHash), bearer
// tokens are compared in constant time.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

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

/**
 * The admin proof of an override of VM `vmId`'s deletion (Override.proof):
 * hex HMAC-SHA256 under the admin token of `allow-destroy`, the VM id, the
 * plan id, `by` and `reason`, joined by newlines. Bound to one VM and plan,
 * so a DMZ client that sees it cannot reuse it for another VM.
 */
export function overrideProof(adminToken: string, vmId: string, planId: string | null, by: string, reason: string): string {
  return createHmac('sha256', adminToken).update(['allow-destroy', vmId, planId ?? '', by, reason].join('\n')).digest('hex');
}
