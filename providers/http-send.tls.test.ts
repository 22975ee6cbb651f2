// Real TLS handshakes between `send` (every caller's HTTP exchange) and a
// node:https server configured by engine/transport, with certificates a
// throwaway CA issues at test time: what the CLI -> DMZ client and DMZ
// client -> authority hops rely on off loopback.
import { createServer, type Server, type ServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadServerTls, type ClientTls } from '../engine/transport/index.ts';
import { EXPIRED, NOT_YET, TestCa, writePemFiles, type Pem } from '../engine/transport/testing.ts';
import { DMZ_TLS_ADVICE, describeFetchError } from './fetch-errors.ts';
import { send, sendTarget } from './http-send.ts';

const ca = new TestCa();
const rogue = new TestCa('rogue CA');
const server = ca.issue({ cn: 'authority.test' });
const client = ca.issue({ cn: 'dmz-client miami', client: true });
const rogueClient = rogue.issue({ cn: 'intruder', client: true });
const expiredClient = ca.issue({ cn: 'old client', client: true, ...EXPIRED });
const expiredServer = ca.issue({ cn: 'old server', ...EXPIRED });
const earlyServer = ca.issue({ cn: 'early server', ...NOT_YET });
const elsewhereServer = ca.issue({ cn: 'dmz.elsewhere.example', altNames: ['dmz.elsewhere.example'] });

interface Served {
  server: Server;
  url: URL;
  /** Requests that reached the handler. */
  handled: number;
  /** Why the server refused handshakes (its tlsClientError events). */
  refusals: string[];
}

async function serve(options: ServerOptions): Promise<Served> {
  const out = { handled: 0, refusals: [] as string[] } as Served;
  const s = createServer(options, (req, res) => {
    out.handled++;
    const peer = (req.socket as TLSSocket).getPeerCertificate();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ client: peer && 'subject' in peer ? peer.subject.CN : null }));
  });
  s.on('tlsClientError', (err: Error & { code?: string }) => out.refusals.push(`${err.code ?? ''} ${err.message}`));
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  out.server = s;
  out.url = new URL(`https://127.0.0.1:${(s.address() as AddressInfo).port}/v1/health`);
  return out;
}

const get = (url: URL, tls?: ClientTls) => send(sendTarget(url, tls), 'GET', {}, undefined, 5_000);

describe('TLS between callers and services', () => {
  let mtls: Served;
  let expired: Served;
  beforeAll(async () => {
    const files = writePemFiles({ 'cert.pem': server.cert, 'key.pem': server.key, 'ca.pem': ca.cert });
    const loaded = loadServerTls({ cert: files['cert.pem'], key: files['key.pem'], clientCa: files['ca.pem'] }, { cert: 'cert', key: 'key', clientCa: 'ca' });
    expect(loaded.diagnostics).toEqual([]);
    mtls = await serve(loaded.tls as ServerOptions);
    // A server whose certificate expired (loadServerTls refuses it at start; a peer must refuse it too).
    expired = await serve({ cert: expiredServer.cert, key: expiredServer.key });
  });
  afterAll(() => {
    mtls.server.close();
    expired.server.close();
  });

  it('mTLS: a client certificate the CA signed is accepted and seen by the server', async () => {
    const a = await get(mtls.url, { ca: ca.cert, cert: client.cert, key: client.key });
    expect(a.status).toBe(200);
    expect(JSON.parse(a.text)).toEqual({ client: 'dmz-client miami' });
  });

  // Refused by the server: the request never reaches a handler. Under TLS 1.3
  // the server's own error for a certificate it cannot verify is the peer's
  // reset after its alert, so only the missing certificate has its own reason.
  it.each<[string, () => ClientTls, RegExp]>([
    ['no client certificate', () => ({ ca: ca.cert }), /PEER_DID_NOT_RETURN_A_CERTIFICATE|peer did not return a certificate/i],
    ['a client certificate of another CA', () => ({ ca: ca.cert, cert: rogueClient.cert, key: rogueClient.key }), /certificate verify failed|unable to get local issuer|ECONNRESET/i],
    ['an expired client certificate', () => ({ ca: ca.cert, cert: expiredClient.cert, key: expiredClient.key }), /certificate (verify failed|has expired)|ECONNRESET/i],
  ])('refused by the server: %s', async (_name, tls, why) => {
    const before = { handled: mtls.handled, refusals: mtls.refusals.length };
    await expect(get(mtls.url, tls())).rejects.toThrow();
    expect(mtls.handled).toBe(before.handled);
    await expect.poll(() => mtls.refusals.length, { timeout: 10_000 }).toBeGreaterThan(before.refusals);
    expect(mtls.refusals.slice(before.refusals).join('\n')).toMatch(why);
  });

  // Refused by the caller: it never sends its request (and its token) to a server it cannot verify.
  it.each<[string, ClientTls, string]>([
    ['the server verified against the wrong CA', { ca: rogue.cert, cert: client.cert, key: client.key }, 'SELF_SIGNED_CERT_IN_CHAIN'],
    ['the server verified against the system CAs', { cert: client.cert, key: client.key }, 'SELF_SIGNED_CERT_IN_CHAIN'],
  ])('refused by the caller: %s', async (_name, tls, code) => {
    const before = mtls.handled;
    await expect(get(mtls.url, tls)).rejects.toMatchObject({ code });
    expect(mtls.handled).toBe(before);
  });

  it('refused by the caller: the server certificate expired', async () => {
    await expect(get(expired.url, { ca: ca.cert })).rejects.toMatchObject({ code: 'CERT_HAS_EXPIRED' });
    expect(expired.handled).toBe(0);
  });

  // What the caller is told: a certificate out of date or for other names is no matter of the CA bundle (it said
  // "not trusted; give the CA bundle that signed it as …caFile" for all three, though the CA given was the right one).
  it.each<[string, () => Pem, RegExp]>([
    ['expired', () => expiredServer, /^could not be reached: its TLS certificate \(or one of its chain\) has expired: renew it .*\(CERT_HAS_EXPIRED: /],
    ['not valid yet', () => earlyServer, /^could not be reached: its TLS certificate \(or one of its chain\) is not valid yet: check the clocks .*\(CERT_NOT_YET_VALID: /],
    ['issued for another host name', () => elsewhereServer, /^could not be reached: its TLS certificate was issued for other names than the address's host: .*\(ERR_TLS_CERT_ALTNAME_INVALID: .*127\.0\.0\.1/],
  ])('the caller names what is wrong with a server certificate %s, signed by the CA it trusts', async (_name, pem, said) => {
    const s = await serve({ cert: pem().cert, key: pem().key });
    try {
      const err = await get(s.url, { ca: ca.cert }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeDefined();
      const why = describeFetchError(err, 5_000, DMZ_TLS_ADVICE);
      expect(why).toMatch(said);
      expect(why).not.toContain('caFile');
      expect(s.handled).toBe(0);
    } finally {
      s.server.close();
    }
  });

  it('plain http ignores TLS settings (loopback, embedded default)', () => {
    expect(sendTarget(new URL('http://127.0.0.1:1/'), { ca: ca.cert })).not.toHaveProperty('tls');
  });
});
