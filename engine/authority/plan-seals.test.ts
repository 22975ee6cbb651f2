// The sealed-plan gate at the authority (plan-seals.ts): the pure judgment
// from a table, then the routes over real loopback HTTP on an in-memory
// PGlite record with a sim DMZ client: seal, register, and the requests the
// authority admits under a registered plan. The key never appears in an
// answer or a log line.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { proposedVmId } from '../model/vm-id.ts';
import type { PlanDocument } from '../plan/types.ts';
import { openRecord } from '../record/index.ts';
import type { FleetRecord, SealedPlanRow } from '../record/types.ts';
import { credentialKey } from '../../protocol/index.ts';
import { DmzHttpClient } from '../../providers/client.ts';
import { createSimDriver, type SimDriver } from '../../providers/drivers/sim/index.ts';
import { startDmzClient, type RunningDmzClient } from '../../providers/dmz-client/server.ts';
import { postJson, sendTarget } from '../../providers/http-send.ts';
import { createRequest, defaultPack, newVm } from '../../providers/testing.ts';
import { PLAN_MAX_DEPTH, authoritySealKey, judgePlanRequest } from './plan-seals.ts';
import { startAuthority, type RunningService } from './server.ts';

const scope: SealedPlanRow['scope'] = {
  fleets: ['db', 'web'],
  members: [
    { address: 'web/0', dataCenter: 'miami', action: 'create' },
    { address: 'web/1', dataCenter: 'miami', action: 'replace', vmId: 'vm-web-1' },
    { address: 'db/0', dataCenter: 'richmond', action: 'delete', vmId: 'vm-db-0' },
    { address: 'db/1', dataCenter: 'richmond', action: 'transition', vmId: 'vm-db-1' },
    { address: 'db/1', dataCenter: 'richmond', action: 'delete', vmId: 'vm-db-1-deposed' },
  ],
};
const create = (fleet: string, index: number, vmId = proposedVmId('p1', `${fleet}/${index}`)) => ({ planId: 'p1', kind: 'create' as const, vmId, vm: newVm('s', { fleet, index }) });
const edge = (vmId: string, planId: string | null = 'p1') => ({ planId, kind: 'transition' as const, vmId });

describe('judgePlanRequest', () => {
  it.each([
    ['a create the plan makes, under the id apply proposes', 'miami', create('web', 0), scope, undefined, undefined],
    ["a replace's new VM", 'miami', create('web', 1), scope, undefined, undefined],
    ['no plan id', 'miami', { ...create('web', 0), planId: null }, scope, undefined, 'plan-unregistered'],
    ['a plan not registered', 'miami', create('web', 0), undefined, undefined, 'plan-unregistered'],
    ['a create at an address the plan does not create', 'miami', create('web', 7), scope, undefined, 'outside-plan'],
    ['a create where the plan deletes', 'richmond', create('db', 0), scope, undefined, 'outside-plan'],
    ['a create in another data center', 'richmond', create('web', 0), scope, undefined, 'outside-plan'],
    ['a create under another VM id', 'miami', create('web', 0, 'vm-chosen-by-caller'), scope, undefined, 'outside-plan'],
    ['an edge of a VM the plan acts on', 'richmond', edge('vm-db-0'), scope, { id: 'vm-db-0', address: 'db/0', dataCenter: 'richmond' }, undefined],
    ['an edge of the VM the plan created', 'miami', edge(proposedVmId('p1', 'web/0')), scope, { id: proposedVmId('p1', 'web/0'), address: 'web/0', dataCenter: 'miami' }, undefined],
    ['an edge of the VM a replace deposes', 'miami', edge('vm-web-1'), scope, { id: 'vm-web-1', address: 'web/1', dataCenter: 'miami' }, undefined],
    ['an edge of a VM at a changed address that the plan neither acts on nor created', 'miami', edge('vm-other'), scope, { id: 'vm-other', address: 'web/0', dataCenter: 'miami' }, 'outside-plan'],
    ['an edge of the current VM at an address shared with a deposed one', 'richmond', edge('vm-db-1'), scope, { id: 'vm-db-1', address: 'db/1', dataCenter: 'richmond' }, undefined],
    ['an edge of the deposed VM at that address', 'richmond', edge('vm-db-1-deposed'), scope, { id: 'vm-db-1-deposed', address: 'db/1', dataCenter: 'richmond' }, undefined],
    ['an edge of a VM of another fleet', 'miami', edge('vm-jobs-0'), scope, { id: 'vm-jobs-0', address: 'jobs/0', dataCenter: 'miami' }, 'outside-plan'],
    ['an edge without a plan', 'richmond', edge('vm-db-0', null), scope, { id: 'vm-db-0', address: 'db/0', dataCenter: 'richmond' }, 'plan-unregistered'],
  ] as const)('%s', (_name, caller, req, s, row, want) => {
    expect(judgePlanRequest(caller, req, s, row)?.code).toBe(want);
  });
});

