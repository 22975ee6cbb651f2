// One HTTP exchange over node:http / node:https, shared by every part of the
// providers that calls another service: the CLI's DmzHttpClient and the DMZ
// client's calls to the authority (the sim's VM agents have their own,
// drivers/sim/agent-http.ts).
//
// node:http rather than fetch: every step makes such calls, and fetch
// (undici's web streams) costs about three times the CPU per request. The
// default agents keep connections alive (Node 20: keepAlive, idle sockets
// closed after 5 s, before any server's keep-alive timeout) and unref idle
// sockets, so they never keep the process alive. `http.request` is looked up
// at call time (tests intercept it), and no agent or socket sits in a module
// variable, so Pulumi providers that use this module stay serializable.
// Retries are the caller's: each caller has its own rules.
import { COUNTING, countMessage } from '../engine/observability/message-counts.ts';
import http from 'node:http';
import https from 'node:https';
import type { ClientTls } from '../engine/transport/index.ts';
import { INCOMPLETE_ANSWER } from './fetch-errors.ts';

/**
 * Where a request goes: a URL, or the same already taken apart (callers that
 * send many requests to one origin split its URL once; parsing a URL per
 * request showed in the CLI's profile).
 */
export type SendTarget = URL | { protocol: string; hostname: string; port: string; path: string; auth?: string; tls?: ClientTls };

/**
 * A URL taken apart for `send` as node:http would (hostname without an IPv6
 * address's brackets, user:password as auth), with the TLS material an https
 * URL is verified with and presents (engine/transport): the CA bundle instead
 * of the system's, and a client certificate for mTLS.
 */
export function sendTarget(url: URL, tls?: ClientTls): Exclude<SendTarget, URL> {
  return {
    ...(tls && url.protocol === 'https:' ? { tls } : {}),
    protocol: url.protocol,
    hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
    port: url.port,
    path: `${url.pathname}${url.search}`,
    ...(url.username || url.password ? { auth: `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` } : {}),
  };
}

export interface HttpAnswer {
  status: number;
  text: string;
  retryAfter: string | null;
}

/**
 * One HTTP attempt: status, body text and Retry-After. Rejects on network
 * errors (with Node's `code`, e.g. ECONNREFUSED) and, with an error named
 * `TimeoutError`, when the whole exchange takes longer than timeoutMs.
 */
export function send(
  url: SendTarget,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
  timeoutMs: number,
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const t = url instanceof URL ? sendTarget(url) : url;
    const req = (t.protocol === 'https:' ? https : http).request({ protocol: t.protocol, hostname: t.hostname, port: t.port, path: t.path, auth: t.auth, method, headers, ...t.tls });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { name: 'TimeoutError' })), timeoutMs);
    const fail = (err: unknown) => {
      clearTimeout(timer);
      reject(err);
    };
    req.on('error', fail);
    req.on('response', (res: http.IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('error', fail);
      res.on('end', () => {
        clearTimeout(timer);
        const ra = res.headers['retry-after'];
        resolve({ status: res.statusCode ?? 0, text, retryAfter: typeof ra === 'string' ? ra : null });
      });
      res.on('close', () => {
        if (!res.complete) fail(Object.assign(new Error(INCOMPLETE_ANSWER), { code: 'ECONNRESET' }));
      });
    });
    req.end(body);
  });
}

/** A JSON POST: sets content-type and content-length, then `send`. */
export function postJson(url: SendTarget, body: unknown, timeoutMs: number, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  const payload = JSON.stringify(body);
  return send(
    url,
    'POST',
    { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) },
    payload,
    timeoutMs,
  );
}

/**
 * One HTTP attempt whose 200 answer is NDJSON, read as it streams: `onLine`
 * gets each line as soon as it arrives. Resolves when the answer ends, with
 * its status and, for a status other than 200, its whole text. Rejects on
 * network errors, and with a `TimeoutError` when nothing arrives for
 * idleTimeoutMs (the exchange itself may last as long as its slowest line).
 * Lines already handed to `onLine` stay delivered either way.
 */
export function sendLines(
  url: SendTarget,
  headers: Record<string, string>,
  body: string,
  idleTimeoutMs: number,
  onLine: (line: string) => void,
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const t = url instanceof URL ? sendTarget(url) : url;
    const req = (t.protocol === 'https:' ? https : http).request({
      protocol: t.protocol,
      hostname: t.hostname,
      port: t.port,
      path: t.path,
      auth: t.auth,
      ...t.tls,
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
    });
    const quiet = () => req.destroy(Object.assign(new Error(`no answer within ${idleTimeoutMs} ms`), { name: 'TimeoutError' }));
    const timer = setTimeout(quiet, idleTimeoutMs);
    let settled = false;
    const fail = (err: unknown) => {
      clearTimeout(timer);
      if (settled) return;
      settled = true;
      reject(err);
    };
    req.on('error', fail);
    if (COUNTING) countMessage('batch requests sent');
    req.on('response', (res: http.IncomingMessage) => {
      const status = res.statusCode ?? 0;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        // The same timer re-armed (a chunk per answer line or so: no new timer per chunk).
        timer.refresh();
        if (COUNTING) countMessage('batch answer chunks received');
        text += chunk;
        if (status !== 200) return;
        let nl: number;
        while ((nl = text.indexOf('\n')) >= 0) {
          const line = text.slice(0, nl);
          text = text.slice(nl + 1);
          if (line !== '') {
            if (COUNTING) countMessage('batch answer lines received');
            onLine(line);
          }
        }
      });
      res.on('error', fail);
      res.on('end', () => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        const ra = res.headers['retry-after'];
        resolve({ status, text, retryAfter: typeof ra === 'string' ? ra : null });
      });
      res.on('close', () => {
        if (!res.complete) fail(Object.assign(new Error(INCOMPLETE_ANSWER), { code: 'ECONNRESET' }));
      });
    });
    req.end(body);
  });
}
