import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPack } from '../../providers/testing.ts';
import { openRecord } from '../record/index.ts';
import type { FleetRecord } from '../record/types.ts';
import type { LoadedPack } from '../policy/types.ts';
import { diskKey, sha256 } from './keys.ts';
import type { AuthorizeRequest, AuthorizeResponse, AuthorizeVm, BatchAnswerLine, BootAuthorizeResponse, ReportResponse } from './protocol.ts';
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
  const report = (req: AuthorizeRequest, extra: Record<string, unknown>) =>
    ({ dataCenter: req.dataCenter, requestId: req.requestId, planId: req.planId, vmId: req.vmId, from: req.from, to: req.to, ...extra });
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
    const r = await post<ReportResponse>('/v1/reports', report(req, { outcome: 'ok', cloudId: 'cloud-9' }));
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
    const r = await post<{ error: { code: string } }>('/v1/reports', report(req, { outcome: 'ok' }));
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('state-moved');
    expect((await record.getVm(id))!.state).toBe('CreateFailed');
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
    expect(Object.keys(doc.paths).sort()).toEqual(['/openapi.json', '/v1/authorize', '/v1/batch', '/v1/boot/authorize', '/v1/health', '/v1/reports']);
    expect(doc.paths['/v1/authorize'].post.requestBody?.content['application/json'].schema.required).toContain('kind');
    expect(doc.paths['/v1/authorize'].post.security).toEqual([{ bearer: [] }]);
    expect(doc.paths['/v1/health'].get.security).toBeUndefined();
    const health = await (await fetch(`${authority.url}/v1/health`)).json();
    expect(health).toEqual({ ok: true, service: 'authority' });
  });
});
