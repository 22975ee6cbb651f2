import { createRequire } from 'node:module';
import { COUNTING, countMessage } from '../observability/message-counts.ts';
import type pgTypes from 'pg';
import { arrayLiteral } from './array-literal.ts';
import { envMs } from './env.ts';
import { FleetError, clip } from '../diags/index.ts';
import { RecordUnreachableError } from './errors.ts';
import type { Queryable, SqlAdapter } from './sql.ts';
import { writeFault } from './storage.ts';

/**
 * pg, required with the global `Response` hidden: at load, pg asks whether
 * it runs in a Cloudflare Worker by building a `Response`, and in Node 20
 * the first touch of that global loads fetch's implementation (undici):
 * 40-100 ms of every command on a PostgreSQL record, none of which fetches
 * (bench/scale). Synchronous, so nothing else runs while it is hidden; the
 * global's own lazy getter is put back untouched.
 */
function requirePg(): typeof pgTypes {
  const require = createRequire(import.meta.url);
  const response = Object.getOwnPropertyDescriptor(globalThis, 'Response');
  if (!response?.configurable) return require('pg') as typeof pgTypes;
  Object.defineProperty(globalThis, 'Response', { value: undefined, configurable: true, writable: true });
  try {
    return require('pg') as typeof pgTypes;
  } finally {
    Object.defineProperty(globalThis, 'Response', response);
  }
}
const pg = requirePg();

/** Socket-level failures: the server is not there (or went away). */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
]);

/**
 * Server answers that mean "you cannot use this database now", and whether
 * that may pass by itself (a failover, a restart: transient) or not.
 */
const CONNECT_SQLSTATES: Record<string, { cause: string; transient: boolean }> = {
  '28P01': { cause: 'password authentication failed', transient: false },
  '28000': { cause: 'authentication refused', transient: false },
  '3D000': { cause: 'database does not exist', transient: false },
  // If you add a code a person must act on, give it a sentence in whatToDo too.
  '57P01': { cause: 'server shut down', transient: true },
  '57P02': { cause: 'server crashed', transient: true },
  '57P03': { cause: 'server not accepting connections yet', transient: true },
  '53300': { cause: 'too many connections', transient: true },
};

/** Where the record is, as its faults say it; `queryTimeoutMs`: the pool's query_timeout (0: none). */
export interface PostgresWhere {
  host: string;
  port: string;
  description: string;
  /** The URL's sslmode when node-postgres takes it as verify-full (aliasedSslMode). */
  sslmode?: string;
  queryTimeoutMs?: number;
}

/** pg's error for a statement with no answer within the client's query_timeout (node_modules/pg/lib/client.js). */
const QUERY_TIMEOUT_MESSAGE = 'Query read timeout';

/**
 * Connection-level errors become record.unreachable (RecordUnreachableError,
 * transient when the same call may succeed in a moment: a lost or refused
 * connection, a server restarting, a statement with no answer within the
 * query timeout); anything else (a SQL bug) passes unchanged.
 */
export function connectionFault(err: unknown, where: PostgresWhere): unknown {
  if (!(err instanceof Error)) return err;
  const code = (err as { code?: string }).code;
  let cause: string | undefined;
  let transient = true;
  let todo: string | undefined;
  if (code && NETWORK_CODES.has(code)) cause = code;
  else if (code && CONNECT_SQLSTATES[code]) {
    cause = `${CONNECT_SQLSTATES[code].cause} (${code})`;
    transient = CONNECT_SQLSTATES[code].transient;
  }
  else if (err.message === QUERY_TIMEOUT_MESSAGE) {
    // The connection is dropped with it (the pool discards a client whose query failed so; transaction() too), so a
    // call tried again (record-retry.ts) takes a new one.
    cause = `no answer within ${where.queryTimeoutMs ?? '?'} ms (FLEET_RECORD_QUERY_TIMEOUT_MS)`;
    todo =
      'The connection was lost without a word (a network that drops it silently), or the statement runs longer than that: then raise FLEET_RECORD_QUERY_TIMEOUT_MS (0: no limit).';
  }
  // Not the server's word on a setting (`options=-c statement_timeout=abc` in the URL: "invalid value for parameter
  // \"statement_timeout\"", 22023) but a timeout: pg's on connecting, or the server cancelling a statement (57014).
  else if (/timeout/i.test(err.message) && (!(err instanceof pg.DatabaseError) || code === '57014')) cause = 'connection timeout';
  else if (/Connection terminated|connection is closed|connection error and is not queryable/i.test(err.message)) cause = 'connection lost';
  if (cause === undefined) return writeFault(err, where.description);
  todo ??= whatToDo(code, where);
  return new RecordUnreachableError(`cannot use the PostgreSQL record at ${where.host}:${where.port} (${where.description}): ${cause}: ${err.message}.${todo ? ` ${todo}` : ''}`, transient);
}

