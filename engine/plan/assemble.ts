// The plan document (formatVersion "2", docs/plan-format.md) from a planning
// run's changes: the changes that do something in the contract's key order,
// unchanged members summarised per fleet, the basis and the summary.
import { PLAN_FORMAT_VERSION } from '../model/index.ts';
import type { PlanState } from './plan-state.ts';
import { byName } from './scope.ts';
import { ACTIONS, type Action, type Change, type PlanDocument, type Rollout, type UnchangedFleet } from './types.ts';

/** Key order of a change in the JSON document: the contract's order (engine/model/plan-document.ts). */
const CHANGE_KEYS: readonly (keyof Change)[] = [
  'address', 'fleet', 'index', 'name', 'dataCenter', 'action', 'from', 'to', 'path', 'oldPath', 'replaceOrder', 'wave',
  'steps', 'reason', 'image', 'size', 'diff', 'placement', 'vmId', 'specHash', 'encryptedDisk',
];

function ordered(c: Change): Change {
  const out: Record<string, unknown> = {};
  for (const k of CHANGE_KEYS) if (c[k] !== undefined) out[k] = c[k];
  return out as unknown as Change;
}

const sortedCounts = (m: Map<string, number>): Record<string, number> =>
  Object.fromEntries([...m.entries()].sort((a, b) => byName(a[0], b[0])));

/**
 * The noop changes of `all` (in fleet order), one entry per fleet: how many,
 * in which states and data centers, at which fleet version.
 */
function summariseUnchanged(all: readonly Change[], versions: Readonly<Record<string, number>>): UnchangedFleet[] {
  const out: UnchangedFleet[] = [];
  let fleet: string | undefined;
  let count = 0;
  let states = new Map<string, number>();
  let dcs = new Map<string, number>();
  const flush = () => {
    if (fleet !== undefined && count > 0) out.push({ fleet, count, version: versions[fleet] ?? 0, states: sortedCounts(states), dataCenters: sortedCounts(dcs) });
  };
  for (const c of all) {
    if (c.action !== 'noop') continue;
    if (c.fleet !== fleet) {
      flush();
      fleet = c.fleet;
      count = 0;
      states = new Map();
      dcs = new Map();
    }
    count++;
    states.set(c.from, (states.get(c.from) ?? 0) + 1);
    dcs.set(c.dataCenter, (dcs.get(c.dataCenter) ?? 0) + 1);
  }
  flush();
  return out.sort((a, b) => byName(a.fleet, b.fleet));
}

/**
 * The document, less what rules decide (violations from rules and
 * `blocked`, set by the planner once rules ran). `all` is every member's
 * change in fleet and index order, noops included.
 */
export function assemble(s: PlanState, scope: string[], all: Change[], rollouts: Rollout[]): PlanDocument {
  const { input } = s;
  // The basis holds what the plan changes, and only that (docs/plan-format.md,
  // "Stale plans"): the VMs it acts on, in change order, and the fleets
  // with at least one change. A noop member needs no entry: every write to
  // a member bumps its fleet's version, which the basis holds for every
  // fleet the plan changes. A fleet in scope that the plan leaves alone is
  // not in it: someone else may apply it meanwhile, since the quotas and
  // capacity that fleet uses are checked again by the authority when this
  // plan's VMs are created.
  const basisVms: Record<string, number> = {};
  const changed = new Set<string>();
  const changes: Change[] = [];
  const summary = Object.fromEntries(ACTIONS.map((a) => [a, 0])) as Record<Action, number>;
  for (const c of all) {
    summary[c.action] += 1;
    if (c.action === 'noop') continue;
    changed.add(c.fleet);
    // A create is built in key order and never changed after (creates.ts); the others may have gained a wave.
    changes.push(c.action === 'create' ? c : ordered(c));
    if (c.vmId !== undefined) basisVms[c.vmId] = s.touched.get(c.vmId)!;
  }
  const basisFleets: Record<string, number> = {};
  for (const name of scope) if (changed.has(name)) basisFleets[name] = input.fleetVersions[name] ?? 0;

  return {
    formatVersion: PLAN_FORMAT_VERSION,
    // globalThis.crypto, not an import of node:crypto: the Pulumi Fleet provider (providers/pulumi/fleet.ts) runs
    // the planner from a serialized closure, which cannot capture a native module's functions.
    id: input.id ?? globalThis.crypto.randomUUID(),
    stack: input.stack.name,
    createdAt: (input.now ?? new Date()).toISOString(),
    policyPack: `${input.pack.name}@${input.pack.version}`,
    fleets: scope,
    options: {
      targets: [...input.options.targets].sort(byName),
      excludes: [...input.options.excludes].sort(byName),
      allowDestroy: [...input.options.allowDestroy].sort(byName),
      refresh: input.options.refresh,
      ...(input.options.replace?.length ? { replace: [...input.options.replace].sort(byName) } : {}),
    },
    basis: { vms: basisVms, fleets: basisFleets },
    changes,
    unchanged: summariseUnchanged(all, input.fleetVersions),
    policy: { violations: s.violations, grants: s.grants },
    ...(rollouts.length ? { rollouts } : {}),
    summary,
    blocked: false,
  };
}
