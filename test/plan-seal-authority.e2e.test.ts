// Sealed plans in a deployed stack (stack.yaml has an `authority` address):
// the authority seals plans with a key only it holds, verifies them when
// `fleet apply` registers them, and approves only requests of registered
// plans, for the members they change. The real CLI in-process; a real
// authority (with the CLI's token, FLEET_AUTHORITY_TOKEN) and a sim DMZ
// client over loopback HTTP; the record on PostgreSQL, shared by the CLI and
// the authority as in a deployment (PGlite is one process's).
//
// What each case proves:
// - `fleet apply` (fresh) and `fleet plan --out` + `fleet apply FILE` work,
//   sealed by the authority (key id `a-…`), never by the record's key;
// - every attack on a saved plan file (blocked flipped, extra creates, a
//   swapped vmId, the scope emptied, a foreign stack's plan, the seal
//   removed) is refused by the authority itself at /v1/plans/register, and
//   through `fleet apply FILE`;
// - a tampered plan re-sealed with the record's key (what anyone holding the
//   record's credentials could do) is refused: the record's key seals nothing
//   in a deployed stack;
// - the DMZ client's token alone gets nothing approved: a create without a
//   plan, under a registered plan at an address it does not change, or under
//   a registration forged into the record, is vetoed;
// - none of it changed the record or the data center.
import { readFile, writeFile, mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthority, type RunningService } from '../engine/authority/server.ts';
import { proposedVmId } from '../engine/model/vm-id.ts';
import { planContentDigest, sealPlan, type PlanDocument } from '../engine/plan/index.ts';
import { openRecord, type SqlRecord } from '../engine/record/index.ts';
import { appliedPlans, createTestDatabase, testPostgresUrl } from '../engine/record/testing.ts';
import type { FleetRecord } from '../engine/record/types.ts';
import { credentialKey } from '../protocol/index.ts';
import { DmzHttpClient } from '../providers/client.ts';
import { createSimDriver, type SimDriver } from '../providers/drivers/sim/index.ts';
import { startDmzClient, type RunningDmzClient } from '../providers/dmz-client/server.ts';
import { postJson, sendTarget } from '../providers/http-send.ts';
import { createRequest, defaultPack, newVm } from '../providers/testing.ts';
import { runCli } from './helpers/cli.ts';
import { REPO, fleetYaml } from './helpers/stack.ts';

const PLAN_TOKEN = 'plan-token-at-the-authority';
const CLI_TOKEN = 'cli-token-miami';
const DMZ_TOKEN = 'dmz-token-miami';

function stackYaml(o: { name: string; record: string; dmz: string; authority: string }): string {
  return `apiVersion: fleet/v1
kind: Stack
metadata: { name: ${o.name} }
spec:
  specs: ["specs/*.yaml"]
  record: ${o.record}
  policyPack:
    path: ${join(REPO, 'policies', 'default')}
    config:
      max-disruption: { enforcement: disabled }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  authority: { address: ${o.authority} }
  dataCenters:
    - name: miami
      address: ${o.dmz}
      location: { lat: 25.7617, lon: -80.1918 }
      hardware: [general]
      capacity: { vms: 50, cpu: 400, memoryGiB: 1600 }
`;
}

const read = async (file: string) => JSON.parse(await readFile(file, 'utf8')) as PlanDocument;
const write = (file: string, plan: unknown) => writeFile(file, `${JSON.stringify(plan, null, 2)}\n`);

