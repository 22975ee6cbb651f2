// fleet apply end to end: real CLI (in-process), real PGlite record, the real
// authority and sim DMZ clients over loopback HTTP, the default policy pack.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '../engine/apply/index.ts';
import type { PlanDocument } from '../engine/plan/index.ts';
import { runCli } from './helpers/cli.ts';
import { REPO, fleetYaml, tempStack, type TempStack } from './helpers/stack.ts';
import { readWorld } from './helpers/world.ts';
import { createTestDatabase, pgCutProxy, testPostgresUrl } from '../engine/record/testing.ts';

interface World {
  vms: { address: string; state: string; dataCenter: string; size: { cpu: number }; image: string; id: string }[];
  /** Present VMs per data center as the sim clouds hold them. */
  cloud: { vmId: string; dataCenter: string; observedState: string }[];
}

/** The record's live VMs and every data center's present VMs. */
async function world(dir: string): Promise<World> {
  const { vms, cloud } = await readWorld(dir);
  return { vms, cloud: cloud.filter((v) => v.status === 'present') };
}

/** Every record VM exists exactly once in its data center, in the state the record holds, and nothing else runs. */
function expectConverged(w: World): void {
  const byId = new Map<string, number>();
  for (const v of w.cloud) byId.set(v.vmId, (byId.get(v.vmId) ?? 0) + 1);
  for (const vm of w.vms) {
    expect(byId.get(vm.id), `${vm.address} in the cloud`).toBe(1);
    const actual = w.cloud.find((c) => c.vmId === vm.id)!;
    expect(actual.dataCenter).toBe(vm.dataCenter);
    expect(actual.observedState, `${vm.address} state`).toBe(vm.state);
  }
  expect(w.cloud.length).toBe(w.vms.length);
}

interface ApplyEvent {
  type: string;
  planId?: string;
  code?: string;
  detail?: string;
  interrupted?: boolean;
  status?: string;
  notStarted?: number;
  succeeded?: number;
  failed?: number;
}

/**
 * `fleet apply --yes --format json` as a child process (a real process, so
 * it can be killed or interrupted); `onEvent` sees each JSON event and
 * `onStderr` all of stderr so far, each with the child to signal.
 */
function applyChild(
  dir: string,
  parallelism: number,
  on: { onEvent?: (e: ApplyEvent, child: ChildProcess) => void; onStderr?: (text: string, child: ChildProcess) => void; env?: NodeJS.ProcessEnv },
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; events: ApplyEvent[] }> {
  const child = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), 'apply', '--yes', '--format', 'json', '--parallelism', String(parallelism), '--stack', dir], {
    cwd: REPO,
    env: { ...process.env, NO_COLOR: '1', ...on.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const events: ApplyEvent[] = [];
  let stderr = '';
  let buf = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    on.onStderr?.(stderr, child);
  });
  child.stdout.on('data', (chunk: Buffer) => {
    buf += chunk.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const e = JSON.parse(buf.slice(0, nl)) as ApplyEvent;
      buf = buf.slice(nl + 1);
      events.push(e);
      on.onEvent?.(e, child);
    }
  });
  return new Promise((resolveExit) => child.on('exit', (code, signal) => resolveExit({ code, signal, stderr, events })));
}

const states = (w: World) => Object.fromEntries(w.vms.map((v) => [v.address, v.state]));

