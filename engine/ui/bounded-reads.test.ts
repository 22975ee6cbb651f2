// Found by review: the dashboard's pages were paginated but their reads were
// not. The overview read every live VM of the stack to count them, a fleet's
// page every member of the fleet, a VM's page every member of its fleet, and
// an apply's page every journal row of the plan, then showed a page of them:
// on a 1,000,000-VM record, seconds of the authority's CPU (its event loop
// also answers the DMZ clients) and hundreds of MB per page load, which any
// read-only token could ask for again and again. Counted, not timed: the rows
// the record hands the dashboard per page, over a real record.
import { hostname } from 'node:os';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIFECYCLE } from '../policy/testdata/fixtures.ts';
import { memoryRecord } from '../record/testing.ts';
import type { NewVm, SqlRecord } from '../record/index.ts';
import { FLEET_PAGE_SIZE, JOURNAL_PAGE_SIZE, LOCKS_LISTED, MAX_FAILURES_LISTED, OVERVIEW_LOCKS } from './pages.ts';
import { recordSource } from './record-source.ts';
import { registerUi } from './server.ts';

const STACK = 'bounded';
const MEMBERS = 1201;
const STEPS = 2500;
const DCS = ['austin', 'miami', 'richmond'];

let record: SqlRecord;
let app: FastifyInstance;
/** Rows the record answered the dashboard with since the last reset: the length of each array it returned, however deep. */
let rowsRead = 0;

function rowsIn(value: unknown): number {
  if (Array.isArray(value)) return value.length;
  if (value && typeof value === 'object') return Object.values(value).reduce<number>((n, v) => n + (Array.isArray(v) ? v.length : 0), 0);
  return 0;
}

/** The record, every call's answer counted (rowsIn). */
function counted(r: SqlRecord): SqlRecord {
  return new Proxy(r, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        const out = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        rowsRead += rowsIn(out);
        return out;
      };
    },
  });
}

const newVm = (fleet: string, index: number, state: string): NewVm => ({
  stack: STACK, fleet, owner: 'team', index, dataCenter: DCS[index % DCS.length], state, desiredState: 'Running', specHash: 'h', image: 'ubuntu-22.04',
  size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, encryptedDisk: true,
});

beforeAll(async () => {
  record = await memoryRecord();
  await record.bulkInsertVms(
    [...Array.from({ length: MEMBERS }, (_, i) => newVm('big', i, i % 7 === 0 ? 'PoweredOff' : 'Running')), ...Array.from({ length: 3 }, (_, i) => newVm('web', i, 'Running'))],
    { actor: 'seed' },
  );
  await record.startPlan({ id: 'p-big', stack: STACK, digest: 'd', who: 'ci', startedAt: '2026-12-01T09:00:00.000Z' });
  // 150 failed steps, among the first 1500 rows.
  await Promise.all(
    Array.from({ length: STEPS }, (_, i) =>
      record.journal({ planId: 'p-big', address: `big/${i}`, seq: 0, vmId: null, from: 'PoweredOn', to: 'Starting', idempotencyKey: `k${i}`, status: i % 10 === 0 && i < 1500 ? 'failed' : 'done', detail: `row ${i}` }),
    ),
  );
  app = Fastify();
  registerUi(app, { source: recordSource(counted(record), STACK, { name: 'default', version: '1.0.0', lifecycle: DEFAULT_LIFECYCLE }), authorize: () => 'read' });
}, 60_000);
afterAll(async () => {
  await app?.close();
  await record?.close();
});

async function page(url: string): Promise<{ status: number; body: string; rows: number }> {
  rowsRead = 0;
  const res = await app.inject({ method: 'GET', url, headers: { authorization: 'Bearer read-token' } });
  return { status: res.statusCode, body: res.body, rows: rowsRead };
}

