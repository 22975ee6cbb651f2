// The driver contract suite: one table of cases every driver (sim, aws,
// azure) must pass, run by each driver's `<kind>.contract.test.ts` with a
// harness that makes the driver and injects faults its own way (sim: its
// fault settings; cloud drivers: nock answering as the cloud's wire format
// does). The cases only use the Driver interface (types.ts) and the harness.
//
// How a driver joins (see also providers/drivers/README.md):
//
//   // providers/drivers/<kind>/<kind>.contract.test.ts
//   import { driverContract } from '../contract.ts';
//   driverContract('<kind>', async () => ({ driver, creds, readCreds, inject, heal, vanish, close }));
//
// The harness must keep true:
// - `driver` is fresh and empty (no VMs) for each case; `close` releases it.
// - `creds()` are credentials the driver accepts for mutating calls (for a
//   cloud driver: what the authority's broker hands out); `readCreds()` the
//   DMZ client's own read-only ones.
// - The VMs of the data center run a boot agent that follows the boot
//   protocol (POST bootUrl with { cloudId, vmId, image, bootToken }, then
//   POST <bootUrl>/status with an AgentReport when the driver has
//   agentStatus): the suite attaches its own boot endpoint, approving the
//   tokens it issued and denying any other (told to the driver's
//   bootDenied, as the DMZ client does).
// - `inject(call, kind)` makes every later `call` fail as the cloud fails
//   for that kind (until `heal()`); `timeout` makes the call hang, and the
//   driver must give up with a `timeout` error on its own (the harness
//   gives it a short request timeout).
// - `vanish(vm)` removes the VM from the cloud behind the driver's back.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DriverError, type CloudVm, type CreateVmInput, type Driver, type DriverCall, type DriverErrorKind, type ScopedCredentials, type VmRef } from './types.ts';

/** The error kinds a cloud's failures map onto; every driver can be made to raise each. */
export const FAULT_KINDS = ['credentials', 'capacity', 'not-found', 'invalid-state', 'transient', 'timeout'] as const satisfies readonly DriverErrorKind[];
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface ContractHarness {
  driver: Driver;
  /** Credentials for mutating calls, as the authority issues them for this data center. */
  creds(): ScopedCredentials;
  /** The DMZ client's own read-only credentials (get, list). */
  readCreds(): ScopedCredentials;
  /** Every later `call` fails as the cloud fails for `kind`, until heal(). */
  inject(call: DriverCall, kind: FaultKind): void | Promise<void>;
  heal(): void | Promise<void>;
  /** The VM disappears from the cloud (someone deleted it in the console). */
  vanish(vm: CloudVm): void | Promise<void>;
  close(): Promise<void>;
}

export type MakeHarness = () => Promise<ContractHarness>;

