// Two authorities over one record (docs/operations.md, "Replicas"): what one
// replica decides never rests on what only it remembers.
//
// - Approvals ahead live in the replica that gave them until the report of
//   the edge before them, which writes their intent row. Sent to the other
//   replica, that report does not, and the VM's history loses the boot
//   edge's intent (a lost update): so with `replicas` > 1 nothing is
//   approved ahead.
// - One-time boot tokens: sent to both replicas at once, exactly one boot is
//   approved (the record's single statement decides, not a replica).
// - Rows: a replica that remembered a row the other has moved since decides
//   on the record's row (version-checked writes; with replicas > 1 no row is
//   remembered at all), and concurrent reports of one edge move the VM once.
//
// On PGlite (two authorities over one record object) and, with
// FLEET_TEST_POSTGRES_URL, on PostgreSQL with one connection pool each.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPack } from '../../providers/testing.ts';
import { openRecord } from '../record/index.ts';
import type { SqlRecord } from '../record/record.ts';
import { bootAttempts, testBackends, testPostgresUrl, type TestRecord } from '../record/testing.ts';
import type { FleetRecord } from '../record/types.ts';
import type { LoadedPack } from '../policy/types.ts';
import type { AuthorizeRequest, AuthorizeVm, ReportRequest } from '../../protocol/index.ts';
import { Authority } from './authority.ts';

const STACK = 'replicas';
const SECRET = 'replicas-test-secret';
const DC = 'miami';

function createOf(id: string, index: number): AuthorizeRequest {
  const vm: AuthorizeVm = {
    stack: STACK,
    fleet: 'web',
    owner: 'team-web',
    index,
    name: `${STACK}-web-${index}`,
    dataCenter: DC,
    image: 'ubuntu-22.04',
    size: { cpu: 1, memoryGiB: 2, diskGiB: 10 },
    encryptedDisk: true,
    desiredState: 'Running',
    specHash: 'h',
  };
  return { dataCenter: DC, requestId: randomUUID(), planId: 'plan-r', kind: 'create', vmId: id, from: null, vm };
}
const edge = (vmId: string, from: string, to: string): AuthorizeRequest => ({ dataCenter: DC, requestId: randomUUID(), planId: 'plan-r', kind: 'transition', vmId, from, to });
const reportOf = (req: AuthorizeRequest, over: Partial<ReportRequest> = {}): ReportRequest => ({
  dataCenter: DC,
  requestId: req.requestId,
  planId: req.planId,
  vmId: req.vmId,
  from: req.from as string,
  to: req.to as string,
  outcome: 'ok',
  ...over,
});

