// The DMZ client: one per data center, inside its secured zone, the only
// thing that calls that data center's cloud API (its driver). For every
// mutating request it (1) asks the authority to authorize, (2) calls its
// driver for the edge's operation (`none`: no cloud call), (3) reports the
// outcome to the authority, which moves the record, and (4) answers the
// caller. It never calls another data center's driver, and it always speaks
// to the authority with its own data center's token. Within a run of steps,
// (3) and the next steps' (1) go as one advance call that also approves the
// rest of the path ahead; a step approved ahead starts as soon as the one
// before it is done, whose report goes meanwhile (in order, one at a time:
// the record never lags the cloud by more than one edge). See `run`.
import { createHash, randomUUID } from 'node:crypto';
import { FleetError, diag } from '../../engine/diags/index.ts';
import {
  ADVANCE_NEXT_MAX,
  NONE_REPORT_DETAIL,
  NO_LINE,
  ProtocolError,
  WireError,
  actualVmSchema,
  agentReportSchema,
  bootBodySchema,
  bootResponseSchema,
  createBodySchema,
  createService,
  deleteBodySchema,
  doc,
  errorSchema,
  healthResponseSchema,
  listResponseSchema,
  listen,
  stepBatchBodySchema,
  stepErrors,
  stepResultSchema,
  streamAnswers,
  tokenTable,
  transitionBodySchema,
  vmIdParams,
  type AdvanceStep,
  type AgentReport,
  type AuthorityVm,
  type AuthorizeRequest,
  type AuthorizeResponse,
  type BatchRun,
  type BatchStep,
  type BootRequest,
  type CreateVmRequest,
  type DeleteVmRequest,
  type LineAnswer,
  type Part,
  type ReportRequest,
  type ReportResponse,
  type StepBatchRequest,
  type StepResult,
  type StepVm,
  type TransitionRequest,
} from '../../protocol/index.ts';
import type { LoadedPack } from '../../engine/policy/types.ts';
import type { VmSize } from '../../engine/plan/types.ts';
import { DriverError, type Driver, type ScopedCredentials, type VmRef } from '../drivers/types.ts';
import { AuthorityClient } from './authority-client.ts';
import { IdempotencyStore } from './idempotency.ts';
import { Lanes, type Lease } from './lanes.ts';

export interface StartDmzClientOptions {
  dataCenter: string;
  driver: Driver;
  authorityUrl: string;
  /** This data center's token at the authority. */
  authorityToken: string;
  /** The token callers (the CLI) must present. */
  clientToken: string;
  /** Idempotency results live in <stateDir>/requests.jsonl. */
  stateDir: string;
  host?: string;
  /** 0 (default): a free port. */
  port?: number;
  /** For the initial and terminal states when a request leaves them out; defaults Requested / Deleted. */
  pack?: LoadedPack;
  /** Tries of a driver call that fails with a transient error. Default 4. */
  driverAttempts?: number;
  /** A driver call not answering within this is a failure. Default 120 000. */
  driverTimeoutMs?: number;
  /** How long awaitReady waits for a VM to boot. Default 60 000. */
  readyTimeoutMs?: number;
  /** Per call to the authority. Default 30 000. */
  authorityTimeoutMs?: number;
  logger?: boolean;
}

export interface RunningDmzClient {
  url: string;
  close(): Promise<void>;
}

function stepVm(vm: AuthorityVm): StepVm {
  return { id: vm.id, address: vm.address, state: vm.state, cloudId: vm.cloudId, realImage: vm.realImage, version: vm.version };
}

