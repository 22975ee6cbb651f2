// The authority's own secrets: disk keys derived from its secret, and the
// secret's file (credentials' scoped tokens: credentials/scoped.ts). (sha256 and sameSecret, which every party
// uses, are in protocol/hash.ts.)
import { createHmac, randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { linkRefused, ownFileFlags } from '../durability/own-file.ts';
import { dirname } from 'node:path';
import { randomBase64url } from '../../protocol/index.ts';
import { diag, FleetError, fsReason } from '../diags/index.ts';

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
 * The secret in `file`, or undefined when there is none (no file, or only
 * blanks). A file anyone but its owner may read is made 0600 first (one
 * copied in, or written by an older version): it holds what every disk key
 * is derived from.
 */
function readSecret(file: string): string | undefined {
  let fd: number;
  try {
    // Never through a symbolic link at its name (one planted in a shared workspace): the file it named was made 0600,
    // overwritten when empty, and its text taken for the secret.
    fd = openSync(file, ownFileFlags('read'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw linkRefused(file, err);
  }
  try {
    if ((fstatSync(fd).mode & 0o077) !== 0) fchmodSync(fd, 0o600);
    return readFileSync(fd, 'utf8').trim() || undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a secret from `file` (the authority's, the dashboard's token),
 * creating it on first use: mode 0600 from its first byte (an empty file
 * already there, whatever its mode, is made 0600 before the secret goes in),
 * in a 0700 folder when it makes one. One that cannot be read or made (no
 * permission, a folder where the file should be) is apply.secret-file naming
 * `what`; it is never replaced: the disk keys of encrypted VMs derive from the
 * authority's.
 */
export function loadOrCreateSecret(file: string, what = "the authority's secret"): string {
  const fault = (verb: string, err: unknown) => new FleetError(diag('apply.secret-file', `cannot ${verb} ${what}: ${fsReason(err)}.`, { file }));
  let existing: string | undefined;
  try {
    existing = readSecret(file);
  } catch (err) {
    throw fault('read', err);
  }
  if (existing !== undefined) return existing;
  let fd: number;
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    try {
      fd = openSync(file, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // Made by another process meanwhile (use its secret), or there but empty (readSecret made it 0600).
      const made = readSecret(file);
      if (made !== undefined) return made;
      try {
        fd = openSync(file, ownFileFlags('update'));
      } catch (e) {
        throw linkRefused(file, e);
      }
      ftruncateSync(fd, 0);
    }
  } catch (err) {
    throw fault('create', err);
  }
  const secret = randomToken(32);
  try {
    writeSync(fd, `${secret}\n`);
    fsyncSync(fd);
  } catch (err) {
    throw fault('create', err);
  } finally {
    closeSync(fd);
  }
  return secret;
}
