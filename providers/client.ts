// The CLI side of the DMZ client protocol (docs/protocol.md). `fleet apply`,
// `fleet refresh` and the Pulumi providers reach a data center only through
// this class, so retries and error reporting behave the same everywhere.
//
// Retry rules (every mutating call carries an idempotency key, so a retry is
// always safe and is ALWAYS sent with the same key):
//
// | what happened                          | retried? | error when retries run out |
// | -------------------------------------- | -------- | -------------------------- |
// | connection refused / dropped           | yes      | apply.dmz-unreachable      |
// | no answer within timeoutMs             | yes      | apply.dmz-unreachable      |
// | 5xx                                    | yes      | apply.dmz-error            |
// | 503 credentials-expiring (the step not | yes      | apply.credentials-expiring |
// |   tried on credentials that expired)   |          |                            |
// | 429 (waits Retry-After when given)     | yes      | apply.dmz-error            |
// | TLS: certificate not trusted / refused | no       | apply.dmz-unreachable      |
// |   (also 401 client-cert-required)      |          |                            |
// | 401                                    | no       | apply.dmz-unauthorized     |
// | other 4xx                              | no       | apply.dmz-rejected         |
//
// (POST /v1/admin-check answers a 429, and a 502 with the DMZ client's own
// error body, at once, not retried: DmzHttpClient.adminCheck.)
//
// Backoff is exponential with equal jitter: retry n waits a random time in
// [d/2, d) with d = min(maxDelayMs, baseDelayMs * 2^n). A request is retried
// until its pauses add up to retryBudgetMs (default 60 s, so a DMZ client or
// authority restart of 30 s and more is ridden out: the pauses alone span
// the budget, whatever the random draws), or `retries` times when that is
// set. An attempt that timed out counts its timeoutMs of silence too: a DMZ
// client that takes connections but never answers is given up on after
// about the budget, not after the budget's worth of pauses between
// one-minute silences. Every retry of one request carries the same idempotency key, so the
// DMZ client answers a step it finished before its restart with that
// step's result instead of doing it again.
//
// The backoff and budget functions are in retry.ts; what a failed exchange
// is called (error bodies, TLS refusals, network errors), in fetch-errors.ts.
import { FleetError, clip, clipPath, diag, type Code } from '../engine/diags/index.ts';
import type {
  ActualVm,
  AdminCheckRequest,
  BatchRun,
  BatchStep,
  CreateVmRequest,
  DeleteVmRequest,
  ErrorBody,
  HealthResponse,
  RunLane,
  StepResult,
  TransitionRequest,
} from '../protocol/index.ts';
import { RUN_STEPS_MAX, STEP_BATCH_MAX, batchSteps, ownWireCode } from '../protocol/index.ts';
import type { BatchAnswerLine } from '../protocol/index.ts';
import { redactUrl, tokenInvalidDetail, unsendableTokenChar, type ClientTls } from '../engine/transport/index.ts';
import { DMZ_TLS_ADVICE, describeFetchError, errorMessage, timedOut, tlsRefused } from './fetch-errors.ts';
import { send, sendLines, sendTarget } from './http-send.ts';
import { DEFAULT_RETRY_BUDGET_MS, backoffMs, gaveUp, mayRetry, retryAfterMs, type RetryInfo, type RetryPolicy } from './retry.ts';

export type * from '../protocol/index.ts';
export { DEFAULT_RETRY_BUDGET_MS, backoffMs, mayRetry, retryAfterMs, retrySchedule, type RetryInfo, type RetryPolicy } from './retry.ts';
export { tlsRefused } from './fetch-errors.ts';

