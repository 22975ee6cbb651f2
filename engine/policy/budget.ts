// Quota and capacity: how many members a fleet may have. Unlike the check
// rules these run while the planner sizes and places fleets, because their
// outcome (a grant) changes the plan itself rather than judging it.
//
// | enforcement | over the limit                                   |
// | ----------- | ------------------------------------------------ |
// | mandatory   | cut to what fits: a Grant; below minCount, veto  |
// | advisory    | no cut: an advisory violation                    |
// | disabled    | nothing                                          |
import type { LoadedFleet, LoadedStack } from '../model/loaded.ts';
import type { Enforcement, Grant, Violation } from '../model/index.ts';
import type { PlanVmRow, UsageRow } from '../record/types.ts';
import type { EvalContext } from './evaluate.ts';
import type { Budget, LoadedPack } from './types.ts';

export interface Usage {
  vms: number;
  cpu: number;
  memoryGiB: number;
}

type Limits = Partial<Usage>;

function belowMinCount(policy: string, fleet: LoadedFleet, granted: number, why: string): Violation {
  return {
    policy,
    level: 'mandatory',
    address: fleet.name,
    message: `Fleet ${fleet.name}: granted ${granted} is below minCount ${fleet.minCount} (${why}); the fleet's change is vetoed.`,
    hint: `Lower spec.minCount of ${fleet.name}, free up ${policy === 'owner-quota' ? `quota of ${fleet.owner}` : 'capacity'}, or raise the limit.`,
  };
}

/**
 * What an owner holds outside `fleet`: for each other fleet of the same owner,
 * its granted member count from this run when it was sized already (the
 * planner goes fleet by fleet in name order), else its live VMs in the record.
 * A record VM's owner is its fleet's spec owner, else `ctx.owners` (the
 * record's fleet table); VMs whose owner is unknown are not counted.
 * `ctx.usage` (the other fleets' VMs, summed) counts the same way, its owner
 * being the fleet table's. Live VMs are never in a terminal state (the
 * authority retires a VM in the transaction that makes it terminal), so the
 * sums and the rows agree.
 */
export function ownerUsage(ctx: EvalContext, fleet: LoadedFleet, granted: Readonly<Record<string, number>> = {}): Usage {
  const used: Usage = { vms: 0, cpu: 0, memoryGiB: 0 };
  const specs = new Map(ctx.fleets.map((f) => [f.name, f]));
  for (const other of ctx.fleets) {
    if (other.name === fleet.name || other.owner !== fleet.owner || !Object.hasOwn(granted, other.name)) continue;
    const n = granted[other.name];
    used.vms += n;
    used.cpu += n * other.size.cpu;
    used.memoryGiB += n * other.size.memoryGiB;
  }
  for (const vm of ctx.record) {
    if (vm.fleet === fleet.name || Object.hasOwn(granted, vm.fleet)) continue;
    if (vm.retiredAt !== null || ctx.lifecycle.isTerminal(vm.state)) continue;
    const owner = specs.get(vm.fleet)?.owner ?? ctx.owners?.[vm.fleet];
    if (owner !== fleet.owner) continue;
    used.vms += 1;
    used.cpu += vm.size.cpu;
    used.memoryGiB += vm.size.memoryGiB;
  }
  for (const u of ctx.usage ?? []) {
    if (u.fleet === fleet.name || Object.hasOwn(granted, u.fleet)) continue;
    const owner = specs.get(u.fleet)?.owner ?? (u.owner || ctx.owners?.[u.fleet]);
    if (owner !== fleet.owner) continue;
    used.vms += u.vms;
    used.cpu += u.cpu;
    used.memoryGiB += u.memoryGiB;
  }
  return used;
}

/** Largest member count that fits every limit, and the limits that bind there. */
function fitting(limits: Limits, used: Usage, per: Usage): { fits: number; binding: string[] } {
  let fits = Infinity;
  const byLimit: [string, number][] = [];
  for (const key of ['vms', 'cpu', 'memoryGiB'] as const) {
    const limit = limits[key];
    if (limit === undefined) continue;
    const n = per[key] > 0 ? Math.max(0, Math.floor((limit - used[key]) / per[key] + 1e-9)) : Infinity;
    byLimit.push([`${key} ${limit}`, n]);
    fits = Math.min(fits, n);
  }
  return { fits, binding: byLimit.filter(([, n]) => n === fits).map(([s]) => s) };
}

/**
 * The limits owner-quota's config sets for `owner`: its entry in `limits`,
 * else `unlisted` (the limits of each owner not listed, on its own), else
 * none. The authority reads them the same way (engine/authority/policy.ts).
 */
export function ownerLimits(config: Readonly<Record<string, unknown>>, owner: string): Limits | undefined {
  const listed = (config.limits ?? {}) as Record<string, Limits>;
  return Object.hasOwn(listed, owner) ? listed[owner] : (config.unlisted as Limits | undefined);
}

/**
 * owner-quota: how many members `fleet` may have in total. The fleet may have
 * at most N members, N the largest count such that the owner's usage outside
 * the fleet (see ownerUsage) plus N members of the fleet's size fits every
 * limit of the owner. `granted` holds the member counts already granted to
 * fleets sized earlier in this run (the planner sizes fleets in name order).
 */
