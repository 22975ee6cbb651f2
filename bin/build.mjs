#!/usr/bin/env node
// Builds the CLI's JavaScript from the TypeScript sources: `npm ci` runs it
// (package.json "prepare", also before `npm pack`), so the installed `fleet`
// starts without compiling TypeScript at run time. esbuild bundles
// engine/cli/main.ts and everything it imports from the project into
// dist/cli/ (one flat folder: the sources' `new URL('../../x', import.meta.url)`
// paths stay right from there); node_modules packages stay imports. Lazy
// `import()`s become chunks loaded only by the commands that need them.
//
// dist/cli/manifest.json lists every source file the build read, with its
// size, modification time and SHA-1: bin/fleet.mjs runs the build only while
// all of them are unchanged (bin/fresh.mjs), and the sources through tsx
// otherwise (an edit made after `npm ci` is never hidden behind an old build).
// The build is made in a folder of its own and renamed into place, so a
// `fleet` starting meanwhile sees the old build or none, never half of one.
//
// Usage: node bin/build.mjs [--quiet] [--out DIR]   (DIR: a build elsewhere, for tests)
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

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
  packages: 'external',
  outdir: TMP,
  metafile: true,
  logLevel: 'warning',
  legalComments: 'none',
});
// Files the sources read next to themselves at run time.
copyFileSync(join(ROOT, 'providers', 'boot-agent', 'agent.sh'), join(TMP, 'agent.sh'));

const inputs = {};
for (const file of Object.keys(result.metafile.inputs).sort()) {
  const s = statSync(join(ROOT, file));
  inputs[file] = { size: s.size, mtimeMs: s.mtimeMs, sha1: createHash('sha1').update(readFileSync(join(ROOT, file))).digest('hex') };
}
writeFileSync(join(TMP, 'manifest.json'), `${JSON.stringify({ entry: 'main.js', inputs }, null, 1)}\n`);
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