export interface DmzHttpClientOptions {
  /** Data center name, for error messages. */
  dataCenter: string;
  /** Base URL of the DMZ client, e.g. `http://127.0.0.1:4123` (no trailing path). */
  baseUrl: string;
  /** Bearer token; called for every request so a rotated token is picked up. */
  token: () => string | Promise<string>;
  /** The environment variable the token is read from, named when the DMZ client refuses it (401). */
  tokenEnv?: string;
  /**
   * For an https baseUrl: the CA bundle the DMZ client's certificate is
   * verified against (default: the system's) and the client certificate
   * presented when it requires one (mTLS; the stack's `auth.clientCert`).
   */
  tls?: ClientTls;
  /** Per attempt. Default 60 000 (a step may wait for a VM to boot). */
  timeoutMs?: number;
  /** Retries after the first attempt at most; default: as many as retryBudgetMs allows. */
  retries?: number;
  /** The retries of one request stop once their pauses add up to this. Default DEFAULT_RETRY_BUDGET_MS (60 s). */
  retryBudgetMs?: number;
  /** Default 100. */
  baseDelayMs?: number;
  /** Default 5 000. */
  maxDelayMs?: number;
  /** Injected for tests; default Math.random. */
  random?: () => number;
  /** Injected for tests; default setTimeout. */
  sleep?: (ms: number) => Promise<void>;
  /** Called before each retry (for logs and tests). */
  onRetry?: (info: RetryInfo) => void;
  /**
   * Send steps (create, transition, delete) made at about the same time
   * together, as one POST /v1/batch whose answers stream back per step
   * (docs/protocol.md, "Batches"). Same answers, same retries per step, same
   * errors; far less HTTP per step when many are in flight (apply). Default
   * false: one request per step.
   */
  batch?: boolean;
}


/**
 * A DMZ client's answer to POST /v1/admin-check (DmzHttpClient.adminCheck): `code` is its wire code, or `status N`
 * for a body that is not one of ours; `retryAfterMs`, a 429's Retry-After.
 */
export type AdminCheckAnswer = { ok: true } | { ok: false; status: number; code: string; message: string; retryAfterMs?: number };

interface RawResponse {
  status: number;
  body: unknown;
  /** Its Retry-After, when it had one (only a `final` answer carries it: the others were retried). */
  retryAfterMs?: number;
}

/** A step or a run waiting for (or on its way in) a batch. */
interface Queued {
  item: BatchStep | BatchRun;
  /** The single route it stands for (a run: that of its first step not yet answered), for messages and onRetry. */
  method: string;
  path: string;
  key: string;
  /** Retries so far (a run: since its last step answered). */
  attempt: number;
  /** The pauses of those retries, and the silences of attempts that timed out, in ms (what the retry budget counts). */
  slept: number;
  /** Takes the item's answer line (`k`: a run's step); true when the item is finished with it. */
  answer(k: number | undefined, status: number, body: unknown, retryAfter?: number): boolean;
  /** The exchange ended without finishing the item (after `waitedMs` of silence, a timeout): send what is left of it again, or fail. */
  lost(reason: string, waitedMs?: number): void;
  /** Fails the item for good. */
  reject(err: unknown): void;
}

/** The single route a step stands for. */
function route(step: BatchStep): { method: string; path: string } {
  if (step.op === 'create') return { method: 'POST', path: '/v1/vms' };
  const id = encodeURIComponent(step.vmId);
  return step.op === 'transition' ? { method: 'POST', path: `/v1/vms/${id}/transitions` } : { method: 'DELETE', path: `/v1/vms/${id}` };
}

const itemSize = (item: BatchStep | BatchRun) => batchSteps([item]);

const sleepReal = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The code a request fails with when its retries run out on a retried status (5xx, 429) answered with `body`:
 * apply.credentials-expiring when the DMZ client said the step's credentials came expired (its own wire code,
 * protocol/errors.ts), else apply.dmz-error.
 */
function statusFailure(body: unknown): Code {
  return ownWireCode(body) === 'credentials-expiring' ? 'apply.credentials-expiring' : 'apply.dmz-error';
}


