#!/usr/bin/env node
// Builds the CLI's JavaScript from the TypeScript sources: `npm ci` runs it
// (package.json "prepare", also before `npm pack`), so the installed `fleet`
// starts without compiling TypeScript at run time. esbuild bundles
// engine/cli/main.ts and everything it imports from the project into
// dist/cli/ (one flat folder: the sources' `new URL('../../x', import.meta.url)`
// paths stay right from there); node_modules packages stay imports, but for
// BUNDLED ones. Lazy `import()`s become chunks loaded only by the commands
// that need them.
//
// BUNDLED: the pure-JavaScript packages every command (commander) or every
// command reading YAML (yaml: validate, plan, apply) loads at start-up go
// into the chunks. Left as imports, Node's loader resolved, read and
// compiled each of their CommonJS files on its own (yaml has ~90) at every
// start: `fleet validate` took 0.42 s of CPU with them as imports, 0.36 s
// bundled (medians of 12 alternating runs, load average 8). The manifest
// keeps their versions (`packages`): a build whose bundled package was
// upgraded since is stale, as one whose source changed.
//
// dist/cli/manifest.json lists every source file the build read, with its
// size, modification time and SHA-1: bin/fleet.mjs runs the build only while
// all of them are unchanged (bin/fresh.mjs), and the sources through tsx
// otherwise (an edit made after `npm ci` is never hidden behind an old build).
// The build is made in a folder of its own and renamed into place, so a
// `fleet` starting meanwhile sees the old build or none, never half of one;
// what bin/fresh.mjs verified of the old build (verified-stat.json) goes
// with it.
//
// Usage: node bin/build.mjs [--quiet] [--out DIR]   (DIR: a build elsewhere, for tests)
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageVersion } from './fresh.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const outAt = process.argv.indexOf('--out');
const OUT = outAt > 0 ? resolve(process.argv[outAt + 1]) : join(ROOT, 'dist', 'cli');
const quiet = process.argv.includes('--quiet');

let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  // Without esbuild (an install that left it out) the CLI runs from the sources.
  if (!quiet) console.error('bin/build.mjs: esbuild is not installed; fleet will run the TypeScript sources through tsx.');
  process.exit(0);
}

/** Packages bundled into the build (see above); every other package stays an import. */
const BUNDLED = ['commander', 'yaml'];
const packageOf = (spec) => spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/');
/** Bare imports stay imports (as `packages: 'external'` made them), but those of BUNDLED packages. */
const externals = {
  name: 'externals',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => (BUNDLED.includes(packageOf(args.path)) ? undefined : { path: args.path, external: true }));
  },
};

const started = performance.now();
const TMP = `${OUT}.tmp-${process.pid}`;
rmSync(TMP, { recursive: true, force: true });
mkdirSync(TMP, { recursive: true });
const result = await esbuild.build({
  absWorkingDir: ROOT,
  entryPoints: { main: 'engine/cli/main.ts' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  plugins: [externals],
  // A bundled CommonJS package's require() of a Node module (commander's
  // node:events) needs a require in the ES module it was bundled into.
  banner: { js: "import { createRequire as __fleetRequire } from 'node:module'; const require = __fleetRequire(import.meta.url);" },
  outdir: TMP,
  metafile: true,
  logLevel: 'warning',
  legalComments: 'none',
});
// Files the sources read next to themselves at run time.
copyFileSync(join(ROOT, 'providers', 'boot-agent', 'agent.sh'), join(TMP, 'agent.sh'));

const inputs = {};
for (const file of Object.keys(result.metafile.inputs).sort()) {
  // A bundled package's files: its version stands for them (packages, below).
  if (file.startsWith('node_modules/')) continue;
  const s = statSync(join(ROOT, file));
  inputs[file] = { size: s.size, mtimeMs: s.mtimeMs, sha1: createHash('sha1').update(readFileSync(join(ROOT, file))).digest('hex') };
}
const packages = Object.fromEntries(BUNDLED.map((name) => [name, packageVersion(new URL('../', import.meta.url), name)]));
writeFileSync(join(TMP, 'manifest.json'), `${JSON.stringify({ entry: 'main.js', inputs, packages }, null, 1)}\n`);
const OLD = `${OUT}.old-${process.pid}`;
try {
  renameSync(OUT, OLD);
} catch {
  // no build before this one
}
renameSync(TMP, OUT);
rmSync(OLD, { recursive: true, force: true });
if (!quiet) {
  const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
  console.error(
    `bin/build.mjs: ${Object.keys(inputs).length} sources -> ${relative(ROOT, OUT)} (${Object.keys(result.metafile.outputs).length} files, ${(bytes / 1024).toFixed(0)} KiB) in ${(performance.now() - started).toFixed(0)} ms`,
  );
}
