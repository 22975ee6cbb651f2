// The dashboard as the authority serves it (engine/ui under /ui): signed in
// with the admin or read-only token only. A data center's token, which
// opens the protocol's routes, opens no page; a dashboard token opens no
// protocol route; the pages are not in the protocol's OpenAPI document.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPack } from '../../providers/testing.ts';
import { openRecord } from '../record/index.ts';
import type { FleetRecord } from '../record/types.ts';
import { seededRandom } from '../model/seeded-random.ts';
import { startAuthority, type RunningService } from './server.ts';

let record: FleetRecord;
let authority: RunningService;
let bare: RunningService;

beforeAll(async () => {
  record = await openRecord('memory://');
  await record.insertVm(
    { stack: 'ui', fleet: 'web', owner: 'team-web', index: 0, dataCenter: 'miami', state: 'Requested', desiredState: 'Running', specHash: 'h', image: 'ubuntu-22.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, encryptedDisk: true },
    { actor: 'ana' },
  );
  const pack = await defaultPack();
  const common = { record, pack, stackName: 'ui', dataCenters: [{ name: 'miami', token: 'tok-miami' }], secret: 'the-authority-secret' };
  authority = await startAuthority({ ...common, ui: { adminToken: 'tok-admin', readToken: 'tok-read' } });
  bare = await startAuthority(common);
});
afterAll(async () => {
  await authority?.close();
  await bare?.close();
  await record?.close();
});

const form = (token: string) => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${encodeURIComponent(token)}`, redirect: 'manual' as const });

describe('the dashboard on the authority', () => {
  it('signs a person in with the read-only or admin token and serves the record of its stack', async () => {
    for (const token of ['tok-read', 'tok-admin']) {
      const login = await fetch(`${authority.url}/ui/login`, form(token));
      expect(login.status).toBe(303);
      const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0];
      expect(cookie).toMatch(new RegExp(`^fleet_ui_${new URL(authority.url).port}=`));
      const page = await fetch(`${authority.url}/ui/fleets/web`, { headers: { cookie } });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('data-address="web/0"');
    }
  });

  it('refuses the data centers\' tokens, and a dashboard token opens no protocol route', async () => {
    expect((await fetch(`${authority.url}/ui/login`, form('tok-miami'))).status).toBe(401);
    expect((await fetch(`${authority.url}/ui`, { headers: { authorization: 'Bearer tok-miami' } })).status).toBe(401);
    expect((await fetch(`${authority.url}/ui`, { redirect: 'manual' })).status).toBe(303);
    const protocol = await fetch(`${authority.url}/v1/authorize`, { method: 'POST', headers: { authorization: 'Bearer tok-admin', 'content-type': 'application/json' }, body: '{}' });
    expect(protocol.status).toBe(401);
  });

  // Found by QA: a wrong bearer token on a page was answered {"error":"ui-unauthorized","message":…}, a code in no registry
  // and another shape than every other 401 of the same service ({"error":{"code","message"}}, protocol/errors.ts).
  it('answers a wrong bearer token on a page with the service\'s error body and a registered code', async () => {
    const page = await fetch(`${authority.url}/ui/fleets/web`, { headers: { authorization: 'Bearer tok-miami' } });
    const protocol = await fetch(`${authority.url}/v1/authorize`, { method: 'POST', headers: { authorization: 'Bearer tok-read', 'content-type': 'application/json' }, body: '{}' });
    expect(page.status).toBe(401);
    const body = (await page.json()) as { error: { code: string; message: string } };
    expect(body).toEqual({ error: { code: 'unauthorized', message: expect.stringContaining('dashboard') } });
    expect(Object.keys(((await protocol.json()) as { error: object }).error)).toEqual(Object.keys(body.error));
    expect(page.headers.get('cache-control')).toBe('no-store');
  });

  it('keeps a session across a restart: the cookie is signed with a key derived from the authority\'s secret', async () => {
    const login = await fetch(`${authority.url}/ui/login`, form('tok-read'));
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0];
    const other = await startAuthority({ record, pack: await defaultPack(), stackName: 'ui', dataCenters: [], secret: 'the-authority-secret', ui: { readToken: 'tok-read' } });
    const stranger = await startAuthority({ record, pack: await defaultPack(), stackName: 'ui', dataCenters: [], secret: 'another-secret', ui: { readToken: 'tok-read' } });
    try {
      expect((await fetch(`${other.url}/ui`, { headers: { cookie } })).status).toBe(200);
      expect((await fetch(`${stranger.url}/ui`, { headers: { cookie }, redirect: 'manual' })).status).toBe(303);
    } finally {
      await other.close();
      await stranger.close();
    }
  });

  // Found by QA: a session outlived the token it was signed in with; rotating a leaked FLEET_READ_TOKEN (or unsetting it)
  // left every session made with it open for up to 8 hours on every replica sharing the secret.
  it('ends the sessions of a role whose token was rotated or unset on a restart, and keeps the other role\'s', async () => {
    const cookieOf = async (token: string) => ((await fetch(`${authority.url}/ui/login`, form(token))).headers.get('set-cookie') ?? '').split(';')[0];
    const read = await cookieOf('tok-read');
    const admin = await cookieOf('tok-admin');
    const rotated = await startAuthority({ record, pack: await defaultPack(), stackName: 'ui', dataCenters: [], secret: 'the-authority-secret', ui: { adminToken: 'tok-admin', readToken: 'tok-read-2' } });
    const adminOnly = await startAuthority({ record, pack: await defaultPack(), stackName: 'ui', dataCenters: [], secret: 'the-authority-secret', ui: { adminToken: 'tok-admin' } });
    try {
      // The same session at another replica (here, another port: the cookie is named for the port the browser sees).
      const status = async (url: string, cookie: string) =>
        (await fetch(`${url}/ui`, { headers: { cookie: cookie.replace(/^fleet_ui_\d+=/, `fleet_ui_${new URL(url).port}=`) }, redirect: 'manual' })).status;
      expect(await status(rotated.url, read)).toBe(303);
      expect(await status(adminOnly.url, read)).toBe(303);
      expect(await status(rotated.url, admin)).toBe(200);
      expect(await status(adminOnly.url, admin)).toBe(200);
    } finally {
      await rotated.close();
      await adminOnly.close();
    }
  });

  it('leaves the pages out of the protocol\'s OpenAPI document', async () => {
    const doc = (await (await fetch(`${authority.url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths).some((p) => p.startsWith('/ui'))).toBe(false);
    expect(Object.keys(doc.paths)).toContain('/v1/authorize');
  });

  it('serves no dashboard without a dashboard token: /ui is an unknown route behind the bearer check', async () => {
    expect((await fetch(`${bare.url}/ui/login`, form('tok-miami'))).status).toBe(401);
    expect((await fetch(`${bare.url}/ui`, { headers: { authorization: 'Bearer tok-miami' } })).status).toBe(404);
  });

  // Checked by review (held on main): a caller choosing URLs, methods and tokens cannot add series to /metrics: its
  // labels are route patterns ('unmatched' for none), methods (the HTTP parser's closed set) and status codes.
  it('keeps /metrics bounded whatever paths, methods and tokens callers send, pages and protocol alike', async () => {
    const metrics = async () => (await (await fetch(`${authority.url}/metrics`)).text()).split('\n').filter((l) => /^fleet_http_request(s_total|_duration_seconds_count)\{/.test(l));
    const cookie = ((await fetch(`${authority.url}/ui/login`, form('tok-read'))).headers.get('set-cookie') ?? '').split(';')[0];
    const rnd = seededRandom(7);
    const sent: string[] = [];
    const word = () => {
      const w = `q${Math.floor(rnd.next() * 1e12).toString(36)}`;
      sent.push(w);
      return w;
    };
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rnd.next() * xs.length)];
    for (let i = 0; i < 300; i++) {
      const path = pick([() => `/${word()}`, () => `/ui/${word()}`, () => `/ui/fleets/${word()}`, () => `/ui/vms/${word()}/${word()}`, () => `/ui/plans/${word()}?page=${word()}`, () => `/v1/vms/${word()}`, () => `/metrics/${word()}`])();
      const headers = pick<Record<string, string>>([{}, { cookie }, { authorization: `Bearer ${word()}` }, { authorization: 'Bearer tok-miami' }]);
      await (await fetch(`${authority.url}${path}`, { method: pick(['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']), headers, redirect: 'manual' })).arrayBuffer();
    }
    const series = await metrics();
    const text = series.join('\n');
    expect(sent.filter((w) => text.includes(w))).toEqual([]);
    const routes = new Set(series.map((l) => /route="([^"]*)"/.exec(l)?.[1]));
    // Patterns only (the earlier tests' routes too), and 'unmatched' for every path no route has.
    expect([...routes].filter((r) => r !== 'unmatched' && !(r?.startsWith('/') && !/q[0-9a-z]{4,}/.test(r)))).toEqual([]);
    expect(routes).toContain('unmatched');
    // Routes x methods x the statuses a refusal has (200, 303, 401, 404, 405, 429, ...): a closed set, 300 requests or not.
    expect(series.length).toBeLessThanOrEqual(routes.size * 6 * 8 * 2);
  });
});
