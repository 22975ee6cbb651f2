import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeLifecycle } from '../plan/test-support.ts';
import { loadPack } from '../policy/load.ts';
import type { Lifecycle } from '../policy/types.ts';
import { driftPath, missingOutcome, recordCloudId, recordMissing } from './refresh.ts';
import type { ActualVm } from '../../protocol/index.ts';
import type { FleetRecord, VmRow } from '../record/index.ts';
import { memoryRecord, usageDrift } from '../record/testing.ts';

describe('missingOutcome: where a VM its data center does not hold is recorded', () => {
  const lc = makeLifecycle();
  // Never left saying it runs: a failure state without a cloud VM (the planner
  // deletes it along the recovery edges and creates it again), or the terminal
  // state, retired (the planner creates the member again).
  it.each([
    { state: 'BootFailed', want: { to: 'BootFailed', retire: false } },
    { state: 'CreateFailed', want: { to: 'CreateFailed', retire: false } },
    { state: 'Starting', want: { to: 'BootFailed', retire: false } },
    { state: 'BeingCreated', want: { to: 'CreateFailed', retire: false } },
    { state: 'Running', want: { to: 'Deleted', retire: true } },
    { state: 'PoweredOff', want: { to: 'Deleted', retire: true } },
    { state: 'PoweredOn', want: { to: 'Deleted', retire: true } },
    { state: 'ShuttingDown', want: { to: 'Deleted', retire: true } },
    { state: 'BeingDeleted', want: { to: 'Deleted', retire: true } },
  ])('$state -> $want.to', ({ state, want }) => {
    expect(missingOutcome(lc, state)).toEqual(want);
  });
});

describe('driftPath: what refresh records of a VM its cloud holds elsewhere (the default pack)', () => {
  let lc: Lifecycle;
  beforeAll(async () => {
    const { pack } = await loadPack(fileURLToPath(new URL('../../policies/default', import.meta.url)));
    lc = pack!.lifecycle;
  });
  // Never into a boot state (PoweredOn, Starting) from outside one: the authority answers a boot only there, and
  // answers the last boot's token again within its repeat window, so a refresh that recorded an in-guest reboot's
  // Running -> … -> Starting let that reboot have its disk key with the token of the boot before.
  it.each([
    { name: 'one edge', state: 'Starting', observed: 'Running', want: { path: ['Starting', 'Running'] } },
    { name: 'an in-guest power-off', state: 'Running', observed: 'PoweredOff', want: { path: ['Running', 'ShuttingDown', 'PoweredOff'] } },
    { name: 'a boot an approved edge started', state: 'PoweredOn', observed: 'Starting', want: { path: ['PoweredOn', 'Starting'] } },
    { name: 'an in-guest reboot, seen booting', state: 'Running', observed: 'Starting', want: { refused: 'unapproved-boot' } },
    { name: 'a VM powered on from the console', state: 'PoweredOff', observed: 'PoweredOn', want: { refused: 'unapproved-boot' } },
    { name: 'a BootFailed VM seen booting again', state: 'BootFailed', observed: 'Starting', want: { refused: 'unapproved-boot' } },
    { name: 'into a failure state', state: 'Running', observed: 'BootFailed', want: { refused: 'no-path' } },
    // Through the boot states to Running: recorded when its DMZ client saw the agent's ready report, not when it holds
    // none (agent unknown): fleet import recorded such a VM BootFailed for want of it, which a refresh must not undo.
    { name: 'a BootFailed VM seen running, its agent ready', state: 'BootFailed', observed: 'Running', agent: 'ready' as const, want: { path: ['BootFailed', 'PoweredOff', 'PoweredOn', 'Starting', 'Running'] } },
    { name: 'a BootFailed VM seen running, no agent report', state: 'BootFailed', observed: 'Running', agent: 'unknown' as const, want: { refused: 'unapproved-boot' } },
    { name: 'a PoweredOff VM seen running, no agent report', state: 'PoweredOff', observed: 'Running', agent: 'unknown' as const, want: { refused: 'unapproved-boot' } },
    { name: 'a Starting VM seen running, no agent report (the boot the record approved)', state: 'Starting', observed: 'Running', agent: 'unknown' as const, want: { path: ['Starting', 'Running'] } },
    { name: 'a Running VM seen powered off, no agent report', state: 'Running', observed: 'PoweredOff', agent: 'unknown' as const, want: { path: ['Running', 'ShuttingDown', 'PoweredOff'] } },
  ])('$name: $state -> $observed', ({ state, observed, want, ...rest }) => {
    expect(driftPath(lc, state, observed, 'agent' in rest ? rest.agent : undefined)).toEqual(want);
  });
});

