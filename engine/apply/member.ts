// One member of an apply: its change as provider calls and requests, each
// request journalled (started, then done / failed / skipped) and reported as
// an event in step order, through its data center's provider only. The
// executor (executor.ts) decides when a member runs; this file, what it does.
import { FleetError, REASON_LIMIT, clip, diag, type Diagnostic } from '../diags/index.ts';
import type { Change, PlanDocument, Step } from '../model/index.ts';
import { overrideProof, type Override, type RunLane, type StepResult } from '../../protocol/index.ts';
import type { MemberProvider, PlannedCall, VmInputs, VmOutputs } from '../../providers/provider.ts';
import { proposedVmId } from '../model/vm-id.ts';
import type { JournalRow, StepStatus } from '../record/types.ts';
import { defaultActor, type ApplyEvent, type ApplyOptions, type MemberFailure } from './options.ts';
import { requestFailureCause, stepFailureCause, type FailureCause } from './failure-cause.ts';

/** The override a plan's --allow-destroy gives the deletion of VM `vmId`: who and why, and the admin proof when there is an admin token. */
function overrideOf(plan: PlanDocument, vmId: string, fleet: string, opts: ApplyOptions): Override {
  const by = opts.actor ?? defaultActor();
  const reason = `--allow-destroy ${fleet} in plan ${plan.id}`;
  return { allowDestroy: true, by, reason, ...(opts.adminToken ? { proof: overrideProof(opts.adminToken, vmId, plan.id, by, reason) } : {}) };
}

/** Requests a change makes: a create request per new VM plus one per step. */
export function stepCount(c: Change): number {
  const creates = c.action === 'create' || c.action === 'replace' ? 1 : 0;
  return creates + c.steps.length;
}

/** One request of a member: what the journal and events say of it. */
interface MemberRequest {
  vmId: string;
  from: string | null;
  to: string;
  operation: string;
  idempotencyKey: string;
  /** How a failure names the step. */
  label: string;
}

/**
 * One provider call of a member: create, update (transition and update) or
 * delete, over the plan's steps for one VM. `first` is the number of the
 * call's first request in the member's requests (a replace makes two calls).
 */
interface MemberCall {
  method: 'create' | 'update' | 'delete';
  vmId: string;
  steps: Step[];
  first: number;
}

/**
 * A change as provider calls, and its requests in order (the journal's
 * rows): a create's request to insert the VM, then one per diagram edge. A
 * replace is two calls in its replace order, as a Pulumi replace is: the new
 * VM's create (naming the VM it replaces when that one goes second) and the
 * old VM's delete.
 */
function memberCalls(change: Change, planId: string): { calls: MemberCall[]; requests: MemberRequest[] } {
  const newId = proposedVmId(planId, change.address);
  // A deposed VM shares its address with the current one: its keys carry its id.
  const keyOf = (seq: number) => `${planId}/${change.address}${change.deposed ? `#${change.vmId}` : ''}/${seq}`;
  const calls: MemberCall[] = [];
  const requests: MemberRequest[] = [];
  const call = (method: MemberCall['method'], vmId: string, steps: Step[]) => {
    calls.push({ method, vmId, steps, first: requests.length });
    if (method === 'create') {
      requests.push({ vmId, from: null, to: change.path[0], operation: 'insert', idempotencyKey: keyOf(requests.length), label: `create ${change.path[0]}` });
    }
    for (const st of steps) {
      requests.push({ vmId, from: st.from, to: st.to, operation: st.operation, idempotencyKey: keyOf(requests.length), label: `${st.from} -> ${st.to}` });
    }
  };
  switch (change.action) {
    case 'create':
      call('create', newId, change.steps);
      break;
    case 'transition':
    case 'update':
      call('update', change.vmId!, change.steps);
      break;
    case 'delete':
      call('delete', change.vmId!, change.steps);
      break;
    case 'replace': {
      const created = change.steps.filter((st) => st.member === 'new');
      const deleted = change.steps.filter((st) => st.member === 'old');
      if (change.replaceOrder === 'create-before-delete') {
        call('create', newId, created);
        call('delete', change.vmId!, deleted);
      } else {
        call('delete', change.vmId!, deleted);
        call('create', newId, created);
      }
      break;
    }
    case 'noop':
      break;
  }
  return { calls, requests };
}

