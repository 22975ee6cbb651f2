// The authority's decisions, as pure functions over their arguments: who may
// take which edge, create which VM, boot which VM. Each returns
// `{ ok: true, ... }` or a refusal `{ refusal: WireCode, reason }`; none
// reads the record or the clock, so each is tested from tables
// (decisions.test.ts). The service (authority.ts) loads the rows, answers a
// refusal as a veto, a denial or a WireError, and records what it decided.
import type { Lifecycle, LoadedPack } from '../policy/types.ts';
import type { Approval, FleetFence, HistoryRow, VmRow } from '../record/index.ts';
import { formatVmAddress } from '../model/index.ts';
import { unseenProblem, visible } from '../diags/index.ts';
import { refuse, type Decided, type Refusal } from '../../protocol/index.ts';
import type { AuthorizeRequest, BootAuthorizeRequest, ReportRequest, VmSize } from '../../protocol/index.ts';

/** VM ids are UUIDs; anything else cannot be in the record (and a PostgreSQL uuid column would reject it). */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A request whose body names another data center than its caller's token (an authorize, an advance's create or edge). */
export function judgeCaller(caller: string, req: { dataCenter: string }, what = 'request'): Decided {
  return req.dataCenter === caller ? { ok: true } : refuse('wrong-data-center', `the ${what} names data center ${req.dataCenter} but its token belongs to ${caller}`);
}

/** A state with an edge whose operation is `powerOn` is a powered-off state; a resize happens only there. */
export function canResizeIn(lifecycle: Lifecycle, state: string): boolean {
  return lifecycle.edges.some((e) => e.from === state && e.operation === 'powerOn');
}

/**
 * Whether the edge `req` asks for (to `to`) may be taken on row `vm` by the
 * DMZ client of `caller`: its operation, or why not. An advance decides its
 * chain with it on the rows its statement is about to make.
 *
 * | refusal | when |
 * | --- | --- |
 * | wrong-data-center | the VM lives in another data center |
 * | vm-retired | the VM is retired or in a terminal state |
 * | state-moved | `from` is not the VM's state |
 * | not-resizable | a resize that changes the state, or not in a powered-off state |
 * | bad-request | a resize without its size |
 * | not-an-edge | from -> to is not one edge of the lifecycle |
 */
export function judgeEdge(pack: LoadedPack, caller: string, req: AuthorizeRequest, to: string, vm: VmRow): Decided<{ operation: string }> {
  const lifecycle = pack.lifecycle;
  if (vm.dataCenter !== caller) return refuse('wrong-data-center', `VM ${vm.address} lives in data center ${vm.dataCenter}; the DMZ client of ${caller} may not change it`);
  if (vm.retiredAt !== null || lifecycle.isTerminal(vm.state)) return refuse('vm-retired', `VM ${vm.address} is ${vm.state} already`);
  if (req.from !== vm.state) return refuse('state-moved', `the request assumes VM ${vm.address} is ${req.from ?? 'absent'} but the record has it ${vm.state}`);
  if (req.kind === 'resize') {
    if (req.from !== to) return refuse('not-resizable', `a resize keeps the state; got ${req.from} -> ${to}`);
    if (!canResizeIn(lifecycle, req.from)) return refuse('not-resizable', `a resize needs a powered-off VM; ${vm.address} is ${req.from}`);
    if (!req.size) return refuse('bad-request', 'a resize needs the new size');
    return { ok: true, operation: 'resize' };
  }
  if (!lifecycle.allows(req.from, to)) {
    return refuse('not-an-edge', `${req.from} -> ${to} is not an edge of the ${pack.name} lifecycle; every change must pass one edge`);
  }
  return { ok: true, operation: lifecycle.operation(req.from, to) ?? 'none' };
}

/**
 * Whether a create may be inserted, before the record is asked anything:
 * the real image for the caller's data center, and whether it was
 * translated (`modified`), or why not.
 *
 * | refusal | when |
 * | --- | --- |
 * | bad-request | no VM; not from nothing into the initial state; an id that is not a UUID |
 * | wrong-data-center | the VM is for another data center than the caller's |
 * | wrong-stack | the VM is of another stack than the authority's |
 * | no-image | the pack's catalog has no translation of the image for the caller |
 */
