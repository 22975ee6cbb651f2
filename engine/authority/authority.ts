// The authority: the patent's cloud orchestrator server. It approves, vetoes
// or modifies every request a DMZ client makes, and it is the only writer of
// VM state into the record during apply.
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
// - advance (a report and the next edge's authorization in one call) answers
//   exactly what report then authorize would, in one serial(); it only saves
//   work: in the common case the transition and the next intent row are one
//   record statement, decided by the same checks (judgeEdge).
// - A boot is approved only for a VM the record knows, in the caller's data
//   center, with the same cloud id and real image, presenting an unused boot
//   token. Only then is the disk key released.
import { randomUUID } from 'node:crypto';
import type { LoadedPack } from '../policy/types.ts';
import { Batched, KeyLocks } from '../durability/index.ts';
import type { BootAttempt, ChangeContext, FleetRecord, HistoryItem, NewVm, TransitionItem, VmRow } from '../record/types.ts';
import { VersionConflictError } from '../record/errors.ts';
import { ProtocolError } from './http.ts';
import { credentialToken, diskKey, randomToken, sha256 } from './keys.ts';
import type {
  AdvanceRequest,
  AdvanceResponse,
  AuthorityVm,
  AuthorizeRequest,
  AuthorizeResponse,
  BootAuthorizeRequest,
  BootAuthorizeResponse,
  ReportRequest,
  ReportResponse,
} from './protocol.ts';

export interface AuthorityCoreOptions {
  record: FleetRecord;
  pack: LoadedPack;
  stackName: string;
  /** Secret for disk keys and credentials; must be the same across restarts (see loadOrCreateSecret). */
  secret: string;
  /** Lifetime of scoped credentials. Default 10 minutes. */
  credentialTtlMs?: number;
}

/** An approved request waiting for its report; reports are checked against it. */
interface Pending {
  dataCenter: string;
  vmId: string;
  from: string;
  to: string;
  kind: AuthorizeRequest['kind'];
  operation: string;
  /** ms since epoch; entries older than the credentials' lifetime are dropped. */
  at: number;
}

/** Thrown inside a decision taken on a remembered row that may be stale: decide again on a fresh read. */
class StaleRow extends Error {}

/** An edge approved on row `vm` (its intent row written), to be answered by approve. */
interface Approved {
  vm: VmRow;
  to: string;
  operation: string;
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

/** Rows remembered per VM; beyond this the least recently used are forgotten. */
const KNOWN_MAX = 50_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function toAuthorityVm(vm: VmRow): AuthorityVm {
  return {
    id: vm.id,
    address: vm.address,
    name: vm.name,
    size: vm.size,
    dataCenter: vm.dataCenter,
    state: vm.state,
    cloudId: vm.cloudId,
    realImage: vm.realImage,
    encryptedDisk: vm.encryptedDisk,
    version: vm.version,
  };
}

export class Authority {
  private readonly pending = new Map<string, Pending>();
  /**
   * The row this authority last wrote or read per VM, so a step costs one
   * record round trip at authorize and one at report instead of a read
   * before each. Never trusted blindly: every write made on it is
   * conditional on its version (the intent row at authorize, the transition
   * at report), and any decision other than the common one is taken again on
   * a fresh read (see decideOn).
   */
  private readonly known = new Map<string, VmRow>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly ttl: number;
  /**
   * The two writes of every step, batched: the intent rows of concurrent
   * authorizes share one statement, and so do the transitions of concurrent
   * reports (FleetRecord.addHistoryMany / transitionVms: one round trip and
   * one commit for a batch, each call still answered with its own outcome).
   * An advance's transition carries the next edge's intent row with it
   * (TransitionItem.intent), so it needs no intents call.
   * Calls about one VM never share a batch: serial() runs them one by one.
   */
  private readonly intents: Batched<HistoryItem, undefined>;
  private readonly transitions: Batched<TransitionItem & { stack: string; fleet: string }, VmRow>;
  /** The same for the once-per-VM writes and reads: creates, boot tokens, and the boot check's read, token use and attempt row. */
  private readonly inserts: Batched<{ vm: NewVm; ctx: ChangeContext }, VmRow>;
  private readonly bootTokens: Batched<{ vmId: string; tokenHash: string }, undefined>;
  private readonly reads: Batched<string, VmRow | undefined>;
  private readonly tokenUses: Batched<{ vmId: string; tokenHash: string }, boolean>;
  private readonly bootAttempts: Batched<BootAttempt, undefined>;

