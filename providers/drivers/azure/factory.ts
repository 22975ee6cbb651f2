// The registry's entry for the `azure` driver: settings from the DMZ client
// config, the VM-size catalog and power-off mode from the pack, the read
// identity from the environment.
import { ARM_SCOPE } from '../../../engine/authority/credentials/azure.ts';
import { fitInstanceType, instanceTypesOf } from '../../../engine/policy/instance-types.ts';
import { USER_DATA_MAX_BYTES, agentWindowSeconds, renderAgentUserData } from '../../boot-agent/index.ts';
import type { DriverFactory } from '../registry.ts';
import { DriverError } from '../types.ts';
import { AzureDriver } from './azure.ts';
import { DEFAULT_ARM_ENDPOINT } from './options.ts';
import { azureBootstrap } from './bootstrap.ts';
import { readIdentity } from './clients.ts';

/** The registry's factory: settings from the DMZ client config, the VM-size catalog and power-off mode from the pack. */
export const azureDriverFactory: DriverFactory = async (ctx) => {
  const s = ctx.config.azure;
  if (!s) throw new DriverError('failed', 'the azure driver needs spec.azure in the DMZ client config');
  const dc = ctx.dataCenter.name;
  const types = instanceTypesOf(ctx.pack, dc);
  if (!types) throw new DriverError('failed', `pack ${ctx.pack.name} has no instanceTypes entry for ${dc}`);
  const powerOffMode = ctx.pack.powerOff?.[dc];
  const endpoint = s.endpoint ?? DEFAULT_ARM_ENDPOINT;
  return new AzureDriver({
    dataCenter: dc,
    stack: ctx.stack,
    subscriptionId: s.subscriptionId,
    resourceGroup: s.resourceGroup,
    location: s.location,
    vnet: s.vnet,
    subnet: s.subnet,
    ...(s.vnetResourceGroup ? { vnetResourceGroup: s.vnetResourceGroup } : {}),
    endpoint,
    vmSize: (size) => fitInstanceType(types, size)?.name,
    ...(powerOffMode ? { powerOffMode } : {}),
    readCredential: readIdentity(ctx.env, endpoint === DEFAULT_ARM_ENDPOINT ? ARM_SCOPE : `${endpoint.replace(/\/+$/, '')}/.default`),
    customData: azureBootstrap(),
    bootScript: (b) =>
      renderAgentUserData(
        {
          bootUrl: b.bootUrl,
          vmId: b.vmId,
          cloudId: b.cloudId,
          image: b.image,
          bootToken: b.bootToken,
          encrypted: b.encryptedDisk,
          dataDevice: b.dataDevice,
          ...(b.bootCa ? { bootCa: b.bootCa } : {}),
          // Inside the DMZ client's wait for the boot (spec.readyTimeoutMs), which the agent's retries must not outlast.
          windowSeconds: agentWindowSeconds(ctx.config.readyTimeoutMs),
        },
        USER_DATA_MAX_BYTES.azure,
      ),
    sshPublicKey: s.sshPublicKey,
    ...(s.adminUsername ? { adminUsername: s.adminUsername } : {}),
    ...(ctx.config.requestTimeoutMs ? { requestTimeoutMs: ctx.config.requestTimeoutMs } : {}),
    ...(s.pollMs ? { pollIntervalMs: s.pollMs } : {}),
    ...(ctx.config.bootUrl ? { bootUrl: ctx.config.bootUrl } : {}),
    stateDir: ctx.stateDir,
  });
};
