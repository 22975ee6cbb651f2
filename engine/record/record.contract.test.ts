// The record's contract suite: the same cases on every backend (PGlite
// always, PostgreSQL when FLEET_TEST_POSTGRES_URL is set). Each case uses its
// own stack name so one record per backend serves the whole suite.
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../diags/index.ts';
import { formatVmAddress } from '../model/index.ts';
import { seededRandom } from '../model/seeded-random.ts';
import { CloudIdTakenError, VersionConflictError } from './errors.ts';
import type { BudgetExceededError } from './errors.ts';
import { MIGRATIONS, SCHEMA_VERSION, migrate } from './migrations.ts';
import { openRecord } from './open.ts';
import { openPglite } from './pglite.ts';
import { openPostgres } from './postgres.ts';
import type { SqlRecord } from './record.ts';
import type { SqlAdapter } from './sql.ts';
import { appliedPlans, bootAttempts, bootToken, testBackends, type TestBackend, type TestRecord } from './testing.ts';
import type { BootCheck, BootCheckResult, LockHolder, NewVm, PlanVmRow, VmRow } from './types.ts';

const holder = (who: string, planId: string | null = null): LockHolder => ({ who, host: 'ci-1', pid: 4242, planId });

function newVm(stack: string, fleet: string, index: number, over: Partial<NewVm> = {}): NewVm {
  return {
    stack,
    fleet,
    owner: 'team-payments',
    index,
    dataCenter: 'miami',
    state: 'Requested',
    desiredState: 'Running',
    specHash: 'h1',
    image: 'ubuntu-22.04',
    size: { cpu: 2, memoryGiB: 4, diskGiB: 50 },
    encryptedDisk: true,
    ...over,
  };
}

let n = 0;
const freshStack = () => `s${++n}-${randomBytes(2).toString('hex')}`;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof FleetError) return err.diagnostics[0].code;
    throw err;
  }
  return 'resolved';
}

async function rawAdapter(backend: TestBackend, url: string): Promise<SqlAdapter> {
  return backend.name === 'pglite' ? openPglite(url.slice('pglite://'.length)) : openPostgres(url, url);
}

