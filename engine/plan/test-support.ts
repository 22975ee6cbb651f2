// Hand-built inputs for the planner's unit tests: a lifecycle with the default
// pack's diagram, a small stack, fleets and record rows. Tests only.
import type { Edge, Lifecycle, LoadedPack, ResolvedRule } from '../policy/types.ts';
import type { VmRow } from '../record/types.ts';
import type { LoadedDataCenter, LoadedFleet, LoadedStack } from '../spec/types.ts';
import { formatVmAddress, type Enforcement, type Operation } from '../model/index.ts';

export const DEFAULT_EDGES: [string, string, Operation][] = [
  ['Requested', 'BeingCreated', 'none'],
  ['BeingCreated', 'PoweredOff', 'createVm'],
  ['BeingCreated', 'CreateFailed', 'none'],
  ['CreateFailed', 'BeingCreated', 'none'],
  ['CreateFailed', 'BeingDeleted', 'none'],
  ['PoweredOff', 'PoweredOn', 'powerOn'],
  ['PoweredOn', 'Starting', 'boot'],
  ['Starting', 'Running', 'awaitReady'],
  ['Starting', 'BootFailed', 'none'],
  ['BootFailed', 'PoweredOff', 'powerOff'],
  ['BootFailed', 'BeingDeleted', 'none'],
  ['Running', 'ShuttingDown', 'shutdown'],
  ['ShuttingDown', 'PoweredOff', 'powerOff'],
  ['PoweredOff', 'BeingDeleted', 'none'],
  ['BeingDeleted', 'Deleted', 'deleteVm'],
];

/** A breadth-first lifecycle (ties by edge order), as the contract in engine/policy/types.ts describes. */
export function makeLifecycle(triples: [string, string, Operation][] = DEFAULT_EDGES): Lifecycle {
  const edges: Edge[] = triples.map(([from, to, operation]) => ({ from, to, operation }));
  const states = [...new Set(edges.flatMap((e) => [e.from, e.to]))];
  const out = new Map<string, Edge[]>();
  for (const e of edges) out.set(e.from, [...(out.get(e.from) ?? []), e]);
  return {
    states,
    initial: 'Requested',
    terminal: ['Deleted'],
    requestable: ['Running', 'PoweredOff'],
    failure: ['CreateFailed', 'BootFailed'],
    edges,
    allows: (from, to) => edges.some((e) => e.from === from && e.to === to),
    operation: (from, to) => edges.find((e) => e.from === from && e.to === to)?.operation,
    isTerminal: (s) => s === 'Deleted',
    path(from, to) {
      if (from === to) return [from];
      const prev = new Map<string, string>([[from, '']]);
      const queue = [from];
      while (queue.length > 0) {
        const s = queue.shift()!;
        for (const e of out.get(s) ?? []) {
          if (prev.has(e.to)) continue;
          prev.set(e.to, s);
          if (e.to === to) {
            const path = [to];
            for (let c = s; c !== ''; c = prev.get(c)!) path.unshift(c);
            return path;
          }
          queue.push(e.to);
        }
      }
      return undefined;
    },
  };
}

export function makePack(rules: Record<string, Enforcement> = {}): LoadedPack {
  const dcs = ['miami', 'richmond', 'dallas', 'seattle'];
  const img = (name: string) => Object.fromEntries(dcs.map((d) => [d, `img-${name}-${d}`]));
  const resolved = new Map<string, ResolvedRule>();
  for (const [name, enforcement] of Object.entries(rules)) {
    resolved.set(name, { rule: { name, description: name, configSchema: {} }, enforcement, config: {} });
  }
  return {
    name: 'test',
    version: '1.0.0',
    dir: '/packs/test',
    file: '/packs/test/policy.yaml',
    lifecycle: makeLifecycle(),
    images: { 'ubuntu-22.04': img('u2204'), 'ubuntu-24.04': img('u2404'), 'rhel-9': { miami: 'img-rhel9-miami' } },
    rules: resolved,
  };
}

export function dataCenter(name: string, lat: number, lon: number, hardware: string[], capacity: LoadedDataCenter['capacity'] = {}): LoadedDataCenter {
  return { name, address: 'embedded', location: { lat, lon }, hardware, capacity, where: {} };
}

export function makeStack(dataCenters?: LoadedDataCenter[]): LoadedStack {
  return {
    name: 'test',
    file: '/stacks/test/stack.yaml',
    dir: '/stacks/test',
    recordUrl: 'memory://',
    stateDir: '/stacks/test/.fleet',
    packDir: '/packs/test',
    ruleConfig: {},
    site: { name: 'charlotte', location: { lat: 35.2271, lon: -80.8431 } },
    dataCenters: dataCenters ?? [
      dataCenter('miami', 25.7617, -80.1918, ['general', 'software-dev-optimized']),
      dataCenter('richmond', 37.5407, -77.436, ['general', 'product-dev-optimized']),
      dataCenter('dallas', 32.7767, -96.797, ['general', 'gpu']),
      dataCenter('seattle', 47.6062, -122.3321, ['general']),
    ],
    apply: { parallelism: 10, lockTimeoutSeconds: 0 },
    raw: {} as LoadedStack['raw'],
  };
}

export function makeFleet(name: string, over: Partial<Omit<LoadedFleet, 'placement'>> & { placement?: Partial<LoadedFleet['placement']> } = {}): LoadedFleet {
  const { placement, ...rest } = over;
  const f: LoadedFleet = {
    name,
    owner: 'team-a',
    labels: {},
    count: 2,
    minCount: 0,
    image: 'ubuntu-22.04',
    size: { cpu: 2, memoryGiB: 4, diskGiB: 20 },
    hardware: [],
    placement: { dataCenters: null, strategy: 'nearest', near: null, ...placement },
    state: 'Running',
    encryptedDisk: false,
    protect: false,
    rollout: {},
    specHash: '',
    where: {},
    pointers: new Map(),
    raw: {} as LoadedFleet['raw'],
    ...rest,
  };
  if (!over.specHash) f.specHash = specHashOf(f);
  return f;
}

/** A readable stand-in for the loader's hash: what a member is built from. */
export function specHashOf(f: Pick<LoadedFleet, 'image' | 'size' | 'hardware' | 'encryptedDisk'>): string {
  return `${f.image}|${f.size.cpu}/${f.size.memoryGiB}/${f.size.diskGiB}|${[...f.hardware].sort().join(',')}|${f.encryptedDisk}`;
}

/** A live record row for member `index` of `fleet`, built to match the fleet's spec unless overridden. */
export function vmRow(fleet: LoadedFleet, index: number, over: Partial<VmRow> = {}): VmRow {
  const dc = over.dataCenter ?? 'richmond';
  return {
    id: `vm-${fleet.name}-${index}`,
    stack: 'test',
    fleet: fleet.name,
    index,
    address: formatVmAddress(fleet.name, index),
    name: `test-${fleet.name}-${index}`,
    dataCenter: dc,
    state: 'Running',
    desiredState: fleet.state,
    specHash: fleet.specHash,
    image: fleet.image,
    realImage: `img-x-${dc}`,
    size: fleet.size,
    encryptedDisk: fleet.encryptedDisk,
    cloudId: `cloud-${index}`,
    version: 3,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    retiredAt: null,
    deposed: false,
    ...over,
  };
}
