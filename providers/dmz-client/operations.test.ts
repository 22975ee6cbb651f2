import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ProtocolError, type AuthorityVm, type AuthorizeResponse } from '../../protocol/index.ts';
import { OPERATIONS } from '../../engine/model/index.ts';
import { createSimDriver, seededRandom, type SimDriver } from '../drivers/sim/index.ts';
import { signedCredentials, testCredentialKey } from '../drivers/sim/testing.ts';
import { DriverError, type Driver, type ScopedCredentials } from '../drivers/types.ts';
import { CARRIED_OUT, MAX_RETRY_AFTER_MS, Operations, callDriver } from './operations.ts';

const DC = 'dc-a';
// As the authority issues them: for 10 minutes (a try again needs more than 2 minutes left).
const creds = (dataCenter = DC): ScopedCredentials => signedCredentials(dataCenter, { ms: 600_000 });

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

// A call tried again while its failure is transient may take several times the
// per-call deadline (4 tries of up to 120 s, and Retry-After waits of up to
// 120 s between them), but the approval's credentials were checked only once,
// before the first try (more than 2 minutes left, step.ts). An approval used
// with just over that margin had its later tries refused as expired
// (driver.credentials: the sim's scoped token, a cloud's STS session or Entra
// token), and the member failed, its edge's failure recorded (CreateFailed),
// for no reason the next apply did not undo. Now no try starts unless its
// credentials have more than those 2 minutes left: the call stops instead
// with 503 credentials-expiring, and the step, sent again, is authorized
// afresh, with fresh credentials.
describe('callDriver: no try with credentials about to expire', () => {
  /** The margin a try needs: 2 minutes, the per-call deadline (CREDENTIALS_MARGIN_MS). */
  const MARGIN = 120_000;
  const T0 = Date.parse('2026-01-01T00:00:00Z');

  /** One try of the script: how long it takes, and how it fails (none: ok). */
  interface Try {
    ms: number;
    fail?: DriverError;
  }
  const transient = (retryAfterMs?: number) => new DriverError('transient', 'ServiceUnavailable', true, retryAfterMs !== undefined ? { retryAfterMs } : {});
  const capacity = () => new DriverError('capacity', 'InsufficientInstanceCapacity');

  /** What callDriver made of a script: each try's credentials left when it started, the waits between tries, the outcome. */
  async function play(leftMs: number, attempts: number, script: readonly Try[], made?: number) {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(T0);
    try {
      const expiresAt = T0 + leftMs;
      const started: number[] = [];
      const waits: number[] = [];
      const tries = made !== undefined ? { made } : undefined;
      const fn = async () => {
        const left = expiresAt - Date.now();
        started.push(left);
        // The driver's own check (checkCredentials, the sim's scoped token, EC2's RequestExpired).
        if (left <= 0) throw new DriverError('credentials', `credentials expired ${-left} ms ago`);
        const t = script[started.length - 1] ?? { ms: 1_000 };
        vi.setSystemTime(Date.now() + t.ms);
        if (t.fail) throw t.fail;
        return 'done';
      };
      const outcome = await callDriver('createVm', fn, {
        attempts,
        timeoutMs: 120_000,
        backoffMs: 0,
        sleep: async (ms) => {
          waits.push(ms);
          vi.setSystemTime(Date.now() + ms);
        },
        credentialsExpireAt: expiresAt,
        ...(tries ? { tries } : {}),
      }).then(
        (v) => v,
        (err: unknown) =>
          err instanceof DriverError ? `driver.${err.kind}` : err instanceof ProtocolError ? `${err.statusCode} ${err.code}` : `thrown ${String(err)}`,
      );
      return { outcome, tries: started.length, started, waits, made: tries?.made };
    } finally {
      vi.useRealTimers();
    }
  }

  // left: the credentials' life when the call starts; each try: its time, then its failure (none: ok).
  it.each([
    { name: 'plenty left: tried again until ok', left: 600_000, attempts: 4, script: [{ ms: 10_000, fail: transient() }, { ms: 10_000, fail: transient() }], want: { outcome: 'done', tries: 3, waits: [0, 0] } },
    { name: 'just over the margin, a quick failure: tried again, still over it', left: 130_000, attempts: 4, script: [{ ms: 5_000, fail: transient() }], want: { outcome: 'done', tries: 2, waits: [0] } },
    // The defect: the third try ran with credentials expired 10 s before (driver.credentials, the member lost).
    { name: 'just over the margin, slow failures: not tried with what is left', left: 130_000, attempts: 4, script: [{ ms: 70_000, fail: transient() }, { ms: 70_000, fail: transient() }], want: { outcome: '503 credentials-expiring', tries: 1, waits: [0] } },
    // The cloud's Retry-After outlasting the credentials: waited out (never sooner), then not tried with expired credentials.
    { name: 'a Retry-After longer than the credentials live', left: 125_000, attempts: 4, script: [{ ms: 10_000, fail: transient(118_000) }], want: { outcome: '503 credentials-expiring', tries: 1, waits: [118_000] } },
    { name: 'a Retry-After that leaves them under the margin', left: 200_000, attempts: 4, script: [{ ms: 1_000, fail: transient(100_000) }], want: { outcome: '503 credentials-expiring', tries: 1, waits: [100_000] } },
    { name: 'a Retry-After that leaves them enough', left: 600_000, attempts: 4, script: [{ ms: 1_000, fail: transient(100_000) }], want: { outcome: 'done', tries: 2, waits: [100_000] } },
    { name: 'a Retry-After over the limit: the failure, at once, as before', left: 130_000, attempts: 4, script: [{ ms: 1_000, fail: transient(600_000) }], want: { outcome: 'driver.transient', tries: 1, waits: [] } },
    { name: 'tries run out with fresh credentials: the failure, as before', left: 600_000, attempts: 4, script: [1, 2, 3, 4].map(() => ({ ms: 1_000, fail: transient() })), want: { outcome: 'driver.transient', tries: 4, waits: [0, 0, 0] } },
    { name: 'one try only: its failure, not a 503', left: 130_000, attempts: 1, script: [{ ms: 70_000, fail: transient() }], want: { outcome: 'driver.transient', tries: 1, waits: [] } },
    { name: 'a failure that is not transient: given back, not a 503', left: 130_000, attempts: 4, script: [{ ms: 70_000, fail: capacity() }], want: { outcome: 'driver.capacity', tries: 1, waits: [] } },
    { name: 'exactly the margin left for the try again: not tried', left: MARGIN + 1_000, attempts: 4, script: [{ ms: 1_000, fail: transient() }], want: { outcome: '503 credentials-expiring', tries: 1, waits: [0] } },
    // The first try runs on the credentials as the step hands them: it asked for an approval given earlier again when
    // within the margin (step.ts), and one asked for just now is as fresh as the authority makes them.
    { name: 'under the margin from the start: the first try runs, ok', left: 100_000, attempts: 4, script: [], want: { outcome: 'done', tries: 1, waits: [] } },
    { name: 'under the margin from the start: the first try runs, not tried again', left: 100_000, attempts: 4, script: [{ ms: 1_000, fail: transient() }], want: { outcome: '503 credentials-expiring', tries: 1, waits: [0] } },
  ] as const)('$name', async ({ left, attempts, script, want }) => {
    const got = await play(left, attempts, script);
    expect({ outcome: got.outcome, tries: got.tries, waits: got.waits }).toEqual(want);
    for (const l of got.started.slice(1)) expect(l).toBeGreaterThan(MARGIN);
  });

  // Sent again after a 503, the step goes on with the tries it has left (`tries.made`, kept by the step runner): a
  // cloud that keeps failing fails the step after `attempts` tries in all, as before, instead of its being sent again
  // for as long as the CLI retries.
  it.each([
    { name: 'one try made before: three left', made: 1, script: [1, 2, 3].map(() => ({ ms: 1_000, fail: transient() })), want: { outcome: 'driver.transient', tries: 3, made: 4 } },
    { name: 'three made before: the last one, its failure final', made: 3, script: [{ ms: 1_000, fail: transient() }], want: { outcome: 'driver.transient', tries: 1, made: 4 } },
    { name: 'two made before, the next one slow: stopped again, three made', made: 2, script: [{ ms: 70_000, fail: transient() }], want: { outcome: '503 credentials-expiring', tries: 1, made: 3 } },
    { name: 'one made before, then ok', made: 1, script: [], want: { outcome: 'done', tries: 1, made: 2 } },
  ] as const)('tries made by earlier sends: $name', async ({ made, script, want }) => {
    const got = await play(130_000, 4, script, made);
    expect({ outcome: got.outcome, tries: got.tries, made: got.made }).toEqual(want);
  });

  it('the 503 says which call, when the credentials expire, the try that failed and the wait', async () => {
    const got = await play(125_000, 4, [{ ms: 10_000, fail: transient(118_000) }]);
    expect(got.outcome).toBe('503 credentials-expiring');
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(T0);
      const err = await callDriver('powerOff', () => Promise.reject(transient(118_000)), { attempts: 4, timeoutMs: 120_000, backoffMs: 0, sleep: async (ms) => void vi.setSystemTime(Date.now() + ms), credentialsExpireAt: T0 + 125_000 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ statusCode: 503, code: 'credentials-expiring' });
      expect((err as Error).message).toBe(
        'powerOff was not tried again: the credentials of its approval expire at 2026-01-01T00:02:05.000Z (in 7 s), within the 120 s a try needs; its try 1 failed (ServiceUnavailable), then waited 118 s as the cloud asked (Retry-After). Nothing of this step was recorded; sent again with its idempotency key, it is authorized afresh, with fresh credentials',
      );
    } finally {
      vi.useRealTimers();
    }
  });

  it('Operations hands callDriver the earliest expiry of the approval\'s credentials: the scoped ones\', or the brokered session\'s', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(T0);
      const seen: number[] = [];
      const flaky = {
        kind: 'fake',
        powerOn: async (c: ScopedCredentials) => {
          seen.push(Date.parse(c.expiresAt) - Date.now());
          vi.setSystemTime(Date.now() + 60_000);
          throw transient();
        },
      } as unknown as Driver;
      const ops = new Operations(flaky, { attempts: 4, timeoutMs: 120_000, readyTimeoutMs: 1_000, backoffMs: 0 });
      const vm = recordVm({ cloudId: 'c-1', state: 'PoweredOff' });
      // Scoped credentials for 10 minutes, but an AWS session that ends in 200 s: the second try would have 140 s, the third 80 s.
      const aws = { accessKeyId: 'AKIA', secretAccessKey: 's', sessionToken: 't', expiration: new Date(T0 + 200_000).toISOString() };
      const err = await ops.carryOut('powerOn', approval('powerOn', vm, { credentials: { ...signedCredentials(DC, { ms: 600_000 }), aws } }), vm.id, undefined).catch((e: unknown) => e);
      expect(err).toMatchObject({ statusCode: 503, code: 'credentials-expiring' });
      expect(seen).toEqual([600_000, 540_000]);
    } finally {
      vi.useRealTimers();
    }
  });

  // The rule, over generated calls: credentials left, tries, each try's time, failure and Retry-After.
  it('over 2,000 generated calls: every try again starts with more than the margin left, none fails for credentials, no wait is shorter than asked, and the outcome is the reference model\'s', async () => {
    const random = seededRandom(20261207);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
    for (let n = 0; n < 2_000; n++) {
      const left = Math.floor(random() * 900_000) - 10_000;
      const attempts = 1 + Math.floor(random() * 5);
      const script: Try[] = Array.from({ length: attempts }, () => {
        const ms = Math.floor(random() * 130_000);
        const kind = pick(['ok', 'transient', 'transient', 'throttled', 'capacity'] as const);
        if (kind === 'ok') return { ms };
        if (kind === 'capacity') return { ms, fail: capacity() };
        return { ms, fail: transient(kind === 'throttled' ? Math.floor(random() * 150_000) : undefined) };
      });
      const want = reference(left, attempts, script);
      const got = await play(left, attempts, script);
      const where = `call ${n}: ${left} ms left, ${attempts} tries, ${JSON.stringify(script.map((t) => [t.ms, t.fail?.kind, t.fail?.retryAfterMs]))}`;
      expect({ outcome: got.outcome, tries: got.tries, waits: got.waits }, where).toEqual(want);
      // The first try is the step's (its credentials as handed); every try again has more than the margin left.
      if (got.started[0] > 0) expect(got.outcome, where).not.toBe('driver.credentials');
      for (const l of got.started.slice(1)) expect(l, where).toBeGreaterThan(MARGIN);
      got.waits.forEach((w, i) => expect(w, where).toBeGreaterThanOrEqual(script[i].fail?.retryAfterMs ?? 0));
    }

    /** The rule, written out: a try again starts only with more than the margin left; waits as asked (backoff 0 here). */
    function reference(leftMs: number, attempts: number, script: readonly Try[]) {
      let t = 0;
      const waits: number[] = [];
      for (let attempt = 1; ; attempt++) {
        if (attempt > 1 && leftMs - t <= MARGIN) return { outcome: '503 credentials-expiring', tries: attempt - 1, waits };
        const s = script[attempt - 1] ?? { ms: 1_000 };
        if (leftMs - t <= 0) return { outcome: 'driver.credentials', tries: attempt, waits };
        t += s.ms;
        if (!s.fail) return { outcome: 'done', tries: attempt, waits };
        const asked = s.fail.retryAfterMs ?? 0;
        if (!s.fail.transient || attempt >= attempts || asked > MAX_RETRY_AFTER_MS) return { outcome: `driver.${s.fail.kind}`, tries: attempt, waits };
        waits.push(asked);
        t += asked;
      }
    }
  });
});
