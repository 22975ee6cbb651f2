// The policy at the authority, attacked as someone holding a data center's
// token would: straight HTTP calls to the authority (no CLI, no plan, no
// lock). Each attack is refused with a veto or a wire code and leaves the
// record as it was (and, since no credentials are issued, nothing reaches a
// cloud). Runs on PGlite, and on PostgreSQL with FLEET_TEST_POSTGRES_URL;
// the race of concurrent creates for the last quota slots runs on
// PostgreSQL only (two authorities, each with its own connection pool).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPack } from '../../providers/testing.ts';
import { openRecord, type FleetRecord } from '../record/index.ts';
import { testBackends, testPostgresUrl, type TestRecord } from '../record/testing.ts';
import type { Finding, LoadedPack, RequestFacts, ResolvedRule, Rule } from '../policy/types.ts';
import { overrideProof, refuse, type AuthorizeResponse, type Decided, type AuthorizeVm, type ReportResponse } from '../../protocol/index.ts';
import { judgeRequestRules } from './policy.ts';
import { startAuthority, type RunningService } from './server.ts';
import { TOKEN, create, edge, post, reportOf, vm } from './attack-testing.ts';

const ADMIN = 'admin-token-for-tests';
/** miami's capacity in the stack: 12 VMs, 48 vCPUs. */
const CAPACITY = { vms: 12, cpu: 48, memoryGiB: 400 };

/** A request-level custom rule, as a pack module would declare it. */
const noHugeVms: Rule = {
  name: 'no-huge-vms',
  description: 'No VM over 32 GiB of disk (test rule).',
  configSchema: { type: 'object' },
  checkRequest(req) {
    return req.size.diskGiB > 32 ? [{ address: req.address, message: `${req.size.diskGiB} GiB of disk is more than 32.`, hint: 'Pick a smaller disk.' }] : [];
  },
};

/** The default pack with owner-quota limits, a protect setting and the custom rule. */
function packWith(base: LoadedPack, opts: { quota: Record<string, { vms?: number; cpu?: number }>; protect?: 'any' | 'admin' }): LoadedPack {
  const rules = new Map<string, ResolvedRule>(base.rules);
  rules.set('owner-quota', { ...rules.get('owner-quota')!, enforcement: 'mandatory', config: { limits: opts.quota } });
  rules.set('protect', { ...rules.get('protect')!, enforcement: 'mandatory', config: { override: opts.protect ?? 'any' } });
  rules.set('no-huge-vms', { rule: noHugeVms, enforcement: 'mandatory', config: {} });
  return { ...base, rules };
}

interface World {
  stack: string;
  record: FleetRecord;
  authority: RunningService;
  close(): Promise<void>;
}

async function startWorld(record: FleetRecord, pack: LoadedPack, stack = `pol-${randomUUID().slice(0, 8)}`, capacity = CAPACITY): Promise<World> {
  const authority = await startAuthority({ record, pack, stackName: stack, dataCenters: [{ name: 'miami', token: TOKEN, capacity }], secret: 's', adminTokens: [ADMIN] });
  return { stack, record, authority, close: () => authority.close() };
}

/** A VM created and walked along approved edges to `to` (PoweredOff by default), as a DMZ client would; its id. */
async function vmAt(w: World, v: AuthorizeVm, to: 'PoweredOff' | 'PoweredOn' = 'PoweredOff'): Promise<string> {
  const id = randomUUID();
  expect((await post<AuthorizeResponse>(w, '/v1/authorize', create(id, v))).body.decision).not.toBe('vetoed');
  const path = ['Requested', 'BeingCreated', 'PoweredOff', ...(to === 'PoweredOn' ? ['PoweredOn'] : [])];
  for (let i = 1; i < path.length; i++) {
    const a = edge(id, path[i - 1], path[i]);
    expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
    const r = await post<ReportResponse>(w, '/v1/reports', reportOf(a, path[i] === 'PoweredOff' && path[i - 1] === 'BeingCreated' ? { cloudId: `cloud-${id}` } : {}));
    expect(r.status).toBe(200);
  }
  return id;
}

