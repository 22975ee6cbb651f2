// The DMZ client's calls to the authority: batched over POST /v1/batch
// (docs/protocol.md), each call keeping its own answer and its own retries.
import {
  BATCH_EDGES_MAX,
  BATCH_MAX,
  ProtocolError,
  WireError,
  ownWireCode,
  type AdminCheckRequest,
  type AdminCheckResponse,
  type AdvanceRequest,
  type AdvanceResponse,
  type AuthorizeRequest,
  type AuthorizeResponse,
  type BatchAnswerLine,
  type BatchCall,
  type BootAuthorizeRequest,
  type BootAuthorizeResponse,
  type ReportRequest,
  type ReportResponse,
  callEdges,
} from '../../protocol/index.ts';
import { COUNTING, countMessage } from '../../engine/observability/message-counts.ts';
import type { ClientTls } from '../../engine/transport/index.ts';
import { send, sendLines, sendTarget, type SendTarget } from '../http-send.ts';
import { describeFetchError, type TlsAdvice } from '../fetch-errors.ts';
import { REASON_LIMIT, clip } from '../../engine/diags/index.ts';

/**
 * A sentence the authority wrote (an error body's message, a decision's
 * reason, a boot denial's detail), as the DMZ client passes it on: to the CLI
 * in its answers and error bodies, to its own log lines. Its characters that
 * do not show escaped and at most REASON_LIMIT of them (clip), as the CLI
 * and the provider cut what a DMZ client says: a hostile or broken authority's
 * megabyte or its terminal escapes and line breaks (a forged `error[...]` line)
 * stop here, at the first hop that reads them. Its own sentences stay well
 * under the limit and show no such characters, so they pass unchanged.
 */
export function authoritySaid(m: unknown): string {
  return typeof m === 'string' ? clip(m, REASON_LIMIT) : 'no details';
}

/** `body`, an authority's answer to `call`, with its sentences (authoritySaid) clipped in place: `reason` and `detail`, of an advance's create and next edges too. */
function clipAnswer(call: BatchCall['call'], body: unknown): unknown {
  const clipIn = (o: unknown) => {
    if (!o || typeof o !== 'object') return;
    const r = o as { reason?: unknown; detail?: unknown };
    if (typeof r.reason === 'string') r.reason = authoritySaid(r.reason);
    if (typeof r.detail === 'string') r.detail = authoritySaid(r.detail);
  };
  clipIn(body);
  if (call === 'advance' && body && typeof body === 'object') {
    const a = body as { create?: unknown; next?: unknown };
    clipIn(a.create);
    if (Array.isArray(a.next)) for (const step of a.next as { authorize?: unknown }[]) clipIn(step?.authorize);
  }
  return body;
}

/**
 * The authority's 429 admin-check-rate-limited (its limit of refused checks per
 * data center, AUTHORITY_ADMIN_CHECK_LIMIT), to pass on as it is: the code, the
 * authority's message, and its Retry-After in seconds (when it sent one).
 */
export class AuthorityAdminCheckLimited extends WireError {
  constructor(
    message: string,
    readonly retryAfter: string | undefined,
  ) {
    super('admin-check-rate-limited', message);
    this.name = 'AuthorityAdminCheckLimited';
  }
}

/** What to fix on this hop (`fleet serve dmz-client`'s flags) when a certificate is not trusted or refused. */
const AUTHORITY_HOP_ADVICE: TlsAdvice = {
  who: "this DMZ client's",
  untrusted: 'give the CA bundle that signed it as --authority-ca',
  refused: "give --authority-cert and --authority-key, signed by the CA of the authority's --client-ca",
};

