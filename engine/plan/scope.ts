/** Which fleets a plan covers, after --target / --exclude. */
export interface Scope {
  /** Fleets in scope, sorted by name. */
  fleets: string[];
  /** --target / --exclude names that are neither in the specs nor in the record. */
  unknown: string[];
}

/**
 * Fleets in scope: every fleet of the specs or the record (a fleet removed
 * from the specs is still planned, to delete its members), narrowed to the
 * targets when any are given, minus the excludes.
 */
export function resolveScope(
  specFleets: Iterable<string>,
  recordFleets: Iterable<string>,
  targets: readonly string[],
  excludes: readonly string[],
): Scope {
  const known = new Set<string>([...specFleets, ...recordFleets]);
  const unknown = [...new Set([...targets, ...excludes])].filter((n) => !known.has(n)).sort();
  const targetSet = new Set(targets);
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
