// `fleet ui` as a person runs it: its own process beside `fleet apply` on a
// PGlite record (one process at a time), signed in with the token it wrote.
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../../test/helpers/cli.ts';
import { fleetYaml, tempStack, type TempStack } from '../../../test/helpers/stack.ts';
import { signIn, startFleetUi, type FleetUi } from '../../../test/helpers/ui.ts';
import pg from 'pg';
import { openRecord } from '../../record/index.ts';
import { createTestDatabase, testPostgresUrl } from '../../record/testing.ts';
import { serveOrchestrator } from './serve-run.ts';

describe('fleet ui', () => {
  let stack: TempStack;
  let ui: FleetUi | undefined;
  beforeAll(async () => {
    stack = await tempStack({ name: 'uistack' });
    await stack.spec('web', fleetYaml('web', { count: 2 }));
    const applied = await runCli(['apply', '--stack', stack.dir, '--yes']);
    expect(applied.code, applied.stderr).toBe(0);
    // One embedded apply (PGlite, two data centers): generous for a shared CI machine.
  }, 120_000);
  afterAll(async () => {
    await ui?.stop();
    await stack?.remove();
  });

  it.each([
    { args: ['--port', 'x'], want: ['apply.serve-config', '--port "x"'] },
    { args: ['--host', '0.0.0.0'], want: ['--insecure'] },
    // Found by QA: the dashboard started at a mistyped record URL, made a new, empty PGlite record there on the first
    // page and said "The record holds no VMs for this stack yet".
    { args: ['--record-url', 'pglite:///tmp/dmzfleet-no-such-record-qa/record'], want: ['record.not-found', '/tmp/dmzfleet-no-such-record-qa/record does not exist'] },
  ])('refuses $args before serving', async ({ args, want }) => {
    const res = await runCli(['ui', '--stack', stack.dir, ...args]);
    expect(res.code).toBe(1);
    for (const w of want) expect(res.stderr).toContain(w);
  });

  // A stack never applied printed "Sign in with the token in …/ui.token" and wrote that file, then said there was no record.
  it('says nothing of signing in, and writes no token, for a stack with no record', async () => {
    const fresh = await tempStack({ name: 'uifresh' });
    try {
      const res = await runCli(['ui', '--stack', fresh.dir], { env: { FLEET_ADMIN_TOKEN: '', FLEET_READ_TOKEN: '' } });
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('record.not-found');
      expect(res.stdout).toBe('');
      expect(await stat(join(fresh.dir, '.fleet', 'ui.token')).catch(() => undefined)).toBeUndefined();
    } finally {
      await fresh.remove();
    }
  });

  // Found in review: a --host it could not listen on still wrote <stack>/.fleet/ui.token and printed "Sign in with the
  // token in …" before the listen failed. Nothing is written or said to sign in with until the dashboard listens.
  it.each([
    { why: 'no resolver takes', host: 'a.'.repeat(150).slice(0, -1), inUse: false, want: 'is not a host name that can be looked up' },
    { why: 'has its --port in use', host: '127.0.0.1', inUse: true, want: 'is in use by another process' },
  ])('when it cannot listen (a --host that $why), writes no token and says nothing of signing in', async ({ host, inUse, want }) => {
    const fresh = await tempStack({ name: 'uibadhost' });
    const taken = createServer();
    try {
      await fresh.spec('web', fleetYaml('web', { count: 1 }));
      // A record to serve (the dashboard refuses a stack without one before it reaches the token).
      await (await openRecord(`pglite://${join(fresh.dir, '.fleet', 'record')}`)).close();
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
      const port = inUse ? String((taken.address() as AddressInfo).port) : '0';
      const res = await runCli(['ui', '--stack', fresh.dir, '--port', port, '--host', host, '--insecure'], { env: { FLEET_ADMIN_TOKEN: '', FLEET_READ_TOKEN: '' } });
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('error[apply.serve-config]');
      expect(res.stderr).toContain(want);
      expect(res.stdout).not.toContain('Sign in');
      expect(await stat(join(fresh.dir, '.fleet', 'ui.token')).catch(() => undefined)).toBeUndefined();
    } finally {
      await new Promise((resolve) => taken.close(resolve));
      await fresh.remove();
    }
  });

  // The token file is now read or written after the dashboard listens: one it cannot use still fails whole (it stops
  // listening and exits 1, nothing said of signing in), as before.
  it('a ui.token it cannot read (a folder there) is apply.secret-file, exit 1, nothing said of signing in', async () => {
    const fresh = await tempStack({ name: 'uitokendir' });
    try {
      await (await openRecord(`pglite://${join(fresh.dir, '.fleet', 'record')}`)).close();
      await mkdir(join(fresh.dir, '.fleet', 'ui.token'));
      const res = await runCli(['ui', '--stack', fresh.dir, '--port', '0'], { env: { FLEET_ADMIN_TOKEN: '', FLEET_READ_TOKEN: '' } });
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('error[apply.secret-file]');
      expect(res.stdout).not.toContain('Sign in');
    } finally {
      await fresh.remove();
    }
  });

  // An empty folder there was served as a record: the first page wrote a new PostgreSQL cluster into it.
  it('refuses an empty record folder before serving, and leaves it empty', async () => {
    const empty = join(stack.dir, 'empty-record');
    await mkdir(empty);
    const res = await runCli(['ui', '--stack', stack.dir, '--record-url', `pglite://${empty}`]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('record.not-found');
    expect(res.stderr).toContain(`the folder ${empty} is empty`);
    expect(await readdir(empty)).toEqual([]);
  });

  it('with no token set, writes one to <stack>/.fleet/ui.token (0600) and prints where, never the token', async () => {
    ui = await startFleetUi(stack.dir);
    const file = join(stack.dir, '.fleet', 'ui.token');
    expect(ui.output().stdout).toContain(`Sign in with the token in ${file}`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const token = (await readFile(file, 'utf8')).trim();
    expect(token.length).toBeGreaterThanOrEqual(40);
    expect(ui.output().stdout + ui.output().stderr).not.toContain(token);
    const cookie = await signIn(ui.url, token);
    const page = await (await fetch(ui.url, { headers: { cookie } })).text();
    expect(page).toContain('2 VMs in 1 fleets over 2 data centers');
    // An address the router refuses (no UTF-8 behind its escapes) is a page too, not Fastify's JSON.
    const mangled = await fetch(`${ui.url}/vms/%ED%A0%80/0`, { headers: { cookie } });
    expect(mangled.status).toBe(400);
    expect(mangled.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await mangled.text()).toContain('The address is not one the dashboard can read');
  });

  it('lets fleet apply have the PGlite record between two page loads, and shows what it did', async () => {
    const token = (await readFile(join(stack.dir, '.fleet', 'ui.token'), 'utf8')).trim();
    const cookie = await signIn(ui!.url, token);
    // Pages loaded together share one opening of the record.
    const pages = await Promise.all(Array.from({ length: 8 }, (_, i) => fetch(i % 2 ? `${ui!.url}/fleets/web` : ui!.url, { headers: { cookie } })));
    expect(pages.map((p) => p.status)).toEqual(Array(8).fill(200));
    await stack.spec('web', fleetYaml('web', { count: 3 }));
    const applied = await runCli(['apply', '--stack', stack.dir, '--yes']);
    expect(applied.code, applied.stderr).toBe(0);
    const page = await (await fetch(ui!.url, { headers: { cookie } })).text();
    expect(page).toContain('3 VMs in 1 fleets over 2 data centers');
  });

  it('stops on SIGTERM with exit code 0', async () => {
    expect(await ui!.stop()).toBe(0);
    ui = undefined;
  });

  it('fleet serve orchestrator serves the same pages under /ui when FLEET_READ_TOKEN or FLEET_ADMIN_TOKEN is set, and none otherwise', async () => {
    const env = { FLEET_DMZ_TOKEN_MIAMI: 'm-token', FLEET_DMZ_TOKEN_RICHMOND: 'r-token', FLEET_AUTHORITY_SECRET: 'ui-test-secret-0123' };
    const io = (extra: Record<string, string>) => ({ stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, cwd: stack.dir, env: { ...env, ...extra } });
    const withUi = await serveOrchestrator(io({ FLEET_READ_TOKEN: 'read-token-of-the-test', FLEET_UI_HOSTS: 'fleet.internal, Other.Internal' }), { stack: stack.dir, port: '0', host: '127.0.0.1' });
    try {
      // On loopback, only localhost, an IP address or FLEET_UI_HOSTS (DNS rebinding); the protocol's routes are not the dashboard's.
      for (const [host, status] of [['rebind.evil.example', 421], ['localhost', 200], ['fleet.internal', 200], ['other.internal', 200]] as const) {
        expect(await statusWithHost(`${withUi.url}/ui/login`, host), host).toBe(status);
      }
      expect(await statusWithHost(`${withUi.url}/livez`, 'rebind.evil.example')).toBe(200);
      const cookie = await signIn(`${withUi.url}/ui`, 'read-token-of-the-test');
      expect(await (await fetch(`${withUi.url}/ui`, { headers: { cookie } })).text()).toContain('3 VMs in 1 fleets over 2 data centers');
      expect((await fetch(`${withUi.url}/ui/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=m-token' })).status).toBe(401);
    } finally {
      await withUi.close();
    }
    // Found by QA: behind a TLS-terminating proxy (--insecure off loopback) the session cookie was not marked Secure,
    // so a browser would also send it over plain http:// to the same host.
    const proxied = await serveOrchestrator(io({ FLEET_READ_TOKEN: 'read-token-of-the-test' }), { stack: stack.dir, port: '0', host: '0.0.0.0', insecure: true });
    try {
      const port = new URL(proxied.url).port;
      const login = await fetch(`http://127.0.0.1:${port}/ui/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=read-token-of-the-test', redirect: 'manual' });
      expect(login.status).toBe(303);
      expect(login.headers.get('set-cookie')).toContain('; Secure');
      // Behind a proxy the public name is the proxy's: any Host is answered.
      expect(await statusWithHost(`http://127.0.0.1:${port}/ui/login`, 'fleet.example.com')).toBe(200);
    } finally {
      await proxied.close();
    }
    const without = await serveOrchestrator(io({}), { stack: stack.dir, port: '0', host: '127.0.0.1' });
    try {
      expect((await fetch(`${without.url}/ui`, { headers: { authorization: 'Bearer m-token' } })).status).toBe(404);
    } finally {
      await without.close();
    }
  });
});

/** GET `url` naming `host` in the Host header (fetch will not send one of its own); answers the status. */
function statusWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

// Found by QA: `fleet ui` has no logger, yet its 500 page said "the service log has the reason", and the reason went
// nowhere. A PostgreSQL record missing a table makes a page fail with an SQL error (not a record fault): the page
// now says where the reason is, and fleet ui's stderr has it, one line.
describe.skipIf(!testPostgresUrl())('fleet ui, a page that fails', () => {
  it('writes the reason as one line to its stderr, and the 500 page says so', async () => {
    const db = await createTestDatabase(testPostgresUrl()!);
    const stack = await tempStack({ name: 'uifail' });
    let ui: FleetUi | undefined;
    try {
      const record = await openRecord(db.url);
      await record.close();
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      await c.query('DROP TABLE locks CASCADE');
      await c.end();
      ui = await startFleetUi(stack.dir, { FLEET_RECORD_URL: db.url, FLEET_READ_TOKEN: 'read-token-of-the-test' });
      const res = await fetch(`${ui.url}/locks`, { headers: { authorization: 'Bearer read-token-of-the-test' } });
      expect(res.status).toBe(500);
      expect(await res.text()).toContain('The dashboard failed to read the record; the standard error of fleet ui has the reason.');
      const lines = ui.output().stderr.split('\n').filter((l) => l.startsWith('fleet ui: '));
      expect(lines).toEqual([expect.stringMatching(/^fleet ui: GET \/ui\/locks failed: \w+: relation "locks" does not exist$/)]);
      expect(ui.output().stderr).not.toContain('read-token-of-the-test');
    } finally {
      await ui?.stop();
      await stack.remove();
      await db.drop();
    }
  }, 60_000);
});
