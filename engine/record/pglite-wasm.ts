// PGlite's WebAssembly (pglite.wasm, 9 MB), compiled once per process, and
// started as soon as a command knows it will open a PGlite record (the stack
// file read: LoadOptions.onRecordUrl), not when it opens it. V8 compiles it
// on background threads, so the compile runs while the stack's specs and
// policy pack load, instead of the main thread waiting for it inside
// PGlite.create: on `fleet plan` of a 1,000-VM stack with an empty record,
// ~15-65 ms of the read phase's wall time was that wait (bench/plan). This
// module does not import PGlite (whose JavaScript costs ~20 ms to load): the
// compile starts before it.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

let compiled: Promise<WebAssembly.Module | undefined> | undefined;

/**
 * PGlite's WebAssembly module, compiled (the first call starts the compile,
 * every later one shares it). Undefined when it cannot be read or compiled
 * here: PGlite then loads the file itself, as without this, and reports what
 * is wrong in its own words (record.corrupt).
 */
export function pgliteWasm(): Promise<WebAssembly.Module | undefined> {
  compiled ??= (async () => {
    const file = join(dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite')), 'pglite.wasm');
    // A Buffer of its own ArrayBuffer (never a SharedArrayBuffer): compiled as it is read, not copied.
    return WebAssembly.compile((await readFile(file)) as Uint8Array<ArrayBuffer>);
  })().catch(() => undefined);
  return compiled;
}
