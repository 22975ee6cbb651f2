// Rollout settings of a fleet (spec.rollout) and how they resolve to counts.
// A setting is a count of members or a percentage of the fleet (`25%`);
// the resolution follows Kubernetes' Deployment: maxUnavailable rounds down,
// maxSurge rounds up (so a small fleet still gets a surge VM), and a
// failure threshold rounds up and is at least 1.

/** A count of members, or a percentage such as `25%`. */
export type RolloutAmount = number | `${number}%`;

/** spec.rollout as written (every key optional). */
export interface RolloutSpec {
  maxUnavailable?: RolloutAmount;
  maxSurge?: RolloutAmount;
  failureThreshold?: RolloutAmount;
}

/** `25%` -> 25; a count -> undefined. */
export function percentOf(a: RolloutAmount): number | undefined {
  return typeof a === 'string' ? Number(a.slice(0, -1)) : undefined;
}

/** The amount as a count of `total` members: a percentage rounded down (`up`: rounded up). */
export function resolveAmount(a: RolloutAmount, total: number, round: 'down' | 'up'): number {
  const pct = percentOf(a);
  if (pct === undefined) return a as number;
  const exact = (pct * total) / 100;
  // Guard against 0.1 + 0.2-style noise: 28% of 25 is 7, not 7.000000000000001.
  const near = Math.round(exact);
  if (Math.abs(exact - near) < 1e-9) return near;
  return round === 'down' ? Math.floor(exact) : Math.ceil(exact);
}

/** True when the amount is zero whatever the fleet's size (`0` or `0%`). */
export function isZeroAmount(a: RolloutAmount | undefined): boolean {
  return a !== undefined && (a === 0 || percentOf(a) === 0);
}

/** `3` or `25%`, for messages. */
export function showAmount(a: RolloutAmount): string {
  return String(a);
}
