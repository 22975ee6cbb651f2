// The plan document (formatVersion "2", docs/plan-format.md) from a planning
// run's changes: the changes that do something in the contract's key order,
// unchanged members summarised per fleet, the basis and the summary.
import { PLAN_FORMAT_VERSION } from '../model/index.ts';
import type { PlanState } from './plan-state.ts';
import { byName } from './scope.ts';
import { ACTIONS, type Action, type Change, type FleetChange, type PlanDocument, type Rollout, type UnchangedFleet } from './types.ts';

/**
 * Key order of a change in the JSON document: the contract's order
 * (engine/model/plan-document.ts). A key missing here would be dropped from
 * the document (`deposed` once was: a deposed VM's delete then shared its
 * idempotency keys with its address's new VM), so the compiler checks that
 * every key of Change is listed.
 */
const CHANGE_KEYS = Object.keys({
  address: true, fleet: true, index: true, name: true, dataCenter: true, action: true, from: true, to: true, path: true, oldPath: true, replaceOrder: true, wave: true, deposed: true,
  steps: true, reason: true, image: true, size: true, diff: true, placement: true, vmId: true, specHash: true, encryptedDisk: true,
} satisfies Record<keyof Change, true>) as (keyof Change)[];

function ordered(c: Change): Change {
  const out: Record<string, unknown> = {};
  for (const k of CHANGE_KEYS) if (c[k] !== undefined) out[k] = c[k];
  return out as unknown as Change;
}

const sortedCounts = (m: Map<string, number>): Record<string, number> =>
  Object.fromEntries([...m.entries()].sort((a, b) => byName(a[0], b[0])));

interface Tally {
  count: number;
  states: Map<string, number>;
  dataCenters: Map<string, number>;
}

const add = (m: Map<string, number>, k: string, n: number) => m.set(k, (m.get(k) ?? 0) + n);

function summaries(tallies: Map<string, Tally>, versions: Readonly<Record<string, number>>): UnchangedFleet[] {
  const out: UnchangedFleet[] = [];
  for (const [fleet, t] of tallies) {
    if (t.count > 0) out.push({ fleet, count: t.count, version: versions[fleet] ?? 0, states: sortedCounts(t.states), dataCenters: sortedCounts(t.dataCenters) });
  }
  return out.sort((a, b) => byName(a.fleet, b.fleet));
}

/**
 * The members of the fleets in `scope` summed rather than read
 * (PlanInput.unchanged), one entry per fleet. A fleet targeted by member
 * addresses (--target web/3) shows only the named members' changes, so its
 * summed members are left out, as its noops are.
 */
function summedTallies(s: PlanState, scope: readonly string[], withTargeted = false): Map<string, Tally> {
  const out = new Map<string, Tally>();
  for (const fleet of scope) {
    const f = s.summed.get(fleet);
    if (!f || (s.memberTargets.has(fleet) && !withTargeted)) continue;
    out.set(fleet, { count: f.count, states: new Map(f.states), dataCenters: new Map(f.dataCenters) });
  }
  return out;
}

/**
 * What rules see as `unchanged` beside the noops they are given: the summed
 * members, and the members `untouched` by a plan of member targets (the
 * rest of a fleet targeted as web/3, summed or read), which serve on as they
 * are while the plan runs.
 */
export function summedUnchanged(s: PlanState, scope: readonly string[], untouched: readonly Change[] = []): UnchangedFleet[] {
  const tallies = summedTallies(s, scope, true);
  for (const c of untouched) tally(tallies, c);
  return summaries(tallies, s.input.fleetVersions);
}

/**
 * Every unchanged member, one entry per fleet: the noop changes of `all`
 * and the members summed rather than read. How many, in which states and
 * data centers, at which fleet version.
 */
function summariseUnchanged(s: PlanState, scope: readonly string[], all: readonly Change[]): UnchangedFleet[] {
  const tallies = summedTallies(s, scope);
  for (const c of all) if (c.action === 'noop') tally(tallies, c);
  return summaries(tallies, s.input.fleetVersions);
}

/** Counts one member that stays as it is into its fleet's tally (its state and data center). */
function tally(tallies: ReturnType<typeof summedTallies>, c: Change): void {
  let t = tallies.get(c.fleet);
  if (!t) tallies.set(c.fleet, (t = { count: 0, states: new Map(), dataCenters: new Map() }));
  t.count++;
  add(t.states, c.from, 1);
  add(t.dataCenters, c.dataCenter, 1);
}

/**
 * The fleets in `scope` whose spec's `protect` differs from the record's
 * row (PlanInput.fleetProtection), or whose spec's `owner` differs from
 * the row's (PlanInput.owners), in scope order: what apply writes to the
 * fleets rows before any step. A fleet the record has no row of is not
 * protected (the protect rule and the authority read it so): a new fleet
 * with `protect: true` is listed `from: false` and `new: true`, so a saved
 * plan carries the protection apply gives its row, not the spec as it is at
 * apply time, and renderers show it as a new fleet's setting. Its owner is
 * not listed: its row is made with its spec's owner.
 */
function fleetChanges(s: PlanState, scope: readonly string[]): FleetChange[] {
  const recorded = s.input.fleetProtection;
  if (!recorded) return [];
  const owners = s.input.owners ?? {};
  const specs = new Map(s.input.fleets.map((f) => [f.name, f]));
  const out: FleetChange[] = [];
  for (const name of scope) {
    const spec = specs.get(name);
    if (!spec) continue;
    const from = recorded[name] ?? false;
    // Only a fleet with a row the plan may write (fleetProtection holds it) has an owner to change.
    const owner = Object.hasOwn(recorded, name) && Object.hasOwn(owners, name) ? owners[name] : spec.owner;
    if (from === spec.protect && owner === spec.owner) continue;
    out.push({
      fleet: name,
      // No row: the setting is the new fleet's, not a change of one (its `from: false` is the record's default).
      ...(Object.hasOwn(recorded, name) ? {} : { new: true as const }),
      ...(from !== spec.protect ? { protect: { from, to: spec.protect } } : {}),
      ...(owner !== spec.owner ? { owner: { from: owner, to: spec.owner } } : {}),
    });
  }
  return out;
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
  const unchanged = summariseUnchanged(s, scope, all);
  // Members summed rather than read are noops too.
  summary.noop = unchanged.reduce((n, u) => n + u.count, 0);
  // A fleet whose protection or owner changes is a fleet the plan changes: its version is in the basis too.
  const settings = fleetChanges(s, scope);
  for (const f of settings) changed.add(f.fleet);
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
    unchanged,
    policy: { violations: s.violations, grants: s.grants },
    ...(rollouts.length ? { rollouts } : {}),
    ...(settings.length ? { fleetChanges: settings } : {}),
    summary,
    blocked: false,
  };
}
