// What a failed exchange with a DMZ client is called in a diagnostic: its
// error body's message, a TLS refusal (never retried), or why the request
// could not be sent. Used by providers/client.ts.
import type { ErrorBody } from '../protocol/index.ts';

/** The message of an error answer's body (`{ error: { message } }`, or a bare `message`). */
export function errorMessage(body: unknown): string {
  const e = (body as Partial<ErrorBody> | undefined)?.error;
  if (e && typeof e === 'object' && typeof e.message === 'string') return e.message;
  const m = (body as { message?: unknown } | undefined)?.message;
  return typeof m === 'string' ? m : 'no details';
}

/** OpenSSL / Node codes of a server certificate this caller does not trust. */
const SERVER_CERT_UNTRUSTED = /^(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|CERT_UNTRUSTED|CERT_REJECTED|ERR_TLS_CERT_ALTNAME_INVALID)$/;
/** TLS alerts of a server that refused this caller's certificate (or its lack of one). */
const CLIENT_CERT_REFUSED = /^ERR_SSL_.*ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_EXPIRED|CERTIFICATE_UNKNOWN|CERTIFICATE_REVOKED|ACCESS_DENIED)$/;

/** Whether an exchange failed by going unanswered for its whole timeout (send's TimeoutError, an aborted fetch). */
export function timedOut(err: unknown): boolean {
  const name = (err as { name?: string } | undefined)?.name;
  return name === 'TimeoutError' || name === 'AbortError';
}

/** Whether a request failed because a TLS certificate is not trusted (by this CLI) or was refused (by the DMZ client): never retried. */
export function tlsRefused(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string; message?: string } };
  const cause = e?.code ?? e?.cause?.code ?? e?.cause?.message;
  return cause !== undefined && (SERVER_CERT_UNTRUSTED.test(cause) || CLIENT_CERT_REFUSED.test(cause));
}

/** Why a request could not be sent, for a diagnostic: no answer in time, a TLS refusal (and what to fix), or the network error. */
export function describeFetchError(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `did not answer within ${timeoutMs} ms`;
  const cause = e?.code ?? e?.cause?.code ?? e?.cause?.message;
  if (cause && SERVER_CERT_UNTRUSTED.test(cause)) {
    return `could not be reached: its TLS certificate is not trusted (${cause}: ${e?.message ?? ''}); give the CA bundle that signed it as the data center's auth.clientCert.caFile in stack.yaml`;
  }
  if (cause && CLIENT_CERT_REFUSED.test(cause)) {
    return `refused this CLI's TLS client certificate (${cause}); the data center's auth.clientCert (certFile, keyFile) must be signed by the CA the DMZ client requires (its --client-ca)`;
  }
  return `could not be reached (${cause ?? e?.message ?? String(err)})`;
}
