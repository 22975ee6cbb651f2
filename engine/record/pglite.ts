import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { diag, fail, FleetError } from '../diags/index.ts';
import { makePrivate } from '../durability/index.ts';
import { lockDataDir, recordBusyTimeoutMs, tryLockDataDir } from './dirlock.ts';
import { fillFromTemplate } from './pglite-template.ts';
import { bundleBlob, pgliteWasm, takePgliteBundle } from './pglite-wasm.ts';
import { dirFault, openFault, writeFault } from './storage.ts';
import type { Queryable, SqlAdapter } from './sql.ts';

export interface OpenPgliteOptions {
  /** Read only: a record another process holds is read from a private copy (openSnapshot) instead of waited for. */
  readOnly?: boolean;
  /** Wait this long for another process holding the record, when longer than FLEET_RECORD_BUSY_TIMEOUT_MS (`fleet apply --lock-timeout`). */
  waitMs?: number;
  /** Told once when the record is held by another process and opening starts to wait for it (at most timeoutMs); `who` names the holder. */
  waiting?: (who: string, timeoutMs: number) => void;
}

/**
 * PGlite (embedded PostgreSQL in WebAssembly) behind the SqlAdapter.
 * `dir` undefined means in memory. PGlite is single-connection: its own
 * mutex serializes statements and transactions, so row locks never wait
 * here, but the SQL stays the same as on PostgreSQL.
 *
 * PGlite will happily initdb into a folder that holds other files, so a
 * non-empty folder without PG_VERSION is refused before PGlite sees it.
 */
export async function openPglite(dir: string | undefined, opts: OpenPgliteOptions = {}): Promise<SqlAdapter> {
  // A malformed FLEET_RECORD_BUSY_TIMEOUT_MS stops here, before a folder is made.
  if (dir !== undefined) recordBusyTimeoutMs();
  let release = () => {};
  if (dir !== undefined && opts.readOnly && existsSync(join(dir, 'PG_VERSION'))) {
    const taken = await tryLockDataDir(dir);
    if ('busy' in taken) return openSnapshot(dir, taken.busy);
    release = taken.release;
  } else if (dir !== undefined) {
    checkDataDir(dir);
    release = await lockDataDir(dir, { ...(opts.waitMs !== undefined ? { waitMs: opts.waitMs } : {}), ...(opts.waiting ? { waiting: opts.waiting } : {}) });
  }
  let db: PGlite;
  try {
    // A new record is a copy of the template cluster when there is one (pglite-template.ts), not an initdb here.
    if (dir !== undefined && !existsSync(join(dir, 'PG_VERSION'))) await fillFromTemplate(dir);
    db = await PGlite.create(dir, await createOptions(opts.readOnly === true));
    // The record holds every VM's history, the boot token hashes and the
    // plan-seal key: only its owner may read it. PGlite writes its data
    // directory's template world-readable (0666 files, 0755 folders); files
    // PostgreSQL makes later are 0600. So the tree is made private once it
    // exists, older records too (only entries open to others are changed).
    if (dir !== undefined) makePrivate(dir);
  } catch (err) {
    release();
    const cause = causeOf(err);
    // A full disk or a read-only folder is not a damaged record: say which.
    const storage = dir !== undefined ? openFault(dir, cause) : undefined;
    if (storage) throw storage;
    fail('record.corrupt', `PGlite could not open ${dir ?? 'an in-memory database'}: ${cause}.`, dir !== undefined ? { file: dir } : {});
  }
  return new PgliteAdapter(db, release, dir !== undefined ? { dir } : {});
}

/**
 * PGlite's start parameters, with shared_buffers at 32 MB instead of its
 * 128 MB: PGlite zeroes the whole buffer pool in its WebAssembly memory at
 * start, so the default costs ~120 MiB of resident memory before any row
 * (issue 20, a 7-VM embedded apply). A record's working set is far smaller,
 * and a scan of a big table goes through a small ring of buffers either way.
 *
 * A reader (`readOnly`: plan, state, history; one short process each) gets
 * 8 MB: its pool starts empty and it reads each page about once, so a
 * bigger pool holds nothing it reads again, and zeroing the 24 MB more cost
 * every such command ~25 ms of CPU and ~26 MiB of resident memory (the
 * memset of PostgreSQL's shared memory was a third of PostgreSQL's start;
 * bench/plan, 1,000 VMs on an empty record).
 */
const START_PARAMS = [...PGlite.defaultStartParams, '-c', 'shared_buffers=32MB'];
const READER_START_PARAMS = [...PGlite.defaultStartParams, '-c', 'shared_buffers=8MB'];

/**
 * PGlite.create's options: the start parameters, and what pglite-wasm.ts
 * prepared ahead: PGlite's WebAssembly, compiled, and its file system bundle
 * when one was read for this open.
 */
async function createOptions(reader: boolean): Promise<{ startParams: string[]; pgliteWasmModule?: WebAssembly.Module; fsBundle?: Blob }> {
  const ahead = takePgliteBundle();
  const [module, data] = await Promise.all([pgliteWasm(), ahead]);
  return {
    startParams: reader ? READER_START_PARAMS : START_PARAMS,
    ...(module ? { pgliteWasmModule: module } : {}),
    ...(data ? { fsBundle: bundleBlob(data) } : {}),
  };
}

