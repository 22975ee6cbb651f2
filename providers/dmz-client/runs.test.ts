// Runs without HTTP: chainAfter and decidedStep from tables; whole runs over
// the step runner of ./testing.ts (the real authority in-process, a real
// sim), their lines collected by a `part` of the test's own.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { WireError, errorAnswer, type LineAnswer, type Part } from '../../protocol/index.ts';
import type { AuthorityVm } from '../../protocol/index.ts';
import { ADVANCE_NEXT_MAX } from '../../protocol/index.ts';
import { openRecord } from '../../engine/record/index.ts';
import type { FleetRecord } from '../../engine/record/types.ts';
import type { BatchStep, StepResult } from '../../protocol/index.ts';
import { createRequest, newVm } from '../testing.ts';
import { Lanes } from './lanes.ts';
import type { RequestDefaults } from './requests.ts';
import { Runs, chainAfter, decidedStep } from './runs.ts';
import { edge, startStepWorld, type StepWorld } from './testing.ts';

const D: RequestDefaults = { dataCenter: 'miami', initial: 'Requested', terminal: 'Deleted' };

const create = (vmId: string): BatchStep => ({ op: 'create', body: { idempotencyKey: `c-${vmId}`, planId: 'p', vm: { ...newVm('s'), id: vmId } } });
const move = (vmId: string, from: string, to: string): BatchStep => ({ op: 'transition', vmId, body: edge(from, to) });
const resize = (vmId: string, state: string): BatchStep => ({ op: 'transition', vmId, body: { ...edge(state, state), operation: 'resize', size: { cpu: 2, memoryGiB: 2, diskGiB: 2 } } });
/** A delete naming no state: it leads to the terminal state. */
const remove = (vmId: string, from: string): BatchStep => ({ op: 'delete', vmId, body: { idempotencyKey: `d-${vmId}`, planId: 'plan-1', from } });

describe('chainAfter: the steps a step\'s advance asks about', () => {
  const long = Array.from({ length: ADVANCE_NEXT_MAX + 3 }, (_, k) => move('a', k % 2 ? 'Y' : 'X', k % 2 ? 'X' : 'Y'));
  it.each([
    ['a create and its VM\'s edges, each from where the one before leads', [create('a'), move('a', 'Requested', 'BeingCreated'), move('a', 'BeingCreated', 'PoweredOff'), move('a', 'PoweredOff', 'PoweredOn')], 0, true, [
      '1 transition Requested>BeingCreated',
      '2 transition BeingCreated>PoweredOff',
      '3 transition PoweredOff>PoweredOn',
    ]],
    ['the same without a pack: the next edge only', [create('a'), move('a', 'Requested', 'BeingCreated'), move('a', 'BeingCreated', 'PoweredOff')], 0, false, ['1 transition Requested>BeingCreated']],
    ['from a step in the middle', [move('a', 'A', 'B'), move('a', 'B', 'C'), move('a', 'C', 'D')], 1, true, ['2 transition C>D']],
    ['the run\'s last step asks about nothing', [move('a', 'A', 'B'), move('a', 'B', 'C')], 1, true, []],
    ['another VM\'s step ends the chain', [move('a', 'A', 'B'), move('b', 'B', 'C')], 0, true, []],
    ['a step from elsewhere than where the one before leads ends it', [move('a', 'A', 'B'), move('a', 'C', 'D')], 0, true, []],
    ['a create ends it', [move('a', 'A', 'B'), create('a')], 0, true, []],
    ['a resize is asked as a resize', [move('a', 'BeingCreated', 'PoweredOff'), resize('a', 'PoweredOff'), move('a', 'PoweredOff', 'PoweredOn')], 0, true, [
      '1 resize PoweredOff>PoweredOff',
      '2 transition PoweredOff>PoweredOn',
    ]],
    ['a delete naming no state leads to the terminal state', [move('a', 'PoweredOff', 'BeingDeleted'), remove('a', 'BeingDeleted'), move('a', 'Deleted', 'Gone')], 0, true, [
      '1 transition BeingDeleted>Deleted',
      '2 transition Deleted>Gone',
    ]],
    ['at most ADVANCE_NEXT_MAX steps', long, 0, true, long.slice(1, ADVANCE_NEXT_MAX + 1).map((s, j) => `${j + 1} transition ${(s as { body: { from: string } }).body.from}>${(s as { body: { to: string } }).body.to}`)],
  ] as const)('%s', (_name, steps, k, pastFirst, want) => {
    const got = chainAfter(D, steps, k, pastFirst);
    expect(got.map((c) => `${c.k} ${c.request.kind} ${c.request.from}>${c.request.to}`)).toEqual(want);
    for (const c of got) expect(c.request).toMatchObject({ dataCenter: 'miami', vmId: 'a', planId: 'plan-1' });
  });
});