export function judgeCreate(pack: LoadedPack, stackName: string, caller: string, req: AuthorizeRequest): Decided<{ realImage: string; modified: boolean; reason: string }> {
  const initial = pack.lifecycle.initial;
  if (!req.vm) return refuse('bad-request', 'a create needs the VM');
  if (req.from !== null || (req.to ?? initial) !== initial) {
    return refuse('bad-request', `a create enters the initial state ${initial} from nothing; got ${req.from ?? 'nothing'} -> ${req.to ?? initial}`);
  }
  if (req.vm.dataCenter !== caller) return refuse('wrong-data-center', `the VM is to be created in data center ${req.vm.dataCenter} but the token belongs to ${caller}`);
  if (req.vm.stack !== stackName) return refuse('wrong-stack', `this authority serves stack ${stackName}, not ${req.vm.stack}`);
  if (!UUID.test(req.vmId)) return refuse('bad-request', `VM id ${req.vmId} is not a UUID`);
  // The owner is matched exactly (owner-quota's limits): one that reads as another owner would escape that owner's limits.
  const unreadable = unseenProblem(req.vm.owner);
  if (unreadable) return refuse('bad-request', `owner ${visible(req.vm.owner)} ${unreadable.why}: owners are matched exactly (quota limits) and this one would read as another; ${unreadable.fix.toLowerCase()}`);
  const entry = Object.hasOwn(pack.images, req.vm.image) ? pack.images[req.vm.image] : undefined;
  const realImage = entry && Object.hasOwn(entry, caller) ? entry[caller] : undefined;
  if (realImage === undefined) return refuse('no-image', `image ${req.vm.image} has no translation for data center ${caller} in the ${pack.name} pack's catalog`);
  const modified = realImage !== req.vm.image;
  const reason = modified ? `image ${req.vm.image} translated to ${realImage} for ${caller}` : `image ${realImage} is valid in ${caller}`;
  return { ok: true, realImage, modified, reason };
}

/**
 * Whether the edge `from -> to` that `req` asks for was carried out and
 * reported already by the same step, and nothing but that step's own plan
 * or run has moved the VM since: a step sent again after a DMZ client
 * restarted between its report and its answer (its idempotency log lost the
 * result). Then the step is done, not vetoed as "the request assumes VM …
 * is …" (or, after a delete's last edge, "is Deleted already"). `history`
 * is the VM's history, oldest first; `caller` the data center asking.
 * Intent rows (`intent approved: …`) are not moves.
 *
 * What identifies the step is the record's own row of its report, never a
 * claim of the request:
 *
 * | the request | the step is the row that | rows after it may be |
 * | --- | --- | --- |
 * | carries plan id P | moved `from -> to` under plan P | ok rows of plan P (the plan went on) |
 * | carries no plan id (a Pulumi program, a direct caller) | moved `from -> to` under the request's own id, reported by `caller`'s DMZ client | ok rows without a plan: `caller`'s DMZ client's moves and the authority's intents (the run went on) |
 *
 * A DMZ client gives a step the same request id each time it is sent
 * (providers/dmz-client/requests.ts, stepRequestId: made from its
 * idempotency key and request), so a different request for the same edge
 * (another key, another body, another data center) never matches, and is
 * vetoed as before: a request that merely expects the VM where it was is
 * stale, and the authority stays the last word on it.
 */
export function doneAlready(req: AuthorizeRequest, to: string, vm: VmRow, history: readonly HistoryRow[], caller: string): boolean {
  if (req.from === vm.state) return false;
  const client = `dmz-client:${caller}`;
  const rows = history.filter((h) => h.vmId === vm.id);
  const moved = (h: HistoryRow) => h.outcome === 'ok' && !(h.detail ?? '').startsWith('intent approved');
  const isStep =
    req.planId !== null
      ? (h: HistoryRow) => h.planId === req.planId
      : (h: HistoryRow) => h.planId === null && h.requestId === req.requestId && h.actor === client;
  const goesOn = req.planId !== null ? (h: HistoryRow) => h.planId === req.planId : (h: HistoryRow) => h.planId === null && (h.actor === client || h.actor === 'authority');
  for (let i = rows.length - 1; i >= 0; i--) {
    const h = rows[i];
    if (moved(h) && h.from === req.from && h.to === to && isStep(h)) return true;
    if (!goesOn(h) || h.outcome !== 'ok') return false;
  }
  return false;
}

