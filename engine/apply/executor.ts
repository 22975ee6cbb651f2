// The apply executor: carries a plan out exactly, member by member, one
// diagram edge per request, through the DMZ client of the member's data center.
//
// What must stay true:
// - Each request goes to the client of the data center where the VM is to be
//   created or already lives (the plan's `dataCenter`); the executor never asks
//   one data center about another's VM.
// - Each step is journalled `started` before its call and `done`/`failed`
//   after, under an idempotency key derived from (plan, address, step), so a
//   retried request never acts twice and an interrupted apply leaves a trail.
//   A step's `done` row goes into the record together with the next step's
//   `started` row (one journal batch, one round trip between two requests
//   instead of two), the last one when the member ends; its `done` event is
//   emitted once that row is committed.
// - A member that fails stops there; the other members go on.
// - Steps of one member run in order; members run in parallel, at most
//   `parallelism` at a time per data center. With a client that has lanes
//   (batch mode), as many members again are sent ahead: the DMZ client
//   holds each until one of the apply's `parallelism` places in its data
//   center is free (providers/dmz-client/lanes.ts), so a place never waits
//   for our journal, request or the authority between two members.
import { createHash, randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { FleetError, diag, type Diagnostic } from '../diags/index.ts';
import { PLAN_FORMAT_VERSION, type Change, type PlanDocument, type Step } from '../model/index.ts';
import { planDigest } from '../plan/digest.ts';
import { processAlive } from '../record/index.ts';
import type { FleetRecord, LockHandle } from '../record/types.ts';
import { overrideProof, type Override, type RunLane, type StepResult } from '../../protocol/index.ts';
import type { MemberProvider, PlannedCall, VmInputs, VmOutputs } from '../../providers/provider.ts';
import { runWaves, type MemberOutcome, type RolloutEvent, type RolloutReport } from './rollout.ts';

export type ApplyEvent =
  | { type: 'start'; planId: string; members: number; steps: number; perDataCenter: Record<string, { members: number; steps: number }> }
  | { type: 'step'; address: string; dataCenter: string; from: string | null; to: string; operation: string; status: 'started' | 'done' | 'failed'; detail?: string }
  /** elapsedMs: from the member's first journal row to its last answer. */
  | { type: 'member'; address: string; dataCenter: string; action: Change['action']; status: 'done' | 'failed'; elapsedMs: number; detail?: string }
  | { type: 'lock-broken'; lockId: string; fleet: string; holder: string }
  /** A rollout wave starts / ends (rollout.ts). */
  | RolloutEvent
  /** notStarted: members never started because the apply was interrupted (`signal`); present only then. */
  | { type: 'summary'; planId: string; succeeded: number; failed: number; steps: number; stepsFailed: number; stepsSkipped: number; elapsedMs: number; notStarted?: number };

export interface MemberFailure {
  address: string;
  dataCenter: string;
  action: Change['action'];
  step: string;
  diagnostic: Diagnostic;
}

export interface ApplyResult {
  planId: string;
  succeeded: number;
  failed: MemberFailure[];
  /** Requests carried out (answered ok). */
  steps: number;
  /** Requests that failed or were vetoed (one per failed member). */
  stepsFailed: number;
  /** Requests sent with a failed member's run but never carried out. */
  stepsSkipped: number;
  elapsedMs: number;
  /** Members never started: `signal` was aborted, or a rollout stopped (0 when neither). */
  notStarted: number;
  /** What each fleet's rollout did (empty when the plan has none). */
  rollouts: RolloutReport[];
}

export interface ApplyOptions {
  plan: PlanDocument;
  record: FleetRecord;
  /**
   * The provider of each data center, by name: the only way the executor
   * reaches a DMZ client (providers/provider.ts; engine/apply may not import
   * providers/client.ts).
   */
  providers: ReadonlyMap<string, MemberProvider>;
  /** Owner of each fleet (create requests carry it for quotas). */
  owners: Readonly<Record<string, string>>;
  /**
   * Whether each fleet's spec says `protect: true`: written to the record
   * for the plan's fleets that have a spec (FleetRecord.setFleetProtection)
   * before any step, so the authority enforces it, and a fleet whose spec
   * is removed later stays protected.
   */
  protection?: Readonly<Record<string, boolean>>;
  /** The admin token (FLEET_ADMIN_TOKEN): overrides carry a proof made with it (protocol/hash.ts overrideProof). Never logged. */
  adminToken?: string;
  /** Concurrent members per data center. */
  parallelism: number;
  /** Who applies, for history and locks. Default user@host. */
  actor?: string;
  lockTimeoutMs?: number;
  leaseMs?: number;
  onEvent?: (e: ApplyEvent) => void;
  /**
   * Aborted: no further member starts; the members started go on to their
   * end (their runs are at the DMZ clients already), are journalled, and the
   * plan is recorded as interrupted (fleet apply's first Ctrl-C).
   */
  signal?: AbortSignal;
  /**
   * Locks taken already (fleet apply without a plan file locks the fleets in
   * scope first and plans under them: lock, then plan). They must cover every
   * fleet of the plan; applyPlan heartbeats them and releases them at its end.
   * Without it, applyPlan takes the plan's locks itself (a saved plan).
   */
  lock?: LockHandle;
}

export function defaultActor(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    /* no passwd entry (containers) */
  }
  return `${user}@${hostname()}`;
}

