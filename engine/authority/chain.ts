// The advance optimisation: a report (or a create) and the VM's next edges
// decided in one call, and, in the common case, written by one record
// statement (docs/protocol.md "Advance", "Approvals ahead"). Everything here
// only saves work: an advance answers exactly what the report (or create),
// then each edge's authorize and, for a `none` edge in the middle, its ok
// report would answer one by one, decided by the same checks (judgeEdge) on
// the rows that statement makes. The service (authority.ts) calls these.
import type { LoadedPack, Lifecycle } from '../policy/types.ts';
import type { ChangeContext, IntentRow, Onward, VmRow } from '../record/index.ts';
import { NONE_REPORT_DETAIL, refuse, sha256, type AdvanceRequest, type AdvanceStep, type AuthorizeRequest, type Decided, type ReportRequest } from '../../protocol/index.ts';
import { historySize, judgeCaller, judgeEdge, pendingKey } from './decisions.ts';
import { newBootToken } from './keys.ts';
import { toAuthorityVm } from './answers.ts';

/** An edge approved on row `vm` (its intent row written), to be answered by approve. */
export interface Approved {
  vm: VmRow;
  to: string;
  operation: string;
  /** For a `boot` edge: the token whose hash the intent's statement stored. */
  bootToken?: string;
}

/**
 * An edge of an advance chain decided on the row the chain's statement is
 * about to make (foresee), written by that statement: its intent row and,
 * when `moved`, its transition (a `none` edge in the middle of the chain).
 */
export interface Foreseen extends Approved {
  req: AuthorizeRequest;
  moved: boolean;
  /** Approved ahead (AdvanceRequest.ahead): not written by the statement; its intent row waits for the report of the edge before it. */
  ahead?: boolean;
}

/** An edge approved ahead, waiting for the ok report of the edge before it, whose statement writes its intent row. */
export interface Ahead {
  /** The data center it was approved for (its pending entry's, pendingKey). */
  dataCenter: string;
  from: string;
  intent: IntentRow;
  /** ms since epoch, as Pending.at. */
  at: number;
}

/**
 * The shape an advance must have, checked before anything is done (a
 * refusal is `bad-request`, or `wrong-data-center` for a report naming
 * another data center): exactly one of report and create, a create only as
 * `create`, and next edges of the same VM that follow one another. The VM's id.
 */
export function checkAdvance(caller: string, req: AdvanceRequest): Decided<{ vmId: string }> {
  const { report, create, next } = req;
  if ((report === undefined) === (create === undefined)) return refuse('bad-request', 'an advance carries exactly one of report and create');
  if (create && create.kind !== 'create') return refuse('bad-request', `an advance's create is a create (kind create), not a ${create.kind}`);
  if (report) {
    const reporter = judgeCaller(caller, report, 'report');
    if (!reporter.ok) return reporter;
  }
  const vmId = (report ?? create)!.vmId;
  if (next.length === 0) return refuse('bad-request', 'an advance needs at least one next edge');
  // One request, one id: a second approval under an id replaces the first's, whose report is then refused.
  const ids = [(report ?? create)!.requestId, ...next.map((n) => n.requestId)];
  const twice = ids.find((id, j) => ids.indexOf(id) !== j);
  if (twice !== undefined) return refuse('bad-request', `request id ${twice} names two requests of the advance: its ${report ? 'report' : 'create'} and every next edge each have its own request id`);
  for (let j = 0; j < next.length; j++) {
    const n = next[j];
    if (n.kind === 'create') return refuse('bad-request', "a create is never the next edge of an advance: send it as the advance's create");
    if (n.vmId !== vmId) return refuse('bad-request', `an advance is about one VM: it is about ${vmId}, its next edge ${j} about ${n.vmId}`);
    if (j > 0 && n.from !== next[j - 1].to) {
      return refuse('bad-request', `the next edges of an advance follow one another: edge ${j} leaves ${n.from}, edge ${j - 1} leads to ${next[j - 1].to ?? 'nowhere'}`);
    }
  }
  return { ok: true, vmId };
}