function fingerprint(route: string, body: unknown): string {
  return createHash('sha256').update(`${route}\n${JSON.stringify(body)}`).digest('hex');
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

type EdgeStep = Exclude<BatchStep, { op: 'create' }>;

/** What a step of a run knows beyond its own request (see `run`). */
interface RunContext {
  /** This step's authorization request, when an earlier step's advance decided it (`ahead` or `done`). */
  request?: AuthorizeRequest;
  /** This step's authorization, given by the advance of an earlier step. */
  ahead?: AuthorizeResponse;
  /** This step's result: a `none` edge the advance of an earlier step moved at once. */
  done?: StepResult;
  /** The authorization requests of the run's next steps, sent with this step's report (or create) as one advance. */
  chain?: AuthorizeRequest[];
  /** Gets the advance's answers for `chain`, in order, as far as the authority decided them. */
  onChain?: (decided: AdvanceStep[]) => void;
  /** Called once this step's cloud call is done, ok, before its report goes out (the run may start the next step, approved ahead). */
  onCarriedOut?: () => void;
  /** The previous step's answer while its report is on its way: this step's report waits for it, and is not sent unless it was ok. */
  after?: Promise<LineAnswer>;
  /** Whether the run goes on to the next step without waiting for this step's report (then the report is lazy: see AuthorityClient.report). */
  goesOn?: () => boolean;
  /** The run's place in its lane (lanes.ts), taken before its first cloud call. */
  lease?: Lease;
}

/** Credentials closer than this to their expiry are not used for a cloud call. */
const CREDENTIALS_MARGIN_MS = 30_000;

/** Whether an approval's credentials (if any) last long enough for a cloud call. */
function fresh(auth: AuthorizeResponse): boolean {
  return auth.credentials === undefined || Date.parse(auth.credentials.expiresAt) - Date.now() > CREDENTIALS_MARGIN_MS;
}

/** Whether a run's step was answered ok. */
function answeredOk(a: LineAnswer): boolean {
  return a.status === 200 && (a.body as StepResult).outcome === 'ok';
}

/** Starts a DMZ client for one data center (docs/dmz-client.md). */
export async function startDmzClient(opts: StartDmzClientOptions): Promise<RunningDmzClient> {
  const dc = opts.dataCenter;
  const driver = opts.driver;
  if (driver.dataCenter !== dc) {
    throw new FleetError(diag('apply.serve-config', `The driver is for data center ${driver.dataCenter}, not ${dc}.`));
  }
  const authority = new AuthorityClient(dc, opts.authorityUrl, opts.authorityToken, opts.authorityTimeoutMs ?? 30_000);
  const store = new IdempotencyStore<StepResult>(opts.stateDir);
  const lanes = new Lanes();
  const attempts = opts.driverAttempts ?? 4;
  const driverTimeoutMs = opts.driverTimeoutMs ?? 120_000;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 60_000;
  const initial = opts.pack?.lifecycle.initial ?? 'Requested';
  const terminal = opts.pack?.lifecycle.terminal[0] ?? 'Deleted';

  const { app, openapi } = await createService({
    title: `dmzfleet DMZ client (${dc})`,
    publicPaths: ['/v1/health', '/openapi.json', '/v1/boot', '/v1/boot/status'],
    authenticate: tokenTable([{ token: opts.clientToken, who: 'cli' }]),
    logger: opts.logger,
  });

  /** Reads use the DMZ client's own read-only credentials; only writes need the authority's. */
  const readCredentials = (): ScopedCredentials => ({
    dataCenter: dc,
    token: 'dmz-client-read-only',
    expiresAt: new Date(Date.now() + 60_000).toISOString(),
  });

  /** One driver call with a deadline, retried while its failure is transient. */
  async function callDriver<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new DriverError('timeout', `${what} did not answer within ${driverTimeoutMs} ms`, false)), driverTimeoutMs);
      });
      try {
        return await Promise.race([fn(), deadline]);
      } catch (err) {
        if (err instanceof DriverError && err.transient && attempt < attempts) {
          await sleep(Math.random() * 20 * 2 ** attempt);
          continue;
        }
        throw err;
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** Runs the edge's operation in the cloud; returns what the report needs. */
  async function runOperation(
    operation: string,
    auth: AuthorizeResponse,
    vmId: string,
    size: VmSize | undefined,
  ): Promise<{ cloudId?: string; size?: VmSize }> {
    const creds = auth.credentials;
    const vm = auth.vm;
    if (operation === 'none') return {};
    if (!creds || !vm) throw new Error(`bug: an approval of ${operation} without credentials or VM`);
    const ref: VmRef = { vmId, cloudId: vm.cloudId };
    switch (operation) {
      case 'createVm': {
        const made = await callDriver('createVm', () =>
          driver.createVm(creds, {
            vmId,
            address: vm.address,
            name: vm.name,
            image: auth.realImage ?? vm.realImage ?? '',
            size: vm.size,
            encryptedDisk: vm.encryptedDisk,
            ...(auth.diskKeyHash !== undefined ? { diskKeyHash: auth.diskKeyHash } : {}),
          }),
        );
        return { cloudId: made.cloudId };
      }
      case 'powerOn':
        await callDriver(operation, () => driver.powerOn(creds, ref));
        return {};
      case 'boot':
        if (auth.bootToken === undefined) throw new DriverError('failed', 'the authority issued no boot token');
        await callDriver(operation, () => driver.boot(creds, ref, { bootToken: auth.bootToken as string }));
        return {};
      case 'awaitReady':
        await callDriver(operation, () => driver.awaitReady(creds, ref, { timeoutMs: readyTimeoutMs }));
        return {};
      case 'shutdown':
        await callDriver(operation, () => driver.shutdown(creds, ref));
        return {};
      case 'powerOff':
        await callDriver(operation, () => driver.powerOff(creds, ref));
        return {};
      case 'resize':
        if (!size) throw new DriverError('failed', 'a resize needs the new size');
        await callDriver(operation, () => driver.resize(creds, ref, size));
        return { size };
      case 'deleteVm':
        await callDriver(operation, () => driver.deleteVm(creds, ref));
        return {};
      default:
        throw new DriverError('failed', `the ${driver.kind} driver has no operation ${operation}`);
    }
  }

  /** Per VM, its report on its way (see /v1/boot). */
  const reports = new Map<string, Promise<unknown>>();
  function reporting<T>(vmId: string, report: Promise<T>): Promise<T> {
    const settled = report.then(
      () => undefined,
      () => undefined,
    );
    reports.set(vmId, settled);
    void settled.then(() => {
      if (reports.get(vmId) === settled) reports.delete(vmId);
    });
    return report;
  }

  /** The authorization request of one edge (or a resize). */
  function edgeRequest(vmId: string, planId: string | null, from: string, to: string, size?: VmSize): AuthorizeRequest {
    const kind = size && from === to ? 'resize' : 'transition';
    return { dataCenter: dc, requestId: randomUUID(), planId, kind, vmId, from, to, ...(size ? { size } : {}) };
  }

  /**
   * authorize -> driver -> report, for one edge (or a resize). Within a run,
   * `ahead` is this edge's authorization, already given by an earlier step's
   * advance, and `done` its whole result (a `none` edge moved at once); and
   * `chain` holds the run's next edges, whose authorizations are asked
   * together with this edge's report (one authority call, see
   * docs/protocol.md "Advance") and handed to `onChain`.
   */
  async function step(req: AuthorizeRequest, run: RunContext = {}): Promise<StepResult> {
    if (run.done) return run.done;
    const { requestId, planId, vmId, from, size } = req;
    const to = req.to as string;
    // An approval given earlier in the run (ahead) whose credentials are about to expire (a long path) is asked for again.
    let auth = run.ahead && fresh(run.ahead) ? run.ahead : await authority.authorize(req);
    // The run's first cloud call waits for a place in its lane; the approval, given before, is asked for again if the wait outlasted it.
    if (run.lease && !run.lease.holding && auth.decision !== 'vetoed' && auth.operation !== 'none') {
      await run.lease.hold();
      if (!fresh(auth)) auth = await authority.authorize(req);
    }
    if (auth.decision === 'vetoed') {
      return { requestId, decision: 'vetoed', reason: auth.reason, outcome: 'vetoed', operation: 'none', ...(auth.vm ? { vm: stepVm(auth.vm) } : {}) };
    }
    const operation = auth.operation;
    const report = (r: Omit<ReportRequest, 'dataCenter' | 'requestId' | 'planId' | 'vmId' | 'from' | 'to'>): ReportRequest => ({
      dataCenter: dc,
      requestId,
      planId,
      vmId,
      from: from as string,
      to,
      ...r,
    });
    /** Reports go out in step order: this one only once the previous step's is answered, and only when that was ok. */
    const inTurn = async () => {
      if (run.after && !answeredOk(await run.after)) {
        throw new ProtocolError(409, 'earlier-step-failed', `${from} -> ${to} was carried out but not reported: the step before it in the run failed`);
      }
    };
    let done: { cloudId?: string; size?: VmSize };
    try {
      done = await runOperation(operation, auth, vmId, size);
    } catch (err) {
      if (!(err instanceof DriverError)) throw err;
      const detail = `${operation} failed in ${dc}: ${err.message}`;
      await inTurn();
      const rep = await authority.report(report({ outcome: 'failed', detail }));
      return {
        requestId,
        decision: auth.decision,
        reason: auth.reason,
        outcome: 'failed',
        operation,
        vm: stepVm(rep.vm),
        error: { code: `driver.${err.kind}`, message: detail },
      };
    }
    run.onCarriedOut?.();
    const ok = report({ outcome: 'ok', ...done, detail: operation === 'none' ? NONE_REPORT_DETAIL : `${operation} done in ${dc}` });
    // Known as on its way from now on (a booting VM's call waits for it), though it goes out in its turn.
    const rep = await reporting(
      vmId,
      inTurn().then(async (): Promise<ReportResponse> => {
        if (!run.chain?.length) return authority.report(ok, { lazy: run.goesOn?.() === true });
        const res = await authority.advance({ report: ok, next: run.chain, ahead: true });
        if (!res.report) throw new Error('bug: the authority answered an advance without its report');
        run.onChain?.(res.next);
        return res.report;
      }),
    );
    return { requestId, decision: auth.decision, reason: auth.reason, outcome: 'ok', operation, vm: stepVm(rep.vm) };
  }

  app.get('/v1/health', { schema: doc('Liveness', { response: { 200: healthResponseSchema } }) }, async () => ({
    ok: true,
    service: 'dmz-client' as const,
    dataCenter: dc,
    driver: driver.kind,
  }));
  app.get('/openapi.json', { schema: doc('This document') }, async () => openapi());

  /**
   * POST /v1/vms: the VM enters the record in the initial state (no cloud
   * call). Within a run, with `chain`, together with the authorization of
   * the run's next edges (one advance).
   */
  function create(b: CreateVmRequest, run?: RunContext): Promise<StepResult> {
    return store.run(b.idempotencyKey, fingerprint('create', b), async () => {
      const requestId = randomUUID();
      const { id: vmId, ...vm } = b.vm;
      const authReq: AuthorizeRequest = {
        dataCenter: dc,
        requestId,
        planId: b.planId,
        kind: 'create',
        vmId,
        from: null,
        to: initial,
        vm: { ...vm, dataCenter: dc },
      };
      let auth: AuthorizeResponse;
      if (run?.chain?.length) {
        const res = await authority.advance({ create: authReq, next: run.chain, ahead: true });
        if (!res.create) throw new Error('bug: the authority answered an advance without its create');
        auth = res.create;
        run.onChain?.(res.next);
      } else {
        auth = await authority.authorize(authReq);
      }
      const res: StepResult = {
        requestId,
        decision: auth.decision,
        reason: auth.reason,
        outcome: auth.decision === 'vetoed' ? 'vetoed' : 'ok',
        operation: 'none',
      };
      if (auth.vm) res.vm = stepVm(auth.vm);
      return res;
    });
  }

  /** The authorization request of an edge step (transition or delete). */
  function stepRequest(s: EdgeStep): AuthorizeRequest {
    const b = s.body;
    if (s.op === 'delete') return edgeRequest(s.vmId, b.planId, b.from, (b as DeleteVmRequest).to ?? terminal);
    const t = b as TransitionRequest;
    return edgeRequest(s.vmId, t.planId, t.from, t.to, t.operation === 'resize' ? t.size : undefined);
  }

  /** POST /v1/vms/:id/transitions: one edge, or a resize. */
  async function transition(vmId: string, b: TransitionRequest, run?: RunContext): Promise<StepResult> {
    if (b.operation === 'resize' && (!b.size || b.from !== b.to)) {
      throw new ProtocolError(400, 'bad-request', 'a resize is { from: S, to: S, operation: "resize", size }');
    }
    return store.run(b.idempotencyKey, fingerprint(`transition ${vmId}`, b), () =>
      step(run?.request ?? stepRequest({ op: 'transition', vmId, body: b }), run),
    );
  }

  /** DELETE /v1/vms/:id: the last edge. */
  function remove(vmId: string, b: DeleteVmRequest, run?: RunContext): Promise<StepResult> {
    return store.run(b.idempotencyKey, fingerprint(`delete ${vmId}`, b), () => step(run?.request ?? stepRequest({ op: 'delete', vmId, body: b }), run));
  }

  /** One step of a batch or a run, as its single route would carry it out. */
  function one(s: BatchStep, run?: RunContext): Promise<StepResult> {
    return s.op === 'create' ? create(s.body, run) : s.op === 'transition' ? transition(s.vmId, s.body, run) : remove(s.vmId, s.body, run);
  }

  /** The state a step leaves its VM in when ok. */
  function reaches(s: BatchStep): string {
    return s.op === 'create' ? initial : s.op === 'delete' ? (s.body.to ?? terminal) : s.body.to;
  }

  /**
   * The steps after step k that its advance asks about: the following steps
   * of the same VM, each from the state the one before reaches (at most
   * ADVANCE_NEXT_MAX). The authority moves the leading `none` ones at once,
   * authorizes the first to carry out, and approves the rest ahead as far as
   * it can (AdvanceRequest.ahead). Without a pack, which says what is
   * `none`, the first only. Each with its authorization request.
   */
  function chainAfter(steps: readonly BatchStep[], k: number): { k: number; request: AuthorizeRequest }[] {
    const s = steps[k];
    const vmId = s.op === 'create' ? s.body.vm.id : s.vmId;
    let at = reaches(s);
    const out: { k: number; request: AuthorizeRequest }[] = [];
    for (let j = k + 1; j < steps.length && out.length < ADVANCE_NEXT_MAX; j++) {
      const f = steps[j];
      if (f.op === 'create' || f.vmId !== vmId || f.body.from !== at) break;
      const request = stepRequest(f);
      out.push({ k: j, request });
      if (!opts.pack) break;
      at = request.to as string;
    }
    return out;
  }

  /** What an advance decided for a later step of its run: its authorization, or its result when moved at once. */
  function decidedStep(request: AuthorizeRequest, d: AdvanceStep): RunContext {
    if (!d.moved) return { request, ahead: d.authorize };
    const done: StepResult = {
      requestId: request.requestId,
      decision: d.authorize.decision,
      reason: d.authorize.reason,
      outcome: 'ok',
      operation: 'none',
      vm: stepVm(d.moved.vm),
    };
    return { request, done };
  }

  /**
   * A member's steps in order, each exactly as its single request, stopping
   * at the first that is not ok; each answered as soon as it is done. A step
   * followed by edges of the same VM (each from the state the one before
   * reaches) sends its report, or its create, with their authorizations as
   * one advance call: the edges up to the first whose operation is not
   * `none`, the `none` ones before it moved by the authority at once. The
   * later steps the advance decided are then carried out with that
   * authorization (`ahead`), or answered with the result of their move
   * (`done`), each still stored under its own idempotency key
   * (docs/protocol.md, "Runs"; docs/dmz-client.md).
   */
  async function run({ steps, lane }: BatchRun, part: Part): Promise<typeof NO_LINE> {
    const lease = lane ? lanes.lease(lane.id, lane.width, [...new Set(steps.map((s) => (s.op === 'create' ? s.body.vm.id : s.vmId)))]) : undefined;
    try {
      return await runSteps(steps, part, lease);
    } finally {
      lease?.free();
    }
  }

  async function runSteps(steps: readonly BatchStep[], part: Part, lease: Lease | undefined): Promise<typeof NO_LINE> {
    const given = new Map<number, RunContext>();
    const answers: Promise<LineAnswer>[] = [];
    /** The previous step's answer, while its report is on its way (write-behind). */
    let behind: Promise<LineAnswer> | undefined;
    for (let k = 0; k < steps.length; k++) {
      const s = steps[k];
      const mine = given.get(k) ?? {};
      given.delete(k);
      // A step whose next is approved already reports alone; else it asks about what follows.
      const chain = mine.done || given.has(k + 1) ? [] : chainAfter(steps, k);
      let carriedOut = () => {};
      const carried = new Promise<'carried'>((resolve) => (carriedOut = () => resolve('carried')));
      // Once this step's cloud call is done and the next step is approved
      // already, the next starts while this one's report is on its way;
      // the record never lags the cloud by more than that one edge (the
      // report before this one must have been answered ok). A booting VM's
      // call waits for its report (/v1/boot): the authority checks the VM
      // against the record's state.
      const goesOn = () => {
        const n = given.get(k + 1);
        return n?.ahead !== undefined && n.ahead.decision !== 'vetoed' && !n.done;
      };
      const ctx: RunContext = {
        ...mine,
        ...(lease ? { lease } : {}),
        onCarriedOut: carriedOut,
        goesOn,
        ...(behind ? { after: behind } : {}),
        ...(chain.length > 0
          ? {
              chain: chain.map((c) => c.request),
              onChain: (decided: AdvanceStep[]) => decided.forEach((d, j) => j < chain.length && given.set(chain[j].k, decidedStep(chain[j].request, d))),
            }
          : {}),
      };
      // Lines go in step order (a step answered early, say from the
      // idempotency log, waits for the line of the one before it). A step's
      // line but the run's last waits a little for company (Part): the
      // caller only journals it.
      const before = behind;
      const work = before ? () => one(s, ctx).finally(() => before) : () => one(s, ctx);
      const answer = part(k, work, (a) => k < steps.length - 1 && answeredOk(a));
      answers.push(answer);
      // The last step's cloud call done, the run's place goes to the next run of its lane (its report and answer go on).
      if (lease && k === steps.length - 1) void carried.then(() => lease.free());
      const first = await Promise.race([answer, carried]);
      if (first === 'carried' && goesOn()) {
        if (behind && !answeredOk(await behind)) break;
        behind = answer;
        continue;
      }
      if (!answeredOk(await answer)) break;
      behind = undefined;
    }
    lease?.free();
    await Promise.all(answers);
    return NO_LINE;
  }

  app.post<{ Body: CreateVmRequest }>(
    '/v1/vms',
    { schema: doc('Enter a new VM in the record, in the initial state', { body: createBodySchema, response: { 200: stepResultSchema, ...stepErrors } }) },
    async (req) => create(req.body),
  );

  app.post<{ Body: TransitionRequest; Params: { id: string } }>(
    '/v1/vms/:id/transitions',
    { schema: doc('Carry a VM along one lifecycle edge, or resize it', { params: vmIdParams, body: transitionBodySchema, response: { 200: stepResultSchema, ...stepErrors } }) },
    async (req) => transition(req.params.id, req.body),
  );

  app.delete<{ Body: DeleteVmRequest; Params: { id: string } }>(
    '/v1/vms/:id',
    { schema: doc('The last edge: delete the VM in the cloud, into the terminal state', { params: vmIdParams, body: deleteBodySchema, response: { 200: stepResultSchema, ...stepErrors } }) },
    async (req) => remove(req.params.id, req.body),
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
        response: { 400: errorSchema, 401: errorSchema },
      }),
    },
    (req, reply) =>
      streamAnswers(
        reply,
        req.body.steps.map((s) => (part: Part) => (s.op === 'run' ? run(s, part) : one(s))),
        (err) => app.log.error(err),
      ),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/vms/:id',
    { schema: doc('What the cloud holds for a VM (for refresh)', { params: vmIdParams, response: { 200: actualVmSchema, 401: errorSchema, 404: errorSchema } }) },
    async (req) => {
      const vm = await driver.get(readCredentials(), { vmId: req.params.id, cloudId: null });
      if (!vm) throw new ProtocolError(404, 'not-found', `data center ${dc} has no VM ${req.params.id}`);
      return vm;
    },
  );

  app.get('/v1/vms', { schema: doc('Every VM the cloud holds (for refresh)', { response: { 200: listResponseSchema, 401: errorSchema } }) }, async () => ({
    vms: await driver.list(readCredentials()),
  }));

  app.post<{ Body: BootRequest }>(
    '/v1/boot',
    { schema: doc('Boot endpoint: a booting VM asks for approval and its disk key', { body: bootBodySchema, response: { 200: bootResponseSchema, 400: errorSchema, 503: errorSchema } }) },
    async (req) => {
      // The authority checks a booting VM against the record's state: a
      // report of this VM still on its way (written behind, its boot edge
      // already running) goes first.
      await reports.get(req.body.vmId);
      return authority.boot({ dataCenter: dc, ...req.body });
    },
  );

  // A real VM's boot agent (providers/boot-agent) reports booting / ready / failed, proven by its boot token; the driver judges it.
  app.post<{ Body: AgentReport }>(
    '/v1/boot/status',
    { schema: doc('Boot agent: a booting VM reports its state', { body: agentReportSchema, response: { 400: errorSchema, 403: errorSchema } }) },
    async (req) => {
      if (!driver.agentStatus?.(req.body)) throw new WireError('agent-report-refused', 'no VM of this data center is booting with that boot token');
      return { ok: true };
    },
  );

  const url = await listen(app, opts.host ?? '127.0.0.1', opts.port ?? 0);
  driver.attach({ bootUrl: `${url}/v1/boot` });
  return {
    url,
    close: async () => {
      await app.close();
      await store.close();
    },
  };
}
