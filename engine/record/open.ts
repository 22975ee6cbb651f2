import { existsSync, readdirSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { clipPath, diag, fail, type Diagnostic } from '../diags/index.ts';
import { redactUrl } from '../transport/tokens.ts';
import { MIGRATIONS, migrate } from './migrations.ts';
import { pgliteWasm, readPgliteBundle } from './pglite-wasm.ts';
import { sqlRecord, type SqlRecord } from './record.ts';
import type { SqlAdapter } from './sql.ts';
import type { OpenPgliteOptions } from './pglite.ts';

/** The URL without its password (userinfo or `?password=`), safe for messages and logs: escaped and cut as a path is (clipPath). */
export function describeRecordUrl(url: string): string {
  if (/^(pglite|memory):/.test(url)) return clipPath(url);
  return clipPath(redactUrl(url));
}

/** The absolute data directory of a `pglite:///abs/dir` URL, or undefined for `memory://`. */
export function pgliteDir(url: string): string | undefined {
  if (url === 'memory://' || url === 'memory:') return undefined;
  // Taken verbatim (no percent-decoding), as the stack loader builds it: `pglite://` + absolute path.
  const dir = url.slice('pglite://'.length);
  if (!isAbsolute(dir)) {
    fail('record.bad-url', `the PGlite record URL ${clipPath(url)} must hold an absolute directory (pglite:///abs/dir); relative paths are resolved by the stack loader.`);
  }
  return dir;
}

/**
 * Opens the global record and brings its schema up to date (in one
 * transaction; refused for a newer schema or someone else's database).
 *
 * | URL                                   | backend                                  |
 * | ------------------------------------- | ---------------------------------------- |
 * | `pglite:///abs/dir`                   | PGlite, data directory created if missing |
 * | `postgres://user@host:5432/db`        | PostgreSQL server (pg Pool)              |
 * | `postgresql://…`                      | same                                     |
 * | `memory://`                           | PGlite in memory (tests)                 |
 *
 * Faults are FleetErrors: record.bad-url, record.unreachable, record.corrupt,
 * record.foreign-database, record.newer-schema; `existing` and `readOnly`
 * together (state, history): record.older-schema for a record this dmzfleet
 * would have to upgrade (migrate's `upgrade: false`).
 *
 * `readOnly` (state list / show, history, plan): a PGlite record another
 * process holds (an apply) is read from a private copy instead of waiting
 * for it (pglite.ts openSnapshot). Only for callers that never write.
 * `existing` (state, history, unlock, refresh): the record must be there
 * already: an empty database is record.not-found, and nothing is created in
 * it (a PGlite folder that does not exist: requireExistingRecord).
 * `waitMs` and `waiting`: how long a writer waits for a PGlite record another
 * process holds (at least FLEET_RECORD_BUSY_TIMEOUT_MS), and what it is told
 * when it starts to wait; a PostgreSQL record never waits to open.
 */
/**
 * For commands that read or edit a record but never make one (`fleet state`,
 * `history`, `unlock`, `refresh`): a PGlite folder that does not exist is
 * record.not-found, instead of a new, empty record answering for a mistyped
 * URL ("0 VMs", a drift check finding no drift).
 */
export function requireExistingRecord(url: string): void {
  const dir = url.startsWith('pglite://') ? pgliteDir(url) : undefined;
  if (dir === undefined) return;
  const todo = "Check --record-url (or FLEET_RECORD_URL) and the stack's `record`; `fleet plan` or `fleet apply` creates a record, this command only reads or edits one.";
  if (!existsSync(dir)) fail('record.not-found', `There is no record at ${describeRecordUrl(url)}: the folder ${clipPath(dir)} does not exist. ${todo}`);
  // An empty folder (made by hand, a mount point) holds no record: opening it would write a new cluster into it.
  if (isEmptyFolder(dir)) fail('record.not-found', `There is no record at ${describeRecordUrl(url)}: the folder ${clipPath(dir)} is empty. ${todo}`);
}

function isEmptyFolder(dir: string): boolean {
  try {
    return readdirSync(dir).length === 0;
  } catch {
    // Not a folder, or not readable: the record's open says which.
    return false;
  }
}

/**
 * Whether opening a record may upgrade its schema (`upgrade` in openRecord's
 * options): only commands that write decide it; the default is that of
 * migrate (upgrade), but for `existing` and `readOnly` together (state,
 * history), which never upgrade.
 */
export interface OpenRecordOptions extends OpenPgliteOptions {
  existing?: boolean;
  /**
   * false: never upgrade the schema. A record missing only `indexOnly`
   * migrations is read as it is; one missing any other is refused with
   * record.older-schema, untouched (an empty database is still made a
   * record unless `existing`). `fleet plan` on a PostgreSQL record, `fleet ui`,
   * `fleet refresh --check`: commands that write nothing must not move a
   * shared record past the dmzfleet version other jobs use.
   */
  upgrade?: boolean;
  /** The command that refused to upgrade, named in record.older-schema (default: "This command only reads"). */
  noUpgradeWhy?: string;
  /**
   * Told record.upgraded (a warning) when this open upgraded an existing
   * record's schema: the command says so (who upgraded, from which version),
   * since every dmzfleet that knows only the older version now refuses it.
   */
  onUpgrade?: (note: Diagnostic) => void;
}

/** record.upgraded: the record `description` was upgraded from schema version `from` to `to` by this command. */
export function recordUpgraded(description: string, from: number, to: number, file?: string): Diagnostic {
  return diag(
    'record.upgraded',
    `this command upgraded the record ${description} from schema version ${from} to ${to}. dmzfleet versions that know only version ${from} now refuse it (record.newer-schema): move every job that uses it to this dmzfleet.`,
    file !== undefined ? { file } : {},
  );
}

/** Whether a record URL names a PostgreSQL server (a record others may share), not a PGlite folder or memory. */
export function isServerRecord(url: string): boolean {
  return url.startsWith('postgres://') || url.startsWith('postgresql://');
}

/**
 * Starts what opening a record of `url` needs that takes no lock and writes
 * nothing, so it runs while the caller still loads the stack: for a PGlite
 * record, compiling PGlite's WebAssembly (on background threads), reading
 * its file system bundle (pglite-wasm.ts) and loading its JavaScript. For a
 * caller that opens the record next (the bundle read waits for that open,
 * ~6 MB); harmless when it does not (a malformed URL is left to openRecord
 * to report).
 */
export function prepareRecord(url: string): void {
  if (url.startsWith('pglite://') || url === 'memory://' || url === 'memory:') {
    void pgliteWasm();
    readPgliteBundle();
    // PGlite's JavaScript too (the open's own import then finds it loaded); a failure is the open's to report.
    import('./pglite.ts').catch(() => {});
  }
}

export async function openRecord(url: string, opts: OpenRecordOptions = {}): Promise<SqlRecord> {
  return (await openWithSchema(url, opts)).record;
}

/**
 * Opens the record and brings its schema up to date, as openRecord (an
 * existing record only: `fleet record upgrade` makes none); also returns the
 * schema version found and the version now.
 */
export async function upgradeRecord(url: string, opts: OpenPgliteOptions = {}): Promise<{ record: SqlRecord; from: number; to: number }> {
  requireExistingRecord(url);
  return openWithSchema(url, { ...opts, existing: true, upgrade: true });
}

async function openWithSchema(url: string, opts: OpenRecordOptions): Promise<{ record: SqlRecord; from: number; to: number }> {
  const description = describeRecordUrl(url);
  let adapter: SqlAdapter;
  let file: string | undefined;
  if (url.startsWith('pglite://') || url === 'memory://' || url === 'memory:') {
    file = pgliteDir(url);
    // Each backend's driver is loaded when its URL is opened: importing PGlite
    // costs a command ~160 ms of CPU, pg ~60 ms, and a run needs one of them.
    const { openPglite } = await import('./pglite.ts');
    adapter = await openPglite(file, opts);
  } else if (isServerRecord(url)) {
    try {
      new URL(url);
    } catch {
      fail('record.bad-url', `${description} is not a valid PostgreSQL URL.`);
    }
    const { openPostgres } = await import('./postgres.ts');
    adapter = await openPostgres(url, description);
  } else {
    fail('record.bad-url', `${description} is not a record URL; use pglite:///abs/dir, postgres://user@host:5432/db or memory://.`);
  }
  let schema: { from: number; to: number };
  try {
    schema = await migrate(adapter, file !== undefined ? { description, file } : { description }, MIGRATIONS, {
      create: opts.existing !== true,
      // state and history: read an older record as it is, or refuse (record.older-schema); never upgrade it.
      upgrade: opts.upgrade ?? !(opts.existing === true && opts.readOnly === true),
      ...(opts.noUpgradeWhy !== undefined ? { noUpgradeWhy: opts.noUpgradeWhy } : {}),
    });
  } catch (err) {
    await adapter.close().catch(() => {});
    throw err;
  }
  if (schema.from > 0 && schema.from < schema.to) opts.onUpgrade?.(recordUpgraded(description, schema.from, schema.to, file));
  return { record: sqlRecord(adapter, description), ...schema };
}
