// Quota and capacity, checked by the record in the transaction that inserts
// a VM (types.ts Budget). The authority has the last word on owner-quota and
// datacenter-capacity (DESIGN.md "The authority has the last word"): two
// applies racing for the last slot must get one insert and one refusal,
// never both. So a guarded insert takes a transaction-scoped advisory lock
// per stack, sums the live VMs under it, decides (fitBudgets, pure), and
// inserts in the same transaction; the next guarded insert of the stack
// waits for the commit and sees the row. Inserts without a budget take no
// lock: a VM without limits of its own cannot make another VM's owner or
// data center exceed its limits (a limited owner's VMs, and every VM of a
// limited data center, always carry that limit; and since an insert must
// name its fleet's recorded owner, fitBudgets, and the authority guards
// every create of a stack where some owner has limits, Budget.guard, a
// create cannot slip into a limited owner's fleet under another name).
//
// A resize that grows is checked the same way (fitGrow), under the same
// lock, and reserves what it grows in the record (vm_reservations) until it
// is reported or expires: creates and other grows count it.
import { formatVmAddress } from '../model/index.ts';
import { BudgetExceededError, OwnerMismatchError } from './errors.ts';
import type { Queryable } from './sql.ts';
import type { Budget, Limits, NewVm } from './types.ts';
import type { FleetError } from '../diags/index.ts';

/** The advisory lock class of budget checks (the second key is the stack's hash). */
const BUDGET_LOCK_CLASS = 4_242_018;

/** What the live VMs of one fleet use in one data center, with the fleet's recorded owner. */
export interface BudgetUsage {
  fleet: string;
  owner: string;
  dataCenter: string;
  vms: number;
  cpu: number;
  memoryGiB: number;
}

/** Whether an insert with this budget is checked under the stack's budget lock. */
export function guarded(budget: Budget | undefined): boolean {
  return budget !== undefined && (budget.owner !== undefined || budget.dataCenter !== undefined || budget.guard === true);
}

/** The owner the record holds for each of `fleets` that has a row. */
export async function readFleetOwners(q: Queryable, stack: string, fleets: readonly string[]): Promise<Map<string, string>> {
  const rows = await q.query<{ fleet: string; owner: string }>('SELECT fleet, owner FROM fleets WHERE stack = $1 AND fleet = ANY($2::text[])', [stack, [...new Set(fleets)]]);
  return new Map(rows.map((r) => [r.fleet, r.owner]));
}

/** The refusal of an insert naming `claimed` as owner of `vm`'s fleet, which the record holds for `recorded`. */
export function ownerMismatch(vm: NewVm, recorded: string): OwnerMismatchError {
  const address = formatVmAddress(vm.fleet, vm.index);
  return new OwnerMismatchError(
    `${address}: fleet ${vm.fleet} is owned by ${recorded} in the record, not ${vm.owner}; a create never changes a fleet's owner (fleet apply records it from the fleet's spec).`,
    address,
  );
}

/** Takes the stack's budget lock until the transaction ends. */
export async function lockBudget(q: Queryable, stack: string): Promise<void> {
  await q.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [BUDGET_LOCK_CLASS, stack]);
}

/**
 * The live VMs of `stack` summed per fleet and data center (deposed ones
 * count: they run until deleted), each VM at the larger of its size and the
 * size a grow approved and not yet reported reserves for it (grow.ts);
 * `except`: a VM left out.
 *
 * From vm_usage (migration 8), which triggers keep in step with vms, rather
 * than a GROUP BY over every live VM of the stack: the sums there, plus what
 * each pending grow adds beyond its VM's size, less the VM left out. Read
 * under the budget lock, so at 1,000,000 VMs a GROUP BY (~0.4 s) would hold
 * every guarded create of the stack back that long (issue 20).
 *
 * Each VM is found by id only (vms_pkey): its stack is compared with IS NOT
 * DISTINCT FROM (never null here), which no index serves. With `v.stack =
 * $1`, the plan PostgreSQL caches for a connection, made while the table was
 * small (a new record, statistics not yet taken), found the VM left out
 * through vms_scope, reading every VM of the stack on every check (none is
 * left out on a create: the id '' matches none), under the budget lock:
 * bench:apply at P 10 read ~2,000 rows per check at 4,000 VMs.
 */