/** The sentence that tells a person what to do about a connection fault, when there is one to do (not for a server restarting). */
function whatToDo(code: string | undefined, where: PostgresWhere): string | undefined {
  switch (code) {
    case '3D000': {
      let database = '';
      try {
        database = decodeURIComponent(new URL(where.description).pathname.slice(1));
      } catch {
        // A description that is no URL: the sentence goes without the name.
      }
      return `Create the database${database ? ` (createdb -h ${where.host} -p ${where.port} ${database})` : ''}, or correct the URL's database name.`;
    }
    case '28P01':
      return 'Check the user and password in the URL (or PGPASSWORD, ~/.pgpass).';
    case '28000':
      return "Check the user in the URL, and that the server's pg_hba.conf lets it connect from this host.";
    case 'ECONNREFUSED':
      return `Check that PostgreSQL runs and listens on ${where.host}:${where.port}, and the URL's host and port.`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `Check the URL's host name (${where.host}).`;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `Check that ${where.host}:${where.port} can be reached from this host (network, firewall).`;
    default:
      return undefined;
  }
}

/** The query timeout when FLEET_RECORD_QUERY_TIMEOUT_MS is unset (docs/record.md). */
export const DEFAULT_QUERY_TIMEOUT_MS = 120_000;

/**
 * The pool's settings for the record at `url`. A short connect timeout keeps
 * an unreachable server from hanging a plan. A connection the network drops
 * without a word (a NAT or firewall forgetting it, a failover that moves the
 * address) must not hang a record call either, for the minutes it takes TCP
 * to give up on its own:
 *
 * | setting        | what it catches                                               |
 * | -------------- | ------------------------------------------------------------- |
 * | TCP keepalive  | a silent connection: probes after 10 s of it, and the socket  |
 * |                | fails once they go unanswered (how many, how far apart: the   |
 * |                | system's settings; Linux's default is about 11 minutes)       |
 * | query_timeout  | a statement with no answer within FLEET_RECORD_QUERY_TIMEOUT_MS |
 * |                | (default 2 minutes, 0: none): a transient record.unreachable, |
 * |                | the connection dropped, so a retried call takes a new one     |
 *
 * The timeout is far above the record's longest statements (a whole plan, a
 * migration or a seeding chunk at 1,000,000 VMs takes seconds: bench/scale);
 * a record whose statements legitimately run longer raises it. It is the
 * client's (pg's query_timeout), not the server's statement_timeout, which a
 * lost connection never brings back.
 */
export function poolConfig(url: string, env: NodeJS.ProcessEnv = process.env): pgTypes.PoolConfig & { query_timeout: number } {
  return {
    // An sslmode pg takes as verify-full, written so (pgConnectionString): pg does not warn.
    connectionString: pgConnectionString(url),
    max: 4,
    connectionTimeoutMillis: envMs('FLEET_RECORD_CONNECT_TIMEOUT_MS', 5000, { env }),
    query_timeout: envMs('FLEET_RECORD_QUERY_TIMEOUT_MS', DEFAULT_QUERY_TIMEOUT_MS, { env, hint: `default ${DEFAULT_QUERY_TIMEOUT_MS}, 0 for none` }),
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    idleTimeoutMillis: 10_000,
    application_name: 'dmzfleet',
    // Every statement of the record finds its rows by an index (an id, a
    // fleet, a plan), and a sequential scan is never the right plan once the
    // record has grown; but the planner picks one whenever the statistics
    // say a table is small, as they do for a new record, and a cached plan
    // keeps it (an apply on a fresh record read 13 million vms rows for 6,000
    // VMs that way; bench/apply). With sequential scans priced out, the
    // cached (generic) plans of the prepared statements (MAX_NAMED below)
    // stay right as the record grows, so a statement is planned a few times
    // per connection instead of at every execution: planning every execution
    // (plan_cache_mode=force_custom_plan, before) was 38% of PostgreSQL's CPU
    // in bench/apply, which now uses 30% less. A table with no usable index
    // is still scanned.
    //
    // And every statement is written for read committed (a row lock waited on reads the row as its holder left it;
    // a conflict waits, never fails): a database whose default_transaction_isolation a DBA set to repeatable read or
    // serializable failed concurrent writes of one fleet with "could not serialize access" (40001), a raw record
    // error (engine/record/isolation.test.ts). The record's connections run read committed whatever that default.
    options: '-c enable_seqscan=off -c default_transaction_isolation=read\\ committed',
  };
}