  constructor(private readonly o: AuthorityCoreOptions) {
    this.ttl = o.credentialTtlMs ?? 10 * 60_000;
    const r = o.record;
    const none = <T>(items: readonly T[]) => items.map(() => undefined);
    // Transitions and creates both lock fleet rows: one key space for the two.
    const fleetLocks = new KeyLocks();
    this.intents = new Batched<HistoryItem, undefined>((items) => r.addHistoryMany(items), OVERLAP);
    this.transitions = new Batched<TransitionItem & { stack: string; fleet: string }, VmRow>((items) => r.transitionVms(items), {
      ...OVERLAP,
      keyOf: (t) => fleetKey(t.stack, t.fleet),
      locks: fleetLocks,
    });
    this.inserts = new Batched<{ vm: NewVm; ctx: ChangeContext }, VmRow>((items) => r.insertVms(items), {
      ...OVERLAP,
      keyOf: (i) => fleetKey(i.vm.stack, i.vm.fleet),
      locks: fleetLocks,
    });
    this.bootTokens = new Batched(async (items) => (await r.setBootTokens(items), none(items)), OVERLAP);
    this.reads = new Batched((ids) => r.getVms(ids), OVERLAP);
    this.tokenUses = new Batched((items) => r.consumeBootTokens(items), OVERLAP);
    this.bootAttempts = new Batched(async (items) => (await r.addBootAttempts(items), none(items)), OVERLAP);
  }

  private get lifecycle() {
    return this.o.pack.lifecycle;
  }