describe('decidedStep: what an advance decided for a later step', () => {
  const vm: AuthorityVm = { id: 'a', address: 'web/0', name: 'n', size: { cpu: 1, memoryGiB: 1, diskGiB: 1 }, dataCenter: 'miami', state: 'BeingCreated', cloudId: null, realImage: 'i', encryptedDisk: false, version: 3 };
  const request = chainAfter(D, [create('a'), move('a', 'Requested', 'BeingCreated')], 0, true)[0].request;
  const authorize = { decision: 'approved' as const, reason: 'an edge', operation: 'none' };

  it('moved at once: the step is answered with its move, asking nothing', () => {
    expect(decidedStep(request, { authorize, moved: { vm, effect: 'moved' } })).toEqual({
      request,
      done: { requestId: request.requestId, decision: 'approved', reason: 'an edge', outcome: 'ok', operation: 'none', vm: { id: 'a', address: 'web/0', state: 'BeingCreated', cloudId: null, realImage: 'i', version: 3 } },
    });
  });

  it('authorized (or approved ahead): the step starts with that approval', () => {
    expect(decidedStep(request, { authorize: { ...authorize, operation: 'createVm' } })).toEqual({ request, ahead: { ...authorize, operation: 'createVm' } });
  });
});

let record: FleetRecord;
beforeAll(async () => {
  record = await openRecord('memory://');
});
afterAll(async () => {
  await record.close();
});

let w: StepWorld | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await w?.close();
  w = undefined;
});

/** A batch's `part` without HTTP: runs the step and keeps its line `[k, outcome or error code]`. */
function lines() {
  const seen: [number, string][] = [];
  const part: Part = (k, work) =>
    work()
      .then(
        (body): LineAnswer => ({ status: 200, body }),
        (err: Error) => errorAnswer(err),
      )
      .then((a) => {
        seen.push([k, a.status === 200 ? (a.body as StepResult).outcome : (a.body as { error: { code: string } }).error.code]);
        return a;
      });
  return { part, seen };
}

/** A new VM's run along `path` (its first state the initial one). */
function runOf(world: StepWorld, path: readonly string[], index = 0): { vmId: string; steps: BatchStep[] } {
  const vm = newVm(world.stack, { index });
  return { vmId: vm.id, steps: [{ op: 'create', body: createRequest(vm) }, ...path.slice(1).map((to, k) => move(vm.id, path[k], to))] };
}

const TO_POWERED_ON = ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn'];

