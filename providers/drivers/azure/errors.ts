// What an Azure Resource Manager failure means to the DMZ client: one
// DriverError kind per failure, decided from the HTTP status and ARM's error
// code (`{ "error": { "code", "message" } }`, also inside a failed
// long-running operation's status). A table, documented in
// docs/drivers/azure.md ("Error mapping"): keep the two in step.
//
// The SDK's own retries are off: the DMZ client retries `transient` errors
// (docs/dmz-client.md), so a throttled (429, its Retry-After carried as
// DriverError.retryAfterMs, which the retry waits out) or failing (5xx,
// connection reset) call surfaces here.
import { DriverError, type DriverErrorKind } from '../types.ts';

/** ARM error codes with a kind of their own, whatever the status. */
const BY_CODE: Readonly<Record<string, DriverErrorKind>> = {
  AllocationFailed: 'capacity',
  ZonalAllocationFailed: 'capacity',
  SkuNotAvailable: 'capacity',
  OverconstrainedAllocationRequest: 'capacity',
  OverconstrainedZonalAllocationRequest: 'capacity',
  QuotaExceeded: 'capacity',
  // The data center's subnet has no address left for the VM's NIC.
  SubnetIsFull: 'capacity',
  AuthenticationFailed: 'credentials',
  AuthorizationFailed: 'credentials',
  LinkedAuthorizationFailed: 'credentials',
  InvalidAuthenticationToken: 'credentials',
  ExpiredAuthenticationToken: 'credentials',
  ResourceNotFound: 'not-found',
  // The data center's resource group itself is missing: a setup problem, never "the VM is gone" (a delete must not pass).
  ResourceGroupNotFound: 'failed',
  // ARM's 404 to a principal with no role on the subscription (it does not say 403, not to reveal the subscription),
  // or for a cancelled one: never "the VM is gone" either (get would answer absent, a delete would pass).
  SubscriptionNotFound: 'credentials',
  NotFound: 'not-found',
  OperationNotAllowed: 'invalid-state',
  TooManyRequests: 'transient',
  RetryableError: 'transient',
  InternalServerError: 'transient',
  ServerTimeout: 'transient',
  OperationPreempted: 'transient',
  // 409s that say another operation holds the resource (ARM serialises writes to one resource: a power-off still
  // running when the next call comes, an operation of the portal's): it is released once that one ends, and the
  // driver's calls are idempotent, so trying again is the way through (ARM's message asks for it).
  AnotherOperationInProgress: 'transient',
  ConflictingConcurrentWriteNotAllowed: 'transient',
};

/** What a person does about a code whose message does not say. */
const HINTS: Readonly<Record<string, string>> = {
  SubscriptionNotFound:
    'the identity making the call has no role on this subscription (ARM answers 404, not 403), or the subscription is cancelled or in another tenant: check the role assignments (docs/drivers/azure.md, "Least-privilege role definitions") and the subscriptionId',
};

/** Network failures with no HTTP answer: trying again may help. */
const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'REQUEST_SEND_ERROR', 'UND_ERR_SOCKET']);

/** The parts of an SDK error (RestError, a failed poll, an abort) this mapping reads. */
export interface AzureFailure {
  name?: string;
  statusCode?: number;
  code?: string;
  message: string;
  /** Retry-After as ARM sent it: seconds, or an HTTP date. */
  retryAfter?: string;
  /** retry-after-ms / x-ms-retry-after-ms: the wait in milliseconds. */
  retryAfterMs?: string;
}

/**
 * How long Azure asked the caller to wait, in ms: `retry-after-ms` or
 * `x-ms-retry-after-ms` (milliseconds), else `Retry-After` (seconds, or an
 * HTTP date); undefined when it asked nothing readable.
 */
