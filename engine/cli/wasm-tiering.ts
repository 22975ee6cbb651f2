import { setFlagsFromString } from 'node:v8';

/**
 * Keeps WebAssembly (PGlite's PostgreSQL) on V8's baseline compiler,
 * Liftoff, for the rest of this process: no optimizing recompiles of hot
 * functions in the background.
 *
 * For a command that opens the record, reads it once and exits (`fleet
 * plan`), those recompiles cost more than they save: on the planner
 * benchmark's 100,000-VM stack the process used 0.7-0.9 s less CPU and
 * ~100 MB less memory without them (bench/plan), because PostgreSQL's big
 * functions are recompiled while the one long query already runs. `fleet
 * apply` too: the 7-VM embedded apply of stacks/local peaked at 298 MiB and
 * used 2.9 s of CPU with them, 214 MiB and 1.5 s without (issue 20); an
 * embedded apply's record work is small next to the services' own. The
 * services (`fleet serve`) keep the default, where hot code pays back its
 * optimization.
 *
 * And each function is validated when it is first compiled (V8's
 * --wasm-lazy-validation) instead of all of PGlite's 9 MB of WebAssembly
 * before its first instruction runs: such a command runs a small part of
 * PostgreSQL, and the module's compile fell from ~47 to ~15 ms of CPU (from
 * ~65 to ~17 ms of wall time, which a plan spent waiting). The module is
 * PGlite's own, from the installed package, so an invalid function is not
 * expected; were one there, it would fail when first called (a
 * WebAssembly.CompileError, the record's open failing as record.corrupt or
 * a query failing) instead of at the compile.
 *
 * Must run before the record is opened (the flags apply to modules compiled
 * afterwards). V8 prints "unrecognized flag" for flags it lacks, so only
 * V8 versions known to have both (Node 20 to 24: V8 11 to 13) get them.
 */
export function baselineWasmOnly(): void {
  const major = Number(process.versions.v8.split('.')[0]);
  if (major >= 11 && major <= 13) setFlagsFromString('--no-wasm-dynamic-tiering --no-wasm-tier-up --wasm-lazy-validation');
}
