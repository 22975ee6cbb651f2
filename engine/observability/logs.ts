// Structured logs of the long-running services: Fastify's pino logger, one
// JSON object per line on stdout (or a stream the caller gives), at the level
// `--log-level` / FLEET_LOG_LEVEL names (default info).
//
// What a line carries (docs/operations.md, "Logs"): `reqId` (the caller's
// x-request-id when it is a short plain token, else a fresh UUID), `route`
// (the route pattern), `status` and `ms` for every answered request; the
// authority adds one line per decision and the DMZ client one per step with
// `dataCenter`, `vm` (the VM's address), `vmId`, `decision`, `reason`,
// `code` and `ms`.
//
// Secrets never reach a line: no code puts a token, a boot token, a disk key
// or credentials in a message or a field, request bodies and headers are not
// logged, and `censor` below replaces the values of those names wherever a
// future field might carry them (belt and braces; the test greps a whole
// apply's logs for every secret).
//
// Cost (issue 20): a line is written on every request and every decision, so
// both steps are kept cheap. The censor walks the logged object's own keys
// three levels deep and copies only when a name matches (pino's `redact` with
// wildcard paths parsed its paths and cloned on every line: a third of the
// authority's CPU in bench:apply). Lines are gathered and written together
// (LineBatcher: at most LOG_LINGER_MS later, or at 16 KiB), instead of one
// write system call each; what is gathered is written when the service closes
// and when the process exits.
import { randomUUID } from 'node:crypto';
import type { FastifyServerOptions, RawRequestDefaultExpression } from 'fastify';
import { diag, quote, type Diagnostic } from '../diags/index.ts';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_LEVEL_ENV = 'FLEET_LOG_LEVEL';

export interface ServiceLogOptions {
  level: LogLevel;
  /** Where the JSON lines go (default: stdout). */
  stream?: { write(line: string): void };
}

/** Field names censored wherever they appear (top level, one or two levels down). */
export const SECRET_KEYS: readonly string[] = ['authorization', 'cookie', 'token', 'bootToken', 'diskKey', 'diskKeyHash', 'credentials', 'secret', 'clientToken', 'authorityToken', 'password'];
const SECRET = new Set(SECRET_KEYS);
const CENSOR = '[redacted]';

/** Plain objects, arrays and errors are looked into; anything else (a request, a socket) is left to pino's serializers. */
function walkable(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  if (Array.isArray(v) || v instanceof Error) return true;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** A shallow copy of `v` (an array, error or plain object) that keeps its prototype (an error stays an error for pino's serializer). */
function copyOf(v: Record<string, unknown>): Record<string, unknown> {
  if (Array.isArray(v)) return [...(v as unknown[])] as unknown as Record<string, unknown>;
  const c = Object.create(Object.getPrototypeOf(v) as object | null) as Record<string, unknown>;
  for (const k of Object.getOwnPropertyNames(v)) c[k] = v[k];
  return c;
}

/**
 * `obj` with the value of every key named in SECRET_KEYS replaced by
 * `[redacted]`, at the top level and up to two levels down (the reach of
 * the redact paths `k`, `*.k` and `*.*.k`). The object given is not changed:
 * what holds a secret is copied, everything else is the same reference.
 */
export function censor<T>(obj: T, depth = 0): T {
  if (!walkable(obj)) return obj;
  let out: Record<string, unknown> | undefined;
  for (const k in obj) {
    if (!Object.prototype.hasOwnProperty.call(obj, k)) continue;
    const v = obj[k];
    const next = SECRET.has(k) ? CENSOR : depth < 2 ? censor(v, depth + 1) : v;
    if (next !== v) (out ??= copyOf(obj))[k] = next;
  }
  return (out ?? obj) as T;
}

/** How long a log line may wait to be written with the lines after it. */
export const LOG_LINGER_MS = 10;
const LOG_BATCH_BYTES = 16 * 1024;

/** Batchers holding lines not yet written: written out when the process exits. */
const pending = new Set<LineBatcher>();
let exitHook = false;

/**
 * Log lines gathered and handed to `stream` in one write: after
 * LOG_LINGER_MS (an unref'd timer, so it keeps no process alive), as soon
 * as 16 KiB wait, on `flush()` (a service's close), and at process exit.
 */
export class LineBatcher {
  #buf: string[] = [];
  #bytes = 0;
  #timer: NodeJS.Timeout | undefined;
  constructor(private readonly stream: { write(line: string): void }) {}

  write(line: string): void {
    this.#buf.push(line);
    this.#bytes += line.length;
    if (this.#bytes >= LOG_BATCH_BYTES) {
      this.flush();
      return;
    }
    if (this.#timer) return;
    this.#timer = setTimeout(() => this.flush(), LOG_LINGER_MS);
    this.#timer.unref();
    pending.add(this);
    if (!exitHook) {
      exitHook = true;
      process.once('exit', () => {
        for (const b of [...pending]) b.flush();
      });
    }
  }

  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    pending.delete(this);
    if (this.#buf.length === 0) return;
    const text = this.#buf.length === 1 ? this.#buf[0] : this.#buf.join('');
    this.#buf = [];
    this.#bytes = 0;
    this.stream.write(text);
  }
}

/** The level from `--log-level`, else FLEET_LOG_LEVEL, else info; a diagnostic for a name that is not a level. */
export function resolveLogLevel(flag: string | undefined, env: Readonly<Record<string, string | undefined>>): { level?: LogLevel; diagnostics: Diagnostic[] } {
  const value = flag ?? (env[LOG_LEVEL_ENV] || undefined) ?? 'info';
  const from = flag !== undefined ? '--log-level' : env[LOG_LEVEL_ENV] ? LOG_LEVEL_ENV : 'the default';
  if ((LOG_LEVELS as readonly string[]).includes(value)) return { level: value as LogLevel, diagnostics: [] };
  return { diagnostics: [diag('apply.serve-config', `${from} ${quote(value)} is not a log level; levels are ${LOG_LEVELS.join(', ')}.`)] };
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request id: the caller's x-request-id when it is a short plain token (a proxy's id carries through), else a fresh UUID. */
export function requestId(req: RawRequestDefaultExpression): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

/** Fastify's logger options for a service (false: no logger), and the batcher its lines go through (flush it when the service closes). */
export function loggerOptions(o: ServiceLogOptions | boolean | undefined): { logger: FastifyServerOptions['logger']; lines?: LineBatcher } {
  if (o === undefined || o === false) return { logger: false };
  const opts: ServiceLogOptions = o === true ? { level: 'info' } : o;
  const lines = new LineBatcher(opts.stream ?? process.stdout);
  return {
    logger: {
      level: opts.level,
      formatters: { log: (obj: Record<string, unknown>) => censor(obj) },
      stream: lines,
    },
    lines,
  };
}