/**
 * Where pg connects for `url`, to name it in diagnostics: the URL's `host`
 * and `port` query parameters over its host and port, then PGHOST and
 * PGPORT, then localhost:5432 (node_modules/pg-connection-string's parse and
 * pg's ConnectionParameters, in that order). `…:5432/db?port=1` was named
 * 127.0.0.1:5432 while pg was refused at port 1.
 */
export function connectsTo(url: string, env: NodeJS.ProcessEnv = process.env): { host: string; port: string } {
  const parsed = new URL(url);
  const query = parsed.searchParams;
  let named = parsed.hostname;
  try {
    // A socket folder written in the host part (`postgres://%2Fvar%2Frun%2Fpostgresql/db`). An IPv6 address keeps its brackets, to read apart from the port.
    named = decodeURIComponent(named);
  } catch {
    // Kept as written.
  }
  const host = query.get('host') || named || env.PGHOST || 'localhost';
  const port = query.get('port') || parsed.port || env.PGPORT || '5432';
  return { host, port };
}

/**
 * The query parameters of `url` as node-postgres reads them
 * (pg-connection-string 2.x, node_modules/pg-connection-string/index.js
 * parse), in order: a URL holding a space or a `%` not followed by two hex
 * digits is first passed through encodeURI, with `%25` followed by two decimal
 * digits put back (so then `%73slmode` still reads as `sslmode` but
 * `ssl%6Dode` does not); then WHATWG URL parsing against `postgres://base`
 * (which drops tabs and newlines anywhere, and leading and trailing controls
 * and spaces; a host-less `@/` retried with a dummy host) and its
 * searchParams (names and values percent-decoded, `+` a space). A socket path
 * (`/…`) has none. So every spelling pg takes for `sslmode` is read here as
 * pg reads it: `ssl%6Dode`, `%73%73lmode`, `ssl\tmode`, `sslmode=requir%65`.
 */
function pgQuery(url: string): [string, string][] {
  if (url.charAt(0) === '/') return [];
  let str = url;
  if (/ |%[^a-f0-9]|%[a-f0-9][^a-f0-9]/i.test(str)) str = encodeURI(str).replace(/%25(\d\d)/g, '%$1');
  let parsed: URL;
  try {
    parsed = new URL(str, 'postgres://base');
  } catch {
    parsed = new URL(str.replace('@/', '@___DUMMY___/'), 'postgres://base');
  }
  return [...parsed.searchParams.entries()];
}

/**
 * The URL's sslmode when node-postgres (pg-connection-string 2.x) takes it
 * as verify-full and says so in a warning: prefer, require or verify-ca,
 * without `uselibpqcompat=true`. pg reads the query's parameters in order,
 * the last of a name winning (`?sslmode=disable&sslmode=require` is
 * require), each name as it decodes it (pgQuery): so are they read here.
 */
function aliasedSslMode(url: string): string | undefined {
  const query = pgQuery(url);
  const last = (name: string): string | undefined => {
    let found: string | undefined;
    for (const [k, v] of query) if (k === name) found = v;
    return found;
  };
  const mode = last('sslmode');
  if (last('uselibpqcompat') === 'true') return undefined;
  return mode === 'prefer' || mode === 'require' || mode === 'verify-ca' ? mode : undefined;
}

/** The pair pgConnectionString adds as the query's last: the sslmode pg reads. */
const VERIFY_FULL = 'sslmode=verify-full';

