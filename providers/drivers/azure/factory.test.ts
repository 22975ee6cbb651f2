// The registry's azure factory: the agent it renders into each boot's userData ends its retries inside the DMZ
// client's wait for the boot (spec.readyTimeoutMs), like the aws driver's (providers/boot-agent, agentWindowSeconds).
import { describe, expect, it } from 'vitest';
import { agentWindowSeconds, parseAgentUserData } from '../../boot-agent/index.ts';
import { defaultPack } from '../../testing.ts';
import { credentialKey } from '../../../protocol/index.ts';
import { azureDriverFactory } from './factory.ts';
import type { AzureDriver } from './azure.ts';
import type { AzureDriverOptions } from './options.ts';

const DC = 'eastus';

describe('azure driver factory', () => {
  it.each([
    { name: 'the default wait', readyTimeoutMs: undefined, want: String(agentWindowSeconds()) },
    { name: 'spec.readyTimeoutMs 300000', readyTimeoutMs: 300_000, want: '180' },
  ])('boot userData carries the agent\'s boot window of $name: $want s', async ({ readyTimeoutMs, want }) => {
    const d = (await azureDriverFactory({
      dataCenter: { name: DC, address: 'https://dmz.example', location: { lat: 0, lon: 0 }, hardware: [], capacity: {}, driver: 'azure', where: {} },
      stack: 'hybrid',
      pack: await defaultPack(),
      config: {
        azure: { subscriptionId: '00000000-0000-0000-0000-000000000000', resourceGroup: 'rg', location: 'eastus', vnet: 'vnet', subnet: 'subnet', sshPublicKey: 'ssh-ed25519 AAAA test' },
        ...(readyTimeoutMs !== undefined ? { readyTimeoutMs } : {}),
      },
      stateDir: '/nonexistent',
      env: {},
      credentialKey: credentialKey('dmz-token', DC),
    })) as AzureDriver;
    try {
      const { bootScript } = (d as unknown as { o: AzureDriverOptions }).o;
      const script = bootScript({ vmId: 'v', cloudId: 'c', image: 'i', bootUrl: 'https://10.0.0.5:7401/v1/boot', bootToken: 't', encryptedDisk: true, dataDevice: '/dev/disk/azure/scsi1/lun0' });
      expect(parseAgentUserData(script).FLEET_BOOT_WINDOW).toBe(want);
    } finally {
      await d.close();
    }
  });

  // The layout packages/dmz-infra writes: VMs in the fleet's group, the VNet in the DMZ's.
  it('hands the driver the VMs\' resource group and the VNet\'s from the config', async () => {
    const d = (await azureDriverFactory({
      dataCenter: { name: DC, address: 'https://dmz.example', location: { lat: 0, lon: 0 }, hardware: [], capacity: {}, driver: 'azure', where: {} },
      stack: 'hybrid',
      pack: await defaultPack(),
      config: { azure: { subscriptionId: '00000000-0000-0000-0000-000000000000', resourceGroup: 'dc-fleet-rg', vnetResourceGroup: 'dc-rg', location: 'eastus', vnet: 'vnet', subnet: 'fleet', sshPublicKey: 'ssh-ed25519 AAAA test' } },
      stateDir: '/nonexistent',
      env: {},
      credentialKey: credentialKey('dmz-token', DC),
    })) as AzureDriver;
    try {
      expect((d as unknown as { o: AzureDriverOptions }).o).toMatchObject({ resourceGroup: 'dc-fleet-rg', vnetResourceGroup: 'dc-rg', vnet: 'vnet', subnet: 'fleet' });
    } finally {
      await d.close();
    }
  });
});
