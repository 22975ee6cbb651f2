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
import { suggest } from '../diags/suggest.ts';

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

/** Why a glob matches no file, and a glob that would (noMatchHint). */
export interface NoMatchHint {
  /** The first name of the glob's fixed part (before any `*`) that is not there: a folder, or the file a glob without `*` names. */
  missing?: { name: string; kind: 'folder' | 'file'; in: string };
  /** A glob that matches files: the missing names put right (the closest names there), or .yml and .yaml swapped. */
  fix?: { glob: string; files: number };
}

/**
 * For a glob (relative to `base`, or absolute) that matches no file: the
 * first name of its fixed part that does not exist (`in` is the part before
 * it as written, '' for `base` itself), and a likely meant glob that matches
 * files: each missing name replaced by the closest one there (a typo,
 * engine/diags suggest: `spec/*.yaml` beside a folder specs/), or the
 * extension .yml and .yaml swapped. Only for a diagnostic: it reads folders.
 */
export async function noMatchHint(glob: string, base: string): Promise<NoMatchHint> {
  const parts = glob.split('/');
  const fixed = [...parts];
  let cur = base;
  let missing: NoMatchHint['missing'];
  for (let i = 0; i < parts.length; i++) {
    const seg = parts[i];
    if (i === 0 && seg === '') {
      cur = '/';
      continue;
    }
    if (seg === '' || seg === '.' || seg === '..') {
      cur = resolve(cur, seg || '.');
      continue;
    }
    if (MAGIC.test(seg) || seg.includes('*')) break;
    const kind: 'folder' | 'file' = i === parts.length - 1 ? 'file' : 'folder';
    const path = join(cur, seg);
    const st = await stat(path).catch(() => undefined);
    if (st && (kind === 'folder' ? st.isDirectory() : st.isFile())) {
      cur = path;
      continue;
    }
    if (!missing) {
      const before = parts.slice(0, i).join('/') || (i > 0 ? '/' : '');
      missing = { name: seg, kind, in: before !== '' && resolve(base, before) === resolve(base) ? '' : before };
    }
    const names: string[] = [];
    for (const e of await readdir(cur, { withFileTypes: true }).catch(() => [])) {
      const target = e.isSymbolicLink() ? await stat(join(cur, e.name)).catch(() => undefined) : e;
      if (target && (kind === 'folder' ? target.isDirectory() : target.isFile())) names.push(e.name);
    }
    const near = suggest(seg, names.sort());
    if (near === undefined) break;
    fixed[i] = near;
    cur = join(cur, near);
  }
  const tries = new Set<string>();
  const corrected = fixed.join('/');
  for (const g of [corrected, glob]) {
    if (g !== glob) tries.add(g);
    const swapped = g.replace(/\.(yml|yaml)$/, (_m, ext: string) => (ext === 'yml' ? '.yaml' : '.yml'));
    if (swapped !== glob) tries.add(swapped);
  }
  for (const g of tries) {
    const files = (await matchGlob(g, base).catch(() => [])).length;
    if (files > 0) return { ...(missing ? { missing } : {}), fix: { glob: g, files } };
  }
  return missing ? { missing } : {};
}