/** Recorded with the applied plan; one function with the plan's pull-request comment, which shows it. */
export { planDigest };

/** A UUID derived from plan id and address, so a re-sent create proposes the same VM id. */
export function proposedVmId(planId: string, address: string): string {
  const h = createHash('sha256').update(`${planId}\0${address}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * Checks that the plan may still be applied: not blocked by a mandatory
 * violation, and nothing it touches changed in the record since it was made.
 * `fresh`: the plan was made just now under the apply's own locks, so a
 * change is a write that took no lock (a refresh), not a stale saved plan:
 * it says so.
 */
export async function checkApplicable(plan: PlanDocument, record: FleetRecord, opts: { fresh?: boolean } = {}): Promise<void> {
  if (plan.formatVersion !== PLAN_FORMAT_VERSION) {
    throw new FleetError(diag('apply.plan-format', `The plan has formatVersion ${JSON.stringify(plan.formatVersion)}; this fleet reads ${JSON.stringify(PLAN_FORMAT_VERSION)}.`));
  }
  if (plan.blocked) {
    const n = plan.policy.violations.filter((v) => v.level === 'mandatory').length;
    throw new FleetError(diag('apply.plan-blocked', `The plan has ${n} mandatory policy violation${n === 1 ? '' : 's'}; fix them and plan again.`));
  }
  const stale = await record.checkBasis(plan.stack, plan.basis);
  if (stale.length > 0) {
    const list = stale
      .slice(0, 10)
      .map((s) => `${s.kind} ${s.key} (planned at version ${s.expected}, now ${s.actual ?? 'gone'})`)
      .join('; ');
    const more = stale.length > 10 ? `; and ${stale.length - 10} more` : '';
    if (opts.fresh) {
      throw new FleetError(
        diag('apply.record-changed', `The record changed while plan ${plan.id} was made under this apply's locks, by a write that takes no lock (\`fleet refresh\`): ${list}${more}. Run \`fleet apply\` again.`),
      );
    }
    throw new FleetError(diag('apply.stale-plan', `The record changed since plan ${plan.id} was made: ${list}${more}. Run \`fleet plan\` again.`));
  }
}

/** At most `limit` holders at a time; the others wait in arrival order. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(limit: number) {
    this.free = Math.max(1, limit);
  }
  /** Resolves with the slot's release (idempotent) once one is free. */
  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}

/**
 * The rollout gate: the member's VM is in its planned state in the record
 * (a replace's new VM, under the id apply proposed for it). For Running that
 * means its agent reported ready: the awaitReady step reached the record.
 */
async function memberHealthy(record: FleetRecord, plan: PlanDocument, c: Change): Promise<boolean> {
  const id = c.action === 'replace' ? proposedVmId(plan.id, c.address) : c.vmId;
  if (!id) return false;
  const vm = await record.getVm(id);
  return vm !== undefined && vm.state === c.to;
}

