// Tiny proxies for whole-program tests of the services.
//
// - roundRobinProxy: HTTP, one upstream per request in turn (two authority
//   replicas behind one address, as a load balancer would put them); answers
//   stream through as they come (NDJSON batches), and `tap` sees every
//   exchange's bodies (to collect what went over the wire, secrets included).
// - holdingProxy: TCP, to one upstream port; while the upstream is down a new
//   connection waits for it (up to holdMs) instead of being refused, as a
//   load balancer that retries connecting does while a service restarts.
// - racingProxy: HTTP, to two upstreams (two authority replicas), in one of
//   two modes the test switches: `alternate` (each request to the next, as
//   roundRobinProxy) or `mirror` (each POST sent to both at once, the caller
//   answered by the one a seeded draw picks, the other's answer dropped: a
//   call whose first send timed out and whose resend reached the other
//   replica while the first was still being decided). Every exchange is kept
//   (`exchanges`; `about` a VM: a failing test prints what went over the wire).
import http from 'node:http';
import net from 'node:net';

export interface TestProxy {
  url: string;
  /** Requests (HTTP) or connections (TCP) forwarded, per upstream. */
  counts: number[];
  close(): Promise<void>;
}

/** Starts an HTTP proxy's server on a loopback port: its URL, and close() that cuts its connections and its keep-alive agent's. */
export async function listenOnLoopback(server: http.Server, agent: http.Agent): Promise<{ url: string; close(): Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export async function roundRobinProxy(upstreams: readonly string[], tap?: (path: string, request: string, answer: string) => void): Promise<TestProxy> {
  const agent = new http.Agent({ keepAlive: true });
  const counts = upstreams.map(() => 0);
  let next = 0;
  const server = http.createServer((req, res) => {
    const i = next++ % upstreams.length;
    counts[i]++;
    const target = new URL(req.url ?? '/', upstreams[i]);
    const reqChunks: Buffer[] = [];
    const resChunks: Buffer[] = [];
    const up = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host }, agent }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.on('data', (c: Buffer) => {
        resChunks.push(c);
        res.write(c);
      });
      answer.on('end', () => {
        res.end();
        tap?.(req.url ?? '/', Buffer.concat(reqChunks).toString(), Buffer.concat(resChunks).toString());
      });
    });
    up.on('error', () => res.destroy());
    req.on('data', (c: Buffer) => {
      reqChunks.push(c);
      up.write(c);
    });
    req.on('end', () => up.end());
  });
  return { ...(await listenOnLoopback(server, agent)), counts };
}