/**
 * Whether a request carrying fencing token `token` may change a VM of a
 * fleet whose fence is `fence` (undefined: never locked). docs/recovery.md,
 * "Fencing". A request without a token comes from outside any apply (a
 * Pulumi program, a script calling a DMZ client): it may not race an apply
 * that holds the fleet now, and is let through otherwise.
 *
 * | fence                  | token          | decision |
 * | ---------------------- | -------------- | -------- |
 * | none (never locked)    | any, or none   | ok |
 * | N, held now            | none           | locked: an apply holds the fleet |
 * | N, released or expired | none           | ok |
 * | held or released, N    | N              | ok (the lock's own apply) |
 * | held or released, N    | below N        | fenced: a newer apply took the lock |
 * | held or released, N    | above N        | fenced: no lock was given that token |
 * | N, the fleet a program's (managedBy) | N | manager-mismatch: fleet apply on a program's fleet |
 */
export function judgeFence(fleet: string, fence: FleetFence | undefined, token: number | undefined): Decided {
  if (!fence) return { ok: true };
  if (token === undefined) {
    if (!fence.held) return { ok: true };
    return refuse('locked', `fleet ${fleet} is locked by an apply (fencing token ${fence.token}); a request without its fencing token (a Pulumi program, a direct caller) may not change the fleet's VMs until that apply ends`);
  }
  if (token < fence.token) {
    const since = fence.held ? 'holds it now' : 'held it since';
    return refuse('fenced', `the request carries fencing token ${token}, but a newer apply locked fleet ${fleet} (token ${fence.token}, ${since}); a killed apply's run may not act after it`);
  }
  if (token > fence.token) return refuse('fenced', `the request carries fencing token ${token}, which no lock of fleet ${fleet} was given (the latest is ${fence.token})`);
  // A fencing token says the request is fleet apply's (a lock holder's; a program never locks a fleet). Fleet apply
  // leaves a program's fleet alone (plan.program-fleet), but a saved plan made before the record knew managers, or a
  // crafted one, would still change it. A request without a token (a program, a direct caller) does not say whose it
  // is, so a program's request on a fleet of fleet files is not refused here (fleets made by a program before
  // migration 12 that it could not mark stay fleet files', and their program must still be able to remove them).
  if (fence.managedBy !== null) {
    return refuse(
      'manager-mismatch',
      `fleet ${fleet} is managed by the program ${fence.managedBy} in the record, and this request comes from fleet apply (fencing token ${token}); fleet files never change a program's fleet (a plan made before the record knew its manager, or a crafted one). Change it with its program, or remove it there first (\`pulumi destroy\`)`,
    );
  }
  return { ok: true };
}

/** A create found in the record already (a repeat whose answer was lost): answered again only for the caller's data center. */
export function judgeRepeatedCreate(caller: string, existing: VmRow): Decided {
  return existing.dataCenter === caller ? { ok: true } : refuse('wrong-data-center', `VM ${existing.address} lives in data center ${existing.dataCenter}`);
}

/** Whether the VM a create-before-delete replace deposes (`old`, as the record has it) may be deposed by this create. */
export function judgeReplaced(caller: string, vm: { stack: string; fleet: string; index: number; replaces?: string }, old: VmRow | undefined): Decided {
  if (!old || old.retiredAt !== null) return refuse('replaced-not-live', `VM ${vm.replaces}, which the new VM should replace, is not live`);
  if (old.dataCenter !== caller) return refuse('wrong-data-center', `VM ${old.address} lives in data center ${old.dataCenter}; a replacement in ${caller} cannot depose it`);
  if (old.fleet !== vm.fleet || old.index !== vm.index || old.stack !== vm.stack) {
    return refuse('replaced-not-live', `VM ${vm.replaces} is ${old.address}, not ${formatVmAddress(vm.fleet, vm.index)}`);
  }
  return { ok: true };
}

/** A create whose address the record found taken by a live VM when it inserted it (`conflict`: the record's sentence). */
export function addressTaken(vm: { fleet: string; index: number }, conflict: string): Refusal {
  return refuse('address-taken', `address ${formatVmAddress(vm.fleet, vm.index)} already has a live VM: ${conflict}`);
}