export async function applyPlan(opts: ApplyOptions): Promise<ApplyResult> {
  const { plan, record } = opts;
  const actor = opts.actor ?? defaultActor();
  const emit = opts.onEvent ?? (() => {});
  const started = Date.now();
  const work = plan.changes.filter((c) => c.action !== 'noop');

  for (const c of work) {
    if (!opts.providers.has(c.dataCenter)) {
      throw new FleetError(diag('apply.no-client', `No DMZ client for data center ${c.dataCenter}, where ${c.address} lives; check the stack's dataCenters.`, { address: c.address }));
    }
  }

  let lock: LockHandle;
  if (opts.lock) {
    lock = opts.lock;
    const held = new Set(lock.fleets);
    const loose = plan.fleets.filter((f) => !held.has(f));
    if (loose.length > 0) {
      await lock.release().catch(() => {});
      throw new FleetError(diag('cli.internal', `plan ${plan.id} acts on fleet${loose.length > 1 ? 's' : ''} ${loose.join(', ')}, which the locks taken before planning do not hold; plan again.`));
    }
  } else {
    lock = await lockFleets(record, plan.stack, plan.fleets, { actor, planId: plan.id, ...(opts.lockTimeoutMs !== undefined ? { timeoutMs: opts.lockTimeoutMs } : {}), ...(opts.leaseMs ? { leaseMs: opts.leaseMs } : {}), onEvent: emit });
  }
  const leaseMs = opts.leaseMs ?? 30_000;
  let lockLost: unknown;
  const beat = setInterval(() => {
    lock.heartbeat().catch((e: unknown) => (lockLost ??= e));
  }, Math.max(50, Math.floor(leaseMs / 3)));
  beat.unref();

  const failures: MemberFailure[] = [];
  let succeeded = 0;
  let steps = 0;
  let stepsFailed = 0;
  let stepsSkipped = 0;
  let notStarted = 0;
  let rollouts: RolloutReport[] = [];
  const interrupted = () => opts.signal?.aborted === true;
  try {
    await checkApplicable(plan, record, { fresh: opts.lock !== undefined });
    for (const fleet of plan.fleets) {
      const p = opts.protection?.[fleet];
      if (p !== undefined) await record.setFleetProtection(plan.stack, fleet, opts.owners[fleet] ?? 'unknown', p);
    }
    await record.startPlan({ id: plan.id, stack: plan.stack, digest: planDigest(plan), who: actor, startedAt: new Date().toISOString() });

    const byDc = new Map<string, Change[]>();
    for (const c of work) {
      const list = byDc.get(c.dataCenter) ?? [];
      list.push(c);
      byDc.set(c.dataCenter, list);
    }
    const perDataCenter: Record<string, { members: number; steps: number }> = {};
    for (const [dc, list] of byDc) perDataCenter[dc] = { members: list.length, steps: list.reduce((n, c) => n + stepCount(c), 0) };
    emit({ type: 'start', planId: plan.id, members: work.length, steps: work.reduce((n, c) => n + stepCount(c), 0), perDataCenter });

    // A member holds its data center's slot until its last step answered;
    // what it still writes after that (its last journal rows, the spec it now
    // matches) goes on beside the next member's start. Waves (rollout.ts)
    // decide which members may start at all; the slots bound how many run.
    const tails: Promise<void>[] = [];
    const lane = { id: randomUUID(), width: opts.parallelism };
    const slots = new Map([...byDc.keys()].map((dc) => [dc, new Slots(opts.providers.get(dc)!.lanes ? 2 * opts.parallelism : opts.parallelism)]));
    const runOne = async (change: Change): Promise<MemberOutcome> => {
      const dc = change.dataCenter;
      const provider = opts.providers.get(dc)!;
      const release = await slots.get(dc)!.acquire();
      if (interrupted() || lockLost) {
        release();
        return { ok: false, notStarted: true };
      }
      let failed = false;
      const tail = runMember(change, provider, opts, emit, release, provider.lanes ? lane : undefined, lock.fencingToken).then((r) => {
        steps += r.steps;
        stepsFailed += r.failure ? 1 : 0;
        stepsSkipped += r.skipped;
        const member = { type: 'member', address: change.address, dataCenter: dc, action: change.action, elapsedMs: r.elapsedMs } as const;
        if (r.failure) {
          failed = true;
          failures.push(r.failure);
          emit({ ...member, status: 'failed', detail: r.failure.diagnostic.detail });
        } else {
          succeeded++;
          emit({ ...member, status: 'done' });
        }
      });
      const settled = tail.finally(release);
      // Seen by Promise.all(tails) below; handled now so it never counts as unhandled meanwhile.
      settled.catch(() => {});
      tails.push(settled);
      await settled.catch(() => {
        failed = true;
      });
      return { ok: !failed };
    };
    const ran = await runWaves(work, {
      plan,
      run: runOne,
      healthy: (c) => memberHealthy(record, plan, c),
      emit,
      interrupted,
    });
    rollouts = ran.reports;
    notStarted = ran.notStarted;
    await Promise.all(tails);
    if (lockLost) throw lockLost;
    await record.finishPlan(plan.id, notStarted > 0 ? 'interrupted' : failures.length ? 'failed' : 'succeeded');
  } finally {
    clearInterval(beat);
    await lock.release().catch(() => {});
  }
  const elapsedMs = Date.now() - started;
  failures.sort((a, b) => a.address.localeCompare(b.address, 'en', { numeric: true }));
  emit({ type: 'summary', planId: plan.id, succeeded, failed: failures.length, steps, stepsFailed, stepsSkipped, elapsedMs, ...(notStarted > 0 ? { notStarted } : {}) });
  return { planId: plan.id, succeeded, failed: failures, steps, stepsFailed, stepsSkipped, elapsedMs, notStarted, rollouts };
}


