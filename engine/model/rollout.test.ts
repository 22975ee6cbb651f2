import { describe, expect, it } from 'vitest';
import { isZeroAmount, resolveAmount, type RolloutAmount } from './rollout.ts';

describe('resolveAmount', () => {
  // Every percentage the schema allows (0%–100%) of every fleet size up to 400, against integer arithmetic:
  // maxUnavailable rounds down, maxSurge and failureThreshold round up, and neither drifts by float noise
  // (28% of 25 is 7, not 7.000000000000001 rounded up to 8).
  it('rounds p% of n down and up exactly as integer arithmetic does, for every p in 0..100 and n in 0..400', () => {
    const wrong: string[] = [];
    for (let p = 0; p <= 100; p++) {
      for (let n = 0; n <= 400; n++) {
        const a = `${p}%` as RolloutAmount;
        const down = (p * n - ((p * n) % 100)) / 100;
        const up = (p * n) % 100 === 0 ? down : down + 1;
        if (resolveAmount(a, n, 'down') !== down || resolveAmount(a, n, 'up') !== up) wrong.push(`${p}% of ${n}: ${resolveAmount(a, n, 'down')}/${resolveAmount(a, n, 'up')}, want ${down}/${up}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it.each([
    [3, 12, 3],
    [0, 12, 0],
    [20, 12, 20],
  ] as const)('a count %i of %i members is %i, whatever the rounding', (a, n, want) => {
    expect([resolveAmount(a, n, 'down'), resolveAmount(a, n, 'up')]).toEqual([want, want]);
  });

  it.each([
    [0, true],
    ['0%', true],
    [1, false],
    ['1%', false],
    [undefined, false],
  ] as const)('isZeroAmount(%j) is %s', (a, want) => {
    expect(isZeroAmount(a)).toBe(want);
  });
});
