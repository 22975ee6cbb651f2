import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LIFECYCLE } from '../policy/testdata/fixtures.ts';
import { registerUi, sessionCookieName, uiFrameworkErrors } from './server.ts';
import type { UiSource } from './source.ts';
import { overviewOf, type UiJournal, type UiVm } from './pages.ts';
import { seededRandom } from '../model/seeded-random.ts';

const vm: UiVm = {
  id: 'vm-1', address: 'web/0', fleet: 'web', index: 0, dataCenter: 'miami', state: 'Running', desiredState: 'Running', image: 'ubuntu-22.04',
  realImage: 'img-u-miami', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, encryptedDisk: true, cloudId: 'sim-miami-1', version: 6, updatedAt: 'now', deposed: false,
};
/** The record's paged reads over arrays, as recordSource answers them (members by index, current before deposed; journal in order). */
function paged(vms: readonly UiVm[], journal: readonly UiJournal[]): Pick<UiSource, 'overview' | 'fleetMembers' | 'vm' | 'planJournal'> {
  const byIndex = (a: UiVm, b: UiVm) => a.index - b.index || Number(a.deposed) - Number(b.deposed);
  return {
    overview: async (offset, limit) => overviewOf(vms.map((v) => ({ fleet: v.fleet, dataCenter: v.dataCenter, state: v.state, vms: 1 })), offset, limit),
    fleetMembers: async (fleet, offset, limit) => {
      const members = vms.filter((v) => v.fleet === fleet).sort(byIndex);
      return { total: members.length, members: members.slice(offset, offset + limit) };
    },
    vm: async (fleet, index) => vms.find((v) => v.fleet === fleet && v.index === index && !v.deposed),
    // Row i's id is i + 1 (ids grow in the order written).
    planJournal: async (_id, from, limit, failures) => {
      const failed = journal.filter((j) => j.status === 'failed');
      const start = 'offset' in from ? from.offset : 'after' in from ? Number(from.after) : Math.max(0, Number(from.before) - 1 - limit);
      const end = 'before' in from ? Number(from.before) - 1 : start + limit;
      const rows = journal.slice(start, end);
      return { total: journal.length, rows, failedTotal: failed.length, failed: failed.slice(0, failures), firstId: rows.length ? String(start + 1) : null, lastId: rows.length ? String(start + rows.length) : null };
    },
  };
}

const source: UiSource = {
  stack: 'local',
  pack: { name: 'default@1.0.0', lifecycle: DEFAULT_LIFECYCLE },
  ...paged([vm], [{ address: 'web/0', seq: 0, from: 'Requested', to: 'BeingCreated', status: 'done', detail: null, at: 't' }]),
  history: async (address) => (address === 'web/0' ? [{ at: 't', address, from: null, to: 'Requested', actor: 'ana', planId: 'p-1', outcome: 'succeeded', detail: null, code: null }] : []),
  drift: async () => [{ at: 't2', address: 'web/0', from: 'Running', to: 'PoweredOff', actor: 'refresh', planId: null, outcome: 'drift', detail: 'refresh: miami reports PoweredOff', code: null }],
  listLocks: async () => [],
  recentPlans: async () => [{ id: 'p-1', who: 'ana', startedAt: 't0', finishedAt: 't1', result: 'succeeded', digest: 'd' }],
  // p-old is an apply older than the newest 1000 (recentPlans no longer lists it).
  plan: async (id) => (['p-1', 'p-old'].includes(id) ? { id, who: 'ana', startedAt: 't0', finishedAt: 't1', result: 'succeeded', digest: 'd' } : undefined),
  bootAttempts: async () => [],
};

let app: FastifyInstance;
afterEach(() => app?.close());

function start(secure = false, more: Partial<Parameters<typeof registerUi>[1]> = {}) {
  app = Fastify();
  registerUi(app, { source, secure, authorize: (t) => (t === 'admin-token' ? 'admin' : t === 'read-token' ? 'read' : undefined), ...more });
  return app;
}

