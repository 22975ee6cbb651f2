// The dashboard overview (countVmsPage): its stack-wide totals (fleets with
// live VMs, their order, live VMs per data center) and a page's counts,
// checked against naive queries over vms after many generated record
// contents (several stacks, fleets, data centers, states, retirements,
// replacements, raw moves and deletes), reads interleaved with the writes
// so kept totals are always put to the test; and how the totals are kept
// (overview-cache.ts): never stale after this process's writes, at most
// OVERVIEW_CACHE_MS behind another's, read once for loads that come together.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../model/seeded-random.ts';
import { openPglite } from './pglite.ts';
import { openPostgres } from './postgres.ts';
import { openRecord } from './open.ts';
import { OVERVIEW_CACHE_MS, USAGE_UNCHANGED, mayChangeUsage, usageUnchanged } from './overview-cache.ts';
import { sqlRecord, type SqlRecord } from './record.ts';
import type { SqlAdapter } from './sql.ts';
import { testBackends, type TestBackend, type TestRecord } from './testing.ts';
import type { NewVm, VmCountsPage, VmRow } from './types.ts';

const ctx = { actor: 'prop' };
// Code point order differs from a locale's: 'Zeta' < '_x' < 'api' < 'f-1' < 'f1'.
const FLEETS = ['web', 'db', 'Zeta', '_x', 'api', 'f-1', 'f1'];
const DCS = ['miami', 'richmond', 'Austin', 'b-2'];
const STATES = ['Requested', 'Provisioning', 'Running', 'Stopped', 'BootFailed'];

function newVm(stack: string, fleet: string, index: number, over: Partial<NewVm> = {}): NewVm {
  return {
    stack,
    fleet,
    owner: 'team-a',
    index,
    dataCenter: 'miami',
    state: 'Requested',
    desiredState: 'Running',
    specHash: 'h',
    image: 'ubuntu',
    size: { cpu: 2, memoryGiB: 4, diskGiB: 10 },
    encryptedDisk: false,
    ...over,
  };
}

/** countVmsPage's answer the naive way: DISTINCT and GROUP BY over the stack's live VMs, no vm_usage. */
async function naivePage(record: SqlRecord, stack: string, offset: number, limit: number): Promise<VmCountsPage> {
  const fleets = (await record.sql.query<{ fleet: string }>(`SELECT DISTINCT fleet FROM vms WHERE stack = $1 AND retired_at IS NULL ORDER BY fleet`, [stack])).map((r) => r.fleet);
  const totals = await record.sql.query<{ data_center: string; n: string }>(
    `SELECT data_center, count(*)::text AS n FROM vms WHERE stack = $1 AND retired_at IS NULL GROUP BY data_center ORDER BY data_center COLLATE "C"`,
    [stack],
  );
  const shown = fleets.slice(offset, offset + limit);
  const rows = await record.sql.query<{ fleet: string; data_center: string; state: string; n: string }>(
    `SELECT fleet, data_center, state, count(*)::text AS n FROM vms WHERE stack = $1 AND retired_at IS NULL AND fleet = ANY($2::text[])
     GROUP BY fleet, data_center, state ORDER BY fleet COLLATE "C", data_center COLLATE "C", state COLLATE "C"`,
    [stack, shown],
  );
  return {
    fleets: fleets.length,
    totals: totals.map((t) => ({ dataCenter: t.data_center, vms: Number(t.n) })),
    rows: rows.map((r) => ({ fleet: r.fleet, dataCenter: r.data_center, state: r.state, vms: Number(r.n) })),
  };
}

async function rawAdapter(backend: TestBackend, url: string): Promise<SqlAdapter> {
  return backend.name === 'pglite' ? openPglite(url.slice('pglite://'.length)) : openPostgres(url, url);
}

/** `db` counting its reads of vm_usage (the overview's totals), and failing the next one when asked. */
function counting(db: SqlAdapter) {
  const c = { usageReads: 0, failNext: false };
  const adapter: SqlAdapter = {
    kind: db.kind,
    close: () => db.close(),
    transaction: (fn) => db.transaction(fn),
    async query(text, params) {
      if (/^\s*WITH g AS \(\s*SELECT fleet, data_center, sum\(vms\)/.test(text) || /FROM vm_usage WHERE stack = \$1 AND vms > 0\),/.test(text)) {
        c.usageReads++;
        if (c.failNext) {
          c.failNext = false;
          throw new Error('connection lost (test)');
        }
      }
      return db.query(text, params);
    },
  };
  return { adapter, c };
}