export function ownerQuota(
  pack: LoadedPack,
  ctx: EvalContext,
  fleet: LoadedFleet,
  requestedTotal: number,
  granted: Readonly<Record<string, number>> = {},
): Budget {
  const r = pack.rules.get('owner-quota');
  const ok: Budget = { granted: requestedTotal, violations: [] };
  if (!r || r.enforcement === 'disabled') return ok;
  const limits = ownerLimits(r.config, fleet.owner);
  if (!limits) return ok;
  const used = ownerUsage(ctx, fleet, granted);
  const per: Usage = { vms: 1, cpu: fleet.size.cpu, memoryGiB: fleet.size.memoryGiB };
  const { fits, binding } = fitting(limits, used, per);
  if (requestedTotal <= fits) return ok;
  const why = `quota of ${fleet.owner} (${binding.join(', ')})`;
  if (r.enforcement === 'advisory') {
    return {
      granted: requestedTotal,
      violations: [
        {
          policy: 'owner-quota',
          level: 'advisory',
          address: fleet.name,
          message: `Fleet ${fleet.name} requests ${requestedTotal} members but only ${fits} fit the ${why}.`,
          hint: `Lower spec.count of ${fleet.name} or raise the quota of ${fleet.owner} in the stack's policyPack.config.`,
        },
      ],
    };
  }
  const grant: Grant = {
    fleet: fleet.name,
    requested: requestedTotal,
    granted: fits,
    reason: `requested ${requestedTotal}, granted ${fits}: ${why}`,
    policy: 'owner-quota',
  };
  return { granted: fits, grant, violations: fits < fleet.minCount ? [belowMinCount('owner-quota', fleet, fits, why)] : [] };
}

/**
 * Capacity left per data center of the stack: its capacity minus what live
 * record VMs use there, `record` as rows and `usage` (the other fleets' VMs)
 * as sums. Infinity where the stack sets no limit. The planner subtracts what
 * it places as it goes.
 */
export function capacityLeft(stack: LoadedStack, record: readonly PlanVmRow[], usage: readonly UsageRow[] = []): Map<string, Usage> {
  const left = new Map<string, Usage>();
  for (const dc of stack.dataCenters) {
    left.set(dc.name, {
      vms: dc.capacity.vms ?? Infinity,
      cpu: dc.capacity.cpu ?? Infinity,
      memoryGiB: dc.capacity.memoryGiB ?? Infinity,
    });
  }
  for (const vm of record) {
    const l = left.get(vm.dataCenter);
    if (!l || vm.retiredAt !== null) continue;
    l.vms -= 1;
    l.cpu -= vm.size.cpu;
    l.memoryGiB -= vm.size.memoryGiB;
  }
  for (const u of usage) {
    const l = left.get(u.dataCenter);
    if (!l) continue;
    l.vms -= u.vms;
    l.cpu -= u.cpu;
    l.memoryGiB -= u.memoryGiB;
  }
  return left;
}

export function capacityEnforcement(pack: LoadedPack): Enforcement {
  return pack.rules.get('datacenter-capacity')?.enforcement ?? 'mandatory';
}

/**
 * datacenter-capacity, after placement: `requestedNew` new members were to be
 * placed and only `placedNew` found room. Grant numbers are fleet totals
 * (existing + new), like owner-quota's; `opts.existing` is the members the
 * fleet keeps (default `fleet.count - requestedNew`), `opts.dataCenters` the
 * data centers that were tried (default the fleet's allow-list).
 */
export function capacityGrantFor(
  pack: LoadedPack,
  fleet: LoadedFleet,
  requestedNew: number,
  placedNew: number,
  opts: { existing?: number; dataCenters?: readonly string[] } = {},
): Budget {
  const existing = opts.existing ?? Math.max(0, fleet.count - requestedNew);
  const requested = existing + requestedNew;
  const enforcement = capacityEnforcement(pack);
  if (placedNew >= requestedNew || enforcement === 'disabled') return { granted: requested, violations: [] };
  const dcs = opts.dataCenters ?? fleet.placement.dataCenters ?? [];
  const why = dcs.length ? `capacity of ${dcs.join(', ')}` : "capacity of the stack's data centers";
  if (enforcement === 'advisory') {
    return {
      granted: requested,
      violations: [
        {
          policy: 'datacenter-capacity',
          level: 'advisory',
          address: fleet.name,
          message: `${requestedNew - placedNew} of ${requestedNew} new members of fleet ${fleet.name} exceed the ${why}.`,
          hint: `Allow more data centers in spec.placement of ${fleet.name}, lower spec.count, or raise the capacity in the stack file.`,
        },
      ],
    };
  }
  const granted = existing + placedNew;
  const grant: Grant = {
    fleet: fleet.name,
    requested,
    granted,
    reason: `requested ${requested}, granted ${granted}: ${why}`,
    policy: 'datacenter-capacity',
  };
  return { granted, grant, violations: granted < fleet.minCount ? [belowMinCount('datacenter-capacity', fleet, granted, why)] : [] };
}