/**
 * The URL node-postgres is given for the record's `url`: the same, but when
 * pg would take its sslmode as verify-full (aliasedSslMode), with
 * `sslmode=verify-full` added as the query's last pair, which is what pg then
 * does with it: the last sslmode is the one pg reads.
 *
 * Why: pg-connection-string 2.x (node_modules/pg-connection-string/index.js,
 * parse) gives prefer, require, verify-ca and verify-full one meaning (TLS,
 * the server's certificate checked against its name), and for the first
 * three writes a dozen lines on stderr, once per process ("(node:PID)
 * Warning: SECURITY WARNING: The SSL modes 'prefer', 'require', and
 * 'verify-ca' are treated as aliases for 'verify-full' …"), ahead of
 * anything fleet says: a person read them before the diagnostic of a server
 * without TLS. That warning was held back by matching its words while pg
 * parsed the URL once, which an upgrade rewording it would have let through
 * unnoticed; verify-full is not warned about, whatever the words. What the
 * warning told a person is in the diagnostic of a TLS failure
 * (unusableConnection, which names the mode as written) and docs/record.md.
 *
 * Added, not replaced: pg reads a name spelled many ways (percent escapes of
 * any letter, tabs and newlines its URL parser drops, and which escapes count
 * hangs on the whole URL: pgQuery), so finding each pair it reads as sslmode
 * was a parse of pg's beside pg's (replacing only `sslmode=` pairs let
 * `ssl%6Dode=require` through, and pg warned). A plain `sslmode=` pair last
 * reads the same under every one of those rules, and the URL's characters
 * before it are kept, so pg decodes everything else as before; the URL is
 * given as written (and pg warns) should pg not read it so (checked here
 * with pgQuery). If pg gives these modes another meaning (pg-connection-string
 * 3, pg 9: libpq's, weaker checks), postgres.test.ts "sslmode=require reaches
 * pg as what pg made of it" fails: decide then whether to keep writing
 * verify-full.
 */
export function pgConnectionString(url: string): string {
  let aliased: string | undefined;
  let before: [string, string][];
  try {
    before = pgQuery(url);
    aliased = aliasedSslMode(url);
  } catch {
    // Not a URL: pg says why at the first statement.
    return url;
  }
  if (aliased === undefined) return url;
  // A query exists (pg read an sslmode from it), so its `?` comes before any `#`.
  const q = url.indexOf('?');
  const hash = url.indexOf('#', q);
  const end = hash < 0 ? url.length : hash;
  const given = `${url.slice(0, end)}${end > q + 1 ? '&' : ''}${VERIFY_FULL}${url.slice(end)}`;
  const after = pgQuery(given);
  const same = after.length === before.length + 1 && before.every(([k, v], i) => after[i][0] === k && after[i][1] === v) && after.at(-1)?.join('=') === VERIFY_FULL;
  return same ? given : url;
}

/** PostgreSQL behind the SqlAdapter, through a small pg Pool (poolConfig). */
export async function openPostgres(url: string, description: string): Promise<SqlAdapter> {
  const config = poolConfig(url);
  const where: PostgresWhere = { ...connectsTo(url), description, sslmode: aliasedSslMode(url), queryTimeoutMs: config.query_timeout };
  const pool = new pg.Pool(config);
  // An idle client losing its server must not crash the process; the next query reports it.
  pool.on('error', () => {});
  const adapter = new PostgresAdapter(pool, where);
  try {
    await adapter.query('SELECT 1');
  } catch (err) {
    // Not awaited: after a client that failed before its socket opened (`port=99999`), pg's end() never settles.
    void pool.end().catch(() => {});
    throw err instanceof FleetError ? err : unusableConnection(err, where);
  }
  return adapter;
}

/**
 * The first statement failed for a reason connectionFault does not know:
 * nothing a statement of the record does, but how the URL's parameters ask
 * to connect (`sslmode=require` to a server without TLS, an `sslrootcert`
 * that is not there, `options=-c …` the server refuses, `port=99999`, a
 * socket folder `host=/…` that does not exist). It was cli.internal, an
 * "internal error" quoting pg; it is record.unreachable, not transient
 * (trying again changes nothing), naming the URL.
 */