  /** Runs `fn` after every earlier call for the same VM finished (one writer per VM inside this authority). */
  private serial<T>(vmId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(vmId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(vmId, tail);
    void tail.then(() => {
      if (this.locks.get(vmId) === tail) this.locks.delete(vmId);
    });
    return next;
  }

  /** A DMZ client that died between authorize and report leaves its entry; its credentials have expired by then. */
  private prunePending(): void {
    // Entries are added in time order and never re-added, so the expired ones come first.
    const cutoff = Date.now() - this.ttl;
    for (const [id, p] of this.pending) {
      if (p.at >= cutoff) break;
      this.pending.delete(id);
    }
  }

  private async getVm(vmId: string): Promise<VmRow | undefined> {
    // Ids are UUIDs; anything else cannot be in the record (and a PostgreSQL uuid column would reject it).
    if (!UUID.test(vmId)) return undefined;
    const vm = await this.reads.submit(vmId);
    if (vm) this.remember(vm);
    else this.known.delete(vmId);
    return vm;
  }

  private remember(vm: VmRow): void {
    this.known.delete(vm.id);
    if (vm.retiredAt !== null) return;
    this.known.set(vm.id, vm);
    if (this.known.size > KNOWN_MAX) this.known.delete(this.known.keys().next().value as string);
  }

  /**
   * Runs `decide` on the remembered row of `vmId` (or a fresh read when there
   * is none). When `decide` throws StaleRow, or a write of it meets a version
   * conflict, while working on a remembered row, the row is read afresh and
   * `decide` runs again: so what it decides is always decided on the record's
   * current row.
   */
  private async decideOn<T>(vmId: string, decide: (vm: VmRow | undefined, remembered: boolean) => Promise<T>): Promise<T> {
    const known = this.known.get(vmId);
    if (known) {
      try {
        return await decide(known, true);
      } catch (err) {
        if (!(err instanceof StaleRow) && !(err instanceof VersionConflictError)) throw err;
        this.known.delete(vmId);
      }
    }
    // A fresh row can still lose a race with another writer of the record (a
    // second authority, a refresh): read again a few times before giving up.
    for (let attempt = 1; ; attempt++) {
      try {
        return await decide(await this.getVm(vmId), false);
      } catch (err) {
        if (!(err instanceof VersionConflictError) || attempt >= 3) throw err;
      }
    }
  }

  private credentials(dataCenter: string, requestId: string) {
    const expiresAt = new Date(Date.now() + this.ttl).toISOString();
    return { dataCenter, token: credentialToken(this.o.secret, dataCenter, requestId, expiresAt), expiresAt };
  }

  /** A state with an edge whose operation is `powerOn` is a powered-off state; a resize happens only there. */
  private canResizeIn(state: string): boolean {
    return this.lifecycle.edges.some((e) => e.from === state && e.operation === 'powerOn');
  }

  async authorize(caller: string, req: AuthorizeRequest): Promise<AuthorizeResponse> {
    const foreign = vetoForeign(caller, req);
    if (foreign) return foreign;
    return this.serial(req.vmId, () => (req.kind === 'create' ? this.authorizeCreate(caller, req) : this.authorizeEdge(caller, req)));
  }

  /** authorize of a transition or a resize, inside serial(). */
  private authorizeEdge(caller: string, req: AuthorizeRequest): Promise<AuthorizeResponse> {
    const to = req.to;
    if (to === undefined) return Promise.resolve(veto('a transition needs its target state'));
    return this.decideOn(req.vmId, async (vm, remembered) => {
      // Anything but an approval is decided again on a fresh read.
      const refuse = async (reason: string): Promise<AuthorizeResponse> => {
        if (remembered) throw new StaleRow(reason);
        if (!vm) return veto(reason);
        await this.o.record.addHistory(vm.id, {
          from: req.from,
          to: to,
          outcome: 'vetoed',
          actor: `dmz-client:${caller}`,
          planId: req.planId,
          requestId: req.requestId,
          detail: reason,
        });
        return veto(reason, vm);
      };
      if (!vm) return refuse(`VM ${req.vmId} is not in the record`);
      const judged = this.judgeEdge(caller, req, to, vm);
      if ('refusal' in judged) return refuse(judged.refusal);
      // The intent, before any cloud call; the state change itself is
      // written at report. Written only while the VM is still at the
      // version decided on (a conflict decides again on a fresh read).
      const intent = intentOf(req, to, judged.operation);
      await this.intents.submit({ vmId: vm.id, row: { from: req.from, outcome: 'ok', ...intent }, expectedVersion: vm.version });
      return this.approve(caller, req, { vm, to, operation: judged.operation });
    });
  }

  /**
   * Whether the edge `req` asks for may be taken on row `vm`: its operation,
   * or why not. Reads nothing but its arguments and the pack, so advance can
   * decide on the row a report's transition is about to make (foldNext).
   */
  private judgeEdge(caller: string, req: AuthorizeRequest, to: string, vm: VmRow): { operation: string } | { refusal: string } {
    const no = (refusal: string) => ({ refusal });
    if (vm.dataCenter !== caller) return no(`VM ${vm.address} lives in data center ${vm.dataCenter}; the DMZ client of ${caller} may not change it`);
    if (vm.retiredAt !== null || this.lifecycle.isTerminal(vm.state)) return no(`VM ${vm.address} is ${vm.state} already`);
    if (req.from !== vm.state) return no(`the request assumes VM ${vm.address} is ${req.from ?? 'absent'} but the record has it ${vm.state}`);
    if (req.kind === 'resize') {
      if (req.from !== to) return no(`a resize keeps the state; got ${req.from} -> ${to}`);
      if (!this.canResizeIn(req.from)) return no(`a resize needs a powered-off VM; ${vm.address} is ${req.from}`);
      if (!req.size) return no('a resize needs the new size');
      return { operation: 'resize' };
    }
    if (!this.lifecycle.allows(req.from, to)) {
      return no(`${req.from} -> ${to} is not an edge of the ${this.o.pack.name} lifecycle; every change must pass one edge`);
    }
    return { operation: this.lifecycle.operation(req.from, to) ?? 'none' };
  }

  /**
   * An approved edge whose intent row is written: its answer (credentials, a
   * boot token for `boot`, the disk key hash for `createVm` of an encrypted
   * VM) and the pending entry its report is checked against.
   */
  private async approve(caller: string, req: AuthorizeRequest, edge: Approved): Promise<AuthorizeResponse> {
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
      const token = randomToken(24);
      await this.bootTokens.submit({ vmId: vm.id, tokenHash: sha256(token) });
      res.bootToken = token;
    }
    if (operation === 'createVm' && vm.encryptedDisk) res.diskKeyHash = sha256(diskKey(this.o.secret, vm.id));
    this.prunePending();
    // A repeated authorize (a lost answer) moves its entry to the end: entries stay in time order.
    this.pending.delete(req.requestId);
    this.pending.set(req.requestId, { dataCenter: caller, vmId: vm.id, from: vm.state, to, kind: req.kind, operation, at: Date.now() });
    return res;
  }

