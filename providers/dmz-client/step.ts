// One step of a DMZ client: authorize -> driver call -> report, each step
// under its idempotency key (docs/dmz-client.md, "What it does with a
// request"). It knows nothing of HTTP: it takes the driver, the authority's
// calls and the idempotency store as arguments, and the knobs a run turns
// (RunContext) from runs.ts.
//
// What must stay true:
// - A step asks the authority first and calls the driver only for an
//   approved edge, with the credentials that approval carries (fresh ones:
//   an approval whose credentials are about to expire is asked for again).
//   A call tried again (a transient failure) is tried only while they have
//   more than 2 minutes left; past that the step answers 503
//   credentials-expiring, unreported, and is sent again (operations.ts).
// - Every carried-out call is reported, ok or failed; a failed one only as a
//   driver failure (DriverError), anything else is a bug and is thrown.
// - Within a run, reports go out in step order: a step's report waits for
//   the answer of the step before it, and is not sent unless that was ok
//   (409 earlier-step-failed; 503 earlier-step-unreported when that one
//   could not be reported, so the CLI sends the run again): the record never
//   lags the cloud by more than one edge.
import { ProtocolError, WireError, type LineAnswer } from '../../protocol/index.ts';
import {
  NONE_REPORT_DETAIL,
  type AdvanceRequest,
  type AdvanceResponse,
  type AdvanceStep,
  type AuthorizeRequest,
  type AuthorizeResponse,
  type ReportRequest,
  type ReportResponse,
} from '../../protocol/index.ts';
import { DriverError, type Driver } from '../drivers/types.ts';
import type { BatchStep, CreateVmRequest, DeleteVmRequest, StepResult, TransitionRequest } from '../../protocol/index.ts';
import { BootCauses, type DeniedBoot } from './boot-causes.ts';
import type { Lease } from './lanes.ts';
import { CREDENTIALS_MARGIN_MS, Operations, credentialsExpireAt, type OperationDone } from './operations.ts';
import { createRequest, fingerprint, stepFingerprint, stepRequest, stepVm, type EdgeStep, type RequestDefaults } from './requests.ts';

/** The authority's calls a step makes (AuthorityClient, or the authority itself in tests). */
export interface AuthorityCalls {
  authorize(body: AuthorizeRequest): Promise<AuthorizeResponse>;
  /** `lazy`: nobody waits for the answer soon (see AuthorityClient.report). */
  report(body: ReportRequest, opts?: { lazy?: boolean }): Promise<ReportResponse>;
  advance(body: AdvanceRequest): Promise<AdvanceResponse>;
}

/**
 * Step results by idempotency key (IdempotencyStore): `fn` runs once per key, its result kept; and the tries of a
 * step's cloud call made by its sends answered 503 credentials-expiring, kept until its result is.
 */
export interface ResultStore {
  run(key: string, fingerprint: string, fn: () => Promise<StepResult>): Promise<StepResult>;
  triesMade(key: string, fingerprint: string): number;
  keepTries(key: string, fingerprint: string, made: number): Promise<void>;
}

/** What a step of a run knows beyond its own request (see runs.ts). */
export interface RunContext {
  /** This step's authorization request, when an earlier step's advance decided it (`ahead` or `done`). */
  request?: AuthorizeRequest;
  /** This step's fingerprint (requests.ts stepFingerprint), made once by its run. */
  fingerprint?: string;
  /** This step's authorization, given by the advance of an earlier step. */
  ahead?: AuthorizeResponse;
  /** This step's result: a `none` edge the advance of an earlier step moved at once. */
  done?: StepResult;
  /** The authorization requests of the run's next steps, sent with this step's report (or create) as one advance. */
  chain?: AuthorizeRequest[];
  /** Gets the advance's answers for `chain`, in order, as far as the authority decided them. */
  onChain?: (decided: AdvanceStep[]) => void;
  /** Called once this step's cloud call is done, ok, before its report goes out (the run may start the next step, approved ahead). */
  onCarriedOut?: () => void;
  /** The previous step's answer while its report is on its way: this step's report waits for it, and is not sent unless it was ok. */
  after?: Promise<LineAnswer>;
  /** Whether the run goes on to the next step without waiting for this step's report (then the report is lazy: see AuthorityClient.report). */
  goesOn?: () => boolean;
  /** The run's place in its lane (lanes.ts), taken before its first cloud call. */
  lease?: Lease;
}

