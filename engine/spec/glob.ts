// The stack's `specs` globs. The usual one, a folder and a file pattern with
// `*` only (`../specs/*.yaml`), is matched here with one readdir; anything
// else goes to fast-glob, loaded only then (it and its dependencies cost
// ~60-90 ms of start-up, a third of `fleet validate`: issue 20). Both give
// the same files: `*` matches within one name and not a leading dot (fast-glob
// with `dot: false`), only files count (a symbolic link to a file too), and
// a missing folder matches nothing.
import { closeSync, openSync, rmSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';

/** Characters that make a glob more than `*` (fast-glob / micromatch syntax, and the escape). */
const MAGIC = /[?[\]{}()!+@|\\]/;

/** The folder and the RegExp of a glob fast-glob is not needed for, or undefined. */
export function simpleGlob(glob: string): { dir: string; name: RegExp; dotOk: boolean } | undefined {
  if (process.platform === 'win32') return undefined;
  const slash = glob.lastIndexOf('/');
  const dir = slash < 0 ? '' : glob.slice(0, slash);
  const last = glob.slice(slash + 1);
  if (last === '' || MAGIC.test(glob) || dir.includes('*') || last.includes('**') || !last.includes('*')) return undefined;
  const source = last
    .split('*')
    .map((part) => part.replace(/[.^$]/g, '\\$&'))
    .join('[^/]*');
  return { dir: slash < 0 ? '.' : dir === '' ? '/' : dir, name: new RegExp(`^${source}$`), dotOk: last.startsWith('.') };
}

/**
 * The files `glob` (relative to `base`, or absolute) matches, as absolute
 * paths, in no particular order: fast-glob's `{ onlyFiles: true, absolute:
 * true, dot: false }` answer.
 */
export async function matchGlob(glob: string, base: string): Promise<string[]> {
  const simple = simpleGlob(glob);
  if (simple) {
    const dir = isAbsolute(simple.dir) ? simple.dir : resolve(base, simple.dir);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw err;
    }
    const out: string[] = [];
    for (const e of entries) {
      if (!simple.name.test(e.name) || (e.name.startsWith('.') && !simple.dotOk)) continue;
      const path = join(dir, e.name);
      if (e.isFile()) out.push(path);
      else if (e.isSymbolicLink() && (await stat(path).catch(() => undefined))?.isFile()) out.push(path);
    }
    return out;
  }
  const { default: fg } = await import('fast-glob');
  const pattern = isAbsolute(glob) ? glob : `${fg.convertPathToPattern(base)}/${glob}`;
  return fg(pattern, { onlyFiles: true, absolute: true, dot: false });
}

/**
 * The first of `globs` (relative to `base`) that would match `file` once it
 * exists, for a file that does not exist yet (`fleet plan --out
 * specs/new.yaml`: the plan written where the next load reads it as a spec).
 * Answered by the same matcher the loader uses: the file is created empty
 * (exclusively: never through a link, never over a file), matched, and
 * removed. Undefined when none would, the file exists, or it cannot be
 * created (the write that follows says why).
 */
export async function globTaking(file: string, globs: readonly string[], base: string): Promise<string | undefined> {
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o600);
  } catch {
    return undefined;
  }
  closeSync(fd);
  try {
    const want = resolve(file);
    for (const glob of globs) {
      const found = await matchGlob(glob, base).catch(() => [] as string[]);
      if (found.some((f) => resolve(f) === want)) return glob;
    }
    return undefined;
  } finally {
    rmSync(file, { force: true });
  }
}
