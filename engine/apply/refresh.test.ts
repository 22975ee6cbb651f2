import { describe, expect, it } from 'vitest';
import { makeLifecycle } from '../plan/test-support.ts';
import { missingOutcome } from './refresh.ts';

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
