// Whether a plan's --allow-destroy needs the admin token at apply: the
// protect rule's `override: admin` (docs/policy.md, "protect") makes the
// authority accept an override only with a proof made with FLEET_ADMIN_TOKEN
// (protocol overrideProof), which the plan cannot show: a plan made with
// --allow-destroy has no violation either way. `fleet apply` without the
// token started, applied the plan's other changes, and then had each
// protected deletion vetoed (override-refused): a half-applied plan. It is
// checked before anything starts, as the data centers' tokens are.
import { isDestructive, type PlanDocument } from '../model/index.ts';
import type { LoadedPack } from '../policy/types.ts';

/**
 * The addresses the plan deletes or replaces under its --allow-destroy
 * whose deletion the authority accepts only with the admin token's proof:
 * the pack's protect rule is mandatory with `override: admin`, and the
 * member's fleet is protected once the plan's fleetChanges are written
 * (`protectedInRecord`: the fleets the record holds as protected now).
 */
export function adminOverridesNeeded(plan: Pick<PlanDocument, 'changes' | 'options' | 'fleetChanges'>, pack: Pick<LoadedPack, 'rules'>, protectedInRecord: ReadonlySet<string>): string[] {
  const protect = pack.rules.get('protect');
  if (protect?.enforcement !== 'mandatory' || protect.config.override !== 'admin') return [];
  const allowed = new Set(plan.options.allowDestroy);
  const written = new Map((plan.fleetChanges ?? []).filter((f) => f.protect).map((f) => [f.fleet, f.protect!.to]));
  const isProtected = (fleet: string): boolean => written.get(fleet) ?? protectedInRecord.has(fleet);
  return plan.changes.filter((c) => isDestructive(c.action) && allowed.has(c.fleet) && isProtected(c.fleet)).map((c) => c.address);
}
