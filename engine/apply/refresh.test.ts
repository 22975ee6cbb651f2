import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeLifecycle } from '../plan/test-support.ts';
import { loadPack } from '../policy/load.ts';
import type { Lifecycle } from '../policy/types.ts';
import { driftPath, missingOutcome } from './refresh.ts';

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