export class DmzHttpClient {
  readonly dataCenter: string;
  readonly baseUrl: string;
  private readonly opts: Required<Omit<DmzHttpClientOptions, 'onRetry' | 'retries' | 'tls' | 'tokenEnv'>> & Pick<DmzHttpClientOptions, 'onRetry' | 'retries' | 'tls' | 'tokenEnv'>;
  private readonly policy: RetryPolicy;
  /** Steps waiting for the next batch (opts.batch). */
  private queued: Queued[] = [];
  private flushing = false;
  /** How requests go, for what a connection cut before any answer may mean (describeFetchError). */
  private readonly sent: { plainHttp: boolean; clientCert: boolean };
  /** baseUrl taken apart once; each request adds its path. */
  private readonly origin: ReturnType<typeof sendTarget>;
  /** The data center's name as diagnostics show it (clip: a Pulumi program gives it as it likes). */
  private readonly named: string;
  /**
   * baseUrl as messages and retry records show it: a password in it (basic
   * auth, user:password@) as `***` (redactUrl), then through clipPath (a
   * Pulumi program gives it as it likes).
   */
  private readonly shownUrl: string;

  constructor(opts: DmzHttpClientOptions) {
    this.dataCenter = opts.dataCenter;
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.named = clip(opts.dataCenter);
    const base = sendTarget(new URL(this.baseUrl), opts.tls);
    this.sent = { plainHttp: base.protocol === 'http:', clientCert: base.tls?.cert !== undefined };
    this.origin = { ...base, path: base.path === '/' ? '' : base.path };
    // Only a URL with a password is rewritten (redactUrl goes through URL, which drops a default port, lower-cases the host).
    this.shownUrl = clipPath(new URL(this.baseUrl).password !== '' ? redactUrl(this.baseUrl).replace(/\/+$/, '') : this.baseUrl);
    this.opts = {
      timeoutMs: 60_000,
      retryBudgetMs: DEFAULT_RETRY_BUDGET_MS,
      baseDelayMs: 100,
      maxDelayMs: 5_000,
      random: Math.random,
      sleep: sleepReal,
      batch: false,
      ...opts,
    };
    const { retries, retryBudgetMs, baseDelayMs, maxDelayMs } = this.opts;
    this.policy = { ...(retries !== undefined ? { retries } : {}), budgetMs: retryBudgetMs, baseDelayMs, maxDelayMs };
  }

  /**
   * Whether `run` passes its lane on (batch mode: runs travel as run items),
   * so the DMZ client bounds the apply's cloud work per data center itself
   * and the caller may send it more runs than that (docs/protocol.md, "Lanes").
   */
  get lanes(): boolean {
    return this.opts.batch;
  }

  /** Inserts the VM in the record in the pack's initial state (no cloud call). Vetoed -> outcome `vetoed`. */
  createVm(req: CreateVmRequest): Promise<StepResult> {
    return this.step({ op: 'create', body: req });
  }

  /** Carries the VM along one edge (or resizes it). Never throws for a veto or a failed cloud call: see `outcome`. */
  transition(vmId: string, req: TransitionRequest): Promise<StepResult> {
    return this.step({ op: 'transition', vmId, body: req });
  }

  /** The last edge, into the terminal state: deletes the VM in the cloud. */
  deleteVm(vmId: string, req: DeleteVmRequest): Promise<StepResult> {
    return this.step({ op: 'delete', vmId, body: req });
  }

  /**
   * A member's steps in order (docs/protocol.md, "Runs"), stopping after the
   * first whose outcome is not ok; `onStep` gets each step's result as soon
   * as it is done. With `batch`, the steps travel as one run, so the DMZ
   * client goes from step to step without waiting for us (and asks the
   * authority once per edge instead of twice); otherwise one request each.
   * Either way every step keeps its own idempotency key and the single
   * routes' answers and retry rules: a run cut off is sent again from its
   * first unanswered step, and a step the DMZ client rejects throws as its
   * single route would, the steps before it delivered. `lane` (batch only,
   * see `lanes`) lets the DMZ client hold the run until one of the apply's
   * places in the data center is free.
   */
  async run(steps: readonly BatchStep[], onStep: (k: number, result: StepResult) => void, opts: { lane?: RunLane } = {}): Promise<void> {
    if (!this.opts.batch || steps.length === 1) {
      for (let k = 0; k < steps.length; k++) {
        const r = await this.step(steps[k]);
        onStep(k, r);
        if (r.outcome !== 'ok') return;
      }
      return;
    }
    for (let at = 0; at < steps.length; at += RUN_STEPS_MAX) {
      const part = steps.slice(at, at + RUN_STEPS_MAX);
      let stopped = false;
      await new Promise<void>((resolve, reject) => this.enqueueRun(part, opts.lane, (k, r) => {
        onStep(at + k, r);
        if (r.outcome !== 'ok') stopped = true;
      }, resolve, reject));
      if (stopped) return;
    }
  }

