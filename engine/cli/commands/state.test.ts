// `fleet state list|show`, `fleet history` and `fleet unlock` against a real
// PGlite record in a scratch stack. Text output is compared with golden files
// (timestamps, ids and the scratch path masked); UPDATE_GOLDEN=1 rewrites them.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../../test/helpers/cli.ts';
import { schemaErrors } from '../../../test/helpers/schemas.ts';
import pg from 'pg';
import { openRecord } from '../../record/index.ts';
import { createTestDatabase, testPostgresUrl } from '../../record/testing.ts';

const pgClient = pg.Client;
import type { NewVm } from '../../record/index.ts';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const goldenDir = fileURLToPath(new URL('./testdata/state/', import.meta.url));

let root: string;
let lockId: string;
let otherLockId: string;
let vmId: string;

function mask(s: string): string {
  return s
    .replaceAll(root, '<tmp>')
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, '<time>')
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<uuid>')
    .replaceAll(lockId, '<lock>');
}

async function golden(name: string, actual: string): Promise<void> {
  const file = join(goldenDir, name);
  if (process.env.UPDATE_GOLDEN) {
    await mkdir(goldenDir, { recursive: true });
    await writeFile(file, actual);
  }
  expect(actual).toBe(await readFile(file, 'utf8'));
}

