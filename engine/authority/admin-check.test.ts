// POST /v1/plans/admin-check: fleet apply proves it holds the admin token
// before any change, where the protect rule's override: admin would have the
// authority refuse each overridden deletion only once it is reached (after
// the plan's other changes). Over real loopback HTTP on an in-memory PGlite
// record: a proof under the right token is ok, a wrong one (or any, when the
// authority holds no admin token) is refused 403 admin-proof-refused, no
// bearer token is 401, a data center's token is wrong-role; nothing is
// written to the record, and no log line carries the proof or the token.
// POST /v1/admin-check, the same check for a DMZ client (a data center's token).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openRecord, type SqlRecord } from '../record/index.ts';
import type { FleetRecord } from '../record/types.ts';
import { adminCheckProof, overrideProof, randomBase64url } from '../../protocol/index.ts';
import { postJson, send, sendTarget } from '../../providers/http-send.ts';
import { defaultPack } from '../../providers/testing.ts';
import { checkAdminAtAuthority } from '../../providers/authority-plans.ts';
import { FleetError } from '../diags/index.ts';
import { AUTHORITY_ADMIN_CHECK_LIMIT, startAuthority, type RunningService } from './server.ts';

const RIGHT = 'the-admin-token-of-this-authority';

describe('POST /v1/plans/admin-check', () => {
  const logs: string[] = [];
  let record: FleetRecord;
  let authority: RunningService;
  let bare: RunningService;
  const call = (at: RunningService, body: unknown, token?: string) =>
    postJson(sendTarget(new URL(`${at.url}/v1/plans/admin-check`)), body, 10_000, token ? { authorization: `Bearer ${token}` } : {});
  const check = (adminToken: string, stack = 'adm') => {
    const nonce = randomBase64url(24);
    return { nonce, proof: adminCheckProof(adminToken, stack, nonce) };
  };
  /** Every row of every table of the record, as text: what a read-only route must leave as it was. */
  const everything = async () => {
    const sql = (record as SqlRecord).sql;
    const tables = await sql.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name");
    const out: Record<string, string> = {};
    for (const { table_name } of tables) out[table_name] = JSON.stringify(await sql.query(`SELECT * FROM "${table_name}"`));
    return out;
  };

  /** A case: its name, the authority asked, the body, the bearer token, the status and wire code it must answer. */
  type Case = [string, RunningService, unknown, string | undefined, number, string | undefined];
  /**
   * Sends every case through `send` and checks its answer (ok only as { ok: true }, never the token in it); then that
   * the record is as it was and that the log has `logLine` and never the token, a wrong one, a proof or a nonce.
   */
  const expectAnswers = async (cases: Case[], send: (at: RunningService, body: unknown, token?: string) => Promise<{ status: number; text: string }>, logLine: RegExp) => {
    const before = await everything();
    for (const [name, at, body, token, status, code] of cases) {
      const res = await send(at, body, token);
      expect(res.status, name).toBe(status);
      if (status === 200) expect(JSON.parse(res.text), name).toEqual({ ok: true });
      if (code) expect(JSON.parse(res.text).error.code, name).toBe(code);
      expect(res.text, name).not.toContain(RIGHT);
    }
    expect(await everything()).toEqual(before);
    // Log lines reach the stream in batches (LineBatcher: after 10 ms, or 16 KiB): wait for the line.
    await vi.waitFor(() => expect(logs.join('')).toMatch(logLine));
    const logged = logs.join('');
    expect(logged).not.toContain(RIGHT);
    expect(logged).not.toContain('a-wrong-admin-token');
    expect(logged).not.toMatch(/"proof"|"nonce"/);
  };

  beforeAll(async () => {
    record = await openRecord('memory://');
    const pack = await defaultPack();
    const common = { record, pack, stackName: 'adm', dataCenters: [{ name: 'miami', token: 'dmz-tok' }], planTokens: ['plan-tok'], secret: 'authority-secret' };
    authority = await startAuthority({ ...common, adminTokens: [RIGHT], logger: { level: 'debug', stream: { write: (l: string) => void logs.push(l) } } });
    bare = await startAuthority(common);
  });
  afterAll(async () => {
    await authority?.close();
    await bare?.close();
    await record?.close();
  });

  it('answers, and writes nothing, whatever the proof', async () => {
    const cases: Case[] = [
      ['the right token', authority, check(RIGHT), 'plan-tok', 200, undefined],
      ['a wrong token', authority, check('a-wrong-admin-token'), 'plan-tok', 403, 'admin-proof-refused'],
      ["the right token over another stack's name", authority, check(RIGHT, 'other'), 'plan-tok', 403, 'admin-proof-refused'],
      ["an override's proof instead", authority, { nonce: 'n'.repeat(16), proof: overrideProof(RIGHT, 'n'.repeat(16), null, 'x', 'y') }, 'plan-tok', 403, 'admin-proof-refused'],
      ['an authority holding no admin token', bare, check(RIGHT), 'plan-tok', 403, 'admin-proof-refused'],
      ['no bearer token', authority, check(RIGHT), undefined, 401, 'unauthorized'],
      ["a data center's token", authority, check(RIGHT), 'dmz-tok', 403, 'wrong-role'],
      ['no proof', authority, { nonce: 'n'.repeat(16) }, 'plan-tok', 400, undefined],
      ['a proof not hex', authority, { nonce: 'n'.repeat(16), proof: 'z'.repeat(64) }, 'plan-tok', 400, undefined],
    ];
    await expectAnswers(cases, call, /admin check/);
  });

  // POST /v1/admin-check: the same check for a DMZ client passing on the CLI's (a stack.yaml with no authority address
  // reaches the authority only through its DMZ clients): a data center's token, with or without plan seals.
  it("POST /v1/admin-check: the same answers to a data center's token, none to the CLI's; nothing written, nothing logged", async () => {
    const unsealed = await startAuthority({ record, pack: await defaultPack(), stackName: 'adm', dataCenters: [{ name: 'miami', token: 'dmz-tok' }], adminTokens: [RIGHT], secret: 'authority-secret' });
    try {
      const post = (at: RunningService, body: unknown, token?: string) => postJson(sendTarget(new URL(`${at.url}/v1/admin-check`)), body, 10_000, token ? { authorization: `Bearer ${token}` } : {});
      const cases: Case[] = [
        ['the right token', authority, check(RIGHT), 'dmz-tok', 200, undefined],
        ['the right token, an authority that seals no plans', unsealed, check(RIGHT), 'dmz-tok', 200, undefined],
        ['a wrong token', authority, check('a-wrong-admin-token'), 'dmz-tok', 403, 'admin-proof-refused'],
        ["the right token over another stack's name", unsealed, check(RIGHT, 'other'), 'dmz-tok', 403, 'admin-proof-refused'],
        ['an authority holding no admin token', bare, check(RIGHT), 'dmz-tok', 403, 'admin-proof-refused'],
        ["the CLI's token at the authority", authority, check(RIGHT), 'plan-tok', 403, 'wrong-role'],
        ['no bearer token', authority, check(RIGHT), undefined, 401, 'unauthorized'],
        ['a proof not hex', authority, { nonce: 'n'.repeat(16), proof: 'z'.repeat(64) }, 'dmz-tok', 400, undefined],
      ];
      await expectAnswers(cases, post, /"dataCenter":"miami"[^\n]*"admin check"/);
    } finally {
      await unsealed.close();
    }
  });
});