  /** What the cloud holds for this VM; undefined when the cloud does not know it. */
  async getVm(vmId: string): Promise<ActualVm | undefined> {
    const res = await this.request('GET', `/v1/vms/${encodeURIComponent(vmId)}`);
    if (res.status === 404) return undefined;
    return this.expectOk<ActualVm>('GET', `/v1/vms/${vmId}`, res);
  }

  /** Every VM of the data center as the cloud sees it (including terminated ones still known). */
  async listVms(): Promise<ActualVm[]> {
    const res = await this.request('GET', '/v1/vms');
    return this.expectOk<{ vms: ActualVm[] }>('GET', '/v1/vms', res).vms;
  }

  /**
   * fleet apply's check of FLEET_ADMIN_TOKEN through this DMZ client (POST
   * /v1/admin-check, passed on to its authority): the body is a nonce and a
   * proof made with the token, never the token. `ok: true`, or the DMZ
   * client's refusal as it came (admin-proof-refused: the authority does not
   * hold that token; another code: it could not be checked). Retried as any
   * request (a 5xx, no answer) until the retry budget runs out, then
   * apply.dmz-unreachable / apply.dmz-error; a 401 is apply.dmz-unauthorized.
   * Answered at once, not retried:
   * - a 429, with its Retry-After (`retryAfterMs`): the DMZ client's limit of
   *   refused checks per source address, or its authority's per data center
   *   passed on (admin-check-rate-limited): asking again within the window is
   *   refused again, and after it only adds a wrong token's refusals; a 429
   *   without that code (a proxy's) is answered at once too, never spun on;
   * - a 502 with the DMZ client's own error body (a code of the wire registry
   *   and a message, protocol/errors.ts ownWireCode): its authority's refusal
   *   (a 4xx: an authority without the route, or refusing the DMZ client's
   *   token), which asking again cannot change, as the 404 of a DMZ client
   *   without the route. A 502 of a gateway or proxy on either hop carries no
   *   such body (whatever JSON it has) and is retried.
   */
  async adminCheck(body: AdminCheckRequest): Promise<AdminCheckAnswer> {
    const res = await this.request('POST', '/v1/admin-check', body, undefined, (status, parsed) => status === 429 || (status === 502 && ownWireCode(parsed) !== undefined));
    if (res.status === 401 || (res.status >= 200 && res.status < 300)) return this.expectOk<{ ok: true }>('POST', '/v1/admin-check', res);
    const code = ownWireCode(res.body);
    return {
      ok: false,
      status: res.status,
      code: code ?? `status ${res.status}`,
      message: errorMessage(res.body),
      ...(res.retryAfterMs !== undefined ? { retryAfterMs: res.retryAfterMs } : {}),
    };
  }

  async health(): Promise<HealthResponse> {
    const res = await this.request('GET', '/v1/health');
    return this.expectOk<HealthResponse>('GET', '/v1/health', res);
  }

  private async step(step: BatchStep): Promise<StepResult> {
    const { method, path } = route(step);
    const key = step.body.idempotencyKey;
    const res = this.opts.batch
      ? await new Promise<RawResponse>((resolve, reject) => {
          const q: Queued = {
            item: step,
            method,
            path,
            key,
            attempt: 0,
            slept: 0,
            answer: (_k, status, body, retryAfter) => {
              if (status < 500 && status !== 429) resolve({ status, body });
              else this.again(q, `answered ${status}: ${errorMessage(body)}`, statusFailure(body), retryAfter);
              return true;
            },
            lost: (reason, waitedMs) => this.again(q, reason, 'apply.dmz-unreachable', undefined, waitedMs),
            reject,
          };
          this.enqueue(q);
        })
      : await this.request(method, path, step.body, key);
    return this.expectOk<StepResult>(method, path, res);
  }

