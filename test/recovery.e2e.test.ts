// Every stuck VM has a way out (issue 14): real CLI, real record, the real
// authority and sim DMZ clients over loopback HTTP, the default pack.
//
// Embedded (PGlite), always: a VM removed from its data center is created
// again by the next plan and apply (and one the plan deletes is forgotten,
// not failed at `shutdown … has no VM`); a BootFailed VM whose cloud VM is
// gone is deleted along the recovery edges and created again; `fleet state
// rm` forgets a VM and `fleet import` adopts it back; a table over the
// states a failed cloud call leaves a VM in (CreateFailed, PoweredOff,
// PoweredOn, ShuttingDown, BeingDeleted) and each way out docs/recovery.md
// gives (the next apply, refresh, --replace, state rm + import).
//
// Deployed (PostgreSQL, FLEET_TEST_POSTGRES_URL): the authority and the DMZ
// client are processes of their own, so the sim's boot agents live on after
// the CLI exits and two CLIs reach one data center at once: awaitReady
// faults (agents denied and their VMs terminated after the record says
// BootFailed) then one clean re-run converges; two applies of one fleet with
// --lock-timeout both succeed, the second planned after the first.
import { spawn } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRecord } from '../engine/record/index.ts';
import { testPostgresUrl } from '../engine/record/testing.ts';
import { createSimDriver } from '../providers/drivers/sim/index.ts';
import { signedCredentials, testCredentialKey } from '../providers/drivers/sim/testing.ts';
import type { ActualVm } from '../protocol/index.ts';
import { runCli } from './helpers/cli.ts';
import { deployedStack, type Deployed } from './helpers/deployed.ts';
import { schemaErrors } from './helpers/schemas.ts';
import { REPO, fleetYaml, tempStack, useTempStack } from './helpers/stack.ts';
import { readWorld } from './helpers/world.ts';

interface World {
  vms: { address: string; state: string; dataCenter: string; id: string; cloudId: string | null }[];
  /** Every VM the data centers list, present or terminated. */
  cloud: ActualVm[];
}

const world = (dir: string, env: NodeJS.ProcessEnv = process.env): Promise<World> => readWorld(dir, env);

/** Every record VM is present exactly once in its data center, in the record's state, and nothing else is present. */
function expectConverged(w: World): void {
  const present = w.cloud.filter((c) => c.status === 'present');
  for (const vm of w.vms) {
    const mine = present.filter((c) => c.vmId === vm.id);
    expect(mine, `${vm.address} present once`).toHaveLength(1);
    expect(mine[0].dataCenter).toBe(vm.dataCenter);
    expect(mine[0].observedState, `${vm.address} state`).toBe(vm.state);
  }
  expect(present).toHaveLength(w.vms.length);
}

const states = (w: World) => Object.fromEntries(w.vms.map((v) => [v.address, v.state]));

/** Terminates a VM in an embedded sim data center, as someone using the cloud's console would (no CLI may run meanwhile). */
async function removeFromSim(stackDir: string, dataCenter: string, vm: { id: string; cloudId: string | null }): Promise<void> {
  // The data center's state opened by a driver of our own, with the test key: the cloud's console, not a DMZ client.
  const sim = await createSimDriver({ dataCenter, stateDir: join(stackDir, '.fleet', 'sim', dataCenter), latencyMs: 0, credentialKey: testCredentialKey(dataCenter) });
  try {
    await sim.deleteVm(signedCredentials(dataCenter), { vmId: vm.id, cloudId: vm.cloudId });
  } finally {
    await sim.close();
  }
}

/** Powers a VM of an embedded sim data center off, as someone using the cloud's console would (no CLI may run meanwhile). */
async function powerOffInSim(stackDir: string, dataCenter: string, vm: { id: string; cloudId: string | null }): Promise<void> {
  const sim = await createSimDriver({ dataCenter, stateDir: join(stackDir, '.fleet', 'sim', dataCenter), latencyMs: 0, credentialKey: testCredentialKey(dataCenter) });
  try {
    await sim.powerOff(signedCredentials(dataCenter), { vmId: vm.id, cloudId: vm.cloudId });
  } finally {
    await sim.close();
  }
}

/** Replaces the sim settings of every data center of a temp stack. */
async function setSim(dir: string, sim: string): Promise<void> {
  const file = join(dir, 'stack.yaml');
  await writeFile(file, (await readFile(file, 'utf8')).replace(/sim: \{[^\n]*\}/g, `sim: ${sim}`));
}

