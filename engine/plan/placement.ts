// Where a new member goes. Pure: the planner hands in what is left of each
// data center's capacity and how many members of the fleet each one holds.
import type { LoadedPack } from '../policy/types.ts';
import type { LoadedDataCenter, LoadedFleet, LoadedStack, Location } from '../spec/types.ts';
import { haversineKm } from './geo.ts';
import type { CapacityLeft } from './policy-port.ts';
import { byName } from './scope.ts';
import type { PlacementExplanation, VmSize } from './types.ts';

/** The fixed part of a fleet's placement: filters that do not depend on capacity, and distances. */
export interface FleetPlacement {
  fleet: LoadedFleet;
  /** Data centers that pass the allow-list, hardware and image filters, in stack order. */
  eligible: LoadedDataCenter[];
  excluded: { dataCenter: string; why: string }[];
  /** Distance from the reference point, per eligible data center (km). */
  distance: Map<string, number>;
  /** Name of the reference point, for messages. */
  nearName: string;
  /** Set when `near` names nothing the stack knows; the site was used instead. */
  unknownNear?: string;
}

/**
 * Why a data center cannot take any member of the fleet, or undefined when it
 * can (capacity aside). The order of the checks is the order people read them.
 */
export function staticExclusion(dc: LoadedDataCenter, fleet: LoadedFleet, pack: LoadedPack): string | undefined {
  const allow = fleet.placement.dataCenters;
  if (allow && !allow.includes(dc.name)) return 'not in the fleet allow-list';
  const missing = fleet.hardware.filter((t) => !dc.hardware.includes(t));
  if (missing.length > 0) return `no hardware trait ${missing.join(', ')}`;
  if (!pack.images[fleet.image]?.[dc.name]) return `image ${fleet.image} not in catalog`;
  return undefined;
}

export function resolveNear(stack: LoadedStack, near: LoadedFleet['placement']['near']): { name: string; location: Location; unknown?: string } {
  if (near === null) return { name: stack.site.name, location: stack.site.location };
  if (typeof near !== 'string') return { name: `${near.lat}, ${near.lon}`, location: near };
  if (near === stack.site.name) return { name: near, location: stack.site.location };
  const dc = stack.dataCenters.find((d) => d.name === near);
  if (dc) return { name: near, location: dc.location };
  return { name: stack.site.name, location: stack.site.location, unknown: near };
}

export function fleetPlacement(stack: LoadedStack, pack: LoadedPack, fleet: LoadedFleet): FleetPlacement {
  const eligible: LoadedDataCenter[] = [];
  const excluded: { dataCenter: string; why: string }[] = [];
  for (const dc of stack.dataCenters) {
    const why = staticExclusion(dc, fleet, pack);
    if (why) excluded.push({ dataCenter: dc.name, why });
    else eligible.push(dc);
  }
  const near = resolveNear(stack, fleet.placement.near);
  const distance = new Map<string, number>();
  for (const dc of eligible) distance.set(dc.name, haversineKm(near.location, dc.location));
  const fp: FleetPlacement = { fleet, eligible, excluded, distance, nearName: near.name };
  if (near.unknown !== undefined) fp.unknownNear = near.unknown;
  return fp;
}

export function fits(left: CapacityLeft | undefined, size: VmSize): boolean {
  if (!left) return true;
  return left.vms >= 1 && left.cpu >= size.cpu && left.memoryGiB >= size.memoryGiB;
}

/**
 * Chooses a data center for one new member, or returns undefined (with the
 * explanation's exclusions) when every eligible one is full.
 *
 * | strategy | picks                                                       | ties     |
 * | nearest  | smallest great-circle distance from `near`                  | by name  |
 * | spread   | fewest members of the fleet (existing + placed by this plan) | by name  |
 * | pack     | most members of the fleet, so few data centers fill up       | by name  |
 */
export function placeMember(
  fp: FleetPlacement,
  capacity: ReadonlyMap<string, CapacityLeft> | null,
  members: ReadonlyMap<string, number>,
): { dataCenter?: string; explanation: PlacementExplanation } {
  const { fleet } = fp;
  const excluded = [...fp.excluded];
  const open: LoadedDataCenter[] = [];
  for (const dc of fp.eligible) {
    if (capacity && !fits(capacity.get(dc.name), fleet.size)) excluded.push({ dataCenter: dc.name, why: 'no capacity left' });
    else open.push(dc);
  }
  const strategy = fleet.placement.strategy;
  const count = (n: string) => members.get(n) ?? 0;
  const ranked = open.map((d) => d.name);
  if (strategy === 'nearest') ranked.sort((a, b) => fp.distance.get(a)! - fp.distance.get(b)! || byName(a, b));
  else if (strategy === 'spread') ranked.sort((a, b) => count(a) - count(b) || byName(a, b));
  else ranked.sort((a, b) => count(b) - count(a) || byName(a, b));
  const explanation: PlacementExplanation = { strategy, candidates: ranked, excluded, summary: '' };
  const chosen = ranked[0];
  if (chosen === undefined) {
    explanation.summary = 'no data center can take it';
    return { explanation };
  }
  if (strategy === 'nearest') {
    const km = Math.round(fp.distance.get(chosen)!);
    explanation.distanceKm = km;
    const hw = fleet.hardware.length > 0 ? ` with ${fleet.hardware.join(', ')}` : '';
    explanation.summary = `${chosen}: nearest${hw}, ${km} km from ${fp.nearName}`;
  } else if (strategy === 'spread') {
    explanation.summary = `${chosen}: spread, fewest members (${count(chosen)} before this one)`;
  } else {
    explanation.summary = `${chosen}: pack, fullest with room (${count(chosen)} before this one)`;
  }
  return { dataCenter: chosen, explanation };
}
