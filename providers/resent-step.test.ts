// A step sent again after a DMZ client lost its answer, over the real pieces
// (a record, the authority, a sim data center and its DMZ client over
// loopback HTTP): the DMZ client crashed after the authority recorded the
// step's report but before its idempotency log kept the answer, so the
// step, sent again with its key, is authorized afresh on a VM it moved
// itself. It is answered done (`carried out already`), with or without a
// plan id; before, a request without one (a Pulumi program, a direct caller)
// was vetoed (state-moved, or vm-retired after a delete's last edge), the
// veto written into the VM's history and kept under the step's key, so the
// step could never succeed. A different request for the same edge is still
// vetoed: the authority recognizes the step by its own row of the step's
// report (its request id, made from the key and the request), not by what
// the request says.
//
// The same holds without any crash: a report the authority recorded whose
// answer was lost on the way back (every send of it), so the DMZ client
// answered 503 authority-unreachable and its caller sent the step again.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRecord } from '../engine/record/index.ts';
import type { FleetRecord } from '../engine/record/types.ts';
import { idempotencyLogFile } from './dmz-client/idempotency.ts';
import type { BatchStep, StepResult } from '../protocol/index.ts';
import { TO_RUNNING, newVm, startTestWorld, type TestWorld } from './testing.ts';
import { listenOnLoopback } from '../test/helpers/proxy.ts';

/** What the proxy in front of the authority does with a batch of the DMZ client's calls: pass it on; pass it on and lose its answer (503); refuse it (503) unseen. */
type Verdict = 'pass' | 'lose' | 'refuse';
let judge: (body: string) => Verdict = () => 'pass';

async function authorityProxy(upstream: string): Promise<{ url: string; close(): Promise<void> }> {
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const verdict = judge(body.toString());
      const down = () => res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'unavailable', message: 'the authority is down (test proxy)' } }));
      if (verdict === 'refuse') return down();
      const target = new URL(req.url ?? '/', upstream);
      const up = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host }, agent }, (answer) => {
        if (verdict === 'pass') {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        // Recorded by the authority; the answer is lost on the way back.
        answer.resume();
        answer.on('end', down);
      });
      up.on('error', () => res.destroy());
      up.end(body);
    });
  });
  return listenOnLoopback(server, agent);
}

let record: FleetRecord;
let world: TestWorld;
let proxy: { close(): Promise<void> } | undefined;
beforeAll(async () => {
  record = await openRecord('memory://');
  world = await startTestWorld({
    record,
    dataCenters: ['miami'],
    sim: { bootMs: 5 },
    via: async (upstream) => {
      const p = await authorityProxy(upstream);
      proxy = p;
      return p.url;
    },
  });
}, 120_000);
afterAll(async () => {
  await world?.close();
  await proxy?.close();
  await record?.close();
});

/** The steps of a member along `path` (the first state its current), keyed by `prefix`. */
function steps(vmId: string, path: readonly string[], planId: string | null, prefix: string): BatchStep[] {
  return path.slice(1).map((to, i) => {
    const body = { idempotencyKey: `${prefix}/${vmId}/${path[i]}`, planId, from: path[i], to };
    return to === 'Deleted' ? { op: 'delete', vmId, body } : { op: 'transition', vmId, body };
  });
}

async function run(list: BatchStep[]): Promise<StepResult[]> {
  const out: StepResult[] = [];
  await world.dc('miami').client.run(list, (_k, r) => out.push(r));
  return out;
}

/** The DMZ client dies after the authority recorded `lost`'s reports but before its log kept their answers; it starts again. */
async function crashLosing(lost: readonly BatchStep[]): Promise<void> {
  const dc = world.dc('miami');
  const log = idempotencyLogFile(dc.stateDir);
  const kept = (await readFile(log, 'utf8')).split('\n').filter((l) => l !== '' && !lost.some((s) => l.includes(`"${s.body.idempotencyKey}"`)));
  await writeFile(log, `${kept.join('\n')}\n`);
  await dc.restart();
}

const vetoes = async (address: string) => (await record.history(world.stack, address)).filter((h) => h.outcome === 'vetoed');

