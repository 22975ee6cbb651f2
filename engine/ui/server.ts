// The read-only dashboard's routes, under /ui, on any Fastify app: the
// authority's (`fleet serve orchestrator`) or the one `fleet ui` starts for
// the embedded default.
//
// Who may look: a person signs in with an admin or read-only token once
// (POST /ui/login); the answer is a session cookie (named for the port the
// browser sees: sessionCookieName) holding only an expiry,
// the role and an HMAC of both and of a digest of the role's current token
// (a rotated token ends its sessions) under a key this process holds, never
// the token (HttpOnly, SameSite=Strict, Path=/ui, Secure over HTTPS). Scripts
// may send the token as `Authorization: Bearer` instead. Every page is a GET
// that reads; nothing here writes to the record.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { parse as parseQuery } from 'node:querystring';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FleetError } from '../diags/index.ts';
import { WireError } from '../../protocol/errors.ts';
import { redactUrl } from '../transport/tokens.ts';
import { lifecycleSvg } from './diagram.ts';
import type { Html } from './html.ts';
import { SignInLimiter, type SignInLimits } from './limit.ts';
import { FLEET_PAGE_SIZE, JOURNAL_PAGE_SIZE, LOCKS_LISTED, MAX_FAILURES_LISTED, OVERVIEW_LOCKS, OVERVIEW_PAGE_SIZE, driftPage, errorPage, methodPage, fleetPage, fleetPages, journalPages, lifecyclePage, locksPage, loginPage, notFoundPage, overviewPage, overviewPages, planFirstPage, planPage, plansPage, vmPage } from './pages.ts';
import type { UiSource } from './source.ts';

export type UiRole = 'admin' | 'read';

export interface UiOptions {
  source: UiSource;
  /** The role a token grants, or undefined when it grants none. Compare in constant time. */
  authorize(token: string): UiRole | undefined;
  /** Signs session cookies; a random key per process when absent (sessions end with the process). */
  sessionKey?: Buffer;
  /** Session length; default 8 hours. */
  sessionMs?: number;
  /** Served over HTTPS: the cookie is marked Secure. */
  secure?: boolean;
  /**
   * What a session of each role is bound to: a digest of the token that
   * role signs in with now (uiSessionBinding), or undefined when no token
   * grants it. A session signed while the role had another token (rotated
   * since) or none is refused, so rotating a leaked token ends its sessions
   * too, even where the session key outlives the process (the authority's).
   */
  binding?: (role: UiRole) => string | undefined;
  /**
   * Where the reason of an unexpected failure (a 500 page) goes: one line
   * (method, path, error name and message, secrets in URLs redacted) given
   * to `write`, and what the page calls that place. `fleet ui`, which has no
   * logger, writes to its standard error. Absent: the Fastify logger (the
   * authority's service log), and the page says "the service log".
   */
  errorLog?: { write(line: string): void; where: string };
  /**
   * Failed sign-ins an address may make (the form, or a wrong bearer token on
   * a page) before it is refused with 429 for a while (limit.ts); default 10
   * in 15 minutes.
   */
  signInLimits?: SignInLimits;
  /** The clock (tests); Date.now when absent. */
  now?: () => number;
  /**
   * Set when the dashboard listens on loopback only: the host names it answers to besides `localhost` and IP
   * addresses (FLEET_UI_HOSTS). A request whose Host header names another is refused (421) before anything is read
   * or counted: a page of another site whose name was made to resolve to 127.0.0.1 (DNS rebinding) is same-origin
   * with itself, so it could read what the dashboard answers without a session and try tokens, each failure
   * counted against 127.0.0.1, the person's own address (locked out for 15 minutes after 10). An IP address in
   * Host is no such page's: a rebinding needs a name. Absent: any Host (a TLS listener, whose certificate names its
   * host, or one behind a proxy, whose public name is not known here).
   */
  loopbackHosts?: readonly string[];
}

