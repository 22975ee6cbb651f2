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
// - advance (a report or a create, then a chain of next edges, in one call)
//   answers exactly what the report (or create), then each edge's authorize
//   and, for a `none` edge in the middle, its ok report would, one by one in
//   one serial(); it only saves work: in the common case all its writes are
//   one record statement, decided by the same checks (judgeEdge) on the rows
//   that statement makes. With `ahead`, the edges after the one to carry out
//   are approved on the rows the edges before them will leave (same checks);
//   each one's intent row is written by the report of the edge before it,
//   and anything but that report drops them (this.ahead).
// - A boot is approved only for a VM the record knows, in the caller's data
//   center, with the same cloud id and real image, presenting an unused boot
//   token. Only then is the disk key released.
import { randomUUID } from 'node:crypto';
import type { LoadedPack } from '../policy/types.ts';
import { Batched, KeyLocks } from '../durability/index.ts';
import type {
  BootAttempt,
  BootCheck,
  BootCheckResult,
  ChangeContext,
  FleetRecord,
  HistoryItem,
  InsertItem,
  IntentRow,
  NewVm,
  Onward,
  TransitionItem,
  VmRow,
} from '../record/types.ts';
import { VersionConflictError } from '../record/errors.ts';
import { ProtocolError } from './http.ts';
import { credentialToken, diskKey, randomToken, sha256 } from './keys.ts';
import type { CredentialBroker } from './credentials/types.ts';
import { NONE_REPORT_DETAIL } from './protocol.ts';
import type {
  AdvanceRequest,
  AdvanceResponse,
  AdvanceStep,
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
  /** Cloud credentials of cloud data centers (engine/authority/credentials); none: the scoped token alone (sim). */
  credentialBroker?: CredentialBroker;
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
  /** For a `boot` edge: the token whose hash the intent's statement stored. */
  bootToken?: string;
}

/**
 * An edge of an advance chain decided on the row the chain's statement is
 * about to make (foresee), written by that statement: its intent row and,
 * when `moved`, its transition (a `none` edge in the middle of the chain).
 */
interface Foreseen extends Approved {
  req: AuthorizeRequest;
  moved: boolean;
  /** Approved ahead (AdvanceRequest.ahead): not written by the statement; its intent row waits for the report of the edge before it. */
  ahead?: boolean;
}

/** An edge approved ahead, waiting for the ok report of the edge before it, whose statement writes its intent row. */
interface Ahead {
  from: string;
  intent: IntentRow;
  /** ms since epoch, as Pending.at. */
  at: number;
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
  /** Per VM, its edges approved ahead, in path order (see AdvanceRequest.ahead); in time order of their VMs' last approval. */
  private readonly ahead = new Map<string, Ahead[]>();
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
  /** The same for the once-per-VM writes and reads: creates, the boot check (one statement when approved), and a denied boot's attempt row. */
  private readonly inserts: Batched<InsertItem, VmRow>;
  private readonly reads: Batched<string, VmRow | undefined>;
  private readonly boots: Batched<BootCheck, BootCheckResult>;
  private readonly bootAttempts: Batched<BootAttempt, undefined>;
  /** The states a VM may boot in: those a `boot` edge leaves or enters. */
  private readonly bootStates: readonly string[];

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
    this.inserts = new Batched<InsertItem, VmRow>((items) => r.insertVms(items), {
      ...OVERLAP,
      keyOf: (i) => fleetKey(i.vm.stack, i.vm.fleet),
      locks: fleetLocks,
    });
    this.reads = new Batched((ids) => r.getVms(ids), OVERLAP);
    this.boots = new Batched((items) => r.authorizeBoots(items), OVERLAP);
    this.bootAttempts = new Batched(async (items) => (await r.addBootAttempts(items), none(items)), OVERLAP);
    const bootEdges = o.pack.lifecycle.edges.filter((e) => e.operation === 'boot');
    this.bootStates = [...new Set(bootEdges.flatMap((e) => [e.from, e.to]))];
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
    for (const [id, a] of this.ahead) {
      if (a[0].at >= cutoff) break;
      this.ahead.delete(id);
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
    const cloud = this.o.credentialBroker?.issued(dataCenter);
    const ms = Math.min(Date.now() + this.ttl, cloud ? Date.parse(cloud.expiresAt) : Infinity);
    const expiresAt = new Date(ms).toISOString();
    return { dataCenter, token: credentialToken(this.o.secret, dataCenter, requestId, expiresAt), expiresAt, ...(cloud?.aws ? { aws: cloud.aws } : {}), ...(cloud?.azure ? { azure: cloud.azure } : {}) };
  }

