// The authority: the patent's cloud orchestrator server. It approves, vetoes
// or modifies every request a DMZ client makes, and it is the only writer of
// VM state into the record during apply. This file is the service's shell:
// it loads and remembers rows (rows.ts), serialises calls per VM, batches its
// record writes, and records what the pure decisions (decisions.ts) and the
// advance chain (chain.ts) decide; creates go through create.ts, reports
// through report.ts (both on the Core this shell builds, core.ts). It names refusals by wire code only; the HTTP
// layer (protocol/http.ts) turns them into statuses.
//
// What must stay true:
// - Isolation: the data center is taken from the caller's token, never from
//   the body alone; a request about a VM of another data center is vetoed,
//   and one about a VM of another stack (stacks may share a record) is
//   answered as about a VM the record does not have (rows are read through
//   a filter on the stack this authority serves; boots check it in their
//   statement).
// - No skipped states: a transition is approved only when from -> to is
//   exactly one edge of the pack's lifecycle and `from` is the VM's current
//   state. The record moves only when the DMZ client reports the outcome
//   ("move at report"): ok -> along the approved edge; failed -> along the
//   diagram's failure edge from `from` (BeingCreated -> CreateFailed,
//   Starting -> BootFailed) when there is one, else a history row only.
//   So every state change that reaches the record passes one edge.
// - advance (a report or a create, then a chain of next edges, in one call)
//   answers exactly what the report (or create), then each edge's authorize
//   and, for a `none` edge in the middle, its ok report would, one by one in
//   one serial(); it only saves work (chain.ts). With `ahead`, the edges after
//   the one to carry out are approved on the rows the edges before them will
//   leave (same checks); each one's intent row is written by the report of
//   the edge before it, and anything but that report drops them (AheadQueue).
// - A boot is approved only for a VM the record knows, in the caller's data
//   center, with the same cloud id and real image, presenting an unused boot
//   token. Only then is the disk key released.
import { Batched, KeyLocks } from '../durability/index.ts';
import { BudgetExceededError } from '../record/index.ts';
import type { ClaimStore, HistoryItem, InsertItem, RequestClaim, TransitionItem, VmRow } from '../record/index.ts';
import {
  WireError,
  sha256,
  type AdvanceRequest,
  type AdvanceResponse,
  type AdvanceStep,
  type AuthorizeRequest,
  type AuthorizeResponse,
  type BootAuthorizeRequest,
  type BootAuthorizeResponse,
  type Refusal,
  type ReportRequest,
  type ReportResponse,
  type WireCode,
} from '../../protocol/index.ts';
import { AheadQueue, alreadyPassed, checkAdvance, intentOf, movesAtOnce, noneReport, passedAlready, rowAt, type Approved, type Foreseen } from './chain.ts';
import type { AuthorityCoreOptions, Core } from './core.ts';
import { authorizeCreate } from './create.ts';
import { claimRefusal, doneAlready, historySize, judgeCaller, judgeEdge, judgeRequestId, pendingKey, sameRequest, type Pending } from './decisions.ts';
import { diskKey, newBootToken } from './keys.ts';
import { ScopedTokenIssuer } from './credentials/scoped.ts';
import type { CloudCredentials } from './credentials/types.ts';
import { Fences, PolicyGate } from './gate.ts';
import { BootGate } from './boot.ts';
import { settle } from './report.ts';
import { StaleRow, VmRows } from './rows.ts';
import { toAuthorityVm, veto, vetoForeign } from './answers.ts';

export { toAuthorityVm } from './answers.ts';

type Credentials = NonNullable<AuthorizeResponse['credentials']>;
export type { AuthorityCoreOptions } from './core.ts';

/**
 * How the authority's record calls are batched (engine/durability/batched.ts):
 * a batch runs beside others only once enough calls wait (a statement costs a
 * fixed part plus a little per item, so at low load one big batch beats
 * several small ones), at most three at once. Transitions and creates bump
 * fleet rows: no two of their batches running at once (transitions or
 * creates alike) share a fleet, so no two statements can lock the same fleet
 * rows in different orders.
 */
