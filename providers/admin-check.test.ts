// fleet apply's check of FLEET_ADMIN_TOKEN through the DMZ clients
// (providers/admin-check.ts) when one side is of an older version, without
// POST /v1/admin-check: a DMZ client older than the CLI answers 404, and a DMZ
// client whose authority is older answers 502 (its authority's 404 inside).
// Both are final answers (asking again cannot make the route appear), so the
// check must come back at once as apply.admin-token-unverifiable saying which
// side to upgrade, with nothing but the check sent. Before, the 502 was
// retried for the whole retry budget (60 s under fleet apply) as if it were a
// transient 5xx, and then reported as a bare "answered 502" with no hint.
//
// Over real loopback HTTP, with stand-ins for the older services: node:http
// servers answering as protocol/http.ts's not-found handler does, and, for the
// 502, a stand-in DMZ client whose route calls the real
// AuthorityClient.adminCheck against an old authority and answers its error
// as the DMZ client's error handler does (errorAnswer).
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError, type Diagnostic } from '../engine/diags/index.ts';
import { WireError } from '../protocol/index.ts';
import { errorAnswer } from '../protocol/http.ts';
import { listenOnLoopback } from '../test/helpers/proxy.ts';
import { checkAdminThroughDmzClients } from './admin-check.ts';
import { DmzHttpClient } from './client.ts';
import { AuthorityClient } from './dmz-client/authority-client.ts';
import { ConnectedProvider } from './provider.ts';

interface StandIn {
  url: string;
  /** Each request it got: method and path. */
  asked: string[];
  close(): Promise<void>;
}

/** A service on a loopback port answering each request with `answer` (status and JSON body). */
async function standIn(answer: (req: http.IncomingMessage, body: string) => Promise<{ status: number; body: unknown }>): Promise<StandIn> {
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    asked.push(`${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void answer(req, Buffer.concat(chunks).toString()).then(({ status, body }) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      });
    });
  });
  // No agent of its own sends anything (listenOnLoopback closes a proxy's): an unused one.
  return { asked, ...(await listenOnLoopback(server, new http.Agent())) };
}

/** A service of a version without POST /v1/admin-check: every request is answered as protocol/http.ts's not-found handler does. */
const withoutTheRoute = () => standIn(async (req) => errorAnswer(new WireError('not-found', `no route ${req.method} ${req.url}`)));

const LIFECYCLE = { states: ['Running'], initial: 'Running', terminal: [], requestable: ['Running'], transitions: [] };

describe('the admin-token check through DMZ clients of mixed versions', () => {
  let oldDmzClient: StandIn;
  let oldAuthority: StandIn;
  let dmzClientOfOldAuthority: StandIn;
  let current: StandIn;

  beforeAll(async () => {
    oldDmzClient = await withoutTheRoute();
    oldAuthority = await withoutTheRoute();
    // A DMZ client of this version in front of an old authority: its POST /v1/admin-check passes the body on with the
    // real AuthorityClient and answers what that throws, as its error handler would.
    const toAuthority = new AuthorityClient('paris', oldAuthority.url, 'the-dmz-token-of-paris', 5_000);
    dmzClientOfOldAuthority = await standIn(async (req, body) => {
      if (req.method !== 'POST' || req.url !== '/v1/admin-check') return errorAnswer(new WireError('not-found', `no route ${req.method} ${req.url}`));
      try {
        return { status: 200, body: await toAuthority.adminCheck(JSON.parse(body) as never) };
      } catch (err) {
        return errorAnswer(err as Error);
      }
    });
    current = await standIn(async () => ({ status: 200, body: { ok: true } }));
  });
  afterAll(async () => {
    for (const s of [oldDmzClient, oldAuthority, dmzClientOfOldAuthority, current]) await s?.close();
  });

  /** The providers of `urls` (data center -> DMZ client), over the client fleet apply uses (batch), counting its retries; never sleeping. */
  function providersOf(urls: Record<string, string>, retries: string[]): Map<string, ConnectedProvider> {
    return new Map(
      Object.entries(urls).map(([dc, url]) => {
        const client = new DmzHttpClient({
          dataCenter: dc,
          baseUrl: url,
          token: () => `the-cli-token-of-${dc}`,
          batch: true,
          timeoutMs: 5_000,
          sleep: async () => {},
          onRetry: (r) => void retries.push(`${dc}: ${r.reason}`),
        });
        return [dc, new ConnectedProvider({ dataCenter: dc, url, tokenEnv: '', lifecycle: LIFECYCLE }, client)];
      }),
    );
  }

  async function check(urls: Record<string, string>): Promise<{ diagnostics: Diagnostic[]; retries: string[] }> {
    const retries: string[] = [];
    const run = checkAdminThroughDmzClients({
      providers: providersOf(urls, retries),
      dataCenters: Object.keys(urls),
      stack: 'mixed',
      adminToken: 'the-admin-token',
      shown: 'web/0',
      address: 'web/0',
    });
    const err = await run.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FleetError);
    return { diagnostics: (err as FleetError).diagnostics, retries };
  }

  const cases: { name: string; urls: () => Record<string, string>; named: string[]; says: RegExp[] }[] = [
    {
      name: 'a DMZ client older than the CLI (404)',
      urls: () => ({ miami: oldDmzClient.url }),
      named: ['miami'],
      says: [/miami: its DMZ client answered 404 \(not-found\)[^;]*upgrade it/],
    },
    {
      name: 'a DMZ client whose authority is older (502, the authority\'s 404 inside)',
      urls: () => ({ paris: dmzClientOfOldAuthority.url }),
      named: ['paris'],
      says: [/paris: its DMZ client answered 502 \(not-found\)[^;]*upgrade the authority/],
    },
    {
      name: 'both, next to a data center of this version',
      urls: () => ({ miami: oldDmzClient.url, paris: dmzClientOfOldAuthority.url, tokyo: current.url }),
      named: ['miami', 'paris'],
      says: [/miami: [^;]*upgrade it/, /paris: [^;]*upgrade the authority/],
    },
  ];

  it.each(cases)('$name: apply.admin-token-unverifiable at once, saying what to upgrade; only the check was sent', async ({ urls, named, says }) => {
    const asked = [oldDmzClient, oldAuthority, dmzClientOfOldAuthority, current].map((s) => s.asked.length);
    const { diagnostics, retries } = await check(urls());
    expect(diagnostics.map((d) => d.code)).toEqual(['apply.admin-token-unverifiable']);
    const detail = diagnostics[0].detail;
    expect(detail).toContain(`under --allow-destroy in ${named.join(', ')},`);
    for (const re of says) expect(detail).toMatch(re);
    expect(detail).toContain('Nothing was started');
    expect(detail).not.toContain('tokyo');
    // A missing route is final: asked once, never again.
    expect(retries).toEqual([]);
    const sent = [oldDmzClient, oldAuthority, dmzClientOfOldAuthority, current].map((s, i) => s.asked.slice(asked[i]));
    for (const s of sent) for (const line of s) expect(line).toBe('POST /v1/admin-check');
    expect(sent.map((s) => s.length)).toEqual([
      named.includes('miami') ? 1 : 0,
      named.includes('paris') ? 1 : 0,
      named.includes('paris') ? 1 : 0,
      'tokyo' in urls() ? 1 : 0,
    ]);
  });
});