export async function holdingProxy(upstreamPort: number, holdMs = 30_000): Promise<TestProxy> {
  const counts = [0];
  const sockets = new Set<net.Socket>();
  const connect = (deadline: number): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const s = net.connect(upstreamPort, '127.0.0.1');
      s.once('connect', () => resolve(s));
      s.once('error', (err) => {
        s.destroy();
        if (Date.now() >= deadline) reject(err);
        else setTimeout(() => connect(deadline).then(resolve, reject), 25);
      });
    });
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.pause();
    connect(Date.now() + holdMs).then(
      (up) => {
        counts[0]++;
        sockets.add(up);
        up.on('close', () => {
          sockets.delete(up);
          client.destroy();
        });
        client.on('close', () => up.destroy());
        up.on('error', () => client.destroy());
        client.on('error', () => up.destroy());
        client.pipe(up);
        up.pipe(client);
        client.resume();
      },
      () => client.destroy(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** One request forwarded to one upstream, and its answer: what a failing test prints about a VM. */
export interface Exchange {
  /** ms since the proxy started: sent, and answered in full (undefined: no answer, an error). */
  sent: number;
  answered?: number;
  upstream: number;
  /** `alternate`; or, of a mirrored request, the copy whose answer the caller got (`chosen`) or the one dropped. */
  copy: 'alternate' | 'chosen' | 'dropped';
  path: string;
  status?: number;
  request: string;
  answer: string;
}

export interface RacingProxy extends TestProxy {
  /** How the next requests are sent (switched by the test between its cases). */
  mode: 'alternate' | 'mirror';
  /** Requests sent to both upstreams at once. */
  mirrored: number;
  /** Resolves once no request (a dropped copy included) is on its way to an upstream. */
  settled(): Promise<void>;
  /** Every exchange, in the order sent. */
  exchanges: Exchange[];
  /** The exchanges whose request or answer names `text` (a VM id), one line each, bodies cut to `cut` characters. */
  about(text: string, cut?: number): string;
}

/**
 * Of a batch exchange (a request `{ calls: [...] }`, answered one NDJSON line
 * `{ i, ... }` per call), only the calls naming `text` and their answers;
 * any other exchange whole, on one line.
 */
function aboutOnly(e: Exchange, text: string): { request: string; answer: string } {
  const line = (s: string) => s.replace(/\n/g, ' | ');
  try {
    const { calls } = JSON.parse(e.request) as { calls?: unknown[] };
    if (!Array.isArray(calls)) return { request: line(e.request), answer: line(e.answer) };
    const mine = new Set(calls.flatMap((c, i) => (JSON.stringify(c).includes(text) ? [i] : [])));
    const answers = e.answer.split('\n').filter((l) => {
      try {
        return mine.has((JSON.parse(l) as { i?: number }).i ?? -1);
      } catch {
        return false;
      }
    });
    return { request: `calls ${[...mine].join(',')} of ${calls.length}: ${[...mine].map((i) => JSON.stringify(calls[i])).join(' ')}`, answer: answers.join(' | ') };
  } catch {
    return { request: line(e.request), answer: line(e.answer) };
  }
}

/**
 * `rng` (values in [0, 1)) picks, for a mirrored request, the upstream whose
 * answer the caller gets and how long (0 to 3 ms) the other copy waits before
 * it is sent: the interleavings vary with the seed, never the outcome a test
 * asserts (an invariant holds for every interleaving).
 */
export async function racingProxy(upstreams: readonly [string, string], rng: () => number): Promise<RacingProxy> {
  const agent = new http.Agent({ keepAlive: true });
  const counts = [0, 0];
  let next = 0;
  let pending = 0;
  let waiters: (() => void)[] = [];
  const done = () => {
    if (--pending > 0) return;
    for (const w of waiters) w();
    waiters = [];
  };
  const start = performance.now();
  const exchanges: Exchange[] = [];
  const send = (i: number, req: http.IncomingMessage, body: Buffer, copy: Exchange['copy'], onAnswer: (answer: http.IncomingMessage) => void, onError: () => void) => {
    counts[i]++;
    pending++;
    const exchange: Exchange = { sent: performance.now() - start, upstream: i, copy, path: req.url ?? '/', request: body.toString(), answer: '' };
    exchanges.push(exchange);
    const target = new URL(req.url ?? '/', upstreams[i]);
    const up = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host }, agent }, (answer) => {
      exchange.status = answer.statusCode;
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.once('end', () => {
        exchange.answered = performance.now() - start;
        exchange.answer = Buffer.concat(chunks).toString();
        done();
      });
      answer.once('error', done);
      onAnswer(answer);
    });
    up.on('error', () => {
      done();
      onError();
    });
    up.end(body);
  };
  const proxy: RacingProxy = {
    url: '',
    counts,
    mode: 'alternate',
    mirrored: 0,
    settled: () => (pending === 0 ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve))),
    close: async () => undefined,
    exchanges,
    about: (text, cut = 3000) =>
      exchanges
        .filter((e) => e.request.includes(text) || e.answer.includes(text))
        .map((e) => {
          const { request, answer } = aboutOnly(e, text);
          return `  ${e.sent.toFixed(1)}..${e.answered?.toFixed(1) ?? '(no answer)'} ms ${e.path} to ${e.upstream} (${e.copy}) ${e.status ?? ''}: ${request.slice(0, cut)} => ${answer.slice(0, cut)}`;
        })
        .join('\n'),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const reply = (answer: http.IncomingMessage) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      };
      if (proxy.mode === 'alternate' || req.method !== 'POST') {
        send(next++ % 2, req, body, 'alternate', reply, () => res.destroy());
        return;
      }
      proxy.mirrored++;
      const chosen = rng() < 0.5 ? 0 : 1;
      const delay = [0, 0, 1, 3][Math.floor(rng() * 4)];
      send(chosen, req, body, 'chosen', reply, () => res.destroy());
      const other = () => send(1 - chosen, req, body, 'dropped', (answer) => answer.resume(), () => undefined);
      if (delay === 0) other();
      else {
        // Counted as on its way from now, so settled() does not resolve before it is sent.
        pending++;
        setTimeout(() => {
          other();
          done();
        }, delay);
      }
    });
  });
  const { url, close } = await listenOnLoopback(server, agent);
  return Object.assign(proxy, { url, close });
}
