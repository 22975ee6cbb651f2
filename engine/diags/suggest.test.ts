import { describe, expect, it } from 'vitest';
import { damerauDistance, suggest } from './suggest.ts';

describe('damerauDistance', () => {
  it.each([
    ['count', 'count', 0],
    ['cuont', 'count', 1],
    ['cont', 'count', 1],
    ['counts', 'count', 1],
    ['cpunt', 'count', 1],
    ['ab', 'ba', 1],
    ['abc', 'ca', 3],
    ['', 'abc', 3],
    ['placment', 'placement', 1],
    ['encrytpedDisk', 'encryptedDisk', 1],
  ])('%s -> %s is %i', (a, b, n) => {
    expect(damerauDistance(a, b)).toBe(n);
    expect(damerauDistance(b, a)).toBe(n);
  });

  // Properties over generated strings: a metric's identity and symmetry, one swap costs 1, bounded by the longer length.
  it('holds its properties over 500 generated pairs', () => {
    let seed = 42;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const word = () => Array.from({ length: 1 + rnd(8) }, () => 'abcde'[rnd(5)]).join('');
    for (let i = 0; i < 500; i++) {
      const a = word();
      const b = word();
      expect(damerauDistance(a, a)).toBe(0);
      expect(damerauDistance(a, b)).toBe(damerauDistance(b, a));
      expect(damerauDistance(a, b)).toBeLessThanOrEqual(Math.max(a.length, b.length));
      if (a.length >= 2) {
        const k = rnd(a.length - 1);
        const swapped = a.slice(0, k) + a[k + 1] + a[k] + a.slice(k + 2);
        expect(damerauDistance(a, swapped)).toBe(swapped === a ? 0 : 1);
      }
    }
  });
});

describe('suggest', () => {
  const keys = ['count', 'minCount', 'image', 'size', 'hardware', 'placement', 'state', 'encryptedDisk', 'protect', 'rollout'];
  it.each([
    ['cuont', 'count'],
    ['imgae', 'image'],
    ['sate', 'state'],
    ['Count', 'count'],
    ['count', undefined],
    ['zzzzz', undefined],
    ['mincount', 'minCount'],
  ])('%s -> %s', (word, hint) => {
    expect(suggest(word, keys)).toBe(hint);
  });
});
