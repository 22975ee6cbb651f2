// The authority's own secrets: disk keys derived from its secret, and the
// secret's file (credentials' scoped tokens: credentials/scoped.ts). (sha256 and sameSecret, which every party
// uses, are in protocol/hash.ts.)
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomBase64url } from '../../protocol/index.ts';

export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/** A fresh one-time boot token (24 random bytes), one per approved `boot` edge: from the CSPRNG's pool (protocol/hash.ts randomBase64url). */
export function newBootToken(): string {
  return randomBase64url(24);
}

/**
 * The disk key of a VM: HMAC of the VM id under the authority's secret. The
 * key is never stored; the authority can re-derive it at every boot, so the
 * secret must outlive the authority process (see loadOrCreateSecret).
 */
export function diskKey(secret: string, vmId: string): string {
  return createHmac('sha256', secret).update(`disk-key:${vmId}`).digest('base64url');
}

/** Reads the authority's secret from `file`, creating it (mode 0600) on first use. */
export function loadOrCreateSecret(file: string): string {
  try {
    const s = readFileSync(file, 'utf8').trim();
    if (s !== '') return s;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const secret = randomToken(32);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}