function unusableConnection(err: unknown, where: PostgresWhere): RecordUnreachableError {
  const message = err instanceof Error ? err.message : String(err);
  const tls = /\bSSL\b|\bTLS\b|certificate/i.test(message);
  // What node-postgres's own warning said (pgConnectionString), where it matters: why `require` checks a certificate.
  const alias = where.sslmode
    ? ` node-postgres takes sslmode=${where.sslmode} as verify-full: the server must offer TLS with a certificate this host trusts for its name (uselibpqcompat=true in the URL gives sslmode libpq's meaning).`
    : '';
  const todo = tls
    ? `Check the URL's TLS parameters (sslmode, ssl, sslrootcert, sslcert, sslkey) against what the server offers.${alias}`
    : "Check the URL's parameters (its host and port, and query parameters such as options, host, port) against what the server accepts.";
  return new RecordUnreachableError(`cannot use the PostgreSQL record at ${where.host}:${where.port} (${where.description}): the connection could not be made: ${clip(message.replace(/\.$/, ''))}. ${todo}`, false);
}

/**
 * Statements are sent as named prepared statements, so the server parses each
 * distinct text once per connection instead of at every call (the authority
 * writes at every apply step), and plans it once it has seen a few
 * executions (its generic plan; see the pool's options). The record builds its SQL from a bounded set of shapes
 * (values always travel as parameters); past MAX_NAMED distinct texts,
 * further ones go unnamed.
 */
const MAX_NAMED = 500;

/** The statement's parameters, each flat array as its literal (arrayLiteral); the same array when none is one. */
function withArrayLiterals(params: readonly unknown[]): unknown[] {
  let out: unknown[] | undefined;
  for (let i = 0; i < params.length; i++) {
    const p = params[i];
    if (!Array.isArray(p)) continue;
    const literal = arrayLiteral(p);
    if (literal === undefined) continue;
    out ??= params.slice();
    out[i] = literal;
  }
  return out ?? (params as unknown[]);
}

class PostgresAdapter implements SqlAdapter {
  readonly kind = 'postgres' as const;
  readonly #pool: pgTypes.Pool;
  readonly #where: PostgresWhere;
  readonly #names = new Map<string, string>();
  constructor(pool: pgTypes.Pool, where: PostgresWhere) {
    this.#pool = pool;
    this.#where = where;
  }
  /** The query config for `text`: named once seen (see MAX_NAMED); BEGIN/COMMIT and friends stay plain. */
  #config(text: string, params: readonly unknown[]): pgTypes.QueryConfig {
    if (COUNTING) countMessage('record statements');
    let name = this.#names.get(text);
    if (name === undefined && params.length > 0 && this.#names.size < MAX_NAMED) {
      name = `fleet_${this.#names.size}`;
      this.#names.set(text, name);
    }
    const values = withArrayLiterals(params);
    return name === undefined ? { text, values } : { name, text, values };
  }
  async query<T>(text: string, params: readonly unknown[] = []): Promise<T[]> {
    try {
      const r = await this.#pool.query(this.#config(text, params));
      return r.rows as T[];
    } catch (err) {
      throw connectionFault(err, this.#where);
    }
  }
  async transaction<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    let client: pgTypes.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw connectionFault(err, this.#where);
    }
    let broken = false;
    // Checked out, the client is no longer the pool's to watch: a server ending its connection between two
    // statements (a restart, a failover, pg_terminate_backend) emits 'error', which with no listener crashed the
    // process. Kept here, it is what the next statement of the transaction fails with.
    let lost: Error | undefined;
    const onError = (err: Error) => {
      lost ??= err;
      broken = true;
    };
    client.on('error', onError);
    const q: Queryable = {
      query: async <R>(text: string, params: readonly unknown[] = []) => {
        try {
          return (await client.query(this.#config(text, params))).rows as R[];
        } catch (err) {
          const f = connectionFault(lost ?? err, this.#where);
          if (f !== err) broken = true;
          throw f;
        }
      },
    };
    try {
      await q.query('BEGIN');
      const result = await fn(q);
      await q.query('COMMIT');
      return result;
    } catch (err) {
      if (!broken) await client.query('ROLLBACK').catch(() => (broken = true));
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }
  async close(): Promise<void> {
    await this.#pool.end();
  }
}
