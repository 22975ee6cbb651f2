// The DMZ client's HTTP routes (docs/protocol.md): each parses its request
// (Fastify validates it against the route's schema), calls the step runner,
// the runs or the driver's reads, and answers with what they return; errors
// become their protocol answer (protocol/http.ts, errorAnswer).
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Counter } from 'prom-client';
import { COUNTING, countMessage } from '../../engine/observability/message-counts.ts';
import type { DmzClientMetrics } from '../../engine/observability/index.ts';
import { ProtocolError, WireError, doc, errorAnswer, streamAnswers, type Part } from '../../protocol/index.ts';
import type { BootLimiter, BootRefusal, BootTicket } from './boot-limit.ts';
import { AuthorityAdminCheckLimited } from './authority-client.ts';
import type { AdminCheckRequest, AdminCheckResponse, BootAuthorizeRequest, BootAuthorizeResponse, BootResponse } from '../../protocol/index.ts';
import type { Driver, ScopedCredentials } from '../drivers/types.ts';
import type { AgentReport, BatchStep, BootRequest, CreateVmRequest, DeleteVmRequest, StepBatchRequest, StepResult, TransitionRequest } from '../../protocol/index.ts';
import type { Runs } from './runs.ts';
import {
  actualVmSchema,
  adminCheckBodySchema,
  adminCheckResponseSchema,
  agentReportAnswerSchema,
  agentReportSchema,
  batchAnswerResponse,
  BOOT_BODY_LIMIT,
  STEP_BATCH_MAX,
  batchSteps,
  bootBodySchema,
  bootResponseSchema,
  createBodySchema,
  deleteBodySchema,
  errorSchema,
  healthResponseSchema,
  listResponseSchema,
  stepErrors,
  stepBatchBodySchema,
  stepResultSchema,
  transitionBodySchema,
  vmIdParams,
} from '../../protocol/index.ts';
import type { StepRunner } from './step.ts';

export interface DmzRoutes {
  dataCenter: string;
  /** For its reads (refresh) and its kind. */
  driver: Driver;
  steps: StepRunner;
  runs: Runs;
  /** The authority's boot check (AuthorityClient.boot) and admin-token check (AuthorityClient.adminCheck). */
  authority: { boot(body: BootAuthorizeRequest): Promise<BootAuthorizeResponse>; adminCheck(body: AdminCheckRequest): Promise<AdminCheckResponse> };
  /** The service's OpenAPI document (createService). */
  openapi: () => unknown;
  /** Each step's time goes into stepSeconds (by operation and outcome). */
  metrics: DmzClientMetrics;
  /** The boot endpoint's limit of denials per source address (boot-limit.ts), and its counter of refused requests. */
  bootLimit: { limiter: BootLimiter; limited: Counter<'route'> };
  /** POST /v1/admin-check's limit of refused checks per source address (ADMIN_CHECK_LIMIT), and its counter of refused requests. */
  adminCheckLimit: { limiter: BootLimiter; limited: Counter };
  /** The clock (ms) of the authority's admin-check 429 held until its Retry-After passes; the limiters' clock in tests. Default Date.now. */
  now?: () => number;
}

/** Where a step's log line gets its VM and edge from: the step as the caller sent it. */
function stepFields(s: BatchStep): { op: string; vmId: string; vm?: string; from?: string; to?: string } {
  if (s.op === 'create') return { op: 'create', vmId: s.body.vm.id, vm: `${s.body.vm.fleet}/${s.body.vm.index}` };
  return { op: s.op, vmId: s.vmId, from: s.body.from, ...(s.body.to !== undefined ? { to: s.body.to } : {}) };
}

