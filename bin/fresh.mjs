// Whether dist/cli (bin/build.mjs) may run: the manifest the build wrote
// lists every source it read with its size, modification time and SHA-1, and
// the build is fresh only while all of them are unchanged. Same size and
// time is taken as unchanged (a stat each: the usual case in a checkout);
// a file whose time differs (an installed package: npm pack stores one fixed
// time for every file) is compared by content. The packages bundled into the
// build (bin/build.mjs, BUNDLED) are listed with their versions: a build is
// stale once the installed version of one differs.
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

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

/**
 * The URL of the built entry under `dist` (a folder URL ending in `/`) when
 * it is fresh against the sources under `root`; undefined when there is no
 * build, a source changed, or `FLEET_FROM_SOURCE=1` asks for the sources.
 */
export function freshBuild(dist, root, env = process.env) {
  if (env.FLEET_FROM_SOURCE === '1') return undefined;
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(new URL('manifest.json', dist), 'utf8'));
  } catch {
    return undefined;
  }
  for (const [file, { size, mtimeMs, sha1 }] of Object.entries(manifest.inputs ?? {})) {
    const url = new URL(file, root);
    const s = statSync(url, { throwIfNoEntry: false });
    if (!s || s.size !== size) return undefined;
    if (s.mtimeMs !== mtimeMs && createHash('sha1').update(readFileSync(url)).digest('hex') !== sha1) return undefined;
  }
  for (const [name, version] of Object.entries(manifest.packages ?? {})) {
    if (packageVersion(root, name) !== version) return undefined;
  }
  return typeof manifest.entry === 'string' ? new URL(manifest.entry, dist) : undefined;
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