// The patent's trusted boot: a VM whose boot the authority denied is not allowed to live. When its driver could not
// delete it (the cloud refused or failed the delete, or the step's credentials expired during the wait), it stays,
// powered off, and the record holds it BootFailed with its cloud id. The next apply booted that same VM (same disk)
// again under a fresh token, so a denial did not stick; it deletes it along the recovery edges and creates the member
// anew. The sim's faults: forgeBootTokens (the authority denies every boot) and deleteVm in failCalls (awaitReady
// cannot delete the denied VM).
describe('a denied VM its data center still holds (embedded)', () => {
  const st = useTempStack();
  const fleet = st.fleet;

  it('is deleted from the data center along the recovery edges and created again by the next apply, never booted again', async () => {
    await st.spec('den', fleetYaml('den', { count: 1 }));
    await setSim(st.dir, '{ latencyMs: 1, bootMs: 1, forgeBootTokens: true, failCalls: [deleteVm] }');
    const failed = await fleet('apply', '--yes');
    expect(failed.code).toBe(1);
    const said = failed.stdout + failed.stderr;
    // boot-denied, not the delete's failure: the hint is the denial's.
    // Its start: the rest names the data center's own words, checked below.
    expect(said).toContain('The authority denied its boot, so the VM is terminated (or, when its data center could not delete');
    expect(said).toMatch(/it was not deleted yet \(sim \S+: deleteVm is configured to fail \(failCalls\)\)/);
    const stuck = await world(st.dir);
    const old = stuck.vms.find((v) => v.address === 'den/0')!;
    expect(old).toMatchObject({ state: 'BootFailed' });
    expect(old.cloudId).not.toBeNull();
    // The denied VM is still in its data center, powered off by its agent.
    expect(stuck.cloud.filter((c) => c.cloudId === old.cloudId)).toMatchObject([{ status: 'present', observedState: 'PoweredOff' }]);
    // The authority wrote the denial into the VM's history while it was Starting; the DMZ client's failure after it.
    const h0 = (await fleet('history', 'den/0')).stdout;
    expect(h0).toMatch(/Starting\s+Starting\s+denied/);
    expect(h0).toMatch(/Starting\s+BootFailed\s+failed/);

    await setSim(st.dir, '{ latencyMs: 1, bootMs: 1 }');
    const plan = await fleet('plan');
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/-\/\+ den\/0 replace in \S+: recover: BootFailed after a denied boot; the authority refused VM \S+, which \S+ still holds \(powered off\), so it is not booted again: delete it along the recovery edges and create it again/);
    expect(plan.stdout).toContain('BootFailed » BeingDeleted » Deleted');
    expect(plan.stdout).not.toContain('BootFailed » PoweredOff');

    const r = await fleet('apply', '--yes');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const w = await world(st.dir);
    expect(states(w)).toEqual({ 'den/0': 'Running' });
    const now = w.vms.find((v) => v.address === 'den/0')!;
    expect(now.id).not.toBe(old.id);
    expect(now.cloudId).not.toBe(old.cloudId);
    expect(now.dataCenter).toBe(old.dataCenter);
    // The denied VM is gone from the data center (deleteVm), and never booted again; the new one runs.
    expect(w.cloud.filter((c) => c.cloudId === old.cloudId)).toMatchObject([{ status: 'terminated' }]);
    expectConverged(w);
    const h = (await fleet('history', 'den/0')).stdout;
    for (const edge of [/BootFailed\s+BeingDeleted\s+ok/, /BeingDeleted\s+Deleted\s+ok/]) expect(h).toMatch(edge);
    expect(h).not.toMatch(/BootFailed\s+PoweredOff/);
    expect((await fleet('plan', '--detailed-exitcode')).code).toBe(0);
  }, 300_000);

  // Its cloud shows the denied VM PoweredOff, one edge (BootFailed -> PoweredOff, powerOff) from the record's state: a
  // refresh recorded that drift, the record no longer held the VM in a failure state, so the plan no longer saw the
  // denial and the next apply booted the same VM (same disk) again under a fresh token.
  it('stays marked for recreation across fleet refresh and plan --refresh: the refresh keeps it BootFailed and says why', async () => {
    await st.spec('dre', fleetYaml('dre', { count: 1 }));
    await setSim(st.dir, '{ latencyMs: 1, bootMs: 1, forgeBootTokens: true, failCalls: [deleteVm] }');
    expect((await fleet('apply', '--yes', '--target', 'dre')).code).toBe(1);
    const old = (await world(st.dir)).vms.find((v) => v.address === 'dre/0')!;
    expect(old).toMatchObject({ state: 'BootFailed' });
    await setSim(st.dir, '{ latencyMs: 1, bootMs: 1 }');

    const check = await fleet('refresh', '--check');
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toMatch(/not-an-edge\s+\S+\s+dre\/0\s+\S+ reports PoweredOff but the record holds BootFailed, and the authority denied its latest boot/);
    // Twice: a refresh after the one that kept it keeps it too.
    for (let i = 0; i < 2; i++) {
      const r = await fleet('refresh');
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/not-an-edge\s+\S+\s+dre\/0\s+.*kept in BootFailed/);
    }
    const kept = (await world(st.dir)).vms.find((v) => v.address === 'dre/0')!;
    expect(kept).toMatchObject({ id: old.id, state: 'BootFailed', cloudId: old.cloudId });
    const h = (await fleet('history', 'dre/0')).stdout;
    expect(h).not.toMatch(/BootFailed\s+PoweredOff/);
    expect(h).toMatch(/BootFailed\s+BootFailed\s+drift/);

    const plan = await fleet('plan', '--refresh', '--target', 'dre');
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/-\/\+ dre\/0 replace in \S+: recover: BootFailed after a denied boot/);
    expect(plan.stdout).not.toContain('BootFailed » PoweredOff');

    const r = await fleet('apply', '--yes', '--target', 'dre');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const w = await world(st.dir);
    const now = w.vms.find((v) => v.address === 'dre/0')!;
    expect(now).toMatchObject({ state: 'Running' });
    expect(now.id).not.toBe(old.id);
    expect(w.cloud.filter((c) => c.cloudId === old.cloudId)).toMatchObject([{ status: 'terminated' }]);
    expect((await fleet('history', 'dre/0')).stdout).not.toMatch(/BootFailed\s+PoweredOff/);
  }, 300_000);

  // The replace's deleteVm of the denied VM fails too (its data center still refuses the delete): the old VM is left
  // BeingDeleted, which nothing leads from back to Running. Every plan after said `no path from BeingDeleted to
  // Running in the diagram` and was blocked: the member was stuck. The plan finishes the deletion and creates it again.
  it('left BeingDeleted by a replace whose delete failed too, is deleted and created again by the next apply', async () => {
    await st.spec('dbd', fleetYaml('dbd', { count: 1 }));
    await setSim(st.dir, '{ latencyMs: 1, bootMs: 1, forgeBootTokens: true, failCalls: [deleteVm] }');
    expect((await fleet('apply', '--yes', '--target', 'dbd')).code).toBe(1);
    await setSim(st.dir, '{ latencyMs: 1, bootMs: 1, failCalls: [deleteVm] }');
    const again = await fleet('apply', '--yes', '--target', 'dbd');
    expect(again.code, again.stdout).toBe(1);
    expect(again.stdout + again.stderr).toMatch(/deleteVm is configured to fail/);
    const stuck = await world(st.dir);
    const old = stuck.vms.find((v) => v.address === 'dbd/0')!;
    expect(old).toMatchObject({ state: 'BeingDeleted' });
    expect(old.cloudId).not.toBeNull();
    expect(stuck.cloud.filter((c) => c.cloudId === old.cloudId)).toMatchObject([{ status: 'present', observedState: 'PoweredOff' }]);

    await setSim(st.dir, '{ latencyMs: 1, bootMs: 1 }');
    const plan = await fleet('plan', '--target', 'dbd');
    expect(plan.code, plan.stdout + plan.stderr).toBe(0);
    expect(plan.stdout).toContain(
      `-/+ dbd/0 replace in ${old.dataCenter}: recover: BeingDeleted, where an earlier apply did not finish deleting VM ${old.cloudId} (its deleteVm failed or did not answer), and nothing leads from there to Running: finish deleting it and create it again`,
    );
    expect(plan.stdout).toContain('old:  BeingDeleted » Deleted');
    const r = await fleet('apply', '--yes', '--target', 'dbd');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const w = await world(st.dir);
    const now = w.vms.find((v) => v.address === 'dbd/0')!;
    expect(now).toMatchObject({ state: 'Running', dataCenter: old.dataCenter });
    expect(now.id).not.toBe(old.id);
    expect(w.cloud.filter((c) => c.cloudId === old.cloudId)).toMatchObject([{ status: 'terminated' }]);
    // Never booted again.
    expect((await fleet('history', 'dbd/0')).stdout).not.toMatch(/BootFailed\s+PoweredOff/);
    expect((await fleet('plan', '--detailed-exitcode', '--target', 'dbd')).code).toBe(0);
  }, 300_000);

  // An ordinary failed boot (not denied) whose VM its cloud holds powered off is still recorded BootFailed -> PoweredOff.
  it('an ordinary BootFailed VM powered off in its cloud is still recorded BootFailed -> PoweredOff by refresh', async () => {
    await st.spec('bfo', fleetYaml('bfo', { count: 1 }));
    await setSim(st.dir, '{ latencyMs: 1, bootMs: 1, failCalls: [awaitReady] }');
    expect((await fleet('apply', '--yes', '--target', 'bfo')).code).toBe(1);
    const old = (await world(st.dir)).vms.find((v) => v.address === 'bfo/0')!;
    expect(old).toMatchObject({ state: 'BootFailed' });
    await setSim(st.dir, '{ latencyMs: 1, bootMs: 1 }');
    await powerOffInSim(st.dir, old.dataCenter, old);
    expect((await world(st.dir)).cloud.filter((c) => c.cloudId === old.cloudId)).toMatchObject([{ status: 'present', observedState: 'PoweredOff' }]);
    const r = await fleet('refresh');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/recorded\s+\S+\s+bfo\/0\s+recorded BootFailed -> PoweredOff/);
    expect((await world(st.dir)).vms.find((v) => v.address === 'bfo/0')).toMatchObject({ state: 'PoweredOff', cloudId: old.cloudId });
  }, 300_000);
});