/** How long the suite waits for a VM to report ready (the harness's VMs boot in milliseconds). */
const READY_MS = 10_000;

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** The suite's boot endpoint: approves tokens it issued (releasing that VM's disk key), denies any other. */
class BootEndpoint {
  private server: Server | undefined;
  url = '';
  readonly tokens = new Map<string, { vmId: string; diskKey: string }>();
  readonly asked: { vmId: string; approved: boolean }[] = [];
  constructor(private readonly driver: () => Driver) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      void body(req).then((text) => {
        const send = (status: number, payload: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(payload));
        };
        let b: Record<string, unknown>;
        try {
          b = JSON.parse(text) as Record<string, unknown>;
        } catch {
          send(400, { error: { code: 'bad-request', message: 'not JSON' } });
          return;
        }
        if (req.url === '/v1/boot') {
          const t = this.tokens.get(String(b.bootToken));
          const approved = t !== undefined && t.vmId === b.vmId;
          this.asked.push({ vmId: String(b.vmId), approved });
          // As the DMZ client does with each denial it relays (Driver.bootDenied).
          if (!approved) this.driver().bootDenied?.({ vmId: String(b.vmId), cloudId: String(b.cloudId), bootToken: String(b.bootToken) });
          send(200, approved ? { approved, reason: 'known VM', diskKey: t.diskKey } : { approved, reason: 'unknown boot token' });
          return;
        }
        if (req.url === '/v1/boot/status') {
          const ok = this.driver().agentStatus?.(b as never) ?? false;
          send(ok ? 200 : 403, ok ? { ok } : { error: { code: 'forbidden', message: 'report not believed' } });
          return;
        }
        send(404, { error: { code: 'not-found', message: String(req.url) } });
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1/boot`;
  }

  /** A one-time token for this VM, whose boot will be approved. */
  issue(vmId: string, diskKey: string): string {
    const token = randomUUID();
    this.tokens.set(token, { vmId, diskKey });
    return token;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (s += c));
    req.on('end', () => resolve(s));
    req.on('error', reject);
  });
}

/** What a rejected driver call was. */
async function failure(p: Promise<unknown>): Promise<DriverError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof DriverError) return err;
    throw new Error(`expected a DriverError, got ${String(err)}`, { cause: err });
  }
  throw new Error('expected the call to fail, it succeeded');
}

/**
 * A running VM as a DMZ client that holds no report of its agent sees it (another process, or one whose state folder
 * was lost): `get` and `list` both read it Running with its agent `unknown`, what import must not take for a
 * finished handshake (engine/cli/commands/import.ts importedState). Returns what `get` read. For the aws and azure
 * tests: the sim always knows its agents.
 */
export async function expectRunningUnconfirmed(driver: Driver, creds: ScopedCredentials, ref: VmRef): Promise<CloudVm> {
  const seen = [await driver.get(creds, ref), (await driver.list(creds)).find((v) => v.vmId === ref.vmId)];
  expect(seen.map((v) => [v?.observedState, v?.agent])).toEqual([
    ['Running', 'unknown'],
    ['Running', 'unknown'],
  ]);
  return seen[0]!;
}

/** Runs the contract suite for one driver. */
export function driverContract(name: string, make: MakeHarness): void {
  describe(`driver contract: ${name}`, () => {
    let h: ContractHarness;
    let boot: BootEndpoint;
    const keys = new Map<string, string>();

    beforeEach(async () => {
      h = await make();
      boot = new BootEndpoint(() => h.driver);
      await boot.start();
      h.driver.attach({ bootUrl: boot.url });
    });
    afterEach(async () => {
      await h.close();
      await boot.close();
    });

    const input = (over: Partial<CreateVmInput> = {}): CreateVmInput => {
      const vmId = over.vmId ?? randomUUID();
      const key = keys.get(vmId) ?? randomUUID();
      keys.set(vmId, key);
      return {
        vmId,
        address: 'web/0',
        name: 'web-0',
        image: 'img-contract',
        size: { cpu: 2, memoryGiB: 4, diskGiB: 20 },
        encryptedDisk: true,
        diskKeyHash: sha256(key),
        ...over,
      };
    };
    const ref = (vm: CloudVm): VmRef => ({ vmId: vm.vmId, cloudId: vm.cloudId });
    const create = (over: Partial<CreateVmInput> = {}) => h.driver.createVm(h.creds(), input(over));
    /** A created VM carried to Running, the way the DMZ client does it. */
    const running = async (): Promise<CloudVm> => {
      const vm = await create();
      await h.driver.powerOn(h.creds(), ref(vm));
      await h.driver.boot(h.creds(), ref(vm), { bootToken: boot.issue(vm.vmId, keys.get(vm.vmId)!) });
      return h.driver.awaitReady(h.creds(), ref(vm), { timeoutMs: READY_MS });
    };
    const present = async () => (await h.driver.list(h.readCreds())).filter((v) => v.status === 'present');

    describe('lifecycle', () => {
      it('createVm makes a powered-off VM that get (by VM id and by cloud id) and list find', async () => {
        const vm = await create();
        expect(vm).toMatchObject({ status: 'present', power: 'off', observedState: 'PoweredOff', dataCenter: h.driver.dataCenter, image: 'img-contract' });
        expect(vm.cloudId).toEqual(expect.any(String));
        expect(await h.driver.get(h.readCreds(), { vmId: vm.vmId, cloudId: null })).toMatchObject({ cloudId: vm.cloudId, observedState: 'PoweredOff' });
        expect(await h.driver.get(h.readCreds(), ref(vm))).toMatchObject({ vmId: vm.vmId });
        expect((await present()).map((v) => v.cloudId)).toEqual([vm.cloudId]);
      });

      it('powerOn, boot and awaitReady carry a VM to Running once its boot is approved', async () => {
        const vm = await running();
        expect(vm).toMatchObject({ status: 'present', power: 'on', agent: 'ready', observedState: 'Running' });
        expect(boot.asked).toEqual([{ vmId: vm.vmId, approved: true }]);
        expect(await h.driver.get(h.readCreds(), ref(vm))).toMatchObject({ observedState: 'Running' });
      });

      // fleet import refuses a VM the record does not know into another fleet than its tags name
      // (engine/cli/commands/import.ts): get and list must say which, as the VM was created.
      it.each([
        { name: 'a member of fleet web', address: 'web/0', want: { fleet: 'web', address: 'web/0' } },
        { name: 'a fleet name with dashes and digits', address: 'api-v2/12', want: { fleet: 'api-v2', address: 'api-v2/12' } },
        { name: 'created without an address: names none', address: undefined, want: {} },
      ])('get and list name the fleet and member the VM was created as ($name), powered off and running', async ({ address, want }) => {
        const made = await create({ address });
        const names = (v: CloudVm | undefined) => ({ ...(v?.fleet !== undefined ? { fleet: v.fleet } : {}), ...(v?.address !== undefined ? { address: v.address } : {}) });
        expect(names(made)).toEqual(want);
        expect(names(await h.driver.get(h.readCreds(), ref(made)))).toEqual(want);
        expect((await present()).map(names)).toEqual([want]);
        await h.driver.powerOn(h.creds(), ref(made));
        await h.driver.boot(h.creds(), ref(made), { bootToken: boot.issue(made.vmId, keys.get(made.vmId)!) });
        expect(names(await h.driver.awaitReady(h.creds(), ref(made), { timeoutMs: READY_MS }))).toEqual(want);
        expect((await present()).map(names)).toEqual([want]);
      });

      it('shutdown then powerOff leave the VM powered off', async () => {
        const vm = await running();
        await h.driver.shutdown(h.creds(), ref(vm));
        const off = await h.driver.powerOff(h.creds(), ref(vm));
        expect(off).toMatchObject({ status: 'present', power: 'off', observedState: 'PoweredOff' });
        expect(await h.driver.get(h.readCreds(), ref(vm))).toMatchObject({ power: 'off', observedState: 'PoweredOff' });
      });

      it('powerOff alone (forced) powers a running VM off', async () => {
        const vm = await running();
        expect(await h.driver.powerOff(h.creds(), ref(vm))).toMatchObject({ power: 'off', observedState: 'PoweredOff' });
      });

      it('a powered-off VM boots again after powerOn', async () => {
        const vm = await running();
        await h.driver.powerOff(h.creds(), ref(vm));
        await h.driver.powerOn(h.creds(), ref(vm));
        await h.driver.boot(h.creds(), ref(vm), { bootToken: boot.issue(vm.vmId, keys.get(vm.vmId)!) });
        expect(await h.driver.awaitReady(h.creds(), ref(vm), { timeoutMs: READY_MS })).toMatchObject({ observedState: 'Running' });
      });

      it('resize changes the size of a powered-off VM', async () => {
        const vm = await create();
        const size = { cpu: 4, memoryGiB: 16, diskGiB: 20 };
        expect((await h.driver.resize(h.creds(), ref(vm), size)).size).toMatchObject({ cpu: 4, memoryGiB: 16 });
        expect((await h.driver.get(h.readCreds(), ref(vm)))?.size).toMatchObject({ cpu: 4, memoryGiB: 16 });
      });

      it('resize of a running VM is invalid-state', async () => {
        const vm = await running();
        const err = await failure(h.driver.resize(h.creds(), ref(vm), { cpu: 4, memoryGiB: 16, diskGiB: 20 }));
        expect(err.kind).toBe('invalid-state');
      });

      it('deleteVm removes the VM: get shows it terminated (or not at all), list no longer holds it present', async () => {
        const vm = await create();
        await h.driver.deleteVm(h.creds(), ref(vm));
        const after = await h.driver.get(h.readCreds(), ref(vm));
        if (after !== undefined) expect(after).toMatchObject({ status: 'terminated', observedState: 'Deleted' });
        expect(await present()).toEqual([]);
      });

      it('a boot with a token the boot endpoint denies fails awaitReady with boot-denied (its own kind: fleet apply classifies on it, never on the message), and the VM is terminated', async () => {
        const vm = await create();
        await h.driver.powerOn(h.creds(), ref(vm));
        await h.driver.boot(h.creds(), ref(vm), { bootToken: 'made-up-token' });
        const err = await failure(h.driver.awaitReady(h.creds(), ref(vm), { timeoutMs: READY_MS }));
        expect(err.kind).toBe('boot-denied');
        expect(err.transient).toBe(false);
        expect(boot.asked).toEqual([{ vmId: vm.vmId, approved: false }]);
        const after = await h.driver.get(h.readCreds(), ref(vm));
        if (after !== undefined) expect(after.status).toBe('terminated');
      });
    });

    describe('idempotency', () => {
      it('createVm again with the same VM id returns the first VM, never a second', async () => {
        const vmId = randomUUID();
        const a = await create({ vmId });
        const b = await create({ vmId });
        expect(b.cloudId).toBe(a.cloudId);
        expect((await present()).length).toBe(1);
      });

      it('deleteVm of a VM the cloud no longer has succeeds', async () => {
        const vm = await create();
        await h.vanish(vm);
        await h.driver.deleteVm(h.creds(), ref(vm));
        await h.driver.deleteVm(h.creds(), ref(vm));
      });

      it('deleteVm twice succeeds', async () => {
        const vm = await create();
        await h.driver.deleteVm(h.creds(), ref(vm));
        await h.driver.deleteVm(h.creds(), ref(vm));
        expect(await present()).toEqual([]);
      });
    });

    describe('errors', () => {
      it('credentials of another data center are refused with credentials, before any cloud call', async () => {
        const other = { ...h.creds(), dataCenter: `not-${h.driver.dataCenter}` };
        expect((await failure(h.driver.createVm(other, input()))).kind).toBe('credentials');
      });

      it('expired credentials are refused with credentials', async () => {
        const old = { ...h.creds(), expiresAt: new Date(Date.now() - 1000).toISOString() };
        expect((await failure(h.driver.createVm(old, input()))).kind).toBe('credentials');
      });

      it('a VM that vanished is not-found for powerOn, and get no longer shows it present', async () => {
        const vm = await create();
        await h.vanish(vm);
        expect((await failure(h.driver.powerOn(h.creds(), ref(vm)))).kind).toBe('not-found');
        expect((await h.driver.get(h.readCreds(), ref(vm)))?.status ?? 'terminated').toBe('terminated');
      });

      /** `running`: the call is made on a running VM (a cloud may skip the call on a VM already where it leads). */
      const cases: { kind: FaultKind; call: DriverCall; transient: boolean; running?: boolean }[] = [
        { kind: 'credentials', call: 'createVm', transient: false },
        { kind: 'capacity', call: 'createVm', transient: false },
        { kind: 'transient', call: 'createVm', transient: true },
        { kind: 'timeout', call: 'createVm', transient: false },
        { kind: 'not-found', call: 'powerOn', transient: false },
        { kind: 'invalid-state', call: 'powerOn', transient: false },
        { kind: 'transient', call: 'powerOff', transient: true, running: true },
        { kind: 'credentials', call: 'deleteVm', transient: false },
        { kind: 'transient', call: 'list', transient: true },
        { kind: 'timeout', call: 'get', transient: false },
      ];
      it.each(cases)('$call failing with $kind is a DriverError of kind $kind (transient: $transient)', async ({ kind, call, transient, running: up }) => {
        const vm = call === 'createVm' ? undefined : up ? await running() : await create();
        await h.inject(call, kind);
        const c = h.creds();
        const r = vm ? ref(vm) : { vmId: randomUUID(), cloudId: null };
        const calls: Record<string, () => Promise<unknown>> = {
          createVm: () => h.driver.createVm(c, input()),
          powerOn: () => h.driver.powerOn(c, r),
          powerOff: () => h.driver.powerOff(c, r),
          deleteVm: () => h.driver.deleteVm(c, r),
          list: () => h.driver.list(h.readCreds()),
          get: () => h.driver.get(h.readCreds(), r),
        };
        const err = await failure(calls[call]());
        expect(err.kind).toBe(kind);
        expect(err.transient).toBe(transient);
        expect(err.message).not.toBe('');
        await h.heal();
        if (vm) expect(await h.driver.get(h.readCreds(), r)).toMatchObject({ vmId: vm.vmId });
      });

      it('a capacity failure of createVm leaves no VM behind', async () => {
        await h.inject('createVm', 'capacity');
        await failure(create());
        await h.heal();
        expect(await present()).toEqual([]);
      });
    });
  });
}