export function retryAfterMs(f: Pick<AzureFailure, 'retryAfter' | 'retryAfterMs'>, now = Date.now()): number | undefined {
  if (f.retryAfterMs !== undefined && /^\d+$/.test(f.retryAfterMs.trim())) return Number(f.retryAfterMs.trim());
  const v = f.retryAfter?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The table: status and code -> kind. */
export function failureKind(f: AzureFailure): DriverErrorKind {
  if (f.name === 'AbortError' || f.name === 'TimeoutError') return 'timeout';
  const code = f.code ?? '';
  // OperationNotAllowed is also how ARM refuses a call over the subscription's quota.
  if (code === 'OperationNotAllowed' && /quota/i.test(f.message)) return 'capacity';
  const byCode = BY_CODE[code];
  if (byCode) return byCode;
  const s = f.statusCode;
  if (s === 401 || s === 403) return 'credentials';
  if (s === 429 || (s !== undefined && s >= 500)) return 'transient';
  if (s === 404) return 'not-found';
  // A bare `Conflict` code that says the same in words ("Another operation on this or dependent resource is in progress").
  if (s === 409 && code === 'Conflict' && /another operation .*in progress/i.test(f.message)) return 'transient';
  if (s === 409) return 'invalid-state';
  if (s === undefined && NETWORK_CODES.has(code)) return 'transient';
  return 'failed';
}

/** Reads an SDK error's status, ARM code and Retry-After (the SDK puts them in different places for plain calls and failed polls). */
export function readFailure(err: unknown): AzureFailure {
  if (!(err instanceof Error)) return { message: String(err) };
  const e = err as Error & {
    statusCode?: number;
    code?: string;
    response?: { headers?: { get?(name: string): string | undefined }; bodyAsText?: string | null; status?: number };
    details?: { error?: { code?: string; message?: string } };
  };
  let code = e.code;
  let message = e.message;
  // A failed long-running operation: its status body's error.
  const inner = e.details?.error;
  if (inner?.code) {
    code = inner.code;
    message = inner.message ?? message;
  }
  // core-lro's failed operation: "The long-running operation has failed. <code>. <message>"
  const lro = /long-running operation has failed\. ([A-Za-z]+)\. ([\s\S]*)$/.exec(message);
  if (!code && lro) {
    code = lro[1];
    message = lro[2];
  }
  if ((!code || code === 'UNKNOWN') && e.response?.bodyAsText) {
    try {
      const body = JSON.parse(e.response.bodyAsText) as { error?: { code?: string; message?: string } };
      if (body.error?.code) {
        code = body.error.code;
        message = body.error.message ?? message;
      }
    } catch {
      // not JSON: keep the SDK's message
    }
  }
  const retryAfter = e.response?.headers?.get?.('retry-after');
  const retryAfterMs = e.response?.headers?.get?.('retry-after-ms') ?? e.response?.headers?.get?.('x-ms-retry-after-ms');
  const statusCode = e.statusCode ?? e.response?.status;
  return {
    name: e.name,
    message,
    ...(statusCode !== undefined ? { statusCode } : {}),
    ...(code ? { code } : {}),
    ...(retryAfter ? { retryAfter } : {}),
    ...(retryAfterMs ? { retryAfterMs } : {}),
  };
}

/** An SDK error as the DriverError the DMZ client acts on; `what` names the call and the VM. */
export function toDriverError(what: string, err: unknown): DriverError {
  if (err instanceof DriverError) return err;
  const f = readFailure(err);
  const kind = failureKind(f);
  const status = [f.statusCode, f.code].filter((x) => x !== undefined).join(' ');
  const waitMs = kind === 'transient' ? retryAfterMs(f) : undefined;
  const wait = waitMs !== undefined ? `; Azure asks to retry after ${waitMs / 1000} s` : '';
  const hint = f.code !== undefined ? HINTS[f.code] : undefined;
  const why = kind === 'timeout' ? 'no answer before the request timeout' : `${f.message}${hint ? ` (${hint})` : ''}`;
  return new DriverError(kind, `${what}: Azure ${status ? `answered ${status}` : 'failed'}: ${why}${wait}`, kind === 'transient', waitMs !== undefined ? { retryAfterMs: waitMs } : {});
}
