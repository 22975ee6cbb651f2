// Hashes and comparisons the wire relies on, for every party: boot tokens and
// disk keys are sent and stored only as sha256 hex (diskKeyHash), bearer
// tokens are compared in constant time.
import { createHash, createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';

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

/**
 * The proof `fleet apply` sends to POST /v1/plans/admin-check before any
 * change starts: hex HMAC-SHA256 under the admin token of `admin-check`, the
 * stack name and a fresh nonce, joined by newlines. Its first line is not an
 * override's (`allow-destroy`), so it can never stand for one.
 */
export function adminCheckProof(adminToken: string, stack: string, nonce: string): string {
  return createHmac('sha256', adminToken).update(['admin-check', stack, nonce].join('\n')).digest('hex');
}

/** Whether `proof` (hex) is adminCheckProof under one of `adminTokens`, compared in constant time. */
export function adminCheckHolds(adminTokens: readonly string[], stack: string, nonce: string, proof: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(proof)) return false;
  const given = Buffer.from(proof, 'hex');
  return adminTokens.some((t) => timingSafeEqual(given, Buffer.from(adminCheckProof(t, stack, nonce), 'hex')));
}

/** Bytes of randomness drawn from the CSPRNG at a time by randomBase64url. */
const POOL_BYTES = 4096;
let pool: Buffer | undefined;
let poolAt = POOL_BYTES;

/**
 * `bytes` fresh random bytes (1 to 256) from the CSPRNG, as base64url: the
 * nonces of scoped tokens, boot tokens, every one the authority issues per
 * approval. Drawn from a pool filled POOL_BYTES at a time (as Node's own
 * randomUUID does): one call into OpenSSL per few hundred tokens instead of
 * one per token (randomBytes costs ~2.4 us a call, this ~0.15 us). Every byte
 * is handed out once; the part handed out is zeroed.
 */
export function randomBase64url(bytes: number): string {
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 256) throw new Error(`bug: randomBase64url takes 1 to 256 bytes, not ${bytes}`);
  if (pool === undefined || poolAt + bytes > POOL_BYTES) {
    pool ??= Buffer.alloc(POOL_BYTES);
    randomFillSync(pool);
    poolAt = 0;
  }
  const out = pool.toString('base64url', poolAt, poolAt + bytes);
  pool.fill(0, poolAt, poolAt + bytes);
  poolAt += bytes;
  return out;
}
