import { createHmac } from 'node:crypto';
import { COUNTING, countMessage } from '../observability/message-counts.ts';
import type { FleetRecord, Limits } from '../record/types.ts';
import { SCHEMA_VERSION } from '../record/index.ts';
import type { LoadedPack } from '../policy/types.ts';
import {
  advanceBodySchema,
  advanceResponseSchema,
  authorityErrors,
  authorizeBodySchema,
  authorizeResponseSchema,
  BATCH_EDGES_MAX,
  batchAnswerResponse,
  batchBodySchema,
  batchEdges,
  bootAuthorizeBodySchema,
  bootAuthorizeResponseSchema,
  createService,
  doc,
  healthResponseSchema,
  listen,
  reportBodySchema,
  reportResponseSchema,
  sameSecret,
  streamAnswers,
  tokenTable,
  type AdvanceRequest,
  type AdvanceResponse,
  type AuthorizeRequest,
  type AuthorizeResponse,
  type BootAuthorizeResponse,
  type ReportResponse,
  type BatchCall,
  type BatchRequest,
  type BootAuthorizeRequest,
  type ReportRequest,
  WireError,
  planErrors,
  planRegisterBodySchema,
  planRegisterResponseSchema,
  planSealBodySchema,
  planSealResponseSchema,
  type PlanRegisterRequest,
  type AdminCheckRequest,
  adminCheckBodySchema,
  adminCheckHolds,
  adminCheckResponseSchema,
  type PlanSealRequest,
  BootLimiter,
  errorAnswer,
  errorSchema,
  type BootLimitSettings,
} from '../../protocol/index.ts';
import type { PlanDocument } from '../plan/types.ts';
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import { authorityAdminCheckLimitMetrics, createMetrics, recordMetrics, timeCalls, type ServiceLogOptions, type ServiceMetrics } from '../observability/index.ts';
import type { ServerTls } from '../transport/index.ts';
import { Authority } from './authority.ts';
import type { CredentialBroker } from './credentials/types.ts';
import { ScopedTokenIssuer } from './credentials/scoped.ts';
import { randomToken } from './keys.ts';
import { recordSource, registerUi, uiSessionBinding, type UiRole } from '../ui/index.ts';
import { codeOf, detailOf, reasonCode } from './answers.ts';
import { PlanSeals, gatedCalls } from './plan-seals.ts';
import { closeGracefully } from '../../protocol/index.ts';

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
  /**
   * The CLI's tokens at the authority (FLEET_AUTHORITY_TOKEN): with any, the
   * authority seals and registers the stack's plans (POST /v1/plans/seal,
   * /v1/plans/register; plan-seals.ts) and approves only requests of a plan
   * registered with it, for the members that plan changes. A deployed stack
   * (one with an `authority` address in stack.yaml) runs with them.
   */
  planTokens?: readonly string[];
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
  /** JSON-line logs (engine/observability/logs.ts); absent: none. */
  logger?: boolean | ServiceLogOptions;
  /** Serve HTTPS (and with a client CA, require DMZ clients' certificates): engine/transport's loadServerTls. */
  tls?: ServerTls;
  /**
   * Serve the read-only dashboard under /ui (engine/ui) to people signing in
   * with one of these tokens; no dashboard when absent or when both are unset.
   */
  ui?: {
    adminToken?: string;
    readToken?: string;
    /** Served in plain HTTP behind a TLS-terminating proxy (`--insecure` off loopback): browsers reach it over HTTPS, so its cookie is marked Secure too. */
    behindTlsProxy?: boolean;
    /** Listening on loopback: the host names the dashboard answers to besides `localhost` and IP addresses (engine/ui's loopbackHosts, FLEET_UI_HOSTS). Absent: any. */
    loopbackHosts?: readonly string[];
  };
  /** Authorities serving this record (Authority's `replicas`): more than 1 turns the row cache and approvals ahead off. */
  replicas?: number;
  /** On close, how long requests in flight may take to finish before their connections are cut. Default 20 000. */
  drainMs?: number;
  /** The clock of POST /v1/admin-check's limit of refused checks per data center (AUTHORITY_ADMIN_CHECK_LIMIT), ms; injected in tests. Default Date.now. */
  adminCheckLimitClock?: () => number;
}