/** What the record holds of a stack: every VM's state, size and cloud id, and its history rows. */
async function snapshot(w: World): Promise<unknown> {
  const vms = await w.record.listVms(w.stack, { includeRetired: true });
  return { vms: vms.map((v) => [v.id, v.state, v.size, v.cloudId, v.version]), history: (await w.record.history(w.stack)).length };
}

describe.each(testBackends())('policy at the authority, attacked over HTTP ($name)', (backend) => {
  let t: TestRecord;
  let pack: LoadedPack;
  beforeAll(async () => {
    t = await backend.create();
    pack = packWith(await defaultPack(), { quota: { 'team-q': { vms: 3 } } });
  });
  afterAll(() => t.cleanup());

  it('a create over the owner quota is vetoed (over-quota), and nothing is written', async () => {
    const w = await startWorld(t.record, pack);
    try {
      for (let i = 0; i < 3; i++) await vmAt(w, vm(w, 'web', 'team-q', i));
      const before = await snapshot(w);
      const id = randomUUID();
      const r = await post<AuthorizeResponse>(w, '/v1/authorize', create(id, vm(w, 'web', 'team-q', 3)));
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ decision: 'vetoed', operation: 'none', reason: expect.stringContaining('the quota of owner team-q is 3 VMs: 3 in use') });
      expect(r.body.credentials).toBeUndefined();
      // The same owner's quota counted over another fleet of it.
      const other = await post<AuthorizeResponse>(w, '/v1/authorize', create(randomUUID(), vm(w, 'api', 'team-q', 0)));
      expect(other.body.decision).toBe('vetoed');
      expect(await snapshot(w)).toEqual(before);
      expect(await w.record.getVm(id)).toBeUndefined();
    } finally {
      await w.close();
    }
  });

  it('a 1000-CPU create over the data center capacity is vetoed (over-capacity), and nothing is written', async () => {
    const w = await startWorld(t.record, pack);
    try {
      const before = await snapshot(w);
      const r = await post<AuthorizeResponse>(w, '/v1/authorize', create(randomUUID(), vm(w, 'big', 'team-free', 0, { size: { cpu: 1000, memoryGiB: 4000, diskGiB: 10 } })));
      expect(r.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('the capacity of data center miami is 48 vCPUs') });
      expect(await snapshot(w)).toEqual(before);
    } finally {
      await w.close();
    }
  });

  it('extra creates sent at once past the quota: exactly the free slots are approved', async () => {
    const w = await startWorld(t.record, pack);
    try {
      await vmAt(w, vm(w, 'web', 'team-q', 0));
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => post<AuthorizeResponse>(w, '/v1/authorize', create(randomUUID(), vm(w, 'web', 'team-q', 10 + i)))));
      expect(answers.filter((a) => a.body.decision !== 'vetoed')).toHaveLength(2);
      expect(answers.filter((a) => a.body.decision === 'vetoed').every((a) => a.body.reason.includes('quota of owner team-q'))).toBe(true);
      expect(await w.record.listVms(w.stack)).toHaveLength(3);
    } finally {
      await w.close();
    }
  });

  it('a resize past the capacity is vetoed at authorize; the record keeps the size', async () => {
    const w = await startWorld(t.record, pack);
    try {
      const id = await vmAt(w, vm(w, 'web', 'team-free', 0));
      const before = await snapshot(w);
      const r = await post<AuthorizeResponse>(w, '/v1/authorize', edge(id, 'PoweredOff', 'PoweredOff', { kind: 'resize', size: { cpu: 256, memoryGiB: 4096, diskGiB: 20 } }));
      expect(r.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('the capacity of data center miami allows 48') });
      const vms = (await snapshot(w)) as { vms: unknown[]; history: number };
      // Only the vetoed row is added to the history.
      expect(vms.vms).toEqual((before as { vms: unknown[] }).vms);
      expect((await w.record.getVm(id))!.size).toEqual({ cpu: 2, memoryGiB: 4, diskGiB: 20 });
    } finally {
      await w.close();
    }
  });

  it('a request-level custom rule vetoes a create the plan never showed (policy-veto)', async () => {
    const w = await startWorld(t.record, pack);
    try {
      const r = await post<AuthorizeResponse>(w, '/v1/authorize', create(randomUUID(), vm(w, 'disk', 'team-free', 0, { size: { cpu: 1, memoryGiB: 1, diskGiB: 500 } })));
      expect(r.body).toMatchObject({ decision: 'vetoed', reason: 'rule no-huge-vms: 500 GiB of disk is more than 32.' });
      expect(await w.record.listVms(w.stack)).toHaveLength(0);
    } finally {
      await w.close();
    }
  });

  // A custom checkRequest that never returned held the authority's one
  // thread: that request, and every other one after it, waited forever. It
  // runs under the pack's deadline now. The spin stops by itself after 30 s,
  // so that without the deadline the request is approved then and the test
  // fails instead of hanging (vitest cannot stop a synchronous loop).
  it('a custom checkRequest that never returns is stopped at the deadline: the request is vetoed (policy.rule-timeout), and the authority serves the next ones', { timeout: 90_000 }, async () => {
    const spin: Rule = {
      name: 'spin',
      description: 'Never returns on fleet spin (test rule).',
      configSchema: { type: 'object' },
      checkRequest(req) {
        const end = Date.now() + 30_000;
        while (req.fleet === 'spin' && Date.now() < end);
        return [];
      },
    };
    const spinning: LoadedPack = { ...pack, rules: new Map([...pack.rules, ['spin', { rule: spin, enforcement: 'mandatory', config: {} }]]), ruleTimeoutSeconds: 0.2 };
    const w = await startWorld(t.record, spinning);
    try {
      const stuck = post<AuthorizeResponse>(w, '/v1/authorize', create(randomUUID(), vm(w, 'spin', 'team-free', 0)));
      const next = post<AuthorizeResponse>(w, '/v1/authorize', create(randomUUID(), vm(w, 'web', 'team-free', 0)));
      expect((await stuck).body).toMatchObject({
        decision: 'vetoed',
        reason: expect.stringMatching(/^policy\.rule-timeout: Rule spin did not finish within 0\.2 s: its checkRequest \(\S+policy\.test\.ts:\d+:\d+\) was still running on spin\/0, and was stopped\. A check must return/),
      });
      expect((await next).body.decision).not.toBe('vetoed');
      // Each request gets the deadline anew: the rule vetoes again, other fleets go on.
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', create(randomUUID(), vm(w, 'spin', 'team-free', 1)))).body.decision).toBe('vetoed');
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', create(randomUUID(), vm(w, 'web', 'team-free', 1)))).body.decision).not.toBe('vetoed');
      expect((await w.record.listVms(w.stack)).map((v) => v.address).sort()).toEqual(['web/0', 'web/1']);
    } finally {
      await w.close();
    }
  });

  describe('protection lives in the record', () => {
    it('deleting a member of a protected fleet without an override is vetoed (protected); with one, it is approved and who and why are recorded', async () => {
      const w = await startWorld(t.record, pack);
      try {
        const id = await vmAt(w, vm(w, 'vault', 'team-free', 0));
        // The fleet was applied with protect: true; its spec may be gone since.
        await w.record.setFleetProtection(w.stack, 'vault', 'team-free', true);
        const before = await snapshot(w);
        const del = edge(id, 'PoweredOff', 'BeingDeleted');
        const r = await post<AuthorizeResponse>(w, '/v1/authorize', del);
        expect(r.body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('protected fleet vault') });
        expect(r.body.credentials).toBeUndefined();
        // Its report is refused too: nothing was approved under that request id.
        expect((await post<{ error: { code: string } }>(w, '/v1/reports', reportOf(del))).body.error.code).toBe('report-unapproved');
        // The straight DELETE edge (BeingDeleted -> Deleted) cannot be asked from PoweredOff either.
        expect((await post<AuthorizeResponse>(w, '/v1/authorize', edge(id, 'PoweredOff', 'Deleted'))).body.decision).toBe('vetoed');
        const after = (await snapshot(w)) as { vms: unknown };
        expect(after.vms).toEqual((before as { vms: unknown }).vms);
        expect((await w.record.history(w.stack, 'vault/0')).filter((h) => h.outcome === 'vetoed').map((h) => h.to)).toEqual(['BeingDeleted', 'Deleted']);

        const allowed = edge(id, 'PoweredOff', 'BeingDeleted', { override: { allowDestroy: true, by: 'alice@ci', reason: '--allow-destroy vault in plan plan-attack' } });
        expect((await post<AuthorizeResponse>(w, '/v1/authorize', allowed)).body.decision).toBe('approved');
        const intent = (await w.record.history(w.stack, 'vault/0')).at(-1)!;
        expect(intent).toMatchObject({ outcome: 'ok', actor: 'authority', requestId: allowed.requestId, detail: 'intent approved: none; override allow-destroy by alice@ci: --allow-destroy vault in plan plan-attack' });
      } finally {
        await w.close();
      }
    });

    it('a stack that accepts overrides from admins only refuses one without the admin proof (override-refused)', async () => {
      const w = await startWorld(t.record, packWith(await defaultPack(), { quota: {}, protect: 'admin' }));
      try {
        const id = await vmAt(w, vm(w, 'vault', 'team-free', 0));
        await w.record.setFleetProtection(w.stack, 'vault', 'team-free', true);
        const o = { allowDestroy: true, by: 'mallory', reason: 'because' };
        const forged = edge(id, 'PoweredOff', 'BeingDeleted', { override: { ...o, proof: overrideProof('not-the-admin-token', id, 'plan-attack', o.by, o.reason) } });
        expect((await post<AuthorizeResponse>(w, '/v1/authorize', forged)).body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining("needs the admin token's proof") });
        expect((await post<AuthorizeResponse>(w, '/v1/authorize', edge(id, 'PoweredOff', 'BeingDeleted', { override: o }))).body.decision).toBe('vetoed');
        // A proof for another VM does not carry over.
        const elsewhere = edge(id, 'PoweredOff', 'BeingDeleted', { override: { ...o, proof: overrideProof(ADMIN, randomUUID(), 'plan-attack', o.by, o.reason) } });
        expect((await post<AuthorizeResponse>(w, '/v1/authorize', elsewhere)).body.decision).toBe('vetoed');
        expect((await w.record.getVm(id))!.state).toBe('PoweredOff');
        const admin = edge(id, 'PoweredOff', 'BeingDeleted', { override: { ...o, proof: overrideProof(ADMIN, id, 'plan-attack', o.by, o.reason) } });
        expect((await post<AuthorizeResponse>(w, '/v1/authorize', admin)).body.decision).toBe('approved');
      } finally {
        await w.close();
      }
    });

    it('an unprotected fleet deletes without an override', async () => {
      const w = await startWorld(t.record, pack);
      try {
        const id = await vmAt(w, vm(w, 'scratch', 'team-free', 0));
        await w.record.setFleetProtection(w.stack, 'scratch', 'team-free', false);
        expect((await post<AuthorizeResponse>(w, '/v1/authorize', edge(id, 'PoweredOff', 'BeingDeleted'))).body.decision).toBe('approved');
      } finally {
        await w.close();
      }
    });
  });

  describe('reports match approvals', () => {
    it.each([
      {
        name: 'an unknown requestId moving PoweredOff -> PoweredOn',
        code: 'report-unapproved',
        forge: async (_w: World, id: string) => reportOf(edge(id, 'PoweredOff', 'PoweredOn')),
      },
      {
        name: 'a resize report of another size than approved',
        code: 'report-size-mismatch',
        forge: async (w: World, id: string) => {
          const a = edge(id, 'PoweredOff', 'PoweredOff', { kind: 'resize', size: { cpu: 4, memoryGiB: 8, diskGiB: 20 } });
          expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
          return reportOf(a, { size: { cpu: 256, memoryGiB: 4096, diskGiB: 20 } });
        },
      },
      {
        name: 'a resize report with no resize approved',
        code: 'report-unapproved',
        forge: async (_w: World, id: string) => reportOf(edge(id, 'PoweredOff', 'PoweredOff'), { size: { cpu: 256, memoryGiB: 4096, diskGiB: 20 } }),
      },
      {
        name: 'a cloud id on a non-create edge',
        code: 'report-cloud-id',
        forge: async (w: World, id: string) => {
          const a = edge(id, 'PoweredOff', 'PoweredOn');
          expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
          return reportOf(a, { cloudId: 'i-forged' });
        },
      },
      {
        name: 'a report of another edge than approved',
        code: 'report-mismatch',
        forge: async (w: World, id: string) => {
          const a = edge(id, 'PoweredOff', 'PoweredOn');
          expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
          return reportOf(a, { to: 'BeingDeleted' });
        },
      },
    ])('$name is refused ($code) and changes nothing', async ({ code, forge }) => {
      const w = await startWorld(t.record, pack);
      try {
        const id = await vmAt(w, vm(w, 'web', 'team-free', 0));
        const forged = await forge(w, id);
        const before = await snapshot(w);
        const r = await post<{ error: { code: string; message: string } }>(w, '/v1/reports', forged);
        expect(r.status).toBe(409);
        expect(r.body.error.code).toBe(code);
        expect(await snapshot(w)).toEqual(before);
        expect(await w.record.getVm(id)).toMatchObject({ state: 'PoweredOff', cloudId: `cloud-${id}`, size: { cpu: 2, memoryGiB: 4, diskGiB: 20 } });
      } finally {
        await w.close();
      }
    });

    it('a report is taken once: replayed after the VM came back to its from state, it is refused (report-repeated)', async () => {
      const w = await startWorld(t.record, pack);
      try {
        const id = await vmAt(w, vm(w, 'web', 'team-free', 0), 'PoweredOn');
        const on = (await w.record.history(w.stack, 'web/0')).filter((h) => h.to === 'PoweredOn' && h.actor === 'authority').at(-1)!;
        const off = edge(id, 'PoweredOn', 'PoweredOff');
        await post(w, '/v1/authorize', off);
        expect((await post<ReportResponse>(w, '/v1/reports', reportOf(off))).body.effect).toBe('moved');
        const before = await snapshot(w);
        const replay = { dataCenter: 'miami', requestId: on.requestId!, planId: 'plan-attack', vmId: id, from: 'PoweredOff', to: 'PoweredOn', outcome: 'ok' as const };
        const r = await post<{ error: { code: string } }>(w, '/v1/reports', replay);
        expect([r.status, r.body.error.code]).toEqual([409, 'report-repeated']);
        expect(await snapshot(w)).toEqual(before);
      } finally {
        await w.close();
      }
    });

    it('after the authority restarts, a report is matched with the approval the record holds', async () => {
      const w = await startWorld(t.record, pack);
      const id = await vmAt(w, vm(w, 'web', 'team-free', 0));
      const size = { cpu: 4, memoryGiB: 8, diskGiB: 20 };
      const a = edge(id, 'PoweredOff', 'PoweredOff', { kind: 'resize', size });
      expect((await post<AuthorizeResponse>(w, '/v1/authorize', a)).body.decision).toBe('approved');
      await w.close();
      const again = await startWorld(t.record, pack, w.stack);
      try {
        expect((await post<{ error: { code: string } }>(again, '/v1/reports', reportOf(a, { size: { cpu: 256, memoryGiB: 4096, diskGiB: 20 } }))).body.error.code).toBe('report-size-mismatch');
        expect((await post<{ error: { code: string } }>(again, '/v1/reports', reportOf(edge(id, 'PoweredOff', 'PoweredOn')))).body.error.code).toBe('report-unapproved');
        const r = await post<ReportResponse>(again, '/v1/reports', reportOf(a, { size }));
        expect(r.body).toMatchObject({ effect: 'moved', vm: { size } });
      } finally {
        await again.close();
      }
    });
  });
});