/**
 * Whether a request's Host header names this loopback dashboard (UiOptions.loopbackHosts): `localhost`, an IP address
 * or one of `names`. A request without Host (HTTP/1.0: not a browser's) is taken.
 */
export function loopbackHostAllowed(host: string | undefined, names: readonly string[]): boolean {
  if (host === undefined) return true;
  if (!/^[^\s/?#@\\]+$/.test(host)) return false;
  let name: string;
  try {
    name = new URL(`http://${host}`).hostname;
  } catch {
    return false;
  }
  // A fully qualified name (`localhost.`) is the same name.
  if (name.endsWith('.')) name = name.slice(0, -1);
  const bare = name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name;
  return name === 'localhost' || isIP(bare) !== 0 || names.some((n) => n.toLowerCase() === name);
}

/** An error as one line for a log: name and message, line breaks folded, URLs' secrets redacted (redactUrl); no stack. */
export function errorLine(err: unknown): string {
  const e = err instanceof Error ? err : new Error(String(err));
  const text = `${e.name}: ${e.message.split('\n')[0]}`;
  return text.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s'"<>]+/gi, (u) => redactUrl(u));
}

/**
 * The session cookie's name for a request: `fleet_ui_<port>` for the port its Host names (the one the browser
 * sees, behind a proxy too), `fleet_ui` for a Host without one. Browsers keep cookies by host, not by port (RFC 6265
 * 8.5): under one name, signing in to a second dashboard on the same host (`fleet ui` for another stack, the
 * authority's) replaced the first one's session. The name keeps them apart; it does not keep the cookie from other
 * services on the host (docs/dashboard.md, "Signing in").
 */
export function sessionCookieName(host: string | undefined): string {
  const port = host === undefined ? undefined : /:(\d{1,5})$/.exec(host)?.[1];
  return port === undefined ? 'fleet_ui' : `fleet_ui_${port}`;
}
const CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/** The GET pages' methods, for a 405's Allow (Fastify answers HEAD for every GET route). */
const PAGE_METHODS = 'GET, HEAD';

function sign(key: Buffer, payload: string, binding: string): string {
  return createHmac('sha256', key).update(`ui-session\0${payload}\0${binding}`).digest('base64url');
}

/** A session binding (UiOptions.binding) over the tokens of each role: a digest of the role's token, never the token. */
export function uiSessionBinding(tokens: { adminToken?: string; readToken?: string }): (role: UiRole) => string | undefined {
  const digest = (t: string | undefined) => (t ? createHash('sha256').update(`ui-session-binding\0${t}`).digest('base64url') : undefined);
  const by: Record<UiRole, string | undefined> = { admin: digest(tokens.adminToken), read: digest(tokens.readToken) };
  return (role) => by[role];
}

/**
 * Whether a POST was sent by a page of another site (a form there posting
 * here: login CSRF, or signing a person out). The browser says where the
 * request comes from in Sec-Fetch-Site, which holds behind a proxy that
 * rewrites Host; a browser too old to send it still sends Origin on a POST.
 * A request with neither (a script, curl) is not a browser's cross-site form.
 */
function fromAnotherSite(req: FastifyRequest): boolean {
  const site = req.headers['sec-fetch-site'];
  if (typeof site === 'string') return site !== 'same-origin' && site !== 'none';
  const origin = req.headers.origin;
  if (typeof origin !== 'string') return false;
  try {
    if (origin === 'null') return true;
    const from = new URL(origin);
    // Host read with the origin's scheme, so a default port written in one and left out in the other compares equal.
    return from.host !== new URL(`${from.protocol}//${req.headers.host ?? ''}`).host;
  } catch {
    return true;
  }
}

/** A page's `?page=N` (from 1; absent: 1), or undefined for one no list has (not a number, 0). Whether the list has that many pages is known once it is read. */
function pageAsked(asked: unknown): number | undefined {
  if (asked === undefined) return 1;
  return typeof asked === 'string' && /^[1-9]\d{0,8}$/.test(asked) ? Number(asked) : undefined;
}

/**
 * A journal pager link's cursor: the id of the row its page starts after (before), bound by a MAC to the apply, that
 * page's number and the direction, as `<id>.<16 hex>`. A link whose page number or cursor was edited by hand fails it
 * and is read by its page number alone (slower, never mislabelled: the label is the page number the rows are read by).
 */
function journalCursor(key: Buffer, plan: string, page: number, dir: 'after' | 'before', id: string): string {
  return `${id}.${createHmac('sha256', key).update(`ui-cursor\0${plan}\0${page}\0${dir}\0${id}`).digest('hex').slice(0, 16)}`;
}

/** The row id of a cursor the pager made for this apply, page and direction; undefined for any other (edited, garbage, another process's key). */
function cursorId(key: Buffer, v: unknown, plan: string, page: number, dir: 'after' | 'before'): string | undefined {
  const m = typeof v === 'string' ? /^(\d{1,18})\.[0-9a-f]{16}$/.exec(v) : null;
  if (!m) return undefined;
  const want = Buffer.from(journalCursor(key, plan, page, dir, m[1]));
  const got = Buffer.from(v as string);
  return want.length === got.length && timingSafeEqual(want, got) ? m[1] : undefined;
}

function cookieOf(req: FastifyRequest): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  const name = sessionCookieName(req.headers.host);
  for (const part of header.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

/**
 * Fastify's `frameworkErrors` for an app that serves only the dashboard (`fleet ui`): the router's own refusals of a
 * URL, before any route or hook (a percent-escape that is no UTF-8, `/ui/vms/%ED%A0%80/0`; a path segment over its
 * length), answered with their 4xx on a page, as every other page, instead of Fastify's JSON. Nothing is read.
 */
export function uiFrameworkErrors(stack: string) {
  return (err: Error & { statusCode?: number }, _req: FastifyRequest, reply: FastifyReply): void => {
    const status = err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400;
    void securePage(reply, errorPage(stack, `The address is not one the dashboard can read: ${err.message}. Follow a link from the fleets instead.`), status);
  };
}

/** A page with the dashboard's headers: no store, no script, no frame, no sniffing, no referrer. */
function securePage(reply: FastifyReply, body: Html, status = 200) {
  return reply
    .code(status)
    .header('content-type', 'text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('content-security-policy', CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    // frame-ancestors' older form, for browsers that do not read it from the policy.
    .header('x-frame-options', 'DENY')
    .send(body.text);
}

export function registerUi(app: FastifyInstance, o: UiOptions): void {
  const key = o.sessionKey ?? randomBytes(32);
  const sessionMs = o.sessionMs ?? 8 * 3_600_000;
  const src = o.source;
  const now = o.now ?? Date.now;
  const limiter = new SignInLimiter(o.signInLimits, now);

  /** A token presented to sign in (the form, or a bearer on a page): its role, each failure counted against the caller's address. */
  const tryToken = (req: FastifyRequest, token: string): UiRole | undefined => {
    const role = token !== '' ? o.authorize(token) : undefined;
    if (role) limiter.succeeded(req.ip);
    else limiter.failed(req.ip);
    return role;
  };
  /** An address past its failed sign-ins is answered 429 (Retry-After) on a page before any token of it is looked at. */
  const heldBack = (req: FastifyRequest, reply: FastifyReply) => {
    const wait = limiter.waitMs(req.ip);
    if (wait <= 0) return undefined;
    const minutes = Math.max(1, Math.ceil(wait / 60_000));
    return page(
      reply.header('retry-after', String(Math.ceil(wait / 1000))),
      errorPage(src.stack, `Too many failed sign-ins from this address; try again in ${minutes} minute${minutes === 1 ? '' : 's'}. A session already signed in is not affected.`),
      429,
    );
  };

  const session = (req: FastifyRequest): UiRole | undefined => {
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ')) return tryToken(req, auth.slice(7));
    const c = cookieOf(req);
    if (!c) return undefined;
    const [expires, role, mac] = c.split('.');
    if (!expires || !mac || (role !== 'admin' && role !== 'read')) return undefined;
    const bound = o.binding ? o.binding(role) : '';
    if (bound === undefined) return undefined;
    const want = Buffer.from(sign(key, `${expires}.${role}`, bound));
    const got = Buffer.from(mac);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return undefined;
    return Number(expires) > now() ? role : undefined;
  };

  // The pages have no script and load nothing: the policy says so to the browser too, so even markup that slipped past escaping could run nothing and fetch nothing.
  const page = securePage;

  app.register(
    async (ui) => {
      ui.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_req, body, done) => {
        done(null, parseQuery(body as string));
      });
      // Every page but the sign-in form and signing out needs a session; those need none. No POST from another site's page is taken.
      ui.addHook('onRequest', async (req, reply) => {
        // First: a page reached through a name that is not this loopback dashboard's (DNS rebinding) gets nothing, not even the stack's name.
        if (o.loopbackHosts && !loopbackHostAllowed(req.headers.host, o.loopbackHosts)) {
          return reply
            .code(421)
            .header('content-type', 'text/plain; charset=utf-8')
            .header('cache-control', 'no-store')
            .header('x-content-type-options', 'nosniff')
            .send(
              `This dashboard listens on loopback and answers only to localhost, an IP address${o.loopbackHosts.length > 0 ? ` or ${o.loopbackHosts.join(', ')}` : ''}, not to the host this request named: a page of another site whose name resolves to this machine is refused (DNS rebinding). Open it at http://localhost:PORT/ui or http://127.0.0.1:PORT/ui; a proxy that passes on another host name: add that name to FLEET_UI_HOSTS.\n`,
            );
        }
        if (req.method === 'POST' && fromAnotherSite(req)) {
          return page(reply, errorPage(src.stack, 'A sign-in or sign-out sent from a page of another site is refused; sign in from this dashboard\'s own page.'), 403);
        }
        const path = req.url.split('?')[0];
        if (path === '/ui/logout') return;
        if (path === '/ui/login') {
          if (req.method === 'POST') return heldBack(req, reply);
          return;
        }
        if (req.headers.authorization?.startsWith('Bearer ')) {
          const refused = heldBack(req, reply);
          if (refused) return refused;
        }
        if (!session(req)) {
          // A script's wrong token: the services' error body (as protocol/http.ts errorAnswer makes it), its code from the wire registry.
          if (req.headers.authorization) {
            const e = new WireError('unauthorized', 'the bearer token grants no access to the dashboard: send the admin or the read-only token');
            return reply.code(e.statusCode).header('cache-control', 'no-store').header('www-authenticate', 'Bearer').send({ error: { code: e.code, message: e.message } });
          }
          return reply.redirect('/ui/login', 303);
        }
      });

      // A record that cannot be read (busy, unreachable) is said on a page; anything else is ours, and its text stays in the log.
      ui.setErrorHandler((err, req, reply) => {
        if (err instanceof FleetError) {
          const d = err.diagnostics[0];
          return page(reply, errorPage(src.stack, `${d.summary}: ${d.detail}`), d.code === 'record.busy' || d.code === 'record.unreachable' ? 503 : 500);
        }
        // Fastify's own refusals of a request (a sign-in form over its size, a body that does not parse, a content type it has no parser for) are the caller's: their status, on a page.
        const status = (err as { statusCode?: number }).statusCode;
        if (status !== undefined && status >= 400 && status < 500) return page(reply, errorPage(src.stack, `The request was refused: ${(err as Error).message}.`), status);
        if (o.errorLog) o.errorLog.write(`${req.method} ${req.url.split('?')[0]} failed: ${errorLine(err)}`);
        else req.log.error(err);
        return page(reply, errorPage(src.stack, `The dashboard failed to read the record; ${o.errorLog?.where ?? 'the service log'} has the reason.`), 500);
      });
      ui.setNotFoundHandler((req, reply) => {
        const path = req.url.split('?')[0];
        // A page asked for with a method it does not take (POST /ui/locks, OPTIONS): it exists; say which methods it takes.
        if (req.method !== 'GET' && req.method !== 'HEAD' && ui.findRoute({ method: 'GET', url: path })) {
          return page(reply.header('allow', PAGE_METHODS), methodPage(src.stack, `${path} is a page to read: it answers GET (and HEAD), not ${req.method}. Nothing here changes the record.`), 405);
        }
        return page(reply, notFoundPage(src.stack, `No page at ${path}.`), 404);
      });

      ui.get('/login', async (_req, reply) => page(reply, loginPage(src.stack, false)));
      ui.post('/login', async (req, reply) => {
        const token = (req.body as Record<string, unknown> | undefined)?.token;
        const role = typeof token === 'string' ? tryToken(req, token) : undefined;
        if (!role) return page(reply, loginPage(src.stack, true), 401);
        const expires = String(now() + sessionMs);
        const bound = o.binding ? o.binding(role) : '';
        if (bound === undefined) throw new Error(`bug: the ${role} role signed in but has no session binding`);
        const value = `${expires}.${role}.${sign(key, `${expires}.${role}`, bound)}`;
        reply.header('set-cookie', `${sessionCookieName(req.headers.host)}=${value}; Path=/ui; HttpOnly; SameSite=Strict${o.secure ? '; Secure' : ''}; Max-Age=${Math.floor(sessionMs / 1000)}`);
        return reply.redirect('/ui', 303);
      });

      // Clears the cookie in this browser (a copy of its value stays valid until it expires, or the role's token is rotated).
      ui.post('/logout', async (req, reply) => {
        reply.header('set-cookie', `${sessionCookieName(req.headers.host)}=; Path=/ui; HttpOnly; SameSite=Strict${o.secure ? '; Secure' : ''}; Max-Age=0`);
        return reply.redirect('/ui/login', 303);
      });

      ui.get<{ Querystring: { page?: unknown } }>('/', async (req, reply) => {
        // Only the page's fleets' counts are read (none for a page no list has), with the stack's totals, summed by the record.
        const asked = pageAsked(req.query.page);
        // The locks: the first OVERVIEW_LOCKS (and whether there are more), and the page's fleets' for their "(locked)".
        const [overview, locks, plans, drift] = await Promise.all([
          src.overview(((asked ?? 1) - 1) * OVERVIEW_PAGE_SIZE, asked ? OVERVIEW_PAGE_SIZE : 0),
          src.listLocks({ limit: OVERVIEW_LOCKS + 1 }),
          src.recentPlans(10),
          src.drift(10),
        ]);
        const pages = overviewPages(overview.fleets);
        const n = asked !== undefined && asked <= pages ? asked : undefined;
        if (n === undefined) return page(reply, notFoundPage(src.stack, `The overview has no page ${String(req.query.page)}: it has ${pages} (${OVERVIEW_PAGE_SIZE} fleets each).`), 404);
        const locked = await src.listLocks({ fleets: [...new Set(overview.counts.map((c) => c.fleet))] });
        return page(reply, overviewPage(src.stack, overview, locks, plans, drift, n, locked.map((l) => l.fleet)));
      });
      ui.get('/locks', async (_req, reply) => page(reply, locksPage(src.stack, await src.listLocks({ limit: LOCKS_LISTED + 1 }))));
      ui.get('/drift', async (_req, reply) => page(reply, driftPage(src.stack, await src.drift(100))));
      ui.get('/plans', async (_req, reply) => page(reply, plansPage(src.stack, await src.recentPlans(100))));
      ui.get('/lifecycle', async (_req, reply) => page(reply, lifecyclePage(src.stack, src.pack.name, lifecycleSvg(src.pack.lifecycle))));

      ui.get<{ Params: { fleet: string }; Querystring: { page?: unknown } }>('/fleets/:fleet', async (req, reply) => {
        const { fleet } = req.params;
        // Only the page asked for is read (none for a page no list has), with the fleet's count.
        const asked = pageAsked(req.query.page);
        const [{ total, members }, locks] = await Promise.all([src.fleetMembers(fleet, ((asked ?? 1) - 1) * FLEET_PAGE_SIZE, asked ? FLEET_PAGE_SIZE : 0), src.listLocks({ fleets: [fleet] })]);
        const lock = locks.find((l) => l.fleet === fleet);
        if (total === 0 && !lock) return page(reply, notFoundPage(src.stack, `The record has no live member of fleet ${fleet}.`), 404);
        const n = asked !== undefined && asked <= fleetPages(total) ? asked : undefined;
        if (n === undefined) return page(reply, notFoundPage(src.stack, `Fleet ${fleet} has no page ${String(req.query.page)}: it has ${fleetPages(total)} (${FLEET_PAGE_SIZE} members each).`), 404);
        return page(reply, fleetPage(src.stack, fleet, members, total, lock, n));
      });

      ui.get<{ Params: { fleet: string; index: string } }>('/vms/:fleet/:index', async (req, reply) => {
        // By fleet and index as the record holds them: a fleet name the address grammar would refuse still has its page.
        const index = /^\d+$/.test(req.params.index) ? Number(req.params.index) : undefined;
        const vm = index === undefined ? undefined : await src.vm(req.params.fleet, index);
        if (!vm) return page(reply, notFoundPage(src.stack, `No live VM at ${req.params.fleet}/${req.params.index}.`), 404);
        const [history, boots] = await Promise.all([src.history(vm.address, 200), src.bootAttempts(vm.id, 50)]);
        return page(reply, vmPage(src.stack, vm, history, boots));
      });

      ui.get<{ Params: { id: string }; Querystring: { page?: unknown; after?: unknown; before?: unknown } }>('/plans/:id', async (req, reply) => {
        const plan = await src.plan(req.params.id);
        if (!plan) return page(reply, notFoundPage(src.stack, `No apply with plan id ${req.params.id}.`), 404);
        // Only the page asked for is read (none for a page no list has), and the first failures, with their counts. The
        // pager's links say where their page starts (after the last row of the page before, before the first of the
        // page after), so a deep page is read from there; a page number alone skips the rows before it.
        // A cursor is taken only as the pager made it, for this page (journalCursor): one edited by hand, or a page
        // number edited beside it, is read by the page number alone, so the label always names the rows shown.
        const asked = pageAsked(req.query.page);
        const byNumber = { offset: ((asked ?? 1) - 1) * JOURNAL_PAGE_SIZE };
        const after = asked === undefined ? undefined : cursorId(key, req.query.after, plan.id, asked, 'after');
        const before = asked === undefined ? undefined : cursorId(key, req.query.before, plan.id, asked, 'before');
        const from = after !== undefined ? { after } : before !== undefined ? { before } : byNumber;
        let journal = await src.planJournal(plan.id, from, asked ? JOURNAL_PAGE_SIZE : 0, MAX_FAILURES_LISTED);
        // A cursor's rows gone (its page read from a journal that has fewer rows since): by the page number.
        if (from !== byNumber && journal.rows.length === 0 && journal.total > 0) journal = await src.planJournal(plan.id, byNumber, JOURNAL_PAGE_SIZE, MAX_FAILURES_LISTED);
        const n = asked !== undefined && asked <= journalPages(journal.total) ? asked : undefined;
        if (n === undefined) {
          return page(
            reply,
            notFoundPage(src.stack, `The journal of apply ${plan.id} has no page ${String(req.query.page)}: it has ${journalPages(journal.total)} (${JOURNAL_PAGE_SIZE} steps each).`, planFirstPage(plan.id)),
            404,
          );
        }
        const cursor = {
          ...(journal.firstId && n > 1 ? { before: journalCursor(key, plan.id, n - 1, 'before', journal.firstId) } : {}),
          ...(journal.lastId ? { after: journalCursor(key, plan.id, n + 1, 'after', journal.lastId) } : {}),
        };
        return page(reply, planPage(src.stack, plan, journal, n, cursor));
      });
    },
    { prefix: '/ui' },
  );
}
