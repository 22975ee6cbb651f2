// Whose quota a create spends, attacked as someone holding a data center's
// token would (curl: straight HTTP to the authority, no CLI, no plan, no
// lock). The create request names an owner, but the authority takes a
// fleet's owner from the record: a create claiming another owner for a
// fleet the record holds is vetoed (owner-mismatch) and changes nothing,
// and an owner that owner-quota does not list gets the rule's `unlisted`
// limits. docs/security.md, "Whose quota a create spends".
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPack } from '../../providers/testing.ts';
import type { FleetRecord } from '../record/index.ts';
import { testBackends, type TestRecord } from '../record/testing.ts';
import type { LoadedPack, ResolvedRule } from '../policy/types.ts';
import type { AuthorizeResponse, AuthorizeVm, ReportResponse } from '../../protocol/index.ts';
import { startAuthority, type RunningService } from './server.ts';
import { TOKEN, create, edge, post, reportOf, vm } from './attack-testing.ts';


function packWith(base: LoadedPack, config: Record<string, unknown>): LoadedPack {
  const rules = new Map<string, ResolvedRule>(base.rules);
  rules.set('owner-quota', { ...rules.get('owner-quota')!, enforcement: 'mandatory', config });
  return { ...base, rules };
}

interface World {
  stack: string;
  record: FleetRecord;
  authority: RunningService;
}

async function startWorld(record: FleetRecord, pack: LoadedPack, capacity?: { vms?: number; cpu?: number }): Promise<World> {
  const stack = `own-${randomUUID().slice(0, 8)}`;
  const authority = await startAuthority({ record, pack, stackName: stack, dataCenters: [{ name: 'miami', token: TOKEN, ...(capacity ? { capacity } : {}) }], secret: 's' });
  return { stack, record, authority };
}

async function createVm(w: World, v: AuthorizeVm): Promise<AuthorizeResponse> {
  return (await post<AuthorizeResponse>(w, '/v1/authorize', create(randomUUID(), v))).body;
}

/** What the record holds of a stack: its VMs, its fleets with their owners, its history's length. */
async function snapshot(w: World): Promise<unknown> {
  const vms = await w.record.listVms(w.stack, { includeRetired: true });
  const fleets = await w.record.listFleets(w.stack);
  return { vms: vms.map((v) => [v.id, v.state, v.size, v.version]), fleets: fleets.map((f) => [f.fleet, f.owner, f.version]), history: (await w.record.history(w.stack)).length };
}

describe.each(testBackends())('whose quota a create spends, attacked over HTTP ($name)', (backend) => {
  let t: TestRecord;
  let base: LoadedPack;
  beforeAll(async () => {
    t = await backend.create();
    base = await defaultPack();
  });
  afterAll(() => t.cleanup());

  // Each case: with capacity (the insert checks a budget in a transaction) and without (one statement).
  describe.each([{ capacity: { vms: 100, cpu: 400 } }, { capacity: undefined }])('capacity $capacity', ({ capacity }) => {
    it('a create claiming another owner for a fleet the record holds is vetoed (owner-mismatch): nothing written, the fleet keeps its owner and its quota', async () => {
      const w = await startWorld(t.record, packWith(base, { limits: { 'team-q': { vms: 3 } } }), capacity);
      try {
        for (let i = 0; i < 3; i++) expect((await createVm(w, vm(w, 'web', 'team-q', i))).decision).not.toBe('vetoed');
        const before = await snapshot(w);
        // Claimed as an owner the quota does not limit, and as a 1000-CPU VM.
        for (const claim of ['team-free', 'team-other']) {
          const r = await createVm(w, vm(w, 'web', claim, 3, { size: { cpu: 1000, memoryGiB: 8, diskGiB: 20 } }));
          expect(r).toMatchObject({ decision: 'vetoed', operation: 'none', reason: expect.stringContaining('fleet web is owned by team-q in the record, not team-free'.replace('team-free', claim)) });
          expect(r.credentials).toBeUndefined();
        }
        expect(await snapshot(w)).toEqual(before);
        expect((await w.record.listFleets(w.stack, ['web']))[0].owner).toBe('team-q');
        // team-q's quota still counts web's three VMs.
        expect((await createVm(w, vm(w, 'api', 'team-q', 0))).reason).toContain('the quota of owner team-q is 3 VMs: 3 in use');
      } finally {
        await w.authority.close();
      }
    });

    it("an owner owner-quota does not list gets the rule's `unlisted` limits, each such owner on its own", async () => {
      const w = await startWorld(t.record, packWith(base, { limits: { 'team-q': { vms: 3 } }, unlisted: { vms: 1, cpu: 4 } }), capacity);
      try {
        expect((await createVm(w, vm(w, 'evil', 'nobody', 0))).decision).not.toBe('vetoed');
        const before = await snapshot(w);
        const second = await createVm(w, vm(w, 'evil', 'nobody', 1));
        expect(second).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('the quota of owner nobody is 1 VMs: 1 in use') });
        const huge = await createVm(w, vm(w, 'huge', 'somebody', 0, { size: { cpu: 1000, memoryGiB: 8, diskGiB: 20 } }));
        expect(huge).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('the quota of owner somebody is 4 vCPUs') });
        expect(await snapshot(w)).toEqual(before);
        // A listed owner keeps its own limits.
        for (let i = 0; i < 3; i++) expect((await createVm(w, vm(w, 'web', 'team-q', i))).decision).not.toBe('vetoed');
      } finally {
        await w.authority.close();
      }
    });
  });

  it('a fleet applied by fleet apply (its row written from the spec) takes creates of that owner only, also after the spec changed its owner', async () => {
    const w = await startWorld(t.record, packWith(base, { limits: { 'team-q': { vms: 3 } } }));
    try {
      // What fleet apply writes before any step (FleetRecord.setFleetProtection, from the spec).
      await w.record.setFleetProtection(w.stack, 'web', 'team-q', false);
      expect((await createVm(w, vm(w, 'web', 'team-free', 0))).decision).toBe('vetoed');
      const id = randomUUID();
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', create(id, vm(w, 'web', 'team-q', 0)))).body.decision).not.toBe('vetoed');
      const a = edge(id, 'Requested', 'BeingCreated');
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
      expect((await post<ReportResponse>(w, '/v1/reports', reportOf(a))).status).toBe(200);
      // The spec moves the fleet to team-b: the next apply writes it, and creates follow.
      await w.record.setFleetProtection(w.stack, 'web', 'team-b', false);
      expect((await w.record.listFleets(w.stack, ['web']))[0].owner).toBe('team-b');
      expect((await createVm(w, vm(w, 'web', 'team-q', 1))).decision).toBe('vetoed');
      expect((await createVm(w, vm(w, 'web', 'team-b', 1))).decision).not.toBe('vetoed');
    } finally {
      await w.authority.close();
    }
  });
});
