import { describe, expect, it } from 'vitest';
import { Lanes, type Lease } from './lanes.ts';

/** Lets every settled promise's callbacks run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

/** Asks for the lease's place; the function returned tells whether it was given yet. */
function asked(lease: Lease): () => boolean {
  let given = false;
  void lease.hold().then(() => (given = true));
  return () => given;
}

describe('Lanes', () => {
  it('lets at most width runs of a lane hold a place; a freed place goes to the longest-waiting run', async () => {
    const lanes = new Lanes();
    const order: string[] = [];
    const leases = ['a', 'b', 'c', 'd'].map((name) => ({ name, lease: lanes.lease('apply-1', 2, [name]) }));
    for (const { name, lease } of leases) void lease.hold().then(() => order.push(name));
    await settle();
    expect(order).toEqual(['a', 'b']);
    expect(lanes.stats('apply-1')).toEqual({ busy: 2, waiting: 2 });
    leases[1].lease.free();
    await settle();
    expect(order).toEqual(['a', 'b', 'c']);
    leases[0].lease.free();
    await settle();
    expect(order).toEqual(['a', 'b', 'c', 'd']);
    expect(lanes.stats('apply-1')).toEqual({ busy: 2, waiting: 0 });
  });

  it('keeps lanes apart, and forgets a lane with nothing running or waiting', async () => {
    const lanes = new Lanes();
    const one = lanes.lease('apply-1', 1, ['vm-1']);
    const other = lanes.lease('apply-2', 1, ['vm-1']);
    await one.hold();
    await other.hold();
    expect(lanes.stats('apply-1')).toEqual({ busy: 1, waiting: 0 });
    expect(lanes.stats('apply-2')).toEqual({ busy: 1, waiting: 0 });
    one.free();
    other.free();
    await settle();
    expect(lanes.stats('apply-1')).toEqual({ busy: 0, waiting: 0 });
    expect(lanes.stats('apply-2')).toEqual({ busy: 0, waiting: 0 });
  });

  it.each([
    ['freed twice', (l: Lanes) => {
      const x = l.lease('p', 1, ['x']);
      return x.hold().then(() => (x.free(), x.free()));
    }],
    ['freed while still waiting for its place', async (l: Lanes) => {
      const first = l.lease('p', 1, ['first']);
      await first.hold();
      const second = l.lease('p', 1, ['second']);
      void second.hold();
      second.free();
      first.free();
    }],
    ['freed without ever holding', async (l: Lanes) => {
      l.lease('p', 1, ['never']).free();
    }],
  ])('gives a place back once: %s', async (_name, use) => {
    const lanes = new Lanes();
    await use(lanes);
    await settle();
    expect(lanes.stats('p')).toEqual({ busy: 0, waiting: 0 });
    // The lane still has its one place: a new run gets it at once.
    const next = asked(lanes.lease('p', 1, ['next']));
    await settle();
    expect(next()).toBe(true);
  });

  it('a run holding its place asks again at once, and after freeing it never waits', async () => {
    const lanes = new Lanes();
    const lease = lanes.lease('p', 1, ['vm']);
    await lease.hold();
    expect(lease.holding).toBe(true);
    await lease.hold();
    lease.free();
    expect(lease.holding).toBe(false);
    await lease.hold();
    await settle();
    expect(lanes.stats('p')).toEqual({ busy: 0, waiting: 0 });
  });

  it('a wider width from a later run lets waiting runs in', async () => {
    const lanes = new Lanes();
    const got: number[] = [];
    const leases = [0, 1, 2].map((i) => lanes.lease('p', 1, [`vm-${i}`]));
    leases.forEach((l, i) => void l.hold().then(() => got.push(i)));
    await settle();
    expect(got).toEqual([0]);
    void lanes.lease('p', 3, ['vm-3']).hold().then(() => got.push(3));
    await settle();
    expect(got).toEqual([0, 1, 2]);
  });

  it('a run of a member that holds a place shares it, and the place is given back when its last sharer frees it', async () => {
    const lanes = new Lanes();
    const first = lanes.lease('p', 1, ['new-vm', 'old-vm']);
    await first.hold();
    // Sent again from a later step: only the old VM's steps are left.
    const again = lanes.lease('p', 1, ['old-vm']);
    await again.hold();
    expect(lanes.stats('p')).toEqual({ busy: 1, waiting: 0 });
    const other = asked(lanes.lease('p', 1, ['someone-else']));
    first.free();
    await settle();
    expect(other()).toBe(false);
    again.free();
    await settle();
    expect(other()).toBe(true);
  });

  it('a run of a member still waiting for its place waits with it, and both start together', async () => {
    const lanes = new Lanes();
    const busy = lanes.lease('p', 1, ['busy']);
    await busy.hold();
    const got: string[] = [];
    void lanes.lease('p', 1, ['vm']).hold().then(() => got.push('first'));
    void lanes.lease('p', 1, ['vm']).hold().then(() => got.push('again'));
    await settle();
    expect(lanes.stats('p')).toEqual({ busy: 1, waiting: 1 });
    busy.free();
    await settle();
    expect(got).toEqual(['first', 'again']);
  });
});