/**
 * Takes the locks of `fleets` (all or none). A lock held by a process of
 * this same host that no longer runs (an apply killed with SIGKILL) cannot
 * be renewed by anyone, so it is broken at once instead of making the next
 * apply wait for its lease to run out; a holder on another host is only ever
 * waited for (up to `timeoutMs`). fleet apply without a plan file calls this
 * before it plans (lock, then plan), so a waiter plans on what the holder
 * left; applyPlan calls it for a saved plan.
 * Breaking it is safe: this apply's lock gets a newer fencing token, and the
 * authority vetoes the dead apply's runs still queued at a DMZ client
 * (docs/recovery.md, "Fencing").
 */
export async function lockFleets(
  record: FleetRecord,
  stack: string,
  fleets: readonly string[],
  opts: { actor: string; planId: string; timeoutMs?: number; leaseMs?: number; onEvent?: (e: ApplyEvent) => void },
): Promise<LockHandle> {
  const take = () =>
    record.acquireLocks(stack, fleets, { who: opts.actor, host: hostname(), planId: opts.planId, pid: process.pid }, {
      timeoutMs: opts.timeoutMs ?? 0,
      ...(opts.leaseMs ? { leaseMs: opts.leaseMs } : {}),
    });
  try {
    return await take();
  } catch (err) {
    if (!(err instanceof FleetError) || err.diagnostics[0]?.code !== 'record.lock-held') throw err;
    const scope = new Set(fleets);
    const dead = (await record.listLocks(stack)).filter((l) => scope.has(l.fleet) && l.host === hostname() && l.pid !== process.pid && !processAlive(l.pid));
    if (dead.length === 0) throw err;
    for (const l of dead) {
      await record.forceUnlock(l.lockId);
      opts.onEvent?.({ type: 'lock-broken', lockId: l.lockId, fleet: l.fleet, holder: `${l.who} pid ${l.pid}` });
    }
    return take();
  }
}

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