  private async authorizeCreate(caller: string, req: AuthorizeRequest): Promise<AuthorizeResponse> {
    const initial = this.lifecycle.initial;
    if (!req.vm) return veto('a create needs the VM');
    if (req.from !== null || (req.to ?? initial) !== initial) {
      return veto(`a create enters the initial state ${initial} from nothing; got ${req.from ?? 'nothing'} -> ${req.to ?? initial}`);
    }
    if (req.vm.dataCenter !== caller) {
      return veto(`the VM is to be created in data center ${req.vm.dataCenter} but the token belongs to ${caller}`);
    }
    if (req.vm.stack !== this.o.stackName) return veto(`this authority serves stack ${this.o.stackName}, not ${req.vm.stack}`);
    if (!UUID.test(req.vmId)) return veto(`VM id ${req.vmId} is not a UUID`);
    const realImage = this.o.pack.images[req.vm.image]?.[caller];
    if (realImage === undefined) {
      return veto(`image ${req.vm.image} has no translation for data center ${caller} in the ${this.o.pack.name} pack's catalog`);
    }
    const modified = realImage !== req.vm.image;
    const reason = modified ? `image ${req.vm.image} translated to ${realImage} for ${caller}` : `image ${realImage} is valid in ${caller}`;
    const again = (existing: VmRow): AuthorizeResponse =>
      existing.dataCenter !== caller
        ? veto(`VM ${existing.address} lives in data center ${existing.dataCenter}`)
        : { decision: modified ? 'modified' : 'approved', reason, operation: 'insert', realImage, vm: toAuthorityVm(existing) };
    if (req.vm.replaces !== undefined) {
      // A repeated create (the DMZ client lost our answer) gets the same answer, even once the old VM is gone.
      const existing = await this.getVm(req.vmId);
      if (existing) return again(existing);
      const old = await this.o.record.getVm(req.vm.replaces);
      if (!old || old.retiredAt !== null) return veto(`VM ${req.vm.replaces}, which the new VM should replace, is not live`);
      if (old.dataCenter !== caller) return veto(`VM ${old.address} lives in data center ${old.dataCenter}; a replacement in ${caller} cannot depose it`);
      if (old.fleet !== req.vm.fleet || old.index !== req.vm.index || old.stack !== req.vm.stack) {
        return veto(`VM ${req.vm.replaces} is ${old.address}, not ${req.vm.fleet}/${req.vm.index}`);
      }
    }
    let vm: VmRow;
    try {
      const newVm: NewVm = {
        id: req.vmId,
        stack: req.vm.stack,
        fleet: req.vm.fleet,
        owner: req.vm.owner,
        index: req.vm.index,
        dataCenter: caller,
        state: initial,
        desiredState: req.vm.desiredState,
        specHash: req.vm.specHash,
        ...(req.vm.replaces !== undefined ? { replaces: req.vm.replaces } : {}),
        image: req.vm.image,
        realImage,
        size: req.vm.size,
        encryptedDisk: req.vm.encryptedDisk,
      };
      const ctx: ChangeContext = { actor: 'authority', planId: req.planId, requestId: req.requestId, detail: reason };
      // A replacement also deposes the old VM (its own transaction); plain creates go in batches.
      vm = newVm.replaces !== undefined ? await this.o.record.insertVm(newVm, ctx) : await this.inserts.submit({ vm: newVm, ctx });
    } catch (err) {
      if (!(err instanceof VersionConflictError)) throw err;
      if (err.key === req.vmId) {
        // A repeated create (the DMZ client lost our answer): same VM, same answer.
        const existing = await this.getVm(req.vmId);
        if (existing) return again(existing);
      }
      return veto(`address ${req.vm.fleet}/${req.vm.index} already has a live VM: ${err.message}`);
    }
    this.remember(vm);
    return {
      decision: modified ? 'modified' : 'approved',
      reason,
      operation: 'insert',
      realImage,
      credentials: this.credentials(caller, req.requestId),
      vm: toAuthorityVm(vm),
    };
  }