/** What the provider is given of a change: its inputs (the create request's VM) and, for an existing VM, what it is now. */
function memberInputs(change: Change, plan: PlanDocument, owner: string): { inputs: VmInputs; current: VmOutputs } {
  const inputs: VmInputs = {
    stack: plan.stack,
    fleet: change.fleet,
    owner,
    index: change.index,
    name: change.name,
    image: change.image.logical,
    size: change.size,
    encryptedDisk: change.encryptedDisk,
    desiredState: change.to,
    specHash: change.specHash,
    planId: plan.id,
    ...(change.replaceOrder ? { replaceOrder: change.replaceOrder } : {}),
  };
  const was = change.diff?.size?.from as VmOutputs['size'] | undefined;
  const current: VmOutputs = {
    ...inputs,
    ...(was ? { size: was } : {}),
    vmId: change.vmId ?? '',
    dataCenter: change.dataCenter,
    state: change.from,
    cloudId: null,
    realImage: change.image.real,
    version: 0,
  };
  return { inputs, current };
}

/**
 * A member whose run the record could not keep (lost, or full, mid-member):
 * what the record said, and the requests that were answered but whose answer
 * the journal does not hold (their outcome is known to the data center and
 * the authority, not to this apply). `[]` when none was sent (`sent` false:
 * its `started` rows failed) or every answer was journalled (what failed was
 * remembering the spec it now matches).
 */
