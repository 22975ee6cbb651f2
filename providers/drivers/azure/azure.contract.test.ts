// The azure driver passes the driver contract (providers/drivers/contract.ts)
// against ARM served by nock (arm-fake.ts); each fault kind is injected the
// way Azure fails that call.
import { driverContract, type FaultKind } from '../contract.ts';
import type { DriverCall } from '../types.ts';
import { ArmFake, type ArmCall, type ArmFault } from './arm-fake.ts';
import { AzureDriver } from './azure.ts';
import { staticTokenCredential } from './clients.ts';
import { azureBootstrap } from './bootstrap.ts';

const SUB = '00000000-0000-0000-0000-0000000000cc';
const RG = 'rg-contract';

/** The ARM calls a driver call makes, where its faults are injected. */
const ARM_CALLS: Record<DriverCall, ArmCall[]> = {
  createVm: ['putVm'],
  powerOn: ['start'],
  boot: ['patchVm'],
  awaitReady: [],
  shutdown: ['powerOff'],
  powerOff: ['powerOff', 'deallocate'],
  resize: ['patchVm'],
  deleteVm: ['deleteVm'],
  get: ['getVm'],
  list: ['listVms'],
};

/** How Azure fails with each kind. */
function faultOf(call: ArmCall, kind: FaultKind): ArmFault {
  switch (kind) {
    case 'credentials':
      return { call, status: 403, code: 'AuthorizationFailed', message: 'The client does not have authorization to perform this action.' };
    case 'capacity':
      return { call, failOperation: { code: 'AllocationFailed', message: 'Allocation failed. We do not have sufficient capacity for the requested VM size in this region.' } };
    case 'not-found':
      return { call, status: 404, code: 'ResourceNotFound', message: 'The Resource was not found.' };
    case 'invalid-state':
      return { call, status: 409, code: 'OperationNotAllowed', message: 'Operation is not allowed since the VM is in the wrong state.' };
    case 'transient':
      return { call, status: 429, code: 'TooManyRequests', message: 'The request is being throttled.', retryAfter: 1 };
    case 'timeout':
      return { call, hang: true };
  }
}

driverContract('azure', async () => {
  const arm = new ArmFake({ subscriptionId: SUB, resourceGroup: RG, location: 'eastus' }).install();
  const far = () => new Date(Date.now() + 3_600_000).toISOString();
  const driver = new AzureDriver({
    dataCenter: 'dc-contract',
    stack: 'contract',
    subscriptionId: SUB,
    resourceGroup: RG,
    location: 'eastus',
    vnet: 'vnet',
    subnet: 'vms',
    vmSize: (s) => (s.cpu <= 2 && s.memoryGiB <= 8 ? 'Standard_D2s_v5' : s.cpu <= 4 && s.memoryGiB <= 16 ? 'Standard_D4s_v5' : undefined),
    readCredential: staticTokenCredential('read-only-token', far()),
    customData: azureBootstrap(),
    bootScript: (ctx) => JSON.stringify(ctx),
    sshPublicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest contract',
    pollIntervalMs: 1,
    // Short enough for the timeout cases, long enough that a loaded machine's slow answer is not taken for a hung call.
    requestTimeoutMs: 3000,
  });
  return {
    driver,
    creds: () => ({
      dataCenter: 'dc-contract',
      token: 'scoped-token',
      expiresAt: far(),
      azure: { accessToken: 'brokered-token', expiresOn: far(), subscriptionId: SUB, resourceGroup: RG },
    }),
    readCreds: () => ({ dataCenter: 'dc-contract', token: 'read-only', expiresAt: far() }),
    inject: (call, kind) => {
      for (const c of ARM_CALLS[call]) arm.inject(faultOf(c, kind));
    },
    heal: () => arm.heal(),
    vanish: (vm) => arm.vanish(vm.cloudId.split('/').at(-1) ?? ''),
    close: async () => {
      await driver.close();
      await arm.close();
    },
  };
});