  async report(caller: string, req: ReportRequest): Promise<ReportResponse> {
    checkReporter(caller, req);
    return this.serial(req.vmId, async () => (await this.settle(caller, req)).report);
  }

  /**
   * A report and the authorization of the VM's next edge in one call
   * (docs/protocol.md, "Advance"): answered as `report` then `authorize`
   * would answer them, inside one serial(). In the common case (an ok
   * transition after which `next` is approved) the report's transition and
   * next's intent row are one record statement (settle, foldNext); any other
   * case decides next after the report exactly as authorize would. Next is
   * decided only when the report left the VM at next.from (moved, or there
   * already); otherwise the DMZ client stops the member there.
   */
  async advance(caller: string, req: AdvanceRequest): Promise<AdvanceResponse> {
    const { report, next } = req;
    checkReporter(caller, report);
    if (next.kind === 'create') throw new ProtocolError(400, 'bad-request', 'a create is never the next edge of an advance: authorize it on its own');
    if (next.vmId !== report.vmId) {
      throw new ProtocolError(400, 'bad-request', `an advance is about one VM: its report is about ${report.vmId}, its next edge about ${next.vmId}`);
    }
    return this.serial(report.vmId, async () => {
      const settled = await this.settle(caller, report, next);
      const r = settled.report;
      if (settled.folded) return { report: r, next: await this.approve(caller, next, settled.folded) };
      if ((r.effect !== 'moved' && r.effect !== 'already') || r.vm.state !== next.from) return { report: r };
      return { report: r, next: vetoForeign(caller, next) ?? (await this.authorizeEdge(caller, next)) };
    });
  }

