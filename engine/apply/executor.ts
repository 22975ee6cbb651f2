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
//
// What the apply is given and what it says (options, events, result) are in
// options.ts; one member's work (its provider calls, journal rows and
// events) in member.ts.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { FleetError, REASON_LIMIT, clip, diag, type Diagnostic } from '../diags/index.ts';
import { PLAN_FORMAT_VERSION, type Change, type FleetChange, type PlanDocument } from '../model/index.ts';
import { planDigest } from '../plan/digest.ts';
import { holderGone } from '../record/locks.ts';
import type { AppliedPlan } from '../record/shapes.ts';
import type { FleetRecord, LockHandle } from '../record/types.ts';
import { proposedVmId } from '../model/vm-id.ts';
import { MemberUnrecorded, NOT_SENT_DETAIL, NOT_SENT_INTERRUPTED_DETAIL, runMember, stepCount } from './member.ts';
import { defaultActor, type ApplyEvent, type ApplyOptions, type ApplyResult, type MemberFailure } from './options.ts';
import { runWaves, type MemberOutcome, type RolloutReport } from './rollout.ts';

export * from './options.ts';
export { stepCount } from './member.ts';
export { proposedVmId } from '../model/vm-id.ts';

/** Recorded with the applied plan; one function with the plan's pull-request comment, which shows it. */
export { planDigest };

/**
 * Checks that the plan may still be applied: not blocked by a mandatory
 * violation, and nothing it touches changed in the record since it was made.
 * `fresh`: the plan was made just now under the apply's own locks, so a
 * change is a write that took no lock (a refresh), not a stale saved plan:
 * it says so.
 */
export async function checkApplicable(plan: PlanDocument, record: FleetRecord, opts: { fresh?: boolean } = {}): Promise<void> {
  if (plan.formatVersion !== PLAN_FORMAT_VERSION) {
    throw new FleetError(diag('apply.plan-format', `The plan has formatVersion ${clip(JSON.stringify(plan.formatVersion) ?? String(plan.formatVersion))}; this fleet reads ${JSON.stringify(PLAN_FORMAT_VERSION)}.`));
  }
  if (plan.blocked) {
    const mandatory = plan.policy.violations.filter((v) => v.level === 'mandatory');
    const n = mandatory.length;
    const which = mandatory.slice(0, 3).map((v) => `${v.policy} at ${v.address}`);
    const shown = n > 0 ? ` (${which.join(', ')}${n > 3 ? `, and ${n - 3} more` : ''})` : '';
    throw new FleetError(
      diag('apply.plan-blocked', `The plan has ${n} mandatory policy violation${n === 1 ? '' : 's'}${shown}; resolve ${n === 1 ? 'it' : 'them'} and plan again.`, { address: plan.stack }),
    );
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
        diag('apply.record-changed', `The record changed while plan ${plan.id} was made under this apply's locks, by a write that takes no lock (\`fleet refresh\`): ${list}${more}. Run \`fleet apply\` again.`, { address: plan.stack }),
      );
    }
    // The plan's own apply may be what moved its basis (a saved plan applied again: a CI job re-run after its runner was
    // lost, or after it failed): "the record changed" alone read as if another apply had raced it.
    const [applied] = await record.listPlans(plan.stack, { id: plan.id, limit: 1 });
    // Its apply still `running` is one that died (this check runs under the locks of its fleets, which a live apply of
    // the plan would hold): the list of applies (fleet ui) showed it running for good. Recorded as what it is.
    if (applied?.result === 'running') await record.finishPlan(plan.id, 'interrupted').catch(() => {});
    if (applied) throw new FleetError(diag('apply.stale-plan', appliedAlready(plan.id, applied, `${list}${more}`), { address: plan.stack }));
    throw new FleetError(diag('apply.stale-plan', `The record changed since plan ${plan.id} was made: ${list}${more}. Run \`fleet plan\` again.`, { address: plan.stack }));
  }
}

/**
 * The stale-plan detail of a saved plan that was applied before: a saved plan
 * is applied once, and how to go on depends on how that apply ended.
 *
 * | its apply    | what to do                                                        |
 * | ------------ | ----------------------------------------------------------------- |
 * | succeeded    | nothing: `fleet plan` shows whether anything is left               |
 * | failed       | `fleet apply`: a fresh plan recovers the failed members            |
 * | interrupted, | `fleet apply`: a fresh plan continues from the record (its journal  |
 * | running      | says where the killed or stopped apply left each VM)                |
 *
 * `running` here is an apply that died (killed, its runner lost): one still
 * running holds the locks this check runs under.
 */
