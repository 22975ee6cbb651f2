import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AuthorityVm, AuthorizeResponse } from '../../protocol/index.ts';
import { OPERATIONS } from '../../engine/model/index.ts';
import { createSimDriver, type SimDriver } from '../drivers/sim/index.ts';
import { signedCredentials, testCredentialKey } from '../drivers/sim/testing.ts';
import { DriverError, type Driver, type ScopedCredentials } from '../drivers/types.ts';
import { CARRIED_OUT, Operations, callDriver } from './operations.ts';

const DC = 'dc-a';
const creds = (dataCenter = DC): ScopedCredentials => signedCredentials(dataCenter);

/** The record's VM, as an approval carries it. */
function recordVm(over: Partial<AuthorityVm> = {}): AuthorityVm {
  return {
    id: randomUUID(),
    address: 'web/0',
    name: 'web-0',
    size: { cpu: 1, memoryGiB: 1, diskGiB: 10 },
    dataCenter: DC,
    state: 'BeingCreated',
    cloudId: null,
    realImage: 'img-1',
    encryptedDisk: false,
    version: 1,
    ...over,
  };
}

/** An approval of `operation` for `vm`, as the authority gives it. */
function approval(operation: string, vm: AuthorityVm, over: Partial<AuthorizeResponse> = {}): AuthorizeResponse {
  return { decision: 'approved', reason: 'ok', operation, credentials: creds(), vm, ...over };
}

let dir: string;
let driver: SimDriver;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dmzfleet-operations-'));
  // Agents boot after a minute: a booted VM stays `booting` for the test (see the awaitReady case for one that boots).
  driver = await createSimDriver({ dataCenter: DC, stateDir: dir, latencyMs: 0, bootMs: 60_000, credentialKey: testCredentialKey(DC) });
});
afterEach(async () => {
  await driver.close();
  await rm(dir, { recursive: true, force: true });
});

const operations = () => new Operations(driver, { attempts: 3, timeoutMs: 5_000, readyTimeoutMs: 1_000, backoffMs: 0 });

