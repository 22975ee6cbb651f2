// The authority's create path: a create is judged (decisions.ts judgeCreate,
// request-level rules), fenced, and inserted with its budget, so quota and
// capacity are checked by the record in the transaction that records it
// (record/budget.ts), against the owner the record holds for the fleet.
// Part of the service (authority.ts, Core).
import { formatVmAddress } from '../model/index.ts';
import { BudgetExceededError, ManagerMismatchError, OwnerMismatchError, VersionConflictError } from '../record/index.ts';
import type { ChangeContext, NewVm, VmRow } from '../record/index.ts';
import type { RequestFacts } from '../policy/types.ts';
import type { AuthorizeRequest, AuthorizeResponse, WireCode } from '../../protocol/index.ts';
import { foresee, onward, rowAt, type Foreseen } from './chain.ts';
import type { Core } from './core.ts';
import { addressTaken, judgeCreate, judgeRepeatedCreate, judgeReplaced } from './decisions.ts';
import { createBudget, judgeRequestRules } from './policy.ts';
import { toAuthorityVm, veto } from './answers.ts';

/**
 * authorize of a create, inside serial(): its answer, and the VM's row when
 * it exists (now inserted, or found by a repeated create). With `next` (an
 * advance), the edges that would be approved on the new row go into the
 * insert's statement (foresee): `foreseen` lists them.
 */
export async function authorizeCreate(
  c: Core,
  caller: string,
  req: AuthorizeRequest,
  next: readonly AuthorizeRequest[] = [],
  ahead = false,
): Promise<{ answer: AuthorizeResponse; row?: VmRow; foreseen?: Foreseen[] }> {
  const no = (r: { reason: string; refusal: WireCode }) => ({ answer: veto(r.reason, undefined, r.refusal) });
  const judged = judgeCreate(c.o.pack, c.o.stackName, caller, req);
  if (!judged.ok) return no(judged);
  const spec = req.vm!;
  const facts: RequestFacts = {
    kind: 'create',
    stack: spec.stack,
    fleet: spec.fleet,
    address: formatVmAddress(spec.fleet, spec.index),
    owner: spec.owner,
    dataCenter: caller,
    image: spec.image,
    size: spec.size,
    encryptedDisk: spec.encryptedDisk,
    from: null,
    to: c.o.pack.lifecycle.initial,
    operation: 'insert',
  };
  const rules = judgeRequestRules(c.o.pack, facts);
  if (!rules.ok) return no(rules);
  // Quota and capacity: checked by the record in the insert's transaction
  // (record/budget.ts), with the owner the fleet's row holds: the owner the
  // request names is only taken for a fleet the record does not know yet
  // (else a create naming another owner is refused: owner-mismatch).
  const budget = createBudget(c.o.pack, c.o.capacity ?? {}, spec.owner, caller);
  const { realImage, modified, reason } = judged;
  const fence = await c.fences.fenced(spec.stack, spec.fleet, req.fencingToken);
  if (fence !== undefined) return no(fence);
  const again = (existing: VmRow) => {
    const repeated = judgeRepeatedCreate(caller, existing);
    if (!repeated.ok) return no(repeated);
    return { answer: { decision: modified ? 'modified' : 'approved', reason, operation: 'insert', realImage, vm: toAuthorityVm(existing) } satisfies AuthorizeResponse, row: existing };
  };
  if (spec.replaces !== undefined) {
    // A repeated create (the DMZ client lost our answer) gets the same answer, even once the old VM is gone.
    const existing = await c.rows.get(req.vmId);
    if (existing) return again(existing);
    const replaced = judgeReplaced(caller, spec, await c.o.record.getVm(spec.replaces));
    if (!replaced.ok) return no(replaced);
  }
  const initial = c.o.pack.lifecycle.initial;
  const newVm: NewVm = {
    id: req.vmId,
    stack: spec.stack,
    fleet: spec.fleet,
    owner: spec.owner,
    index: spec.index,
    dataCenter: caller,
    state: initial,
    desiredState: spec.desiredState,
    specHash: spec.specHash,
    ...(spec.replaces !== undefined ? { replaces: spec.replaces } : {}),
    image: spec.image,
    realImage,
    size: spec.size,
    encryptedDisk: spec.encryptedDisk,
    // The program the create comes from (a Pulumi Fleet or Vm), written to the fleet's row with the VM; none for fleet apply.
    ...(spec.managedBy !== undefined ? { managedBy: spec.managedBy } : {}),
  };
  const ctx: ChangeContext = { actor: 'authority', planId: req.planId, requestId: req.requestId, detail: reason };
  // The row the insert makes, as far as judgeEdge reads it (and answers carry it).
  const inserted: VmRow = {
    ...newVm,
    id: req.vmId,
    address: formatVmAddress(newVm.fleet, newVm.index),
    name: `${newVm.stack}-${newVm.fleet}-${newVm.index}`,
    realImage,
    cloudId: null,
    version: 1,
    createdAt: '',
    updatedAt: '',
    retiredAt: null,
    deposed: false,
  };
  // A replacement also deposes the old VM (its own transaction) and carries no chain; plain creates go in batches.
  const foreseen = newVm.replaces === undefined ? foresee(c.o.pack, caller, next, inserted, { ahead, plain: c.policy.plain() }) : [];
  let vm: VmRow;
  try {
    if (newVm.replaces !== undefined) vm = await c.o.record.insertVm(newVm, ctx, budget);
    else vm = await c.inserts.submit({ vm: newVm, ctx, budget, ...onward(caller, foreseen) });
  } catch (err) {
    if (err instanceof BudgetExceededError) return no({ reason: err.diagnostics[0].detail, refusal: err.which === 'owner' ? 'over-quota' : 'over-capacity' });
    if (err instanceof OwnerMismatchError) return no({ reason: err.diagnostics[0].detail, refusal: 'owner-mismatch' });
    if (err instanceof ManagerMismatchError) return no({ reason: err.diagnostics[0].detail, refusal: 'manager-mismatch' });
    if (!(err instanceof VersionConflictError)) throw err;
    if (err.key === req.vmId) {
      // A repeated create (the DMZ client lost our answer): same VM, same answer.
      const existing = await c.rows.get(req.vmId);
      if (existing) return again(existing);
    }
    return no(addressTaken(spec, err.message));
  }
  c.rows.remember(vm);
  return {
    answer: {
      decision: modified ? 'modified' : 'approved',
      reason,
      operation: 'insert',
      realImage,
      credentials: c.credentials(caller, req.requestId),
      vm: toAuthorityVm(rowAt(vm, inserted)),
    },
    row: vm,
    foreseen,
  };
}
