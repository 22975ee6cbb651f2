// What PGlite.create loads from the installed package, started as soon as a
// command knows it will open a PGlite record (the stack file read:
// LoadOptions.onRecordUrl, engine/record prepareRecord), not when it opens
// it, so it runs while the stack's specs and policy pack load:
// - its WebAssembly (pglite.wasm, 9 MB), compiled once per process; V8
//   compiles it on background threads, where PGlite.create had the main
//   thread wait for it;
// - its file system bundle (pglite.data, 6 MB: PostgreSQL's share files),
//   read ahead for the next open; Node reads it in 512 KiB pieces, ~12
//   round trips to the thread pool that PGlite.create waited for.
// On `fleet plan` of a 1,000-VM stack with an empty record, the two were
// ~30-60 ms of the read phase's wall time (bench/plan). This module does not
// import PGlite (whose JavaScript costs ~20 ms to load): the work starts
// before it.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

let dist: string | undefined;
/** The installed PGlite's dist folder (the folder of its entry point, where its pglite.wasm and pglite.data are). */
function pgliteFile(name: string): string {
  dist ??= dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite'));
  return join(dist, name);
}

let compiled: Promise<WebAssembly.Module | undefined> | undefined;

/**
 * PGlite's WebAssembly module, compiled (the first call starts the compile,
 * every later one shares it). Undefined when it cannot be read or compiled
 * here: PGlite then loads the file itself, as without this, and reports what
 * is wrong in its own words (record.corrupt).
 */
export function pgliteWasm(): Promise<WebAssembly.Module | undefined> {
  compiled ??= (async () => {
    // A Buffer of its own ArrayBuffer (never a SharedArrayBuffer): compiled as it is read, not copied.
    return WebAssembly.compile((await readFile(pgliteFile('pglite.wasm'))) as Uint8Array<ArrayBuffer>);
  })().catch(() => undefined);
  return compiled;
}

let bundle: Promise<ArrayBuffer | undefined> | undefined;

/** PGlite's file system bundle, read now. */
function readBundle(): Promise<ArrayBuffer> {
  return readFile(pgliteFile('pglite.data')).then(
    // The whole ArrayBuffer, as PGlite's own read hands it over (a file this size gets a buffer of its own).
    (b) => (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? (b.buffer as ArrayBuffer) : new Uint8Array(b).buffer),
  );
}

/** Starts reading PGlite's file system bundle for the next open (takePgliteBundle), unless a read is pending already. */
export function readPgliteBundle(): void {
  bundle ??= readBundle().catch(() => undefined);
}

/**
 * PGlite.create's `fsBundle` for a bundle read ahead: PGlite reads it by
 * calling its arrayBuffer() alone, so the buffer is handed over as it is (a
 * Blob made of it would copy its 6 MB twice). The first call gets `data`;
 * any later one a buffer read anew: PGlite without a template passes its
 * options on to the second instance it makes for initdb, which must not
 * share the first one's buffer.
 */
export function bundleBlob(data: ArrayBuffer): Blob {
  let ahead: ArrayBuffer | undefined = data;
  return {
    arrayBuffer: async () => {
      const taken = ahead;
      ahead = undefined;
      return taken ?? readBundle();
    },
  } as unknown as Blob;
}

/**
 * The bundle read ahead (readPgliteBundle), for one PGlite.create: taken,
 * so the next open reads its own. PGlite builds its in-memory files from
 * slices of the buffer without copying them, so one buffer must never serve
 * two instances. Undefined when none was read ahead; the promise resolves
 * to undefined when the read failed: PGlite then reads the file itself.
 */
export function takePgliteBundle(): Promise<ArrayBuffer | undefined> | undefined {
  const taken = bundle;
  bundle = undefined;
  return taken;
}