/** Whether edge j of a chain, approved with `operation`, is moved at once: a `none` edge with an edge after it. */
export function movesAtOnce(next: readonly AuthorizeRequest[], j: number, operation: string): boolean {
  return operation === 'none' && j < next.length - 1;
}

/**
 * Row `row` as it was at `at`'s state and version: a chain's statement
 * returns the row it leaves; its answers carry the row as each edge found
 * it (the other fields are the same, timestamps aside).
 */
export function rowAt(row: VmRow, at: VmRow): VmRow {
  return at.version === row.version ? row : { ...row, state: at.state, version: at.version, retiredAt: at.retiredAt };
}

/** The ok report of a `none` edge a chain moves at once, as the DMZ client would send it. */
export function noneReport(caller: string, req: AuthorizeRequest): ReportRequest {
  return { dataCenter: caller, requestId: req.requestId, planId: req.planId, vmId: req.vmId, from: req.from as string, to: req.to as string, outcome: 'ok', detail: NONE_REPORT_DETAIL };
}

/** The history row context of a report's transition. */
export function reportCtx(caller: string, req: ReportRequest, outcome: 'ok' | 'failed', detail: string | null): ChangeContext & { outcome: 'ok' | 'failed' } {
  return { actor: `dmz-client:${caller}`, planId: req.planId, requestId: req.requestId, outcome, detail };
}

/** The history row of an approved edge's intent, less its `from` (the VM's state) and outcome (`ok`): written before any cloud call. */
export function intentOf(req: AuthorizeRequest, to: string, operation: string): { to: string } & ChangeContext {
  const size = req.kind === 'resize' && req.size ? ` to ${historySize(req.size)}` : '';
  return { to, actor: 'authority', planId: req.planId, requestId: req.requestId, detail: `intent approved: ${operation}${size}` };
}

/** A chain's `none` edge found passed already (an advance sent again): approved and `already`, on the row as it is now. */
export function alreadyPassed(req: AuthorizeRequest, vm: VmRow): AdvanceStep {
  const now = toAuthorityVm(vm);
  return {
    authorize: { decision: 'approved', reason: `${req.from ?? 'nothing'} -> ${req.to ?? '?'} (none) was passed already by VM ${vm.address}`, operation: 'none', vm: now },
    moved: { vm: now, effect: 'already' },
  };
}

/**
 * How many of `next`'s first edges a VM at `vm.state` has passed since it
 * was at `start`, when only `none` edges of the chain's middle lead there;
 * 0 otherwise.
 */
export function passedAlready(lifecycle: Lifecycle, vm: VmRow, start: string, next: readonly AuthorizeRequest[]): number {
  let state = start;
  for (let j = 0; j < next.length - 1; j++) {
    const e = next[j];
    if (e.from !== state || e.to === undefined || e.kind !== 'transition' || lifecycle.operation(e.from, e.to) !== 'none') return 0;
    state = e.to;
    if (vm.state === state) return j + 1;
  }
  return 0;
}

/**
 * The edges of `next` that would be approved one after the other starting
 * on `row` (the row a statement is about to make): each decided by
 * judgeEdge on the row the one before leaves, up to and including the
 * first that is not moved at once (see movesAtOnce), and with `ahead` on
 * past it, approved ahead (each on the row the one before will leave once
 * reported). Stops before an edge that would be refused (the service
 * decides it, on a fresh read), an edge `plain` says needs the service's
 * policy checks (a resize that grows, a deletion, request-level rules), a pass into a terminal state (its report
 * retires the row), and a second boot edge (a statement stores one token).
 */
