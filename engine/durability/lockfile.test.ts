// lockFolder on a disk that fills up: the lock cannot be taken, and nothing is left behind.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as FS from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

// A full disk: the file is created, then writing its content fails (as writeFileSync does on ENOSPC).
const full = vi.hoisted(() => ({ on: false }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof FS>();
  const writeFileSync: typeof fs.writeFileSync = (path, data, options) => {
    if (!full.on) return fs.writeFileSync(path, data, options);
    fs.writeFileSync(path, '', options);
    throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  };
  return { ...fs, default: { ...fs, writeFileSync }, writeFileSync };
});

const { lockFolder } = await import('./lockfile.ts');

describe('lockFolder on a full disk', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'fleet-lockfile-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('says it cannot create the lock, and leaves no temp file behind', async () => {
    const dir = join(root, 'record');
    const refused = (file: string, err: Error): never => {
      throw new Error(`cannot create ${file}: ${err.message}`);
    };
    const opts = { timeoutMs: 0, heldHere: () => refused('here', new Error('held')), busy: (who: string) => refused(who, new Error('busy')), cannotCreate: refused };
    full.on = true;
    try {
      await expect(lockFolder(dir, opts)).rejects.toThrow(`cannot create ${dir}.lock: ENOSPC: no space left on device, write`);
    } finally {
      full.on = false;
    }
    expect(await readdir(root)).toEqual([]);
    // With room again, the lock is taken and released as usual.
    const release = await lockFolder(dir, opts);
    expect(await readdir(root)).toEqual(['record.lock']);
    release();
    expect(await readdir(root)).toEqual([]);
  });
});