export async function readBudgetUsage(q: Queryable, stack: string, except?: string): Promise<BudgetUsage[]> {
  const rows = await q.query<{ fleet: string; owner: string | null; data_center: string; vms: string | number; cpu: string | number; memory_gib: string | number }>(
    `WITH d AS (
       SELECT fleet, data_center, vms, cpu, memory_gib FROM vm_usage WHERE stack = $1 AND vms <> 0
       UNION ALL
       SELECT v.fleet, v.data_center, 0, greatest(r.cpu::numeric - v.cpu::numeric, 0), greatest(r.memory_gib::numeric - v.memory_gib::numeric, 0)
       FROM vm_reservations r JOIN vms v ON v.id = r.vm_id
       WHERE r.stack = $1 AND r.expires_at > now() AND v.stack IS NOT DISTINCT FROM $1 AND v.retired_at IS NULL
       UNION ALL
       SELECT v.fleet, v.data_center, -1, -greatest(v.cpu::numeric, coalesce(r.cpu::numeric, 0)), -greatest(v.memory_gib::numeric, coalesce(r.memory_gib::numeric, 0))
       FROM vms v LEFT JOIN vm_reservations r ON r.vm_id = v.id AND r.expires_at > now()
       WHERE v.id = $2 AND v.stack IS NOT DISTINCT FROM $1 AND v.retired_at IS NULL
     ),
     u AS (SELECT fleet, data_center, sum(vms) AS vms, sum(cpu) AS cpu, sum(memory_gib) AS memory_gib FROM d GROUP BY fleet, data_center HAVING sum(vms) > 0)
     SELECT u.fleet, f.owner, u.data_center, u.vms, u.cpu, u.memory_gib FROM u LEFT JOIN fleets f ON f.stack = $1 AND f.fleet = u.fleet`,
    [stack, except ?? ''],
  );
  return rows.map((r) => ({ fleet: r.fleet, owner: r.owner ?? '', dataCenter: r.data_center, vms: Number(r.vms), cpu: Number(r.cpu), memoryGiB: Number(r.memory_gib) }));
}

const KEYS = ['vms', 'cpu', 'memoryGiB'] as const;
const UNIT: Record<(typeof KEYS)[number], string> = { vms: 'VMs', cpu: 'vCPUs', memoryGiB: 'GiB of memory' };

/** The first limit that `used` plus `need` goes over, as a sentence's middle; undefined when everything fits. */
function over(limits: Limits, used: Required<Limits>, need: Required<Limits>): string | undefined {
  for (const k of KEYS) {
    const limit = limits[k];
    if (limit === undefined) continue;
    // A small tolerance: memory sizes are fractional GiB summed in floating point.
    if (used[k] + need[k] > limit + 1e-9) return `${limit} ${UNIT[k]}: ${used[k]} in use, the VM needs ${need[k]} more`;
  }
  return undefined;
}

// Sums of one shape, added to field by field by one function made once: a
// batch of creates sums its VMs' sizes here for each item, and a closure
// made per item, adding rows of two shapes through keyed accesses, had V8
// drop and recompile fitBudgets' code 4-6 times per authority (bench/apply
// with --trace-opt --trace-deopt).
function noUse(): Required<Limits> {
  return { vms: 0, cpu: 0, memoryGiB: 0 };
}

function add(to: Required<Limits>, vms: number, cpu: number, memoryGiB: number): void {
  to.vms += vms;
  to.cpu += cpu;
  to.memoryGiB += memoryGiB;
}

/**
 * Which of `items` fit their budgets, in order, over `usage` (the stack's
 * live VMs; `owners`, the recorded owner of the items' fleets that have a
 * row): undefined for an item that fits (it then counts for the items after
 * it), else the refusal. An item naming another owner than its fleet's
 * (recorded, or fixed by an earlier item of a new fleet) is refused
 * (OwnerMismatchError); items without a budget otherwise always fit. A row
 * of the item's own fleet counts as the item's owner's, since the owners
 * agree.
 */