/**
 * Two authorities (two applies' worth of DMZ clients, each authority with its
 * own PostgreSQL pool) racing for the last quota slots, many rounds: the
 * quota is never exceeded, and every free slot is taken.
 */
describe.skipIf(!testPostgresUrl())('the last quota slots, raced on PostgreSQL', () => {
  it('concurrent creates through two authorities never exceed the quota (40 rounds)', async () => {
    const [pgBackend] = testBackends().filter((b) => b.name === 'postgres');
    const db = await pgBackend.freshUrl();
    const records = [await openRecord(db.url), await openRecord(db.url)];
    const stack = `race-${randomUUID().slice(0, 8)}`;
    const ROUNDS = 40;
    const quota: Record<string, { vms: number }> = {};
    for (let r = 0; r < ROUNDS; r++) quota[`team-${r}`] = { vms: 1 + (r % 4) };
    const pack = packWith(await defaultPack(), { quota });
    const worlds = await Promise.all(records.map((rec) => startWorld(rec, pack, stack, { vms: 10_000, cpu: 100_000, memoryGiB: 1_000_000 })));
    try {
      for (let r = 0; r < ROUNDS; r++) {
        const owner = `team-${r}`;
        const slots = quota[owner].vms;
        // Each authority gets 3 creates of the owner (two fleets), all sent at once.
        const sends = worlds.flatMap((w, k) =>
          Array.from({ length: 3 }, (_, i) => post<AuthorizeResponse>(w, '/v1/authorize', create(randomUUID(), vm(w, `f${r}-${i % 2}`, owner, k * 3 + i)))),
        );
        const answers = await Promise.all(sends);
        const approved = answers.filter((a) => a.body.decision !== 'vetoed').length;
        const live = (await records[0].listVms(stack)).filter((v) => v.fleet.startsWith(`f${r}-`)).length;
        expect({ round: r, approved, live }).toEqual({ round: r, approved: slots, live: slots });
      }
    } finally {
      for (const w of worlds) await w.close();
      for (const rec of records) await rec.close();
      await db.drop();
    }
  }, 120_000);
});

