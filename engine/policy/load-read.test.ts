// A policy.yaml that exists but cannot be read. The test suite runs as root, which reads every file, so the read's
// EACCES is injected: it stopped every command with 'error[cli.internal]: Internal error  EACCES: permission denied,
// open …/policy.yaml' (fleet validate as a user without read permission on the pack).
import type * as FsPromises from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { loadPack } from './load.ts';
import { DEFAULT_PACK_DIR } from './testdata/fixtures.ts';

vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof FsPromises>();
  const readFile = (async (path: unknown, ...rest: unknown[]) => {
    if (typeof path === 'string' && path.endsWith('policy.yaml')) throw Object.assign(new Error(`EACCES: permission denied, open '${path}'`), { code: 'EACCES', path });
    return (fs.readFile as (...a: unknown[]) => unknown)(path, ...rest);
  }) as typeof fs.readFile;
  return { ...fs, default: { ...fs, readFile }, readFile };
});

describe('loadPack: an unreadable policy.yaml', () => {
  it('is policy.read-error at the file, with the reason', async () => {
    const r = await loadPack(DEFAULT_PACK_DIR);
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map((d) => ({ code: d.code, file: d.file, detail: d.detail }))).toEqual([
      { code: 'policy.read-error', file: join(DEFAULT_PACK_DIR, 'policy.yaml'), detail: 'The pack file cannot be read: permission denied (EACCES).' },
    ]);
  });
});