describe('the dashboard reads a bounded number of rows per page, whatever the size of the stack, fleet or apply', () => {
  it('the overview: counts, not VMs', async () => {
    const p = await page('/ui');
    expect(p.status).toBe(200);
    expect(p.body).toContain(`${MEMBERS + 3} VMs in 2 fleets over 3 data centers`);
    expect(p.body).toContain('data-state="PoweredOff" data-count="58"');
    // Per fleet, data center and state: at most 2 x 3 x 2 rows, plus the locks, applies and drift.
    expect(p.rows).toBeLessThanOrEqual(50);
  });

  // Found by review: the overview's counts were a GROUP BY over every live VM of the stack (countVms), ~50-60k rows
  // summed from 1,000,000 VMs and handed over on each load; now the page's fleets' VMs are counted (countVmsPage), the
  // fleets and the totals per data center summed from vm_usage.
  it('an overview page of a stack of many fleets: that page\'s fleets\' counts and the stack\'s totals', async () => {
    const stack = 'many-fleets';
    const name = (i: number) => `f${String(i).padStart(3, '0')}`;
    await record.bulkInsertVms(Array.from({ length: 450 }, (_, i) => ({ ...newVm(name(i), 0, 'Running'), stack, dataCenter: DCS[i % DCS.length] })), { actor: 'seed' });
    const many = Fastify();
    registerUi(many, { source: recordSource(counted(record), stack, { name: 'default', version: '1.0.0', lifecycle: DEFAULT_LIFECYCLE }), authorize: () => 'read' });
    try {
      rowsRead = 0;
      const res = await many.inject({ method: 'GET', url: '/ui?page=3', headers: { authorization: 'Bearer read-token' } });
      expect(res.statusCode).toBe(200);
      expect(res.body).toContain('450 VMs in 450 fleets over 3 data centers');
      expect([...res.body.matchAll(/<tr data-fleet="(f\d+)">/g)].map((m) => m[1])).toEqual(Array.from({ length: 50 }, (_, i) => name(400 + i)));
      // 50 fleets' counts (one data center and state each) and 3 totals, not 450 fleets' counts.
      expect(rowsRead).toBeLessThanOrEqual(50 + 3 + 10);
    } finally {
      await many.close();
    }
  });

  it.each([
    ['/ui/fleets/big', 0, 500],
    ['/ui/fleets/big?page=3', 1000, 201],
  ])('a fleet\'s page (%s): that page of its members', async (url, first, count) => {
    const p = await page(url);
    expect(p.status).toBe(200);
    const shown = [...p.body.matchAll(/<tr data-address="big\/(\d+)">/g)].map((m) => Number(m[1]));
    expect(shown).toEqual(Array.from({ length: count }, (_, i) => first + i));
    expect(p.body).toContain(`members ${first + 1}–${first + count} of ${MEMBERS}`);
    expect(p.rows).toBeLessThanOrEqual(FLEET_PAGE_SIZE + 10);
  });

  it('a fleet\'s page past its last: 404, reading no more than a page', async () => {
    const p = await page('/ui/fleets/big?page=4');
    expect(p.status).toBe(404);
    expect(p.body).toContain('it has 3 (500 members each)');
    expect(p.rows).toBeLessThanOrEqual(FLEET_PAGE_SIZE + 10);
  });

  it('a VM\'s page: that VM', async () => {
    const p = await page('/ui/vms/big/1100');
    expect(p.status).toBe(200);
    expect(p.body).toContain('<h1>big/1100</h1>');
    expect(p.rows).toBeLessThanOrEqual(10);
    expect((await page('/ui/vms/big/1201')).status).toBe(404);
  });

  it.each([
    ['/ui/plans/p-big', 0, 1000],
    ['/ui/plans/p-big?page=3', 2000, 500],
  ])('an apply\'s page (%s): that page of its journal, its first failures', async (url, first, count) => {
    const p = await page(url);
    expect(p.status).toBe(200);
    const shown = [...p.body.matchAll(/<td>row (\d+)<\/td><\/tr>/g)].map((m) => Number(m[1]));
    expect(shown).toEqual(Array.from({ length: count }, (_, i) => first + i));
    expect(p.body).toContain(`steps ${first + 1}–${first + count} of ${STEPS}`);
    const failures = [...p.body.matchAll(/<li>big\/\d+: PoweredOn → Starting: row (\d+)<\/li>/g)].map((m) => Number(m[1]));
    expect(failures).toEqual(Array.from({ length: MAX_FAILURES_LISTED }, (_, i) => i * 10));
    expect(p.body).toContain('50 more failed steps');
    expect(p.rows).toBeLessThanOrEqual(JOURNAL_PAGE_SIZE + MAX_FAILURES_LISTED + 10);
  });
});

