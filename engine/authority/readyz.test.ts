// Found by review: the authority's public readiness probe read every lock of its stack on each call (its record check
// was listLocks), so anyone asking for /readyz again and again during a whole-stack apply (a lock per fleet: 5,000 in
// bench:scale's stack) made the record hand over every lock each time. It reads one now: a query on a migrated table.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPack } from '../../providers/testing.ts';
import { openRecord } from '../record/index.ts';
import type { FleetRecord } from '../record/types.ts';
import { startAuthority, type RunningService } from './server.ts';

let record: FleetRecord;
let authority: RunningService;
/** What each listLocks call answered, in rows. */
const lockRows: number[] = [];

beforeAll(async () => {
  record = await openRecord('memory://');
  await record.acquireLocks('probe', Array.from({ length: 300 }, (_, i) => `f${i}`), { who: 'ci', host: 'elsewhere', pid: 1, planId: null }, { leaseMs: 3_600_000 });
  const counted = new Proxy(record, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver) as unknown;
      if (key !== 'listLocks' || typeof v !== 'function') return v;
      return async (...args: unknown[]) => {
        const out = (await (v as (...a: unknown[]) => Promise<unknown[]>).apply(target, args));
        lockRows.push(out.length);
        return out;
      };
    },
  });
  authority = await startAuthority({ record: counted, pack: await defaultPack(), stackName: 'probe', dataCenters: [{ name: 'miami', token: 'tok-miami' }], secret: 'the-authority-secret-0123' });
});
afterAll(async () => {
  await authority?.close();
  await record?.close();
});

describe('GET /readyz on the authority', () => {
  it('is ready reading one lock, not every lock of the stack', async () => {
    lockRows.length = 0;
    const res = await fetch(`${authority.url}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ready: true, checks: { record: 'ok' } });
    expect(lockRows).toEqual([1]);
  });
});