const vm = (fleet: string, index: number, over: Partial<NewVm> = {}): NewVm => ({
  stack: 'clitest',
  fleet,
  owner: 'team-payments',
  index,
  dataCenter: 'miami',
  state: 'Requested',
  desiredState: 'Running',
  specHash: 'sha256:1',
  image: 'ubuntu-22.04',
  size: { cpu: 2, memoryGiB: 4, diskGiB: 50 },
  encryptedDisk: true,
  ...over,
});

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'fleet-state-cli-'));
  await mkdir(join(root, 'stacks', 'local'), { recursive: true });
  await writeFile(
    join(root, 'stacks', 'local', 'stack.yaml'),
    [
      'apiVersion: fleet/v1',
      'kind: Stack',
      'metadata: { name: clitest }',
      'spec:',
      '  specs: ["fleets/*.yaml"]',
      '  record: pglite://.fleet/record',
      `  policyPack: { path: ${join(repo, 'policies', 'default')} }`,
      '  site: { name: charlotte, location: { lat: 35.2, lon: -80.8 } }',
      '  dataCenters:',
      '    - { name: miami, address: embedded, location: { lat: 25.7, lon: -80.1 }, hardware: [general], capacity: { vms: 10 } }',
      '',
    ].join('\n'),
  );
  // A fleet spec, for the commands that load the specs too (fleet refresh, fleet import).
  await mkdir(join(root, 'stacks', 'local', 'fleets'));
  await writeFile(
    join(root, 'stacks', 'local', 'fleets', 'web.yaml'),
    ['apiVersion: fleet/v1', 'kind: Fleet', 'metadata: { name: web, owner: team-payments }', 'spec:', '  count: 2', '  image: ubuntu-22.04', '  size: { cpu: 2, memoryGiB: 4, diskGiB: 50 }', ''].join('\n'),
  );
  // Seed, then close: PGlite allows one opener at a time, and each command opens it itself.
  const r = await openRecord(`pglite://${join(root, 'stacks', 'local', '.fleet', 'record')}`);
  const a = await r.insertVm(vm('web', 0), { actor: 'alice', planId: 'plan-1' });
  vmId = a.id;
  const b = await r.transitionVm(a.id, 1, 'BeingCreated', { actor: 'authority', planId: 'plan-1', requestId: 'rq-1' }, { cloudId: 'sim-0001', realImage: 'ami-123' });
  await r.transitionVm(b.id, 2, 'PoweredOff', { actor: 'authority', planId: 'plan-1' });
  await r.addHistory(a.id, { from: 'PoweredOff', to: 'ShuttingDown', outcome: 'vetoed', actor: 'authority', detail: 'no such edge' });
  await r.insertVm(vm('web', 1), { actor: 'alice', planId: 'plan-1' });
  await r.insertVm(vm('db', 0, { dataCenter: 'richmond', image: 'postgres-16' }), { actor: 'alice', planId: 'plan-1' });
  const h = await r.acquireLocks('clitest', ['db'], { who: 'ci', host: 'runner-7', pid: 31337, planId: 'plan-2' }, { leaseMs: 3_600_000 });
  lockId = h.lockId;
  // Another stack sharing the record (as on PostgreSQL), with a lock of its own.
  otherLockId = (await r.acquireLocks('otherstack', ['db'], { who: 'ci', host: 'runner-8', pid: 4242, planId: 'plan-9' }, { leaseMs: 3_600_000 })).lockId;
  await r.close();
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('fleet state list', () => {
  it('lists live VMs and held locks (the default --stack under the working folder)', async () => {
    const r = await runCli(['state', 'list'], { cwd: root });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    await golden('list.txt', mask(r.stdout));
  });

  it("says of each lock whether it still holds: a killed apply's on this host, or one whose lease ran out, is told apart from a live one", async () => {
    // A pid that ran here and is gone: a child that exited.
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    const rec = await openRecord(`pglite://${join(root, 'stacks', 'local', '.fleet', 'record')}`);
    const killed = await rec.acquireLocks('clitest', ['web'], { who: 'ci', host: hostname(), pid: dead, planId: 'plan-3' }, { leaseMs: 3_600_000 });
    const lapsed = await rec.acquireLocks('clitest', ['cache'], { who: 'ci', host: 'runner-9', pid: 7, planId: 'plan-4' }, { leaseMs: -60_000 });
    await rec.close();
    try {
      const r = await runCli(['state', 'list'], { cwd: root });
      expect(r.code, r.stderr).toBe(0);
      const row = (fleet: string) => r.stdout.split('\n').find((l) => l.startsWith(`${fleet} `)) ?? '';
      expect(row('db')).toMatch(/ held$/);
      expect(row('web')).toMatch(new RegExp(`holder gone: the next apply breaks it \\(or fleet unlock ${killed.lockId}\\)$`));
      expect(row('cache')).toMatch(/ lease expired: the next lock takes it over$/);
    } finally {
      const again = await openRecord(`pglite://${join(root, 'stacks', 'local', '.fleet', 'record')}`);
      await again.forceUnlock(killed.lockId);
      await again.forceUnlock(lapsed.lockId);
      await again.close();
    }
  });

  it('limits to --fleet and prints JSON', async () => {
    const r = await runCli(['state', 'list', '--fleet', 'web', '--format', 'json', '--stack', join(root, 'stacks', 'local')], { cwd: repo });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.stack).toBe('clitest');
    expect(out.vms.map((v: { address: string }) => v.address)).toEqual(['web/0', 'web/1']);
    expect(out.fleets.map((f: { fleet: string }) => f.fleet)).toEqual(['web']);
    // Found by QA: the locks of every fleet were listed (db's here), and a fleet the record does not know answered
    // "0 VMs" as quietly as an empty one.
    expect(out.locks).toEqual([]);
    expect(out.diagnostics).toEqual([]);
    const db = JSON.parse((await runCli(['state', 'list', '--fleet', 'db', '--format', 'json', '--stack', join(root, 'stacks', 'local')], { cwd: repo })).stdout);
    expect(db.locks.map((l: { fleet: string }) => l.fleet)).toEqual(['db']);
  });

  it('warns of a --fleet the record does not know, suggesting a near name', async () => {
    const r = await runCli(['state', 'list', '--fleet', 'wbe', '--fleet', 'web', '--stack', join(root, 'stacks', 'local')], { cwd: repo });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('warning[record.fleet-not-found]: Fleet not in the record\n  at wbe\n  stack clitest has no fleet "wbe" in the record');
    expect(r.stderr).toContain('did you mean web?');
    expect(r.stdout).toContain('2 VMs in 1 fleet of stack clitest');
    // Quoted: a --fleet with a line break wrote a second line that read as a diagnostic of its own.
    const forged = await runCli(['state', 'list', '--fleet', 'x\nerror[spec.fake]: Forged', '--stack', join(root, 'stacks', 'local')], { cwd: repo });
    expect(forged.stderr).toContain('has no fleet "x\\nerror[spec.fake]: Forged" in the record');
    expect(forged.stderr).not.toMatch(/^\s*error\[spec\.fake\]/m);
    const json = JSON.parse((await runCli(['state', 'list', '--fleet', 'nope', '--format', 'json', '--stack', join(root, 'stacks', 'local')], { cwd: repo })).stdout);
    expect(json.diagnostics).toMatchObject([{ code: 'record.fleet-not-found', severity: 'warning', address: 'nope' }]);
  });
});

