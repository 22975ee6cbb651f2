// The DMZ of every Azure data center of a dmzfleet stack: per data center a
// resource group with its DmzNetwork and DmzClientHost, and the stack.yaml those
// deployments make. index.ts runs it with the Pulumi stack's config;
// program.test.ts runs it under Pulumi's mocks.
import * as pulumi from '@pulumi/pulumi';
import { DmzClientHost, DmzNetwork, type BrokerPrincipal } from '@dmzfleet/dmz-infra/azure';
import { authorityPortOf, stackYaml, type DataCenterEntry, type StackBase } from '@dmzfleet/dmz-infra';

/** One data center's settings (Pulumi config `dmz-azure:dataCenters`, a list). */
export interface AzureDataCenterConfig {
  name: string;
  /** Azure region, e.g. eastus2. */
  region: string;
  addressSpace: string;
  dmzSubnetPrefix: string;
  fleetSubnetPrefix: string;
  /** The DMZ client host's private address (default: the DMZ subnet's 10th address). */
  privateIp?: string;
  /**
   * The authority's broker principal of this data center (an Entra app made
   * outside Pulumi): its client id, the object id of its service principal,
   * the authority's variable holding its secret; tenantId defaults to
   * dmz-azure:tenantId.
   */
  broker: Omit<BrokerPrincipal, 'tenantId'> & { tenantId?: string };
  vmSize?: string;
  location: { lat: number; lon: number };
  hardware: string[];
  capacity: { vms?: number; cpu?: number; memoryGiB?: number };
}

export type HostSecrets = Record<string, { tlsCert: string; tlsKey: string; clientToken: string; authorityToken: string }>;

export interface DmzAzureConfig {
  stack: StackBase;
  subscriptionId: string;
  tenantId: string;
  tenantCidrs: string[];
  authorityUrl: string;
  sshPublicKey: string;
  /** Operators' OpenSSH public key on the fleet VMs the DMZ clients create. */
  fleetSshPublicKey: string;
  dataCenters: AzureDataCenterConfig[];
  secrets: pulumi.Output<HostSecrets>;
  install?: string[];
}

export function readConfig(): DmzAzureConfig {
  const c = new pulumi.Config('dmz-azure');
  return {
    stack: c.requireObject<StackBase>('stack'),
    subscriptionId: c.require('subscriptionId'),
    tenantId: c.require('tenantId'),
    tenantCidrs: c.requireObject<string[]>('tenantCidrs'),
    authorityUrl: c.require('authorityUrl'),
    sshPublicKey: c.require('sshPublicKey'),
    fleetSshPublicKey: c.require('fleetSshPublicKey'),
    dataCenters: c.requireObject<AzureDataCenterConfig[]>('dataCenters'),
    secrets: c.requireSecretObject<HostSecrets>('secrets'),
    install: c.getObject<string[]>('install') ?? [],
  };
}

export function deploy(cfg: DmzAzureConfig) {
  const deployed = cfg.dataCenters.map((dc) => {
    if (!dc.broker?.clientId || !dc.broker.principalId) {
      throw new Error(`dmz-azure:dataCenters: ${dc.name} needs broker.clientId and broker.principalId (the object id of its service principal): the authority's broker principal of this data center (docs/drivers/azure.md, "Credentials").`);
    }
    const network = new DmzNetwork(dc.name, {
      stack: cfg.stack.name,
      dataCenter: dc.name,
      location: dc.region,
      addressSpace: dc.addressSpace,
      dmzSubnetPrefix: dc.dmzSubnetPrefix,
      fleetSubnetPrefix: dc.fleetSubnetPrefix,
      tenantCidrs: cfg.tenantCidrs,
      authorityPort: authorityPortOf('dmz-azure:authorityUrl', cfg.authorityUrl),
    });
    const mine = cfg.secrets.apply((s) => {
      const x = s[dc.name];
      if (!x) throw new Error(`dmz-azure:secrets has no entry for data center ${dc.name}`);
      return x;
    });
    const host = new DmzClientHost(dc.name, {
      network,
      facts: { location: dc.location, hardware: dc.hardware, capacity: dc.capacity },
      authorityUrl: cfg.authorityUrl,
      subscriptionId: cfg.subscriptionId,
      tenantId: cfg.tenantId,
      broker: { ...dc.broker, tenantId: dc.broker.tenantId ?? cfg.tenantId },
      ...(dc.privateIp ? { privateIp: dc.privateIp } : {}),
      sshPublicKey: cfg.sshPublicKey,
      fleetSshPublicKey: cfg.fleetSshPublicKey,
      ...(dc.vmSize ? { vmSize: dc.vmSize } : {}),
      secrets: { tlsCert: mine.tlsCert, tlsKey: mine.tlsKey, clientToken: mine.clientToken, authorityToken: mine.authorityToken },
      install: cfg.install ?? [],
    });
    return { network, host };
  });
  const entries: pulumi.Output<DataCenterEntry[]> = pulumi.all(deployed.map((d) => d.host.dataCenterEntry));
  return { deployed, dataCenters: entries, stackYaml: entries.apply((e) => stackYaml(cfg.stack, e)) };
}