describe('dashboard access', () => {
  it('sends a person without a session to the sign-in form, and in with a valid token', async () => {
    start();
    const first = await app.inject({ method: 'GET', url: '/ui' });
    expect(first.statusCode).toBe(303);
    expect(first.headers.location).toBe('/ui/login');

    const wrong = await app.inject({ method: 'POST', url: '/ui/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'token=nope' });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.body).toContain('data-testid="login-failed"');
    expect(wrong.headers['set-cookie']).toBeUndefined();

    const ok = await app.inject({ method: 'POST', url: '/ui/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'token=read-token' });
    expect(ok.statusCode).toBe(303);
    const cookie = String(ok.headers['set-cookie']);
    expect(cookie).toMatch(/^fleet_ui_80=\d+\.read\.[\w-]+; Path=\/ui; HttpOnly; SameSite=Strict; Max-Age=28800$/);
    // The cookie never holds the token.
    expect(cookie).not.toContain('read-token');

    const page = await app.inject({ method: 'GET', url: '/ui', headers: { cookie: cookie.split(';')[0] } });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toBe("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    // frame-ancestors' older form too, for a browser that does not read it from the policy (clickjacking).
    expect(page.headers['x-frame-options']).toBe('DENY');
    expect(page.body).toContain('1 VMs in 1 fleets over 1 data centers');
  });

  // Found by QA: each was a 500 page ("the dashboard failed to read the record") and an error in the log.
  it.each([
    ['a sign-in form over its 4 KiB limit', 'application/x-www-form-urlencoded', `token=${'a'.repeat(5000)}`, 413],
    ['a sign-in body that is not JSON', 'application/json', '{"token":', 400],
    ['a sign-in body of a type with no parser', 'application/xml', '<token>a</token>', 415],
  ])('%s: answered with its 4xx status on a page, not 500', async (_name, type, payload, status) => {
    start();
    const res = await app.inject({ method: 'POST', url: '/ui/login', headers: { 'content-type': type }, payload });
    expect(res.statusCode).toBe(status);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    expect(res.body).toContain('The request was refused');
    expect(res.headers['set-cookie']).toBeUndefined();
  });

  it('refuses a forged or expired session cookie, and a wrong bearer token', async () => {
    start();
    for (const cookie of ['fleet_ui_80=9999999999999.admin.forged', `fleet_ui_80=1.admin.x`, 'fleet_ui_80=garbage']) {
      expect((await app.inject({ method: 'GET', url: '/ui', headers: { cookie } })).statusCode).toBe(303);
    }
    expect((await app.inject({ method: 'GET', url: '/ui', headers: { authorization: 'Bearer nope' } })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/ui', headers: { authorization: 'Bearer admin-token' } })).statusCode).toBe(200);
  });

  // Found by QA: a form on any other site could sign a visitor's browser in with the poster's token (login CSRF), and a
  // person had no way to sign out but to wait 8 hours or clear their cookies.
  it.each([
    ['Sec-Fetch-Site: cross-site', 403, { 'sec-fetch-site': 'cross-site' }],
    ['Sec-Fetch-Site: same-site (a sibling subdomain)', 403, { 'sec-fetch-site': 'same-site' }],
    ['an Origin of another host, no Sec-Fetch-Site', 403, { origin: 'https://evil.example' }],
    ['Origin: null (a sandboxed frame)', 403, { origin: 'null' }],
    ['Sec-Fetch-Site: same-origin (behind a proxy that rewrites Host)', 303, { 'sec-fetch-site': 'same-origin', origin: 'https://fleet.example' }],
    ['an Origin of this host', 303, { origin: 'http://localhost:80' }],
    ['neither header (a script, curl)', 303, {}],
  ])('a sign-in posted with %s -> %i', async (_name, status, headers) => {
    start();
    const res = await app.inject({ method: 'POST', url: '/ui/login', headers: { 'content-type': 'application/x-www-form-urlencoded', host: 'localhost:80', ...headers }, payload: 'token=read-token' });
    expect(res.statusCode).toBe(status);
    if (status === 403) {
      expect(res.headers['set-cookie']).toBeUndefined();
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.body).toContain('from a page of another site');
    }
  });

  it('signs out: the cookie is cleared, every page offers the button, and a sign-out from another site is refused', async () => {
    start();
    const ok = await app.inject({ method: 'POST', url: '/ui/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'token=read-token' });
    const cookie = String(ok.headers['set-cookie']).split(';')[0];
    const page = await app.inject({ method: 'GET', url: '/ui', headers: { cookie } });
    expect(page.body).toContain('<form method="post" action="/ui/logout"');
    expect((await app.inject({ method: 'GET', url: '/ui/login' })).body).not.toContain('/ui/logout');

    const foreign = await app.inject({ method: 'POST', url: '/ui/logout', headers: { cookie, 'sec-fetch-site': 'cross-site' } });
    expect(foreign.statusCode).toBe(403);
    expect(foreign.headers['set-cookie']).toBeUndefined();

    const out = await app.inject({ method: 'POST', url: '/ui/logout', headers: { cookie, 'sec-fetch-site': 'same-origin', 'content-type': 'application/x-www-form-urlencoded' }, payload: '' });
    expect(out.statusCode).toBe(303);
    expect(out.headers.location).toBe('/ui/login');
    expect(String(out.headers['set-cookie'])).toBe('fleet_ui_80=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0');
    // Signing out needs no live session (an expired one may sign out too).
    expect((await app.inject({ method: 'POST', url: '/ui/logout' })).statusCode).toBe(303);
  });

  // A browser keeps cookies by host, not port: two dashboards on one host (`fleet ui` for two stacks, each with its own
  // session key) shared the name fleet_ui, so signing in to the second replaced the first one's session.
  it("two dashboards on one host keep their own sessions: the cookie is named for the Host's port", async () => {
    const apps = [7402, 7403].map((port) => {
      const a = Fastify();
      registerUi(a, { source, authorize: (t) => (t === 'read-token' ? 'read' : undefined) });
      return { a, host: `127.0.0.1:${port}` };
    });
    try {
      // What the browser holds for 127.0.0.1, every port: one value per cookie name.
      const jar = new Map<string, string>();
      const cookies = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
      for (const { a, host } of apps) {
        const ok = await a.inject({ method: 'POST', url: '/ui/login', headers: { host, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'token=read-token' });
        const [pair] = String(ok.headers['set-cookie']).split(';');
        const [k, v] = pair.split('=');
        jar.set(k, v);
      }
      for (const { a, host } of apps) expect((await a.inject({ method: 'GET', url: '/ui', headers: { host, cookie: cookies() } })).statusCode).toBe(200);
      expect([...jar.keys()]).toEqual(['fleet_ui_7402', 'fleet_ui_7403']);
    } finally {
      await Promise.all(apps.map(({ a }) => a.close()));
    }
  });

  it.each([
    ['127.0.0.1:7402', 'fleet_ui_7402'],
    ['[::1]:8080', 'fleet_ui_8080'],
    ['fleet.example', 'fleet_ui'],
    ['[::1]', 'fleet_ui'],
    [undefined, 'fleet_ui'],
  ])('the session cookie for Host %s is %s', (host, name) => {
    expect(sessionCookieName(host)).toBe(name);
  });

  // Found by QA: the sign-in form took any number of wrong tokens at the speed of HTTP, so a short token could be guessed.
  it('refuses an address past 10 failed sign-ins in 15 minutes (429 with Retry-After, the right token too), until the window passes; bearer guesses count', async () => {
    const t = { now: 1_000_000 };
    app = Fastify();
    registerUi(app, { source, now: () => t.now, authorize: (tok) => (tok === 'read-token' ? 'read' : undefined) });
    const login = (token: string, ip = '10.0.0.7') =>
      app.inject({ method: 'POST', url: '/ui/login', remoteAddress: ip, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${token}` });
    for (let i = 0; i < 9; i++) expect((await login(`guess-${i}`)).statusCode).toBe(401);
    // A wrong bearer token on a page is a guess too.
    expect((await app.inject({ method: 'GET', url: '/ui', remoteAddress: '10.0.0.7', headers: { authorization: 'Bearer guess-9' } })).statusCode).toBe(401);
    for (const token of ['guess-10', 'read-token']) {
      const refused = await login(token);
      expect(refused.statusCode).toBe(429);
      expect(refused.headers['retry-after']).toBe('900');
      expect(refused.headers['set-cookie']).toBeUndefined();
      expect(refused.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(refused.body).toContain('Too many failed sign-ins from this address');
    }
    const bearer = await app.inject({ method: 'GET', url: '/ui', remoteAddress: '10.0.0.7', headers: { authorization: 'Bearer read-token' } });
    expect(bearer.statusCode).toBe(429);
    // Another address is not held back.
    expect((await login('read-token', '10.0.0.8')).statusCode).toBe(303);
    t.now += 15 * 60_000;
    expect((await login('read-token')).statusCode).toBe(303);
  });

  it('a session signed in before the limit keeps working while its address is held back', async () => {
    const t = { now: 1_000_000 };
    app = Fastify();
    registerUi(app, { source, now: () => t.now, signInLimits: { failures: 1 }, authorize: (tok) => (tok === 'read-token' ? 'read' : undefined) });
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const ok = await app.inject({ method: 'POST', url: '/ui/login', remoteAddress: '10.0.0.7', headers: form, payload: 'token=read-token' });
    const cookie = String(ok.headers['set-cookie']).split(';')[0];
    expect((await app.inject({ method: 'POST', url: '/ui/login', remoteAddress: '10.0.0.7', headers: form, payload: 'token=x' })).statusCode).toBe(401);
    expect((await app.inject({ method: 'POST', url: '/ui/login', remoteAddress: '10.0.0.7', headers: form, payload: 'token=y' })).statusCode).toBe(429);
    expect((await app.inject({ method: 'GET', url: '/ui', remoteAddress: '10.0.0.7', headers: { cookie } })).statusCode).toBe(200);
  });

  it('marks the cookie Secure over HTTPS', async () => {
    start(true);
    const ok = await app.inject({ method: 'POST', url: '/ui/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'token=admin-token' });
    expect(String(ok.headers['set-cookie'])).toContain('; Secure');
  });

  it.each([
    ['/ui/fleets/web', 200, 'data-address="web/0"'],
    ['/ui/fleets/nope', 404, 'no live member of fleet nope'],
    ['/ui/vms/web/0', 200, 'Requested'],
    ['/ui/vms/web/7', 404, 'No live VM at web/7'],
    ['/ui/vms/web/x', 404, 'No live VM at web/x'],
    ['/ui/plans/p-1', 200, 'Requested → BeingCreated'],
    ['/ui/plans/p-9', 404, 'No apply with plan id p-9'],
    // It was looked for among the newest 1000 applies only: an older one was "No apply with plan id".
    ['/ui/plans/p-old', 200, 'Requested → BeingCreated'],
    ['/ui/locks', 200, 'No fleet is locked'],
    ['/ui/drift', 200, 'refresh: miami reports PoweredOff'],
    ['/ui/nowhere', 404, 'No page at /ui/nowhere'],
    ['/ui/lifecycle', 200, '<svg'],
  ])('GET %s -> %i', async (url, status, text) => {
    start();
    const res = await app.inject({ method: 'GET', url, headers: { authorization: 'Bearer read-token' } });
    expect(res.statusCode).toBe(status);
    expect(res.body).toContain(text);
  });

  // Found by review: a page asked for with another method was "No page at /ui/fleets/web" (404), a page that exists.
  it('offers no way to write: another method than GET or HEAD on a page is 405 with Allow, on a page saying so', async () => {
    start();
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const) {
      for (const url of ['/ui/fleets/web', '/ui', '/ui/locks', '/ui/vms/web/0', '/ui/plans/p-1?page=2']) {
        const res = await app.inject({ method, url, headers: { authorization: 'Bearer admin-token' } });
        expect(res.statusCode, `${method} ${url}`).toBe(405);
        expect(res.headers.allow).toBe('GET, HEAD');
        expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
        expect(res.headers['content-security-policy']).toContain("default-src 'none'");
        expect(res.body).toContain(`${url.split('?')[0]} is a page to read: it answers GET (and HEAD), not ${method}`);
      }
    }
    // No page there with any method: still 404.
    expect((await app.inject({ method: 'POST', url: '/ui/nowhere', headers: { authorization: 'Bearer admin-token' } })).statusCode).toBe(404);
    const head = await app.inject({ method: 'HEAD', url: '/ui/locks', headers: { authorization: 'Bearer admin-token' } });
    expect(head.statusCode).toBe(200);
    expect(head.body).toBe('');
  });
});

// Found by review: an address the router refuses before any route (a percent-escape that is no UTF-8, as a link
// mangled by a mail client has) was Fastify's JSON body in `fleet ui` (the browser showed {"statusCode":400,...}).
describe('an address the router refuses, on an app serving the dashboard alone (fleet ui)', () => {
  it.each(['/ui/vms/%ED%A0%80/0', '/ui/fleets/%E0%A4%A', '/ui/plans/%C0%AF'])('%s: 400 on a page saying so', async (url) => {
    app = Fastify({ frameworkErrors: uiFrameworkErrors(source.stack) });
    registerUi(app, { source, authorize: (t) => (t === 'read-token' ? 'read' : undefined) });
    const res = await app.inject({ method: 'GET', url, headers: { authorization: 'Bearer read-token' } });
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    expect(res.body).toContain('The address is not one the dashboard can read');
    expect(res.body).toContain('is not a valid url component');
  });
});

// Found by review: the dashboard answered whatever host a request named. A page of another site whose name was made to
// resolve to 127.0.0.1 (DNS rebinding) is same-origin with itself: it could read the sign-in form and the stack's name,
// and post wrong tokens, each counted against 127.0.0.1, the person's own address, until their own sign-in was 429.
describe('a dashboard listening on loopback (loopbackHosts)', () => {
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  it.each([
    ['localhost:7402', true],
    ['localhost', true],
    ['LOCALHOST:7402', true],
    ['localhost.:7402', true],
    ['127.0.0.1:7402', true],
    ['127.0.0.2', true],
    ['[::1]:7402', true],
    ['10.1.2.3:7402', true],
    ['fleet.internal:7402', true],
    ['evil.example:7402', false],
    ['evil.example', false],
    ['localhost.evil.example:7402', false],
    ['127.0.0.1.nip.io:7402', false],
    ['evil.localhost:7402', false],
    ['localhost@evil.example', false],
    ['evil.example/127.0.0.1', false],
  ])('Host %j -> answered: %s', async (host, answered) => {
    start(false, { loopbackHosts: ['fleet.internal'] });
    const res = await app.inject({ method: 'GET', url: '/ui/login', headers: { host } });
    expect(res.statusCode).toBe(answered ? 200 : 421);
    if (!answered) {
      expect(res.body).toContain('answers only to localhost, an IP address or fleet.internal');
      expect(res.body).toContain('FLEET_UI_HOSTS');
      // Not even the stack's name goes to such a page: a line of text, no page.
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(res.body).not.toContain('<');
      expect(res.headers['cache-control']).toBe('no-store');
    }
  });

  it('counts no sign-in posted through another host name, so the person at 127.0.0.1 is not locked out', async () => {
    start(false, { loopbackHosts: [], signInLimits: { failures: 2 } });
    for (let i = 0; i < 5; i++) {
      const res = await app.inject({ method: 'POST', url: '/ui/login', remoteAddress: '127.0.0.1', headers: { ...form, host: 'rebind.evil.example:7402', 'sec-fetch-site': 'same-origin', origin: 'http://rebind.evil.example:7402' }, payload: `token=guess-${i}` });
      expect(res.statusCode).toBe(421);
      expect(res.headers['set-cookie']).toBeUndefined();
    }
    expect((await app.inject({ method: 'GET', url: '/ui', remoteAddress: '127.0.0.1', headers: { host: 'rebind.evil.example:7402', authorization: 'Bearer read-token' } })).statusCode).toBe(421);
    const mine = await app.inject({ method: 'POST', url: '/ui/login', remoteAddress: '127.0.0.1', headers: { ...form, host: '127.0.0.1:7402' }, payload: 'token=read-token' });
    expect(mine.statusCode).toBe(303);
  });

  it('answers any host when not on loopback (TLS, or behind a proxy whose public name is not known here)', async () => {
    start();
    expect((await app.inject({ method: 'GET', url: '/ui/login', headers: { host: 'fleet.example.com' } })).statusCode).toBe(200);
  });
});

// Found by QA: a fleet's page listed every member on one page (a 100 000-member fleet: 22 MB of HTML), and it and a VM's
// page read every VM of the stack to pick one fleet's. Now FLEET_PAGE_SIZE members a page, read for that fleet alone, and
// only that page of it (bounded-reads.test.ts, over a real record).
describe('a large fleet', () => {
  const big = Array.from({ length: 1201 }, (_, i): UiVm => ({ ...vm, id: `vm-big-${i}`, address: `big/${i}`, fleet: 'big', index: i }));
  const asked: (string | undefined)[] = [];
  const limits: number[] = [];
  const inner = paged([vm, ...big], []);
  const many: UiSource = {
    ...source,
    ...inner,
    fleetMembers: async (fleet, offset, limit) => {
      asked.push(fleet);
      limits.push(limit);
      return inner.fleetMembers(fleet, offset, limit);
    },
    vm: async (fleet, index) => {
      asked.push(fleet);
      return inner.vm(fleet, index);
    },
  };
  const get = (url: string) => app.inject({ method: 'GET', url, headers: { authorization: 'Bearer read-token' } });
  const rows = (body: string) => [...body.matchAll(/<tr data-address="big\/(\d+)">/g)].map((m) => Number(m[1]));

  it('is shown a page at a time, with links to the pages before and after', async () => {
    app = Fastify();
    registerUi(app, { source: many, authorize: () => 'read' });
    asked.length = 0;
    const first = await get('/ui/fleets/big');
    expect(first.statusCode).toBe(200);
    expect(rows(first.body)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(first.body).toContain('members 1–500 of 1201');
    expect(first.body).toContain('href="/ui/fleets/big?page=2"');
    expect(first.body).not.toContain('page=0');
    const last = await get('/ui/fleets/big?page=3');
    expect(rows(last.body)).toEqual(Array.from({ length: 201 }, (_, i) => 1000 + i));
    expect(last.body).toContain('members 1001–1201 of 1201');
    expect(last.body).toContain('href="/ui/fleets/big?page=2"');
    expect(last.body).not.toContain('page=4');
    for (const page of ['4', '0', 'x', '-1', '1.5']) {
      const res = await get(`/ui/fleets/big?page=${page}`);
      expect(res.statusCode, page).toBe(404);
      expect(res.body).toContain('has no page');
    }
    expect((await get('/ui/vms/big/1200')).statusCode).toBe(200);
    // Every read was of the one fleet, a page at most.
    expect(asked).toEqual(Array(asked.length).fill('big'));
    expect(Math.max(...limits)).toBe(500);
  });
});

// Found by QA: an apply's page listed its whole journal (two rows or more per step: an apply of 100 000 VMs has over a
// million) and every failure on one page. Now JOURNAL_PAGE_SIZE rows a page, and the first MAX_FAILURES_LISTED failures.
describe('a large apply', () => {
  const journal = Array.from({ length: 2500 }, (_, i) => ({ address: `web/${i}`, seq: 0, from: 'PoweredOn', to: 'Starting', status: i % 10 === 0 && i < 1500 ? 'failed' : 'done', detail: `row ${i}`, at: 't' }));
  const get = (url: string) => app.inject({ method: 'GET', url, headers: { authorization: 'Bearer read-token' } });
  const rows = (body: string) => [...body.matchAll(/<td>row (\d+)<\/td><\/tr>/g)].map((m) => Number(m[1]));
  const failures = (body: string) => [...body.matchAll(/<li>web\/\d+: PoweredOn → Starting: row (\d+)<\/li>/g)].map((m) => Number(m[1]));

  it('shows its journal a page at a time and its first failures', async () => {
    app = Fastify();
    registerUi(app, { source: { ...source, ...paged([], journal) }, authorize: () => 'read' });
    const first = await get('/ui/plans/p-1');
    expect(first.statusCode).toBe(200);
    expect(rows(first.body)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(first.body).toContain('steps 1–1000 of 2500');
    expect(first.body).toMatch(/href="\/ui\/plans\/p-1\?page=2&amp;after=1000\.[0-9a-f]{16}"/);
    // 150 failures: the first 100 listed, the rest counted.
    expect(failures(first.body)).toEqual(Array.from({ length: 100 }, (_, i) => i * 10));
    expect(first.body).toContain('50 more failed steps');
    const last = await get('/ui/plans/p-1?page=3');
    expect(rows(last.body)).toEqual(Array.from({ length: 500 }, (_, i) => 2000 + i));
    expect(last.body).not.toContain('page=4');
    for (const page of ['4', '0', 'x']) expect((await get(`/ui/plans/p-1?page=${page}`)).statusCode, page).toBe(404);
  });

  // Found by review: a page's rows were read from an offset, so page N read and skipped the (N - 1) x 1000 rows before
  // it. The pager's links now say where their page starts (after the last row shown, before the first), and a page
  // asked for that way is read from there; a page number alone still works.
  it('links each page to the next and the one before by where they start, and reads them from there', async () => {
    app = Fastify();
    const asked: unknown[] = [];
    const { planJournal } = paged([], journal);
    registerUi(app, { source: { ...source, planJournal: async (id, from, limit, failures) => (asked.push(from), planJournal(id, from, limit, failures)) }, authorize: () => 'read' });
    // The link to a page: its number, and where it starts as a cursor the dashboard signed (`<row id>.<mac>`).
    const link = (body: string, page: number, dir: 'after' | 'before', id: number) => {
      const m = new RegExp(`href="(/ui/plans/p-1\\?page=${page}&amp;${dir}=${id}\\.[0-9a-f]{16})"`).exec(body);
      expect(m, `link to page ${page} ${dir} ${id}`).not.toBeNull();
      return m![1].replaceAll('&amp;', '&');
    };
    const first = await get('/ui/plans/p-1');
    const second = await get(link(first.body, 2, 'after', 1000));
    expect(rows(second.body)).toEqual(Array.from({ length: 1000 }, (_, i) => 1000 + i));
    expect(second.body).toContain('steps 1001–2000 of 2500 (page 2 of 3)');
    // Back to page 1: its number only (it starts at the first row); on to page 3 from page 2's last row.
    expect(second.body).toContain('href="/ui/plans/p-1?page=1"');
    const third = await get(link(second.body, 3, 'after', 2000));
    expect(rows(third.body)).toEqual(Array.from({ length: 500 }, (_, i) => 2000 + i));
    const back = await get(link(third.body, 2, 'before', 2001));
    expect(rows(back.body)).toEqual(rows(second.body));
    expect(asked).toEqual([{ offset: 0 }, { after: '1000' }, { after: '2000' }, { before: '2001' }]);
    // A cursor that is no row id, or one the dashboard did not sign, is not taken (the page number is).
    expect(rows((await get('/ui/plans/p-1?page=2&after=x1')).body)).toEqual(rows(second.body));
    expect(asked.at(-1)).toEqual({ offset: 1000 });
    expect(rows((await get('/ui/plans/p-1?page=2&after=1000')).body)).toEqual(rows(second.body));
    expect(asked.at(-1)).toEqual({ offset: 1000 });
  });
});

// Found by QA: the journal's pager links carry a page number and a cursor (where the page starts), and the page
// trusted both: a link whose page number or cursor was edited by hand showed the rows after the cursor labelled with
// the page number asked (`page=3&after=1000`: rows 1001-2000 as "steps 2001–3000, page 3"), and a cursor past the
// end an empty page, with no way back. Over generated hand-edited links, a page's label now always says the rows it
// shows, a page is never empty, and a page the journal does not have says so with a link to its first page.
describe('hand-edited journal links', () => {
  const get = (url: string) => app.inject({ method: 'GET', url, headers: { authorization: 'Bearer read-token' } });
  const rows = (body: string) => [...body.matchAll(/<td>row (\d+)<\/td><\/tr>/g)].map((m) => Number(m[1]));
  const links = (body: string) => [...body.matchAll(/href="(\/ui\/plans\/p-1\?[^"]*)"/g)].map((m) => m[1].replaceAll('&amp;', '&'));

  it('label what they show, are never empty, and a page there is not links to the first', { timeout: 60_000 }, async () => {
    const next = seededRandom(5).next;
    const int = (n: number) => Math.floor(next() * n);
    for (const total of [1, 999, 1000, 2500, 4000]) {
      const journal = Array.from({ length: total }, (_, i) => ({ address: `web/${i}`, seq: 0, from: 'PoweredOn', to: 'Starting', status: 'done', detail: `row ${i}`, at: 't' }));
      app = Fastify();
      registerUi(app, { source: { ...source, ...paged([], journal) }, authorize: () => 'read' });
      const pages = Math.max(1, Math.ceil(total / 1000));
      // The links the pages give, crawled from the first.
      const given = new Set<string>(['/ui/plans/p-1']);
      for (const url of [...given]) for (const l of links((await get(url)).body)) given.add(l);
      for (let i = 1; i <= pages; i++) given.add(`/ui/plans/p-1?page=${i}`);
      const pageValues = () => [String(1 + int(pages + 2)), '0', '-1', 'x', '1e3', '99999999999', String(pages), String(pages + 1)][int(8)];
      const idValues = () => [String(int(total + 2)), String(total + 1 + int(5000)), '0', '', 'x1', '1.2', '999999999999999999999', String(1000 * (1 + int(pages)))][int(8)];
      const urls = [...given];
      for (let k = 0; k < 150; k++) {
        const base = [...given][int(given.size)];
        const q = new URLSearchParams(base.split('?')[1] ?? '');
        const edit = int(5);
        if (edit === 0) q.set('page', pageValues());
        if (edit === 1) q.set(next() < 0.5 ? 'after' : 'before', idValues());
        if (edit === 2) {
          q.set('page', pageValues());
          q.set(next() < 0.5 ? 'after' : 'before', idValues());
        }
        if (edit === 3) {
          // A real cursor, its number edited (or its signature, when it has one), and the page number kept.
          const key = q.has('after') ? 'after' : q.has('before') ? 'before' : 'after';
          const v = q.get(key) ?? '1000';
          q.set(key, v.replace(/^\d+/, String(int(total + 2))));
        }
        if (edit === 4) q.delete('page');
        urls.push(`/ui/plans/p-1?${q.toString()}`);
      }
      for (const url of urls) {
        const r = await get(url);
        const label = `${total} rows: ${url}`;
        expect([200, 404], label).toContain(r.statusCode);
        if (r.statusCode === 404) {
          expect(r.body, label).toMatch(/href="\/ui\/plans\/p-1(\?page=1)?"/);
          continue;
        }
        const shown = rows(r.body);
        expect(shown.length, label).toBeGreaterThan(0);
        const said = /steps (\d+)–(\d+) of (\d+) \(page (\d+) of (\d+)\)/.exec(r.body);
        if (pages === 1) {
          expect(said, label).toBeNull();
          expect(shown, label).toEqual(journal.map((_, i) => i));
          continue;
        }
        expect(said, label).not.toBeNull();
        const [from, to, of, n, of2] = said!.slice(1).map(Number);
        expect([of, of2], label).toEqual([total, pages]);
        expect(shown, label).toEqual(Array.from({ length: to - from + 1 }, (_, i) => from - 1 + i));
        expect(from - 1, label).toBe((n - 1) * 1000);
        expect(to, label).toBe(Math.min(total, n * 1000));
      }
    }
  });
});

// Found by QA: `fleet ui` runs Fastify without a logger, yet its 500 page said "the service log has the reason": the
// reason went nowhere. The dashboard now writes it where it was told to (fleet ui: its standard error), one line, no secret.
describe('a failure that is not the record being busy or unreachable', () => {
  const fail = async (): Promise<never> => {
    throw new TypeError('connect to postgres://fleet:s3cret@db:5432/fleet?sslpassword=k3y failed\n    at read (record.ts:1:1)');
  };
  const failing: UiSource = { ...source, overview: fail, fleetMembers: fail };

  it('is written as one line, without secrets, to the error log the dashboard was given, and the page says where', async () => {
    const lines: string[] = [];
    app = Fastify({ logger: false });
    registerUi(app, { source: failing, authorize: () => 'read', errorLog: { write: (l) => lines.push(l), where: 'the standard error of fleet ui' } });
    const res = await app.inject({ method: 'GET', url: '/ui/fleets/web?x=1', headers: { authorization: 'Bearer read-token' } });
    expect(res.statusCode).toBe(500);
    expect(res.body).toContain('The dashboard failed to read the record; the standard error of fleet ui has the reason.');
    expect(lines).toEqual(['GET /ui/fleets/web failed: TypeError: connect to postgres://fleet:***@db:5432/fleet?sslpassword=*** failed']);
    expect(res.body).not.toContain('s3cret');
  });

  it('goes to the service log when no error log is given (the authority), and the page says so', async () => {
    const logged: string[] = [];
    app = Fastify({ logger: { level: 'error', stream: { write: (l: string) => void logged.push(l) } } });
    registerUi(app, { source: failing, authorize: () => 'read' });
    const res = await app.inject({ method: 'GET', url: '/ui', headers: { authorization: 'Bearer read-token' } });
    expect(res.statusCode).toBe(500);
    expect(res.body).toContain('the service log has the reason.');
    expect(logged.join('')).toContain('connect to postgres');
  });
});

// Found by review: the overview listed every fleet of the stack in one table: bench:scale's stack of 5 000 fleets over 10
// data centers made a 5.9 MB page, built on the authority's event loop (which also answers its DMZ clients) at each load.
// Now OVERVIEW_PAGE_SIZE fleets a page in name order, the same pager and 404s as a fleet's pages, with the stack-wide
// totals (VMs, fleets, data centers) on every page and the page's fleets' states.
describe('a stack of many fleets', () => {
  const name = (i: number) => `f${String(i).padStart(3, '0')}`;
  // Two data centers, counts handed over in no particular order (reversed).
  const counts = Array.from({ length: 450 }, (_, i) => [
    { fleet: name(i), dataCenter: 'miami', state: 'Running', vms: 2 },
    { fleet: name(i), dataCenter: 'richmond', state: i % 3 === 0 ? 'BootFailed' : 'Running', vms: 1 },
  ]).flat().reverse();
  const get = (url: string) => app.inject({ method: 'GET', url, headers: { authorization: 'Bearer read-token' } });
  const rows = (body: string) => [...body.matchAll(/<tr data-fleet="(f\d+)">/g)].map((m) => m[1]);
  const names = (from: number, n: number) => Array.from({ length: n }, (_, i) => name(from + i));

  it('is listed 200 fleets a page in name order, with the totals of the whole stack on each page', async () => {
    app = Fastify();
    registerUi(app, { source: { ...source, overview: async (offset, limit) => overviewOf(counts, offset, limit) }, authorize: () => 'read' });
    const first = await get('/ui');
    expect(first.statusCode).toBe(200);
    expect(rows(first.body)).toEqual(names(0, 200));
    expect(first.body).toContain('fleets 1–200 of 450 (page 1 of 3)');
    expect(first.body).toContain('href="/ui?page=2"');
    expect(first.body).not.toContain('page=0');
    expect((await get('/ui?page=1')).body).toBe(first.body);
    const second = await get('/ui?page=2');
    expect(rows(second.body)).toEqual(names(200, 200));
    expect(second.body).toContain('href="/ui?page=1"');
    expect(second.body).toContain('href="/ui?page=3"');
    const last = await get('/ui?page=3');
    expect(last.statusCode).toBe(200);
    expect(rows(last.body)).toEqual(names(400, 50));
    expect(last.body).toContain('fleets 401–450 of 450 (page 3 of 3)');
    expect(last.body).not.toContain('page=4');
    // The states are the page's fleets' (counting the stack's per state read every VM of it).
    const states: [string, number, number, number][] = [[first.body, 200, 67, 533], [second.body, 200, 67, 533], [last.body, 50, 16, 134]];
    for (const [body, fleets, failed, running] of states) {
      expect(body).toContain(`; the ${fleets} fleets of this page: <span class="state BootFailed">BootFailed</span> ${failed} <span class="state Running">Running</span> ${running} `);
    }
    for (const body of [first.body, second.body, last.body]) {
      // Stack-wide: every fleet, VM and data center, both data centers as columns.
      expect(body).toContain('1350 VMs in 450 fleets over 2 data centers; ');
      expect(body).toContain('<th>miami</th><th>richmond</th>');
      // The locks, applies and drift below the table too.
      expect(body).toContain('<h2>Recent applies</h2>');
    }
    for (const page of ['4', '0', 'x', '-1', '1.5', '']) {
      const res = await get(`/ui?page=${page}`);
      expect(res.statusCode, page).toBe(404);
      expect(res.body).toContain('has no page');
      expect(res.body).toContain('it has 3 (200 fleets each)');
    }
  });

  it('a stack with a page of fleets or fewer: one page, no pager, no page 2', async () => {
    app = Fastify();
    registerUi(app, { source: { ...source, overview: async (offset, limit) => overviewOf(counts.filter((c) => c.fleet < name(200)), offset, limit) }, authorize: () => 'read' });
    const only = await get('/ui');
    expect(rows(only.body)).toEqual(names(0, 200));
    expect(only.body).not.toContain('data-testid="pager"');
    expect((await get('/ui?page=2')).statusCode).toBe(404);
  });
});