/** Tries of a snapshot before a reader gives up (a checkpoint recycled the WAL it needed while it copied). */
const SNAPSHOT_TRIES = 3;

/**
 * A reader's own copy of a PGlite record another process holds open (an
 * apply): `fleet state list`, `state show`, `history` and `plan` read that
 * copy instead of waiting for the apply to finish. The copy is taken the way
 * a base backup is: pg_control first (the checkpoint recovery starts from),
 * then the data files, the WAL last (so it covers every change the data
 * files were copied with); PGlite then opens the copy and replays the WAL
 * (crash recovery: full-page writes repair a page copied mid-write). The
 * holder's files are only read. The snapshot shows the record as of the
 * copy; it is removed on close. If no consistent copy opens after a few
 * tries, record.busy says who holds the record and what to do.
 */
async function openSnapshot(dir: string, holder: string): Promise<SqlAdapter> {
  let lastError = '';
  for (let attempt = 0; attempt < SNAPSHOT_TRIES; attempt++) {
    const copy = await mkdtemp(join(tmpdir(), 'fleet-record-snapshot-'));
    const drop = () => rm(copy, { recursive: true, force: true }).catch(() => {});
    try {
      const skip = new Set(['postmaster.pid', 'pg_wal', 'global']);
      await cp(join(dir, 'global'), join(copy, 'global'), { recursive: true });
      for (const entry of readdirSync(dir)) {
        if (!skip.has(entry)) await cp(join(dir, entry), join(copy, entry), { recursive: true });
      }
      await cp(join(dir, 'pg_wal'), join(copy, 'pg_wal'), { recursive: true });
      const db = await PGlite.create(copy, await createOptions(true));
      await db.query('SELECT 1');
      return new PgliteAdapter(db, drop, { snapshotOf: dir });
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
      await drop();
    }
  }
  fail(
    'record.busy',
    `the PGlite record ${dir} is open in ${holder}, and no consistent read-only copy of it could be taken (${lastError}). Wait for that process to finish, or use a PostgreSQL record for concurrent use.`,
    { file: dir },
  );
}

/**
 * What an error PGlite threw says. Its file system errors are Emscripten's ErrnoError, no Error and no message
 * (`{ name: 'ErrnoError', errno: 2 }`): String() of it read "[object Object]" in the diagnostic.
 */
function causeOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null) {
    const { name, errno, message } = err as { name?: unknown; errno?: unknown; message?: unknown };
    if (typeof message === 'string' && message) return message;
    if (typeof name === 'string') return typeof errno === 'number' ? `${name} ${errno}` : name;
  }
  return String(err);
}

function checkDataDir(dir: string): void {
  if (!existsSync(dir)) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      // A folder this user may not write in (or a full disk) is record.unwritable, as the lock file's is.
      throw dirFault(dir, 'create', err as NodeJS.ErrnoException) ?? new FleetError(diag('record.corrupt', `cannot create the record directory ${dir}: ${(err as Error).message}.`, { file: dir }));
    }
    return;
  }
  if (!statSync(dir).isDirectory()) {
    fail('record.corrupt', `${dir} is a file, not a PGlite directory.`, { file: dir });
  }
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (err) {
    // A record folder this user may not read (mode 0000, another user's) threw out of here: an internal error.
    throw dirFault(dir, 'read', err as NodeJS.ErrnoException) ?? err;
  }
  if (entries.length > 0 && !entries.includes('PG_VERSION')) {
    const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? ', …' : '');
    fail(
      'record.corrupt',
      `${dir} is not empty (${shown}) and is not a PGlite directory (no PG_VERSION); dmzfleet will not write its record there.`,
      { file: dir },
    );
  }
}

class PgliteAdapter implements SqlAdapter {
  readonly kind = 'pglite' as const;
  readonly #db: PGlite;
  readonly #release: () => void | Promise<void>;
  /** Set when this is a reader's copy of a record another process holds (openSnapshot). */
  readonly snapshotOf: string | undefined;
  /** What its faults name: the record's directory. */
  readonly #what: string;
  constructor(db: PGlite, release: () => void | Promise<void>, o: { snapshotOf?: string; dir?: string } = {}) {
    this.#db = db;
    this.#release = release;
    this.snapshotOf = o.snapshotOf;
    this.#what = `pglite://${o.snapshotOf ?? o.dir ?? '(in memory)'}`;
  }
  async query<T>(text: string, params: readonly unknown[] = []): Promise<T[]> {
    try {
      return (await this.#db.query<T>(text, params as unknown[])).rows;
    } catch (err) {
      throw writeFault(err, this.#what);
    }
  }
  transaction<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    return this.#db.transaction((tx) =>
      fn({
        query: async <R>(text: string, params: readonly unknown[] = []) => {
          try {
            return (await tx.query<R>(text, params as unknown[])).rows;
          } catch (err) {
            throw writeFault(err, this.#what);
          }
        },
      }),
    );
  }
  async close(): Promise<void> {
    try {
      if (!this.#db.closed) await this.#db.close();
    } finally {
      await this.#release();
    }
  }
}