describe('Runs: a member\'s steps at once, over the step runner', () => {
  const runs = (world: StepWorld, lanes = new Lanes(), chainPastFirst = true) => new Runs({ ...world.defaults, steps: world.steps, lanes, chainPastFirst });

  it('a new VM to PoweredOn: one advance, each step on its own line in order, the reports written behind', async () => {
    w = await startStepWorld(record);
    const { vmId, steps } = runOf(w, TO_POWERED_ON);
    const { part, seen } = lines();
    await runs(w).run({ op: 'run', steps }, part);
    expect(seen).toEqual([[0, 'ok'], [1, 'ok'], [2, 'ok'], [3, 'ok']]);
    expect(w.calls).toEqual(['advance create +3', 'report BeingCreated>PoweredOff ok lazy', 'report PoweredOff>PoweredOn ok']);
    expect(await record.getVm(vmId)).toMatchObject({ state: 'PoweredOn' });
  });

  it('a boot\'s report written behind goes at once, not lazily: the VM\'s agent asks the boot endpoint, whose check waits for it', async () => {
    w = await startStepWorld(record);
    const { steps } = runOf(w, [...TO_POWERED_ON, 'Starting', 'Running']);
    const { part } = lines();
    // No boot endpoint here: awaitReady fails (boot-failed); the boot's report was written behind all the same.
    await runs(w).run({ op: 'run', steps }, part);
    expect(w.calls).toContain('report PoweredOn>Starting ok');
    expect(w.calls).toContain('report BeingCreated>PoweredOff ok lazy');
  });

  it('without a pack each advance asks about the next edge only: every step but the last reports with the next one\'s authorization', async () => {
    w = await startStepWorld(record);
    const { vmId, steps } = runOf(w, TO_POWERED_ON);
    const { part, seen } = lines();
    await runs(w, new Lanes(), false).run({ op: 'run', steps }, part);
    expect(seen).toEqual([[0, 'ok'], [1, 'ok'], [2, 'ok'], [3, 'ok']]);
    expect(w.calls).toEqual([
      'advance create +1',
      'advance report Requested>BeingCreated +1',
      'advance report BeingCreated>PoweredOff +1',
      'report PoweredOff>PoweredOn ok',
    ]);
    expect(await record.getVm(vmId)).toMatchObject({ state: 'PoweredOn' });
  });

  it('a laned run gives its place up once its last cloud call is done, before its last report is answered', async () => {
    w = await startStepWorld(record);
    const lanes = new Lanes();
    const { steps } = runOf(w, TO_POWERED_ON);
    const { part, seen } = lines();
    const release = w.holdReports();
    const run = runs(w, lanes).run({ op: 'run', steps, lane: { id: 'apply-1', width: 1 } }, part);
    // Every report held: powerOn (approved ahead) runs while createVm's report is on its way, and the place is free after it.
    await vi.waitFor(() => expect(w!.driver.calls.get('powerOn')).toBe(1), { timeout: 10_000 });
    await vi.waitFor(() => expect(lanes.stats('apply-1')).toEqual({ busy: 0, waiting: 0 }), { timeout: 10_000 });
    expect(w.calls.at(-1)).toBe('report BeingCreated>PoweredOff ok lazy');
    expect(seen).toEqual([[0, 'ok'], [1, 'ok']]);
    release();
    await run;
    expect(seen).toEqual([[0, 'ok'], [1, 'ok'], [2, 'ok'], [3, 'ok']]);
  });

  it('stops at the first step that is not ok: the steps after it are not carried out nor answered', async () => {
    w = await startStepWorld(record, { failCalls: ['powerOn'] });
    const { vmId, steps } = runOf(w, [...TO_POWERED_ON, 'Starting', 'Running']);
    const { part, seen } = lines();
    await runs(w).run({ op: 'run', steps }, part);
    expect(seen).toEqual([[0, 'ok'], [1, 'ok'], [2, 'ok'], [3, 'failed']]);
    expect(w.driver.calls.get('boot') ?? 0).toBe(0);
    expect((await record.getVm(vmId))?.state).toBe('PoweredOff');
  });

  // A step started behind a report (write-behind) whose approval ahead went stale (a run that waited in its lane for
  // longer than its credentials' margin) asks for it again. Asked while the report before it was on its way, it was
  // judged on the record's state before that report: vetoed (state-moved), and the veto stored under its key, so the
  // CLI's sending the run again from the unreported step (503) got that veto back instead of the step carried out.
  it('a step behind a report that asks its stale approval again asks once that report is answered ok: a report that failed leaves it to be sent again, not vetoed', async () => {
    // Credentials of 60 s: under the 2 minutes' margin, so every approval ahead is asked for again.
    w = await startStepWorld(record, {}, { credentialTtlMs: 60_000 });
    const { vmId, steps } = runOf(w, TO_POWERED_ON);
    w.failReport('BeingCreated>PoweredOff', new WireError('authority-unreachable', 'the authority is restarting'));
    const first = lines();
    await runs(w).run({ op: 'run', steps }, first.part);
    expect(first.seen).toEqual([[0, 'ok'], [1, 'ok'], [2, 'authority-unreachable'], [3, 'earlier-step-unreported']]);
    expect(w.calls).not.toContain('authorize transition PoweredOff>PoweredOn');
    // The CLI sends the run again from its first unanswered step (docs/protocol.md, "Runs"): both carried out and reported.
    const again = lines();
    await runs(w).run({ op: 'run', steps: steps.slice(2) }, again.part);
    expect(again.seen).toEqual([[0, 'ok'], [1, 'ok']]);
    expect(await record.getVm(vmId)).toMatchObject({ state: 'PoweredOn' });
    expect((await record.history(w.stack, (await record.getVm(vmId))!.address)).filter((h) => h.outcome === 'vetoed')).toEqual([]);
  });

  // Approvals ahead live in the authority's memory until the report of the edge before writes their intent rows. An
  // authority restarted in between refused the report of the step carried out under one (report-unapproved, 409:
  // final for the CLI), and the member failed with its cloud call done and not in the record, though an authority
  // restart mid-apply is to cost no member (docs/recovery.md, "Outages").
  it('an authority restarted between the advance that approved a step ahead and that step\'s report: 503 approval-ahead-lost, and the run sent again from it is carried out and reported', async () => {
    w = await startStepWorld(record);
    const { vmId, steps } = runOf(w, TO_POWERED_ON);
    const first = lines();
    const release = w.holdReports();
    const run = runs(w).run({ op: 'run', steps }, first.part);
    // createVm carried out, its report held: the authority restarts before it, forgetting powerOn's approval ahead.
    await vi.waitFor(() => expect(w!.calls.at(-1)).toBe('report BeingCreated>PoweredOff ok lazy'), { timeout: 10_000 });
    w.restartAuthority();
    release();
    await run;
    expect(first.seen).toEqual([[0, 'ok'], [1, 'ok'], [2, 'ok'], [3, 'approval-ahead-lost']]);
    expect(w.driver.calls.get('powerOn')).toBe(1);
    expect((await record.getVm(vmId))?.state).toBe('PoweredOff');
    // The CLI sends the run again from that step (a 503 line): asked afresh, carried out again, reported.
    const again = lines();
    await runs(w).run({ op: 'run', steps: steps.slice(3) }, again.part);
    expect(again.seen).toEqual([[0, 'ok']]);
    expect(w.calls.slice(-2)).toEqual(['authorize transition PoweredOff>PoweredOn', 'report PoweredOff>PoweredOn ok']);
    expect(await record.getVm(vmId)).toMatchObject({ state: 'PoweredOn' });
  });

  it.each([
    ['ok', {}, 'ok'],
    ['failing', { failCalls: ['powerOn'] }, 'failed'],
  ])('%s runs of one lane of width 1 do their cloud work one after the other, and give the place up at the end', async (_name, sim, outcome) => {
    w = await startStepWorld(record, sim);
    const world = w;
    const order: string[] = [];
    for (const call of ['createVm', 'powerOn'] as const) {
      const real = world.driver[call].bind(world.driver) as (...a: unknown[]) => Promise<never>;
      vi.spyOn(world.driver, call).mockImplementation((...args: unknown[]) => (order.push((args[1] as { vmId: string }).vmId), real(...args)));
    }
    const lanes = new Lanes();
    const both = [runOf(world, TO_POWERED_ON, 0), runOf(world, TO_POWERED_ON, 1)];
    const seen = await Promise.all(
      both.map(async ({ steps }) => {
        const l = lines();
        await runs(world, lanes).run({ op: 'run', steps, lane: { id: 'apply-1', width: 1 } }, l.part);
        return l.seen.at(-1);
      }),
    );
    expect(seen).toEqual([[3, outcome], [3, outcome]]);
    // Each member's createVm and powerOn together: the other's only once the first one's are done.
    expect(order).toHaveLength(4);
    expect([order[0] === order[1], order[2] === order[3], order[1] !== order[2]]).toEqual([true, true, true]);
    expect(lanes.stats('apply-1')).toEqual({ busy: 0, waiting: 0 });
  });
});
