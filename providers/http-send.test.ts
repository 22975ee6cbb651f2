import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DmzHttpClient } from './client.ts';
import { send, sendTarget } from './http-send.ts';

describe('sendTarget', () => {
  it.each([
    { url: 'http://127.0.0.1:4123', want: { protocol: 'http:', hostname: '127.0.0.1', port: '4123', path: '/' } },
    { url: 'https://dmz.example/base/v1?x=1', want: { protocol: 'https:', hostname: 'dmz.example', port: '', path: '/base/v1?x=1' } },
    { url: 'http://[::1]:80/', want: { protocol: 'http:', hostname: '::1', port: '', path: '/' } },
    { url: 'http://a%40b:p%3Aw@h:1/', want: { protocol: 'http:', hostname: 'h', port: '1', path: '/', auth: 'a@b:p:w' } },
  ])('$url', ({ url, want }) => {
    expect(sendTarget(new URL(url))).toEqual(want);
  });
});

describe('send', () => {
  let server: Server;
  let port: number;
  const seen: { url?: string; authorization?: string }[] = [];
  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res) => {
      seen.push({ url: req.url, authorization: req.headers.authorization });
      res.writeHead(200, { 'content-type': 'application/json' });
      // Split in two writes with a multi-byte character across them: the answer is still whole text.
      const body = Buffer.from(JSON.stringify({ ok: true, name: 'Zürich' }));
      const cut = body.indexOf(0xc3) + 1;
      res.write(body.subarray(0, cut));
      setTimeout(() => res.end(body.subarray(cut)), 5);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('sends to a URL or a target the same way, with user:password as basic auth', async () => {
    const url = new URL(`http://u:p@127.0.0.1:${port}/x?y=1`);
    const a = await send(url, 'GET', {}, undefined, 5000);
    const b = await send(sendTarget(url), 'GET', {}, undefined, 5000);
    expect(a).toEqual(b);
    expect(JSON.parse(a.text)).toEqual({ ok: true, name: 'Zürich' });
    expect(seen.slice(-2)).toEqual([
      { url: '/x?y=1', authorization: `Basic ${Buffer.from('u:p').toString('base64')}` },
      { url: '/x?y=1', authorization: `Basic ${Buffer.from('u:p').toString('base64')}` },
    ]);
  });

  it('DmzHttpClient keeps a base URL path in front of each request path', async () => {
    const c = new DmzHttpClient({ dataCenter: 'dc', baseUrl: `http://127.0.0.1:${port}/dmz/`, token: () => 't' });
    await c.health();
    expect(seen.at(-1)).toEqual({ url: '/dmz/v1/health', authorization: 'Bearer t' });
  });
});