describe('what refresh records without a state change: the row and its history row, both or neither', () => {
  // recordMissing (a failure state kept, its cloud id cleared) and recordCloudId (a cloud id found) wrote the row
  // (updateVm) and its drift history row (addHistory) as two statements: a refresh killed, or its record connection
  // cut, in between left the cloud id changed with no history row saying who changed it or why. Killed at every point
  // (every record write refused from the k-th on), the row changes only with its history row.
  const lc = makeLifecycle();
  const ACTOR = { actor: 'refresh-test', why: 'refresh' };
  const cases = [
    {
      name: 'recordMissing of a BootFailed VM: kept, its cloud id cleared',
      state: 'BootFailed',
      cloudId: 'i-gone' as string | null,
      run: (r: FleetRecord, v: VmRow) => recordMissing(r, lc, v, ACTOR),
    },
    {
      name: 'recordCloudId of a PoweredOff VM whose create report was lost',
      state: 'PoweredOff',
      cloudId: null as string | null,
      run: (r: FleetRecord, v: VmRow) => recordCloudId(r, v, { vmId: v.id, cloudId: 'i-found', observedState: 'PoweredOff' } as ActualVm, ACTOR),
    },
  ];
  let record: Awaited<ReturnType<typeof memoryRecord>>;
  beforeAll(async () => {
    record = await memoryRecord();
  });
  afterAll(async () => {
    await record.close();
  });
  it.each(cases.flatMap((c, i) => [0, 1, 2].map((killAt) => ({ ...c, killAt, fleet: `web-${i}-${killAt}` }))))('$name, killed at write $killAt', async ({ state, cloudId, run, killAt, fleet }) => {
    const v0 = await record.insertVm(
      { stack: 's', fleet, owner: 'team-a', index: 0, dataCenter: 'miami', state, desiredState: 'Running', specHash: 'h', image: 'ubuntu-22.04', size: { cpu: 1, memoryGiB: 2, diskGiB: 10 }, encryptedDisk: false },
      { actor: 'seed' },
    );
    const v = cloudId === null ? v0 : await record.updateVm(v0.id, v0.version, { cloudId }, { actor: 'seed' });
    const drifts = async () => (await record.history('s', `${fleet}/0`)).filter((h) => h.outcome === 'drift').length;
    // Every write from the killAt-th on is refused, as from a process killed there.
    let writes = 0;
    const killed = new Proxy(record, {
      get(target, prop, receiver) {
        const f = Reflect.get(target, prop, receiver) as unknown;
        if (typeof f !== 'function' || !['updateVm', 'addHistory', 'transitionVm', 'addHistoryMany', 'transitionVms'].includes(String(prop))) return typeof f === 'function' ? f.bind(target) : f;
        return (...args: unknown[]) => (writes++ >= killAt ? Promise.reject(new Error('killed')) : (f as (...a: unknown[]) => Promise<unknown>).apply(target, args));
      },
    });
    await run(killed, v).catch(() => undefined);
    const after = (await record.findVm('s', `${fleet}/0`))!;
    const changed = after.cloudId !== v.cloudId;
    expect({ changed, drifts: await drifts() }).toEqual(changed ? { changed, drifts: 1 } : { changed, drifts: 0 });
    expect(await usageDrift(record)).toEqual([]);
  });
});
