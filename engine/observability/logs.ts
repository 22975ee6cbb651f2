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
// logged, and the redact paths below censor those names wherever a future
// field might carry them (belt and braces; the test greps a whole apply's
// logs for every secret).
import { randomUUID } from 'node:crypto';
import type { FastifyServerOptions, RawRequestDefaultExpression } from 'fastify';
import { diag, type Diagnostic } from '../diags/index.ts';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_LEVEL_ENV = 'FLEET_LOG_LEVEL';

export interface ServiceLogOptions {
  level: LogLevel;
  /** Where the JSON lines go (default: stdout). */
  stream?: { write(line: string): void };
}

/** Field names censored wherever they appear (top level, one or two levels down). */
const SECRET_KEYS = ['authorization', 'token', 'bootToken', 'diskKey', 'diskKeyHash', 'credentials', 'secret', 'clientToken', 'authorityToken', 'password'];

export const REDACT_PATHS: readonly string[] = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  ...SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]),
];

/** The level from `--log-level`, else FLEET_LOG_LEVEL, else info; a diagnostic for a name that is not a level. */
export function resolveLogLevel(flag: string | undefined, env: Readonly<Record<string, string | undefined>>): { level?: LogLevel; diagnostics: Diagnostic[] } {
  const value = flag ?? (env[LOG_LEVEL_ENV] || undefined) ?? 'info';
  const from = flag !== undefined ? '--log-level' : env[LOG_LEVEL_ENV] ? LOG_LEVEL_ENV : 'the default';
  if ((LOG_LEVELS as readonly string[]).includes(value)) return { level: value as LogLevel, diagnostics: [] };
  return { diagnostics: [diag('apply.serve-config', `${from} ${value} is not a log level; levels are ${LOG_LEVELS.join(', ')}.`)] };
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request id: the caller's x-request-id when it is a short plain token (a proxy's id carries through), else a fresh UUID. */
export function requestId(req: RawRequestDefaultExpression): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

/** Fastify's logger options for a service (false: no logger). */
export function loggerOptions(o: ServiceLogOptions | boolean | undefined): FastifyServerOptions['logger'] {
  if (o === undefined || o === false) return false;
  const opts: ServiceLogOptions = o === true ? { level: 'info' } : o;
  return {
    level: opts.level,
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
    ...(opts.stream ? { stream: opts.stream } : {}),
  };
}