const OVERLAP = { parallel: 3, overlapAt: 32 } as const;
const fleetKey = (stack: string, fleet: string) => `${stack}\u0000${fleet}`;

/** How often a replica deletes the record's expired request claims (ClaimStore.pruneRequestClaims). */
const PRUNE_CLAIMS_MS = 60_000;
type Holder = Awaited<ReturnType<ClaimStore['claimRequests']>>[number];

/** A request id being decided (Authority.hold): the request it was taken for, how many sendings of it hold it, who waits. */
interface Held {
  req: AuthorizeRequest;
  n: number;
  waiting?: (() => void)[];
}

export class Authority {
  /** Approved requests waiting for their report, by data center and request id (pendingKey); reports are checked against them. */
  private readonly pending = new Map<string, Pending>();
  /** Request ids being decided, by pendingKey: see hold. */
  private readonly deciding = new Map<string, Held>();
  private readonly rows: VmRows;
  /** Per VM, its edges approved ahead (see AdvanceRequest.ahead). */
  private readonly ahead = new AheadQueue((keys) => {
    // Never to be reported: their intent rows were not written, and the VM may reach their `from` along other approvals.
    for (const key of keys) {
      const p = this.pending.get(key);
      if (p) p.dropped = true;
    }
  });
  private readonly ttl: number;
  /**
   * The two writes of every step, batched: the intent rows of concurrent
   * authorizes share one statement, and so do the transitions of concurrent
   * reports (FleetRecord.addHistoryMany / transitionVms: one round trip and
   * one commit for a batch, each call still answered with its own outcome).
   * An advance's transition (or insert) carries the intent rows and the
   * `none` edges its chain passes at once with it (Onward), and a boot
   * edge's token rides with its intent row, so they need no call of their own.
   * Calls about one VM never share a batch: serial() runs them one by one.
   */
  private readonly intents: Batched<HistoryItem, undefined>;
  private readonly transitions: Batched<TransitionItem & { stack: string; fleet: string }, VmRow>;
  /** The same for the once-per-VM writes and reads: creates (and row reads, boot checks: rows.ts, boot.ts). */
  private readonly inserts: Batched<InsertItem, VmRow>;
  private readonly boot: BootGate;
  /** Fleet fences (their latest lock's fencing token), read per batch of authorizations (judgeFence). */
  private readonly fences: Fences;
  /** The policy the authority judges per request (gate.ts). */
  private readonly policy: PolicyGate;
  private readonly scopedTokens: ScopedTokenIssuer;
  /** Other replicas write the same record (AuthorityCoreOptions.replicas > 1). */
  private readonly shared: boolean;
  /**
   * With replicas: the request ids of edges claimed in the record before they
   * are decided (claim), concurrent calls' claims in one statement.
   */
  private readonly claims: Batched<RequestClaim, Holder> | undefined;
  /** When the expired claims are next deleted (ms since epoch). */
  private nextClaimPrune = 0;
  /** What the create and report paths (create.ts, report.ts) use of this service. */
  private readonly core: Core;
  /** Per data center, the credentials last issued (see credentials). */
  private readonly lastCredentials = new Map<string, { expiresMs: number; cloud: CloudCredentials | undefined; credentials: Credentials }>();