describe('a VM gone from its data center (embedded)', () => {
  const st = useTempStack();
  const fleet = st.fleet;

  it('is created again by the next plan and apply after a refresh records it, and one the plan deletes is forgotten, not failed', async () => {
    await st.spec('web', fleetYaml('web', { count: 3 }));
    expect((await fleet('apply', '--yes')).code).toBe(0);
    const before = await world(st.dir);
    const web0 = before.vms.find((v) => v.address === 'web/0')!;
    const web2 = before.vms.find((v) => v.address === 'web/2')!;
    await removeFromSim(st.dir, web0.dataCenter, web0);
    await removeFromSim(st.dir, web2.dataCenter, web2);

    // The refresh records web/0 as gone (the terminal state, retired), so the plan creates it again.
    const plan = await fleet('plan', '--refresh', '--detailed-exitcode');
    expect(plan.code, plan.stderr).toBe(2);
    expect(plan.stderr).toMatch(/refresh: missing \S+ web\/0: .*recorded Deleted: the next plan creates web\/0 again/);
    expect(plan.stdout).toContain('+   web/0 create');
    const h = await fleet('history', 'web/0');
    expect(h.stdout).toMatch(/Running\s+Deleted\s+drift/);

    // web/2 vanished too; lowering count deletes it: nothing left to shut down, so apply records it gone instead of failing.
    await st.spec('web', fleetYaml('web', { count: 2 }));
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    const after = await world(st.dir);
    expect(states(after)).toEqual({ 'web/0': 'Running', 'web/1': 'Running' });
    expect(after.vms.find((v) => v.address === 'web/0')!.id).not.toBe(web0.id);
    expectConverged(after);
    expect((await fleet('plan', '--detailed-exitcode')).code).toBe(0);
  }, 300_000);

  it('a BootFailed VM whose cloud VM is gone is deleted along the recovery edges and created again by the next apply', async () => {
    await st.spec('db', fleetYaml('db', { count: 2 }));
    // awaitReady fails at once; the agents (a minute away) never ask during this apply.
    await setSim(st.dir, '{ latencyMs: 1, bootMs: 60000, failCalls: [awaitReady] }');
    const failed = await fleet('apply', '--yes');
    expect(failed.code).toBe(1);
    // Counted as it happened: each member did 5 requests (insert, Requested to Starting) and failed at awaitReady.
    expect(failed.stdout).toContain('Apply failed: 0 VMs changed, 2 failed; 10 steps done, 2 failed; in ');
    const stuck = await world(st.dir);
    expect(states(stuck)).toMatchObject({ 'db/0': 'BootFailed', 'db/1': 'BootFailed' });
    // Their VMs are terminated in the cloud (as a denied boot does): the record says BootFailed, the cloud holds nothing.
    for (const vm of stuck.vms.filter((v) => v.address.startsWith('db/'))) await removeFromSim(st.dir, vm.dataCenter, vm);

    await setSim(st.dir, '{ latencyMs: 1, bootMs: 1 }');
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('warning[apply.vm-missing]');
    expect(r.stdout).toMatch(/-\/\+ db\/0 replace in \S+: recover: BootFailed and \S+ has no VM of it/);
    expect(r.stdout).toContain('BootFailed » BeingDeleted » Deleted');
    const w = await world(st.dir);
    expect(states(w)).toEqual({ 'db/0': 'Running', 'db/1': 'Running', 'web/0': 'Running', 'web/1': 'Running' });
    expectConverged(w);
    const h = (await fleet('history', 'db/0')).stdout;
    for (const edge of [/BootFailed\s+BeingDeleted\s+ok/, /BeingDeleted\s+Deleted\s+ok/]) expect(h).toMatch(edge);
  }, 300_000);

  it('state rm forgets a VM (in history) and import adopts it back; neither touches the data center', async () => {
    const w0 = await world(st.dir);
    const db1 = w0.vms.find((v) => v.address === 'db/1')!;
    const rm = await fleet('state', 'rm', 'db/1');
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toContain(`still holds its VM ${db1.cloudId}: \`fleet import db/1 ${db1.cloudId}\``);
    expect((await fleet('state', 'show', 'db/1')).stderr).toContain('record.vm-not-found');
    expect((await fleet('history', 'db/1')).stdout).toMatch(/Running\s+Running\s+removed/);
    const again = await fleet('state', 'rm', 'db/1', '--format', 'json');
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stdout)).toMatchObject({ diagnostics: [{ code: 'record.vm-not-found', address: 'db/1' }] });
    expect(schemaErrors('state-rm-output', JSON.parse(again.stdout))).toEqual([]);
    expect((await fleet('state', 'rm', 'db-1')).stderr).toContain('is not a VM address');
    // The cloud still runs it: the plan would create a second one.
    expect((await fleet('plan')).stdout).toContain('+   db/1 create');

    expect((await fleet('import', 'db/1', 'no-such-vm')).stderr).toContain('apply.import-not-found');
    expect((await fleet('import', 'db/0', db1.cloudId!)).stderr).toContain('db/0 is live in the record already');
    expect((await fleet('import', 'db/7', db1.cloudId!)).stderr).toContain('fleet db has count 2');
    const imp = await fleet('import', 'db/1', db1.cloudId!, '--format', 'json');
    expect(imp.code, imp.stderr).toBe(0);
    expect(JSON.parse(imp.stdout)).toMatchObject({ imported: { id: db1.id, address: 'db/1', state: 'Running', cloudId: db1.cloudId }, diagnostics: [] });
    expect(schemaErrors('import-output', JSON.parse(imp.stdout))).toEqual([]);
    expect((await fleet('history', 'db/1')).stdout).toMatch(/-\s+Running\s+imported/);

    // A VM the record tracks at another address is not adopted a second time, and the refusal says where it is
    // (it was record.version-conflict, "Record changed concurrently").
    const db0 = w0.vms.find((v) => v.address === 'db/0')!;
    expect((await fleet('state', 'rm', 'db/0')).code).toBe(0);
    const twice = await fleet('import', 'db/0', db1.cloudId!, '--format', 'json');
    expect(twice.code).toBe(1);
    expect(JSON.parse(twice.stdout)).toMatchObject({ diagnostics: [{ code: 'apply.import-refused', address: 'db/0' }] });
    expect(JSON.parse(twice.stdout).diagnostics[0].detail).toContain(`(VM ${db1.id}) is live in the record already, at db/1 (Running); \`fleet state rm db/1\``);
    expect((await fleet('state', 'show', 'db/0')).stderr).toContain('record.vm-not-found');
    // Nor is a VM of another stack that shares the record (its data center's state copied: a second stack seeing the same VM).
    const other = await tempStack({ name: 'other' });
    try {
      await other.spec('db', fleetYaml('db', { count: 2 }));
      await cp(join(st.dir, '.fleet', 'sim'), join(other.dir, '.fleet', 'sim'), { recursive: true });
      const foreign = await runCli(['import', 'db/0', db0.cloudId!, '--stack', other.dir, '--record-url', `pglite://${join(st.dir, '.fleet', 'record')}`], { cwd: REPO });
      expect(foreign.code).toBe(1);
      expect(foreign.stderr).toContain(`(VM ${db0.id}) belongs to stack e2e in the record`);
      expect(foreign.stderr).toContain('(db/0, forgotten)');
    } finally {
      await other.remove();
    }
    expect((await fleet('import', 'db/0', db0.cloudId!)).code).toBe(0);

    expect((await fleet('plan', '--detailed-exitcode')).code).toBe(0);
    expectConverged(await world(st.dir));
  }, 300_000);

  it('refresh and plan --refresh leave a fleet an apply holds alone (its VMs are mid-change), refresh the others, and say so', async () => {
    // Before: refresh took no lock. During an apply the cloud is one edge
    // ahead of the record by design, so a refresh recorded the apply's own
    // steps as drift (or a VM being created as missing, CreateFailed with
    // no cloud id) under it, and the apply's reports then met a record moved.
    const w0 = await world(st.dir);
    const db0 = w0.vms.find((v) => v.address === 'db/0')!;
    const web0 = w0.vms.find((v) => v.address === 'web/0')!;
    const record = await openRecord(`pglite://${join(st.dir, '.fleet', 'record')}`);
    let lockId: string;
    try {
      const held = await record.acquireLocks('e2e', ['db'], { who: 'ci', host: 'elsewhere', planId: 'p-running', pid: 1 }, { leaseMs: 600_000 });
      lockId = held.lockId;
    } finally {
      await record.close();
    }
    await removeFromSim(st.dir, db0.dataCenter, db0);
    await removeFromSim(st.dir, web0.dataCenter, web0);

    const check = await fleet('refresh', '--check');
    expect(check.code, check.stderr).toBe(0);
    expect(check.stderr).toMatch(/warning\[apply\.refresh-locked\].*ci@elsewhere pid 1 holds the lock of fleet db \(2 VMs\) for plan p-running since .*left as they are\. Refresh again once that apply is done\./s);
    expect(check.stdout).toMatch(/missing\s+\S+\s+web\/0/);
    expect(check.stdout).not.toContain('db/0');

    const r = await fleet('refresh', '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(schemaErrors('refresh-output', out)).toEqual([]);
    expect(out.drift.map((d: { kind: string; address: string }) => `${d.kind} ${d.address}`)).toEqual(['missing web/0']);
    expect(out.diagnostics).toMatchObject([{ code: 'apply.refresh-locked', severity: 'warning', address: 'db' }]);
    expect(out.checked).toBe(2);
    // web/0 recorded gone (retired, so no longer listed); db/0 untouched.
    expect(states(await world(st.dir))).toEqual({ 'db/0': 'Running', 'db/1': 'Running', 'web/1': 'Running' });

    const plan = await fleet('plan', '--refresh');
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stderr).toContain('warning[apply.refresh-locked]');
    expect(plan.stdout).toContain('+   web/0 create');
    const planJson = await fleet('plan', '--refresh', '--format', 'json');
    expect(planJson.code, planJson.stderr).toBe(0);
    expect(JSON.parse(planJson.stdout).diagnostics).toMatchObject([{ code: 'apply.refresh-locked', address: 'db' }]);
    expect(schemaErrors('plan-output', JSON.parse(planJson.stdout))).toEqual([]);

    // The lock gone, the next refresh finds db/0 missing; one apply brings both back.
    expect((await fleet('unlock', lockId!)).code).toBe(0);
    const again = await fleet('refresh');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/missing\s+\S+\s+db\/0/);
    expect(again.stderr).not.toContain('refresh-locked');
    expect((await fleet('apply', '--yes')).code).toBe(0);
    const w = await world(st.dir);
    expect(states(w)).toEqual({ 'db/0': 'Running', 'db/1': 'Running', 'web/0': 'Running', 'web/1': 'Running' });
    expectConverged(w);
  }, 300_000);
});