export interface StepRunnerOptions extends RequestDefaults {
  driver: Driver;
  authority: AuthorityCalls;
  store: ResultStore;
  /** Tries of a driver call that fails with a transient error. Default 4. */
  driverAttempts?: number;
  /** A driver call not answering within this is a failure. Default 120 000. */
  driverTimeoutMs?: number;
  /** How long awaitReady waits for a VM to boot. Default 60 000. */
  readyTimeoutMs?: number;
  /** Base of the pause before a driver call is tried again, in ms. Default 20. */
  driverBackoffMs?: number;
  /** The DMZ client's state folder: the causes of denied boots are kept there (boot-causes.ts). Default: memory only. */
  stateDir?: string;
}

/** Whether an approval's credentials (if any) last long enough for a cloud call (CREDENTIALS_MARGIN_MS, operations.ts). */
function fresh(auth: AuthorizeResponse): boolean {
  return auth.credentials === undefined || credentialsExpireAt(auth.credentials) - Date.now() > CREDENTIALS_MARGIN_MS;
}

/**
 * An approval whose credentials had expired by this client's clock when they reached it: a cloud call made with them
 * is refused (driver.credentials), so none is started. That they came expired, asked for afresh, is no wait that
 * passes: the authority's cloud session for the data center was not renewed, or this host's clock runs ahead of the
 * authority's. The step answers 503 credentials-expiring, nothing of it carried out or reported: the CLI sends it
 * again (renewed meanwhile, it goes on), and once its retries run out the member fails apply.credentials-expiring
 * with what to do. Before, the call was made and refused, and the member failed as if the cloud had refused the
 * credentials (check the role), the record holding its VM in the edge's failure state (CreateFailed).
 */
function arrivedExpired(dc: string, operation: string, expiresAt: number): WireError {
  const ago = Math.ceil((Date.now() - expiresAt) / 1000);
  return new WireError(
    'credentials-expiring',
    `${operation} was not tried: the credentials the authority issued for data center ${dc} had expired when they reached its DMZ client (at ${new Date(expiresAt).toISOString()}, ${ago} s before by this client's clock), so the cloud would refuse them. Either the authority's cloud credentials for ${dc} are not being renewed (its broker: the data center's role or principal), or the clock of the DMZ client's host runs ahead of the authority's; renew them or set the clock right, then send the step again. Nothing of this step was carried out or recorded`,
  );
}

/** Whether a run's step was answered ok. */
export function answeredOk(a: LineAnswer): boolean {
  return a.status === 200 && (a.body as StepResult).outcome === 'ok';
}

/**
 * Why a step carried out behind the step before it is not reported, by
 * what that one answered:
 *
 * | the step before answered            | this step answers                  | then                                          |
 * | ----------------------------------- | ---------------------------------- | --------------------------------------------- |
 * | 5xx or 429 (its report did not get   | 503 earlier-step-unreported         | the CLI sends the run again from that step:   |
 * | through: an authority restarting)    |                                    | both carried out again (idempotent), reported |
 * | vetoed, failed, any other 4xx        | 409 earlier-step-failed             | the run ends; the next apply goes on          |
 *
 * Either way nothing of this step reaches the record: it never lags the
 * cloud by more than one edge. Before the first row, an authority restart
 * of a second ended the member as failed.
 */
function notReported(before: LineAnswer, from: string | null, to: string, carriedOut = true): WireError {
  const done = carriedOut ? 'was carried out but not reported' : 'was not carried out (its approval ahead had to be asked for again)';
  if (before.status >= 500 || before.status === 429) {
    return new WireError('earlier-step-unreported', `${from} -> ${to} ${done}${carriedOut ? ' yet' : ''}: the step before it could not be reported (it answered ${before.status}); send the run again from that step`);
  }
  return new WireError('earlier-step-failed', `${from} -> ${to} ${done}: the step before it in the run failed`);
}

/**
 * A report of a step carried out under an approval given ahead, refused because the authority no longer holds that
 * approval: approvals ahead live in the authority's memory until the report of the edge before writes their intent
 * rows, so an authority restarted in between (or another call about the VM, which drops them) refuses the report
 * (report-unapproved, report-superseded). The step is answered 503 approval-ahead-lost instead of that final 409: the
 * CLI sends the run again from it, and it is authorized afresh (judged on the record as it is now), carried out again
 * (idempotently) and reported, or vetoed. Before, the member failed, its cloud call done and not in the record, though
 * an authority restart mid-apply is to cost no member (docs/recovery.md, "Outages").
 */
