// Health-gated rollouts: how apply runs a plan's waves (docs/rollouts.md).
//
// What must stay true:
// - A wave starts only when every member of the wave before it finished,
//   reached its planned state, and the record says so (for Running: its
//   agent reported ready, the awaitReady step). A member that did not counts
//   as failed: in the rollout's report and, as apply.member-unhealthy, in the
//   apply's failed members (the runner checks it: RolloutRunner.run's `gated`).
// - Failed members count against the rollout's failureThreshold; once it is
//   reached no further wave of that fleet starts: its remaining members are
//   left untouched, and the next `fleet apply` plans them again from the
//   record (the stopped wave's members come back first, in wave 1). A wave
//   run in groups (below) stops too: its next group does not start.
// - Below the threshold a failed member stays out of service and keeps the
//   place it took (a surge VM keeps its surge place) from the moment it
//   fails, so the rest of its wave (formed group by group) and the following waves
//   run in smaller groups that fit what is left. The two kinds of place
//   (out of service: maxUnavailable; surge: maxSurge) are apart: with one
//   kind all held, the wave's members of the other kind still go. Members
//   left with no place of their kind stop the rollout after what could run
//   of their wave, as if at the threshold. A member brought back in wave 1
//   (out already, or its old VM deposed and serving) that fails again keeps
//   the place it held there (unavailable, or surge) the same way.
// - Changes without a wave (creates, deletes, members not serving) run beside
//   the first waves; different fleets' rollouts run side by side. One
//   exception: the deposed old VM of a replace that did not finish, while it
//   is in the state its address's new VM is being brought back to, is
//   deleted only once that VM is back, and that member is done only once
//   its old VM is deleted (deposedGates below; a failed delete fails the
//   member). Any other deposed old VM of a rolling fleet, and each member
//   its lower count deletes, holds a surge place while its delete runs, and
//   for good when it fails (Lingering below).
import type { Change, PlanDocument, Rollout } from '../model/index.ts';

/** What the executor reports of one member. */
export interface MemberOutcome {
  ok: boolean;
  /** The member was never started (the apply was interrupted first). */
  notStarted?: boolean;
}

export type RolloutEvent =
  | { type: 'wave-start'; fleet: string; wave: number; waves: number; members: string[] }
  | {
      type: 'wave-done';
      fleet: string;
      wave: number;
      waves: number;
      succeeded: number;
      failed: number;
      /** `stopped`: the rollout stops after this wave (failureThreshold reached, or no place left). */
      status: 'done' | 'failed' | 'stopped';
      detail?: string;
    };

/** What a rollout did, for the summary and `fleet apply`'s closing words. */
export interface RolloutReport {
  fleet: string;
  waves: number;
  /** Waves that ran to their end (whatever their members' outcome). */
  wavesRun: number;
  succeeded: string[];
  failed: string[];
  /** Set when the rollout stopped before its last wave. */
  stopped?: { reason: string; notStarted: string[] };
}

/** Which place of a wave a change takes (engine/plan/waves.ts). */
export type Place = 'unavailable' | 'surge' | 'returning';

export function placeOf(c: Change): Place {
  if (c.action === 'replace' && c.replaceOrder === 'create-before-delete') return 'surge';
  return 'unavailable';
}

export interface RolloutRunner {
  plan: PlanDocument;
  /**
   * Runs one member to its end (its data center's slot taken and given back inside). `gated`: the member is
   * done only once the record holds its VM in its planned state (for Running: ready), after its steps: a rollout's
   * member, or one whose deposed old VM waits for it (deposedGates). The runner checks that itself and counts a
   * member whose VM is not there as failed (`ok` false; the executor's apply.member-unhealthy), so the apply's
   * result, its summary and its record say what the rollout's report says.
   */
  run(change: Change, gated: boolean): Promise<MemberOutcome>;
  emit(e: RolloutEvent): void;
  /** True once the apply is interrupted: no further wave starts. */
  interrupted(): boolean;
}

