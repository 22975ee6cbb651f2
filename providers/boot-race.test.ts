// A VM lost to a boot whose record lagged (the crash harness's flake:
// `web/1` left PoweredOff in the record, its VM terminated after a denied
// boot). A booting VM asks the boot endpoint for its disk key, and the
// authority checks it against the record; a VM the authority denies is
// terminated by the sim ("a VM the authority does not recognise is not
// allowed to live"). So whatever a crash or an outage cuts short, the VM of
// a boot that went out must find the record where its boot token is
// answered, also while the next apply carries its member on.
//
// Over the real pieces: a record, the authority, a sim data center and its
// DMZ client over loopback HTTP, with a proxy between the DMZ client and the
// authority that refuses (503, as an authority that is down) or holds chosen
// calls. The order of events is driven by those calls and by a gate in the
// sim's boot, never by a sleep.
import http from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { openRecord } from '../engine/record/index.ts';
import { bootAttempts } from '../engine/record/testing.ts';
import type { SqlRecord } from '../engine/record/record.ts';
import type { FleetRecord } from '../engine/record/types.ts';
import type { BatchStep, StepResult } from '../protocol/index.ts';
import { readSimState } from './drivers/sim/index.ts';
import { newVm, startTestWorld, transitionSteps, type TestWorld } from './testing.ts';
import { listenOnLoopback } from '../test/helpers/proxy.ts';

interface Call {
  call: string;
  body: { from?: string; to?: string; outcome?: string; vmId?: string };
}

/** What the proxy does with a batch of calls to the authority: pass it on, answer it 503 (the authority down), or hold it until the promise settles. */
type Verdict = 'pass' | 'refuse' | Promise<void>;

/** An HTTP proxy to the authority that asks `judge` about every batch. */
async function authorityProxy(upstream: string, judge: (calls: Call[]) => Verdict): Promise<{ url: string; close: () => Promise<void> }> {
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      let calls: Call[] = [];
      try {
        calls = ((JSON.parse(body.toString()) as { calls?: Call[] }).calls ?? []) as Call[];
      } catch {
        // not a batch (health): passed on
      }
      const verdict = judge(calls);
      if (verdict === 'refuse') {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'unavailable', message: 'the authority is down (test proxy)' } }));
        return;
      }
      const pass = () => {
        const target = new URL(req.url ?? '/', upstream);
        const up = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host }, agent }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        });
        up.on('error', () => res.destroy());
        up.end(body);
      };
      if (verdict === 'pass') pass();
      else void verdict.then(pass);
    });
  });
  return listenOnLoopback(server, agent);
}

/** An ok report of edge from -> to. */
const okReport = (c: Call, from: string, to: string) => (c.call === 'report' || c.call === 'advance') && JSON.stringify(c.body).includes(`"from":"${from}","to":"${to}","outcome":"ok"`);

let record: FleetRecord;
let world: TestWorld;
let proxy: { close: () => Promise<void> } | undefined;
/** The proxy's judge of the moment (each test sets its own). */
let judge: (calls: Call[]) => Verdict = () => 'pass';
/** The sims' boot time, asked at every (re)start. */
let bootMs = 1;

beforeAll(async () => {
  record = await openRecord('memory://');
  world = await startTestWorld({
    record,
    dataCenters: ['miami'],
    sim: () => ({ bootMs }),
    // A run goes as one run (advance, approvals ahead, write-behind), as fleet apply sends it; no retries: an error line ends it.
    client: { batch: true, retries: 0, baseDelayMs: 1 },
    dmz: { readyTimeoutMs: 5_000 },
    via: async (upstream) => {
      const p = await authorityProxy(upstream, (calls) => judge(calls));
      proxy = p;
      return p.url;
    },
  });
}, 120_000);
afterEach(() => {
  judge = () => 'pass';
  vi.restoreAllMocks();
});
afterAll(async () => {
  await world?.close();
  await proxy?.close();
  await record?.close();
});

/** A run of the DMZ client, as fleet apply sends a member: its answers, and the error that ended it early, if any. */
async function run(list: BatchStep[]): Promise<{ results: StepResult[]; error?: string }> {
  const results: StepResult[] = [];
  try {
    await world.dc('miami').client.run(list, (_k, r) => results.push(r));
    return { results };
  } catch (err) {
    return { results, error: (err as Error).message };
  }
}

const steps = transitionSteps;

/** The VM as its data center holds it (on disk). */
async function simVm(vmId: string) {
  return (await readSimState(world.dc('miami').stateDir, 'miami')).vms.find((v) => v.vmId === vmId);
}

/** Nothing was denied: no denied boot attempt, no `denied` history row. */
async function noDenial(vmId: string, address: string): Promise<void> {
  const attempts = await bootAttempts(record as SqlRecord, { vmId });
  expect(attempts.filter((a) => !a.approved)).toEqual([]);
  expect((await record.history(world.stack, address)).filter((h) => h.outcome === 'denied')).toEqual([]);
}