describe.skipIf(!testPostgresUrl())('a deployed stack: plans sealed, verified and enforced by the authority', () => {
  let dir: string;
  let db: { url: string; drop(): Promise<void> };
  let record: FleetRecord;
  let authority: RunningService;
  let driver: SimDriver;
  let dmz: RunningDmzClient;
  let good: PlanDocument;
  let blocked: PlanDocument;
  let targeted: PlanDocument;
  let foreign: PlanDocument;
  let before: Awaited<ReturnType<typeof snapshot>>;
  const env = { FLEET_AUTHORITY_TOKEN: PLAN_TOKEN, FLEET_CLI_TOKEN_MIAMI: CLI_TOKEN, FLEET_RETRY_BUDGET_MS: '1000' };
  const fleet = (...args: string[]) => runCli([...args, '--stack', dir], { cwd: REPO, env });
  const spec = (name: string, yaml: string) => writeFile(join(dir, 'specs', `${name}.yaml`), yaml);
  const out = (name: string) => join(dir, `${name}.json`);
  const register = (plan: unknown, token = PLAN_TOKEN) => postJson(sendTarget(new URL(`${authority.url}/v1/plans/register`)), { plan }, 10_000, { authorization: `Bearer ${token}` });

  /** Everything a refused apply must leave as it was: the record's VMs, history, applied plans, locks and registrations, and the data center's calls. */
  async function snapshot() {
    const vms = (await record.listVms('sealed', { includeRetired: true })).map((v) => `${v.address} ${v.id} ${v.state} ${v.version}`).sort();
    const history = (await record.history('sealed')).length;
    const plans = (await appliedPlans(record as SqlRecord, 'sealed')).map((p) => `${p.id} ${p.result}`).sort();
    const locks = (await record.listLocks('sealed')).length;
    const registered = (await (record as SqlRecord).sql.query<{ plan_id: string }>('SELECT plan_id FROM sealed_plans ORDER BY plan_id')).map((r) => r.plan_id);
    const cloud = JSON.stringify([...driver.calls].sort());
    return { vms, history, plans, locks, registered, cloud };
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-sealed-'));
    await mkdir(join(dir, 'specs'));
    db = await createTestDatabase(testPostgresUrl()!);
    record = await openRecord(db.url);
    const pack = await defaultPack();
    authority = await startAuthority({ record, pack, stackName: 'sealed', dataCenters: [{ name: 'miami', token: DMZ_TOKEN }], planTokens: [PLAN_TOKEN], secret: 'the-authority-secret' });
    driver = await createSimDriver({ dataCenter: 'miami', stateDir: join(dir, 'sim'), latencyMs: 1, bootMs: 1, credentialKey: credentialKey(DMZ_TOKEN, 'miami') });
    dmz = await startDmzClient({ dataCenter: 'miami', driver, authorityUrl: authority.url, authorityToken: DMZ_TOKEN, clientToken: CLI_TOKEN, stateDir: join(dir, 'dmz'), pack });
    await writeFile(join(dir, 'stack.yaml'), stackYaml({ name: 'sealed', record: db.url, dmz: dmz.url, authority: authority.url }));
  });
  afterAll(async () => {
    await dmz?.close();
    await driver?.close();
    await authority?.close();
    await record?.close();
    await db?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('fleet apply (fresh) has its plan sealed and registered by the authority, and applies', async () => {
    await spec('web', fleetYaml('web', { count: 2, encryptedDisk: false }));
    await spec('vault', fleetYaml('vault', { count: 1, protect: true, encryptedDisk: false }));
    await spec('jobs', fleetYaml('jobs', { count: 1, encryptedDisk: false }));
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect((await record.listVms('sealed')).map((v) => `${v.address} ${v.state}`).sort()).toEqual(['jobs/0 Running', 'vault/0 Running', 'web/0 Running', 'web/1 Running']);
  });

  it('without the CLI token at the authority, fleet apply stops before any request', async () => {
    const r = await runCli(['apply', '--yes', '--stack', dir, '--format', 'json'], { cwd: REPO, env: { ...env, FLEET_AUTHORITY_TOKEN: '' } });
    expect(r.code).toBe(0); // nothing to change: no plan to register
    await spec('web', fleetYaml('web', { count: 3, encryptedDisk: false }));
    const s = await runCli(['apply', '--yes', '--stack', dir, '--format', 'json'], { cwd: REPO, env: { ...env, FLEET_AUTHORITY_TOKEN: '' } });
    expect(s.code).toBe(1);
    expect(s.stdout).toContain('apply.token-missing');
    expect(s.stdout).toContain('FLEET_AUTHORITY_TOKEN');
  });

  it('plan --out is sealed by the authority, not with the record\'s key', async () => {
    await spec('jobs', fleetYaml('jobs', { count: 1, state: 'PoweredOff', encryptedDisk: false }));
    expect((await fleet('plan', '--out', out('good'))).code).toBe(0);
    expect((await fleet('plan', '--out', out('targeted'), '--target', 'web')).code).toBe(0);
    await spec('vault', fleetYaml('vault', { count: 0, protect: true, encryptedDisk: false }));
    expect((await fleet('plan', '--out', out('blocked'))).code).toBe(1);
    await spec('vault', fleetYaml('vault', { count: 1, protect: true, encryptedDisk: false }));
    [good, targeted, blocked] = await Promise.all(['good', 'targeted', 'blocked'].map((n) => read(out(n))));
    const identity = await record.stackIdentity('sealed');
    expect(good.seal).toMatchObject({ alg: 'hmac-sha256', stackId: identity!.stackId, keyId: expect.stringMatching(/^a-[0-9a-f]{8}$/), digest: planContentDigest(good) });
    expect(good.seal!.keyId).not.toBe(identity!.sealKey.id);
    expect(blocked.blocked).toBe(true);
    // A plan of another stack of the same name (another authority's key, another stack id).
    const { seal: _s, ...content } = good;
    foreign = { ...content, seal: sealPlan(content, { id: good.seal!.keyId, secret: Buffer.alloc(32, 7) }, 'stk-another-stack') } as PlanDocument;
    before = await snapshot();
  });

  const member = (p: PlanDocument, address: string) => {
    const c = p.changes.find((x) => x.address === address);
    if (!c) throw new Error(`no change for ${address} in the plan`);
    return c;
  };
  const vmIdOf = (address: string) => before.vms.find((v) => v.startsWith(`${address} `))!.split(' ')[1];
  const reSealedWithTheRecordsKey = async (p: PlanDocument) => {
    const identity = (await record.stackIdentity('sealed'))!;
    const { seal: _s, ...content } = p;
    return { ...content, seal: sealPlan(content, identity.sealKey, identity.stackId) };
  };

  // name, the file as the attacker made it, the wire code the authority refuses it with.
  const attacks: [string, () => unknown | Promise<unknown>, string][] = [
    ['`blocked` edited to false (deletes a protected VM)', () => ({ ...blocked, blocked: false }), 'plan-tampered'],
    [
      'three extra creates',
      () => {
        const c = member(good, 'web/2');
        return { ...good, changes: [...good.changes, ...[3, 4, 5].map((i) => ({ ...c, address: `web/${i}`, index: i, name: c.name.replace(/2$/, String(i)) }))] };
      },
      'plan-tampered',
    ],
    ['a vmId swapped for another fleet\'s VM', () => ({ ...good, changes: good.changes.map((c) => (c.address === 'jobs/0' ? { ...c, vmId: vmIdOf('web/0') } : c)) }), 'plan-tampered'],
    ['the scope emptied (fleets [] and an empty basis)', () => ({ ...good, fleets: [], basis: { vms: {}, fleets: {} } }), 'plan-tampered'],
    ['a change outside the locked scope', () => ({ ...targeted, changes: [...targeted.changes, member(good, 'jobs/0')] }), 'plan-tampered'],
    ['a plan of another stack of the same name', () => foreign, 'plan-foreign'],
    [
      'the seal removed',
      () => {
        const { seal: _seal, ...rest } = good;
        return rest;
      },
      'plan-unsigned',
    ],
    ['`blocked` flipped and re-sealed with the record\'s key', () => reSealedWithTheRecordsKey({ ...blocked, blocked: false }), 'plan-foreign'],
    ['a vmId swapped and re-sealed with the record\'s key', () => reSealedWithTheRecordsKey({ ...good, changes: good.changes.map((c) => (c.address === 'jobs/0' ? { ...c, vmId: vmIdOf('vault/0') } : c)) }), 'plan-foreign'],
  ];

  it.each(attacks)('the authority refuses to register %s, and so does fleet apply FILE', async (_name, make, code) => {
    const plan = await make();
    const res = await register(plan);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(JSON.parse(res.text).error.code).toBe(code);
    const file = out('attack');
    await write(file, plan);
    const r = await fleet('apply', file, '--format', 'json');
    expect(r.code, r.stderr).toBe(1);
    const codes = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; code?: string })
      .filter((e) => e.type === 'diagnostic')
      .map((e) => e.code);
    // Refused locally when the CLI can tell (scope, targets), else by the authority; either way as a plan-integrity diagnostic.
    expect(codes.length).toBeGreaterThan(0);
    for (const c of codes) expect(c).toMatch(/^apply\.plan-(tampered|foreign|unsigned|scope)$/);
  });

  it('the plan routes take only the CLI token; the DMZ client routes never take it', async () => {
    const byDc = await register(good, DMZ_TOKEN);
    expect([byDc.status, JSON.parse(byDc.text).error.code]).toEqual([403, 'wrong-role']);
    const vm = newVm('sealed', { fleet: 'web', index: 2 });
    const asCli = await postJson(sendTarget(new URL(`${authority.url}/v1/authorize`)), { dataCenter: 'miami', requestId: 'r1', planId: good.id, kind: 'create', vmId: vm.id, from: null, vm: { ...vm, dataCenter: 'miami' } }, 10_000, { authorization: `Bearer ${PLAN_TOKEN}` });
    expect([asCli.status, JSON.parse(asCli.text).error.code]).toEqual([403, 'wrong-role']);
  });

  it('with the DMZ client\'s token alone, nothing is approved: no plan, an address the plan does not change, a forged registration', async () => {
    const client = new DmzHttpClient({ dataCenter: 'miami', baseUrl: dmz.url, token: () => CLI_TOKEN, retries: 0 });
    const noPlan = await client.createVm({ ...createRequest(newVm('sealed', { fleet: 'web', index: 7 })), planId: null });
    expect(noPlan).toMatchObject({ outcome: 'vetoed' });
    expect(noPlan.reason).toContain('names no plan');
    // A registered plan (good registers fine), a member it does not change.
    expect((await register(good)).status).toBe(200);
    const outside = await client.createVm({ ...createRequest(newVm('sealed', { fleet: 'web', index: 7 })), planId: good.id });
    expect(outside).toMatchObject({ outcome: 'vetoed' });
    expect(outside.reason).toContain('creates no VM at web/7');
    // A create the registered plan does make, but no apply of it holds the fleet: a replay.
    const replay = await client.createVm({ ...createRequest(newVm('sealed', { fleet: 'web', index: 2, id: proposedVmId(good.id, 'web/2') })), planId: good.id });
    expect(replay).toMatchObject({ outcome: 'vetoed' });
    expect(replay.reason).toContain('not locked by the apply');
    // A delete of the protected VM under the registered plan (which does not act on it).
    const del = await client.transition(vmIdOf('vault/0'), { idempotencyKey: 'del-vault', planId: good.id, from: 'Running', to: 'ShuttingDown' });
    expect(del).toMatchObject({ outcome: 'vetoed' });
    expect(del.reason).toContain('does not act on VM');
    // A registration written into the record by a holder of its credentials: its MAC does not verify.
    await (record as SqlRecord).sql.query(`INSERT INTO sealed_plans (stack, plan_id, digest, scope, mac) VALUES ('sealed', 'forged', 'x', $1, 'not-a-mac')`, [
      JSON.stringify({ fleets: ['web'], members: [{ address: 'web/7', dataCenter: 'miami', action: 'create' }] }),
    ]);
    const forged = await client.createVm({ ...createRequest(newVm('sealed', { fleet: 'web', index: 7 })), planId: 'forged' });
    expect(forged).toMatchObject({ outcome: 'vetoed' });
    expect(forged.reason).toContain('not registered');
    await (record as SqlRecord).sql.query(`DELETE FROM sealed_plans WHERE plan_id IN ('forged', $1)`, [good.id]);
  });

  it('changed nothing in the record or the data center', async () => {
    expect(await snapshot()).toEqual(before);
  });

  it('applies the untouched sealed plan', async () => {
    const r = await fleet('apply', out('good'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Apply complete: 2 VMs changed, 0 failed');
    expect((await record.listVms('sealed')).map((v) => `${v.address} ${v.state}`).sort()).toEqual(['jobs/0 PoweredOff', 'vault/0 Running', 'web/0 Running', 'web/1 Running', 'web/2 Running']);
  });

  it('once its apply is over, the plan\'s own members get nothing approved under it', async () => {
    const client = new DmzHttpClient({ dataCenter: 'miami', baseUrl: dmz.url, token: () => CLI_TOKEN, retries: 0 });
    const web2 = (await record.listVms('sealed')).find((v) => v.address === 'web/2')!;
    const stop = await client.transition(web2.id, { idempotencyKey: 'replay-stop', planId: good.id, from: 'Running', to: 'ShuttingDown' });
    expect(stop).toMatchObject({ outcome: 'vetoed' });
    expect(stop.reason).toContain('not locked by the apply');
    expect((await record.getVm(web2.id))?.state).toBe('Running');
  });
});