export function foresee(
  pack: LoadedPack,
  caller: string,
  next: readonly AuthorizeRequest[],
  row: VmRow,
  opts: { ahead?: boolean; plain?: (req: AuthorizeRequest, to: string, at: VmRow) => boolean } = {},
): Foreseen[] {
  const out: Foreseen[] = [];
  let at = row;
  /** Past the edge to carry out: approving ahead. */
  let ahead = false;
  // One boot token a statement (TransitionItem.bootTokenHash).
  let token = false;
  for (let j = 0; j < next.length; j++) {
    const req = next[j];
    if (req.to === undefined || !judgeCaller(caller, req).ok) break;
    // An edge the policy at the authority must judge on the record (policy.ts) is left to the service.
    if (opts.plain && !opts.plain(req, req.to, at)) break;
    const judged = judgeEdge(pack, caller, req, req.to, at);
    if (!judged.ok) break;
    const { operation } = judged;
    const moved = !ahead && movesAtOnce(next, j, operation);
    if ((operation === 'boot' && token) || (moved && pack.lifecycle.isTerminal(req.to))) break;
    token ||= operation === 'boot';
    out.push({ req, vm: at, to: req.to, operation, moved, ...(ahead ? { ahead } : {}), ...(operation === 'boot' ? { bootToken: newBootToken() } : {}) });
    if (!moved) {
      if (!opts.ahead) break;
      ahead = true;
    }
    // The row once this edge is moved (at once, or by its report).
    at = { ...at, state: req.to, version: at.version + 1 };
  }
  return out;
}

/** What a chain's statement writes after its own row for the edges foresee decided (Onward), and the boot token of the last. */
export function onward(caller: string, foreseen: readonly Foreseen[]): Onward & { bootTokenHash?: string } {
  // Edges approved ahead write no intent now, but a boot edge's token is stored now: its VM may call before the report that writes its intent.
  const token = foreseen.find((f) => f.bootToken !== undefined)?.bootToken;
  const now = foreseen.filter((f) => !f.ahead);
  if (now.length === 0) return {};
  const intents = now.map((f): IntentRow => intentOf(f.req, f.to, f.operation));
  const passes = now
    .filter((f) => f.moved)
    .map((f, j) => ({ ctx: reportCtx(caller, noneReport(caller, f.req), 'ok', NONE_REPORT_DETAIL), ...(intents[j + 1] ? { intent: intents[j + 1] } : {}) }));
  return { intent: intents[0], ...(passes.length > 0 ? { passes } : {}), ...(token !== undefined ? { bootTokenHash: sha256(token) } : {}) };
}

/**
 * Per VM, its edges approved ahead, in path order; VMs in time order of
 * their last approval, so the expired ones come first (prune).
 */
export class AheadQueue {
  private readonly byVm = new Map<string, Ahead[]>();

  /** `dropped`: told the pending keys (pendingKey) of approvals ahead dropped before their intent rows were written (their reports are refused). */
  constructor(private readonly dropped: (keys: string[]) => void = () => {}) {}

  get(vmId: string): Ahead[] | undefined {
    return this.byVm.get(vmId);
  }

  /** Anything but the report the first one waits for drops them all. */
  drop(vmId: string): void {
    const queued = this.byVm.get(vmId);
    if (!queued) return;
    this.byVm.delete(vmId);
    this.dropped(queued.flatMap((a) => (a.intent.requestId ? [pendingKey(a.dataCenter, a.intent.requestId)] : [])));
  }

  /** The approvals ahead a chain of `dataCenter` left for `vmId`, replacing any before. */
  set(vmId: string, dataCenter: string, later: readonly Foreseen[], at: number): void {
    // Dropped first (any left are replaced), so the map stays in time order.
    this.drop(vmId);
    this.byVm.set(vmId, later.map((f) => ({ dataCenter, from: f.vm.state, intent: intentOf(f.req, f.to, f.operation), at })));
  }

  /** The first one's intent is written (by its report's statement): from now on it is an edge like any authorized one. */
  shift(vmId: string): void {
    const queued = this.byVm.get(vmId);
    queued?.shift();
    if (queued?.length === 0) this.byVm.delete(vmId);
  }

  /** Drops the VMs whose approvals are older than `cutoff` (ms since epoch). */
  prune(cutoff: number): void {
    for (const [id, a] of this.byVm) {
      if (a[0].at >= cutoff) break;
      this.byVm.delete(id);
    }
  }
}
