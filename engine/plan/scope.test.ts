import { describe, expect, it } from 'vitest';
import { haversineKm } from './geo.ts';
import { resolveNear } from './placement.ts';
import { resizeState } from './member.ts';
import { programFleets, resolveScope } from './scope.ts';
import { makeLifecycle, makeStack } from './test-support.ts';

describe('resolveScope', () => {
  const cases = [
    { name: 'everything by default, sorted', targets: [], excludes: [], fleets: ['a', 'b', 'gone', 'web'], unknown: [] },
    { name: 'targets narrow', targets: ['web', 'gone'], excludes: [], fleets: ['gone', 'web'], unknown: [] },
    { name: 'excludes remove', targets: [], excludes: ['a'], fleets: ['b', 'gone', 'web'], unknown: [] },
    { name: 'exclude wins over target', targets: ['a', 'b'], excludes: ['a'], fleets: ['b'], unknown: [] },
    { name: 'unknown names are reported once', targets: ['x', 'a'], excludes: ['x', 'y'], fleets: ['a'], unknown: ['x', 'y'] },
  ];
  it.each(cases)('$name', ({ targets, excludes, fleets, unknown }) => {
    expect(resolveScope(['web', 'a', 'b'], ['gone', 'web'], targets, excludes)).toEqual({ fleets, unknown });
  });
});

// Fleets a program (a Pulumi Fleet or Vm) manages are the program's: fleet plan and fleet apply leave them alone
// with no fleet file (found by QA: they were planned for deletion), and refuse a fleet file that declares one.
describe('programFleets', () => {
  const record = [
    { fleet: 'filed', managedBy: null },
    { fleet: 'gone', managedBy: null },
    { fleet: 'pul', managedBy: 'pulumi:p/dev' },
    { fleet: 'twice', managedBy: 'pulumi:p/dev' },
  ];
  const cases = [
    { name: 'a whole plan', scope: ['filed', 'gone', 'pul', 'twice', 'web'], fleets: ['filed', 'gone', 'web'], leftAlone: ['pul'], conflicts: ['twice'] },
    { name: '--exclude pul', scope: ['filed', 'gone', 'twice', 'web'], fleets: ['filed', 'gone', 'web'], leftAlone: [], conflicts: ['twice'] },
    { name: '--target pul', scope: ['pul'], fleets: [], leftAlone: ['pul'], conflicts: [] },
    { name: '--target web', scope: ['web'], fleets: ['web'], leftAlone: [], conflicts: [] },
  ];
  it.each(cases)('$name', ({ scope, fleets, leftAlone, conflicts }) => {
    const out = programFleets(scope, ['filed', 'twice', 'web'], record);
    expect({ fleets: out.fleets, leftAlone: out.leftAlone.map((f) => f.fleet), conflicts: out.conflicts.map((f) => f.fleet) }).toEqual({ fleets, leftAlone, conflicts });
  });
});

describe('geography', () => {
  it.each([
    { from: 'charlotte', to: 'richmond', km: 399 },
    { from: 'charlotte', to: 'miami', km: 1054 },
  ])('$from to $to is about $km km', ({ to, km }) => {
    const stack = makeStack();
    const dc = stack.dataCenters.find((d) => d.name === to)!;
    expect(Math.round(haversineKm(stack.site.location, dc.location))).toBe(km);
  });

  it('near resolves a site, a data center, coordinates, and falls back to the site', () => {
    const stack = makeStack();
    expect(resolveNear(stack, null).name).toBe('charlotte');
    expect(resolveNear(stack, 'seattle').location).toEqual({ lat: 47.6062, lon: -122.3321 });
    expect(resolveNear(stack, { lat: 1, lon: 2 }).location).toEqual({ lat: 1, lon: 2 });
    expect(resolveNear(stack, 'atlantis')).toMatchObject({ name: 'charlotte', unknown: 'atlantis' });
  });
});

describe('resizeState', () => {
  it('is where createVm lands unless the pack has a resize edge', () => {
    expect(resizeState(makeLifecycle())).toBe('PoweredOff');
    expect(resizeState(makeLifecycle([['A', 'B', 'createVm'], ['B', 'C', 'none'], ['C', 'C', 'resize']]))).toBe('C');
  });
});