describe('every state a failed cloud call leaves a VM in has a documented way out (embedded, docs/recovery.md)', () => {
  // Per state: the fault that leaves a one-member fleet's VM there (the fleet's count, then the count it is
  // brought to), and each way out docs/recovery.md gives, taken with the fault gone: the next apply, `fleet
  // refresh` then apply, `fleet apply --replace`, `fleet state rm` (+ `fleet import` of the VM its data center
  // still holds) then apply. Each must end with the record and the data centers agreeing and no change left.
  // BootFailed (awaitReady failed while the agent still boots: a long bootMs, so the failed apply has ended before it
  // asks): the next apply's data center resumes the agent, which asks at once and is denied, the record holding the
  // member BootFailed. The sim terminated the VM then, while that apply ran, which failed at `powerOff ... has no VM
  // (terminated)`: the way out took two applies (when the denial fell between the apply's check for missing VMs and its
  // powerOff). A denied VM that no awaitReady waits for powers itself off, as the boot
  // agent does on a real cloud, and the next apply goes on from there (pinned without a race in sim.test.ts).
  type Way = 'apply' | 'refresh' | 'replace' | 'rm+import';
  const cases: { state: string; fault: string; counts: [number, number]; ways: Way[]; bootMs?: number }[] = [
    // rm+import: the import's data center resumes the agent, which asks at once with the removed row's token and is
    // denied; the import sees the VM Starting (recorded BootFailed: importedState) or, after the denial, PoweredOff,
    // and the next apply goes on from either without a race (it recorded Starting, and that apply failed at
    // awaitReady or not, by when the agent asked; test/import.cli.test.ts pins the Starting side).
    { state: 'BootFailed', fault: 'awaitReady', counts: [0, 1], ways: ['apply', 'refresh', 'replace', 'rm+import'], bootMs: 30_000 },
    { state: 'CreateFailed', fault: 'createVm', counts: [0, 1], ways: ['apply', 'refresh', 'replace', 'rm+import'] },
    { state: 'PoweredOff', fault: 'powerOn', counts: [0, 1], ways: ['apply', 'refresh', 'replace', 'rm+import'] },
    { state: 'PoweredOn', fault: 'boot', counts: [0, 1], ways: ['apply', 'refresh', 'replace', 'rm+import'] },
    { state: 'ShuttingDown', fault: 'powerOff', counts: [1, 0], ways: ['apply', 'refresh'] },
    { state: 'BeingDeleted', fault: 'deleteVm', counts: [1, 0], ways: ['apply', 'refresh'] },
  ];
  const table = cases.flatMap((c) => c.ways.map((way) => ({ ...c, way })));
  it.each(table)('$state (a failed $fault): $way', async ({ state, fault, counts: [from, to], way, bootMs = 1 }) => {
    const st = await tempStack();
    const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
    try {
      if (from > 0) {
        await st.spec('db', fleetYaml('db', { count: from }));
        expect((await fleet('apply', '--yes')).code).toBe(0);
      }
      await setSim(st.dir, `{ latencyMs: 1, bootMs: ${bootMs}, failCalls: [${fault}] }`);
      await st.spec('db', fleetYaml('db', { count: to }));
      const failed = await fleet('apply', '--yes');
      expect(failed.code, failed.stdout).toBe(1);
      const stuck = await world(st.dir);
      expect(states(stuck)).toEqual({ 'db/0': state });
      await setSim(st.dir, '{ latencyMs: 1, bootMs: 1 }');

      if (way === 'refresh') expect((await fleet('refresh')).code).toBe(0);
      if (way === 'rm+import') {
        const vm = stuck.vms[0];
        const rm = await fleet('state', 'rm', 'db/0');
        expect(rm.code, rm.stderr).toBe(0);
        if (vm.cloudId) {
          const imported = await fleet('import', 'db/0', vm.cloudId);
          expect(imported.code, imported.stderr).toBe(0);
        }
      }
      const out = await fleet('apply', '--yes', ...(way === 'replace' ? ['--replace', 'db/0'] : []));
      expect(out.code, `${out.stdout}\n${out.stderr}`).toBe(0);
      const w = await world(st.dir);
      expect(states(w)).toEqual(to > 0 ? { 'db/0': 'Running' } : {});
      expectConverged(w);
      expect((await fleet('plan', '--detailed-exitcode')).code).toBe(0);
    } finally {
      await st.remove();
    }
  }, 120_000);
});