describe('a boot the record lags behind', () => {
  it('the report of the edge before the boot is lost (the authority down): the boot does not go out ahead of the record, and the next apply takes the VM to Running', async () => {
    const dc = world.dc('miami');
    const vm = newVm(world.stack, { fleet: 'lag', index: 0 });
    const path = ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting', 'Running'];
    // The authority is down for the report of PoweredOff -> PoweredOn (all of the DMZ client's sends of it).
    judge = (calls) => (calls.some((c) => okReport(c, 'PoweredOff', 'PoweredOn')) ? 'refuse' : 'pass');
    const first = await run([{ op: 'create', body: { idempotencyKey: 'lag-1/c', planId: 'lag-1', vm } }, ...steps(vm.id, path, 'lag-1')]);
    expect(first.results.map((r) => r.outcome)).toEqual(['ok', 'ok', 'ok']);
    expect(first.error).toMatch(/unreachable|503/);
    expect((await record.getVm(vm.id))?.state).toBe('PoweredOff');
    judge = () => 'pass';

    // Whatever went out meanwhile has settled: a VM whose boot went out has heard the authority's answer.
    const cloudId = first.results[2].vm!.cloudId!;
    await dc.driver.waitSettled(cloudId);
    // (Before the fix: the boot went out while the report was on its way; the VM asked with its token,
    // the record said PoweredOff, the boot was denied and the sim terminated the VM.)
    const settled = await simVm(vm.id);
    expect(settled, settled?.agentDetail ?? '').toMatchObject({ status: 'present' });

    // The next apply carries the member on from the record's PoweredOff.
    const again = await run(steps(vm.id, ['PoweredOff', 'PoweredOn', 'Starting', 'Running'], 'lag-2'));
    expect(again.error).toBeUndefined();
    expect(again.results.map((r) => [r.outcome, r.vm?.state])).toEqual([
      ['ok', 'PoweredOn'],
      ['ok', 'Starting'],
      ['ok', 'Running'],
    ]);
    expect((await record.getVm(vm.id))?.state).toBe('Running');
    expect(await simVm(vm.id)).toMatchObject({ status: 'present', agent: 'ready', diskUnlocked: true });
    await noDenial(vm.id, 'lag/0');
  }, 60_000);

  it('the boot went out and its report was lost (a crash): the next apply approves the boot edge again with a new token, and the resumed agent asking with the first one meanwhile is still answered; the VM is not terminated and reaches Running', async () => {
    const vm = newVm(world.stack, { fleet: 'again', index: 0 });
    const cloudIdOf = async () => (await simVm(vm.id))!.cloudId;
    // The agent stays quiet until the "crash" (the sim reads bootMs when it starts); the report of the boot never reaches the authority.
    bootMs = 600_000;
    await world.dc('miami').restart();
    judge = (calls) => (calls.some((c) => okReport(c, 'PoweredOn', 'Starting')) ? 'refuse' : 'pass');
    const path = ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting'];
    const first = await run([{ op: 'create', body: { idempotencyKey: 'again-1/c', planId: 'again-1', vm } }, ...steps(vm.id, path, 'again-1')]);
    expect(first.results.map((r) => r.outcome)).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(first.error).toMatch(/unreachable|503/);
    expect((await record.getVm(vm.id))?.state).toBe('PoweredOn');
    expect(await simVm(vm.id)).toMatchObject({ status: 'present', agent: 'booting' });

    // The crash: the data center's process starts again, and the VM's agent, resumed with its token, asks at once.
    // Its call to the authority is held until the next apply's boot edge is approved again (a new token).
    let release = () => {};
    const held = new Promise<void>((r) => (release = r));
    let heard = () => {};
    const asked = new Promise<void>((r) => (heard = r));
    let holding = true;
    judge = (calls) => {
      if (!holding || !calls.some((c) => c.call === 'boot')) return 'pass';
      holding = false;
      heard();
      return held;
    };
    bootMs = 1;
    const dc = world.dc('miami');
    await dc.restart();
    await asked;

    // The next apply's boot: approved again (the record's token replaced), then held before its cloud call
    // until the first token's answer reached the agent, and the agent acted on it.
    let open = () => {};
    const gate = new Promise<void>((r) => (open = r));
    let reached = () => {};
    const atBoot = new Promise<void>((r) => (reached = r));
    const boot = dc.driver.boot.bind(dc.driver);
    vi.spyOn(dc.driver, 'boot').mockImplementation(async (creds, ref, o) => {
      reached();
      await gate;
      return boot(creds, ref, o);
    });
    const again = run(steps(vm.id, ['PoweredOn', 'Starting', 'Running'], 'again-2'));
    await atBoot;
    release();
    const cloudId = await cloudIdOf();
    const settled = await dc.driver.waitSettled(cloudId);
    // (Before the fix: the first token was no longer the VM's, the boot was denied, the sim terminated the VM,
    // and the apply's boot found no VM: the record stayed PoweredOn with its VM gone.)
    expect(settled, (await simVm(vm.id))?.agentDetail ?? '').toMatchObject({ status: 'present', agent: 'ready' });
    open();

    const done = await again;
    expect(done.error).toBeUndefined();
    expect(done.results.map((r) => [r.outcome, r.vm?.state])).toEqual([
      ['ok', 'Starting'],
      ['ok', 'Running'],
    ]);
    expect((await record.getVm(vm.id))?.state).toBe('Running');
    expect(await simVm(vm.id)).toMatchObject({ status: 'present', agent: 'ready', diskUnlocked: true });
    await noDenial(vm.id, 'again/0');
    // Each token used once: the first by the resumed agent, the second by the boot the apply made.
    expect((await bootAttempts(record as SqlRecord, { vmId: vm.id })).filter((a) => a.approved)).toHaveLength(2);
  }, 60_000);
});
