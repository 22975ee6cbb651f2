// The authority: the patent's cloud orchestrator server. It approves, vetoes
// or modifies every request a DMZ client makes, and it is the only writer of
// VM state into the record during apply. This file is the service: it loads
// and remembers rows (rows.ts), serialises calls per VM, batches its record
// writes, and records what the pure decisions (decisions.ts) and the advance
// chain (chain.ts) decide. It names refusals by wire code only; the HTTP
// layer (protocol/http.ts) turns them into statuses.
//
// What must stay true:
// - Isolation: the data center is taken from the caller's token, never from
//   the body alone; a request about a VM of another data center is vetoed.
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
import type { LoadedPack } from '../policy/types.ts';
import { Batched, KeyLocks } from '../durability/index.ts';
import { formatVmAddress } from '../model/index.ts';
import { BudgetExceededError, VersionConflictError } from '../record/index.ts';
import type { ChangeContext, FleetRecord, HistoryItem, InsertItem, NewVm, TransitionItem, VmRow } from '../record/index.ts';
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
  type ReportRequest,
  type ReportResponse,
  type WireCode,
} from '../../protocol/index.ts';
import { AheadQueue, alreadyPassed, checkAdvance, foresee, intentOf, movesAtOnce, noneReport, onward, passedAlready, reportCtx, rowAt, type Approved, type Foreseen } from './chain.ts';
import { addressTaken, approvedEarlier, doneAlready, failureEdge, historySize, judgeCaller, judgeCreate, judgeEdge, judgeRepeatedCreate, judgeReplaced, judgeReport, type Pending } from './decisions.ts';
import { createBudget, judgeRequestRules, type Capacities } from './policy.ts';
import type { RequestFacts } from '../policy/types.ts';
import { diskKey, randomToken } from './keys.ts';
import { ScopedTokenIssuer } from './credentials/scoped.ts';
import { Fences, PolicyGate } from './gate.ts';
import { BootGate } from './boot.ts';
import type { CredentialBroker } from './credentials/types.ts';
import { StaleRow, VmRows } from './rows.ts';
import { toAuthorityVm, veto, vetoForeign } from './answers.ts';

export { toAuthorityVm } from './answers.ts';

export interface AuthorityCoreOptions {
  record: FleetRecord;
  pack: LoadedPack;
  stackName: string;
  /** Secret for disk keys and credentials; must be the same across restarts (see loadOrCreateSecret). */
  secret: string;
  /** Lifetime of scoped credentials. Default 10 minutes. */
  credentialTtlMs?: number;
  /** Cloud credentials of cloud data centers (engine/authority/credentials); none: the scoped token alone (sim). */
  credentialBroker?: CredentialBroker;
  /** The capacity of each data center (stack.yaml dataCenters[].capacity), for datacenter-capacity at the authority (policy.ts). */
  capacity?: Capacities;
  /** Admin tokens: an override's proof is checked against them when the stack accepts overrides from admins only (policy.ts judgeProtect). Never logged. */
  adminTokens?: readonly string[];
  /** Signs the credentials' scoped token per data center (credentials/scoped.ts); absent: keys no DMZ client holds (the core alone, in tests). */
  scopedTokens?: ScopedTokenIssuer;
  /**
   * How many authorities serve this stack's record (default 1). With more,
   * nothing one replica decides rests on what only it remembers: no VM row
   * is kept between calls (every decision on a fresh read) and no edge is
   * approved ahead (an approval ahead is written by the report of the edge
   * before it, which another replica may receive). docs/operations.md, "Replicas".
   */
  replicas?: number;
}

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

/** Report refusals that depend on the row: decided again on a fresh read when the row was remembered. */
const ROW_REFUSALS: readonly WireCode[] = ['unknown-vm', 'wrong-data-center'];

export class Authority {
  /** Approved requests waiting for their report, by request id; reports are checked against them. */
  private readonly pending = new Map<string, Pending>();
  private readonly rows: VmRows;
  /** Per VM, its edges approved ahead (see AdvanceRequest.ahead). */
  private readonly ahead = new AheadQueue();
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
    this.rows = new VmRows((id) => reads.submit(id), !this.shared);
    this.boot = new BootGate(r, o.pack, o.secret, this.rows, OVERLAP);
    this.fences = new Fences(r, OVERLAP);
    this.policy = new PolicyGate(o, this.pending);
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