/**
 * Where an approval waits for its report (Core.pending): by the caller's data
 * center and the request id, so a request id sent with another data center's
 * token (reused, replayed or guessed: a DMZ client derives its ids from the
 * step, providers/dmz-client/requests.ts) never replaces or answers this one.
 */
export function pendingKey(dataCenter: string, requestId: string): string {
  return `${dataCenter}\u0000${requestId}`;
}

/**
 * Whether `req` may be decided under its request id: not while that id is an
 * approval of another request (VM, kind, edge, or a resize's size) waiting
 * for its report (`approved`, the caller's pending entry). Deciding it would
 * replace the approval its first request is to be reported against (that
 * report refused as report-mismatch) and write a second intent row under the
 * same id. The same request again (its answer lost) passes.
 */
export function judgeRequestId(approved: Pending | undefined, req: AuthorizeRequest): Decided {
  if (!approved || sameRequest(approved, req)) return { ok: true };
  return refuse(
    'request-reused',
    `request ${req.requestId} was approved for another request (${approved.from} -> ${approved.to}, ${approved.kind}, of VM ${approved.vmId}) whose report is awaited; a request id names one request: this one (${req.kind} ${req.from ?? 'new'} -> ${req.to ?? '?'} of VM ${req.vmId}) was not decided`,
  );
}

/**
 * Why `req` may not be decided under its request id when authority replicas
 * share the record (ClaimStore.claimRequests): the record binds the id to
 * another request (`holder`: another VM, kind, edge or size), claimed by this
 * or another replica within the approvals' lifetime.
 */
export function claimRefusal(holder: { vmId: string; kind: string; from: string | null; to: string | null }, req: AuthorizeRequest): Refusal {
  return refuse(
    'request-reused',
    `request ${req.requestId} is claimed in the record for another request (${holder.from ?? 'new'} -> ${holder.to ?? '?'}, ${holder.kind}, of VM ${holder.vmId}) by an authority replica; a request id names one request: this one (${req.kind} ${req.from ?? 'new'} -> ${req.to ?? '?'} of VM ${req.vmId}) was not decided`,
  );
}

/**
 * Whether `req` is the request `first` stands for (an approval, or a request
 * being decided), sent again: the same VM, kind and edge, and a resize's size.
 */
export function sameRequest(first: { vmId: string; kind: AuthorizeRequest['kind']; from: string | null; to?: string; size?: VmSize }, req: AuthorizeRequest): boolean {
  return (
    first.vmId === req.vmId &&
    first.kind === req.kind &&
    first.from === req.from &&
    first.to === req.to &&
    (req.kind !== 'resize' || (req.size !== undefined && first.size !== undefined && historySize(req.size) === historySize(first.size)))
  );
}

/** What the authority approved and waits for the report of (see judgeReport). */
export interface Pending {
  dataCenter: string;
  vmId: string;
  from: string;
  to: string;
  kind: AuthorizeRequest['kind'];
  operation: string;
  /** ms since epoch; entries older than the credentials' lifetime are dropped. */
  at: number;
  /** A resize: the size approved (its report must name the same). */
  size?: VmSize;
  /** Found in the record (approvedEarlier): its report was taken already. */
  reported?: boolean;
  /** Remembered: the VM's version the edge was decided on (a report finding the VM past it asks the record whether it was superseded). */
  version?: number;
  /** Found in the record (approvedEarlier): the VM moved along another approval since (Approval.superseded). */
  superseded?: boolean;
  /** Approved ahead, then dropped before the report that writes its intent row (AheadQueue.drop): superseded. */
  dropped?: boolean;
  /** Found in the record: the intent row's detail (a resize's names the size, as historySize writes it). */
  detail?: string | null;
}

/**
 * The approval a report answers when the authority does not remember it
 * (it restarted in between), from the intent row the record holds for the
 * request id (FleetRecord.approvalOf): undefined when there is none, or it
 * is the create's insert row (a create has no report).
 */