export interface RunningService {
  url: string;
  /** The service's Prometheus metrics (also at GET /metrics). */
  metrics?: ServiceMetrics;
  /** Stops accepting, lets requests in flight finish (bounded), then closes. */
  close(): Promise<void>;
}

const errors = authorityErrors;

/**
 * The limit of the authority's POST /v1/admin-check (a DMZ client passing on
 * fleet apply's admin-token check), per data center: the caller's token, not
 * its address. 20 refused checks (a proof not made with the admin token) per
 * minute, then that data center's checks are answered 429
 * admin-check-rate-limited with Retry-After until the window ends, without
 * checking the proof; a correct check never counts (protocol/refusal-limit.ts,
 * strict windows included). The route answers only a data center's token, but
 * a DMZ client that is compromised, or buggy, could otherwise try admin tokens
 * without end, whatever its own limit per source address (ADMIN_CHECK_LIMIT:
 * 5 per address, so 20 is four addresses' worth of wrong tokens through one
 * data center). A token of 32 random bytes is beyond guessing at any rate: the
 * limit keeps the authority's log and CPU quiet and makes the attempt show
 * (fleet_authority_admin_check_limited_total, docs/operations.md).
 *
 * The same limit, with a budget of its own, holds at POST
 * /v1/plans/admin-check (fleet apply's check for a stack whose stack.yaml
 * names this authority) per caller token: the CLI's (one identity, however
 * many plan tokens open it). Not per source address: the route answers only
 * that token, so its caller is who holds it, and addresses are cheap to
 * spread over (behind a proxy or NAT every CLI would share one anyway). Its
 * cost: someone holding the CLI's token can keep the admin check refused
 * for a window (20 wrong proofs a minute) — but that token already seals
 * and registers plans, and an apply with the right admin token asks once.
 */
export const AUTHORITY_ADMIN_CHECK_LIMIT: Readonly<BootLimitSettings> = Object.freeze({ denials: 20, windowMs: 60_000, maxAddresses: 1_000 });

/**
 * One replica's share of AUTHORITY_ADMIN_CHECK_LIMIT when `replicas`
 * authorities serve the stack (docs/operations.md, "Replicas"): each counts
 * the refused checks it answers in its own memory, so with the whole budget
 * each, N replicas behind a proxy let N × 20 wrong proofs a minute through.
 * With a share each (rounded up), the stack's budget stays 20 however the
 * proxy spreads the checks; a proxy that sends one caller to one replica
 * limits it sooner (a correct check never counts).
 */
export function adminCheckLimitOf(replicas: number): Readonly<BootLimitSettings> {
  const n = Math.max(1, Math.floor(replicas));
  return n === 1 ? AUTHORITY_ADMIN_CHECK_LIMIT : Object.freeze({ ...AUTHORITY_ADMIN_CHECK_LIMIT, denials: Math.ceil(AUTHORITY_ADMIN_CHECK_LIMIT.denials / n) });
}
/**
 * The largest body of a plan route (the plan document itself): 128 MiB, about
 * 100 000 member changes. Every other route takes 1 MiB (protocol/http.ts);
 * a plan of a fleet of thousands is more (about 1 KiB per member change), and
 * only the CLI's token reaches these routes (checked before the body is read).
 */
export const PLAN_BODY_LIMIT = 128 * 1024 * 1024;
/** Who the CLI's token at the authority is (not a data center name: those never start with `@`). */
const CLI_CALLER = '@cli';

/** The dashboard's sign-in check: which role a token grants (compared in constant time), or undefined for no dashboard. */
export function uiTokens(t: StartAuthorityOptions['ui']): ((token: string) => UiRole | undefined) | undefined {
  if (!t?.adminToken && !t?.readToken) return undefined;
  const table: { token: string; who: UiRole }[] = [];
  if (t.adminToken) table.push({ token: t.adminToken, who: 'admin' });
  if (t.readToken) table.push({ token: t.readToken, who: 'read' });
  return (token) => table.find((e) => sameSecret(e.token, token))?.who;
}
const now = () => performance.now();
const ms = (t0: number) => Math.round((performance.now() - t0) * 10) / 10;

/**
 * Starts the authority's HTTP API (docs/protocol.md, "DMZ client → authority"):
 * the HTTP layer around the service (authority.ts); statuses come from the
 * wire error registry (protocol/errors.ts) through protocol/http.ts.
 */