/**
 * A request-level check is a pack author's code, run by the authority on
 * every request: what it returns is checked before it is read. One that
 * returned nothing (a missing `return []`) threw a TypeError out of the
 * authority's handler ("Cannot read properties of undefined (reading
 * 'length')") instead of approving; a finding that was not an object gave
 * the veto reason "rule x: undefined".
 */
describe('judgeRequestRules: what a custom check returns', () => {
  const facts: RequestFacts = {
    kind: 'create', stack: 's', fleet: 'web', address: 'web/0', owner: 'team-a', dataCenter: 'miami', image: 'ubuntu-22.04',
    size: { cpu: 1, memoryGiB: 1, diskGiB: 10 }, encryptedDisk: false, from: null, to: 'Requested', operation: 'insert',
  };
  const cases: { name: string; returns: unknown; want: Decided }[] = [
    { name: 'no findings: approved', returns: [], want: { ok: true } },
    { name: 'nothing (undefined): approved, as in a plan', returns: undefined, want: { ok: true } },
    { name: 'a finding: vetoed with its message', returns: [{ address: 'web/0', message: 'too big', hint: 'h' }], want: refuse('policy-veto', 'rule checked: too big') },
    { name: 'a string for a finding: the rule failed', returns: ['too big'], want: refuse('policy-veto', 'rule checked failed on web/0: finding 0 is not { address, message, hint } strings: "too big"') },
    { name: 'an object, not an array: the rule failed', returns: { message: 'm' }, want: refuse('policy-veto', 'rule checked failed on web/0: check did not return an array of findings') },
  ];
  it.each(cases)('$name', async ({ returns, want }) => {
    const base = await defaultPack();
    const rule: Rule = { name: 'checked', description: 'd', configSchema: { type: 'object' }, checkRequest: () => returns as Finding[] };
    const pack: LoadedPack = { ...base, rules: new Map([['checked', { rule, enforcement: 'mandatory', config: {} }]]) };
    expect(judgeRequestRules(pack, facts)).toEqual(want);
  });
});

