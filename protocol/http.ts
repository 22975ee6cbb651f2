// The HTTP layer both services share: bearer-token auth, one error body
// shape, wire codes turned into HTTP statuses (the only place that does it:
// errorAnswer), NDJSON batch answers, and the OpenAPI document that
// @fastify/swagger builds from the same route schemas Fastify validates with.
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import AjvCompiler from '@fastify/ajv-compiler';
import swagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifySchema } from 'fastify';
import { FleetError, clip, diag } from '../engine/diags/index.ts';
import { COUNTING, countMessage } from '../engine/observability/message-counts.ts';
import { loggerOptions, registerHealth, registerMetrics, requestId, type HealthOptions, type ServiceLogOptions, type ServiceMetrics } from '../engine/observability/index.ts';
import type { ServerTls } from '../engine/transport/index.ts';
import { ProtocolError, WireError, type WireCode } from './errors.ts';
import { sameSecret } from './hash.ts';
import { ROUTE_SCHEMAS, SCHEMA_ERRORS_KEPT, SERVICE_AJV_OPTIONS } from './schemas/routes.ts';

export { ProtocolError, WireError } from './errors.ts';

export interface ServiceOptions {
  title: string;
  /** Paths served without a token. */
  publicPaths: readonly string[];
  /**
   * Path prefixes whose routes authenticate their callers themselves (the
   * dashboard under /ui: a session cookie of an admin or read-only token):
   * the bearer check of the data centers' tokens is skipped there, and their
   * routes are left out of the OpenAPI document (they are not the protocol).
   */
  ownAuthPrefixes?: readonly string[];
  /** Resolves a bearer token to the caller's identity (a data center name), or undefined when unknown. */
  authenticate: (token: string) => string | undefined;
  /**
   * Whether the authenticated `caller` may use the route (its pattern):
   * throws the refusal (a WireError) when not. Judged as the request
   * arrives, right after authentication, before its body is read.
   */
  authorizeRoute?: (caller: string, route: string) => void;
  /** JSON-line logs (engine/observability/logs.ts): a level and a stream; true: info on stdout; absent or false: none. */
  logger?: boolean | ServiceLogOptions;
  /** Serve HTTPS with this certificate (and require client certificates when it has a CA): engine/transport's loadServerTls. */
  tls?: ServerTls;
  /**
   * Route patterns served without a verified client certificate when `tls`
   * requires one (the DMZ client's boot endpoint: a booting VM has no client
   * certificate and proves itself with its one-time boot token). With any,
   * the handshake only asks for a certificate (a client without one still
   * connects) and every other route is refused before it runs, with
   * `client-cert-required`, unless the certificate verified against the
   * client CA. Without any, the handshake itself refuses such a client.
   */
  certlessRoutes?: readonly string[];
  /** Count and time every request; served at /metrics (public). */
  metrics?: ServiceMetrics;
  /** Readiness checks behind /readyz; /livez answers while the process does (both public). */
  health?: HealthOptions;
  /** How long a request may take to arrive whole (headers and body); default REQUEST_RECEIPT_MS. */
  requestTimeoutMs?: number;
}

/**
 * How long a request may take to arrive, headers and body (Fastify's
 * default is no bound: a caller trickling its body held a connection for
 * ever). Only the arrival: a handler may take as long as it needs, and an
 * NDJSON answer may stream for minutes. Every caller of the services sends a
 * whole body at once (at most 1 MiB).
 */
export const REQUEST_RECEIPT_MS = 60_000;

/**
 * Fastify's options bounding a request's arrival to `ms`: Node checks it only
 * while its headers bound is no longer (Fastify leaves that at 60 s, which
 * turned a shorter request bound off), and every 30 s by default (here often
 * enough that the bound holds within a few seconds). `http` goes into the
 * https options of a TLS service too.
 */