/** Carries one change out through its data center's provider; calls `answered` once its last request has its answer (before the journal rows of it are written). */
async function runMember(
  change: Change,
  provider: MemberProvider,
  opts: ApplyOptions,
  emit: (e: ApplyEvent) => void,
  answered: () => void,
  lane: RunLane | undefined,
  fencingToken: number,
): Promise<{ steps: number; skipped: number; elapsedMs: number; failure?: MemberFailure }> {
  const { plan, record } = opts;
  const began = performance.now();
  let elapsedMs = 0;
  const { calls, requests } = memberCalls(change, plan.id);
  const { inputs, current } = memberInputs(change, plan, opts.owners[change.fleet] ?? 'unknown');
  const rows = requests.map((r, seq) => ({
    planId: plan.id,
    address: change.address,
    seq,
    vmId: r.vmId,
    from: r.from ?? '',
    to: r.to,
    idempotencyKey: r.idempotencyKey,
  }));
  const stepEvent = (k: number, status: 'started' | 'done' | 'failed', detail?: string): ApplyEvent => {
    const r = requests[k];
    return { type: 'step', address: change.address, dataCenter: change.dataCenter, from: r.from, to: r.to, operation: r.operation, status, ...(detail !== undefined ? { detail } : {}) };
  };

  // The member's requests go out together (a run per provider call); each is
  // journalled `started` before that (one journal batch), and `done` or
  // `failed` as its answer comes in. Journal rows of one turn share one
  // INSERT (group commit); events follow the commit of what they report, in
  // step order.
  await Promise.all(rows.map((row) => record.journal({ ...row, status: 'started', detail: null })));
  emit(stepEvent(0, 'started'));
  let replies = 0;
  let done = 0;
  let failure: { k: number; d: Diagnostic } | undefined;
  let written: Promise<unknown> = Promise.resolve();
  const after = (row: Promise<void>, then: () => void) => {
    written = Promise.all([written, row]).then(then);
  };
  const onAnswer = (k: number, result: StepResult) => {
    replies = k + 1;
    if (result.outcome === 'ok') {
      done++;
      after(record.journal({ ...rows[k], status: 'done', detail: null }), () => {
        emit(stepEvent(k, 'done'));
        if (k + 1 < requests.length) emit(stepEvent(k + 1, 'started'));
      });
      return;
    }
    const r = requests[k];
    const code = result.outcome === 'vetoed' ? 'apply.step-vetoed' : 'apply.step-failed';
    const why = result.outcome === 'vetoed' ? result.reason : (result.error?.message ?? result.reason);
    const d = diag(code, `${r.from ?? '(new)'} -> ${r.to} in ${change.dataCenter}: ${why}`, { address: change.address });
    failure = { k, d };
    after(record.journal({ ...rows[k], status: 'failed', detail: d.detail }), () => emit(stepEvent(k, 'failed', why)));
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
  } catch (err) {
    // A step answered not ok: the provider throws what onAnswer has recorded already.
    // Otherwise the first unanswered step could not be carried out (rejected, or the DMZ client unreachable).
    if (!failure) {
      const d = err instanceof FleetError ? err.diagnostics[0] : diag('apply.step-failed', String(err instanceof Error ? err.message : err));
      const k = replies;
      failure = { k, d: { ...d, address: change.address } };
      after(record.journal({ ...rows[k], status: 'failed', detail: d.detail }).catch(() => {}), () => emit(stepEvent(k, 'failed', d.detail)));
    }
  }
  elapsedMs = Math.round(performance.now() - began);
  answered();
  if (failure) {
    // Sent with the run but never carried out.
    const { k } = failure;
    const detail = `not carried out: ${requests[k].label} failed`;
    for (const row of rows.slice(k + 1)) after(record.journal({ ...row, status: 'skipped', detail }).catch(() => {}), () => {});
    await written;
    return {
      steps: done,
      skipped: rows.length - k - 1,
      elapsedMs,
      failure: { address: change.address, dataCenter: change.dataCenter, action: change.action, step: requests[failure.k].label, diagnostic: failure.d },
    };
  }
  await written;
  // The member now is what its spec asks for: remember that spec, so the next
  // plan sees no difference (the record cannot tell a hardware change otherwise).
  // A VM created here needs no look: its create request carried this spec
  // hash and desired state, and the authority inserted it with them (one
  // record read per new VM saved).
  const needsCreate = change.action === 'create' || change.action === 'replace';
  if (change.action !== 'delete' && !needsCreate) {
    const id = change.vmId!;
    const row = await record.getVm(id);
    if (row && (row.specHash !== change.specHash || row.desiredState !== change.to)) {
      await record.updateVm(id, row.version, { specHash: change.specHash, desiredState: change.to }, { actor: opts.actor ?? defaultActor(), planId: plan.id });
    }
  }
  return { steps: done, skipped: 0, elapsedMs };
}
