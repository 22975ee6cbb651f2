import { diag, fail, FleetError } from '../diags/index.ts';
import { lockFolder } from '../durability/index.ts';
import { envMs } from './env.ts';
import { lockFileFault } from './storage.ts';

export { processAlive } from '../durability/index.ts';

/**
 * PGlite is one process's database: two PGlite instances writing one data
 * directory corrupt it, and PGlite does not stop that itself. So a PGlite
 * record is guarded by `<dir>.lock` (engine/durability/lockfile.ts). Teams
 * that need concurrent applies use a PostgreSQL record.
 *
 * Waits up to FLEET_RECORD_BUSY_TIMEOUT_MS (default 10 s), or `waitMs` when
 * that is longer (`fleet apply --lock-timeout`), for another process to let
 * go; `waiting` is told once when it starts to wait. Returns the release
 * function.
 */
export function lockDataDir(dir: string, opts: { waitMs?: number; waiting?: (who: string, timeoutMs: number) => void } = {}): Promise<() => void> {
  return lockFolder(dir, {
    timeoutMs: Math.max(recordBusyTimeoutMs(), opts.waitMs ?? 0),
    ...(opts.waiting ? { waiting: opts.waiting } : {}),
    heldHere: () =>
      fail('record.busy', `the PGlite record ${dir} is already open in this process (pid ${process.pid}); share the open record instead of opening it twice.`, {
        file: dir,
      }),
    busy: (who, lock) =>
      fail(
        'record.busy',
        `the PGlite record ${dir} is open in ${who}; PGlite allows one process at a time. Wait for it to finish, or use a PostgreSQL record for concurrent use.${goneHint(lock)}`,
        { file: dir },
      ),
    cannotCreate: cannotCreate(dir),
  });
}

/** The lock file of `dir` could not be created: record.unwritable when the storage refuses writes, else record.corrupt. */
function cannotCreate(dir: string): (file: string, err: Error) => never {
  return (file, err) => {
    throw lockFileFault(dir, file, err) ?? new FleetError(diag('record.corrupt', `cannot create the lock file ${file}: ${err.message}.`, { file: dir }));
  };
}

/**
 * What to do when the holder is known to be gone but cannot be seen so from
 * here: another host's process (a machine or container that no longer runs),
 * or a pid of this host that another program took since.
 */
export function goneHint(lock: { file: string; elsewhere: boolean }): string {
  return lock.elsewhere
    ? ` If that process no longer runs on its host (a machine or container that is gone), remove ${lock.file} and run the command again.`
    : ` If that pid is no longer that command (its process is gone and the pid reused), remove ${lock.file} and run the command again.`;
}

/** FLEET_RECORD_BUSY_TIMEOUT_MS; else 10 s. */
export function recordBusyTimeoutMs(): number {
  return envMs('FLEET_RECORD_BUSY_TIMEOUT_MS', 10_000);
}

/** Thrown by tryLockDataDir's callbacks: someone else holds the folder. */
class Busy {
  constructor(readonly who: string) {}
}

/**
 * Takes the PGlite record's lock if nobody holds it, without waiting:
 * the release function, or `{ busy }` naming the holder (another process, or
 * this one) for a reader that can do with a snapshot instead.
 */
export async function tryLockDataDir(dir: string): Promise<{ release: () => void } | { busy: string }> {
  try {
    const release = await lockFolder(dir, {
      timeoutMs: 0,
      heldHere: () => {
        throw new Busy(`this process (pid ${process.pid})`);
      },
      busy: (who) => {
        throw new Busy(who);
      },
      cannotCreate: cannotCreate(dir),
    });
    return { release };
  } catch (err) {
    if (err instanceof Busy) return { busy: err.who };
    throw err;
  }
}
