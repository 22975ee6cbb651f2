// Health-gated rollouts: how apply runs a plan's waves (docs/rollouts.md).
//
// What must stay true:
// - A wave starts only when every member of the wave before it finished,
//   reached its planned state, and the record says so (for Running: its
//   agent reported ready, the awaitReady step). A member that did not counts
//   as failed.
// - Failed members count against the rollout's failureThreshold; once it is
//   reached no further wave of that fleet starts: its remaining members are
//   left untouched, and the next `fleet apply` plans them again from the
//   record (the stopped wave's members come back first, in wave 1).
// - Below the threshold a failed member stays out of service and keeps the
//   place it took (a surge VM keeps its surge place), so the following waves
//   run in smaller groups that fit what is left; when nothing is left the
//   rollout stops as if at the threshold.
// - Changes without a wave (creates, deletes, members not serving) run beside
//   the first waves; different fleets' rollouts run side by side. One
//   exception: the deposed old VM of a replace that did not finish, while it
//   is in the state its address's new VM is being brought back to, is
//   deleted only once that VM is back (deposedGates below).
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
  /** Runs one member to its end (its data center's slot taken and given back inside). */
  run(change: Change): Promise<MemberOutcome>;
  /** True when the member's VM is in its planned state in the record (for Running: ready). */
  healthy(change: Change): Promise<boolean>;
  emit(e: RolloutEvent): void;
  /** True once the apply is interrupted: no further wave starts. */
  interrupted(): boolean;
}

/** Runs the plan's changes: unwaved ones at once, each fleet's waves in order. */
/** `notStarted`: members an interrupt kept from starting (a rollout stopped by failures leaves its members in its report only). */
export async function runWaves(work: readonly Change[], runner: RolloutRunner): Promise<{ reports: RolloutReport[]; notStarted: number }> {
  const rollouts = new Map((runner.plan.rollouts ?? []).map((x) => [x.fleet, x]));
  const unwaved = work.filter((c) => c.wave === undefined || !rollouts.has(c.fleet));
  const { r, gateOf, settleRest } = deposedGates(work, runner);
  let notStarted = 0;
  const free = Promise.all(
    unwaved.map(async (c) => {
      const gate = gateOf(c);
      if (gate) {
        const back = await gate;
        // Its member's new VM did not get back: the old one keeps serving, and the next plan deletes it again.
        if (back !== 'back') {
          if (back === 'not-started') notStarted++;
          return;
        }
      }
      const o = await r.run(c);
      if (o.notStarted) notStarted++;
    }),
  );
  const reports = await Promise.all(
    [...rollouts.values()].map(async (ro) => {
      const members = work.filter((c) => c.fleet === ro.fleet && c.wave !== undefined);
      const report = await runRollout(ro, members, r);
      notStarted += report.notStartedCount;
      return report.report;
    }),
  );
  // Members a stopped rollout left untouched never got back: their deposed VMs stay.
  settleRest();
  await free;
  return { reports, notStarted };
}

type Back = 'back' | 'failed' | 'not-started';

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
  const gates = new Map<string, { promise: Promise<Back>; settle: (b: Back) => void }>();
  for (const c of work) {
    const old = deposed.get(c.address);
    if (c.deposed || !old || c.action === 'delete' || c.to !== old.from) continue;
    let settle!: (b: Back) => void;
    const promise = new Promise<Back>((res) => (settle = res));
    gates.set(c.address, { promise, settle });
  }
  const r: RolloutRunner = {
    ...runner,
    run: async (c) => {
      const o = await runner.run(c);
      const gate = c.deposed ? undefined : gates.get(c.address);
      if (gate) gate.settle(o.notStarted ? 'not-started' : o.ok && (await runner.healthy(c)) ? 'back' : 'failed');
      return o;
    },
  };
  return {
    r,
    gateOf: (c: Change) => (c.deposed ? gates.get(c.address)?.promise : undefined),
    settleRest: () => {
      for (const g of gates.values()) g.settle(runner.interrupted() ? 'not-started' : 'failed');
    },
  };
}

async function runRollout(ro: Rollout, members: readonly Change[], r: RolloutRunner): Promise<{ report: RolloutReport; notStartedCount: number }> {
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
    // Groups of the wave that fit the places failed members left.
    const groups: Change[][] = [];
    let group: Change[] = [];
    let used = { unavailable: 0, surge: 0 };
    let blocked = false;
    for (const c of wave) {
      const place = returning.has(c.address) ? 'returning' : placeOf(c);
      if (place === 'returning') {
        group.push(c);
        continue;
      }
      const limit = place === 'surge' ? ro.maxSurge - held.surge : ro.maxUnavailable - held.unavailable;
      if (limit <= 0) {
        blocked = true;
        break;
      }
      if (used[place] >= limit) {
        groups.push(group);
        group = [];
        used = { unavailable: 0, surge: 0 };
      }
      group.push(c);
      used[place]++;
    }
    if (blocked) {
      // The wave before was reported `failed` already; the summary says why the rollout stopped.
      stop(`${report.failed.length} failed member${report.failed.length === 1 ? '' : 's'} (${report.failed.join(', ')}) hold every place maxUnavailable ${ro.maxUnavailable} and maxSurge ${ro.maxSurge} allow`, w);
      break;
    }
    if (group.length) groups.push(group);

    r.emit({ type: 'wave-start', fleet: ro.fleet, wave: w, waves, members: wave.map((c) => c.address) });
    let ok = 0;
    let failed = 0;
    let skipped = 0;
    for (const g of groups) {
      const outcomes = await Promise.all(
        g.map(async (c) => {
          const o = await r.run(c);
          if (o.notStarted) return { c, o };
          // The gate: the member's VM is in its planned state in the record.
          return { c, o: o.ok && !(await r.healthy(c)) ? { ok: false } : o };
        }),
      );
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
          const place = returning.has(c.address) ? 'unavailable' : placeOf(c);
          // A returning member was out already; a planned wave of new ones never counted it.
          if (!returning.has(c.address)) held[place === 'surge' ? 'surge' : 'unavailable']++;
        }
      }
      if (r.interrupted()) break;
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
    const reached = report.failed.length >= ro.failureThreshold;
    if (reached && w < waves) {
      stop(`${report.failed.length} failed member${report.failed.length === 1 ? '' : 's'} (${report.failed.join(', ')}) reached failureThreshold ${ro.failureThreshold}`, w + 1);
      r.emit({ type: 'wave-done', fleet: ro.fleet, wave: w, waves, succeeded: ok, failed, status: 'stopped', detail: report.stopped!.reason });
      break;
    }
    r.emit({ type: 'wave-done', fleet: ro.fleet, wave: w, waves, succeeded: ok, failed, status: failed ? 'failed' : 'done' });
  }
  return { report, notStartedCount };
}