// The authority's POST /v1/admin-check limits refused checks per data center (the caller's token: its identity), as
// the DMZ client limits them per source address: the route answers only a data center's token, but a DMZ client that
// is compromised or buggy could otherwise try admin tokens without end (each a constant-time HMAC, a log line). Past
// AUTHORITY_ADMIN_CHECK_LIMIT's budget of refusals in its window, that data center's checks are answered 429
// admin-check-rate-limited with Retry-After, without checking the proof, until the window ends; a correct check never
// counts, and another data center is not touched. Before, there was no limit: the 21st wrong proof was checked as the
// first. Over real loopback HTTP, on an injected clock.
describe("POST /v1/admin-check: the authority's limit of refused checks per data center", () => {
  const h = limitAuthority({
    dataCenters: [
      { name: 'miami', token: 'dmz-tok-miami' },
      { name: 'paris', token: 'dmz-tok-paris' },
    ],
  });
  const post = (body: unknown, token: string) => h.post('/v1/admin-check', body, token);
  /** fleet_authority_admin_check_limited_total of `dc` (0 before its first 429). */
  const limitedCount = (dc: string) => h.limited('data_center', dc);

  it('past the budget of refusals, 429 with Retry-After until the window ends; ok checks never count; per data center', async () => {
    const { denials, windowMs } = AUTHORITY_ADMIN_CHECK_LIMIT;
    // Correct checks, any number, never count.
    for (let i = 0; i < 2 * denials; i++) expect((await post(checkOf(RIGHT), 'dmz-tok-miami')).status).toBe(200);
    for (let i = 0; i < denials; i++) expect((await post(checkOf('a-wrong-admin-token'), 'dmz-tok-miami')).status).toBe(403);
    expect(await limitedCount('miami')).toBe(0);
    const limited = await post(checkOf(RIGHT), 'dmz-tok-miami');
    expect(limited.status).toBe(429);
    expect(JSON.parse(limited.text).error.code).toBe('admin-check-rate-limited');
    expect(JSON.parse(limited.text).error.message).toMatch(/data center miami[^]*until 2026-01-01T00:01:00\.000Z[^]*20 refused checks within 60 s/);
    expect(Number(limited.retryAfter)).toBe(windowMs / 1000);
    expect((await post(checkOf('a-wrong-admin-token'), 'dmz-tok-miami')).status).toBe(429);
    expect(await limitedCount('miami')).toBe(2);
    // Another data center's checks are its own.
    expect((await post(checkOf(RIGHT), 'dmz-tok-paris')).status).toBe(200);
    expect((await post(checkOf('a-wrong-admin-token'), 'dmz-tok-paris')).status).toBe(403);
    expect(await limitedCount('paris')).toBe(0);
    // One warn line per data center and window, never a proof; the 429s write no request line each.
    // Log lines reach the stream in batches (engine/observability/logs.ts LineBatcher: after 10 ms, or 16 KiB): wait for the line.
    await vi.waitFor(() => expect(h.logs.join('')).toMatch(/"admin check limited"/));
    const logged = h.logs.join('');
    expect(logged.match(/"admin check limited"/g)).toHaveLength(1);
    expect(logged).toMatch(/"level":40[^\n]*"dataCenter":"miami"[^\n]*"refused":20[^\n]*"admin check limited"/);
    expect(logged).not.toMatch(/"proof"|"nonce"/);
    // The window ends: checked again (the next window is strict, as the DMZ client's: each check charged until answered ok).
    h.now += windowMs;
    expect((await post(checkOf(RIGHT), 'dmz-tok-miami')).status).toBe(200);
    expect(await limitedCount('miami')).toBe(2);
  });
});

