// The sim passes the driver contract (providers/drivers/contract.ts); faults
// come from its own settings (setFaults: failWith, hangCalls with a short
// callTimeoutMs).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { driverContract } from '../contract.ts';
import { createSimDriver } from './open.ts';
import { signedCredentials, testCredentialKey } from './testing.ts';

driverContract('sim', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dmzfleet-sim-contract-'));
  const driver = await createSimDriver({ dataCenter: 'dc-contract', stateDir: dir, latencyMs: 1, callTimeoutMs: 100, credentialKey: testCredentialKey('dc-contract') });
  // Signed as the authority signs them; reads carry the DMZ client's own (unsigned) read-only identity.
  const creds = () => signedCredentials('dc-contract');
  return {
    driver,
    creds,
    readCreds: () => ({ ...creds(), token: 'dmz-client-read-only' }),
    inject: (call, kind) => driver.setFaults(kind === 'timeout' ? { hangCalls: [call] } : { failWith: { [call]: kind } }),
    heal: () => driver.setFaults({}),
    vanish: (vm) => driver.deleteVm(creds(), { vmId: vm.vmId, cloudId: vm.cloudId }),
    close: async () => {
      await driver.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
