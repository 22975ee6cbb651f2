// The DMZ client's POST /v1/admin-check (docs/protocol.md, "CLI → DMZ
// client"): fleet apply's check of FLEET_ADMIN_TOKEN for a stack
// whose stack.yaml names no authority, passed on to the DMZ client's
// authority. Over real loopback HTTP (CLI client -> DMZ client -> a proxy
// that can drop the hop -> authority): the answer is ok or
// admin-proof-refused and nothing more; the admin token never crosses either
// hop and no log line of either service carries it, the proof or the nonce;
// refused checks are limited per source address (a correct one never
// counts); an authority out of reach is a 503 that decided nothing.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { adminCheckProof, randomBase64url } from '../../protocol/index.ts';
import { listenOnLoopback } from '../../test/helpers/proxy.ts';
import { FleetError } from '../../engine/diags/index.ts';
import { AUTHORITY_ADMIN_CHECK_LIMIT } from '../../engine/authority/server.ts';
import { checkAdminThroughDmzClients } from '../admin-check.ts';
import { DmzHttpClient } from '../client.ts';
import { postJson, send, sendTarget } from '../http-send.ts';
import { ConnectedProvider } from '../provider.ts';
import { startTestWorld, type TestWorld } from '../testing.ts';
import { ADMIN_CHECK_LIMIT } from './boot-limit.ts';

const RIGHT = 'the-admin-token-held-by-the-authority';
const WRONG = 'a-wrong-admin-token-for-this-test';

/**
 * An HTTP proxy to `upstream` that, while `down`, cuts every request's connection (the authority out of reach); it
 * keeps every body that crossed it. While `holding`, a request to /v1/admin-check waits in `held` (on its way: the DMZ
 * client sent it, the authority has not seen it) until its function there is called.
 */
async function cuttableProxy(upstream: string): Promise<{ url: string; down: boolean; holding: boolean; held: (() => void)[]; wire: string[]; close(): Promise<void> }> {
  const agent = new http.Agent({ keepAlive: true });
  const state = { down: false, holding: false, held: [] as (() => void)[], wire: [] as string[] };
  const server = http.createServer((req, res) => {
    if (state.down) {
      req.socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (state.holding && req.url === '/v1/admin-check') state.held.push(() => forward());
      else forward();
    });
    const forward = () => {
      const body = Buffer.concat(chunks);
      state.wire.push(body.toString());
      const target = new URL(req.url ?? '/', upstream);
      const up = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host }, agent }, (answer) => {
        const back: Buffer[] = [];
        answer.on('data', (c: Buffer) => back.push(c));
        answer.on('end', () => {
          state.wire.push(Buffer.concat(back).toString());
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(Buffer.concat(back));
        });
      });
      up.on('error', () => res.destroy());
      up.end(body);
    };
  });
  const listening = await listenOnLoopback(server, agent);
  return Object.assign(state, listening);
}