// Found in review: each authority replica counted the refused checks it answered in its own memory, with the whole
// budget each, so two replicas behind a round-robin proxy let 40 wrong proofs a minute through, N replicas N x 20.
// Each now has its share (adminCheckLimitOf). Over real loopback HTTP: two replicas on one record, a data center's
// wrong proofs spread over them in generated orders.
describe("POST /v1/admin-check with replicas: the stack's budget of refused checks, not each replica's", () => {
  const { denials } = AUTHORITY_ADMIN_CHECK_LIMIT;
  let record: FleetRecord;
  let now = Date.parse('2026-01-01T00:00:00Z');
  const replicas: RunningService[] = [];
  beforeAll(async () => {
    record = await openRecord('memory://');
    for (let i = 0; i < 2; i++) {
      replicas.push(
        await startAuthority({ record, pack: await defaultPack(), stackName: 'adm', dataCenters: [{ name: 'miami', token: 'dmz-tok-miami' }], adminTokens: [RIGHT], secret: 'authority-secret', adminCheckLimitClock: () => now, replicas: 2 }),
      );
    }
  });
  afterAll(async () => {
    for (const r of replicas) await r.close();
    await record.close();
  });
  const post = (at: RunningService, body: unknown) => postJson(sendTarget(new URL(`${at.url}/v1/admin-check`)), body, 10_000, { authorization: 'Bearer dmz-tok-miami' });

  it('wrong proofs spread over two replicas (round robin, and 8 generated orders) are refused 429 once the one budget is spent at each', async () => {
    let seed = 7;
    const next = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const orders: number[][] = [Array.from({ length: 4 * denials }, (_, i) => i % 2)];
    for (let k = 0; k < 8; k++) orders.push(Array.from({ length: 4 * denials }, () => (next() < 0.5 ? 0 : 1)));
    for (const [k, order] of orders.entries()) {
      // A new window for each order.
      now += AUTHORITY_ADMIN_CHECK_LIMIT.windowMs * 2;
      let checked = 0;
      const limitedAt = new Set<number>();
      const messages = new Set<string>();
      for (const r of order) {
        const res = await post(replicas[r], checkOf('a-wrong-admin-token'));
        if (res.status === 403) checked++;
        else {
          expect(res.status).toBe(429);
          messages.add(JSON.parse(res.text).error.message.replace(/until \S+/, 'until T'));
          limitedAt.add(r);
        }
      }
      // However the checks were spread, no more than the stack's budget was checked; and the round robin spends it all.
      expect(checked, `order ${k}`).toBeLessThanOrEqual(denials);
      if (k === 0) expect([checked, [...limitedAt].sort()]).toEqual([denials, [0, 1]]);
      for (const m of messages) expect(m).toContain(`it had ${denials / 2} refused checks within 60 s (the authority's limit per data center, whatever address they came from; this replica's share of 20 across 2 replicas)`);
    }
  });
});