  /**
   * report, inside serial(). With `next` (advance), an ok transition after
   * which next would be approved also writes next's intent row, in the same
   * statement, and says so in `folded`.
   */
  private settle(caller: string, req: ReportRequest, next?: AuthorizeRequest): Promise<{ report: ReportResponse; folded?: Approved }> {
    return this.decideOn(req.vmId, async (vm, remembered) => {
      // Anything but the common case is decided again on a fresh read.
      const refuse = (status: number, code: string, message: string): never => {
        if (remembered) throw new StaleRow(message);
        throw new ProtocolError(status, code, message);
      };
      const answer = (row: VmRow, effect: ReportResponse['effect']) => ({ report: { vm: toAuthorityVm(row), effect } });
      if (!vm) return refuse(404, 'unknown-vm', `VM ${req.vmId} is not in the record`);
      if (vm.dataCenter !== caller) {
        return refuse(403, 'wrong-data-center', `VM ${vm.address} lives in data center ${vm.dataCenter}, not ${caller}`);
      }
      const pending = this.pending.get(req.requestId);
      if (pending && (pending.vmId !== vm.id || pending.from !== req.from || pending.to !== req.to || pending.dataCenter !== caller)) {
        throw new ProtocolError(409, 'report-mismatch', `report ${req.requestId} does not match what was authorized (${pending.from} -> ${pending.to})`);
      }
      const resize = req.from === req.to;
      // Without a pending entry (the authority restarted in between) the edge is checked again.
      if (!pending && !resize && !this.lifecycle.allows(req.from, req.to)) {
        throw new ProtocolError(409, 'not-an-edge', `${req.from} -> ${req.to} is not an edge of the lifecycle`);
      }
      const ctx = { actor: `dmz-client:${caller}`, planId: req.planId, requestId: req.requestId };
      if (req.outcome === 'ok') {
        if (resize) {
          if (!req.size) throw new ProtocolError(400, 'bad-request', 'a resize report needs the new size');
          const updated = await this.o.record.updateVm(vm.id, vm.version, { size: req.size }, { ...ctx, detail: `resized to ${formatSize(req.size)}` });
          this.remember(updated);
          this.pending.delete(req.requestId);
          return answer(updated, 'moved');
        }
        if (vm.state === req.to) {
          if (remembered) throw new StaleRow('already there');
          return answer(vm, 'already');
        }
        if (vm.state !== req.from) return refuse(409, 'state-moved', `VM ${vm.address} is ${vm.state}, not ${req.from}`);
        const patch: TransitionItem['patch'] & {} = {};
        if (req.cloudId !== undefined) patch.cloudId = req.cloudId;
        if (this.lifecycle.isTerminal(req.to)) patch.retire = true;
        const fold = next && this.foldNext(caller, next, vm, req.to, patch);
        const moved = await this.transitions.submit({
          stack: vm.stack,
          fleet: vm.fleet,
          id: vm.id,
          expectedVersion: vm.version,
          to: req.to,
          ctx: { ...ctx, outcome: 'ok', detail: req.detail ?? null },
          patch,
          ...(fold ? { intent: fold.intent } : {}),
        });
        this.remember(moved);
        this.pending.delete(req.requestId);
        return { ...answer(moved, 'moved'), ...(fold ? { folded: { vm: moved, to: fold.intent.to, operation: fold.operation } } : {}) };
      }
      const failTo = this.lifecycle.edges.find(
        (e) => e.from === req.from && e.operation === 'none' && this.lifecycle.failure.includes(e.to),
      )?.to;
      if (failTo !== undefined && vm.state === req.from) {
        const moved = await this.transitions.submit({ stack: vm.stack, fleet: vm.fleet, id: vm.id, expectedVersion: vm.version, to: failTo, ctx: { ...ctx, outcome: 'failed', detail: req.detail ?? 'the cloud operation failed' } });
        this.remember(moved);
        this.pending.delete(req.requestId);
        return answer(moved, 'failed');
      }
      if (remembered) throw new StaleRow('failure without a failure edge');
      this.pending.delete(req.requestId);
      await this.o.record.addHistory(vm.id, { from: req.from, to: req.to, outcome: 'failed', ...ctx, detail: req.detail ?? 'the cloud operation failed' });
      return answer(vm, 'noted');
    });
  }

  /**
   * When `next` would be approved on the row the report's transition of `vm`
   * to `to` makes, its operation and the intent row to write with that
   * transition; undefined when authorize would refuse it there (advance then
   * lets authorize decide, after the report). The row is foreseen from `vm`:
   * it differs from the one the statement returns only in timestamps, which
   * judgeEdge does not read.
   */
  private foldNext(caller: string, next: AuthorizeRequest, vm: VmRow, to: string, patch: TransitionItem['patch'] & {}) {
    if (next.to === undefined || vetoForeign(caller, next)) return undefined;
    const after: VmRow = {
      ...vm,
      state: to,
      version: vm.version + 1,
      cloudId: patch.cloudId ?? vm.cloudId,
      retiredAt: patch.retire ? new Date().toISOString() : vm.retiredAt,
    };
    const judged = this.judgeEdge(caller, next, next.to, after);
    return 'refusal' in judged ? undefined : { operation: judged.operation, intent: intentOf(next, next.to, judged.operation) };
  }