describe('plan --refresh with --target / --exclude (embedded)', () => {
  const st = useTempStack();
  const fleet = st.fleet;

  it('refreshes only the fleets in scope: a fleet left out is not written to (it recorded its drift, and listed its VMs as unknown)', async () => {
    await st.spec('a', fleetYaml('a', { count: 1 }));
    await st.spec('b', fleetYaml('b', { count: 1 }));
    expect((await fleet('apply', '--yes')).code).toBe(0);
    const b0 = (await world(st.dir)).vms.find((v) => v.address === 'b/0')!;
    await removeFromSim(st.dir, b0.dataCenter, b0);

    for (const scope of [['--exclude', 'b'], ['--target', 'a'], ['--target', 'a/0']]) {
      const r = await fleet('plan', '--refresh', '--format', 'json', ...scope);
      expect(r.code, r.stdout).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(schemaErrors('plan-output', out)).toEqual([]);
      expect(out.refresh, scope.join(' ')).toEqual({ checked: 1, drift: [] });
      expect(states(await world(st.dir)), scope.join(' ')).toEqual({ 'a/0': 'Running', 'b/0': 'Running' });
    }
    // In scope, b/0 is found gone and recorded so.
    const r = await fleet('plan', '--refresh', '--format', 'json', '--target', 'b');
    expect(r.code, r.stdout).toBe(0);
    expect(JSON.parse(r.stdout).refresh.drift).toMatchObject([{ kind: 'missing', address: 'b/0' }]);
    expect(states(await world(st.dir))).toEqual({ 'a/0': 'Running' });
  }, 300_000);
});