function aheadLost(err: unknown, from: string | null, to: string): unknown {
  if (!(err instanceof ProtocolError) || (err.code !== 'report-unapproved' && err.code !== 'report-superseded')) return err;
  return new WireError('approval-ahead-lost', `${from} -> ${to} was carried out under an approval given ahead that the authority no longer holds, and not reported (${err.message}); send the run again from this step`);
}

export class StepRunner {
  private readonly dc: string;
  private readonly defaults: RequestDefaults;
  private readonly authority: AuthorityCalls;
  private readonly store: ResultStore;
  private readonly operations: Operations;
  /** Per VM, its report on its way (see reportOnItsWay). */
  private readonly reports = new Map<string, Promise<unknown>>();
  /**
   * Per VM this client is booting, the tokens it booted it with and the authority's cause of a denial of its boot
   * (bootDenied): for the message of the step that finds the boot denied (awaitReady). Kept in the state folder.
   */
  private readonly boots: BootCauses;
  constructor(o: StepRunnerOptions) {
    this.dc = o.dataCenter;
    this.defaults = { dataCenter: o.dataCenter, initial: o.initial, terminal: o.terminal };
    this.authority = o.authority;
    this.store = o.store;
    this.boots = BootCauses.open(o.stateDir);
    this.operations = new Operations(o.driver, {
      attempts: o.driverAttempts ?? 4,
      timeoutMs: o.driverTimeoutMs ?? 120_000,
      readyTimeoutMs: o.readyTimeoutMs ?? 60_000,
      backoffMs: o.driverBackoffMs,
    });
  }

  /**
   * The VM's report on its way, if any (settles, never rejects, once it was
   * answered). A booting VM's call to the boot endpoint waits for it: the
   * authority checks a booting VM against the record's state.
   */
  reportOnItsWay(vmId: string): Promise<unknown> | undefined {
    return this.reports.get(vmId);
  }

  /**
   * The boot endpoint denied `boot`; `detail` is the authority's cause, which the VM is not told. Kept only when it
   * is the denial of a boot this client carried out (one of the tokens it booted the VM with, or the VM's own cloud
   * id and image: a caller guessing cannot put its words in the step's message), until the step that awaits that
   * boot is done (boot-causes.ts).
   */
  bootDenied(boot: DeniedBoot, detail: string): void {
    this.boots.denied(boot, detail);
  }

  /** The DMZ client closes: what it keeps in its state folder that is not written yet is written now. */
  close(): void {
    this.boots.flush();
  }

  /**
   * POST /v1/vms: the VM enters the record in the initial state (no cloud
   * call). Within a run, with `chain`, together with the authorization of
   * the run's next edges (one advance).
   */
  create(b: CreateVmRequest, run?: RunContext): Promise<StepResult> {
    const fp = run?.fingerprint ?? fingerprint('create', b);
    return this.store.run(b.idempotencyKey, fp, async () => {
      const authReq = createRequest(this.defaults, b, fp);
      let auth: AuthorizeResponse;
      if (run?.chain?.length) {
        const res = await this.authority.advance({ create: authReq, next: run.chain, ahead: true });
        if (!res.create) throw new Error('bug: the authority answered an advance without its create');
        auth = res.create;
        run.onChain?.(res.next);
      } else {
        auth = await this.authority.authorize(authReq);
      }
      const res: StepResult = {
        requestId: authReq.requestId,
        decision: auth.decision,
        reason: auth.reason,
        outcome: auth.decision === 'vetoed' ? 'vetoed' : 'ok',
        operation: 'none',
      };
      if (auth.vm) res.vm = stepVm(auth.vm);
      return res;
    });
  }

  /** POST /v1/vms/:id/transitions: one edge, or a resize. */
  async transition(vmId: string, b: TransitionRequest, run?: RunContext): Promise<StepResult> {
    if (b.operation === 'resize' && (!b.size || b.from !== b.to)) {
      throw new WireError('bad-request', 'a resize is { from: S, to: S, operation: "resize", size }');
    }
    const s: EdgeStep = { op: 'transition', vmId, body: b };
    const fp = run?.fingerprint ?? stepFingerprint(s);
    return this.store.run(b.idempotencyKey, fp, () => this.step(b.idempotencyKey, fp, run?.request ?? stepRequest(this.defaults, s, fp), run));
  }

