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
import { type Diagnostic, diag } from '../diags/index.ts';
import { checkScope, verifySeal } from '../plan/integrity.ts';
import type { PlanDocument } from '../plan/types.ts';
import type { FleetRecord, VmRow } from '../record/types.ts';

/**
 * Changes whose `vmId` names a VM the record holds as another member (of
 * another fleet, index, stack or data center): the request would act on
 * that VM while the plan, its locks and its review say something else.
 * `rows[i]` is the record's row for the i-th change with a vmId (undefined
 * when the record has none; the stale check reports that one).
 */
export function checkTargets(plan: PlanDocument, rows: ReadonlyMap<string, VmRow>, file: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const c of plan.changes) {
    if (!c.vmId || c.action === 'create') continue;
    const vm = rows.get(c.vmId);
    if (!vm) continue;
    if (vm.stack !== plan.stack || vm.fleet !== c.fleet || vm.index !== c.index || vm.dataCenter !== c.dataCenter) {
      out.push(
        diag(
          'apply.plan-scope',
          `the change to ${c.address} in ${c.dataCenter} acts on VM ${c.vmId}, which the record holds as ${vm.address} of stack ${vm.stack} in ${vm.dataCenter}; a change acts only on its own member's VM.`,
          { file, address: c.address },
        ),
      );
    }
  }
  return out;
}

/**
 * Every reason not to apply the saved plan `plan` (read from `file`) to
 * `stack` over `record`; empty when it may go on to the stale check.
 */
export async function checkSavedPlan(plan: PlanDocument, ctx: { file: string; stack: string; record: FleetRecord }): Promise<Diagnostic[]> {
  const identity = await ctx.record.stackIdentity(ctx.stack);
  const sealDiags: Diagnostic[] = identity
    ? verifySeal(plan, { file: ctx.file, stack: ctx.stack, stackId: identity.stackId, key: (id) => identity.key(id) })
    : plan.seal
      ? [
          diag(
            'apply.plan-foreign',
            `${ctx.file} was sealed for stack ${plan.stack} (id ${plan.seal.stackId}), but the record ${ctx.record.description} has never sealed a plan for stack ${ctx.stack}: the plan was made against another record.`,
            { file: ctx.file },
          ),
        ]
      : verifySeal(plan, { file: ctx.file, stack: ctx.stack, stackId: '', key: () => undefined });
  const ids = [...new Set(plan.changes.flatMap((c) => (c.vmId && c.action !== 'create' ? [c.vmId] : [])))];
  const rows = new Map<string, VmRow>();
  (await ctx.record.getVms(ids)).forEach((vm, i) => vm && rows.set(ids[i], vm));
  return [...sealDiags, ...checkScope(plan, ctx.file), ...checkTargets(plan, rows, ctx.file)];
}