export function approvedEarlier(lifecycle: Lifecycle, vm: VmRow, approval: Approval | undefined): Pending | undefined {
  if (!approval || approval.from === null) return undefined;
  const resize = approval.from === approval.to && (approval.detail ?? '').startsWith('intent approved: resize');
  return {
    dataCenter: vm.dataCenter,
    vmId: vm.id,
    from: approval.from,
    to: approval.to,
    kind: resize ? 'resize' : 'transition',
    operation: resize ? 'resize' : (lifecycle.operation(approval.from, approval.to) ?? 'none'),
    at: 0,
    reported: approval.reported,
    superseded: approval.superseded,
    detail: approval.detail,
  };
}

/**
 * Whether a report may be taken on row `vm`, before what it does is decided
 * (authority.ts settle): whether it is a resize, whether its approval
 * was reported already (`repeated`: a resent report; settle answers it
 * without a second write), and whether the VM moved along another approval
 * since this one was given (`superseded`: settle refuses it where it would
 * write, `report-superseded`: an approval is good for the VM it was decided
 * on, not for the same state reached again later), or why not. A report is taken only for a request
 * the authority approved (`approved`: remembered, or found in the record by
 * approvedEarlier), for the same VM, edge and operation.
 *
 * | refusal | when |
 * | --- | --- |
 * | unknown-vm | the record has no such VM |
 * | wrong-data-center | the VM lives in another data center |
 * | report-unapproved | the authority never approved this request id for this VM |
 * | report-mismatch | it does not match what its requestId was approved for (VM, edge, data center) |
 * | bad-request | an ok report with an error code (`code`: only a failed report names its step's error) |
 * | report-cloud-id | it sets a cloud id, and the approved edge is not the create (`createVm`) |
 * | bad-request | an ok resize report without the new size |
 * | report-size-mismatch | an ok resize report naming another size than the approved one |
 */
export function judgeReport(
  lifecycle: Lifecycle,
  caller: string,
  req: ReportRequest,
  vm: VmRow | undefined,
  approved: Pending | undefined,
): Decided<{ resize: boolean; repeated: boolean; superseded: boolean }> {
  void lifecycle;
  if (!vm) return refuse('unknown-vm', `VM ${req.vmId} is not in the record`);
  if (vm.dataCenter !== caller) return refuse('wrong-data-center', `VM ${vm.address} lives in data center ${vm.dataCenter}, not ${caller}`);
  if (!approved) return refuse('report-unapproved', `report ${req.requestId} names no request the authority approved for VM ${vm.address}`);
  if (approved.vmId !== vm.id || approved.from !== req.from || approved.to !== req.to || approved.dataCenter !== caller) {
    return refuse('report-mismatch', `report ${req.requestId} (${req.from} -> ${req.to}) does not match what was authorized (${approved.from} -> ${approved.to} of VM ${approved.vmId})`);
  }
  const resize = approved.kind === 'resize';
  if (req.code !== undefined && req.outcome !== 'failed') return refuse('bad-request', `report ${req.requestId} is ${req.outcome} but carries error code ${req.code}: only a failed report names its step's error`);
  if (req.cloudId !== undefined && approved.operation !== 'createVm') {
    return refuse('report-cloud-id', `report ${req.requestId} sets cloud id ${req.cloudId}, but only the create's report (createVm) sets a cloud id; ${approved.from} -> ${approved.to} is ${approved.operation}`);
  }
  if (req.outcome === 'ok' && resize) {
    if (!req.size) return refuse('bad-request', 'a resize report needs the new size');
    const wanted = approved.size ? historySize(approved.size) : (approved.detail ?? '').replace(/^intent approved: resize to /, '').split(';')[0];
    if (historySize(req.size) !== wanted) {
      return refuse('report-size-mismatch', `resize report ${req.requestId} names ${historySize(req.size)}, but ${wanted} was approved`);
    }
  }
  if (req.outcome === 'ok' && !resize && req.from === req.to) return refuse('report-mismatch', `report ${req.requestId} keeps the state ${req.from} but was not approved as a resize`);
  return { ok: true, resize, repeated: approved.reported === true, superseded: approved.superseded === true };
}

/** The state a failed `from` edge leads to: the diagram's edge with operation `none` from `from` into a failure state, if any. */
export function failureEdge(lifecycle: Lifecycle, from: string): string | undefined {
  return lifecycle.edges.find((e) => e.from === from && e.operation === 'none' && lifecycle.failure.includes(e.to))?.to;
}

