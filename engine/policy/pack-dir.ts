// What is wrong with a policy pack's folder, if anything: one check for the
// stack loader (policyPack.path, spec.pack-not-found) and the pack loader
// (`fleet policy test PACKDIR`, policy.pack-missing), each of which words it
// for its own reader.
import { statSync, type Stats } from 'node:fs';
import { basename, join } from 'node:path';

/** The pack's file inside its folder. */
export const PACK_FILE = 'policy.yaml';

/**
 * | problem        | the path                                                        |
 * | -------------- | --------------------------------------------------------------- |
 * | `missing`      | does not exist (a broken link included)                         |
 * | `no-pack-file` | is a folder without a policy.yaml file in it                    |
 * | `is-pack-file` | is the pack's file itself (`…/policy.yaml`), not its folder     |
 * | `is-file`      | is something else than a folder                                 |
 * | `unreadable`   | is a folder whose policy.yaml cannot be looked at (no permission to the folder, a link loop) |
 */
export type PackDirProblem = 'missing' | 'no-pack-file' | 'is-pack-file' | 'is-file' | 'unreadable';

/** Why `packDir` (absolute) is not a folder holding a policy.yaml file; undefined when it is one. Links are followed. */
export function packDirProblem(packDir: string): PackDirProblem | undefined {
  const dir = statOf(packDir);
  if (!dir) return 'missing';
  if (dir === 'unreadable') return 'unreadable';
  if (!dir.isDirectory()) return basename(packDir) === PACK_FILE ? 'is-pack-file' : 'is-file';
  const file = statOf(join(packDir, PACK_FILE));
  if (file === 'unreadable') return 'unreadable';
  return file?.isFile() ? undefined : 'no-pack-file';
}

/** A path's stat, following links; undefined when there is nothing (absent, below a file: ENOTDIR), `unreadable` on any other error. */
function statOf(p: string): Stats | 'unreadable' | undefined {
  try {
    return statSync(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? undefined : 'unreadable';
  }
}