export function fitBudgets(
  items: readonly { vm: NewVm; budget?: Budget }[],
  usage: readonly BudgetUsage[],
  owners: ReadonlyMap<string, string> = new Map(),
): (FleetError | undefined)[] {
  const accepted: NewVm[] = [];
  const owner = new Map(owners);
  const out: (FleetError | undefined)[] = [];
  for (const { vm, budget } of items) {
    const refused = refusal(vm, budget, usage, accepted, owner);
    out.push(refused);
    if (refused !== undefined) continue;
    accepted.push(vm);
    owner.set(vm.fleet, vm.owner);
  }
  return out;
}

/**
 * fitBudgets for one item, `accepted` the items before it that fit and
 * `owner` the fleets' owners so far. A function of its own, not a callback
 * made per call: bench/apply (--trace-opt) showed V8 compiling that
 * callback 6-8 times in the authority, several times without a deopt
 * between (its code, made for one call's closure, was not reused by the next).
 */
function refusal(vm: NewVm, budget: Budget | undefined, usage: readonly BudgetUsage[], accepted: readonly NewVm[], owner: ReadonlyMap<string, string>): FleetError | undefined {
  const recorded = owner.get(vm.fleet);
  if (recorded !== undefined && recorded !== vm.owner) return ownerMismatch(vm, recorded);
  if (!budget?.owner && !budget?.dataCenter) return undefined;
  const need = { vms: 1, cpu: vm.size.cpu, memoryGiB: vm.size.memoryGiB };
  const address = formatVmAddress(vm.fleet, vm.index);
  const owned = noUse();
  const inDc = noUse();
  for (const u of usage) {
    if (u.fleet === vm.fleet ? true : u.owner === vm.owner) add(owned, u.vms, u.cpu, u.memoryGiB);
    if (u.dataCenter === vm.dataCenter) add(inDc, u.vms, u.cpu, u.memoryGiB);
  }
  for (const a of accepted) {
    if (a.owner === vm.owner || a.fleet === vm.fleet) add(owned, 1, a.size.cpu, a.size.memoryGiB);
    if (a.dataCenter === vm.dataCenter) add(inDc, 1, a.size.cpu, a.size.memoryGiB);
  }
  const quota = budget.owner && over(budget.owner, owned, need);
  if (quota) return new BudgetExceededError('owner', `${address}: the quota of owner ${vm.owner} is ${quota}.`, address);
  const capacity = budget.dataCenter && over(budget.dataCenter, inDc, need);
  if (capacity) return new BudgetExceededError('dataCenter', `${address}: the capacity of data center ${vm.dataCenter} is ${capacity}.`, address);
  return undefined;
}

/**
 * Whether `vm` (its size now `vm.size`, its fleet's recorded owner
 * `vm.owner`) may grow to `size`: `usage` is the stack's live VMs without
 * it (readBudgetUsage with `except`). Only what grows is checked (a resize
 * that shrinks memory while adding vCPUs is not refused for memory in use).
 */
export function fitGrow(
  vm: { address: string; fleet: string; owner: string; dataCenter: string; size: { cpu: number; memoryGiB: number } },
  size: { cpu: number; memoryGiB: number },
  budget: Budget,
  usage: readonly BudgetUsage[],
): BudgetExceededError | undefined {
  const check = (limits: Limits | undefined, rows: readonly BudgetUsage[], which: 'owner' | 'dataCenter', what: string) => {
    if (!limits) return undefined;
    for (const k of ['cpu', 'memoryGiB'] as const) {
      const limit = limits[k];
      const grow = size[k] - vm.size[k];
      if (limit === undefined || grow <= 0) continue;
      const used = rows.reduce((n, r) => n + r[k], 0) + vm.size[k];
      if (used + grow > limit + 1e-9) {
        return new BudgetExceededError(
          which,
          `resizing ${vm.address} to ${size.cpu} vCPU / ${size.memoryGiB} GiB needs ${grow} more ${UNIT[k]}; ${what} allows ${limit}, ${used} in use`,
          vm.address,
        );
      }
    }
    return undefined;
  };
  return (
    check(budget.owner, usage.filter((u) => u.fleet === vm.fleet || u.owner === vm.owner), 'owner', `the quota of owner ${vm.owner}`) ??
    check(budget.dataCenter, usage.filter((u) => u.dataCenter === vm.dataCenter), 'dataCenter', `the capacity of data center ${vm.dataCenter}`)
  );
}