describe('fleet apply on a stack of two embedded data centers', () => {
  let st: TempStack;
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });

  beforeAll(async () => {
    st = await tempStack();
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('creates fleets over both data centers', async () => {
    await st.spec('app', fleetYaml('app', { count: 3 }));
    await st.spec('jobs', fleetYaml('jobs', { count: 1, state: 'PoweredOff', encryptedDisk: false }));
    const r = await fleet('apply', '--yes');
    expect(r.stderr).not.toContain('error');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Plan: 4 to create');
    expect(r.stdout).toContain('Apply complete: 4 VMs changed, 0 failed');
    const w = await world(st.dir);
    expect(states(w)).toEqual({ 'app/0': 'Running', 'app/1': 'Running', 'app/2': 'Running', 'jobs/0': 'PoweredOff' });
    expect(new Set(w.vms.map((v) => v.dataCenter))).toEqual(new Set(['miami', 'richmond']));
    expectConverged(w);
    expect((await fleet('plan', '--detailed-exitcode')).code).toBe(0);
  });

  it('refuses a fresh plan without a terminal and without --yes, changing nothing', async () => {
    await st.spec('app', fleetYaml('app', { count: 4 }));
    const r = await fleet('apply');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('apply.confirmation-required');
    expect((await world(st.dir)).vms).toHaveLength(4);
  });

  it('scales up, starts a stopped fleet, then scales down from the highest index', async () => {
    await st.spec('jobs', fleetYaml('jobs', { count: 1, state: 'Running', encryptedDisk: false }));
    let r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Plan: 1 to create, 1 to transition');
    expect(states(await world(st.dir))).toMatchObject({ 'app/3': 'Running', 'jobs/0': 'Running' });

    await st.spec('app', fleetYaml('app', { count: 2 }));
    r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('2 to delete');
    const w = await world(st.dir);
    expect(Object.keys(states(w)).sort()).toEqual(['app/0', 'app/1', 'jobs/0']);
    expectConverged(w);
  });

  it('stops a fleet, then resizes it in place', async () => {
    await st.spec('app', fleetYaml('app', { count: 2, state: 'PoweredOff' }));
    let r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('2 to transition');
    expect(states(await world(st.dir))).toMatchObject({ 'app/0': 'PoweredOff', 'app/1': 'PoweredOff' });

    await st.spec('app', fleetYaml('app', { count: 2, state: 'Running', cpu: 4 }));
    r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('2 to update');
    const w = await world(st.dir);
    expect(w.vms.filter((v) => v.address.startsWith('app/')).map((v) => [v.state, v.size.cpu])).toEqual([
      ['Running', 4],
      ['Running', 4],
    ]);
    expectConverged(w);
  });

  it('replaces members on an image change, the new VM before the old one goes', async () => {
    const before = await world(st.dir);
    const oldIds = before.vms.filter((v) => v.address.startsWith('app/')).map((v) => v.id);
    await st.spec('app', fleetYaml('app', { count: 2, state: 'Running', cpu: 4, image: 'ubuntu-24.04' }));
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('2 to replace');
    const w = await world(st.dir);
    const app = w.vms.filter((v) => v.address.startsWith('app/'));
    expect(app.map((v) => [v.address, v.state, v.image])).toEqual([
      ['app/0', 'Running', 'ubuntu-24.04'],
      ['app/1', 'Running', 'ubuntu-24.04'],
    ]);
    expect(app.some((v) => oldIds.includes(v.id))).toBe(false);
    expectConverged(w);
    const history = await fleet('history', 'app/0', '--format', 'json');
    expect(history.stdout).toContain('deposed');
  });

  it('applies a saved plan exactly, and refuses one made stale by another apply', async () => {
    await st.spec('jobs', fleetYaml('jobs', { count: 2, state: 'Running', encryptedDisk: false }));
    const out = join(st.dir, 'plan.json');
    let r = await fleet('plan', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    r = await fleet('apply', out);
    expect(r.code, r.stderr).toBe(0);
    expect(states(await world(st.dir))).toMatchObject({ 'jobs/1': 'Running' });

    await st.spec('jobs', fleetYaml('jobs', { count: 3, state: 'Running', encryptedDisk: false }));
    const stale = join(st.dir, 'stale.json');
    expect((await fleet('plan', '--out', stale)).code).toBe(0);
    await st.spec('jobs', fleetYaml('jobs', { count: 2, state: 'PoweredOff', encryptedDisk: false }));
    expect((await fleet('apply', '--yes')).code).toBe(0);
    r = await fleet('apply', stale);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('apply.stale-plan');
    expect(Object.keys(states(await world(st.dir))).filter((a) => a.startsWith('jobs/'))).toEqual(['jobs/0', 'jobs/1']);
  });

  it('deletes a removed fleet and reports no drift afterwards', async () => {
    await st.spec('jobs', null);
    let r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('2 to delete');
    const w = await world(st.dir);
    expect(Object.keys(states(w))).toEqual(['app/0', 'app/1']);
    expectConverged(w);
    r = await fleet('refresh', '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).drift).toEqual([]);
  });

  it('prints one JSON event per line with --format json', async () => {
    await st.spec('app', fleetYaml('app', { count: 3, state: 'Running', cpu: 4, image: 'ubuntu-24.04' }));
    const r = await fleet('apply', '--yes', '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string });
    expect(events[0].type).toBe('plan');
    expect(events.map((e) => e.type)).toContain('step');
    expect(events.at(-1)).toMatchObject({ type: 'summary', succeeded: 1, failed: 0 });
  });
});

describe('fleet refresh and plan --refresh', () => {
  let st: TempStack;
  beforeAll(async () => {
    st = await tempStack({ name: 'drift' });
    await st.spec('app', fleetYaml('app', { count: 3 }));
    const r = await runCli(['apply', '--yes', '--stack', st.dir], { cwd: REPO });
    expect(r.code, r.stderr).toBe(0);
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('records a difference along the diagram\'s edges, flags one no path leads to, and reports unknown VMs', async () => {
    const s = await openSession(st.dir, { cwd: REPO, env: process.env });
    const vms = await s.record.listVms(s.stack.name);
    // The record lags behind the cloud by one edge for app/1 (Starting -> Running is an edge) ...
    const app1 = vms.find((v) => v.address === 'app/1')!;
    await s.record.transitionVm(app1.id, app1.version, 'Starting', { actor: 'test' });
    await s.close();
    // ... app/0 was powered off behind the record's back (two edges: Running -> ShuttingDown -> PoweredOff),
    // app/2's agent failed (BootFailed: no path from Running but through a failure state),
    // and a VM nobody asked for runs in the data center of app/2.
    const app0 = vms.find((v) => v.address === 'app/0')!;
    const app2 = vms.find((v) => v.address === 'app/2')!;
    for (const dc of new Set([app0.dataCenter, app2.dataCenter])) {
      const file = join(st.dir, '.fleet', 'sim', dc, `sim-${dc}.json`);
      const state = JSON.parse(await readFile(file, 'utf8')) as { vms: { vmId: string; cloudId: string; power: string; agent: string }[] };
      for (const vm of state.vms) {
        if (vm.vmId === app0.id) Object.assign(vm, { power: 'off', agent: 'none' });
      }
      if (dc === app2.dataCenter) {
        const rogue = { ...state.vms.find((v) => v.vmId === app2.id)!, vmId: '00000000-0000-4000-8000-00000000beef', cloudId: `sim-${dc}-rogue` };
        for (const vm of state.vms) if (vm.vmId === app2.id) vm.agent = 'failed';
        state.vms.push(rogue);
      }
      await writeFile(file, JSON.stringify(state));
    }

    const r = await runCli(['refresh', '--format', 'json', '--stack', st.dir], { cwd: REPO });
    expect(r.code, r.stderr).toBe(0);
    const drift = (JSON.parse(r.stdout) as { drift: { kind: string; address: string; recordState: string | null; actualState: string | null }[] }).drift;
    expect(drift.map((d) => [d.kind, d.address, d.recordState, d.actualState]).sort()).toEqual(
      [
        ['recorded', 'app/0', 'Running', 'PoweredOff'],
        ['recorded', 'app/1', 'Starting', 'Running'],
        ['not-an-edge', 'app/2', 'Running', 'BootFailed'],
        ['unknown', `sim-${app2.dataCenter}-rogue`, null, 'Running'],
      ].sort(),
    );
    const w = await world(st.dir);
    expect(states(w)).toEqual({ 'app/0': 'PoweredOff', 'app/1': 'Running', 'app/2': 'Running' });

    const history = await runCli(['history', 'app/0', '--stack', st.dir, '--format', 'json'], { cwd: REPO });
    const rows = (JSON.parse(history.stdout) as { history: { from: string; to: string; outcome: string }[] }).history.filter((h) => h.outcome === 'drift');
    expect(rows.map((h) => `${h.from} -> ${h.to}`)).toEqual(['Running -> ShuttingDown', 'ShuttingDown -> PoweredOff']);

    // The plan starts from what was observed: app/0 boots again.
    const plan = await runCli(['plan', '--refresh', '--stack', st.dir], { cwd: REPO });
    expect(plan.stderr).toContain('refresh: not-an-edge');
    expect(plan.stdout).toContain('app/0 transition');
  });
});

describe('an apply killed with SIGKILL half-way', () => {
  let st: TempStack;
  beforeAll(async () => {
    st = await tempStack({ latencyMs: 40, bootMs: 40, gate: true });
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('converges when run again: every VM once, the record matches the data centers', async () => {
    await st.spec('big', fleetYaml('big', { count: 6 }));
    // 8 calls go through (8 steps done at least, each answered call one), the rest are held (of 24): the apply is
    // still running when it is killed after its 8th step, whatever the machine's load.
    await writeFile(st.gate, JSON.stringify({ calls: 8 }));
    let doneSteps = 0;
    const killed = await applyChild(st.dir, 2, {
      onEvent: (e, child) => {
        if (e.type === 'step' && e.status === 'done' && ++doneSteps === 8) child.kill('SIGKILL');
      },
    });
    expect(killed.signal).toBe('SIGKILL');
    await rm(st.gate);

    const before = await world(st.dir);
    expect(before.vms.length).toBeGreaterThan(0);
    expect(before.vms.some((v) => v.state !== 'Running')).toBe(true);

    const r = await runCli(['apply', '--yes', '--stack', st.dir], { cwd: REPO });
    expect(r.stderr).toContain('was interrupted');
    expect(r.code, r.stderr).toBe(0);
    const after = await world(st.dir);
    expect(Object.values(states(after))).toEqual(Array(6).fill('Running'));
    expectConverged(after);

    const plan = await runCli(['plan', '--format', 'json', '--stack', st.dir], { cwd: REPO });
    expect((JSON.parse(plan.stdout) as { plan: PlanDocument }).plan.summary.noop).toBe(6);
  });
});

// The gate (sim gateFile) holds every cloud call until the test lets it go: the apply is certainly mid-apply, its
// first members in flight, when the Ctrl-C comes (a loaded machine could let it end first, and exit 0).
describe('fleet apply interrupted with Ctrl-C', () => {
  let st: TempStack;
  beforeAll(async () => {
    st = await tempStack({ gate: true });
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('lets the VMs in flight finish, starts no more, exits 130, and the next apply does the rest', async () => {
    await st.spec('calm', fleetYaml('calm', { count: 8 }));
    await writeFile(st.gate, JSON.stringify({ calls: 0 }));
    let sent = false;
    let heard = false;
    const { code, stderr, events } = await applyChild(st.dir, 1, {
      onEvent: (e, child) => {
        if (!sent && e.type === 'step' && e.status === 'done') sent = child.kill('SIGINT');
      },
      // Its calls go on once it has said it starts no more VMs: the VMs in flight finish.
      onStderr: (text) => {
        if (heard || !text.includes('SIGINT: no further VM')) return;
        heard = true;
        void rm(st.gate);
      },
    });
    expect(code, stderr).toBe(130);
    expect(stderr).toContain('SIGINT: no further VM will be started');
    const summary = events.find((e) => e.type === 'summary');
    expect(summary?.notStarted).toBeGreaterThan(0);
    // Every VM the apply started is whole: nothing was left half-way.
    const before = await world(st.dir);
    expect(before.vms.length).toBe(summary?.succeeded);
    expect(before.vms.length).toBeLessThan(8);
    expect(new Set(before.vms.map((v) => v.state))).toEqual(new Set(['Running']));
    expectConverged(before);

    const r = await runCli(['apply', '--yes', '--stack', st.dir], { cwd: REPO });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('was interrupted');
    const after = await world(st.dir);
    expect(Object.values(states(after))).toEqual(Array(8).fill('Running'));
    expectConverged(after);
  });

  it('a second Ctrl-C stops at once; the next apply notes what was in flight and converges', async () => {
    await st.spec('calm', fleetYaml('calm', { count: 14 }));
    // Held until after the second Ctrl-C: the VMs in flight cannot finish first (exit 130 without "stopping now").
    await writeFile(st.gate, JSON.stringify({ calls: 0 }));
    let sent = false;
    let again = false;
    const { code, stderr } = await applyChild(st.dir, 2, {
      // At the first step answered, the VMs it started still on their way; the second once the first was taken (a signal sent while one is pending is merged with it).
      onEvent: (e, child) => {
        if (!sent && e.type === 'step' && e.status === 'done') sent = child.kill('SIGINT');
      },
      onStderr: (text, child) => {
        if (!again && text.includes('SIGINT: no further VM')) again = child.kill('SIGINT');
      },
    });
    expect(code, stderr).toBe(130);
    expect(stderr).toContain('SIGINT again: stopping now');
    await rm(st.gate);

    const r = await runCli(['apply', '--yes', '--stack', st.dir], { cwd: REPO });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('was interrupted');
    const after = await world(st.dir);
    expect(Object.values(states(after))).toEqual(Array(14).fill('Running'));
    expectConverged(after);
  });

  it('a Ctrl-C once the summary is out stops nothing: the locks are released, the record closed, exit 0', async () => {
    await st.spec('calm', fleetYaml('calm', { count: 16 }));
    let sent = false;
    const { code, signal, stderr, events } = await applyChild(st.dir, 4, {
      // The summary event comes before the locks are released and the embedded services and record closed.
      onEvent: (e, child) => {
        if (!sent && e.type === 'summary') sent = child.kill('SIGINT');
      },
    });
    expect(sent).toBe(true);
    // Before: Node's default SIGINT (the handler was gone): killed by the signal after "Apply complete", locks left behind.
    expect({ code, signal }, stderr).toEqual({ code: 0, signal: null });
    expect(events.find((e) => e.type === 'summary')?.failed).toBe(0);
    expect(stderr).not.toContain('no further VM');
    const r = await runCli(['apply', '--yes', '--stack', st.dir], { cwd: REPO });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('broke lock');
    expect(r.stderr).not.toContain('was interrupted');
  });
});

const pgUrl = testPostgresUrl();

describe.skipIf(!pgUrl)('fleet apply whose PostgreSQL record goes away mid-apply', () => {
  it('stops starting VMs, says which apply stopped and that the next apply closes it, exits 1; the next apply records it interrupted and converges', async () => {
    const db = await createTestDatabase(pgUrl!);
    const proxy = await pgCutProxy(db.url);
    const st = await tempStack({ latencyMs: 10 });
    try {
      const file = join(st.dir, 'stack.yaml');
      await writeFile(file, (await readFile(file, 'utf8')).replace('pglite://.fleet/record', proxy.url));
      await st.spec('calm', fleetYaml('calm', { count: 8 }));
      let cut = false;
      const { code, stderr, events } = await applyChild(st.dir, 1, {
        // A short retry budget: the record stays away past it.
        env: { FLEET_RETRY_BUDGET_MS: '500' },
        onEvent: (e) => {
          if (!cut && e.type === 'step' && e.status === 'done') {
            cut = true;
            proxy.cut(3_600_000);
          }
        },
      });
      expect(code, stderr).toBe(1);
      expect(stderr).not.toMatch(/Unhandled|TypeError|\n\s+at .*:\d+:\d+\)?\n/);
      const planId = events.find((e) => e.type === 'plan')?.planId;
      const stopped = events.find((e) => e.type === 'diagnostic' && e.code === 'apply.stopped');
      expect(stopped?.detail).toContain(`Apply ${planId} stopped mid-way: the record failed under it (below).`);
      expect(stopped?.detail).toContain('the next `fleet apply` of fleet calm records it interrupted and closes its unanswered steps.');
      expect(events.some((e) => e.type === 'diagnostic' && e.code === 'record.unreachable')).toBe(true);
      // The summary is still the last event, and says the apply did not complete.
      expect(events.at(-1)).toMatchObject({ type: 'summary', interrupted: true });
      expect(events.at(-1)?.succeeded).toBeLessThan(8);

      proxy.restore();
      const r = await runCli(['apply', '--yes', '--stack', st.dir], { cwd: REPO });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(new RegExp(`note: apply ${planId} (was interrupted|stopped before its end)`));
      const s = await openSession(st.dir, { cwd: REPO, env: process.env });
      try {
        expect((await s.record.listPlans(s.stack.name, { id: planId! }))[0]?.result).toBe('interrupted');
      } finally {
        await s.close();
      }
      const after = await world(st.dir);
      expect(Object.values(states(after))).toEqual(Array(8).fill('Running'));
      expectConverged(after);
    } finally {
      await proxy.close();
      await st.remove();
      await db.drop();
    }
  }, 120_000);
});