export class MemberUnrecorded extends Error {
  constructor(
    readonly address: string,
    override readonly cause: unknown,
    readonly unjournalled: readonly string[],
    /** Whether its requests went out (false: its `started` rows failed, so nothing was asked of the data center). */
    readonly sent = true,
  ) {
    super(`the record could not keep ${address}'s run: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

/** How long a member's answered steps' `done` rows are held at most before they are written (runMember): its progress lags its answers by at most this. */
export const HOLD_MS = 2000;

/** The detail of the `skipped` rows of a member whose requests were never sent because the apply stopped first. */
export const NOT_SENT_DETAIL = 'not sent: the apply stopped before this member\'s requests went out';
/** Likewise, because the apply was interrupted first (its signal: fleet apply's Ctrl-C or SIGTERM). */
export const NOT_SENT_INTERRUPTED_DETAIL = 'not sent: the apply was interrupted before this member\'s requests went out';

/**
 * Carries one change out through its data center's provider; calls `answered` once its last request has its answer
 * (before the journal rows of it are written). Throws MemberUnrecorded when the record fails under it.
 * `halted`: why the apply will start no further member, if it will not (executor.ts: it stopped mid-way, or its
 * signal was aborted): the detail of the `skipped` rows below. Asked once the member's `started` rows are
 * committed, just before its requests would go out. A member given its place before the stop or the interrupt
 * whose `started` rows were still being written then (a slow record, or one retried through an outage) sends
 * nothing: its rows are closed `skipped` and it answers `notSent` (counted as not started), as the apply's stop
 * and fleet apply's interrupt notice say.
 */
export async function runMember(
  change: Change,
  provider: MemberProvider,
  opts: ApplyOptions,
  emit: (e: ApplyEvent) => void,
  answered: () => void,
  lane: RunLane | undefined,
  fencingToken: number,
  halted: () => string | undefined = () => undefined,
): Promise<{ steps: number; skipped: number; elapsedMs: number; failure?: MemberFailure; notSent?: true }> {
  const { plan, record } = opts;
  const began = performance.now();
  let elapsedMs = 0;
  const { calls, requests } = memberCalls(change, plan.id);
  const { inputs, current } = memberInputs(change, plan, opts.owners[change.fleet] ?? 'unknown');
  /** Request k's journal row of `status` (one shape for every row: the journal writer's reads of them stay monomorphic). */
  const row = (k: number, status: StepStatus, detail: string | null): Omit<JournalRow, 'at'> => {
    const r = requests[k];
    return { planId: plan.id, address: change.address, seq: k, vmId: r.vmId, from: r.from ?? '', to: r.to, idempotencyKey: r.idempotencyKey, status, detail };
  };
  const stepEvent = (k: number, status: 'started' | 'done' | 'failed', detail?: string): ApplyEvent => {
    const r = requests[k];
    return { type: 'step', address: change.address, dataCenter: change.dataCenter, from: r.from, to: r.to, operation: r.operation, status, ...(detail !== undefined ? { detail } : {}) };
  };

  // The member's requests go out together (a run per provider call); each is
  // journalled `started` before that (one record call: one INSERT), and `failed`
  // as its answer comes in, `done` held (below). Journal rows of one turn share one
  // INSERT (group commit); events follow the commit of what they report, in
  // step order.
  try {
    await record.journal(requests.map((_, k) => row(k, 'started', null)));
  } catch (err) {
    throw new MemberUnrecorded(change.address, err, [], false);
  }
  const notSent = halted();
  if (notSent !== undefined) {
    // Should the record fail again (or the process be gone first), the next apply of its fleet closes them (closeInterrupted).
    await record.journal(requests.map((_, k) => row(k, 'skipped', notSent))).catch(() => {});
    answered();
    return { steps: 0, skipped: requests.length, elapsedMs: Math.round(performance.now() - began), notSent: true };
  }
  emit(stepEvent(0, 'started'));
  /** Requests whose answer's journal row is committed. */
  const committed = new Set<number>();
  const answerRow = (k: number, row: Promise<void>): Promise<void> => row.then(() => void committed.add(k));
  /** The answered requests (below `upTo`) whose answer the journal does not hold, once `written` failed. */
  const unrecorded = (err: unknown, upTo: number) =>
    new MemberUnrecorded(
      change.address,
      err,
      requests.slice(0, upTo).flatMap((r, k) => (committed.has(k) ? [] : [r.label])),
    );
  let replies = 0;
  /** Which requests have their answer: a run that returns without one for each (a provider's bug) fails the member. */
  const heard = new Uint8Array(requests.length);
  let done = 0;
  let failure: { k: number; d: Diagnostic; cause: FailureCause } | undefined;
  let written: Promise<unknown> = Promise.resolve();
  const after = (row: Promise<void>, then: () => void) => {
    written = Promise.all([written, row]).then(then);
    // Awaited once the member's calls are answered. A journal write that
    // fails before that (the record's disk full) must not be an unhandled
    // rejection meanwhile: it killed the CLI with a stack trace, mid-apply.
    written.catch(() => {});
  };
  // The `done` rows of a run's answers are held and written together (one
  // record call), not one per answer: at the member's end, before a failure's
  // row, or HOLD_MS after the first one held (a step of minutes still has the
  // ones before it journalled, and shown, within HOLD_MS). A CLI killed
  // meanwhile leaves them `started`; the next apply's closeInterrupted closes
  // those its record shows carried out `done` (docs/recovery.md, "Crashes").
  // Their events follow the commit, in step order, as every row's do.
  let held: number[] = [];
  let holding: NodeJS.Timeout | undefined;
  const flush = () => {
    if (holding !== undefined) clearTimeout(holding);
    holding = undefined;
    if (held.length === 0) return;
    const ks = held;
    held = [];
    after(
      record.journal(ks.map((k) => row(k, 'done', null))).then(() => {
        for (const k of ks) committed.add(k);
      }),
      () => {
        for (const k of ks) {
          emit(stepEvent(k, 'done'));
          if (k + 1 < requests.length) emit(stepEvent(k + 1, 'started'));
        }
      },
    );
  };
  const onAnswer = (k: number, result: StepResult) => {
    replies = k + 1;
    heard[k] = 1;
    if (result.outcome === 'ok') {
      done++;
      held.push(k);
      holding ??= setTimeout(flush, HOLD_MS);
      return;
    }
    flush();
    const r = requests[k];
    const code = result.outcome === 'vetoed' ? 'apply.step-vetoed' : 'apply.step-failed';
    // What the authority or the cloud said, clipped (REASON_LIMIT, unseen characters escaped) in the diagnostic, the
    // journal and the event alike: a line break in it forged a line wherever one was shown as it came.
    const why = clip(result.outcome === 'vetoed' ? result.reason : (result.error?.message ?? result.reason), REASON_LIMIT);
    const d = diag(code, `${r.from ?? '(new)'} -> ${r.to} in ${change.dataCenter}: ${why}`, { address: change.address });
    failure = { k, d, cause: result.outcome === 'vetoed' ? 'vetoed' : stepFailureCause(result.error) };
    after(answerRow(k, record.journal(row(k, 'failed', d.detail))), () => emit(stepEvent(k, 'failed', why)));
  };
  try {
    for (const c of calls) {
      const planned: PlannedCall = {
        planId: plan.id,
        steps: c.steps,
        key: (k) => requests[c.first + k].idempotencyKey,
        onStep: (k, result) => onAnswer(c.first + k, result),
        fencingToken,
        ...(lane ? { lane } : {}),
        ...(c.method === 'create' ? { vmId: c.vmId, ...(change.action === 'replace' && change.replaceOrder === 'create-before-delete' && change.vmId ? { replaces: change.vmId } : {}) } : {}),
        ...(c.method === 'delete' && plan.options.allowDestroy.includes(change.fleet) ? { override: overrideOf(plan, c.vmId, change.fleet, opts) } : {}),
      };
      if (c.method === 'create') await provider.create(inputs, planned);
      else if (c.method === 'update') await provider.update(c.vmId, current, inputs, planned);
      else await provider.delete(c.vmId, { ...current, vmId: c.vmId }, planned);
    }
    flush();
  } catch (err) {
    flush();
    // A step answered not ok: the provider throws what onAnswer has recorded already.
    // Otherwise the first unanswered step could not be carried out (rejected, or the DMZ client unreachable).
    if (!failure) {
      const d = err instanceof FleetError ? err.diagnostics[0] : diag('apply.step-failed', clip(String(err instanceof Error ? err.message : err), REASON_LIMIT));
      const k = replies;
      failure = { k, d: { ...d, address: change.address }, cause: requestFailureCause(d) };
      after(record.journal(row(k, 'failed', d.detail)).catch(() => {}), () => emit(stepEvent(k, 'failed', d.detail)));
    }
  }
  // Every call returned, none failed: each request must have its answer. The real client answers every step or
  // throws; a provider that returns with a step unanswered (a bug) would have left that step's row `started` and
  // counted the member done. Its first unanswered step fails it instead (its outcome is unknown: the data center
  // may or may not have carried it out; the next apply sends it again under the same idempotency key).
  const unanswered = failure ? -1 : heard.indexOf(0);
  if (unanswered >= 0) {
    const k = unanswered;
    const r = requests[k];
    const d = diag(
      'apply.step-unanswered',
      `${r.from ?? '(new)'} -> ${r.to} in ${change.dataCenter}: the provider of ${change.dataCenter} returned from ${change.address}'s run without an answer to this step (request ${r.idempotencyKey}), nor an error: whether it was carried out is not known.`,
      { address: change.address },
    );
    failure = { k, d, cause: 'unreachable' };
    after(record.journal(row(k, 'failed', d.detail)).catch(() => {}), () => emit(stepEvent(k, 'failed', d.detail)));
  }
  elapsedMs = Math.round(performance.now() - began);
  answered();
  if (failure) {
    // Sent with the run but never carried out (those answered after an unanswered one keep their answer's row).
    const { k } = failure;
    const detail = `not carried out: ${requests[k].label} failed`;
    let skipped = 0;
    for (let s = k + 1; s < requests.length; s++) {
      if (heard[s]) continue;
      skipped++;
      after(record.journal(row(s, 'skipped', detail)).catch(() => {}), () => {});
    }
    await written.catch((err: unknown) => {
      throw unrecorded(err, k + 1);
    });
    return {
      steps: done,
      skipped,
      elapsedMs,
      failure: { address: change.address, dataCenter: change.dataCenter, action: change.action, step: requests[failure.k].label, diagnostic: failure.d, cause: failure.cause },
    };
  }
  await written.catch((err: unknown) => {
    throw unrecorded(err, requests.length);
  });
  // The member now is what its spec asks for: remember that spec, so the next
  // plan sees no difference (the record cannot tell a hardware change otherwise).
  // A VM created here needs no look: its create request carried this spec
  // hash and desired state, and the authority inserted it with them (one
  // record read per new VM saved).
  const needsCreate = change.action === 'create' || change.action === 'replace';
  if (change.action !== 'delete' && !needsCreate) {
    const id = change.vmId!;
    try {
      const row = await record.getVm(id);
      if (row && (row.specHash !== change.specHash || row.desiredState !== change.to)) {
        await record.updateVm(id, row.version, { specHash: change.specHash, desiredState: change.to }, { actor: opts.actor ?? defaultActor(), planId: plan.id });
      }
    } catch (err) {
      // Every answer is journalled; the next plan sees the spec this member now matches as a change still to make.
      throw new MemberUnrecorded(change.address, err, []);
    }
  }
  return { steps: done, skipped: 0, elapsedMs };
}