/** Runs the plan's changes: unwaved ones at once, each fleet's waves in order. */
/** `notStarted`: members an interrupt kept from starting (a rollout stopped by failures leaves its members in its report only). */
export async function runWaves(work: readonly Change[], runner: RolloutRunner): Promise<{ reports: RolloutReport[]; notStarted: number }> {
  const rollouts = new Map((runner.plan.rollouts ?? []).map((x) => [x.fleet, x]));
  const unwaved = work.filter((c) => c.wave === undefined || !rollouts.has(c.fleet));
  const { r, gateOf, settleRest, oldServing } = deposedGates(work, runner);
  // The other deposed old VMs of a rolling fleet (no new VM of theirs waits on them), and the members its lower
  // count deletes, are deleted beside the first wave; each is a VM beyond the fleet's until it is gone, so it holds
  // a surge place meanwhile (Lingering).
  const lingering = new Map<string, Lingering>();
  for (const c of unwaved) {
    if (c.action !== 'delete' || !rollouts.has(c.fleet) || (c.deposed && oldServing.has(c.address))) continue;
    let l = lingering.get(c.fleet);
    if (!l) lingering.set(c.fleet, (l = new Lingering()));
    l.add(lingeringName(c));
  }
  let notStarted = 0;
  const free = Promise.all(
    unwaved.map(async (c) => {
      const gate = gateOf(c);
      if (gate) {
        const back = await gate.promise;
        // Its member's new VM did not get back: the old one keeps serving, and the next plan deletes it again.
        if (back !== 'back') {
          if (back === 'not-started') notStarted++;
          return;
        }
      }
      let ok = false;
      try {
        const o = await r.run(c, false);
        if (o.notStarted) notStarted++;
        ok = o.ok && !o.notStarted;
      } finally {
        gate?.deleted(ok);
        if (c.action === 'delete') lingering.get(c.fleet)?.end(lingeringName(c), ok);
      }
    }),
  );
  const reports = await Promise.all(
    [...rollouts.values()].map(async (ro) => {
      const members = work.filter((c) => c.fleet === ro.fleet && c.wave !== undefined);
      const report = await runRollout(ro, members, r, oldServing, lingering.get(ro.fleet) ?? new Lingering());
      notStarted += report.notStartedCount;
      return report.report;
    }),
  );
  // Members a stopped rollout left untouched never got back: their deposed VMs stay. Only those: an unwaved
  // member's own run settles its gate, and may still be running (settled `failed` now, its old VM was never
  // deleted and the member waited for that delete for ever: the apply hung).
  settleRest(new Set(work.filter((c) => !c.deposed && c.wave !== undefined && rollouts.has(c.fleet)).map((c) => c.address)));
  await free;
  return { reports, notStarted };
}

type Back = 'back' | 'failed' | 'not-started';

/** How a lingering VM is named in a rollout's stop reason: `web/3's old VM` (deposed), or `web/7` (a lower count). */
function lingeringName(c: Change): string {
  return c.deposed ? `${c.address}'s old VM` : c.address;
}

/**
 * VMs of a rolling fleet that are deleted beside its first wave: deposed old
 * VMs (their member's new VM serves already, or is not brought back to
 * their state), and the members a lower count deletes. VMs beyond the
 * fleet's until they are gone, so each holds a surge place while its delete
 * runs, and for good when the delete fails (the VM is still there). Without
 * this a resumed surge rollout created its first surge VMs beside the
 * deposed ones (maxSurge + 1 VMs beyond the fleet's), and a lower count
 * beside a surge rollout had its old count and maxSurge VMs at once: an
 * owner quota sized for count + maxSurge, which the plan checked, vetoed
 * the surge VMs.
 */