describe('fleet state show', () => {
  it('shows one VM and its history', async () => {
    const r = await runCli(['state', 'show', 'web/0'], { cwd: root });
    expect(r.code).toBe(0);
    await golden('show.txt', mask(r.stdout));
  });

  it('prints JSON', async () => {
    const r = await runCli(['state', 'show', 'web/0', '--format', 'json'], { cwd: root });
    const out = JSON.parse(r.stdout);
    expect(out.vm).toMatchObject({ id: vmId, state: 'PoweredOff', cloudId: 'sim-0001', version: 3 });
    expect(out.history).toHaveLength(4);
  });

  it('refuses what is not an address as fleet history and state rm do (it said "no live VM at web-0")', async () => {
    const r = await runCli(['state', 'show', 'web-0', '--format', 'json'], { cwd: root });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ diagnostics: [{ code: 'cli.usage', detail: '"web-0" is not a VM address; an address is <fleet>/<index>, e.g. web/3.' }] });
  });

  it('names an unknown address', async () => {
    const r = await runCli(['state', 'show', 'web/9'], { cwd: root });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    await golden('show-missing.txt', mask(r.stderr));
  });

  // "No such VM" said where it looked and nothing of what is there: the diagnostic now names the fleet's live
  // members, or the record's fleets with the likely one for a mistyped name, and the command that lists them.
  it.each([
    { args: ['state', 'show', 'web/9'], says: 'Fleet web has live members web/0, web/1; `fleet state list --fleet web` lists them.' },
    { args: ['state', 'show', 'wbe/0'], says: 'It holds no live VM of fleet wbe (did you mean web?); its fleets: db, web. `fleet state list` shows the VMs.' },
    { args: ['history', 'nope/0'], says: 'It holds no live VM of fleet nope; its fleets: db, web. `fleet state list` shows the VMs.' },
    { args: ['state', 'rm', 'web/7'], says: 'nothing to remove. Fleet web has live members web/0, web/1; `fleet state list --fleet web` lists them.' },
    { args: ['history', 'db/4'], says: 'Fleet db has one live member db/0; `fleet state list --fleet db` lists them.' },
  ])('says what is there instead of an unknown address: $args', async ({ args, says }) => {
    const r = await runCli([...args, '--format', 'json'], { cwd: root });
    expect(r.code).toBe(1);
    const [d] = (JSON.parse(r.stdout) as { diagnostics: { code: string; detail: string }[] }).diagnostics;
    expect(d.code).toBe('record.vm-not-found');
    expect(d.detail).toContain(says);
  });
});

// A fleet name is lower-case letters, digits and dashes (fleet.schema.json): anything else names no VM. Such an
// address was looked up and echoed as typed, an escape sequence or a right-to-left override acting on the terminal.
describe('an address whose fleet is no fleet name', () => {
  const odd = [['we\u001b[31mb/0', '"we\\u001B[31mb/0"'], ['a\nb/0', '"a\\u000Ab/0"'], ['web\u202e/0', '"web\\u202E/0"'], ['WEB/0', '"WEB/0"'], ['web /0', '"web /0"'], ['web/0/1', '"web/0/1"']];
  const commands = [['state', 'show'], ['state', 'rm'], ['history'], ['import', '%', 'sim-1']];
  it.each(commands.flatMap((c) => odd.map(([address, shown]) => ({ name: `${c[0]} ${c[1] ?? ''} ${JSON.stringify(address)}`, args: c.includes('%') ? c.map((w) => (w === '%' ? address : w)) : [...c, address], shown }))))(
    '$name is a usage error that shows it escaped',
    async ({ args, shown }) => {
      const r = await runCli(args, { cwd: root });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('error[cli.usage]');
      expect(r.stderr).toContain(`${shown} is not a VM address`);
      expect(r.stderr).toContain('lower-case letters, digits and dashes');
      expect(r.stderr.includes('\u001b') || r.stderr.includes('\u202e')).toBe(false);
    },
  );
});

// A lock id or cloud id with a character that does not show was echoed as typed (an escape sequence acting on the terminal).
describe('a lock id or cloud id with a character that does not show', () => {
  it.each([
    { args: ['unlock', 'ab\u001b[2Jcd'], shown: '"ab\\u001B[2Jcd"' },
    { args: ['unlock', '1234\u202e'], shown: '"1234\\u202E"' },
    { args: ['import', 'web/0', 'i-1\u001b[31m'], shown: '"i-1\\u001B[31m"' },
    { args: ['import', 'web/0', 'i-1\n'], shown: '"i-1\\u000A"' },
  ])('$args.0 $shown is a usage error that shows it escaped', async ({ args, shown }) => {
    const r = await runCli(args, { cwd: root });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error[cli.usage]');
    expect(r.stderr).toContain(shown);
    expect(r.stderr.includes('\u001b') || r.stderr.includes('\u202e')).toBe(false);
  });
});

