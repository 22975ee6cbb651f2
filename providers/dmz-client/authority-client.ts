// The DMZ client's calls to the authority: batched over POST /v1/batch
// (docs/protocol.md), each call keeping its own answer and its own retries.
import { diag } from '../../engine/diags/index.ts';
import { ProtocolError } from '../../engine/authority/http.ts';
import type {
  AuthorizeRequest,
  AuthorizeResponse,
  BatchCall,
  BootAuthorizeRequest,
  BootAuthorizeResponse,
  ReportRequest,
  ReportResponse,
} from '../../engine/authority/protocol.ts';
import { BATCH_MAX } from '../../engine/authority/schemas.ts';
import { postJson } from '../http-send.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The authority's single routes, by the name a batch gives their calls. */
const ROUTES = { authorize: '/v1/authorize', report: '/v1/reports', boot: '/v1/boot/authorize' } as const;

interface Queued {
  call: BatchCall['call'];
  body: unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  /** Sends so far that failed for want of the authority (connection error or 5xx). */
  failures: number;
  /** The last such failure, for the 503 when they run out. */
  last: string;
}

/**
 * Calls to the authority (node:http keep-alive, ../http-send.ts), batched:
 * calls made while a batch is on its way (or in the same tick) go together
 * in the next POST /v1/batch, at most BATCH_MAX each and BATCHES_IN_FLIGHT
 * at once, so with many steps in flight a step costs a fraction of an HTTP
 * exchange instead of two. Each call keeps its own outcome: a call the
 * authority refuses (4xx) rejects at once with a 502 for our caller; one that
 * meets a connection failure or a 5xx (the whole batch's or its own) is sent
 * again with the next batch after a backoff, up to ATTEMPTS sends, then
 * rejects with a 503.
 */
export class AuthorityClient {
  private readonly queue: Queued[] = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly url: URL;
  private readonly headers: Record<string, string>;

  constructor(
    private readonly dataCenter: string,
    baseUrl: string,
    token: string,
    private readonly timeoutMs: number,
    /** Base of the random backoff before a call is sent again, in ms. */
    private readonly backoffMs = 50,
  ) {
    this.url = new URL(`${baseUrl.replace(/\/+$/, '')}/v1/batch`);
    this.headers = { authorization: `Bearer ${token}` };
  }

  authorize(body: AuthorizeRequest): Promise<AuthorizeResponse> {
    return this.call('authorize', body) as Promise<AuthorizeResponse>;
  }

  report(body: ReportRequest): Promise<ReportResponse> {
    return this.call('report', body) as Promise<ReportResponse>;
  }

  boot(body: BootAuthorizeRequest): Promise<BootAuthorizeResponse> {
    return this.call('boot', body) as Promise<BootAuthorizeResponse>;
  }

  private call(call: BatchCall['call'], body: unknown): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queue.push({ call, body, resolve, reject, failures: 0, last: '' });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= BATCHES_IN_FLIGHT || this.queue.length === 0) return;
    this.scheduled = true;
    // The rest of this tick's calls join the batch.
    setImmediate(() => {
      this.scheduled = false;
      while (this.queue.length > 0 && this.inFlight < BATCHES_IN_FLIGHT) {
        const batch = this.queue.splice(0, BATCH_MAX);
        this.inFlight++;
        void this.send(batch).finally(() => {
          this.inFlight--;
          this.schedule();
        });
      }
    });
  }

  private async send(batch: Queued[]): Promise<void> {
    let results: { status: number; body: unknown }[] | undefined;
    let failure = '';
    try {
      const res = await postJson(this.url, { calls: batch.map((q) => ({ call: q.call, body: q.body })) }, this.timeoutMs, this.headers);
      let parsed: { results?: { status: number; body: unknown }[]; error?: { code?: string; message?: string } } = {};
      try {
        parsed = (JSON.parse(res.text) ?? {}) as typeof parsed;
      } catch {
        // not JSON: reported as "no details" below
      }
      if (res.status >= 200 && res.status < 300 && Array.isArray(parsed.results) && parsed.results.length === batch.length) {
        results = parsed.results;
      } else {
        failure = `answered ${res.status}: ${parsed.error?.message ?? 'no details'}`;
        if (res.status < 500) {
          // The authority refused the batch itself: our bug or a wrong token; sending it again will not help.
          const err = new ProtocolError(502, parsed.error?.code ?? 'authority-error', `authority ${this.url.href} ${failure}`);
          for (const q of batch) q.reject(err);
          return;
        }
      }
    } catch (err) {
      const e = err as { code?: string; cause?: { code?: string }; message?: string };
      failure = `could not be reached (${e.code ?? e.cause?.code ?? e.message})`;
    }
    const again: Queued[] = [];
    batch.forEach((q, i) => {
      const r = results?.[i];
      if (r && r.status >= 200 && r.status < 300) return q.resolve(r.body);
      const route = `${this.url.origin}${ROUTES[q.call]}`;
      const error = (r?.body as { error?: { code?: string; message?: string } } | undefined)?.error;
      if (r && r.status < 500) {
        return q.reject(new ProtocolError(502, error?.code ?? 'authority-error', `authority ${route} answered ${r.status}: ${error?.message ?? 'no details'}`));
      }
      q.failures++;
      q.last = r ? `answered ${r.status}: ${error?.message ?? 'no details'}` : failure;
      if (q.failures < ATTEMPTS) return again.push(q);
      const d = diag('apply.authority-unreachable', `The DMZ client of ${this.dataCenter} asked ${route}, which ${q.last}; nothing was changed.`);
      q.reject(new ProtocolError(503, d.code, d.detail));
    });
    if (again.length === 0) return;
    const worst = Math.max(...again.map((q) => q.failures));
    await sleep(Math.random() * this.backoffMs * 2 ** worst);
    this.queue.unshift(...again);
  }
}

/** Sends of one call to the authority before the DMZ client gives up (503). */
const ATTEMPTS = 4;
/** Batches on their way to the authority at once. */
const BATCHES_IN_FLIGHT = 2;

