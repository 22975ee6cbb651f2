import { readdirSync, statfsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { diag, FleetError } from '../diags/index.ts';

/**
 * A PGlite record that cannot be written is not a damaged one. A full disk or
 * a read-only folder used to be reported as `record.corrupt` ("restore it
 * from a backup"), with PGlite's own words ("Aborted(). Build with
 * -sASSERTIONS for more info", "PGlite failed to initialize properly") or,
 * in the middle of an apply, as a raw pg error and a stack trace. These say
 * `record.unwritable` instead, naming the cause.
 */

/** Below this much free space a PGlite record that fails to open is said to be on a full disk (its write-ahead log grows by 16 MiB segments). */
export const LOW_SPACE_BYTES = 16 * 1024 * 1024;

/** Error codes of a file system call that mean the storage refuses writes, with what to say of them. */
const WRITE_REFUSED: Record<string, { why: string; full: boolean }> = {
  ENOSPC: { why: 'the disk holding it is full', full: true },
  EDQUOT: { why: 'the disk quota of this user is used up', full: true },
  EROFS: { why: 'its file system is mounted read-only', full: false },
  EACCES: { why: 'this user may not write there', full: false },
  EPERM: { why: 'this user may not write there', full: false },
};

/** SQLSTATE disk_full, as PostgreSQL (and PGlite) say "could not extend file …: No space left on device". */
const DISK_FULL = '53100';

const notDamaged = 'the record is not damaged by this (do not restore it from a backup for it)';
const freeSpace = `Free space on that disk, then run the command again; ${notDamaged}.`;
// u+rwX, not u+w: a folder of mode 0000 (or 0200) cannot be recursed into with u+w alone.
const writeAccess = (dir: string) => `Give this user read and write access (\`chmod -R u+rwX ${dir}\`, and to the folder holding it), or run as its owner, then run the command again; ${notDamaged}.`;

function kib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${Math.floor(bytes / (1024 * 1024))} MiB` : `${Math.floor(bytes / 1024)} KiB`;
}

/** Free bytes for this user on the file system holding `path`; undefined when it cannot be told. */
export function freeBytes(path: string): number | undefined {
  try {
    const s = statfsSync(path);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return undefined;
  }
}

/** The first entry under (and including) `dir` that its owner may not write (PGlite checks the mode bits, also for root); undefined when none. */
export function readOnlyEntry(dir: string): { path: string; mode: string } | undefined {
  const walk = (path: string): { path: string; mode: string } | undefined => {
    let st;
    try {
      st = statSync(path);
    } catch {
      return undefined;
    }
    if ((st.mode & 0o200) === 0) return { path, mode: (st.mode & 0o777).toString(8).padStart(4, '0') };
    if (!st.isDirectory()) return undefined;
    let names: string[];
    try {
      names = readdirSync(path);
    } catch {
      return undefined;
    }
    for (const name of names) {
      const found = walk(join(path, name));
      if (found) return found;
    }
    return undefined;
  };
  return walk(dir);
}

/** The lock file `<dir>.lock` could not be created: record.unwritable when the storage refuses writes, else undefined. */
export function lockFileFault(dir: string, file: string, err: NodeJS.ErrnoException): FleetError | undefined {
  const refused = err.code ? WRITE_REFUSED[err.code] : undefined;
  if (!refused) return undefined;
  return new FleetError(
    diag('record.unwritable', `cannot create the lock file ${file} of the PGlite record ${dir}: ${refused.why} (${err.message}). ${refused.full ? freeSpace : writeAccess(dir)}`, { file: dir }),
  );
}

/** The record's folder could not be created or listed: record.unwritable when the storage refuses it, else undefined. */
export function dirFault(dir: string, op: 'create' | 'read', err: NodeJS.ErrnoException): FleetError | undefined {
  const refused = err.code ? WRITE_REFUSED[err.code] : undefined;
  if (!refused) return undefined;
  const why = op === 'read' && (err.code === 'EACCES' || err.code === 'EPERM') ? 'this user may not read it' : refused.why;
  return new FleetError(diag('record.unwritable', `cannot ${op} the record directory ${dir}: ${why} (${err.message}). ${refused.full ? freeSpace : writeAccess(dir)}`, { file: dir }));
}

/** PGlite could not open `dir`: record.unwritable when a read-only entry or a full disk explains it, else undefined. */
export function openFault(dir: string, cause: string): FleetError | undefined {
  const ro = readOnlyEntry(dir);
  if (ro) {
    return new FleetError(
      diag(
        'record.unwritable',
        `PGlite could not open ${dir}: ${ro.path === dir ? 'the folder' : ro.path} is read-only (mode ${ro.mode}), and PGlite writes its record even to read it (${cause}). ${writeAccess(dir)}`,
        { file: dir },
      ),
    );
  }
  const free = freeBytes(dir);
  if (free !== undefined && free < LOW_SPACE_BYTES) {
    return new FleetError(diag('record.unwritable', `PGlite could not open ${dir}: the disk holding it is full (${kib(free)} free) (${cause}). ${freeSpace}`, { file: dir }));
  }
  return undefined;
}

/** A statement failed for want of disk space (SQLSTATE 53100): record.unwritable; any other error as it is. */
export function writeFault(err: unknown, description: string): unknown {
  if (typeof err !== 'object' || err === null || (err as { code?: unknown }).code !== DISK_FULL) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new FleetError(diag('record.unwritable', `the record ${description} could not be written: the disk holding it is full (${message}). ${freeSpace} An apply stopped by it is continued by the next one (docs/recovery.md).`));
}
