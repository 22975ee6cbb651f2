// Files the tool keeps are private (docs/security.md, "Files"): folders 0700,
// files 0600. What it creates is made so from the start; what was already
// there (made by hand, restored from a backup, written by an older version)
// is made so when it is opened, by makePrivate.
import { chmodSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Folders 0700 and files 0600 at `dir` (and, unless `recursive` is false,
 * under it), changing only entries group or others may use; symbolic links
 * are left alone (never followed). A missing `dir` is left missing.
 */
export function makePrivate(dir: string, opts: { recursive?: boolean } = {}): void {
  let st;
  try {
    st = statSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (st.mode & 0o077) chmodSync(dir, 0o700);
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) {
      if (opts.recursive !== false) makePrivate(path);
    } else if (e.isFile() && statSync(path).mode & 0o077) chmodSync(path, 0o600);
  }
}