  private credentials(dataCenter: string, _requestId: string) {
    const cloud = this.o.credentialBroker?.issued(dataCenter);
    const expiresAt = new Date(Math.min(Date.now() + this.ttl, cloud ? Date.parse(cloud.expiresAt) : Infinity)).toISOString();
    return {
      dataCenter,
      token: this.scopedTokens.issue(dataCenter, expiresAt),
      expiresAt,
      ...(cloud?.aws ? { aws: cloud.aws } : {}),
      ...(cloud?.azure ? { azure: cloud.azure } : {}),
    };
  }

  async authorize(caller: string, req: AuthorizeRequest): Promise<AuthorizeResponse> {
    const foreign = vetoForeign(caller, req);
    if (foreign) return foreign;
    // Queued for the VM at once (calls about one VM run in the order they came), the credentials prepared inside.
    return this.rows.serial(req.vmId, async () => {
      await this.o.credentialBroker?.prepare(caller);
      return req.kind === 'create' ? (await this.authorizeCreate(caller, req)).answer : this.authorizeEdge(caller, req);
    });
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
      if (!judged.ok && judged.refusal === 'state-moved' && !remembered && vm.dataCenter === caller) {
        // Sent again after its answer was lost (a DMZ client restart): done, not moved by someone else.
        if (doneAlready(req, to, vm, await this.o.record.history(vm.stack, vm.address, { limit: 50 }))) {
          return {
            decision: 'approved',
            reason: `${req.from} -> ${to} was carried out already under plan ${req.planId}; VM ${vm.address} is ${vm.state}`,
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
      const bootToken = operation === 'boot' ? randomToken(24) : undefined;
      const intent = intentOf(req, to, operation);
      await this.intents.submit({
        vmId: vm.id,
        row: { from: req.from, outcome: 'ok', ...intent, ...(policy.note ? { detail: `${intent.detail}; ${policy.note}` } : {}) },
        expectedVersion: vm.version,
        ...(bootToken !== undefined ? { bootTokenHash: sha256(bootToken) } : {}),
      });
      return this.approve(caller, req, { vm, to, operation, ...(bootToken !== undefined ? { bootToken } : {}) }, { grow: policy.grow, owner: policy.owner });
    });
  }

  /**
   * An approved edge whose intent row (and boot token) is written: its
   * answer (credentials, the boot token for `boot`, the disk key hash for
   * `createVm` of an encrypted VM) and, unless it was moved at once, the
   * pending entry its report is checked against.
   */
  private approve(caller: string, req: AuthorizeRequest, edge: Approved, opts: { moved?: boolean; grow?: Pending['grow']; owner?: string } = {}): AuthorizeResponse {
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
    this.pending.delete(req.requestId);
    if (!opts.moved) {
      this.pending.set(req.requestId, {
        dataCenter: caller,
        vmId: vm.id,
        from: vm.state,
        to,
        kind: req.kind,
        operation,
        at: Date.now(),
        ...(req.kind === 'resize' && req.size ? { size: req.size } : {}),
        ...(opts.grow ? { grow: opts.grow, owner: opts.owner } : {}),
      });
    }
    return res;
  }

  /**
   * authorize of a create, inside serial(): its answer, and the VM's row when
   * it exists (now inserted, or found by a repeated create). With `next` (an
   * advance), the edges that would be approved on the new row go into the
   * insert's statement (foresee): `foreseen` lists them.
   */
  private async authorizeCreate(
    caller: string,
    req: AuthorizeRequest,
    next: readonly AuthorizeRequest[] = [],
    ahead = false,
  ): Promise<{ answer: AuthorizeResponse; row?: VmRow; foreseen?: Foreseen[] }> {
    const no = (r: { reason: string; refusal: WireCode }) => ({ answer: veto(r.reason, undefined, r.refusal) });
    const judged = judgeCreate(this.o.pack, this.o.stackName, caller, req);
    if (!judged.ok) return no(judged);
    const spec = req.vm!;
    const facts: RequestFacts = {
      kind: 'create',
      stack: spec.stack,
      fleet: spec.fleet,
      address: formatVmAddress(spec.fleet, spec.index),
      owner: spec.owner,
      dataCenter: caller,
      image: spec.image,
      size: spec.size,
      encryptedDisk: spec.encryptedDisk,
      from: null,
      to: this.lifecycle.initial,
      operation: 'insert',
    };
    const rules = judgeRequestRules(this.o.pack, facts);
    if (!rules.ok) return no(rules);
    // Quota and capacity: checked by the record in the insert's transaction (record/budget.ts).
    const budget = createBudget(this.o.pack, this.o.capacity ?? {}, spec.owner, caller);
    const { realImage, modified, reason } = judged;
    const fence = await this.fences.fenced(spec.stack, spec.fleet, req.fencingToken);
    if (fence !== undefined) return no(fence);
    const again = (existing: VmRow) => {
      const repeated = judgeRepeatedCreate(caller, existing);
      if (!repeated.ok) return no(repeated);
      return { answer: { decision: modified ? 'modified' : 'approved', reason, operation: 'insert', realImage, vm: toAuthorityVm(existing) } satisfies AuthorizeResponse, row: existing };
    };
    if (spec.replaces !== undefined) {
      // A repeated create (the DMZ client lost our answer) gets the same answer, even once the old VM is gone.
      const existing = await this.rows.get(req.vmId);
      if (existing) return again(existing);
      const replaced = judgeReplaced(caller, spec, await this.o.record.getVm(spec.replaces));
      if (!replaced.ok) return no(replaced);
    }
    const initial = this.lifecycle.initial;
    const newVm: NewVm = {
      id: req.vmId,
      stack: spec.stack,
      fleet: spec.fleet,
      owner: spec.owner,
      index: spec.index,
      dataCenter: caller,
      state: initial,
      desiredState: spec.desiredState,
      specHash: spec.specHash,
      ...(spec.replaces !== undefined ? { replaces: spec.replaces } : {}),
      image: spec.image,
      realImage,
      size: spec.size,
      encryptedDisk: spec.encryptedDisk,
    };
    const ctx: ChangeContext = { actor: 'authority', planId: req.planId, requestId: req.requestId, detail: reason };
    // The row the insert makes, as far as judgeEdge reads it (and answers carry it).
    const inserted: VmRow = {
      ...newVm,
      id: req.vmId,
      address: formatVmAddress(newVm.fleet, newVm.index),
      name: `${newVm.stack}-${newVm.fleet}-${newVm.index}`,
      realImage,
      cloudId: null,
      version: 1,
      createdAt: '',
      updatedAt: '',
      retiredAt: null,
      deposed: false,
    };
    // A replacement also deposes the old VM (its own transaction) and carries no chain; plain creates go in batches.
    const foreseen = newVm.replaces === undefined ? foresee(this.o.pack, caller, next, inserted, { ahead, plain: this.policy.plain() }) : [];
    let vm: VmRow;
    try {
      if (newVm.replaces !== undefined) vm = await this.o.record.insertVm(newVm, ctx, budget);
      else vm = await this.inserts.submit({ vm: newVm, ctx, budget, ...onward(caller, foreseen) });
    } catch (err) {
      if (err instanceof BudgetExceededError) return no({ reason: err.diagnostics[0].detail, refusal: err.which === 'owner' ? 'over-quota' : 'over-capacity' });
      if (!(err instanceof VersionConflictError)) throw err;
      if (err.key === req.vmId) {
        // A repeated create (the DMZ client lost our answer): same VM, same answer.
        const existing = await this.rows.get(req.vmId);
        if (existing) return again(existing);
      }
      return no(addressTaken(spec, err.message));
    }
    this.rows.remember(vm);
    return {
      answer: {
        decision: modified ? 'modified' : 'approved',
        reason,
        operation: 'insert',
        realImage,
        credentials: this.credentials(caller, req.requestId),
        vm: toAuthorityVm(rowAt(vm, inserted)),
      },
      row: vm,
      foreseen,
    };
  }

  async report(caller: string, req: ReportRequest): Promise<ReportResponse> {
    const reporter = judgeCaller(caller, req, 'report');
    if (!reporter.ok) throw new WireError(reporter.refusal, reporter.reason);
    return this.rows.serial(req.vmId, async () => (await this.settle(caller, req)).report);
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
    const { vmId } = checked;
    // Approvals ahead live in this process until the next report: not with replicas.
    const ahead = req.ahead === true && !this.shared;
    return this.rows.serial(vmId, async () => {
      await this.o.credentialBroker?.prepare(caller);
      // A new chain decides afresh what comes next.
      this.ahead.drop(vmId);
      return req.create ? this.advanceCreate(caller, req.create, req.next, ahead) : this.advanceReport(caller, req.report!, req.next, ahead);
    });
  }

  private async advanceCreate(caller: string, create: AuthorizeRequest, next: readonly AuthorizeRequest[], ahead: boolean): Promise<AdvanceResponse> {
    const foreign = vetoForeign(caller, create);
    if (foreign) return { create: foreign, next: [] };
    const made = await this.authorizeCreate(caller, create, next, ahead);
    if (made.answer.decision === 'vetoed' || !made.row) return { create: made.answer, next: [] };
    return { create: made.answer, next: await this.chain(caller, next, made.row, this.lifecycle.initial, made.foreseen) };
  }

  private async advanceReport(caller: string, report: ReportRequest, next: readonly AuthorizeRequest[], ahead: boolean): Promise<AdvanceResponse> {
    // What was done is recorded whoever did it; what comes next only under the fleet's current lock.
    const known = next.length > 0 ? await this.rows.get(report.vmId) : undefined;
    const fence = known ? await this.fences.fenced(known.stack, known.fleet, next[0].fencingToken) : undefined;
    if (fence !== undefined) {
      const r = (await this.settle(caller, report)).report;
      const vm = await this.rows.get(report.vmId);
      if (vm) await this.o.record.addHistory(vm.id, { from: next[0].from, to: next[0].to ?? next[0].from ?? '', outcome: 'vetoed', actor: `dmz-client:${caller}`, planId: next[0].planId, requestId: next[0].requestId, detail: fence.reason });
      return { report: r, next: [{ authorize: veto(fence.reason, vm, fence.refusal) }] };
    }
    const settled = await this.settle(caller, report, { next, ahead });
    const r = settled.report;
    if (r.effect !== 'moved' && r.effect !== 'already') return { report: r, next: [] };
    return { report: r, next: await this.chain(caller, next, settled.row, report.to, settled.foreseen) };
  }

  /**
   * The answers of an advance's chain, after its first write left `row`
   * (the VM reached `start` then, and went on along `foreseen`, the edges
   * that statement wrote).
   */
  private async chain(caller: string, next: readonly AuthorizeRequest[], row: VmRow, start: string, foreseen: readonly Foreseen[] = []): Promise<AdvanceStep[]> {
    const later = foreseen.filter((f) => f.ahead);
    if (later.length > 0) this.ahead.set(row.id, later, Date.now());
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
      const moved = (await this.settle(caller, noneReport(caller, req))).report;
      steps.push({ authorize, moved });
      if (moved.effect !== 'moved') return;
    }
  }