export function receiptBound(ms: number = REQUEST_RECEIPT_MS): { requestTimeout: number; http: { headersTimeout: number; connectionsCheckingInterval: number } } {
  return { requestTimeout: ms, http: { headersTimeout: Math.min(60_000, ms), connectionsCheckingInterval: Math.max(10, Math.min(5_000, Math.floor(ms / 2))) } };
}


declare module 'fastify' {
  interface FastifyRequest {
    /** Who the bearer token belongs to (a data center name, or `cli`). */
    caller: string;
  }
}

/** Tokens compared in constant time; first match wins. */
export function tokenTable(entries: readonly { token: string; who: string }[]): (token: string) => string | undefined {
  return (token) => entries.find((e) => sameSecret(e.token, token))?.who;
}

/** Fastify's own refusals (before a handler runs), as wire codes. */
const FASTIFY_REFUSALS: Record<number, WireCode> = { 404: 'not-found', 413: 'too-large', 415: 'unsupported-media-type' };

/**
 * The wire answer to an error thrown while serving: a ProtocolError's (a
 * WireError's status is the registry's, protocol/errors.ts); a record fault
 * (a version conflict is the caller's race: `version-conflict`, anything
 * else ours: `unavailable`, the diagnostic code in the message); a schema
 * violation `bad-request`; Fastify's own refusals by status; anything else
 * `internal`. The error handler of every route and each call of a batch use it.
 */
export function errorAnswer(err: Error & { statusCode?: number; code?: string; validation?: unknown }): {
  status: number;
  body: { error: { code: string; message: string } };
} {
  const wire = (e: ProtocolError) => ({ status: e.statusCode, body: { error: { code: e.code, message: e.message } } });
  if (err instanceof ProtocolError) return wire(err);
  if (err instanceof FleetError) {
    const code = err.diagnostics[0]?.code ?? 'internal';
    return wire(new WireError(code === 'record.version-conflict' ? 'version-conflict' : 'unavailable', `${err.message} (${code})`));
  }
  if (err.validation) return wire(new WireError('bad-request', err.message));
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
  if (status >= 500) return wire(new WireError('internal', err.message));
  if (status === 415) return wire(new WireError('unsupported-media-type', `${err.message}: every body of this service is JSON, sent with content-type: application/json`));
  return wire(new WireError(FASTIFY_REFUSALS[status] ?? 'bad-request', err.message));
}

/**
 * Node's own refusals of a connection's request, before Fastify routes it (a
 * request that does not parse as HTTP, headers or a URL over Node's header
 * limit, one that did not arrive within the receipt bound), in the wire's
 * error body on the socket, which is then closed: Fastify's default answered
 * them in a shape of its own (`{"error":"Bad Request","message":"Client
 * Error",...}`), which the callers read as "no details". Nothing of the
 * request is echoed (its headers may hold a token).
 */
