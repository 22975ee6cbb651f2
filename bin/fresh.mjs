// Whether dist/cli (bin/build.mjs) may run: the manifest the build wrote
// lists every source it read with its size, modification time and SHA-1, and
// the build is fresh only while all of them are unchanged. Same size and
// time is taken as unchanged (a stat each: the usual case in a checkout);
// a file whose time differs is compared by content. The packages bundled
// into the build (bin/build.mjs, BUNDLED) are listed with their versions: a
// build is stale once the installed version of one differs.
//
// An installed package (npm pack, npm install) has every file with the time
// of its install, none with the manifest's: each start hashed all ~230
// sources again (45 ms of wall time, 18 of CPU, on a loaded 2-core machine;
// 15 and 6 with the record). So a content check that passed is remembered in
// dist/cli/verified-stat.json (VERIFIED): for each source it hashed, the
// size, modification time and change time (ctime) it had and the SHA-1 it
// matched. At the next start a source whose size, mtime and ctime equal its
// verified ones, for the SHA-1 the manifest wants, is unchanged (a stat each,
// as git's index); any difference, and a record that is missing, unreadable
// or not of this shape, means hashing that source as before, so the record
// can make a start slower, never a stale build run. A change time cannot be
// set back (utimes sets it to now): an edit that keeps the size and restores
// the mtime is still seen, which the checkout's size-and-time shortcut above
// does not see. Whoever can write dist/cli can change the build itself, so a
// record forged to match is not guarded against.
//
// A source is recorded only when its mtime and ctime are older than the
// record's temporary file, made before that source was looked at (the file
// system's own clock): an edit in the same clock tick as the check (FAT keeps
// 2 s) leaves the source unrecorded, hashed at every start until it is older,
// never trusted with stale content (git's "racily clean" entries). The record
// is written to a temporary file renamed into place, so a start reads a
// whole record or none; mode 0644 (less under a stricter umask): it holds
// what manifest.json holds, sizes, times and hashes of the package's own
// public files, and every user of a shared install may read it. Where
// dist/cli is not writable (a global install owned by root, run by others)
// nothing is recorded and nothing said: every start hashes, as before.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The version of package `name` as the project under `root` (a folder URL)
 * resolves it, or undefined when it resolves none: its entry's nearest
 * package.json of that name (the package's own, wherever npm put it).
 */
export function packageVersion(root, name) {
  // Where npm puts it in a checkout and in a global install: one read, no resolving (31 ms for two packages).
  try {
    const pkg = JSON.parse(readFileSync(new URL(`node_modules/${name}/package.json`, root), 'utf8'));
    if (pkg.name === name) return pkg.version;
  } catch {
    // elsewhere (hoisted above the project): resolve it
  }
  let dir;
  try {
    dir = dirname(createRequire(new URL('package.json', root)).resolve(name));
  } catch {
    return undefined;
  }
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      if (pkg.name === name) return pkg.version;
    } catch {
      // no package.json here: look further up
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/** The record of sources whose content was checked (above), next to the manifest. */
export const VERIFIED = 'verified-stat.json';

/** The verified record under `dist`: file -> { size, mtimeMs, ctimeMs, sha1 }; empty when missing or not of this shape. */
function readVerified(dist) {
  let record;
  try {
    record = JSON.parse(readFileSync(new URL(VERIFIED, dist), 'utf8'));
  } catch {
    return new Map();
  }
  const entries = new Map();
  if (record?.version !== 1 || typeof record.inputs !== 'object' || record.inputs === null || Array.isArray(record.inputs)) return entries;
  for (const [file, v] of Object.entries(record.inputs)) {
    if (typeof v !== 'object' || v === null) continue;
    const { size, mtimeMs, ctimeMs, sha1 } = v;
    if ([size, mtimeMs, ctimeMs].every(Number.isFinite) && typeof sha1 === 'string') entries.set(file, { size, mtimeMs, ctimeMs, sha1 });
  }
  return entries;
}

/**
 * Whether the build under `dist` (a folder URL ending in `/`) is fresh
 * against the sources under `root`: `entry` is the built entry's URL, or
 * undefined when there is no build, a source changed, or
 * `FLEET_FROM_SOURCE=1` asks for the sources. `hashed`: how many sources
 * were compared by content (neither the manifest's nor the verified stat
 * matched); `recorded`: whether the verified record was written.
 */
export function checkBuild(dist, root, env = process.env) {
  const result = { entry: undefined, hashed: 0, recorded: false };
  if (env.FLEET_FROM_SOURCE === '1') return result;
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(new URL('manifest.json', dist), 'utf8'));
  } catch {
    return result;
  }
  const verified = readVerified(dist);
  // Paths joined by hand: 230 URLs made and taken apart, or paths normalized
  // (path.join), cost 5-10 ms of a start; the manifest's names are relative
  // and normalized already (esbuild's metafile).
  const base = fileURLToPath(root);
  /** The record to write: the verified entries that held, and the sources hashed now whose times are older than `tmp`. */
  const record = {};
  let learnt = false;
  /** The temporary file of the new record, made before the first source hashed (its time is the file system's "now"); null: it cannot be made. */
  let tmp;
  const stale = () => {
    if (tmp) dropTemp(tmp);
    return result;
  };
  for (const [file, { size, mtimeMs, sha1 }] of Object.entries(manifest.inputs ?? {})) {
    const path = base + file;
    let s = statSync(path, { throwIfNoEntry: false });
    if (!s || s.size !== size) return stale();
    if (s.mtimeMs === mtimeMs) continue;
    const v = verified.get(file);
    if (v && v.sha1 === sha1 && v.size === s.size && v.mtimeMs === s.mtimeMs && v.ctimeMs === s.ctimeMs) {
      record[file] = v;
      continue;
    }
    if (tmp === undefined) {
      tmp = makeTemp(dist);
      // Looked at again after the temporary file was made, so an edit from now on gives it a time not older than the file's.
      if (tmp) s = statSync(path, { throwIfNoEntry: false });
      if (!s || s.size !== size) return stale();
    }
    result.hashed++;
    if (createHash('sha1').update(readFileSync(path)).digest('hex') !== sha1) return stale();
    if (tmp && s.mtimeMs < tmp.at && s.ctimeMs < tmp.at) {
      record[file] = { size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs, sha1 };
      learnt = true;
    }
  }
  for (const [name, version] of Object.entries(manifest.packages ?? {})) {
    if (packageVersion(root, name) !== version) return stale();
  }
  if (typeof manifest.entry !== 'string') return stale();
  result.entry = new URL(manifest.entry, dist);
  if (tmp && learnt) result.recorded = writeVerified(dist, tmp, record);
  else if (tmp) dropTemp(tmp);
  return result;
}

