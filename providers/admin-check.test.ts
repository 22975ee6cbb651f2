// fleet apply's check of FLEET_ADMIN_TOKEN through the DMZ clients
// (providers/admin-check.ts): which answers are final (below: a DMZ client
// limiting refused checks, 429; a gateway's 502 on either hop) and, first,
// when one side is of an older version, without
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
import { FleetError, REASON_LIMIT, formatDiagnostics, type Diagnostic } from '../engine/diags/index.ts';
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

/** A service on a loopback port answering each request with `answer` (status, JSON body, and any headers). */
async function standIn(answer: (req: http.IncomingMessage, body: string) => Promise<{ status: number; body: unknown; headers?: Record<string, string> }>): Promise<StandIn> {
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    asked.push(`${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void answer(req, Buffer.concat(chunks).toString()).then(({ status, body, headers }) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      });
    });
  });
  // No agent of its own sends anything (listenOnLoopback closes a proxy's): an unused one.
  return { asked, ...(await listenOnLoopback(server, new http.Agent())) };
}

/** A service of a version without POST /v1/admin-check: every request is answered as protocol/http.ts's not-found handler does. */
const withoutTheRoute = () => standIn(async (req) => errorAnswer(new WireError('not-found', `no route ${req.method} ${req.url}`)));

/**
 * A DMZ client of this version in front of `authorityUrl`: its POST /v1/admin-check passes the body on with the real
 * AuthorityClient and answers what that throws, as its error handler would.
 */
function dmzClientBefore(authorityUrl: string): Promise<StandIn> {
  const toAuthority = new AuthorityClient('paris', authorityUrl, 'the-dmz-token-of-paris', 5_000);
  return standIn(async (req, body) => {
    if (req.method !== 'POST' || req.url !== '/v1/admin-check') return errorAnswer(new WireError('not-found', `no route ${req.method} ${req.url}`));
    try {
      return { status: 200, body: await toAuthority.adminCheck(JSON.parse(body) as never) };
    } catch (err) {
      return errorAnswer(err as Error);
    }
  });
}

const LIFECYCLE = { states: ['Running'], initial: 'Running', terminal: [], requestable: ['Running'], transitions: [] };

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

/** checkAdminThroughDmzClients over `urls`: its diagnostics (none when it resolved) and the retries its clients made. */
async function checkThrough(urls: Record<string, string>): Promise<{ diagnostics: Diagnostic[]; retries: string[] }> {
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
  if (err !== undefined) expect(err).toBeInstanceOf(FleetError);
  return { diagnostics: err === undefined ? [] : (err as FleetError).diagnostics, retries };
}

/** As checkThrough, where the check must fail. */
async function check(urls: Record<string, string>): Promise<{ diagnostics: Diagnostic[]; retries: string[] }> {
  const r = await checkThrough(urls);
  expect(r.diagnostics, 'the check failed').not.toEqual([]);
  return r;
}

describe('the admin-token check through DMZ clients of mixed versions', () => {
  let oldDmzClient: StandIn;
  let oldAuthority: StandIn;
  let dmzClientOfOldAuthority: StandIn;
  let current: StandIn;

  beforeAll(async () => {
    oldDmzClient = await withoutTheRoute();
    oldAuthority = await withoutTheRoute();
    // A DMZ client of this version in front of an old authority.
    dmzClientOfOldAuthority = await dmzClientBefore(oldAuthority.url);
    current = await standIn(async () => ({ status: 200, body: { ok: true } }));
  });
  afterAll(async () => {
    for (const s of [oldDmzClient, oldAuthority, dmzClientOfOldAuthority, current]) await s?.close();
  });

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

// A 429 from POST /v1/admin-check is the DMZ client's limit of refused checks per source address (or its authority's
// per data center, passed on): "too many refused tokens". Asking again within the window is refused again and, once
// the window ends, would only add to the refusals of a wrong token: fleet apply stops at once and says how long to
// wait (apply.admin-check-limited). Before, the 429 was retried for the whole retry budget (60 s under fleet apply,
// each retry a request the limit refuses again), then reported as apply.admin-token-unverifiable.
describe('the admin-token check through a DMZ client that limits refused checks (429)', () => {
  let limited: StandIn;
  let limitedNoWait: StandIn;
  let current: StandIn;
  const refusal = new WireError('admin-check-rate-limited', 'admin-token checks from 127.0.0.1 are refused until 2026-01-01T00:01:00.000Z: it had 5 refused checks within 60 s; nothing was asked of the authority');
  beforeAll(async () => {
    // As the DMZ client's overLimit answers (providers/dmz-client/routes.ts): the error body, Retry-After in seconds.
    limited = await standIn(async () => ({ ...errorAnswer(refusal), headers: { 'retry-after': '37' } }));
    limitedNoWait = await standIn(async () => errorAnswer(refusal));
    current = await standIn(async () => ({ status: 200, body: { ok: true } }));
  });
  afterAll(async () => {
    for (const s of [limited, limitedNoWait, current]) await s?.close();
  });

  const cases: { name: string; urls: () => Record<string, string>; named: string; says: RegExp }[] = [
    { name: 'with Retry-After', urls: () => ({ paris: limited.url }), named: 'paris', says: /paris: its DMZ client answered 429 \(admin-check-rate-limited\): [^\n]*5 refused checks within 60 s[^\n]*ask again in 37 s at the earliest/ },
    { name: 'with Retry-After, next to a data center that answers ok', urls: () => ({ paris: limited.url, tokyo: current.url }), named: 'paris', says: /paris: [^\n]*ask again in 37 s/ },
    { name: 'without Retry-After: the time its message names', urls: () => ({ lima: limitedNoWait.url }), named: 'lima', says: /lima: [^;]*until 2026-01-01T00:01:00\.000Z/ },
  ];

  it.each(cases)('$name: apply.admin-check-limited at once, with the wait; asked once, never retried', async ({ urls, named, says }) => {
    const asked = [limited, limitedNoWait, current].map((s) => s.asked.length);
    const { diagnostics, retries } = await check(urls());
    expect(diagnostics.map((d) => d.code)).toEqual(['apply.admin-check-limited']);
    const detail = diagnostics[0].detail;
    expect(detail).toContain(`in ${named},`);
    expect(detail).toMatch(says);
    expect(detail).toContain('Nothing was started');
    expect(detail).toContain('FLEET_ADMIN_TOKEN');
    expect(detail).not.toContain('tokyo');
    expect(retries).toEqual([]);
    const sent = [limited, limitedNoWait, current].map((s, i) => s.asked.length - asked[i]);
    expect(sent).toEqual([urls().paris ? 1 : 0, urls().lima ? 1 : 0, urls().tokyo ? 1 : 0]);
  });
});

// A 502 is final only with the DMZ client's own error body (a code of the wire registry, protocol/errors.ts, and a
// message): its authority refused the check, and asking again cannot change that. A 502 of another gateway or proxy
// between the CLI and the DMZ client, or between it and its authority, is a transient gateway error, retried within
// the budget, whatever JSON it carries; if it lasts, apply.admin-token-unverifiable with its reason. Before, any JSON
// body with an `error.code` string was taken for the DMZ client's (an Azure-style {"error":{"code":"BadGateway"}}):
// final at the first 502, and fleet apply stopped on a gateway's hiccup.
describe('the admin-token check behind a gateway that answers 502', () => {
  const bodies: { name: string; body: unknown }[] = [
    { name: 'an Azure-style error body with a code of its own', body: { error: { code: 'BadGateway', message: 'The gateway did not receive a response from the backend in time' } } },
    { name: 'an error body with a code string and no message', body: { error: { code: 'upstream_error' } } },
    { name: 'an error body whose code is one of ours but whose message is not a string', body: { error: { code: 'not-found', message: 17 } } },
    { name: 'a Kong-style message', body: { message: 'An invalid response was received from the upstream server' } },
    { name: 'an error string', body: { error: 'Bad Gateway' } },
  ];
  let gateway: StandIn;
  /** How many more requests the gateway answers `status` (502) with `body` before it lets the check through (answered ok). */
  const state = { failing: 0, body: undefined as unknown, status: 502 };
  beforeAll(async () => {
    gateway = await standIn(async () => {
      if (state.failing === 0) return { status: 200, body: { ok: true } };
      state.failing--;
      return { status: state.status, body: state.body };
    });
  });
  afterAll(async () => {
    await gateway?.close();
  });

  it.each(bodies)('$name: retried, and ok once the gateway lets it through', async ({ body }) => {
    Object.assign(state, { failing: 2, body });
    const asked = gateway.asked.length;
    const { diagnostics, retries } = await checkThrough({ paris: gateway.url });
    expect(diagnostics).toEqual([]);
    expect(retries).toHaveLength(2);
    for (const r of retries) expect(r).toMatch(/^paris: answered 502/);
    expect(gateway.asked.length - asked).toBe(3);
  });

  // The same gateway between the DMZ client and its authority: its 5xx is the authority out of reach (503
  // authority-unreachable, retried by the CLI); its 4xx, with a code not of our registry, is relayed as 502
  // authority-error, final, with the gateway's message (never its code: the 502 stays the DMZ client's own answer).
  describe('between the DMZ client and its authority', () => {
    let dmzClient: StandIn;
    beforeAll(async () => {
      dmzClient = await dmzClientBefore(gateway.url);
    });
    afterAll(async () => {
      await dmzClient?.close();
    });

    it.each(bodies)('$name: 503 from the DMZ client, retried, and ok once the gateway lets it through', async ({ body }) => {
      Object.assign(state, { failing: 2, body });
      const { diagnostics, retries } = await checkThrough({ paris: dmzClient.url });
      expect(diagnostics).toEqual([]);
      expect(retries).toHaveLength(2);
      for (const r of retries) expect(r).toMatch(/^paris: answered 503/);
    });

    it('a 4xx of the gateway with a code of its own: 502 authority-error, final, with its message', async () => {
      Object.assign(state, { failing: 1, body: { error: { code: 'AccessDenied', message: 'blocked by the web application firewall' } }, status: 403 });
      try {
        const { diagnostics, retries } = await check({ paris: dmzClient.url });
        expect(diagnostics.map((d) => d.code)).toEqual(['apply.admin-token-unverifiable']);
        expect(diagnostics[0].detail).toMatch(/paris: its DMZ client answered 502 \(authority-error\): [^;]*answered 403: blocked by the web application firewall/);
        expect(retries).toEqual([]);
      } finally {
        Object.assign(state, { failing: 0, status: 502 });
      }
    });
  });

  it.each(bodies)('$name, every time: apply.admin-token-unverifiable with its reason once the budget is spent', async ({ body }) => {
    Object.assign(state, { failing: Number.MAX_SAFE_INTEGER, body });
    try {
      const { diagnostics, retries } = await check({ paris: gateway.url });
      expect(diagnostics.map((d) => d.code)).toEqual(['apply.admin-token-unverifiable']);
      expect(diagnostics[0].detail).toMatch(/paris: [^;]*answered 502[^;]*after \d+ attempts over \d+ s/);
      expect(retries.length).toBeGreaterThan(2);
    } finally {
      state.failing = 0;
    }
  });
});

// A DMZ client's refusal of the check goes into fleet apply's diagnostics: its message was written raw, so a line
// break and a forged `error[...]` line in it printed that line as fleet's own, and a 100 KB one was 4,000 characters
// of it (diag()'s backstop). Now clipped where the client reads it (errorMessage: REASON_LIMIT).
describe("a DMZ client's refusal of the admin-token check, in fleet apply's diagnostics: one line, clipped", () => {
  const FORGED = 'm\nerror[apply.fake]: Forged\n  at web/9';
  /** 100 KB of short words: diag()'s backstop cuts a run without a space at 300 characters, not these. */
  const HUGE = 'yy '.repeat(34_000);
  it.each(
    [
      { name: 'the token refused (403)', status: 403, code: 'admin-proof-refused', want: 'apply.admin-token-invalid' },
      { name: 'checks limited (429)', status: 429, code: 'admin-check-rate-limited', want: 'apply.admin-check-limited' },
      { name: 'no route (404)', status: 404, code: 'not-found', want: 'apply.admin-token-unverifiable' },
      { name: "its authority's refusal (502)", status: 502, code: 'not-found', want: 'apply.admin-token-unverifiable' },
    ].flatMap((c) => [{ ...c, value: 'a line break and a forged diagnostic', v: FORGED }, { ...c, value: 'a 100 KB value', v: HUGE }]),
  )('$name: $value', async ({ status, code, want, v }) => {
    const dmz = await standIn(async () => ({ status, body: { error: { code, message: v } }, headers: { 'retry-after': '30' } }));
    try {
      const { diagnostics } = await check({ paris: dmz.url });
      expect(diagnostics.map((d) => d.code)).toEqual([want]);
      expect(formatDiagnostics(diagnostics)).not.toMatch(/^\s*error\[apply\.fake\]/m);
      expect(new FleetError(diagnostics).message).not.toContain('\n');
      expect(diagnostics[0].detail.length).toBeLessThan(REASON_LIMIT + 1300);
    } finally {
      await dmz.close();
    }
  });
});