describe.each(testBackends())('two authority replicas over one record on $name', (backend) => {
  let t: TestRecord;
  /** The second replica's record: its own pool on PostgreSQL, the same object on PGlite (one process). */
  let second: FleetRecord;
  let pack: LoadedPack;
  let index = 0;

  beforeAll(async () => {
    t = await backend.create();
    second = backend.name === 'postgres' ? await openRecord(t.url) : t.record;
    pack = await defaultPack();
  });
  afterAll(async () => {
    if (second !== t.record) await second.close();
    await t.cleanup();
  });

  const pair = (replicas: number) => [
    new Authority({ record: t.record, pack, stackName: STACK, secret: SECRET, replicas }),
    new Authority({ record: second, pack, stackName: STACK, secret: SECRET, replicas }),
  ];

  /** A VM created and moved to `path`'s end through `a` (authorize, then report, per edge). */
  async function vmAt(a: Authority, path: readonly string[]): Promise<string> {
    const id = randomUUID();
    expect((await a.authorize(DC, createOf(id, index++))).decision).not.toBe('vetoed');
    for (let k = 1; k < path.length; k++) {
      const req = edge(id, path[k - 1], path[k]);
      const ok = await a.authorize(DC, req);
      expect(ok.decision).toBe('approved');
      await a.report(DC, reportOf(req, ok.operation === 'createVm' ? { cloudId: `cloud-${id}` } : {}));
    }
    return id;
  }

  it.each([
    { replicas: 1, ahead: 1, intent: false },
    { replicas: 2, ahead: 0, intent: true },
  ])(
    'replicas $replicas: a run whose reports alternate between the replicas (approved ahead: $ahead) keeps the boot edge\'s intent row: $intent',
    async ({ replicas, ahead, intent }) => {
      const [a, b] = pair(replicas);
      const id = await vmAt(a, ['Requested', 'BeingCreated']);
      // The DMZ client carried out createVm; its report goes to A with the run's next edges: powerOn, then boot.
      const create = edge(id, 'BeingCreated', 'PoweredOff');
      await a.authorize(DC, create);
      const powerOn = edge(id, 'PoweredOff', 'PoweredOn');
      const bootEdge = edge(id, 'PoweredOn', 'Starting');
      const adv = await a.advance(DC, { report: reportOf(create, { cloudId: `cloud-${id}` }), next: [powerOn, bootEdge], ahead: true });
      expect(adv.next[0].authorize.decision).toBe('approved');
      expect(adv.next.filter((n) => n.ahead).length).toBe(ahead);
      // powerOn carried out; its report reaches B (the balancer's next pick). Without an approval ahead, it asks for the boot edge.
      let token = adv.next[1]?.authorize.bootToken;
      if (token === undefined) {
        const next = await b.advance(DC, { report: reportOf(powerOn), next: [bootEdge], ahead: true });
        expect(next.next[0].authorize.decision).toBe('approved');
        token = next.next[0].authorize.bootToken!;
      } else {
        await b.report(DC, reportOf(powerOn));
      }
      const res = await a.bootAuthorize(DC, { dataCenter: DC, vmId: id, cloudId: `cloud-${id}`, image: 'img-ubuntu-2204-miami-v7', bootToken: token });
      expect(res.approved).toBe(true);
      const vm = (await t.record.getVm(id))!;
      const history = (await t.record.history(STACK, vm.address)).filter((h) => h.vmId === id);
      expect(history.some((h) => h.from === 'PoweredOn' && h.to === 'Starting' && h.detail === 'intent approved: boot')).toBe(intent);
    },
  );

  it('a boot token sent to both replicas at once gets one approval, answered to both and recorded once (20 VMs)', async () => {
    const [a, b] = pair(2);
    const bodies = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const id = await vmAt(a, ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn']);
        const boot = edge(id, 'PoweredOn', 'Starting');
        const ok = await b.authorize(DC, boot);
        expect(ok.operation).toBe('boot');
        return { dataCenter: DC, vmId: id, cloudId: `cloud-${id}`, image: 'img-ubuntu-2204-miami-v7', bootToken: ok.bootToken! };
      }),
    );
    const answers = await Promise.all(bodies.map((body) => Promise.all([a.bootAuthorize(DC, body), b.bootAuthorize(DC, body)])));
    for (const [x, y] of answers) expect([x, y].map((r) => [r.approved, r.diskKey])).toEqual([[true, x.diskKey], [true, x.diskKey]]);
    for (const body of bodies) {
      const attempts = await bootAttempts(t.record as SqlRecord, { vmId: body.vmId });
      expect(attempts.filter((x) => x.approved)).toHaveLength(1);
    }
  });

  it('the ok report of one edge sent to both replicas at once: one moves the VM, the other answers already, never a refusal (30 VMs, 4 edges each)', async () => {
    const [a, b] = pair(2);
    const path = ['BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting', 'Running'];
    const effects = await Promise.all(
      Array.from({ length: 30 }, async () => {
        const id = await vmAt(a, ['Requested', 'BeingCreated']);
        const out: string[][] = [];
        for (let k = 1; k < path.length; k++) {
          const req = edge(id, path[k - 1], path[k]);
          expect((await (k % 2 ? a : b).authorize(DC, req)).decision).toBe('approved');
          const report = reportOf(req, req.to === 'PoweredOff' ? { cloudId: `cloud-${id}` } : {});
          const both = await Promise.allSettled([a.report(DC, report), b.report(DC, report)]);
          out.push(both.map((r) => (r.status === 'fulfilled' ? r.value.effect : String(r.reason))).sort());
        }
        expect((await t.record.getVm(id))!).toMatchObject({ state: 'Running', version: 6 });
        return out;
      }),
    );
    for (const e of effects.flat()) expect(e).toEqual(['already', 'moved']);
  });

  it('a failed report of an edge without a failure edge, sent to both replicas at once, is written once, both answered noted (30 VMs)', async () => {
    const [a, b] = pair(2);
    await Promise.all(
      Array.from({ length: 30 }, async () => {
        const id = await vmAt(a, ['Requested', 'BeingCreated', 'PoweredOff']);
        const req = edge(id, 'PoweredOff', 'PoweredOn');
        expect((await b.authorize(DC, req)).decision).toBe('approved');
        const report = reportOf(req, { outcome: 'failed', detail: 'the cloud refused the power-on' });
        const both = await Promise.allSettled([a.report(DC, report), b.report(DC, report)]);
        expect(both.map((r) => (r.status === 'fulfilled' ? r.value.effect : String(r.reason)))).toEqual(['noted', 'noted']);
        const vm = (await t.record.getVm(id))!;
        expect(vm).toMatchObject({ state: 'PoweredOff', version: 3 });
        const failures = (await t.record.history(STACK, vm.address)).filter((h) => h.vmId === id && h.requestId === req.requestId && h.outcome === 'failed');
        expect(failures).toHaveLength(1);
      }),
    );
  });

  it.each([
    { how: 'sent again to the same replica', both: false },
    { how: 'sent to both replicas at once', both: true },
  ])('a create that took the last place of its owner\'s quota, $how, gets the same answer and one row (10 VMs)', async ({ both }) => {
    // Each VM's owner may hold 1 VM: its create takes the last place, and a repeat must not count the VM against itself.
    const limits: Record<string, { vms: number }> = {};
    const owners = Array.from({ length: 10 }, () => `team-last-${randomUUID().slice(0, 8)}`);
    for (const o of owners) limits[o] = { vms: 1 };
    const rules = new Map(pack.rules);
    rules.set('owner-quota', { ...rules.get('owner-quota')!, enforcement: 'mandatory', config: { limits } });
    const quota: LoadedPack = { ...pack, rules };
    const records = [t.record, second];
    const [a, b] = records.map((record) => new Authority({ record, pack: quota, stackName: STACK, secret: SECRET, replicas: 2 }));
    const answers = await Promise.all(
      owners.map(async (owner, k) => {
        const c = createOf(randomUUID(), 0);
        c.vm = { ...c.vm!, fleet: `last${k}-${owner}`, owner, name: `${STACK}-last${k}` };
        if (both) return Promise.all([a.authorize(DC, c), b.authorize(DC, c)]);
        const first = await a.authorize(DC, c);
        return [first, await a.authorize(DC, c)];
      }),
    );
    for (const [k, pair] of answers.entries()) {
      expect(pair.map((x) => [x.decision, x.reason]), owners[k]).toEqual([['modified', pair[0].reason], ['modified', pair[0].reason]]);
      const live = (await t.record.listVms(STACK)).filter((v) => v.fleet.endsWith(owners[k]));
      expect(live).toHaveLength(1);
    }
  });

  it('a create sent again in one batch with a new create: the VM already in the record is not counted twice against the quota (10 owners)', async () => {
    // Each owner may hold 2 VMs: one created, then its create again (the resend of a lost answer) and a second VM's, at once.
    const limits: Record<string, { vms: number }> = {};
    const owners = Array.from({ length: 10 }, () => `team-twice-${randomUUID().slice(0, 8)}`);
    for (const o of owners) limits[o] = { vms: 2 };
    const rules = new Map(pack.rules);
    rules.set('owner-quota', { ...rules.get('owner-quota')!, enforcement: 'mandatory', config: { limits } });
    const quota: LoadedPack = { ...pack, rules };
    const [a, b] = [t.record, second].map((record) => new Authority({ record, pack: quota, stackName: STACK, secret: SECRET, replicas: 2 }));
    await Promise.all(
      owners.map(async (owner, k) => {
        const of = (index: number) => {
          const c = createOf(randomUUID(), index);
          c.vm = { ...c.vm!, fleet: `twice${k}-${owner}`, owner, name: `${STACK}-twice${k}-${index}` };
          return c;
        };
        const first = of(0);
        expect((await a.authorize(DC, first)).decision).toBe('modified');
        const answers = await Promise.all([b.authorize(DC, first), b.authorize(DC, of(1))]);
        expect(answers.map((x) => [x.decision, x.reason]), owner).toEqual([['modified', answers[0].reason], ['modified', answers[0].reason]]);
        expect((await t.record.listVms(STACK)).filter((v) => v.fleet === `twice${k}-${owner}`)).toHaveLength(2);
      }),
    );
  });

  it.each([1, 2])('replicas %i: a row one replica remembers, moved by the other since, never decides (and no update is lost)', async (replicas) => {
    const [a, b] = pair(replicas);
    const id = await vmAt(a, ['Requested', 'BeingCreated', 'PoweredOff']);
    // A has just read (and, with one replica, remembered) the row at PoweredOff; B moves it on.
    const up = edge(id, 'PoweredOff', 'PoweredOn');
    expect((await b.authorize(DC, up)).decision).toBe('approved');
    expect((await b.report(DC, reportOf(up))).effect).toBe('moved');
    // Another plan asks A for the same edge, from the state A saw: vetoed on the record's row. (The same
    // plan asking again would be told the edge is done: its answer was lost, docs/recovery.md "Outages".)
    const stale = await a.authorize(DC, { ...edge(id, 'PoweredOff', 'PoweredOn'), planId: 'plan-other' });
    expect(stale).toMatchObject({ decision: 'vetoed', vm: { state: 'PoweredOn' } });
    expect(stale.reason).toContain('the record has it PoweredOn');
    // The next edge, its report sent to both at once (a retry that reached the other replica): the VM moves once.
    const boot = edge(id, 'PoweredOn', 'Starting');
    expect((await a.authorize(DC, boot)).decision).toBe('approved');
    const both = await Promise.allSettled([a.report(DC, reportOf(boot)), b.report(DC, reportOf(boot))]);
    const effects = both.map((r) => (r.status === 'fulfilled' ? r.value.effect : 'refused'));
    expect(effects.sort()).toEqual(['already', 'moved']);
    const vm = (await t.record.getVm(id))!;
    expect(vm).toMatchObject({ state: 'Starting' });
    // One move per edge since the create: versions 1 (Requested) to 5 (Starting).
    expect(vm.version).toBe(5);
  });
});

