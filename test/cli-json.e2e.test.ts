// Machine-readable output end to end: every command's `--format json` output,
// taken from real runs (real PGlite record, real authority and sim DMZ
// clients over loopback HTTP), validates against its published schema in
// specs/schema/, and holds nothing but JSON on stdout. Also `fleet refresh
// --check`: read-only, with the exit codes a scheduled drift check needs.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRecord } from '../engine/record/index.ts';
import { loadStack } from '../engine/spec/index.ts';
import { runCli, type CliRun } from './helpers/cli.ts';
import { listenOnLoopback } from './helpers/proxy.ts';
import { schemaErrors } from './helpers/schemas.ts';
import { REPO, fleetYaml, tempStack, type TempStack } from './helpers/stack.ts';

/** stdout as one JSON document (the whole of it: nothing else may be there). */
function doc(r: CliRun): unknown {
  expect(r.stdout.trim().startsWith('{'), r.stdout.slice(0, 200)).toBe(true);
  return JSON.parse(r.stdout);
}

/** stdout as JSON lines. */
function events(r: CliRun): Record<string, unknown>[] {
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function expectValid(schema: string, value: unknown): void {
  expect(schemaErrors(schema, value), `${schema}: ${JSON.stringify(value).slice(0, 400)}`).toEqual([]);
}

describe('--format json output of real runs validates against specs/schema', () => {
  let st: TempStack;
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
  beforeAll(async () => {
    st = await tempStack({ name: 'json' });
    await st.spec('app', fleetYaml('app', { count: 2 }));
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('validate: valid, invalid and missing stacks', async () => {
    const ok = await fleet('validate', '--format', 'json');
    expect(ok.code).toBe(0);
    expectValid('validate-output', doc(ok));
    const bad = await runCli(['validate', '--stack', 'test/fixtures/spec/33-many-problems', '--format', 'json'], { cwd: REPO });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('');
    expectValid('validate-output', doc(bad));
    expect((doc(bad) as { diagnostics: unknown[] }).diagnostics.length).toBeGreaterThan(3);
  });

  it('plan: the plan and its diagnostics in one document; --detailed-exitcode still 2', async () => {
    const r = await fleet('plan', '--format', 'json', '--detailed-exitcode');
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toBe('');
    const d = doc(r) as { plan: { summary: { create: number } }; diagnostics: unknown[] };
    expectValid('plan-output', d);
    // The plan member is the plan document itself: the whole of plan.schema.json holds for it.
    expectValid('plan', d.plan);
    expect(d.plan.summary.create).toBe(2);
  });

  it('apply: every line is an event of apply-event.schema.json, summary last', async () => {
    const r = await fleet('apply', '--yes', '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const evs = events(r);
    for (const e of evs) expectValid('apply-event', e);
    expect(new Set(evs.map((e) => e.type))).toEqual(new Set(['plan', 'start', 'step', 'member', 'summary']));
    expect(evs.at(-1)).toMatchObject({ type: 'summary', succeeded: 2, failed: 0 });
  });

  it('apply: an error is a diagnostic event on stdout, nothing on stderr', async () => {
    const r = await fleet('apply', join(st.dir, 'no-such-plan.json'), '--format', 'json');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    const evs = events(r);
    for (const e of evs) expectValid('apply-event', e);
    expect(evs).toMatchObject([{ type: 'diagnostic', severity: 'error', code: 'apply.plan-file' }]);
  });

  it('refresh and refresh --check', async () => {
    for (const args of [['refresh'], ['refresh', '--check']]) {
      const r = await fleet(...args, '--format', 'json', '--detailed-exitcode');
      expect(r.code, r.stderr).toBe(0);
      expect(doc(r)).toMatchObject({ stack: 'json', check: args.length === 2, checked: 2, drift: [], diagnostics: [] });
      expectValid('refresh-output', doc(r));
    }
  });

  it('state list, state show and history', async () => {
    const list = await fleet('state', 'list', '--format', 'json');
    expect(list.code, list.stderr).toBe(0);
    expectValid('state-list-output', doc(list));
    const show = await fleet('state', 'show', 'app/0', '--format', 'json');
    expect(show.code, show.stderr).toBe(0);
    expectValid('state-show-output', doc(show));
    for (const args of [['history'], ['history', 'app/1', '--limit', '3']]) {
      const h = await fleet(...args, '--format', 'json');
      expect(h.code, h.stderr).toBe(0);
      expectValid('history-output', doc(h));
    }
  });

  // A failure before any result: the failure document (or, for apply, diagnostic events), still only JSON on stdout.
  it.each([
    { args: ['plan'], schema: 'plan-output' },
    { args: ['refresh', '--check'], schema: 'refresh-output' },
    { args: ['state', 'list'], schema: 'state-list-output' },
    { args: ['state', 'show', 'app/0'], schema: 'state-show-output' },
    { args: ['history'], schema: 'history-output' },
    { args: ['unlock', 'no-such-lock'], schema: 'unlock-output' },
    { args: ['apply', '--yes'], schema: 'apply-event' },
  ])('$args on a missing stack: exit 1, diagnostics on stdout ($schema)', async ({ args, schema }) => {
    const r = await runCli([...args, '--stack', 'no/such/stack', '--format', 'json'], { cwd: REPO });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    const out = schema === 'apply-event' ? events(r) : [doc(r)];
    for (const o of out) {
      expectValid(schema, o);
      expectValid(schema === 'apply-event' ? 'apply-event' : 'failure-output', o);
    }
    expect(JSON.stringify(out)).toContain('spec.stack-not-found');
  });

  it('unlock of an unknown lock is a failure document', async () => {
    const r = await fleet('unlock', 'no-such-lock', '--format', 'json');
    expect(r.code).toBe(1);
    expectValid('unlock-output', doc(r));
    expect(doc(r)).toMatchObject({ diagnostics: [{ code: 'record.lock-not-found' }] });
  });

  it('a usage error with --format json is a failure document too', async () => {
    const r = await runCli(['state', 'list', '--fromat', 'x', '--format', 'json'], { cwd: REPO });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    expectValid('failure-output', doc(r));
    expect(doc(r)).toMatchObject({ diagnostics: [{ code: 'cli.usage', detail: expect.stringContaining('(Did you mean --format?)') }] });
  });
});

/** Everything the record holds for a stack that a write would change: VMs with versions, fleets, history, locks, plans. */
async function recordSnapshot(dir: string): Promise<unknown> {
  const { stack } = await loadStack(dir, { cwd: REPO, env: {} });
  const record = await openRecord(stack!.recordUrl);
  try {
    const name = stack!.name;
    return {
      vms: await record.listVms(name),
      fleets: await record.listFleets(name),
      history: await record.history(name, undefined, { limit: 100_000 }),
      locks: await record.listLocks(name),
    };
  } finally {
    await record.close();
  }
}

describe('fleet refresh --check', () => {
  let st: TempStack;
  beforeAll(async () => {
    st = await tempStack({ name: 'check' });
    await st.spec('app', fleetYaml('app', { count: 3 }));
    const r = await runCli(['apply', '--yes', '--stack', st.dir], { cwd: REPO });
    expect(r.code, r.stderr).toBe(0);
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('exits 0 with --detailed-exitcode when nothing drifted', async () => {
    const r = await runCli(['refresh', '--check', '--detailed-exitcode', '--stack', st.dir], { cwd: REPO });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('Drift check: 3 VMs checked, 0 differences (nothing written to the record).\n');
  });

  it('reports drift, exits 2 with --detailed-exitcode, and writes nothing to the record', async () => {
    // app/1's record lags one edge behind its data center (Starting -> Running is an edge); app/0 was powered off behind the
    // record's back (two edges: Running -> ShuttingDown -> PoweredOff); app/2's agent failed (BootFailed: no path leads there
    // from Running but through a failure state, which drift is never recorded into).
    const { stack } = await loadStack(st.dir, { cwd: REPO, env: {} });
    const record = await openRecord(stack!.recordUrl);
    const vms = await record.listVms('check');
    const app1 = vms.find((v) => v.address === 'app/1')!;
    await record.transitionVm(app1.id, app1.version, 'Starting', { actor: 'test' });
    await record.close();
    const app0 = vms.find((v) => v.address === 'app/0')!;
    const file = join(st.dir, '.fleet', 'sim', app0.dataCenter, `sim-${app0.dataCenter}.json`);
    const sim = JSON.parse(await readFile(file, 'utf8')) as { vms: { vmId: string; power: string; agent: string }[] };
    for (const v of sim.vms) if (v.vmId === app0.id) Object.assign(v, { power: 'off', agent: 'none' });
    await writeFile(file, JSON.stringify(sim));
    const app2 = vms.find((v) => v.address === 'app/2')!;
    const file2 = join(st.dir, '.fleet', 'sim', app2.dataCenter, `sim-${app2.dataCenter}.json`);
    const sim2 = JSON.parse(await readFile(file2, 'utf8')) as { vms: { vmId: string; agent: string }[] };
    for (const v of sim2.vms) if (v.vmId === app2.id) Object.assign(v, { agent: 'failed' });
    await writeFile(file2, JSON.stringify(sim2));

    const before = await recordSnapshot(st.dir);
    const text = await runCli(['refresh', '--check', '--detailed-exitcode', '--stack', st.dir], { cwd: REPO });
    expect(text.code, text.stderr).toBe(2);
    expect(text.stdout).toMatch(/^edge +\S+ +app\/1 .*one edge from Starting; `fleet refresh` would record it\n/m);
    expect(text.stdout).toMatch(/^edge +\S+ +app\/0 .*2 edges from Running \(Running -> ShuttingDown -> PoweredOff\); `fleet refresh` would record it\. It was powered off from inside its guest .*then `fleet apply`, boots it again/m);
    expect(text.stdout).toMatch(/^not-an-edge +\S+ +app\/2 /m);
    expect(text.stdout).toContain('Drift check: 3 VMs checked, 3 differences (nothing written to the record).\n');
    const json = await runCli(['refresh', '--check', '--detailed-exitcode', '--format', 'json', '--stack', st.dir], { cwd: REPO });
    expect(json.code).toBe(2);
    expectValid('refresh-output', doc(json));
    // Listed by data center, then address: compared by address here.
    expect((doc(json) as { drift: { kind: string; address: string }[] }).drift.map((d) => [d.kind, d.address]).sort((a, b) => (a[1] < b[1] ? -1 : 1))).toEqual([
      ['edge', 'app/0'],
      ['edge', 'app/1'],
      ['not-an-edge', 'app/2'],
    ]);
    // Without --detailed-exitcode, drift is a report: exit 0.
    expect((await runCli(['refresh', '--check', '--stack', st.dir], { cwd: REPO })).code).toBe(0);
    expect(await recordSnapshot(st.dir)).toEqual(before);

    // The writing refresh records app/1's edge and app/0's two; the check then still sees app/2.
    const write = await runCli(['refresh', '--detailed-exitcode', '--stack', st.dir], { cwd: REPO });
    expect(write.code).toBe(2);
    expect(await recordSnapshot(st.dir)).not.toEqual(before);
    const after = await runCli(['refresh', '--check', '--format', 'json', '--stack', st.dir], { cwd: REPO });
    expect((doc(after) as { drift: { kind: string }[] }).drift.map((d) => d.kind)).toEqual(['not-an-edge']);
    // Six refreshes and four record snapshots, each starting the embedded data centers: generous for a shared CI machine.
  }, 300_000);

  // A VM's name is the cloud's (an EC2 Name tag anyone with the console may edit): a refresh printed it as it was,
  // an escape sequence in it acting on the operator's terminal (here: clear the screen, then red).
  it('prints a name the data center reports with its unseen characters escaped', async () => {
    const { stack } = await loadStack(st.dir, { cwd: REPO, env: {} });
    const dc = stack!.dataCenters[0].name;
    const file = join(st.dir, '.fleet', 'sim', dc, `sim-${dc}.json`);
    const saved = await readFile(file, 'utf8');
    const sim = JSON.parse(saved) as { vms: { vmId: string; cloudId: string; name: string }[] };
    sim.vms.push({ ...sim.vms[0], vmId: '00000000-0000-4000-8000-0000000e5c00', cloudId: `sim-${dc}-esc`, name: 'evil\u001b[2J\u001b[31m' });
    await writeFile(file, JSON.stringify(sim));
    try {
      const r = await runCli(['refresh', '--check', '--stack', st.dir], { cwd: REPO });
      expect(r.stdout).toContain(`${dc} runs evil\\u001B[2J\\u001B[31m (sim-${dc}-esc`);
      expect(r.stdout.includes('\u001b')).toBe(false);
    } finally {
      await writeFile(file, saved);
    }
  }, 120_000);

  // A DMZ client that refused the CLI's token was reported as unreachable
  // (every failure to list a data center's VMs was): the person checked the
  // network instead of the token.
  it('a DMZ client refusing the token is apply.dmz-unauthorized, not unreachable', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fleet-unauthorized-'));
    const server = http.createServer((_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'unauthorized', message: 'bearer token not accepted' } }));
    });
    const dmz = await listenOnLoopback(server, new http.Agent());
    try {
      const yaml = (await readFile(join(st.dir, 'stack.yaml'), 'utf8'))
        .replace('metadata: { name: check }', 'metadata: { name: unauth }')
        .replace(/- name: richmond\n {6}address: embedded/, `- name: richmond\n      address: ${dmz.url}\n      auth: { tokenEnv: FLEET_TEST_TOKEN }`)
        .replace(/\n {6}sim: .*\n$/, '\n');
      await writeFile(join(dir, 'stack.yaml'), yaml);
      await mkdir(join(dir, 'specs'));
      await writeFile(join(dir, 'specs', 'app.yaml'), fleetYaml('app', { count: 1 }));
      await (await openRecord(`pglite://${join(dir, '.fleet', 'record')}`)).close(); // refresh makes none
      const r = await runCli(['refresh', '--check', '--format', 'json', '--stack', dir], { cwd: REPO, env: { FLEET_TEST_TOKEN: 'wrong' } });
      expect(r.code, r.stdout).toBe(1);
      expectValid('refresh-output', doc(r));
      expect(doc(r)).toMatchObject({ drift: [], diagnostics: [{ code: 'apply.dmz-unauthorized', address: 'richmond' }] });
      // It names the variable the token came from (auth.tokenEnv), and what to set it to.
      expect(r.stdout).toContain('Set FLEET_TEST_TOKEN to the token the DMZ client of richmond was started with.');
      expect(r.stdout).not.toContain('wrong');
    } finally {
      await dmz.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('exits 1 when a data center does not answer, naming it in an apply.dmz-unreachable diagnostic', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fleet-unreachable-'));
    try {
      const yaml = (await readFile(join(st.dir, 'stack.yaml'), 'utf8'))
        .replace('metadata: { name: check }', 'metadata: { name: unreach }')
        .replace(/- name: richmond\n {6}address: embedded/, '- name: richmond\n      address: http://127.0.0.1:9\n      auth: { tokenEnv: FLEET_TEST_TOKEN }')
        .replace(/\n {6}sim: .*\n$/, '\n');
      await writeFile(join(dir, 'stack.yaml'), yaml);
      await mkdir(join(dir, 'specs'));
      await writeFile(join(dir, 'specs', 'app.yaml'), fleetYaml('app', { count: 1 }));
      await (await openRecord(`pglite://${join(dir, '.fleet', 'record')}`)).close(); // refresh makes none
      const r = await runCli(['refresh', '--check', '--detailed-exitcode', '--format', 'json', '--stack', dir], { cwd: REPO, env: { FLEET_TEST_TOKEN: 't', FLEET_RETRY_BUDGET_MS: '300' } });
      expect(r.code, r.stdout).toBe(1);
      expectValid('refresh-output', doc(r));
      expect(doc(r)).toMatchObject({ drift: [], diagnostics: [{ code: 'apply.dmz-unreachable', address: 'richmond' }] });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
