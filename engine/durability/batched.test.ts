import { describe, expect, it } from 'vitest';
import { Batched, KeyLocks } from './batched.ts';

/** Lets a batch's run hold until release(), and a test wait until n runs have started: no timers, so orders hold however busy the machine is. */
function holding(): { enter(hold: boolean): Promise<void>; started(n: number): Promise<void>; release(): void } {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let count = 0;
  const waiting: { n: number; go: () => void }[] = [];
  return {
    enter(hold) {
      count++;
      for (const w of waiting.filter((x) => x.n <= count)) w.go();
      return hold ? held : Promise.resolve();
    },
    started: (n) => new Promise<void>((go) => (count >= n ? go() : waiting.push({ n, go }))),
    release,
  };
}

/** A few turns of the event loop (what Batched waits to gather a batch). */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

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
    const gate = holding();
    const b = new Batched<number, number>(async (items) => {
      running++;
      most = Math.max(most, running);
      sizes.push(items.length);
      await gate.enter(sizes.length === 1);
      running--;
      return items.map((n) => n * 10);
    }, { max: 3 });
    const first = b.submit(0);
    await gate.started(1); // the first batch is running now
    const rest = [1, 2, 3, 4, 5].map((n) => b.submit(n));
    gate.release();
    expect(await Promise.all([first, ...rest])).toEqual([0, 10, 20, 30, 40, 50]);
    expect(most).toBe(1);
    expect(sizes).toEqual([1, 3, 2]);
  });

  it('with parallel 2, a second batch starts while the first runs; never more than two', async () => {
    let running = 0;
    let most = 0;
    const sizes: number[] = [];
    const gate = holding();
    const b = new Batched<number, number>(
      async (items) => {
        running++;
        most = Math.max(most, running);
        sizes.push(items.length);
        await gate.enter(sizes.length <= 2);
        running--;
        return items;
      },
      { parallel: 2 },
    );
    const first = b.submit(0);
    await gate.started(1);
    const second = [1, 2].map((n) => b.submit(n));
    await gate.started(2);
    const third = [3, 4, 5].map((n) => b.submit(n));
    await turns(3);
    expect(sizes).toEqual([1, 2]); // the third waits for one of the two
    gate.release();
    expect(await Promise.all([first, ...second, ...third])).toEqual([0, 1, 2, 3, 4, 5]);
    expect(most).toBe(2);
    expect(sizes).toEqual([1, 2, 3]);
  });

  it('overlaps a batch only once overlapAt calls wait', async () => {
    const sizes: number[] = [];
    const gate = holding();
    const b = new Batched<number, number>(
      async (items) => {
        sizes.push(items.length);
        await gate.enter(true);
        return items;
      },
      { parallel: 3, overlapAt: 3 },
    );
    const first = b.submit(0);
    await gate.started(1);
    const two = [1, 2].map((n) => b.submit(n)); // 2 waiting: no overlap yet
    await turns(3);
    expect(sizes).toEqual([1]);
    const three = [3, 4, 5].map((n) => b.submit(n)); // 5 waiting: a second batch starts now
    await gate.started(2);
    gate.release();
    expect(await Promise.all([first, ...two, ...three])).toEqual([0, 1, 2, 3, 4, 5]);
    expect(sizes).toEqual([1, 5]);
  });

  it('with keyOf, two running batches never share a key, and calls of one key keep their order', async () => {
    const running = new Set<string>();
    const order: string[] = [];
    const gate = holding();
    const b = new Batched<string, string>(
      async (items) => {
        const keys = new Set(items.map((i) => i[0]));
        for (const k of keys) {
          expect(running.has(k)).toBe(false);
          running.add(k);
        }
        order.push(...items);
        // a1's batch holds its key until released.
        await gate.enter(items.includes('a1'));
        for (const k of keys) running.delete(k);
        return items;
      },
      { parallel: 3, keyOf: (i) => i[0] },
    );
    const first = b.submit('a1');
    await gate.started(1);
    const rest = ['a2', 'b1', 'a3', 'b2', 'c1'].map((x) => b.submit(x));
    // b and c run beside a1; a2 and a3 wait for it.
    await Promise.all([rest[1], rest[3], rest[4]]);
    expect(order).toEqual(['a1', 'b1', 'b2', 'c1']);
    gate.release();
    expect(await Promise.all([first, ...rest])).toEqual(['a1', 'a2', 'b1', 'a3', 'b2', 'c1']);
    expect(order.filter((x) => x[0] === 'a')).toEqual(['a1', 'a2', 'a3']);
    expect(order.filter((x) => x[0] === 'b')).toEqual(['b1', 'b2']);
  });

  it('two Batched sharing KeyLocks never run a key at once; a call skipped for the other\'s key starts when it lets go', async () => {
    const locks = new KeyLocks();
    const running = new Set<string>();
    const log: string[] = [];
    const gate = holding();
    const make = (name: string, hold: boolean) =>
      new Batched<string, string>(
        async (items) => {
          const keys = new Set(items.map((i) => i[0]));
          for (const k of keys) {
            expect(running.has(k)).toBe(false);
            running.add(k);
          }
          log.push(`${name}:${items.join(',')}`);
          // A's batches hold their keys until released.
          await gate.enter(hold);
          for (const k of keys) running.delete(k);
          return items;
        },
        { parallel: 2, keyOf: (i) => i[0], locks },
      );
    const a = make('A', true);
    const b = make('B', false);
    const first = a.submit('x1');
    await gate.started(1);
    // B's x2 waits for A's x1 (same key) although B runs nothing; its y1 goes at once.
    const rest = [b.submit('x2'), b.submit('y1')];
    await rest[1];
    expect(log).toEqual(['A:x1', 'B:y1']);
    gate.release();
    expect(await Promise.all([first, ...rest])).toEqual(['x1', 'x2', 'y1']);
    expect(log).toEqual(['A:x1', 'B:y1', 'B:x2']);
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