describe.each([
  { who: 'with a plan id (fleet apply)', planId: 'plan-r' as string | null },
  { who: 'without a plan id (a Pulumi program, a direct caller)', planId: null },
])('a step whose answer a DMZ client restart lost, $who', ({ planId }) => {
  it('is answered done when sent again with its key, and writes no veto', async () => {
    const fleet = `up-${planId ?? 'none'}`;
    const vm = newVm(world.stack, { fleet });
    const prefix = randomUUID().slice(0, 8);
    const all: BatchStep[] = [{ op: 'create', body: { idempotencyKey: `${prefix}/c`, planId, vm } }, ...steps(vm.id, TO_RUNNING, planId, prefix)];
    expect((await run(all)).map((r) => r.outcome)).toEqual(all.map(() => 'ok'));
    await crashLosing(all.slice(-3));
    // The caller sends what it had no answer for again, same keys.
    const again = await run(all.slice(-3));
    expect(again.map((r) => r.outcome)).toEqual(['ok', 'ok', 'ok']);
    expect(again.map((r) => r.vm?.state)).toEqual(['Running', 'Running', 'Running']);
    expect(again[0].reason).toContain('carried out already');
    expect((await record.getVm(vm.id))?.state).toBe('Running');
    expect(await world.dc('miami').client.getVm(vm.id)).toMatchObject({ status: 'present', agent: 'ready' });
    expect(await vetoes(`${fleet}/0`)).toEqual([]);

    // A different request for an edge the VM has passed (another key; with a plan id, another plan's) is stale: vetoed.
    const other = steps(vm.id, ['Starting', 'Running'], planId === null ? null : 'plan-other', `${prefix}-other`);
    const stale = await run(other);
    expect(stale[0]).toMatchObject({ outcome: 'vetoed', decision: 'vetoed' });
    expect(stale[0].reason).toContain('the request assumes VM');
    expect(await vetoes(`${fleet}/0`)).toHaveLength(1);
  }, 120_000);

  it("a delete's last edge, which retired the VM, is answered done when sent again; another request for it is vetoed", async () => {
    const fleet = `down-${planId ?? 'none'}`;
    const vm = newVm(world.stack, { fleet });
    const prefix = randomUUID().slice(0, 8);
    const up: BatchStep[] = [{ op: 'create', body: { idempotencyKey: `${prefix}/c`, planId, vm } }, ...steps(vm.id, TO_RUNNING, planId, prefix)];
    expect((await run(up)).every((r) => r.outcome === 'ok')).toBe(true);
    const down = steps(vm.id, ['Running', 'ShuttingDown', 'PoweredOff', 'BeingDeleted', 'Deleted'], planId, `${prefix}-down`);
    expect((await run(down)).map((r) => r.outcome)).toEqual(down.map(() => 'ok'));
    await crashLosing(down.slice(-1));
    const again = await run(down.slice(-1));
    expect(again[0]).toMatchObject({ outcome: 'ok', vm: { state: 'Deleted' } });
    expect(again[0].reason).toContain('carried out already');
    expect(await vetoes(`${fleet}/0`)).toEqual([]);
    const other = steps(vm.id, ['BeingDeleted', 'Deleted'], planId === null ? null : 'plan-other', `${prefix}-other`);
    expect((await run(other))[0]).toMatchObject({ outcome: 'vetoed' });
  }, 120_000);
});

describe.each([
  { who: 'with a plan id', planId: 'plan-l' as string | null },
  { who: 'without a plan id', planId: null },
])('a step whose report the authority recorded but whose answer was lost, $who', ({ planId }) => {
  it.each([
    { report: 'recorded, every answer of it lost', verdict: 'lose' as Verdict },
    { report: 'never recorded (the authority down for every send)', verdict: 'refuse' as Verdict },
  ])('report $report: the step sent again is ok, the VM moved once, no veto', async ({ verdict }) => {
    const fleet = `lost-${verdict}-${planId ?? 'none'}`;
    const vm = newVm(world.stack, { fleet });
    const prefix = randomUUID().slice(0, 8);
    const up: BatchStep[] = [{ op: 'create', body: { idempotencyKey: `${prefix}/c`, planId, vm } }, ...steps(vm.id, TO_RUNNING, planId, prefix)];
    expect((await run(up)).every((r) => r.outcome === 'ok')).toBe(true);
    // Every send of the report of ShuttingDown -> PoweredOff (the DMZ client's 4) meets the verdict; then the authority is back.
    let sends = 0;
    judge = (body) => (body.includes('"call":"report"') && body.includes('"from":"ShuttingDown","to":"PoweredOff","outcome":"ok"') && sends++ < 4 ? verdict : 'pass');
    try {
      const down = steps(vm.id, ['Running', 'ShuttingDown', 'PoweredOff'], planId, `${prefix}-down`);
      // The step answers 503 authority-unreachable; the caller (DmzHttpClient) sends it again with its key.
      const results = await run(down);
      // Recorded: the step sent again is found done, not reported again. Never recorded: it is carried out and reported again.
      expect(sends).toBe(verdict === 'lose' ? 4 : 5);
      expect(results.map((r) => r.outcome)).toEqual(['ok', 'ok']);
      expect(results[1].vm?.state).toBe('PoweredOff');
      if (verdict === 'lose') expect(results[1].reason).toContain('carried out already');
    } finally {
      judge = () => 'pass';
    }
    expect((await record.getVm(vm.id))?.state).toBe('PoweredOff');
    const history = await record.history(world.stack, `${fleet}/0`);
    expect(history.filter((h) => h.outcome === 'vetoed')).toEqual([]);
    expect(history.filter((h) => h.actor === 'dmz-client:miami' && h.from === 'ShuttingDown' && h.to === 'PoweredOff')).toHaveLength(1);
  }, 120_000);
});
