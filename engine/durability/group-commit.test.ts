import { describe, expect, it } from 'vitest';
import { GroupCommit } from './group-commit.ts';

describe('GroupCommit', () => {
  it('one write at a time; commits made while it runs share the next write, which sees all their changes', async () => {
    let state = 0;
    const written: number[] = [];
    let running = 0;
    let maxRunning = 0;
    const g = new GroupCommit(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      const snapshot = state;
      await new Promise((r) => setTimeout(r, 5));
      written.push(snapshot);
      running--;
    });
    const seen: boolean[] = [];
    const all = Array.from({ length: 100 }, async (_, i) => {
      await new Promise((r) => setTimeout(r, i % 10));
      const mine = ++state;
      await g.commit();
      seen.push(written.some((w) => w >= mine));
    });
    await Promise.all(all);
    expect(seen).toHaveLength(100);
    expect(seen.every(Boolean)).toBe(true);
    expect(maxRunning).toBe(1);
    expect(g.writes).toBeLessThan(25);
    await g.settled();
  });

  it('a failed write rejects its commits only; the next commit writes again', async () => {
    let fail = true;
    const g = new GroupCommit(async () => {
      if (fail) throw new Error('disk full');
    });
    await expect(g.commit()).rejects.toThrow('disk full');
    fail = false;
    await expect(g.commit()).resolves.toBeUndefined();
    expect(g.writes).toBe(2);
  });
});

describe('GroupCommit with gather: turn', () => {
  it('a synchronous write gathers the commits of every callback of the turn, and later ones share the next', async () => {
    let pending = 0;
    const batches: number[] = [];
    const g = new GroupCommit(
      async () => {
        batches.push(pending);
        pending = 0;
      },
      { gather: 'turn' },
    );
    const change = () => {
      pending++;
      return g.commit();
    };
    // Ten callbacks of one turn (each drains its microtasks before the next
    // runs). setImmediate, not setTimeout(0): timers created across a
    // millisecond boundary may fire in two turns on a busy machine.
    const first = await new Promise<Promise<void>[]>((resolve) => {
      const out: Promise<void>[] = [];
      for (let i = 0; i < 10; i++) setImmediate(() => out.push(change()));
      setImmediate(() => resolve(out));
    });
    await Promise.all(first);
    expect(batches).toEqual([10]);
    await Promise.all([change(), change()]);
    expect(batches).toEqual([10, 2]);
    expect(g.writes).toBe(2);
  });
});
