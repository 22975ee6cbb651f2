#!/usr/bin/env node
// Makes the template of a new PGlite record: an empty PostgreSQL cluster made
// once, at `npm ci` (package.json "prepare"), which engine/record/pglite.ts
// copies into a new record's folder instead of running initdb there. PGlite's
// initdb runs a second PostgreSQL instance and the initdb program in the
// process, each in its own WebAssembly memory: ~600 MiB more at the peak of
// the first `fleet apply` of a stack, and seconds of CPU (issue 20). The copy
// is the cluster that initdb would have made (PGlite's default settings).
//
// dist/pglite-template/
//   data/          the cluster (no postmaster.pid)
//   version.json   { pglite: "<the version of @electric-sql/pglite that made it>" }
// A template of another PGlite version is never used (pglite.ts checks).
//
// Usage: node bin/pglite-template.mjs [--quiet] [--out DIR]
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const outAt = process.argv.indexOf('--out');
const OUT = outAt > 0 ? resolve(process.argv[outAt + 1]) : join(ROOT, 'dist', 'pglite-template');
const quiet = process.argv.includes('--quiet');

const require = createRequire(import.meta.url);
let version;
let PGlite;
try {
  version = JSON.parse(readFileSync(join(dirname(require.resolve('@electric-sql/pglite')), '..', 'package.json'), 'utf8')).version;
  ({ PGlite } = await import('@electric-sql/pglite'));
} catch {
  // Without PGlite (an install that left it out) new records run initdb themselves.
  if (!quiet) console.error('bin/pglite-template.mjs: @electric-sql/pglite is not installed; no template.');
  process.exit(0);
}
const stamp = join(OUT, 'version.json');
if (existsSync(stamp) && JSON.parse(readFileSync(stamp, 'utf8')).pglite === version && existsSync(join(OUT, 'data', 'PG_VERSION'))) {
  if (!quiet) console.error(`bin/pglite-template.mjs: ${OUT} is up to date (PGlite ${version}).`);
  process.exit(0);
}
const started = performance.now();
const TMP = `${OUT}.tmp-${process.pid}`;
rmSync(TMP, { recursive: true, force: true });
mkdirSync(TMP, { recursive: true });
const db = await PGlite.create(join(TMP, 'data'));
await db.query('SELECT 1');
await db.close();
rmSync(join(TMP, 'data', 'postmaster.pid'), { force: true });
writeFileSync(join(TMP, 'version.json'), `${JSON.stringify({ pglite: version })}\n`);
// Swapped into place whole, so a reader sees the old template or the new one.
const OLD = `${OUT}.old-${process.pid}`;
try {
  renameSync(OUT, OLD);
} catch {
  // no template before this one
}
renameSync(TMP, OUT);
rmSync(OLD, { recursive: true, force: true });
if (!quiet) console.error(`bin/pglite-template.mjs: PGlite ${version} cluster -> ${OUT} in ${(performance.now() - started).toFixed(0)} ms`);
