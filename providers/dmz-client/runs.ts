// Runs: a member's steps sent at once (docs/protocol.md, "Runs";
// docs/dmz-client.md). Each step is carried out exactly as its single
// request (StepRunner, same idempotency key, same answer), in order,
// stopping at the first that is not ok. What a run adds is fewer waits for
// the authority:
//
// - Advance: a step followed by edges of the same VM (each from the state
//   the one before reaches) sends its report, or its create, with their
//   authorizations as one advance call (chainAfter). The authority moves the
//   leading `none` edges at once, authorizes the first to carry out and
//   approves the rest ahead; the later steps it decided start with that
//   approval (`ahead`) or are answered with their move (`done`).
// - Write-behind: once a step's cloud call is done and the next step is
//   approved already, the next starts at once and the report goes meanwhile.
//   Reports still go one at a time, in step order (StepRunner: `after`).
// - Lanes: a run naming its apply's lane holds one of the lane's places
//   from its first cloud call to its last (lanes.ts).
import { ADVANCE_NEXT_MAX } from '../../protocol/index.ts';
import { NO_LINE, type LineAnswer, type Part } from '../../protocol/index.ts';
import type { AdvanceStep, AuthorizeRequest } from '../../protocol/index.ts';
import type { BatchRun, BatchStep, StepResult } from '../../protocol/index.ts';
import type { Lanes, Lease } from './lanes.ts';
import { reaches, stepFingerprint, stepRequest, stepVm, stepVmId, type RequestDefaults } from './requests.ts';
import { answeredOk, type RunContext, type StepRunner } from './step.ts';

/** A later step of a run that an advance asks about: its index in the run and its authorization request. */
export interface Chained {
  k: number;
  request: AuthorizeRequest;
}

/**
 * The steps after step k that its advance asks about: the following steps
 * of the same VM, each from the state the one before reaches (at most
 * ADVANCE_NEXT_MAX). The authority moves the leading `none` ones at once,
 * authorizes the first to carry out, and approves the rest ahead as far as
 * it can (AdvanceRequest.ahead). `pastFirst` false (a DMZ client without a
 * pack, which says what is `none`): the first only.
 */
export function chainAfter(
  d: RequestDefaults,
  steps: readonly BatchStep[],
  k: number,
  pastFirst: boolean,
  fingerprintOf: (j: number) => string = (j) => stepFingerprint(steps[j]),
): Chained[] {
  const s = steps[k];
  const vmId = stepVmId(s);
  let at = reaches(d, s);
  const out: Chained[] = [];
  for (let j = k + 1; j < steps.length && out.length < ADVANCE_NEXT_MAX; j++) {
    const f = steps[j];
    if (f.op === 'create' || f.vmId !== vmId || f.body.from !== at) break;
    const request = stepRequest(d, f, fingerprintOf(j));
    out.push({ k: j, request });
    if (!pastFirst) break;
    at = request.to as string;
  }
  return out;
}

/** What an advance decided for a later step of its run: its authorization, or its result when moved at once. */
export function decidedStep(request: AuthorizeRequest, d: AdvanceStep): RunContext {
  if (!d.moved) return { request, ahead: d.authorize };
  const done: StepResult = {
    requestId: request.requestId,
    decision: d.authorize.decision,
    reason: d.authorize.reason,
    outcome: 'ok',
    operation: 'none',
    vm: stepVm(d.moved.vm),
  };
  return { request, done };
}

export interface RunsOptions extends RequestDefaults {
  steps: StepRunner;
  lanes: Lanes;
  /** Whether an advance may ask past the run's next edge (the DMZ client has the pack: see chainAfter). */
  chainPastFirst: boolean;
  /** True once the DMZ client is shutting down: a run starts no further step (the caller sends the rest again, to its successor). */
  stopping?: () => boolean;
}

export class Runs {
  private running = 0;

  constructor(private readonly o: RunsOptions) {}

  /** Runs being carried out now (fleet_runs_in_flight). */
  get inFlight(): number {
    return this.running;
  }