export function clientErrorAnswer(err: NodeJS.ErrnoException, socket: Duplex): void {
  // A reset connection: nobody to answer.
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const e =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new WireError('request-timeout', 'the request did not arrive whole (headers and body) within the service\'s receipt bound')
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? new WireError('headers-too-large', "the request's headers (its URL included) are over the service's limit (16 KiB)")
        : new WireError('bad-request', `the request is not valid HTTP/1.1 (${err.code ?? 'unparsed'})`);
  const body = JSON.stringify({ error: { code: e.code, message: e.message } });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${e.statusCode} ${STATUS_CODES[e.statusCode] ?? ''}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

/**
 * How many of a body's schema errors its 400 answer names. The validators
 * report every error at once (allErrors), and Fastify's default message named
 * them all: a 1 MiB body of 500 000 wrong items (or unknown keys, at the open
 * boot endpoint too) was answered with 17 MB of text, built on the event loop
 * for seconds. The routes' own validators stop at the next error
 * (SCHEMA_ERRORS_KEPT, specs/gen-validators.ts capErrors), so the answer says
 * there are more without counting them.
 */
export const SCHEMA_ERRORS_NAMED = SCHEMA_ERRORS_KEPT - 1;

/** A schema violation's message: Fastify's wording (`body/calls/0 must be object, ...`), the first SCHEMA_ERRORS_NAMED errors, and whether there are more. */
export function schemaErrorMessage(errors: readonly { instancePath?: string; message?: string }[], dataVar: string): Error {
  const named = errors.slice(0, SCHEMA_ERRORS_NAMED).map((e) => `${dataVar}${e.instancePath ?? ''} ${e.message ?? 'is not valid'}`);
  return new Error(`${named.join(', ')}${errors.length > named.length ? ', and more schema errors' : ''}`);
}

/** What a batch task resolves with when it answered through `part` lines only (a run of steps). */
export const NO_LINE: unique symbol = Symbol('no line');

/** An answer line, as a single route would have answered. */
export interface LineAnswer {
  status: number;
  body: unknown;
}

/**
 * Lets a task answer in parts (a run of steps): runs `work`, writes its line
 * `{ i, k, status, body }` and returns the same answer, so the task can decide
 * whether to go on. `lazy(answer)`: nobody waits for this line soon (more
 * lines of the task follow): it may wait up to LINES_LINGER_MS for others to
 * go in the same write.
 */
export type Part = (k: number, work: () => Promise<unknown>, lazy?: (answer: LineAnswer) => boolean) => Promise<LineAnswer>;

/** How long a lazy line of a batch's answer waits for others to go in the same write. */
export const LINES_LINGER_MS = 5;

/**
 * A batch's answer that has written nothing for this long writes an empty
 * line: a step may take minutes (a cloud VM's boot, spec.readyTimeoutMs), and
 * the callers give up on an answer silent for their idle timeout (60 s; they
 * skip empty lines: providers/http-send.ts sendLines).
 */
export const LINES_KEEPALIVE_MS = 15_000;

/**
 * Answers a batch: one NDJSON line `{ i, status, body }` per task as soon as
 * it settles (a quick one never waits for a slow one), in the order they
 * settle, lines of one tick in one write; each task's answer is what its
 * single route would have answered (errorAnswer for a throw). A task may
 * instead answer in parts, a line `{ i, k, status, body }` each, and resolve
 * with NO_LINE. Resolves when all have settled. A caller that went away
 * misses the rest of the lines; the tasks still run to the end.
 */
export function streamAnswers(
  reply: FastifyReply,
  tasks: readonly ((part: Part) => Promise<unknown>)[],
  log: (err: unknown) => void,
  keepAliveMs: number = LINES_KEEPALIVE_MS,
): Promise<void> {
  const all = answerStream(reply, tasks, log, keepAliveMs);
  // A hijacked answer is out of Fastify's sight: closeGracefully waits for it here.
  track(reply.server, all);
  return all;
}

/** Work of a service still running, which a graceful close waits for (a batch whose caller went away still runs to its end). */
const IN_FLIGHT = new WeakMap<FastifyInstance, Set<Promise<unknown>>>();

/** Counts `work` as in flight on `app` until it settles. */
export function track(app: FastifyInstance, work: Promise<unknown>): void {
  let set = IN_FLIGHT.get(app);
  if (!set) IN_FLIGHT.set(app, (set = new Set()));
  const s = set;
  const settled = work.then(
    () => undefined,
    () => undefined,
  );
  s.add(settled);
  void settled.then(() => s.delete(settled));
}

/** Resolves once no tracked work of `app` is in flight (work started meanwhile included). */
async function idle(app: FastifyInstance): Promise<void> {
  for (;;) {
    const set = IN_FLIGHT.get(app);
    if (!set || set.size === 0) return;
    await Promise.all(set);
  }
}

/**
 * A graceful stop (SIGTERM): stops accepting connections (a request on a
 * kept-alive one is answered 503, which callers retry), lets requests and
 * batches in flight finish and `before` settle, for at most `drainMs`, then
 * cuts whatever connection is left and resolves once the server is closed.
 * Idle kept-alive connections are closed as soon as their answer is out.
 */
export async function closeGracefully(app: FastifyInstance, drainMs: number, before?: () => Promise<void>): Promise<void> {
  const closing = app.close();
  const sweep = setInterval(() => app.server.closeIdleConnections?.(), 25);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), drainMs)));
  const drained = (async () => {
    await Promise.all([idle(app), before?.(), closing]);
    return 'drained' as const;
  })();
  try {
    if ((await Promise.race([drained, late])) === 'late') {
      app.log.warn({ drainMs }, 'shutdown: work still in flight after the drain time; cutting its connections');
      app.server.closeAllConnections?.();
    }
    await closing;
  } finally {
    clearTimeout(timer);
    clearInterval(sweep);
  }
}

