import { chmodSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { fail } from '../diags/index.ts';
import { lockDataDir } from './dirlock.ts';
import type { Queryable, SqlAdapter } from './sql.ts';

/**
 * PGlite (embedded PostgreSQL in WebAssembly) behind the SqlAdapter.
 * `dir` undefined means in memory. PGlite is single-connection: its own
 * mutex serializes statements and transactions, so row locks never wait
 * here, but the SQL stays the same as on PostgreSQL.
 *
 * PGlite will happily initdb into a folder that holds other files, so a
 * non-empty folder without PG_VERSION is refused before PGlite sees it.
 */
export async function openPglite(dir: string | undefined): Promise<SqlAdapter> {
  let release = () => {};
  if (dir !== undefined) {
    checkDataDir(dir);
    release = await lockDataDir(dir);
  }
  let db: PGlite;
  try {
    db = await PGlite.create(dir);
    // The record holds every VM's history, the boot token hashes and the
    // plan-seal key: only its owner may read it. PGlite writes its data
    // directory's template world-readable (0666 files, 0755 folders); files
    // PostgreSQL makes later are 0600. So the tree is made private once it
    // exists, older records too (only entries open to others are changed).
    if (dir !== undefined) makePrivate(dir);
  } catch (err) {
    release();
    const cause = err instanceof Error ? err.message : String(err);
    fail('record.corrupt', `PGlite could not open ${dir ?? 'an in-memory database'}: ${cause}.`, dir !== undefined ? { file: dir } : {});
  }
  return new PgliteAdapter(db, release);
}

/** Folders 0700 and files 0600 under (and including) `dir`, changing only entries group or others may use. */
function makePrivate(dir: string): void {
  if (statSync(dir).mode & 0o077) chmodSync(dir, 0o700);
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) makePrivate(path);
    else if (e.isFile() && statSync(path).mode & 0o077) chmodSync(path, 0o600);
  }
}

function checkDataDir(dir: string): void {
  if (!existsSync(dir)) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      fail('record.corrupt', `cannot create the record directory ${dir}: ${(err as Error).message}.`, { file: dir });
    }
    return;
  }
  if (!statSync(dir).isDirectory()) {
    fail('record.corrupt', `${dir} is a file, not a PGlite directory.`, { file: dir });
  }
  const entries = readdirSync(dir);
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
  readonly #release: () => void;
  constructor(db: PGlite, release: () => void) {
    this.#db = db;
    this.#release = release;
  }
  async query<T>(text: string, params: readonly unknown[] = []): Promise<T[]> {
    const r = await this.#db.query<T>(text, params as unknown[]);
    return r.rows;
  }
  transaction<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    return this.#db.transaction((tx) =>
      fn({
        query: async <R>(text: string, params: readonly unknown[] = []) => (await tx.query<R>(text, params as unknown[])).rows,
      }),
    );
  }
  async close(): Promise<void> {
    try {
      if (!this.#db.closed) await this.#db.close();
    } finally {
      this.#release();
    }
  }
}