describe('fleet import into a data center the fleet may not use (embedded)', () => {
  const st = useTempStack();
  const fleet = st.fleet;
  const onlyMiami = (yaml: string) => yaml.replace('placement: { strategy: spread }', 'placement: { strategy: spread, dataCenters: [miami] }');

  it('is refused (members never move: it would stay where no plan may place or replace it), unless the VM was that member before', async () => {
    await st.spec('app', fleetYaml('app', { count: 2 }));
    await st.spec('edge', onlyMiami(fleetYaml('edge', { count: 1 })));
    const applied = await fleet('apply', '--yes');
    expect(applied.code, applied.stderr).toBe(0);
    const inRichmond = (await world(st.dir)).vms.find((v) => v.address.startsWith('app/') && v.dataCenter === 'richmond')!;
    expect(inRichmond).toBeDefined();
    await st.spec('edge', onlyMiami(fleetYaml('edge', { count: 2 })));
    expect((await fleet('state', 'rm', inRichmond.address)).code).toBe(0);

    // Before: adopted as edge/1 in richmond, outside edge's allow-list, where no later plan could replace it.
    const r = await fleet('import', 'edge/1', inRichmond.cloudId!, '--format', 'json');
    expect(r.code, r.stdout).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(schemaErrors('import-output', out)).toEqual([]);
    expect(out.diagnostics).toMatchObject([{ code: 'apply.import-refused', address: 'edge/1' }]);
    expect(out.diagnostics[0].detail).toContain(`${inRichmond.cloudId} lives in richmond, where fleet edge may not have members (not in the fleet allow-list)`);
    expect((await fleet('state', 'show', 'edge/1')).stderr).toContain('record.vm-not-found');

    // The member it was, though, takes it back as it was, though app's allow-list has narrowed since.
    await st.spec('app', onlyMiami(fleetYaml('app', { count: 2 })));
    const back = await fleet('import', inRichmond.address, inRichmond.cloudId!);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toContain(`as ${inRichmond.address}`);
  }, 300_000);

  // Found by QA: import adopted a VM past the owner's mandatory quota (team-payments at 12 of 11), and the next plans
  // showed grants that matched nothing in the record.
  it('is refused when it would take the owner past its mandatory owner-quota, and taken once the limit allows it', async () => {
    await st.spec('edge', onlyMiami(fleetYaml('edge', { count: 0 })));
    await st.spec('quota', fleetYaml('quota', { count: 2 }));
    const stackFile = join(st.dir, 'stack.yaml');
    const original = await readFile(stackFile, 'utf8');
    const limit = (vms: number) =>
      writeFile(stackFile, original.replace('max-disruption: { enforcement: disabled }', `max-disruption: { enforcement: disabled }\n      owner-quota: { enforcement: mandatory, limits: { team-quota: { vms: ${vms} } } }`));
    try {
      await limit(2);
      const applied = await fleet('apply', '--yes');
      expect(applied.code, applied.stderr).toBe(0);
      const vm = (await world(st.dir)).vms.find((v) => v.address === 'quota/1')!;
      expect((await fleet('state', 'rm', 'quota/1')).code).toBe(0);
      await limit(1);
      const r = await fleet('import', 'quota/1', vm.cloudId!, '--format', 'json');
      expect(r.code, r.stdout).toBe(1);
      const out = JSON.parse(r.stdout);
      expect(schemaErrors('import-output', out)).toEqual([]);
      expect(out.diagnostics).toMatchObject([{ code: 'apply.import-refused', address: 'quota/1' }]);
      expect(out.diagnostics[0].detail).toMatch(/owner team-quota .*quota/);
      expect((await fleet('state', 'show', 'quota/1')).stderr).toContain('record.vm-not-found');
      await limit(2);
      const back = await fleet('import', 'quota/1', vm.cloudId!);
      expect(back.code, back.stderr).toBe(0);
    } finally {
      await writeFile(stackFile, original);
      await st.spec('quota', fleetYaml('quota', { count: 0 }));
    }
  }, 300_000);

  it('says of a fleet of count 0 that it has no members (it said "members edge/0 to edge/-1")', async () => {
    await st.spec('edge', onlyMiami(fleetYaml('edge', { count: 0 })));
    const none = await fleet('import', 'edge/0', 'sim-x', '--format', 'json');
    expect(none.code).toBe(1);
    expect(JSON.parse(none.stdout).diagnostics).toMatchObject([{ code: 'apply.import-refused', address: 'edge/0' }]);
    expect(JSON.parse(none.stdout).diagnostics[0].detail).toContain('fleet edge has count 0, so it has no members');
  });

  it('says so when no data center asked could answer, under that data center\'s code (it said "No such VM to import")', async () => {
    const file = join(st.dir, 'stack.yaml');
    const yaml = await readFile(file, 'utf8');
    // richmond is now a DMZ client nobody listens for.
    await writeFile(file, yaml.replace(/(name: richmond\n\s+address: )embedded/, '$1http://127.0.0.1:9'));
    try {
      const env = { FLEET_CLI_TOKEN_RICHMOND: 'token', FLEET_RETRY_BUDGET_MS: '200' };
      const r = await runCli(['import', 'app/1', 'sim-richmond-x', '--data-center', 'richmond', '--stack', st.dir, '--format', 'json'], { cwd: REPO, env });
      expect(r.code).toBe(1);
      const out = JSON.parse(r.stdout);
      expect(schemaErrors('import-output', out)).toEqual([]);
      const errors = out.diagnostics.filter((d: { severity: string }) => d.severity === 'error');
      expect(errors).toMatchObject([{ code: 'apply.dmz-unreachable', address: 'app/1' }]);
      expect(errors[0].detail).toContain('fleet import could not ask data center richmond for VM sim-richmond-x');
      // One data center answered: what it did not hold is not found, and the one that did not answer is named.
      const both = await runCli(['import', 'app/1', 'sim-richmond-x', '--stack', st.dir], { cwd: REPO, env });
      expect(both.code).toBe(1);
      expect(both.stderr).toContain('error[apply.import-not-found]');
      expect(both.stderr).toContain('not reachable: richmond');
    } finally {
      await writeFile(file, yaml);
    }
  }, 300_000);
});