describe('fleet history', () => {
  it('shows the stack history oldest first', async () => {
    const r = await runCli(['history'], { cwd: root });
    expect(r.code).toBe(0);
    await golden('history.txt', mask(r.stdout));
  });

  it('shows one address, the newest --limit rows, as JSON', async () => {
    const r = await runCli(['history', 'web/0', '--limit', '2', '--format', 'json'], { cwd: root });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.history.map((h: { to: string; outcome: string }) => `${h.to}:${h.outcome}`)).toEqual(['PoweredOff:ok', 'ShuttingDown:vetoed']);
  });

  it.each([
    [['history', 'web/9'], 'record.vm-not-found'],
    [['history', 'nonsense'], 'cli.usage'],
    [['history', '--limit', '0'], 'cli.usage'],
    // Past the database's range it was cli.internal with the database's words: 'value "100000000000000000000" is out of range for type bigint'.
    [['history', '--limit', '99999999999999999999'], 'cli.usage'],
    [['history', '--limit', '2147483648'], 'cli.usage'],
    // Number() read these as 100, 16 and 5, as --parallelism did before it took decimal digits only.
    [['history', '--limit', '1e2'], 'cli.usage'],
    [['history', '--limit', '0x10'], 'cli.usage'],
    [['history', '--limit', ' 5'], 'cli.usage'],
    [['history', '--stack', 'nowhere'], 'spec.'],
  ])('%j fails with %s', async (args, code) => {
    const r = await runCli(args, { cwd: root });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error[${code}`);
    expect(r.stderr).not.toMatch(/\n\s+at .*\.ts:\d+/);
  });

  it('shows what a history row holds with its unseen characters escaped: a detail from a data center, printed as it was, acted on the terminal', async () => {
    const rec = await openRecord(`pglite://${join(root, 'stacks', 'local', '.fleet', 'record')}`);
    await rec.addHistory(vmId, { from: 'PoweredOff', to: 'PoweredOff', outcome: 'drift', actor: 'dmz-client:miami', detail: 'cloud said \u001b[2Jhi\nthere' });
    await rec.close();
    const r = await runCli(['history', 'web/0', '--limit', '1'], { cwd: root });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('cloud said \\u001B[2Jhi\\u000Athere');
    expect(r.stdout.includes('\u001b')).toBe(false);
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(2);
  });

  // The code of a DMZ client's failure report (history.code, record schema 18) was stored but shown nowhere: a user
  // diagnosing a failed VM saw the driver's words, not whether the boot was denied (what decides a recreate).
  it("shows a failure's error code as JSON (null on other rows) and before its detail in the text", async () => {
    const rec = await openRecord(`pglite://${join(root, 'stacks', 'local', '.fleet', 'record')}`);
    await rec.addHistory(vmId, { from: 'PoweredOff', to: 'PoweredOn', outcome: 'failed', actor: 'dmz-client:miami', requestId: 'rq-9', detail: 'the agent was refused its key', code: 'driver.boot-denied' });
    await rec.close();
    const json = await runCli(['history', 'web/0', '--limit', '2', '--format', 'json'], { cwd: root });
    expect(json.code, json.stderr).toBe(0);
    const out = JSON.parse(json.stdout) as { history: { outcome: string; code: string | null }[] };
    expect(out.history.map((h) => [h.outcome, h.code])).toEqual([
      [expect.any(String), null],
      ['failed', 'driver.boot-denied'],
    ]);
    expect(schemaErrors('history-output', out)).toEqual([]);
    const text = await runCli(['history', 'web/0', '--limit', '1'], { cwd: root });
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/ failed +dmz-client:miami +- +\[driver\.boot-denied\] the agent was refused its key\n$/);
    const show = await runCli(['state', 'show', 'web/0', '--format', 'json'], { cwd: root });
    const shown = JSON.parse(show.stdout) as { history: { code: string | null }[] };
    expect(shown.history.at(-1)?.code).toBe('driver.boot-denied');
    expect(schemaErrors('state-show-output', shown)).toEqual([]);
  });
});

