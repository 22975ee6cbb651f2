import * as pulumi from '@pulumi/pulumi';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../engine/diags/index.ts';
import { openRecord } from '../engine/record/index.ts';
import type { FleetRecord } from '../engine/record/types.ts';
import type { ActualVm } from '../protocol/index.ts';
import type { DataCenterProvider} from './provider.ts';
import { DataCenterProvider as DataCenterProviderClass, lifecycleData, providersFor, type DmzConnection, type VmInputs, type VmOutputs } from './provider.ts';
import { defaultPack, startTestWorld, type TestWorld } from './testing.ts';

describe('DataCenterProvider.diff: the planner\'s classification (engine/plan/member.ts)', () => {
  const size = { cpu: 2, memoryGiB: 4, diskGiB: 20 };
  const olds: VmOutputs = {
    stack: 's', fleet: 'api', owner: 'team', index: 0, name: 's-api-0', image: 'ubuntu-22.04', size, encryptedDisk: true,
    desiredState: 'Running', specHash: 'h1', planId: null, vmId: 'vm-1', dataCenter: 'miami', state: 'Running', cloudId: 'c-1', realImage: 'img', version: 3,
  };
  const news = (over: Partial<VmInputs>): VmInputs => ({ ...olds, ...over });
  it.each([
    { name: 'nothing changes', over: {}, want: { changes: false, replaces: [] } },
    { name: 'the desired state', over: { desiredState: 'PoweredOff' }, want: { changes: true, replaces: [] } },
    { name: 'the size (in place)', over: { size: { ...size, cpu: 4 }, specHash: 'h2' }, want: { changes: true, replaces: [] } },
    { name: 'the image', over: { image: 'rhel-9', specHash: 'h2' }, want: { changes: true, replaces: ['image'], deleteBeforeReplace: true } },
    { name: 'the disk encryption', over: { encryptedDisk: false, specHash: 'h2' }, want: { changes: true, replaces: ['encryptedDisk'] } },
    // Pulumi names the input that forces the replace: the hash carries the hardware traits (`pulumi preview --diff` showed a `hardware` the Vm has no input of).
    { name: 'a hash change nothing else explains (hardware), as the planner replaces it', over: { specHash: 'h2' }, want: { changes: true, replaces: ['specHash'] } },
    { name: 'the plan\'s replace order', over: { image: 'rhel-9', specHash: 'h2', replaceOrder: 'create-before-delete' as const }, want: { replaces: ['image'], deleteBeforeReplace: false } },
    { name: 'the member\'s name (another member)', over: { name: 's-api-9' }, want: { changes: true, replaces: ['name'] } },
    { name: 'the owner only', over: { owner: 'team-b' }, want: { changes: true, replaces: [] } },
  ])('$name', async ({ over, want }) => {
    const provider = providersFor([{ name: 'miami', url: 'http://127.0.0.1:1', tokenEnv: 'UNUSED' }], (await defaultPack()).lifecycle).get('miami')!;
    expect(await provider.diff('vm-1', olds, news(over))).toMatchObject(want);
  });
});

describe('DataCenterProvider.check: desiredState is one of the pack\'s requestable states (as spec.state-not-requestable holds a spec to)', () => {
  const inputs = (desiredState: string): VmInputs => ({
    stack: 's', fleet: 'api', owner: 'team', index: 0, name: 's-api-0', image: 'ubuntu-22.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, encryptedDisk: true, desiredState, specHash: 'h1', planId: null,
  });
  it.each([
    { state: 'Running', ok: true },
    { state: 'PoweredOff', ok: true },
    { state: 'Deleted', ok: false },
    { state: 'PoweredOn', ok: false },
    { state: 'Starting', ok: false },
    { state: 'BootFailed', ok: false },
    { state: 'CreateFailed', ok: false },
    { state: 'Runing', ok: false },
  ])('$state: accepted $ok', async ({ state, ok }) => {
    const provider = providersFor([{ name: 'miami', url: 'http://127.0.0.1:1', tokenEnv: 'UNUSED' }], (await defaultPack()).lifecycle).get('miami')!;
    const { failures } = await provider.check(inputs(state), inputs(state));
    if (ok) expect(failures).toEqual([]);
    else expect(failures).toEqual([{ property: 'desiredState', reason: expect.stringContaining('Running or PoweredOff') as string }]);
  });
});