/** Where the token comes from, for a readiness failure a person can act on. */
function authorityTokenHint(dataCenter: string): string {
  return `FLEET_DMZ_TOKEN_${dataCenter.toUpperCase().replace(/[^A-Z0-9]/g, '_')} must be the same for the authority and this DMZ client`;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** How long a lazy call waits for others to go with. */
export const LINGER_MS = 5;

/**
 * How long failed reports go without their error code after an authority
 * refused one as an unknown property (AuthorityClient.codesOffUntil): then
 * the next one carries it again, so a DMZ client upgraded before its
 * authority has codes back minutes after the authority is upgraded, not at
 * its own restart. Asking an authority still older costs one refused batch,
 * sent again at once without codes, per period.
 */
export const CODES_RETRY_MS = 10 * 60_000;

/**
 * Whether `message`, an authority's 400 refusing a whole batch, refuses a
 * failed report's error code (ReportRequest.code) as an unknown property:
 * an authority older than the field. Its schema allows no unknown property,
 * and Fastify's answer names the offending body by its path, not the
 * property: `body/calls/1/body must NOT have additional properties` (a
 * report), `body/calls/0/body/report must NOT have additional properties`
 * (an advance's), several joined with ", " (what the authority of 32e46fa,
 * the last without the field, answers). So: such an error at a body that
 * carries a code. Any other 400 (a call malformed otherwise, a code the
 * authority knows refused for its value) is not one, and leaves codes on.
 */
export function refusesCode(message: string, calls: readonly { call: BatchCall['call']; body: unknown }[]): boolean {
  for (const m of message.matchAll(/\bbody\/calls\/(\d+)\/body(\/report)? must NOT have additional properties/g)) {
    const c = calls[Number(m[1])];
    if (c === undefined) continue;
    const body = (m[2] ? (c.call === 'advance' ? (c.body as AdvanceRequest).report : undefined) : c.call === 'report' ? c.body : undefined) as ReportRequest | undefined;
    if (body?.code !== undefined) return true;
  }
  return false;
}

/** The authority's single routes, by the name a batch gives their calls. */
const ROUTES: Record<BatchCall['call'], string> = { authorize: '/v1/authorize', report: '/v1/reports', advance: '/v1/advance', boot: '/v1/boot/authorize' };

/**
 * `body` of a `call` without a failed report's error code (ReportRequest.code, the report of an advance too), for an
 * authority older than the field; the body itself when it has none.
 */
function withoutCode(call: BatchCall['call'], body: unknown): unknown {
  if (call === 'report' && (body as ReportRequest).code !== undefined) {
    const { code: _code, ...rest } = body as ReportRequest;
    return rest;
  }
  if (call === 'advance' && (body as AdvanceRequest).report?.code !== undefined) {
    const { code: _code, ...report } = (body as AdvanceRequest).report!;
    return { ...(body as AdvanceRequest), report };
  }
  return body;
}

/** How many of the queued calls, from the first, go in the next batch: at most BATCH_MAX calls and BATCH_EDGES_MAX edges. */
export function batchLength(queue: readonly { edges: number }[]): number {
  let n = 0;
  let edges = 0;
  while (n < queue.length && n < BATCH_MAX && (n === 0 || edges + queue[n].edges <= BATCH_EDGES_MAX)) edges += queue[n++].edges;
  return n;
}

interface Queued {
  call: BatchCall['call'];
  body: unknown;
  /** The edges it names (callEdges): a batch holds at most BATCH_EDGES_MAX. */
  edges: number;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  /** Sends so far that failed for want of the authority (connection error or 5xx). */
  failures: number;
  /** The last such failure, for the 503 when they run out. */
  last: string;
}

/**
 * Calls to the authority (node:http keep-alive, ../http-send.ts), batched:
 * the calls made in one tick go together in one POST /v1/batch (at most
 * BATCH_MAX calls naming BATCH_EDGES_MAX edges), any number of batches on their way, so with many steps in
 * flight a step costs a fraction of an HTTP exchange instead of two. The
 * authority streams each call's answer back as soon as it is done, so a call
 * never waits for a slower one in its batch. Each call keeps its own outcome:
 * a call the authority refuses (4xx) rejects at once with a 502 for our
 * caller (keeping the authority's wire code); one that meets a connection failure, silence for timeoutMs, or a
 * 5xx (the whole batch's or its own) is sent again with a later batch after a
 * backoff, up to ATTEMPTS sends, then rejects with a 503.
 */
export class AuthorityClient {
  private readonly queue: Queued[] = [];
  private scheduled = false;
  /**
   * Until when failed reports go without their error code (ReportRequest.code; 0: they carry it). An authority older
   * than the field refuses a batch that carries one, whole (400: its schema allows no unknown property; nothing of a
   * batch refused whole was decided), and with it every other call of the batch: such a batch (refusesCode says which
   * 400 is one) is sent once more without codes, and so is every call after it for CODES_RETRY_MS, then codes are
   * tried again. Meanwhile its boot failures count as not denied, the VM booted again rather than deleted
   * (docs/recovery.md), as an older DMZ client's. A 400 for anything else leaves codes on: it turned them off until a
   * restart, and one malformed call silenced every later boot denial.
   */
  private codesOffUntil = 0;
  /** The timer of lazy calls waiting for company (see report). */
  private lingering: NodeJS.Timeout | undefined;
  private readonly url: URL;
  /** The batch URL taken apart, with the TLS material an https authority is verified with and presented. */
  private readonly target: SendTarget;
  private readonly headers: Record<string, string>;
  /** How calls go, for what a failed one means (describeFetchError). */
  private readonly sent: { plainHttp: boolean; clientCert: boolean };

  constructor(
    private readonly dataCenter: string,
    baseUrl: string,
    token: string,
    private readonly timeoutMs: number,
    /** Base of the random backoff before a call is sent again, in ms. */
    private readonly backoffMs = 50,
    /** For an https authority: its CA bundle and this DMZ client's certificate (mTLS). */
    tls?: ClientTls,
  ) {
    this.url = new URL(`${baseUrl.replace(/\/+$/, '')}/v1/batch`);
    this.target = sendTarget(this.url, tls);
    this.sent = { plainHttp: this.url.protocol === 'http:', clientCert: (this.target as Exclude<SendTarget, URL>).tls?.cert !== undefined };
    this.headers = { authorization: `Bearer ${token}` };
  }

  /**
   * Rejects unless the authority answers its liveness route and accepts this
   * DMZ client's token (the DMZ client's readiness). The token is checked
   * with an empty batch: the authority authenticates before it validates, so
   * a known token gets 400 (no calls) and a wrong one 401; nothing is decided.
   */
  async ping(): Promise<void> {
    const limit = Math.min(this.timeoutMs, 2_000);
    const target = this.target as Exclude<SendTarget, URL>;
    const reach = (err: unknown): never => {
      throw new Error(`the authority ${describeFetchError(err, limit, AUTHORITY_HOP_ADVICE, this.sent)}`);
    };
    const res = await send({ ...target, path: `${this.url.pathname.replace(/\/v1\/batch$/, '')}/v1/health` }, 'GET', {}, undefined, limit).catch(reach);
    if (res.status !== 200) throw new Error(`the authority answered ${res.status}`);
    const auth = await send(target, 'POST', { ...this.headers, 'content-type': 'application/json' }, '{"calls":[]}', limit).catch(reach);
    if (auth.status === 401) throw new Error(`the authority refuses the token of data center ${this.dataCenter} (${authorityTokenHint(this.dataCenter)})`);
    if (auth.status !== 400) throw new Error(`the authority answered ${auth.status} to a token check`);
  }

  authorize(body: AuthorizeRequest): Promise<AuthorizeResponse> {
    return this.call('authorize', body) as Promise<AuthorizeResponse>;
  }

  /**
   * `lazy`: nobody waits for the answer soon (a report written behind, the
   * next edge already running): the call waits up to LINGER_MS for others to
   * go with, or goes with the next call that is not lazy. At a few calls per
   * millisecond that turns an HTTP exchange and a record statement per
   * report into one per handful.
   */
  report(body: ReportRequest, opts: { lazy?: boolean } = {}): Promise<ReportResponse> {
    return this.call('report', body, opts.lazy === true) as Promise<ReportResponse>;
  }

  /**
   * The report of an edge and the authorization of the VM's next edge, in
   * one call: answered as report then authorize would be, with the same
   * errors (a refused report rejects the whole call). Sending it again after
   * the authority applied it is safe: the report answers `already` and next
   * is decided again (a fresh approval, with its own credentials).
   */
  advance(body: AdvanceRequest): Promise<AdvanceResponse> {
    return this.call('advance', body) as Promise<AdvanceResponse>;
  }

  boot(body: BootAuthorizeRequest): Promise<BootAuthorizeResponse> {
    return this.call('boot', body) as Promise<BootAuthorizeResponse>;
  }

  /**
   * The CLI's admin-token check passed on (the DMZ client's POST
   * /v1/admin-check): the body as the CLI sent it (a nonce and an HMAC proof;
   * the admin token itself never reaches this process) to the authority's
   * POST /v1/admin-check, once, outside the batches (it is rare, and the
   * CLI sends it again on a 5xx). Resolves on the authority's `ok`; rejects
   * with its refusal (403 admin-proof-refused, its message, which names no
   * secret), its limit of refused checks per data center (429
   * admin-check-rate-limited: AuthorityAdminCheckLimited, with its
   * Retry-After), a 502 for any other refusal (an authority without the
   * route: 404), a 503 when it does not answer.
   */
  async adminCheck(body: AdminCheckRequest): Promise<AdminCheckResponse> {
    const target = this.target as Exclude<SendTarget, URL>;
    const path = `${this.url.pathname.replace(/\/v1\/batch$/, '')}/v1/admin-check`;
    const route = `${this.url.origin}/v1/admin-check`;
    let res;
    try {
      res = await send({ ...target, path }, 'POST', { ...this.headers, 'content-type': 'application/json' }, JSON.stringify(body), this.timeoutMs);
    } catch (err) {
      throw new WireError('authority-unreachable', `The DMZ client of ${this.dataCenter} asked ${route}, which ${describeFetchError(err, this.timeoutMs, AUTHORITY_HOP_ADVICE, this.sent)}; nothing was checked.`);
    }
    let parsed: { ok?: unknown; error?: { code?: string; message?: string } } | undefined;
    try {
      parsed = JSON.parse(res.text) as typeof parsed;
    } catch {
      parsed = undefined;
    }
    if (res.status === 200 && parsed?.ok === true) return { ok: true };
    const message = authoritySaid(parsed?.error?.message);
    if (res.status === 403 && parsed?.error?.code === 'admin-proof-refused') throw new WireError('admin-proof-refused', `its authority says: ${message}`);
    if (res.status === 429 && ownWireCode(parsed) === 'admin-check-rate-limited') {
      const seconds = Number(res.retryAfter);
      throw new AuthorityAdminCheckLimited(`its authority says: ${message}`, res.retryAfter !== null && Number.isInteger(seconds) && seconds >= 0 ? String(seconds) : undefined);
    }
    if (res.status >= 500 || res.status === 200) throw new WireError('authority-unreachable', `The DMZ client of ${this.dataCenter} asked ${route}, which answered ${res.status}: ${message}; nothing was checked.`);
    // Its code only when it is one of ours: the CLI takes a 502 with our code for final, and a gateway's 4xx on this hop
    // (a code of its own, or none) is final too, as authority-error with its message.
    throw new ProtocolError(502, ownWireCode(parsed) ?? 'authority-error', `authority ${route} answered ${res.status}: ${message}${res.status === 404 ? ' (an authority older than this DMZ client, without the route)' : ''}`);
  }

  private call(call: BatchCall['call'], body: unknown, lazy = false): Promise<unknown> {
    if (COUNTING) countMessage(`authority calls sent: ${call}${lazy ? ' (lazy)' : ''}`);
    return new Promise((resolve, reject) => {
      this.queue.push({ call, body: Date.now() >= this.codesOffUntil ? body : withoutCode(call, body), edges: callEdges({ call, body }), resolve, reject, failures: 0, last: '' });
      this.schedule(lazy);
    });
  }

  private schedule(lazy = false): void {
    if (lazy) {
      // Goes with the next batch, or after LINGER_MS at the latest.
      if (!this.scheduled) this.lingering ??= setTimeout(() => this.schedule(), LINGER_MS);
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    // The rest of this tick's calls join the batch; any number of batches may be on their way.
    setImmediate(() => {
      this.scheduled = false;
      clearTimeout(this.lingering);
      this.lingering = undefined;
      while (this.queue.length > 0) void this.send(this.queue.splice(0, batchLength(this.queue)));
    });
  }

  private async send(batch: Queued[]): Promise<void> {
    const answered = new Array<boolean>(batch.length).fill(false);
    const again: Queued[] = [];
    const settle = (i: number, status: number, body: unknown) => {
      if (!(i >= 0 && i < batch.length) || answered[i]) return;
      answered[i] = true;
      const q = batch[i];
      if (status >= 200 && status < 300) return q.resolve(clipAnswer(q.call, body));
      const route = `${this.url.origin}${ROUTES[q.call]}`;
      const error = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
      if (status < 500) {
        return q.reject(new ProtocolError(502, ownWireCode(body) ?? 'authority-error', `authority ${route} answered ${status}: ${authoritySaid(error?.message)}`));
      }
      this.failed(q, `answered ${status}: ${authoritySaid(error?.message)}`, again);
    };
    let failure = 'closed the connection before answering';
    try {
      const payload = JSON.stringify({ calls: batch.map((q) => ({ call: q.call, body: q.body })) });
      const res = await sendLines(this.target, this.headers, payload, this.timeoutMs, (line) => {
        let parsed: BatchAnswerLine | undefined;
        try {
          parsed = JSON.parse(line) as BatchAnswerLine;
        } catch {
          return;
        }
        settle(parsed.i, parsed.status, parsed.body);
      });
      if (res.status !== 200) {
        let parsed: { error?: { code?: string; message?: string } } = {};
        try {
          parsed = (JSON.parse(res.text) ?? {}) as typeof parsed;
        } catch {
          // not JSON: reported as "no details" below
        }
        failure = `answered ${res.status}: ${authoritySaid(parsed.error?.message)}`;
        if (res.status === 400 && refusesCode(parsed.error?.message ?? '', batch)) {
          // An authority older than ReportRequest.code (see codesOffUntil): the batch again, without codes (never again
          // refused for them: a batch sent without any is refused as any other). Also a batch sent with codes while
          // another one found out.
          this.codesOffUntil = Date.now() + CODES_RETRY_MS;
          for (const q of batch) this.queue.push({ ...q, body: withoutCode(q.call, q.body) });
          this.schedule();
          return;
        }
        if (res.status < 500) {
          // The authority refused the batch itself: our bug or a wrong token; sending it again will not help.
          const err = new ProtocolError(502, ownWireCode(parsed) ?? 'authority-error', `authority ${this.url.href} ${failure}`);
          batch.forEach((q, i) => {
            if (answered[i]) return;
            answered[i] = true;
            q.reject(err);
          });
          return;
        }
      }
    } catch (err) {
      failure = describeFetchError(err, this.timeoutMs, AUTHORITY_HOP_ADVICE, this.sent);
    }
    batch.forEach((q, i) => {
      if (answered[i]) return;
      answered[i] = true;
      this.failed(q, failure, again);
    });
    if (again.length === 0) return;
    const worst = Math.max(...again.map((q) => q.failures));
    await sleep(Math.random() * this.backoffMs * 2 ** worst);
    for (const q of again) this.queue.push(q);
    this.schedule();
  }

  /** A call that met a connection failure or a 5xx: sent again later, or failed with 503 once its sends run out. */
  private failed(q: Queued, why: string, again: Queued[]): void {
    q.failures++;
    q.last = why;
    if (q.failures < ATTEMPTS) {
      again.push(q);
      return;
    }
    const route = `${this.url.origin}${ROUTES[q.call]}`;
    // Not "nothing was changed": a report or an advance may have been recorded before its answer was lost. Sent again
    // under the same request, the authority finds it done (a report answers `already`; docs/protocol.md).
    q.reject(
      new WireError(
        'authority-unreachable',
        `The DMZ client of ${this.dataCenter} asked ${route}, which ${q.last}; whether it recorded the call is not known. Sent again with the same key, a call it recorded before its answer was lost is found done, not done twice.`,
      ),
    );
  }
}

/** Sends of one call to the authority before the DMZ client gives up (503). */
const ATTEMPTS = 4;

