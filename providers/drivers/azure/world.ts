// Test support: a real authority (brokering Azure tokens from Entra, served by
// nock) and a real DMZ client running the azure driver against ARM served by
// nock (arm-fake.ts), over loopback HTTP; each VM runs the shipped boot agent
// (agent.sh, with sh) from the userData the driver writes (aws: world.ts).
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nock from 'nock';
import { startAuthority } from '../../../engine/authority/index.ts';
import { AzureCredentialBroker } from '../../../engine/authority/credentials/azure.ts';
import { fitInstanceType, instanceTypesOf } from '../../../engine/policy/instance-types.ts';
import { openRecord } from '../../../engine/record/index.ts';
import { renderAgentUserData, USER_DATA_MAX_BYTES } from '../../boot-agent/index.ts';
import { writeFakeVmTools } from '../../boot-agent/testing.ts';
import { defaultPack } from '../../testing.ts';
import { startWorldDmz, type CloudWorld } from '../world.ts';
import { ArmFake } from './arm-fake.ts';
import { AzureDriver } from './azure.ts';
import { azureBootstrap } from './bootstrap.ts';
import { staticTokenCredential } from './clients.ts';

export const AZURE_SECRET = 'azure-world-secret';
const TENANT = '00000000-0000-0000-0000-00000000f001';
const CLIENT = '00000000-0000-0000-0000-00000000f002';
const SUB = '00000000-0000-0000-0000-00000000f003';
const RG = 'dmzfleet-world';
const ENTRA = 'https://login.microsoftonline.com';

export interface AzureWorld extends CloudWorld<AzureDriver> {
  arm: ArmFake;
}

/** `bootUrl`: where the VMs reach the boot endpoint (default: the DMZ client's own). */
export async function startAzureWorld(opts: { bootUrl?: string } = {}): Promise<AzureWorld> {
  const stack = `azure-${randomUUID().slice(0, 8)}`;
  // The default pack's Azure data center: its image catalog, instance types and powerOff: deallocate.
  const dataCenter = 'eastus';
  const dir = await mkdtemp(join(tmpdir(), 'dmzfleet-azure-world-'));
  await writeFakeVmTools(join(dir, 'bin'));
  const arm = new ArmFake({ subscriptionId: SUB, resourceGroup: RG, location: 'eastus', agentShell: { binDir: join(dir, 'bin'), vmRoot: join(dir, 'vms') } }).install();
  const entra = nock(ENTRA).persist().post(`/${TENANT}/oauth2/v2.0/token`);
  entra.reply(200, () => ({ token_type: 'Bearer', expires_in: 3599, access_token: `brokered-${randomUUID()}` }));
  const broker = new AzureCredentialBroker({ dataCenters: [{ name: dataCenter, tenantId: TENANT, clientId: CLIENT, clientSecret: 'broker-secret', subscriptionId: SUB, resourceGroup: RG }] });
  const record = await openRecord('memory://');
  const pack = await defaultPack();
  const types = instanceTypesOf(pack, dataCenter)!;
  const authorityToken = `authority-${randomUUID()}`;
  const authority = await startAuthority({ record, pack, stackName: stack, dataCenters: [{ name: dataCenter, token: authorityToken }], secret: AZURE_SECRET, credentialBroker: broker });
  const driver = new AzureDriver({
    dataCenter,
    stack,
    subscriptionId: SUB,
    resourceGroup: RG,
    location: 'eastus',
    vnet: 'vnet-fleet',
    subnet: 'vms',
    vmSize: (size) => fitInstanceType(types, size)?.name,
    powerOffMode: pack.powerOff?.[dataCenter] ?? 'stop',
    readCredential: staticTokenCredential('read-only-token', new Date(Date.now() + 3_600_000).toISOString()),
    customData: azureBootstrap(),
    bootScript: (b) =>
      renderAgentUserData(
        { bootUrl: b.bootUrl, vmId: b.vmId, cloudId: b.cloudId, image: b.image, bootToken: b.bootToken, encrypted: b.encryptedDisk, dataDevice: b.dataDevice },
        USER_DATA_MAX_BYTES.azure,
      ),
    sshPublicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest world',
    pollIntervalMs: 2,
    requestTimeoutMs: 5_000,
    stateDir: dir,
    ...(opts.bootUrl ? { bootUrl: opts.bootUrl } : {}),
  });
  const { dmz, client } = await startWorldDmz({ dataCenter, driver, authority, authorityToken, dir, pack });
  return {
    stack,
    dataCenter,
    arm,
    record,
    authority,
    driver,
    dmz,
    client,
    dir,
    async close() {
      await dmz.close();
      await driver.close();
      await authority.close();
      broker.close();
      await record.close();
      nock.removeInterceptor(entra);
      await arm.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