describe.each(testBackends())('record contract on $name', (backend) => {
  let t: TestRecord;
  let r: SqlRecord;
  beforeAll(async () => {
    t = await backend.create();
    r = t.record;
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  describe('VMs', () => {
    it('inserts, lists in fleet/index order, gets and finds', async () => {
      const s = freshStack();
      await r.insertVm(newVm(s, 'web', 1), { actor: 'alice' });
      const a = await r.insertVm(newVm(s, 'web', 0, { realImage: 'ami-1', dataCenter: 'richmond' }), { actor: 'alice' });
      const d = await r.insertVm(newVm(s, 'db', 0, { size: { cpu: 0.5, memoryGiB: 1.25, diskGiB: 10 }, encryptedDisk: false }), { actor: 'alice' });
      await r.insertVm(newVm('other-' + s, 'web', 0), { actor: 'alice' });

      expect(a).toMatchObject({
        stack: s,
        fleet: 'web',
        index: 0,
        address: 'web/0',
        name: `${s}-web-0`,
        dataCenter: 'richmond',
        state: 'Requested',
        desiredState: 'Running',
        realImage: 'ami-1',
        size: { cpu: 2, memoryGiB: 4, diskGiB: 50 },
        encryptedDisk: true,
        cloudId: null,
        version: 1,
        retiredAt: null,
        deposed: false,
      });
      expect(Date.parse(a.createdAt)).not.toBeNaN();
      expect((await r.listVms(s)).map((v) => v.address)).toEqual(['db/0', 'web/0', 'web/1']);
      // listVms takes a faster path than getVm; both give the same rows.
      expect((await r.listVms(s))[0]).toEqual(d);
      expect((await r.listVms(s))[1]).toEqual(a);
      expect((await r.listVms(s, { fleets: ['web'] })).map((v) => v.address)).toEqual(['web/0', 'web/1']);
      expect(await r.listVms(s, { fleets: [] })).toEqual([]);
      expect(await r.getVm(a.id)).toEqual(a);
      expect(await r.findVm(s, 'web/0')).toEqual(a);
      expect(await r.findVm(s, 'web/7')).toBeUndefined();
      expect(await r.findVm(s, 'nonsense')).toBeUndefined();
      expect(await r.getVm('no-such-id')).toBeUndefined();
    });

    it('lists for planning: the live rows of listVms, in its order, without desired state, cloud id and timestamps', async () => {
      const s = freshStack();
      const sizes = [
        { cpu: 2, memoryGiB: 4, diskGiB: 50 },
        { cpu: 0.5, memoryGiB: 1.25, diskGiB: 10 },
      ];
      // Sizes alternate within a fleet, and repeat across fleets, so rows that share a size object and rows that do not both occur.
      for (const [f, n] of [['web', 4], ['db', 2], ['Zeta', 1]] as const) {
        for (let i = 0; i < n; i++) {
          await r.insertVm(newVm(s, f, i, { size: sizes[i === 1 ? 1 : 0], realImage: i === 0 ? null : `ami-${i}`, encryptedDisk: i % 2 === 0 }), { actor: 'a' });
        }
      }
      const web0 = (await r.findVm(s, 'web/0'))!;
      await r.transitionVm(web0.id, web0.version, 'BeingCreated', { actor: 'a' }, { cloudId: 'i-1' });
      const web3 = (await r.findVm(s, 'web/3'))!;
      await r.transitionVm(web3.id, web3.version, 'Deleted', { actor: 'a' }, { retire: true });
      const db1 = (await r.findVm(s, 'db/1'))!;
      await r.insertVm(newVm(s, 'db', 1, { replaces: db1.id, specHash: 'h2' }), { actor: 'a' });

      const omit = ({ desiredState: _d, createdAt: _ca, updatedAt: _u, ...rest }: VmRow): PlanVmRow => rest;
      const live = await r.listVms(s);
      expect(live.map((v) => `${v.address}${v.deposed ? ' (deposed)' : ''}`)).toEqual(['Zeta/0', 'db/0', 'db/1 (deposed)', 'db/1', 'web/0', 'web/1', 'web/2']);
      const rows = await r.listPlanVms(s);
      expect(rows).toEqual(live.map(omit));
      for (const row of rows) expect(Object.keys(row).sort()).toEqual(Object.keys(omit(live[0])).sort());
      expect(await r.listPlanVms(s, { fleets: ['web', 'Zeta', 'gone'] })).toEqual((await r.listVms(s, { fleets: ['web', 'Zeta', 'gone'] })).map(omit));
      expect(await r.listPlanVms(s, { fleets: [] })).toEqual([]);
      expect(await r.listPlanVms(`none-${s}`)).toEqual([]);
    });

    // The dashboard's reads (engine/ui): bounded whatever the size of the stack or fleet, and agreeing with listVms.
    it('counts live VMs per fleet, data center and state in the database (countVms), as listVms would count them', async () => {
      const s = freshStack();
      const spec: [string, number, string, string][] = [
        ['web', 0, 'miami', 'Running'],
        ['web', 1, 'richmond', 'Running'],
        ['web', 2, 'miami', 'BootFailed'],
        ['web', 3, 'miami', 'Running'],
        ['Zeta', 0, 'richmond', 'PoweredOff'],
        ['db', 0, 'miami', 'Requested'],
      ];
      for (const [f, i, dc, state] of spec) await r.insertVm(newVm(s, f, i, { dataCenter: dc, state }), { actor: 'a' });
      await r.insertVm(newVm(`other-${s}`, 'web', 0), { actor: 'a' });
      // A retired VM is not counted; an old VM being replaced (deposed) is, beside its replacement.
      const db0 = (await r.findVm(s, 'db/0'))!;
      await r.transitionVm(db0.id, db0.version, 'Deleted', { actor: 'a' }, { retire: true });
      const web3 = (await r.findVm(s, 'web/3'))!;
      await r.insertVm(newVm(s, 'web', 3, { replaces: web3.id, dataCenter: 'richmond' }), { actor: 'a' });

      const counts = await r.countVms(s);
      expect(counts).toEqual([
        { fleet: 'Zeta', dataCenter: 'richmond', state: 'PoweredOff', vms: 1 },
        { fleet: 'web', dataCenter: 'miami', state: 'BootFailed', vms: 1 },
        { fleet: 'web', dataCenter: 'miami', state: 'Running', vms: 2 },
        { fleet: 'web', dataCenter: 'richmond', state: 'Requested', vms: 1 },
        { fleet: 'web', dataCenter: 'richmond', state: 'Running', vms: 1 },
      ]);
      // The same numbers listVms' rows give.
      const byHand = new Map<string, number>();
      for (const v of await r.listVms(s)) byHand.set(`${v.fleet} ${v.dataCenter} ${v.state}`, (byHand.get(`${v.fleet} ${v.dataCenter} ${v.state}`) ?? 0) + 1);
      expect(new Map(counts.map((c) => [`${c.fleet} ${c.dataCenter} ${c.state}`, c.vms]))).toEqual(byHand);
      expect(await r.countVms(s, { fleets: ['Zeta', 'gone'] })).toEqual([{ fleet: 'Zeta', dataCenter: 'richmond', state: 'PoweredOff', vms: 1 }]);
      expect(await r.countVms(s, { fleets: [] })).toEqual([]);
      expect(await r.countVms(`none-${s}`)).toEqual([]);
    });

    it('reads the overview a page of fleets at a time (countVmsPage): the stack\'s fleets counted and VMs per data center, the page\'s counts', async () => {
      const s = freshStack();
      const spec: [string, number, string, string][] = [
        ['web', 0, 'miami', 'Running'],
        ['web', 1, 'richmond', 'Running'],
        ['web', 2, 'miami', 'BootFailed'],
        ['Zeta', 0, 'richmond', 'PoweredOff'],
        ['db', 0, 'miami', 'Requested'],
        ['api', 0, 'austin', 'Running'],
        ['gone', 0, 'austin', 'Running'],
      ];
      for (const [f, i, dc, state] of spec) await r.insertVm(newVm(s, f, i, { dataCenter: dc, state }), { actor: 'a' });
      await r.insertVm(newVm(`other-${s}`, 'web', 0), { actor: 'a' });
      // A fleet whose every VM is retired is no fleet of the overview; an old VM being replaced (deposed) counts.
      const gone = (await r.findVm(s, 'gone/0'))!;
      await r.transitionVm(gone.id, gone.version, 'Deleted', { actor: 'a' }, { retire: true });
      const web1 = (await r.findVm(s, 'web/1'))!;
      await r.insertVm(newVm(s, 'web', 1, { replaces: web1.id, dataCenter: 'richmond' }), { actor: 'a' });

      const totals = [
        { dataCenter: 'austin', vms: 1 },
        { dataCenter: 'miami', vms: 3 },
        { dataCenter: 'richmond', vms: 3 },
      ];
      const all = await r.countVms(s);
      // Fleets in code point order ('Zeta' before 'api'), two a page; each page's rows are countVms' rows of its fleets.
      const pages = [['Zeta', 'api'], ['db', 'web'], []];
      for (const [n, fleets] of pages.entries()) {
        const page = await r.countVmsPage(s, { offset: n * 2, limit: 2 });
        expect(page, `page ${n + 1}`).toEqual({ fleets: 4, totals, rows: all.filter((c) => fleets.includes(c.fleet)) });
      }
      expect((await r.countVmsPage(s, { offset: 0, limit: 10 })).rows).toEqual(all);
      expect(await r.countVmsPage(s, { offset: 0, limit: 0 })).toEqual({ fleets: 4, totals, rows: [] });
      expect(await r.countVmsPage(`none-${s}`, { offset: 0, limit: 10 })).toEqual({ fleets: 0, totals: [], rows: [] });
    });

    it('reads a page of a fleet\'s members (fleetMembers): by index, the current VM before the old one it replaces, with the count', async () => {
      const s = freshStack();
      for (let i = 0; i < 7; i++) await r.insertVm(newVm(s, 'web', i), { actor: 'a' });
      await r.insertVm(newVm(s, 'db', 0), { actor: 'a' });
      await r.insertVm(newVm(`other-${s}`, 'web', 0), { actor: 'a' });
      const web6 = (await r.findVm(s, 'web/6'))!;
      await r.transitionVm(web6.id, web6.version, 'Deleted', { actor: 'a' }, { retire: true });
      const web2 = (await r.findVm(s, 'web/2'))!;
      const repl = await r.insertVm(newVm(s, 'web', 2, { replaces: web2.id, specHash: 'h2' }), { actor: 'a' });

      const all = await r.listVms(s, { fleets: ['web'] });
      const pageOf = (offset: number, limit: number) => r.fleetMembers(s, 'web', { offset, limit });
      const members = await pageOf(0, 100);
      expect(members.total).toBe(7);
      expect(members.vms.map((v) => `${v.address}${v.deposed ? ' (deposed)' : ''}`)).toEqual(['web/0', 'web/1', 'web/2', 'web/2 (deposed)', 'web/3', 'web/4', 'web/5']);
      // listVms' rows, in the page's order.
      expect([...members.vms].sort((a, b) => all.indexOf(all.find((v) => v.id === a.id)!) - all.indexOf(all.find((v) => v.id === b.id)!))).toEqual(all);
      expect(members.vms[2]).toEqual(await r.getVm(repl.id));
      expect((await pageOf(2, 3)).vms.map((v) => v.id)).toEqual(members.vms.slice(2, 5).map((v) => v.id));
      expect(await pageOf(7, 3)).toEqual({ total: 7, vms: [] });
      expect(await pageOf(0, 0)).toEqual({ total: 7, vms: [] });
      // One index: the current VM first.
      expect((await r.fleetMembers(s, 'web', { offset: 0, limit: 5, index: 2 })).vms.map((v) => [v.id, v.deposed])).toEqual([
        [repl.id, false],
        [web2.id, true],
      ]);
      expect(await r.fleetMembers(s, 'web', { offset: 0, limit: 5, index: 6 })).toEqual({ total: 0, vms: [] });
      expect(await r.fleetMembers(s, 'gone', { offset: 0, limit: 5 })).toEqual({ total: 0, vms: [] });
    });

    it('lists for planning across its statements (groups of fleets) in listVms order', async () => {
      const s = freshStack();
      // 130 fleets: more than the first group of 50, named so code point order differs from a locale's.
      const names = Array.from({ length: 130 }, (_, i) => [`f${String(i).padStart(3, '0')}`, `F${i}`, `_${i}`, `f-${i}`][i % 4]);
      await r.bulkInsertVms(
        names.flatMap((f, i) => Array.from({ length: 1 + (i % 3) }, (_, k) => newVm(s, f, k, { dataCenter: k % 2 ? 'miami' : 'richmond' }))),
        { actor: 'seed' },
      );
      // A deposed VM and its replacement at one address, and a retired VM.
      const d = (await r.findVm(s, `${names[49]}/0`))!;
      await r.insertVm(newVm(s, names[49], 0, { replaces: d.id, specHash: 'h2' }), { actor: 'a' });
      const gone = (await r.findVm(s, `${names[50]}/0`))!;
      await r.transitionVm(gone.id, gone.version, 'Deleted', { actor: 'a' }, { retire: true });

      const omit = ({ desiredState: _d, createdAt: _ca, updatedAt: _u, ...rest }: VmRow): PlanVmRow => rest;
      const live = await r.listVms(s);
      expect(live).toHaveLength(names.reduce((n, _, i) => n + 1 + (i % 3), 0));
      expect(await r.listPlanVms(s)).toEqual(live.map(omit));
      const some = [names[129], names[0], names[50], names[49], 'no-such-fleet'];
      expect(await r.listPlanVms(s, { fleets: some })).toEqual((await r.listVms(s, { fleets: some })).map(omit));
    });

    it('orders fleets by code point on every server, whatever its locale', async () => {
      const s = freshStack();
      for (const f of ['web2', 'web-2', 'db', 'Web', '_a']) await r.insertVm(newVm(s, f, 0), { actor: 'a' });
      const want = ['Web', '_a', 'db', 'web-2', 'web2'];
      expect((await r.listVms(s)).map((v) => v.fleet)).toEqual(want);
      expect((await r.listFleets(s)).map((f) => f.fleet)).toEqual(want);
    });

    it('creates the fleet row with its owner and bumps its version per member write', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      expect(await r.listFleets(s)).toMatchObject([{ stack: s, fleet: 'web', owner: 'team-payments', version: 1 }]);
      // A create never changes the fleet's owner: one naming another is refused.
      expect(await codeOf(r.insertVm(newVm(s, 'web', 1, { owner: 'team-web' }), { actor: 'a' }))).toBe('record.owner-mismatch');
      await r.insertVm(newVm(s, 'web', 1), { actor: 'a' });
      const b = await r.transitionVm(a.id, 1, 'BeingCreated', { actor: 'a' });
      await r.updateVm(b.id, 2, { cloudId: 'i-1' }, { actor: 'a' });
      await r.updateVm(b.id, 3, { retire: true }, { actor: 'a' });
      expect(await r.listFleets(s, ['web', 'db'])).toMatchObject([{ fleet: 'web', owner: 'team-payments', version: 5 }]);
    });

    it('refuses a second live VM at one address, and reuses it once retired', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      const err = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VersionConflictError);
      expect((err as VersionConflictError).diagnostics[0]).toMatchObject({ code: 'record.version-conflict', address: 'web/0' });
      expect(await r.listFleets(s)).toMatchObject([{ version: 1 }]);

      const retired = await r.transitionVm(a.id, 1, 'Deleted', { actor: 'a' }, { retire: true });
      expect(retired.retiredAt).not.toBeNull();
      const b = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      expect(b.id).not.toBe(a.id);
      expect((await r.listVms(s)).map((v) => v.id)).toEqual([b.id]);
      expect((await r.listVms(s, { includeRetired: true })).map((v) => v.id)).toEqual([a.id, b.id]);
      expect((await r.findVm(s, 'web/0'))?.id).toBe(b.id);
    });

    it('adopts a cloud VM (fleet import): live at its address in the cloud\'s state with its cloud id, a retired row of its id brought back, a live address or id refused', async () => {
      const s = freshStack();
      const id = randomUUID();
      const adopted = await r.adoptVm({ ...newVm(s, 'web', 0, { state: 'Running' }), id, cloudId: 'i-1' }, { actor: 'a', detail: 'adopted i-1' });
      expect(adopted).toMatchObject({ id, address: 'web/0', state: 'Running', cloudId: 'i-1', retiredAt: null, version: 1 });
      expect((await r.history(s, 'web/0')).map((h) => [h.from, h.to, h.outcome, h.detail])).toEqual([[null, 'Running', 'imported', 'adopted i-1']]);
      expect(await r.listFleets(s)).toMatchObject([{ fleet: 'web', version: 1 }]);
      const live = await r.adoptVm({ ...newVm(s, 'web', 0), id: randomUUID(), cloudId: 'i-2' }, { actor: 'a' }).catch((e: unknown) => e);
      expect((live as VersionConflictError).diagnostics[0]).toMatchObject({ code: 'record.version-conflict', address: 'web/0' });
      const twice = await r.adoptVm({ ...newVm(s, 'web', 1), id, cloudId: 'i-1' }, { actor: 'a' }).catch((e: unknown) => e);
      expect((twice as VersionConflictError).diagnostics[0].detail).toContain('is live already in the record, at web/0');
      // Forgotten (state rm), then adopted again at another index: the same row, back with the new values.
      await r.updateVm(id, 1, { retire: true }, { actor: 'a' });
      const back = await r.adoptVm({ ...newVm(s, 'web', 2, { state: 'PoweredOff' }), id, cloudId: 'i-1' }, { actor: 'a' });
      expect(back).toMatchObject({ id, address: 'web/2', state: 'PoweredOff', retiredAt: null, version: 3 });
      expect((await r.listVms(s)).map((v) => v.address)).toEqual(['web/2']);
    });

    // No unique constraint holds cloud_id: a cloud VM the record tracks under another VM id was adopted a second time.
    it('refuses to adopt a cloud id a live VM of the stack\'s data center holds under another VM id (fleet import): nothing is written', async () => {
      const s = freshStack();
      const cloudId = `i-${randomUUID()}`;
      const held = await r.adoptVm({ ...newVm(s, 'web', 0, { state: 'Running' }), id: randomUUID(), cloudId }, { actor: 'a' });
      const cases = [
        { name: 'another address of its fleet', vm: newVm(s, 'web', 1) },
        { name: 'another fleet', vm: newVm(s, 'api', 0) },
      ];
      for (const c of cases) {
        const err = await r.adoptVm({ ...c.vm, id: randomUUID(), cloudId }, { actor: 'a' }).catch((e: unknown) => e);
        expect(err, c.name).toBeInstanceOf(CloudIdTakenError);
        expect((err as CloudIdTakenError).holder, c.name).toMatchObject({ id: held.id, stack: s, address: 'web/0' });
        expect((err as CloudIdTakenError).diagnostics[0].detail, c.name).toContain(`held by VM ${held.id} at web/0`);
      }
      expect((await r.listVms(s)).map((v) => v.address)).toEqual(['web/0']);
      // The same cloud id in another data center, or another stack's (its miami may be another cloud), is another VM;
      // and once the VM holding it is forgotten, the id is free.
      const elsewhere = await r.adoptVm({ ...newVm(s, 'web', 1, { dataCenter: 'richmond' }), id: randomUUID(), cloudId }, { actor: 'a' });
      expect(elsewhere).toMatchObject({ address: 'web/1', cloudId, dataCenter: 'richmond' });
      expect(await r.adoptVm({ ...newVm(freshStack(), 'web', 0), id: randomUUID(), cloudId }, { actor: 'a' })).toMatchObject({ address: 'web/0', cloudId });
      await r.updateVm(held.id, held.version, { retire: true }, { actor: 'a' });
      expect(await r.adoptVm({ ...newVm(s, 'web', 2), id: randomUUID(), cloudId }, { actor: 'a' })).toMatchObject({ address: 'web/2', cloudId });
      // Two adopts of one cloud id into two fleets at once (each import holds only its own fleet's lock): one row.
      const raced = `i-${randomUUID()}`;
      await Promise.all(['a', 'b', 'c', 'd'].map(() => r.listVms(s))); // PostgreSQL: a connection each, so the adopts do overlap
      const both = await Promise.allSettled(['a', 'b', 'c', 'd'].map((f) => r.adoptVm({ ...newVm(s, f, 0), id: randomUUID(), cloudId: raced }, { actor: 'a' })));
      expect(both.filter((b) => b.status === 'fulfilled')).toHaveLength(1);
      for (const b of both) if (b.status === 'rejected') expect(b.reason).toBeInstanceOf(CloudIdTakenError);
    });

    it('adopts within the owner\'s budget when given one (fleet import): past it, nothing is written', async () => {
      const s = freshStack();
      await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      const budget = { owner: { vms: 1 }, guard: true };
      const over = await r.adoptVm({ ...newVm(s, 'web', 1), id: randomUUID(), cloudId: 'i-9' }, { actor: 'a' }, budget).catch((e: unknown) => e);
      expect((over as BudgetExceededError).diagnostics[0]).toMatchObject({ code: 'record.over-budget' });
      expect((await r.listVms(s)).map((v) => v.address)).toEqual(['web/0']);
      const within = await r.adoptVm({ ...newVm(s, 'web', 1), id: randomUUID(), cloudId: 'i-9' }, { actor: 'a' }, { owner: { vms: 2 }, guard: true });
      expect(within).toMatchObject({ address: 'web/1', cloudId: 'i-9' });
    });

    it('deposes the VM a replacement replaces, in the same transaction', async () => {
      const s = freshStack();
      const old = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      const repl = await r.insertVm(newVm(s, 'web', 0, { replaces: old.id }), { actor: 'a', planId: 'p1' });
      const rows = await r.listVms(s);
      expect(rows.map((v) => [v.id, v.deposed])).toEqual([
        [old.id, true],
        [repl.id, false],
      ]);
      expect((await r.getVm(old.id))?.version).toBe(old.version + 1);
      expect((await r.findVm(s, 'web/0'))?.id).toBe(repl.id);
      expect((await r.history(s, 'web/0')).some((h) => h.vmId === old.id && h.detail === `deposed: replaced by ${repl.id}`)).toBe(true);
      // Only a live VM at that very address can be deposed; nothing changes otherwise.
      expect(await codeOf(r.insertVm(newVm(s, 'web', 1, { replaces: repl.id }), { actor: 'a' }))).toBe('record.version-conflict');
      expect((await r.listVms(s)).map((v) => v.address)).toEqual(['web/0', 'web/0']);
    });

    it('keeps a proposed id, and refuses it twice', async () => {
      const s = freshStack();
      const id = `vm-${randomBytes(4).toString('hex')}`;
      expect((await r.insertVm(newVm(s, 'web', 0, { id }), { actor: 'a' })).id).toBe(id);
      expect(await codeOf(r.insertVm(newVm(s, 'web', 1, { id }), { actor: 'a' }))).toBe('record.version-conflict');
    });

    it('transitions with a patch and a history row, atomically', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'alice', planId: 'p1' });
      const b = await r.transitionVm(
        a.id,
        1,
        'BeingCreated',
        { actor: 'authority', planId: 'p1', requestId: 'rq1', detail: 'approved' },
        { cloudId: 'i-9', realImage: 'ami-9', size: { cpu: 4, memoryGiB: 8, diskGiB: 60 } },
      );
      expect(b).toMatchObject({ state: 'BeingCreated', version: 2, cloudId: 'i-9', realImage: 'ami-9', size: { cpu: 4, memoryGiB: 8, diskGiB: 60 } });
      const h = await r.history(s, 'web/0');
      expect(h.map((x) => [x.from, x.to, x.actor, x.planId, x.requestId, x.outcome, x.detail])).toEqual([
        [null, 'Requested', 'alice', 'p1', null, 'ok', null],
        ['Requested', 'BeingCreated', 'authority', 'p1', 'rq1', 'ok', 'approved'],
      ]);
      expect(h.every((x) => x.vmId === a.id && x.address === 'web/0')).toBe(true);
      const c = await r.transitionVm(a.id, 2, 'Failed', { actor: 'authority', outcome: 'failed' });
      expect(c.version).toBe(3);
      expect((await r.history(s, 'web/0')).at(-1)).toMatchObject({ from: 'BeingCreated', to: 'Failed', outcome: 'failed' });
    });

    it('rejects a stale version and changes nothing', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      await r.transitionVm(a.id, 1, 'BeingCreated', { actor: 'a' });
      const err = await r.transitionVm(a.id, 1, 'PoweredOff', { actor: 'b' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VersionConflictError);
      expect(err).toMatchObject({ key: a.id, expected: 1, actual: 2 });
      expect(await codeOf(r.updateVm(a.id, 7, { cloudId: 'x' }, { actor: 'b' }))).toBe('record.version-conflict');
      expect(await r.getVm(a.id)).toMatchObject({ state: 'BeingCreated', version: 2, cloudId: null });
      expect(await r.history(s)).toHaveLength(2);
      expect(await r.listFleets(s)).toMatchObject([{ version: 2 }]);
    });

    it('lets exactly one of two writers on one version win', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      const results = await Promise.allSettled([
        r.transitionVm(a.id, 1, 'BeingCreated', { actor: 'x' }),
        r.transitionVm(a.id, 1, 'BeingCreated', { actor: 'y' }),
      ]);
      expect(results.filter((x) => x.status === 'fulfilled')).toHaveLength(1);
      const rejected = results.find((x) => x.status === 'rejected') as PromiseRejectedResult;
      expect(rejected.reason).toBeInstanceOf(VersionConflictError);
      expect(await r.history(s)).toHaveLength(2);
    });

    it('inserts many VMs in one call: each with its fleet bump and history row, or the error insertVm would throw', async () => {
      const s = freshStack();
      await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      const id = '00000000-0000-4000-8000-00000000abcd';
      const out = await r.insertVms([
        { vm: newVm(s, 'web', 1, { id }), ctx: { actor: 'authority', planId: 'p1', requestId: 'rq1', detail: 'translated' } },
        { vm: newVm(s, 'web', 0), ctx: { actor: 'authority' } },
        { vm: newVm(s, 'db', 0), ctx: { actor: 'authority' } },
        { vm: newVm(s, 'db', 0), ctx: { actor: 'authority' } },
        { vm: newVm(s, 'web', 2, { id }), ctx: { actor: 'authority' } },
      ]);
      expect(out[0]).toMatchObject({ id, address: 'web/1', state: 'Requested', version: 1 });
      expect(out[1]).toBeInstanceOf(VersionConflictError);
      expect((out[1] as VersionConflictError).key).toBe('web/0');
      expect(out[2]).toMatchObject({ address: 'db/0' });
      expect(out[3]).toBeInstanceOf(VersionConflictError);
      expect(out[4]).toBeInstanceOf(VersionConflictError);
      expect((out[4] as VersionConflictError).key).toBe(id);
      expect((await r.listFleets(s)).map((f) => [f.fleet, f.version, f.owner])).toEqual([
        ['db', 1, 'team-payments'],
        ['web', 2, 'team-payments'],
      ]);
      const h = await r.history(s);
      expect(h.map((x) => [x.address, x.from, x.to, x.actor, x.planId, x.requestId, x.detail])).toEqual([
        ['web/0', null, 'Requested', 'a', null, null, null],
        ['web/1', null, 'Requested', 'authority', 'p1', 'rq1', 'translated'],
        ['db/0', null, 'Requested', 'authority', null, null, null],
      ]);
      expect(await r.insertVms([])).toEqual([]);
    });

    it('inserts a batch in address order: of items with one id, the one whose address comes first gets the row, its history and its answer', async () => {
      // Two replicas' batches of the same creates must not insert them in opposite orders (lock-order.test.ts), so a
      // batch inserts by address, not by item; the row still goes with the item it was made from.
      const s = freshStack();
      const id = '00000000-0000-4000-8000-00000000abce';
      const out = await r.insertVms([
        { vm: newVm(s, 'web', 2, { id }), ctx: { actor: 'authority', requestId: 'rq-2' }, bootTokenHash: 'h2' },
        { vm: newVm(s, 'web', 1, { id }), ctx: { actor: 'authority', requestId: 'rq-1' }, bootTokenHash: 'h1' },
      ]);
      expect(out[0]).toBeInstanceOf(VersionConflictError);
      expect((out[0] as VersionConflictError).key).toBe(id);
      expect(out[1]).toMatchObject({ id, address: 'web/1' });
      expect((await r.history(s)).map((h) => [h.address, h.requestId])).toEqual([['web/1', 'rq-1']]);
      expect(await bootToken(r, id)).toEqual({ hash: 'h1', used: false });
      // The first item with an id, refused for its address (live already), does not take the row the next one made.
      const other = '00000000-0000-4000-8000-00000000abcf';
      const next = await r.insertVms([
        { vm: newVm(s, 'web', 1, { id: other }), ctx: { actor: 'authority', requestId: 'rq-3' } },
        { vm: newVm(s, 'web', 4, { id: other }), ctx: { actor: 'authority', requestId: 'rq-4' } },
      ]);
      expect(next[0]).toBeInstanceOf(VersionConflictError);
      expect((next[0] as VersionConflictError).key).toBe(other);
      expect(next[1]).toMatchObject({ id: other, address: 'web/4' });
      expect((await r.history(s)).map((h) => [h.address, h.requestId])).toEqual([['web/1', 'rq-1'], ['web/4', 'rq-4']]);
    });

    it('transitions many VMs in one call: each moved with its history row, or the error transitionVm would throw', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      const b = await r.insertVm(newVm(s, 'web', 1), { actor: 'a' });
      const c = await r.insertVm(newVm(s, 'db', 0), { actor: 'a' });
      const out = await r.transitionVms([
        { id: a.id, expectedVersion: 1, to: 'BeingCreated', ctx: { actor: 'authority', planId: 'p1', requestId: 'rq-a', detail: 'ok a' } },
        { id: b.id, expectedVersion: 7, to: 'BeingCreated', ctx: { actor: 'authority' } },
        { id: 'nope', expectedVersion: 1, to: 'X', ctx: { actor: 'authority' } },
        { id: c.id, expectedVersion: 1, to: 'Deleted', ctx: { actor: 'authority', outcome: 'failed' }, patch: { cloudId: 'i-3', retire: true } },
      ]);
      expect(out[0]).toMatchObject({ id: a.id, state: 'BeingCreated', version: 2, cloudId: null, retiredAt: null });
      expect(out[1]).toBeInstanceOf(VersionConflictError);
      expect(out[1]).toMatchObject({ key: b.id, expected: 7, actual: 1 });
      expect(out[2]).toBeInstanceOf(FleetError);
      expect((out[2] as FleetError).diagnostics[0].code).toBe('record.vm-not-found');
      expect(out[3]).toMatchObject({ id: c.id, state: 'Deleted', version: 2, cloudId: 'i-3' });
      expect((out[3] as VmRow).retiredAt).not.toBeNull();
      expect(await r.getVm(b.id)).toMatchObject({ state: 'Requested', version: 1 });
      const h = await r.history(s);
      expect(h.filter((x) => x.actor === 'authority').map((x) => [x.address, x.from, x.to, x.outcome, x.requestId, x.detail]).sort()).toEqual([
        ['db/0', 'Requested', 'Deleted', 'failed', null, null],
        ['web/0', 'Requested', 'BeingCreated', 'ok', 'rq-a', 'ok a'],
      ]);
      // Each fleet's version moves once per member moved: web 2 inserts + 1, db 1 insert + 1.
      expect((await r.listFleets(s)).map((f) => [f.fleet, f.version])).toEqual([
        ['db', 2],
        ['web', 3],
      ]);
      expect(await r.transitionVms([])).toEqual([]);
    });

    describe('transitionVms with an intent: the next edge\'s intent row in the same statement', () => {
      const intent = (to: string, requestId: string) => ({ to, actor: 'authority', planId: 'p1', requestId, detail: `intent approved: ${to}` });
      const rowsOf = async (s: string) =>
        (await r.history(s)).filter((x) => x.actor !== 'a').map((x) => [x.address, x.from, x.to, x.outcome, x.actor, x.requestId]);

      it('writes the transition row, then the intent row, at the version the transition made', async () => {
        const s = freshStack();
        const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
        const [moved] = await r.transitionVms([
          { id: a.id, expectedVersion: 1, to: 'BeingCreated', ctx: { actor: 'dmz-client:miami', requestId: 'rq-1' }, intent: intent('PoweredOff', 'rq-2') },
        ]);
        expect(moved).toMatchObject({ id: a.id, state: 'BeingCreated', version: 2 });
        const h = await r.history(s);
        expect(h.map((x) => [x.from, x.to, x.outcome, x.actor, x.planId, x.requestId, x.detail])).toEqual([
          [null, 'Requested', 'ok', 'a', null, null, null],
          ['Requested', 'BeingCreated', 'ok', 'dmz-client:miami', null, 'rq-1', null],
          ['BeingCreated', 'PoweredOff', 'ok', 'authority', 'p1', 'rq-2', 'intent approved: PoweredOff'],
        ]);
        expect(h[1].id).toBeLessThan(h[2].id);
        // The intent row is no write to the VM: one version and one fleet bump, as without it.
        expect(await r.getVm(a.id)).toMatchObject({ state: 'BeingCreated', version: 2 });
        expect((await r.listFleets(s)).map((f) => f.version)).toEqual([2]);
      });

      it('writes neither row when the version check fails', async () => {
        const s = freshStack();
        const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
        const [out] = await r.transitionVms([
          { id: a.id, expectedVersion: 5, to: 'BeingCreated', ctx: { actor: 'dmz-client:miami' }, intent: intent('PoweredOff', 'rq-2') },
        ]);
        expect(out).toBeInstanceOf(VersionConflictError);
        expect(out).toMatchObject({ key: a.id, expected: 5, actual: 1 });
        expect(await rowsOf(s)).toEqual([]);
        expect(await r.getVm(a.id)).toMatchObject({ state: 'Requested', version: 1 });
      });

      it('mixes items with and without an intent in one batch, rows in item order', async () => {
        const s = freshStack();
        const [a, b, c, d] = await Promise.all([0, 1, 2, 3].map((i) => r.insertVm(newVm(s, 'web', i), { actor: 'a' })));
        const out = await r.transitionVms([
          { id: a.id, expectedVersion: 1, to: 'BeingCreated', ctx: { actor: 'dmz-client:miami', requestId: 'a1' }, intent: intent('PoweredOff', 'a2') },
          { id: b.id, expectedVersion: 1, to: 'BeingCreated', ctx: { actor: 'dmz-client:miami', requestId: 'b1' } },
          { id: c.id, expectedVersion: 2, to: 'BeingCreated', ctx: { actor: 'dmz-client:miami', requestId: 'c1' }, intent: intent('PoweredOff', 'c2') },
          { id: d.id, expectedVersion: 1, to: 'BeingCreated', ctx: { actor: 'dmz-client:miami', requestId: 'd1' }, patch: { cloudId: 'i-4' }, intent: intent('PoweredOff', 'd2') },
        ]);
        expect(out.map((x) => (x instanceof VersionConflictError ? 'conflict' : (x as VmRow).state))).toEqual(['BeingCreated', 'BeingCreated', 'conflict', 'BeingCreated']);
        expect(out[3]).toMatchObject({ cloudId: 'i-4', version: 2 });
        expect(await rowsOf(s)).toEqual([
          ['web/0', 'Requested', 'BeingCreated', 'ok', 'dmz-client:miami', 'a1'],
          ['web/0', 'BeingCreated', 'PoweredOff', 'ok', 'authority', 'a2'],
          ['web/1', 'Requested', 'BeingCreated', 'ok', 'dmz-client:miami', 'b1'],
          ['web/3', 'Requested', 'BeingCreated', 'ok', 'dmz-client:miami', 'd1'],
          ['web/3', 'BeingCreated', 'PoweredOff', 'ok', 'authority', 'd2'],
        ]);
        expect((await r.listFleets(s)).map((f) => f.version)).toEqual([4 + 3]);
      });
    });

    describe('onward rows: an intent, then `none` edges passed at once (passes), in the statement of a transition or an insert', () => {
      const intent = (to: string, requestId: string) => ({ to, actor: 'authority', planId: 'p1', requestId, detail: `intent approved: ${to}` });
      const pass = (requestId: string, next?: ReturnType<typeof intent>) => ({ ctx: { actor: 'dmz-client:miami', requestId, detail: 'record only' }, ...(next ? { intent: next } : {}) });
      const rowsOf = async (s: string) => (await r.history(s)).filter((x) => x.actor !== 'a').map((x) => [x.address, x.from, x.to, x.outcome, x.actor, x.requestId]);

      it('a transition passes a none edge: transition, intent, transition, intent rows in order; the row ends where the pass leads, two versions on', async () => {
        const s = freshStack();
        const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
        const [moved] = await r.transitionVms([
          {
            id: a.id,
            expectedVersion: 1,
            to: 'PoweredOff',
            ctx: { actor: 'dmz-client:miami', requestId: 'rq-1' },
            patch: { cloudId: 'i-1' },
            intent: intent('BeingDeleted', 'rq-2'),
            passes: [pass('rq-2', intent('Deleted', 'rq-3'))],
          },
        ]);
        expect(moved).toMatchObject({ id: a.id, state: 'BeingDeleted', version: 3, cloudId: 'i-1', retiredAt: null });
        const h = await r.history(s);
        expect(h.map((x) => [x.from, x.to, x.outcome, x.actor, x.requestId, x.detail])).toEqual([
          [null, 'Requested', 'ok', 'a', null, null],
          ['Requested', 'PoweredOff', 'ok', 'dmz-client:miami', 'rq-1', null],
          ['PoweredOff', 'BeingDeleted', 'ok', 'authority', 'rq-2', 'intent approved: BeingDeleted'],
          ['PoweredOff', 'BeingDeleted', 'ok', 'dmz-client:miami', 'rq-2', 'record only'],
          ['BeingDeleted', 'Deleted', 'ok', 'authority', 'rq-3', 'intent approved: Deleted'],
        ]);
        expect(h.map((x) => x.id)).toEqual([...h.map((x) => x.id)].sort((x, y) => x - y));
        // One fleet bump per move, as two transitionVm calls would make.
        expect((await r.listFleets(s)).map((f) => f.version)).toEqual([3]);
      });

      it('a pass without the intent row of its edge before it is a bug', async () => {
        const s = freshStack();
        const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
        await expect(r.transitionVms([{ id: a.id, expectedVersion: 1, to: 'X', ctx: { actor: 'x' }, passes: [pass('rq')] }])).rejects.toThrow('needs the intent row');
        await expect(r.transitionVms([{ id: a.id, expectedVersion: 1, to: 'X', ctx: { actor: 'x' }, intent: intent('Y', 'r'), passes: [pass('r'), pass('s')] }])).rejects.toThrow('needs the intent row');
        expect(await r.getVm(a.id)).toMatchObject({ state: 'Requested', version: 1 });
      });

      it('stores a boot token with the transition that writes its intent, and none when the version check fails', async () => {
        const s = freshStack();
        const [a, b] = await Promise.all([0, 1].map((i) => r.insertVm(newVm(s, 'web', i), { actor: 'a' })));
        // An earlier token of a, which the transition's replaces.
        expect(await r.addHistoryMany([{ vmId: a.id, row: { from: 'Requested', to: 'Requested', outcome: 'ok', actor: 'a' }, bootTokenHash: 'old' }])).toEqual([undefined]);
        const out = await r.transitionVms([
          { id: a.id, expectedVersion: 1, to: 'PoweredOn', ctx: { actor: 'd' }, intent: intent('Starting', 'ra'), bootTokenHash: 'ha' },
          { id: b.id, expectedVersion: 9, to: 'PoweredOn', ctx: { actor: 'd' }, intent: intent('Starting', 'rb'), bootTokenHash: 'hb' },
        ]);
        expect(out[0]).toMatchObject({ state: 'PoweredOn', version: 2 });
        expect(out[1]).toBeInstanceOf(VersionConflictError);
        expect(await bootToken(r, a.id)).toEqual({ hash: 'ha', used: false });
        expect(await bootToken(r, b.id)).toBeUndefined();
        expect((await rowsOf(s)).map((x) => x[5])).toEqual([null, 'ra']);
      });

      it('an insert with an intent and a pass: created, then the rows, in the state and at the version the pass made', async () => {
        const s = freshStack();
        await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
        const out = await r.insertVms([
          { vm: newVm(s, 'web', 1), ctx: { actor: 'authority', requestId: 'c1' }, intent: intent('BeingCreated', 'e1'), passes: [pass('e1', intent('PoweredOff', 'e2'))] },
          { vm: newVm(s, 'web', 0), ctx: { actor: 'authority', requestId: 'c0' }, intent: intent('BeingCreated', 'x1'), passes: [pass('x1')] },
          { vm: newVm(s, 'db', 0), ctx: { actor: 'authority', requestId: 'c2' }, intent: intent('BeingCreated', 'f1') },
        ]);
        expect(out[0]).toMatchObject({ address: 'web/1', state: 'BeingCreated', version: 2 });
        expect(out[1]).toBeInstanceOf(VersionConflictError);
        expect(out[2]).toMatchObject({ address: 'db/0', state: 'Requested', version: 1 });
        expect(await rowsOf(s)).toEqual([
          ['web/1', null, 'Requested', 'ok', 'authority', 'c1'],
          ['web/1', 'Requested', 'BeingCreated', 'ok', 'authority', 'e1'],
          ['web/1', 'Requested', 'BeingCreated', 'ok', 'dmz-client:miami', 'e1'],
          ['web/1', 'BeingCreated', 'PoweredOff', 'ok', 'authority', 'e2'],
          ['db/0', null, 'Requested', 'ok', 'authority', 'c2'],
          ['db/0', 'Requested', 'BeingCreated', 'ok', 'authority', 'f1'],
        ]);
        // A fleet's version: one per member write (web: insert of web/0, then web/1's insert and pass).
        expect((await r.listFleets(s)).map((f) => [f.fleet, f.version])).toEqual([
          ['db', 1],
          ['web', 3],
        ]);
        // The row goes on from there as any other.
        expect(await r.transitionVms([{ id: (out[0] as VmRow).id, expectedVersion: 2, to: 'PoweredOff', ctx: { actor: 'd' } }])).toMatchObject([{ state: 'PoweredOff', version: 3 }]);
      });

      it('an insert stores a boot token with its row, and none for an item left out', async () => {
        const s = freshStack();
        const web0 = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
        const out = await r.insertVms([
          { vm: newVm(s, 'web', 1), ctx: { actor: 'authority' }, intent: intent('BeingCreated', 'e1'), bootTokenHash: 'h1' },
          { vm: newVm(s, 'web', 0), ctx: { actor: 'authority' }, bootTokenHash: 'h0' },
        ]);
        const made = out[0] as VmRow;
        expect(made).toMatchObject({ address: 'web/1' });
        expect(out[1]).toBeInstanceOf(VersionConflictError);
        expect(await bootToken(r, made.id)).toEqual({ hash: 'h1', used: false });
        expect(await bootToken(r, web0.id)).toBeUndefined();
      });
    });

    it('adds many history rows in one call, each only at its expected version', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      const b = await r.insertVm(newVm(s, 'web', 1), { actor: 'a' });
      const out = await r.addHistoryMany([
        { vmId: a.id, row: { from: 'Requested', to: 'BeingCreated', outcome: 'ok', actor: 'authority', detail: 'intent approved: none' }, expectedVersion: 1 },
        { vmId: b.id, row: { from: 'Requested', to: 'BeingCreated', outcome: 'ok', actor: 'authority' }, expectedVersion: 3 },
        { vmId: 'nope', row: { from: null, to: 'X', outcome: 'vetoed', actor: 'authority' } },
        { vmId: b.id, row: { from: 'Requested', to: 'ShuttingDown', outcome: 'vetoed', actor: 'authority', planId: 'p9' } },
      ]);
      expect(out[0]).toBeUndefined();
      expect(out[1]).toBeInstanceOf(VersionConflictError);
      expect((out[2] as FleetError).diagnostics[0].code).toBe('record.vm-not-found');
      expect(out[3]).toBeUndefined();
      expect((await r.history(s)).filter((h) => h.actor === 'authority').map((h) => [h.address, h.to, h.outcome, h.planId])).toEqual([
        ['web/0', 'BeingCreated', 'ok', null],
        ['web/1', 'ShuttingDown', 'vetoed', 'p9'],
      ]);
      expect(await r.getVm(a.id)).toMatchObject({ version: 1 });
    });

    it('every writer stores the history row\'s address as formatVmAddress spells it, also for a fleet name with slashes', async () => {
      const s = freshStack();
      const ctx = { actor: 'a' };
      const a = await r.insertVm(newVm(s, 'team/api', 12), ctx);
      await r.transitionVm(a.id, 1, 'BeingCreated', ctx);
      const [b] = (await r.insertVms([{ vm: newVm(s, 'team/api', 3), ctx, intent: { to: 'BeingCreated', actor: 'a' }, passes: [{ ctx }] }])) as VmRow[];
      await r.transitionVms([{ id: b.id, expectedVersion: b.version, to: 'PoweredOff', ctx, intent: { to: 'PoweredOn', actor: 'a' } }]);
      await r.addHistory(a.id, { from: 'BeingCreated', to: 'BeingCreated', outcome: 'drift', actor: 'a' });
      await r.addHistoryMany([{ vmId: a.id, row: { from: 'BeingCreated', to: 'PoweredOff', outcome: 'vetoed', actor: 'a' } }]);
      await r.insertVm(newVm(s, 'team/api', 12, { replaces: a.id }), ctx);
      await r.bulkInsertVms([newVm(s, 'a/b/c', 0)], ctx);
      const rows = await r.history(s);
      expect(rows).toHaveLength(12);
      const byId = new Map((await r.listVms(s, { includeRetired: true })).map((v) => [v.id, v]));
      for (const h of rows) expect(h.address).toBe(formatVmAddress(byId.get(h.vmId)!));
      expect([...new Set(rows.map((h) => h.address))]).toEqual(['team/api/12', 'team/api/3', 'a/b/c/0']);
    });

    it('updates without a history row', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      const b = await r.updateVm(a.id, 1, { specHash: 'h2', desiredState: 'PoweredOff', encryptedDisk: false, image: 'debian-12' }, { actor: 'a' });
      expect(b).toMatchObject({ version: 2, specHash: 'h2', desiredState: 'PoweredOff', encryptedDisk: false, image: 'debian-12', state: 'Requested' });
      expect(await r.history(s)).toHaveLength(1);
    });

    it('reports an unknown VM id as record.vm-not-found', async () => {
      expect(await codeOf(r.transitionVm('nope', 1, 'X', { actor: 'a' }))).toBe('record.vm-not-found');
      expect(await codeOf(r.updateVm('nope', 1, {}, { actor: 'a' }))).toBe('record.vm-not-found');
      expect(await codeOf(r.addHistory('nope', { from: null, to: 'X', outcome: 'vetoed', actor: 'a' }))).toBe('record.vm-not-found');
    });

    it('adds history rows without a state change, and limits to the newest', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      await r.insertVm(newVm(s, 'db', 0), { actor: 'a' });
      await r.addHistory(a.id, { from: 'Requested', to: 'ShuttingDown', outcome: 'vetoed', actor: 'authority', detail: 'no edge' });
      await r.addHistory(a.id, { from: 'Requested', to: 'Requested', outcome: 'drift', actor: 'refresh' });
      expect(await r.getVm(a.id)).toMatchObject({ version: 1, state: 'Requested' });
      expect((await r.history(s)).map((h) => h.address)).toEqual(['web/0', 'db/0', 'web/0', 'web/0']);
      expect((await r.history(s, 'web/0', { limit: 2 })).map((h) => h.outcome)).toEqual(['vetoed', 'drift']);
      expect(await r.history(s, 'web/9')).toEqual([]);
      // Only one outcome (the dashboard's drift), over the stack or one address, with a limit.
      await r.addHistory(a.id, { from: 'Requested', to: 'Requested', outcome: 'drift', actor: 'refresh', detail: 'second' });
      expect((await r.history(s, undefined, { outcome: 'drift' })).map((h) => [h.address, h.detail])).toEqual([
        ['web/0', null],
        ['web/0', 'second'],
      ]);
      expect((await r.history(s, 'web/0', { outcome: 'drift', limit: 1 })).map((h) => h.detail)).toEqual(['second']);
      expect(await r.history(s, 'db/0', { outcome: 'drift' })).toEqual([]);
      expect(await r.history(freshStack(), undefined, { outcome: 'vetoed' })).toEqual([]);
    });

    it('bulk-inserts all or none', async () => {
      const s = freshStack();
      const vms = Array.from({ length: 25 }, (_, i) => newVm(s, i % 2 ? 'web' : 'db', Math.floor(i / 2)));
      expect(await r.bulkInsertVms(vms, { actor: 'seed' }, 10)).toBe(25);
      const listed = await r.listVms(s);
      expect(listed).toHaveLength(25);
      expect(listed[0]).toMatchObject({ address: 'db/0', name: `${s}-db-0`, version: 1, size: { cpu: 2, memoryGiB: 4, diskGiB: 50 } });
      expect(await r.history(s)).toHaveLength(25);
      expect(await r.listFleets(s)).toMatchObject([
        { fleet: 'db', version: 1 },
        { fleet: 'web', version: 1 },
      ]);
      const again = [newVm(s, 'cache', 0), newVm(s, 'web', 0)];
      expect(await codeOf(r.bulkInsertVms(again, { actor: 'seed' }))).toBe('record.version-conflict');
      expect(await r.listVms(s, { fleets: ['cache'] })).toEqual([]);
    });

    it('sums live VMs per fleet and data center with the fleet owner, leaving out excluded fleets', async () => {
      const s = freshStack();
      const half = { cpu: 0.5, memoryGiB: 1.25, diskGiB: 10 };
      await r.bulkInsertVms(
        [
          newVm(s, 'web', 0),
          newVm(s, 'web', 1),
          newVm(s, 'web', 2, { dataCenter: 'richmond' }),
          newVm(s, 'db', 0, { owner: 'team-data', size: half }),
          newVm(s, 'db', 1, { owner: 'team-data', size: half }),
          newVm(s, 'db', 2, { owner: 'team-data' }),
          newVm(s, 'cache', 0, { owner: 'team-data' }),
          newVm('other-' + s, 'web', 0),
        ],
        { actor: 'seed' },
      );
      // A retired VM is not counted; a deposed one (still running) is.
      const gone = await r.findVm(s, 'cache/0');
      await r.transitionVm(gone!.id, 1, 'Deleted', { actor: 'a' }, { retire: true });
      const old = await r.findVm(s, 'web/1');
      await r.insertVm(newVm(s, 'web', 1, { replaces: old!.id }), { actor: 'a' });

      expect(await r.usage(s, { excludeFleets: [] })).toEqual([
        { fleet: 'db', owner: 'team-data', dataCenter: 'miami', vms: 3, cpu: 3, memoryGiB: 6.5 },
        { fleet: 'web', owner: 'team-payments', dataCenter: 'miami', vms: 3, cpu: 6, memoryGiB: 12 },
        { fleet: 'web', owner: 'team-payments', dataCenter: 'richmond', vms: 1, cpu: 2, memoryGiB: 4 },
      ]);
      expect(await r.usage(s, { excludeFleets: ['web', 'nonesuch'] })).toEqual([
        { fleet: 'db', owner: 'team-data', dataCenter: 'miami', vms: 3, cpu: 3, memoryGiB: 6.5 },
      ]);
      expect(await r.usage(s, { excludeFleets: ['web', 'db'] })).toEqual([]);
      expect(await r.usage('no-such-stack', { excludeFleets: [] })).toEqual([]);
      // The same totals as listVms' rows.
      const listed = await r.listVms(s);
      const total = (await r.usage(s, { excludeFleets: [] })).reduce((n, u) => n + u.vms, 0);
      expect(total).toBe(listed.length);
    });
  });

  describe('fleet protection', () => {
    // setFleetProtection bumped no version: a saved plan made before another apply changed the fleet's
    // protection (or made its row) was not stale, and applied what its reviewers never saw.
    it('is kept per fleet, creating the fleet row, bumping its version when it changes, and cleared only when told', async () => {
      const s = freshStack();
      await r.setFleetProtection(s, 'vault', 'team-sec', true);
      expect(await r.listFleets(s)).toMatchObject([{ fleet: 'vault', owner: 'team-sec', version: 1, protected: true }]);
      await r.insertVm(newVm(s, 'vault', 0, { owner: 'team-sec' }), { actor: 'a' });
      await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      expect((await r.listFleets(s)).map((f) => [f.fleet, f.version, f.protected])).toEqual([
        ['vault', 2, true],
        ['web', 1, false],
      ]);
      await r.setFleetProtection(s, 'vault', 'team-sec', false);
      expect((await r.listFleets(s)).map((f) => [f.fleet, f.version, f.protected])).toEqual([
        ['vault', 3, false],
        ['web', 1, false],
      ]);
      // What the row holds already (a retried write, or apply's write of an unchanged fleet): nothing bumped.
      await r.setFleetProtection(s, 'vault', 'team-sec', false);
      expect((await r.listFleets(s, ['vault']))[0]).toMatchObject({ version: 3, protected: false, owner: 'team-sec' });
    });

    it("a protection written since makes a basis that holds the fleet stale, and only that fleet's", async () => {
      const s = freshStack();
      await r.insertVm(newVm(s, 'vault', 0), { actor: 'a' });
      await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      const basis = { vms: {}, fleets: Object.fromEntries((await r.listFleets(s)).map((f) => [f.fleet, f.version])) };
      expect(await r.checkBasis(s, basis)).toEqual([]);
      await r.setFleetProtection(s, 'vault', 'team-payments', true);
      expect(await r.checkBasis(s, basis)).toEqual([{ kind: 'fleet', key: 'vault', expected: 1, actual: 2 }]);
      // A row made protected is a protection a basis of the fleet as new (0: no row, unprotected) never saw: stale.
      await r.setFleetProtection(s, 'fresh', 'team-payments', true);
      expect(await r.checkBasis(s, { vms: {}, fleets: { fresh: 0 } })).toEqual([{ kind: 'fleet', key: 'fresh', expected: 0, actual: 1 }]);
      // One made unprotected (apply's row of a new fleet before its creates) holds what that basis read: not stale.
      await r.setFleetProtection(s, 'plain', 'team-payments', false);
      expect(await r.checkBasis(s, { vms: {}, fleets: { plain: 0 } })).toEqual([]);
    });
  });

  describe('approvals (approvalOf)', () => {
    it("finds the authority's intent row of a request, and whether a DMZ client's report of it followed", async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'authority', requestId: 'create-1' });
      expect(await r.approvalOf(a.id, 'create-1')).toEqual({ from: null, to: 'Requested', detail: null, reported: false, superseded: false });
      await r.addHistory(a.id, { from: 'Requested', to: 'BeingCreated', outcome: 'ok', actor: 'authority', requestId: 'req-1', detail: 'intent approved: none' });
      expect(await r.approvalOf(a.id, 'req-1')).toEqual({ from: 'Requested', to: 'BeingCreated', detail: 'intent approved: none', reported: false, superseded: false });
      // A second approval of the same edge (req-1b), never reported: req-1's report moves the VM, so req-1b is superseded, req-1 not.
      await r.addHistory(a.id, { from: 'Requested', to: 'BeingCreated', outcome: 'ok', actor: 'authority', requestId: 'req-1b', detail: 'intent approved: none' });
      await r.transitionVm(a.id, 1, 'BeingCreated', { actor: 'dmz-client:miami', requestId: 'req-1' });
      expect(await r.approvalOf(a.id, 'req-1')).toMatchObject({ reported: true, superseded: false });
      expect(await r.approvalOf(a.id, 'req-1b')).toMatchObject({ reported: false, superseded: true });
      // Not approved: unknown ids, another VM's request, a vetoed row, a row someone else wrote.
      await r.addHistory(a.id, { from: 'BeingCreated', to: 'Deleted', outcome: 'vetoed', actor: 'dmz-client:miami', requestId: 'req-2' });
      await r.addHistory(a.id, { from: 'BeingCreated', to: 'PoweredOff', outcome: 'ok', actor: 'dmz-client:miami', requestId: 'req-3' });
      for (const id of ['nope', 'req-2', 'req-3']) expect(await r.approvalOf(a.id, id)).toBeUndefined();
      expect(await r.approvalOf('other-vm', 'req-1')).toBeUndefined();
    });

    it('edgesInFlight: the live VMs of the fleets whose newest row is an approval no report followed', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'authority', requestId: 'create-1' });
      const b = await r.insertVm(newVm(s, 'web', 1), { actor: 'authority', requestId: 'create-2' });
      const c = await r.insertVm(newVm(s, 'db', 0), { actor: 'authority', requestId: 'create-3' });
      expect(await r.edgesInFlight(s, ['web', 'db'])).toEqual([]);
      await r.addHistory(a.id, { from: 'Requested', to: 'BeingCreated', outcome: 'ok', actor: 'authority', requestId: 'req-a', detail: 'intent approved: none' });
      await r.addHistory(b.id, { from: 'Requested', to: 'BeingCreated', outcome: 'ok', actor: 'authority', requestId: 'req-b', detail: 'intent approved: none' });
      await r.addHistory(c.id, { from: 'Requested', to: 'BeingCreated', outcome: 'ok', actor: 'authority', requestId: 'req-c', detail: 'intent approved: none' });
      expect(await r.edgesInFlight(s, ['web', 'db'])).toEqual([
        { address: 'db/0', detail: 'intent approved: none' },
        { address: 'web/0', detail: 'intent approved: none' },
        { address: 'web/1', detail: 'intent approved: none' },
      ]);
      expect((await r.edgesInFlight(s, ['web'])).map((e) => e.address)).toEqual(['web/0', 'web/1']);
      expect(await r.edgesInFlight(s, [])).toEqual([]);
      // Reported (a transition), failed, or vetoed since: no longer in flight; another stack's fleets are not looked at.
      await r.transitionVm(a.id, 1, 'BeingCreated', { actor: 'dmz-client:miami', requestId: 'req-a' });
      await r.addHistory(b.id, { from: 'Requested', to: 'BeingCreated', outcome: 'failed', actor: 'dmz-client:miami', requestId: 'req-b', detail: 'createVm failed' });
      expect(await r.edgesInFlight(s, ['web', 'db'])).toEqual([{ address: 'db/0', detail: 'intent approved: none' }]);
      expect(await r.edgesInFlight(freshStack(), ['web', 'db'])).toEqual([]);
    });

    // The planner's question of a VM stuck in BootFailed with its cloud VM (docs/recovery.md): was the boot it failed
    // in denied? Both the DMZ client's failure report of that boot (its code driver.boot-denied: its driver saw the VM's
    // own agent denied) and an authority's denial of the VM in that boot say so; a denial alone may be anyone's boot
    // check (the boot endpoint is open to the DMZ network). Each VM's history as the authority and a DMZ client write
    // it (rows only: what is read).
    it('deniedBoots: the VMs whose failure of the boot their latest boot edge started was boot-denied and denied by the authority in it', async () => {
      const s = freshStack();
      const booted = { from: 'PoweredOn', to: 'Starting', outcome: 'ok' as const, actor: 'dmz-client:miami', detail: 'boot done in miami' };
      const intent = { from: 'PoweredOn', to: 'Starting', outcome: 'ok' as const, actor: 'authority', detail: 'intent approved: boot' };
      const denied = (from: string) => ({ from, to: from, outcome: 'denied' as const, actor: 'authority', detail: 'boot denied: the boot token is not one the authority issued' });
      const failed = (code?: string) => ({ from: 'Starting', to: 'BootFailed', outcome: 'failed' as const, actor: 'dmz-client:miami', detail: 'awaitReady failed in miami', ...(code ? { code } : {}) });
      const deniedFail = failed('driver.boot-denied');
      const cases: { name: string; rows: Parameters<SqlRecord['addHistory']>[1][]; want: boolean }[] = [
        { name: 'denied in its boot, then failed boot-denied', rows: [intent, booted, denied('Starting'), deniedFail], want: true },
        { name: 'denied in its boot; the intent of its boot edge is no move', rows: [booted, intent, denied('Starting'), deniedFail], want: true },
        { name: 'a plain boot failure', rows: [intent, booted, failed('driver.boot-failed')], want: false },
        { name: 'someone else\'s boot check denied in its boot, then failed boot-failed', rows: [intent, booted, denied('Starting'), failed('driver.boot-failed')], want: false },
        { name: 'someone else\'s boot check denied in its boot, then timed out', rows: [intent, booted, denied('Starting'), failed('driver.timeout')], want: false },
        { name: 'denied in its boot, failed without a code (an older DMZ client; a row before migration 18)', rows: [intent, booted, denied('Starting'), failed()], want: false },
        { name: 'failed boot-denied with no denial by the authority', rows: [intent, booted, deniedFail], want: false },
        { name: 'denied after it left the boot (an agent asking late)', rows: [intent, booted, deniedFail, denied('BootFailed')], want: false },
        { name: 'denied before its boot edge (a stale agent)', rows: [denied('PoweredOn'), intent, booted, deniedFail], want: false },
        { name: 'denied in an earlier boot, failed plainly in the latest', rows: [booted, denied('Starting'), deniedFail, booted, failed('driver.boot-failed')], want: false },
        { name: 'denied in an earlier boot, failed boot-denied in the latest without a denial', rows: [booted, denied('Starting'), failed('driver.boot-failed'), booted, deniedFail], want: false },
        { name: 'another actor\'s denied row does not count', rows: [booted, { ...denied('Starting'), actor: 'dmz-client:miami' }, deniedFail], want: false },
        { name: 'a boot-denied code on a row not a DMZ client\'s does not count', rows: [booted, denied('Starting'), { ...deniedFail, actor: 'authority' }], want: false },
      ];
      const ids: string[] = [];
      for (const [i, c] of cases.entries()) {
        const vm = await r.insertVm(newVm(s, 'web', i), { actor: 'authority', requestId: `create-${i}` });
        for (const row of c.rows) await r.addHistory(vm.id, row);
        ids.push(vm.id);
      }
      const want = ids.filter((_, i) => cases[i].want);
      const got = await r.deniedBoots(ids, ['Starting']);
      expect(cases.filter((_, i) => got.includes(ids[i])).map((c) => c.name)).toEqual(cases.filter((c) => c.want).map((c) => c.name));
      expect(got).toEqual(want);
      // In the order asked; a retired VM is none of the plan's.
      expect(await r.deniedBoots([...ids].reverse(), ['Starting'])).toEqual([...want].reverse());
      const first = (await r.getVm(ids[0]))!;
      await r.transitionVm(first.id, first.version, 'Deleted', { actor: 'a' }, { retire: true });
      expect(await r.deniedBoots(ids, ['Starting'])).toEqual(want.slice(1));
      expect(await r.deniedBoots([], ['Starting'])).toEqual([]);
      expect(await r.deniedBoots(ids, [])).toEqual([]);
    });

    // The authority writes a failure report's code with the row of its move along the failure edge (transitionVm,
    // transitionVms: the batched reports) or, with no failure edge, the row it notes (addHistory, addHistoryMany).
    it('every writer of a failure keeps its code in the history row (what deniedBoots reads)', async () => {
      const s = freshStack();
      const ctx = (code: string | null) => ({ actor: 'dmz-client:miami', requestId: 'req-f', outcome: 'failed' as const, detail: 'awaitReady failed in miami', code });
      const writers: { name: string; fail: (id: string, version: number, code: string | null) => Promise<unknown> }[] = [
        { name: 'transitionVm', fail: (id, v, code) => r.transitionVm(id, v, 'BootFailed', ctx(code)) },
        { name: 'transitionVms', fail: (id, v, code) => r.transitionVms([{ id, expectedVersion: v, to: 'BootFailed', ctx: ctx(code) }]) },
        { name: 'addHistory', fail: (id, _v, code) => r.addHistory(id, { from: 'Starting', to: 'Running', ...ctx(code) }) },
        { name: 'addHistory once', fail: (id, _v, code) => r.addHistory(id, { from: 'Starting', to: 'Running', ...ctx(code) }, undefined, { once: true }) },
        { name: 'addHistory at a version', fail: (id, v, code) => r.addHistory(id, { from: 'Starting', to: 'Running', ...ctx(code) }, v) },
        { name: 'addHistoryMany', fail: (id, _v, code) => r.addHistoryMany([{ vmId: id, row: { from: 'Starting', to: 'Running', ...ctx(code) } }]) },
      ];
      let index = 0;
      for (const w of writers) {
        const ids: string[] = [];
        for (const code of ['driver.boot-denied', 'driver.boot-failed', null]) {
          const vm = await r.insertVm(newVm(s, 'web', index++), { actor: 'a' });
          const at = await r.transitionVm(vm.id, vm.version, 'Starting', { actor: 'dmz-client:miami' });
          await r.addHistory(vm.id, { from: 'Starting', to: 'Starting', outcome: 'denied', actor: 'authority', detail: 'boot denied' });
          await w.fail(vm.id, at.version, code);
          ids.push(vm.id);
        }
        expect(await r.deniedBoots(ids, ['Starting']), w.name).toEqual([ids[0]]);
      }
    });
  });

  describe('budgets: quota and capacity checked with the insert', () => {
    it('inserts within the owner quota and the data center capacity, refuses past them, and writes nothing of a refused item', async () => {
      const s = freshStack();
      await r.insertVm(newVm(s, 'web', 0, { owner: 'team-q' }), { actor: 'a' });
      await r.insertVm(newVm(s, 'other', 0, { owner: 'team-x', dataCenter: 'richmond' }), { actor: 'a' });
      const budget = { owner: { vms: 3 }, dataCenter: { cpu: 9 } };
      const out = await r.insertVms([
        { vm: newVm(s, 'web', 1, { owner: 'team-q' }), ctx: { actor: 'a' }, budget },
        { vm: newVm(s, 'api', 0, { owner: 'team-q' }), ctx: { actor: 'a' }, budget },
        { vm: newVm(s, 'api', 1, { owner: 'team-q' }), ctx: { actor: 'a' }, budget },
        // Another owner in miami: its quota is free, the data center's vCPUs are not (2 + 2 + 2 in use, 4 more asked).
        { vm: newVm(s, 'batch', 0, { owner: 'team-y', size: { cpu: 4, memoryGiB: 1, diskGiB: 1 } }), ctx: { actor: 'a' }, budget: { dataCenter: { cpu: 9 } } },
        // richmond has room.
        { vm: newVm(s, 'batch', 1, { owner: 'team-y', dataCenter: 'richmond', size: { cpu: 4, memoryGiB: 1, diskGiB: 1 } }), ctx: { actor: 'a' }, budget: { dataCenter: { cpu: 9 } } },
      ]);
      const codes = out.map((o) => (o instanceof FleetError ? o.diagnostics[0].code : 'inserted'));
      expect(codes).toEqual(['inserted', 'inserted', 'record.over-budget', 'record.over-budget', 'inserted']);
      expect((out[2] as BudgetExceededError).which).toBe('owner');
      expect((out[2] as FleetError).diagnostics[0].detail).toBe('api/1: the quota of owner team-q is 3 VMs: 3 in use, the VM needs 1 more.');
      expect((out[3] as BudgetExceededError).which).toBe('dataCenter');
      expect((await r.listVms(s)).map((v) => v.address)).toEqual(['api/0', 'batch/1', 'other/0', 'web/0', 'web/1']);
      expect((await r.history(s)).filter((h) => h.address === 'api/1' || h.address === 'batch/0')).toEqual([]);
      expect(await codeOf(r.insertVm(newVm(s, 'web', 2, { owner: 'team-q' }), { actor: 'a' }, budget))).toBe('record.over-budget');
    });

    it("an insert naming another owner than its fleet's row is refused, with or without a budget; an insert never changes a fleet's owner; fleet apply's setFleetProtection does", async () => {
      const s = freshStack();
      await r.insertVm(newVm(s, 'web', 0, { owner: 'team-q' }), { actor: 'a' });
      const ownerOf = async () => (await r.listFleets(s, ['web']))[0].owner;
      // One statement (no budget), a guarded transaction, a batch with and without budgets.
      expect(await codeOf(r.insertVm(newVm(s, 'web', 1, { owner: 'team-x' }), { actor: 'a' }))).toBe('record.owner-mismatch');
      expect(await codeOf(r.insertVm(newVm(s, 'web', 1, { owner: 'team-x' }), { actor: 'a' }, { guard: true }))).toBe('record.owner-mismatch');
      for (const [fresh, budget] of [['new-a', undefined], ['new-b', { owner: { vms: 9 } }]] as const) {
        const out = await r.insertVms([
          { vm: newVm(s, 'web', 1, { owner: 'team-x' }), ctx: { actor: 'a' }, ...(budget ? { budget } : {}) },
          { vm: newVm(s, fresh, 0, { owner: 'team-y' }), ctx: { actor: 'a' }, ...(budget ? { budget } : {}) },
          // A new fleet's owner is the first item's.
          { vm: newVm(s, fresh, 1, { owner: 'team-z' }), ctx: { actor: 'a' }, ...(budget ? { budget } : {}) },
        ]);
        expect(out.map((o) => (o instanceof FleetError ? o.diagnostics[0].code : 'inserted'))).toEqual(['record.owner-mismatch', 'inserted', 'record.owner-mismatch']);
        expect((out[0] as FleetError).diagnostics[0].detail).toContain('fleet web is owned by team-q in the record, not team-x');
      }
      expect(await ownerOf()).toBe('team-q');
      expect((await r.listVms(s)).map((v) => v.address)).toEqual(expect.arrayContaining(['web/0']));
      expect((await r.listVms(s)).filter((v) => v.fleet === 'web')).toHaveLength(1);
      await r.setFleetProtection(s, 'web', 'team-x', false);
      expect(await ownerOf()).toBe('team-x');
      expect((await r.insertVm(newVm(s, 'web', 1, { owner: 'team-x' }), { actor: 'a' })).address).toBe('web/1');
    });

    // Found by QA: a Pulumi program's fleet had no mark in the record, so `fleet plan` on the stack planned its VMs'
    // deletion (no fleet file declares it). The fleet's row now names its manager (fleets.managed_by, migration 12).
    it("a create writes its manager to the fleet's row; one by another manager is refused while the fleet has live VMs; with none, the next create's manager takes it", async () => {
      const s = freshStack();
      const prog = 'pulumi:fleets/dev';
      const managerOf = async (fleet: string) => (await r.listFleets(s, [fleet]))[0]?.managedBy;
      const pul = await r.insertVm(newVm(s, 'pul', 0, { managedBy: prog }), { actor: 'a' });
      await r.insertVm(newVm(s, 'filed', 0), { actor: 'a' });
      expect((await r.listFleets(s)).map((f) => [f.fleet, f.managedBy])).toEqual([
        ['filed', null],
        ['pul', prog],
      ]);
      // One statement (no budget), a guarded transaction, and batches: fleet apply into the program's fleet, the program into fleet files', another program.
      const refused: [string, NewVm][] = [
        ['fleet apply into a program fleet', newVm(s, 'pul', 1)],
        ['a program into a fleet of fleet files', newVm(s, 'filed', 1, { managedBy: prog })],
        ['another program', newVm(s, 'pul', 1, { managedBy: 'pulumi:fleets/prod' })],
      ];
      for (const [what, vm] of refused) {
        expect([what, await codeOf(r.insertVm(vm, { actor: 'a' }))]).toEqual([what, 'record.manager-mismatch']);
        expect([what, await codeOf(r.insertVm(vm, { actor: 'a' }, { guard: true }))]).toEqual([what, 'record.manager-mismatch']);
        const [out] = await r.insertVms([{ vm, ctx: { actor: 'a' } }]);
        expect([what, out instanceof FleetError ? out.diagnostics[0].code : 'inserted']).toEqual([what, 'record.manager-mismatch']);
      }
      expect(await codeOf(r.insertVm(newVm(s, 'filed', 1, { managedBy: prog }), { actor: 'a' }))).toBe('record.manager-mismatch');
      const e = (await r.insertVms([{ vm: newVm(s, 'filed', 1, { managedBy: prog }), ctx: { actor: 'a' } }]))[0] as FleetError;
      expect(e.diagnostics[0].detail).toContain(`fleet filed has live VMs managed by fleet files (\`fleet apply\`) in the record, and this create comes from the program ${prog}`);
      // Two managers in one batch of a new fleet: the first item's takes it.
      const batch = await r.insertVms([
        { vm: newVm(s, 'mixed', 0, { managedBy: prog }), ctx: { actor: 'a' } },
        { vm: newVm(s, 'mixed', 1), ctx: { actor: 'a' } },
      ]);
      expect(batch.map((o) => (o instanceof FleetError ? o.diagnostics[0].code : 'inserted'))).toEqual(['inserted', 'record.manager-mismatch']);
      expect((await r.listVms(s)).map((v) => v.address)).toEqual(['filed/0', 'mixed/0', 'pul/0']);
      // Its VMs gone, the fleet has no manager: fleet apply may create it again, and its row says so.
      await r.updateVm(pul.id, 1, { retire: true }, { actor: 'a' });
      expect(await managerOf('pul')).toBeNull();
      await r.insertVm(newVm(s, 'pul', 0), { actor: 'a' });
      expect(await managerOf('pul')).toBeNull();
      expect(await codeOf(r.insertVm(newVm(s, 'pul', 1, { managedBy: prog }), { actor: 'a' }))).toBe('record.manager-mismatch');
    });

    // Gaps of the manager check (fleet-owner): an import (adoptVm) and a create-before-delete replace wrote the VM
    // with no look at the fleet's manager, and neither wrote it to the fleet's row.
    it("an import and a replace are refused in a fleet another manager's live VMs hold, as other creates are", async () => {
      const s = freshStack();
      const prog = 'pulumi:fleets/dev';
      const pul = await r.insertVm(newVm(s, 'pul', 0, { managedBy: prog }), { actor: 'a' });
      const filed = await r.insertVm(newVm(s, 'filed', 0), { actor: 'a' });
      const cases: [string, () => Promise<unknown>][] = [
        ['fleet import into a program fleet', () => r.adoptVm({ ...newVm(s, 'pul', 1), id: randomUUID(), cloudId: 'i-1' }, { actor: 'a' })],
        ['fleet import into a program fleet, guarded', () => r.adoptVm({ ...newVm(s, 'pul', 1), id: randomUUID(), cloudId: 'i-1' }, { actor: 'a' }, { guard: true })],
        ['fleet apply replacing a program VM', () => r.insertVm(newVm(s, 'pul', 0, { replaces: pul.id, specHash: 'h2' }), { actor: 'a' })],
        ['a program replacing a fleet-files VM', () => r.insertVm(newVm(s, 'filed', 0, { replaces: filed.id, specHash: 'h2', managedBy: prog }), { actor: 'a' })],
      ];
      for (const [what, run] of cases) expect([what, await codeOf(run())]).toEqual([what, 'record.manager-mismatch']);
      expect((await r.listVms(s)).map((v) => [v.address, v.specHash])).toEqual([
        ['filed/0', 'h1'],
        ['pul/0', 'h1'],
      ]);
      // By the same manager: imported and replaced, and the fleet's row keeps naming it.
      await r.adoptVm({ ...newVm(s, 'filed', 1), id: randomUUID(), cloudId: 'i-2' }, { actor: 'a' });
      await r.insertVm(newVm(s, 'pul', 0, { replaces: pul.id, specHash: 'h2', managedBy: prog }), { actor: 'a' });
      expect((await r.listFleets(s)).map((f) => [f.fleet, f.managedBy])).toEqual([
        ['filed', null],
        ['pul', prog],
      ]);
      // An import into an emptied program fleet takes it for fleet files, and says so in its row.
      const gone = await r.insertVm(newVm(s, 'gone', 0, { managedBy: prog }), { actor: 'a' });
      await r.updateVm(gone.id, gone.version, { retire: true }, { actor: 'a' });
      await r.adoptVm({ ...newVm(s, 'gone', 3), id: randomUUID(), cloudId: 'i-3' }, { actor: 'a' });
      expect((await r.listFleets(s, ['gone']))[0].managedBy).toBeNull();
      expect(await codeOf(r.insertVm(newVm(s, 'gone', 4, { managedBy: prog }), { actor: 'a' }))).toBe('record.manager-mismatch');
    });

    // Found in review of fleet-owner: a program taking over an emptied fleet of fleet files kept the row's protected
    // flag, which only fleet apply writes, so the authority held the program's members by a protect the program never said.
    it("a program's create that takes a fleet from fleet files clears its protected flag; fleet files' takeover keeps what fleet apply wrote", async () => {
      const s = freshStack();
      const prog = 'pulumi:fleets/dev';
      const flags = async () => (await r.listFleets(s)).map((f) => [f.fleet, f.managedBy, f.protected]);
      // Each fleet made by its first manager, then emptied; fleet apply protects its own fleet, and the program's
      // before its creates there (setFleetProtection from the spec, as the executor does before any step).
      const first: [string, string | null][] = [
        ['by-files', null],
        ['by-prog', prog],
      ];
      for (const [fleet, managedBy] of first) {
        if (managedBy === null) await r.setFleetProtection(s, fleet, 'team-payments', true);
        const v = await r.insertVm(newVm(s, fleet, 0, { managedBy }), { actor: 'a' });
        await r.updateVm(v.id, v.version, { retire: true }, { actor: 'a' });
      }
      await r.setFleetProtection(s, 'by-prog', 'team-payments', true);
      // Taken by the other manager: the program's own protect (its provider) holds its fleet.
      await r.insertVm(newVm(s, 'by-files', 1, { managedBy: prog }), { actor: 'a' });
      await r.insertVm(newVm(s, 'by-prog', 1), { actor: 'a' });
      expect(await flags()).toEqual([
        ['by-files', prog, false],
        ['by-prog', null, true],
      ]);
      // The same manager's creates leave it as it is, in each write path.
      await r.setFleetProtection(s, 'by-files', 'team-payments', true);
      await r.insertVm(newVm(s, 'by-files', 2, { managedBy: prog }), { actor: 'a' });
      await r.insertVms([{ vm: newVm(s, 'by-files', 3, { managedBy: prog }), ctx: { actor: 'a' } }]);
      expect((await flags())[0]).toEqual(['by-files', prog, true]);
    });

    // Found in review of fleet-owner: each create checked the fleet's row in its statement's snapshot, so two first
    // creates of one fleet by two managers (or owners) at one moment both saw no live VM and both got in.
    it('first creates of a fleet by two managers or owners at one moment: one of them gets in, the other is refused', async () => {
      const s = freshStack();
      const prog = 'pulumi:fleets/dev';
      const fleets = Array.from({ length: 24 }, (_, k) => `race${k}`);
      // Each fleet's two creates, of several write paths (one statement, guarded, a batch); odd fleets race owners instead.
      const create = (fleet: string, k: number, side: 0 | 1) => {
        const vm = k % 2 ? newVm(s, fleet, side, side ? { owner: 'team-other' } : {}) : newVm(s, fleet, side, side ? { managedBy: prog } : {});
        const way = (k >> 1) % 3;
        if (way === 0) return r.insertVm(vm, { actor: 'a' });
        if (way === 1) return r.insertVm(vm, { actor: 'a' }, { guard: true });
        return r.insertVms([{ vm, ctx: { actor: 'a' } }]).then(([o]) => (o instanceof Error ? Promise.reject(o) : o));
      };
      const outs = await Promise.all(fleets.flatMap((f, k) => [0, 1].map((side) => codeOf(create(f, k, side as 0 | 1)))));
      const vms = await r.listVms(s);
      const rows = new Map((await r.listFleets(s)).map((f) => [f.fleet, f]));
      fleets.forEach((f, k) => {
        const got = [outs[2 * k], outs[2 * k + 1]];
        const mine = vms.filter((v) => v.fleet === f);
        expect([f, mine.length, got.filter((c) => c === 'resolved').length]).toEqual([f, 1, 1]);
        expect([f, got.find((c) => c !== 'resolved')]).toEqual([f, k % 2 ? 'record.owner-mismatch' : 'record.manager-mismatch']);
        const row = rows.get(f)!;
        const winner = mine[0].index;
        expect([f, row.managedBy, row.owner]).toEqual([f, k % 2 === 0 && winner === 1 ? prog : null, k % 2 && winner === 1 ? 'team-other' : 'team-payments']);
      });
    });

    it('a grow is checked and reserved with its intent row: creates and other grows count it until its size is written or it is dropped', async () => {
      const s = freshStack();
      const [a, b] = [await r.insertVm(newVm(s, 'web', 0, { owner: 'team-q' }), { actor: 'a' }), await r.insertVm(newVm(s, 'web', 1, { owner: 'team-q' }), { actor: 'a' })];
      const cpu = (n: number) => ({ cpu: n, memoryGiB: 4 });
      const budget = { owner: { cpu: 8 } };
      const grow = (vm: VmRow, n: number, requestId: string) =>
        r.reserveGrow({ stack: s, vmId: vm.id, expectedVersion: vm.version, owner: 'team-q', size: cpu(n), budget, row: { from: vm.state, to: vm.state, actor: 'a', requestId }, ttlMs: 60_000 });
      // 2 + 2 vCPUs in use of 8: a grows to 5 (reserved), b cannot grow to 4, nor can a 2-vCPU VM be created.
      await grow(a, 5, 'req-a');
      expect((await r.history(s, 'web/0')).at(-1)).toMatchObject({ requestId: 'req-a', outcome: 'ok' });
      expect(await codeOf(grow(b, 4, 'req-b'))).toBe('record.over-budget');
      expect(await codeOf(r.insertVm(newVm(s, 'web', 2, { owner: 'team-q' }), { actor: 'a' }, budget))).toBe('record.over-budget');
      // Asked again for a (its answer lost): its own reservation is not counted twice.
      await grow(a, 5, 'req-a2');
      // The failure drops it: b may grow now.
      await r.dropGrow(a.id);
      await grow(b, 4, 'req-b');
      // b's size written: its reservation ends (4 + 2 in use: a 2-vCPU VM fits).
      await r.updateVm(b.id, b.version, { size: { ...cpu(4), diskGiB: 10 } }, { actor: 'a' });
      await r.insertVm(newVm(s, 'web', 2, { owner: 'team-q' }), { actor: 'a' }, budget);
      expect(await codeOf(grow(a, 3, 'req-a3'))).toBe('record.over-budget');
      // A stale version: the intent is not written.
      expect(await codeOf(r.reserveGrow({ stack: s, vmId: b.id, expectedVersion: b.version, owner: 'team-q', size: cpu(4), budget, row: { from: 'x', to: 'x', actor: 'a' }, ttlMs: 1 }))).toBe('record.version-conflict');
    });

    it('a replacement takes the slot of the VM it replaces', async () => {
      const s = freshStack();
      const old = await r.insertVm(newVm(s, 'web', 0, { owner: 'team-q' }), { actor: 'a' });
      const replaced = await r.insertVm(newVm(s, 'web', 0, { owner: 'team-q', replaces: old.id }), { actor: 'a' }, { owner: { vms: 1 } });
      expect(replaced.address).toBe('web/0');
      expect(await codeOf(r.insertVm(newVm(s, 'web', 1, { owner: 'team-q' }), { actor: 'a' }, { owner: { vms: 2 } }))).toBe('record.over-budget');
    });
  });

  describe('basis', () => {
    it('finds what changed since the basis', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      const d = await r.insertVm(newVm(s, 'db', 0), { actor: 'a' });
      const basis = { vms: { [a.id]: 1 }, fleets: { cache: 0, web: 1 } };
      expect(await r.checkBasis(s, basis)).toEqual([]);

      // A change to a fleet outside the basis keeps the plan valid.
      await r.transitionVm(d.id, 1, 'BeingCreated', { actor: 'other' });
      expect(await r.checkBasis(s, basis)).toEqual([]);

      await r.transitionVm(a.id, 1, 'BeingCreated', { actor: 'other' });
      await r.insertVm(newVm(s, 'cache', 0), { actor: 'other' });
      expect(await r.checkBasis(s, basis)).toEqual([
        { kind: 'fleet', key: 'cache', expected: 0, actual: 1 },
        { kind: 'fleet', key: 'web', expected: 1, actual: 2 },
        { kind: 'vm', key: a.id, expected: 1, actual: 2 },
      ]);
      expect(await r.checkBasis(s, { vms: { gone: 3 }, fleets: {} })).toEqual([{ kind: 'vm', key: 'gone', expected: 3, actual: null }]);
    });

    it('shows a new VM in a basis fleet as a fleet change', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      const basis = { vms: { [a.id]: 1 }, fleets: { web: 1 } };
      expect(await r.checkBasis(s, basis)).toEqual([]);
      await r.insertVm(newVm(s, 'web', 1), { actor: 'b' });
      expect(await r.checkBasis(s, basis)).toEqual([{ kind: 'fleet', key: 'web', expected: 1, actual: 2 }]);
    });
  });

  describe('locks', () => {
    it('takes, lists, heartbeats and releases', async () => {
      const s = freshStack();
      const h = await r.acquireLocks(s, ['web', 'db', 'web'], holder('alice', 'p1'));
      expect(h.lockId).toMatch(/^[0-9a-f]{8}$/);
      expect(h.fleets).toEqual(['db', 'web']);
      const locks = await r.listLocks(s);
      expect(locks.map((l) => [l.fleet, l.lockId, l.who, l.host, l.pid, l.planId])).toEqual([
        ['db', h.lockId, 'alice', 'ci-1', 4242, 'p1'],
        ['web', h.lockId, 'alice', 'ci-1', 4242, 'p1'],
      ]);
      expect(Date.parse(locks[0].expiresAt)).toBeGreaterThan(Date.parse(locks[0].since));
      await h.heartbeat();
      await h.release();
      expect(await r.listLocks(s)).toEqual([]);
      await h.release();
    });

    // The dashboard's bounded reads: a whole-stack apply holds one lock per fleet.
    it('lists some locks only: by fleets, the first N by fleet, one per holder of some plans', async () => {
      const s = freshStack();
      const a = await r.acquireLocks(s, ['web', 'db', 'cache'], holder('alice', 'p1'));
      const b = await r.acquireLocks(s, ['api', 'mq'], { ...holder('bob', 'p2'), pid: 5151 });
      const fleets = async (opts: Parameters<typeof r.listLocks>[1]) => (await r.listLocks(s, opts)).map((l) => [l.fleet, l.lockId]);
      expect(await fleets({ fleets: ['web', 'api', 'nope'] })).toEqual([['api', b.lockId], ['web', a.lockId]]);
      expect(await fleets({ fleets: [] })).toEqual([]);
      expect(await fleets({ limit: 2 })).toEqual([['api', b.lockId], ['cache', a.lockId]]);
      expect(await fleets({ limit: 0 })).toEqual([]);
      expect(await fleets({ planIds: ['p1', 'p2'] })).toEqual([['api', b.lockId], ['cache', a.lockId]]);
      expect(await fleets({ planIds: ['p1'] })).toEqual([['cache', a.lockId]]);
      expect(await fleets({ planIds: [] })).toEqual([]);
      expect(await r.listLocks(s)).toHaveLength(5);
      await a.release();
      await b.release();
    });

    it('gives every acquisition a larger fencing token; the fleet keeps its latest after release, unlock and takeover', async () => {
      const s = freshStack();
      expect(await r.fencesOf(s, ['web'])).toEqual([]);
      const a = await r.acquireLocks(s, ['web', 'db'], holder('alice'));
      expect((await r.listLocks(s)).map((l) => l.fencingToken)).toEqual([a.fencingToken, a.fencingToken]);
      expect(await r.fencesOf(s, ['web', 'db', 'cache'])).toEqual([
        { fleet: 'db', token: a.fencingToken, held: true, managedBy: null },
        { fleet: 'web', token: a.fencingToken, held: true, managedBy: null },
      ]);
      // A refused try (the fleet is held) moves nobody's fence.
      expect(await codeOf(r.acquireLocks(s, ['web'], holder('bob')))).toBe('record.lock-held');
      expect((await r.fencesOf(s, ['web']))[0]).toEqual({ fleet: 'web', token: a.fencingToken, held: true, managedBy: null });
      // Broken (fleet unlock, or a dead holder's lock): the next apply's token is larger, at once.
      await r.forceUnlock(a.lockId);
      expect(await r.fencesOf(s, ['web'])).toEqual([{ fleet: 'web', token: a.fencingToken, held: false, managedBy: null }]);
      const b = await r.acquireLocks(s, ['web'], holder('bob'));
      expect(b.fencingToken).toBeGreaterThan(a.fencingToken);
      await b.release();
      const fences = await r.fencesOf(s, ['web', 'db']);
      expect(fences).toEqual([
        { fleet: 'db', token: a.fencingToken, held: false, managedBy: null },
        { fleet: 'web', token: b.fencingToken, held: false, managedBy: null },
      ]);
      // An expired lease taken over: larger again.
      const c = await r.acquireLocks(s, ['web'], holder('carol'), { leaseMs: 1 });
      await new Promise((res) => setTimeout(res, 30));
      expect((await r.fencesOf(s, ['web']))[0]).toMatchObject({ token: c.fencingToken, held: false });
      const d = await r.acquireLocks(s, ['web'], holder('dave'));
      expect(d.fencingToken).toBeGreaterThan(c.fencingToken);
      expect(c.fencingToken).toBeGreaterThan(b.fencingToken);
      await d.release();
      // A fence names the fleet's manager (FleetRow.managedBy), read with it: the authority refuses fleet apply's
      // requests (they carry a fencing token) on a fleet a program manages, with no read of its own.
      const pul = await r.insertVm(newVm(s, 'web', 0, { managedBy: 'pulumi:fleets/dev' }), { actor: 'a' });
      expect((await r.fencesOf(s, ['web']))[0]).toMatchObject({ token: d.fencingToken, managedBy: 'pulumi:fleets/dev' });
      await r.updateVm(pul.id, pul.version, { retire: true }, { actor: 'a' });
      expect((await r.fencesOf(s, ['web']))[0]).toMatchObject({ token: d.fencingToken, managedBy: null });
    });

    it('refuses a held fleet, naming the holder and how to unlock', async () => {
      const s = freshStack();
      const h = await r.acquireLocks(s, ['web'], holder('alice', 'plan-7'));
      const err = await r.acquireLocks(s, ['web'], holder('bob')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FleetError);
      const d = (err as FleetError).diagnostics[0];
      expect(d).toMatchObject({ code: 'record.lock-held', address: 'web' });
      expect(d.detail).toContain('alice@ci-1 pid 4242');
      expect(d.detail).toContain('plan plan-7');
      expect(d.detail).toContain(`fleet unlock ${h.lockId}`);
      expect(d.detail).toContain('since ');
      await h.release();
    });

    it('takes all fleets or none', async () => {
      const s = freshStack();
      const h = await r.acquireLocks(s, ['db'], holder('alice'));
      expect(await codeOf(r.acquireLocks(s, ['web', 'db', 'cache'], holder('bob')))).toBe('record.lock-held');
      expect((await r.listLocks(s)).map((l) => l.fleet)).toEqual(['db']);
      await h.release();
    });

    it('lets applies on different fleets proceed together', async () => {
      const s = freshStack();
      const [a, b] = await Promise.all([r.acquireLocks(s, ['web'], holder('a')), r.acquireLocks(s, ['db'], holder('b'))]);
      expect(a.lockId).not.toBe(b.lockId);
      expect(await r.listLocks(s)).toHaveLength(2);
      await Promise.all([a.release(), b.release()]);
    });

    it('takes over an expired lease; the old holder learns it lost the lock', async () => {
      const s = freshStack();
      const old = await r.acquireLocks(s, ['web'], holder('crashed'), { leaseMs: 1 });
      await new Promise((res) => setTimeout(res, 30));
      const h = await r.acquireLocks(s, ['web'], holder('bob'));
      expect((await r.listLocks(s))[0]).toMatchObject({ lockId: h.lockId, who: 'bob' });
      const err = await old.heartbeat().catch((e: unknown) => e);
      expect((err as FleetError).diagnostics[0]).toMatchObject({ code: 'record.lock-lost', address: 'web' });
      await old.release();
      expect(await r.listLocks(s)).toHaveLength(1);
      await h.release();
    });

    it('waits up to timeoutMs for a release', async () => {
      const s = freshStack();
      const h = await r.acquireLocks(s, ['web'], holder('alice'));
      setTimeout(() => void h.release(), 50);
      const h2 = await r.acquireLocks(s, ['web'], holder('bob'), { timeoutMs: 20_000 });
      expect((await r.listLocks(s))[0].who).toBe('bob');
      await h2.release();
    });

    it('force-unlocks by lock id', async () => {
      const s = freshStack();
      const h = await r.acquireLocks(s, ['web', 'db'], holder('alice'));
      expect(await r.findLock(h.lockId)).toHaveLength(2);
      expect(await r.forceUnlock(h.lockId)).toBe(true);
      expect(await r.forceUnlock(h.lockId)).toBe(false);
      expect(await r.listLocks(s)).toEqual([]);
      expect(await codeOf(h.heartbeat())).toBe('record.lock-lost');
    });
  });

  describe('plans and journal', () => {
    it('records plans and finds unfinished steps', async () => {
      const s = freshStack();
      await r.startPlan({ id: `${s}-p1`, stack: s, digest: 'sha256:abc', who: 'ci', startedAt: '2026-01-01T00:00:00.000Z' });
      await r.startPlan({ id: `${s}-p2`, stack: s, digest: 'sha256:def', who: 'ci', startedAt: '2026-01-02T00:00:00.000Z' });
      const step = { planId: `${s}-p1`, vmId: null, from: 'Requested', to: 'BeingCreated', detail: null };
      await r.journal({ ...step, address: 'web/0', seq: 0, idempotencyKey: 'k0', status: 'started' });
      await r.journal({ ...step, address: 'web/0', seq: 0, idempotencyKey: 'k0', status: 'done' });
      await r.journal({ ...step, address: 'web/1', seq: 0, idempotencyKey: 'k1', status: 'started' });
      await r.journal({ ...step, address: 'web/2', seq: 0, idempotencyKey: 'k2', status: 'started' });
      await r.journal({ ...step, address: 'web/2', seq: 0, idempotencyKey: 'k2', status: 'failed', detail: 'capacity' });
      await r.finishPlan(`${s}-p1`, 'failed');
      const plans = await appliedPlans(r, s);
      expect(plans.map((p) => [p.id, p.result, p.finishedAt === null])).toEqual([
        [`${s}-p1`, 'failed', false],
        [`${s}-p2`, 'running', true],
      ]);
      expect(plans[0].startedAt).toBe('2026-01-01T00:00:00.000Z');
      const open = await r.unfinishedSteps(s);
      expect(open.map((j) => [j.address, j.status, j.detail, j.idempotencyKey])).toEqual([
        ['web/1', 'started', null, 'k1'],
        ['web/2', 'failed', 'capacity', 'k2'],
      ]);
      expect(await r.unfinishedSteps(freshStack())).toEqual([]);
      // The dashboard's reads: plans newest first (limited), one plan's whole journal in write order.
      expect((await r.listPlans(s)).map((p) => [p.id, p.result, p.digest, p.who])).toEqual([
        [`${s}-p2`, 'running', 'sha256:def', 'ci'],
        [`${s}-p1`, 'failed', 'sha256:abc', 'ci'],
      ]);
      expect((await r.listPlans(s, { limit: 1 })).map((p) => p.id)).toEqual([`${s}-p2`]);
      // By id (the dashboard's page of one apply, however old), only within the stack.
      expect((await r.listPlans(s, { id: `${s}-p1` })).map((p) => p.id)).toEqual([`${s}-p1`]);
      expect(await r.listPlans(freshStack(), { id: `${s}-p1` })).toEqual([]);
      expect(await r.listPlans(freshStack())).toEqual([]);
      const journal = await r.planJournal(`${s}-p1`);
      expect(journal.map((j) => [j.address, j.status, j.detail])).toEqual([
        ['web/0', 'started', null],
        ['web/0', 'done', null],
        ['web/1', 'started', null],
        ['web/2', 'started', null],
        ['web/2', 'failed', 'capacity'],
      ]);
      expect(journal[0]).toMatchObject({ planId: `${s}-p1`, seq: 0, from: 'Requested', to: 'BeingCreated', idempotencyKey: 'k0' });
      expect(Number.isNaN(Date.parse(journal[0].at))).toBe(false);
      expect(await r.planJournal(`${s}-p2`)).toEqual([]);
    });

    it('reads a page of a plan\'s journal and its first failures (planJournalPage), with their counts', async () => {
      const s = freshStack();
      const planId = `${s}-p1`;
      await r.startPlan({ id: planId, stack: s, digest: 'sha256:abc', who: 'ci', startedAt: '2026-01-01T00:00:00.000Z' });
      await r.startPlan({ id: `${s}-p2`, stack: s, digest: 'sha256:def', who: 'ci', startedAt: '2026-01-02T00:00:00.000Z' });
      const step = (i: number, status: 'started' | 'done' | 'failed', plan = planId) => ({ planId: plan, address: `web/${i}`, seq: 0, vmId: null, from: 'A', to: 'B', idempotencyKey: `k${i}`, status, detail: status === 'failed' ? `no room for ${i}` : null });
      // Written in order: 12 steps, started then done, every third failed; another plan's rows between.
      for (let i = 0; i < 12; i++) {
        await r.journal(step(i, 'started'));
        await r.journal(step(i, 'started', `${s}-p2`));
        await r.journal(step(i, i % 3 === 0 ? 'failed' : 'done'));
      }
      const all = await r.planJournal(planId);
      expect(all).toHaveLength(24);
      const failed = all.filter((j) => j.status === 'failed');
      const page = (p: Awaited<ReturnType<typeof r.planJournalPage>>) => ({ ...p, firstId: undefined, lastId: undefined });
      expect(page(await r.planJournalPage(planId, { offset: 0, limit: 5, failures: 2 }))).toEqual({ total: 24, rows: all.slice(0, 5), failedTotal: 4, failed: failed.slice(0, 2) });
      expect(page(await r.planJournalPage(planId, { offset: 20, limit: 5, failures: 10 }))).toEqual({ total: 24, rows: all.slice(20), failedTotal: 4, failed });
      expect(await r.planJournalPage(planId, { offset: 30, limit: 5, failures: 0 })).toEqual({ total: 24, rows: [], failedTotal: 4, failed: [], firstId: null, lastId: null });
      expect(await r.planJournalPage(`${s}-none`, { offset: 0, limit: 5, failures: 5 })).toEqual({ total: 0, rows: [], failedTotal: 0, failed: [], firstId: null, lastId: null });

      // Keyset: each page read from the last row of the one before (after), and back from the first row of the one after
      // (before); the other plan's rows between them skipped. The same pages as by offset.
      const byOffset = await Promise.all([0, 5, 10, 15, 20].map((offset) => r.planJournalPage(planId, { offset, limit: 5, failures: 0 })));
      let at = byOffset[0];
      for (let n = 1; n < byOffset.length; n++) {
        const next = await r.planJournalPage(planId, { after: at.lastId!, limit: 5, failures: 0 });
        expect(next, `page ${n + 1}`).toEqual(byOffset[n]);
        expect(await r.planJournalPage(planId, { before: next.firstId!, limit: 5, failures: 0 }), `back to page ${n}`).toEqual(at);
        at = next;
      }
      expect(at.rows).toEqual(all.slice(20));
      expect(page(await r.planJournalPage(planId, { after: at.lastId!, limit: 5, failures: 1 }))).toEqual({ total: 24, rows: [], failedTotal: 4, failed: failed.slice(0, 1) });
      expect((await r.planJournalPage(planId, { before: byOffset[0].firstId!, limit: 5, failures: 0 })).rows).toEqual([]);
    });

    it('group-commits concurrent journal calls: each resolves with its row committed, in fewer INSERTs than rows', async () => {
      const s = freshStack();
      const planId = `${s}-p1`;
      await r.startPlan({ id: planId, stack: s, digest: 'sha256:abc', who: 'ci', startedAt: '2026-01-01T00:00:00.000Z' });
      const step = (i: number) => ({ planId, address: `web/${i}`, seq: 0, vmId: i % 2 ? `vm-${i}` : null, from: 'A', to: 'B', idempotencyKey: `${planId}/web/${i}/0` });
      const before = r.journalBatches;
      // Each member: started, then (once that is committed) done, or failed with a detail for every third.
      const seen: number[] = [];
      await Promise.all(
        Array.from({ length: 60 }, async (_, i) => {
          await r.journal({ ...step(i), status: 'started', detail: null });
          // Committed when it resolved: a read sees it.
          seen.push((await r.unfinishedSteps(s)).filter((j) => j.address === `web/${i}`).length);
          await r.journal(i % 3 ? { ...step(i), status: 'done', detail: null } : { ...step(i), status: 'failed', detail: `no room for ${i}` });
        }),
      );
      expect(seen).toEqual(Array(60).fill(1));
      expect(r.journalBatches - before).toBeLessThan(120);
      const open = await r.unfinishedSteps(s);
      expect(open.map((j) => j.address).sort()).toEqual(Array.from({ length: 20 }, (_, k) => `web/${k * 3}`).sort());
      const w3 = open.find((j) => j.address === 'web/3')!;
      expect(w3).toMatchObject({ status: 'failed', detail: 'no room for 3', vmId: 'vm-3', from: 'A', to: 'B', seq: 0, idempotencyKey: `${planId}/web/3/0` });
      expect(open.find((j) => j.address === 'web/0')!.vmId).toBeNull();
    });

    it('writes several rows of one call in one INSERT, in order, each text as given (the array literals journal.ts makes)', async () => {
      const s = freshStack();
      const planId = `${s}-p1`;
      await r.startPlan({ id: planId, stack: s, digest: 'sha256:abc', who: 'ci', startedAt: '2026-01-01T00:00:00.000Z' });
      // What an array literal must quote or escape: quotes, backslashes, braces, commas, spaces, NULL as a word, empty text.
      const texts = ['say "hi"', 'C:\\dir\\', '{a,b}', ' padded ', 'NULL', '', 'ünïcødé \\"{,}', 'line\nbreak\ttab'];
      const rows = texts.map((t, i) => ({ planId, address: `web/${i}`, seq: i, vmId: i % 2 ? t : null, from: t, to: `${t}->`, idempotencyKey: `${planId}/web/${i}/${i}`, status: 'failed' as const, detail: i % 3 ? t : null }));
      const before = r.journalBatches;
      await r.journal(rows);
      expect(r.journalBatches - before).toBe(1);
      expect((await r.planJournal(planId)).map(({ at: _at, ...j }) => j)).toEqual(rows);
      // Retried (`again`): none of them twice.
      await r.journal(rows, { again: true });
      expect(await r.planJournal(planId)).toHaveLength(texts.length);
    });

    it('a failing journal batch rejects every call of that batch and writes none of its rows; the next call writes', async () => {
      const s = freshStack();
      const planId = `${s}-p1`;
      await r.startPlan({ id: planId, stack: s, digest: 'sha256:abc', who: 'ci', startedAt: '2026-01-01T00:00:00.000Z' });
      const row = (address: string) => ({ planId, address, seq: 0, vmId: null, from: 'A', to: 'B', idempotencyKey: `k-${address}`, status: 'started' as const, detail: null });
      // Called in one tick with no INSERT running: one batch; the null address violates NOT NULL.
      const results = await Promise.allSettled([r.journal(row('web/0')), r.journal(row(null as unknown as string)), r.journal(row('web/1'))]);
      expect(results.map((x) => x.status)).toEqual(['rejected', 'rejected', 'rejected']);
      expect(await r.unfinishedSteps(s)).toEqual([]);
      await r.journal(row('web/2'));
      expect((await r.unfinishedSteps(s)).map((j) => j.address)).toEqual(['web/2']);
    });
  });

  describe('writes fleet apply retries after a lost connection are idempotent (engine/apply/record-retry.ts)', () => {
    // A write whose connection died around COMMIT may have been written or not; the retry does it again.
    it('the same journal row written again (one after the other, or in one batch) is one row', async () => {
      const s = freshStack();
      const planId = `${s}-p1`;
      await r.startPlan({ id: planId, stack: s, digest: 'sha256:abc', who: 'ci', startedAt: '2026-01-01T00:00:00.000Z' });
      const row = (address: string, status: 'started' | 'done') => ({ planId, address, seq: 0, vmId: null, from: 'A', to: 'B', idempotencyKey: `${planId}/${address}/0`, status, detail: null });
      const again = { again: true };
      await r.journal(row('web/0', 'started'));
      await r.journal(row('web/0', 'started'), again);
      await Promise.all([r.journal(row('web/1', 'started'), again), r.journal(row('web/1', 'started'), again)]);
      await r.journal(row('web/0', 'done'));
      await r.journal(row('web/0', 'done'), again);
      // A retry in the batch of other steps' first tries: only its own row is looked for.
      await Promise.all([r.journal(row('web/2', 'started')), r.journal(row('web/0', 'done'), again), r.journal(row('web/1', 'done'))]);
      expect((await r.planJournal(planId)).map((j) => [j.address, j.status])).toEqual([
        ['web/0', 'started'],
        ['web/1', 'started'],
        ['web/0', 'done'],
        ['web/2', 'started'],
        ['web/1', 'done'],
      ]);
      // The same step key in another plan is another row.
      await r.startPlan({ id: `${s}-p2`, stack: s, digest: 'sha256:abc', who: 'ci', startedAt: '2026-01-01T00:00:00.000Z' });
      await r.journal({ ...row('web/0', 'started'), planId: `${s}-p2` });
      expect(await r.planJournal(`${s}-p2`)).toHaveLength(1);
    });

    it('startPlan again with the same plan is one row; another start of that plan id is refused (apply.plan-applied)', async () => {
      const s = freshStack();
      const plan = { id: `${s}-p1`, stack: s, digest: 'sha256:abc', who: 'ci', startedAt: '2026-01-01T00:00:00.000Z' };
      await r.startPlan(plan);
      await r.startPlan(plan);
      expect((await r.listPlans(s)).map((p) => [p.id, p.result])).toEqual([[plan.id, 'running']]);
      await expect(r.startPlan({ ...plan, startedAt: '2026-01-02T00:00:00.000Z' })).rejects.toMatchObject({ diagnostics: [{ code: 'apply.plan-applied' }] });
      await r.finishPlan(plan.id, 'succeeded');
      await r.finishPlan(plan.id, 'succeeded');
      expect((await r.listPlans(s)).map((p) => p.result)).toEqual(['succeeded']);
    });

    it('acquireLocks again with its lock id takes over its own locks with a newer token; another holder is still refused', async () => {
      const s = freshStack();
      const first = await r.acquireLocks(s, ['web', 'db'], holder('alice'), { lockId: 'retry001' });
      // Same id, host and pid: the retry of a call whose outcome was unknown.
      const again = await r.acquireLocks(s, ['web', 'db'], holder('alice'), { lockId: 'retry001' });
      expect(again.lockId).toBe('retry001');
      expect(again.fencingToken).toBeGreaterThan(first.fencingToken);
      expect((await r.listLocks(s)).map((l) => [l.fleet, l.lockId, l.fencingToken])).toEqual([
        ['db', 'retry001', again.fencingToken],
        ['web', 'retry001', again.fencingToken],
      ]);
      expect((await r.fencesOf(s, ['web'])).map((f) => f.token)).toEqual([again.fencingToken]);
      // The same lock id from another process is not a retry.
      expect(await codeOf(r.acquireLocks(s, ['web'], { ...holder('mallory'), pid: 9999 }, { lockId: 'retry001' }))).toBe('record.lock-held');
      // Renewals and releases go by the token: the first try's handle (never given out) touches nothing.
      expect(await codeOf(first.heartbeat())).toBe('record.lock-lost');
      await first.release();
      expect(await r.listLocks(s)).toHaveLength(2);
      await again.heartbeat();
      await again.heartbeat();
      await again.release();
      await again.release();
      expect(await r.listLocks(s)).toEqual([]);
    });
  });

  describe('boot', () => {
    it('stores attempts, many in one statement', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      const b = await r.insertVm(newVm(s, 'web', 1), { actor: 'a' });
      await r.addBootAttempts([{ vmId: a.id, dataCenter: 'miami', cloudId: 'i-1', image: 'ami-1', approved: false, reason: 'no token' }]);
      await r.addBootAttempts([{ vmId: null, dataCenter: 'miami', cloudId: 'i-x', image: null, approved: false, reason: 'unknown VM' }]);
      expect((await bootAttempts(r, { vmId: a.id })).map((x) => [x.approved, x.reason])).toEqual([[false, 'no token']]);
      await r.addBootAttempts([]);
      await r.addBootAttempts([
        { vmId: b.id, dataCenter: 'miami', cloudId: 'i-1', image: 'ami-1', approved: true, reason: 'matches' },
        { vmId: null, dataCenter: 'miami', cloudId: 'i-x', image: null, approved: false, reason: 'unknown VM' },
      ]);
      expect((await bootAttempts(r, { vmId: b.id })).map((x) => [x.approved, x.reason, x.cloudId])).toEqual([[true, 'matches', 'i-1']]);
      // One VM's attempts, newest first, limited.
      await r.addBootAttempts([{ vmId: a.id, dataCenter: 'miami', cloudId: 'i-1', image: 'ami-1', approved: true, reason: 'matches' }]);
      expect((await r.listBootAttempts(a.id)).map((x) => [x.approved, x.reason, x.dataCenter, x.cloudId, x.image])).toEqual([
        [true, 'matches', 'miami', 'i-1', 'ami-1'],
        [false, 'no token', 'miami', 'i-1', 'ami-1'],
      ]);
      expect((await r.listBootAttempts(a.id, { limit: 1 })).map((x) => x.reason)).toEqual(['matches']);
      expect(await r.listBootAttempts('nope')).toEqual([]);
      expect(await r.getVms([b.id, 'nope', a.id])).toMatchObject([{ id: b.id, address: 'web/1' }, undefined, { id: a.id, address: 'web/0' }]);
      expect(await r.getVms([])).toEqual([]);
    });
  });

  describe('boot checks (authorizeBoots): the row check, the token use and the approved attempt in one statement', () => {
    /** Each VM's stack, as booting() made it (a check names the asking authority's stack). */
    const stacks = new Map<string, string>();
    const check = (vmId: string, over: Partial<BootCheck> = {}): BootCheck => ({
      vmId,
      stack: stacks.get(vmId) ?? 'no-such-stack',
      dataCenter: 'miami',
      cloudId: 'i-1',
      image: 'ami-1',
      tokenHash: 'h1',
      allowedStates: ['PoweredOn', 'Starting'],
      reason: 'matches the record',
      repeatWithinMs: 0,
      ...over,
    });
    async function booting(s: string, index: number, hash = 'h1'): Promise<VmRow> {
      const a = await r.insertVm(newVm(s, 'web', index, { realImage: 'ami-1' }), { actor: 'a' });
      const [on] = await r.transitionVms([{ id: a.id, expectedVersion: 1, to: 'PoweredOn', ctx: { actor: 'a' }, patch: { cloudId: 'i-1' }, intent: { to: 'Starting', actor: 'a' }, bootTokenHash: hash }]);
      stacks.set(a.id, s);
      return on as VmRow;
    }

    it('approves a matching row once, using its token and writing the approved attempt; anything else writes nothing', async () => {
      const s = freshStack();
      const [a, b, c] = await Promise.all([0, 1, 2].map((i) => booting(s, i)));
      const out = await r.authorizeBoots([
        check(a.id),
        check(b.id, { cloudId: 'i-evil' }),
        check(b.id, { image: 'ami-evil' }),
        check(b.id, { dataCenter: 'richmond' }),
        check(b.id, { stack: `${s}-other` }),
        check(b.id, { allowedStates: ['Running'] }),
        check(b.id, { tokenHash: 'wrong' }),
        check('00000000-0000-4000-8000-00000000dead'),
        check(c.id),
        check(c.id),
      ]);
      // tokenKnown (a denied row's token is one the record holds for the VM): the authority judges the token first.
      const known = (o: BootCheckResult) => (o.approved ? 'approved' : o.tokenKnown);
      expect(out.map((o) => [o.approved, o.vm?.id, known(o)])).toEqual([
        [true, a.id, 'approved'],
        [false, b.id, true],
        [false, b.id, true],
        [false, b.id, true],
        [false, b.id, true],
        [false, b.id, true],
        [false, b.id, false],
        [false, undefined, undefined],
        [true, c.id, 'approved'],
        [false, c.id, true],
      ]);
      expect(out[0].vm).toMatchObject({ state: 'PoweredOn', cloudId: 'i-1', realImage: 'ami-1', version: 2 });
      const attempts = (await bootAttempts(r)).filter((x) => [a.id, b.id, c.id].includes(x.vmId!));
      expect(attempts.map((x) => [x.vmId, x.approved, x.reason, x.dataCenter, x.cloudId, x.image])).toEqual([
        [a.id, true, 'matches the record', 'miami', 'i-1', 'ami-1'],
        [c.id, true, 'matches the record', 'miami', 'i-1', 'ami-1'],
      ]);
      // Used tokens are used; b's, presented only with a mismatch, is not.
      expect((await r.authorizeBoots([check(a.id), check(b.id)])).map((o) => o.approved)).toEqual([false, true]);
      expect(await r.authorizeBoots([])).toEqual([]);
    });

    // fleet import reads it for a running VM of whose agent its DMZ client holds no report (import.ts, BootEvidence).
    it('bootAuthorized: only when the last token the record issued the VM was used, approved for that cloud id', async () => {
      const s = freshStack();
      const [used, unused, replaced] = await Promise.all([0, 1, 2].map((i) => booting(s, i)));
      expect((await r.authorizeBoots([check(used.id), check(replaced.id)])).map((o) => o.approved)).toEqual([true, true]);
      // replaced: booted, then issued a new token (its next boot) that no agent presented yet.
      await r.transitionVms([{ id: replaced.id, expectedVersion: replaced.version, to: 'PoweredOn', ctx: { actor: 'a' }, intent: { to: 'Starting', actor: 'a' }, bootTokenHash: 'h2' }]);
      const cases = [
        { name: 'its token used, approved for this cloud id', vmId: used.id, cloudId: 'i-1', want: true },
        { name: 'the same, asked about another cloud id', vmId: used.id, cloudId: 'i-other', want: false },
        { name: 'its token issued, never presented (the boot under way)', vmId: unused.id, cloudId: 'i-1', want: false },
        { name: 'an earlier boot approved, its last token never presented', vmId: replaced.id, cloudId: 'i-1', want: false },
        { name: 'a VM the record never booted', vmId: '00000000-0000-4000-8000-00000000dead', cloudId: 'i-1', want: false },
        // since: the VM's latest start as its cloud says (ActualVm.startedAt). A start from the console after the approved
        // boot began a run whose agent presents that used token again (denied): the approval is not of this run.
        { name: 'its token used, approved after the VM\'s latest start', vmId: used.id, cloudId: 'i-1', since: new Date(Date.now() - 3_600_000).toISOString(), want: true },
        { name: 'its token used, approved before the VM\'s latest start (started again from the console since)', vmId: used.id, cloudId: 'i-1', since: new Date(Date.now() + 3_600_000).toISOString(), want: false },
      ];
      expect(await Promise.all(cases.map((c) => r.bootAuthorized(c.vmId, c.cloudId, 'since' in c ? c.since : undefined).then((got) => ({ name: c.name, got }))))).toEqual(cases.map((c) => ({ name: c.name, got: c.want })));
    });

    it('lets one of two concurrent checks with one token win', async () => {
      const s = freshStack();
      const a = await booting(s, 0);
      const both = await Promise.all([r.authorizeBoots([check(a.id)]), r.authorizeBoots([check(a.id)])]);
      expect(both.map(([o]) => o.approved).sort()).toEqual([false, true]);
      expect((await bootAttempts(r, { vmId: a.id })).map((x) => x.approved)).toEqual([true]);
    });

    it.runIf(backend.name === 'postgres')('refuses a token another transaction used while the check waited, whatever their clocks', async () => {
      // The check waits for the token's row; meanwhile another use, stamped
      // after the check's transaction began (its now() is later: it started
      // later, or took the row first), commits. With no repeat window the
      // check must refuse: the token is used. (It was approved when the
      // other use's time fell after the check's own now(): the concurrent
      // test above failed now and then.)
      const s = freshStack();
      const a = await booting(s, 0);
      const raw = await rawAdapter(backend, t.url);
      try {
        let pending: Promise<{ approved: boolean }[]> | undefined;
        await raw.transaction(async (q) => {
          await q.query('SELECT 1 FROM boot_tokens WHERE vm_id = $1 FOR UPDATE', [a.id]);
          pending = r.authorizeBoots([check(a.id)]);
          // Until the check waits on the row this transaction holds. A
          // transaction sees pg_stat_activity as it was at its first read
          // unless the snapshot is cleared: without that, a first look taken
          // before the check began waiting was seen forever (a CI hang).
          // (Any backend of the record's database but this one: the query text pg_stat_activity keeps is cut at
          // track_activity_query_size, 1 kB, where the check's token update no longer is.)
          const waiting = `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`;
          for (;;) {
            await q.query('SELECT pg_stat_clear_snapshot()');
            if ((await q.query(waiting)).length > 0) break;
            await new Promise((done) => setTimeout(done, 5));
          }
          await q.query('UPDATE boot_tokens SET used_at = clock_timestamp() WHERE vm_id = $1', [a.id]);
        });
        expect((await pending!).map((o) => o.approved)).toEqual([false]);
        expect(await bootAttempts(r, { vmId: a.id })).toEqual([]);
      } finally {
        await raw.close();
      }
    });

    it('answers a repeat of an approved boot within the window again, writing nothing; another VM, a mismatch, a moved-on row, a newer token or an old use are denied', async () => {
      const s = freshStack();
      const W = 60_000;
      const [a, b] = await Promise.all([booting(s, 0, 'ha'), booting(s, 1, 'hb')]);
      const approved = async (...cs: BootCheck[]) => (await r.authorizeBoots(cs)).map((o) => o.approved);
      expect(await approved(check(a.id, { tokenHash: 'ha', repeatWithinMs: W }))).toEqual([true]);
      // The resumed agent presents it again (also twice in one batch): approved, no second attempt row.
      expect(await approved(check(a.id, { tokenHash: 'ha', repeatWithinMs: W }), check(a.id, { tokenHash: 'ha', repeatWithinMs: W }))).toEqual([true, true]);
      expect(
        await approved(
          check(b.id, { tokenHash: 'ha', repeatWithinMs: W }), // a's token for another VM
          check(a.id, { tokenHash: 'ha', repeatWithinMs: W, cloudId: 'i-evil' }),
          check(a.id, { tokenHash: 'ha', repeatWithinMs: W, allowedStates: ['Running'] }), // the VM moved on
          check(a.id, { tokenHash: 'ha', repeatWithinMs: 0 }), // no window: used once
        ),
      ).toEqual([false, false, false, false]);
      expect((await bootAttempts(r, { vmId: a.id })).map((x) => [x.approved, x.reason])).toEqual([[true, 'matches the record']]);
      expect(await bootToken(r, b.id)).toEqual({ hash: 'hb', used: false });
      // Past the window (its first use two hours ago): denied.
      await r.sql.query(`UPDATE boot_tokens SET used_at = now() - interval '2 hours' WHERE vm_id = $1`, [a.id]);
      expect(await approved(check(a.id, { tokenHash: 'ha', repeatWithinMs: W }))).toEqual([false]);
      // A newer boot edge's token replaces it. Replaced unused, the old one is still answered (its boot may be under
      // way in the cloud, its report lost: docs/recovery.md "Resumed boots"), once, like the new one; even both in one
      // statement (one row, updated once per statement: the second is checked again).
      const [again] = await r.transitionVms([{ id: b.id, expectedVersion: b.version, to: 'PoweredOn', ctx: { actor: 'a' }, intent: { to: 'Starting', actor: 'a' }, bootTokenHash: 'hb2' }]);
      expect(again).not.toBeInstanceOf(Error);
      expect(await approved(check(b.id, { tokenHash: 'hb', repeatWithinMs: W }), check(b.id, { tokenHash: 'hb2', repeatWithinMs: W }))).toEqual([true, true]);
      expect(await approved(check(b.id, { tokenHash: 'hb2', repeatWithinMs: W }), check(b.id, { tokenHash: 'hb', repeatWithinMs: W }))).toEqual([true, true]);
      expect(await approved(check(b.id, { tokenHash: 'hb', repeatWithinMs: 0 }), check(b.id, { tokenHash: 'hb2', repeatWithinMs: 0 }))).toEqual([false, false]);
      expect((await bootAttempts(r, { vmId: b.id })).map((x) => x.approved)).toEqual([true, true]);
      // Replaced once used, a token is denied: a used one (hb2 now), and the one kept before it (hb).
      const b2 = (await r.getVm(b.id))!;
      const [third] = await r.transitionVms([{ id: b.id, expectedVersion: b2.version, to: 'PoweredOn', ctx: { actor: 'a' }, intent: { to: 'Starting', actor: 'a' }, bootTokenHash: 'hb3' }]);
      expect(third).not.toBeInstanceOf(Error);
      expect(await approved(check(b.id, { tokenHash: 'hb2', repeatWithinMs: W }), check(b.id, { tokenHash: 'hb', repeatWithinMs: W }))).toEqual([false, false]);
      // Replaced twice unused, only the last replaced one is kept.
      const b3 = (await r.getVm(b.id))!;
      const [fourth] = await r.transitionVms([{ id: b.id, expectedVersion: b3.version, to: 'PoweredOn', ctx: { actor: 'a' }, intent: { to: 'Starting', actor: 'a' }, bootTokenHash: 'hb4' }]);
      expect(fourth).not.toBeInstanceOf(Error);
      const b4 = (await r.getVm(b.id))!;
      const [fifth] = await r.transitionVms([{ id: b.id, expectedVersion: b4.version, to: 'PoweredOn', ctx: { actor: 'a' }, intent: { to: 'Starting', actor: 'a' }, bootTokenHash: 'hb5' }]);
      expect(fifth).not.toBeInstanceOf(Error);
      expect(await approved(check(b.id, { tokenHash: 'hb3' }), check(b.id, { tokenHash: 'hb4' }), check(b.id, { tokenHash: 'hb5' }))).toEqual([false, true, true]);
      // Kept or not, a token is the VM's only: another VM, another cloud id, a VM moved on are denied.
      const c = await booting(s, 2, 'hc');
      const c1 = (await r.getVm(c.id))!;
      await r.transitionVms([{ id: c.id, expectedVersion: c1.version, to: 'PoweredOn', ctx: { actor: 'a' }, intent: { to: 'Starting', actor: 'a' }, bootTokenHash: 'hc2' }]);
      expect(
        await approved(
          check(b.id, { tokenHash: 'hc' }),
          check(c.id, { tokenHash: 'hc', cloudId: 'i-evil' }),
          check(c.id, { tokenHash: 'hc', allowedStates: ['Running'] }),
        ),
      ).toEqual([false, false, false]);
      expect(await approved(check(c.id, { tokenHash: 'hc' }))).toEqual([true]);
    });

    it('answers a repeat only while the VM stays in the boot the token was used for: out of the booting states and back without a new boot edge, the used token is denied', async () => {
      // Before: only "used within the window" and "booting now" were checked, so a VM that left its boot
      // (BootFailed, PoweredOff, a drift, an import, an edit) and came back into a booting state along edges that
      // issue no token had its used token answered again, with its disk key, without a new approved boot.
      const s = freshStack();
      const W = 60_000;
      const [a, b, c, d] = await Promise.all([booting(s, 0, 'ha'), booting(s, 1, 'hb'), booting(s, 2, 'hc'), booting(s, 3, 'hd')]);
      const approved = async (...cs: BootCheck[]) => (await r.authorizeBoots(cs)).map((o) => o.approved);
      const move = async (id: string, path: string[]) => {
        for (const to of path) await r.transitionVm(id, (await r.getVm(id))!.version, to, { actor: 'a' });
      };
      expect(await approved(...[a, b, c].map((v, k) => check(v.id, { tokenHash: ['ha', 'hb', 'hc'][k], repeatWithinMs: W })))).toEqual([true, true, true]);
      // a: used at PoweredOn, then its boot edge's report (PoweredOn -> Starting): the resumed agent is answered.
      await move(a.id, ['Starting']);
      expect(await approved(check(a.id, { tokenHash: 'ha', repeatWithinMs: W }))).toEqual([true]);
      // b: out of the booting states and back (powerOff, powerOn: no token issued); c: a failed boot, then back.
      await move(b.id, ['PoweredOff', 'PoweredOn']);
      await move(c.id, ['Starting', 'BootFailed', 'PoweredOff', 'PoweredOn', 'Starting']);
      const out = await r.authorizeBoots([check(b.id, { tokenHash: 'hb', repeatWithinMs: W }), check(c.id, { tokenHash: 'hc', repeatWithinMs: W })]);
      expect(out).toMatchObject([
        { approved: false, vm: { id: b.id, state: 'PoweredOn', version: b.version + 2 }, usedAtVersion: b.version },
        { approved: false, vm: { id: c.id, state: 'Starting', version: c.version + 5 }, usedAtVersion: c.version },
      ]);
      expect((await bootAttempts(r)).filter((x) => [a.id, b.id, c.id].includes(x.vmId!)).map((x) => x.approved)).toEqual([true, true, true]);
      // A denied repeat says nothing about a token that was never used (its VM's record changed or not), nor past the window.
      expect((await r.authorizeBoots([check(b.id, { tokenHash: 'wrong', repeatWithinMs: W })]))[0]).not.toHaveProperty('usedAtVersion');
      await r.sql.query(`UPDATE boot_tokens SET used_at = now() - interval '2 hours' WHERE vm_id = $1`, [b.id]);
      expect((await r.authorizeBoots([check(b.id, { tokenHash: 'hb', repeatWithinMs: W })]))[0]).not.toHaveProperty('usedAtVersion');
      // The token a newer boot edge replaced unused (kept: docs/recovery.md "Resumed boots") follows the same rule.
      await r.transitionVms([{ id: d.id, expectedVersion: d.version, to: 'PoweredOn', ctx: { actor: 'a' }, intent: { to: 'Starting', actor: 'a' }, bootTokenHash: 'hd2' }]);
      expect(await approved(check(d.id, { tokenHash: 'hd', repeatWithinMs: W }))).toEqual([true]);
      await move(d.id, ['Starting']);
      expect(await approved(check(d.id, { tokenHash: 'hd', repeatWithinMs: W }))).toEqual([true]);
      await move(d.id, ['BootFailed', 'PoweredOff', 'PoweredOn']);
      expect(await r.authorizeBoots([check(d.id, { tokenHash: 'hd', repeatWithinMs: W })])).toMatchObject([{ approved: false, usedAtVersion: d.version + 1 }]);
      // A new boot edge (a new token) boots it again.
      await r.transitionVms([{ id: d.id, expectedVersion: (await r.getVm(d.id))!.version, to: 'PoweredOn', ctx: { actor: 'a' }, intent: { to: 'Starting', actor: 'a' }, bootTokenHash: 'hd3' }]);
      expect(await approved(check(d.id, { tokenHash: 'hd3', repeatWithinMs: W }), check(d.id, { tokenHash: 'hd', repeatWithinMs: W }))).toEqual([true, false]);
      // A use before schema 14 has no version: nothing says its VM stayed, so it is not answered again.
      await r.sql.query('UPDATE boot_tokens SET used_version = NULL WHERE vm_id = $1', [a.id]);
      expect(await approved(check(a.id, { tokenHash: 'ha', repeatWithinMs: W }))).toEqual([false]);
    });

    it('answers an unused token only in the boot episode it was issued for: out of the booting states and back, it is denied, and the new boot edge\'s token boots the VM', async () => {
      // Before: an unused token was good whatever the VM went through since it was issued, so a VM that left its
      // boot (Running, BootFailed, powered off) and came back into a booting state was answered, once, with its disk
      // key, for a token of a boot it had left: as the VM's last token, or kept beside the next boot edge's.
      const s = freshStack();
      const W = 60_000;
      const [a, b, c, d] = await Promise.all([booting(s, 0, 'ha'), booting(s, 1, 'hb'), booting(s, 2, 'hc'), booting(s, 3, 'hd')]);
      const move = async (id: string, path: string[]) => {
        for (const to of path) await r.transitionVm(id, (await r.getVm(id))!.version, to, { actor: 'a' });
      };
      // a: booted and ran without presenting its token, was shut down and powered on again (no token issued).
      await move(a.id, ['Starting', 'Running', 'ShuttingDown', 'PoweredOff', 'PoweredOn']);
      // b: powered off before its boot, powered on again, and a new boot edge approved (hb replaced unused: kept).
      await move(b.id, ['PoweredOff', 'PoweredOn']);
      await r.transitionVms([{ id: b.id, expectedVersion: (await r.getVm(b.id))!.version, to: 'PoweredOn', ctx: { actor: 'a' }, intent: { to: 'Starting', actor: 'a' }, bootTokenHash: 'hb2' }]);
      // c: its boot edge's report, then presented (the legitimate case: the same boot).
      await move(c.id, ['Starting']);
      // d: a failed boot, powered off and on, into Starting again by a drift (no token issued).
      await move(d.id, ['Starting', 'BootFailed', 'PoweredOff', 'PoweredOn', 'Starting']);
      const out = await r.authorizeBoots([
        check(a.id, { tokenHash: 'ha', repeatWithinMs: W }),
        check(b.id, { tokenHash: 'hb', repeatWithinMs: W }),
        check(c.id, { tokenHash: 'hc', repeatWithinMs: W }),
        check(d.id, { tokenHash: 'hd', repeatWithinMs: 0 }),
      ]);
      expect(out.map((o) => o.approved)).toEqual([false, false, true, false]);
      expect(out[0]).toMatchObject({ vm: { state: 'PoweredOn' }, leftBoot: true });
      expect(out[1]).toMatchObject({ vm: { state: 'PoweredOn' }, leftBoot: true });
      expect(out[3]).toMatchObject({ vm: { state: 'Starting' }, leftBoot: true });
      expect(out[2]).not.toHaveProperty('leftBoot');
      expect((await bootAttempts(r)).filter((x) => [a.id, b.id, d.id].includes(x.vmId!))).toEqual([]);
      // The new boot edge's token boots b.
      expect((await r.authorizeBoots([check(b.id, { tokenHash: 'hb2', repeatWithinMs: W })])).map((o) => o.approved)).toEqual([true]);
      // A wrong token says nothing about the episode.
      expect((await r.authorizeBoots([check(a.id, { tokenHash: 'wrong', repeatWithinMs: W })]))[0]).not.toHaveProperty('leftBoot');
    });

    it('answers a token issued ahead (approved with the edges before its boot) once the VM reaches its boot, whatever it went through before; removed from the record and imported back, not', async () => {
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0, { realImage: 'ami-1' }), { actor: 'a' });
      stacks.set(a.id, s);
      // The boot edge approved ahead while the VM is being created (an advance: createVm's report carries it).
      await r.transitionVms([{ id: a.id, expectedVersion: a.version, to: 'BeingCreated', ctx: { actor: 'a' }, intent: { to: 'PoweredOff', actor: 'a' }, bootTokenHash: 'ha' }]);
      for (const [to, patch] of [['PoweredOff', { cloudId: 'i-1' }], ['PoweredOn', undefined]] as const) {
        const [moved] = await r.transitionVms([{ id: a.id, expectedVersion: (await r.getVm(a.id))!.version, to, ctx: { actor: 'a' }, ...(patch ? { patch } : {}) }]);
        expect(moved).not.toBeInstanceOf(Error);
      }
      expect((await r.authorizeBoots([check(a.id, { tokenHash: 'ha', repeatWithinMs: 60_000 })])).map((o) => o.approved)).toEqual([true]);
      // Removed from the record (fleet state rm) before its boot and imported back booting: its token is not good
      // for the imported VM's boot, whatever state it was removed in (an import issues no token).
      const b = await r.insertVm(newVm(s, 'web', 1, { realImage: 'ami-1' }), { actor: 'a' });
      stacks.set(b.id, s);
      const [off] = await r.transitionVms([{ id: b.id, expectedVersion: b.version, to: 'PoweredOff', ctx: { actor: 'a' }, patch: { cloudId: 'i-2' }, intent: { to: 'PoweredOn', actor: 'a' }, bootTokenHash: 'hb' }]);
      await r.transitionVm(b.id, (off as VmRow).version, 'PoweredOff', { actor: 'a' }, { retire: true });
      await r.adoptVm({ ...newVm(s, 'web', 1, { state: 'PoweredOn', realImage: 'ami-1' }), id: b.id, cloudId: 'i-2' }, { actor: 'a' });
      expect(await r.authorizeBoots([check(b.id, { tokenHash: 'hb', cloudId: 'i-2', repeatWithinMs: 60_000 })])).toMatchObject([{ approved: false, vm: { state: 'PoweredOn' }, leftBoot: true }]);
    });

    it('every writer of a VM row bumps its version and writes each state change to history; the boot check reads the moves there: intents, failures, vetoes and denials are none', async () => {
      // The repeat rule (a used token answered while the row is at most one write past its use) counts writes by
      // the version: each write of the record's code must bump it. Whether the VM left the boot a token was issued
      // for is read from the VM's history rows after the issue (migration 15), so each write that moves a VM (or
      // brings it back into the record) must write its row.
      const s = freshStack();
      const a = await booting(s, 0, 'ha');
      const versions = [a.version];
      const at = async () => (await r.listVms(s, { includeRetired: true })).find((x) => x.id === a.id)!;
      const rowsOf = async () => (await r.history(s, 'web/0')).filter((h) => h.vmId === a.id).sort((x, y) => x.id - y.id);
      const bumped = async (what: string, write: () => Promise<unknown>, moved?: { from: string | null; to: string }) => {
        const before = await at();
        const seen = (await rowsOf()).length;
        await write();
        const after = await at();
        expect(after.version, what).toBeGreaterThan(versions.at(-1)!);
        versions.push(after.version);
        const rows = (await rowsOf()).slice(seen);
        if (moved) expect(rows, what).toEqual([expect.objectContaining({ from: moved.from, to: moved.to })]);
        else expect([rows.filter((h) => h.from !== h.to), after.state], what).toEqual([[], before.state]);
      };
      await bumped('transitionVm', async () => r.transitionVm(a.id, (await at()).version, 'Starting', { actor: 'a' }), { from: 'PoweredOn', to: 'Starting' });
      await bumped('transitionVms', async () => r.transitionVms([{ id: a.id, expectedVersion: (await at()).version, to: 'Running', ctx: { actor: 'a' }, patch: { cloudId: 'i-1' } }]), {
        from: 'Starting',
        to: 'Running',
      });
      await bumped('updateVm', async () => r.updateVm(a.id, (await at()).version, { desiredState: 'PoweredOff', specHash: 'h2' }, { actor: 'a' }));
      await bumped('insertVm replacing (the old row deposed)', async () => r.insertVm(newVm(s, 'web', 0, { replaces: a.id, specHash: 'h3' }), { actor: 'a' }));
      await bumped('transitionVm retiring', async () => r.transitionVm(a.id, (await at()).version, 'Deleted', { actor: 'a' }, { retire: true }), { from: 'Running', to: 'Deleted' });
      await bumped(
        'adoptVm of the retired row',
        async () => {
          const now = (await r.listVms(s)).find((x) => x.index === 0);
          if (now) await r.transitionVm(now.id, now.version, 'Deleted', { actor: 'a' }, { retire: true });
          await r.adoptVm({ ...newVm(s, 'web', 0, { state: 'Running' }), id: a.id, cloudId: 'i-9' }, { actor: 'a' });
        },
        { from: null, to: 'Running' },
      );
      // And every UPDATE of vms in the record's sources says so (a new writer that forgets fails here).
      const dir = new URL('.', import.meta.url);
      const sources = (await readdir(dir)).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== 'testing.ts');
      let updates = 0;
      for (const f of sources) {
        const text = await readFile(new URL(f, dir), 'utf8');
        for (const m of text.matchAll(/UPDATE vms SET([\s\S]*?)\bWHERE\b/g)) {
          updates++;
          expect(m[1], `${f}: ${m[0].slice(0, 80)}`).toMatch(/version = version \+/);
        }
      }
      expect(updates).toBeGreaterThanOrEqual(5);

      // History rows that move nothing leave the boot as it was: an intent out of the booting states (an edge
      // approved, not carried out), its failed report, a veto, a denial, a drift that kept the state.
      const [b, c, d] = await Promise.all([booting(s, 1, 'hb'), booting(s, 2, 'hc'), booting(s, 3, 'hd')]);
      expect((await r.authorizeBoots([check(c.id, { tokenHash: 'hc', repeatWithinMs: 60_000 })]))[0].approved).toBe(true);
      for (const id of [b.id, c.id, d.id]) {
        await r.addHistory(id, { from: 'PoweredOn', to: 'PoweredOff', outcome: 'ok', actor: 'authority', detail: 'intent approved: powerOff' });
        await r.addHistory(id, { from: 'PoweredOn', to: 'PoweredOff', outcome: 'failed', actor: 'dmz-client:miami', detail: 'the cloud operation failed' });
        await r.addHistory(id, { from: 'PoweredOn', to: 'PoweredOff', outcome: 'vetoed', actor: 'dmz-client:miami', detail: 'no' });
        await r.addHistory(id, { from: 'PoweredOn', to: 'PoweredOn', outcome: 'denied', actor: 'authority', detail: 'boot denied: no' });
        await r.addHistory(id, { from: 'PoweredOn', to: 'PoweredOn', outcome: 'drift', actor: 'refresh', detail: 'kept' });
      }
      expect((await r.authorizeBoots([check(b.id, { tokenHash: 'hb', repeatWithinMs: 60_000 })]))[0].approved).toBe(true);
      // Moves out of the booting states and back end it: transitions (b, c: unused and used), refresh's drift (d).
      for (const id of [b.id, c.id]) {
        for (const to of ['PoweredOff', 'PoweredOn']) await r.transitionVm(id, (await r.getVm(id))!.version, to, { actor: 'a' });
      }
      for (const to of ['PoweredOff', 'PoweredOn']) await r.transitionVm(d.id, (await r.getVm(d.id))!.version, to, { actor: 'refresh', outcome: 'drift', detail: 'refresh: miami reports it' });
      const out = await r.authorizeBoots([
        check(b.id, { tokenHash: 'hb', repeatWithinMs: 60_000 }),
        check(c.id, { tokenHash: 'hc', repeatWithinMs: 60_000 }),
        check(d.id, { tokenHash: 'hd', repeatWithinMs: 60_000 }),
      ]);
      expect(out).toMatchObject([
        { approved: false, leftBoot: true },
        { approved: false, leftBoot: true },
        { approved: false, leftBoot: true },
      ]);
    });

    it('over generated paths after a use: a VM that left the booting states is never answered its used token again; one write (the boot\'s report) keeps it answered', async () => {
      const STATES = ['PoweredOff', 'PoweredOn', 'Starting', 'Running', 'BootFailed', 'ShuttingDown'];
      const BOOTING = ['PoweredOn', 'Starting'];
      const rnd = seededRandom(14);
      const s = freshStack();
      const W = 60_000;
      const walks = Array.from({ length: 48 }, () => ({
        usedAt: rnd.pick(BOOTING),
        // Biased to the booting states, so that many walks come back into one.
        path: Array.from({ length: rnd.between(0, 5) }, () => (rnd.chance(0.5) ? rnd.pick(BOOTING) : rnd.pick(STATES))),
      }));
      for (let start = 0; start < walks.length; start += 12) {
        await Promise.all(
          walks.slice(start, start + 12).map(async (w, k) => {
            const vm = await booting(s, start + k, `hw${start + k}`);
            if (w.usedAt === 'Starting') await r.transitionVm(vm.id, vm.version, 'Starting', { actor: 'a' });
            const c = check(vm.id, { tokenHash: `hw${start + k}`, repeatWithinMs: W });
            expect((await r.authorizeBoots([c]))[0].approved).toBe(true);
            for (const to of w.path) await r.transitionVm(vm.id, (await r.getVm(vm.id))!.version, to, { actor: 'a' });
            const [again] = await r.authorizeBoots([c]);
            const at = [w.usedAt, ...w.path];
            const why = `used at ${w.usedAt}, then ${w.path.join(' -> ') || 'no move'}`;
            if (at.some((x) => !BOOTING.includes(x))) expect(again.approved, why).toBe(false);
            if (w.path.length <= 1 && BOOTING.includes(at[at.length - 1])) expect(again.approved, why).toBe(true);
            if (!again.approved && BOOTING.includes(at[at.length - 1])) expect(again, why).toHaveProperty('usedAtVersion', vm.version + (w.usedAt === 'Starting' ? 1 : 0));
          }),
        );
      }
      // The generator reached both sides: walks that came back into a booting state after leaving, and one-move walks.
      expect(walks.some((w) => [w.usedAt, ...w.path].some((x) => !BOOTING.includes(x)) && BOOTING.includes(w.path.at(-1) ?? ''))).toBe(true);
      expect(walks.some((w) => w.path.length === 1 && BOOTING.includes(w.path[0]))).toBe(true);
    });

    it('with a repeat window, two concurrent checks with one token are both approved and recorded once', async () => {
      const s = freshStack();
      const a = await booting(s, 0);
      const both = await Promise.all([r.authorizeBoots([check(a.id, { repeatWithinMs: 60_000 })]), r.authorizeBoots([check(a.id, { repeatWithinMs: 60_000 })])]);
      expect(both.map(([o]) => o.approved)).toEqual([true, true]);
      expect((await bootAttempts(r, { vmId: a.id })).map((x) => x.approved)).toEqual([true]);
    });
  });

  describe('addHistoryMany with a boot token', () => {
    it('stores the token only with a row that is written; of a VM\'s rows in one batch, the last one\'s', async () => {
      const s = freshStack();
      const [a, b] = await Promise.all([0, 1].map((i) => r.insertVm(newVm(s, 'web', i), { actor: 'a' })));
      const row = { from: 'PoweredOn', to: 'Starting', outcome: 'ok' as const, actor: 'authority' };
      const out = await r.addHistoryMany([
        { vmId: a.id, row, expectedVersion: 1, bootTokenHash: 'ha-old' },
        { vmId: b.id, row, expectedVersion: 4, bootTokenHash: 'hb' },
        { vmId: a.id, row, expectedVersion: 1, bootTokenHash: 'ha' },
      ]);
      expect(out[0]).toBeUndefined();
      expect(out[1]).toBeInstanceOf(VersionConflictError);
      expect(out[2]).toBeUndefined();
      expect(await bootToken(r, a.id)).toEqual({ hash: 'ha', used: false });
      expect(await bootToken(r, b.id)).toBeUndefined();
    });

    it.runIf(backend.name === 'postgres')('waits for a move of the VM under way and then refuses the row: its version check holds at commit', async () => {
      // Another transaction moves the VM (its row locked, not committed) while an
      // intent for the version it had is written. Unlocked, the intent's version
      // check read the row as it was and wrote the intent and its boot token for
      // a VM that had moved on (and its history id could precede the move's,
      // which the boot check then took for before the token's issue).
      const s = freshStack();
      const a = await r.insertVm(newVm(s, 'web', 0), { actor: 'a' });
      const raw = await rawAdapter(backend, t.url);
      try {
        let settled = false;
        let pending: Promise<(Error | undefined)[]> | undefined;
        await raw.transaction(async (q) => {
          await q.query(`UPDATE vms SET state = 'Failed', version = version + 1 WHERE id = $1`, [a.id]);
          pending = r.addHistoryMany([
            { vmId: a.id, expectedVersion: a.version, row: { from: a.state, to: 'Starting', outcome: 'ok', actor: 'authority', detail: 'intent approved: boot' }, bootTokenHash: 'hx' },
          ]);
          void pending.finally(() => (settled = true));
          // Until the write waits on the row this transaction holds, or is done without waiting (the defect).
          const waiting = `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO history%'`;
          for (;;) {
            await q.query('SELECT pg_stat_clear_snapshot()');
            if (settled || (await q.query(waiting)).length > 0) break;
            await new Promise((done) => setTimeout(done, 5));
          }
        });
        const [out] = await pending!;
        expect(out).toBeInstanceOf(VersionConflictError);
        expect(await bootToken(r, a.id)).toBeUndefined();
      } finally {
        await raw.close();
      }
    });
  });

  describe('schema', () => {
    it('reopens idempotently and keeps the data', async () => {
      const { url, drop } = await backend.freshUrl();
      try {
        const s = freshStack();
        const a = await openRecord(url);
        await a.insertVm(newVm(s, 'web', 0), { actor: 'a' });
        await a.close();
        const b = await openRecord(url);
        expect(await b.listVms(s)).toHaveLength(1);
        await b.close();
      } finally {
        await drop();
      }
    });

    it('upgrades a record with boot tokens to 15: a token issued before counts the moves from the upgrade on', async () => {
      const { url, drop } = await backend.freshUrl();
      try {
        const raw = await rawAdapter(backend, url);
        await migrate(raw, { description: url }, MIGRATIONS.filter((m) => m.version <= 14));
        const s = freshStack();
        const ids = [randomUUID(), randomUUID()];
        for (const [k, id] of ids.entries()) {
          await raw.query(
            `INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, real_image, cpu, memory_gib, disk_gib, encrypted_disk, cloud_id, version)
             VALUES ($1, $2, 'web', $3, $4, 'miami', 'PoweredOn', 'Running', 'h1', 'ubuntu-22.04', 'ami-1', 2, 4, 50, true, 'i-1', 4)`,
            [id, s, k, `web-${k}`],
          );
          await raw.query(`INSERT INTO boot_tokens (vm_id, token_hash) VALUES ($1, $2)`, [id, `h${k}`]);
        }
        await raw.close();
        const rec = (await openRecord(url)) as SqlRecord;
        try {
          expect(await rec.schemaVersion()).toBe(SCHEMA_VERSION);
          const c = (id: string, tokenHash: string): BootCheck => ({
            vmId: id, stack: s, dataCenter: 'miami', cloudId: 'i-1', image: 'ami-1', tokenHash, allowedStates: ['PoweredOn', 'Starting'], reason: 'matches the record', repeatWithinMs: 60_000,
          });
          // The first stays in its boot (its report); the second leaves it and comes back.
          await rec.transitionVm(ids[0], 4, 'Starting', { actor: 'a' });
          await rec.transitionVm(ids[1], 4, 'PoweredOff', { actor: 'a' });
          await rec.transitionVm(ids[1], 5, 'PoweredOn', { actor: 'a' });
          expect(await rec.authorizeBoots([c(ids[0], 'h0'), c(ids[1], 'h1')])).toMatchObject([{ approved: true }, { approved: false, leftBoot: true }]);
        } finally {
          await rec.close();
        }
      } finally {
        await drop();
      }
    });

    // Migration 18 adds history.code: a failure written before it has none, so a VM denied and failed then is booted
    // again (as before), while one failed after the upgrade is judged by its code.
    it('upgrades a record with history to 18: a failure written before has no code and is no denial', async () => {
      const { url, drop } = await backend.freshUrl();
      try {
        const raw = await rawAdapter(backend, url);
        await migrate(raw, { description: url }, MIGRATIONS.filter((m) => m.version <= 17));
        const s = freshStack();
        const id = randomUUID();
        await raw.query(`INSERT INTO fleets (stack, fleet, owner) VALUES ($1, 'web', 'team-payments')`, [s]);
        await raw.query(
          `INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, real_image, cpu, memory_gib, disk_gib, encrypted_disk, cloud_id, version)
           VALUES ($1, $2, 'web', 0, 'web-0', 'miami', 'BootFailed', 'Running', 'h1', 'ubuntu-22.04', 'ami-1', 2, 4, 50, true, 'i-1', 6)`,
          [id, s],
        );
        const rows: [string, string, string, string][] = [
          ['PoweredOn', 'Starting', 'dmz-client:miami', 'ok'],
          ['Starting', 'Starting', 'authority', 'denied'],
          ['Starting', 'BootFailed', 'dmz-client:miami', 'failed'],
        ];
        for (const [from, to, actor, outcome] of rows) {
          await raw.query(`INSERT INTO history (vm_id, stack, fleet, address, from_state, to_state, actor, outcome) VALUES ($1, $2, 'web', 'web/0', $3, $4, $5, $6)`, [id, s, from, to, actor, outcome]);
        }
        await raw.close();
        const rec = (await openRecord(url)) as SqlRecord;
        try {
          expect(await rec.schemaVersion()).toBe(SCHEMA_VERSION);
          expect(await rec.deniedBoots([id], ['Starting'])).toEqual([]);
          // Its next boot, denied and failed boot-denied after the upgrade, is.
          await rec.transitionVm(id, 6, 'Starting', { actor: 'dmz-client:miami' });
          await rec.addHistory(id, { from: 'Starting', to: 'Starting', outcome: 'denied', actor: 'authority', detail: 'boot denied' });
          await rec.transitionVm(id, 7, 'BootFailed', { actor: 'dmz-client:miami', outcome: 'failed', code: 'driver.boot-denied' });
          expect(await rec.deniedBoots([id], ['Starting'])).toEqual([id]);
          expect((await rec.history(s, 'web/0')).map((h) => h.outcome)).toEqual(['ok', 'denied', 'failed', 'ok', 'denied', 'failed']);
        } finally {
          await rec.close();
        }
      } finally {
        await drop();
      }
    });

    it('upgrades an existing record in one transaction: all of a migration or none', async () => {
      const { url, drop } = await backend.freshUrl();
      try {
        const s = freshStack();
        const rec = await openRecord(url);
        await rec.insertVm(newVm(s, 'web', 0), { actor: 'a' });
        await rec.close();
        const raw = await rawAdapter(backend, url);
        try {
          const broken = { version: SCHEMA_VERSION + 1, description: 'broken', statements: ['CREATE TABLE half_done (x int)', 'SELECT no_such_function()'] };
          await expect(migrate(raw, { description: url }, [...MIGRATIONS, broken])).rejects.toThrow(/no_such_function/);
          expect(await raw.query(`SELECT to_regclass('half_done') AS t`)).toEqual([{ t: null }]);
          expect(await raw.query('SELECT schema_version FROM meta')).toEqual([{ schema_version: SCHEMA_VERSION }]);

          const next = { version: SCHEMA_VERSION + 1, description: 'labels', statements: [`ALTER TABLE vms ADD COLUMN labels text NOT NULL DEFAULT '{}'`] };
          expect(await migrate(raw, { description: url }, [...MIGRATIONS, next])).toEqual({ from: SCHEMA_VERSION, to: next.version });
          expect(await migrate(raw, { description: url }, [...MIGRATIONS, next])).toEqual({ from: next.version, to: next.version });
          expect(await raw.query('SELECT fleet, labels FROM vms WHERE stack = $1', [s])).toEqual([{ fleet: 'web', labels: '{}' }]);
        } finally {
          await raw.close();
        }
      } finally {
        await drop();
      }
    });

    it('migration 10 keeps one journal row of each plan, step key and status, and the index then refuses a second', async () => {
      const { url, drop } = await backend.freshUrl();
      try {
        const raw = await rawAdapter(backend, url);
        try {
          await migrate(raw, { description: url }, MIGRATIONS.filter((m) => m.version < 10));
          const ins = `INSERT INTO journal (plan_id, address, seq, vm_id, from_state, to_state, idempotency_key, status, detail) VALUES ($1, 'web/0', 0, NULL, 'A', 'B', $2, $3, $4)`;
          await raw.query(ins, ['p1', 'p1/web/0/0', 'started', 'first']);
          await raw.query(ins, ['p1', 'p1/web/0/0', 'started', 'twice']);
          await raw.query(ins, ['p1', 'p1/web/0/0', 'done', null]);
          await raw.query(ins, ['p2', 'p1/web/0/0', 'started', null]);
          expect(await migrate(raw, { description: url }, MIGRATIONS.filter((m) => m.version <= 10))).toEqual({ from: 9, to: 10 });
          expect(await raw.query('SELECT plan_id, status, detail FROM journal ORDER BY id')).toEqual([
            { plan_id: 'p1', status: 'started', detail: 'first' },
            { plan_id: 'p1', status: 'done', detail: null },
            { plan_id: 'p2', status: 'started', detail: null },
          ]);
          await expect(raw.query(ins, ['p1', 'p1/web/0/0', 'done', 'again'])).rejects.toThrow(/journal_once/);
          // Migration 11 drops the index: only a retried write looks for its row (journal.ts).
          expect(await migrate(raw, { description: url })).toEqual({ from: 10, to: SCHEMA_VERSION });
          await raw.query(ins, ['p1', 'p1/web/0/0', 'done', 'again']);
          expect((await raw.query<{ n: number }>(`SELECT count(*)::int AS n FROM journal WHERE plan_id = 'p1' AND status = 'done'`))[0].n).toBe(2);
        } finally {
          await raw.close();
        }
      } finally {
        await drop();
      }
    });

    // A program's fleet made before migration 12 had no manager in the record, so fleet plan would still plan its
    // members for deletion after the upgrade: migration 12 marks the fleets whose every live VM the authority
    // created outside any apply (no plan id), as a Pulumi Fleet or Vm creates.
    it('migration 12 marks a fleet whose live VMs were all created outside any apply as a program\'s; the program\'s next create names it', async () => {
      const { url, drop } = await backend.freshUrl();
      try {
        const raw = await rawAdapter(backend, url);
        await migrate(raw, { description: url }, MIGRATIONS.filter((m) => m.version <= 11));
        const s = 'legacy';
        // [fleet, index, live, create row's actor, plan id, outcome]
        const vms: [string, number, boolean, string, string | null, string][] = [
          ['prog', 0, true, 'authority', null, 'ok'],
          ['prog', 1, true, 'authority', null, 'ok'],
          ['applied', 0, true, 'authority', 'plan-1', 'ok'],
          ['mixed', 0, true, 'authority', null, 'ok'],
          ['mixed', 1, true, 'authority', 'plan-2', 'ok'],
          ['gone', 0, false, 'authority', null, 'ok'],
          ['imported', 0, true, 'alice', null, 'imported'],
        ];
        for (const f of new Set(vms.map((v) => v[0]))) await raw.query(`INSERT INTO fleets (stack, fleet, owner) VALUES ($1, $2, 'team-payments')`, [s, f]);
        for (const [fleet, idx, live, actor, planId, outcome] of vms) {
          const id = `${fleet}-${idx}`;
          await raw.query(
            `INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, cpu, memory_gib, disk_gib, encrypted_disk, retired_at)
             VALUES ($1, $2, $3, $4, $1, 'miami', 'Running', 'Running', 'h1', 'ubuntu-22.04', 2, 4, 50, true, ${live ? 'NULL' : 'now()'})`,
            [id, s, fleet, idx],
          );
          await raw.query(`INSERT INTO history (vm_id, stack, fleet, address, from_state, to_state, actor, plan_id, outcome) VALUES ($1, $2, $3, $4, NULL, 'Requested', $5, $6, $7)`, [
            id, s, fleet, `${fleet}/${idx}`, actor, planId, outcome,
          ]);
        }
        await raw.close();
        const rec = await openRecord(url);
        try {
          expect((await rec.listFleets(s)).map((f) => [f.fleet, f.managedBy])).toEqual([
            ['applied', null],
            ['gone', null],
            ['imported', null],
            ['mixed', null],
            ['prog', 'pulumi'],
          ]);
          // Any program may create in it (its name then replaces the mark); fleet apply may not.
          expect(await codeOf(rec.insertVm(newVm(s, 'prog', 2), { actor: 'a' }))).toBe('record.manager-mismatch');
          await rec.insertVm(newVm(s, 'prog', 2, { managedBy: 'pulumi:fleets/dev' }), { actor: 'a' });
          expect((await rec.listFleets(s, ['prog']))[0].managedBy).toBe('pulumi:fleets/dev');
          expect(await codeOf(rec.insertVm(newVm(s, 'prog', 3, { managedBy: 'pulumi:fleets/prod' }), { actor: 'a' }))).toBe('record.manager-mismatch');
        } finally {
          await rec.close();
        }
      } finally {
        await drop();
      }
    });

    it('refuses a record written by a newer schema, and leaves it untouched', async () => {
      const { url, drop } = await backend.freshUrl();
      try {
        const raw = await rawAdapter(backend, url);
        const next = { version: SCHEMA_VERSION + 1, description: 'future', statements: ['CREATE TABLE future_thing (x int)'] };
        await migrate(raw, { description: url }, [...MIGRATIONS, next]);
        await raw.close();
        const err = await openRecord(url).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(FleetError);
        const d = (err as FleetError).diagnostics[0];
        expect(d.code).toBe('record.newer-schema');
        expect(d.detail).toContain(`schema version ${next.version}`);
      } finally {
        await drop();
      }
    });

    it('a command that only reads (state, history) never upgrades a record: it reads one missing only index migrations as it is, refuses an older one untouched (record.older-schema)', async () => {
      // With `next`, the record is read by a dmzfleet that knows one more migration, index only (migrate's upgrade: false).
      const indexOnlyNext = { version: SCHEMA_VERSION + 1, indexOnly: true as const, description: 'an index', statements: ['CREATE INDEX later_index ON vms (name)'] };
      const cases = [
        // Missing only an index migration: read as it is, left at its version.
        { at: SCHEMA_VERSION, next: true, refused: false },
        // Missing 19 (request_claims, a table: only index migrations are read past): refused, left at 18.
        { at: 18, refused: true, missing: '19' },
        // Missing 18 (history.code, which every history write writes and deniedBoots reads) too: refused, left at 17.
        { at: 17, refused: true, missing: '18, 19' },
        // Missing 15 (boot_tokens.issued_history, which the boot check reads and writes) too: refused, left at 14.
        { at: 14, refused: true, missing: '15, 18, 19' },
        // Missing 14 (boot_tokens.used_version, which the boot check reads and writes) too: refused, left at 13.
        { at: 13, refused: true, missing: '14, 15, 18, 19' },
        // Missing 13 (vms_cloud_id, an index), 14, 15, 16 and 17 (indexes, a trigger), 18 and 19: naming 14, 15, 18 and 19 only.
        { at: 12, refused: true, missing: '14, 15, 18, 19' },
        // Missing 12 (fleets.managed_by, which listFleets reads) too.
        { at: 11, refused: true, missing: '12, 14, 15, 18, 19' },
        // Missing 10 and 11 (indexes only) too: naming 12, 14, 15, 18 and 19 only.
        { at: 9, refused: true, missing: '12, 14, 15, 18, 19' },
        // Missing 9 (a column the boot check reads) too.
        { at: 8, refused: true, missing: '9, 12, 14, 15, 18, 19' },
      ];
      for (const c of cases) {
        const { url, drop } = await backend.freshUrl();
        try {
          const raw = await rawAdapter(backend, url);
          await migrate(raw, { description: url }, MIGRATIONS.filter((m) => m.version <= c.at));
          await raw.close();
          if (c.next) {
            const again = await rawAdapter(backend, url);
            expect(await migrate(again, { description: url }, [...MIGRATIONS, indexOnlyNext], { upgrade: false })).toEqual({ from: c.at, to: c.at });
            await again.close();
          }
          const reader = await openRecord(url, { existing: true, readOnly: true }).catch((e: unknown) => e);
          if (c.refused) {
            expect(reader, `at ${c.at}`).toBeInstanceOf(FleetError);
            const d = (reader as FleetError).diagnostics[0];
            expect(d.code).toBe('record.older-schema');
            expect(d.detail).toContain(`schema version ${c.at}`);
            expect(d.detail).toContain(`missing: ${c.missing})`);
          } else {
            expect(reader, `at ${c.at}`).not.toBeInstanceOf(Error);
            const rec = reader as SqlRecord;
            expect(await rec.listVms('nobody')).toEqual([]);
            expect(await rec.schemaVersion()).toBe(c.at);
            await rec.close();
          }
          // Untouched either way; a command that writes (here: unlock's open) upgrades it.
          const check = await rawAdapter(backend, url);
          expect(await check.query('SELECT schema_version FROM meta')).toEqual([{ schema_version: c.at }]);
          await check.close();
          const writer = await openRecord(url, { existing: true });
          expect(await writer.schemaVersion()).toBe(SCHEMA_VERSION);
          await writer.close();
        } finally {
          await drop();
        }
      }
      // Eight fresh records, each opened three times or four: on PGlite under a loaded machine that is 45 s and
      // more (the suite's 60 s timed it out once migration 15 added the seventh).
    }, 180_000);

    it('refuses a database that holds another application\'s tables', async () => {
      const { url, drop } = await backend.freshUrl();
      try {
        const raw = await rawAdapter(backend, url);
        await raw.query('CREATE TABLE customers (id int)');
        await raw.close();
        const err = await openRecord(url).catch((e: unknown) => e);
        expect((err as FleetError).diagnostics[0].code).toBe('record.foreign-database');
        expect((err as FleetError).diagnostics[0].detail).toContain('customers');
      } finally {
        await drop();
      }
    });
  });
});
