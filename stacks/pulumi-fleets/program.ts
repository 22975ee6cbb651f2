// Fleets declared as Pulumi resources against an existing dmzfleet stack: the
// stack's data centers, pack and DMZ client URLs come from its stack.yaml
// (loadFleetStack), the DMZ client tokens from this Pulumi stack's secrets.
// Each Fleet expands and places its members as `fleet plan` would and walks
// them through the data centers' DMZ clients, the authority approving every step.
import * as pulumi from '@pulumi/pulumi';
import { resolve } from 'node:path';
import { Fleet, loadFleetStack, type FleetStack } from '../../providers/pulumi/index.ts';

export interface FleetsConfig {
  /** Folder of the dmzfleet stack (stack.yaml), relative to this program. */
  stackDir: string;
  /** DMZ client URL of each data center whose stack.yaml address is `embedded` (e.g. started with `fleet serve dmz-client`). */
  urls: Record<string, string>;
  /** DMZ client token of each data center: `pulumi config set --secret --path 'tokens.miami' ...`. */
  tokens: pulumi.Output<Record<string, string>>;
}

export function readConfig(): FleetsConfig {
  const c = new pulumi.Config('pulumi-fleets');
  return {
    stackDir: resolve(import.meta.dirname, c.get('stackDir') ?? '../local'),
    urls: c.getObject<Record<string, string>>('urls') ?? {},
    tokens: c.requireSecretObject<Record<string, string>>('tokens'),
  };
}

export async function declareFleets(cfg: FleetsConfig): Promise<{ stack: FleetStack; web: Fleet; batch: Fleet }> {
  const stack = await loadFleetStack(cfg.stackDir, { urls: cfg.urls });
  const tokens = Object.fromEntries(stack.dataCenters.map((d) => [d.name, cfg.tokens.apply((t) => t[d.name] ?? '')]));
  const web = new Fleet('web', {
    stack,
    tokens,
    spec: {
      owner: 'team-payments',
      labels: { env: 'prod', tier: 'frontend' },
      count: 3,
      image: 'ubuntu-22.04',
      size: { cpu: 2, memoryGiB: 4, diskGiB: 40 },
      hardware: ['general'],
      placement: { strategy: 'spread' },
      encryptedDisk: true,
      protect: true,
    },
  });
  const batch = new Fleet('batch', {
    stack,
    tokens,
    spec: { owner: 'team-data', count: 2, image: 'ubuntu-24.04', size: { cpu: 4, memoryGiB: 16, diskGiB: 100 }, state: 'PoweredOff', placement: { strategy: 'pack' }, encryptedDisk: true },
  });
  return { stack, web, batch };
}
