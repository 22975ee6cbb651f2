// Files the tool keeps are private (docs/security.md, "Files"): folders 0700,
// files 0600. What it creates is made so from the start; what was already
// there (made by hand, restored from a backup, written by an older version)
// is made so when it is opened, by makePrivate.
import { closeSync, constants, fchmodSync, fstatSync, lstatSync, openSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Errors that leave an entry as it is: gone, not a folder, a symbolic link (ELOOP), or not this user's to read or change. */
const LEFT_ALONE = new Set(['ENOENT', 'ENOTDIR', 'EACCES', 'EPERM', 'ELOOP']);

/**
 * Folders 0700 and files 0600 at `dir` (and, unless `recursive` is false,
 * under it), changing only entries group or others may use; symbolic links
 * are left alone (never followed). Best effort: a missing `dir`, one that is
 * not a folder, or an entry this user may not read or change is left as it
 * is, for the code that uses it next to report (apply.sim-state,
 * apply.secret-file, record.unwritable), not this tightening.
 */
export function makePrivate(dir: string, opts: { recursive?: boolean } = {}): void {
  const quietly = (work: () => void): void => {
    try {
      work();
    } catch (err) {
      if (!LEFT_ALONE.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
    }
  };
  quietly(() => {
    // Opened without following a symbolic link (O_NOFOLLOW; ELOOP: left alone): a link planted at a state folder's
    // name (.fleet/sim/<dc> -> any folder) had every file under its target made 0600 and every folder 0700.
    const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    try {
      if (fstatSync(fd).mode & 0o077) fchmodSync(fd, 0o700);
    } finally {
      closeSync(fd);
    }
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) {
        if (opts.recursive !== false) makePrivate(path);
      } else if (e.isFile()) {
        quietly(() => {
          // One lstat per file, and the file opened only when group or others may use it: a PGlite record holds
          // ~1,000 files, nearly all 0600 already, and opening each (open, fstat, close) cost every command that
          // opens the record ~15-25 ms of CPU. A file that lstat saw private and that is swapped for a looser one
          // after it was looked at is left as it is, as before when the swap came after the listing.
          const seen = lstatSync(path);
          if (!seen.isFile() || (seen.mode & 0o077) === 0) return;
          // Not through a link either (one swapped in since the folder was listed).
          const f = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
          try {
            const st = fstatSync(f);
            if (st.isFile() && st.mode & 0o077) fchmodSync(f, 0o600);
          } finally {
            closeSync(f);
          }
        });
      }
    }
  });
}
