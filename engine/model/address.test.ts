import { describe, expect, it } from 'vitest';
import { formatVmAddress, isVmAddress, parseVmAddress } from './address.ts';

describe('parseVmAddress', () => {
  it.each([
    ['web/0', { fleet: 'web', index: 0 }],
    ['web/12', { fleet: 'web', index: 12 }],
    ['a/b/3', { fleet: 'a/b', index: 3 }],
    ['web', undefined],
    ['/3', undefined],
    ['web/', undefined],
    ['web/01', undefined],
    ['web/-1', undefined],
    ['web/1.5', undefined],
    ['web/1234567890', undefined],
  ])('%s', (input, want) => {
    expect(parseVmAddress(input)).toEqual(want);
    expect(isVmAddress(input)).toBe(want !== undefined);
  });

  it('formats both ways and round-trips', () => {
    expect(formatVmAddress('web', 3)).toBe('web/3');
    expect(formatVmAddress({ fleet: 'web', index: 3 })).toBe('web/3');
    for (const a of [{ fleet: 'x', index: 0 }, { fleet: 'team/api', index: 41 }]) {
      expect(parseVmAddress(formatVmAddress(a))).toEqual(a);
    }
  });
});