describe('fleet state rm', () => {
  // After `fleet apply` was killed, `fleet state rm` (which does not break a lock itself) met its lock and told the
  // user to "wait for that apply to finish", though `fleet state list` knew its process was gone.
  it("refuses while a killed apply's lock holds the fleet, saying that process is gone and how to release it", async () => {
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    const rec = await openRecord(`pglite://${join(root, 'stacks', 'local', '.fleet', 'record')}`);
    const killed = await rec.acquireLocks('clitest', ['web'], { who: 'ci', host: hostname(), pid: dead, planId: 'plan-3' }, { leaseMs: 3_600_000 });
    await rec.close();
    try {
      const r = await runCli(['state', 'rm', 'web/1', '--format', 'json'], { cwd: root });
      expect(r.code).toBe(1);
      const [d] = (JSON.parse(r.stdout) as { diagnostics: { code: string; address: string; detail: string }[] }).diagnostics;
      expect(d).toMatchObject({ code: 'record.lock-held', address: 'web' });
      expect(d.detail).toContain(`That process no longer runs on this host (an apply killed or lost): \`fleet unlock ${killed.lockId}\` releases the lock`);
    } finally {
      const again = await openRecord(`pglite://${join(root, 'stacks', 'local', '.fleet', 'record')}`);
      expect(await again.findVm('clitest', 'web/1')).toBeDefined();
      await again.forceUnlock(killed.lockId);
      await again.close();
    }
  });

  it('retires the VM and writes its removed row in one statement: a report landing in between leaves both or neither', async () => {
    const dir = join(root, 'racy');
    await mkdir(dir, { recursive: true });
    const stackFile = await readFile(join(root, 'stacks', 'local', 'stack.yaml'), 'utf8');
    await writeFile(join(dir, 'stack.yaml'), stackFile.replace('name: clitest', 'name: racy'));
    const url = `pglite://${join(dir, '.fleet', 'record')}`;
    const seed = await openRecord(url);
    await seed.insertVm({ ...vm('web', 0), stack: 'racy' }, { actor: 'alice', planId: 'plan-1' });
    // Stands for a DMZ client's report (reports are not fenced) that lands just after the removed row: it moves the VM on.
    await seed.sql.query(`CREATE FUNCTION racing_report() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE vms SET version = version + 1 WHERE id = NEW.vm_id; RETURN NULL; END $$`);
    await seed.sql.query(`CREATE TRIGGER racing_report AFTER INSERT ON history FOR EACH ROW WHEN (NEW.outcome = 'removed') EXECUTE FUNCTION racing_report()`);
    await seed.close();

    const r = await runCli(['state', 'rm', 'web/0', '--stack', dir], { cwd: root });
    const after = await openRecord(url);
    try {
      const live = await after.findVm('racy', 'web/0');
      const removed = (await after.history('racy', 'web/0')).filter((h) => h.outcome === 'removed');
      // Before: the removed row was written, the retire then refused (version conflict): history said removed, the VM stayed live.
      expect({ code: r.code, live: live !== undefined, removed: removed.length }, r.stderr).toEqual({ code: 0, live: false, removed: 1 });
    } finally {
      await after.close();
    }
  });
});