describe("the DMZ client's POST /v1/admin-check", () => {
  const logs: string[] = [];
  const keep = { level: 'debug' as const, stream: { write: (l: string) => void logs.push(l) } };
  let world: TestWorld;
  let proxy: Awaited<ReturnType<typeof cuttableProxy>>;
  let now = Date.parse('2026-01-01T00:00:00Z');

  beforeAll(async () => {
    world = await startTestWorld({
      dataCenters: ['miami'],
      adminTokens: [RIGHT],
      authorityLogger: keep,
      dmz: { logger: keep, bootLimitClock: () => now },
      via: async (u) => (proxy = await cuttableProxy(u)).url,
    });
  });
  afterAll(async () => {
    await world?.close();
    await proxy?.close();
  });

  const check = (adminToken: string, stack = world.stack) => {
    const nonce = randomBase64url(24);
    return { nonce, proof: adminCheckProof(adminToken, stack, nonce) };
  };
  /** `token`: the CLI's at the DMZ client unless given; null: none. */
  const post = (body: unknown, token?: string | null) => {
    const bearer = token === undefined ? world.dc('miami').clientToken : token;
    return postJson(sendTarget(new URL(`${world.dc('miami').dmz.url}/v1/admin-check`)), body, 10_000, bearer ? { authorization: `Bearer ${bearer}` } : {});
  };
  const codeOf = (text: string) => (JSON.parse(text) as { error?: { code?: string } }).error?.code;
  /** fleet_admin_check_limited_total as the DMZ client's GET /metrics says it (0 before its first 429: a counter without labels is exported at 0). */
  const limitedCount = async () => {
    const text = await (await fetch(`${world.dc('miami').dmz.url}/metrics`)).text();
    const m = /^fleet_admin_check_limited_total(?:\{[^}]*\})? (\d+)$/m.exec(text);
    expect(m, 'fleet_admin_check_limited_total in /metrics').not.toBeNull();
    return Number(m?.[1]);
  };

  it('answers ok or admin-proof-refused, nothing more; the token crosses no hop and is in no log line', async () => {
    const sent: string[] = [];
    const cases: [string, unknown, string | null | undefined, number, string | undefined][] = [
      ['the right token', check(RIGHT), undefined, 200, undefined],
      ['a wrong token', check(WRONG), undefined, 403, 'admin-proof-refused'],
      ["the right token over another stack's name", check(RIGHT, 'another-stack'), undefined, 403, 'admin-proof-refused'],
      ['no CLI token at the DMZ client', check(RIGHT), null, 401, 'unauthorized'],
      ["the DMZ client's token at the authority instead of the CLI's", check(RIGHT), world.dc('miami').authorityToken, 401, 'unauthorized'],
      ['no proof', { nonce: 'n'.repeat(16) }, undefined, 400, undefined],
    ];
    for (const [name, body, token, status, code] of cases) {
      sent.push(JSON.stringify(body));
      const res = await post(body, token);
      expect(res.status, name).toBe(status);
      if (status === 200) expect(JSON.parse(res.text), name).toEqual({ ok: true });
      if (code) expect(codeOf(res.text), name).toBe(code);
      for (const secret of [RIGHT, WRONG, ...sent.flatMap((b) => Object.values(JSON.parse(b) as Record<string, string>))]) expect(res.text, name).not.toContain(secret);
    }
    // What went between the DMZ client and the authority: the CLI's body unchanged, never a token.
    expect(proxy.wire.join('\n')).not.toContain(RIGHT);
    expect(proxy.wire.join('\n')).not.toContain(WRONG);
    // Log lines reach the stream in batches (engine/observability/logs.ts LineBatcher: after 10 ms, or 16 KiB): wait for the lines.
    await vi.waitFor(() => {
      expect(logs.join('')).toMatch(/"dataCenter":"miami"[^\n]*"outcome":"ok"[^\n]*"admin check"/);
      expect(logs.join('')).toMatch(/"dataCenter":"miami"[^\n]*"outcome":"refused"[^\n]*"admin check"/);
    });
    const logged = logs.join('');
    for (const secret of [RIGHT, WRONG, ...sent.flatMap((b) => Object.values(JSON.parse(b) as Record<string, string>))]) expect(logged).not.toContain(secret);
  });

  it('an authority out of reach: 503 authority-unreachable, not counted as a refusal', async () => {
    proxy.down = true;
    try {
      for (let i = 0; i < ADMIN_CHECK_LIMIT.denials + 2; i++) {
        const res = await post(check(RIGHT));
        expect(res.status).toBe(503);
        expect(codeOf(res.text)).toBe('authority-unreachable');
      }
    } finally {
      proxy.down = false;
    }
    expect((await post(check(RIGHT))).status).toBe(200);
  });

  it('refused checks are limited per address: past the budget, 429 without asking the authority, until the window ends; ok ones never count', async () => {
    now += ADMIN_CHECK_LIMIT.windowMs * 3;
    const before = await limitedCount();
    for (let i = 0; i < 3 * ADMIN_CHECK_LIMIT.denials; i++) expect((await post(check(RIGHT))).status).toBe(200);
    for (let i = 0; i < ADMIN_CHECK_LIMIT.denials; i++) expect((await post(check(WRONG))).status).toBe(403);
    // Neither the ok checks nor the refusals within the budget are 429s: the counter has not moved.
    expect(await limitedCount()).toBe(before);
    const asked = proxy.wire.length;
    const limited = await post(check(RIGHT));
    expect(limited.status).toBe(429);
    expect(codeOf(limited.text)).toBe('admin-check-rate-limited');
    expect(Number(limited.retryAfter)).toBeGreaterThan(0);
    expect(proxy.wire.length).toBe(asked);
    // Each 429 counts once, a wrong proof and a right one alike (the body is never read).
    expect((await post(check(WRONG))).status).toBe(429);
    expect(proxy.wire.length).toBe(asked);
    expect(await limitedCount()).toBe(before + 2);
    now += ADMIN_CHECK_LIMIT.windowMs * 2 + 1;
    expect((await post(check(RIGHT))).status).toBe(200);
    expect(await limitedCount()).toBe(before + 2);
  });
});