function answerStream(
  reply: FastifyReply,
  tasks: readonly ((part: Part) => Promise<unknown>)[],
  log: (err: unknown) => void,
  keepAliveMs: number,
): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { 'content-type': 'application/x-ndjson' });
  let left = tasks.length;
  let lines = '';
  /** Whether anything went out since the last beat: an empty line goes only into a silence. */
  let wrote = false;
  const beat = setInterval(() => {
    if (!wrote && !raw.destroyed && !ended) raw.write('\n');
    wrote = false;
  }, keepAliveMs);
  beat.unref();
  raw.once('close', () => clearInterval(beat));
  /** A flush is due at the next turn (an urgent line), or only after the lazy lines' linger. */
  let soon = false;
  let lingering: NodeJS.Timeout | undefined;
  let ended = false;
  const flush = () => {
    soon = false;
    clearTimeout(lingering);
    lingering = undefined;
    const out = lines;
    lines = '';
    if (raw.destroyed || ended) return;
    if (left === 0) {
      ended = true;
      clearInterval(beat);
      raw.end(out);
      if (COUNTING) countMessage('batch answer writes');
    } else if (out !== '') {
      wrote = true;
      raw.write(out);
      if (COUNTING) countMessage('batch answer writes');
    }
  };
  const settle = (work: Promise<unknown>): Promise<LineAnswer> =>
    work.then(
      (body) => ({ status: 200, body }),
      (err: Error) => {
        const answer = errorAnswer(err);
        if (answer.status >= 500) log(err);
        return answer;
      },
    );
  const write = (line: string, lazy = false) => {
    if (COUNTING) countMessage(lazy ? 'batch answer lines sent (lazy)' : 'batch answer lines sent');
    lines += line;
    if (soon) return;
    if (!lazy) {
      soon = true;
      setImmediate(flush);
    } else {
      lingering ??= setTimeout(flush, LINES_LINGER_MS);
    }
  };
  return new Promise<void>((done) => {
    tasks.forEach((task, i) => {
      const part: Part = (k, work, lazy) =>
        settle(work()).then((answer) => {
          write(`${JSON.stringify({ i, k, status: answer.status, body: answer.body })}\n`, lazy?.(answer) === true);
          return answer;
        });
      void settle(task(part)).then((answer) => {
        if (answer.body !== NO_LINE || answer.status !== 200) write(`${JSON.stringify({ i, status: answer.status, body: answer.body })}\n`);
        if (--left === 0) {
          // The last task settled: the answer ends now with whatever waits (a flush due later finds it ended).
          flush();
          done();
        }
      });
    });
  });
}

/**
 * A Fastify service with the protocol's auth, errors and OpenAPI document
 * (`openapi()`: built by @fastify/swagger from the schemas of the routes
 * added after this resolves; call it once the service is ready).
 */