class Lingering {
  private readonly running = new Set<string>();
  /** VMs whose delete failed (lingeringName): still there for the rest of the apply. */
  readonly failed: string[] = [];
  private waiters: (() => void)[] = [];
  add(name: string): void {
    this.running.add(name);
  }
  end(name: string, ok: boolean): void {
    if (!this.running.delete(name)) return;
    if (!ok) this.failed.push(name);
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  /** Surge places they hold now. */
  get held(): number {
    return this.running.size + this.failed.length;
  }
  /** True while a delete runs that may give a place back. */
  get pending(): boolean {
    return this.running.size > 0;
  }
  /** Settles when the next delete ends. */
  next(): Promise<void> {
    return new Promise((res) => this.waiters.push(res));
  }
}

/**
 * The deposed old VM of a replace that did not finish (its new VM failed
 * in an earlier apply) still serves while the plan brings its address's
 * new VM back (a retry, in the rollout's first wave). Deleting it beside
 * that retry, as an unwaved delete, would take the member out of service
 * before its new VM runs: the surge the rollout promised would become an
 * outage, and more members than maxUnavailable would be out at once. So a
 * deposed VM that is already in the state its address's current VM is
 * being brought to is deleted only once that VM is there (its run ended
 * well and the record holds it in its planned state); if it is not, the
 * old VM is left serving and the next plan deletes it again.
 */
function deposedGates(work: readonly Change[], runner: RolloutRunner) {
  const deposed = new Map<string, Change>();
  for (const c of work) if (c.deposed) deposed.set(c.address, c);
  interface Gate {
    promise: Promise<Back>;
    settle: (b: Back) => void;
    /** Settles once the deposed VM's delete ended (it ran only if the gate said `back`): true when it is gone. */
    gone: Promise<boolean>;
    deleted: (ok: boolean) => void;
  }
  const gates = new Map<string, Gate>();
  for (const c of work) {
    const old = deposed.get(c.address);
    if (c.deposed || !old || c.action === 'delete' || c.to !== old.from) continue;
    let settle!: (b: Back) => void;
    let deleted!: (ok: boolean) => void;
    const promise = new Promise<Back>((res) => (settle = res));
    const gone = new Promise<boolean>((res) => (deleted = res));
    gates.set(c.address, { promise, settle, gone, deleted });
  }
  const r: RolloutRunner = {
    ...runner,
    run: async (c, gated) => {
      const gate = c.deposed ? undefined : gates.get(c.address);
      // Its old VM goes only once its new VM is back in its planned state: the runner checks that (gated).
      const o = await runner.run(c, gated || gate !== undefined);
      if (gate) {
        const back: Back = o.notStarted ? 'not-started' : o.ok ? 'back' : 'failed';
        gate.settle(back);
        // Its old VM is an extra VM while it lives: the member is done once it is gone, as a surge replace is
        // once it deleted its old VM. Else the next wave's surge VMs would exist beside it, beyond maxSurge.
        // When that delete fails the old VM is still there, beside the new one: the member failed, and holds its
        // surge place as a failed member does (else the next waves' surge VMs would be maxSurge + 1).
        if (back === 'back' && !(await gate.gone)) return { ok: false };
      }
      return o;
    },
  };
  return {
    r,
    /** Members whose old VM (deposed) is in the state their current VM is being brought back to: it serves for them. */
    oldServing: new Set(gates.keys()),
    gateOf: (c: Change) => (c.deposed ? gates.get(c.address) : undefined),
    /** Settles the gates of the `waved` members, which a rollout ran or left untouched (a settled gate keeps its first word). */
    settleRest: (waved: ReadonlySet<string>) => {
      for (const [address, g] of gates) if (waved.has(address)) g.settle(runner.interrupted() ? 'not-started' : 'failed');
    },
  };
}

async function runRollout(
  ro: Rollout,
  members: readonly Change[],
  r: RolloutRunner,
  oldServing: ReadonlySet<string>,
  lingering: Lingering,
): Promise<{ report: RolloutReport; notStartedCount: number }> {
  const waves = Math.max(0, ...members.map((c) => c.wave!));
  const report: RolloutReport = { fleet: ro.fleet, waves, wavesRun: 0, succeeded: [], failed: [] };
  const returning = new Set(ro.waves.flatMap((w) => w.returning ?? []));
  /** Places held by failed members. */
  const held = { unavailable: 0, surge: 0 };
  let notStartedCount = 0;
  /** Stops before `fromWave`; members left by an interrupt count as not started (the apply was cut short), a stop by failures does not. */
  const stop = (reason: string, fromWave: number, interrupt = false) => {
    const left = members.filter((c) => c.wave! >= fromWave).map((c) => c.address);
    report.stopped = { reason, notStarted: left };
    if (interrupt) notStartedCount += left.length;
  };
  for (let w = 1; w <= waves; w++) {
    const wave = members.filter((c) => c.wave === w);
    if (wave.length === 0) continue;
    if (r.interrupted()) {
      stop('the apply was interrupted', w, true);
      break;
    }
    // The wave runs in groups that fit the places failed members left, each formed as the one before ended: a
    // member that fails in a group holds its place from then on, so the next group is smaller (none: the rollout stops).
    const placeIn = (c: Change): Place => (returning.has(c.address) ? 'returning' : placeOf(c));
    const limitOf = (place: Exclude<Place, 'returning'>) => (place === 'surge' ? ro.maxSurge - held.surge - lingering.held : ro.maxUnavailable - held.unavailable);
    // A member whose kind of place (out of service, or surge) has none left waits for a later group, and the
    // group takes the members after it that fit: a failed surge member holding the one surge place does not keep
    // the wave's members that go out of service from going, nor the other way round.
    const nextGroup = (from: readonly Change[]): { group: Change[]; blocked: boolean } => {
      const group: Change[] = [];
      const used = { unavailable: 0, surge: 0 };
      for (const c of from) {
        const place = placeIn(c);
        if (place !== 'returning') {
          if (used[place] >= limitOf(place)) continue;
          used[place]++;
        } else {
          // A member brought back holds its place while it runs (once it failed, in `held`): out of service, or
          // (its old VM serving beside its new one) a surge place.
          used[oldServing.has(c.address) ? 'surge' : 'unavailable']++;
        }
        group.push(c);
      }
      return { group, blocked: group.length === 0 };
    };
    const reachedThreshold = () =>
      `${report.failed.length} failed member${report.failed.length === 1 ? '' : 's'} (${report.failed.join(', ')}) reached failureThreshold ${ro.failureThreshold}`;
    /** Why `blocked` (members of this wave no place is left for) cannot go: the places failed members hold. */
    const holdEvery = (blocked: readonly Change[]) => {
      const who = [...report.failed, ...lingering.failed.map((a) => `${a}, not deleted`)];
      const kinds = new Set(blocked.map(placeIn).filter((p): p is Exclude<Place, 'returning'> => p !== 'returning'));
      const allowing =
        kinds.size === 1 && limitOf(kinds.has('surge') ? 'unavailable' : 'surge') > 0
          ? kinds.has('surge')
            ? `maxSurge ${ro.maxSurge} allows`
            : `maxUnavailable ${ro.maxUnavailable} allows`
          : `maxUnavailable ${ro.maxUnavailable} and maxSurge ${ro.maxSurge} allow`;
      return `${who.length} failed member${who.length === 1 ? '' : 's'} (${who.join(', ')}) hold${who.length === 1 ? 's' : ''} every place ${allowing}`;
    };
    const full = () => wave.some((c) => placeIn(c) !== 'returning' && limitOf(placeIn(c) as Exclude<Place, 'returning'>) <= 0);
    // Deposed old VMs still being deleted hold surge places: wait for them rather than stop.
    while (full() && lingering.pending) await lingering.next();
    if (nextGroup(wave).blocked) {
      // No member of the wave has a place left. The wave before was reported `failed` already; the summary says
      // why the rollout stopped.
      stop(holdEvery(wave), w);
      break;
    }

    r.emit({ type: 'wave-start', fleet: ro.fleet, wave: w, waves, members: wave.map((c) => c.address) });
    let ok = 0;
    let failed = 0;
    let skipped = 0;
    // Members brought back run first: they hold their places from the start (the first group always has them).
    let pending: readonly Change[] = [...wave.filter((c) => returning.has(c.address)), ...wave.filter((c) => !returning.has(c.address))];
    let blockedInWave = false;
    let thresholdInWave = false;
    while (pending.length > 0) {
      let { group: g, blocked } = nextGroup(pending);
      while (blocked && lingering.pending) {
        await lingering.next();
        ({ group: g, blocked } = nextGroup(pending));
      }
      if (blocked) {
        blockedInWave = true;
        break;
      }
      const started = new Set(g);
      pending = pending.filter((c) => !started.has(c));
      // The gate: the member's VM is in its planned state in the record (checked by the runner: gated).
      const outcomes = await Promise.all(g.map(async (c) => ({ c, o: await r.run(c, true) })));
      for (const { c, o } of outcomes) {
        if (o.notStarted) {
          skipped++;
          continue;
        }
        if (o.ok) {
          ok++;
          report.succeeded.push(c.address);
        } else {
          failed++;
          report.failed.push(c.address);
          // A returning member that fails again keeps the place it held in wave 1 (the plan gave it back after
          // wave 1): out of service, or (its old VM serving beside a failed new one) a surge place.
          const place = returning.has(c.address) ? (oldServing.has(c.address) ? 'surge' : 'unavailable') : placeOf(c);
          held[place === 'surge' ? 'surge' : 'unavailable']++;
        }
      }
      if (r.interrupted()) break;
      // The threshold stops the rest of this wave too: no request is sent for a member after it is reached.
      if (pending.length > 0 && report.failed.length >= ro.failureThreshold) {
        thresholdInWave = true;
        break;
      }
    }
    report.wavesRun = w;
    if (skipped > 0 || r.interrupted()) {
      const done = new Set([...report.succeeded, ...report.failed]);
      const left = [...wave.filter((c) => !done.has(c.address)), ...members.filter((c) => c.wave! > w)].map((c) => c.address);
      if (left.length > 0) {
        report.stopped = { reason: 'the apply was interrupted', notStarted: left };
        notStartedCount += left.length;
        r.emit({ type: 'wave-done', fleet: ro.fleet, wave: w, waves, succeeded: ok, failed, status: 'stopped', detail: 'the apply was interrupted' });
        break;
      }
    }
    if ((blockedInWave || thresholdInWave) && !r.interrupted() && skipped === 0) {
      // Failures in this wave's first groups reached the threshold, or left no place for the rest of it.
      const done = new Set([...report.succeeded, ...report.failed]);
      const reason = thresholdInWave ? reachedThreshold() : holdEvery(pending);
      report.stopped = { reason, notStarted: [...wave.filter((c) => !done.has(c.address)), ...members.filter((c) => c.wave! > w)].map((c) => c.address) };
      r.emit({ type: 'wave-done', fleet: ro.fleet, wave: w, waves, succeeded: ok, failed, status: 'stopped', detail: report.stopped.reason });
      break;
    }
    const reached = report.failed.length >= ro.failureThreshold;
    if (reached && w < waves) {
      stop(reachedThreshold(), w + 1);
      r.emit({ type: 'wave-done', fleet: ro.fleet, wave: w, waves, succeeded: ok, failed, status: 'stopped', detail: report.stopped!.reason });
      break;
    }
    r.emit({ type: 'wave-done', fleet: ro.fleet, wave: w, waves, succeeded: ok, failed, status: failed ? 'failed' : 'done' });
  }
  return { report, notStartedCount };
}