describe.each(testBackends())('overview (countVmsPage) on $name', (backend) => {
  let t: TestRecord;
  beforeAll(async () => {
    t = await backend.create();
  });
  afterAll(() => t?.cleanup());

  it('equals the naive DISTINCT and GROUP BY over the live VMs, page by page, after every step of generated writes on several stacks', async () => {
    const r = t.record;
    const seeds = backend.name === 'pglite' ? 10 : 16;
    const ran = new Map<string, number>();
    let compared = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const random = seededRandom(seed);
      const stacks = [`ov-${seed}-a`, `ov-${seed}-b`, `ov-${seed}-c`].slice(0, 1 + random.int(3));
      const fleets = FLEETS.slice(0, 2 + random.int(FLEETS.length - 1));
      const log: string[] = [];
      const live = async (stack: string) => (await r.listVms(stack)).filter((v) => !v.deposed);
      const vmOf = (stack: string, over: Partial<NewVm> = {}) =>
        newVm(stack, random.pick(fleets), random.int(5), { dataCenter: random.pick(DCS), state: random.pick(STATES), ...over });
      const ops: Record<string, (stack: string) => Promise<void>> = {
        async insert(stack) {
          const used = new Set((await live(stack)).map((v) => v.address));
          const vm = vmOf(stack);
          if (!used.has(`${vm.fleet}/${vm.index}`)) await r.insertVm(vm, ctx);
        },
        async bulk(stack) {
          const used = new Set((await live(stack)).map((v) => v.address));
          const vms = Array.from({ length: 1 + random.int(6) }, () => vmOf(stack)).filter((v) => {
            const a = `${v.fleet}/${v.index}`;
            if (used.has(a)) return false;
            used.add(a);
            return true;
          });
          if (vms.length) await r.bulkInsertVms(vms, ctx, 2);
        },
        async replace(stack) {
          const vms = await live(stack);
          if (!vms.length) return;
          const old = random.pick(vms);
          await r.insertVm(vmOf(stack, { fleet: old.fleet, index: old.index, replaces: old.id }), ctx);
        },
        async state(stack) {
          const vms = await r.listVms(stack);
          if (!vms.length) return;
          const v = random.pick(vms);
          await r.transitionVm(v.id, v.version, random.pick(STATES), ctx);
        },
        async retire(stack) {
          const vms = await r.listVms(stack);
          if (!vms.length) return;
          const v = random.pick(vms);
          await r.transitionVm(v.id, v.version, 'Deleted', ctx, { retire: true });
        },
        async retireFleet(stack) {
          // A whole fleet emptied: it leaves the overview (its vm_usage rows stay, at 0).
          const vms = await r.listVms(stack);
          if (!vms.length) return;
          const fleet = random.pick(vms).fleet;
          await r.transitionVms(vms.filter((v) => v.fleet === fleet).map((v) => ({ id: v.id, expectedVersion: v.version, to: 'Deleted', ctx, patch: { retire: true } })));
        },
        async batch(stack) {
          // States moved, some retired now and then: unmarked (USAGE_UNCHANGED) only when none is.
          const vms = await r.listVms(stack);
          const chosen = [...new Set(Array.from({ length: 1 + random.int(4) }, () => random.pick(vms)))].filter(Boolean);
          const retire = random.chance(0.5);
          if (chosen.length)
            await r.transitionVms(chosen.map((v) => ({ id: v.id, expectedVersion: v.version, to: random.pick(STATES), ctx, patch: retire && random.chance(0.5) ? { retire: true } : { cloudId: `c-${randomUUID()}` } })));
        },
        async update(stack) {
          const vms = await r.listVms(stack);
          if (!vms.length) return;
          const v = random.pick(vms);
          await r.updateVm(v.id, v.version, random.chance(0.5) ? { size: { cpu: 1 + random.int(4), memoryGiB: 2, diskGiB: 10 } } : { cloudId: `c-${randomUUID()}` }, ctx);
        },
        async history(stack) {
          const vms = await r.listVms(stack);
          if (vms.length) await r.addHistory(random.pick(vms).id, { from: null, to: 'Running', outcome: 'drift', ...ctx });
        },
        async rawMove(stack) {
          // Not through a writer: an operator's psql, through this process's record.
          const vms = await r.listVms(stack);
          if (vms.length) await r.sql.query('UPDATE vms SET data_center = $2 WHERE id = $1', [random.pick(vms).id, random.pick(DCS)]);
        },
        async rawDelete(stack) {
          const vms = await r.listVms(stack, { includeRetired: true });
          if (vms.length) await r.sql.query('DELETE FROM vms WHERE id = $1', [random.pick(vms).id]);
        },
        async adopt(stack) {
          const used = new Set((await live(stack)).map((v) => v.address));
          const vm = vmOf(stack);
          const id = randomUUID();
          if (!used.has(`${vm.fleet}/${vm.index}`)) await r.adoptVm({ ...vm, id, cloudId: `c-${id}` }, ctx);
        },
      };
      const weights: [string, number][] = [
        ['insert', 5], ['bulk', 3], ['replace', 2], ['state', 3], ['retire', 3], ['retireFleet', 1], ['batch', 2], ['update', 1], ['history', 1], ['rawMove', 1], ['rawDelete', 1], ['adopt', 1],
      ];
      const total = weights.reduce((n, [, w]) => n + w, 0);
      const check = async (stack: string, what: string) => {
        const limit = random.pick([0, 1, 2, 3, 200]);
        const pages = Math.max(1, Math.ceil((await naivePage(r, stack, 0, 0)).fleets / Math.max(1, limit)));
        const offset = limit * random.int(pages + 1);
        expect(await r.countVmsPage(stack, { offset, limit }), `seed ${seed}, ${what} (offset ${offset}, limit ${limit}) after ${log.join(', ')}`).toEqual(
          await naivePage(r, stack, offset, limit),
        );
        compared++;
      };
      for (let step = 0; step < 24; step++) {
        let x = random.next() * total;
        const [name] = weights.find(([, w]) => (x -= w) < 0) ?? weights[0];
        const stack = random.pick(stacks);
        log.push(`${name}(${stack})`);
        ran.set(name, (ran.get(name) ?? 0) + 1);
        if (random.chance(0.25)) {
          // A load in flight while the write runs: the load after the write must not take its answer.
          const inFlight = r.countVmsPage(stack, { offset: 0, limit: 200 });
          await ops[name](stack);
          await inFlight;
        } else {
          await ops[name](stack);
        }
        // Each stack now and then, so totals kept from before this write are asked for too.
        for (const s of stacks) if (s === stack || random.chance(0.5)) await check(s, `step ${step}`);
      }
      expect(await r.countVmsPage(`none-${seed}`, { offset: 0, limit: 10 })).toEqual({ fleets: 0, totals: [], rows: [] });
    }
    expect([...ran.keys()].sort()).toEqual(['adopt', 'batch', 'bulk', 'history', 'insert', 'rawDelete', 'rawMove', 'replace', 'retire', 'retireFleet', 'state', 'update']);
    expect(compared).toBeGreaterThan(seeds * 24);
  }, 300_000);

  describe('its totals kept', () => {
    // The record over an adapter of its own; `raw` writes as another process would (not through this record's adapter).
    let url: string;
    let drop: () => Promise<void>;
    let raw: SqlAdapter;
    let c: ReturnType<typeof counting>['c'];
    let r: SqlRecord;
    let clock = 0;
    const stack = 'kept';
    const summary = async () => {
      const p = await r.countVmsPage(stack, { offset: 0, limit: 10 });
      return `${p.fleets} fleets, ${p.totals.map((x) => `${x.dataCenter} ${x.vms}`).join(', ')}; rows ${p.rows.map((x) => `${x.fleet} ${x.state} ${x.vms}`).join(', ')}`;
    };

    beforeAll(async () => {
      ({ url, drop } = await backend.freshUrl());
      await (await openRecord(url)).close();
      raw = await rawAdapter(backend, url);
      const w = counting(raw);
      c = w.c;
      r = sqlRecord(w.adapter, url, { now: () => clock });
      await r.insertVm(newVm(stack, 'web', 0, { state: 'Running' }), ctx);
    });
    afterAll(async () => {
      await raw?.close();
      await drop?.();
    });

    // Found by the brief (overview-totals): each load summed every vm_usage row of the stack (3.1 s at 990,000 rows).
    it('are read once for loads with no VM write between them, the page\'s counts on each', async () => {
      const before = c.usageReads;
      expect(await summary()).toBe('1 fleets, miami 1; rows web Running 1');
      await raw.query(`UPDATE vms SET state = 'Stopped' WHERE stack = $1`, [stack]);
      // The state moved (counted per load); the totals were not read again.
      expect(await summary()).toBe('1 fleets, miami 1; rows web Stopped 1');
      await r.countVmsPage(stack, { offset: 1, limit: 10 });
      expect(c.usageReads - before).toBe(1);
    });

    it('are read once for loads that come together', async () => {
      clock += OVERVIEW_CACHE_MS;
      const before = c.usageReads;
      const pages = await Promise.all(Array.from({ length: 5 }, () => r.countVmsPage(stack, { offset: 0, limit: 10 })));
      expect(new Set(pages.map((p) => JSON.stringify(p))).size).toBe(1);
      expect(c.usageReads - before).toBe(1);
    });

    it('are read anew after each VM write of this process: every writer, raw SQL through the record, and a write that ends while a load is in flight', async () => {
      await summary();
      const before = c.usageReads;
      await r.insertVm(newVm(stack, 'db', 0, { dataCenter: 'austin' }), ctx);
      expect(await summary()).toBe('2 fleets, austin 1, miami 1; rows db Requested 1, web Stopped 1');
      await r.bulkInsertVms([newVm(stack, 'api', 0), newVm(stack, 'api', 1)], ctx);
      expect(await summary()).toMatch(/^3 fleets, austin 1, miami 3;/);
      const db0 = (await r.findVm(stack, 'db/0'))!;
      await r.transitionVm(db0.id, db0.version, 'Deleted', ctx, { retire: true });
      expect(await summary()).toMatch(/^2 fleets, miami 3;/);
      await r.sql.query(`UPDATE vms SET data_center = 'richmond' WHERE stack = $1 AND fleet = 'api'`, [stack]);
      // A load reading while a write runs (it reads, after the UPDATE); the load after the write reads anew.
      const inFlight = r.countVmsPage(stack, { offset: 0, limit: 10 });
      await r.sql.query(`DELETE FROM vms WHERE stack = $1 AND fleet = 'api'`, [stack]);
      await inFlight;
      expect(await summary()).toBe('1 fleets, miami 1; rows web Stopped 1');
      expect(c.usageReads - before).toBe(5);
    });

    it('are not read anew after the dashboard\'s other reads or writes of other tables (locks, plans)', async () => {
      await summary();
      const before = c.usageReads;
      const lock = await r.acquireLocks(stack, ['web'], { who: 'a', host: 'h', pid: 1, planId: null });
      await r.startPlan({ id: randomUUID(), stack, digest: 'd', who: 'a', startedAt: new Date().toISOString() });
      await Promise.all([r.listLocks(stack), r.listPlans(stack), r.history(stack), r.fleetMembers(stack, 'web', { offset: 0, limit: 5 }), r.countVms(stack), r.listFleets(stack)]);
      await lock.release();
      await summary();
      expect(c.usageReads - before).toBe(0);
    });

    it('are not read anew after the authority\'s commonest VM writes (states, cloud ids, history rows), and are after a retirement among them or a resize', async () => {
      await summary();
      let before = c.usageReads;
      const web = (await r.findVm(stack, 'web/0'))!;
      let v = await r.transitionVm(web.id, web.version, 'Running', ctx);
      v = (await r.transitionVms([{ id: v.id, expectedVersion: v.version, to: 'Stopped', ctx, patch: { cloudId: 'c-1' } }]))[0] as VmRow;
      v = await r.updateVm(v.id, v.version, { cloudId: 'c-2' }, ctx);
      await r.addHistory(v.id, { from: 'Stopped', to: 'Stopped', outcome: 'drift', ...ctx });
      await r.addHistoryMany([{ vmId: v.id, row: { from: 'Stopped', to: 'Stopped', outcome: 'drift', ...ctx } }]);
      expect(await summary()).toBe('1 fleets, miami 1; rows web Stopped 1');
      expect(c.usageReads - before).toBe(0);
      // Each of these is counted, and the next load reads the totals again.
      const extra = await r.insertVm(newVm(stack, 'web', 1), ctx);
      before = c.usageReads;
      v = await r.updateVm(v.id, v.version, { size: { cpu: 8, memoryGiB: 16, diskGiB: 10 } }, ctx);
      await summary();
      await r.transitionVms([{ id: extra.id, expectedVersion: extra.version, to: 'Deleted', ctx, patch: { retire: true } }]);
      expect(await summary()).toBe('1 fleets, miami 1; rows web Stopped 1');
      v = await r.transitionVm(v.id, v.version, 'Stopped', ctx, { size: { cpu: 2, memoryGiB: 4, diskGiB: 10 } });
      await summary();
      expect(c.usageReads - before).toBe(3);
    });

    it('are at most OVERVIEW_CACHE_MS behind another process\'s writes', async () => {
      clock += OVERVIEW_CACHE_MS;
      expect(await summary()).toBe('1 fleets, miami 1; rows web Stopped 1');
      await raw.query(
        `INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, cpu, memory_gib, disk_gib, encrypted_disk)
         VALUES ($1, $2, 'zz', 0, 'zz-0', 'tokyo', 'Running', 'Running', 'h', 'img', 1, 1, 1, false)`,
        [randomUUID(), stack],
      );
      clock += OVERVIEW_CACHE_MS - 1;
      // Kept: the other process's VM is not in the totals, nor its fleet on the page.
      expect(await summary()).toBe('1 fleets, miami 1; rows web Stopped 1');
      clock += 1;
      expect(await summary()).toBe('2 fleets, miami 1, tokyo 1; rows web Stopped 1, zz Running 1');
    });

    it('are not kept when their read failed', async () => {
      clock += OVERVIEW_CACHE_MS;
      c.failNext = true;
      await expect(r.countVmsPage(stack, { offset: 0, limit: 10 })).rejects.toThrow('connection lost (test)');
      const before = c.usageReads;
      expect(await summary()).toBe('2 fleets, miami 1, tokyo 1; rows web Stopped 1, zz Running 1');
      expect(c.usageReads - before).toBe(1);
    });
  });
});

