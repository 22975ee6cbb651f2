// The policy functions the planner calls, gathered in one interface so the
// pure core can be run with the real policy engine (engine/policy) or with a
// stand-in in unit tests. Names and argument order follow engine/policy.
import type { Diagnostic } from '../diags/index.ts';
import { capacityLeft } from '../policy/budget.ts';
import type { Budget, LoadedPack, RuleContext } from '../policy/types.ts';
import type { PlanVmRow, UsageRow } from '../record/types.ts';
import type { LoadedFleet, LoadedStack } from '../spec/types.ts';
import type { Enforcement, PlanDocument, Violation } from './types.ts';

/** Resources left in a data center for this stack; Infinity where the stack sets no limit. */
export interface CapacityLeft {
  vms: number;
  cpu: number;
  memoryGiB: number;
}

/** What every policy call sees: a rule context without a rule's own settings. */
export type PlanContext = Omit<RuleContext, 'config' | 'enforcement'>;

export interface PlanPolicy {
  /** Every enabled rule over the draft plan; `report` takes what is not a violation (a custom rule stopped at its deadline: policy.rule-timeout). */
  evaluateRules(plan: PlanDocument, ctx: PlanContext, pack: LoadedPack, report?: (d: Diagnostic) => void): Violation[];
  /**
   * How many members (in total) the owner quota grants `fleet`, given what the
   * fleets before it (name order) were granted in this plan.
   */
  ownerQuota(pack: LoadedPack, ctx: PlanContext, fleet: LoadedFleet, requestedTotal: number, granted: Readonly<Record<string, number>>): Budget;
  /** `usage`: the VMs of fleets not in `record`, summed (PlanInput.usage). */
  capacityLeft(stack: LoadedStack, record: readonly PlanVmRow[], usage?: readonly UsageRow[]): Map<string, CapacityLeft>;
  capacityEnforcement(pack: LoadedPack): Enforcement;
  /**
   * The grant (and violations) for a fleet that asked for `requestedNew` new
   * members and got `placedNew` placed; grant numbers are fleet totals.
   */
  capacityGrantFor(
    pack: LoadedPack,
    fleet: LoadedFleet,
    requestedNew: number,
    placedNew: number,
    opts: { existing?: number; dataCenters?: readonly string[] },
  ): Budget;
}

/**
 * Capacity arithmetic every policy engine shares: the stack's limit per data
 * center minus what live VMs of the stack use there, as rows (`record`) and
 * as sums (`usage`, the fleets not in `record`). One implementation, the
 * policy engine's, so the no-rules policy cannot drift from it.
 */
export function basicCapacityLeft(stack: LoadedStack, record: readonly PlanVmRow[], usage: readonly UsageRow[] = []): Map<string, CapacityLeft> {
  return capacityLeft(stack, record, usage);
}

/**
 * A policy with no rules and no quota: only the data centers' capacity
 * limits apply. Used where no pack rules are wanted (unit tests of the core).
 */
export const noRulesPolicy: PlanPolicy = {
  evaluateRules: () => [],
  ownerQuota: (_pack, _ctx, _fleet, requestedTotal) => ({ granted: requestedTotal, violations: [] }),
  capacityLeft: basicCapacityLeft,
  capacityEnforcement: (pack) => pack.rules.get('datacenter-capacity')?.enforcement ?? 'mandatory',
  capacityGrantFor: (_pack, fleet, requestedNew, placedNew, opts) => {
    const existing = opts.existing ?? 0;
    const requested = existing + requestedNew;
    const granted = existing + placedNew;
    if (placedNew >= requestedNew) return { granted, violations: [] };
    const reason = `requested ${requested}, granted ${granted}: data center capacity`;
    return { granted, grant: { fleet: fleet.name, requested, granted, reason, policy: 'datacenter-capacity' }, violations: [] };
  },
};