/** Registers every route of the DMZ client on `app`. */
export function registerRoutes(app: FastifyInstance, r: DmzRoutes): void {
  const { dataCenter: dc, driver, steps, runs, authority } = r;

  /**
   * One step carried out (authorize -> driver -> report): its time by
   * operation and outcome, and one log line with the data center, the VM's
   * address, the edge, the authority's decision and reason, and the outcome.
   */
  /** Whether `log` writes lines of `level` (pino's isLevelEnabled; a logger without it: yes). */
  const levelEnabled = (log: FastifyBaseLogger, level: string): boolean => (log as { isLevelEnabled?: (l: string) => boolean }).isLevelEnabled?.(level) ?? true;
  const observed = async (log: FastifyBaseLogger, s: BatchStep, work: () => Promise<StepResult>): Promise<StepResult> => {
    const t0 = performance.now();
    const took = () => (performance.now() - t0) / 1000;
    try {
      const res = await work();
      r.metrics.stepSeconds.observe({ operation: res.operation, outcome: res.outcome }, took());
      // A step carried out at debug; a failed or vetoed one at info (docs/operations.md "Logs").
      // The line is built only when its level is logged (a carried-out step at info: never).
      const level = res.outcome === 'ok' ? 'debug' : 'info';
      if (levelEnabled(log, level)) {
        log[level](
          {
            dataCenter: dc,
            ...stepFields(s),
            ...(res.vm ? { vm: res.vm.address, state: res.vm.state } : {}),
            requestId: res.requestId,
            operation: res.operation,
            decision: res.decision,
            reason: res.reason,
            outcome: res.outcome,
            ...(res.error ? { code: res.error.code } : {}),
            ms: Math.round(took() * 10_000) / 10,
          },
          'step',
        );
      }
      return res;
    } catch (err) {
      r.metrics.stepSeconds.observe({ operation: 'unknown', outcome: 'error' }, took());
      const code = err instanceof WireError ? err.code : 'internal';
      log.warn({ dataCenter: dc, ...stepFields(s), outcome: 'error', code, reason: (err as Error).message, ms: Math.round(took() * 10_000) / 10 }, 'step');
      throw err;
    }
  };

  /** A refusal of the caller's (4xx) is a denial; a 5xx (the authority unreachable) decided nothing. */
  const refused = (status: number) => status >= 400 && status < 500;

  /**
   * A request from an address past its limit's budget (BootLimiter.admit refused it): one warn line per address and
   * window (`fields`, never anything of the body) instead of a request line per refusal, and 429 `code` with
   * Retry-After; nothing is asked of the authority.
   */
  const overLimit = (req: FastifyRequest, reply: FastifyReply, a: BootRefusal, line: string, fields: Record<string, unknown>, err: WireError) => {
    if (a.first) req.log.warn({ dataCenter: dc, address: req.ip, ...fields, until: new Date(a.until).toISOString() }, line);
    if (levelEnabled(req.log, 'info')) req.log = req.log.child({}, { level: 'warn' });
    const { status, body } = errorAnswer(err);
    return reply.code(status).header('retry-after', String(Math.max(1, Math.ceil(a.waitMs / 1000)))).send(body);
  };

  /** Reads use the DMZ client's own read-only credentials; only writes need the authority's. */
  const readCredentials = (): ScopedCredentials => ({
    dataCenter: dc,
    token: 'dmz-client-read-only',
    expiresAt: new Date(Date.now() + 60_000).toISOString(),
  });

  app.get('/v1/health', { schema: doc('Liveness', { response: { 200: healthResponseSchema } }) }, async () => ({
    ok: true,
    service: 'dmz-client' as const,
    dataCenter: dc,
    driver: driver.kind,
  }));
  app.get('/openapi.json', { schema: doc('This document') }, async () => r.openapi());

  app.post<{ Body: CreateVmRequest }>(
    '/v1/vms',
    { schema: doc('Enter a new VM in the record, in the initial state', { body: createBodySchema, response: { 200: stepResultSchema, ...stepErrors } }) },
    async (req) => observed(req.log, { op: 'create', body: req.body }, () => steps.create(req.body)),
  );

  app.post<{ Body: TransitionRequest; Params: { id: string } }>(
    '/v1/vms/:id/transitions',
    { schema: doc('Carry a VM along one lifecycle edge, or resize it', { params: vmIdParams, body: transitionBodySchema, response: { 200: stepResultSchema, ...stepErrors } }) },
    async (req) => observed(req.log, { op: 'transition', vmId: req.params.id, body: req.body }, () => steps.transition(req.params.id, req.body)),
  );

  app.delete<{ Body: DeleteVmRequest; Params: { id: string } }>(
    '/v1/vms/:id',
    { schema: doc('The last edge: delete the VM in the cloud, into the terminal state', { params: vmIdParams, body: deleteBodySchema, response: { 200: stepResultSchema, ...stepErrors } }) },
    async (req) => observed(req.log, { op: 'delete', vmId: req.params.id, body: req.body }, () => steps.remove(req.params.id, req.body)),
  );

  // Many steps in one request (docs/protocol.md, "Batches"): each answered
  // as its single route would answer it, one NDJSON line per step as soon as
  // it is done (so a quick step never waits for a slow one), in completion
  // order. Lines finishing in the same tick go out in one write.
  app.post<{ Body: StepBatchRequest }>(
    '/v1/batch',
    {
      schema: doc('Several create, transition and delete steps in one request; answers stream back as NDJSON lines { i, status, body }', {
        body: stepBatchBodySchema,
        response: { 200: batchAnswerResponse, 400: errorSchema, 401: errorSchema },
      }),
    },
    (req, reply) => {
      // The schema bounds the items and each run's steps; their sum, here (a run of 50 steps counts 50).
      const n = batchSteps(req.body.steps);
      if (COUNTING) countMessage('steps received', n);
      if (n > STEP_BATCH_MAX) {
        throw new WireError('bad-request', `body/steps holds ${n} steps, a run counting its steps; a batch holds at most ${STEP_BATCH_MAX}: send the rest in another batch (nothing was done)`);
      }
      return streamAnswers(
        reply,
        req.body.steps.map((s) => (part: Part) =>
          s.op === 'run'
            ? runs.run(s, (k, work, lazy) => part(k, () => observed(req.log, s.steps[k], work as () => Promise<StepResult>), lazy))
            : observed(req.log, s, () => steps.one(s)),
        ),
        (err) => req.log.error({ err }, 'batch step failed'),
      );
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/vms/:id',
    { schema: doc('What the cloud holds for a VM (for refresh)', { params: vmIdParams, response: { 200: actualVmSchema, 401: errorSchema, 404: errorSchema } }) },
    async (req) => {
      const vm = await driver.get(readCredentials(), { vmId: req.params.id, cloudId: null });
      if (!vm) throw new WireError('not-found', `data center ${dc} has no VM ${req.params.id}`);
      return vm;
    },
  );

  app.get('/v1/vms', { schema: doc('Every VM the cloud holds (for refresh)', { response: { 200: listResponseSchema, 401: errorSchema } }) }, async () => ({
    vms: await driver.list(readCredentials()),
  }));

  // fleet apply's check of FLEET_ADMIN_TOKEN before any change, for a stack whose stack.yaml names no authority: the
  // body (a nonce and an HMAC proof made with the token; never the token) goes to this client's authority unchanged,
  // and the answer comes back as ok or admin-proof-refused, nothing more. Nothing of the body is logged (Fastify's
  // request lines carry the method and URL only); one line per check with its outcome. Refused checks count against
  // the caller's address (ADMIN_CHECK_LIMIT): past its budget, 429 without asking the authority.
  // The authority's own 429 for this data center (its limit per data center) is held until its Retry-After passes: meanwhile
  // every check is answered that 429 here (its message, the Retry-After left), without asking the authority again.
  const { limiter: adminLimit, limited: adminLimited } = r.adminCheckLimit;
  const clock = r.now ?? Date.now;
  let authorityHold: { until: number; message: string } | undefined;
  const adminTickets = new WeakMap<FastifyRequest, BootTicket>();
  app.post<{ Body: AdminCheckRequest }>(
    '/v1/admin-check',
    {
      schema: doc("Pass fleet apply's admin-token check (a proof, never the token) on to the authority; answers ok or admin-proof-refused; read-only", {
        body: adminCheckBodySchema,
        response: { 200: adminCheckResponseSchema, 400: errorSchema, 401: errorSchema, 403: errorSchema, 429: errorSchema, 502: errorSchema, 503: errorSchema },
      }),
      onRequest: async (req, reply) => {
        const a = adminLimit.admit(req.ip);
        if (a.ok) {
          adminTickets.set(req, a.ticket);
          return;
        }
        adminLimited.inc();
        const { windowMs } = adminLimit.settings;
        const err = new WireError(
          'admin-check-rate-limited',
          `admin-token checks from ${req.ip} are refused until ${new Date(a.until).toISOString()}: it had ${a.denials} refused checks within ${windowMs / 1000} s; nothing was asked of the authority`,
        );
        return overLimit(req, reply, a, 'admin check limited', { route: '/v1/admin-check', refused: a.denials, windowMs }, err);
      },
      // Settled by the answer's status: a refusal of the caller's (4xx: a wrong proof, a malformed body) counts; an ok,
      // the authority out of reach (5xx) or its limit per data center (429: the proof was not checked) decided nothing
      // about this caller's proof, and does not.
      onResponse: async (req, reply) => {
        const t = adminTickets.get(req);
        if (t) adminLimit.settle(t, refused(reply.statusCode) && reply.statusCode !== 429);
      },
    },
    async (req, reply) => {
      const held = authorityHold;
      if (held) {
        const waitMs = held.until - clock();
        if (waitMs > 0) {
          req.log.info({ dataCenter: dc, outcome: 'limited', code: 'admin-check-rate-limited', held: true }, 'admin check');
          const { status, body } = errorAnswer(new AuthorityAdminCheckLimited(held.message, undefined));
          return reply.code(status).header('retry-after', String(Math.ceil(waitMs / 1000))).send(body);
        }
        if (authorityHold === held) authorityHold = undefined;
      }
      try {
        const ok = await authority.adminCheck(req.body);
        req.log.info({ dataCenter: dc, outcome: 'ok' }, 'admin check');
        return ok;
      } catch (err) {
        const code = err instanceof ProtocolError ? err.code : 'internal';
        const outcome = code === 'admin-proof-refused' ? 'refused' : err instanceof AuthorityAdminCheckLimited ? 'limited' : 'error';
        req.log.info({ dataCenter: dc, outcome, code }, 'admin check');
        // The authority's limit of refused checks per data center: its 429 passed on as it came, with its Retry-After.
        if (err instanceof AuthorityAdminCheckLimited) {
          const { status, body } = errorAnswer(err);
          if (err.retryAfter !== undefined) {
            reply.header('retry-after', err.retryAfter);
            authorityHold = { until: clock() + Number(err.retryAfter) * 1000, message: err.message };
          }
          return reply.code(status).send(body);
        }
        throw err;
      }
    },
  );

  // The boot endpoint's limit (boot-limit.ts, docs/dmz-client.md "The boot endpoint's limit"): a request from an
  // address that used its budget of denials is answered 429 before anything else (its body is not even read); an
  // admitted one is settled as a denial or not once answered: by its handler (approved: false, a refused report, a
  // 4xx it throws), or, when it never reached its handler (a malformed body), by its answer's status.
  const { limiter, limited } = r.bootLimit;
  const tickets = new WeakMap<FastifyRequest, { ticket: BootTicket; handled: boolean }>();
  const admitBoot = async (req: FastifyRequest, reply: FastifyReply) => {
    const a = limiter.admit(req.ip);
    if (a.ok) {
      tickets.set(req, { ticket: a.ticket, handled: false });
      return;
    }
    const route = req.routeOptions.url ?? '/v1/boot';
    limited.inc({ route });
    const { windowMs } = limiter.settings;
    const err = new WireError(
      'boot-rate-limited',
      `boot requests from ${req.ip} are refused until ${new Date(a.until).toISOString()}: it had ${a.denials} denied, refused or malformed boot requests within ${windowMs / 1000} s (the DMZ client's spec.bootLimit); nothing was asked of the authority`,
    );
    // Never a token in the line: nothing of the body is read.
    return overLimit(req, reply, a, 'boot limited', { route, denials: a.denials, windowMs }, err);
  };
  const settleUnhandled = async (req: FastifyRequest, reply: FastifyReply) => {
    const t = tickets.get(req);
    if (t && !t.handled) limiter.settle(t.ticket, refused(reply.statusCode));
  };
  const judged = async <T>(req: FastifyRequest, work: () => Promise<T>, denied: (out: T) => boolean): Promise<T> => {
    const t = tickets.get(req);
    if (t) t.handled = true;
    try {
      const out = await work();
      if (t) limiter.settle(t.ticket, denied(out));
      return out;
    } catch (err) {
      if (t) limiter.settle(t.ticket, refused(errorAnswer(err as Error).status));
      throw err;
    }
  };
  const bootHooks = { onRequest: admitBoot, onResponse: settleUnhandled, bodyLimit: BOOT_BODY_LIMIT };

  app.post<{ Body: BootRequest }>(
    '/v1/boot',
    {
      schema: doc('Boot endpoint: a booting VM asks for approval and its disk key', { body: bootBodySchema, response: { 200: bootResponseSchema, 400: errorSchema, 429: errorSchema, 503: errorSchema } }),
      ...bootHooks,
    },
    async (req) =>
      judged(
        req,
        async () => {
          // The authority checks a booting VM against the record's state: a
          // report of this VM still on its way (written behind, its boot edge
          // already running) goes first. The boot edge's own report too,
          // though the check accepts its `from`: a denial counts as the VM's
          // (FleetRecord.deniedBoots) only when written after that report
          // moved the VM into the booted state (bench/apply/run.ts, 2026-12-07).
          if (COUNTING) countMessage('boot endpoint requests');
          await steps.reportOnItsWay(req.body.vmId);
          // A denial's cause (`detail`) is this client's, never the caller's: the endpoint is open, and the VM is
          // told only the fixed reason. It goes to the step awaiting the VM's boot, when it is that boot's (StepRunner.bootDenied).
          const { detail, ...answer } = await authority.boot({ dataCenter: dc, ...req.body });
          if (!answer.approved) {
            if (detail !== undefined) steps.bootDenied(req.body, detail);
            // The driver notes a denial of the token it booted the VM with (Driver.bootDenied): the one evidence, besides
            // the agent's own report, that a VM which then powers itself off unheard was denied (and is terminated).
            // A denied check with any other token (anyone in the DMZ network may send one) says nothing of the VM.
            // Never in the way of the answer: a driver that cannot note it (its state folder unwritable) leaves that VM
            // kept if it powers off unheard, the safe side.
            try {
              driver.bootDenied?.(req.body);
            } catch (err) {
              req.log.warn({ dataCenter: dc, vmId: req.body.vmId, err: (err as Error).message }, 'boot denial not noted by the driver');
            }
          }
          return answer satisfies BootResponse;
        },
        (res) => !res.approved,
      ),
  );

  // A real VM's boot agent (providers/boot-agent) reports booting / ready / failed, proven by its boot token; the driver judges it.
  app.post<{ Body: AgentReport }>(
    '/v1/boot/status',
    { schema: doc('Boot agent: a booting VM reports its state', { body: agentReportSchema, response: { 200: agentReportAnswerSchema, 400: errorSchema, 403: errorSchema, 429: errorSchema } }), ...bootHooks },
    async (req) =>
      judged(
        req,
        async () => {
          if (!driver.agentStatus?.(req.body)) throw new WireError('agent-report-refused', 'no VM of this data center is booting with that boot token');
          return { ok: true as const };
        },
        () => false,
      ),
  );
}