const pg = testPostgresUrl();

interface Child {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `fleet apply --yes` as a child process; `onStdout` sees stdout so far. */
function applyChild(d: Deployed, args: string[], onStdout?: (text: string) => void): Promise<Child> {
  const child = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), 'apply', '--yes', '--stack', d.dir, ...args], { cwd: REPO, env: d.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
    onStdout?.(stdout);
  });
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

/** Polls the data center until `done` holds of its VMs (deadline 60 s). */
async function until(d: Deployed, done: (cloud: ActualVm[]) => boolean): Promise<ActualVm[]> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { cloud } = await world(d.dir, d.env);
    if (done(cloud)) return cloud;
    if (Date.now() > deadline) throw new Error(`the data center did not settle: ${JSON.stringify(cloud.map((c) => [c.vmId, c.status, c.observedState]))}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe.skipIf(!pg)('deployed authority and DMZ client (PostgreSQL)', () => {
  let d: Deployed;
  const fleet = (...args: string[]) => runCli([...args, '--stack', d.dir], { cwd: REPO, env: d.env });

  beforeAll(async () => {
    // Agents ask the boot endpoint 300 ms after booting: well after the failed awaitReady is recorded as BootFailed.
    d = await deployedStack(pg!, '{ latencyMs: 1, bootMs: 300, failCalls: [awaitReady] }');
  }, 120_000);
  afterAll(async () => {
    await d?.stop();
  });

  it('awaitReady faults, then one clean re-run converges with every VM present exactly once', async () => {
    await d.spec('web', fleetYaml('web', { count: 4 }));
    const failed = await applyChild(d, []);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toContain('Apply failed: 0 VMs changed, 4 failed; 20 steps done, 4 failed; in ');
    // The agents ask after the record says BootFailed: denied, with no awaitReady waiting, so each VM powers itself
    // off and stays (as a real VM's agent does); nothing terminates it.
    const settled = await until(d, (cloud) => cloud.length === 4 && cloud.every((c) => c.observedState !== 'Starting'));
    expect(settled.filter((c) => c.observedState === 'PoweredOff').length).toBeGreaterThan(0);
    expect(settled.filter((c) => c.status === 'terminated')).toEqual([]);
    expect(states(await world(d.dir, d.env))).toEqual({ 'web/0': 'BootFailed', 'web/1': 'BootFailed', 'web/2': 'BootFailed', 'web/3': 'BootFailed' });

    await d.restartDmz('{ latencyMs: 1, bootMs: 1 }');
    const r = await applyChild(d, []);
    expect(r.code, r.stderr).toBe(0);
    const w = await world(d.dir, d.env);
    expect(states(w)).toEqual({ 'web/0': 'Running', 'web/1': 'Running', 'web/2': 'Running', 'web/3': 'Running' });
    expectConverged(w);
    expect((await fleet('plan', '--detailed-exitcode')).code).toBe(0);
  }, 240_000);

  it('lock, then plan: a second apply of the same fleet waits for the first (--lock-timeout) and plans on what it left', async () => {
    // The first apply's VMs take 8 s to boot: it holds the lock well past the second's start-up and plan.
    await d.restartDmz('{ latencyMs: 5, bootMs: 8000 }');
    await d.spec('web', null);
    await d.spec('api', fleetYaml('api', { count: 3 }));
    let second: Promise<Child> | undefined;
    const first = applyChild(d, ['--format', 'json'], (out) => {
      // The first holds the lock once it starts its members: only then does the spec grow and the second start.
      if (!second && out.includes('"type":"start"')) {
        second = d.spec('api', fleetYaml('api', { count: 4 })).then(() => applyChild(d, ['--lock-timeout', '120']));
      }
    });
    const a = await first;
    expect(second, 'the first apply started').toBeDefined();
    const b = await second!;
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).not.toContain('stale');
    // Planned under the lock, after the first finished: only what the first left to do.
    expect(b.stdout).toContain('Plan: 1 to create, 0 to transition, 0 to update, 0 to replace, 0 to delete.');
    const w = await world(d.dir, d.env);
    expect(states(w)).toEqual({ 'api/0': 'Running', 'api/1': 'Running', 'api/2': 'Running', 'api/3': 'Running' });
    expectConverged(w);
  }, 240_000);

  it('state rm refuses while an apply holds the fleet lock, naming the holder', async () => {
    const record = await openRecord(d.recordUrl);
    try {
      const lock = await record.acquireLocks('e2e', ['api'], { who: 'someone', host: 'elsewhere', planId: 'p-held', pid: 1 });
      try {
        const r = await fleet('state', 'rm', 'api/0');
        expect(r.code).toBe(1);
        expect(r.stderr).toContain('record.lock-held');
        expect(r.stderr).toContain('someone@elsewhere');
        expect((await record.findVm('e2e', 'api/0'))?.retiredAt).toBeNull();
      } finally {
        await lock.release();
      }
    } finally {
      await record.close();
    }
  }, 60_000);

  it('a refresh during an apply leaves the fleet the apply holds alone; the apply converges', async () => {
    // The apply's VMs take 8 s to boot: it holds the lock well past the refresh.
    await d.restartDmz('{ latencyMs: 5, bootMs: 8000 }');
    await d.spec('web', fleetYaml('web', { count: 2 }));
    let refresh: Promise<{ code: number | null; stdout: string; stderr: string }> | undefined;
    const apply = applyChild(d, ['--format', 'json'], (out) => {
      // Once a VM of web boots (8 s): web's VMs are in the record and mid-change.
      const booting = out.split('\n').some((l) => l.includes('"type":"step"') && l.includes('"operation":"boot"'));
      if (!refresh && booting) refresh = fleet('refresh', '--format', 'json');
    });
    const a = await apply;
    expect(a.code, a.stderr).toBe(0);
    expect(refresh, 'the apply started').toBeDefined();
    const r = await refresh!;
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    // Every fleet the apply locked (those in its scope) was left alone, web among them.
    expect(new Set(out.diagnostics.map((x: { code: string }) => x.code))).toEqual(new Set(['apply.refresh-locked']));
    expect(out.diagnostics.map((x: { address: string }) => x.address)).toContain('web');
    expect(out.drift.filter((x: { address: string }) => x.address.startsWith('web/'))).toEqual([]);
    const w = await world(d.dir, d.env);
    expect(states(w)).toMatchObject({ 'web/0': 'Running', 'web/1': 'Running' });
    expectConverged(w);
  }, 240_000);
});
