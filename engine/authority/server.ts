import type { FleetRecord, Limits } from '../record/types.ts';
import type { LoadedPack } from '../policy/types.ts';
import {
  advanceBodySchema,
  advanceResponseSchema,
  authorityErrors,
  authorizeBodySchema,
  authorizeResponseSchema,
  batchBodySchema,
  bootAuthorizeBodySchema,
  bootResponseSchema,
  createService,
  doc,
  healthResponseSchema,
  listen,
  reportBodySchema,
  reportResponseSchema,
  streamAnswers,
  tokenTable,
  type AdvanceRequest,
  type AuthorizeRequest,
  type BatchCall,
  type BatchRequest,
  type BootAuthorizeRequest,
  type ReportRequest,
} from '../../protocol/index.ts';
import { createMetrics, type ServiceMetrics } from '../observability/index.ts';
import type { ServerTls } from '../transport/index.ts';
import { Authority } from './authority.ts';
import type { CredentialBroker } from './credentials/types.ts';
import { randomToken } from './keys.ts';

export interface StartAuthorityOptions {
  record: FleetRecord;
  pack: LoadedPack;
  stackName: string;
  /**
   * One bearer token per data center; the token tells the authority which
   * data center is calling. `capacity`: the data center's capacity in the
   * stack (stack.yaml), enforced at the authority (datacenter-capacity).
   */
  dataCenters: readonly { name: string; token: string; capacity?: Limits }[];
  /** Admin tokens (FLEET_ADMIN_TOKEN): the proofs of overrides are checked against them when the stack accepts overrides from admins only. */
  adminTokens?: readonly string[];
  host?: string;
  /** 0 (default): a free port. */
  port?: number;
  /**
   * Secret for disk keys and scoped credentials. It must outlive the process
   * (disk keys are derived from it), so pass loadOrCreateSecret(file); a
   * random one is used when absent, fit only for tests.
   */
  secret?: string;
  credentialTtlMs?: number;
  /** Cloud credentials of cloud data centers (engine/authority/credentials). */
  credentialBroker?: CredentialBroker;
  logger?: boolean;
  /** Serve HTTPS (and with a client CA, require DMZ clients' certificates): engine/transport's loadServerTls. */
  tls?: ServerTls;
}

export interface RunningService {
  url: string;
  /** The service's Prometheus metrics (also at GET /metrics). */
  metrics?: ServiceMetrics;
  close(): Promise<void>;
}

const errors = authorityErrors;

/**
 * Starts the authority's HTTP API (docs/protocol.md, "DMZ client -> authority"):
 * the HTTP layer around the service (authority.ts); statuses come from the
 * wire error registry (protocol/errors.ts) through protocol/http.ts.
 */
export async function startAuthority(opts: StartAuthorityOptions): Promise<RunningService> {
  const core = new Authority({
    record: opts.record,
    pack: opts.pack,
    stackName: opts.stackName,
    secret: opts.secret ?? randomToken(32),
    credentialTtlMs: opts.credentialTtlMs,
    ...(opts.credentialBroker ? { credentialBroker: opts.credentialBroker } : {}),
    capacity: Object.fromEntries(opts.dataCenters.flatMap((d) => (d.capacity ? [[d.name, d.capacity]] : []))),
    ...(opts.adminTokens ? { adminTokens: opts.adminTokens } : {}),
  });
  const metrics = createMetrics('authority', { stack: opts.stackName });
  const { app, openapi } = await createService({
    title: 'dmzfleet authority',
    publicPaths: ['/v1/health', '/openapi.json'],
    authenticate: tokenTable(opts.dataCenters.map((d) => ({ token: d.token, who: d.name }))),
    logger: opts.logger,
    tls: opts.tls,
    metrics,
    // Ready when the record answers a query on a migrated table.
    health: { checks: { record: async () => void (await opts.record.listLocks(opts.stackName)) } },
  });
  const decided = <T extends { decision: string }>(r: T): T => {
    metrics.decisions.inc({ outcome: r.decision });
    return r;
  };
  const advanced = <T extends { create?: { decision: string }; next: readonly { authorize: { decision: string } }[] }>(r: T): T => {
    if (r.create) decided(r.create);
    for (const n of r.next) decided(n.authorize);
    return r;
  };
  const booted = <T extends { approved: boolean }>(r: T): T => {
    metrics.boots.inc({ outcome: r.approved ? 'approved' : 'denied' });
    return r;
  };
  app.get('/v1/health', { schema: doc('Liveness', { response: { 200: healthResponseSchema } }) }, async () => ({
    ok: true,
    service: 'authority' as const,
  }));
  app.get('/openapi.json', { schema: doc('This document') }, async () => openapi());
  app.post<{ Body: AuthorizeRequest }>(
    '/v1/authorize',
    { schema: doc('Approve, modify or veto one request of a DMZ client', { body: authorizeBodySchema, response: { 200: authorizeResponseSchema, ...errors } }) },
    async (req) => decided(await core.authorize(req.caller, req.body)),
  );
  app.post<{ Body: ReportRequest }>(
    '/v1/reports',
    { schema: doc('Outcome of an approved request; moves the record', { body: reportBodySchema, response: { 200: reportResponseSchema, ...errors } }) },
    async (req) => core.report(req.caller, req.body),
  );
  app.post<{ Body: AdvanceRequest }>(
    '/v1/advance',
    {
      schema: doc('A report and the authorization of the same VM\'s next edge in one call (one record statement in the common case)', {
        body: advanceBodySchema,
        response: { 200: advanceResponseSchema, ...errors },
      }),
    },
    async (req) => advanced(await core.advance(req.caller, req.body)),
  );
  app.post<{ Body: BootAuthorizeRequest }>(
    '/v1/boot/authorize',
    { schema: doc('Match a booting VM against the record; releases the disk key', { body: bootAuthorizeBodySchema, response: { 200: bootResponseSchema, ...errors } }) },
    async (req) => booted(await core.bootAuthorize(req.caller, req.body)),
  );
  // The same calls, many per request: a DMZ client with many steps in flight
  // sends its authorizes, reports, advances and boots together (providers/dmz-client),
  // which saves an HTTP exchange per call on both sides. Each call is
  // answered exactly as its single route would answer it, as an NDJSON line
  // as soon as it is done; calls run concurrently (calls about one VM still
  // one at a time, in order).
  const one = (caller: string, c: BatchCall): Promise<unknown> => {
    switch (c.call) {
      case 'authorize':
        return core.authorize(caller, c.body).then(decided);
      case 'report':
        return core.report(caller, c.body);
      case 'advance':
        return core.advance(caller, c.body).then(advanced);
      case 'boot':
        return core.bootAuthorize(caller, c.body).then(booted);
    }
  };
  app.post<{ Body: BatchRequest }>(
    '/v1/batch',
    {
      schema: doc('Several calls of the routes above in one request; answers stream back as NDJSON lines { i, status, body }, each as soon as its call is done', {
        body: batchBodySchema,
        response: errors,
      }),
    },
    (req, reply) =>
      streamAnswers(
        reply,
        req.body.calls.map((c) => () => one(req.caller, c)),
        (err) => app.log.error(err),
      ),
  );
  const url = await listen(app, opts.host ?? '127.0.0.1', opts.port ?? 0);
  return { url, metrics, close: () => app.close() };
}
