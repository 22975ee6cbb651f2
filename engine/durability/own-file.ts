// Opening a file the tool writes (under <stack>/.fleet/, `plan --out`) without following a symbolic link at its
// name: a link planted there (a shared CI workspace) made the tool overwrite the file it named, and make it 0600,
// and a dangling one created its target wherever it pointed. O_NOFOLLOW makes open() fail (ELOOP) on a link at the
// last component; that failure is reported as what it is, not as "too many symbolic links".
import { closeSync, constants, fchmodSync, fstatSync, openSync, readlinkSync, writeSync } from 'node:fs';

const FLAGS = {
  /** Created or truncated. */
  write: constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
  /** Read (and made 0600 when loose). */
  read: constants.O_RDONLY | constants.O_NOFOLLOW,
  /** Read and written, not created. */
  update: constants.O_RDWR | constants.O_NOFOLLOW,
  /** Created or appended to. */
  append: constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW,
} as const;

/** The open flags of a file of the tool's own (no symbolic link followed at its name). */
export function ownFileFlags(how: keyof typeof FLAGS): number {
  return FLAGS[how];
}

/**
 * Opens `file` for writing (`write`: truncated; `append`) with mode 0600, never through a symbolic link at its name:
 * one there fails with an Error saying so (no `code`, so fsReason shows its message). An existing regular file is
 * made 0600 (open()'s mode applies only to a file it creates).
 */
export function openOwnFile(file: string, how: keyof typeof FLAGS): number {
  let fd: number;
  try {
    fd = openSync(file, FLAGS[how], 0o600);
  } catch (err) {
    throw linkRefused(file, err);
  }
  try {
    if (fstatSync(fd).isFile()) fchmodSync(fd, 0o600);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return fd;
}

/** Writes `text` whole to `file` (0600; `write`: replacing what it held, `append`), never through a symbolic link. */
export function writeOwnFile(file: string, text: string, how: keyof typeof FLAGS = 'write'): void {
  const fd = openOwnFile(file, how);
  try {
    writeAll(fd, text);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes all of `text` to `fd`. A text of a few KiB up to SCRATCH_BYTES / 3
 * characters is encoded into one buffer kept for the process (UTF-8 takes at
 * most 3 bytes per UTF-16 unit) instead of a buffer of its own: a big plan
 * document is written in pieces of ~64 Ki characters (plan/json-text.ts's
 * CHUNK), and a new buffer for each was ~100 MB of buffers made and
 * collected for a 100,000-create plan (bench/plan). Short texts (the
 * services' small files) still come from Node's buffer pool, and longer
 * ones get a buffer of their own. Synchronous: nothing else uses the buffer
 * while it is written.
 */
export function writeAll(fd: number, text: string): void {
  let bytes: Buffer;
  let length: number;
  if (text.length >= SCRATCH_MIN && text.length * 3 <= SCRATCH_BYTES) {
    scratch ??= Buffer.allocUnsafe(SCRATCH_BYTES);
    bytes = scratch;
    length = scratch.write(text, 0, 'utf8');
  } else {
    bytes = Buffer.from(text);
    length = bytes.length;
  }
  for (let at = 0; at < length; ) at += writeSync(fd, bytes, at, length - at);
}

/** writeAll's buffer: 1 MiB, a piece of json-text's CHUNK characters encoded fits with room to spare. */
const SCRATCH_BYTES = 1 << 20;
/** Below this many characters a text is encoded as before (Buffer.from takes small ones from Node's pool). */
const SCRATCH_MIN = 4096;
let scratch: Buffer | undefined;

/** ELOOP from an O_NOFOLLOW open is a link at the name: said so (with where it points); any other error as it is. */
export function linkRefused(file: string, err: unknown): unknown {
  if ((err as NodeJS.ErrnoException | undefined)?.code !== 'ELOOP') return err;
  let to = '';
  try {
    to = ` (to ${readlinkSync(file)})`;
  } catch {
    return err; // not a link at the name: a loop further up the path
  }
  return new Error(`${file} is a symbolic link${to}, and the tool keeps only a file of its own there. Remove the link, then run the command again`);
}
