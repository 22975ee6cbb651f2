// A VM whose boot the authority denied, which its data center could not delete, on the Pulumi path
// (docs/recovery.md, "A denied VM its data center still holds"; docs/pulumi.md). `fleet apply` deletes such a VM
// along the recovery edges and creates the member again; a program's Vm and Fleet retried it instead: the next
// `pulumi up` booted the same VM (the same disk) again under a fresh boot token, so the denial did not stick. Now the
// failed step's answer says so (StepResult.bootDenied, which the authority sets only when the record holds both
// signals: the DMZ client's failure report `driver.boot-denied` and its own denial of that boot), the provider keeps
// it in the VM's outputs (the partial resource of the failed update), and the next diff replaces the Vm (delete
// first) or the Fleet's update replaces the member. A boot failure without both signals is still retried.
//
// The providers are called directly, as Pulumi's dynamic-provider host calls them (a replace: diff, then delete,
// then create), against the embedded authority and sim DMZ clients; the sim's faults (setFaults) take a VM there:
// forgeBootTokens (its agent presents a token nobody issued: the authority denies the boot) with deleteVm failing
// (awaitReady cannot delete the denied VM: it stays, powered off).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../../engine/diags/index.ts';
import { specHash } from '../../engine/spec/index.ts';
import type { VmOutputs } from '../provider.ts';
import { FleetProvider, type FleetInputs, type FleetOutputs } from './fleet.ts';
import { providerOptions } from './stack.ts';
import { startEmbeddedStack, type EmbeddedStack } from './testing.ts';
import { providerFor, VmProvider, type VmResourceInputs, type VmResourceOutputs } from './vm.ts';

let es: EmbeddedStack;
beforeAll(async () => {
  es = await startEmbeddedStack();
}, 120_000);
afterAll(async () => {
  await es?.close();
});

const sim = () => es.embedded.drivers.get('miami')!;
const size = { cpu: 1, memoryGiB: 2, diskGiB: 10 };
const hash = specHash({ image: 'ubuntu-22.04', size, hardware: [], encryptedDisk: true });

function vm(fleet: string, desiredState: string): VmResourceInputs {
  return { stack: es.stack.name, fleet, owner: 'team-payments', index: 0, name: `${es.stack.name}-${fleet}-0`, image: 'ubuntu-22.04', size, encryptedDisk: true, desiredState, specHash: hash, planId: null, token: es.tokens.miami };
}

function fleet(name: string, state: string): FleetInputs {
  return { spec: { name, owner: 'team-payments', count: 1, image: 'ubuntu-22.04', size, encryptedDisk: true, placement: { dataCenters: ['miami'] }, state }, specHash: hash, tokens: { ...es.tokens } };
}

async function rejection<P>(p: Promise<unknown>): Promise<FleetError & { id?: string; properties?: P }> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(FleetError);
  return e as FleetError & { id?: string; properties?: P };
}

/** The VM's cloud status in miami, as its DMZ client says (undefined: none). */
async function cloud(vmId: string): Promise<string | undefined> {
  return (await providerFor(providerOptions(es.fleetStack, 'miami'), es.tokens.miami).getVm(vmId))?.status;
}

/** The VM's history as edges `from -> to outcome`. */
async function edges(address: string, vmId: string): Promise<string[]> {
  return (await es.record.history(es.stack.name, address)).filter((h) => h.vmId === vmId).map((h) => `${h.from} -> ${h.to} ${h.outcome}`);
}

/** Boots a PoweredOff member with `faults` set in miami's sim: the update fails at the boot and answers where the VM is. */
async function failedBoot<P>(update: () => Promise<unknown>, faults: Parameters<ReturnType<typeof sim>['setFaults']>[0]): Promise<FleetError & { id?: string; properties?: P }> {
  sim().setFaults(faults);
  try {
    return await rejection<P>(update());
  } finally {
    sim().setFaults({});
  }
}

