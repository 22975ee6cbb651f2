import { describe, expect, it } from 'vitest';
import { SignInLimiter } from './limit.ts';

describe('SignInLimiter', () => {
  const at = (t: { now: number }) => () => t.now;

  it.each([
    // [failures made, minutes later, wait expected (ms)]
    [9, 0, 0],
    [10, 0, 15 * 60_000],
    [10, 5, 10 * 60_000],
    [10, 15, 0],
    [25, 0, 15 * 60_000],
  ])('after %i failures, %i min later, waits %i ms', (made, later, wait) => {
    const t = { now: 1_000_000 };
    const l = new SignInLimiter({}, at(t));
    for (let i = 0; i < made; i++) l.failed('10.0.0.1');
    t.now += later * 60_000;
    expect(l.waitMs('10.0.0.1')).toBe(wait);
  });

  it('counts each address on its own, and a success clears only its own', () => {
    const t = { now: 0 };
    const l = new SignInLimiter({ failures: 2 }, at(t));
    l.failed('a');
    l.failed('a');
    l.failed('b');
    expect(l.waitMs('a')).toBeGreaterThan(0);
    expect(l.waitMs('b')).toBe(0);
    l.succeeded('b');
    l.failed('b');
    expect(l.waitMs('b')).toBe(0);
    l.succeeded('a');
    expect(l.waitMs('a')).toBe(0);
  });

  it('a sliding window: the wait ends when the oldest failure counted ages out', () => {
    const t = { now: 0 };
    const l = new SignInLimiter({ failures: 3, windowMs: 1000 }, at(t));
    l.failed('a');
    t.now = 400;
    l.failed('a');
    t.now = 800;
    l.failed('a');
    expect(l.waitMs('a')).toBe(200);
    t.now = 1000;
    expect(l.waitMs('a')).toBe(0);
  });

  it('remembers at most `addresses` addresses, forgetting the one that failed longest ago', () => {
    const t = { now: 0 };
    const l = new SignInLimiter({ failures: 1, addresses: 2 }, at(t));
    l.failed('a');
    l.failed('b');
    l.failed('a');
    l.failed('c');
    expect(l.waitMs('b')).toBe(0);
    expect(l.waitMs('a')).toBeGreaterThan(0);
    expect(l.waitMs('c')).toBeGreaterThan(0);
  });
});