describe('Operations: an edge operation as a driver call', () => {
  it('carries out every operation of engine/model but none', () => {
    expect([...CARRIED_OUT].sort()).toEqual(OPERATIONS.filter((o) => o !== 'none').sort());
  });

  it('walks one VM of a real sim data center through every operation, each giving its report what the record needs', async () => {
    const ops = operations();
    let vm = recordVm();
    const bigger = { cpu: 2, memoryGiB: 4, diskGiB: 20 };
    // operation | what the approval adds | what carryOut returns for the report | the VM in the cloud after
    const table: [string, Partial<AuthorizeResponse>, object, object][] = [
      ['none', {}, {}, {}],
      ['createVm', { realImage: 'img-translated' }, { cloudId: expect.stringMatching(/^sim-dc-a-/) }, { status: 'present', power: 'off', image: 'img-translated' }],
      ['resize', {}, { size: bigger }, { size: bigger }],
      ['powerOn', {}, {}, { power: 'on' }],
      ['boot', { bootToken: 'one-time' }, {}, { agent: 'booting' }],
      ['shutdown', {}, {}, { agent: 'stopping' }],
      ['powerOff', {}, {}, { power: 'off' }],
      ['deleteVm', {}, {}, { status: 'terminated' }],
    ];
    for (const [operation, extra, report, cloud] of table) {
      const done = await ops.carryOut(operation, approval(operation, vm, extra), vm.id, operation === 'resize' ? bigger : undefined);
      expect(done, operation).toEqual(report);
      if ('cloudId' in done) vm = { ...vm, cloudId: done.cloudId as string };
      if (operation !== 'none') expect(await driver.get(creds(), { vmId: vm.id, cloudId: vm.cloudId }), operation).toMatchObject(cloud);
    }
    // `none` made no call; every other operation exactly one.
    expect(Object.fromEntries(driver.calls)).toEqual({ createVm: 1, resize: 1, powerOn: 1, boot: 1, shutdown: 1, powerOff: 1, deleteVm: 1, get: 7 });
  });

  it('awaitReady of a VM whose boot found no boot endpoint fails boot-failed', async () => {
    await driver.close();
    driver = await createSimDriver({ dataCenter: DC, stateDir: dir, latencyMs: 0, bootMs: 0, credentialKey: testCredentialKey(DC) });
    const ops = operations();
    const vm = recordVm();
    const { cloudId } = await ops.carryOut('createVm', approval('createVm', vm), vm.id, undefined);
    const made = { ...vm, cloudId: cloudId as string };
    await ops.carryOut('powerOn', approval('powerOn', made), vm.id, undefined);
    await ops.carryOut('boot', approval('boot', made, { bootToken: 'one-time' }), vm.id, undefined);
    const err = await ops.carryOut('awaitReady', approval('awaitReady', made), vm.id, undefined).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'DriverError', kind: 'boot-failed', message: expect.stringContaining('no boot endpoint') });
  });

  it.each([
    ['an operation outside the closed set', 'powerOnn', {}, undefined, { kind: 'failed', message: 'the sim driver has no operation powerOnn' }],
    ['a boot without a boot token', 'boot', {}, undefined, { kind: 'failed', message: 'the authority issued no boot token' }],
    ['a resize without a size', 'resize', {}, undefined, { kind: 'failed', message: 'a resize needs the new size' }],
    ['credentials of another data center', 'createVm', { credentials: creds('dc-b') }, undefined, { kind: 'credentials' }],
    ['a VM the cloud does not have', 'powerOn', {}, undefined, { kind: 'not-found' }],
  ] as const)('%s fails the step as a driver error', async (_name, operation, extra, size, want) => {
    const vm = recordVm();
    const err = await operations()
      .carryOut(operation, approval(operation, vm, extra), vm.id, size)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DriverError);
    expect(err).toMatchObject(want);
  });

  // A cloud VM has spec.readyTimeoutMs (10 min on aws and azure) to boot, but
  // awaitReady was cut at the per-call deadline (driverTimeoutMs, 120 s)
  // first: "awaitReady did not answer within 120000 ms" after 2 minutes.
  it('awaitReady waits up to readyTimeoutMs, past the deadline of a single cloud call', async () => {
    vi.useFakeTimers();
    try {
      let ready!: () => void;
      const given: number[] = [];
      const slow = {
        kind: 'fake',
        awaitReady: (_c: ScopedCredentials, _r: unknown, o: { timeoutMs: number }) => {
          given.push(o.timeoutMs);
          return new Promise<void>((r) => (ready = r));
        },
      } as unknown as Driver;
      const ops = new Operations(slow, { attempts: 1, timeoutMs: 100, readyTimeoutMs: 1_000, backoffMs: 0 });
      const vm = recordVm({ cloudId: 'c-1', state: 'Starting' });
      const done = ops.carryOut('awaitReady', approval('awaitReady', vm), vm.id, undefined).then(
        (v) => ({ ok: v }),
        (e: unknown) => ({ err: e }),
      );
      await vi.advanceTimersByTimeAsync(500);
      ready();
      expect(await done).toEqual({ ok: {} });
      expect(given).toEqual([1_000]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('an approval of a cloud call without credentials is a bug, not a driver error', async () => {
    const vm = recordVm();
    const err = await operations()
      .carryOut('powerOn', approval('powerOn', vm, { credentials: undefined }), vm.id, undefined)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(DriverError);
    expect(driver.calls.size).toBe(0);
  });
});

describe('callDriver: a deadline per call, tried again while the failure is transient', () => {
  const transient = () => new DriverError('transient', 'try again');
  it.each([
    ['ok at once', [], 3, { value: 'done', tries: 1 }],
    ['two transient failures, then ok', [transient(), transient()], 3, { value: 'done', tries: 3 }],
    ['transient failures until the tries run out', [transient(), transient(), transient()], 3, { error: 'transient', tries: 3 }],
    ['a failure that is not transient is not tried again', [new DriverError('capacity', 'full')], 3, { error: 'capacity', tries: 1 }],
    ['an error that is no DriverError is not tried again', [new TypeError('bug')], 3, { error: 'TypeError', tries: 1 }],
    ['one try only', [transient()], 1, { error: 'transient', tries: 1 }],
  ] as const)('%s', async (_name, failures, attempts, want) => {
    let tries = 0;
    const fn = async () => {
      const failure = failures[tries++];
      if (failure) throw failure;
      return 'done';
    };
    const got = await callDriver('powerOn', fn, { attempts, timeoutMs: 5_000, backoffMs: 0 }).then(
      (value) => ({ value, tries }),
      (err: Error) => ({ error: err instanceof DriverError ? err.kind : err.name, tries }),
    );
    expect(got).toEqual(want);
  });

  it.each([
    ['waits at least the Retry-After the cloud asked for', 17_000, { waits: [17_000], tries: 2, value: 'done' }],
    ['waits the backoff when the cloud asked for less', 0, { waits: [expect.any(Number)], tries: 2, value: 'done' }],
    ['gives the failure back rather than wait less than a Retry-After over the limit', 600_000, { waits: [], tries: 1, error: 'transient' }],
  ] as const)('a throttled call %s', async (_name, retryAfterMs, want) => {
    const waits: number[] = [];
    let tries = 0;
    const fn = async () => {
      if (tries++ === 0) throw new DriverError('transient', 'TooManyRequests', true, { retryAfterMs });
      return 'done';
    };
    const got = await callDriver('createVm', fn, {
      attempts: 3,
      timeoutMs: 5_000,
      backoffMs: 5,
      sleep: async (ms) => {
        waits.push(ms);
      },
    }).then(
      (value) => ({ value }),
      (err: DriverError) => ({ error: err.kind }),
    );
    expect({ ...got, waits, tries }).toEqual(want);
    for (const w of waits) expect(w).toBeGreaterThanOrEqual(retryAfterMs);
  });

  it('a call that does not answer within the deadline fails with timeout, and is not tried again', async () => {
    let tries = 0;
    const err = await callDriver(
      'awaitReady',
      () => {
        tries++;
        return new Promise<never>(() => undefined);
      },
      { attempts: 3, timeoutMs: 10, backoffMs: 0 },
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'DriverError', kind: 'timeout', transient: false, message: 'awaitReady did not answer within 10 ms' });
    expect(tries).toBe(1);
  });

  it('a transient failure of the sim (errorRate) is tried again inside one operation', async () => {
    const flaky = await createSimDriver({ dataCenter: DC, stateDir: join(dir, 'flaky'), latencyMs: 0, errorRate: 0.5, seed: 3, credentialKey: testCredentialKey(DC) });
    try {
      const ops = new Operations(flaky, { attempts: 20, timeoutMs: 5_000, readyTimeoutMs: 1_000, backoffMs: 0 });
      const vm = recordVm();
      for (let i = 0; i < 6; i++) {
        const v = { ...vm, id: randomUUID() };
        expect(await ops.carryOut('createVm', approval('createVm', v), v.id, undefined)).toMatchObject({ cloudId: expect.any(String) });
      }
      expect(flaky.calls.get('createVm')).toBeGreaterThan(6);
    } finally {
      await flaky.close();
    }
  });
});