// Found by QA (qa-state): with a replace in progress (create-before-delete: the old VM deposed beside its
// replacement at one address), `fleet state rm web/0` forgot one of the two, the current one, without a word of the
// other; `fleet state list` showed both under one address with nothing telling them apart.
describe('fleet state rm of an address with a deposed VM (a replace in progress)', () => {
  let dir: string;
  let url: string;
  let old: { id: string; cloudId: string | null };
  let current: { id: string; cloudId: string | null };
  beforeAll(async () => {
    dir = join(root, 'deposed');
    await mkdir(dir, { recursive: true });
    const stackFile = await readFile(join(root, 'stacks', 'local', 'stack.yaml'), 'utf8');
    await writeFile(join(dir, 'stack.yaml'), stackFile.replace('name: clitest', 'name: deposed'));
    url = `pglite://${join(dir, '.fleet', 'record')}`;
    const seed = await openRecord(url);
    try {
      const a = await seed.insertVm({ ...vm('web', 0), stack: 'deposed' }, { actor: 'alice', planId: 'plan-1' });
      old = await seed.updateVm(a.id, a.version, { cloudId: 'sim-old' }, { actor: 'alice' });
      const b = await seed.insertVm({ ...vm('web', 0), stack: 'deposed', replaces: a.id }, { actor: 'alice', planId: 'plan-2' });
      current = await seed.updateVm(b.id, b.version, { cloudId: 'sim-new' }, { actor: 'alice' });
    } finally {
      await seed.close();
    }
  });
  const live = async () => {
    const r = await openRecord(url);
    try {
      return (await r.listVms('deposed')).map((v) => ({ id: v.id, deposed: v.deposed }));
    } finally {
      await r.close();
    }
  };

  it('state list marks the deposed VM', async () => {
    const r = await runCli(['state', 'list', '--stack', dir], { cwd: root });
    expect(r.code, r.stderr).toBe(0);
    const rows = r.stdout.split('\n').filter((l) => l.startsWith('web/0'));
    expect(rows).toHaveLength(2);
    expect(rows.find((l) => l.includes('sim-old'))).toMatch(/^web\/0 \(deposed\) /);
    expect(rows.find((l) => l.includes('sim-new'))).toMatch(/^web\/0 {2}/);
  });

  it('state show shows the current VM and names the deposed one', async () => {
    const r = await runCli(['state', 'show', 'web/0', '--stack', dir], { cwd: root });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^id: +${current.id}$`, 'm'));
    expect(r.stdout).toContain(`Also live at web/0: VM ${old.id} (deposed by a replace in progress, Requested, cloud id sim-old).`);
  });

  it('history of the address tells the two VMs\' rows apart (a VM column)', async () => {
    const r = await runCli(['history', 'web/0', '--stack', dir], { cwd: root });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^AT +ADDRESS +VM +FROM +TO +OUTCOME/);
    const ids = new Set(lines.slice(1).map((l) => l.split(/ {2,}/)[2]));
    expect(ids).toEqual(new Set([old.id.slice(0, 8), current.id.slice(0, 8)]));
  });

  it('is refused without --vm, naming both VMs and the command for each; nothing is forgotten', async () => {
    const r = await runCli(['state', 'rm', 'web/0', '--stack', dir, '--format', 'json'], { cwd: root });
    expect(r.code).toBe(1);
    const [d] = (JSON.parse(r.stdout) as { diagnostics: { code: string; address: string; detail: string }[] }).diagnostics;
    expect(d).toMatchObject({ code: 'record.vm-ambiguous', address: 'web/0' });
    expect(d.detail).toContain(`VM ${current.id} (the current one, Requested, cloud id sim-new): \`fleet state rm web/0 --vm ${current.id}\``);
    expect(d.detail).toContain(`VM ${old.id} (deposed by a replace in progress, Requested, cloud id sim-old): \`fleet state rm web/0 --vm ${old.id}\``);
    expect(await live()).toHaveLength(2);
  });

  it('--vm of no live VM at the address is refused', async () => {
    const r = await runCli(['state', 'rm', 'web/0', '--vm', 'sim-other', '--stack', dir], { cwd: root });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error[record.vm-not-found]');
    expect(r.stderr).toContain('no live VM sim-other at web/0');
  });

  it('--vm picks one, by VM id or cloud id, and says which it was', async () => {
    const r = await runCli(['state', 'rm', 'web/0', '--vm', 'sim-old', '--stack', dir], { cwd: root });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Removed web/0 (VM ${old.id}, Requested, deposed by a replace in progress)`);
    expect(await live()).toEqual([{ id: current.id, deposed: false }]);
    // One VM left at the address: no --vm needed.
    const again = await runCli(['state', 'rm', 'web/0', '--stack', dir], { cwd: root });
    expect(again.code, again.stderr).toBe(0);
    expect(await live()).toEqual([]);
  });
});

describe('fleet unlock', () => {
  it('refuses an unknown lock id', async () => {
    const r = await runCli(['unlock', 'deadbeef'], { cwd: root });
    expect(r.code).toBe(1);
    await golden('unlock-missing.txt', mask(r.stderr));
  });

  // An empty id said "the record … holds no lock ; it may have been released already", at no address.
  it.each([[''], ['   ']])('refuses the lock id %j as a usage error', async (id) => {
    const r = await runCli(['unlock', id, '--format', 'json'], { cwd: root });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).diagnostics).toMatchObject([{ code: 'cli.usage', detail: expect.stringContaining('fleet state list') }]);
  });

  it("refuses a lock of another stack in the same record, and leaves it held", async () => {
    const r = await runCli(['unlock', otherLockId, '--format', 'json'], { cwd: root });
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out.diagnostics).toMatchObject([{ code: 'record.lock-not-found', address: otherLockId }]);
    expect(out.diagnostics[0].detail).toContain(`stack clitest holds no lock ${otherLockId}`);
    expect(out.diagnostics[0].detail).toContain('that lock is of stack otherstack (fleet db)');
    const rec = await openRecord(`pglite://${join(root, 'stacks', 'local', '.fleet', 'record')}`);
    try {
      expect((await rec.listLocks('otherstack')).map((l) => l.lockId)).toEqual([otherLockId]);
    } finally {
      await rec.close();
    }
  });

  it('refuses a lock whose apply still runs on this host, and leaves it held (it broke a running apply\'s lock)', async () => {
    // The running apply: a live process of this host, its lease not run out.
    const apply = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 120000)'], { stdio: 'ignore' });
    const url = `pglite://${join(root, 'stacks', 'local', '.fleet', 'record')}`;
    const rec = await openRecord(url);
    const live = await rec.acquireLocks('clitest', ['web'], { who: 'ci', host: hostname(), pid: apply.pid!, planId: 'plan-5' }, { leaseMs: 3_600_000 });
    await rec.close();
    try {
      const r = await runCli(['unlock', live.lockId, '--format', 'json'], { cwd: root });
      expect(r.code).toBe(1);
      const out = JSON.parse(r.stdout);
      expect(out.diagnostics).toMatchObject([{ code: 'record.lock-held', address: live.lockId }]);
      expect(out.diagnostics[0].detail).toContain(`ci@${hostname()} pid ${apply.pid} for plan plan-5`);
      expect(out.diagnostics[0].detail).toContain('still runs on this host');
      const after = await openRecord(url);
      try {
        expect((await after.findLock(live.lockId)).map((l) => l.fleet)).toEqual(['web']);
      } finally {
        await after.close();
      }
    } finally {
      apply.kill();
      const again = await openRecord(url);
      await again.forceUnlock(live.lockId);
      await again.close();
    }
  });

  it('releases a lock by id', async () => {
    const r = await runCli(['unlock', lockId], { cwd: root });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    await golden('unlock.txt', mask(r.stdout));
    const after = await runCli(['state', 'list', '--format', 'json'], { cwd: root });
    expect(JSON.parse(after.stdout).locks).toEqual([]);
  });
});