  /** DELETE /v1/vms/:id: the last edge. */
  remove(vmId: string, b: DeleteVmRequest, run?: RunContext): Promise<StepResult> {
    const s: EdgeStep = { op: 'delete', vmId, body: b };
    const fp = run?.fingerprint ?? stepFingerprint(s);
    return this.store.run(b.idempotencyKey, fp, () => this.step(b.idempotencyKey, fp, run?.request ?? stepRequest(this.defaults, s, fp), run));
  }

  /** One step of a batch or a run, as its single route would carry it out. */
  one(s: BatchStep, run?: RunContext): Promise<StepResult> {
    return s.op === 'create' ? this.create(s.body, run) : s.op === 'transition' ? this.transition(s.vmId, s.body, run) : this.remove(s.vmId, s.body, run);
  }

  /** Keeps `report` as the VM's report on its way until it settles. */
  private reporting<T>(vmId: string, report: Promise<T>): Promise<T> {
    const settled = report.then(
      () => undefined,
      () => undefined,
    );
    this.reports.set(vmId, settled);
    void settled.then(() => {
      if (this.reports.get(vmId) === settled) this.reports.delete(vmId);
    });
    return report;
  }

  /**
   * authorize -> driver -> report, for one edge (or a resize). Within a run,
   * `ahead` is this edge's authorization, already given by an earlier step's
   * advance, and `done` its whole result (a `none` edge moved at once); and
   * `chain` holds the run's next edges, whose authorizations are asked
   * together with this edge's report (one authority call, see
   * docs/protocol.md "Advance") and handed to `onChain`.
   */
  private async step(key: string, fp: string, req: AuthorizeRequest, run: RunContext = {}): Promise<StepResult> {
    if (run.done) return run.done;
    const { requestId, planId, vmId, from, size } = req;
    const to = req.to as string;
    const dc = this.dc;
    /**
     * Asks the authority for this edge. Behind a report on its way (write-behind), only once that report is answered
     * ok: the authority judges the edge on the record's state, and asked before, it vetoed it on the state before
     * that report (state-moved), a veto kept under this step's key, which the run sent again then got back.
     */
    const ask = async (): Promise<AuthorizeResponse> => {
      if (run.after) {
        const before = await run.after;
        if (!answeredOk(before)) throw notReported(before, from, to, false);
      }
      return this.authority.authorize(req);
    };
    // An approval given earlier in the run (ahead) whose credentials are about to expire (a long path) is asked for again.
    let auth = run.ahead && fresh(run.ahead) ? run.ahead : await ask();
    // The run's first cloud call waits for a place in its lane; the approval, given before, is asked for again if the wait outlasted it.
    if (run.lease && !run.lease.holding && auth.decision !== 'vetoed' && auth.operation !== 'none') {
      await run.lease.hold();
      if (!fresh(auth)) auth = await ask();
    }
    if (auth.decision === 'vetoed') {
      return { requestId, decision: 'vetoed', reason: auth.reason, outcome: 'vetoed', operation: 'none', ...(auth.vm ? { vm: stepVm(auth.vm) } : {}) };
    }
    if (auth.already && auth.vm) {
      // Carried out and reported before a restart lost its answer: done, nothing to do or report.
      if (run.after) {
        const before = await run.after;
        if (!answeredOk(before)) throw notReported(before, from, to);
      }
      return { requestId, decision: auth.decision, reason: auth.reason, outcome: 'ok', operation: 'none', vm: stepVm(auth.vm) };
    }
    const operation = auth.operation;
    const report = (r: Omit<ReportRequest, 'dataCenter' | 'requestId' | 'planId' | 'vmId' | 'from' | 'to'>): ReportRequest => ({
      dataCenter: dc,
      requestId,
      planId,
      vmId,
      from: from as string,
      to,
      ...r,
    });
    /** Reports go out in step order: this one only once the previous step's is answered, and only when that was ok. */
    const inTurn = async () => {
      if (!run.after) return;
      const before = await run.after;
      if (!answeredOk(before)) throw notReported(before, from, to);
    };
    /** Carried out under the approval given ahead (not asked for here): its report may find the authority has lost it (aheadLost). */
    const givenAhead = auth === run.ahead;
    const lost = (err: unknown): never => {
      throw givenAhead ? aheadLost(err, from, to) : err;
    };
    if (operation === 'boot' && auth.bootToken !== undefined) this.boots.booting(vmId, auth.bootToken, auth.vm?.cloudId ?? null, auth.vm?.realImage ?? null);
    let done: OperationDone;
    /** 503 credentials-expiring: the step is sent again, goes on with its tries and awaits the same boot then. */
    let again = false;
    /**
     * The tries of its driver call made by the sends of this step answered 503 credentials-expiring: sent again, it
     * goes on with the tries it has left (driverAttempts in all), so a cloud that keeps failing fails the step as
     * before rather than have it sent again for as long as the CLI retries. Kept in the idempotency log with the
     * step's result (idempotency.ts), so a restarted DMZ client goes on with them too.
     */
    const before = this.store.triesMade(key, fp);
    const tries = { made: before };
    try {
      const expiresAt = operation !== 'none' && auth.credentials ? credentialsExpireAt(auth.credentials) : NaN;
      if (expiresAt <= Date.now()) throw arrivedExpired(dc, operation, expiresAt);
      done = await this.operations.carryOut(operation, auth, vmId, size, tries);
    } catch (err) {
      // A try again would have outlasted the approval's credentials: nothing reported, the step answers 503 and is
      // sent again (authorized afresh). Before, that try ran, was refused as expired, and the member failed.
      again = err instanceof ProtocolError && err.code === 'credentials-expiring';
      // On disk before the 503 goes out: a DMZ client restarted before the step is sent again still counts them.
      if (again && tries.made !== before) await this.store.keepTries(key, fp, tries.made);
      if (!(err instanceof DriverError)) throw err;
      // A denied boot: the driver knows only what the VM was told (BOOT_DENIED_REASON); the authority told this client why.
      const why = err.kind === 'boot-denied' ? this.boots.why(vmId) : '';
      const detail = `${operation} failed in ${dc}: ${err.message}${why}`;
      // The code goes with the report into the VM's history: the record tells a boot denied to the VM's own agent
      // (driver.boot-denied) from one that failed while someone else's boot check for the VM was denied (deniedBoots).
      const code = `driver.${err.kind}` as const;
      await inTurn();
      const rep = await this.authority.report(report({ outcome: 'failed', detail, code })).catch(lost);
      return {
        requestId,
        decision: auth.decision,
        reason: auth.reason,
        outcome: 'failed',
        operation,
        vm: stepVm(rep.vm),
        error: { code, message: detail },
        // The authority counts the boot as denied (both signals): a client that plans on its own replaces the VM.
        ...(rep.bootDenied === true ? { bootDenied: true } : {}),
      };
    } finally {
      // The step's result, once stored, ends its count of tries (idempotency.ts); a step that throws instead (its report
      // not answered) goes on with them when sent again.
      // The boot's wait is over, ready or not: its token's denial is nobody's business any more.
      if (!again && operation === 'awaitReady') this.boots.done(vmId);
    }
    run.onCarriedOut?.();
    const ok = report({ outcome: 'ok', ...done, detail: operation === 'none' ? NONE_REPORT_DETAIL : `${operation} done in ${dc}` });
    // Known as on its way from now on (a booting VM's call waits for it), though it goes out in its turn.
    const rep = await this.reporting(
      vmId,
      inTurn().then(async (): Promise<ReportResponse> => {
        // Lazy (waiting for company) when the run goes on without it, but
        // never a boot's: the VM's agent asks the boot endpoint as soon as it
        // is up, and that check waits for this report (reportOnItsWay), so
        // its linger would hold the VM's boot, and its place in the lane.
        if (!run.chain?.length) return this.authority.report(ok, { lazy: operation !== 'boot' && run.goesOn?.() === true });
        const res = await this.authority.advance({ report: ok, next: run.chain, ahead: true });
        if (!res.report) throw new Error('bug: the authority answered an advance without its report');
        run.onChain?.(res.next);
        return res.report;
      }),
    ).catch(lost);
    return { requestId, decision: auth.decision, reason: auth.reason, outcome: 'ok', operation, vm: stepVm(rep.vm) };
  }
}