// POST /v1/plans/admin-check (the CLI's token: fleet apply's check for a stack whose stack.yaml names this authority)
// limits refused checks too, per caller token: the CLI's token is one identity (every plan token is it), and its
// holder could otherwise try admin tokens at this route without end, whatever address it came from. The same
// settings as per data center (AUTHORITY_ADMIN_CHECK_LIMIT), a budget of its own; past it 429 admin-check-rate-limited
// with Retry-After, the proof not checked, counted in fleet_authority_admin_check_limited_total{route}; fleet apply's
// client (checkAdminAtAuthority) stops at once with apply.admin-check-limited and the wait. Before, the route had no
// limit: the 21st wrong proof was checked as the first, and a 429 would have been apply.authority-refused.
describe("POST /v1/plans/admin-check: the authority's limit of refused checks per caller token", () => {
  const h = limitAuthority({ dataCenters: [{ name: 'miami', token: 'dmz-tok-miami' }], planTokens: ['plan-tok', 'plan-tok-2'] });
  const post = h.post;
  const plans = (body: unknown, token = 'plan-tok') => post('/v1/plans/admin-check', body, token);
  /** fleet_authority_admin_check_limited_total of `route`, summed over data centers. */
  const limitedCount = (route: string) => h.limited('route', route);

  it('past the budget, 429 with Retry-After for every plan token; the data centers keep theirs; fleet apply stops at once with the wait', async () => {
    const { denials, windowMs } = AUTHORITY_ADMIN_CHECK_LIMIT;
    for (let i = 0; i < 2 * denials; i++) expect((await plans(checkOf(RIGHT))).status).toBe(200);
    // Spread over both plan tokens: one caller, the CLI's token.
    for (let i = 0; i < denials; i++) expect((await plans(checkOf('a-wrong-admin-token'), i % 2 ? 'plan-tok' : 'plan-tok-2')).status, `wrong proof ${i + 1}`).toBe(403);
    expect(await limitedCount('/v1/plans/admin-check')).toBe(0);
    for (const token of ['plan-tok', 'plan-tok-2']) {
      const limited = await plans(checkOf(RIGHT), token);
      expect(limited.status, token).toBe(429);
      expect(JSON.parse(limited.text).error.code).toBe('admin-check-rate-limited');
      expect(JSON.parse(limited.text).error.message).toMatch(/the CLI's token[^]*until 2026-01-01T00:01:00\.000Z[^]*20 refused checks within 60 s[^]*the proof was not checked/);
      expect(Number(limited.retryAfter)).toBe(windowMs / 1000);
    }
    expect(await limitedCount('/v1/plans/admin-check')).toBe(2);
    // A data center's checks are not the CLI's: its own budget.
    expect((await post('/v1/admin-check', checkOf(RIGHT), 'dmz-tok-miami')).status).toBe(200);
    expect(await limitedCount('/v1/admin-check')).toBe(0);

    // fleet apply's client: apply.admin-check-limited at once, with the wait (not apply.authority-refused).
    h.now += 15_000;
    const err = await checkAdminAtAuthority({ address: h.url, tokenEnv: 'PLAN_TOKEN', where: {} }, { PLAN_TOKEN: 'plan-tok' }, 'adm', RIGHT).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FleetError);
    const diagnostics = (err as FleetError).diagnostics;
    expect(diagnostics.map((d) => d.code)).toEqual(['apply.admin-check-limited']);
    expect(diagnostics[0].detail).toMatch(/the CLI's token[^]*ask again in 45 s at the earliest[^]*Nothing was started/);
    expect(await limitedCount('/v1/plans/admin-check')).toBe(3);

    // Log lines reach the stream in batches (engine/observability/logs.ts LineBatcher: after 10 ms, or 16 KiB): wait for the line.
    await vi.waitFor(() => expect(h.logs.join('')).toMatch(/"admin check limited"/));
    const logged = h.logs.join('');
    expect(logged.match(/"admin check limited"/g)).toHaveLength(1);
    expect(logged).toMatch(/"level":40[^\n]*"caller":"cli"[^\n]*"route":"\/v1\/plans\/admin-check"[^\n]*"refused":20[^\n]*"admin check limited"/);
    expect(logged).not.toMatch(/"proof"|"nonce"|plan-tok/);
    // The window ends: checked again.
    h.now += windowMs;
    await expect(checkAdminAtAuthority({ address: h.url, tokenEnv: 'PLAN_TOKEN', where: {} }, { PLAN_TOKEN: 'plan-tok' }, 'adm', RIGHT)).resolves.toEqual({ ok: true });
  });
});

/** A proof of `adminToken` for stack adm, with a fresh nonce. */
function checkOf(adminToken: string) {
  const nonce = randomBase64url(24);
  return { nonce, proof: adminCheckProof(adminToken, 'adm', nonce) };
}

/**
 * An authority on a memory record for the limit tests (started and closed around the describe): its admin-check
 * limits run on `h.now`, which a test moves, and its log lines go to `h.logs`. `h.limited(label, value)`:
 * fleet_authority_admin_check_limited_total summed over the series whose `label` is `value`, as GET /metrics says.
 */
function limitAuthority(o: { dataCenters: { name: string; token: string }[]; planTokens?: string[] }) {
  let record: FleetRecord | undefined;
  let authority: RunningService | undefined;
  const h = {
    logs: [] as string[],
    now: Date.parse('2026-01-01T00:00:00Z'),
    get url(): string {
      return authority!.url;
    },
    post: (path: string, body: unknown, token: string) => postJson(sendTarget(new URL(`${h.url}${path}`)), body, 10_000, { authorization: `Bearer ${token}` }),
    async limited(label: 'data_center' | 'route', value: string): Promise<number> {
      const { text } = await send(new URL(`${h.url}/metrics`), 'GET', {}, undefined, 10_000);
      expect(text).toMatch(/^# TYPE fleet_authority_admin_check_limited_total counter$/m);
      const series = [...text.matchAll(/^fleet_authority_admin_check_limited_total\{([^}]*)\} (\d+)$/gm)];
      return series.filter((m) => m[1].includes(`${label}="${value}"`)).reduce((n, m) => n + Number(m[2]), 0);
    },
  };
  beforeAll(async () => {
    record = await openRecord('memory://');
    authority = await startAuthority({
      record,
      pack: await defaultPack(),
      stackName: 'adm',
      dataCenters: o.dataCenters,
      ...(o.planTokens ? { planTokens: o.planTokens } : {}),
      adminTokens: [RIGHT],
      secret: 'authority-secret',
      adminCheckLimitClock: () => h.now,
      logger: { level: 'info', stream: { write: (l: string) => void h.logs.push(l) } },
    });
  });
  afterAll(async () => {
    await authority?.close();
    await record?.close();
  });
  return h;
}