// Found by QA: the authority refuses an owner that reads as another (engine/diags/unseen.ts); the Vm resource said nothing
// until its create was refused mid-update.
describe('DataCenterProvider.check: the owner reads as itself', () => {
  it.each([
    ['team-a', true],
    ['team-a\u200b', false],
    [' team-a', false],
    ['te\u202eam', false],
    ['cafe\u0301', false],
  ])('%j: accepted %s', async (owner, ok) => {
    const provider = providersFor([{ name: 'miami', url: 'http://127.0.0.1:1', tokenEnv: 'UNUSED' }], (await defaultPack()).lifecycle).get('miami')!;
    const vm: VmInputs = { stack: 's', fleet: 'api', owner, index: 0, name: 's-api-0', image: 'ubuntu-22.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, encryptedDisk: true, desiredState: 'Running', specHash: 'h1', planId: null };
    const { failures } = await provider.check(vm, vm);
    if (ok) expect(failures).toEqual([]);
    else expect(failures).toEqual([{ property: 'owner', reason: expect.stringMatching(/^owner ".*" .+: owners are matched exactly/) as string }]);
  });
});

describe('DataCenterProvider', () => {
  let record: FleetRecord;
  let world: TestWorld | undefined;
  const TOKEN_ENV = 'FLEET_TEST_PROVIDER_TOKEN';

  beforeAll(async () => {
    record = await openRecord('memory://');
  });
  afterAll(async () => {
    await record.close();
  });
  afterEach(async () => {
    await world?.close();
    world = undefined;
    delete process.env[TOKEN_ENV];
  });

  async function setup(sim: Parameters<typeof startTestWorld>[0] = {}) {
    world = await startTestWorld({ record, dataCenters: ['miami'], ...sim });
    const dc = world.dc('miami');
    process.env[TOKEN_ENV] = dc.clientToken;
    const provider = providersFor([{ name: 'miami', url: dc.dmz.url, tokenEnv: TOKEN_ENV }], world.pack.lifecycle).get('miami') as DataCenterProvider;
    const inputs: VmInputs = {
      stack: world.stack,
      fleet: 'api',
      owner: 'team-payments',
      index: 0,
      name: `${world.stack}-api-0`,
      image: 'ubuntu-22.04',
      size: { cpu: 2, memoryGiB: 4, diskGiB: 20 },
      encryptedDisk: true,
      desiredState: 'Running',
      specHash: 'h1',
      planId: 'plan-p',
    };
    return { world, dc, provider, inputs };
  }

  it('is serializable by Pulumi and its serialized form carries no token', async () => {
    const { provider, dc } = await setup();
    const serialized = await pulumi.runtime.serializeFunction(() => provider);
    expect(serialized.text).toContain(TOKEN_ENV);
    expect(serialized.text).toContain(dc.dmz.url);
    expect(serialized.text).not.toContain(dc.clientToken);
    expect(serialized.text).not.toContain(dc.authorityToken);
  });

  it('create walks the VM to its desired state; update resizes and stops it; delete walks it to Deleted', async () => {
    const { provider, inputs, dc } = await setup();
    expect((await provider.check(inputs, inputs)).failures).toEqual([]);
    const created = await provider.create(inputs);
    expect(created.outs as never).toMatchObject({ state: 'Running', dataCenter: 'miami', realImage: 'img-ubuntu-2204-miami-v7', vmId: created.id });
    const read = await provider.read(created.id, created.outs as never);
    expect(read.props?.state).toBe('Running');

    const news = { ...inputs, size: { cpu: 4, memoryGiB: 8, diskGiB: 20 }, desiredState: 'PoweredOff' };
    expect(await provider.diff(created.id, created.outs as never, news)).toMatchObject({ changes: true, replaces: [] });
    expect((await provider.diff(created.id, created.outs as never, { ...inputs, image: 'rhel-9' })).replaces).toEqual(['image']);
    const updated = await provider.update(created.id, created.outs as never, news);
    expect(updated.outs).toMatchObject({ state: 'PoweredOff', size: news.size });
    expect((await dc.client.getVm(created.id))?.size).toEqual(news.size);

    await provider.delete(created.id, updated.outs as never);
    expect((await record.getVm(created.id))?.state).toBe('Deleted');
    expect(await provider.read(created.id, updated.outs as never)).toEqual({});
  });

  it.each([
    { failCalls: ['createVm'], failedAt: 'CreateFailed' },
    { failCalls: ['powerOn'], failedAt: 'PoweredOff' },
  ])('a create failing at $failCalls leaves nothing created', async ({ failCalls, failedAt }) => {
    const { provider, inputs, dc } = await setup({ sim: { failCalls } });
    const err = (await provider.create(inputs).catch((e: unknown) => e)) as FleetError;
    expect(err).toBeInstanceOf(FleetError);
    expect(err.diagnostics[0].code).toBe('apply.step-failed');
    expect(err.diagnostics[0].detail).toContain(`now ${failedAt}`);
    expect((await dc.client.listVms()).filter((v) => v.status === 'present')).toEqual([]);
    const rows = await record.listVms(world!.stack, { includeRetired: true });
    expect(rows.map((r) => r.state)).toEqual(['Deleted']);
  });

  it('a failed delete leaves the VM existing and says so', async () => {
    const { provider, inputs, dc } = await setup({ sim: { failCalls: ['deleteVm'] } });
    const created = await provider.create(inputs);
    const err = (await provider.delete(created.id, created.outs as never).catch((e: unknown) => e)) as FleetError;
    expect(err.diagnostics[0].code).toBe('apply.step-failed');
    expect(err.diagnostics[0].detail).toContain('BeingDeleted -> Deleted');
    expect((await dc.client.getVm(created.id))?.status).toBe('present');
  });

  it('a Pulumi create while an apply holds the fleet\'s lock is refused (locked) and leaves nothing; without a holder it goes through', async () => {
    const { provider, inputs, dc } = await setup();
    const lock = await record.acquireLocks(world!.stack, ['api'], { who: 'apply-e', host: 'ci-1', pid: 4242, planId: null });
    try {
      const err = (await provider.create(inputs).catch((e: unknown) => e)) as FleetError;
      expect(err).toBeInstanceOf(FleetError);
      expect(JSON.stringify(err.diagnostics)).toContain('fleet api is locked by an apply');
      expect((await dc.client.listVms()).filter((v) => v.status === 'present')).toEqual([]);
      expect(await record.listVms(world!.stack)).toEqual([]);
    } finally {
      await lock.release();
    }
    const created = await provider.create(inputs);
    expect(created.outs as never).toMatchObject({ state: 'Running' });
  });

  it('a missing token is apply.token-missing, naming the variable', async () => {
    const { provider, inputs } = await setup();
    delete process.env[TOKEN_ENV];
    const err = (await provider.create(inputs).catch((e: unknown) => e)) as FleetError;
    expect(err.diagnostics[0].code).toBe('apply.token-missing');
    expect(err.diagnostics[0].detail).toContain(TOKEN_ENV);
  });
});

// Found by QA: a `pulumi destroy` of a VM the record no longer has (a record reset or restored from before the
// VM was made) failed forever, the authority vetoing every step ("VM ... is not in the record"), even when its
// data center had no such VM either: there was nothing to delete and no way to finish the destroy.
describe('DataCenterProvider.delete (Pulumi) of a VM the record does not know', () => {
  const size = { cpu: 2, memoryGiB: 4, diskGiB: 20 };
  const props: VmOutputs = {
    stack: 's', fleet: 'api', owner: 'team', index: 0, name: 's-api-0', image: 'ubuntu-22.04', size, encryptedDisk: true,
    desiredState: 'Running', specHash: 'h1', planId: null, vmId: 'vm-1', dataCenter: 'miami', state: 'Running', cloudId: 'c-1', realImage: 'img', version: 3,
  };
  /** A DMZ client whose authority knows no VM: every step is vetoed without a VM; the cloud holds `cloud`. */
  function stubbed(cloud: ActualVm | undefined): { provider: DataCenterProvider; sent: number } {
    const state = { sent: 0 };
    const conn: DmzConnection = {
      run: async (steps, onStep) => {
        state.sent += steps.length;
        onStep(0, { requestId: 'r-0', decision: 'vetoed', outcome: 'vetoed', reason: 'VM vm-1 is not in the record' });
      },
      getVm: async () => cloud,
      listVms: async () => (cloud ? [cloud] : []),
    };
    class Stub extends DataCenterProviderClass {
      override connect(): DmzConnection {
        return conn;
      }
    }
    const provider = new Stub({ dataCenter: 'miami', url: 'http://127.0.0.1:1', tokenEnv: 'UNUSED', lifecycle: lifecycleData(lifecycle) });
    return { provider, get sent() { return state.sent; } };
  }
  let lifecycle: Awaited<ReturnType<typeof defaultPack>>['lifecycle'];
  beforeAll(async () => {
    lifecycle = (await defaultPack()).lifecycle;
  });
  const actual = (status: ActualVm['status']): ActualVm => ({ vmId: 'vm-1', cloudId: 'c-1', dataCenter: 'miami', name: 's-api-0', image: 'img', size, encryptedDisk: true, status, power: status === 'present' ? 'on' : 'off', agent: 'none', observedState: status === 'present' ? 'Running' : 'Deleted' } as ActualVm);

  it.each([
    ['has no such VM', undefined],
    ['holds it as terminated', actual('terminated')],
  ])('succeeds when its data center %s (nothing to delete)', async (_what, cloud) => {
    await expect(stubbed(cloud).provider.delete('vm-1', props)).resolves.toBeUndefined();
  });

  it('fails when its data center still has it, saying so and what to do', async () => {
    const e = await stubbed(actual('present')).provider.delete('vm-1', props).then(() => undefined, (err: unknown) => err);
    expect(e).toBeInstanceOf(FleetError);
    expect((e as FleetError).message).toMatch(/VM vm-1 is not in the record/);
    expect((e as FleetError).message).toMatch(/still has it \(cloud id c-1/);
    expect((e as FleetError).message).toMatch(/Delete it in the cloud .*then run the destroy again/);
  });
});
