// leasedRecord: when `fleet ui` holds a PGlite record open. Driven by fake
// timers over a record that logs its openings and closings, so each case
// says exactly when the record is open.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { SqlRecord } from '../../record/index.ts';
import { leasedRecord } from './ui-run.ts';

function world(opts: { failFirst?: boolean } = {}) {
  const log: string[] = [];
  let n = 0;
  const open = async (): Promise<SqlRecord> => {
    const id = ++n;
    if (opts.failFirst && id === 1) {
      log.push(`open ${id} failed`);
      throw new Error('record.busy');
    }
    log.push(`open ${id}`);
    return {
      countVmsPage: async () => {
        log.push(`read ${id}`);
        return { fleets: 0, totals: [], rows: [] };
      },
      close: async () => void log.push(`close ${id}`),
    } as unknown as SqlRecord;
  };
  return { log, open };
}

/** Awaits `p`, moving the fake clock on 50 ms at a time while it is pending. */
async function settle<T>(p: Promise<T>): Promise<T> {
  let pending = true;
  p.then(
    () => (pending = false),
    () => (pending = false),
  );
  for (let i = 0; i < 1000 && pending; i++) await vi.advanceTimersByTimeAsync(50);
  return p;
}

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('leasedRecord', () => {
  it('shares one opening among reads that come together and within idleMs, and closes after idleMs without a read', async () => {
    const { log, open } = world();
    const r = leasedRecord(open, { idleMs: 1000, holdMs: 5000, yieldMs: 300 });
    await Promise.all([r.countVmsPage('s', { offset: 0, limit: 1 }), r.countVmsPage('s', { offset: 0, limit: 1 }), r.countVmsPage('s', { offset: 0, limit: 1 })]);
    await vi.advanceTimersByTimeAsync(900);
    await r.countVmsPage('s', { offset: 0, limit: 1 });
    expect(log).toEqual(['open 1', 'read 1', 'read 1', 'read 1', 'read 1']);
    await vi.advanceTimersByTimeAsync(1000);
    expect(log.at(-1)).toBe('close 1');
    await settle(r.countVmsPage('s', { offset: 0, limit: 1 }));
    expect(log.slice(-2)).toEqual(['open 2', 'read 2']);
    await settle(r.close());
    expect(log.at(-1)).toBe('close 2');
  });

  it('stops using an opening after holdMs even while reads keep coming, and opens anew only yieldMs after closing it', async () => {
    const { log, open } = world();
    const r = leasedRecord(open, { idleMs: 1000, holdMs: 5000, yieldMs: 300 });
    for (let t = 0; t < 6; t++) {
      await r.countVmsPage('s', { offset: 0, limit: 1 });
      await vi.advanceTimersByTimeAsync(900);
    }
    // The seventh read comes 5.4 s after the opening: it waits for the close, then the yield.
    const seventh = r.countVmsPage('s', { offset: 0, limit: 1 });
    await vi.advanceTimersByTimeAsync(250);
    expect(log).toEqual(['open 1', ...Array(6).fill('read 1'), 'close 1']);
    await settle(seventh);
    expect(log.slice(-2)).toEqual(['open 2', 'read 2']);
    await settle(r.close());
  });

  it('a read never waits on a closed opening: an opening that failed is tried again by the next read', async () => {
    const { log, open } = world({ failFirst: true });
    const r = leasedRecord(open, { idleMs: 1000, holdMs: 5000, yieldMs: 300 });
    await expect(r.countVmsPage('s', { offset: 0, limit: 1 })).rejects.toThrow('record.busy');
    await settle(r.countVmsPage('s', { offset: 0, limit: 1 }));
    expect(log).toEqual(['open 1 failed', 'open 2', 'read 2']);
    await settle(r.close());
  });
});
