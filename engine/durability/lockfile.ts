import { linkSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';

/**
 * One process at a time for a folder that only one process may write: a
 * PGlite record (two PGlite instances on one data directory corrupt it) or
 * an embedded simulated data center (two sims over one state folder overwrite
 * each other's VMs when they compact). The folder is guarded by `<dir>.lock`
 * (pid, host, since, command), created exclusively with mode 0600. A lock
 * whose process is gone (same host) is stale and taken over.
 *
 * Two races matter when many processes wait at once, and both once let two
 * CLIs hold one sim (and lose VMs):
 * - creation: the lock appears with its content at once (written to a temp
 *   file, then hard-linked into place, which fails if it exists), so a
 *   reader never sees an empty lock and mistakes it for a dead writer's;
 * - takeover: a waiter that judged the holder dead moves the file aside and
 *   removes it only if it is still the dead holder's; if another waiter took
 *   over first, the live lock is put back.
 *
 * The caller says what the folder is and how to refuse (its own diagnostic):
 * this module only holds the lock.
 */
export interface LockInfo {
  pid: number;
  host: string;
  since: string;
  command: string;
}

export interface FolderLockOptions {
  /** How long to wait for another process to let go. */
  timeoutMs: number;
  /** Throws: the folder is already held in this process. */
  heldHere(): never;
  /**
   * Throws: another process still holds it after timeoutMs; `who` names it,
   * `elsewhere` says it runs on another host (whether it still runs cannot be
   * told from here: the lock is removed by hand once it is known gone).
   */
  busy(who: string, lock: { file: string; elsewhere: boolean }): never;
  /** Throws: the lock file cannot be created (no folder, no permission). */
  cannotCreate(file: string, err: Error): never;
  /** Called once, when another process holds the folder and this one starts waiting for it (timeoutMs above 0); `who` names it. */
  waiting?(who: string, timeoutMs: number): void;
}

/** Folders this process holds, so a second open in the same process is refused at once. */
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

/** Unreadable for this long: a lock left corrupt (a disk fault), not one being replaced. */
const CORRUPT_AFTER_MS = 5_000;

/**
 * A lock of this host is stale when its process is gone, and also when its
 * pid is this very process's: this process holds no such lock (`held` says
 * so), so one before it had the pid. Pids are reused soon, and in a
 * container, whose pids start again at 1, a re-run after a crash often gets
 * the crashed command's pid: it then waited for itself, and failed with
 * busy, for ever. (Any other live process is taken for the holder: a reused
 * pid cannot be told from a live holder safely; the busy message says how to
 * remove the lock by hand.)
 */
function stale(file: string, info: LockInfo | undefined): boolean {
  if (!info || typeof info.pid !== 'number') {
    try {
      return Date.now() - statSync(file).mtimeMs > CORRUPT_AFTER_MS;
    } catch {
      return false; // gone already: just try again
    }
  }
  return info.host === hostname() && (info.pid === process.pid || !processAlive(info.pid));
}

/**
 * Creates `file` holding `text`, atomically; false when it exists. The temp
 * file goes whatever happens: a write that fails once it is created (a full
 * disk) used to leave it behind, one more at every try.
 */
function createExclusive(file: string, text: string): boolean {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' }); // O_EXCL: never through a symbolic link at the temp name
    linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // Never created.
    }
  }
}

/** Removes the lock only if it still is `dead`'s; puts back a lock another waiter took meanwhile. */
function takeOver(file: string, dead: LockInfo | undefined): void {
  const aside = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.stale`;
  try {
    renameSync(file, aside);
  } catch {
    return; // another waiter moved it first
  }
  const moved = readInfo(aside);
  const same = dead ? moved?.pid === dead.pid && moved.since === dead.since : moved === undefined;
  if (!same) {
    try {
      linkSync(aside, file);
    } catch {
      // A third process created one meanwhile; it holds the lock now.
    }
  }
  unlinkSync(aside);
}

/** Takes `<dir>.lock`, waiting up to timeoutMs for another process to let go. Returns the release function (also run at exit). */
export async function lockFolder(dir: string, o: FolderLockOptions): Promise<() => void> {
  const file = `${dir}.lock`;
  if (held.has(dir)) o.heldHere();
  const mine: LockInfo = { pid: process.pid, host: hostname(), since: new Date().toISOString(), command: process.argv.slice(1).join(' ') };
  const deadline = Date.now() + o.timeoutMs;
  let saidWaiting = false;
  for (;;) {
    try {
      if (createExclusive(file, JSON.stringify(mine))) break;
    } catch (err) {
      o.cannotCreate(file, err as Error);
    }
    const info = readInfo(file);
    if (stale(file, info)) {
      takeOver(file, info);
      continue;
    }
    const who = info ? `pid ${info.pid} on ${info.host} since ${info.since} (${info.command})` : 'another process';
    if (Date.now() >= deadline) o.busy(who, { file, elsewhere: info !== undefined && info.host !== hostname() });
    if (!saidWaiting) {
      saidWaiting = true;
      o.waiting?.(who, o.timeoutMs);
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