  async bootAuthorize(caller: string, req: BootAuthorizeRequest): Promise<BootAuthorizeResponse> {
    const vm = await this.getVm(req.vmId);
    const deny = async (reason: string): Promise<BootAuthorizeResponse> => {
      await this.bootAttempts.submit({
        vmId: vm ? vm.id : null,
        dataCenter: caller,
        cloudId: req.cloudId,
        image: req.image,
        approved: false,
        reason,
      });
      if (vm) {
        await this.o.record.addHistory(vm.id, {
          from: vm.state,
          to: vm.state,
          outcome: 'denied',
          actor: 'authority',
          requestId: randomUUID(),
          detail: `boot denied: ${reason}`,
        });
      }
      return { approved: false, reason };
    };
    if (req.dataCenter !== caller) return deny(`the boot names data center ${req.dataCenter} but the token belongs to ${caller}`);
    if (!vm) return deny(`no VM ${req.vmId} in the record`);
    if (vm.dataCenter !== caller) return deny(`VM ${vm.address} lives in data center ${vm.dataCenter}, not ${caller}`);
    if (vm.cloudId !== req.cloudId) return deny(`cloud id ${req.cloudId} does not match the record's ${vm.cloudId ?? 'none'}`);
    if (vm.realImage !== req.image) return deny(`image ${req.image} does not match the record's ${vm.realImage ?? 'none'}`);
    const bootEdges = this.lifecycle.edges.filter((e) => e.operation === 'boot');
    if (!bootEdges.some((e) => e.from === vm.state || e.to === vm.state)) {
      return deny(`VM ${vm.address} is ${vm.state}, not booting`);
    }
    if (!(await this.tokenUses.submit({ vmId: vm.id, tokenHash: sha256(req.bootToken) }))) {
      return deny('the boot token is not valid for this VM or was used already');
    }
    await this.bootAttempts.submit({ vmId: vm.id, dataCenter: caller, cloudId: req.cloudId, image: req.image, approved: true, reason: 'matches the record' });
    const res: BootAuthorizeResponse = { approved: true, reason: `VM ${vm.address} matches the record` };
    if (vm.encryptedDisk) res.diskKey = diskKey(this.o.secret, vm.id);
    return res;
  }
}

/** authorize's refusal: no credentials; the record's VM when it is known. */
function veto(reason: string, vm?: VmRow): AuthorizeResponse {
  return { decision: 'vetoed', reason, operation: 'none', ...(vm ? { vm: toAuthorityVm(vm) } : {}) };
}

/** The veto of an authorization whose body names another data center than the caller's token. */
function vetoForeign(caller: string, req: AuthorizeRequest): AuthorizeResponse | undefined {
  return req.dataCenter === caller ? undefined : veto(`the request names data center ${req.dataCenter} but its token belongs to ${caller}`);
}

/** A report naming another data center than the caller's token is refused whole. */
function checkReporter(caller: string, req: ReportRequest): void {
  if (req.dataCenter !== caller) {
    throw new ProtocolError(403, 'wrong-data-center', `the report names data center ${req.dataCenter} but its token belongs to ${caller}`);
  }
}

/** The history row of an approved edge's intent, less its `from` (the VM's state) and outcome (`ok`): written before any cloud call. */
function intentOf(req: AuthorizeRequest, to: string, operation: string): { to: string } & ChangeContext {
  const size = req.kind === 'resize' && req.size ? ` to ${formatSize(req.size)}` : '';
  return { to, actor: 'authority', planId: req.planId, requestId: req.requestId, detail: `intent approved: ${operation}${size}` };
}

function formatSize(s: { cpu: number; memoryGiB: number; diskGiB: number }): string {
  return `${s.cpu} cpu / ${s.memoryGiB} GiB / ${s.diskGiB} GiB disk`;
}
