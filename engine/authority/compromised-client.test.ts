// The authority attacked by a compromised DMZ client: it holds the valid
// token of its own data center (miami) and speaks the wire protocol straight
// over HTTP, no DMZ client code, no CLI, no plan (docs/security.md, "The
// authority re-checks"). Every attack must be refused (a veto, a denial or a
// wire code) and leave the record as policy and the record allow. Runs on
// PGlite, and on PostgreSQL with FLEET_TEST_POSTGRES_URL.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPack } from '../../providers/testing.ts';
import type { FleetRecord } from '../record/index.ts';
import type { SqlRecord } from '../record/record.ts';
import { bootAttempts, testBackends, type TestRecord } from '../record/testing.ts';
import type { LoadedPack, ResolvedRule } from '../policy/types.ts';
import type { AdvanceResponse, AuthorizeRequest, AuthorizeResponse, BootAuthorizeResponse, ReportResponse } from '../../protocol/index.ts';
import { startAuthority, type RunningService } from './server.ts';
import { BOOT_DENIED_REASON } from './boot.ts';
import { TOKEN, create, edge, post, reportOf, vm } from './attack-testing.ts';
import { seededRandom } from '../../providers/drivers/sim/sim.ts';

const RICHMOND = 'tok-richmond';
/** miami's capacity in the stack. */
const CAPACITY = { vms: 10_000, cpu: 100_000, memoryGiB: 1_000_000 };

interface World {
  stack: string;
  record: FleetRecord;
  authority: RunningService;
}

type Answer<T> = { status: number; body: T };
type ErrorBody = { error: { code: string; message: string } };

/** The default pack with a quota for team-q and protect mandatory. */
function packWith(base: LoadedPack): LoadedPack {
  const rules = new Map<string, ResolvedRule>(base.rules);
  rules.set('owner-quota', { ...rules.get('owner-quota')!, enforcement: 'mandatory', config: { limits: { 'team-q': { vms: 3 } } } });
  rules.set('protect', { ...rules.get('protect')!, enforcement: 'mandatory', config: { override: 'any' } });
  return { ...base, rules };
}

