import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { fail } from '../diags/index.ts';

/**
 * PGlite is one process's database: two PGlite instances writing one data
 * directory corrupt it, and PGlite does not stop that itself. So a PGlite
 * record is guarded by `<dir>.lock` (pid, host, since, command), created
 * exclusively. A lock whose process is gone (same host) is stale and taken
 * over. Teams that need concurrent applies use a PostgreSQL record.
 */
interface LockInfo {
  pid: number;
  host: string;
  since: string;
  command: string;
}

/** Directories this process holds, so a second open in the same process is refused at once. */
const held = new Set<string>();

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function readInfo(file: string): LockInfo | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LockInfo;
  } catch {
    return undefined;
  }
}

/** True when a process with this pid runs on this host (EPERM: it runs, as another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function stale(info: LockInfo | undefined): boolean {
  // Unreadable (a writer died between create and write) or a dead process on this host.
  if (!info || typeof info.pid !== 'number') return true;
  return info.host === hostname() && info.pid !== process.pid && !processAlive(info.pid);
}

/**
 * Takes `<dir>.lock`, waiting up to `timeoutMs` (FLEET_RECORD_BUSY_TIMEOUT_MS,
 * default 10 s) for another process to let go. Returns the release function.
 */
export async function lockDataDir(dir: string, timeoutMs = Number(process.env.FLEET_RECORD_BUSY_TIMEOUT_MS ?? 10_000)): Promise<() => void> {
  const file = `${dir}.lock`;
  if (held.has(dir)) {
    fail('record.busy', `the PGlite record ${dir} is already open in this process (pid ${process.pid}); share the open record instead of opening it twice.`, {
      file: dir,
    });
  }
  const mine: LockInfo = { pid: process.pid, host: hostname(), since: new Date().toISOString(), command: process.argv.slice(1).join(' ') };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      writeFileSync(file, JSON.stringify(mine), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        fail('record.corrupt', `cannot create the lock file ${file}: ${(err as Error).message}.`, { file: dir });
      }
    }
    const info = readInfo(file);
    if (stale(info)) {
      try {
        unlinkSync(file);
      } catch {
        // Another process removed it first; try again.
      }
      continue;
    }
    if (Date.now() >= deadline) {
      const who = info ? `pid ${info.pid} on ${info.host} since ${info.since} (${info.command})` : 'another process';
      fail(
        'record.busy',
        `the PGlite record ${dir} is open in ${who}; PGlite allows one process at a time. Wait for it to finish, or use a PostgreSQL record for concurrent use.`,
        { file: dir },
      );
    }
    await sleep(100);
  }
  held.add(dir);
  const release = () => {
    if (!held.delete(dir)) return;
    process.removeListener('exit', release);
    const info = readInfo(file);
    if (info && info.pid === process.pid && info.since === mine.since) {
      try {
        unlinkSync(file);
      } catch {
        // Already gone.
      }
    }
  };
  process.on('exit', release);
  return release;
}