describe('reading a PGlite record an apply holds (issue 14)', () => {
  it('state list, state show and history read a copy instead of waiting for the holder, and see what it committed', async () => {
    // This test process plays the apply: it holds the record open and keeps writing while the commands run.
    const held = await openRecord(`pglite://${join(root, 'stacks', 'local', '.fleet', 'record')}`);
    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing) {
        await held.addHistory(vmId, { from: 'PoweredOff', to: 'PoweredOff', outcome: 'drift', actor: 'apply', detail: `write ${written++}` });
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      const late = await held.insertVm(vm('web', 2), { actor: 'apply', planId: 'plan-3' });
      const env = { FLEET_RECORD_BUSY_TIMEOUT_MS: '200' };
      const list = await runCli(['state', 'list', '--format', 'json'], { cwd: root, env });
      expect(list.code, list.stderr).toBe(0);
      expect(JSON.parse(list.stdout).vms.map((v: { address: string }) => v.address)).toEqual(['db/0', 'web/0', 'web/1', 'web/2']);
      const show = await runCli(['state', 'show', 'web/2', '--format', 'json'], { cwd: root, env });
      expect(show.code, show.stderr).toBe(0);
      expect(JSON.parse(show.stdout).vm.id).toBe(late.id);
      const hist = await runCli(['history', 'web/0', '--format', 'json'], { cwd: root, env });
      expect(hist.code, hist.stderr).toBe(0);
      expect(JSON.parse(hist.stdout).history.length).toBeGreaterThan(0);
      // A command that writes still waits for the holder, and says who it is.
      const unlock = await runCli(['unlock', 'nope'], { cwd: root, env });
      expect(unlock.code).toBe(1);
      expect(unlock.stderr).toContain('record.busy');
      expect(unlock.stderr).toContain(`pid ${process.pid}`);
    } finally {
      writing = false;
      await writer;
      await held.close();
    }
    expect(written).toBeGreaterThan(0);
    // Nothing of the copies is left behind, and the record itself is intact.
    const again = await openRecord(`pglite://${join(root, 'stacks', 'local', '.fleet', 'record')}`);
    try {
      expect((await again.listVms('clitest')).map((v) => v.address)).toEqual(['db/0', 'web/0', 'web/1', 'web/2']);
    } finally {
      await again.close();
    }
  }, 240_000);
});

// A mistyped record URL made these commands create a new, empty record there and answer "0 VMs"
// (fleet refresh --check, the scheduled drift check: "0 VMs checked, 0 differences", exit 0).
describe('a PGlite record folder that does not exist', () => {
  it.each([['state', 'list'], ['state', 'show', 'web/0'], ['history'], ['unlock', '42'], ['state', 'rm', 'web/0'], ['refresh', '--check'], ['refresh']].map((args) => ({ args, name: args.join(' ') })))('$name: record.not-found, and no folder made', async ({ args }) => {
    const missing = join(root, 'typo', 'record');
    const r = await runCli([...args, '--stack', join(root, 'stacks', 'local'), '--record-url', `pglite://${missing}`, '--format', 'json'], { cwd: root });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).diagnostics).toMatchObject([{ code: 'record.not-found', detail: expect.stringContaining(`the folder ${missing} does not exist`) }]);
    expect(existsSync(join(root, 'typo'))).toBe(false);
  });
});

