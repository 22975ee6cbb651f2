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
 */
export type PackDirProblem = 'missing' | 'no-pack-file' | 'is-pack-file' | 'is-file';

/** Why `packDir` (absolute) is not a folder holding a policy.yaml file; undefined when it is one. Links are followed. */
export function packDirProblem(packDir: string): PackDirProblem | undefined {
  const dir = statOf(packDir);
  if (!dir) return 'missing';
  if (!dir.isDirectory()) return basename(packDir) === PACK_FILE ? 'is-pack-file' : 'is-file';
  return statOf(join(packDir, PACK_FILE))?.isFile() ? undefined : 'no-pack-file';
}

/** A path's stat, following links; undefined when it cannot be had (absent, below a file: ENOTDIR, no permission). */
function statOf(p: string): Stats | undefined {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}