/**
 * One data center (miami) whose DMZ client reaches the authority through a proxy (which counts and can hold what
 * crosses it), each service on a clock the test moves (w.dmzNow: the DMZ client's limits; w.authorityNow: the
 * authority's admin-check limit); started before the describe's tests, closed after them.
 */
function limitedWorld() {
  const w = {
    world: undefined as unknown as TestWorld,
    proxy: undefined as unknown as Awaited<ReturnType<typeof cuttableProxy>>,
    dmzNow: Date.parse('2026-01-01T00:00:00Z'),
    authorityNow: Date.parse('2026-01-01T00:00:00Z'),
  };
  beforeAll(async () => {
    w.world = await startTestWorld({
      dataCenters: ['miami'],
      adminTokens: [RIGHT],
      dmz: { bootLimitClock: () => w.dmzNow },
      authorityAdminCheckClock: () => w.authorityNow,
      via: async (u) => (w.proxy = await cuttableProxy(u)).url,
    });
  });
  afterAll(async () => {
    await w.world?.close();
    await w.proxy?.close();
  });
  const check = (adminToken: string) => {
    const nonce = randomBase64url(24);
    return { nonce, proof: adminCheckProof(adminToken, w.world.stack, nonce) };
  };
  const post = (body: unknown) =>
    postJson(sendTarget(new URL(`${w.world.dc('miami').dmz.url}/v1/admin-check`)), body, 10_000, { authorization: `Bearer ${w.world.dc('miami').clientToken}` });
  /** The admin checks that reached the authority (each crossed the proxy: its body, then its answer). */
  const askedAuthority = () => w.proxy.wire.length / 2;
  return { w, check, post, askedAuthority };
}