function appliedAlready(id: string, applied: AppliedPlan, changed: string): string {
  const by = `by ${applied.who}, started ${applied.startedAt}`;
  const once = `a saved plan is applied once, and the record moved since it was made: ${changed}.`;
  const next = 'Run `fleet apply` (a fresh plan, which continues from what the record holds), or `fleet plan --out FILE` for a new plan to review.';
  switch (applied.result) {
    case 'succeeded':
      return `Plan ${id} was applied already (${by}; it succeeded): ${once} Run \`fleet plan\` to see whether anything is left to do.`;
    case 'failed':
      return `Plan ${id} was applied already (${by}) and some of its members failed: ${once} ${next}`;
    default:
      return `Plan ${id} was applied in part already: its apply (${by}) stopped before it ended (killed, or interrupted): ${once} ${next}`;
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

/** The step a member failed at when its steps all answered ok but its VM is not in its planned state (memberUnhealthy). */
export const HEALTH_CHECK_STEP = 'the health check';

/**
 * The rollout gate: the member's VM is in its planned state in the record
 * (a replace's new VM, under the id apply proposed for it). For Running that
 * means its agent reported ready: the awaitReady step reached the record.
 * Asked once every step of the member answered ok; returns the
 * apply.member-unhealthy diagnostic (what the record holds instead) when the
 * VM is not there, undefined when it is.
 */
async function memberUnhealthy(record: FleetRecord, plan: PlanDocument, c: Change): Promise<Diagnostic | undefined> {
  // A create's VM (a missing member's refill, in its rollout's first wave) and a replace's new one take the plan's id.
  const id = c.action === 'replace' || c.action === 'create' ? proposedVmId(plan.id, c.address) : c.vmId;
  const vm = id ? await record.getVm(id) : undefined;
  if (vm !== undefined && vm.state === c.to) return undefined;
  const seen = vm === undefined ? `the record holds no VM ${id ?? '(none planned)'} for it` : `the record holds its VM ${vm.id} in ${vm.state}`;
  return diag(
    'apply.member-unhealthy',
    `${HEALTH_CHECK_STEP} in ${c.dataCenter}: every step of ${c.address} was answered ok, but ${seen}, not ${c.to} as planned.`,
    { address: c.address },
  );
}

export async function applyPlan(opts: ApplyOptions): Promise<ApplyResult> {
  const { plan, record } = opts;
  const actor = opts.actor ?? defaultActor();
  const emit = opts.onEvent ?? (() => {});
  const started = Date.now();
  const work = plan.changes.filter((c) => c.action !== 'noop');

  for (const c of work) {
    if (!opts.providers.has(c.dataCenter)) {
      // The locks handed over are this function's to release (the CLI no longer does): kept, they held the fleet for
      // their lease, and the `fleet state rm` this names was refused (record.lock-held) meanwhile.
      await opts.lock?.release().catch(() => {});
      // It named no way out: the data center gone from stack.yaml, nothing but the two below reaches the VM.
      throw new FleetError(
        diag(
          'apply.no-client',
          `No DMZ client for data center ${c.dataCenter}, where ${c.address} lives: the stack's dataCenters do not list it, so nothing was applied. Add ${c.dataCenter} back to stack.yaml to ${c.action === 'delete' ? 'delete' : 'change'} ${c.address} there, or forget it with \`fleet state rm ${c.address}\` (its VM stays in ${c.dataCenter}, to delete there by hand) and run \`fleet apply\` again.`,
          { address: c.address },
        ),
      );
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
  const interrupted = () => opts.signal?.aborted === true;
  /**
   * What stopped the apply mid-way (its lock taken over, its record lost
   * under a member), and the members running at that moment: from then on no
   * member starts; those running are let finish (their requests carry this
   * lock's fencing token: vetoed once a newer holder exists). A member that
   * had its slot before it (or before the apply's signal was aborted) but
   * whose `started` rows were still being written (retried through the
   * outage that stopped the apply, or a slow record) sends nothing
   * (runMember's `halted`): it is counted as not started.
   */
  let halt: { cause: unknown; running: string[] } | undefined;
  const running = new Set<string>();
  const halted = () => (halt !== undefined ? NOT_SENT_DETAIL : interrupted() ? NOT_SENT_INTERRUPTED_DETAIL : undefined);
  const stop = (cause: unknown) => {
    halt ??= { cause, running: [...running].sort((a, b) => a.localeCompare(b, 'en', { numeric: true })) };
  };
  /** Members whose run the record could not keep (MemberUnrecorded), and those of them of which nothing was sent. */
  const unrecorded: MemberUnrecorded[] = [];
  const notSent = new Set<string>();
  const beat = setInterval(() => {
    lock.heartbeat().catch(stop);
  }, Math.max(50, Math.floor(leaseMs / 3)));
  beat.unref();

  const failures: MemberFailure[] = [];
  let succeeded = 0;
  let steps = 0;
  let stepsFailed = 0;
  let stepsSkipped = 0;
  let notStarted = 0;
  let rollouts: RolloutReport[] = [];
  let settingsWritten: FleetChange[] = [];
  let memberOpts: ApplyOptions = opts;
  let began = false;
  let recorded = false;
  let released = false;
  try {
    if (!opts.lock) await opts.onLocked?.(plan.fleets);
    await checkApplicable(plan, record, { fresh: opts.lock !== undefined });
    const fleetRows = await recordFleets(record, plan, plan.fleets, opts.owners, emit);
    settingsWritten = fleetRows.written;
    // The creates' requests carry the owner the record now holds (the authority refuses any other).
    memberOpts = { ...opts, owners: fleetRows.owners };
    await record.startPlan({ id: plan.id, stack: plan.stack, digest: planDigest(plan), who: actor, startedAt: new Date().toISOString() });
    began = true;

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
    /**
     * What the rollout gate says of a member whose steps all answered ok (runWaves' `gated`): its diagnostic when
     * its VM is not in its planned state; `lost` when that could not be read (the apply stopped, or the record failed
     * under the read, which stops it): the member counts as done, as its steps were, but no wave goes on from it.
     */
    const gate = async (c: Change): Promise<Diagnostic | undefined | 'lost'> => {
      if (halt) return 'lost';
      return memberUnhealthy(record, plan, c).catch((err: unknown) => (stop(err), 'lost' as const));
    };
    const runOne = async (change: Change, gated: boolean): Promise<MemberOutcome> => {
      const dc = change.dataCenter;
      const provider = opts.providers.get(dc)!;
      const release = await slots.get(dc)!.acquire();
      if (interrupted() || halt) {
        release();
        return { ok: false, notStarted: true };
      }
      let failed = false;
      running.add(change.address);
      const tail = runMember(change, provider, memberOpts, emit, release, provider.lanes ? lane : undefined, lock.fencingToken, halted).then(async (r) => {
        // Started before the stop or the interrupt, but its `started` rows were committed only after it: nothing was sent.
        if (r.notSent) {
          notSent.add(change.address);
          failed = true;
          return;
        }
        if (gated && !r.failure) {
          // Every step answered ok; a gated member is done only once the record holds it in its planned state.
          // One not there fails here, not in the rollout alone: its report said "1 failed" while the apply counted
          // it done, recorded the plan succeeded and exited 0 (docs/rollouts.md, "Apply" item 1).
          const seen = await gate(change);
          if (seen === 'lost') failed = true;
          else if (seen) r = { ...r, failure: { address: change.address, dataCenter: dc, action: change.action, step: HEALTH_CHECK_STEP, diagnostic: seen, cause: 'unhealthy' } };
        }
        steps += r.steps;
        // A member failed at its health check failed no step.
        stepsFailed += r.failure && r.failure.cause !== 'unhealthy' ? 1 : 0;
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
      }, (err: unknown) => {
        // The record failed under this member: nothing more is started; what its steps did is said in the apply's stop.
        if (err instanceof MemberUnrecorded) {
          // Nothing was asked of its data center: counted as not started.
          if (err.sent) unrecorded.push(err);
          else notSent.add(change.address);
          stop(err.cause);
        } else stop(err);
        failed = true;
      });
      const settled = tail.finally(() => {
        running.delete(change.address);
        release();
      });
      // Seen by Promise.all(tails) below; handled now so it never counts as unhandled meanwhile.
      settled.catch(() => {});
      tails.push(settled);
      await settled.catch(() => {
        failed = true;
      });
      return notSent.has(change.address) ? { ok: false, notStarted: true } : { ok: !failed };
    };
    const ran = await runWaves(work, {
      plan,
      run: runOne,
      emit,
      interrupted: () => interrupted() || halt !== undefined,
    });
    rollouts = ran.reports;
    notStarted = ran.notStarted;
    await Promise.all(tails);
    if (!halt) {
      await record.finishPlan(plan.id, notStarted > 0 || interrupted() ? 'interrupted' : failures.length ? 'failed' : 'succeeded');
    }
  } finally {
    clearInterval(beat);
    // Stopped mid-way: the apply is recorded `interrupted` as soon as the record answers again (tried now, once the
    // members in flight ended, with no new wait: the outage's budget is spent by then, and a call after it gets only
    // one more try at once, record-retry.ts). Else the next apply of these
    // fleets records it (closeInterrupted: a plan `running` that holds no lock).
    if (halt && began) recorded = await record.finishPlan(plan.id, 'interrupted').then(() => true, () => false);
    released = await lock.release().then(() => true, () => false);
  }
  const elapsedMs = Date.now() - started;
  failures.sort((a, b) => a.address.localeCompare(b.address, 'en', { numeric: true }));
  // Read once: the result and the summary say the same, whenever a signal lands.
  const stopped = interrupted() || halt !== undefined;
  emit({
    type: 'summary',
    planId: plan.id,
    succeeded,
    failed: failures.length,
    steps,
    stepsFailed,
    stepsSkipped,
    elapsedMs,
    ...(notStarted > 0 ? { notStarted } : {}),
    ...(stopped ? { interrupted: true as const } : {}),
    ...(settingsWritten.length ? { fleetChanges: settingsWritten } : {}),
  });
  const result: ApplyResult = { planId: plan.id, succeeded, failed: failures, steps, stepsFailed, stepsSkipped, elapsedMs, notStarted, interrupted: stopped, rollouts, fleetChanges: settingsWritten };
  if (halt) {
    throw new ApplyStoppedError(result, {
      cause: halt.cause,
      running: halt.running.filter((a) => !notSent.has(a)),
      unrecorded: unrecorded.map((u) => ({ address: u.address, steps: [...u.unjournalled] })).sort((a, b) => a.address.localeCompare(b.address, 'en', { numeric: true })),
      recorded,
      released,
      leaseMs,
      stack: plan.stack,
      fleets: plan.fleets,
    });
  }
  return result;
}

/** How an apply stopped mid-way (ApplyStoppedError). */
export interface ApplyStop {
  /** What stopped it: record.lock-lost from a lease renewal, or the record's error under a member. */
  cause: unknown;
  /** The members running when it stopped (let finish: each is counted in the result as done or failed, or listed in `unrecorded`). */
  running: string[];
  /** Members whose run the record could not keep, each with its answered requests the journal does not hold. */
  unrecorded: { address: string; steps: string[] }[];
  /** Whether the apply is recorded `interrupted` (else the next apply of its fleets records it so). */
  recorded: boolean;
  /** Whether its locks were released (else they hold until their lease, `leaseMs`, runs out, or the next apply on this host breaks them). */
  released: boolean;
  leaseMs: number;
  stack: string;
  fleets: readonly string[];
}

/**
 * An apply that stopped mid-way because it lost its record or its lock: no
 * member was started after that, the ones running were let finish, and its
 * result (what was done, what failed, what was not started) comes with the
 * error. Its first diagnostic is `apply.stopped` (the apply id, what may not
 * be journalled, whether its end is recorded, how to go on); then the cause's.
 * Thrown, never returned: a caller that reads only `failed` must not take it
 * for a success.
 */
export class ApplyStoppedError extends FleetError {
  constructor(
    readonly result: ApplyResult,
    readonly stop: ApplyStop,
  ) {
    super([stoppedDiagnostic(result, stop), ...causeDiagnostics(stop.cause)]);
  }
}

function causeDiagnostics(cause: unknown): Diagnostic[] {
  if (cause instanceof FleetError) return cause.diagnostics;
  // Not a record fault fleet knows (a bug, or a driver of the record's own): said as it came.
  return [diag('cli.internal', clip(cause instanceof Error ? cause.message : String(cause), REASON_LIMIT))];
}

const listed = (xs: readonly string[], max = 10) => (xs.length <= max ? xs.join(', ') : `${xs.slice(0, max).join(', ')}, … (${xs.length} in all)`);

/** The apply.stopped diagnostic: what happened to apply `result.planId`, and what to do. */
export function stoppedDiagnostic(result: ApplyResult, stop: ApplyStop): Diagnostic {
  const lockLost = stop.cause instanceof FleetError && stop.cause.diagnostics[0]?.code === 'record.lock-lost';
  const why = lockLost ? 'its lock was taken over or released by someone else (record.lock-lost, below)' : 'the record failed under it (below)';
  const parts = [`Apply ${result.planId} stopped mid-way: ${why}. No further VM was started${result.notStarted > 0 ? ` (${result.notStarted} not started)` : ''}.`];
  if (stop.running.length > 0) {
    parts.push(
      `In flight when it stopped: ${listed(stop.running)}; they were let finish${lockLost ? ' (a request after another apply took the lock is vetoed `fenced`)' : ''}, and are counted below.`,
    );
  }
  for (const u of stop.unrecorded.filter((x) => x.steps.length > 0).slice(0, 10)) {
    parts.push(`${u.address}: ${u.steps.join(', ')} answered by its data center but not journalled; \`fleet state show ${u.address}\` shows where it stands.`);
  }
  const more = stop.unrecorded.filter((x) => x.steps.length > 0).length - 10;
  if (more > 0) parts.push(`And ${more} more members whose answers are not journalled.`);
  const fleets = `fleet${stop.fleets.length === 1 ? '' : 's'} ${listed(stop.fleets)}`;
  parts.push(
    stop.recorded
      ? 'It is recorded as interrupted.'
      : `The record could not be told that it ended: the next \`fleet apply\` of ${fleets} records it interrupted and closes its unanswered steps.`,
  );
  if (!stop.released && !lockLost) {
    parts.push(
      `Its lock${stop.fleets.length === 1 ? '' : 's'} could not be released either: free once the lease runs out (${stop.leaseMs / 1000} s), at once for the next \`fleet apply\` on this host; \`fleet state list\` shows ${stop.fleets.length === 1 ? 'it' : 'them'}.`,
    );
  }
  parts.push(lockLost ? 'Run `fleet apply` again once the other apply is done; it continues from what the record holds.' : 'Run `fleet apply` again once the record is back; it continues from what the record holds (docs/recovery.md, "Outages").');
  return diag('apply.stopped', parts.join(' '), { address: stop.stack });
}

/**
 * Carries out a plan whose only changes are its `fleetChanges` (a change of
 * `protect` or `owner` alone), under the locks of `fleets` that the caller holds: the
 * stale check, then the plan recorded as applied (startPlan: who changed
 * the fleets' protection is in the record, and the same saved plan applied
 * again is refused as applied already, not as "the record changed"), the
 * rows written (recordFleets), the plan finished. Returns what was written.
 */
export async function applyFleetChanges(opts: {
  plan: PlanDocument;
  record: FleetRecord;
  fleets: readonly string[];
  owners: Readonly<Record<string, string>>;
  fresh: boolean;
  actor?: string;
  onEvent?: (e: ApplyEvent) => void;
}): Promise<FleetChange[]> {
  const { plan, record } = opts;
  await checkApplicable(plan, record, { fresh: opts.fresh });
  await record.startPlan({ id: plan.id, stack: plan.stack, digest: planDigest(plan), who: opts.actor ?? defaultActor(), startedAt: new Date().toISOString() });
  let written: FleetChange[];
  try {
    ({ written } = await recordFleets(record, plan, opts.fleets, opts.owners, opts.onEvent ?? (() => {})));
  } catch (err) {
    // The write's error is the one to see; the plan is recorded as failed when the record can still say so.
    await record.finishPlan(plan.id, 'failed').catch(() => {});
    throw err;
  }
  await record.finishPlan(plan.id, 'succeeded');
  return written;
}

/**
 * Writes the fleets rows of `fleets` (the plan's, under their locks, after
 * the stale check) before any step, and returns the settings it changed,
 * each also said as an event (`protect`, `owner`), and the owner each
 * fleet's row holds after it (what its creates' requests carry):
 *
 * | what                | from                                                    |
 * | ------------------- | ------------------------------------------------------- |
 * | protection          | the plan's `fleetChanges` only (the one source of what  |
 * |                     | a reviewed plan writes, fresh or saved); a fleet it     |
 * |                     | does not list keeps the row's (a new row: unprotected)  |
 * | owner               | the plan's `fleetChanges` only, likewise; a fleet it    |
 * |                     | does not list keeps the row's (a new row: `owners`,     |
 * |                     | its spec's, which the plan counted its quota against)   |
 *
 * A row that holds both already is not written (setFleetProtection would
 * bump nothing anyway). `from` of a change is the row's value now (a fleet
 * with no row: unprotected), which the stale check has just held to what
 * the plan read.
 */
export async function recordFleets(
  record: FleetRecord,
  plan: PlanDocument,
  fleets: readonly string[],
  owners: Readonly<Record<string, string>>,
  emit: (e: ApplyEvent) => void,
): Promise<{ written: FleetChange[]; owners: Record<string, string> }> {
  const held: Record<string, string> = { ...owners };
  if (fleets.length === 0) return { written: [], owners: held };
  const listed = new Map((plan.fleetChanges ?? []).map((f) => [f.fleet, f]));
  const rows = new Map((await record.listFleets(plan.stack, fleets)).map((r) => [r.fleet, r]));
  const written: FleetChange[] = [];
  for (const fleet of fleets) {
    const row = rows.get(fleet);
    // A program's fleet is the program's (never in a plan's scope while it has live VMs).
    if (row?.managedBy) continue;
    const change = listed.get(fleet);
    const owner = change?.owner?.to ?? row?.owner ?? owners[fleet];
    const from = row?.protected ?? false;
    const to = change?.protect?.to ?? from;
    // No spec and no row (a new fleet whose spec is gone since the plan): its creates make the row, as before.
    if (owner === undefined && !change) continue;
    if (owner !== undefined) held[fleet] = owner;
    if (row && row.owner === owner && row.protected === to) continue;
    await record.setFleetProtection(plan.stack, fleet, owner ?? 'unknown', to);
    const protect = to !== from ? { from, to } : undefined;
    // A new row's owner is not a change: nothing held another before it.
    const reowned = row && owner !== undefined && row.owner !== owner ? { from: row.owner, to: owner } : undefined;
    if (!protect && !reowned) continue;
    written.push({ fleet, ...(protect ? { protect } : {}), ...(reowned ? { owner: reowned } : {}) });
    if (protect) emit({ type: 'protect', fleet, protect });
    if (reowned) emit({ type: 'owner', fleet, owner: reowned });
  }
  return { written, owners: held };
}

/**
 * record.lock-held as an apply says it: how long it waited, or that
 * --lock-timeout waits (the record's sentence, shared with state rm and
 * import, only says to wait for the holder, not how an apply does).
 */
function waited(err: FleetError, timeoutMs: number): FleetError {
  const [first, ...rest] = err.diagnostics;
  const how = timeoutMs > 0 ? ` This apply waited ${timeoutMs / 1000} s for it (--lock-timeout).` : ' `fleet apply --lock-timeout SECONDS` waits for it.';
  return new FleetError([{ ...first, detail: `${first.detail}${how}` }, ...rest]);
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
  // Each try takes the locks or fails at once: a dead holder is looked for
  // between tries. A wait inside acquireLocks (--lock-timeout) used to come
  // first, so a re-run given --lock-timeout waited out a killed apply's lease
  // (30 s) instead of breaking its lock at once, and a holder killed while
  // this apply waited was waited out too.
  const take = () =>
    record.acquireLocks(stack, fleets, { who: opts.actor, host: hostname(), planId: opts.planId, pid: process.pid }, {
      timeoutMs: 0,
      ...(opts.leaseMs ? { leaseMs: opts.leaseMs } : {}),
    });
  const deadline = Date.now() + (opts.timeoutMs ?? 0);
  const scope = new Set(fleets);
  let backoff = 25;
  for (;;) {
    try {
      return await take();
    } catch (err) {
      if (!(err instanceof FleetError) || err.diagnostics[0]?.code !== 'record.lock-held') throw err;
      const dead = (await record.listLocks(stack)).filter((l) => scope.has(l.fleet) && holderGone(l));
      for (const l of dead) {
        await record.forceUnlock(l.lockId);
        opts.onEvent?.({ type: 'lock-broken', lockId: l.lockId, fleet: l.fleet, holder: `${l.who} pid ${l.pid}` });
      }
      if (dead.length > 0) continue;
      const left = deadline - Date.now();
      if (left <= 0) throw waited(err, opts.timeoutMs ?? 0);
      await new Promise((resolve) => setTimeout(resolve, Math.min(backoff, left)));
      backoff = Math.min(backoff * 2, 500);
    }
  }
}
