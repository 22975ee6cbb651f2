import { describe, expect, it } from 'vitest';
import { DRIVER_CALLS, isDriverCall, isOperation, OPERATIONS } from './operation.ts';

describe('operations', () => {
  it.each([
    ['createVm', true, true],
    ['none', true, false],
    ['get', false, true],
    ['powerOnn', false, false],
    ['', false, false],
  ])('%s', (name, op, call) => {
    expect(isOperation(name)).toBe(op);
    expect(isDriverCall(name)).toBe(call);
  });

  it('every edge operation but none is a driver call', () => {
    for (const o of OPERATIONS) if (o !== 'none') expect(DRIVER_CALLS).toContain(o);
  });
});
