// What a plan asks the record to compare in the database
// (FleetRecord.readPlan): each fleet's shape, so only the members that
// differ from it are read and the others come back summed
// (docs/planning.md, "What a plan reads").
import { parseVmAddress } from '../model/index.ts';
import { BUILTIN_RULES } from '../policy/rules/builtin.ts';
import type { LoadedPack } from '../policy/types.ts';
import type { FleetShape } from '../record/types.ts';
import type { LoadedFleet } from '../spec/types.ts';
import type { PlanOptions } from './planner.ts';
import { memberTargets } from './scope.ts';

/**
 * Whether the pack has an enabled custom rule that judges plans
 * (checkChange or checkPlan). Such a rule was written against a plan whose
 * changes list every member, noops included, and a record holding their
 * rows: for it the plan reads every member.
 */
export function customPlanRules(pack: LoadedPack): string[] {
  return [...pack.rules.values()]
    .filter((r) => r.enforcement !== 'disabled' && !BUILTIN_RULES.includes(r.rule) && (r.rule.checkChange || r.rule.checkPlan))
    .map((r) => r.rule.name);
}

/**
 * The shapes of the fleets in `scope` whose unchanged members may be summed:
 * every fleet with a spec, less those the plan looks at member by member (a
 * --target or --replace member address names one of its members) and those
 * whose desired state the pack does not let a fleet ask for (their plan is a
 * violation, not noops). None when the pack has custom plan rules.
 */
export function planShapes(pack: LoadedPack, fleets: readonly LoadedFleet[], scope: readonly string[], options: PlanOptions): FleetShape[] {
  if (customPlanRules(pack).length > 0) return [];
  const inScope = new Set(scope);
  const byMember = new Set(memberTargets(options.targets).keys());
  for (const r of options.replace ?? []) {
    const a = parseVmAddress(r);
    if (a) byMember.add(a.fleet);
  }
  const lc = pack.lifecycle;
  const out: FleetShape[] = [];
  for (const f of fleets) {
    if (!inScope.has(f.name) || byMember.has(f.name) || !lc.states.includes(f.state) || !lc.requestable.includes(f.state)) continue;
    out.push({ fleet: f.name, count: f.count, state: f.state, specHash: f.specHash, image: f.image, encryptedDisk: f.encryptedDisk, size: f.size });
  }
  return out;
}