/** A POST with another token (richmond's, or none). */
async function postAs<T>(w: World, token: string, path: string, body: unknown): Promise<Answer<T>> {
  const res = await fetch(`${w.authority.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as T };
}

/** A POST of a raw body (not JSON.stringify'd). */
async function postRaw(w: World, path: string, raw: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${w.authority.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: raw });
  return { status: res.status, body: await res.json().catch(() => undefined) };
}

const PATHS = {
  PoweredOff: ['Requested', 'BeingCreated', 'PoweredOff'],
  PoweredOn: ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn'],
  Running: ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting', 'Running'],
} as const;

/** Approves and reports `from -> to` as an honest DMZ client would; the approval. */
async function step(w: World, id: string, from: string, to: string, over: Partial<AuthorizeRequest> = {}): Promise<{ a: AuthorizeRequest; res: AuthorizeResponse }> {
  const a = edge(id, from, to, over);
  const res = (await post<AuthorizeResponse>(w, '/v1/authorize', a)).body;
  expect(res.decision).toBe('approved');
  const r = await post<ReportResponse>(w, '/v1/reports', reportOf(a, res.operation === 'createVm' ? { cloudId: `cloud-${id}` } : {}));
  expect(r.status).toBe(200);
  return { a, res };
}

/** A VM of miami created and walked to `to`; its id. */
async function vmAt(w: World, to: keyof typeof PATHS, fleet = 'web', owner = 'team-a', index?: number): Promise<string> {
  const id = randomUUID();
  const made = await post<AuthorizeResponse>(w, '/v1/authorize', create(id, vm(w, fleet, owner, index ?? nextIndex++)));
  expect(made.body.decision).not.toBe('vetoed');
  const path = PATHS[to];
  for (let i = 1; i < path.length; i++) await step(w, id, path[i - 1], path[i]);
  return id;
}
let nextIndex = 0;

async function stateOf(w: World, id: string): Promise<string | undefined> {
  return (await w.record.getVm(id))?.state;
}

describe.each(testBackends())('a compromised DMZ client against the authority ($name)', (backend) => {
  let t: TestRecord;
  let w: World;
  beforeAll(async () => {
    t = await backend.create();
    const stack = `cc-${randomUUID().slice(0, 8)}`;
    const authority = await startAuthority({
      record: t.record,
      pack: packWith(await defaultPack()),
      stackName: stack,
      dataCenters: [
        { name: 'miami', token: TOKEN, capacity: CAPACITY },
        { name: 'richmond', token: RICHMOND },
      ],
      secret: 's',
    });
    w = { stack, record: t.record, authority };
  });
  const others: RunningService[] = [];
  afterAll(async () => {
    for (const o of others) await o.close();
    await w.authority.close();
    await t.cleanup();
  });

  /** Another authority on the same record: what one that restarted knows (the record, nothing remembered). */
  async function restarted(): Promise<World> {
    const authority = await startAuthority({ record: t.record, pack: packWith(await defaultPack()), stackName: w.stack, dataCenters: [{ name: 'miami', token: TOKEN, capacity: CAPACITY }], secret: 's' });
    others.push(authority);
    return { ...w, authority };
  }

  describe('reports that match no approval change nothing', () => {
    it.each([
      {
        name: 'a report of a step never approved',
        attack: async (id: string) => reportOf(edge(id, 'PoweredOff', 'PoweredOn')),
        code: 'report-unapproved',
      },
      {
        name: "a report under another VM's approval",
        attack: async (id: string) => {
          const other = await vmAt(w, 'PoweredOff');
          const a = edge(other, 'PoweredOff', 'PoweredOn');
          expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
          return reportOf(a, { vmId: id });
        },
        code: 'report-mismatch',
      },
      {
        name: 'a report of another edge than approved (PoweredOff -> BeingDeleted under a powerOn approval)',
        attack: async (id: string) => {
          const a = edge(id, 'PoweredOff', 'PoweredOn');
          expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
          return reportOf(a, { to: 'BeingDeleted' });
        },
        code: 'report-mismatch',
      },
      {
        name: 'a report of a transition approval as a resize (same state, a size)',
        attack: async (id: string) => {
          const a = edge(id, 'PoweredOff', 'PoweredOn');
          expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
          return reportOf(a, { to: 'PoweredOff', size: { cpu: 64, memoryGiB: 512, diskGiB: 10 } });
        },
        code: 'report-mismatch',
      },
      {
        name: 'a report setting a cloud id on a powerOn',
        attack: async (id: string) => {
          const a = edge(id, 'PoweredOff', 'PoweredOn');
          expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
          return reportOf(a, { cloudId: 'someone-elses-vm' });
        },
        code: 'report-cloud-id',
      },
      {
        name: 'a resize report naming a bigger size than approved',
        attack: async (id: string) => {
          const a = edge(id, 'PoweredOff', 'PoweredOff', { kind: 'resize', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 } });
          expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
          return reportOf(a, { size: { cpu: 64, memoryGiB: 512, diskGiB: 20 } });
        },
        code: 'report-size-mismatch',
      },
      {
        name: 'a report whose body names another data center',
        attack: async (id: string) => {
          const a = edge(id, 'PoweredOff', 'PoweredOn');
          expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
          return reportOf(a, { dataCenter: 'richmond' });
        },
        code: 'wrong-data-center',
      },
    ])('$name: refused ($code)', async ({ attack, code }) => {
      const id = await vmAt(w, 'PoweredOff');
      const before = await w.record.getVm(id);
      const r = await post<ErrorBody>(w, '/v1/reports', await attack(id));
      expect(r.body.error?.code).toBe(code);
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(await w.record.getVm(id)).toMatchObject({ state: before!.state, version: before!.version, size: before!.size, cloudId: before!.cloudId });
    });

    it("richmond's token reusing the request id of miami's approval, for a VM of its own, leaves that approval standing: miami's report still moves miami's VM", async () => {
      const id = await vmAt(w, 'PoweredOff');
      const a = edge(id, 'PoweredOff', 'PoweredOn');
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
      // A create, then an edge, of richmond's own VM, both under miami's request id: each approved for richmond.
      const theirs = randomUUID();
      const made = await postAs<AuthorizeResponse>(w, RICHMOND, '/v1/authorize', { ...create(theirs, vm(w, 'rich', 'team-a', 0, { dataCenter: 'richmond' })), dataCenter: 'richmond', requestId: a.requestId });
      expect(made.body.decision).not.toBe('vetoed');
      const next = await postAs<AuthorizeResponse>(w, RICHMOND, '/v1/authorize', edge(theirs, 'Requested', 'BeingCreated', { dataCenter: 'richmond', requestId: a.requestId }));
      expect(next.body.decision).toBe('approved');
      const r = await post<ReportResponse>(w, '/v1/reports', reportOf(a));
      expect(r.status).toBe(200);
      expect(r.body.effect).toBe('moved');
      expect(await stateOf(w, id)).toBe('PoweredOn');
      // And richmond's report is of its own approval, not miami's.
      expect((await postAs<ReportResponse>(w, RICHMOND, '/v1/reports', reportOf(edge(theirs, 'Requested', 'BeingCreated', { requestId: a.requestId }), { dataCenter: 'richmond' }))).body.effect).toBe('moved');
      expect(await stateOf(w, theirs)).toBe('BeingCreated');
    });

    it("a report by richmond's token of miami's approval is refused", async () => {
      const id = await vmAt(w, 'PoweredOff');
      const a = edge(id, 'PoweredOff', 'PoweredOn');
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
      const r = await postAs<ErrorBody>(w, RICHMOND, '/v1/reports', reportOf(a, { dataCenter: 'richmond' }));
      expect(r.body.error.code).toBe('wrong-data-center');
      expect(await stateOf(w, id)).toBe('PoweredOff');
    });
  });

  describe('replays', () => {
    it('a request id approved and not yet reported, sent again for another VM or another edge, is refused (request-reused), writes nothing, and its first approval is still reported', async () => {
      const [m1, m2] = [await vmAt(w, 'PoweredOff'), await vmAt(w, 'PoweredOff')];
      const a = edge(m1, 'PoweredOff', 'PoweredOn');
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
      const b = edge(m2, 'PoweredOff', 'PoweredOn');
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', b)).body.decision).toBe('approved');
      const recorded = async () => ({ rows: await Promise.all([m1, m2].map((id) => w.record.getVm(id))), history: (await w.record.history(w.stack)).filter((h) => h.vmId === m1 || h.vmId === m2).length });
      const before = await recorded();
      const reused = { requestId: a.requestId };
      const attacks: [string, unknown][] = [
        ['/v1/authorize', edge(m2, 'PoweredOff', 'PoweredOn', reused)],
        ['/v1/authorize', edge(m1, 'PoweredOff', 'BeingDeleted', reused)],
        ['/v1/authorize', edge(m1, 'PoweredOff', 'PoweredOff', { ...reused, kind: 'resize', size: { cpu: 1, memoryGiB: 1, diskGiB: 1 } })],
        // An advance whose next edge reuses it: refused whole, its report not taken either.
        ['/v1/advance', { report: reportOf(b), next: [edge(m2, 'PoweredOn', 'PoweredOff', reused)] }],
      ];
      for (const [path, body] of attacks) {
        const r = await post<ErrorBody>(w, path, body);
        expect([r.status, r.body.error?.code]).toEqual([409, 'request-reused']);
        expect(r.body.error.message).toContain(a.requestId);
      }
      // A batch answers each call as its route would.
      const batch = await fetch(`${w.authority.url}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ calls: [{ call: 'authorize', body: attacks[0][1] }] }) });
      expect(JSON.parse((await batch.text()).trim())).toMatchObject({ i: 0, status: 409, body: { error: { code: 'request-reused' } } });
      expect(await recorded()).toEqual(before);
      // The same request again (its answer lost) is approved as before, and reported.
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
      expect((await post<ReportResponse>(w, '/v1/reports', reportOf(a))).body.effect).toBe('moved');
      expect((await post<ReportResponse>(w, '/v1/reports', reportOf(b))).body.effect).toBe('moved');
      expect([await stateOf(w, m1), await stateOf(w, m2)]).toEqual(['PoweredOn', 'PoweredOn']);
    });

    // Found in review: the check of a request id and the recording of its approval were not atomic. Requests under
    // one id in flight at once (two calls, two calls of one batch, an advance's next edge) were each checked before
    // any was approved, and all approved: two intent rows under one id, and the first approval's report refused.
    it('concurrent requests under one request id: exactly one is approved, the others are request-reused, and one sent twice at once is approved both times (50 generated rounds)', async () => {
      const r = seededRandom(20261207);
      const pick = <T,>(a: readonly T[]): T => a[Math.floor(r() * a.length)];
      type Via = 'authorize' | 'batch' | 'advance';
      type Outcome = 'approved' | 'request-reused' | string;
      /** Rounds that had each shape: the generator must reach them all. */
      const seen = { resent: 0, batchOfTwo: 0, advance: 0, sameVm: 0 };
      for (let round = 0; round < 50; round++) {
        const [m1, m2] = [await vmAt(w, 'PoweredOff'), await vmAt(w, 'PoweredOff')];
        const shared = { requestId: randomUUID() };
        const fresh = randomUUID();
        // Distinct requests under the one id: other VMs, another edge of the same VM, a new VM's first edge after its create.
        const distinct = [edge(m1, 'PoweredOff', 'PoweredOn', shared), edge(m2, 'PoweredOff', 'PoweredOn', shared), edge(m1, 'PoweredOff', 'BeingDeleted', shared), edge(fresh, 'Requested', 'BeingCreated', shared)];
        const chosen = distinct.filter(() => r() < 0.6);
        while (chosen.length < 2) chosen.push(distinct.find((d) => !chosen.includes(d))!);
        // Sometimes one of them twice: the same request sent again before its first answer came.
        const sent: { req: AuthorizeRequest; via: Via }[] = [...chosen, ...(r() < 0.4 ? [pick(chosen)] : [])]
          .sort(() => r() - 0.5)
          .map((req) => ({ req, via: req.vmId === fresh ? 'advance' : pick(['authorize', 'batch'] as const) }));
        const inBatch = sent.filter((x) => x.via === 'batch');
        if (sent.length > chosen.length) seen.resent++;
        if (inBatch.length > 1) seen.batchOfTwo++;
        if (sent.some((x) => x.via === 'advance')) seen.advance++;
        if (chosen.filter((c) => c.vmId === m1).length > 1) seen.sameVm++;
        const batch = (async (): Promise<Outcome[]> => {
          if (inBatch.length === 0) return [];
          const res = await fetch(`${w.authority.url}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ calls: inBatch.map((x) => ({ call: 'authorize', body: x.req })) }) });
          const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as { i: number; status: number; body: AuthorizeResponse & Partial<ErrorBody> });
          return inBatch.map((_, i) => {
            const line = lines.find((l) => l.i === i)!;
            return line.status === 200 ? line.body.decision : line.body.error!.code;
          });
        })();
        const single = sent.map(async ({ req, via }): Promise<Outcome | undefined> => {
          if (via === 'authorize') {
            const a = await post<AuthorizeResponse & Partial<ErrorBody>>(w, '/v1/authorize', req);
            return a.status === 200 ? a.body.decision : a.body.error!.code;
          }
          if (via === 'advance') {
            const a = await post<AdvanceResponse & Partial<ErrorBody>>(w, '/v1/advance', { create: { ...create(fresh, vm(w, 'web', 'team-a', nextIndex++)), requestId: randomUUID() }, next: [req] });
            return a.status === 200 ? (a.body.next[0]?.authorize.decision ?? `create ${a.body.create?.decision}`) : a.body.error!.code;
          }
          return undefined;
        });
        const [batched, ...singles] = await Promise.all([batch, ...single]);
        const outcomes = sent.map((x, k) => (x.via === 'batch' ? batched[inBatch.indexOf(x)] : singles[k]));
        const what = `round ${round}: ${sent.map((x, k) => `${x.req.vmId === m1 ? 'm1' : x.req.vmId === m2 ? 'm2' : 'new'} ${x.req.to} via ${x.via}: ${outcomes[k]}`).join('; ')}`;
        // One distinct request won: each of its sendings approved; every other one refused.
        const winners = new Set(sent.filter((_, k) => outcomes[k] === 'approved').map((x) => x.req));
        expect(winners.size, what).toBe(1);
        const [winner] = winners;
        for (const [k, x] of sent.entries()) expect(outcomes[k], what).toBe(x.req === winner ? 'approved' : 'request-reused');
        // The record holds the winner's approval only; its report is taken.
        for (const id of [m1, m2]) {
          const approval = await w.record.approvalOf(id, shared.requestId);
          expect(approval && { vmId: id, to: approval.to }, what).toEqual(winner.vmId === id ? { vmId: id, to: winner.to } : undefined);
        }
        const reported = await post<ReportResponse>(w, '/v1/reports', reportOf(winner));
        expect(reported.body.effect, `${what}: ${JSON.stringify(reported.body)}`).toBe('moved');
      }
      for (const [shape, rounds] of Object.entries(seen)) expect(rounds, shape).toBeGreaterThan(2);
    }, 120_000);

    it('a create sent again under its request id (its answer lost) is approved again, not refused as request-reused', async () => {
      const id = randomUUID();
      const c = create(id, vm(w, 'resend', 'team-a', 0));
      const first = await post<AuthorizeResponse>(w, '/v1/authorize', c);
      expect(first.status).toBe(200);
      const again = await post<AuthorizeResponse & { error?: { code: string; message: string } }>(w, '/v1/authorize', c);
      expect([again.status, again.body.error?.message, again.body.decision]).toEqual([200, undefined, first.body.decision]);
    });

    it('one approval reported twice moves the VM once; reported again after the VM came back to `from`, it is refused (report-repeated)', async () => {
      const id = await vmAt(w, 'PoweredOff');
      const { a } = await step(w, id, 'PoweredOff', 'PoweredOn');
      const again = await post<ReportResponse>(w, '/v1/reports', reportOf(a));
      expect(again.body.effect).toBe('already');
      await step(w, id, 'PoweredOn', 'PoweredOff');
      const version = (await w.record.getVm(id))!.version;
      const replay = await post<ErrorBody>(w, '/v1/reports', reportOf(a));
      expect(replay.body.error.code).toBe('report-repeated');
      expect(await w.record.getVm(id)).toMatchObject({ state: 'PoweredOff', version });
    });

    it.each([
      { name: 'ok', outcome: 'ok' as const },
      { name: 'failed', outcome: 'failed' as const },
    ])('an approval never reported, after the VM moved on along a newer approval of the same edge and came back: its $name report is refused (report-superseded), remembered or not', async ({ outcome }) => {
      const id = await vmAt(w, 'PoweredOn');
      // Boot approved (R1) and never reported; the next approval of the same edge (R2) carries the VM on.
      const r1 = edge(id, 'PoweredOn', 'Starting');
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', r1)).body.decision).toBe('approved');
      await step(w, id, 'PoweredOn', 'Starting');
      await step(w, id, 'Starting', 'BootFailed');
      await step(w, id, 'BootFailed', 'PoweredOff');
      await step(w, id, 'PoweredOff', 'PoweredOn');
      const version = (await w.record.getVm(id))!.version;
      // Remembered by this authority, and found in the record by one that never saw it (restarted, or the approval expired from memory).
      for (const target of [w, await restarted()]) {
        const replay = await post<ErrorBody>(target, '/v1/reports', reportOf(r1, { outcome }));
        expect(replay.body.error?.code).toBe('report-superseded');
        expect(replay.status).toBe(409);
        expect(await w.record.getVm(id)).toMatchObject({ state: 'PoweredOn', version });
      }
    });

    it.each([
      { name: 'a create chain (none edge moved at once, then createVm)', at: 'create' as const },
      { name: 'a chain approved ahead (powerOff, then powerOn ahead)', at: 'ahead' as const },
    ])('honest reports of $name are still taken by an authority that never saw the approval', async ({ at }) => {
      const other = await restarted();
      if (at === 'create') {
        const id = randomUUID();
        const e1 = edge(id, 'Requested', 'BeingCreated');
        const e2 = edge(id, 'BeingCreated', 'PoweredOff');
        const adv = await post<AdvanceResponse>(w, '/v1/advance', { create: create(id, vm(w, 'web', 'team-a', nextIndex++)), next: [e1, e2] });
        expect(adv.body.next.map((n) => n.authorize.decision)).toEqual(['approved', 'approved']);
        expect((await post<ReportResponse>(other, '/v1/reports', reportOf(e2, { cloudId: `cloud-${id}` }))).body.effect).toBe('moved');
        expect(await stateOf(w, id)).toBe('PoweredOff');
        return;
      }
      const id = await vmAt(w, 'PoweredOff');
      const first = edge(id, 'PoweredOff', 'PoweredOn');
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', first)).body.decision).toBe('approved');
      const e1 = edge(id, 'PoweredOn', 'PoweredOff');
      const e2 = edge(id, 'PoweredOff', 'PoweredOn');
      const adv = await post<AdvanceResponse>(w, '/v1/advance', { report: reportOf(first), next: [e1, e2], ahead: true });
      expect(adv.body.next.map((n) => n.authorize.decision)).toEqual(['approved', 'approved']);
      expect((await post<ReportResponse>(w, '/v1/reports', reportOf(e1))).body.effect).toBe('moved');
      expect((await post<ReportResponse>(other, '/v1/reports', reportOf(e2))).body.effect).toBe('moved');
      expect(await stateOf(w, id)).toBe('PoweredOn');
    });

    it("an approval ahead dropped by another approval (its intent never written) is not reported once the VM reaches its `from`: a deletion approved ahead before the fleet was protected (report-superseded)", async () => {
      const id = await vmAt(w, 'PoweredOff', 'late-protect', 'team-a');
      const first = edge(id, 'PoweredOff', 'PoweredOn');
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', first)).body.decision).toBe('approved');
      const off = edge(id, 'PoweredOn', 'PoweredOff');
      const del = edge(id, 'PoweredOff', 'BeingDeleted');
      const adv = await post<AdvanceResponse>(w, '/v1/advance', { report: reportOf(first), next: [off, del], ahead: true });
      expect(adv.body.next.map((n) => [n.authorize.decision, n.ahead])).toEqual([
        ['approved', undefined],
        ['approved', true],
      ]);
      await w.record.setFleetProtection(w.stack, 'late-protect', 'team-a', true);
      // Another approval of powerOff drops the deletion approved ahead, and carries the VM to its `from`.
      await step(w, id, 'PoweredOn', 'PoweredOff');
      const version = (await w.record.getVm(id))!.version;
      const r = await post<ErrorBody>(w, '/v1/reports', reportOf(del));
      expect(r.body.error?.code).toBe('report-superseded');
      expect(await w.record.getVm(id)).toMatchObject({ state: 'PoweredOff', version, retiredAt: null });
    });

    it('reports out of order (edges approved ahead, reported before the edge before them) are refused and move nothing', async () => {
      const id = await vmAt(w, 'PoweredOff');
      const first = edge(id, 'PoweredOff', 'PoweredOn');
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', first)).body.decision).toBe('approved');
      const chain = [edge(id, 'PoweredOn', 'PoweredOff'), edge(id, 'PoweredOff', 'BeingDeleted'), edge(id, 'BeingDeleted', 'Deleted')];
      const adv = await post<AdvanceResponse>(w, '/v1/advance', { report: reportOf(first), next: chain, ahead: true });
      expect(adv.body.report?.effect).toBe('moved');
      expect(adv.body.next.map((n) => n.authorize.decision)).toEqual(['approved', 'approved', 'approved']);
      const version = (await w.record.getVm(id))!.version;
      for (const later of [chain[2], chain[1]]) {
        const out = await post<ErrorBody>(w, '/v1/reports', reportOf(later));
        expect(out.body.error.code).toBe('state-moved');
      }
      expect(await w.record.getVm(id)).toMatchObject({ state: 'PoweredOn', version, retiredAt: null });
    });
  });

  describe('edges policy or the diagram forbid', () => {
    it.each([
      { name: 'a skipping edge PoweredOff -> Running', body: (id: string) => edge(id, 'PoweredOff', 'Running'), reason: 'is not an edge' },
      { name: 'an edge into a failure state that is no edge (PoweredOff -> CreateFailed)', body: (id: string) => edge(id, 'PoweredOff', 'CreateFailed'), reason: 'is not an edge' },
      { name: 'an edge from a state the VM is not in', body: (id: string) => edge(id, 'Running', 'ShuttingDown'), reason: 'the record has it PoweredOff' },
      { name: 'a resize that changes the state', body: (id: string) => edge(id, 'PoweredOff', 'PoweredOn', { kind: 'resize', size: { cpu: 1, memoryGiB: 1, diskGiB: 1 } }), reason: 'a resize keeps the state' },
    ])('$name is vetoed', async ({ body, reason }) => {
      const id = await vmAt(w, 'PoweredOff');
      const r = await post<AuthorizeResponse>(w, '/v1/authorize', body(id));
      expect(r.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining(reason) });
      expect(r.body.credentials).toBeUndefined();
      expect(await stateOf(w, id)).toBe('PoweredOff');
    });

    it("an edge of a VM of another data center: richmond's token is vetoed (wrong-data-center)", async () => {
      const id = await vmAt(w, 'PoweredOff');
      const r = await postAs<AuthorizeResponse>(w, RICHMOND, '/v1/authorize', edge(id, 'PoweredOff', 'PoweredOn', { dataCenter: 'richmond' }));
      expect(r.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('lives in data center miami') });
    });

    it('a create of another stack, or naming another owner for a known fleet, is vetoed', async () => {
      await vmAt(w, 'PoweredOff', 'owned', 'team-a', 0);
      const other = await post<AuthorizeResponse>(w, '/v1/authorize', create(randomUUID(), { ...vm(w, 'web', 'team-a', 900), stack: 'other-stack' }));
      expect(other.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('serves stack') });
      const owner = await post<AuthorizeResponse>(w, '/v1/authorize', create(randomUUID(), vm(w, 'owned', 'team-free', 1)));
      expect(owner.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('team-a') });
    });

    it("an advance whose next edges skip a state is refused; approved ahead past a protected fleet's deletion, the deletion is vetoed and its report refused", async () => {
      const id = await vmAt(w, 'PoweredOff', 'prot', 'team-a');
      await w.record.setFleetProtection(w.stack, 'prot', 'team-a', true);
      const first = edge(id, 'PoweredOff', 'PoweredOn');
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', first)).body.decision).toBe('approved');
      const skip = await post<ErrorBody>(w, '/v1/advance', { report: reportOf(first), next: [edge(id, 'PoweredOn', 'PoweredOff'), edge(id, 'PoweredOn', 'Running')], ahead: true });
      expect(skip.body.error.code).toBe('bad-request');
      expect(await stateOf(w, id)).toBe('PoweredOff');
      const off = edge(id, 'PoweredOn', 'PoweredOff');
      const del = edge(id, 'PoweredOff', 'BeingDeleted');
      const gone = edge(id, 'BeingDeleted', 'Deleted');
      const adv = await post<AdvanceResponse>(w, '/v1/advance', { report: reportOf(first), next: [off, del, gone], ahead: true });
      expect(adv.body.report?.effect).toBe('moved');
      expect(adv.body.next[0].authorize.decision).toBe('approved');
      expect(adv.body.next.slice(1).every((n) => n.authorize.decision === 'vetoed')).toBe(true);
      expect((await post<ReportResponse>(w, '/v1/reports', reportOf(off))).body.effect).toBe('moved');
      for (const r of [del, gone]) expect((await post<ErrorBody>(w, '/v1/reports', reportOf(r))).body.error.code).toMatch(/report-unapproved|state-moved/);
      expect(await w.record.getVm(id)).toMatchObject({ state: 'PoweredOff', retiredAt: null });
    });

    // Found in review of fleet-owner: the authority judged no manager on an edge, so a saved plan made before the
    // record knew managers (or a crafted one), applied by fleet apply, still changed a Pulumi program's VMs.
    it("fleet apply's edge (with its fencing token) on a fleet a program manages is vetoed (manager-mismatch); the program's own is not", async () => {
      const fleet = `pg-${randomUUID().slice(0, 6)}`;
      const id = randomUUID();
      const made = await post<AuthorizeResponse>(w, '/v1/authorize', create(id, { ...vm(w, fleet, 'team-a', 0), managedBy: 'pulumi:fleets/dev' }));
      expect(made.body.decision).not.toBe('vetoed');
      const path = PATHS.PoweredOff;
      for (let i = 1; i < path.length; i++) await step(w, id, path[i - 1], path[i]);
      const lock = await w.record.acquireLocks(w.stack, [fleet], { who: 'apply', host: 'test', planId: 'p-saved', pid: process.pid });
      try {
        const r = await post<AuthorizeResponse>(w, '/v1/authorize', edge(id, 'PoweredOff', 'PoweredOn', { fencingToken: lock.fencingToken }));
        expect(r.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining(`fleet ${fleet} is managed by the program pulumi:fleets/dev`) });
      } finally {
        await lock.release();
      }
      expect(await stateOf(w, id)).toBe('PoweredOff');
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', edge(id, 'PoweredOff', 'PoweredOn'))).body.decision).toBe('approved');
    });

    it('with a fencing token below the fleet\'s latest lock, an edge is vetoed (fenced)', async () => {
      const id = await vmAt(w, 'PoweredOff', 'fenced', 'team-a');
      const old = await w.record.acquireLocks(w.stack, ['fenced'], { who: 'apply', host: 'test', planId: 'p-old', pid: process.pid });
      await old.release();
      const now = await w.record.acquireLocks(w.stack, ['fenced'], { who: 'apply', host: 'test', planId: 'p-new', pid: process.pid });
      try {
        const r = await post<AuthorizeResponse>(w, '/v1/authorize', edge(id, 'PoweredOff', 'PoweredOn', { fencingToken: old.fencingToken }));
        expect(r.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('a newer apply locked fleet fenced') });
        const ahead = await post<AuthorizeResponse>(w, '/v1/authorize', edge(id, 'PoweredOff', 'PoweredOn', { fencingToken: now.fencingToken + 1 }));
        expect(ahead.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('which no lock of fleet fenced was given') });
        const none = await post<AuthorizeResponse>(w, '/v1/authorize', edge(id, 'PoweredOff', 'PoweredOn'));
        expect(none.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('is locked by an apply') });
      } finally {
        await now.release();
      }
    });

    // Only the first next edge's token was checked: the edges after it were
    // approved (foreseen on the row the first write made) under any token.
    describe('an advance whose later edge carries a stale or no fencing token is refused as a whole (fenced / locked)', () => {
      /** Two locks of `fleet` taken in turn: the first released (its token stale), the second held. */
      async function locks(fleet: string) {
        const old = await w.record.acquireLocks(w.stack, [fleet], { who: 'apply', host: 'test', planId: 'p-old', pid: process.pid });
        await old.release();
        const now = await w.record.acquireLocks(w.stack, [fleet], { who: 'apply', host: 'test', planId: 'p-new', pid: process.pid });
        return { old: old.fencingToken, now };
      }
      const cases = [
        { name: 'a stale token on the second edge', token: (old: number) => old, reason: 'a newer apply locked fleet' },
        { name: 'no token on the second edge', token: () => undefined, reason: 'is locked by an apply' },
      ];

      it.each(cases)('after a report: $name', async ({ token, reason }) => {
        const fleet = `fa-${randomUUID().slice(0, 6)}`;
        const id = await vmAt(w, 'PoweredOff', fleet, 'team-a');
        const { old, now } = await locks(fleet);
        try {
          const first = edge(id, 'PoweredOff', 'PoweredOn', { fencingToken: now.fencingToken });
          expect((await post<AuthorizeResponse>(w, '/v1/authorize', first)).body.decision).toBe('approved');
          const next = [edge(id, 'PoweredOn', 'Starting', { fencingToken: now.fencingToken }), edge(id, 'Starting', 'Running', { fencingToken: token(old) })];
          const adv = await post<AdvanceResponse>(w, '/v1/advance', { report: reportOf(first), next });
          expect(adv.status).toBe(200);
          // What was done is recorded; nothing after it is approved.
          expect(adv.body.report?.effect).toBe('moved');
          expect(adv.body.next).toHaveLength(1);
          expect(adv.body.next[0].authorize).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining(reason) });
          expect(await stateOf(w, id)).toBe('PoweredOn');
          expect((await post<ErrorBody>(w, '/v1/reports', reportOf(next[0]))).body.error.code).toMatch(/report-unapproved/);
          // The veto's history row names the edge whose token was refused (the second), not the chain's first.
          const vetoed = (await w.record.history(w.stack)).filter((h) => h.vmId === id && h.outcome === 'vetoed');
          expect(vetoed.map((h) => [h.from, h.to, h.requestId, h.planId])).toEqual([['Starting', 'Running', next[1].requestId, next[1].planId]]);
        } finally {
          await now.release();
        }
      });

      it.each(cases)('with a create: $name', async ({ token, reason }) => {
        const fleet = `fc-${randomUUID().slice(0, 6)}`;
        await vmAt(w, 'PoweredOff', fleet, 'team-a', 0);
        const { old, now } = await locks(fleet);
        try {
          const id = randomUUID();
          const next = [edge(id, 'Requested', 'BeingCreated', { fencingToken: now.fencingToken }), edge(id, 'BeingCreated', 'PoweredOff', { fencingToken: token(old) })];
          const adv = await post<AdvanceResponse>(w, '/v1/advance', { create: { ...create(id, vm(w, fleet, 'team-a', 1)), fencingToken: now.fencingToken }, next });
          expect(adv.status).toBe(200);
          expect(adv.body.create).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining(reason) });
          expect(adv.body.next).toEqual([]);
          expect(await w.record.getVm(id)).toBeUndefined();
        } finally {
          await now.release();
        }
      });

      // The chain's edges under the create's own token were fenced twice: once for the chain, once for the create.
      it('a create whose chain carries its own token reads the fleet\'s fence once, and a stale one still vetoes it', async () => {
        let reads = 0;
        const counted = new Proxy(t.record, {
          get(target, key, receiver) {
            const v = Reflect.get(target, key, receiver) as unknown;
            if (key === 'fencesOf' && typeof v === 'function') {
              return (...args: unknown[]) => {
                reads++;
                return (v as (...a: unknown[]) => unknown).apply(target, args);
              };
            }
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        });
        const authority = await startAuthority({ record: counted, pack: packWith(await defaultPack()), stackName: w.stack, dataCenters: [{ name: 'miami', token: TOKEN, capacity: CAPACITY }], secret: 's' });
        const cw: World = { stack: w.stack, record: t.record, authority };
        try {
          for (const stale of [false, true]) {
            const fleet = `f1-${randomUUID().slice(0, 6)}`;
            await vmAt(w, 'PoweredOff', fleet, 'team-a', 0);
            const { old, now } = await locks(fleet);
            try {
              const token = stale ? old : now.fencingToken;
              const id = randomUUID();
              const next = [edge(id, 'Requested', 'BeingCreated', { fencingToken: token }), edge(id, 'BeingCreated', 'PoweredOff', { fencingToken: token })];
              reads = 0;
              const adv = await post<AdvanceResponse>(cw, '/v1/advance', { create: { ...create(id, vm(cw, fleet, 'team-a', 1)), fencingToken: token }, next });
              expect(adv.status).toBe(200);
              expect(reads, `stale ${stale}`).toBe(1);
              if (stale) {
                expect(adv.body.create).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('a newer apply locked fleet') });
                expect(adv.body.next).toEqual([]);
                expect(await w.record.getVm(id)).toBeUndefined();
              } else {
                expect(adv.body.create?.decision).not.toBe('vetoed');
                expect(adv.body.next.map((n) => n.authorize.decision)).not.toContain('vetoed');
              }
            } finally {
              await now.release();
            }
          }
        } finally {
          await authority.close();
        }
      });
    });
  });

  describe('another stack on the same record', () => {
    /** A VM of another stack, in a data center also named miami, created and walked by that stack's own authority. */
    async function foreignVm(to: keyof typeof PATHS): Promise<{ other: World; id: string }> {
      const stack = `cc-other-${randomUUID().slice(0, 8)}`;
      const authority = await startAuthority({ record: t.record, pack: packWith(await defaultPack()), stackName: stack, dataCenters: [{ name: 'miami', token: 'tok-other-miami' }], secret: 'other' });
      others.push(authority);
      const other: World = { stack, record: t.record, authority };
      const id = randomUUID();
      const made = await postAs<AuthorizeResponse>(other, 'tok-other-miami', '/v1/authorize', create(id, vm(other, 'web', 'team-a', 0)));
      expect(made.body.decision).not.toBe('vetoed');
      const path = PATHS[to];
      for (let i = 1; i < path.length; i++) {
        const a = edge(id, path[i - 1], path[i]);
        const res = (await postAs<AuthorizeResponse>(other, 'tok-other-miami', '/v1/authorize', a)).body;
        expect(res.decision).toBe('approved');
        expect((await postAs<ReportResponse>(other, 'tok-other-miami', '/v1/reports', reportOf(a, res.operation === 'createVm' ? { cloudId: `cloud-${id}` } : {}))).status).toBe(200);
      }
      return { other, id };
    }

    it("an edge of another stack's VM (its data center also named miami) is vetoed, and nothing moves", async () => {
      const { id } = await foreignVm('PoweredOff');
      for (const e of [edge(id, 'PoweredOff', 'BeingDeleted'), edge(id, 'PoweredOff', 'PoweredOn')]) {
        const r = await post<AuthorizeResponse>(w, '/v1/authorize', e);
        expect(r.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('is not in the record') });
        expect(r.body.credentials).toBeUndefined();
        const adv = await post<AdvanceResponse & ErrorBody>(w, '/v1/advance', { report: reportOf(e), next: [edge(id, e.to!, 'Deleted')] });
        expect(adv.status).toBeGreaterThanOrEqual(400);
      }
      expect(await w.record.getVm(id)).toMatchObject({ state: 'PoweredOff', retiredAt: null });
    });

    it("another stack's booting VM gets no disk key from this stack's authority", async () => {
      const { other, id } = await foreignVm('PoweredOn');
      const a = edge(id, 'PoweredOn', 'Starting');
      const res = (await postAs<AuthorizeResponse>(other, 'tok-other-miami', '/v1/authorize', a)).body;
      expect(res.bootToken).toBeTruthy();
      const r = await post<BootAuthorizeResponse>(w, '/v1/boot/authorize', { dataCenter: 'miami', vmId: id, cloudId: `cloud-${id}`, image: 'img-ubuntu-2204-miami-v7', bootToken: res.bootToken });
      expect(r.body).toMatchObject({ approved: false });
      expect(r.body.diskKey).toBeUndefined();
    });
  });

  describe('a deployed (sealed-plan) authority', () => {
    it.each([
      { name: 'a create without a planId', body: (id: string) => ({ ...create(id, vm(w, 'web', 'team-a', 0)), planId: null }) },
      { name: 'a create naming a plan never registered', body: (id: string) => create(id, vm(w, 'web', 'team-a', 0)) },
      { name: 'an edge without a planId', body: (id: string) => edge(id, 'PoweredOff', 'PoweredOn', { planId: null }) },
    ])('$name is vetoed (plan-unregistered)', async ({ body }) => {
      const authority = await startAuthority({ record: t.record, pack: packWith(await defaultPack()), stackName: w.stack, dataCenters: [{ name: 'miami', token: TOKEN }], planTokens: ['plan-token'], secret: 's' });
      others.push(authority);
      const sealed: World = { ...w, authority };
      const id = randomUUID();
      const r = await post<AuthorizeResponse>(sealed, '/v1/authorize', body(id));
      expect(r.body).toMatchObject({ decision: 'vetoed', reason: expect.stringMatching(/names no plan|is not registered/) });
      expect(await w.record.getVm(id)).toBeUndefined();
    });
  });

  describe('limits under real concurrency', () => {
    it('30 creates of one owner at once over HTTP: exactly its 3 quota slots are approved', async () => {
      const ids = Array.from({ length: 30 }, () => randomUUID());
      const answers = await Promise.all(ids.map((id, i) => post<AuthorizeResponse>(w, '/v1/authorize', create(id, vm(w, `q${i % 3}`, 'team-q', i)))));
      expect(answers.filter((a) => a.body.decision !== 'vetoed')).toHaveLength(3);
      expect(answers.filter((a) => a.body.decision === 'vetoed').every((a) => a.body.reason.includes('quota of owner team-q'))).toBe(true);
      expect((await w.record.listVms(w.stack)).filter((v) => /^q[0-2]$/.test(v.fleet))).toHaveLength(3);
    });
  });

  describe('boot: the disk key', () => {
    async function booting(): Promise<{ id: string; body: { dataCenter: string; vmId: string; cloudId: string; image: string; bootToken: string } }> {
      const id = await vmAt(w, 'PoweredOn');
      const a = edge(id, 'PoweredOn', 'Starting');
      const res = (await post<AuthorizeResponse>(w, '/v1/authorize', a)).body;
      expect(res.bootToken).toBeTruthy();
      return { id, body: { dataCenter: 'miami', vmId: id, cloudId: `cloud-${id}`, image: 'img-ubuntu-2204-miami-v7', bootToken: res.bootToken! } };
    }

    it.each([
      { name: "richmond's token for miami's booting VM", token: RICHMOND, change: { dataCenter: 'richmond' }, reason: 'lives in data center miami' },
      { name: 'another VM id with this token', token: TOKEN, change: { vmId: randomUUID() }, reason: 'no VM' },
      { name: 'a unicode VM id', token: TOKEN, change: { vmId: 'ｖｍ-١٢٣' }, reason: 'no VM' },
      { name: 'a made-up token', token: TOKEN, change: { bootToken: 'x'.repeat(500) }, reason: 'boot token is not one the authority issued' },
    ])('$name: denied, no disk key', async ({ token, change, reason }) => {
      const { body } = await booting();
      const r = await postAs<BootAuthorizeResponse>(w, token, '/v1/boot/authorize', { ...body, ...change });
      // The VM learns nothing of the record; why is the operator's (the last boot attempt row), and the DMZ client's
      // (`detail`) but for another data center's VM: a client learns nothing of those.
      expect(r.body).toEqual({ approved: false, reason: BOOT_DENIED_REASON, ...(token === RICHMOND ? {} : { detail: expect.stringContaining(reason) }) });
      expect((await bootAttempts(w.record as SqlRecord)).at(-1)?.reason).toContain(reason);
    });

    it('a boot token is refused once the VM is Running, and for a VM that is not booting', async () => {
      const { id, body } = await booting();
      expect((await post<BootAuthorizeResponse>(w, '/v1/boot/authorize', body)).body.approved).toBe(true);
      // The same approval's report, then ready: the token is stale.
      const boot = (await w.record.history(w.stack)).filter((h) => h.vmId === id && h.to === 'Starting').at(-1)!;
      expect((await post<ReportResponse>(w, '/v1/reports', reportOf(edge(id, 'PoweredOn', 'Starting', { requestId: boot.requestId! })))).body.effect).toBe('moved');
      await step(w, id, 'Starting', 'Running');
      const stale = await post<BootAuthorizeResponse>(w, '/v1/boot/authorize', body);
      // The caller learns nothing of the record; the VM's history says why.
      const why = async (vmId: string) => (await w.record.history(w.stack)).filter((h) => h.vmId === vmId && h.outcome === 'denied').at(-1)?.detail;
      expect(stale.body).toEqual({ approved: false, reason: BOOT_DENIED_REASON, detail: expect.stringContaining('not booting') });
      expect(await why(id)).toContain('not booting');
      const off = await vmAt(w, 'PoweredOff');
      const r = await post<BootAuthorizeResponse>(w, '/v1/boot/authorize', { ...body, vmId: off, cloudId: `cloud-${off}` });
      expect(r.body).toEqual({ approved: false, reason: BOOT_DENIED_REASON, detail: expect.stringContaining('boot token is not one the authority issued') });
      // Another VM's token: judged first, so the record's state of VM `off` is not what is said.
      expect(await why(off)).toContain('boot token is not one the authority issued');
    });
  });

  describe('malformed and out-of-range bodies', () => {
    it.each([
      { name: 'an index past the record column (2^31)', body: () => create(randomUUID(), vm(w, 'big', 'team-a', 2 ** 31)) },
      { name: 'an index past 2^53', body: () => create(randomUUID(), vm(w, 'big', 'team-a', 2 ** 60)) },
      { name: 'a fencing token of 0', body: () => edge(randomUUID(), 'PoweredOff', 'PoweredOn', { fencingToken: 0 }) },
      // The record's bigint holds it, but a JSON number past 2^53 is not the integer it reads as.
      { name: 'a fencing token past 2^53', body: () => edge(randomUUID(), 'PoweredOff', 'PoweredOn', { fencingToken: 2 ** 53 }) },
      { name: 'a fencing token of 1e300', body: () => edge(randomUUID(), 'PoweredOff', 'PoweredOn', { fencingToken: 1e300 }) },
      { name: 'a size as a string', body: () => ({ ...create(randomUUID(), vm(w, 'big', 'team-a', 1)), vm: { ...vm(w, 'big', 'team-a', 1), size: { cpu: '2', memoryGiB: 4, diskGiB: 20 } } }) },
      { name: 'an unknown field', body: () => ({ ...edge(randomUUID(), 'PoweredOff', 'PoweredOn'), admin: true }) },
      { name: 'a kind outside the enum', body: () => ({ ...edge(randomUUID(), 'PoweredOff', 'PoweredOn'), kind: 'delete' }) },
    ])('$name: 400, nothing written', async ({ body }) => {
      const before = (await w.record.listVms(w.stack, { includeRetired: true })).length;
      const r = await post<ErrorBody>(w, '/v1/authorize', body());
      expect(r.status).toBe(400);
      expect((await w.record.listVms(w.stack, { includeRetired: true })).length).toBe(before);
    });

    it.each([
      { name: 'a cpu count of 1e300', size: { cpu: 1e300, memoryGiB: 1, diskGiB: 1 }, reason: 'vCPUs' },
      { name: 'memory of 1e300 GiB', size: { cpu: 1, memoryGiB: 1e300, diskGiB: 1e300 }, reason: 'GiB of memory' },
    ])('a create with $name is vetoed by the capacity, nothing written', async ({ size, reason }) => {
      const id = randomUUID();
      const r = await post<AuthorizeResponse>(w, '/v1/authorize', create(id, vm(w, 'huge', 'team-a', 0, { size })));
      expect(r.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining(reason) });
      expect(await w.record.getVm(id)).toBeUndefined();
    });

    it.each([
      { name: 'a body over 1 MiB', raw: () => JSON.stringify({ ...edge(randomUUID(), 'a', 'b'), planId: 'x'.repeat(2 * 1024 * 1024) }), status: 413 },
      { name: 'nesting 100 000 deep', raw: () => '{"calls":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}', status: 400 },
      { name: 'a batch of 201 calls', raw: () => JSON.stringify({ calls: Array.from({ length: 201 }, () => ({ call: 'authorize', body: edge(randomUUID(), 'a', 'b') })) }), status: 400 },
    ])('$name: refused ($status), the authority serves the next request', async ({ raw, status }) => {
      const path = raw().startsWith('{"calls"') ? '/v1/batch' : '/v1/authorize';
      const r = await postRaw(w, path, raw());
      expect(r.status).toBe(status);
      const id = await vmAt(w, 'PoweredOff');
      expect(await stateOf(w, id)).toBe('PoweredOff');
    });

    it('an advance of 21 next edges is refused (400)', async () => {
      const id = randomUUID();
      const next = Array.from({ length: 21 }, (_, j) => edge(id, j % 2 ? 'PoweredOn' : 'PoweredOff', j % 2 ? 'PoweredOff' : 'PoweredOn'));
      const r = await post<ErrorBody>(w, '/v1/advance', { create: create(id, vm(w, 'adv', 'team-a', 0)), next });
      expect(r.status).toBe(400);
      expect(await w.record.getVm(id)).toBeUndefined();
    });

    it('unicode look-alike VM ids and request ids never reach another VM', async () => {
      const id = await vmAt(w, 'PoweredOff');
      const lookalike = id.replace(/[0-9]/, (d) => String.fromCodePoint(0xff10 + Number(d)));
      const r = await post<AuthorizeResponse>(w, '/v1/authorize', edge(lookalike, 'PoweredOff', 'PoweredOn', { requestId: 'ｒｅｑ\u202e' }));
      expect(r.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('is not in the record') });
      expect(await stateOf(w, id)).toBe('PoweredOff');
    });
  });
});

