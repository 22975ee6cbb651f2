// A new PGlite record starts as a copy of the template cluster that
// bin/pglite-template.mjs made at `npm ci` (dist/pglite-template), instead of
// PGlite running initdb in this process: initdb runs a second PostgreSQL and
// the initdb program, each in its own WebAssembly memory (~600 MiB more at
// the peak of a stack's first `fleet apply`, and seconds of CPU: issue 20).
// Without a template of the installed PGlite version (no build, another
// version since), PGlite runs initdb as before.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync } from 'node:fs';
import { cp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The template's folder: dist/pglite-template of the package (two levels up, from engine/record or dist/cli alike). */
export const TEMPLATE_DIR = fileURLToPath(new URL('../../dist/pglite-template/', import.meta.url));

let installed: string | null | undefined;
/** The version of @electric-sql/pglite this process loads, or null when it cannot be told. */
function pgliteVersion(): string | null {
  if (installed !== undefined) return installed;
  try {
    const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
    installed = (JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')) as { version?: string }).version ?? null;
  } catch {
    installed = null;
  }
  return installed;
}

/** The template's cluster when it exists and was made by the PGlite version loaded here; else undefined. */
export function templateCluster(templateDir = TEMPLATE_DIR): string | undefined {
  try {
    const made = (JSON.parse(readFileSync(join(templateDir, 'version.json'), 'utf8')) as { pglite?: string }).pglite;
    const data = join(templateDir, 'data');
    return made !== undefined && made === pgliteVersion() && existsSync(join(data, 'PG_VERSION')) ? data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Fills the empty record folder `dir` (its lock held) with a copy of the
 * template cluster; false when there is no usable template (PGlite then runs
 * initdb). The copy is made beside `dir` and renamed over the empty folder,
 * so a crash midway leaves `dir` empty, never half a cluster.
 */
export async function fillFromTemplate(dir: string, templateDir = TEMPLATE_DIR): Promise<boolean> {
  const data = templateCluster(templateDir);
  if (!data || readdirSync(dir).length > 0) return false;
  const tmp = `${dir}.new-${process.pid}`;
  try {
    await rm(tmp, { recursive: true, force: true });
    await cp(data, tmp, { recursive: true });
    // rename(2) replaces an empty folder in one step.
    renameSync(tmp, dir);
    return true;
  } catch {
    await rm(tmp, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return existsSync(join(dir, 'PG_VERSION'));
  }
}
