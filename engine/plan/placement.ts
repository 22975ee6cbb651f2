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
 * explanation's exclusions) when every eligible one is full. One step of a
 * Placer; see there for the table.
 */
export function placeMember(
  fp: FleetPlacement,
  capacity: ReadonlyMap<string, CapacityLeft> | null,
  members: ReadonlyMap<string, number>,
): { dataCenter?: string; explanation: PlacementExplanation } {
  return new Placer(fp, capacity, members).next();
}

/**
 * Places a fleet's new members one after another. Each goes to the first
 * open data center (room for one more member of the fleet's size) in the
 * strategy's order:
 *
 * | strategy | picks                                                       | ties     |
 * | nearest  | smallest great-circle distance from `near`                  | by name  |
 * | spread   | fewest members of the fleet (existing + placed by this plan) | by name  |
 * | pack     | most members of the fleet, so few data centers fill up       | by name  |
 *
 * The open data centers are kept ranked between members instead of being
 * filtered and sorted again for each (O(d log d) per member, the cost of a
 * 100,000-create plan): after a member is placed only the chosen data
 * center's key changes, so it is moved by a binary search (spread: one more
 * member sorts it later), left first (nearest: its distance is fixed; pack:
 * it only gets fuller) or dropped when it is full. Choosing is O(log d) per
 * member; the explanation's `candidates` and `excluded` arrays are shared,
 * frozen, by consecutive members until the ranking changes (spread changes
 * it with every member, so it copies d names each time), and with nearest
 * the whole explanation is, per data center (it counts nothing).
 *
 * The caller takes the capacity of each chosen data center out of
 * `capacity` before asking for the next member; the Placer counts the
 * fleet's members itself. Placements are the same as filtering and sorting
 * every data center for each member (placement.test.ts compares the two over
 * generated stacks).
 */
export class Placer {
  private readonly fp: FleetPlacement;
  private readonly capacity: ReadonlyMap<string, CapacityLeft> | null;
  /** Members of the fleet per data center: existing, plus placed by this Placer. */
  private readonly members: Map<string, number>;
  /** Open data centers in the strategy's order. */
  private readonly ranked: string[];
  /** Eligible data centers with no room left, in stack order (the order `excluded` lists them). */
  private readonly full: string[];
  private readonly stackOrder: Map<string, number>;
  private readonly cmp: (a: string, b: string) => number;
  /** Frozen copies shown in explanations; null when the ranking or the exclusions changed since. */
  private candidates: readonly string[] | null;
  private excluded: readonly { dataCenter: string; why: string }[] | null;
  /** The data center chosen last, whose key the next call brings up to date. */
  private last: string | undefined;
  /**
   * Nearest: the explanation of a member placed in each data center, frozen
   * and shared by every member placed there until the ranking or the
   * exclusions change (it names no count, so they are all the same).
   */
  private readonly nearest: Map<string, PlacementExplanation>;

  constructor(fp: FleetPlacement, capacity: ReadonlyMap<string, CapacityLeft> | null, members: ReadonlyMap<string, number>) {
    this.fp = fp;
    this.capacity = capacity;
    this.members = new Map(members);
    this.stackOrder = new Map(fp.eligible.map((d, i) => [d.name, i]));
    this.full = [];
    this.candidates = null;
    this.excluded = null;
    this.last = undefined;
    this.nearest = new Map();
    const count = (n: string) => this.members.get(n) ?? 0;
    const strategy = fp.fleet.placement.strategy;
    this.cmp =
      strategy === 'nearest'
        ? (a, b) => fp.distance.get(a)! - fp.distance.get(b)! || byName(a, b)
        : strategy === 'spread'
          ? (a, b) => count(a) - count(b) || byName(a, b)
          : (a, b) => count(b) - count(a) || byName(a, b);
    this.ranked = [];
    for (const dc of fp.eligible) {
      if (this.open(dc.name)) this.ranked.push(dc.name);
      else this.full.push(dc.name);
    }
    this.ranked.sort(this.cmp);
  }

  private open(dc: string): boolean {
    return !this.capacity || fits(this.capacity.get(dc), this.fp.fleet.size);
  }

  /** Brings the data center chosen last up to date: full, or moved to its new rank. */
  private settle(dc: string): void {
    // The chosen one is first in `ranked` (nothing else moved since it was chosen).
    if (!this.open(dc)) {
      this.ranked.shift();
      const at = this.stackOrder.get(dc)!;
      let i = this.full.length;
      while (i > 0 && this.stackOrder.get(this.full[i - 1])! > at) i--;
      this.full.splice(i, 0, dc);
      this.candidates = null;
      this.excluded = null;
      this.nearest.clear();
      return;
    }
    if (this.fp.fleet.placement.strategy !== 'spread') return;
    // Spread: one more member sorts it after every data center whose key is now smaller.
    let lo = 1;
    let hi = this.ranked.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cmp(this.ranked[mid], dc) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo === 1) return;
    this.ranked.copyWithin(0, 1, lo);
    this.ranked[lo - 1] = dc;
    this.candidates = null;
    this.nearest.clear();
  }

  /** The data center of the next member (counted as placed there), or undefined when every eligible one is full. */
  next(): { dataCenter?: string; explanation: PlacementExplanation } {
    if (this.last !== undefined) this.settle(this.last);
    this.last = undefined;
    const { fleet } = this.fp;
    const strategy = fleet.placement.strategy;
    this.candidates ??= Object.freeze([...this.ranked]);
    this.excluded ??= Object.freeze([...this.fp.excluded, ...this.full.map((dataCenter) => ({ dataCenter, why: 'no capacity left' }))]);
    const chosen = this.ranked[0];
    const shared = chosen !== undefined && strategy === 'nearest' ? this.nearest.get(chosen) : undefined;
    if (shared) {
      this.members.set(chosen, (this.members.get(chosen) ?? 0) + 1);
      this.last = chosen;
      return { dataCenter: chosen, explanation: shared };
    }
    const explanation: PlacementExplanation = {
      strategy,
      candidates: this.candidates as string[],
      excluded: this.excluded as { dataCenter: string; why: string }[],
      summary: '',
    };
    if (chosen === undefined) {
      explanation.summary = 'no data center can take it';
      return { explanation };
    }
    const before = this.members.get(chosen) ?? 0;
    if (strategy === 'nearest') {
      const km = Math.round(this.fp.distance.get(chosen)!);
      explanation.distanceKm = km;
      const hw = fleet.hardware.length > 0 ? ` with ${fleet.hardware.join(', ')}` : '';
      explanation.summary = `${chosen}: nearest${hw}, ${km} km from ${this.fp.nearName}`;
      this.nearest.set(chosen, Object.freeze(explanation));
    } else if (strategy === 'spread') {
      explanation.summary = `${chosen}: spread, fewest members (${before} before this one)`;
    } else {
      explanation.summary = `${chosen}: pack, fullest with room (${before} before this one)`;
    }
    this.members.set(chosen, before + 1);
    this.last = chosen;
    return { dataCenter: chosen, explanation };
  }
}
