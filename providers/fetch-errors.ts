// What a failed exchange with a DMZ client is called in a diagnostic: its
// error body's message, a TLS refusal (never retried), or why the request
// could not be sent. Used by providers/client.ts and providers/authority-plans.ts.
import { REASON_LIMIT, clip } from '../engine/diags/index.ts';
import type { ErrorBody } from '../protocol/index.ts';

/**
 * The message of an error answer's body (`{ error: { message } }`, or a bare
 * `message`), for a diagnostic: the peer wrote it, so it is clipped
 * (REASON_LIMIT, its unseen characters escaped): a line break in it forged a
 * diagnostic line, and a 100 KB one was printed whole into every retry note.
 */
export function errorMessage(body: unknown): string {
  const e = (body as Partial<ErrorBody> | undefined)?.error;
  if (e && typeof e === 'object' && typeof e.message === 'string') return clip(e.message, REASON_LIMIT);
  const m = (body as { message?: unknown } | undefined)?.message;
  return typeof m === 'string' ? clip(m, REASON_LIMIT) : 'no details';
}

/** OpenSSL / Node codes of a server certificate this caller does not trust. */
const SERVER_CERT_UNTRUSTED = /^(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|CERT_UNTRUSTED|CERT_REJECTED|ERR_TLS_CERT_ALTNAME_INVALID)$/;
/** TLS alerts of a server that refused this caller's certificate (or its lack of one). */
const CLIENT_CERT_REFUSED = /^ERR_SSL_.*ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_EXPIRED|CERTIFICATE_UNKNOWN|CERTIFICATE_REVOKED|ACCESS_DENIED)$/;

/**
 * Whether a TLS handshake met a plain HTTP answer (OpenSSL's "wrong version
 * number": the first bytes back were `HTTP/1.1 400`, not a TLS record): the
 * service at an https:// address does not serve TLS. Nothing was sent yet.
 */
function plainAnswer(err: unknown): boolean {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e?.code ?? e?.cause?.code;
  const message = `${e?.message ?? ''} ${e?.cause?.message ?? ''}`;
  return (code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER') && /wrong version number|packet length too long/i.test(message);
}

/** Whether an exchange failed by going unanswered for its whole timeout (send's TimeoutError, an aborted fetch). */
export function timedOut(err: unknown): boolean {
  const name = (err as { name?: string } | undefined)?.name;
  return name === 'TimeoutError' || name === 'AbortError';
}

/** Whether a request failed because a TLS certificate is not trusted (by this CLI) or was refused (by the DMZ client), or the service answered in plain HTTP: never retried. */
export function tlsRefused(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string; message?: string } };
  const cause = e?.code ?? e?.cause?.code ?? e?.cause?.message;
  return plainAnswer(err) || (cause !== undefined && (SERVER_CERT_UNTRUSTED.test(cause) || CLIENT_CERT_REFUSED.test(cause)));
}

/** http-send's message for an answer whose connection closed before it was complete. */
export const INCOMPLETE_ANSWER = 'the connection closed before the answer was complete';

/**
 * What to fix when a TLS certificate is not trusted by the caller, or refused
 * by the server: the settings of the hop, and who the caller is. The fix goes
 * before the OpenSSL code, so a line cut short (a /readyz check's 200
 * characters) keeps it.
 */
export interface TlsAdvice {
  /** The caller, as the owner of a client certificate: `this CLI's`. */
  who: string;
  untrusted: string;
  refused: string;
}

/** The CLI's hop to a data center's DMZ client (stack.yaml, `auth.clientCert`). */
export const DMZ_TLS_ADVICE: TlsAdvice = {
  who: "this CLI's",
  untrusted: "give the CA bundle that signed it as the data center's auth.clientCert.caFile in stack.yaml",
  refused: "the data center's auth.clientCert (certFile, keyFile) must be signed by the CA the DMZ client requires (its --client-ca)",
};

/**
 * Why a request could not be sent, for a diagnostic: no answer in time, a
 * TLS refusal (and what to fix: `advice`), or the network error. A
 * connection cut before any answer (ECONNRESET) is what a server speaking TLS
 * does with a plain http:// request (`sent.plainHttp`), and what a TLS server
 * refusing the client certificate may do instead of an alert (`sent.clientCert`:
 * one was presented): the diagnostic says so.
 */
export function describeFetchError(err: unknown, timeoutMs: number, advice: TlsAdvice = DMZ_TLS_ADVICE, sent: { plainHttp?: boolean; clientCert?: boolean } = {}): string {
  const e = err as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `did not answer within ${timeoutMs} ms`;
  const cause = e?.code ?? e?.cause?.code ?? e?.cause?.message;
  // A certificate out of date or issued for other names is not fixed by another CA bundle: say what is wrong with it.
  if (cause === 'CERT_HAS_EXPIRED') {
    return `could not be reached: its TLS certificate (or one of its chain) has expired: renew it where the service runs (its --tls-cert), then restart it; a new CA bundle does not help (${cause}: ${e?.message ?? ''})`;
  }
  if (cause === 'CERT_NOT_YET_VALID') {
    return `could not be reached: its TLS certificate (or one of its chain) is not valid yet: check the clocks of this machine and of the service, or issue the certificate with an earlier start (${cause}: ${e?.message ?? ''})`;
  }
  if (cause === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `could not be reached: its TLS certificate was issued for other names than the address's host: give the address by a name the certificate holds, or reissue the certificate with this host among its names (subjectAltName) (${cause}: ${clip(e?.message ?? '', REASON_LIMIT)})`;
  }
  if (cause && SERVER_CERT_UNTRUSTED.test(cause)) {
    return `could not be reached: its TLS certificate is not trusted; ${advice.untrusted} (${cause}: ${e?.message ?? ''})`;
  }
  if (plainAnswer(err)) {
    return `could not be reached: it answered in plain HTTP, so the service at this https:// address does not serve TLS: start it with --tls-cert and --tls-key (plain http:// is only for a service on this machine) (${cause ?? 'EPROTO'})`;
  }
  if (cause && CLIENT_CERT_REFUSED.test(cause)) {
    return `refused ${advice.who} TLS client certificate: ${advice.refused} (${cause})`;
  }
  // (Not an answer cut off midway: http-send's own ECONNRESET, after a status line came.)
  if (cause === 'ECONNRESET' && e?.message !== INCOMPLETE_ANSWER) {
    if (sent.plainHttp) {
      return `could not be reached: the connection was cut before any answer, as a service serving HTTPS does with a plain http:// request; if it serves TLS, give its https:// address (${cause})`;
    }
    if (sent.clientCert) {
      return `could not be reached: the connection was cut before any answer, as a service may that refused ${advice.who} TLS client certificate: ${advice.refused} (${cause})`;
    }
  }
  return `could not be reached (${cause ?? e?.message ?? String(err)})`;
}