/**
 * Two replicas (each with its own PostgreSQL pool) racing resizes that grow
 * for the last of an owner's vCPU quota, many rounds: the grow is checked
 * and reserved in the transaction that writes its intent (record/grow.ts),
 * so the approvals of both replicas together never exceed the quota, and
 * the record's sizes after the reports do not either.
 */
describe.skipIf(!testPostgresUrl())('grows raced through two replicas on PostgreSQL', () => {
  it('never exceed the owner quota (30 rounds, 4 grows a round for 1 to 3 free vCPUs)', async () => {
    const [pgBackend] = testBackends().filter((b) => b.name === 'postgres');
    const db = await pgBackend.freshUrl();
    const records = [await openRecord(db.url), await openRecord(db.url)];
    const ROUNDS = 30;
    const free = (r: number) => 1 + (r % 3);
    const limits: Record<string, { cpu: number }> = {};
    for (let r = 0; r < ROUNDS; r++) limits[`team-g${r}`] = { cpu: 4 + free(r) };
    const base = await defaultPack();
    const rules = new Map(base.rules);
    rules.set('owner-quota', { ...rules.get('owner-quota')!, enforcement: 'mandatory', config: { limits } });
    const pack: LoadedPack = { ...base, rules };
    const [a, b] = records.map((record) => new Authority({ record, pack, stackName: STACK, secret: SECRET, replicas: 2 }));
    try {
      for (let r = 0; r < ROUNDS; r++) {
        const fleet = `g${r}`;
        const owner = `team-g${r}`;
        // Four 1-vCPU VMs at PoweredOff: 4 of the owner's 4 + free(r) vCPUs in use.
        const ids: string[] = [];
        for (let i = 0; i < 4; i++) {
          const id = randomUUID();
          const c = createOf(id, i);
          c.vm = { ...c.vm!, fleet, owner, name: `${STACK}-${fleet}-${i}` };
          expect((await a.authorize(DC, c)).decision).not.toBe('vetoed');
          for (const [from, to] of [['Requested', 'BeingCreated'], ['BeingCreated', 'PoweredOff']]) {
            const req = edge(id, from, to);
            expect((await a.authorize(DC, req)).decision).toBe('approved');
            await a.report(DC, reportOf(req, to === 'PoweredOff' ? { cloudId: `cloud-${id}` } : {}));
          }
          ids.push(id);
        }
        // Each VM asked to grow to 2 vCPUs, two through each replica, all at once.
        const size = { cpu: 2, memoryGiB: 2, diskGiB: 10 };
        const grows = ids.map((id): AuthorizeRequest => ({ ...edge(id, 'PoweredOff', 'PoweredOff'), kind: 'resize', size }));
        const answers = await Promise.all(grows.map((g, i) => (i % 2 === 0 ? a : b).authorize(DC, g)));
        const approved = grows.filter((_, i) => answers[i].decision === 'approved');
        expect(answers.filter((x) => x.decision === 'vetoed').every((x) => x.reason.includes(`the quota of owner ${owner}`))).toBe(true);
        expect({ round: r, approved: approved.length }).toEqual({ round: r, approved: free(r) });
        // The approved ones reported (to either replica): the record holds at most the quota.
        await Promise.all(approved.map((g, i) => (i % 2 === 0 ? b : a).report(DC, reportOf(g, { size }))));
        const cpu = (await records[0].listVms(STACK)).filter((v) => v.fleet === fleet).reduce((n, v) => n + v.size.cpu, 0);
        expect({ round: r, cpu }).toEqual({ round: r, cpu: 4 + free(r) });
      }
    } finally {
      for (const rec of records) await rec.close();
      await db.drop();
    }
  }, 180_000);
});
