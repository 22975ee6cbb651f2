// lockFolder on a disk that fills up: the lock cannot be taken, and nothing
// is left behind. And locks left by a process that had this one's pid (a
// container restarted: its pids start again at 1), or held on another host.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
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

describe('lockFolder and a lock it finds', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'fleet-lockfile-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });
  const opts = {
    timeoutMs: 0,
    heldHere: (): never => {
      throw new Error('held here');
    },
    busy: (who: string, lock: { file: string; elsewhere: boolean }): never => {
      throw Object.assign(new Error(`busy: ${who}`), { lock });
    },
    cannotCreate: (file: string, err: Error): never => {
      throw err;
    },
  };

  it("takes over a lock naming this process's pid on this host: a process before it had the pid (it waited for itself, for ever)", async () => {
    const dir = join(root, 'mine');
    const old = { pid: process.pid, host: hostname(), since: '2026-01-01T00:00:00.000Z', command: 'fleet serve orchestrator (before the container restarted)' };
    await writeFile(`${dir}.lock`, JSON.stringify(old));
    const release = await lockFolder(dir, opts);
    expect(JSON.parse(await readFile(`${dir}.lock`, 'utf8'))).toMatchObject({ pid: process.pid, host: hostname() });
    expect(JSON.parse(await readFile(`${dir}.lock`, 'utf8')).since).not.toBe(old.since);
    release();
    // Held by this process now: a second open is refused as such, not taken over.
    const again = await lockFolder(dir, opts);
    await expect(lockFolder(dir, opts)).rejects.toThrow('held here');
    again();
  });

  it("leaves another host's lock alone, and tells the refusal it is elsewhere and which file it is", async () => {
    const dir = join(root, 'theirs');
    await writeFile(`${dir}.lock`, JSON.stringify({ pid: process.pid, host: `not-${hostname()}`, since: '2026-01-01T00:00:00.000Z', command: 'fleet apply' }));
    const err = (await lockFolder(dir, opts).catch((e: unknown) => e)) as Error & { lock: unknown };
    expect(err.message).toBe(`busy: pid ${process.pid} on not-${hostname()} since 2026-01-01T00:00:00.000Z (fleet apply)`);
    expect(err.lock).toEqual({ file: `${dir}.lock`, elsewhere: true });
  });
});
