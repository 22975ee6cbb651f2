import { describe, expect, it } from 'vitest';
import { classifyMember, deletePath, resizeSteps, type MemberShape } from './member.ts';
import { makeLifecycle } from './test-support.ts';

const base: MemberShape = { state: 'Running', image: 'ubuntu-22.04', encryptedDisk: true, size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, specHash: 'h1' };

describe('classifyMember', () => {
  it.each([
    { name: 'nothing differs', wanted: {}, action: 'noop', diff: [] },
    { name: 'the state only', wanted: { state: 'PoweredOff' }, action: 'transition', diff: [] },
    { name: 'the size', wanted: { size: { cpu: 4, memoryGiB: 4, diskGiB: 20 }, specHash: 'h2' }, action: 'update', diff: ['size'] },
    { name: 'the size and the state', wanted: { size: { cpu: 4, memoryGiB: 4, diskGiB: 20 }, specHash: 'h2', state: 'PoweredOff' }, action: 'update', diff: ['size'] },
    { name: 'the image', wanted: { image: 'rhel-9', specHash: 'h2' }, action: 'replace', diff: ['image'] },
    { name: 'the disk encryption', wanted: { encryptedDisk: false, specHash: 'h2' }, action: 'replace', diff: ['encryptedDisk'] },
    { name: 'the image and the size', wanted: { image: 'rhel-9', size: { cpu: 4, memoryGiB: 4, diskGiB: 20 }, specHash: 'h2' }, action: 'replace', diff: ['image', 'size'] },
    { name: 'a hash change nothing else explains (hardware)', wanted: { specHash: 'h2' }, action: 'replace', diff: ['hardware'] },
  ] as const)('$name', ({ wanted, action, diff }) => {
    const got = classifyMember(base, { ...base, ...wanted, hardware: ['general'] });
    expect(got.action).toBe(action);
    expect(Object.keys(got.diff)).toEqual(diff);
  });
});

describe('lifecycle walks', () => {
  const lc = makeLifecycle();
  it('resizes at the resize state, between the way down and the way up', () => {
    const r = resizeSteps(lc, 'Running', 'Running');
    expect('path' in r && r.steps.map((s) => `${s.from}>${s.to}:${s.operation}`)).toEqual([
      'Running>ShuttingDown:shutdown',
      'ShuttingDown>PoweredOff:powerOff',
      'PoweredOff>PoweredOff:resize',
      'PoweredOff>PoweredOn:powerOn',
      'PoweredOn>Starting:boot',
      'Starting>Running:awaitReady',
    ]);
    expect(resizeSteps(lc, 'Deleted', 'Running')).toEqual({ missing: { from: 'Deleted', to: 'PoweredOff' } });
  });

  it('deletes along the shortest path to a terminal state', () => {
    expect(deletePath(lc, 'Running')).toEqual(['Running', 'ShuttingDown', 'PoweredOff', 'BeingDeleted', 'Deleted']);
    expect(deletePath(lc, 'CreateFailed')).toEqual(['CreateFailed', 'BeingDeleted', 'Deleted']);
  });
});