  /**
   * A member's steps in order, each exactly as its single request, stopping
   * at the first that is not ok; each answered through `part` as soon as it
   * is done (a line of the batch's answer). Resolves with NO_LINE once every
   * step it started was answered.
   */
  async run({ steps, lane }: BatchRun, part: Part): Promise<typeof NO_LINE> {
    const lease = lane ? this.o.lanes.lease(lane.id, lane.width, [...new Set(steps.map(stepVmId))]) : undefined;
    this.running++;
    try {
      return await this.runSteps(steps, part, lease);
    } finally {
      this.running--;
      lease?.free();
    }
  }

  private async runSteps(steps: readonly BatchStep[], part: Part, lease: Lease | undefined): Promise<typeof NO_LINE> {
    const given = new Map<number, RunContext>();
    // Each step's fingerprint, made once: its advance's request id (chainAfter) and its idempotency key's check use it.
    const fingerprints: (string | undefined)[] = [];
    const fingerprintOf = (j: number) => (fingerprints[j] ??= stepFingerprint(steps[j]));
    const answers: Promise<LineAnswer>[] = [];
    /** The previous step's answer, while its report is on its way (write-behind). */
    let behind: Promise<LineAnswer> | undefined;
    for (let k = 0; k < steps.length; k++) {
      // Shutting down: the steps begun finish and are answered; the rest are left for the caller to send again.
      if (this.o.stopping?.()) break;
      const s = steps[k];
      const mine = given.get(k) ?? {};
      given.delete(k);
      // A step whose next is approved already reports alone; else it asks about what follows.
      const chain = mine.done || given.has(k + 1) ? [] : chainAfter(this.o, steps, k, this.o.chainPastFirst, fingerprintOf);
      let carriedOut = () => {};
      const carried = new Promise<'carried'>((resolve) => (carriedOut = () => resolve('carried')));
      // Once this step's cloud call is done and the next step is approved
      // already, the next starts while this one's report is on its way;
      // the record never lags the cloud by more than that one edge (the
      // report before this one must have been answered ok). A booting VM's
      // call waits for its report (/v1/boot): the authority checks the VM
      // against the record's state.
      //
      // Except into a boot: a VM calls the authority when it boots, and is
      // judged by the record's state, so its boot goes out only once the
      // record holds the boot edge's `from` (this step's report answered
      // ok). Written behind, a report lost to a crash or an authority
      // outage left the record before the boot edge (PoweredOff) with the
      // VM booting: its boot was denied, the VM terminated, and the next
      // apply's powerOn found no VM (providers/boot-race.test.ts).
      const goesOn = () => {
        const n = given.get(k + 1);
        return n?.ahead !== undefined && n.ahead.decision !== 'vetoed' && !n.done && n.ahead.operation !== 'boot';
      };
      // Every step's context has the same fields (undefined when not given: step.ts tests each for truthiness), so the
      // step runner's reads of it see one object shape rather than one per combination of spreads.
      const ctx: RunContext = {
        request: mine.request,
        fingerprint: fingerprintOf(k),
        ahead: mine.ahead,
        done: mine.done,
        lease,
        onCarriedOut: carriedOut,
        goesOn,
        after: behind,
        chain: chain.length > 0 ? chain.map((c) => c.request) : undefined,
        onChain:
          chain.length > 0
            ? (decided: AdvanceStep[]) => decided.forEach((d, j) => j < chain.length && given.set(chain[j].k, decidedStep(chain[j].request, d)))
            : undefined,
      };
      // Lines go in step order (a step answered early, say from the
      // idempotency log, waits for the line of the one before it). A step's
      // line but the run's last waits a little for company (Part): the
      // caller only journals it.
      const before = behind;
      const work = before ? () => this.o.steps.one(s, ctx).finally(() => before) : () => this.o.steps.one(s, ctx);
      const answer = part(k, work, (a) => k < steps.length - 1 && answeredOk(a));
      answers.push(answer);
      // The last step's cloud call done, the run's place goes to the next run of its lane (its report and answer go on).
      if (lease && k === steps.length - 1) void carried.then(() => lease.free());
      const first = await Promise.race([answer, carried]);
      if (first === 'carried' && goesOn()) {
        if (behind && !answeredOk(await behind)) break;
        behind = answer;
        continue;
      }
      if (!answeredOk(await answer)) break;
      behind = undefined;
    }
    lease?.free();
    await Promise.all(answers);
    return NO_LINE;
  }
}
