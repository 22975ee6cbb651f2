import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { INCOMPLETE_ANSWER } from '../../fetch-errors.ts';
import { AgentHttp } from './agent-http.ts';

const servers: { close: (cb: () => void) => unknown }[] = [];
const clients: AgentHttp[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
});

async function listening<S extends Server | ReturnType<typeof createHttpServer>>(s: S): Promise<{ server: S; url: string }> {
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { server: s, url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/v1/boot?x=1` };
}

function client(url: string): AgentHttp {
  const c = new AgentHttp(new URL(url));
  clients.push(c);
  return c;
}

/** A server written on the socket: `answer` gets each whole request (head and body) and writes what it likes. */
async function raw(answer: (socket: Socket, request: string) => void): Promise<{ url: string; connections: () => number }> {
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    let text = '';
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
      if (text.length < end + 4 + length) return;
      const request = text.slice(0, end + 4 + length);
      text = text.slice(end + 4 + length);
      answer(socket, request);
    });
    socket.on('error', () => undefined);
  });
  const { url } = await listening(server);
  return { url, connections: () => connections };
}

describe('AgentHttp', () => {
  it('sends an ordinary HTTP/1.1 JSON POST that a node:http server reads, over one kept-alive connection', async () => {
    const seen: { method?: string; url?: string; type?: string; length?: string; body: string }[] = [];
    let connections = 0;
    const server = createHttpServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, type: req.headers['content-type'], length: req.headers['content-length'], body });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ approved: true, reason: 'ok', echo: body.length }));
      });
    });
    server.on('connection', () => connections++);
    const { url } = await listening(server);
    const c = client(url);
    const body = JSON.stringify({ vmId: 'vm-ü', bootToken: 't' });
    for (let i = 0; i < 3; i++) {
      await expect(c.post(body, 5_000)).resolves.toEqual({ status: 200, text: JSON.stringify({ approved: true, reason: 'ok', echo: body.length }), retryAfter: null });
    }
    expect(seen).toEqual(Array(3).fill({ method: 'POST', url: '/v1/boot?x=1', type: 'application/json', length: String(Buffer.byteLength(body)), body }));
    expect(connections).toBe(1);
  });

  const zurich = Buffer.from('{"name":"Z\u00fcrich"}');
  const cut = zurich.indexOf(0xc3) + 1;
  it.each([
    {
      name: 'Content-Length, the body in two writes split inside a character',
      writes: [Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${zurich.length}\r\n\r\n`), zurich.subarray(0, cut)]), zurich.subarray(cut)],
      want: { status: 200, text: '{"name":"Z\u00fcrich"}', retryAfter: null },
    },
    {
      name: 'chunked, with a trailer',
      writes: ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n', '2\r\n1}\r\n0\r\nx-t: 1\r\n\r\n'],
      want: { status: 200, text: '{"a":1}', retryAfter: null },
    },
    {
      name: 'a 100 Continue before the answer',
      writes: ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}'],
      want: { status: 503, text: '{}', retryAfter: null },
    },
    {
      name: 'a 429 with Retry-After',
      writes: ['HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n'],
      want: { status: 429, text: '', retryAfter: '7' },
    },
  ])('reads an answer: $name', async ({ writes, want }) => {
    const s = await raw((socket) => {
      for (const [i, w] of writes.entries()) setTimeout(() => socket.write(w), i * 5);
    });
    await expect(client(s.url).post('{}', 5_000)).resolves.toEqual(want);
  });

  it('reads an answer that runs to the end of its connection, and opens a new one for the next', async () => {
    const s = await raw((socket) => {
      socket.write('HTTP/1.0 200 OK\r\n\r\n{"ok":');
      setTimeout(() => socket.end('true}'), 5);
    });
    const c = client(s.url);
    await expect(c.post('{}', 5_000)).resolves.toEqual({ status: 200, text: '{"ok":true}', retryAfter: null });
    await expect(c.post('{}', 5_000)).resolves.toEqual({ status: 200, text: '{"ok":true}', retryAfter: null });
    expect(s.connections()).toBe(2);
  });

  it('does not reuse a connection the answer closes, nor one the server closed while idle', async () => {
    let close = true;
    const s = await raw((socket) => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: 2\r\n${close ? 'Connection: close\r\n' : ''}\r\n{}`);
      if (close) socket.end();
      else setTimeout(() => socket.end(), 5);
    });
    const c = client(s.url);
    await c.post('{}', 5_000);
    close = false;
    await c.post('{}', 5_000);
    // The server ends the kept-alive connection after answering: once the client saw it go, the next post goes on a new one.
    await expect.poll(() => c.idleConnections, { timeout: 5_000 }).toBe(0);
    await expect(c.post('{}', 5_000)).resolves.toMatchObject({ status: 200 });
    expect(s.connections()).toBe(3);
  });

  it('rejects an answer cut off by its connection closing as an incomplete answer (ECONNRESET)', async () => {
    const s = await raw((socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{"a"'));
    await expect(client(s.url).post('{}', 5_000)).rejects.toMatchObject({ message: INCOMPLETE_ANSWER, code: 'ECONNRESET' });
  });

  it('rejects with a TimeoutError when no answer comes within timeoutMs', async () => {
    const s = await raw(() => undefined);
    await expect(client(s.url).post('{}', 50)).rejects.toMatchObject({ name: 'TimeoutError' });
  });

  it('rejects an answer that is not HTTP', async () => {
    const s = await raw((socket) => socket.write('SSH-2.0-OpenSSH\r\n\r\n'));
    await expect(client(s.url).post('{}', 5_000)).rejects.toMatchObject({ code: 'HPE_INVALID' });
  });

  it('rejects with the connect error when nothing listens', async () => {
    const s = await raw(() => undefined);
    const url = s.url;
    for (const x of servers.splice(0)) await new Promise<void>((r) => x.close(() => r()));
    await expect(client(url).post('{}', 5_000)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
