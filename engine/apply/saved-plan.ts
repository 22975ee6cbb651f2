// What `fleet apply PLANFILE` checks of a saved plan before it takes any
// lock or sends any request (DESIGN.md, "The plan document"; the trust issue):
//
// | check                                   | code                 | holds even if the key leaked |
// | --------------------------------------- | -------------------- | ---------------------------- |
// | a seal is present                       | apply.plan-unsigned  | -                            |
// | the seal's stack id is this record's    | apply.plan-foreign   | yes                          |
// | the content matches the sealed digest,  | apply.plan-tampered  | no                           |
// |   the signature verifies under the key  |                      |                              |
// | every change is inside the plan's scope | apply.plan-scope     | yes                          |
// | every vmId is that member's VM          | apply.plan-scope     | yes                          |
//
// All problems are reported at once. The record is only read here; the
// stale check (checkApplicable) follows under the fleets' locks.
import { type Diagnostic, clip, clipPath, diag } from '../diags/index.ts';
import { actedVmIds, checkScope, checkTargets, verifySeal } from '../plan/integrity.ts';
import type { PlanDocument } from '../plan/types.ts';
import type { FleetRecord, VmRow } from '../record/types.ts';

export { checkTargets };

/**
 * Every reason not to apply the saved plan `plan` (read from `file`) to
 * `stack` over `record`; empty when it may go on to the stale check.
 */
export async function checkSavedPlan(
  plan: PlanDocument,
  ctx: {
    file: string;
    stack: string;
    record: FleetRecord;
    /** A deployed stack's plans are sealed by its authority, which verifies the seal itself (registerAtAuthority); only scope and targets are checked here. */
    sealedByAuthority?: boolean;
  },
): Promise<Diagnostic[]> {
  const identity = ctx.sealedByAuthority ? undefined : await ctx.record.stackIdentity(ctx.stack);
  const sealDiags: Diagnostic[] = ctx.sealedByAuthority
    ? []
    : identity
    ? verifySeal(plan, { file: ctx.file, stack: ctx.stack, stackId: identity.stackId, key: (id) => identity.key(id) })
    : plan.seal
      ? [
          diag(
            'apply.plan-foreign',
            `${clipPath(ctx.file)} was sealed for stack ${clip(plan.stack)} (id ${clip(String(plan.seal.stackId))}), but the record ${ctx.record.description} has never sealed a plan for stack ${ctx.stack}: the plan was made against another record.`,
            { file: ctx.file },
          ),
        ]
      : verifySeal(plan, { file: ctx.file, stack: ctx.stack, stackId: '', key: () => undefined });
  const ids = actedVmIds(plan);
  const rows = new Map<string, VmRow>();
  (await ctx.record.getVms(ids)).forEach((vm, i) => vm && rows.set(ids[i], vm));
  return [...sealDiags, ...checkScope(plan, ctx.file), ...checkTargets(plan, rows, ctx.file)];
}