  constructor(private readonly o: AuthorityCoreOptions) {
    this.ttl = o.credentialTtlMs ?? 10 * 60_000;
    this.scopedTokens = o.scopedTokens ?? new ScopedTokenIssuer([], o.secret);
    const r = o.record;
    // Transitions and creates both lock fleet rows: one key space for the two.
    const fleetLocks = new KeyLocks();
    this.intents = new Batched<HistoryItem, undefined>((items) => r.addHistoryMany(items), OVERLAP);
    this.transitions = new Batched<TransitionItem & { stack: string; fleet: string }, VmRow>((items) => r.transitionVms(items), {
      ...OVERLAP,
      keyOf: (t) => fleetKey(t.stack, t.fleet),
      locks: fleetLocks,
    });
    this.inserts = new Batched<InsertItem, VmRow>((items) => r.insertVms(items), {
      ...OVERLAP,
      keyOf: (i) => fleetKey(i.vm.stack, i.vm.fleet),
      locks: fleetLocks,
    });
    const reads = new Batched((ids: string[]) => r.getVms(ids), OVERLAP);
    this.shared = (o.replicas ?? 1) > 1;
    this.claims = this.shared
      ? new Batched<RequestClaim, Holder>(async (items) => {
          if (Date.now() >= this.nextClaimPrune) {
            this.nextClaimPrune = Date.now() + PRUNE_CLAIMS_MS;
            await r.pruneRequestClaims();
          }
          return r.claimRequests(o.stackName, items, this.ttl);
        }, OVERLAP)
      : undefined;
    // Stacks may share a record: another stack's VM is not in this authority's record (unknown-vm), whatever its data center is called.
    this.rows = new VmRows(async (id) => {
      const vm = await reads.submit(id);
      return vm?.stack === o.stackName ? vm : undefined;
    }, !this.shared);
    this.boot = new BootGate(r, o.pack, o.secret, this.rows, OVERLAP, o.stackName);
    this.fences = new Fences(r, OVERLAP);
    this.policy = new PolicyGate(o);
    this.core = {
      o,
      pending: this.pending,
      rows: this.rows,
      ahead: this.ahead,
      inserts: this.inserts,
      transitions: this.transitions,
      fences: this.fences,
      policy: this.policy,
      credentials: (dataCenter, requestId) => this.credentials(dataCenter, requestId),
    };
  }

  private get lifecycle() {
    return this.o.pack.lifecycle;
  }

  /** A DMZ client that died between authorize and report leaves its entry; its credentials have expired by then. */
  private prunePending(): void {
    // Entries are added in time order and never re-added, so the expired ones come first.
    const cutoff = Date.now() - this.ttl;
    for (const [id, p] of this.pending) {
      if (p.at >= cutoff) break;
      this.pending.delete(id);
    }
    this.ahead.prune(cutoff);
  }

  /**
   * The credentials of an approval for `dataCenter`. Approvals issued for one
   * data center within the same millisecond of expiry (an advance's chain,
   * the calls one record statement answers) share one scoped token: its
   * expiry is exactly what each would have had, and a token grants its data
   * center's mutating calls until then whichever approval it came with (no
   * one-time use, nothing bound to the request). Signing one per approval
   * was 6 HMACs per created VM (issue 20 point 6).
   */
  private credentials(dataCenter: string, _requestId: string): Credentials {
    const cloud = this.o.credentialBroker?.issued(dataCenter);
    const expiresMs = Math.min(Date.now() + this.ttl, cloud ? Date.parse(cloud.expiresAt) : Infinity);
    const last = this.lastCredentials.get(dataCenter);
    if (last !== undefined && last.expiresMs === expiresMs && last.cloud === cloud) return { ...last.credentials };
    const expiresAt = new Date(expiresMs).toISOString();
    const credentials: Credentials = {
      dataCenter,
      token: this.scopedTokens.issue(dataCenter, expiresAt),
      expiresAt,
      ...(cloud?.aws ? { aws: cloud.aws } : {}),
      ...(cloud?.azure ? { azure: cloud.azure } : {}),
    };
    this.lastCredentials.set(dataCenter, { expiresMs, cloud, credentials });
    return { ...credentials };
  }