export async function startAuthority(opts: StartAuthorityOptions): Promise<RunningService> {
  const secret = opts.secret ?? randomToken(32);
  const metrics = createMetrics('authority', { stack: opts.stackName });
  // Every record call the authority makes is timed (fleet_record_call_duration_seconds).
  const record = timeCalls(opts.record, recordMetrics(metrics));
  const core = new Authority({
    record,
    pack: opts.pack,
    stackName: opts.stackName,
    secret,
    credentialTtlMs: opts.credentialTtlMs,
    ...(opts.credentialBroker ? { credentialBroker: opts.credentialBroker } : {}),
    scopedTokens: new ScopedTokenIssuer(opts.dataCenters, secret),
    replicas: opts.replicas ?? 1,
    capacity: Object.fromEntries(opts.dataCenters.flatMap((d) => (d.capacity ? [[d.name, d.capacity]] : []))),
    ...(opts.adminTokens ? { adminTokens: opts.adminTokens } : {}),
  });
  const ui = uiTokens(opts.ui);
  let draining = false;
  const { app, openapi } = await createService({
    title: 'dmzfleet authority',
    publicPaths: ['/v1/health', '/openapi.json'],
    ...(ui ? { ownAuthPrefixes: ['/ui'] } : {}),
    authenticate: tokenTable([...opts.dataCenters.map((d) => ({ token: d.token, who: d.name })), ...(opts.planTokens ?? []).map((token) => ({ token, who: CLI_CALLER }))]),
    // The CLI's token opens the plan routes only; a data center's token everything else (wrong-role). Judged as the
    // request arrives, before its body is read: a plan route takes a body of up to PLAN_BODY_LIMIT, only from the CLI.
    authorizeRoute: (caller, route) => {
      const planRoute = route.startsWith('/v1/plans/');
      if (planRoute !== (caller === CLI_CALLER)) {
        throw new WireError('wrong-role', planRoute ? "the plan routes take the CLI's token at the authority (FLEET_AUTHORITY_TOKEN), not a data center's" : "the CLI's token at the authority opens the plan routes only");
      }
    },
    logger: opts.logger,
    tls: opts.tls,
    metrics,
    // Ready when the record answers a query on a migrated table.
    health: {
      checks: {
        // Reachable and migrated: the schema this build knows, and a query on one of its tables.
        record: async () => {
          const version = await opts.record.schemaVersion();
          if (version !== SCHEMA_VERSION) throw new Error(`the record has schema version ${version}, this authority knows ${SCHEMA_VERSION}`);
          // One row at most: the probe is public, and a whole-stack apply holds a lock per fleet.
          await opts.record.listLocks(opts.stackName, { limit: 1 });
        },
      },
      draining: () => draining,
    },
  });
  /**
   * One log line and one count per decision: data center, VM, edge, decision, reason and its code; never the credentials or tokens the answer carries.
   * A veto at info, an approval at debug (issue 20: a line per approval was a tenth of the authority's CPU in an apply; docs/operations.md "Logs").
   */
  const decided = (log: FastifyBaseLogger, caller: string, req: AuthorizeRequest, r: AuthorizeResponse, t0: number): AuthorizeResponse => {
    const code = reasonCode(r);
    metrics.decisions.inc({ outcome: r.decision, reason: code });
    log[r.decision === 'vetoed' ? 'info' : 'debug'](
      {
        dataCenter: caller,
        vm: r.vm?.address ?? (req.vm ? `${req.vm.fleet}/${req.vm.index}` : undefined),
        vmId: req.vmId,
        requestId: req.requestId,
        kind: req.kind,
        from: req.from,
        to: req.to,
        operation: r.operation,
        decision: r.decision,
        reason: r.reason,
        code,
        ms: ms(t0),
      },
      'decision',
    );
    return r;
  };
  const reported = (log: FastifyBaseLogger, caller: string, req: ReportRequest, r: ReportResponse, t0: number): ReportResponse => {
    // A report of a move carried out (moved, or already there) at debug; a failure and a noted report at info.
    const level = req.outcome === 'ok' && (r.effect === 'moved' || r.effect === 'already') ? 'debug' : 'info';
    log[level]({ dataCenter: caller, vm: r.vm.address, vmId: req.vmId, requestId: req.requestId, from: req.from, to: req.to, outcome: req.outcome, effect: r.effect, state: r.vm.state, ms: ms(t0) }, 'report');
    return r;
  };
  const advanced = (log: FastifyBaseLogger, caller: string, req: AdvanceRequest, r: AdvanceResponse, t0: number): AdvanceResponse => {
    if (req.create && r.create) decided(log, caller, req.create, r.create, t0);
    if (req.report && r.report) reported(log, caller, req.report, r.report, t0);
    r.next.forEach((n, j) => req.next[j] && decided(log, caller, req.next[j], n.authorize, t0));
    return r;
  };
  const booted = (log: FastifyBaseLogger, caller: string, req: BootAuthorizeRequest, r: BootAuthorizeResponse, t0: number): BootAuthorizeResponse => {
    const code = r.approved ? 'matches' : (codeOf(r) ?? 'denied');
    metrics.boots.inc({ outcome: r.approved ? 'approved' : 'denied', reason: code });
    // The boot token and the disk key stay out: the VM, its cloud id and the verdict only. A denial at info, an approval at debug.
    // A denial's reason here is the operator's (why: also its `detail`, but for another data center's VM), not the generic one the VM is answered (engine/authority/boot.ts).
    const reason = detailOf(r) ?? r.reason;
    log[r.approved ? 'debug' : 'info']({ dataCenter: caller, vmId: req.vmId, cloudId: req.cloudId, decision: r.approved ? 'approved' : 'denied', reason, code, ms: ms(t0) }, 'boot');
    return r;
  };
  // fleet apply's check of its FLEET_ADMIN_TOKEN before any change, where the protect rule's override: admin makes every
  // overridden deletion carry a proof: a wrong token was found only at the first such request, after the plan's other
  // changes were applied. Read-only (nothing written); the proof and nonce never logged; compared in constant time.
  const adminTokens = opts.adminTokens ?? [];
  const adminCheck = (log: FastifyBaseLogger, body: AdminCheckRequest, dataCenter?: string): { ok: true } => {
    const ok = adminCheckHolds(adminTokens, opts.stackName, body.nonce, body.proof);
    log.info({ ...(dataCenter ? { dataCenter } : {}), outcome: ok ? 'ok' : 'refused' }, 'admin check');
    if (!ok) {
      throw new WireError('admin-proof-refused', adminTokens.length === 0 ? 'this authority holds no admin token (FLEET_ADMIN_TOKEN is not set where it runs): it accepts no override under override: admin' : 'the proof was not made with the admin token this authority holds');
    }
    return { ok: true as const };
  };
  // Refused checks count against the caller (AUTHORITY_ADMIN_CHECK_LIMIT): at POST /v1/admin-check its data center, at
  // POST /v1/plans/admin-check the CLI's token (one identity, whatever address it comes from). Past its budget, 429 with
  // Retry-After and the proof not checked, one warn line per caller and window (never the body), and no request line
  // per 429. A malformed body never reaches the handler (400: it tests no token) and is not counted.
  const adminLimit = new BootLimiter(adminCheckLimitOf(opts.replicas ?? 1), opts.adminCheckLimitClock);
  const adminLimited = authorityAdminCheckLimitMetrics(metrics);
  const share = (opts.replicas ?? 1) > 1 ? `; this replica's share of ${AUTHORITY_ADMIN_CHECK_LIMIT.denials} across ${opts.replicas} replicas` : '';
  const limitedAdminCheck = (req: FastifyRequest<{ Body: AdminCheckRequest }>, reply: FastifyReply, route: string): { ok: true } | FastifyReply => {
    const caller = req.caller;
    const dc = caller === CLI_CALLER ? undefined : caller;
    const a = adminLimit.admit(caller);
    if (!a.ok) {
      adminLimited.inc(dc !== undefined ? { route, data_center: dc } : { route });
      const { windowMs } = adminLimit.settings;
      const until = new Date(a.until).toISOString();
      if (a.first) req.log.warn({ ...(dc !== undefined ? { dataCenter: dc } : { caller: 'cli' }), route, refused: a.denials, windowMs, until }, 'admin check limited');
      if ((req.log as { isLevelEnabled?: (l: string) => boolean }).isLevelEnabled?.('info') ?? true) req.log = req.log.child({}, { level: 'warn' });
      const whose =
        dc !== undefined
          ? `admin-token checks of data center ${dc} are refused until ${until}: it had ${a.denials} refused checks within ${windowMs / 1000} s (the authority's limit per data center, whatever address they came from${share})`
          : `admin-token checks with the CLI's token at this authority are refused until ${until}: it had ${a.denials} refused checks within ${windowMs / 1000} s (the authority's limit per caller token, whatever address they came from${share})`;
      const { status, body } = errorAnswer(new WireError('admin-check-rate-limited', `${whose}; the proof was not checked`));
      return reply.code(status).header('retry-after', String(Math.max(1, Math.ceil(a.waitMs / 1000)))).send(body);
    }
    let refused = true;
    try {
      const ok = adminCheck(req.log, req.body, dc);
      refused = false;
      return ok;
    } finally {
      adminLimit.settle(a.ticket, refused);
    }
  };
  const seals = opts.planTokens?.length ? new PlanSeals({ record, stackName: opts.stackName, secret }) : undefined;
  // With plan seals, every call first passes the sealed-plan gate (plan-seals.ts); without, the core's own.
  const calls = seals ? gatedCalls(core, seals) : core;
  app.get('/v1/health', { schema: doc('Liveness', { response: { 200: healthResponseSchema } }) }, async () => ({
    ok: true,
    service: 'authority' as const,
  }));
  if (seals) {
    const sealing = seals;
    app.post<{ Body: PlanSealRequest }>(
      '/v1/plans/seal',
      { bodyLimit: PLAN_BODY_LIMIT, schema: doc("Seal a deployed stack's plan (fleet plan --out); the CLI's token", { body: planSealBodySchema, response: { 200: planSealResponseSchema, ...planErrors } }) },
      async (req) => {
        const seal = await sealing.seal(req.body.plan as unknown as PlanDocument);
        req.log.info({ planId: req.body.plan.id, digest: seal.digest, keyId: seal.keyId }, 'plan sealed');
        return { seal };
      },
    );
    app.post<{ Body: PlanRegisterRequest }>(
      '/v1/plans/register',
      { bodyLimit: PLAN_BODY_LIMIT, schema: doc('Verify a sealed plan and admit requests for the members it changes (fleet apply); the CLI\'s token', { body: planRegisterBodySchema, response: { 200: planRegisterResponseSchema, ...planErrors } }) },
      async (req) => {
        const r = await sealing.register(req.body.plan as unknown as PlanDocument);
        req.log.info({ planId: r.planId, digest: r.digest, members: r.members }, 'plan registered');
        return r;
      },
    );
    app.post<{ Body: AdminCheckRequest }>(
      '/v1/plans/admin-check',
      {
        schema: doc("Check a proof made with the admin token (fleet apply, before any change, when its plan needs an override: admin); the CLI's token; read-only; refused checks limited per caller token (429)", {
          body: adminCheckBodySchema,
          response: { 200: adminCheckResponseSchema, ...planErrors, 429: errorSchema },
        }),
      },
      async (req, reply) => limitedAdminCheck(req, reply, '/v1/plans/admin-check'),
    );
  }
  // The same check for a DMZ client (its data center's token), which passes on the CLI's POST /v1/admin-check: a stack
  // whose stack.yaml names no authority reaches this one only through its DMZ clients. Registered with or without plan
  // seals (an authority a stack does not name seals none). The answer is the same as at /v1/plans/admin-check; the
  // authority is still the judge of every overridden deletion (each request's Override.proof, policy.ts judgeProtect),
  // so a DMZ client that lied about this answer would gain nothing but an apply that is vetoed at that deletion.
  // Refused checks count against the caller's data center (limitedAdminCheck above).
  app.post<{ Body: AdminCheckRequest }>(
    '/v1/admin-check',
    {
      schema: doc("Check a proof made with the admin token, for a DMZ client passing on fleet apply's check; a data center's token; read-only; refused checks limited per data center (429)", {
        body: adminCheckBodySchema,
        response: { 200: adminCheckResponseSchema, ...errors, 429: errorSchema },
      }),
    },
    async (req, reply) => limitedAdminCheck(req, reply, '/v1/admin-check'),
  );
  app.get('/openapi.json', { schema: doc('This document') }, async () => openapi());
  app.post<{ Body: AuthorizeRequest }>(
    '/v1/authorize',
    { schema: doc('Approve, modify or veto one request of a DMZ client', { body: authorizeBodySchema, response: { 200: authorizeResponseSchema, ...errors } }) },
    async (req) => {
      const t0 = now();
      return decided(req.log, req.caller, req.body, await calls.authorize(req.caller, req.body), t0);
    },
  );
  app.post<{ Body: ReportRequest }>(
    '/v1/reports',
    { schema: doc('Outcome of an approved request; moves the record', { body: reportBodySchema, response: { 200: reportResponseSchema, ...errors } }) },
    async (req) => {
      const t0 = now();
      return reported(req.log, req.caller, req.body, await calls.report(req.caller, req.body), t0);
    },
  );
  app.post<{ Body: AdvanceRequest }>(
    '/v1/advance',
    {
      schema: doc('A report and the authorization of the same VM\'s next edge in one call (one record statement in the common case)', {
        body: advanceBodySchema,
        response: { 200: advanceResponseSchema, ...errors },
      }),
    },
    async (req) => {
      const t0 = now();
      return advanced(req.log, req.caller, req.body, await calls.advance(req.caller, req.body), t0);
    },
  );
  app.post<{ Body: BootAuthorizeRequest }>(
    '/v1/boot/authorize',
    { schema: doc('Match a booting VM against the record; releases the disk key', { body: bootAuthorizeBodySchema, response: { 200: bootAuthorizeResponseSchema, ...errors } }) },
    async (req) => {
      const t0 = now();
      return booted(req.log, req.caller, req.body, await calls.bootAuthorize(req.caller, req.body), t0);
    },
  );
  // The same calls, many per request: a DMZ client with many steps in flight
  // sends its authorizes, reports, advances and boots together (providers/dmz-client),
  // which saves an HTTP exchange per call on both sides. Each call is
  // answered exactly as its single route would answer it, as an NDJSON line
  // as soon as it is done; calls run concurrently (calls about one VM still
  // one at a time, in order).
  const one = (log: FastifyBaseLogger, caller: string, c: BatchCall): Promise<unknown> => {
    const t0 = now();
    if (COUNTING) countMessage(`calls received: ${c.call}`);
    switch (c.call) {
      case 'authorize':
        return calls.authorize(caller, c.body).then((r) => decided(log, caller, c.body, r, t0));
      case 'report':
        return calls.report(caller, c.body).then((r) => reported(log, caller, c.body, r, t0));
      case 'advance':
        return calls.advance(caller, c.body).then((r) => advanced(log, caller, c.body, r, t0));
      case 'boot':
        return calls.bootAuthorize(caller, c.body).then((r) => booted(log, caller, c.body, r, t0));
    }
  };
  app.post<{ Body: BatchRequest }>(
    '/v1/batch',
    {
      schema: doc('Several calls of the routes above in one request; answers stream back as NDJSON lines { i, status, body }, each as soon as its call is done', {
        body: batchBodySchema,
        response: { 200: batchAnswerResponse, ...errors },
      }),
    },
    (req, reply) => {
      // The schema bounds the calls and each advance's edges; their sum, here (an advance of 20 next edges counts 21).
      const n = batchEdges(req.body.calls);
      if (n > BATCH_EDGES_MAX) {
        throw new WireError(
          'bad-request',
          `body/calls holds ${n} edges, an advance counting its report or create and each next edge; a batch holds at most ${BATCH_EDGES_MAX}: send the rest in another batch (nothing was decided)`,
        );
      }
      return streamAnswers(
        reply,
        req.body.calls.map((c) => () => one(req.log, req.caller, c)),
        (err) => req.log.error({ err }, 'batch call failed'),
      );
    },
  );
  if (ui) {
    registerUi(app, {
      source: recordSource(opts.record, opts.stackName, opts.pack),
      authorize: ui,
      // Derived from the authority's secret: sessions outlive a restart and hold on every replica.
      sessionKey: createHmac('sha256', secret).update('ui-session-key').digest(),
      // ...and bound to each role's token: rotating (or unsetting) a token ends the sessions signed in with it.
      binding: uiSessionBinding(opts.ui ?? {}),
      secure: opts.tls !== undefined || opts.ui?.behindTlsProxy === true,
      ...(opts.ui?.loopbackHosts ? { loopbackHosts: opts.ui.loopbackHosts } : {}),
    });
  }
  const url = await listen(app, opts.host ?? '127.0.0.1', opts.port ?? 0);
  return {
    url,
    metrics,
    close: async () => {
      // Readiness fails first (balancers stop sending), then no new connection is accepted and requests in flight finish.
      draining = true;
      await closeGracefully(app, opts.drainMs ?? 20_000);
    },
  };
}