/** The states a VM may boot in (engine/policy/lifecycle.ts; refresh never records drift into one, engine/apply/refresh.ts). */
export { bootStates } from '../policy/index.ts';

/**
 * Why a boot the record's single statement did not approve is denied,
 * explained from the row that statement saw (`vm`), in this order:
 *
 * | refusal | when |
 * | --- | --- |
 * | wrong-data-center | the body names another data center than the token; the VM lives in another |
 * | unknown-vm | the record has no such VM, or no longer tracks it (retired: `fleet state rm` while it booted) |
 * | boot-token-invalid | the token is not one the record holds for the VM (`tokenKnown` false): the caller did not prove it is that VM, so nothing else of the row is compared |
 * | cloud-id-mismatch | the cloud id is not the record's |
 * | image-mismatch | the image is not the record's real image |
 * | not-booting | the VM is in no state a `boot` edge leaves or enters |
 * | boot-token-invalid | the token was used within the repeat window, but the VM's row has moved since (`usedAtVersion`: the version that use saw): the VM left the boot it was approved for (or may have) |
 * | boot-token-invalid | the token is the VM's (or the one its last replaced unused), used or not, but the VM has left the booting states since it was issued (`leftBoot`): it was issued for a boot the VM has left |
 * | boot-token-invalid | otherwise: the token is not the VM's last (nor the one it replaced unused), or was used |
 */
export function bootDenial(
  caller: string,
  req: BootAuthorizeRequest,
  vm: VmRow | undefined,
  states: readonly string[],
  usedAtVersion?: number,
  leftBoot?: boolean,
  tokenKnown?: boolean,
): Refusal {
  if (req.dataCenter !== caller) return refuse('wrong-data-center', `the boot names data center ${req.dataCenter} but the token belongs to ${caller}`);
  if (!vm) return refuse('unknown-vm', `no VM ${req.vmId} in the record`);
  // A row retired in a booting state: `fleet state rm` forgot the VM while it booted (one write, in its state).
  if (vm.retiredAt !== null) return refuse('unknown-vm', `the record no longer tracks VM ${vm.address} (removed from it, e.g. by fleet state rm): it is not booted by this stack`);
  // The token first: a caller without one of the VM's tokens is not that VM, whatever else it got right or wrong.
  if (tokenKnown === false) {
    return refuse(
      'boot-token-invalid',
      `the boot token is not one the authority issued for VM ${vm.address} (its last boot edge's, or the one that edge replaced unused): the caller did not prove it is that VM (cloud id ${req.cloudId}, image ${req.image} as it claimed)`,
    );
  }
  if (vm.dataCenter !== caller) return refuse('wrong-data-center', `VM ${vm.address} lives in data center ${vm.dataCenter}, not ${caller}`);
  if (vm.cloudId !== req.cloudId) return refuse('cloud-id-mismatch', `cloud id ${req.cloudId} does not match the record's ${vm.cloudId ?? 'none'}`);
  if (vm.realImage !== req.image) return refuse('image-mismatch', `image ${req.image} does not match the record's ${vm.realImage ?? 'none'}`);
  if (!states.includes(vm.state)) return refuse('not-booting', `VM ${vm.address} is ${vm.state}, not booting`);
  if (usedAtVersion !== undefined) {
    return refuse(
      'boot-token-invalid',
      `VM ${vm.address} has moved since the boot token was used (its record was at version ${usedAtVersion} then, ${vm.version} now: more than that boot's own report); a used token is answered again only while the VM stays in the boot it was approved for, so booting it again needs a new boot edge`,
    );
  }
  if (leftBoot === true) {
    return refuse(
      'boot-token-invalid',
      `VM ${vm.address} has left the booting states since this boot token was issued (it went out of ${states.join(', ')} and came back): a token boots only the boot it was issued for, so booting it again needs a new boot edge`,
    );
  }
  return refuse('boot-token-invalid', 'the boot token is not valid for this VM or was used already');
}

/** `4 cpu / 16 GiB / 100 GiB disk`, as the authority writes sizes into history rows. */
export function historySize(s: VmSize): string {
  return `${s.cpu} cpu / ${s.memoryGiB} GiB / ${s.diskGiB} GiB disk`;
}