/**
 * A request-level check was handed the authority's own objects: a create's
 * facts held the request's size, which the authority then inserted, and an
 * edge's the cached record row's. A check that wrote `req.size.cpu = 1`
 * and returned no finding had the record hold a 1-vCPU VM where 16 were
 * asked for and counted against quota and capacity, and the next rules
 * judge that. The facts are read-only: a write is the rule failing, a veto.
 */
describe('judgeRequestRules: a check that writes to the request', () => {
  const shrink: Rule = {
    name: 'shrink',
    description: 'd',
    configSchema: { type: 'object' },
    checkRequest(req) {
      (req.size as { cpu: number }).cpu = 1;
      (req as { address: string }).address = 'other/0';
      return [];
    },
  };
  it('leaves the facts as they were and vetoes the request', async () => {
    const base = await defaultPack();
    const seen: unknown[] = [];
    const reader: Rule = { name: 'reader', description: 'd', configSchema: { type: 'object' }, checkRequest: (req) => (seen.push([req.address, req.size.cpu]), []) };
    const pack: LoadedPack = {
      ...base,
      rules: new Map([
        ['shrink', { rule: shrink, enforcement: 'mandatory', config: {} }],
        ['reader', { rule: reader, enforcement: 'mandatory', config: {} }],
      ]),
    };
    const facts: RequestFacts = {
      kind: 'create', stack: 's', fleet: 'web', address: 'web/0', owner: 'team-a', dataCenter: 'miami', image: 'ubuntu-22.04',
      size: { cpu: 16, memoryGiB: 1, diskGiB: 10 }, encryptedDisk: false, from: null, to: 'Requested', operation: 'insert',
    };
    const judged = judgeRequestRules(pack, facts);
    expect(facts).toMatchObject({ address: 'web/0', size: { cpu: 16 } });
    expect(judged).toEqual(refuse('policy-veto', expect.stringMatching(/^rule shrink failed on web\/0: Cannot assign to read only property 'cpu'/)));
    expect(seen).toEqual([]);
  });

  it.each(testBackends())('over HTTP ($name): the record never holds the size the check wrote', async (backend) => {
    const t = await backend.create();
    try {
      const base = await defaultPack();
      const pack: LoadedPack = { ...base, rules: new Map([...base.rules, ['shrink', { rule: shrink, enforcement: 'mandatory', config: {} }]]) };
      const w = await startWorld(t.record, pack);
      try {
        const id = randomUUID();
        const r = await post<AuthorizeResponse>(w, '/v1/authorize', create(id, vm(w, 'web', 'team-a', 0, { size: { cpu: 16, memoryGiB: 4, diskGiB: 10 } })));
        expect(r.body.decision).toBe('vetoed');
        expect(await w.record.getVm(id)).toBeUndefined();
      } finally {
        await w.close();
      }
    } finally {
      await t.cleanup();
    }
  });
});

/** What a request-level check throws, shown: `String(err)` of an object without a prototype threw out of the authority's judgment ("Cannot convert object to primitive value"). */
describe('judgeRequestRules: a check that throws what cannot be shown', () => {
  it('vetoes the request, naming the rule', async () => {
    const base = await defaultPack();
    const rule: Rule = { name: 'weird', description: 'd', configSchema: { type: 'object' }, checkRequest: () => { throw Object.create(null); } };
    const pack: LoadedPack = { ...base, rules: new Map([['weird', { rule, enforcement: 'mandatory', config: {} }]]) };
    const facts: RequestFacts = {
      kind: 'create', stack: 's', fleet: 'web', address: 'web/0', owner: 'team-a', dataCenter: 'miami', image: 'ubuntu-22.04',
      size: { cpu: 1, memoryGiB: 1, diskGiB: 10 }, encryptedDisk: false, from: null, to: 'Requested', operation: 'insert',
    };
    expect(judgeRequestRules(pack, facts)).toEqual(refuse('policy-veto', 'rule weird failed on web/0: {}'));
  });
});
