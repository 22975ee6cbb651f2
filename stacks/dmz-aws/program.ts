// The DMZ of every AWS data center of a dmzfleet stack: one DmzNetwork and one
// DmzClientHost per data center, each in its data center's region, and the
// stack.yaml those deployments make. index.ts runs it with the Pulumi stack's
// config; program.test.ts runs it under Pulumi's mocks.
import * as pulumi from '@pulumi/pulumi';
import { Provider } from '@pulumi/aws/provider.js';
import { DmzClientHost, DmzNetwork } from '@dmzfleet/dmz-infra/aws';
import { authorityPortOf, stackYaml, type DataCenterEntry, type StackBase } from '@dmzfleet/dmz-infra';

/** One data center's settings (Pulumi config `dmz-aws:dataCenters`, a list). */
export interface AwsDataCenterConfig {
  name: string;
  region: string;
  availabilityZone: string;
  vpcCidr: string;
  dmzSubnetCidr: string;
  fleetSubnetCidr: string;
  ami: string;
  instanceType?: string;
  location: { lat: number; lon: number };
  hardware: string[];
  capacity: { vms?: number; cpu?: number; memoryGiB?: number };
  /** External id the data center's broker role asks the authority for (optional; not a secret). */
  externalId?: string;
  /** EC2 key pair given to the fleet's VMs (optional). */
  vmKeyName?: string;
}

/** Each data center's DMZ client secrets (config `dmz-aws:secrets`, a secret object keyed by data center). */
export type HostSecrets = Record<string, { tlsCert: string; tlsKey: string; clientToken: string; authorityToken: string }>;

export interface DmzAwsConfig {
  /** The dmzfleet stack: its name and what stack.yaml keeps besides the data centers. */
  stack: StackBase;
  tenantCidrs: string[];
  authorityUrl: string;
  /** The authority's AWS principal (role ARN): the only one each data center's broker role trusts. */
  authorityPrincipalArn: string;
  dataCenters: AwsDataCenterConfig[];
  secrets: pulumi.Output<HostSecrets>;
  /** Shell lines installing `fleet` on the hosts. */
  install?: string[];
}

export function readConfig(): DmzAwsConfig {
  const c = new pulumi.Config('dmz-aws');
  return {
    stack: c.requireObject<StackBase>('stack'),
    tenantCidrs: c.requireObject<string[]>('tenantCidrs'),
    authorityUrl: c.require('authorityUrl'),
    authorityPrincipalArn: c.require('authorityPrincipalArn'),
    dataCenters: c.requireObject<AwsDataCenterConfig[]>('dataCenters'),
    secrets: c.requireSecretObject<HostSecrets>('secrets'),
    install: c.getObject<string[]>('install') ?? [],
  };
}

export function deploy(cfg: DmzAwsConfig) {
  const deployed = cfg.dataCenters.map((dc) => {
    const provider = new Provider(`aws-${dc.name}`, { region: dc.region as never });
    const network = new DmzNetwork(
      dc.name,
      {
        stack: cfg.stack.name,
        dataCenter: dc.name,
        region: dc.region,
        availabilityZone: dc.availabilityZone,
        vpcCidr: dc.vpcCidr,
        dmzSubnetCidr: dc.dmzSubnetCidr,
        fleetSubnetCidr: dc.fleetSubnetCidr,
        tenantCidrs: cfg.tenantCidrs,
        // The DMZ client's one way out to the tenant network: the authority's port.
        authorityPort: authorityPortOf('dmz-aws:authorityUrl', cfg.authorityUrl),
      },
      { providers: { aws: provider } },
    );
    const mine = cfg.secrets.apply((s) => {
      const x = s[dc.name];
      if (!x) throw new Error(`dmz-aws:secrets has no entry for data center ${dc.name}`);
      return x;
    });
    const host = new DmzClientHost(
      dc.name,
      {
        network,
        facts: { location: dc.location, hardware: dc.hardware, capacity: dc.capacity },
        authorityUrl: cfg.authorityUrl,
        ami: dc.ami,
        ...(dc.instanceType ? { instanceType: dc.instanceType } : {}),
        secrets: { tlsCert: mine.tlsCert, tlsKey: mine.tlsKey, clientToken: mine.clientToken, authorityToken: mine.authorityToken },
        install: cfg.install ?? [],
        authorityPrincipalArn: cfg.authorityPrincipalArn,
        ...(dc.externalId ? { externalId: dc.externalId } : {}),
        ...(dc.vmKeyName ? { vmKeyName: dc.vmKeyName } : {}),
      },
      { providers: { aws: provider } },
    );
    return { provider, network, host };
  });
  const entries: pulumi.Output<DataCenterEntry[]> = pulumi.all(deployed.map((d) => d.host.dataCenterEntry));
  return { deployed, dataCenters: entries, stackYaml: entries.apply((e) => stackYaml(cfg.stack, e)) };
}