  /**
   * Takes the request ids of `reqs` (the caller's) for as long as they are
   * being decided, and gives the release. Refuses (request-reused) a request
   * whose id is the caller's approval of another request, still waiting for
   * its report (judgeRequestId). The check and the approval it guards are
   * apart (the approval is recorded once its intent row is written, later):
   * a request whose id another request (another VM, edge, kind or size) is
   * being decided under waits until that one is decided, then is judged
   * against its outcome; so requests under one id in flight at once (two
   * calls, two calls of one batch, an advance's edge) are decided as if one
   * after the other, and never both approved. The same request sent again
   * (its answer lost) goes on beside its first sending, as it always did.
   * Ids are taken only when all are free, so two requests waiting for each
   * other's ids cannot be. Without a wait (the usual case) it answers at
   * once, not in a promise: no tick on the authorize path.
   */
  private hold(caller: string, reqs: readonly AuthorizeRequest[]): (() => void) | Promise<() => void> {
    for (const req of reqs) {
      const key = pendingKey(caller, req.requestId);
      const judged = judgeRequestId(this.pending.get(key), req);
      if (!judged.ok) throw new WireError(judged.refusal, judged.reason);
      const other = this.deciding.get(key);
      if (other && !sameRequest(other.req, req)) return new Promise<void>((decided) => (other.waiting ??= []).push(decided)).then(() => this.hold(caller, reqs));
    }
    const held = reqs.map((req) => {
      const key = pendingKey(caller, req.requestId);
      const h = this.deciding.get(key);
      if (h) h.n++;
      else this.deciding.set(key, { req, n: 1 });
      return key;
    });
    return () => {
      for (const key of held) {
        const h = this.deciding.get(key);
        if (!h || --h.n > 0) continue;
        this.deciding.delete(key);
        for (const decided of h.waiting ?? []) decided();
      }
    };
  }

  /**
   * With replicas (shared), claims the request ids of `reqs`' edges in the
   * record for their requests, after hold took them in this process: the
   * record, not one replica's memory, is what refuses (request-reused) a
   * request whose id another replica decides, or decided, another request
   * under. A claim is taken before the decision and lives as long as an
   * approval's credentials from its last sending, approved or not (a claim
   * let go at a veto could be let go under the same request approved by
   * another replica at that moment). Creates claim nothing: a create leaves
   * no approval waiting for a report (authorizeCreate), as in one process.
   * One authority alone claims nothing: hold decides, with no round trip.
   */
  private async claim(caller: string, reqs: readonly AuthorizeRequest[]): Promise<void> {
    if (!this.claims) return;
    const edges = reqs.filter((req) => req.kind !== 'create');
    const holders = await Promise.all(
      edges.map((req) =>
        this.claims!.submit({
          dataCenter: caller,
          requestId: req.requestId,
          vmId: req.vmId,
          kind: req.kind,
          from: req.from,
          to: req.to ?? null,
          size: req.kind === 'resize' && req.size ? historySize(req.size) : null,
        }),
      ),
    );
    for (const [k, holder] of holders.entries()) {
      if (holder === undefined) continue;
      const refused = claimRefusal(holder, edges[k]);
      throw new WireError(refused.refusal, refused.reason);
    }
  }

  async authorize(caller: string, req: AuthorizeRequest): Promise<AuthorizeResponse> {
    const foreign = vetoForeign(caller, req);
    if (foreign) return foreign;
    const held = this.hold(caller, [req]);
    const release = typeof held === 'function' ? held : await held;
    try {
      await this.claim(caller, [req]);
      // Queued for the VM at once (calls about one VM run in the order they came), the credentials prepared inside.
      return await this.rows.serial(req.vmId, async () => {
        await this.o.credentialBroker?.prepare(caller);
        return req.kind === 'create' ? (await authorizeCreate(this.core, caller, req)).answer : this.authorizeEdge(caller, req);
      });
    } finally {
      release();
    }
  }