  /** Queues a run; `onStep` gets each answered step (k counts from the run's first step). */
  private enqueueRun(steps: readonly BatchStep[], lane: RunLane | undefined, onStep: (k: number, r: StepResult) => void, resolve: () => void, reject: (e: unknown) => void): void {
    /** The first step not yet answered, and the first of those sent with the exchange on its way. */
    let from = 0;
    let sentFrom = 0;
    const q: Queued = { item: { op: 'run', steps: [] }, method: '', path: '', key: '', attempt: 0, slept: 0, answer: () => true, lost: () => {}, reject };
    const aim = () => {
      sentFrom = from;
      const { method, path } = route(steps[from]);
      Object.assign(q, { item: { op: 'run', steps: steps.slice(from), ...(lane ? { lane } : {}) }, method, path, key: steps[from].body.idempotencyKey });
    };
    aim();
    q.answer = (k, status, body, retryAfter) => {
      // Lines of a run come in step order; an answer to the whole batch (k undefined) is its first unanswered step's.
      if (k !== undefined && sentFrom + k !== from) return false;
      if (status >= 500 || status === 429) {
        aim();
        this.again(q, `answered ${status}: ${errorMessage(body)}`, statusFailure(body), retryAfter);
        return true;
      }
      let result: StepResult;
      try {
        result = this.expectOk<StepResult>(q.method, q.path, { status, body });
      } catch (err) {
        reject(err);
        return true;
      }
      from++;
      q.attempt = 0;
      q.slept = 0;
      onStep(from - 1, result);
      if (result.outcome !== 'ok' || from === steps.length) {
        resolve();
        return true;
      }
      // Later lines of this exchange count from the step it was sent with.
      return false;
    };
    q.lost = (reason, waitedMs) => {
      aim();
      this.again(q, reason, 'apply.dmz-unreachable', undefined, waitedMs);
    };
    this.enqueue(q);
  }

  // ---- batches (opts.batch) ----
  //
  // Steps queued in one tick go out together, at most STEP_BATCH_MAX a
  // request; any number of batches may be on their way. Each step keeps the
  // single route's rules (the table at the top): its own answer line is
  // final unless it is a 5xx or 429; a step whose line never comes (the
  // connection failed, or went quiet for timeoutMs) is sent again with a later
  // batch, with its own backoff and always its own idempotency key.