// Found by review: the overview, the locks page, a fleet's page and the applies (with one running) read every lock of
// the stack, and the overview and the locks page listed them all: an apply of every fleet holds a lock per fleet (5,000
// in bench:scale's stack), so each load read and showed 5,000 rows. Now the first OVERVIEW_LOCKS (LOCKS_LISTED) by name
// and whether there are more, the page's fleets' for their "(locked)", a fleet's own, and of a running apply one lock
// per holder (whether its holder is gone).
describe('a stack whose every fleet an apply has locked', () => {
  const stack = 'many-locks';
  const LOCKED = 700;
  const name = (i: number) => `lk${String(i).padStart(3, '0')}`;
  let locked: FastifyInstance;
  beforeAll(async () => {
    await record.bulkInsertVms(Array.from({ length: 3 }, (_, i) => ({ ...newVm(name(i), 0, 'Running'), stack })), { actor: 'seed' });
    await record.startPlan({ id: 'p-all', stack, digest: 'd', who: 'ci', startedAt: '2026-12-01T09:00:00.000Z' });
    // Held by this process: a live holder, so the apply shows running, not "holder gone".
    await record.acquireLocks(stack, Array.from({ length: LOCKED }, (_, i) => name(i)), { who: 'ci', host: hostname(), pid: process.pid, planId: 'p-all' }, { leaseMs: 3_600_000 });
    locked = Fastify();
    registerUi(locked, { source: recordSource(counted(record), stack, { name: 'default', version: '1.0.0', lifecycle: DEFAULT_LIFECYCLE }), authorize: () => 'read' });
  }, 60_000);
  afterAll(() => locked?.close());

  const get = async (url: string) => {
    rowsRead = 0;
    const res = await locked.inject({ method: 'GET', url, headers: { authorization: 'Bearer read-token' } });
    return { status: res.statusCode, body: res.body, rows: rowsRead, listed: [...res.body.matchAll(/<tr data-fleet="(lk\d+)"><td>lk\d+<\/td>/g)].map((m) => m[1]) };
  };

  it('the overview lists the first locks and says there are more; its fleets still say "(locked)"', async () => {
    const p = await get('/ui');
    expect(p.status).toBe(200);
    expect(p.listed).toEqual(Array.from({ length: OVERVIEW_LOCKS }, (_, i) => name(i)));
    expect(p.body).toContain(`More than ${OVERVIEW_LOCKS} fleets are locked`);
    expect([...p.body.matchAll(/data-testid="locked"/g)]).toHaveLength(3);
    expect(p.body).toMatch(/data-plan="p-all">.*<td class="">running<\/td>/);
    expect(p.rows).toBeLessThanOrEqual(OVERVIEW_LOCKS + 1 + 3 + 20);
  });

  it('the locks page lists the first LOCKS_LISTED and says there are more', async () => {
    const p = await get('/ui/locks');
    expect(p.listed).toEqual(Array.from({ length: LOCKS_LISTED }, (_, i) => name(i)));
    expect(p.body).toContain(`More than ${LOCKS_LISTED} fleets are locked`);
    expect(p.rows).toBeLessThanOrEqual(LOCKS_LISTED + 1);
  });

  it.each([
    // A fleet with no live member but its lock still has its page (the lock).
    ['/ui/fleets/lk001', 'data-testid="fleet-lock">Locked by ci'],
    ['/ui/fleets/lk650', 'data-testid="fleet-lock">Locked by ci'],
    ['/ui/plans', '<td class="">running</td>'],
    ['/ui/plans/p-all', '<dd data-testid="result">running</dd>'],
  ])('%s reads the locks it shows, not every lock', async (url, shows) => {
    const p = await get(url);
    expect(p.status).toBe(200);
    expect(p.body).toContain(shows);
    expect(p.body).not.toContain('holder gone');
    expect(p.rows).toBeLessThanOrEqual(10);
  });
});
