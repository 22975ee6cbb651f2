import { parseVmAddress } from '../model/index.ts';

/** Which fleets a plan covers, after --target / --exclude. */
export interface Scope {
  /** Fleets in scope, sorted by name. */
  fleets: string[];
  /** --target / --exclude names that are neither in the specs nor in the record. */
  unknown: string[];
}

/** The fleet a --target names: itself, or the fleet of a member address (`web/3` -> `web`). */
export function targetFleet(target: string): string {
  return parseVmAddress(target)?.fleet ?? target;
}

/**
 * --target web/3 --target web/5: per fleet targeted only by member
 * addresses, the member indexes to plan. A fleet also targeted by its name
 * is planned whole and is not in the map.
 */
export function memberTargets(targets: readonly string[]): Map<string, Set<number>> {
  const whole = new Set(targets.filter((t) => !parseVmAddress(t)));
  const out = new Map<string, Set<number>>();
  for (const t of targets) {
    const a = parseVmAddress(t);
    if (!a || whole.has(a.fleet)) continue;
    let set = out.get(a.fleet);
    if (!set) out.set(a.fleet, (set = new Set()));
    set.add(a.index);
  }
  return out;
}

/**
 * Fleets in scope: every fleet of the specs or the record (a fleet removed
 * from the specs is still planned, to delete its members), narrowed to the
 * targets when any are given (a member address targets its fleet, which the
 * planner then narrows to the member), minus the excludes.
 */
export function resolveScope(
  specFleets: Iterable<string>,
  recordFleets: Iterable<string>,
  targets: readonly string[],
  excludes: readonly string[],
): Scope {
  const known = new Set<string>([...specFleets, ...recordFleets]);
  const unknown = [...new Set([...targets.map(targetFleet), ...excludes])].filter((n) => !known.has(n)).sort();
  const targetSet = new Set(targets.map(targetFleet));
  const excludeSet = new Set(excludes);
  const fleets = [...known]
    .filter((n) => (targetSet.size === 0 || targetSet.has(n)) && !excludeSet.has(n))
    .sort(byName);
  return { fleets, unknown };
}

/** Code-point order: the same on every machine and locale. */
export function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A fleet of the record that a program manages (FleetRow.managedBy). */
export interface ManagedFleet {
  fleet: string;
  managedBy: string;
}

/**
 * The fleets in scope, less those a program manages (a Pulumi Fleet or Vm:
 * the record's fleets.managed_by while they have live VMs). With no fleet
 * file, such a fleet is left alone (`leftAlone`): planning it would delete
 * the program's VMs. One a fleet file declares has two managers
 * (`conflicts`), which the plan refuses. Fleets outside the scope are not
 * judged.
 */
export function programFleets(
  scope: readonly string[],
  specFleets: Iterable<string>,
  recordFleets: readonly { fleet: string; managedBy: string | null }[],
): { fleets: string[]; leftAlone: ManagedFleet[]; conflicts: ManagedFleet[] } {
  const inScope = new Set(scope);
  const declared = new Set(specFleets);
  const managed = recordFleets.filter((f): f is ManagedFleet => f.managedBy !== null && inScope.has(f.fleet)).map((f) => ({ fleet: f.fleet, managedBy: f.managedBy }));
  const leftAlone = managed.filter((f) => !declared.has(f.fleet));
  const conflicts = managed.filter((f) => declared.has(f.fleet));
  const skip = new Set(managed.map((f) => f.fleet));
  return { fleets: scope.filter((n) => !skip.has(n)), leftAlone, conflicts };
}