const DENIED = { forgeBootTokens: true, failCalls: ['deleteVm'] };

describe('a Vm whose boot the authority denied, still in its data center', () => {
  it('is replaced by the next pulumi up (the old VM deleted first), never booted again', async () => {
    const p = new VmProvider(providerOptions(es.fleetStack, 'miami'));
    const created = await p.create(vm('den-vm', 'PoweredOff'));
    const running = vm('den-vm', 'Running');
    const e = await failedBoot<VmResourceOutputs>(() => p.update(created.id, created.outs as VmResourceOutputs, running), DENIED);
    expect(e.message).toMatch(/it was not deleted yet \(sim miami: deleteVm is configured to fail/);
    const olds = e.properties!;
    expect(olds).toMatchObject({ vmId: created.id, state: 'BootFailed', token: es.tokens.miami });
    expect(olds.cloudId).not.toBeNull();
    expect(await cloud(created.id)).toBe('present');

    // The next `pulumi up`: the diff replaces it, deleting it first; Pulumi then calls delete and create.
    expect(await p.diff(created.id, olds, running)).toEqual({ changes: true, replaces: ['bootDenied'], deleteBeforeReplace: true });
    expect(olds.bootDenied).toBe(true);
    // A `pulumi refresh` first: the cloud shows the VM powered off, the outputs keep its failure state and the mark.
    const read = (await p.read(created.id, olds)).props as VmResourceOutputs;
    expect(read).toMatchObject({ state: 'BootFailed', bootDenied: true, cloudId: olds.cloudId, token: es.tokens.miami });
    expect(await p.diff(created.id, read, running)).toMatchObject({ replaces: ['bootDenied'] });
    // An update all the same (an engine that did not replace) is refused: it would boot the VM the authority refused.
    const refused = await rejection(p.update(created.id, olds, running));
    expect(refused.message).toMatch(/The authority denied the boot of den-vm\/0 .*so it is not booted again: it is deleted and created again.*`pulumi up --replace`/);
    await p.delete(created.id, olds);
    const again = await p.create(running);
    expect(again.id).not.toBe(created.id);
    expect((again.outs as VmOutputs).state).toBe('Running');
    expect((again.outs as VmOutputs).bootDenied).toBeUndefined();
    // The denied VM is gone from the data center, deleted along the recovery edges and never booted again.
    expect(await cloud(created.id)).toBe('terminated');
    expect((await es.record.getVm(created.id))?.state).toBe('Deleted');
    const h = await edges('den-vm/0', created.id);
    expect(h).toContain('BootFailed -> BeingDeleted ok');
    expect(h).toContain('BeingDeleted -> Deleted ok');
    expect(h).not.toContain('BootFailed -> PoweredOff ok');
    await p.delete(again.id, { ...(again.outs as VmOutputs), token: es.tokens.miami });
  }, 120_000);

  // Only both signals make a denial (docs/recovery.md): a boot that failed otherwise, or a driver that says
  // boot-denied while the authority denied nothing (its VM powered itself off in its boot), is booted again.
  it.each([
    ['its boot failed (boot-failed)', 'boot-failed'],
    ['its driver says boot-denied, the authority denied nothing', 'boot-denied'],
  ] as const)('%s: retried, the same VM booted again', async (_what, kind) => {
    const p = new VmProvider(providerOptions(es.fleetStack, 'miami'));
    const name = `ret-${kind}`;
    const created = await p.create(vm(name, 'PoweredOff'));
    const running = vm(name, 'Running');
    const e = await failedBoot<VmResourceOutputs>(() => p.update(created.id, created.outs as VmResourceOutputs, running), { failWith: { awaitReady: kind } });
    const olds = e.properties!;
    expect(olds).toMatchObject({ vmId: created.id, state: 'BootFailed' });
    expect(olds.bootDenied).toBeUndefined();
    expect(await p.diff(created.id, olds, running)).toEqual({ changes: true, replaces: [], deleteBeforeReplace: true });
    const updated = (await p.update(created.id, olds, running)).outs as VmOutputs;
    expect(updated).toMatchObject({ vmId: created.id, state: 'Running' });
    expect(await edges(`${name}/0`, created.id)).toContain('BootFailed -> PoweredOff ok');
    await p.delete(created.id, { ...updated, token: es.tokens.miami });
  }, 120_000);
});

// A boot denied during the create itself, with the data center refusing the delete: the create's clean-up stops at
// BeingDeleted (committed to deletion: no requestable state is reachable from there) and the create's error answers
// the VM as a partial resource. The next `pulumi up` diffed it as an update, whose walk from BeingDeleted to Running has
// no path: every `pulumi up` failed with "No path of lifecycle edges leads from BeingDeleted to Running", and a
// `pulumi refresh` read the cloud's PoweredOff, after which the update was vetoed by the record. Now the diff replaces
// it (the old VM's delete finished first), as `fleet plan` recreates a member committed to deletion.
describe('a VM whose boot the authority denied at its create, which its data center could not delete', () => {
  it('Vm: the next pulumi up finishes deleting it and creates it again, never booting it again', async () => {
    const p = new VmProvider(providerOptions(es.fleetStack, 'miami'));
    const running = vm('den-new', 'Running');
    sim().setFaults(DENIED);
    let e: FleetError & { id?: string; properties?: VmResourceOutputs };
    try {
      e = await rejection<VmResourceOutputs>(p.create(running));
    } finally {
      sim().setFaults({});
    }
    expect(e.message).toMatch(/boot denied/);
    expect(e.message).toMatch(/Cleaning up VM .* failed too/);
    const id = e.id!;
    const olds = e.properties!;
    expect(olds).toMatchObject({ vmId: id, state: 'BeingDeleted', token: es.tokens.miami });
    expect(await cloud(id)).toBe('present');

    expect(await p.diff(id, olds, running)).toEqual({ changes: true, replaces: ['state'], deleteBeforeReplace: true });
    // A `pulumi refresh` first: the cloud shows it powered off, the record holds it BeingDeleted; the outputs keep that.
    const read = (await p.read(id, olds)).props as VmResourceOutputs;
    expect(read).toMatchObject({ state: 'BeingDeleted', cloudId: olds.cloudId, token: es.tokens.miami });
    expect(await p.diff(id, read, running)).toMatchObject({ replaces: ['state'], deleteBeforeReplace: true });
    // An update all the same is refused before any request, naming the way out.
    const before = (await edges('den-new/0', id)).length;
    const refused = await rejection(p.update(id, olds, running));
    expect(refused.message).toMatch(/den-new\/0 .*BeingDeleted.*deleted.*`pulumi up --replace`/);
    expect(await edges('den-new/0', id)).toHaveLength(before);

    // Pulumi's replace: delete (the rest of its way, BeingDeleted » Deleted), then create.
    await p.delete(id, read);
    const again = await p.create(running);
    expect((again.outs as VmOutputs).state).toBe('Running');
    expect(await cloud(id)).toBe('terminated');
    const h = await edges('den-new/0', id);
    expect(h).toContain('BeingDeleted -> Deleted ok');
    expect(h).not.toContain('BootFailed -> PoweredOff ok');
    await p.delete(again.id, { ...(again.outs as VmOutputs), token: es.tokens.miami });
  }, 120_000);

  it('Fleet: the next update finishes deleting the member and creates it again', async () => {
    const p = new FleetProvider(es.fleetStack);
    const ins = fleet('den-fnew', 'Running');
    sim().setFaults(DENIED);
    let e: FleetError & { id?: string; properties?: FleetOutputs };
    try {
      e = await rejection<FleetOutputs>(p.create(ins));
    } finally {
      sim().setFaults({});
    }
    const olds = e.properties!;
    const [old] = olds.members;
    expect(old).toMatchObject({ address: 'den-fnew/0', state: 'BeingDeleted' });
    // A `pulumi refresh` first keeps the member BeingDeleted (it read PoweredOff, and the update was then vetoed).
    const read = (await p.read(e.id!, olds)).props as FleetOutputs;
    expect(read.members).toMatchObject([{ vmId: old.vmId, state: 'BeingDeleted' }]);
    expect(await p.diff(e.id!, read, ins)).toMatchObject({ changes: true, replaces: [] });
    const updated = (await p.update(e.id!, read, ins)).outs as FleetOutputs;
    expect(updated.members).toMatchObject([{ address: 'den-fnew/0', state: 'Running' }]);
    expect(updated.members[0].vmId).not.toBe(old.vmId);
    expect(await cloud(old.vmId)).toBe('terminated');
    expect(await edges('den-fnew/0', old.vmId)).not.toContain('BootFailed -> PoweredOff ok');
    await p.delete(e.id!, updated);
  }, 120_000);
});

describe('a Fleet member whose boot the authority denied, still in its data center', () => {
  it('is deleted and created again by the next update, never booted again', async () => {
    const p = new FleetProvider(es.fleetStack);
    const created = await p.create(fleet('den-fleet', 'PoweredOff'));
    const outs = created.outs as FleetOutputs;
    const [old] = outs.members;
    expect(old.state).toBe('PoweredOff');
    const running = fleet('den-fleet', 'Running');
    const e = await failedBoot<FleetOutputs>(() => p.update(created.id, outs, running), DENIED);
    const olds = e.properties!;
    expect(olds.members).toMatchObject([{ vmId: old.vmId, address: 'den-fleet/0', state: 'BootFailed' }]);
    expect(olds.members[0].cloudId).not.toBeNull();
    // A `pulumi refresh` first: the cloud shows the member powered off, the outputs keep its failure state and mark.
    const read = (await p.read(created.id, olds)).props as FleetOutputs;
    expect(read.members).toMatchObject([{ vmId: old.vmId, state: 'BootFailed' }]);
    expect(read.members[0].bootDenied).toBe(true);

    expect(await p.diff(created.id, olds, running)).toMatchObject({ changes: true, replaces: [] });
    const updated = (await p.update(created.id, olds, running)).outs as FleetOutputs;
    expect(updated.members).toMatchObject([{ address: 'den-fleet/0', dataCenter: 'miami', state: 'Running' }]);
    expect(updated.members[0].vmId).not.toBe(old.vmId);
    expect(olds.members[0].bootDenied).toBe(true);
    expect(updated.members[0].bootDenied).toBeUndefined();
    expect(await cloud(old.vmId)).toBe('terminated');
    expect((await es.record.getVm(old.vmId))?.state).toBe('Deleted');
    const h = await edges('den-fleet/0', old.vmId);
    expect(h).toContain('BootFailed -> BeingDeleted ok');
    expect(h).not.toContain('BootFailed -> PoweredOff ok');
    // Nothing more to do.
    expect(await p.diff(created.id, updated, running)).toMatchObject({ changes: false });
    await p.delete(created.id, updated);
  }, 120_000);

  it('whose boot failed otherwise is booted again (the same VM)', async () => {
    const p = new FleetProvider(es.fleetStack);
    const created = await p.create(fleet('ret-fleet', 'PoweredOff'));
    const outs = created.outs as FleetOutputs;
    const running = fleet('ret-fleet', 'Running');
    const e = await failedBoot<FleetOutputs>(() => p.update(created.id, outs, running), { failWith: { awaitReady: 'boot-failed' } });
    const olds = e.properties!;
    expect(olds.members).toMatchObject([{ vmId: outs.members[0].vmId, state: 'BootFailed' }]);
    const updated = (await p.update(created.id, olds, running)).outs as FleetOutputs;
    expect(updated.members).toMatchObject([{ vmId: outs.members[0].vmId, state: 'Running' }]);
    await p.delete(created.id, updated);
  }, 120_000);
});
