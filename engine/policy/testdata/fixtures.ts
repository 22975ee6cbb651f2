// Hand-built inputs for engine/policy's unit tests (tests only): fleets,
// record rows, changes, plans and packs, with just enough filled in.
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseVmAddress, type Change, type Enforcement, type PlanDocument } from '../../model/index.ts';
import type { VmRow } from '../../record/types.ts';
import type { LoadedFleet, LoadedStack } from '../../spec/types.ts';
import { buildLifecycle } from '../lifecycle.ts';
import type { EvalContext } from '../evaluate.ts';
import type { LoadedPack, ResolvedRule, Rule } from '../types.ts';

export const DEFAULT_PACK_DIR = fileURLToPath(new URL('../../../policies/default', import.meta.url));

export const DEFAULT_LIFECYCLE = buildLifecycle({
  states: ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting', 'Running', 'ShuttingDown', 'BeingDeleted', 'Deleted', 'CreateFailed', 'BootFailed'],
  initial: 'Requested',
  terminal: ['Deleted'],
  requestable: ['Running', 'PoweredOff'],
  failure: ['CreateFailed', 'BootFailed'],
  transitions: [
    ['Requested', 'BeingCreated', 'none'],
    ['BeingCreated', 'PoweredOff', 'createVm'],
    ['BeingCreated', 'CreateFailed', 'none'],
    ['CreateFailed', 'BeingCreated', 'none'],
    ['CreateFailed', 'BeingDeleted', 'none'],
    ['PoweredOff', 'PoweredOn', 'powerOn'],
    ['PoweredOn', 'PoweredOff', 'powerOff'],
    ['PoweredOn', 'Starting', 'boot'],
    ['Starting', 'Running', 'awaitReady'],
    ['Starting', 'BootFailed', 'none'],
    ['BootFailed', 'PoweredOff', 'powerOff'],
    ['BootFailed', 'BeingDeleted', 'none'],
    ['Running', 'ShuttingDown', 'shutdown'],
    ['ShuttingDown', 'PoweredOff', 'powerOff'],
    ['PoweredOff', 'BeingDeleted', 'none'],
    ['BeingDeleted', 'Deleted', 'deleteVm'],
  ].map(([from, to, operation]) => ({ from, to, operation })),
});

export const IMAGES = { 'ubuntu-22.04': { miami: 'img-u-miami', richmond: 'img-u-richmond' }, 'rhel-9': { miami: 'img-r-miami' } };

export function fleet(name: string, over: Partial<LoadedFleet> = {}): LoadedFleet {
  return {
    name,
    owner: 'team-a',
    labels: {},
    count: 3,
    minCount: 0,
    image: 'ubuntu-22.04',
    size: { cpu: 2, memoryGiB: 4, diskGiB: 20 },
    hardware: [],
    placement: { dataCenters: null, strategy: 'nearest', near: null },
    state: 'Running',
    encryptedDisk: false,
    protect: false,
    rollout: {},
    specHash: 'h',
    where: {},
    pointers: new Map(),
    raw: {} as LoadedFleet['raw'],
    ...over,
  };
}

export function vm(address: string, over: Partial<VmRow> = {}): VmRow {
  const { fleet: f, index: i } = parseVmAddress(address)!;
  return {
    id: `id-${address}`,
    stack: 's',
    fleet: f,
    index: i,
    address,
    name: `s-${f}-${i}`,
    dataCenter: 'miami',
    state: 'Running',
    desiredState: 'Running',
    specHash: 'h',
    image: 'ubuntu-22.04',
    realImage: null,
    size: { cpu: 2, memoryGiB: 4, diskGiB: 20 },
    encryptedDisk: false,
    cloudId: null,
    version: 1,
    createdAt: '',
    updatedAt: '',
    retiredAt: null,
    deposed: false,
    ...over,
  };
}

export function change(address: string, action: Change['action'], over: Partial<Change> = {}): Change {
  const { fleet: f, index: i } = parseVmAddress(address)!;
  const from = action === 'create' ? 'Requested' : 'Running';
  const to = action === 'delete' ? 'Deleted' : 'Running';
  return {
    address,
    fleet: f,
    index: i,
    name: `s-${f}-${i}`,
    dataCenter: 'miami',
    action,
    from,
    to,
    path: (DEFAULT_LIFECYCLE.path(from, to) ?? [from]),
    steps: [],
    reason: '',
    image: { logical: 'ubuntu-22.04', real: null },
    size: { cpu: 2, memoryGiB: 4, diskGiB: 20 },
    specHash: 'h',
    encryptedDisk: false,
    ...over,
  };
}

export function plan(changes: Change[], fleets: string[] = [...new Set(changes.map((c) => c.fleet))]): PlanDocument {
  return {
    formatVersion: '2',
    id: 'p',
    stack: 's',
    createdAt: '',
    policyPack: 'test@1',
    fleets,
    options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
    basis: { vms: {}, fleets: {} },
    changes,
    unchanged: [],
    policy: { violations: [], grants: [] },
    summary: { create: 0, transition: 0, update: 0, replace: 0, delete: 0, noop: 0 },
    blocked: false,
  };
}

export function stack(dcs: { name: string; capacity?: LoadedStack['dataCenters'][number]['capacity'] }[] = [{ name: 'miami' }]): LoadedStack {
  return {
    name: 's',
    file: '/x/stack.yaml',
    dir: '/x',
    recordUrl: 'pglite:///x/.fleet/record',
    stateDir: '/x/.fleet',
    packDir: '/p',
    ruleConfig: {},
    site: { name: 'home', location: { lat: 0, lon: 0 } },
    dataCenters: dcs.map((d) => ({ name: d.name, address: 'embedded', location: { lat: 0, lon: 0 }, hardware: [], capacity: d.capacity ?? {}, where: {} })),
    apply: { parallelism: 10, lockTimeoutSeconds: 0 },
    raw: {} as LoadedStack['raw'],
  };
}

export function ctx(over: Partial<EvalContext> = {}): EvalContext {
  return {
    stack: stack(),
    lifecycle: DEFAULT_LIFECYCLE,
    images: IMAGES,
    fleets: [],
    record: [],
    allowDestroy: new Set(),
    ...over,
  };
}

/** A pack holding exactly the given rules at the given levels and configs. */
export function packWith(rules: [Rule, Enforcement, Record<string, unknown>?][]): LoadedPack {
  const map = new Map<string, ResolvedRule>();
  for (const [rule, enforcement, config] of rules) map.set(rule.name, { rule, enforcement, config: config ?? {} });
  return { name: 'test', version: '1', dir: '/p', file: '/p/policy.yaml', lifecycle: DEFAULT_LIFECYCLE, images: IMAGES, rules: map };
}

/** Writes files (path -> text) under a fresh temp dir and returns it. */
export async function scratch(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fleet-policy-'));
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeFile(join(dir, rel), text);
  }
  return dir;
}