  private enqueue(q: Queued): void {
    this.queued.push(q);
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => {
      this.flushing = false;
      // At most STEP_BATCH_MAX steps a request, a run counting its steps.
      while (this.queued.length > 0) {
        let n = 0;
        let size = 0;
        while (n < this.queued.length && (n === 0 || size + itemSize(this.queued[n].item) <= STEP_BATCH_MAX)) size += itemSize(this.queued[n++].item);
        void this.sendBatch(this.queued.splice(0, n));
      }
    });
  }

  /** An attempt failed for a retried reason: send the item (what is left of a run) again after its backoff, or fail it for good (`failure`: the code it fails with). */
  private again(q: Queued, reason: string, failure: Code, retryAfter?: number, waitedMs = 0): void {
    const { baseDelayMs, maxDelayMs, random, sleep } = this.opts;
    const url = `${this.shownUrl}${q.path}`;
    q.slept += waitedMs;
    if (!mayRetry(this.policy, q.attempt, q.slept)) {
      q.reject(this.error(failure, `${q.method} ${url} (DMZ client of data center ${this.named}) ${reason} ${gaveUp(q.attempt, q.slept)}.`));
      return;
    }
    const delayMs = Math.max(retryAfter ?? 0, backoffMs(q.attempt, baseDelayMs, maxDelayMs, random));
    q.attempt++;
    q.slept += delayMs;
    this.opts.onRetry?.({ attempt: q.attempt, delayMs, reason, method: q.method, url, idempotencyKey: q.key });
    void sleep(delayMs).then(() => this.enqueue(q));
  }

  private async sendBatch(batch: Queued[]): Promise<void> {
    const finished = new Array<boolean>(batch.length).fill(false);
    const settle = (i: number, k: number | undefined, status: number, body: unknown, retryAfter?: number) => {
      if (!(i >= 0 && i < batch.length) || finished[i]) return;
      if (batch[i].answer(k, status, body, retryAfter)) finished[i] = true;
    };
    const rest = (reason: string, waitedMs = 0) => {
      batch.forEach((q, i) => {
        if (finished[i]) return;
        finished[i] = true;
        q.lost(reason, waitedMs);
      });
    };
    let token: string;
    try {
      token = await this.token();
    } catch (err) {
      for (const q of batch) q.reject(err);
      return;
    }
    const payload = JSON.stringify({ steps: batch.map((q) => q.item) });
    const headers = { authorization: `Bearer ${token}`, accept: 'application/x-ndjson' };
    const t = this.origin;
    try {
      // The exchange may last as long as its slowest step; it only has to keep talking.
      const res = await sendLines({ ...t, path: `${t.path}/v1/batch` }, headers, payload, this.opts.timeoutMs, (line) => {
        let parsed: BatchAnswerLine | undefined;
        try {
          parsed = JSON.parse(line) as BatchAnswerLine;
        } catch {
          return;
        }
        if (typeof parsed.i === 'number') settle(parsed.i, parsed.k, parsed.status, parsed.body);
      });
      if (res.status !== 200) {
        let parsed: unknown;
        try {
          parsed = res.text === '' ? undefined : JSON.parse(res.text);
        } catch {
          parsed = { error: { code: 'invalid-json', message: res.text.slice(0, 200) } };
        }
        // The batch itself was answered: every step gets that answer, as its single route would have.
        const retryAfter = retryAfterMs(res.retryAfter);
        batch.forEach((_, i) => settle(i, undefined, res.status, parsed, retryAfter));
      }
      rest('closed the connection before answering');
    } catch (err) {
      const reason = describeFetchError(err, this.opts.timeoutMs, DMZ_TLS_ADVICE, this.sent);
      if (!tlsRefused(err)) return rest(reason, timedOut(err) ? this.opts.timeoutMs : 0);
      // A certificate is not trusted or refused: asking again cannot help.
      batch.forEach((q, i) => {
        if (finished[i]) return;
        finished[i] = true;
        q.reject(this.error('apply.dmz-unreachable', `${q.method} ${this.shownUrl}${q.path} (DMZ client of data center ${this.named}) ${reason}.`));
      });
    }
  }

  private expectOk<T>(method: string, path: string, res: RawResponse): T {
    if (res.status >= 200 && res.status < 300) return res.body as T;
    const url = `${this.shownUrl}${clip(path)}`;
    const msg = errorMessage(res.body);
    if (res.status === 401 && (res.body as Partial<ErrorBody> | undefined)?.error?.code === 'client-cert-required') {
      // The DMZ client asks for a certificate per route (its boot endpoint takes none): the same refusal as at the handshake.
      throw this.error('apply.dmz-unreachable', `${method} ${url} (DMZ client of data center ${this.named}) refused this CLI's TLS client certificate (${msg}); the data center's auth.clientCert (certFile, keyFile) must be signed by the CA the DMZ client requires (its --client-ca).`);
    }
    if (res.status === 401) {
      const variable = this.opts.tokenEnv !== undefined ? clip(this.opts.tokenEnv) : "the variable named by the data center's auth.tokenEnv (default FLEET_CLI_TOKEN_<DC>)";
      throw this.error(
        'apply.dmz-unauthorized',
        `${method} ${url} of data center ${this.named} answered 401: ${msg}. Set ${variable} to the token the DMZ client of ${this.named} was started with.`,
      );
    }
    throw this.error('apply.dmz-rejected', `${method} ${url} of data center ${this.named} answered ${res.status}: ${msg}.`);
  }

  /** The bearer token, refused (apply.token-invalid, not retried) when a header cannot carry it. */
  private async token(): Promise<string> {
    const token = await this.opts.token();
    const bad = unsendableTokenChar(token);
    if (bad !== undefined) {
      const variable = this.opts.tokenEnv !== undefined ? clip(this.opts.tokenEnv) : "the variable named by the data center's auth.tokenEnv (default FLEET_CLI_TOKEN_<DC>)";
      throw this.error('apply.token-invalid', tokenInvalidDetail(variable, `the DMZ client of data center ${this.named}`, bad));
    }
    return token;
  }

  private error(code: Code, detail: string): FleetError {
    return new FleetError(diag(code, detail));
  }

  /**
   * One logical request with retries. Returns the final response for any
   * status that is not retried (2xx, 4xx other than 429, or what `final`
   * says is final); throws FleetError when retries run out.
   */
  private async request(method: string, path: string, body?: unknown, idempotencyKey?: string, final?: (status: number, parsed: unknown) => boolean): Promise<RawResponse> {
    const url = `${this.shownUrl}${clip(path)}`;
    const target = { ...this.origin, path: `${this.origin.path}${path}` };
    const { baseDelayMs, maxDelayMs, random, sleep, timeoutMs } = this.opts;
    let lastReason = '';
    let lastFailure: Code = 'apply.dmz-unreachable';
    let slept = 0;
    let attempt = 0;
    for (; ; attempt++) {
      let retryAfter: number | undefined;
      try {
        const headers: Record<string, string> = {
          authorization: `Bearer ${await this.token()}`,
          accept: 'application/json',
        };
        const payload = body === undefined ? undefined : JSON.stringify(body);
        if (payload !== undefined) {
          headers['content-type'] = 'application/json';
          headers['content-length'] = String(Buffer.byteLength(payload));
        }
        if (idempotencyKey !== undefined) headers['idempotency-key'] = idempotencyKey;
        const res = await send(target, method, headers, payload, timeoutMs);
        const text = res.text;
        let parsed: unknown = undefined;
        if (text !== '') {
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = { error: { code: 'invalid-json', message: text.slice(0, 200) } };
          }
        }
        retryAfter = retryAfterMs(res.retryAfter);
        if ((res.status < 500 && res.status !== 429) || final?.(res.status, parsed)) return { status: res.status, body: parsed, ...(retryAfter !== undefined ? { retryAfterMs: retryAfter } : {}) };
        lastReason = `answered ${res.status}: ${errorMessage(parsed)}`;
        lastFailure = statusFailure(parsed);
      } catch (err) {
        if (err instanceof FleetError) throw err;
        lastReason = describeFetchError(err, timeoutMs, DMZ_TLS_ADVICE, this.sent);
        lastFailure = 'apply.dmz-unreachable';
        // An attempt that went unanswered for timeoutMs spent that much of the budget: a DMZ client that accepts
        // connections but never answers (a frozen process) was tried ~17 times, a minute each, on a 60 s budget.
        if (timedOut(err)) slept += timeoutMs;
        // A certificate is not trusted or refused: asking again cannot help.
        if (tlsRefused(err)) throw this.error('apply.dmz-unreachable', `${method} ${url} (DMZ client of data center ${this.named}) ${lastReason}.`);
      }
      if (!mayRetry(this.policy, attempt, slept)) break;
      const delayMs = Math.max(retryAfter ?? 0, backoffMs(attempt, baseDelayMs, maxDelayMs, random));
      slept += delayMs;
      this.opts.onRetry?.({ attempt: attempt + 1, delayMs, reason: lastReason, method, url, idempotencyKey });
      await sleep(delayMs);
    }
    throw this.error(
      lastFailure,
      `${method} ${url} (DMZ client of data center ${this.named}) ${lastReason} ${gaveUp(attempt, slept)}.`,
    );
  }
}