  /** authorize of a transition or a resize, inside serial(). */
  private authorizeEdge(caller: string, req: AuthorizeRequest): Promise<AuthorizeResponse> {
    this.ahead.drop(req.vmId);
    const to = req.to;
    if (to === undefined) return Promise.resolve(veto('a transition needs its target state', undefined, 'bad-request'));
    return this.rows.decideOn(req.vmId, async (vm, remembered) => {
      // Anything but an approval is decided again on a fresh read.
      const refuse = async (reason: string, code: WireCode): Promise<AuthorizeResponse> => {
        if (remembered) throw new StaleRow(reason);
        if (!vm) return veto(reason, undefined, code);
        await this.o.record.addHistory(vm.id, {
          from: req.from,
          to: to,
          outcome: 'vetoed',
          actor: `dmz-client:${caller}`,
          planId: req.planId,
          requestId: req.requestId,
          detail: reason,
        });
        return veto(reason, vm, code);
      };
      if (!vm) return refuse(`VM ${req.vmId} is not in the record`, 'unknown-vm');
      const judged = judgeEdge(this.o.pack, caller, req, to, vm);
      if (!judged.ok && (judged.refusal === 'state-moved' || judged.refusal === 'vm-retired') && !remembered && vm.dataCenter === caller) {
        // Sent again after its answer was lost (a DMZ client restart, its report's answer lost): done, not moved by
        // someone else (doneAlready: the record's row of its report); a delete's last edge finds the VM it retired.
        if (doneAlready(req, to, vm, await this.o.record.history(vm.stack, vm.address, { limit: 50 }), caller)) {
          const by = req.planId !== null ? `under plan ${req.planId}` : `as request ${req.requestId}`;
          return {
            decision: 'approved',
            reason: `${req.from} -> ${to} was carried out already ${by}; VM ${vm.address} is ${vm.state}`,
            operation: 'none',
            already: true,
            vm: toAuthorityVm(vm),
          };
        }
      }
      if (!judged.ok) return refuse(judged.reason, judged.refusal);
      const fence = await this.fences.fenced(vm.stack, vm.fleet, req.fencingToken);
      if (fence !== undefined) return refuse(fence.reason, fence.refusal);
      const { operation } = judged;
      const policy = await this.policy.judge(req, to, vm, operation);
      if (!policy.ok) return refuse(policy.reason, policy.refusal);
      // The intent (and a boot edge's token), before any cloud call; the
      // state change itself is written at report. Written only while the VM
      // is still at the version decided on (a conflict decides again on a
      // fresh read). An override used is recorded in it, with who and why.
      const bootToken = operation === 'boot' ? newBootToken() : undefined;
      const intent = intentOf(req, to, operation);
      const row = { from: req.from, outcome: 'ok' as const, ...intent, ...(policy.note ? { detail: `${intent.detail}; ${policy.note}` } : {}) };
      if (policy.grow) {
        // A grow where limits apply: checked by the record, and reserved, in
        // the transaction that writes its intent (so racing replicas never
        // both take the last quota or capacity).
        try {
          await this.o.record.reserveGrow({ stack: vm.stack, vmId: vm.id, expectedVersion: vm.version, owner: policy.grow.owner, size: req.size!, budget: policy.grow.budget, row, ttlMs: this.ttl });
        } catch (err) {
          if (!(err instanceof BudgetExceededError)) throw err;
          return refuse(err.diagnostics[0].detail, err.which === 'owner' ? 'over-quota' : 'over-capacity');
        }
      } else {
        await this.intents.submit({ vmId: vm.id, row, expectedVersion: vm.version, ...(bootToken !== undefined ? { bootTokenHash: sha256(bootToken) } : {}) });
      }
      return this.approve(caller, req, { vm, to, operation, ...(bootToken !== undefined ? { bootToken } : {}) });
    });
  }

  /**
   * An approved edge whose intent row (and boot token) is written: its
   * answer (credentials, the boot token for `boot`, the disk key hash for
   * `createVm` of an encrypted VM) and, unless it was moved at once, the
   * pending entry its report is checked against.
   */
  private approve(caller: string, req: AuthorizeRequest, edge: Approved, opts: { moved?: boolean } = {}): AuthorizeResponse {
    const { vm, to, operation } = edge;
    const res: AuthorizeResponse = {
      decision: 'approved',
      reason: `${vm.state} -> ${to} (${operation}) is allowed for ${vm.address}`,
      operation,
      credentials: this.credentials(caller, req.requestId),
      vm: toAuthorityVm(vm),
    };
    if (vm.realImage !== null) res.realImage = vm.realImage;
    if (operation === 'boot') {
      if (edge.bootToken === undefined) throw new Error('bug: a boot edge approved without its token');
      res.bootToken = edge.bootToken;
    }
    if (operation === 'createVm' && vm.encryptedDisk) res.diskKeyHash = sha256(diskKey(this.o.secret, vm.id));
    this.prunePending();
    // A repeated authorize (a lost answer) moves its entry to the end: entries stay in time order.
    const key = pendingKey(caller, req.requestId);
    this.pending.delete(key);
    if (!opts.moved) {
      this.pending.set(key, {
        dataCenter: caller,
        vmId: vm.id,
        from: vm.state,
        to,
        kind: req.kind,
        operation,
        at: Date.now(),
        version: vm.version,
        ...(req.kind === 'resize' && req.size ? { size: req.size } : {}),
      });
    }
    return res;
  }