// The authority limits refused checks per data center (AUTHORITY_ADMIN_CHECK_LIMIT: its 429 admin-check-rate-limited
// with Retry-After), whatever addresses they came to the DMZ client from. The DMZ client passes that 429 on as it is
// (code, the authority's message, Retry-After), not counted against the caller's address (the authority decided
// nothing about this proof), and fleet apply stops at once with apply.admin-check-limited and the wait. Before, the
// authority had no such limit: a DMZ client (or many callers spread over addresses, each under the DMZ client's own
// limit) could have proofs checked without end. Real services: the DMZ client's clock moves a window on every
// ADMIN_CHECK_LIMIT.denials refusals (as callers from fresh addresses would), the authority's stays.
describe("the DMZ client's POST /v1/admin-check behind its authority's limit per data center", () => {
  const { w, check, post, askedAuthority } = limitedWorld();
  const metric = async (url: string, name: string) => {
    const { text } = await send(new URL(`${url}/metrics`), 'GET', {}, undefined, 10_000);
    return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
  };

  it('passes the 429 on with its Retry-After, not counted against the address; fleet apply stops at once with the wait', async () => {
    const { denials, windowMs } = AUTHORITY_ADMIN_CHECK_LIMIT;
    for (let i = 0; i < denials; i++) {
      if (i % ADMIN_CHECK_LIMIT.denials === 0) w.dmzNow += 3 * ADMIN_CHECK_LIMIT.windowMs;
      expect((await post(check(WRONG))).status, `wrong proof ${i + 1}`).toBe(403);
    }
    w.dmzNow += 3 * ADMIN_CHECK_LIMIT.windowMs;
    const dmzLimited = await metric(w.world.dc('miami').dmz.url, 'fleet_admin_check_limited_total');
    // The authority's budget for miami is spent: even the right token is refused there, and the DMZ client says so. It
    // asks the authority once: it holds that 429 until its Retry-After passes and answers the same itself, with the wait
    // left (before, it asked the authority for every check of the window).
    const asked = askedAuthority();
    for (let i = 0; i < ADMIN_CHECK_LIMIT.denials + 1; i++) {
      if (i > 0) w.dmzNow += 1_000;
      const res = await post(check(RIGHT));
      expect(res.status).toBe(429);
      expect(JSON.parse(res.text).error.code).toBe('admin-check-rate-limited');
      expect(JSON.parse(res.text).error.message).toMatch(/^its authority says: admin-token checks of data center miami are refused until 2026-01-01T00:01:00\.000Z/);
      expect(Number(res.retryAfter), `check ${i + 1}`).toBe(windowMs / 1000 - i);
    }
    expect(askedAuthority() - asked).toBe(1);
    // Not the DMZ client's own limit: neither its counter nor its budget for this address moved (more 429s answered
    // than its budget of refusals, and none was answered by its own limit).
    expect(await metric(w.world.dc('miami').dmz.url, 'fleet_admin_check_limited_total')).toBe(dmzLimited);
    expect(await metric(w.world.authority.url, 'fleet_authority_admin_check_limited_total')).toBe(1);

    // fleet apply's check through this DMZ client: stopped at once, with the wait, never asked again.
    const retries: string[] = [];
    const client = new DmzHttpClient({ dataCenter: 'miami', baseUrl: w.world.dc('miami').dmz.url, token: () => w.world.dc('miami').clientToken, batch: true, sleep: async () => {}, onRetry: (r) => void retries.push(r.reason) });
    const lifecycle = { states: ['Running'], initial: 'Running', terminal: [], requestable: ['Running'], transitions: [] };
    const err = await checkAdminThroughDmzClients({
      providers: new Map([['miami', new ConnectedProvider({ dataCenter: 'miami', url: w.world.dc('miami').dmz.url, tokenEnv: '', lifecycle }, client)]]),
      dataCenters: ['miami'],
      stack: w.world.stack,
      adminToken: RIGHT,
      shown: 'web/0',
      address: 'web/0',
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FleetError);
    const diagnostics = (err as FleetError).diagnostics;
    expect(diagnostics.map((d) => d.code)).toEqual(['apply.admin-check-limited']);
    // The wait left on the held 429 (5 s of it passed above), not the whole window.
    expect(diagnostics[0].detail).toMatch(/miami: its DMZ client answered 429 \(admin-check-rate-limited\): its authority says: admin-token checks of data center miami[^\n]*ask again in 55 s at the earliest/);
    expect(retries).toEqual([]);
    expect(askedAuthority() - asked).toBe(1);

    // Once the Retry-After has passed, the DMZ client asks the authority again: its window over, the right token is ok.
    w.dmzNow += windowMs;
    w.authorityNow += windowMs;
    expect((await post(check(RIGHT))).status).toBe(200);
    expect(askedAuthority() - asked).toBe(2);
  });
});

// Checks already on their way to the authority when its first 429 reaches the DMZ client cannot be called back: the
// authority answers each as it finds its limit then, and the DMZ client passes each answer on. Every 429 among them
// says the same (code, the authority's message) with the authority's Retry-After, and the checks answered from the
// hold meanwhile say the wait left on the same window (never less than the authority's); none is a 502; nothing more
// goes to the authority until the wait has passed. Real services, the proxy holding the checks on their way.
describe("the DMZ client's POST /v1/admin-check: checks on their way when its authority's first 429 comes back", () => {
  const { w, check, post, askedAuthority } = limitedWorld();
  const error = (text: string) => (JSON.parse(text) as { error: { code: string; message: string } }).error;

  it('each is answered the authority\'s 429 with its Retry-After, as the held checks are; nothing else reaches the authority', async () => {
    const { denials, windowMs } = AUTHORITY_ADMIN_CHECK_LIMIT;
    // One refusal short of the authority's budget for miami (the DMZ client's own window moved on as fresh callers would).
    for (let i = 0; i < denials - 1; i++) {
      if (i % ADMIN_CHECK_LIMIT.denials === 0) w.dmzNow += 3 * ADMIN_CHECK_LIMIT.windowMs;
      expect((await post(check(WRONG))).status, `wrong proof ${i + 1}`).toBe(403);
    }
    w.dmzNow += 3 * ADMIN_CHECK_LIMIT.windowMs;
    w.proxy.holding = true;
    const asked = askedAuthority();
    // Four checks on their way at once: the last refusal of the budget, then three right ones.
    const wrong = post(check(WRONG));
    await vi.waitFor(() => expect(w.proxy.held.length).toBe(1));
    const right = [post(check(RIGHT)), post(check(RIGHT)), post(check(RIGHT))];
    await vi.waitFor(() => expect(w.proxy.held.length).toBe(4));
    const [first, ...others] = w.proxy.held.splice(0);
    first();
    expect((await wrong).status).toBe(403);
    others[0]();
    const limited = await Promise.race(right);
    expect(limited.status).toBe(429);
    expect(Number(limited.retryAfter)).toBe(windowMs / 1000);
    const said = error(limited.text);
    expect(said.code).toBe('admin-check-rate-limited');
    expect(said.message).toMatch(/^its authority says: admin-token checks of data center miami are refused until 2026-01-01T00:01:00\.000Z/);
    // A check that comes now is answered from the hold, the same.
    const heldNow = await post(check(RIGHT));
    expect([heldNow.status, error(heldNow.text), heldNow.retryAfter]).toEqual([429, said, String(windowMs / 1000)]);
    // Two seconds on, the authority answers the two still on their way: its 429, its Retry-After, the same words.
    w.dmzNow += 2_000;
    w.authorityNow += 2_000;
    others[1]();
    others[2]();
    const answers = (await Promise.all(right)).filter((res) => res !== limited);
    expect(answers).toHaveLength(2);
    for (const [i, res] of answers.entries()) {
      expect([res.status, error(res.text), res.retryAfter], `check on its way ${i + 2}`).toEqual([429, said, String(windowMs / 1000 - 2)]);
    }
    const heldLater = await post(check(RIGHT));
    expect([heldLater.status, error(heldLater.text), heldLater.retryAfter]).toEqual([429, said, String(windowMs / 1000 - 2)]);
    // Only the four on their way reached the authority.
    expect(askedAuthority() - asked).toBe(4);
    expect(w.proxy.held).toEqual([]);
    w.proxy.holding = false;
    // Once the wait has passed, the next check goes to the authority, whose window is over: ok.
    w.dmzNow += windowMs;
    w.authorityNow += windowMs;
    expect((await post(check(RIGHT))).status).toBe(200);
    expect(askedAuthority() - asked).toBe(5);
  });
});