export async function createService(opts: ServiceOptions): Promise<{ app: FastifyInstance; openapi: () => unknown }> {
  const validators = await precompiledValidators();
  const log = loggerOptions(opts.logger);
  const certless = new Set(opts.certlessRoutes ?? []);
  const perRouteCerts = opts.tls?.requestCert === true && opts.tls.rejectUnauthorized && certless.size > 0;
  const receipt = receiptBound(opts.requestTimeoutMs);
  const app = Fastify({
    requestTimeout: receipt.requestTimeout,
    http: receipt.http,
    logger: log.logger,
    // One line per answered request (below) instead of Fastify's two, which carry no route.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: requestId,
    // Reject unknown properties instead of silently dropping them.
    ajv: { customOptions: { ...SERVICE_AJV_OPTIONS } },
    // The routes' request schemas come compiled (protocol/schemas/routes.ts); any other is compiled as Fastify would.
    schemaController: { compilersFactory: { buildValidator: precompiledFirst(validators) } },
    bodyLimit: 1024 * 1024,
    // The router's own refusals (a URL that does not decode, a path parameter over its length) in the wire's error body, not Fastify's.
    clientErrorHandler: clientErrorAnswer,
    schemaErrorFormatter: schemaErrorMessage,
    frameworkErrors: (err, _req, reply) => {
      const { status, body } = errorAnswer(err);
      void (reply as unknown as FastifyReply).status(status).send(body);
    },
    ...(opts.tls ? { https: { ...opts.tls, ...receipt.http, ...(perRouteCerts ? { rejectUnauthorized: false } : {}) } } : {}),
  }) as unknown as FastifyInstance;
  // Every body of the protocol is JSON: Fastify's text/plain parser would hand a schema a string, refused 400
  // bad-request ("body must be object") instead of 415 (the dashboard's sign-in adds its own form parser).
  app.removeContentTypeParser('text/plain');
  const publicPaths = [...opts.publicPaths, ...(opts.metrics ? ['/metrics'] : []), ...(opts.health ? ['/livez', '/readyz'] : [])];
  const ownAuth = (path: string) => (opts.ownAuthPrefixes ?? []).some((p) => path === p || path.startsWith(`${p}/`));
  // Registered (awaited) before any route, so its onRoute hook sees them all.
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: opts.title, version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
    // Every route but the public ones needs the bearer token, and may answer 401.
    transform: ({ schema, url }) => {
      if (ownAuth(url)) return { schema: { ...(schema ?? {}), hide: true } as FastifySchema, url };
      if (publicPaths.includes(url)) return { schema, url };
      const s = (schema ?? {}) as FastifySchema & { security?: unknown };
      const response = { ...((s.response as Record<string, unknown> | undefined) ?? { 200: { description: 'OK', type: 'object' } }) };
      response['401'] ??= { description: 'Missing or wrong bearer token', type: 'object' };
      return { schema: { ...s, response, security: [{ bearer: [] }] } as FastifySchema, url };
    },
  });
  // Lines gathered for one write go out when the service closes.
  if (log.lines) {
    const lines = log.lines;
    app.addHook('onClose', async () => lines.flush());
  }
  if (opts.metrics) registerMetrics(app, opts.metrics);
  if (opts.health) registerHealth(app, opts.health);
  app.decorateRequest('caller', '');
  // The hooks below run on every request: callback-style (not async), so a request passes them in one go instead of
  // one promise and microtask hop per hook (issue 20: the authority's fixed cost per request). A throw inside one is
  // the request's error, as a rejection was.
  app.addHook('onRequest', (req: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) => {
    // First, before any other check: with per-route client certificates, a
    // route (by its pattern; an unmatched URL included) needs a certificate
    // that verified against the client CA unless it is a certless one.
    if (perRouteCerts && !certless.has(req.routeOptions.url ?? '')) {
      const socket = req.raw.socket as TLSSocket;
      if (!socket.authorized) {
        const presented = Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
        const why = presented ? `its client certificate was refused (${String(socket.authorizationError)})` : 'no client certificate was presented';
        throw new WireError('client-cert-required', `this route needs a client certificate signed by the service's client CA: ${why}`);
      }
    }
    const path = req.url.split('?')[0];
    if (publicPaths.includes(path)) return done();
    // By the route that matched (its pattern), not the URL's text, so no
    // spelling of a protocol route's URL can pass as the dashboard's.
    if (ownAuth(req.routeOptions.url ?? path)) return done();
    const header = req.headers.authorization ?? '';
    const m = /^Bearer (.+)$/.exec(header);
    const who = m ? opts.authenticate(m[1]) : undefined;
    if (!who) throw new WireError('unauthorized', m ? 'the bearer token is not valid here' : 'a bearer token is required');
    req.caller = who;
    // The service's own check of the caller's role for this route (the authority's wrong-role), before the body is read.
    opts.authorizeRoute?.(who, req.routeOptions.url ?? '');
    done();
  });
  // No field of the protocol holds a NUL: the record (PostgreSQL text) cannot store one, so it would fail the call as a 500
  // (and the DMZ client's call as authority-unreachable after its retries). Refused once the body passed its schema, before
  // anything is done; the dashboard's pages (own auth) answer in HTML and never write, so they are left to themselves.
  app.addHook('preHandler', (req: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) => {
    if (ownAuth(req.routeOptions.url ?? '')) return done();
    const where = nulAt(req.params, 'params') ?? nulAt(req.body, 'body');
    if (where) throw new WireError('bad-request', `${where} holds a NUL character (\\u0000), which no field of the protocol may hold`);
    done();
  });
  // The request line: request id, route pattern, status, time and caller (never the body or the headers).
  app.addHook('onResponse', (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
    req.log.info({ route: req.routeOptions.url ?? 'unmatched', method: req.method, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10, ...(req.caller ? { caller: req.caller } : {}) }, 'request');
    done();
  });
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; validation?: unknown }, req, reply) => {
    const { status, body } = errorAnswer(err);
    if (status >= 500) req.log.error({ err }, 'request failed');
    void reply.status(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    const { status, body } = errorAnswer(new WireError('not-found', `no route ${req.method} ${req.url}`));
    void reply.status(status).send(body);
  });
  return { app, openapi: () => app.swagger() };
}

