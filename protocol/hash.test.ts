import { describe, expect, it } from 'vitest';
import { randomBase64url } from './hash.ts';

describe('randomBase64url (nonces and boot tokens, from a pooled CSPRNG)', () => {
  it('gives base64url of the asked number of bytes', () => {
    for (const n of [1, 16, 24, 32, 256]) {
      const s = randomBase64url(n);
      expect(s).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(Buffer.from(s, 'base64url')).toHaveLength(n);
    }
  });

  it('never hands out the same bytes twice, across refills of the pool', () => {
    // 4096 bytes a pool: 2,000 tokens of 24 bytes span about a dozen refills.
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) seen.add(randomBase64url(24));
    expect(seen.size).toBe(2000);
    // Every byte value turns up (a pool left zeroed, or reused, would not).
    const bytes = new Set<number>();
    for (let i = 0; i < 200; i++) for (const b of Buffer.from(randomBase64url(32), 'base64url')) bytes.add(b);
    expect(bytes.size).toBe(256);
  });

  it('refuses sizes outside 1 to 256 bytes', () => {
    for (const n of [0, -1, 1.5, 257]) expect(() => randomBase64url(n)).toThrow(/1 to 256 bytes/);
  });
});
