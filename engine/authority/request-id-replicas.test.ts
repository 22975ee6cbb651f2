// One request id, two authority replicas (docs/operations.md, "Replicas";
// docs/protocol.md, "Reports match approvals"): requests under one id sent at
// once to two replicas over one record are decided as one authority decides
// them, one approved and the others refused request-reused, because the
// record (request_claims, record/claims.ts) binds the id to the first request
// that claims it. Over real HTTP, two services each with its own pool on
// PostgreSQL (FLEET_TEST_POSTGRES_URL), one record object on PGlite.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPack } from '../../providers/testing.ts';
import { openRecord, type FleetRecord, type RequestClaim } from '../record/index.ts';
import { testBackends, type TestRecord } from '../record/testing.ts';
import type { AdvanceResponse, AuthorizeRequest, AuthorizeResponse, ReportResponse } from '../../protocol/index.ts';
import { startAuthority, type RunningService } from './server.ts';
import { TOKEN, create, edge, reportOf, vm } from './attack-testing.ts';
import { seededRandom } from '../../providers/drivers/sim/sim.ts';

type ErrorBody = { error: { code: string; message: string } };
type Outcome = 'approved' | 'request-reused' | string;

async function postTo<T>(url: string, path: string, body: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as T };
}

describe.each(testBackends())('one request id across two authority replicas ($name)', (backend) => {
  let t: TestRecord;
  let second: FleetRecord;
  const stack = `rr-${randomUUID().slice(0, 8)}`;
  const replicas: RunningService[] = [];
  let nextIndex = 0;

  beforeAll(async () => {
    t = await backend.create();
    second = backend.name === 'postgres' ? await openRecord(t.url) : t.record;
    const pack = await defaultPack();
    for (const record of [t.record, second]) {
      replicas.push(await startAuthority({ record, pack, stackName: stack, dataCenters: [{ name: 'miami', token: TOKEN, capacity: { vms: 10_000, cpu: 100_000, memoryGiB: 1_000_000 } }], secret: 's', replicas: 2 }));
    }
  });
  afterAll(async () => {
    for (const r of replicas) await r.close();
    if (second !== t.record) await second.close();
    await t.cleanup();
  });

  const w = () => ({ stack, authority: replicas[0] });

  /** A VM of miami created and walked to PoweredOff, each call to a replica `r` picks. */
  async function poweredOff(r: () => number): Promise<string> {
    const id = randomUUID();
    const made = await postTo<AuthorizeResponse>(replicas[r()].url, '/v1/authorize', create(id, vm(w(), 'web', 'team-a', nextIndex++)));
    expect(made.body.decision).not.toBe('vetoed');
    const path = ['Requested', 'BeingCreated', 'PoweredOff'];
    for (let i = 1; i < path.length; i++) {
      const a = edge(id, path[i - 1], path[i]);
      const res = await postTo<AuthorizeResponse>(replicas[r()].url, '/v1/authorize', a);
      expect(res.body.decision).toBe('approved');
      const rep = await postTo<ReportResponse>(replicas[r()].url, '/v1/reports', reportOf(a, res.body.operation === 'createVm' ? { cloudId: `cloud-${id}` } : {}));
      expect(rep.body.effect).toBe('moved');
    }
    return id;
  }

  // Found in review: pending approvals are each replica's memory, so two requests under one id sent to two replicas
  // at once were both approved (two intent rows under one id; the loser's report refused report-mismatch later).
  it('requests under one id sent at once to both replicas: exactly one is approved, the others are request-reused, one sent twice is approved both times (40 generated rounds)', async () => {
    const r = seededRandom(20261208);
    const pick = <T,>(a: readonly T[]): T => a[Math.floor(r() * a.length)];
    const replica = () => Math.floor(r() * 2);
    type Via = 'authorize' | 'batch' | 'advance';
    const seen = { resent: 0, resentAcross: 0, bothReplicas: 0, advance: 0, batch: 0, resize: 0 };
    for (let round = 0; round < 40; round++) {
      const [m1, m2] = [await poweredOff(replica), await poweredOff(replica)];
      const shared = { requestId: randomUUID() };
      const fresh = randomUUID();
      const distinct: AuthorizeRequest[] = [
        edge(m1, 'PoweredOff', 'PoweredOn', shared),
        edge(m2, 'PoweredOff', 'PoweredOn', shared),
        edge(m1, 'PoweredOff', 'BeingDeleted', shared),
        edge(fresh, 'Requested', 'BeingCreated', shared),
        { ...edge(m2, 'PoweredOff', 'PoweredOff', shared), kind: 'resize', size: { cpu: 1, memoryGiB: 2, diskGiB: 20 } },
      ];
      const chosen = distinct.filter(() => r() < 0.5);
      while (chosen.length < 2) chosen.push(distinct.find((d) => !chosen.includes(d))!);
      // Sometimes one of them twice: the same request sent again before its first answer came.
      const sent: { req: AuthorizeRequest; via: Via; to: number }[] = [...chosen, ...(r() < 0.4 ? [pick(chosen)] : [])]
        .sort(() => r() - 0.5)
        .map((req) => ({ req, via: req.vmId === fresh ? 'advance' : pick(['authorize', 'batch'] as const), to: replica() }));
      const batchTo = replica();
      for (const x of sent) if (x.via === 'batch') x.to = batchTo;
      const inBatch = sent.filter((x) => x.via === 'batch');
      if (sent.length > chosen.length) {
        seen.resent++;
        const twins = sent.filter((x) => sent.some((y) => y !== x && y.req === x.req));
        if (new Set(twins.map((x) => x.to)).size > 1) seen.resentAcross++;
      }
      if (new Set(sent.map((x) => x.to)).size > 1) seen.bothReplicas++;
      if (inBatch.length > 0) seen.batch++;
      if (sent.some((x) => x.via === 'advance')) seen.advance++;
      if (sent.some((x) => x.req.kind === 'resize')) seen.resize++;
      const batch = (async (): Promise<Outcome[]> => {
        if (inBatch.length === 0) return [];
        const res = await fetch(`${replicas[batchTo].url}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ calls: inBatch.map((x) => ({ call: 'authorize', body: x.req })) }) });
        const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as { i: number; status: number; body: AuthorizeResponse & Partial<ErrorBody> });
        return inBatch.map((_, i) => {
          const line = lines.find((l) => l.i === i)!;
          return line.status === 200 ? line.body.decision : line.body.error!.code;
        });
      })();
      const single = sent.map(async ({ req, via, to }): Promise<Outcome | undefined> => {
        const url = replicas[to].url;
        if (via === 'authorize') {
          const a = await postTo<AuthorizeResponse & Partial<ErrorBody>>(url, '/v1/authorize', req);
          return a.status === 200 ? a.body.decision : a.body.error!.code;
        }
        if (via === 'advance') {
          const a = await postTo<AdvanceResponse & Partial<ErrorBody>>(url, '/v1/advance', { create: { ...create(fresh, vm(w(), 'web', 'team-a', nextIndex++)), requestId: randomUUID() }, next: [req] });
          return a.status === 200 ? (a.body.next[0]?.authorize.decision ?? `create ${a.body.create?.decision}`) : a.body.error!.code;
        }
        return undefined;
      });
      const [batched, ...singles] = await Promise.all([batch, ...single]);
      const outcomes = sent.map((x, k) => (x.via === 'batch' ? batched[inBatch.indexOf(x)] : singles[k]));
      const name = (q: AuthorizeRequest) => `${q.vmId === m1 ? 'm1' : q.vmId === m2 ? 'm2' : 'new'} ${q.kind === 'resize' ? 'resize' : q.to}`;
      const what = `round ${round}: ${sent.map((x, k) => `${name(x.req)} via ${x.via} to replica ${x.to}: ${outcomes[k]}`).join('; ')}`;
      // One distinct request won: each of its sendings approved; every other one refused.
      const winners = new Set(sent.filter((_, k) => outcomes[k] === 'approved').map((x) => x.req));
      expect(winners.size, what).toBe(1);
      const [winner] = winners;
      for (const [k, x] of sent.entries()) expect(outcomes[k], what).toBe(x.req === winner ? 'approved' : 'request-reused');
      // The record holds the winner's approval only, and its report is taken by either replica.
      for (const id of [m1, m2, fresh]) {
        const approval = await t.record.approvalOf(id, shared.requestId);
        expect(approval && { vmId: id, to: approval.to }, what).toEqual(winner.vmId === id ? { vmId: id, to: winner.to } : undefined);
      }
      const size = winner.kind === 'resize' ? { size: winner.size } : {};
      const reported = await postTo<ReportResponse>(replicas[replica()].url, '/v1/reports', reportOf(winner, size));
      expect(reported.body.effect, `${what}: ${JSON.stringify(reported.body)}`).toBe('moved');
    }
    for (const [shape, rounds] of Object.entries(seen)) expect(rounds, shape).toBeGreaterThan(2);
  }, 240_000);

  it('the record claims a request id for one request: the same request again renews it, another is refused with the holder, an expired claim is taken over', async () => {
    const dc = 'miami';
    const id = randomUUID();
    const base: RequestClaim = { dataCenter: dc, requestId: randomUUID(), vmId: id, kind: 'transition', from: 'PoweredOff', to: 'PoweredOn', size: null };
    const cases: { name: string; claim: typeof base; ttlMs?: number; held?: string }[] = [
      { name: 'a new id', claim: base },
      { name: 'the same request again', claim: base },
      { name: 'another edge of the VM', claim: { ...base, to: 'BeingDeleted' }, held: 'PoweredOn' },
      { name: 'another VM', claim: { ...base, vmId: randomUUID() }, held: 'PoweredOn' },
      { name: 'a resize under it', claim: { ...base, kind: 'resize', to: 'PoweredOff', size: '1 cpu / 2 GiB / 20 GiB disk' }, held: 'PoweredOn' },
      { name: 'another data center, same id', claim: { ...base, dataCenter: 'richmond', to: 'BeingDeleted' } },
      { name: 'the same request, claimed to expire at once', claim: base, ttlMs: 0 },
      { name: 'another request once the claim expired', claim: { ...base, to: 'BeingDeleted' } },
      { name: 'the first request, now the other holds it', claim: base, held: 'BeingDeleted' },
    ];
    for (const c of cases) {
      const [holder] = await second.claimRequests(stack, [c.claim], c.ttlMs ?? 60_000);
      expect(holder?.to, c.name).toBe(c.held);
    }
    // Pruning deletes expired claims only.
    await t.record.claimRequests(stack, [{ ...base, requestId: randomUUID() }], 0);
    await t.record.pruneRequestClaims();
    const [still] = await t.record.claimRequests(stack, [base], 60_000);
    expect(still?.to).toBe('BeingDeleted');
  });
});
