// The sim passes the driver contract (providers/drivers/contract.ts); faults
// come from its own settings (setFaults: failWith, hangCalls with a short
// callTimeoutMs).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { driverContract } from '../contract.ts';
import { createSimDriver } from './sim.ts';

driverContract('sim', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dmzfleet-sim-contract-'));
  const driver = await createSimDriver({ dataCenter: 'dc-contract', stateDir: dir, latencyMs: 1, callTimeoutMs: 100 });
  const creds = () => ({ dataCenter: 'dc-contract', token: 'scoped', expiresAt: new Date(Date.now() + 60_000).toISOString() });
  return {
    driver,
    creds,
    readCreds: () => ({ ...creds(), token: 'read-only' }),
    inject: (call, kind) => driver.setFaults(kind === 'timeout' ? { hangCalls: [call] } : { failWith: { [call]: kind } }),
    heal: () => driver.setFaults({}),
    vanish: (vm) => driver.deleteVm(creds(), { vmId: vm.vmId, cloudId: vm.cloudId }),
    close: async () => {
      await driver.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