/**
 * A new temporary file for the verified record under `dist`, with the time
 * the file system gave it (`at`, ms); null where it cannot be made (a
 * folder this user may not write): then nothing is recorded.
 */
function makeTemp(dist) {
  const url = new URL(`${VERIFIED}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`, dist);
  let fd;
  try {
    fd = openSync(url, 'wx', 0o644);
    const s = fstatSync(fd);
    return { url, fd, at: Math.min(s.mtimeMs, s.ctimeMs) };
  } catch {
    if (fd !== undefined) dropTemp({ url, fd });
    return null;
  }
}

/** Closes and removes the temporary file `tmp`, whatever is left of it. */
function dropTemp(tmp) {
  try {
    if (tmp.fd !== undefined) closeSync(tmp.fd);
  } catch {
    // closed already
  }
  tmp.fd = undefined;
  try {
    unlinkSync(tmp.url);
  } catch {
    // gone already, or never made
  }
}

/** Writes `record` through `tmp` and renames it into place; false (and nothing left behind) when that fails. */
function writeVerified(dist, tmp, record) {
  try {
    writeFileSync(tmp.fd, `${JSON.stringify({ version: 1, inputs: record })}\n`);
    closeSync(tmp.fd);
    tmp.fd = undefined;
    renameSync(tmp.url, new URL(VERIFIED, dist));
    return true;
  } catch {
    dropTemp(tmp);
    return false;
  }
}

/**
 * The URL of the built entry under `dist` (a folder URL ending in `/`) when
 * it is fresh against the sources under `root`; undefined when there is no
 * build, a source changed, or `FLEET_FROM_SOURCE=1` asks for the sources
 * (checkBuild).
 */
export function freshBuild(dist, root, env = process.env) {
  return checkBuild(dist, root, env).entry;
}

/**
 * The CLI's `main`, from where it may run: the build under `root`'s
 * dist/cli when it is fresh, else the sources through tsx's loader, so a
 * stale build is never what runs (bin/fleet.mjs; bench/apply/child.mjs).
 * `built` says which.
 */
export async function loadMain(root, env = process.env) {
  const built = freshBuild(new URL('dist/cli/', root), root, env);
  if (built) return { main: (await import(built.href)).main, built: true };
  const { register } = await import('tsx/esm/api');
  register();
  return { main: (await import(new URL('engine/cli/main.ts', root).href)).main, built: false };
}