describe('mayChangeUsage', () => {
  // A wrong yes costs one read of the totals; a wrong no, stale totals.
  it.each([
    ['SELECT fleet FROM vms WHERE stack = $1', false],
    ['WITH u AS (SELECT * FROM vm_usage) SELECT * FROM u', false],
    ['  select count(*) from vms', false],
    ['SELECT * FROM locks WHERE stack = $1', false],
    ['INSERT INTO journal (plan_id) VALUES ($1)', false],
    ['UPDATE locks SET expires_at = now()', false],
    ['SELECT * FROM vms_scope_x', false],
    ['SELECT updated_at FROM vms', false],
    ['INSERT INTO vms (id) VALUES ($1)', true],
    ['UPDATE vms SET state = $2', true],
    ['update "vms" set data_center = $2', true],
    ['DELETE FROM vms WHERE id = $1', true],
    ['TRUNCATE vms', true],
    ['TRUNCATE public.vms', true],
    ['WITH upd AS (UPDATE vms SET state = $2 RETURNING *) SELECT * FROM upd', true],
    ['WITH x AS (SELECT 1) INSERT INTO vms SELECT * FROM y', true],
    ['SELECT * FROM vms WHERE id = $1 FOR UPDATE', true],
    ['DELETE FROM vm_usage', true],
    ['COPY vms FROM STDIN', true],
    ['ALTER TABLE vms ADD COLUMN x int', true],
    [`${USAGE_UNCHANGED}WITH upd AS (UPDATE vms SET state = $2 RETURNING *) SELECT * FROM upd`, false],
    [` ${USAGE_UNCHANGED}UPDATE vms SET retired_at = now()`, true],
  ])('%s: %s', (text, expected) => {
    expect(mayChangeUsage(text)).toBe(expected);
  });
});

describe('usageUnchanged', () => {
  it('marks a statement (again and again: its marked texts are kept), and leaves one that may change vm_usage alone', () => {
    const sql = 'WITH upd AS (UPDATE vms SET state = $2 WHERE id = $1 RETURNING *) SELECT * FROM upd';
    const marked = usageUnchanged(sql);
    expect(marked).toBe(`${USAGE_UNCHANGED}${sql}`);
    expect(usageUnchanged(sql)).toBe(marked);
    expect(mayChangeUsage(marked)).toBe(false);
    expect(usageUnchanged(sql, false)).toBe(sql);
    expect(mayChangeUsage(usageUnchanged(sql, false))).toBe(true);
    // Past the bound, texts are still marked (made afresh).
    for (let i = 0; i < 600; i++) expect(usageUnchanged(`${sql} -- ${i}`)).toBe(`${USAGE_UNCHANGED}${sql} -- ${i}`);
  });
});
