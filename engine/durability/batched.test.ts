import { describe, expect, it } from 'vitest';
import { Batched } from './batched.ts';

describe('Batched', () => {
  it('runs the calls of one tick as one batch, answering each with its own result or error, in order', async () => {
    const seen: number[][] = [];
    const b = new Batched<number, string>(async (items) => {
      seen.push(items);
      return items.map((n) => (n % 2 ? new Error(`odd ${n}`) : `even ${n}`));
    });
    const out = await Promise.allSettled([1, 2, 3, 4].map((n) => b.submit(n)));
    expect(out).toEqual([
      { status: 'rejected', reason: new Error('odd 1') },
      { status: 'fulfilled', value: 'even 2' },
      { status: 'rejected', reason: new Error('odd 3') },
      { status: 'fulfilled', value: 'even 4' },
    ]);
    expect(seen).toEqual([[1, 2, 3, 4]]);
    expect(b.batches).toBe(1);
  });

  it('calls made while a batch runs share the next one; one batch at a time; at most `max` per batch', async () => {
    let running = 0;
    let most = 0;
    const sizes: number[] = [];
    const b = new Batched<number, number>(async (items) => {
      running++;
      most = Math.max(most, running);
      sizes.push(items.length);
      await new Promise((r) => setTimeout(r, 5));
      running--;
      return items.map((n) => n * 10);
    }, 3);
    const first = b.submit(0);
    await new Promise((r) => setTimeout(r, 1)); // the first batch is running now
    const rest = [1, 2, 3, 4, 5].map((n) => b.submit(n));
    expect(await Promise.all([first, ...rest])).toEqual([0, 10, 20, 30, 40, 50]);
    expect(most).toBe(1);
    expect(sizes).toEqual([1, 3, 2]);
  });

  it('with parallel 2, a second batch starts while the first runs; never more than two', async () => {
    let running = 0;
    let most = 0;
    const sizes: number[] = [];
    const b = new Batched<number, number>(
      async (items) => {
        running++;
        most = Math.max(most, running);
        sizes.push(items.length);
        await new Promise((r) => setTimeout(r, 10));
        running--;
        return items;
      },
      500,
      2,
    );
    const first = b.submit(0);
    await new Promise((r) => setTimeout(r, 1));
    const second = [1, 2].map((n) => b.submit(n));
    await new Promise((r) => setTimeout(r, 1));
    const third = [3, 4, 5].map((n) => b.submit(n));
    expect(await Promise.all([first, ...second, ...third])).toEqual([0, 1, 2, 3, 4, 5]);
    expect(most).toBe(2);
    expect(sizes).toEqual([1, 2, 3]);
  });

  it('a batch whose run throws rejects all its calls; the next call starts afresh', async () => {
    let fail = true;
    const b = new Batched<number, number>(async (items) => {
      if (fail) throw new Error('connection lost');
      return items;
    });
    const out = await Promise.allSettled([b.submit(1), b.submit(2)]);
    expect(out.map((o) => o.status)).toEqual(['rejected', 'rejected']);
    fail = false;
    expect(await b.submit(3)).toBe(3);
  });
});
