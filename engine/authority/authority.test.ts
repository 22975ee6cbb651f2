import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPack } from '../../providers/testing.ts';
import { openRecord } from '../record/index.ts';
import type { SqlRecord } from '../record/record.ts';
import { bootAttempts } from '../record/testing.ts';
import type { FleetRecord } from '../record/types.ts';
import type { LoadedPack } from '../policy/types.ts';
import { diskKey } from './keys.ts';
import { credentialKey, scopedTokenProblem, sha256 } from '../../protocol/index.ts';
import { ScopedTokenIssuer } from './credentials/scoped.ts';
import { NONE_REPORT_DETAIL } from '../../protocol/index.ts';
import type { AdvanceRequest, AdvanceResponse, AuthorizeRequest, AuthorizeResponse, AuthorizeVm, BatchAnswerLine, BootAuthorizeResponse, ReportRequest, ReportResponse } from '../../protocol/index.ts';
import { Authority } from './authority.ts';
import { detailOf } from './answers.ts';
import { BOOT_DENIED_REASON } from './boot.ts';
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

describe('authority: a NUL character in a field (the record cannot store one)', () => {
  // Found by QA: each was a 500 `internal` ("invalid byte sequence for encoding UTF8: 0x00") from the record's
  // insert; a DMZ client retried it 4 times and answered 503 authority-unreachable, which the CLI retried again.
  const NUL = '\u0000';
  it.each([
    ['a create\'s owner', '/v1/authorize', () => ({ dataCenter: 'miami', requestId: randomUUID(), planId: null, kind: 'create', vmId: randomUUID(), from: null, vm: vmSpec({ owner: `team${NUL}` }) }), 'body/vm/owner'],
    ['a create\'s fleet', '/v1/authorize', () => ({ dataCenter: 'miami', requestId: randomUUID(), planId: null, kind: 'create', vmId: randomUUID(), from: null, vm: vmSpec({ fleet: `w${NUL}b` }) }), 'body/vm/fleet'],
    ['a transition\'s planId', '/v1/authorize', () => transition(randomUUID(), 'PoweredOff', 'PoweredOn', { planId: `p${NUL}` }), 'body/planId'],
    ['a boot\'s cloud id', '/v1/boot/authorize', () => ({ dataCenter: 'miami', vmId: randomUUID(), cloudId: `c${NUL}`, image: 'i', bootToken: 't' }), 'body/cloudId'],
    ['a batched boot\'s vmId', '/v1/batch', () => ({ calls: [{ call: 'boot', body: { dataCenter: 'miami', vmId: `v${NUL}`, cloudId: 'c', image: 'i', bootToken: 't' } }] }), 'body/calls/0/body/vmId'],
  ])('%s: 400 bad-request naming the field, nothing written', async (_name, path, body, where) => {
    const before = (await record.listVms(STACK)).length;
    const r = await post<{ error: { code: string; message: string } }>(path, body());
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('bad-request');
    expect(r.body.error.message).toContain(`${where} holds a NUL character`);
    expect((await record.listVms(STACK)).length).toBe(before);
  });

  it('a report\'s detail with a NUL about a known VM is refused too; the VM is unchanged', async () => {
    const { id } = await created();
    const req = transition(id, 'Requested', 'BeingCreated');
    expect((await post<AuthorizeResponse>('/v1/authorize', req)).body.decision).toBe('approved');
    const r = await post<{ error: { code: string } }>('/v1/reports', reportOf(req, { outcome: 'failed', detail: `x${NUL}` }));
    expect([r.status, r.body.error.code]).toEqual([400, 'bad-request']);
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

  it('approves a VM that matches the record, releasing its disk key; the same presentation again (a resumed agent) gets the same answer until the VM moves on', async () => {
    const { id, token, realImage } = await booting();
    const body = { dataCenter: 'miami', vmId: id, cloudId: `cloud-${id}`, image: realImage, bootToken: token };
    const ok = await post<BootAuthorizeResponse>('/v1/boot/authorize', body);
    expect(ok.body).toMatchObject({ approved: true, diskKey: diskKey(SECRET, id) });
    const repeat = await post<BootAuthorizeResponse>('/v1/boot/authorize', body);
    expect(repeat.body).toEqual(ok.body);
    // The VM boots on (Starting) and reports ready (Running): the token is no longer answered.
    await moveAlong(id, ['PoweredOn', 'Starting', 'Running']);
    const late = await post<BootAuthorizeResponse>('/v1/boot/authorize', body);
    // The caller is told nothing of the record (the VM's state); the operator's history says why.
    // The VM is told nothing of the record (the VM's state): its DMZ client gets why beside the fixed reason (detail),
    // takes it off and keeps it for its operator; the history says it too.
    expect(late.body).toEqual({ approved: false, reason: BOOT_DENIED_REASON, detail: expect.stringContaining('boot token is not one the authority issued') });
    // (Its token, replaced by the boot edge moveAlong approved again and used, is no longer the VM's: judged first.)
    expect((await record.history(STACK, (await record.getVm(id))?.address)).at(-1)).toMatchObject({ outcome: 'denied', detail: expect.stringMatching(/^boot denied: /) });
  });

  it('answers a repeat after the boot edge\'s own report, but not once the VM left its boot and came back without a new boot edge; the denial says why and is recorded', async () => {
    const { id } = await created();
    await moveAlong(id, ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn'], `cloud-${id}`);
    const boot = transition(id, 'PoweredOn', 'Starting');
    const a = await post<AuthorizeResponse>('/v1/authorize', boot);
    const body = { dataCenter: 'miami', vmId: id, cloudId: `cloud-${id}`, image: 'img-ubuntu-2204-miami-v7', bootToken: a.body.bootToken as string };
    expect((await post<BootAuthorizeResponse>('/v1/boot/authorize', body)).body).toMatchObject({ approved: true, diskKey: diskKey(SECRET, id) });
    // The boot's report comes in (PoweredOn -> Starting); the agent, resumed after a crash, asks again: answered.
    expect((await post<ReportResponse>('/v1/reports', reportOf(boot))).body.effect).toBe('moved');
    expect((await post<BootAuthorizeResponse>('/v1/boot/authorize', body)).body).toMatchObject({ approved: true, diskKey: diskKey(SECRET, id) });
    // The boot failed; the VM is powered off and on again along approved edges that issue no boot token, and is
    // booting (PoweredOn) again within the hour. Before: the used token was answered again, with the disk key.
    await record.transitionVm(id, (await record.getVm(id))!.version, 'BootFailed', { actor: 'dmz-client:miami' });
    await moveAlong(id, ['BootFailed', 'PoweredOff', 'PoweredOn']);
    const denied = await post<BootAuthorizeResponse>('/v1/boot/authorize', body);
    expect(denied.body).toEqual({ approved: false, reason: BOOT_DENIED_REASON, detail: expect.stringMatching(/has moved since the boot token was used/) });
    expect((await bootAttempts(record as SqlRecord, { vmId: id })).map((b) => b.approved)).toEqual([true, false]);
    const vm = await record.getVm(id);
    expect((await record.history(STACK, vm?.address)).at(-1)).toMatchObject({
      from: 'PoweredOn',
      to: 'PoweredOn',
      outcome: 'denied',
      detail: expect.stringMatching(/^boot denied: .*has moved since the boot token was used/),
    });
  });

  // `fleet state rm` retires the row in its state with one write: a forgotten VM that was booting still got its disk
  // key, with its unused token and with a used one's repeat.
  it.each([{ used: false }, { used: true }])('denies a VM the record forgot (fleet state rm) while it booted (token used before: $used)', async ({ used }) => {
    const { id, token, realImage } = await booting();
    const body = { dataCenter: 'miami', vmId: id, cloudId: `cloud-${id}`, image: realImage, bootToken: token };
    if (used) expect((await post<BootAuthorizeResponse>('/v1/boot/authorize', body)).body.approved).toBe(true);
    const vm = (await record.getVm(id))!;
    await record.transitionVm(id, vm.version, vm.state, { actor: 'alice', outcome: 'removed', detail: 'fleet state rm' }, { retire: true });
    const r = await post<BootAuthorizeResponse>('/v1/boot/authorize', body);
    expect(r.body).toEqual({ approved: false, reason: BOOT_DENIED_REASON, detail: expect.stringContaining('no longer tracks') });
    expect((await bootAttempts(record as SqlRecord, { vmId: id })).at(-1)?.reason).toContain('no longer tracks');
  });

  // The VM is answered BOOT_DENIED_REASON whatever the cause; why is the operator's (the boot attempt row), and its
  // DMZ client's (`detail`, which it takes off before answering the VM), but for a VM of another data center.
  it.each([
    { name: 'another cloud id', change: { cloudId: 'cloud-evil' }, reason: 'cloud id' },
    { name: 'another image', change: { image: 'img-evil' }, reason: 'image img-evil' },
    { name: 'a wrong token', change: { bootToken: 'nope' }, reason: 'boot token is not one the authority issued' },
    { name: 'a wrong token and another image', change: { bootToken: 'nope', image: 'img-evil' }, reason: 'boot token is not one the authority issued' },
    { name: 'an unknown VM', change: { vmId: randomUUID() }, reason: 'no VM' },
    { name: 'a VM id that is not a UUID', change: { vmId: 'rogue' }, reason: 'no VM' },
    { name: 'another data center', change: { dataCenter: 'richmond' }, token: TOKENS.richmond, reason: 'lives in data center miami' },
  ])('denies $name and records it', async ({ change, token, reason }) => {
    const { id, token: bootToken, realImage } = await booting();
    const body = { dataCenter: 'miami', vmId: id, cloudId: `cloud-${id}`, image: realImage, bootToken, ...change };
    const r = await post<BootAuthorizeResponse>('/v1/boot/authorize', body, token);
    expect(r.body).toEqual({ approved: false, reason: BOOT_DENIED_REASON, ...(token ? {} : { detail: expect.stringContaining(reason) }) });
    expect((await bootAttempts(record as SqlRecord)).at(-1)?.reason).toContain(reason);
    if (body.vmId === id) {
      const vm = await record.getVm(id);
      const h = await record.history(STACK, vm?.address);
      expect(h.some((x) => x.outcome === 'denied')).toBe(true);
    }
  });
});

describe('authority: boot, record statements', () => {
  /** A VM at PoweredOn with its boot edge approved by an advance (the token stored with the transition); its boot body. */
  async function bootingIn(core: Authority, calls: string[]) {
    const id = await coreVm(core, ['Requested', 'BeingCreated', 'PoweredOff']);
    const a = transition(id, 'PoweredOff', 'PoweredOn');
    await core.authorize('miami', a);
    calls.length = 0;
    const res = await core.advance('miami', { report: reportOf(a), next: [transition(id, 'PoweredOn', 'Starting')] });
    expect(calls).toEqual(['transitionVms']);
    const token = res.next[0].authorize.bootToken!;
    expect(token).toBeTruthy();
    return { id, body: { dataCenter: 'miami', vmId: id, cloudId: `cloud-${id}`, image: 'img-ubuntu-2204-miami-v7', bootToken: token } };
  }

  it('an approved boot is one statement (row check, token use, attempt row); a denial is recorded as before', async () => {
    const { core, calls } = counted();
    const { id, body } = await bootingIn(core, calls);
    calls.length = 0;
    expect(await core.bootAuthorize('miami', body)).toMatchObject({ approved: true, diskKey: diskKey(SECRET, id) });
    expect(calls).toEqual(['authorizeBoots']);
    // A repeat (the agent lost the answer to a crash): the same statement, approved again, recorded once.
    calls.length = 0;
    expect(await core.bootAuthorize('miami', body)).toMatchObject({ approved: true, diskKey: diskKey(SECRET, id) });
    expect(calls).toEqual(['authorizeBoots']);
    // Past the repeat window (its first use two hours ago): denied, and the denial recorded.
    await (record as SqlRecord).sql.query(`UPDATE boot_tokens SET used_at = now() - interval '2 hours' WHERE vm_id = $1`, [id]);
    calls.length = 0;
    const late = await core.bootAuthorize('miami', body);
    expect([late, detailOf(late)]).toEqual([{ approved: false, reason: BOOT_DENIED_REASON, detail: expect.stringContaining('used already') }, expect.stringContaining('used already')]);
    expect(calls).toEqual(['authorizeBoots', 'addBootAttempts', 'addHistory']);
    expect((await bootAttempts(record as SqlRecord, { vmId: id })).map((b) => [b.approved, b.reason])).toEqual([
      [true, 'matches the record'],
      [false, 'the boot token is not valid for this VM or was used already'],
    ]);
    expect((await historyOf(id)).at(-1)).toMatchObject({ from: 'PoweredOn', to: 'PoweredOn', outcome: 'denied', actor: 'authority' });
  });

  it('a token presented for another VM is denied, and stays good for its own', async () => {
    const { core, calls } = counted();
    const mine = await bootingIn(core, calls);
    const other = await bootingIn(core, calls);
    const denied = await core.bootAuthorize('miami', { ...other.body, bootToken: mine.body.bootToken });
    expect([denied.approved, detailOf(denied)]).toEqual([false, expect.stringContaining('boot token is not one the authority issued')]);
    expect((await core.bootAuthorize('miami', mine.body)).approved).toBe(true);
    expect(await core.bootAuthorize('miami', { ...other.body, bootToken: mine.body.bootToken })).toMatchObject({ approved: false });
    expect((await core.bootAuthorize('miami', other.body)).approved).toBe(true);
  });

  it('a boot edge approved again before its boot was reported (the next apply after a crash): the first token, maybe booting in the cloud, is still answered, once; the new one too', async () => {
    const { core, calls } = counted();
    const { id, body: first } = await bootingIn(core, calls);
    // The first boot went out and its report was lost; the next apply asks for the boot edge again: a new token.
    const again = await core.authorize('miami', transition(id, 'PoweredOn', 'Starting'));
    expect(again.bootToken).toBeTruthy();
    expect(again.bootToken).not.toBe(first.bootToken);
    const second = { ...first, bootToken: again.bootToken! };
    // The VM still booting with the first token asks: approved (before the fix: denied, and the sim terminated the VM).
    expect(await core.bootAuthorize('miami', first)).toMatchObject({ approved: true, diskKey: diskKey(SECRET, id) });
    expect(await core.bootAuthorize('miami', second)).toMatchObject({ approved: true, diskKey: diskKey(SECRET, id) });
    // Each once (a repeat within the window is answered again, recorded once); never for another VM or cloud id.
    expect((await bootAttempts(record as SqlRecord, { vmId: id })).filter((b) => b.approved)).toHaveLength(2);
    const other = await bootingIn(core, calls);
    expect(await core.bootAuthorize('miami', { ...other.body, bootToken: first.bootToken })).toMatchObject({ approved: false });
    expect(await core.bootAuthorize('miami', { ...first, cloudId: 'cloud-evil' })).toMatchObject({ approved: false });
    // A third approval replaces the second, used: the first and the second are denied now.
    const third = await core.authorize('miami', transition(id, 'PoweredOn', 'Starting'));
    const old = await core.bootAuthorize('miami', first);
    expect([old.approved, detailOf(old)]).toEqual([false, expect.stringContaining('boot token is not one the authority issued')]);
    expect(await core.bootAuthorize('miami', second)).toMatchObject({ approved: false });
    expect(await core.bootAuthorize('miami', { ...first, bootToken: third.bootToken! })).toMatchObject({ approved: true });
  });

  it('a boot naming another data center than its token is denied and written to the VM\'s history', async () => {
    const { core, calls } = counted();
    const { id, body } = await bootingIn(core, calls);
    const res = await core.bootAuthorize('richmond', body);
    expect([res, detailOf(res)]).toEqual([{ approved: false, reason: BOOT_DENIED_REASON }, expect.stringContaining('token belongs to richmond')]);
    expect((await historyOf(id)).at(-1)).toMatchObject({ outcome: 'denied', detail: expect.stringContaining('token belongs to richmond') });
    // The token is still good for the VM's own data center.
    expect((await core.bootAuthorize('miami', body)).approved).toBe(true);
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

/**
 * An Authority on the test record whose record calls are listed by method
 * name (each one statement when it succeeds). The fence check's reads every
 * authorization makes (its fleet's fence, `fencesOf`, after the VM's row,
 * `getVms`, when nothing else needed the row first) are counted apart, in
 * `fenceReads`, so the lists show the statements a request's work takes.
 */
function counted(): { core: Authority; calls: string[]; fenceReads: string[] } {
  const calls: string[] = [];
  const fenceReads: string[] = [];
  const wrapped = new Proxy(record, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        if (prop === 'fencesOf') {
          if (calls.at(-1) === 'getVms') fenceReads.push(calls.pop()!);
          fenceReads.push('fencesOf');
        } else {
          calls.push(String(prop));
        }
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { core: new Authority({ record: wrapped, pack, stackName: STACK, secret: SECRET }), calls, fenceReads };
}

/** Creates a VM through `core` and moves it along `path` (authorize, then report, per edge). */
async function coreVm(core: Authority, path: string[]): Promise<string> {
  const id = randomUUID();
  await core.authorize('miami', createOf(id));
  for (let k = 1; k < path.length; k++) {
    const a = transition(id, path[k - 1], path[k]);
    const ok = await core.authorize('miami', a);
    expect(ok.decision).toBe('approved');
    expect((await core.report('miami', reportOf(a, ok.operation === 'createVm' ? { cloudId: `cloud-${id}` } : {}))).effect).toBe('moved');
  }
  return id;
}

function createOf(id: string, over: Partial<AuthorizeVm> = {}): AuthorizeRequest {
  return { dataCenter: 'miami', requestId: randomUUID(), planId: 'plan-x', kind: 'create', vmId: id, from: null, vm: vmSpec(over) };
}

const historyOf = async (id: string) => {
  const vm = (await record.getVm(id))!;
  return (await record.history(STACK, vm.address)).filter((h) => h.vmId === id);
};

/** The path of the default pack from the initial state to Running. */
const TO_RUNNING = ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting', 'Running'];

describe('authority: advance (a report or a create, and the next edges\' authorizations, in one call)', () => {
  it('walks a whole path: create, then one advance per edge, each one record statement; history: each edge\'s intent, then its transition', async () => {
    const { core, calls } = counted();
    const id = await coreVm(core, ['Requested']);
    const edges = TO_RUNNING.slice(1).map((to, k) => transition(id, TO_RUNNING[k], to));
    let ahead = await core.authorize('miami', edges[0]);
    const nexts: AuthorizeResponse[] = [];
    for (let k = 0; k + 1 < edges.length; k++) {
      expect(ahead).toMatchObject({ decision: 'approved', vm: { state: edges[k].from } });
      calls.length = 0;
      const res = await core.advance('miami', { report: reportOf(edges[k], ahead.operation === 'createVm' ? { cloudId: 'cloud-adv' } : {}), next: [edges[k + 1]] });
      expect(res.report).toMatchObject({ effect: 'moved', vm: { state: edges[k].to } });
      // The report's transition and next's intent row (and a boot edge's token) are one statement.
      expect(calls).toEqual(['transitionVms']);
      expect(res.next).toHaveLength(1);
      expect(res.next[0].moved).toBeUndefined();
      ahead = res.next[0].authorize;
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

  it('a create and the chain after it (a none edge moved at once, then createVm authorized) are one statement; the rows are those of the single calls', async () => {
    const { core, calls } = counted();
    const id = randomUUID();
    const create = createOf(id);
    const [e1, e2] = [transition(id, 'Requested', 'BeingCreated'), transition(id, 'BeingCreated', 'PoweredOff')];
    const res = await core.advance('miami', { create, next: [e1, e2] });
    expect(calls).toEqual(['insertVms']);
    expect(res.create).toMatchObject({ decision: 'modified', operation: 'insert', vm: { id, state: 'Requested', version: 1 } });
    expect(res.next).toHaveLength(2);
    expect(res.next[0]).toMatchObject({
      authorize: { decision: 'approved', operation: 'none', vm: { state: 'Requested', version: 1 } },
      moved: { effect: 'moved', vm: { state: 'BeingCreated', version: 2 } },
    });
    expect(res.next[1].moved).toBeUndefined();
    expect(res.next[1].authorize).toMatchObject({ decision: 'approved', operation: 'createVm', diskKeyHash: sha256(diskKey(SECRET, id)), vm: { state: 'BeingCreated', version: 2 } });
    expect((await record.getVm(id))!).toMatchObject({ state: 'BeingCreated', version: 2 });
    // e2 is carried out as if authorized alone: its report moves the record.
    expect((await core.report('miami', reportOf(e2, { cloudId: 'c-1' }))).effect).toBe('moved');
    // The same rows as create, authorize e1, report e1, authorize e2, report e2 one by one, as the DMZ client sends them.
    const single = randomUUID();
    await core.authorize('miami', createOf(single));
    for (const e of [transition(single, 'Requested', 'BeingCreated'), transition(single, 'BeingCreated', 'PoweredOff')]) {
      const ok = await core.authorize('miami', e);
      await core.report('miami', reportOf(e, ok.operation === 'none' ? { detail: NONE_REPORT_DETAIL } : { cloudId: 'c-1' }));
    }
    const shape = (rows: Awaited<ReturnType<typeof historyOf>>) => rows.map((h) => [h.from, h.to, h.actor, h.outcome, h.planId, h.detail]);
    expect(shape(await historyOf(id))).toEqual(shape(await historyOf(single)));
    expect((await historyOf(id)).map((h) => h.requestId)).toEqual([create.requestId, e1.requestId, e1.requestId, e2.requestId, e2.requestId]);
  });

  it('a report and the chain after it (a none edge moved at once, then deleteVm authorized) are one statement, after a read of the fleet\'s protection', async () => {
    const { core, calls } = counted();
    const id = await coreVm(core, [...TO_RUNNING, 'ShuttingDown']);
    const a = transition(id, 'ShuttingDown', 'PoweredOff');
    await core.authorize('miami', a);
    const [n1, n2] = [transition(id, 'PoweredOff', 'BeingDeleted'), transition(id, 'BeingDeleted', 'Deleted')];
    calls.length = 0;
    const res = await core.advance('miami', { report: reportOf(a), next: [n1, n2] });
    // The chain commits the VM to deletion: it is foreseen only once the record says the fleet is not protected.
    expect(calls).toEqual(['listFleets', 'transitionVms']);
    expect(res.report).toMatchObject({ effect: 'moved', vm: { state: 'PoweredOff', version: 8 } });
    expect(res.next.map((s) => [s.authorize.decision, s.authorize.operation, s.authorize.vm?.state, s.moved?.effect, s.moved?.vm.state])).toEqual([
      ['approved', 'none', 'PoweredOff', 'moved', 'BeingDeleted'],
      ['approved', 'deleteVm', 'BeingDeleted', undefined, undefined],
    ]);
    expect((await core.report('miami', reportOf(n2))).vm).toMatchObject({ state: 'Deleted', version: 10 });
    expect((await historyOf(id)).slice(-6).map((h) => [h.from, h.to, h.actor, h.requestId, h.detail])).toEqual([
      ['ShuttingDown', 'PoweredOff', 'authority', a.requestId, 'intent approved: powerOff'],
      ['ShuttingDown', 'PoweredOff', 'dmz-client:miami', a.requestId, null],
      ['PoweredOff', 'BeingDeleted', 'authority', n1.requestId, 'intent approved: none'],
      ['PoweredOff', 'BeingDeleted', 'dmz-client:miami', n1.requestId, 'record only'],
      ['BeingDeleted', 'Deleted', 'authority', n2.requestId, 'intent approved: deleteVm'],
      ['BeingDeleted', 'Deleted', 'dmz-client:miami', n2.requestId, null],
    ]);
  });

  it('a middle edge whose operation is not none is answered as authorize would, not moved, and nothing after it is decided', async () => {
    const { core, calls } = counted();
    const id = await coreVm(core, ['Requested', 'BeingCreated']);
    const a = transition(id, 'BeingCreated', 'PoweredOff');
    await core.authorize('miami', a);
    const [n1, n2] = [transition(id, 'PoweredOff', 'PoweredOn'), transition(id, 'PoweredOn', 'Starting')];
    calls.length = 0;
    const res = await core.advance('miami', { report: reportOf(a, { cloudId: 'c' }), next: [n1, n2] });
    expect(calls).toEqual(['transitionVms']);
    expect(res.next).toHaveLength(1);
    expect(res.next[0]).toEqual({ authorize: expect.objectContaining({ decision: 'approved', operation: 'powerOn' }) });
    expect((await record.getVm(id))!.state).toBe('PoweredOff');
    expect((await historyOf(id)).filter((h) => h.requestId === n2.requestId)).toEqual([]);
    // n1 is approved: its report moves the record.
    expect((await core.report('miami', reportOf(n1))).effect).toBe('moved');
  });

  it.each<{ name: string; second: (id: string) => AuthorizeRequest; reason: string; history: unknown[][]; calls: string[] }>([
    {
      name: 'a skipped state',
      second: (id) => transition(id, 'BeingDeleted', 'Running'),
      reason: 'not an edge',
      history: [['BeingDeleted', 'Running', 'vetoed', 'dmz-client:miami']],
      // The chain's statement stops before the vetoed edge, which is decided on a fresh read as authorize decides it.
      calls: ['listFleets', 'transitionVms', 'getVms', 'addHistory'],
    },
    {
      name: 'another data center named',
      second: (id) => transition(id, 'BeingDeleted', 'Deleted', { dataCenter: 'richmond' }),
      reason: 'its token belongs to miami',
      history: [],
      calls: ['listFleets', 'transitionVms'],
    },
  ])('a veto mid-chain ($name) stops it there; the none edge before it is moved', async ({ second, reason, history, calls: expected }) => {
    const { core, calls } = counted();
    const id = await coreVm(core, [...TO_RUNNING, 'ShuttingDown']);
    const a = transition(id, 'ShuttingDown', 'PoweredOff');
    await core.authorize('miami', a);
    const n1 = transition(id, 'PoweredOff', 'BeingDeleted');
    const n2 = second(id);
    calls.length = 0;
    const res = await core.advance('miami', { report: reportOf(a), next: [n1, n2, transition(id, n2.to!, 'Deleted')] });
    expect(calls).toEqual(expected);
    expect(res.next.map((s) => [s.authorize.decision, s.moved?.effect])).toEqual([
      ['approved', 'moved'],
      ['vetoed', undefined],
    ]);
    expect(res.next[1].authorize.reason).toContain(reason);
    expect(res.next[1].authorize.credentials).toBeUndefined();
    expect((await record.getVm(id))!.state).toBe('BeingDeleted');
    expect((await historyOf(id)).filter((h) => h.requestId === n2.requestId).map((h) => [h.from, h.to, h.outcome, h.actor])).toEqual(history);
  });

  it('a vetoed create stops everything: nothing is inserted, no edge decided', async () => {
    const { core, calls } = counted();
    const id = randomUUID();
    for (const [create, token] of [
      [createOf(id, { image: 'windows-95' }), 'miami'],
      [createOf(id, { dataCenter: 'richmond' }), 'miami'],
      [{ ...createOf(id), dataCenter: 'richmond' }, 'miami'],
    ] as const) {
      const res = await core.advance(token, { create, next: [transition(id, 'Requested', 'BeingCreated'), transition(id, 'BeingCreated', 'PoweredOff')] });
      expect(res).toEqual({ create: expect.objectContaining({ decision: 'vetoed' }), next: [] });
    }
    expect(calls).toEqual([]);
    expect(await record.getVm(id)).toBeUndefined();
  });

  it('a chain about a VM of another data center: the report is refused (403), nothing decided', async () => {
    const { core } = counted();
    const id = await coreVm(core, ['Requested']);
    const a = transition(id, 'Requested', 'BeingCreated');
    await core.authorize('miami', a);
    const err = await core.advance('richmond', { report: { ...reportOf(a), dataCenter: 'richmond' }, next: [transition(id, 'BeingCreated', 'PoweredOff', { dataCenter: 'richmond' })] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ statusCode: 403, code: 'wrong-data-center' });
    expect((await record.getVm(id))!.state).toBe('Requested');
  });

  it.each([
    { name: 'a report', sent: 'report' as const },
    { name: 'a create', sent: 'create' as const },
  ])('sent again after its answer was lost ($name): the passed none edge answers already, the last edge is decided again', async ({ sent }) => {
    const { core, calls } = counted();
    let body: AdvanceRequest;
    let id: string;
    if (sent === 'report') {
      id = await coreVm(core, [...TO_RUNNING, 'ShuttingDown']);
      const a = transition(id, 'ShuttingDown', 'PoweredOff');
      await core.authorize('miami', a);
      body = { report: reportOf(a), next: [transition(id, 'PoweredOff', 'BeingDeleted'), transition(id, 'BeingDeleted', 'Deleted')] };
    } else {
      id = randomUUID();
      body = { create: createOf(id), next: [transition(id, 'Requested', 'BeingCreated'), transition(id, 'BeingCreated', 'PoweredOff')] };
    }
    const last = body.next[1];
    const first = await core.advance('miami', body);
    calls.length = 0;
    const again = await core.advance('miami', body);
    expect(first.next.map((s) => s.moved?.effect)).toEqual(['moved', undefined]);
    const at = first.next[0].moved!.vm.state;
    if (sent === 'report') expect(again.report).toMatchObject({ effect: 'already', vm: { state: at } });
    // A repeated create answers as before, on the row as it is now.
    else expect(again.create).toMatchObject({ decision: first.create!.decision, reason: first.create!.reason, operation: 'insert', vm: { id, state: at, version: 2 } });
    expect(again.next.map((s) => [s.authorize.decision, s.authorize.operation, s.moved?.effect, s.moved?.vm.state])).toEqual([
      ['approved', 'none', 'already', at],
      ['approved', last.to === 'Deleted' ? 'deleteVm' : 'createVm', undefined, undefined],
    ]);
    // Nothing moved twice: the second send wrote only the last edge's second intent row.
    expect((await record.getVm(id))!.state).toBe(at);
    expect((await historyOf(id)).filter((h) => h.requestId === last.requestId).map((h) => h.actor)).toEqual(['authority', 'authority']);
    // A report the authority answered already is matched with its approval in the record (approvalOf).
    expect(calls.filter((c) => c !== 'getVms' && c !== 'insertVms' && c !== 'transitionVms' && c !== 'approvalOf')).toEqual(['addHistoryMany']);
    // The last edge's report is checked against its (repeated) authorization and moves the record.
    // Only the create's report (createVm) carries a cloud id.
    expect((await core.report('miami', reportOf(last, last.to === 'Deleted' ? {} : { cloudId: 'c' }))).effect).toBe('moved');
  });

  it.each<{ name: string; body: (id: string, a: AuthorizeRequest) => unknown; message: string }>([
    { name: 'both a report and a create', body: (id, a) => ({ report: reportOf(a), create: createOf(id), next: [transition(id, 'BeingCreated', 'PoweredOff')] }), message: 'exactly one of report and create' },
    { name: 'neither', body: (id) => ({ next: [transition(id, 'BeingCreated', 'PoweredOff')] }), message: 'exactly one of report and create' },
    { name: 'a create in next', body: (id, a) => ({ report: reportOf(a), next: [{ ...createOf(id), kind: 'create' }] }), message: 'a create is never the next edge' },
    { name: 'a create that is no create', body: (id) => ({ create: transition(id, 'Requested', 'BeingCreated'), next: [transition(id, 'BeingCreated', 'PoweredOff')] }), message: 'is a create' },
    { name: 'a next about another VM', body: (id, a) => ({ report: reportOf(a), next: [transition(randomUUID(), 'BeingCreated', 'PoweredOff')] }), message: 'about one VM' },
    { name: 'next edges that do not follow one another', body: (id, a) => ({ report: reportOf(a), next: [transition(id, 'BeingCreated', 'PoweredOff'), transition(id, 'PoweredOn', 'Starting')] }), message: 'follow one another' },
    {
      name: 'two next edges under one request id',
      body: (id, a) => {
        const first = transition(id, 'BeingCreated', 'PoweredOff');
        return { report: reportOf(a), next: [first, { ...transition(id, 'PoweredOff', 'PoweredOn'), requestId: first.requestId }] };
      },
      message: 'its own request id',
    },
    { name: "a next edge under the report's request id", body: (id, a) => ({ report: reportOf(a), next: [{ ...transition(id, 'BeingCreated', 'PoweredOff'), requestId: a.requestId }] }), message: 'its own request id' },
  ])('refuses $name with 400 and does nothing', async ({ body, message }) => {
    const { id } = await created();
    const a = transition(id, 'Requested', 'BeingCreated');
    expect((await post<AuthorizeResponse>('/v1/authorize', a)).body.decision).toBe('approved');
    const r = await post<{ error: { code: string; message: string } }>('/v1/advance', body(id, a));
    expect([r.status, r.body.error.code]).toEqual([400, 'bad-request']);
    expect(r.body.error.message).toContain(message);
    expect((await record.getVm(id))!.state).toBe('Requested');
  });

  // A VM at BeingCreated with BeingCreated -> PoweredOff approved; each case sends an advance of that report and one next edge.
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
  ])('one next edge: $name', async ({ report = (r) => r, next = (n) => n, refused, effect, state, decided }) => {
    const { id } = await created();
    await moveAlong(id, ['Requested', 'BeingCreated']);
    const a = transition(id, 'BeingCreated', 'PoweredOff');
    expect((await post<AuthorizeResponse>('/v1/authorize', a)).body.decision).toBe('approved');
    const nextReq = next(transition(id, 'PoweredOff', 'PoweredOn'));
    const r = await post<AdvanceResponse & { error?: { code: string } }>('/v1/advance', { report: report(reportOf(a, { cloudId: 'cloud-1' })), next: [nextReq] });
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
      expect(r.body.next).toEqual([]);
      expect(nextRows).toEqual([]);
      return;
    }
    expect(r.body.next).toHaveLength(1);
    const auth = r.body.next[0].authorize;
    expect(auth).toMatchObject({ decision: decided.decision, ...(decided.operation ? { operation: decided.operation } : {}) });
    if (decided.reason) expect(auth.reason).toContain(decided.reason);
    expect(auth.credentials === undefined).toBe(decided.decision === 'vetoed');
    const rows = { intent: [['PoweredOff', 'PoweredOn', 'ok', 'authority']], vetoed: [['PoweredOff', 'Running', 'vetoed', 'dmz-client:miami']], none: [] }[decided.history];
    expect(nextRows.map((h) => [h.from, h.to, h.outcome, h.actor])).toEqual(rows);
  });

  it('a repeated advance with one next edge (its answer was lost) answers already and decides next again', async () => {
    const { id } = await created();
    await moveAlong(id, ['Requested', 'BeingCreated']);
    const a = transition(id, 'BeingCreated', 'PoweredOff');
    expect((await post<AuthorizeResponse>('/v1/authorize', a)).body.decision).toBe('approved');
    const next = transition(id, 'PoweredOff', 'PoweredOn');
    const body = { report: reportOf(a, { cloudId: 'cloud-1' }), next: [next] };
    const first = await post<AdvanceResponse>('/v1/advance', body);
    const again = await post<AdvanceResponse>('/v1/advance', body);
    expect(first.body).toMatchObject({ report: { effect: 'moved' }, next: [{ authorize: { decision: 'approved', operation: 'powerOn' } }] });
    expect(again.body).toMatchObject({ report: { effect: 'already', vm: { state: 'PoweredOff' } }, next: [{ authorize: { decision: 'approved', operation: 'powerOn' } }] });
    // Next's report is checked against its (repeated) authorization and moves the record.
    const moved = await post<ReportResponse>('/v1/reports', reportOf(next));
    expect(moved.body).toMatchObject({ effect: 'moved', vm: { state: 'PoweredOn' } });
    const rows = (await historyOf(id)).filter((h) => h.requestId === next.requestId);
    expect(rows.map((h) => h.actor)).toEqual(['authority', 'authority', 'dmz-client:miami']);
  });

  // The row the authority remembers changed behind its back before the advance: decided on a fresh read
  // (the fence check's read of the row, which every advance with next edges makes first).
  it.each([
    {
      name: 'another writer bumped the version: the report moves the current row, next folded into it',
      behind: (id: string, v: number) => record.updateVm(id, v, { specHash: 'elsewhere' }, { actor: 'someone-else' }),
      effect: 'moved',
      version: 3,
      // The VM changed since the approval: the record says whether it moved along another approval (report-superseded); not here.
      calls: ['approvalOf', 'transitionVms'],
    },
    {
      name: 'another writer moved it along the same edge: already, and next decided on the fresh row',
      behind: (id: string, v: number) => record.transitionVm(id, v, 'BeingCreated', { actor: 'someone-else' }),
      effect: 'already',
      version: 2,
      calls: ['addHistoryMany'],
    },
  ])('$name', async ({ behind, effect, version, calls: expected }) => {
    const { core, calls, fenceReads } = counted();
    const id = await coreVm(core, ['Requested']);
    const a = transition(id, 'Requested', 'BeingCreated');
    expect((await core.authorize('miami', a)).decision).toBe('approved');
    await behind(id, (await record.getVm(id))!.version);
    calls.length = 0;
    const res = await core.advance('miami', { report: reportOf(a), next: [transition(id, 'BeingCreated', 'PoweredOff')] });
    expect(res.report).toMatchObject({ effect, vm: { state: 'BeingCreated' } });
    expect(res.next[0].authorize).toMatchObject({ decision: 'approved', operation: 'createVm', vm: { state: 'BeingCreated', version } });
    expect(calls).toEqual(expected);
    expect(fenceReads.slice(-2)).toEqual(['getVms', 'fencesOf']);
  });

  it('another writer moved the VM elsewhere: the report is refused and next not decided', async () => {
    const { core } = counted();
    const id = await coreVm(core, ['Requested']);
    const a = transition(id, 'Requested', 'BeingCreated');
    await core.authorize('miami', a);
    await record.transitionVm(id, 1, 'CreateFailed', { actor: 'someone-else' });
    const err = await core.advance('miami', { report: reportOf(a), next: [transition(id, 'BeingCreated', 'PoweredOff')] }).catch((e: unknown) => e);
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
    const first = await core.advance('miami', { report: reportOf(a, { cloudId: 'c' }), next: [resize] });
    expect(first.next[0].authorize).toMatchObject({ decision: 'approved', operation: 'resize' });
    expect(calls).toEqual(['transitionVms']);
    calls.length = 0;
    const second = await core.advance('miami', { report: reportOf(resize, { size }), next: [transition(id, 'PoweredOff', 'PoweredOn')] });
    expect(second.report).toMatchObject({ effect: 'moved', vm: { state: 'PoweredOff', size } });
    expect(second.next[0].authorize).toMatchObject({ decision: 'approved', operation: 'powerOn' });
    // The resize's own row (it moves no state, so no transition carries it), then next's intent.
    expect(calls).toEqual(['updateVm', 'addHistoryMany', 'addHistoryMany']);
    expect((await historyOf(id)).slice(-3).map((h) => [h.from, h.to, h.actor, h.detail])).toEqual([
      ['PoweredOff', 'PoweredOff', 'authority', 'intent approved: resize to 4 cpu / 8 GiB / 10 GiB disk'],
      ['PoweredOff', 'PoweredOff', 'dmz-client:miami', 'resize done: resized to 4 cpu / 8 GiB / 10 GiB disk'],
      ['PoweredOff', 'PoweredOn', 'authority', 'intent approved: powerOn'],
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

describe('authority: credentials of approvals', () => {
  it('every approval carries a scoped token its data center verifies, for its own expiry; approvals with the same expiry share one token', async () => {
    const core = new Authority({ record, pack, stackName: STACK, secret: SECRET, scopedTokens: new ScopedTokenIssuer([{ name: 'miami', token: TOKENS.miami }], SECRET) });
    const key = credentialKey(TOKENS.miami, 'miami');
    const issued: NonNullable<AuthorizeResponse['credentials']>[] = [];
    for (let n = 0; n < 3; n++) {
      const id = randomUUID();
      const res = await core.advance('miami', { create: createOf(id), next: TO_RUNNING.slice(1).map((to, k) => transition(id, TO_RUNNING[k], to)), ahead: true });
      for (const a of [res.create!, ...res.next.map((s) => s.authorize)]) issued.push(a.credentials!);
    }
    expect(issued).toHaveLength(18);
    for (const c of issued) expect(scopedTokenProblem(key, 'miami', c)).toBeUndefined();
    // Shared only where the expiry (the token's signed part besides its nonce) is the same: one token per data center and millisecond.
    for (const a of issued) for (const b of issued) expect(a.token === b.token).toBe(a.expiresAt === b.expiresAt);
  });
});

describe('authority: approvals ahead (advance with ahead: the edges after the one to carry out)', () => {
  const shape = (rows: Awaited<ReturnType<typeof historyOf>>) => rows.map((h) => [h.from, h.to, h.actor, h.outcome, h.planId, h.detail]);

  it('a create approves its whole path ahead in one statement; each ok report writes the next intent in its statement; the history is that of the single calls', async () => {
    const { core, calls } = counted();
    const id = randomUUID();
    const edges = TO_RUNNING.slice(1).map((to, k) => transition(id, TO_RUNNING[k], to));
    const res = await core.advance('miami', { create: createOf(id), next: edges, ahead: true });
    expect(calls).toEqual(['insertVms']);
    // none moved, createVm authorized, the rest approved ahead (boot's token stored by the insert's statement).
    expect(res.next.map((s) => [s.authorize.decision, s.authorize.operation, s.authorize.vm?.state, s.moved?.effect, s.ahead])).toEqual([
      ['approved', 'none', 'Requested', 'moved', undefined],
      ['approved', 'createVm', 'BeingCreated', undefined, undefined],
      ['approved', 'powerOn', 'PoweredOff', undefined, true],
      ['approved', 'boot', 'PoweredOn', undefined, true],
      ['approved', 'awaitReady', 'Starting', undefined, true],
    ]);
    expect(res.next[2].authorize.credentials?.dataCenter).toBe('miami');
    const tok = res.next[3].authorize.bootToken!;
    expect(tok).toBeTruthy();
    // No intent row for the edges approved ahead yet: each is written with the report before it.
    const before = (await historyOf(id)).map((h) => h.requestId);
    for (const e of edges.slice(2)) expect(before).not.toContain(e.requestId);
    for (const [k, e] of edges.slice(1).entries()) {
      calls.length = 0;
      expect((await core.report('miami', reportOf(e, k === 0 ? { cloudId: 'c-ahead' } : {}))).effect).toBe('moved');
      expect(calls).toEqual(['transitionVms']);
      if (e.to === 'PoweredOn') {
        // The VM boots once its boot edge is running: the token the create's answer carried opens its disk.
        const row = (await record.getVm(id))!;
        expect((await core.bootAuthorize('miami', { dataCenter: 'miami', vmId: id, cloudId: row.cloudId!, image: row.realImage!, bootToken: tok })).approved).toBe(true);
      }
    }
    expect((await record.getVm(id))!).toMatchObject({ state: 'Running', version: 6 });
    // The same rows as one authorize and one report per edge.
    const single = randomUUID();
    await core.authorize('miami', createOf(single));
    for (const e of TO_RUNNING.slice(1).map((to, k) => transition(single, TO_RUNNING[k], to))) {
      const ok = await core.authorize('miami', e);
      await core.report('miami', reportOf(e, ok.operation === 'none' ? { detail: NONE_REPORT_DETAIL } : ok.operation === 'createVm' ? { cloudId: 'c-ahead' } : {}));
    }
    expect(shape(await historyOf(id))).toEqual(shape(await historyOf(single)));
  });

  it('a boot edge decided by a report\'s advance has its token stored by that statement: the VM may call before the boot edge is reported', async () => {
    const { core } = counted();
    const id = await coreVm(core, TO_RUNNING.slice(0, 3));
    const [on, boot, ready] = [transition(id, 'PoweredOff', 'PoweredOn'), transition(id, 'PoweredOn', 'Starting'), transition(id, 'Starting', 'Running')];
    const a = await core.authorize('miami', on);
    expect(a.decision).toBe('approved');
    // A report (of powerOn) is still to come; boot and awaitReady approved ahead of it.
    const res = await core.advance('miami', { report: reportOf(on), next: [boot, ready], ahead: true });
    expect(res.next[0].authorize.bootToken).toBeTruthy();
    const tok = res.next[0].authorize.bootToken!;
    const vm = (await record.getVm(id))!;
    expect(vm.state).toBe('PoweredOn');
    expect((await core.bootAuthorize('miami', { dataCenter: 'miami', vmId: id, cloudId: vm.cloudId!, image: vm.realImage!, bootToken: tok })).approved).toBe(true);
  });

  it('a boot edge approved ahead gets its token with the approval (stored by the advance\'s statement), and later edges\' intents ride with their reports', async () => {
    const { core, calls } = counted();
    const id = await coreVm(core, TO_RUNNING.slice(0, 2));
    const [made, on, boot, ready] = TO_RUNNING.slice(2).map((to, k) => transition(id, TO_RUNNING[k + 1], to));
    expect((await core.authorize('miami', made)).operation).toBe('createVm');
    calls.length = 0;
    const res = await core.advance('miami', { report: reportOf(made, { cloudId: 'c-boot' }), next: [on, boot, ready], ahead: true });
    expect(calls).toEqual(['transitionVms']);
    expect(res.next.map((s) => [s.authorize.operation, s.ahead, s.authorize.vm?.state])).toEqual([
      ['powerOn', undefined, 'PoweredOff'],
      ['boot', true, 'PoweredOn'],
      ['awaitReady', true, 'Starting'],
    ]);
    const tok = res.next[1].authorize.bootToken!;
    expect(tok).toBeTruthy();
    for (const e of [on, boot]) {
      calls.length = 0;
      expect((await core.report('miami', reportOf(e))).effect).toBe('moved');
      expect(calls).toEqual(['transitionVms']);
    }
    const vm = (await record.getVm(id))!;
    expect((await core.bootAuthorize('miami', { dataCenter: 'miami', vmId: id, cloudId: vm.cloudId!, image: vm.realImage!, bootToken: tok })).approved).toBe(true);
    expect((await core.report('miami', reportOf(ready))).vm.state).toBe('Running');
    // From createVm's report on: each edge's intent, then its transition.
    expect((await historyOf(id)).slice(-7).map((h) => [h.to, h.actor, h.requestId])).toEqual([
      ['PoweredOff', 'dmz-client:miami', made.requestId],
      ...[on, boot, ready].flatMap((e) => [
        [e.to, 'authority', e.requestId],
        [e.to, 'dmz-client:miami', e.requestId],
      ]),
    ]);
  });

  it('a resize approved ahead: its report writes its own row and the next edge\'s intent, and every later edge\'s intent follows (history holds every step)', async () => {
    const { core } = counted();
    const id = await coreVm(core, TO_RUNNING.slice(0, 2));
    const made = transition(id, 'BeingCreated', 'PoweredOff');
    expect((await core.authorize('miami', made)).operation).toBe('createVm');
    const size = { cpu: 4, memoryGiB: 8, diskGiB: 10 };
    const resize = transition(id, 'PoweredOff', 'PoweredOff', { kind: 'resize', size });
    const [on, boot, ready] = TO_RUNNING.slice(3).map((to, k) => transition(id, TO_RUNNING[k + 2], to));
    const res = await core.advance('miami', { report: reportOf(made, { cloudId: 'c-resize' }), next: [resize, on, boot, ready], ahead: true });
    expect(res.next.map((s) => [s.authorize.operation, s.ahead])).toEqual([
      ['resize', undefined],
      ['powerOn', true],
      ['boot', true],
      ['awaitReady', true],
    ]);
    expect((await core.report('miami', reportOf(resize, { size }))).effect).toBe('moved');
    for (const e of [on, boot]) expect((await core.report('miami', reportOf(e))).effect).toBe('moved');
    expect((await core.report('miami', reportOf(ready))).vm).toMatchObject({ state: 'Running', size });
    // Before the fix, history stopped at the resize's intent: no resize done, no intent of the edges approved ahead after it.
    expect((await historyOf(id)).slice(-9).map((h) => [h.from, h.to, h.actor, h.requestId])).toEqual([
      ['BeingCreated', 'PoweredOff', 'dmz-client:miami', made.requestId],
      ...[resize, on, boot, ready].flatMap((e) => [
        [e.from, e.to, 'authority', e.requestId],
        [e.from, e.to, 'dmz-client:miami', e.requestId],
      ]),
    ]);
  });

  it('a failed report drops the approvals ahead: the edge after it is refused, and its intent never written', async () => {
    const { core } = counted();
    const id = randomUUID();
    const edges = TO_RUNNING.slice(1, 4).map((to, k) => transition(id, TO_RUNNING[k], to));
    const res = await core.advance('miami', { create: createOf(id), next: edges, ahead: true });
    expect(res.next[2].ahead).toBe(true);
    const failed = await core.report('miami', reportOf(edges[1], { outcome: 'failed', detail: 'no capacity' }));
    expect(failed).toMatchObject({ effect: 'failed', vm: { state: 'CreateFailed' } });
    await expect(core.report('miami', reportOf(edges[2]))).rejects.toMatchObject({ statusCode: 409 });
    expect((await historyOf(id)).map((h) => h.requestId)).not.toContain(edges[2].requestId);
  });

  it('an authorize or a new advance about the VM replaces its approvals ahead', async () => {
    const { core, calls } = counted();
    const id = randomUUID();
    const edges = TO_RUNNING.slice(1, 4).map((to, k) => transition(id, TO_RUNNING[k], to));
    await core.advance('miami', { create: createOf(id), next: edges, ahead: true });
    // The DMZ client asks again for createVm (say it restarted): powerOn's approval ahead is gone.
    const again = transition(id, 'BeingCreated', 'PoweredOff');
    expect((await core.authorize('miami', again)).decision).toBe('approved');
    calls.length = 0;
    await core.report('miami', reportOf(again, { cloudId: 'c-2' }));
    expect(calls).toEqual(['transitionVms']);
    // Its report wrote no intent for powerOn.
    expect((await historyOf(id)).map((h) => h.requestId)).not.toContain(edges[2].requestId);
  });
});

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
        { call: 'advance', body: { report: reportOf(a), next: [transition(id, 'BeingCreated', 'PoweredOff')] } },
        { call: 'advance', body: { report: reportOf(b), next: [{ ...transition(other, 'Requested', 'Requested'), kind: 'create', from: null, vm: vmSpec() }] } },
      ],
    });
    expect(r.results.map((x) => x.status)).toEqual([200, 400]);
    expect(r.results[0].body).toMatchObject({ report: { effect: 'moved', vm: { state: 'BeingCreated' } }, next: [{ authorize: { decision: 'approved', operation: 'createVm' } }] });
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
      paths: Record<
        string,
        Record<string, { requestBody?: { content: Record<string, { schema: { required?: string[] } }> }; responses?: Record<string, { content?: Record<string, { schema: unknown }> }>; security?: unknown }>
      >;
    };
    expect(doc.openapi).toBe('3.0.3');
    expect(Object.keys(doc.paths).sort()).toEqual(['/livez', '/metrics', '/openapi.json', '/readyz', '/v1/admin-check', '/v1/advance', '/v1/authorize', '/v1/batch', '/v1/boot/authorize', '/v1/health', '/v1/reports']);
    // The probes and metrics are public: no bearer token asked for.
    for (const p of ['/livez', '/readyz', '/metrics'] as const) expect((doc.paths[p] as { get: { security?: unknown } }).get.security).toBeUndefined();
    // Found by QA: /readyz listed a 200 answer only; it answers 503 with the failing checks while not ready (and draining).
    expect(Object.keys(doc.paths['/readyz'].get.responses ?? {}).sort()).toEqual(['200', '503']);
    expect(doc.paths['/readyz'].get.responses?.['503']?.content?.['application/json']?.schema).toMatchObject({ required: ['ready', 'checks'] });
    expect(doc.paths['/v1/advance'].post.requestBody?.content['application/json'].schema.required).toEqual(['next']);
    expect(doc.paths['/v1/authorize'].post.requestBody?.content['application/json'].schema.required).toContain('kind');
    expect(doc.paths['/v1/authorize'].post.security).toEqual([{ bearer: [] }]);
    expect(doc.paths['/v1/health'].get.security).toBeUndefined();
    // Every protocol route says what it answers on success: /v1/batch listed its errors only (its NDJSON lines were nowhere).
    for (const [path, ops] of Object.entries(doc.paths).filter(([p]) => p.startsWith('/v1/'))) {
      for (const [method, op] of Object.entries(ops)) expect(Object.keys(op.responses ?? {}), `${method} ${path}`).toContain('200');
    }
    expect(doc.paths['/v1/batch'].post.responses?.['200']?.content?.['application/x-ndjson']?.schema).toMatchObject({ required: ['i', 'status', 'body'], properties: { i: {}, k: {}, status: {}, body: {} } });
    const health = await (await fetch(`${authority.url}/v1/health`)).json();
    expect(health).toEqual({ ok: true, service: 'authority' });
  });
});