  async report(caller: string, req: ReportRequest): Promise<ReportResponse> {
    const reporter = judgeCaller(caller, req, 'report');
    if (!reporter.ok) throw new WireError(reporter.refusal, reporter.reason);
    return this.rows.serial(req.vmId, async () => (await settle(this.core, caller, req)).report);
  }

  /**
   * A report (or a create) and the authorization of the VM's next edges in
   * one call (docs/protocol.md, "Advance"), answered as the report (or the
   * create), then per edge authorize and, for a `none` edge in the middle,
   * an ok report would answer them, inside one serial(). In the common case
   * every edge is decided on the rows the first write is about to make
   * (foresee) and written by that one statement (its intent rows, passes and
   * boot token: Onward); any edge it cannot decide so, and every edge after
   * it, is decided afterwards one by one exactly as authorize and report
   * would (decideRest). The chain is decided only when the VM is then at
   * next[0].from (moved, or there already); it stops after the first edge
   * that is vetoed or not moved.
   */
  async advance(caller: string, req: AdvanceRequest): Promise<AdvanceResponse> {
    const checked = checkAdvance(caller, req);
    if (!checked.ok) throw new WireError(checked.refusal, checked.reason);
    // Before anything is done (its report taken): no edge of the chain may reuse another request's id.
    const held = this.hold(caller, req.create ? [req.create, ...req.next] : req.next);
    const release = typeof held === 'function' ? held : await held;
    const { vmId } = checked;
    // Approvals ahead live in this process until the next report: not with replicas.
    const ahead = req.ahead === true && !this.shared;
    try {
      await this.claim(caller, req.create ? [req.create, ...req.next] : req.next);
      return await this.rows.serial(vmId, async () => {
        await this.o.credentialBroker?.prepare(caller);
        // A new chain decides afresh what comes next.
        this.ahead.drop(vmId);
        return req.create ? this.advanceCreate(caller, req.create, req.next, ahead) : this.advanceReport(caller, req.report!, req.next, ahead);
      });
    } finally {
      release();
    }
  }

  private async advanceCreate(caller: string, create: AuthorizeRequest, next: readonly AuthorizeRequest[], ahead: boolean): Promise<AdvanceResponse> {
    const foreign = vetoForeign(caller, create);
    if (foreign) return { create: foreign, next: [] };
    // The create's own token is fenced by authorizeCreate; its chain's other tokens, here (a stale one on any edge
    // refuses it all). An edge under the create's token (the usual case: one apply) is left to authorizeCreate's check,
    // a moment later in the same call: one read of the fleet's fence per create, not two.
    const fence = create.vm ? await this.fencedChain(create.vm.stack, create.vm.fleet, next, create.fencingToken) : undefined;
    if (fence !== undefined) return { create: veto(fence.reason, undefined, fence.refusal), next: [] };
    const made = await authorizeCreate(this.core, caller, create, next, ahead);
    if (made.answer.decision === 'vetoed' || !made.row) return { create: made.answer, next: [] };
    return { create: made.answer, next: await this.chain(caller, next, made.row, this.lifecycle.initial, made.foreseen) };
  }

  private async advanceReport(caller: string, report: ReportRequest, next: readonly AuthorizeRequest[], ahead: boolean): Promise<AdvanceResponse> {
    // What was done is recorded whoever did it; what comes next only under the fleet's current lock.
    const known = next.length > 0 ? await this.rows.get(report.vmId) : undefined;
    const fence = known ? await this.fencedChain(known.stack, known.fleet, next) : undefined;
    if (fence !== undefined) {
      const r = (await settle(this.core, caller, report)).report;
      const vm = await this.rows.get(report.vmId);
      // The history row names the edge whose token was refused (a later one, maybe), not the chain's first.
      const e = fence.edge;
      if (vm) await this.o.record.addHistory(vm.id, { from: e.from, to: e.to ?? e.from ?? '', outcome: 'vetoed', actor: `dmz-client:${caller}`, planId: e.planId, requestId: e.requestId, detail: fence.reason });
      return { report: r, next: [{ authorize: veto(fence.reason, vm, fence.refusal) }] };
    }
    const settled = await settle(this.core, caller, report, { next, ahead });
    const r = settled.report;
    if (r.effect !== 'moved' && r.effect !== 'already') return { report: r, next: [] };
    return { report: r, next: await this.chain(caller, next, settled.row, report.to, settled.foreseen) };
  }