type ValidatorFactory = AjvCompiler.BuildCompilerFromPool;
type RouteValidator = (route: { schema: unknown; method: string; url: string; httpPart?: string }) => unknown;

let loadedValidators: Promise<Map<object, unknown>> | undefined;

/** The routes' request validators compiled by `npm run gen:types`, by their schema object (loaded once, on the first service's start). */
function precompiledValidators(): Promise<Map<object, unknown>> {
  loadedValidators ??= import('../specs/validators/routes.js').then((compiled: Record<string, unknown>) => {
    const bySchema = new Map<object, unknown>();
    for (const [name, schema] of Object.entries(ROUTE_SCHEMAS)) if (compiled[name]) bySchema.set(schema, compiled[name]);
    return bySchema;
  });
  return loadedValidators;
}

/**
 * Route schemas Fastify compiled as a service started, as `METHOD url part`:
 * those protocol/schemas/routes.ts does not list (test/route-validators.test.ts
 * wants none for the authority's and the DMZ client's routes).
 */
export const compiledAtStart: string[] = [];

/**
 * A Fastify validator factory that gives a route the validator compiled
 * ahead for its schema object, and compiles any other with Fastify's own
 * compiler, whose Ajv instance is made on the first such schema: when every
 * route's validator was compiled ahead, no Ajv instance is made at all (the
 * module is still imported).
 */
function precompiledFirst(bySchema: Map<object, unknown>): ValidatorFactory {
  const fastifys = AjvCompiler();
  const factory = (external: Parameters<ValidatorFactory>[0], options?: Parameters<ValidatorFactory>[1]) => {
    let fallback: RouteValidator | undefined;
    const compile: RouteValidator = (route) => {
      const ready = typeof route.schema === 'object' && route.schema !== null ? bySchema.get(route.schema) : undefined;
      if (ready) return ready;
      compiledAtStart.push(`${route.method} ${route.url} ${route.httpPart ?? ''}`.trimEnd());
      fallback ??= fastifys(external, options) as unknown as RouteValidator;
      return fallback(route);
    };
    return compile;
  };
  return factory as unknown as ValidatorFactory;
}