// An empty folder there (made by hand, a mount point) was filled with a new PostgreSQL cluster (PG_VERSION, base/,
// global/, … 22 entries) before record.not-found was said: a command that only reads or edits a record wrote one.
describe('an empty PGlite record folder', () => {
  it.each([['state', 'list'], ['history'], ['unlock', '42'], ['refresh', '--check']].map((args) => ({ args, name: args.join(' ') })))('$name: record.not-found, and the folder left empty', async ({ args }) => {
    const empty = join(root, 'empty-record');
    mkdirSync(empty, { recursive: true });
    const r = await runCli([...args, '--stack', join(root, 'stacks', 'local'), '--record-url', `pglite://${empty}`, '--format', 'json'], { cwd: root });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).diagnostics).toMatchObject([{ code: 'record.not-found', detail: expect.stringContaining(`the folder ${empty} is empty`) }]);
    expect(readdirSync(empty)).toEqual([]);
  });
});

// Found by QA: pointed at an empty PostgreSQL database (a mistyped database name on a shared server), the commands
// that only read or edit a record created dmzfleet's tables there and answered "0 VMs".
describe.runIf(testPostgresUrl())('an empty PostgreSQL database', () => {
  it.each([['state', 'list'], ['state', 'show', 'web/0'], ['history'], ['unlock', '42'], ['state', 'rm', 'web/0'], ['refresh', '--check'], ['refresh']].map((args) => ({ args, name: args.join(' ') })))('$name: record.not-found, and no table made', async ({ args }) => {
    const db = await createTestDatabase(testPostgresUrl()!);
    try {
      const r = await runCli([...args, '--stack', join(root, 'stacks', 'local'), '--record-url', db.url, '--format', 'json'], { cwd: root });
      expect(r.code, r.stderr).toBe(1);
      expect(JSON.parse(r.stdout).diagnostics).toMatchObject([{ code: 'record.not-found', detail: expect.stringContaining('holds no dmzfleet record') }]);
      const pg = new pgClient({ connectionString: db.url });
      await pg.connect();
      try {
        const { rows } = await pg.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`);
        expect(rows).toEqual([]);
      } finally {
        await pg.end();
      }
    } finally {
      await db.drop();
    }
  });
});

describe('what the record holds, echoed by a command, is shown escaped', () => {
  // `fleet state list` escaped its cells, but the result lines of `fleet unlock`, `fleet state show` and `fleet
  // state rm` printed a lock's holder and plan id, a VM's image and cloud id as the record holds them: written by
  // another team's apply on a shared PostgreSQL record, or by a data center (a cloud id), an escape sequence in one
  // acted on the terminal or CI log (cleared it, retitled it, forged a line).
  const url = () => `pglite://${join(root, 'stacks', 'local', '.fleet', 'record')}`;
  // Control characters other than a newline, and the right-to-left override.
  const unseen = (s: string) => [...s].some((c) => (c < ' ' && c !== '\n') || c === '\u007f' || c === '\u202e');
  const cases: { name: string; seed: (r: Awaited<ReturnType<typeof openRecord>>) => Promise<string[]>; shown: string }[] = [
    {
      name: 'fleet unlock: the lock holder and its plan id',
      seed: async (r) => {
        const l = await r.acquireLocks('clitest', ['esc-lock'], { who: 'ci\u001b[2J', host: 'runner\u202e7', pid: 999_999, planId: 'plan\u001b]0;owned\u0007' }, { leaseMs: 1_000 });
        return ['unlock', l.lockId];
      },
      shown: 'ci\\u001B[2J@runner\\u202E7',
    },
    {
      name: 'fleet state show: the VM its data center named',
      seed: async (r) => {
        const v = await r.insertVm(vm('esc-show', 0, { image: 'img\u001b[31m' }), { actor: 'alice' });
        await r.transitionVm(v.id, v.version, 'BeingCreated', { actor: 'authority' }, { cloudId: 'i-\u001b[2Jshow', realImage: 'ami\u0007' });
        return ['state', 'show', 'esc-show/0'];
      },
      shown: 'i-\\u001B[2Jshow',
    },
    {
      name: 'fleet state rm: the cloud id it left in its data center',
      seed: async (r) => {
        const v = await r.insertVm(vm('esc-rm', 0), { actor: 'alice' });
        await r.transitionVm(v.id, v.version, 'BeingCreated', { actor: 'authority' }, { cloudId: 'i-\u001b[2Jrm' });
        return ['state', 'rm', 'esc-rm/0'];
      },
      shown: 'i-\\u001B[2Jrm',
    },
  ];
  it.each(cases)('$name', async ({ seed, shown }) => {
    const r = await openRecord(url());
    let args: string[];
    try {
      args = await seed(r);
    } finally {
      await r.close();
    }
    const out = await runCli(args, { cwd: root });
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toContain(shown);
    expect(unseen(out.stdout), out.stdout).toBe(false);
  });
});
