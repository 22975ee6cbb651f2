// The authority's own secrets: disk keys derived from its secret, and the
// secret's file (credentials' scoped tokens: credentials/scoped.ts). (sha256 and sameSecret, which every party
// uses, are in protocol/hash.ts.)
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomBase64url } from '../../protocol/index.ts';
import { diag, FleetError, fsReason } from '../diags/index.ts';
import { writeOwnFile } from '../durability/own-file.ts';

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

/**
 * Reads a secret from `file` (the authority's, the dashboard's token), creating it (mode 0600) on first use. One
 * that cannot be read or made (no permission, a folder where the file should be) is apply.secret-file naming `what`;
 * it is never replaced: the disk keys of encrypted VMs derive from the authority's.
 */
export function loadOrCreateSecret(file: string, what = "the authority's secret"): string {
  const fault = (verb: string, err: unknown) => new FleetError(diag('apply.secret-file', `cannot ${verb} ${what}: ${fsReason(err)}.`, { file }));
  try {
    const s = readFileSync(file, 'utf8').trim();
    if (s !== '') return s;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fault('read', err);
  }
  const secret = randomToken(32);
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    // Never through a symbolic link at its name (a link planted in a shared workspace): its target was overwritten.
    writeOwnFile(file, `${secret}\n`);
  } catch (err) {
    throw fault('create', err);
  }
  return secret;
}