/**
 * Where a parsed JSON value holds a NUL character (U+0000) in a string or a
 * key, as `body/vm/owner` (the schema errors' spelling), or undefined.
 */
export function nulAt(value: unknown, path: string): string | undefined {
  // Every request's body goes through here (batches of hundreds of calls on
  // the apply's path): first a walk that builds no path, then the path only
  // for a body that holds a NUL.
  if (!holdsNul(value)) return undefined;
  // Iterative: a body may nest deeper than the call stack (a plan's open-ended fields), and must still be answered.
  const todo: [unknown, string][] = [[value, path]];
  for (let next = todo.pop(); next; next = todo.pop()) {
    const [v, at] = next;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return at;
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) todo.push([v[i], `${at}/${i}`]);
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      for (const [k] of entries) if (k.includes('\u0000')) return `${at} (a key)`;
      for (let i = entries.length - 1; i >= 0; i--) todo.push([entries[i][1], `${at}/${entries[i][0]}`]);
    }
  }
  return undefined;
}

/** Whether a parsed JSON value holds a NUL character in a string or a key (iterative, allocating nothing per node). */
function holdsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (value === null || typeof value !== 'object') return false;
  const todo: unknown[] = [value];
  while (todo.length > 0) {
    const v = todo.pop();
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return true;
    } else if (Array.isArray(v)) {
      for (const x of v) if (x !== null && typeof x !== 'number' && typeof x !== 'boolean') todo.push(x);
    } else if (v !== null && typeof v === 'object') {
      for (const k in v) {
        if (!Object.prototype.hasOwnProperty.call(v, k)) continue;
        if (k.includes('\u0000')) return true;
        const x = (v as Record<string, unknown>)[k];
        if (x !== null && typeof x !== 'number' && typeof x !== 'boolean') todo.push(x);
      }
    }
  }
  return false;
}

/** A route schema with a one-line summary for the OpenAPI document (Fastify ignores the extra key). */
export function doc(summary: string, schema: FastifySchema = {}): FastifySchema {
  return { ...schema, summary } as FastifySchema;
}

/** Listens and returns the base URL (`http://127.0.0.1:PORT`, or `https://…` for a TLS service). */
export async function listen(app: FastifyInstance, host: string, port: number): Promise<string> {
  try {
    await app.listen({ host, port });
  } catch (err) {
    throw listenError(err, host, port);
  }
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('bug: server has no TCP address');
  const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const scheme = 'setSecureContext' in app.server ? 'https' : 'http';
  return `${scheme}://${h}:${addr.port}`;
}

/** Why a service could not listen, as the operator's diagnostic (--port, --host); anything else is passed on. */
function listenError(err: unknown, host: string, port: number): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  // --host is the operator's: escaped and cut short (engine/diags/quote.ts), as every value a diagnostic quotes.
  const shown = clip(host);
  const at = `${shown}:${port}`;
  const why: Record<string, string> = {
    EADDRINUSE: `${at} is in use by another process; stop it, or choose another --port (0: any free port)`,
    EACCES: `this process may not listen on ${at} (ports below 1024 need privileges); choose another --port`,
    EADDRNOTAVAIL: `${shown} is not an address of this machine; choose another --host`,
    ENOTFOUND: `${shown} does not resolve to an address; choose another --host`,
    EAI_AGAIN: `${shown} could not be resolved (the name service did not answer); choose another --host, or an IP address`,
    // The resolver refuses to look the name up at all (a name longer than DNS's 253 characters): it was cli.internal.
    EINVAL: `${shown} is not a host name that can be looked up (a name has at most 253 characters); choose another --host, or an IP address`,
  };
  if (typeof code !== 'string' || !why[code]) return err;
  return new FleetError([diag('apply.serve-config', `cannot listen on ${at}: ${why[code]} (${code}).`)]);
}
