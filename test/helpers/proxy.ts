// Tiny proxies for whole-program tests of the services.
//
// - roundRobinProxy: HTTP, one upstream per request in turn (two authority
//   replicas behind one address, as a load balancer would put them); answers
//   stream through as they come (NDJSON batches), and `tap` sees every
//   exchange's bodies (to collect what went over the wire, secrets included).
// - holdingProxy: TCP, to one upstream port; while the upstream is down a new
//   connection waits for it (up to holdMs) instead of being refused, as a
//   load balancer that retries connecting does while a service restarts.
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
