import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPack } from '../../providers/testing.ts';
import { openRecord } from '../record/index.ts';
import type { FleetRecord } from '../record/types.ts';
import type { LoadedPack } from '../policy/types.ts';
import { diskKey, sha256 } from './keys.ts';
import type { AdvanceResponse, AuthorizeRequest, AuthorizeResponse, AuthorizeVm, BatchAnswerLine, BootAuthorizeResponse, ReportRequest, ReportResponse } from './protocol.ts';
import { Authority } from './authority.ts';
import { startAuthority, type RunningService } from './server.ts';

const STACK = 'auth-test';
const TOKENS = { miami: 'tok-miami', richmond: 'tok-richmond' } as const;
const SECRET = 'authority-test-secret';

let record: FleetRecord;
let pack: LoadedPack;
let authority: RunningService;

beforeAll(async () => {
  record = await openRecord('memory://');
  pack = await defaultPack();
  authority = await startAuthority({
    record,
    pack,
    stackName: STACK,
    dataCenters: Object.entries(TOKENS).map(([name, token]) => ({ name, token })),
    secret: SECRET,
  });
});
afterAll(async () => {
  await authority.close();
  await record.close();
});

async function post<T>(path: string, body: unknown, token: string | undefined = TOKENS.miami): Promise<{ status: number; body: T }> {
  const res = await fetch(`${authority.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

let nextIndex = 0;
function vmSpec(over: Partial<AuthorizeVm> = {}): AuthorizeVm {
  const index = nextIndex++;
  return {
    stack: STACK,
    fleet: 'web',
    owner: 'team-payments',
    index,
    name: `${STACK}-web-${index}`,
    dataCenter: 'miami',
    image: 'ubuntu-22.04',
    size: { cpu: 1, memoryGiB: 2, diskGiB: 10 },
    encryptedDisk: true,
    desiredState: 'Running',
    specHash: 'h',
    ...over,
  };
}

/** Creates a VM in the record through the API and returns its id. */
async function created(over: Partial<AuthorizeVm> = {}): Promise<{ id: string; res: AuthorizeResponse }> {
  const id = randomUUID();
  const vm = vmSpec(over);
  const r = await post<AuthorizeResponse>('/v1/authorize', { dataCenter: vm.dataCenter, requestId: randomUUID(), planId: null, kind: 'create', vmId: id, from: null, vm }, TOKENS[vm.dataCenter as keyof typeof TOKENS]);
  expect(r.status).toBe(200);
  return { id, res: r.body };
}

function transition(vmId: string, from: string, to: string, over: Partial<AuthorizeRequest> = {}): AuthorizeRequest {
  return { dataCenter: 'miami', requestId: randomUUID(), planId: 'plan-x', kind: 'transition', vmId, from, to, ...over };
}

/** The ok report of an approved edge. */
function reportOf(req: AuthorizeRequest, over: Partial<ReportRequest> = {}): ReportRequest {
  return { dataCenter: req.dataCenter, requestId: req.requestId, planId: req.planId, vmId: req.vmId, from: req.from as string, to: req.to as string, outcome: 'ok', ...over };
}

/** Approve + report ok along each edge of `path`. */
async function moveAlong(vmId: string, path: string[], cloudId = 'cloud-1'): Promise<void> {
  for (let i = 1; i < path.length; i++) {
    const req = transition(vmId, path[i - 1], path[i]);
    const a = await post<AuthorizeResponse>('/v1/authorize', req);
    expect(a.body.decision).toBe('approved');
    const r = await post<ReportResponse>('/v1/reports', { dataCenter: 'miami', requestId: req.requestId, planId: null, vmId, from: path[i - 1], to: path[i], outcome: 'ok', ...(a.body.operation === 'createVm' ? { cloudId } : {}) });
    expect(r.body.effect).toBe('moved');
  }
}

describe('authority: create', () => {
  it('inserts the VM in the initial state and translates the image (modified)', async () => {
    const { id, res } = await created();
    expect(res).toMatchObject({ decision: 'modified', operation: 'insert', realImage: 'img-ubuntu-2204-miami-v7', vm: { id, state: 'Requested', dataCenter: 'miami' } });
    expect(res.credentials).toMatchObject({ dataCenter: 'miami' });
    expect((await record.getVm(id))?.state).toBe('Requested');
  });

  it.each([
    { name: 'a VM for another data center', vm: { dataCenter: 'richmond' }, token: TOKENS.miami, reason: 'to be created in data center richmond' },
    { name: 'an image with no translation', vm: { image: 'windows-95' }, token: TOKENS.miami, reason: 'image windows-95 has no translation' },
    { name: 'another stack', vm: { stack: 'other' }, token: TOKENS.miami, reason: 'serves stack auth-test' },
  ])('vetoes $name', async ({ vm, token, reason }) => {
    const id = randomUUID();
    const r = await post<AuthorizeResponse>('/v1/authorize', { dataCenter: 'miami', requestId: randomUUID(), planId: null, kind: 'create', vmId: id, from: null, vm: vmSpec(vm) }, token);
    expect(r.body.decision).toBe('vetoed');
    expect(r.body.reason).toContain(reason);
    expect(r.body.credentials).toBeUndefined();
    expect(await record.getVm(id)).toBeUndefined();
  });
});

describe('authority: transitions', () => {
  it.each([
    { name: 'a skipping transition Requested -> ShuttingDown', req: (id: string) => transition(id, 'Requested', 'ShuttingDown'), reason: 'not an edge' },
    { name: 'Requested -> Running', req: (id: string) => transition(id, 'Requested', 'Running'), reason: 'not an edge' },
    { name: 'a from that is not the current state', req: (id: string) => transition(id, 'PoweredOff', 'PoweredOn'), reason: 'the record has it Requested' },
    { name: 'a request about a VM of another data center', req: (id: string) => transition(id, 'Requested', 'BeingCreated', { dataCenter: 'richmond' }), token: TOKENS.richmond, reason: 'lives in data center miami' },
    { name: 'a body naming another data center than the token', req: (id: string) => transition(id, 'Requested', 'BeingCreated', { dataCenter: 'richmond' }), reason: 'its token belongs to miami' },
    { name: 'a resize while not powered off', req: (id: string) => transition(id, 'Requested', 'Requested', { kind: 'resize', size: { cpu: 2, memoryGiB: 2, diskGiB: 2 } }), reason: 'powered-off' },
  ])('vetoes $name and leaves the record as it was', async ({ req, token, reason }) => {
    const { id } = await created();
    const r = await post<AuthorizeResponse>('/v1/authorize', req(id), token);
    expect(r.status).toBe(200);
    expect(r.body.decision).toBe('vetoed');
    expect(r.body.reason).toContain(reason);
    expect(r.body.credentials).toBeUndefined();
    expect((await record.getVm(id))?.state).toBe('Requested');
  });

  it('a vetoed request about a known VM is written to its history', async () => {
    const { id } = await created();
    await post('/v1/authorize', transition(id, 'Requested', 'ShuttingDown'));
    const vm = await record.getVm(id);
    const h = await record.history(STACK, vm?.address);
    expect(h.find((x) => x.outcome === 'vetoed')).toMatchObject({ from: 'Requested', to: 'ShuttingDown', actor: 'dmz-client:miami' });
  });

  it('moves the record only at the report, one edge at a time', async () => {
    const { id } = await created();
    const req = transition(id, 'Requested', 'BeingCreated');
    const a = await post<AuthorizeResponse>('/v1/authorize', req);
    expect(a.body).toMatchObject({ decision: 'approved', operation: 'none' });
    expect((await record.getVm(id))?.state).toBe('Requested');
    const r = await post<ReportResponse>('/v1/reports', { dataCenter: 'miami', requestId: req.requestId, planId: null, vmId: id, from: 'Requested', to: 'BeingCreated', outcome: 'ok' });
    expect(r.body).toMatchObject({ effect: 'moved', vm: { state: 'BeingCreated' } });
    const again = await post<ReportResponse>('/v1/reports', { dataCenter: 'miami', requestId: req.requestId, planId: null, vmId: id, from: 'Requested', to: 'BeingCreated', outcome: 'ok' });
    expect(again.body.effect).toBe('already');
  });

  it('issues the disk key hash with createVm, and a failed createVm report moves BeingCreated -> CreateFailed', async () => {
    const { id } = await created();
    await moveAlong(id, ['Requested', 'BeingCreated']);
    const req = transition(id, 'BeingCreated', 'PoweredOff');
    const a = await post<AuthorizeResponse>('/v1/authorize', req);
    expect(a.body.operation).toBe('createVm');
    expect(a.body.diskKeyHash).toBe(sha256(diskKey(SECRET, id)));
    const r = await post<ReportResponse>('/v1/reports', { dataCenter: 'miami', requestId: req.requestId, planId: null, vmId: id, from: 'BeingCreated', to: 'PoweredOff', outcome: 'failed', detail: 'quota' });
    expect(r.body).toMatchObject({ effect: 'failed', vm: { state: 'CreateFailed' } });
  });

  it.each([
    { name: 'a report that does not match its authorization', body: (id: string, rid: string) => ({ requestId: rid, vmId: id, from: 'Requested', to: 'BeingDeleted' }), status: 409 },
    { name: 'a report of a skipped edge with no authorization', body: (id: string) => ({ requestId: randomUUID(), vmId: id, from: 'Requested', to: 'Running' }), status: 409 },
    { name: 'a report about an unknown VM', body: () => ({ requestId: randomUUID(), vmId: randomUUID(), from: 'Requested', to: 'BeingCreated' }), status: 404 },
  ])('refuses $name', async ({ body, status }) => {
    const { id } = await created();
    const req = transition(id, 'Requested', 'BeingCreated');
    await post('/v1/authorize', req);
    const r = await post<{ error: { code: string } }>('/v1/reports', { dataCenter: 'miami', planId: null, outcome: 'ok', ...body(id, req.requestId) });
    expect(r.status).toBe(status);
    expect((await record.getVm(id))?.state).toBe('Requested');
  });
});

describe('authority: boot', () => {
  async function booting(): Promise<{ id: string; token: string; realImage: string }> {
    const { id } = await created();
    await moveAlong(id, ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn'], `cloud-${id}`);
    const req = transition(id, 'PoweredOn', 'Starting');
    const a = await post<AuthorizeResponse>('/v1/authorize', req);
    expect(a.body.operation).toBe('boot');
    expect(a.body.bootToken).toBeTruthy();
    return { id, token: a.body.bootToken as string, realImage: 'img-ubuntu-2204-miami-v7' };
  }

  it('approves a VM that matches the record once, releasing its disk key', async () => {
    const { id, token, realImage } = await booting();
    const body = { dataCenter: 'miami', vmId: id, cloudId: `cloud-${id}`, image: realImage, bootToken: token };
    const ok = await post<BootAuthorizeResponse>('/v1/boot/authorize', body);
    expect(ok.body).toMatchObject({ approved: true, diskKey: diskKey(SECRET, id) });
    const replay = await post<BootAuthorizeResponse>('/v1/boot/authorize', body);
    expect(replay.body).toMatchObject({ approved: false, reason: expect.stringContaining('used already') });
    expect(replay.body.diskKey).toBeUndefined();
  });

  it.each([
    { name: 'another cloud id', change: { cloudId: 'cloud-evil' }, reason: 'cloud id' },
    { name: 'another image', change: { image: 'img-evil' }, reason: 'image img-evil' },
    { name: 'a wrong token', change: { bootToken: 'nope' }, reason: 'boot token' },
    { name: 'an unknown VM', change: { vmId: randomUUID() }, reason: 'no VM' },
    { name: 'a VM id that is not a UUID', change: { vmId: 'rogue' }, reason: 'no VM' },
    { name: 'another data center', change: { dataCenter: 'richmond' }, token: TOKENS.richmond, reason: 'lives in data center miami' },
  ])('denies $name and records it', async ({ change, token, reason }) => {
    const { id, token: bootToken, realImage } = await booting();
    const body = { dataCenter: 'miami', vmId: id, cloudId: `cloud-${id}`, image: realImage, bootToken, ...change };
    const r = await post<BootAuthorizeResponse>('/v1/boot/authorize', body, token);
    expect(r.body.approved).toBe(false);
    expect(r.body.reason).toContain(reason);
    expect(r.body.diskKey).toBeUndefined();
    if (body.vmId === id) {
      const vm = await record.getVm(id);
      const h = await record.history(STACK, vm?.address);
      expect(h.some((x) => x.outcome === 'denied')).toBe(true);
    }
  });
});

describe('authority: decisions on the record\'s current row, whoever wrote it', () => {
  // The authority remembers the rows it wrote; another writer of the record
  // (a refresh, a second authority) must still be seen at the next request.
  const behind = async (id: string, to: string) => {
    const vm = (await record.getVm(id))!;
    await record.transitionVm(id, vm.version, to, { actor: 'someone-else', outcome: 'ok' });
  };

  it.each([
    ['the record moved on: a request from the new state is approved', 'PoweredOff', 'PoweredOn', 'approved'],
    ['the record moved on: a request from the remembered state is vetoed', 'BeingCreated', 'PoweredOff', 'vetoed'],
  ])('%s', async (_name, from, to, decision) => {
    const { id } = await created();
    await moveAlong(id, ['Requested', 'BeingCreated']); // remembered at BeingCreated
    await behind(id, 'PoweredOff');
    const a = await post<AuthorizeResponse>('/v1/authorize', transition(id, from, to));
    expect(a.status).toBe(200);
    expect(a.body.decision).toBe(decision);
    expect(a.body.vm?.state).toBe('PoweredOff');
  });

  it('a report on a remembered row that another writer changed moves the current row', async () => {
    const { id } = await created();
    await moveAlong(id, ['Requested', 'BeingCreated']);
    const req = transition(id, 'BeingCreated', 'PoweredOff');
    expect((await post<AuthorizeResponse>('/v1/authorize', req)).body.decision).toBe('approved');
    // Another writer bumps the version without moving the state (a history-only change does not; an update does).
    const vm = (await record.getVm(id))!;
    await record.updateVm(id, vm.version, { cloudId: 'set-elsewhere' }, { actor: 'someone-else' });
    const r = await post<ReportResponse>('/v1/reports', reportOf(req, { cloudId: 'cloud-9' }));
    expect(r.status).toBe(200);
    expect(r.body.effect).toBe('moved');
    const now = (await record.getVm(id))!;
    expect(now.state).toBe('PoweredOff');
    expect(now.cloudId).toBe('cloud-9');
    expect(now.version).toBe(vm.version + 2);
  });

  it('a report for a VM another writer deleted is refused, not written', async () => {
    const { id } = await created();
    await moveAlong(id, ['Requested', 'BeingCreated']);
    const req = transition(id, 'BeingCreated', 'PoweredOff');
    expect((await post<AuthorizeResponse>('/v1/authorize', req)).body.decision).toBe('approved');
    await behind(id, 'CreateFailed');
    const r = await post<{ error: { code: string } }>('/v1/reports', reportOf(req));
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('state-moved');
    expect((await record.getVm(id))!.state).toBe('CreateFailed');
  });
});

describe('authority: advance (a report and the next edge\'s authorization in one call)', () => {
  /** An Authority on the test record whose record calls are listed by method name (each one statement when it succeeds). */
  function counted(): { core: Authority; calls: string[] } {
    const calls: string[] = [];
    const wrapped = new Proxy(record, {
      get(target, prop) {
        const v: unknown = Reflect.get(target, prop);
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          calls.push(String(prop));
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    return { core: new Authority({ record: wrapped, pack, stackName: STACK, secret: SECRET }), calls };
  }

  /** Creates a VM through `core` and moves it along `path` (authorize, then report, per edge). */
  async function coreVm(core: Authority, path: string[]): Promise<string> {
    const id = randomUUID();
    await core.authorize('miami', { dataCenter: 'miami', requestId: randomUUID(), planId: null, kind: 'create', vmId: id, from: null, vm: vmSpec() });
    for (let k = 1; k < path.length; k++) {
      const a = transition(id, path[k - 1], path[k]);
      const ok = await core.authorize('miami', a);
      expect(ok.decision).toBe('approved');
      expect((await core.report('miami', reportOf(a, ok.operation === 'createVm' ? { cloudId: `cloud-${id}` } : {}))).effect).toBe('moved');
    }
    return id;
  }

  const historyOf = async (id: string) => {
    const vm = (await record.getVm(id))!;
    return (await record.history(STACK, vm.address)).filter((h) => h.vmId === id);
  };

  it('walks a whole path: create, then one advance per edge, each one record statement; history: each edge\'s intent, then its transition', async () => {
    const { core, calls } = counted();
    const id = await coreVm(core, ['Requested']);
    const path = ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting', 'Running'];
    const edges = path.slice(1).map((to, k) => transition(id, path[k], to));
    let ahead = await core.authorize('miami', edges[0]);
    const nexts: AuthorizeResponse[] = [];
    for (let k = 0; k + 1 < edges.length; k++) {
      expect(ahead).toMatchObject({ decision: 'approved', vm: { state: edges[k].from } });
      calls.length = 0;
      const res = await core.advance('miami', { report: reportOf(edges[k], ahead.operation === 'createVm' ? { cloudId: 'cloud-adv' } : {}), next: edges[k + 1] });
      expect(res.report).toMatchObject({ effect: 'moved', vm: { state: edges[k].to } });
      // The report's transition and next's intent row are one statement; a boot edge's token is stored as authorize stores it.
      expect(calls).toEqual(edges[k + 1].to === 'Starting' ? ['transitionVms', 'setBootTokens'] : ['transitionVms']);
      ahead = res.next!;
      nexts.push(ahead);
    }
    expect(nexts.map((n) => [n.decision, n.operation, n.credentials?.dataCenter])).toEqual([
      ['approved', 'createVm', 'miami'],
      ['approved', 'powerOn', 'miami'],
      ['approved', 'boot', 'miami'],
      ['approved', 'awaitReady', 'miami'],
    ]);
    expect(nexts[0].diskKeyHash).toBe(sha256(diskKey(SECRET, id)));
    expect(nexts[2].bootToken).toBeTruthy();
    expect((await core.report('miami', reportOf(edges[edges.length - 1]))).vm.state).toBe('Running');
    expect((await historyOf(id)).map((h) => [h.from, h.to, h.actor, h.requestId])).toEqual([
      [null, 'Requested', 'authority', expect.any(String)],
      ...edges.flatMap((e) => [
        [e.from, e.to, 'authority', e.requestId],
        [e.from, e.to, 'dmz-client:miami', e.requestId],
      ]),
    ]);
    expect((await record.getVm(id))!).toMatchObject({ state: 'Running', cloudId: 'cloud-adv', version: 6 });
  });

  // A VM at BeingCreated with BeingCreated -> PoweredOff approved; each case sends an advance of that report and a next.
  it.each<{
    name: string;
    report?: (r: ReportRequest) => ReportRequest;
    next?: (n: AuthorizeRequest) => AuthorizeRequest;
    refused?: { status: number; code: string };
    effect?: ReportResponse['effect'];
    state?: string;
    decided?: { decision: string; reason?: string; operation?: string; history: 'intent' | 'vetoed' | 'none' };
  }>([
    {
      name: 'the common case: moved, and next approved with its intent row',
      effect: 'moved',
      state: 'PoweredOff',
      decided: { decision: 'approved', operation: 'powerOn', history: 'intent' },
    },
    { name: 'a report that does not match its authorization is refused, and next not decided', report: (r) => ({ ...r, to: 'CreateFailed' }), refused: { status: 409, code: 'report-mismatch' } },
    { name: 'a report naming another data center is refused', report: (r) => ({ ...r, dataCenter: 'richmond' }), refused: { status: 403, code: 'wrong-data-center' } },
    { name: 'a create as next is a bad request', next: (n) => ({ ...n, kind: 'create', from: null, to: undefined, vm: vmSpec() }), refused: { status: 400, code: 'bad-request' } },
    { name: 'a next about another VM is a bad request', next: (n) => ({ ...n, vmId: randomUUID() }), refused: { status: 400, code: 'bad-request' } },
    {
      name: 'a next that skips states is vetoed, its veto in the history',
      next: (n) => ({ ...n, to: 'Running' }),
      effect: 'moved',
      state: 'PoweredOff',
      decided: { decision: 'vetoed', reason: 'not an edge', history: 'vetoed' },
    },
    {
      name: 'a next naming another data center is vetoed',
      next: (n) => ({ ...n, dataCenter: 'richmond' }),
      effect: 'moved',
      state: 'PoweredOff',
      decided: { decision: 'vetoed', reason: 'its token belongs to miami', history: 'none' },
    },
    { name: 'a next from another state than the report left is not decided', next: (n) => ({ ...n, from: 'PoweredOn', to: 'Starting' }), effect: 'moved', state: 'PoweredOff' },
    { name: 'a failed outcome: the failure edge is taken and next is not decided', report: (r) => ({ ...r, outcome: 'failed', cloudId: undefined }), effect: 'failed', state: 'CreateFailed' },
  ])('$name', async ({ report = (r) => r, next = (n) => n, refused, effect, state, decided }) => {
    const { id } = await created();
    await moveAlong(id, ['Requested', 'BeingCreated']);
    const a = transition(id, 'BeingCreated', 'PoweredOff');
    expect((await post<AuthorizeResponse>('/v1/authorize', a)).body.decision).toBe('approved');
    const nextReq = next(transition(id, 'PoweredOff', 'PoweredOn'));
    const r = await post<AdvanceResponse & { error?: { code: string } }>('/v1/advance', { report: report(reportOf(a, { cloudId: 'cloud-1' })), next: nextReq });
    const nextRows = (await historyOf(id)).filter((h) => h.requestId === nextReq.requestId);
    if (refused) {
      expect([r.status, r.body.error?.code]).toEqual([refused.status, refused.code]);
      expect((await record.getVm(id))!.state).toBe('BeingCreated');
      expect(nextRows).toEqual([]);
      return;
    }
    expect(r.status).toBe(200);
    expect(r.body.report).toMatchObject({ effect, vm: { state } });
    if (!decided) {
      expect(r.body.next).toBeUndefined();
      expect(nextRows).toEqual([]);
      return;
    }
    expect(r.body.next).toMatchObject({ decision: decided.decision, ...(decided.operation ? { operation: decided.operation } : {}) });
    if (decided.reason) expect(r.body.next?.reason).toContain(decided.reason);
    expect(r.body.next?.credentials === undefined).toBe(decided.decision === 'vetoed');
    const rows = { intent: [['PoweredOff', 'PoweredOn', 'ok', 'authority']], vetoed: [['PoweredOff', 'Running', 'vetoed', 'dmz-client:miami']], none: [] }[decided.history];
    expect(nextRows.map((h) => [h.from, h.to, h.outcome, h.actor])).toEqual(rows);
  });

  it('a repeated advance (its answer was lost) answers already and decides next again', async () => {
    const { id } = await created();
    await moveAlong(id, ['Requested', 'BeingCreated']);
    const a = transition(id, 'BeingCreated', 'PoweredOff');
    expect((await post<AuthorizeResponse>('/v1/authorize', a)).body.decision).toBe('approved');
    const body = { report: reportOf(a, { cloudId: 'cloud-1' }), next: transition(id, 'PoweredOff', 'PoweredOn') };
    const first = await post<AdvanceResponse>('/v1/advance', body);
    const again = await post<AdvanceResponse>('/v1/advance', body);
    expect(first.body).toMatchObject({ report: { effect: 'moved' }, next: { decision: 'approved', operation: 'powerOn' } });
    expect(again.body).toMatchObject({ report: { effect: 'already', vm: { state: 'PoweredOff' } }, next: { decision: 'approved', operation: 'powerOn' } });
    // Next's report is checked against its (repeated) authorization and moves the record.
    const moved = await post<ReportResponse>('/v1/reports', reportOf(body.next));
    expect(moved.body).toMatchObject({ effect: 'moved', vm: { state: 'PoweredOn' } });
    const rows = (await historyOf(id)).filter((h) => h.requestId === body.next.requestId);
    expect(rows.map((h) => h.actor)).toEqual(['authority', 'authority', 'dmz-client:miami']);
  });

  // The row the authority remembers changed behind its back before the advance: decided on a fresh read.
  it.each([
    {
      name: 'another writer bumped the version: the report moves the current row, next folded into it',
      behind: (id: string, v: number) => record.updateVm(id, v, { specHash: 'elsewhere' }, { actor: 'someone-else' }),
      effect: 'moved',
      version: 3,
      calls: ['transitionVms', 'getVms', 'transitionVms'],
    },
    {
      name: 'another writer moved it along the same edge: already, and next decided on the fresh row',
      behind: (id: string, v: number) => record.transitionVm(id, v, 'BeingCreated', { actor: 'someone-else' }),
      effect: 'already',
      version: 2,
      calls: ['transitionVms', 'getVms', 'addHistoryMany'],
    },
  ])('$name', async ({ behind, effect, version, calls: expected }) => {
    const { core, calls } = counted();
    const id = await coreVm(core, ['Requested']);
    const a = transition(id, 'Requested', 'BeingCreated');
    expect((await core.authorize('miami', a)).decision).toBe('approved');
    await behind(id, (await record.getVm(id))!.version);
    calls.length = 0;
    const res = await core.advance('miami', { report: reportOf(a), next: transition(id, 'BeingCreated', 'PoweredOff') });
    expect(res.report).toMatchObject({ effect, vm: { state: 'BeingCreated' } });
    expect(res.next).toMatchObject({ decision: 'approved', operation: 'createVm', vm: { state: 'BeingCreated', version } });
    expect(calls).toEqual(expected);
  });

  it('another writer moved the VM elsewhere: the report is refused and next not decided', async () => {
    const { core } = counted();
    const id = await coreVm(core, ['Requested']);
    const a = transition(id, 'Requested', 'BeingCreated');
    await core.authorize('miami', a);
    await record.transitionVm(id, 1, 'CreateFailed', { actor: 'someone-else' });
    const err = await core.advance('miami', { report: reportOf(a), next: transition(id, 'BeingCreated', 'PoweredOff') }).catch((e: unknown) => e);
    expect(err).toMatchObject({ statusCode: 409, code: 'state-moved' });
    expect((await historyOf(id)).map((h) => h.actor)).toEqual(['authority', 'authority', 'someone-else']);
  });

  it('a resize as next is folded into the report; a resize report falls back to report, then authorize', async () => {
    const { core, calls } = counted();
    const id = await coreVm(core, ['Requested', 'BeingCreated']);
    const a = transition(id, 'BeingCreated', 'PoweredOff');
    await core.authorize('miami', a);
    const size = { cpu: 4, memoryGiB: 8, diskGiB: 10 };
    const resize = transition(id, 'PoweredOff', 'PoweredOff', { kind: 'resize', size });
    calls.length = 0;
    const first = await core.advance('miami', { report: reportOf(a, { cloudId: 'c' }), next: resize });
    expect(first.next).toMatchObject({ decision: 'approved', operation: 'resize' });
    expect(calls).toEqual(['transitionVms']);
    calls.length = 0;
    const second = await core.advance('miami', { report: reportOf(resize, { size }), next: transition(id, 'PoweredOff', 'PoweredOn') });
    expect(second.report).toMatchObject({ effect: 'moved', vm: { state: 'PoweredOff', size } });
    expect(second.next).toMatchObject({ decision: 'approved', operation: 'powerOn' });
    expect(calls).toEqual(['updateVm', 'addHistoryMany']);
    expect((await historyOf(id)).slice(-2).map((h) => [h.from, h.to, h.detail])).toEqual([
      ['PoweredOff', 'PoweredOff', 'intent approved: resize to 4 cpu / 8 GiB / 10 GiB disk'],
      ['PoweredOff', 'PoweredOn', 'intent approved: powerOn'],
    ]);
  });
});

/** POSTs a batch; its NDJSON answer lines put back in call order. */
async function batch(body: unknown): Promise<{ status: number; type: string | null; results: BatchAnswerLine[] }> {
  const res = await fetch(`${authority.url}/v1/batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKENS.miami}` },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  const lines = text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as BatchAnswerLine);
  return { status: res.status, type: res.headers.get('content-type'), results: lines.sort((a, b) => a.i - b.i) };
}

describe('authority: batches', () => {
  it('answers each call of a batch as its single route would, one NDJSON line each', async () => {
    const { id } = await created();
    const newId = randomUUID();
    const r = await batch({
      calls: [
        { call: 'authorize', body: { dataCenter: 'miami', requestId: randomUUID(), planId: null, kind: 'create', vmId: newId, from: null, vm: vmSpec() } },
        { call: 'authorize', body: transition(id, 'Requested', 'ShuttingDown') },
        { call: 'report', body: { dataCenter: 'miami', requestId: randomUUID(), planId: null, vmId: randomUUID(), from: 'Requested', to: 'BeingCreated', outcome: 'ok' } },
        { call: 'boot', body: { dataCenter: 'miami', vmId: randomUUID(), cloudId: 'c', image: 'i', bootToken: 't' } },
      ],
    });
    expect(r.status).toBe(200);
    expect(r.type).toBe('application/x-ndjson');
    expect(r.results.map((x) => [x.i, x.status])).toEqual([
      [0, 200],
      [1, 200],
      [2, 404],
      [3, 200],
    ]);
    expect(r.results[0].body).toMatchObject({ decision: 'modified', operation: 'insert', vm: { id: newId, state: 'Requested' } });
    expect(r.results[1].body).toMatchObject({ decision: 'vetoed', reason: expect.stringContaining('not an edge') });
    expect(r.results[2].body).toEqual({ error: { code: 'unknown-vm', message: expect.stringContaining('is not in the record') } });
    expect(r.results[3].body).toMatchObject({ approved: false });
    expect((await record.getVm(newId))?.state).toBe('Requested');
    expect((await record.getVm(id))?.state).toBe('Requested');
  });

  it('calls about one VM in a batch run in their order', async () => {
    const { id } = await created();
    const a = transition(id, 'Requested', 'BeingCreated');
    const r = await batch({
      calls: [
        { call: 'authorize', body: a },
        { call: 'report', body: { dataCenter: 'miami', requestId: a.requestId, planId: a.planId, vmId: id, from: 'Requested', to: 'BeingCreated', outcome: 'ok' } },
      ],
    });
    expect(r.results.map((x) => x.status)).toEqual([200, 200]);
    expect(r.results[1].body).toMatchObject({ effect: 'moved', vm: { state: 'BeingCreated' } });
  });

  it('answers an advance call as POST /v1/advance would; a create as its next fails alone with 400', async () => {
    const [{ id }, { id: other }] = await Promise.all([created(), created()]);
    const a = transition(id, 'Requested', 'BeingCreated');
    const b = transition(other, 'Requested', 'BeingCreated');
    await Promise.all([post('/v1/authorize', a), post('/v1/authorize', b)]);
    const r = await batch({
      calls: [
        { call: 'advance', body: { report: reportOf(a), next: transition(id, 'BeingCreated', 'PoweredOff') } },
        { call: 'advance', body: { report: reportOf(b), next: { ...transition(other, 'Requested', 'Requested'), kind: 'create', from: null, vm: vmSpec() } } },
      ],
    });
    expect(r.results.map((x) => x.status)).toEqual([200, 400]);
    expect(r.results[0].body).toMatchObject({ report: { effect: 'moved', vm: { state: 'BeingCreated' } }, next: { decision: 'approved', operation: 'createVm' } });
    expect(r.results[1].body).toEqual({ error: { code: 'bad-request', message: expect.stringContaining('a create is never the next edge') } });
    expect((await record.getVm(other))?.state).toBe('Requested');
  });

  it.each([
    ['an unknown call', { calls: [{ call: 'delete-everything', body: {} }] }],
    ['a call whose body is outside its schema', { calls: [{ call: 'report', body: { dataCenter: 'miami' } }] }],
    ['no calls', { calls: [] }],
  ])('refuses %s with 400 and runs none of the batch', async (_name, body) => {
    const r = await post<{ error: { code: string } }>('/v1/batch', body);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('bad-request');
  });

  it('answers 401 to a batch without a valid token', async () => {
    const r = await post<{ error: { code: string } }>('/v1/batch', { calls: [] }, 'wrong');
    expect(r.status).toBe(401);
  });
});

describe('authority: HTTP surface', () => {
  it('answers 401 without or with an unknown token', async () => {
    for (const token of ['', 'wrong']) {
      const r = await post<{ error: { code: string } }>('/v1/authorize', {}, token);
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe('unauthorized');
    }
  });

  it('answers 400 to a body outside the schema', async () => {
    const r = await post<{ error: { code: string; message: string } }>('/v1/authorize', { dataCenter: 'miami', extra: 1 });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('bad-request');
  });

  it('serves an OpenAPI 3 document of its routes, built from the route schemas', async () => {
    const res = await fetch(`${authority.url}/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as {
      openapi: string;
      paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { required?: string[] } }> }; security?: unknown }>>;
    };
    expect(doc.openapi).toBe('3.0.3');
    expect(Object.keys(doc.paths).sort()).toEqual(['/openapi.json', '/v1/advance', '/v1/authorize', '/v1/batch', '/v1/boot/authorize', '/v1/health', '/v1/reports']);
    expect(doc.paths['/v1/advance'].post.requestBody?.content['application/json'].schema.required).toEqual(['report', 'next']);
    expect(doc.paths['/v1/authorize'].post.requestBody?.content['application/json'].schema.required).toContain('kind');
    expect(doc.paths['/v1/authorize'].post.security).toEqual([{ bearer: [] }]);
    expect(doc.paths['/v1/health'].get.security).toBeUndefined();
    const health = await (await fetch(`${authority.url}/v1/health`)).json();
    expect(health).toEqual({ ok: true, service: 'authority' });
  });
});