  /**
   * Why the edges of an advance's chain (one VM's, so one fleet's) may not
   * be approved under their fencing tokens: the refusal (fenced, locked) of
   * the first edge whose token gets one, with that edge (its history row
   * names it); undefined when every edge's token passes. Every edge is
   * checked: the edges after the first are approved on the rows the first
   * write makes (foresee), which never reads a token. Each token once;
   * none of the edges under `checked` (a token the caller checks itself).
   */
  private async fencedChain(
    stack: string,
    fleet: string,
    next: readonly AuthorizeRequest[],
    ...checked: [number | undefined] | []
  ): Promise<(Refusal & { edge: AuthorizeRequest }) | undefined> {
    const passed = new Set<number | undefined>(checked);
    for (const edge of next) {
      if (passed.has(edge.fencingToken)) continue;
      const fence = await this.fences.fenced(stack, fleet, edge.fencingToken);
      if (fence !== undefined) return { ...fence, edge };
      passed.add(edge.fencingToken);
    }
    return undefined;
  }

  /**
   * The answers of an advance's chain, after its first write left `row`
   * (the VM reached `start` then, and went on along `foreseen`, the edges
   * that statement wrote).
   */
  private async chain(caller: string, next: readonly AuthorizeRequest[], row: VmRow, start: string, foreseen: readonly Foreseen[] = []): Promise<AdvanceStep[]> {
    const later = foreseen.filter((f) => f.ahead);
    if (later.length > 0) this.ahead.set(row.id, caller, later, Date.now());
    const steps: AdvanceStep[] = foreseen.map((f, j) => {
      const authorize = this.approve(caller, f.req, { ...f, vm: rowAt(row, f.vm) }, { moved: f.moved });
      if (f.ahead) return { authorize, ahead: true };
      if (!f.moved) return { authorize };
      const after = j + 1 < foreseen.length ? rowAt(row, foreseen[j + 1].vm) : row;
      return { authorize, moved: { vm: toAuthorityVm(after), effect: 'moved' } };
    });
    if (foreseen.length > 0 && !foreseen[foreseen.length - 1].moved) return steps;
    let j = foreseen.length;
    if (j === 0 && row.state !== start) {
      // Sent again after its answer was lost: the VM is found past `start`
      // along the chain's own `none` edges, which answer `already`.
      j = passedAlready(this.lifecycle, row, start, next);
      for (let p = 0; p < j; p++) steps.push(alreadyPassed(next[p], row));
    }
    if (j < next.length && row.state === next[j].from) await this.decideRest(caller, next, j, steps);
    return steps;
  }

  /**
   * The chain from next[j] on, one edge at a time, exactly as authorize and,
   * for an approved `none` edge in the middle, an ok report would decide
   * them; stops after the first edge vetoed or not moved.
   */
  private async decideRest(caller: string, next: readonly AuthorizeRequest[], j: number, steps: AdvanceStep[]): Promise<void> {
    for (; j < next.length; j++) {
      const req = next[j];
      const authorize = vetoForeign(caller, req) ?? (await this.authorizeEdge(caller, req));
      if (authorize.decision === 'vetoed' || !movesAtOnce(next, j, authorize.operation)) {
        steps.push({ authorize });
        return;
      }
      const moved = (await settle(this.core, caller, noneReport(caller, req))).report;
      steps.push({ authorize, moved });
      if (moved.effect !== 'moved') return;
    }
  }


  /** A booting VM asks for its disk key (boot.ts). */
  bootAuthorize(caller: string, req: BootAuthorizeRequest): Promise<BootAuthorizeResponse> {
    return this.boot.authorize(caller, req);
  }
}
