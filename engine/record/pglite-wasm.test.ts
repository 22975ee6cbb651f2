// PGlite's WebAssembly compiled ahead (pglite-wasm.ts): one compile per
// process, started by prepareRecord, and a record opened with it works as
// one opened without. And the buffer pool a PGlite record opens with
// (pglite.ts): 8 MB for a reader, 32 MB for a writer.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openRecord, prepareRecord } from './open.ts';
import { bundleBlob, pgliteWasm, readPgliteBundle, takePgliteBundle } from './pglite-wasm.ts';

const root = mkdtempSync(join(tmpdir(), 'fleet-pglite-wasm-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('pgliteWasm', () => {
  it("is PGlite's module, compiled once per process", async () => {
    const first = pgliteWasm();
    expect(pgliteWasm()).toBe(first);
    const module = await first;
    expect(module).toBeInstanceOf(WebAssembly.Module);
    // The entry points PGlite calls: its own pglite.wasm, not some other file.
    expect(WebAssembly.Module.exports(module!).map((e) => e.name)).toEqual(expect.arrayContaining(['PostgresMainLoopOnce', 'pgl_setPGliteActive']));
  });

  // One buffer per PGlite instance: PGlite makes its in-memory files of slices of it.
  it("reads PGlite's file system bundle ahead for one open: taken once, then read anew", async () => {
    const size = statSync(join(dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite')), 'pglite.data')).size;
    expect(takePgliteBundle()).toBeUndefined();
    readPgliteBundle();
    readPgliteBundle();
    const taken = takePgliteBundle();
    expect(takePgliteBundle()).toBeUndefined();
    const data = await taken;
    expect(data).toBeInstanceOf(ArrayBuffer);
    expect(data!.byteLength).toBe(size);
    readPgliteBundle();
    const again = await takePgliteBundle();
    expect(again).not.toBe(data);
    expect(again!.byteLength).toBe(size);
  });

  // PGlite without a template hands its options (fsBundle too) to the second instance it makes for initdb.
  it('hands the buffer read ahead to the first arrayBuffer() only; a later call gets one read anew', async () => {
    readPgliteBundle();
    const data = (await takePgliteBundle())!;
    const blob = bundleBlob(data);
    expect(await blob.arrayBuffer()).toBe(data);
    const second = await blob.arrayBuffer();
    expect(second).not.toBe(data);
    expect(Buffer.from(second).equals(Buffer.from(data))).toBe(true);
  });

  it('a PGlite record prepared for, then opened, is a working record (and again, sharing the module)', async () => {
    const url = `pglite://${join(root, 'record')}`;
    prepareRecord(url);
    for (let i = 0; i < 2; i++) {
      // The open took the bundle read ahead (the second reads its own, as PGlite does).
      if (i === 1) expect(takePgliteBundle()).toBeUndefined();
      const record = await openRecord(url);
      try {
        expect(await record.listFleets('s')).toEqual([]);
        expect((await record.stackIdentity('s', { create: true }))?.stackId).toMatch(/^stk-/);
      } finally {
        await record.close();
      }
    }
  });

  it('prepareRecord leaves a PostgreSQL URL, or one that is not a record URL, alone', () => {
    expect(() => prepareRecord('postgres://nobody@127.0.0.1:1/none')).not.toThrow();
    expect(() => prepareRecord('not a url')).not.toThrow();
  });
});

describe('PGlite buffer pool', () => {
  const sharedBuffers = async (url: string, readOnly: boolean): Promise<string> => {
    const record = await openRecord(url, { readOnly });
    try {
      return (await record.sql.query<{ shared_buffers: string }>('SHOW shared_buffers'))[0].shared_buffers;
    } finally {
      await record.close();
    }
  };

  it('is 8 MB for a reader (plan, state, history) and 32 MB for a writer, of the same record', async () => {
    const url = `pglite://${join(root, 'pool')}`;
    // The first open of a folder makes the record (a reader's too: the first plan).
    expect(await sharedBuffers(url, true)).toBe('8MB');
    expect(await sharedBuffers(url, false)).toBe('32MB');
    expect(await sharedBuffers(url, true)).toBe('8MB');
  });
});