  /**
   * report, inside serial(). With `next` (advance), an ok transition also
   * writes, in its statement, the edges of next that would be approved on
   * the row it makes (foresee), and says so in `foreseen`; `row` is the VM's
   * row afterwards.
   */
  private settle(
    caller: string,
    req: ReportRequest,
    chain?: { next: readonly AuthorizeRequest[]; ahead: boolean },
  ): Promise<{ report: ReportResponse; row: VmRow; foreseen?: Foreseen[] }> {
    const next = chain?.next;
    // The edge approved ahead after this one: its intent rides with this
    // report's transition. A failure, or a report refused, drops the VM's
    // approvals ahead (a repeated ok report keeps them).
    const queued = this.ahead.get(req.vmId);
    const following = !next && req.outcome === 'ok' && queued?.[0].from === req.to ? queued[0] : undefined;
    if (req.outcome !== 'ok') this.ahead.drop(req.vmId);
    type Settled = { report: ReportResponse; row: VmRow; foreseen?: Foreseen[] };
    return this.rows.decideOn(req.vmId, async (vm, remembered): Promise<Settled> => {
      // Anything but the common case is decided again on a fresh read.
      const refuse = (code: WireCode, message: string): never => {
        if (remembered) throw new StaleRow(message);
        throw new WireError(code, message);
      };
      const answer = (row: VmRow, effect: ReportResponse['effect']) => ({ report: { vm: toAuthorityVm(row), effect }, row });
      // The approval the report answers: remembered, else (the authority
      // restarted in between) as the intent row in the record says it.
      let pending = this.pending.get(req.requestId);
      if (!pending && vm) {
        // Looked up on a fresh read only (a remembered row is read again first).
        if (remembered) throw new StaleRow('no approval remembered');
        pending = approvedEarlier(this.lifecycle, vm, await this.o.record.approvalOf(vm.id, req.requestId));
      }
      const judged = judgeReport(this.lifecycle, caller, req, vm, pending);
      if (!judged.ok) {
        if (ROW_REFUSALS.includes(judged.refusal)) return refuse(judged.refusal, judged.reason);
        throw new WireError(judged.refusal, judged.reason);
      }
      // judgeReport refuses a report without a VM.
      const row = vm!;
      const ctx = { actor: `dmz-client:${caller}`, planId: req.planId, requestId: req.requestId };
      if (req.outcome === 'ok') {
        if (judged.resize) {
          const size = req.size!;
          if (judged.repeated) {
            if (remembered) throw new StaleRow('reported already');
            return answer(row, 'already');
          }
          const updated = await this.o.record.updateVm(row.id, row.version, { size }, { ...ctx, detail: `resized to ${historySize(size)}` });
          // A resize moves no state, so no transition row carries its outcome
          // or the intent of the edge approved ahead after it: both are
          // history rows of their own (else history stops at the resize's
          // intent, and the rest of the chain's intents are never written).
          const done = `${req.detail ?? 'resize done'}: resized to ${historySize(size)}`;
          const rows: HistoryItem[] = [{ vmId: row.id, row: { from: row.state, to: row.state, ...reportCtx(caller, req, 'ok', done) } }];
          if (following) rows.push({ vmId: row.id, row: { from: row.state, outcome: 'ok', ...following.intent } });
          const problems = (await this.o.record.addHistoryMany(rows)).filter((p) => p !== undefined);
          if (problems.length > 0) throw problems[0];
          if (following) this.ahead.shift(req.vmId);
          this.rows.remember(updated);
          this.pending.delete(req.requestId);
          return answer(updated, 'moved');
        }
        if (row.state === req.to) {
          if (remembered) throw new StaleRow('already there');
          return answer(row, 'already');
        }
        if (row.state !== req.from) {
          // An advance sent again after its answer was lost finds the VM past
          // req.to along its chain's `none` edges: already (chain answers them).
          if (!remembered && next && passedAlready(this.lifecycle, row, req.to, next) > 0) return answer(row, 'already');
          return refuse('state-moved', `VM ${row.address} is ${row.state}, not ${req.from}`);
        }
        // Its approval was reported already and the VM came back to `from` since: a report is taken once.
        if (judged.repeated) return refuse('report-repeated', `request ${req.requestId} was reported already (VM ${row.address} moved ${req.from} -> ${req.to} then); a report is taken once`);
        const patch: TransitionItem['patch'] & {} = {};
        if (req.cloudId !== undefined) patch.cloudId = req.cloudId;
        if (this.lifecycle.isTerminal(req.to)) patch.retire = true;
        // The row the transition makes, as far as judgeEdge reads it (timestamps aside).
        const after: VmRow = {
          ...row,
          state: req.to,
          version: row.version + 1,
          cloudId: patch.cloudId ?? row.cloudId,
          retiredAt: patch.retire ? new Date().toISOString() : row.retiredAt,
        };
        // A chain that commits the VM to deletion is foreseen only when its fleet is not protected (read now; else the service judges it, override included).
        const deleting = next?.some((n) => n.to !== undefined && this.policy.entersDeletion(n.from, n.to));
        const fleetProtected = deleting ? ((await this.o.record.listFleets(row.stack, [row.fleet]))[0]?.protected ?? false) : undefined;
        const foreseen = next ? foresee(this.o.pack, caller, next, after, { ahead: chain.ahead, plain: this.policy.plain(fleetProtected) }) : [];
        const moved = await this.transitions.submit({
          stack: row.stack,
          fleet: row.fleet,
          id: row.id,
          expectedVersion: row.version,
          to: req.to,
          ctx: reportCtx(caller, req, 'ok', req.detail ?? null),
          patch,
          ...onward(caller, foreseen),
          ...(following ? { intent: following.intent } : {}),
        });
        this.rows.remember(moved);
        this.pending.delete(req.requestId);
        // Its intent is written: from now on it is an edge like any authorized one.
        if (following) this.ahead.shift(req.vmId);
        return { report: { vm: toAuthorityVm(rowAt(moved, after)), effect: 'moved' }, row: moved, foreseen };
      }
      if (judged.repeated) {
        // A failure reported again (its answer was lost): nothing more to write.
        if (remembered) throw new StaleRow('reported already');
        return answer(row, 'noted');
      }
      const failTo = failureEdge(this.lifecycle, req.from);
      if (failTo !== undefined && row.state === req.from) {
        const moved = await this.transitions.submit({
          stack: row.stack,
          fleet: row.fleet,
          id: row.id,
          expectedVersion: row.version,
          to: failTo,
          ctx: { ...ctx, outcome: 'failed', detail: req.detail ?? 'the cloud operation failed' },
        });
        this.rows.remember(moved);
        this.pending.delete(req.requestId);
        return answer(moved, 'failed');
      }
      if (remembered) throw new StaleRow('failure without a failure edge');
      this.pending.delete(req.requestId);
      await this.o.record.addHistory(row.id, { from: req.from, to: req.to, outcome: 'failed', ...ctx, detail: req.detail ?? 'the cloud operation failed' });
      return answer(row, 'noted');
    }).catch((err: unknown) => {
      this.ahead.drop(req.vmId);
      throw err;
    });
  }

  /** A booting VM asks for its disk key (boot.ts). */
  bootAuthorize(caller: string, req: BootAuthorizeRequest): Promise<BootAuthorizeResponse> {
    return this.boot.authorize(caller, req);
  }
}
