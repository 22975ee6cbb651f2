import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { FleetError } from '../../engine/diags/index.ts';
import { ProtocolError, credentialKey } from '../../protocol/index.ts';
import { openRecord } from '../../engine/record/index.ts';
import type { FleetRecord } from '../../engine/record/types.ts';
import { DmzHttpClient } from '../client.ts';
import { createSimDriver } from '../drivers/sim/index.ts';
import { DriverError } from '../drivers/types.ts';
import type { BatchStep, NewVmRequest, StepResult } from '../../protocol/index.ts';
import { TO_RUNNING, createRequest, newVm, startTestWorld, walk, type TestDc, type TestWorld } from '../testing.ts';
import { AuthorityClient } from './authority-client.ts';
import { startDmzClient } from './server.ts';

let world: TestWorld | undefined;
let record: FleetRecord;
beforeAll(async () => {
  record = await openRecord('memory://');
});
afterAll(async () => {
  await record.close();
});
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('DMZ client + authority + sim over real HTTP', () => {
  it('creates a VM through the whole path to Running, with the boot handshake unlocking the encrypted disk', async () => {
    world = await startTestWorld({ record });
    const { client, driver } = world.dc('miami');
    const vm = newVm(world.stack);
    const created = await client.createVm(createRequest(vm));
    expect(created).toMatchObject({ decision: 'modified', outcome: 'ok', vm: { id: vm.id, state: 'Requested', realImage: 'img-ubuntu-2204-miami-v7' } });
    expect(created.reason).toContain('translated');

    const steps = await walk(client, vm.id, TO_RUNNING);
    expect(steps.map((s) => [s.outcome, s.operation, s.vm?.state])).toEqual([
      ['ok', 'none', 'BeingCreated'],
      ['ok', 'createVm', 'PoweredOff'],
      ['ok', 'powerOn', 'PoweredOn'],
      ['ok', 'boot', 'Starting'],
      ['ok', 'awaitReady', 'Running'],
    ]);
    const row = await world.record.getVm(vm.id);
    expect(row).toMatchObject({ state: 'Running', dataCenter: 'miami', realImage: 'img-ubuntu-2204-miami-v7' });
    expect(row?.cloudId).toMatch(/^sim-miami-/);
    const actual = await client.getVm(vm.id);
    expect(actual).toMatchObject({ cloudId: row?.cloudId, power: 'on', agent: 'ready', observedState: 'Running', encryptedDisk: true });
    expect(driver.calls.get('createVm')).toBe(1);

    // Every state change in the history passes one edge.
    const hist = (await world.record.history(world.stack, 'web/0')).filter((h) => h.from !== h.to && h.actor !== 'authority');
    for (const h of hist) if (h.from !== null) expect(world.pack.lifecycle.allows(h.from, h.to)).toBe(true);
  });

  it('stops, starts, resizes and deletes a VM', async () => {
    world = await startTestWorld({ record });
    const { client } = world.dc('richmond');
    const vm = newVm(world.stack, { encryptedDisk: false });
    await client.createVm(createRequest(vm));
    await walk(client, vm.id, TO_RUNNING);

    const stop = await walk(client, vm.id, ['Running', 'ShuttingDown', 'PoweredOff']);
    expect(stop.map((s) => s.vm?.state)).toEqual(['ShuttingDown', 'PoweredOff']);
    expect((await client.getVm(vm.id))?.power).toBe('off');

    const bigger = { cpu: 4, memoryGiB: 8, diskGiB: 40 };
    const resized = await client.transition(vm.id, { idempotencyKey: randomUUID(), planId: 'p', from: 'PoweredOff', to: 'PoweredOff', operation: 'resize', size: bigger });
    expect(resized).toMatchObject({ outcome: 'ok', operation: 'resize', vm: { state: 'PoweredOff' } });
    expect((await world.record.getVm(vm.id))?.size).toEqual(bigger);
    expect((await client.getVm(vm.id))?.size).toEqual(bigger);

    const start = await walk(client, vm.id, ['PoweredOff', 'PoweredOn', 'Starting', 'Running']);
    expect(start.at(-1)?.vm?.state).toBe('Running');

    const del = await walk(client, vm.id, ['Running', 'ShuttingDown', 'PoweredOff', 'BeingDeleted', 'Deleted']);
    expect(del.map((s) => s.outcome)).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(del.at(-1)?.operation).toBe('deleteVm');
    const row = await world.record.getVm(vm.id);
    expect(row?.state).toBe('Deleted');
    expect(row?.retiredAt).not.toBeNull();
    expect((await client.getVm(vm.id))?.status).toBe('terminated');
  });

  it('a resize of a running VM is vetoed', async () => {
    world = await startTestWorld({ record });
    const { client } = world.dc('miami');
    const vm = newVm(world.stack);
    await client.createVm(createRequest(vm));
    await walk(client, vm.id, TO_RUNNING);
    const r = await client.transition(vm.id, { idempotencyKey: randomUUID(), planId: 'p', from: 'Running', to: 'Running', operation: 'resize', size: { cpu: 8, memoryGiB: 8, diskGiB: 8 } });
    expect(r).toMatchObject({ decision: 'vetoed', outcome: 'vetoed' });
    expect(r.reason).toContain('powered-off');
  });

  it('a retried create or transition returns the first result and makes one VM only', async () => {
    world = await startTestWorld({ record });
    const { client, driver } = world.dc('miami');
    const vm = newVm(world.stack);
    const req = createRequest(vm);
    const [a, b] = await Promise.all([client.createVm(req), client.createVm(req)]);
    expect(b).toEqual(a);
    expect(await client.createVm(req)).toEqual(a);
    await walk(client, vm.id, ['Requested', 'BeingCreated']);
    const t = { idempotencyKey: 'create-key-1', planId: 'p', from: 'BeingCreated', to: 'PoweredOff' };
    const [c, d] = await Promise.all([client.transition(vm.id, t), client.transition(vm.id, t)]);
    expect(d).toEqual(c);
    expect(await client.transition(vm.id, t)).toEqual(c);
    expect(c.outcome).toBe('ok');
    expect(driver.calls.get('createVm')).toBe(1);
    expect((await client.listVms()).filter((v) => v.vmId === vm.id)).toHaveLength(1);
    expect((await world.record.listVms(world.stack))).toHaveLength(1);
  });

  it('the same idempotency key for a different request is rejected', async () => {
    world = await startTestWorld({ record });
    const { client } = world.dc('miami');
    await client.createVm(createRequest(newVm(world.stack), 'k1'));
    const err = await client.createVm(createRequest(newVm(world.stack, { index: 1 }), 'k1')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FleetError);
    expect((err as FleetError).diagnostics[0].code).toBe('apply.dmz-rejected');
    expect((err as FleetError).message).toContain('idempotency key k1');
  });

  it('answers 401 without or with a wrong token, and nothing changes', async () => {
    world = await startTestWorld({ record });
    const { dmz } = world.dc('miami');
    const body = JSON.stringify(createRequest(newVm(world.stack)));
    for (const headers of [{}, { authorization: 'Bearer wrong' }] as Record<string, string>[]) {
      const res = await fetch(`${dmz.url}/v1/vms`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
      expect(res.status).toBe(401);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
    }
    expect(await world.record.listVms(world.stack)).toHaveLength(0);
    const res = await fetch(`${world.authority.url}/v1/authorize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(401);
  });

  it('a DMZ client asking about another data center\'s VM is vetoed', async () => {
    world = await startTestWorld({ record });
    const vm = newVm(world.stack);
    await world.dc('miami').client.createVm(createRequest(vm));
    const r = await world.dc('richmond').client.transition(vm.id, { idempotencyKey: randomUUID(), planId: 'p', from: 'Requested', to: 'BeingCreated' });
    expect(r).toMatchObject({ decision: 'vetoed', outcome: 'vetoed' });
    expect(r.reason).toContain('lives in data center miami');
    expect((await world.record.getVm(vm.id))?.state).toBe('Requested');
    const vetoes = (await world.record.history(world.stack, 'web/0')).filter((h) => h.outcome === 'vetoed');
    expect(vetoes).toHaveLength(1);
  });

  it('a skipping transition sent to the DMZ client is vetoed and the record stays', async () => {
    world = await startTestWorld({ record });
    const { client } = world.dc('miami');
    const vm = newVm(world.stack);
    await client.createVm(createRequest(vm));
    const r = await client.transition(vm.id, { idempotencyKey: randomUUID(), planId: 'p', from: 'Requested', to: 'PoweredOff' });
    expect(r).toMatchObject({ decision: 'vetoed', outcome: 'vetoed', vm: { state: 'Requested' } });
    expect(r.reason).toContain('not an edge');
  });

  it('a rogue VM booting without a record entry is denied and terminated', async () => {
    world = await startTestWorld({ record });
    const { driver } = world.dc('miami');
    const rogue = await driver.injectRogueVm({ image: 'img-ubuntu-2204-miami-v7' });
    const settled = await driver.waitSettled(rogue.cloudId);
    expect(settled).toMatchObject({ status: 'terminated', agent: 'failed', observedState: 'Deleted' });
    // The denied attempt is in the record's boot attempts; nothing was inserted.
    expect(await world.record.listVms(world.stack)).toHaveLength(0);
  });

  it('a boot request with a guessed token is denied and written to the VM history', async () => {
    world = await startTestWorld({ record });
    const { client, dmz } = world.dc('miami');
    const vm = newVm(world.stack);
    await client.createVm(createRequest(vm));
    await walk(client, vm.id, TO_RUNNING);
    const row = await world.record.getVm(vm.id);
    // Replaying a boot request (a copied VM, a stolen token) is denied: tokens are one-time.
    const res = await fetch(`${dmz.url}/v1/boot`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cloudId: row?.cloudId, vmId: vm.id, image: row?.realImage, bootToken: 'guessed' }),
    });
    expect(await res.json()).toMatchObject({ approved: false });
    const denied = (await world.record.history(world.stack, 'web/0')).filter((h) => h.outcome === 'denied');
    expect(denied).toHaveLength(1);
  });

  it('a NUL character in a field is refused 400 by the DMZ client itself, not relayed: the open boot route, a create, a transition', async () => {
    // Found by QA: the authority's record refused the NUL with a 500; the DMZ client sent the call 4 times and
    // answered 503 authority-unreachable, which the CLI retried for its whole budget (an open route, too: /v1/boot).
    world = await startTestWorld({ record });
    const { clientToken, dmz } = world.dc('miami');
    const vm = newVm(world.stack);
    const cases: [string, Record<string, string>, unknown, string][] = [
      ['/v1/boot', {}, { cloudId: 'c\u0000', vmId: vm.id, image: 'i', bootToken: 't' }, 'body/cloudId'],
      ['/v1/vms', { authorization: `Bearer ${clientToken}` }, createRequest(newVm(world.stack, { owner: 'team\u0000' })), 'body/vm/owner'],
      [`/v1/vms/${vm.id}/transitions`, { authorization: `Bearer ${clientToken}` }, { idempotencyKey: randomUUID(), planId: 'p\u0000', from: 'PoweredOff', to: 'PoweredOn' }, 'body/planId'],
      [`/v1/vms/v%00m/transitions`, { authorization: `Bearer ${clientToken}` }, { idempotencyKey: randomUUID(), planId: 'p', from: 'PoweredOff', to: 'PoweredOn' }, 'params/id'],
    ];
    for (const [path, headers, body, where] of cases) {
      const res = await fetch(`${dmz.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
      const got = (await res.json()) as { error: { code: string; message: string } };
      expect([path, res.status, got.error.code]).toEqual([path, 400, 'bad-request']);
      expect(got.error.message).toContain(`${where} holds a NUL character`);
    }
    expect(await world.record.listVms(world.stack)).toHaveLength(0);
  });

  it('a VM whose boot is denied is terminated and ends BootFailed; it can still be deleted', async () => {
    world = await startTestWorld({ record });
    const { client } = world.dc('miami');
    const vm = newVm(world.stack);
    await client.createVm(createRequest(vm));
    await walk(client, vm.id, ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn']);
    // The record now expects another image than the one the VM runs: the boot no longer matches the record.
    const row = await world.record.getVm(vm.id);
    await world.record.updateVm(vm.id, row!.version, { realImage: 'img-other' }, { actor: 'test' });
    const steps = await walk(client, vm.id, ['PoweredOn', 'Starting', 'Running']);
    expect(steps.map((s) => [s.outcome, s.vm?.state])).toEqual([
      ['ok', 'Starting'],
      ['failed', 'BootFailed'],
    ]);
    expect(steps[1].error).toMatchObject({ code: 'driver.boot-denied', message: expect.stringContaining('boot denied') });
    expect(await client.getVm(vm.id)).toMatchObject({ status: 'terminated', observedState: 'Deleted' });
    const del = await walk(client, vm.id, ['BootFailed', 'BeingDeleted', 'Deleted']);
    expect(del.at(-1)?.vm?.state).toBe('Deleted');
  });

  it('a hanging cloud call times out, fails the step and leaves the record where it was', async () => {
    world = await startTestWorld({ record, sim: { hangCalls: ['powerOn'] }, dmz: { driverTimeoutMs: 200 } });
    const { client } = world.dc('miami');
    const vm = newVm(world.stack);
    await client.createVm(createRequest(vm));
    const steps = await walk(client, vm.id, TO_RUNNING);
    expect(steps.at(-1)).toMatchObject({ outcome: 'failed', operation: 'powerOn', vm: { state: 'PoweredOff' }, error: { code: 'driver.timeout' } });
    const failed = (await world.record.history(world.stack, 'web/0')).filter((h) => h.outcome === 'failed');
    expect(failed).toMatchObject([{ from: 'PoweredOff', to: 'PoweredOn' }]);
  });

  it('failCalls createVm ends the VM in CreateFailed with the driver error', async () => {
    world = await startTestWorld({ record, sim: { failCalls: ['createVm'] } });
    const { client } = world.dc('miami');
    const vm = newVm(world.stack);
    await client.createVm(createRequest(vm));
    const steps = await walk(client, vm.id, TO_RUNNING);
    const last = steps.at(-1);
    expect(last).toMatchObject({ outcome: 'failed', operation: 'createVm', vm: { state: 'CreateFailed' }, error: { code: 'driver.failed' } });
    expect(last?.error?.message).toContain('configured to fail');
    expect((await client.listVms()).length).toBe(0);
    // CreateFailed -> BeingDeleted -> Deleted cleans up with nothing in the cloud.
    const del = await walk(client, vm.id, ['CreateFailed', 'BeingDeleted', 'Deleted']);
    expect(del.map((s) => s.vm?.state)).toEqual(['BeingDeleted', 'Deleted']);
  });

  it('transient errors (errorRate) are retried inside the DMZ client and the VM still gets to Running', async () => {
    world = await startTestWorld({ record, sim: { errorRate: 0.3, seed: 7 }, dmz: { driverAttempts: 6 } });
    const { client, driver } = world.dc('miami');
    const vms = [newVm(world.stack, { index: 0 }), newVm(world.stack, { index: 1 }), newVm(world.stack, { index: 2 })];
    for (const vm of vms) await client.createVm(createRequest(vm));
    // One VM after the other, so the seeded failures fall on the same calls every run.
    for (const vm of vms) expect((await walk(client, vm.id, TO_RUNNING)).at(-1)?.vm?.state).toBe('Running');
    const calls = [...driver.calls.entries()].filter(([k]) => k !== 'get' && k !== 'list').reduce((n, [, v]) => n + v, 0);
    expect(calls).toBeGreaterThan(vms.length * 4);
    expect((await client.listVms()).filter((v) => v.status === 'present')).toHaveLength(3);
  });

  it("a DMZ client whose sim holds another token's key refuses every approved mutating call with credentials; the right key goes through", async () => {
    // The authority signs miami's scoped tokens with the key of miami's real DMZ client token; this sim derived its key from another one.
    world = await startTestWorld({ record, dataCenters: ['miami', 'richmond'], sim: (name) => (name === 'miami' ? { credentialKey: credentialKey('not-the-authority-token', 'miami') } : {}) });
    const miami = world.dc('miami');
    const vm = newVm(world.stack);
    await miami.client.createVm(createRequest(vm));
    const last = (await walk(miami.client, vm.id, ['Requested', 'BeingCreated', 'PoweredOff'])).at(-1);
    expect(last).toMatchObject({ outcome: 'failed', operation: 'createVm', vm: { state: 'CreateFailed' }, error: { code: 'driver.credentials' } });
    expect(last?.error?.message).toContain('not signed by the authority for data center miami');
    expect(miami.driver.calls.get('createVm')).toBe(1); // refused at once, not retried
    expect(await miami.client.listVms()).toEqual([]);
    // The same authority's approvals pass a sim with the right key (richmond's, derived from its DMZ client token).
    const richmond = world.dc('richmond');
    const ok = newVm(world.stack, { index: 1 });
    await richmond.client.createVm(createRequest(ok));
    expect((await walk(richmond.client, ok.id, TO_RUNNING)).at(-1)).toMatchObject({ outcome: 'ok', vm: { state: 'Running' } });
  });

  it('a full data center refuses the create, leaving the VM in CreateFailed', async () => {
    world = await startTestWorld({ record, sim: { capacity: { vms: 1 } } });
    const { client } = world.dc('miami');
    const a = newVm(world.stack, { index: 0 });
    const b = newVm(world.stack, { index: 1 });
    for (const vm of [a, b]) await client.createVm(createRequest(vm));
    expect((await walk(client, a.id, ['Requested', 'BeingCreated', 'PoweredOff'])).at(-1)?.outcome).toBe('ok');
    const r = (await walk(client, b.id, ['Requested', 'BeingCreated', 'PoweredOff'])).at(-1);
    expect(r).toMatchObject({ outcome: 'failed', vm: { state: 'CreateFailed' }, error: { code: 'driver.capacity' } });
  });

  it('sim state and idempotency results survive a DMZ client restart', async () => {
    world = await startTestWorld({ record });
    const dc = world.dc('miami');
    const vm = newVm(world.stack);
    await dc.client.createVm(createRequest(vm));
    const t = { idempotencyKey: 'restart-key', planId: 'p', from: 'BeingCreated', to: 'PoweredOff' };
    await walk(dc.client, vm.id, ['Requested', 'BeingCreated']);
    const first = await dc.client.transition(vm.id, t);
    await dc.restart();
    expect(await dc.client.transition(vm.id, t)).toEqual(first);
    expect(dc.driver.calls.get('createVm') ?? 0).toBe(0);
    const actual = await dc.client.getVm(vm.id);
    expect(actual).toMatchObject({ cloudId: first.vm?.cloudId, observedState: 'PoweredOff' });
    const rest = await walk(dc.client, vm.id, ['PoweredOff', 'PoweredOn', 'Starting', 'Running']);
    expect(rest.at(-1)?.vm?.state).toBe('Running');
  });

  it('serves /v1/health and an OpenAPI document without a token', async () => {
    world = await startTestWorld({ record });
    const { dmz, client } = world.dc('miami');
    expect(await client.health()).toEqual({ ok: true, service: 'dmz-client', dataCenter: 'miami', driver: 'sim' });
    const doc = (await (await fetch(`${dmz.url}/openapi.json`)).json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths).sort()).toEqual(['/livez', '/metrics', '/openapi.json', '/readyz', '/v1/admin-check', '/v1/batch', '/v1/boot', '/v1/boot/status', '/v1/health', '/v1/vms', '/v1/vms/{id}', '/v1/vms/{id}/transitions']);
    expect(Object.keys(doc.paths['/v1/vms/{id}']).sort()).toEqual(['delete', 'get']);
    // The boot agent's report had no answer in the document (docs/protocol.md: `{ ok: true }`).
    const status = doc.paths['/v1/boot/status'].post as { responses: Record<string, { content?: Record<string, { schema: unknown }> }> };
    expect(status.responses['200']?.content?.['application/json']?.schema).toMatchObject({ required: ['ok'], properties: { ok: { enum: [true] } } });
    // Every protocol route says what it answers on success: /v1/batch listed its errors only (its NDJSON lines were nowhere).
    for (const [path, ops] of Object.entries(doc.paths).filter(([p]) => p.startsWith('/v1/'))) {
      for (const [method, op] of Object.entries(ops)) expect(Object.keys((op as { responses?: object }).responses ?? {}), `${method} ${path}`).toContain('200');
    }
    const batch = doc.paths['/v1/batch'].post as { responses: Record<string, { content?: Record<string, { schema: unknown }> }> };
    expect(batch.responses['200']?.content?.['application/x-ndjson']?.schema).toMatchObject({ required: ['i', 'status', 'body'], properties: { i: {}, k: {}, status: {}, body: {} } });
  });
});

describe('runs: a step\'s report (or create) and the run\'s next edges go to the authority as one advance', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** A run of steps along `path` (the first state the VM's current one, or `create` first for a new VM). */
  function runOf(vm: NewVmRequest, path: readonly string[], prefix: string, create = false): BatchStep[] {
    const steps: BatchStep[] = create ? [{ op: 'create', body: createRequest(vm, `${prefix}/0`) }] : [];
    for (let k = 1; k < path.length; k++) {
      const body = { idempotencyKey: `${prefix}/${k}`, planId: 'plan-1', from: path[k - 1], to: path[k] };
      steps.push(path[k] === 'Deleted' ? { op: 'delete', vmId: vm.id, body } : { op: 'transition', vmId: vm.id, body });
    }
    return steps;
  }

  /** Runs `steps` and returns what each step answered: [k, outcome, operation, the VM's state]. */
  async function results(client: DmzHttpClient, steps: BatchStep[]): Promise<unknown[][]> {
    const seen: unknown[][] = [];
    await client.run(steps, (k, r) => seen.push([k, r.outcome, r.operation, r.vm?.state]));
    return seen;
  }

  /** Counts the DMZ clients' calls to the authority, and the edges each advance asks about. */
  function countCalls() {
    const spies = {
      authorize: vi.spyOn(AuthorityClient.prototype, 'authorize'),
      report: vi.spyOn(AuthorityClient.prototype, 'report'),
      advance: vi.spyOn(AuthorityClient.prototype, 'advance'),
      boot: vi.spyOn(AuthorityClient.prototype, 'boot'),
    };
    return () => ({
      authorize: spies.authorize.mock.calls.length,
      report: spies.report.mock.calls.length,
      advance: spies.advance.mock.calls.map(([body]) => `${body.create ? 'create' : 'report'}+${body.next.length}`),
      boot: spies.boot.mock.calls.length,
    });
  }

  /** A VM's history as a person reads it (no ids, request ids or times). */
  async function historyShape(w: TestWorld, vmId: string) {
    const vm = (await w.record.getVm(vmId))!;
    return (await w.record.history(w.stack, vm.address)).filter((h) => h.vmId === vmId).map((h) => [h.from, h.to, h.actor, h.outcome, h.planId, h.detail]);
  }

  const RUNNING_RESULTS = [
    [0, 'ok', 'none', 'Requested'],
    [1, 'ok', 'none', 'BeingCreated'],
    [2, 'ok', 'createVm', 'PoweredOff'],
    [3, 'ok', 'powerOn', 'PoweredOn'],
    [4, 'ok', 'boot', 'Starting'],
    [5, 'ok', 'awaitReady', 'Running'],
  ];

  it('a VM to Running costs 5 authority calls and its boot call, 3 of them waited for, and writes the same history rows as step by step', async () => {
    world = await startTestWorld({ record, dataCenters: ['miami'], client: { batch: true, baseDelayMs: 1 } });
    const w = world;
    const dc = w.dc('miami');
    const calls = countCalls();
    const vm = newVm(w.stack, { fleet: 'chained' });
    const seen = await results(dc.client, runOf(vm, TO_RUNNING, `chain-${vm.id}`, true));
    expect(seen).toEqual(RUNNING_RESULTS);
    // advance(create, all 5 edges, ahead): none moved, createVm authorized, the rest approved ahead (boot's token stored with the insert);
    // then each edge's report goes out as the next edge starts (written behind), but for powerOn's (the boot waits for it) and the last one.
    expect(calls()).toEqual({ authorize: 0, report: 4, advance: ['create+5'], boot: 1 });
    expect(await w.record.getVm(vm.id)).toMatchObject({ state: 'Running', version: 6 });

    vi.restoreAllMocks();
    const single = newVm(w.stack, { fleet: 'single' });
    await dc.client.createVm(createRequest(single));
    await walk(dc.client, single.id, TO_RUNNING);
    const rows = await historyShape(w, vm.id);
    // Per edge its intent, then its transition, in order: as the single routes write them.
    expect(rows).toEqual(await historyShape(w, single.id));
    expect(rows.map(([from, to, actor]) => `${from ?? ''}>${to} ${actor}`)).toEqual([
      '>Requested authority',
      ...TO_RUNNING.slice(1).flatMap((to, k) => [`${TO_RUNNING[k]}>${to} authority`, `${TO_RUNNING[k]}>${to} dmz-client:miami`]),
    ]);
  });

  it('a step approved ahead starts as soon as the one before it is done, that one\'s report still on its way', async () => {
    world = await startTestWorld({ record, dataCenters: ['miami'], client: { batch: true, baseDelayMs: 1 } });
    const dc = world.dc('miami');
    const order: string[] = [];
    const report = AuthorityClient.prototype.report;
    vi.spyOn(AuthorityClient.prototype, 'report').mockImplementation(async function (this: AuthorityClient, body) {
      order.push(`report ${body.to} sent`);
      // A slow authority: the answer takes longer than the next cloud call.
      await new Promise((r) => setTimeout(r, 30));
      const res = await report.call(this, body);
      order.push(`report ${body.to} answered`);
      return res;
    });
    const powerOn = dc.driver.powerOn.bind(dc.driver);
    vi.spyOn(dc.driver, 'powerOn').mockImplementation((creds, ref) => (order.push('powerOn started'), powerOn(creds, ref)));
    const boot = dc.driver.boot.bind(dc.driver);
    vi.spyOn(dc.driver, 'boot').mockImplementation((creds, ref, o) => (order.push('boot started'), boot(creds, ref, o)));
    const vm = newVm(world.stack, { fleet: 'behind' });
    const seen = await results(dc.client, runOf(vm, TO_RUNNING, `behind-${vm.id}`, true));
    expect(seen).toEqual(RUNNING_RESULTS);
    expect(order.indexOf('powerOn started')).toBeGreaterThan(order.indexOf('report PoweredOff sent'));
    expect(order.indexOf('powerOn started')).toBeLessThan(order.indexOf('report PoweredOff answered'));
    // Not a boot: the booting VM calls the authority, which judges it by the record's state, so the boot goes out
    // only once the record holds PoweredOn (a report lost meanwhile would get the VM denied: providers/boot-race.test.ts).
    expect(order.indexOf('boot started')).toBeGreaterThan(order.indexOf('report PoweredOn answered'));
    // Reports still go out one at a time, in step order.
    const reports = order.filter((o) => o.startsWith('report'));
    expect(reports).toEqual(['PoweredOff', 'PoweredOn', 'Starting', 'Running'].flatMap((to) => [`report ${to} sent`, `report ${to} answered`]));
    expect((await world.record.getVm(vm.id))?.state).toBe('Running');
  });

  it('an approval given earlier in the run whose credentials are about to expire is asked for again before its cloud call', async () => {
    // Credentials living 20 s: within the DMZ client's 2-minute margin from the start.
    world = await startTestWorld({ record, dataCenters: ['miami'], client: { batch: true, baseDelayMs: 1 }, credentialTtlMs: 20_000 });
    const dc = world.dc('miami');
    const calls = countCalls();
    const vm = newVm(world.stack, { fleet: 'short-lived' });
    const seen = await results(dc.client, runOf(vm, TO_RUNNING, `ttl-${vm.id}`, true));
    expect(seen).toEqual(RUNNING_RESULTS);
    // createVm, powerOn, boot and awaitReady each authorized afresh.
    expect(calls()).toMatchObject({ authorize: 4, advance: ['create+5'] });
    expect((await world.record.getVm(vm.id))?.state).toBe('Running');
  });

  // createVm approved (ahead, by the create's advance) with credentials of 130 s, just over the DMZ client's
  // 2-minute margin, and its first two tries each failing transient after 70 s: before, the third try ran on expired
  // credentials, and the CLI got createVm `failed` with driver.credentials ("sim miami refuses createVm: credentials
  // expired at …"), the run stopped and the record held the VM CreateFailed. Now the step answers 503
  // credentials-expiring instead of that third try; the CLI sends the run again from it, it is authorized afresh,
  // and the VM gets to Running.
  it('a cloud call whose tries outlast its credentials: the run is sent again from that step, authorized afresh, and the VM gets to Running', async () => {
    vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
    try {
      world = await startTestWorld({ record, dataCenters: ['miami'], client: { batch: true, baseDelayMs: 1 }, credentialTtlMs: 130_000 });
      const dc = world.dc('miami');
      const calls = countCalls();
      const left: number[] = [];
      const create = dc.driver.createVm.bind(dc.driver);
      vi.spyOn(dc.driver, 'createVm').mockImplementation(async (creds, input) => {
        left.push(Date.parse(creds.expiresAt) - Date.now());
        if (left.length > 2) return create(creds, input);
        vi.setSystemTime(Date.now() + 70_000);
        throw new DriverError('transient', 'InternalError: the cloud failed to answer in time');
      });
      const vm = newVm(world.stack, { fleet: 'outlasted' });
      const seen = await results(dc.client, runOf(vm, TO_RUNNING, `outlasted-${vm.id}`, true));
      expect(seen).toEqual(RUNNING_RESULTS);
      // createVm: each approval tried once (a second try would have had 60 s left), the run sent again from it twice,
      // each time authorized afresh with fresh credentials; the later steps' approvals ahead, stale by then, asked again.
      expect(left).toHaveLength(3);
      for (const l of left) expect(l).toBeGreaterThan(120_000);
      // The create's advance; createVm authorized afresh twice, its report with the rest of the run (approved ahead).
      expect(calls()).toEqual({ authorize: 2, report: 3, advance: ['create+5', 'report+3'], boot: 1 });
      expect(await world.record.getVm(vm.id)).toMatchObject({ state: 'Running' });
      const rows = await historyShape(world, vm.id);
      expect(rows.filter(([, , actor, outcome]) => actor !== 'authority' && outcome !== 'ok')).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });

  // The tries a step's sends answered 503 credentials-expiring made are what keep a cloud that keeps failing from
  // being tried for as long as the CLI sends the step (4 tries in all, over the sends). They were kept in the
  // DMZ client's memory only: a restart between two sends started the count again, and the step was tried beyond
  // its limit (here a fifth and sixth try, still answered 503). Now they are kept in its idempotency log, private
  // like the rest of it, and the limit holds across the restart: the fourth try is the last, and fails the step.
  it('the tries of a step answered 503 credentials-expiring outlive a DMZ client restart: 4 in all, then the step fails driver.transient', async () => {
    vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true });
    try {
      world = await startTestWorld({ record, dataCenters: ['miami'], client: { retries: 0, baseDelayMs: 1 }, credentialTtlMs: 130_000 });
      const dc = world.dc('miami');
      const vm = newVm(world.stack, { fleet: 'restarted-tries' });
      await dc.client.createVm(createRequest(vm));
      await walk(dc.client, vm.id, ['Requested', 'BeingCreated']);
      /** Every createVm try takes 70 s and fails transient (a spy on the running driver: a restart makes a new one). */
      let tries = 0;
      const slow = () =>
        vi.spyOn(dc.driver, 'createVm').mockImplementation(async () => {
          tries++;
          vi.setSystemTime(Date.now() + 70_000);
          throw new DriverError('transient', 'InternalError: the cloud failed to answer in time');
        });
      slow();
      const key = `restarted-${vm.id}`;
      const send = async () => {
        const r = await dc.client.transition(vm.id, { idempotencyKey: key, planId: 'plan-1', from: 'BeingCreated', to: 'PoweredOff' }).catch((e: unknown) => e);
        return r instanceof FleetError ? r.diagnostics[0].detail.match(/answered (\d+): (\w[\w ]*?) was not tried again/)?.slice(1, 3).join(' ') ?? r.message : (r as StepResult).error?.code;
      };
      const answers = [await send(), await send()];
      await dc.restart();
      slow();
      answers.push(await send(), await send(), await send());
      // Before: five times 503 and 5 tries, the count
      // started again by the restart (and so on for as long as the step is sent).
      expect(answers).toEqual(['503 createVm', '503 createVm', '503 createVm', 'driver.transient', 'driver.transient']);
      expect(tries).toBe(4);
      expect((await world.record.getVm(vm.id))?.state).toBe('CreateFailed');
      // Kept where the step's result is, as private.
      const log = join(dc.stateDir, 'requests.jsonl');
      expect((await stat(log)).mode & 0o777).toBe(0o600);
      expect(await readFile(log, 'utf8')).toContain(`"key":"${key}"`);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a report refused while the next step runs: the run stops there, the next step is not reported, nothing after it starts', async () => {
    world = await startTestWorld({ record, dataCenters: ['miami'], client: { batch: true, baseDelayMs: 1, retries: 0 } });
    const dc = world.dc('miami');
    const report = AuthorityClient.prototype.report;
    vi.spyOn(AuthorityClient.prototype, 'report').mockImplementation(async function (this: AuthorityClient, body) {
      if (body.to === 'PoweredOff') {
        await new Promise((r) => setTimeout(r, 20));
        throw new ProtocolError(502, 'authority-refused', 'the authority refused the report (409 state-moved)');
      }
      return report.call(this, body);
    });
    const vm = newVm(world.stack, { fleet: 'refused-behind' });
    const seen: unknown[][] = [];
    const err = (await dc.client.run(runOf(vm, TO_RUNNING, `refused-${vm.id}`, true), (k, r) => seen.push([k, r.outcome])).catch((e: unknown) => e)) as FleetError;
    expect(seen).toEqual([[0, 'ok'], [1, 'ok']]);
    expect(err.diagnostics[0]).toMatchObject({ code: 'apply.dmz-error', detail: expect.stringContaining('the authority refused the report') });
    // powerOn ran (approved ahead) but was never reported; boot never started: the record lags the cloud by one edge at most.
    expect(dc.driver.calls.get('powerOn')).toBe(1);
    expect(dc.driver.calls.get('boot') ?? 0).toBe(0);
    expect(vi.mocked(AuthorityClient.prototype.report).mock.calls.map(([b]) => b.to)).toEqual(['PoweredOff']);
    expect((await world.record.getVm(vm.id))?.state).toBe('BeingCreated');
  });

  it('each step carried out inside an advance is stored under its own key: its single route answers the same result', async () => {
    world = await startTestWorld({ record, dataCenters: ['miami'], client: { batch: true, baseDelayMs: 1 } });
    const dc = world.dc('miami');
    const vm = newVm(world.stack);
    const steps = runOf(vm, TO_RUNNING.slice(0, 3), `stored-${vm.id}`, true);
    const answers: StepResult[] = [];
    await dc.client.run(steps, (_k, r) => answers.push(r));
    expect(answers.map((r) => r.vm?.state)).toEqual(['Requested', 'BeingCreated', 'PoweredOff']);
    const calls = countCalls();
    expect(await dc.client.createVm((steps[0] as Extract<BatchStep, { op: 'create' }>).body)).toEqual(answers[0]);
    expect(await dc.client.transition(vm.id, (steps[1] as Extract<BatchStep, { op: 'transition' }>).body)).toEqual(answers[1]);
    expect(await dc.client.transition(vm.id, (steps[2] as Extract<BatchStep, { op: 'transition' }>).body)).toEqual(answers[2]);
    expect(calls()).toEqual({ authorize: 0, report: 0, advance: [], boot: 0 });
    expect(dc.driver.calls.get('createVm')).toBe(1);
  });

  it('down to Deleted: shutdown\'s report approves the rest ahead; each later step starts while the report before it is on its way', async () => {
    world = await startTestWorld({ record, dataCenters: ['miami'], client: { batch: true, baseDelayMs: 1 } });
    const dc = world.dc('miami');
    const vm = newVm(world.stack);
    await dc.client.run(runOf(vm, TO_RUNNING, `up-${vm.id}`, true), () => {});
    const calls = countCalls();
    const seen = await results(dc.client, runOf(vm, ['Running', 'ShuttingDown', 'PoweredOff', 'BeingDeleted', 'Deleted'], `down-${vm.id}`));
    expect(seen).toEqual([
      [0, 'ok', 'shutdown', 'ShuttingDown'],
      [1, 'ok', 'powerOff', 'PoweredOff'],
      [2, 'ok', 'none', 'BeingDeleted'],
      [3, 'ok', 'deleteVm', 'Deleted'],
    ]);
    // authorize(shutdown); advance(shutdown's report, [powerOff, none, deleteVm], ahead); then a report each, written behind.
    expect(calls()).toEqual({ authorize: 1, report: 3, advance: ['report+3'], boot: 0 });
    expect((await world.record.getVm(vm.id))?.retiredAt).not.toBeNull();
  });

  it('a DMZ client without a pack asks about one next edge per advance', async () => {
    world = await startTestWorld({ record, dataCenters: ['miami'] });
    const w = world;
    const dc = w.dc('miami');
    const dir = await mkdtemp(join(tmpdir(), 'dmzfleet-nopack-'));
    const driver = await createSimDriver({ dataCenter: 'miami', stateDir: dir, latencyMs: 2, capacity: { vms: 50, cpu: 200, memoryGiB: 800 }, credentialKey: credentialKey(dc.authorityToken, 'miami') });
    const dmz = await startDmzClient({ dataCenter: 'miami', driver, authorityUrl: w.authority.url, authorityToken: dc.authorityToken, clientToken: 'nopack', stateDir: dir, readyTimeoutMs: 10_000 });
    try {
      const client = new DmzHttpClient({ dataCenter: 'miami', baseUrl: dmz.url, token: () => 'nopack', batch: true, baseDelayMs: 1 });
      const calls = countCalls();
      const vm = newVm(w.stack);
      const seen = await results(client, runOf(vm, TO_RUNNING, `nopack-${vm.id}`, true));
      expect(seen).toEqual(RUNNING_RESULTS);
      expect(calls()).toEqual({ authorize: 0, report: 1, advance: ['create+1', 'report+1', 'report+1', 'report+1', 'report+1'], boot: 1 });
    } finally {
      await dmz.close();
      await driver.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('lanes: runs of one apply, at most width of them doing cloud work at once', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** A new VM's run to Running. */
  function toRunningRun(vm: NewVmRequest, prefix: string): BatchStep[] {
    const steps: BatchStep[] = [{ op: 'create', body: createRequest(vm, `${prefix}/0`) }];
    for (let k = 1; k < TO_RUNNING.length; k++) {
      steps.push({ op: 'transition', vmId: vm.id, body: { idempotencyKey: `${prefix}/${k}`, planId: 'plan-1', from: TO_RUNNING[k - 1], to: TO_RUNNING[k] } });
    }
    return steps;
  }

  /** Wraps the driver's calls: which VMs are between their first cloud call's start and their last one's end. */
  function cloudWork(driver: TestDc['driver']) {
    const busy = new Set<string>();
    let most = 0;
    const starts: string[] = [];
    for (const call of ['createVm', 'powerOn', 'boot', 'awaitReady'] as const) {
      const real = (driver[call] as (...a: unknown[]) => Promise<unknown>).bind(driver);
      vi.spyOn(driver, call).mockImplementation(async (...args: unknown[]) => {
        const vmId = (args[1] as { vmId: string }).vmId;
        if (call === 'createVm') {
          starts.push(vmId);
          busy.add(vmId);
          most = Math.max(most, busy.size);
        }
        try {
          return (await real(...args)) as never;
        } finally {
          if (call === 'awaitReady') busy.delete(vmId);
        }
      });
    }
    return { most: () => most, starts };
  }

  it('the others wait, approved already, and start in the order they came as places free', async () => {
    world = await startTestWorld({ record, dataCenters: ['miami'], client: { batch: true, baseDelayMs: 1 } });
    const dc = world.dc('miami');
    const work = cloudWork(dc.driver);
    const advance = vi.spyOn(AuthorityClient.prototype, 'advance');
    const advancesAtStart: number[] = [];
    const createVm = dc.driver.createVm;
    vi.spyOn(dc.driver, 'createVm').mockImplementation((creds, input) => (advancesAtStart.push(advance.mock.calls.length), createVm(creds, input)));
    const lane = { id: `apply-${randomUUID()}`, width: 2 };
    const vms = Array.from({ length: 5 }, (_, index) => newVm(world!.stack, { fleet: 'laned', index }));
    const seen = await Promise.all(
      vms.map(async (vm) => {
        const states: unknown[] = [];
        await dc.client.run(toRunningRun(vm, `lane-${vm.id}`), (_k, r) => states.push(r.vm?.state), { lane });
        return states.at(-1);
      }),
    );
    expect(seen).toEqual(['Running', 'Running', 'Running', 'Running', 'Running']);
    expect(work.most()).toBe(2);
    // In the order the runs were sent (one batch), each run's advance made before any place was free.
    expect(work.starts).toEqual(vms.map((v) => v.id));
    expect(advancesAtStart.slice(2)).toEqual([5, 5, 5]);
    expect(dc.driver.calls.get('createVm')).toBe(5);
  });

  it('a run that fails gives its place up; runs without a lane do not wait for one', async () => {
    world = await startTestWorld({ record, dataCenters: ['miami'], client: { batch: true, baseDelayMs: 1, retries: 0 }, sim: { failCalls: ['awaitReady'] } });
    const dc = world.dc('miami');
    const work = cloudWork(dc.driver);
    const lane = { id: `apply-${randomUUID()}`, width: 1 };
    const outcomes = await Promise.all(
      Array.from({ length: 3 }, async (_, index) => {
        const vm = newVm(world!.stack, { fleet: 'laned-failing', index });
        const out: unknown[] = [];
        await dc.client.run(toRunningRun(vm, `fail-${vm.id}`), (_k, r) => out.push(r.outcome), { lane });
        return out.at(-1);
      }),
    );
    expect(outcomes).toEqual(['failed', 'failed', 'failed']);
    expect(work.most()).toBe(1);
    const free = await Promise.all(
      Array.from({ length: 2 }, async (_, index) => {
        const vm = newVm(world!.stack, { fleet: 'unlaned', index });
        await dc.client.run(toRunningRun(vm, `free-${vm.id}`), () => {});
      }),
    );
    expect(free).toHaveLength(2);
    expect(work.most()).toBe(2);
  });
});

describe('lanes and a run sent again while the first still runs', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('the run sent again shares its member\'s place: nothing waits for a place the first one holds', async () => {
    world = await startTestWorld({ record, dataCenters: ['miami'], client: { batch: true, baseDelayMs: 1 } });
    const dc = world.dc('miami');
    const vm = newVm(world.stack, { fleet: 'again' });
    const prefix = `again-${vm.id}`;
    const steps: BatchStep[] = [{ op: 'create', body: createRequest(vm, `${prefix}/0`) }];
    for (let k = 1; k < TO_RUNNING.length; k++) {
      steps.push({ op: 'transition', vmId: vm.id, body: { idempotencyKey: `${prefix}/${k}`, planId: 'plan-1', from: TO_RUNNING[k - 1], to: TO_RUNNING[k] } });
    }
    const lane = { id: `apply-${randomUUID()}`, width: 1 };
    // The first run holds the lane's only place while its powerOn waits at a gate.
    let open = () => {};
    const gate = new Promise<void>((r) => (open = r));
    let reached = () => {};
    const atGate = new Promise<void>((r) => (reached = r));
    const powerOn = dc.driver.powerOn.bind(dc.driver);
    vi.spyOn(dc.driver, 'powerOn').mockImplementation(async (creds, ref) => {
      reached();
      await gate;
      return powerOn(creds, ref);
    });
    const first = dc.client.run(steps, () => {}, { lane });
    await atGate;
    // The same member's steps from powerOn on, as a client sends them again after losing the connection.
    const states: unknown[] = [];
    const again = dc.client.run(steps.slice(3), (_k, r) => states.push(r.vm?.state), { lane });
    await new Promise((r) => setTimeout(r, 20));
    open();
    await Promise.all([first, again]);
    expect(states).toEqual(['PoweredOn', 'Starting', 'Running']);
    expect(dc.driver.calls.get('createVm')).toBe(1);
    expect(dc.driver.calls.get('powerOn')).toBe(1);
    expect(dc.driver.calls.get('boot')).toBe(1);
    expect((await world.record.getVm(vm.id))?.state).toBe('Running');
  });
});