  /** A state with an edge whose operation is `powerOn` is a powered-off state; a resize happens only there. */
  private canResizeIn(state: string): boolean {
    return this.lifecycle.edges.some((e) => e.from === state && e.operation === 'powerOn');
  }

  async authorize(caller: string, req: AuthorizeRequest): Promise<AuthorizeResponse> {
    const foreign = vetoForeign(caller, req);
    if (foreign) return foreign;
    await this.o.credentialBroker?.prepare(caller);
    return this.serial(req.vmId, async () => (req.kind === 'create' ? (await this.authorizeCreate(caller, req)).answer : this.authorizeEdge(caller, req)));
  }

  /** authorize of a transition or a resize, inside serial(). */
  private authorizeEdge(caller: string, req: AuthorizeRequest): Promise<AuthorizeResponse> {
    this.ahead.delete(req.vmId);
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
      // The intent (and a boot edge's token), before any cloud call; the
      // state change itself is written at report. Written only while the VM
      // is still at the version decided on (a conflict decides again on a
      // fresh read).
      const { operation } = judged;
      const bootToken = operation === 'boot' ? randomToken(24) : undefined;
      await this.intents.submit({
        vmId: vm.id,
        row: { from: req.from, outcome: 'ok', ...intentOf(req, to, operation) },
        expectedVersion: vm.version,
        ...(bootToken !== undefined ? { bootTokenHash: sha256(bootToken) } : {}),
      });
      return this.approve(caller, req, { vm, to, operation, ...(bootToken !== undefined ? { bootToken } : {}) });
    });
  }

  /**
   * Whether the edge `req` asks for may be taken on row `vm`: its operation,
   * or why not. Reads nothing but its arguments and the pack, so advance can
   * decide on the rows its statement is about to make (foresee).
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
    this.pending.delete(req.requestId);
    if (!opts.moved) this.pending.set(req.requestId, { dataCenter: caller, vmId: vm.id, from: vm.state, to, kind: req.kind, operation, at: Date.now() });
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
    const initial = this.lifecycle.initial;
    const no = (reason: string) => ({ answer: veto(reason) });
    if (!req.vm) return no('a create needs the VM');
    if (req.from !== null || (req.to ?? initial) !== initial) {
      return no(`a create enters the initial state ${initial} from nothing; got ${req.from ?? 'nothing'} -> ${req.to ?? initial}`);
    }
    if (req.vm.dataCenter !== caller) {
      return no(`the VM is to be created in data center ${req.vm.dataCenter} but the token belongs to ${caller}`);
    }
    if (req.vm.stack !== this.o.stackName) return no(`this authority serves stack ${this.o.stackName}, not ${req.vm.stack}`);
    if (!UUID.test(req.vmId)) return no(`VM id ${req.vmId} is not a UUID`);
    const realImage = this.o.pack.images[req.vm.image]?.[caller];
    if (realImage === undefined) {
      return no(`image ${req.vm.image} has no translation for data center ${caller} in the ${this.o.pack.name} pack's catalog`);
    }
    const modified = realImage !== req.vm.image;
    const reason = modified ? `image ${req.vm.image} translated to ${realImage} for ${caller}` : `image ${realImage} is valid in ${caller}`;
    const again = (existing: VmRow) =>
      existing.dataCenter !== caller
        ? no(`VM ${existing.address} lives in data center ${existing.dataCenter}`)
        : { answer: { decision: modified ? 'modified' : 'approved', reason, operation: 'insert', realImage, vm: toAuthorityVm(existing) } satisfies AuthorizeResponse, row: existing };
    if (req.vm.replaces !== undefined) {
      // A repeated create (the DMZ client lost our answer) gets the same answer, even once the old VM is gone.
      const existing = await this.getVm(req.vmId);
      if (existing) return again(existing);
      const old = await this.o.record.getVm(req.vm.replaces);
      if (!old || old.retiredAt !== null) return no(`VM ${req.vm.replaces}, which the new VM should replace, is not live`);
      if (old.dataCenter !== caller) return no(`VM ${old.address} lives in data center ${old.dataCenter}; a replacement in ${caller} cannot depose it`);
      if (old.fleet !== req.vm.fleet || old.index !== req.vm.index || old.stack !== req.vm.stack) {
        return no(`VM ${req.vm.replaces} is ${old.address}, not ${req.vm.fleet}/${req.vm.index}`);
      }
    }
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
    // The row the insert makes, as far as judgeEdge reads it (and answers carry it).
    const inserted: VmRow = {
      ...newVm,
      id: req.vmId,
      address: `${newVm.fleet}/${newVm.index}`,
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
    const foreseen = newVm.replaces === undefined ? this.foresee(caller, next, inserted, { ahead }) : [];
    let vm: VmRow;
    try {
      if (newVm.replaces !== undefined) vm = await this.o.record.insertVm(newVm, ctx);
      else {
        vm = await this.inserts.submit({ vm: newVm, ctx, ...this.onward(caller, foreseen) });
      }
    } catch (err) {
      if (!(err instanceof VersionConflictError)) throw err;
      if (err.key === req.vmId) {
        // A repeated create (the DMZ client lost our answer): same VM, same answer.
        const existing = await this.getVm(req.vmId);
        if (existing) return again(existing);
      }
      return no(`address ${req.vm.fleet}/${req.vm.index} already has a live VM: ${err.message}`);
    }
    this.remember(vm);
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
    checkReporter(caller, req);
    return this.serial(req.vmId, async () => (await this.settle(caller, req)).report);
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
    const { report, create, next } = req;
    const bad = (message: string) => new ProtocolError(400, 'bad-request', message);
    if ((report === undefined) === (create === undefined)) throw bad('an advance carries exactly one of report and create');
    if (create && create.kind !== 'create') throw bad(`an advance's create is a create (kind create), not a ${create.kind}`);
    if (report) checkReporter(caller, report);
    await this.o.credentialBroker?.prepare(caller);
    const vmId = (report ?? create)!.vmId;
    if (next.length === 0) throw bad('an advance needs at least one next edge');
    for (let j = 0; j < next.length; j++) {
      const n = next[j];
      if (n.kind === 'create') throw bad('a create is never the next edge of an advance: send it as the advance\'s create');
      if (n.vmId !== vmId) throw bad(`an advance is about one VM: it is about ${vmId}, its next edge ${j} about ${n.vmId}`);
      if (j > 0 && n.from !== next[j - 1].to) throw bad(`the next edges of an advance follow one another: edge ${j} leaves ${n.from}, edge ${j - 1} leads to ${next[j - 1].to ?? 'nowhere'}`);
    }
    const ahead = req.ahead === true;
    return this.serial(vmId, () => {
      // A new chain decides afresh what comes next.
      this.ahead.delete(vmId);
      return create ? this.advanceCreate(caller, create, next, ahead) : this.advanceReport(caller, report!, next, ahead);
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
    if (later.length > 0) {
      const at = Date.now();
      // Deleted first, so the map stays in time order (prunePending).
      this.ahead.delete(row.id);
      this.ahead.set(row.id, later.map((f) => ({ from: f.vm.state, intent: intentOf(f.req, f.to, f.operation), at })));
    }
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
      j = this.passedAlready(row, start, next);
      for (let p = 0; p < j; p++) steps.push(alreadyPassed(next[p], row));
    }
    if (j < next.length && row.state === next[j].from) await this.decideRest(caller, next, j, steps);
    return steps;
  }

  /**
   * How many of `next`'s first edges a VM at `vm.state` has passed since it
   * was at `start`, when only `none` edges of the chain's middle lead there;
   * 0 otherwise.
   */
  private passedAlready(vm: VmRow, start: string, next: readonly AuthorizeRequest[]): number {
    let state = start;
    for (let j = 0; j < next.length - 1; j++) {
      const e = next[j];
      if (e.from !== state || e.to === undefined || e.kind !== 'transition' || this.lifecycle.operation(e.from, e.to) !== 'none') return 0;
      state = e.to;
      if (vm.state === state) return j + 1;
    }
    return 0;
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
   * The edges of `next` that would be approved one after the other starting
   * on `row` (the row a statement is about to make): each decided by
   * judgeEdge on the row the one before leaves, up to and including the
   * first that is not moved at once (see movesAtOnce), and with `ahead` on
   * past it, approved ahead (each on the row the one before will leave once
   * reported). Stops before an edge that would be refused (decideRest
   * decides it, on a fresh read), a pass into a terminal state (its report
   * retires the row), and a second boot edge (a statement stores one token).
   */
  private foresee(caller: string, next: readonly AuthorizeRequest[], row: VmRow, opts: { ahead?: boolean } = {}): Foreseen[] {
    const out: Foreseen[] = [];
    let at = row;
    /** Past the edge to carry out: approving ahead. */
    let ahead = false;
    // One boot token a statement (TransitionItem.bootTokenHash).
    let token = false;
    for (let j = 0; j < next.length; j++) {
      const req = next[j];
      if (req.to === undefined || vetoForeign(caller, req)) break;
      const judged = this.judgeEdge(caller, req, req.to, at);
      if ('refusal' in judged) break;
      const { operation } = judged;
      const moved = !ahead && movesAtOnce(next, j, operation);
      if ((operation === 'boot' && token) || (moved && this.lifecycle.isTerminal(req.to))) break;
      token ||= operation === 'boot';
      out.push({ req, vm: at, to: req.to, operation, moved, ...(ahead ? { ahead } : {}), ...(operation === 'boot' ? { bootToken: randomToken(24) } : {}) });
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
  private onward(caller: string, foreseen: readonly Foreseen[]): Onward & { bootTokenHash?: string } {
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
    if (req.outcome !== 'ok') this.ahead.delete(req.vmId);
    type Settled = { report: ReportResponse; row: VmRow; foreseen?: Foreseen[] };
    return this.decideOn(req.vmId, async (vm, remembered): Promise<Settled> => {
      // Anything but the common case is decided again on a fresh read.
      const refuse = (status: number, code: string, message: string): never => {
        if (remembered) throw new StaleRow(message);
        throw new ProtocolError(status, code, message);
      };
      const answer = (row: VmRow, effect: ReportResponse['effect']) => ({ report: { vm: toAuthorityVm(row), effect }, row });
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
        if (vm.state !== req.from) {
          // An advance sent again after its answer was lost finds the VM past
          // req.to along its chain's `none` edges: already (chain answers them).
          if (!remembered && next && this.passedAlready(vm, req.to, next) > 0) return answer(vm, 'already');
          return refuse(409, 'state-moved', `VM ${vm.address} is ${vm.state}, not ${req.from}`);
        }
        const patch: TransitionItem['patch'] & {} = {};
        if (req.cloudId !== undefined) patch.cloudId = req.cloudId;
        if (this.lifecycle.isTerminal(req.to)) patch.retire = true;
        // The row the transition makes, as far as judgeEdge reads it (timestamps aside).
        const after: VmRow = {
          ...vm,
          state: req.to,
          version: vm.version + 1,
          cloudId: patch.cloudId ?? vm.cloudId,
          retiredAt: patch.retire ? new Date().toISOString() : vm.retiredAt,
        };
        const foreseen = next ? this.foresee(caller, next, after, { ahead: chain.ahead }) : [];
        const moved = await this.transitions.submit({
          stack: vm.stack,
          fleet: vm.fleet,
          id: vm.id,
          expectedVersion: vm.version,
          to: req.to,
          ctx: reportCtx(caller, req, 'ok', req.detail ?? null),
          patch,
          ...this.onward(caller, foreseen),
          ...(following ? { intent: following.intent } : {}),
        });
        this.remember(moved);
        this.pending.delete(req.requestId);
        if (following) {
          // Its intent is written: from now on it is an edge like any authorized one.
          queued!.shift();
          if (queued!.length === 0) this.ahead.delete(req.vmId);
        }
        return { report: { vm: toAuthorityVm(rowAt(moved, after)), effect: 'moved' }, row: moved, foreseen };
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
    }).catch((err: unknown) => {
      this.ahead.delete(req.vmId);
      throw err;
    });
  }

  /**
   * A booting VM asks for its disk key. The approval is one record statement
   * (authorizeBoots: the row check, the token use and the attempt row); a
   * denial is explained from the row that statement saw and recorded as
   * before (an attempt row, and a history row when the VM is known).
   */
  async bootAuthorize(caller: string, req: BootAuthorizeRequest): Promise<BootAuthorizeResponse> {
    // A body naming another data center is denied without a check, but still written to the VM's history (getVm: undefined for a non-UUID id).
    const checked: BootCheckResult =
      req.dataCenter === caller && UUID.test(req.vmId)
        ? await this.boots.submit({
            vmId: req.vmId,
            dataCenter: caller,
            cloudId: req.cloudId,
            image: req.image,
            tokenHash: sha256(req.bootToken),
            allowedStates: this.bootStates,
            reason: 'matches the record',
          })
        : { approved: false, vm: await this.getVm(req.vmId) };
    const vm = checked.vm;
    if (checked.approved) {
      const res: BootAuthorizeResponse = { approved: true, reason: `VM ${checked.vm.address} matches the record` };
      if (checked.vm.encryptedDisk) res.diskKey = diskKey(this.o.secret, checked.vm.id);
      return res;
    }
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
    if (!this.bootStates.includes(vm.state)) return deny(`VM ${vm.address} is ${vm.state}, not booting`);
    return deny('the boot token is not valid for this VM or was used already');
  }
}

/** Whether edge j of a chain, approved with `operation`, is moved at once: a `none` edge with an edge after it. */
function movesAtOnce(next: readonly AuthorizeRequest[], j: number, operation: string): boolean {
  return operation === 'none' && j < next.length - 1;
}

/**
 * Row `row` as it was at `at`'s state and version: a chain's statement
 * returns the row it leaves; its answers carry the row as each edge found
 * it (the other fields are the same, timestamps aside).
 */
function rowAt(row: VmRow, at: VmRow): VmRow {
  return at.version === row.version ? row : { ...row, state: at.state, version: at.version, retiredAt: at.retiredAt };
}

/** The ok report of a `none` edge a chain moves at once, as the DMZ client would send it. */
function noneReport(caller: string, req: AuthorizeRequest): ReportRequest {
  return { dataCenter: caller, requestId: req.requestId, planId: req.planId, vmId: req.vmId, from: req.from as string, to: req.to as string, outcome: 'ok', detail: NONE_REPORT_DETAIL };
}

/** The history row context of a report's transition. */
function reportCtx(caller: string, req: ReportRequest, outcome: 'ok' | 'failed', detail: string | null): ChangeContext & { outcome: 'ok' | 'failed' } {
  return { actor: `dmz-client:${caller}`, planId: req.planId, requestId: req.requestId, outcome, detail };
}

/** A chain's `none` edge found passed already (an advance sent again): approved and `already`, on the row as it is now. */
function alreadyPassed(req: AuthorizeRequest, vm: VmRow): AdvanceStep {
  const now = toAuthorityVm(vm);
  return {
    authorize: { decision: 'approved', reason: `${req.from ?? 'nothing'} -> ${req.to ?? '?'} (none) was passed already by VM ${vm.address}`, operation: 'none', vm: now },
    moved: { vm: now, effect: 'already' },
  };
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