describe('the plan routes and the gate over HTTP', () => {
  const logs: string[] = [];
  const SECRET = 'authority-secret-for-plan-seals';
  let record: FleetRecord;
  let authority: RunningService;
  let dir: string;
  let driver: SimDriver;
  let dmz: RunningDmzClient;
  let client: DmzHttpClient;
  const call = (path: string, body: unknown, token = 'plan-tok') => postJson(sendTarget(new URL(`${authority.url}${path}`)), body, 10_000, { authorization: `Bearer ${token}` });
  /** A plan as the authority reads one: id, stack, fleets, basis and changes (whatever else its format version holds). */
  const plan = (id: string, addresses: string[]): PlanDocument =>
    ({
      formatVersion: '2',
      id,
      stack: 'gate',
      fleets: ['web'],
      basis: { vms: {}, fleets: { web: 0 } },
      changes: addresses.map((a) => ({ address: a, fleet: 'web', index: Number(a.split('/')[1]), dataCenter: 'miami', action: 'create', from: null, to: 'Running' })),
      unchanged: { web: { members: 3 } },
    }) as unknown as PlanDocument;

  beforeAll(async () => {
    record = await openRecord('memory://');
    const pack = await defaultPack();
    authority = await startAuthority({
      record,
      pack,
      stackName: 'gate',
      dataCenters: [{ name: 'miami', token: 'dmz-tok' }],
      planTokens: ['plan-tok'],
      secret: SECRET,
      logger: { level: 'debug', stream: { write: (l: string) => void logs.push(l) } },
    });
    dir = await mkdtemp(join(tmpdir(), 'plan-seals-'));
    driver = await createSimDriver({ dataCenter: 'miami', stateDir: join(dir, 'sim'), latencyMs: 1, credentialKey: credentialKey('dmz-tok', 'miami') });
    dmz = await startDmzClient({ dataCenter: 'miami', driver, authorityUrl: authority.url, authorityToken: 'dmz-tok', clientToken: 'cli-tok', stateDir: join(dir, 'dmz'), pack });
    client = new DmzHttpClient({ dataCenter: 'miami', baseUrl: dmz.url, token: () => 'cli-tok', retries: 0 });
  });
  afterAll(async () => {
    await dmz.close();
    await driver.close();
    await authority.close();
    await record.close();
    await rm(dir, { recursive: true, force: true });
  });

  // Found by QA: a plan nested 200 000 levels deep in a field the authority does not read (1 MiB of `[[[…`)
  // overflowed the canonical text's recursion: 500 internal "Maximum call stack size exceeded".
  it.each([
    ['/v1/plans/seal', 'an extra field', (deep: string) => `{"plan":{"id":"p-deep","stack":"gate","fleets":["web"],"basis":{"vms":{},"fleets":{"web":0}},"changes":[],"x":${deep}}}`],
    ['/v1/plans/seal', 'the basis', (deep: string) => `{"plan":{"id":"p-deep","stack":"gate","fleets":["web"],"basis":{"vms":{},"fleets":{"web":0},"x":${deep}},"changes":[]}}`],
    ['/v1/plans/register', 'an extra field of a plan with this stack\'s seal (as sealed plans carry)', (deep: string, stackId: string, keyId: string) => `{"plan":{"id":"p-deep","stack":"gate","fleets":["web"],"basis":{"vms":{},"fleets":{"web":0}},"changes":[],"x":${deep},"seal":{"alg":"hmac-sha256","stackId":"${stackId}","keyId":"${keyId}","digest":"${'0'.repeat(64)}","signature":"x"}}}`],
  ])('%s with a plan nested 200 000 levels deep in %s: 400 bad-request, not 500', async (path, _where, body) => {
    const deep = '['.repeat(200_000) + ']'.repeat(200_000);
    const stackId = (await record.stackIdentity('gate', { create: true }))!.stackId;
    const res = await fetch(`${authority.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer plan-tok' }, body: body(deep, stackId, authoritySealKey(SECRET, 'gate').id) });
    const got = (await res.json()) as { error: { code: string; message: string } };
    expect([res.status, got.error.code]).toEqual([400, 'bad-request']);
    expect(got.error.message).toContain(`the plan nests deeper than ${PLAN_MAX_DEPTH} levels`);
  });

  it('seals any format version of a plan over its canonical content, registers it, and admits its creates only', async () => {
    const p = plan('p-one', ['web/0']);
    const sealed = await call('/v1/plans/seal', { plan: p });
    expect(sealed.status).toBe(200);
    const { seal } = JSON.parse(sealed.text) as { seal: PlanDocument['seal'] };
    expect(seal).toMatchObject({ alg: 'hmac-sha256', keyId: authoritySealKey(SECRET, 'gate').id, stackId: (await record.stackIdentity('gate'))!.stackId });
    // Re-ordered keys are the same canonical content.
    const reordered = Object.fromEntries(Object.entries({ ...p, seal }).reverse());
    const reg = await call('/v1/plans/register', { plan: reordered });
    expect([reg.status, JSON.parse(reg.text)]).toEqual([200, { planId: 'p-one', digest: seal!.digest, members: 1 }]);

    const vm = newVm('gate', { id: proposedVmId('p-one', 'web/0') });
    // Registered, but no apply of it holds the fleet: refused (a registered plan cannot be replayed after its apply).
    const unlocked = await client.createVm({ ...createRequest(vm), planId: 'p-one' });
    expect(unlocked).toMatchObject({ outcome: 'vetoed' });
    expect(unlocked.reason).toContain('not locked by the apply of plan p-one');
    expect(await record.getVm(vm.id)).toBeUndefined();
    const lock = await record.acquireLocks('gate', ['web'], { who: 'apply', host: 'test', planId: 'p-one', pid: process.pid });
    // The apply's requests carry its lock's fencing token (without one they would be refused as locked: docs/recovery.md, "Fencing").
    const { fencingToken } = lock;
    expect(await client.createVm({ ...createRequest(vm), planId: 'p-one', fencingToken })).toMatchObject({ outcome: 'ok', vm: { state: 'Requested' } });
    const other = newVm('gate', { index: 1 });
    const refused = await client.createVm({ ...createRequest(other), planId: 'p-one', fencingToken });
    expect(refused).toMatchObject({ outcome: 'vetoed' });
    expect(await record.getVm(other.id)).toBeUndefined();

    // A batch's calls about one VM still run in their order behind the gate: the authorize, then its report.
    const a = { dataCenter: 'miami', requestId: 'r-batch', planId: 'p-one', kind: 'transition', vmId: vm.id, from: 'Requested', to: 'BeingCreated', fencingToken };
    const batch = await call('/v1/batch', { calls: [{ call: 'authorize', body: a }, { call: 'report', body: { dataCenter: 'miami', requestId: 'r-batch', planId: 'p-one', vmId: vm.id, from: 'Requested', to: 'BeingCreated', outcome: 'ok' } }] }, 'dmz-tok');
    const lines = batch.text.trim().split('\n').map((l) => JSON.parse(l) as { i: number; status: number; body: { effect?: string } }).sort((x, y) => x.i - y.i);
    expect(lines.map((l) => l.status)).toEqual([200, 200]);
    expect(lines[1].body.effect).toBe('moved');
    await lock.release();

    // Edited after sealing, or registered again under its id with other content: refused, nothing registered.
    const edited = await call('/v1/plans/register', { plan: { ...plan('p-one', ['web/0', 'web/1']), seal } });
    expect([edited.status, JSON.parse(edited.text).error.code]).toEqual([409, 'plan-tampered']);
    expect((await record.sealedPlan('gate', 'p-one'))?.scope.members).toHaveLength(1);
  });

  // Found by QA: every route took at most 1 MiB, so a deployed stack could seal no plan of more than ~900 member
  // changes (a fleet of 1500 VMs: 413 too-large, which the CLI reported as "Check FLEET_AUTHORITY_TOKEN").
  it('seals and registers a plan of 20 000 creates (over 2 MiB)', async () => {
    const big = plan('p-big', Array.from({ length: 20_000 }, (_, i) => `web/${i}`));
    expect(JSON.stringify({ plan: big }).length).toBeGreaterThan(2 * 1024 * 1024);
    const sealed = await call('/v1/plans/seal', { plan: big });
    expect(sealed.status).toBe(200);
    const { seal } = JSON.parse(sealed.text) as { seal: PlanDocument['seal'] };
    const reg = await call('/v1/plans/register', { plan: { ...big, seal } });
    expect([reg.status, JSON.parse(reg.text).members]).toEqual([200, 20_000]);
  });

  it("takes a plan route's bigger body only with the CLI's token: a data center's, or none, is refused before the body is read", async () => {
    const body = JSON.stringify({ plan: plan('p-anon', Array.from({ length: 20_000 }, (_, i) => `web/${i}`)) });
    for (const headers of [{}, { authorization: 'Bearer dmz-tok' }] as Record<string, string>[]) {
      const res = await fetch(`${authority.url}/v1/plans/seal`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
      expect(res.status).toBe('authorization' in headers ? 403 : 401);
    }
    // Every other route keeps its 1 MiB.
    const other = await fetch(`${authority.url}/v1/authorize`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer dmz-tok' }, body });
    expect(other.status).toBe(413);
  });

  it('refuses to seal a plan of another stack, or one whose change leaves its scope', async () => {
    const foreign = await call('/v1/plans/seal', { plan: { ...plan('p-two', ['web/0']), stack: 'other' } });
    expect([foreign.status, JSON.parse(foreign.text).error.code]).toEqual([409, 'plan-foreign']);
    const outside = await call('/v1/plans/seal', { plan: { ...plan('p-two', ['web/0']), fleets: [] } });
    expect([outside.status, JSON.parse(outside.text).error.code]).toEqual([409, 'plan-scope']);
    const malformed = await call('/v1/plans/seal', { plan: { id: 'x', stack: 'gate' } });
    expect([malformed.status, JSON.parse(malformed.text).error.code]).toEqual([400, 'bad-request']);
  });

  it('keeps its key to itself: not in an answer, a log line or the record', async () => {
    const key = authoritySealKey(SECRET, 'gate');
    expect(JSON.stringify(key)).not.toContain(key.secret.toString('hex'));
    // Log lines reach the stream in batches (engine/observability/logs.ts LineBatcher: after 10 ms, or 16 KiB): wait for the line.
    await vi.waitFor(() => expect(logs.join('')).toContain('plan registered'));
    const text = logs.join('');
    for (const s of [SECRET, key.secret.toString('hex'), key.secret.toString('base64'), key.secret.toString('base64url')]) expect(text).not.toContain(s);
    const row = await record.sealedPlan('gate', 'p-one');
    for (const s of [key.secret.toString('hex'), key.secret.toString('base64url')]) expect(JSON.stringify(row)).not.toContain(s);
  });
});
