// What the authority judges per request beyond the lifecycle (docs/security.md,
// "The authority re-checks"): the policy on an edge, on the record as it is
// at the moment of the request (policy.ts holds the pure judgments), and the
// fencing of requests made under an older apply's lock.
import type { AuthorizeRequest, Decided, Refusal } from '../../protocol/index.ts';
import { Batched } from '../durability/index.ts';
import type { LoadedPack, RequestFacts } from '../policy/types.ts';
import type { Budget, FleetFence, FleetRecord, VmRow } from '../record/index.ts';
import { judgeFence } from './decisions.ts';
import { anyQuota, capacityOf, judgeProtect, judgeRequestRules, quotaOf, type Capacities } from './policy.ts';
import { commitsToDeletion } from '../policy/index.ts';

const fleetKey = (stack: string, fleet: string) => `${stack}\u0000${fleet}`;

/** The policy at the authority on edges of existing VMs (creates are judged with their insert: record budgets). */
export class PolicyGate {
  /** Whether the pack has a mandatory request-level rule (Rule.checkRequest): then every edge is judged here. */
  private readonly requestRules: boolean;
  /** Whether owner-quota is mandatory and limits anyone. */
  private readonly anyQuota: boolean;
  /** Per state, whether an edge into it commits a VM to deletion (commits). */
  private readonly committing = new Map<string, boolean>();

  constructor(private readonly o: { record: FleetRecord; pack: LoadedPack; capacity?: Capacities; adminTokens?: readonly string[] }) {
    this.requestRules = [...o.pack.rules.values()].some((x) => x.enforcement === 'mandatory' && x.rule.checkRequest !== undefined);
    this.anyQuota = anyQuota(o.pack);
  }

  /**
   * Whether an edge may be decided by judgeEdge alone (the advance chain's
   * foresee): not when the policy at the authority has to read the record
   * for it (policy.ts): a resize that grows, an edge that commits the VM to
   * deletion, or any edge under a request-level rule.
   */
  plain(fleetProtected?: boolean): (req: AuthorizeRequest, to: string, at: VmRow) => boolean {
    return (req, to, at) => {
      if (this.requestRules) return false;
      if (req.kind === 'resize') return !this.limitsResize(req, at);
      return !this.entersDeletion(req.from, to) || fleetProtected === false;
    };
  }

  /**
   * Whether an edge is the first that commits a VM to deletion (policy.ts
   * commitsToDeletion): protect is judged there, once; the edges after it
   * (BeingDeleted -> Deleted) only finish what was allowed.
   */
  entersDeletion(from: string | null, to: string): boolean {
    if (this.o.pack.rules.get('protect')?.enforcement === 'disabled' || this.o.pack.rules.get('protect')?.enforcement === 'advisory') return false;
    return this.commits(to) && (from === null || !this.commits(from));
  }

  /** commitsToDeletion per state, found once: the pack's lifecycle does not change, and every foreseen edge asks (a search of its paths each). */
  private commits(state: string): boolean {
    let c = this.committing.get(state);
    if (c === undefined) this.committing.set(state, (c = commitsToDeletion(this.o.pack.lifecycle, state)));
    return c;
  }

  /** Whether a resize grows `vm` where a quota or the data center's capacity may limit it (then the record decides, with the intent: FleetRecord.reserveGrow). */
  limitsResize(req: AuthorizeRequest, vm: VmRow): boolean {
    if (req.kind !== 'resize' || !req.size || (req.size.cpu <= vm.size.cpu && req.size.memoryGiB <= vm.size.memoryGiB)) return false;
    return this.anyQuota || capacityOf(this.o.pack, this.o.capacity ?? {}, vm.dataCenter) !== undefined;
  }

  /**
   * The policy at the authority on an edge of `vm` (policy.ts), on the
   * record as it is now: protect (with the request's override) and
   * request-level rules. Approved: what the intent row adds (an override
   * used) and, for a resize that grows where limits apply, the budget the
   * record checks it against in the transaction that writes its intent
   * (FleetRecord.reserveGrow), with the fleet's owner as the record holds it.
   */
  async judge(req: AuthorizeRequest, to: string, vm: VmRow, operation: string): Promise<Decided<{ note?: string; grow?: { owner: string; budget: Budget } }>> {
    const deleting = this.entersDeletion(req.from, to);
    const growing = this.limitsResize(req, vm);
    if (!deleting && !growing && !this.requestRules) return { ok: true };
    const [fleet] = await this.o.record.listFleets(vm.stack, [vm.fleet]);
    const owner = fleet?.owner ?? '';
    let note: string | undefined;
    if (deleting) {
      const judged = judgeProtect(this.o.pack, vm, to, fleet?.protected ?? false, req, this.o.adminTokens ?? []);
      if (!judged.ok) return judged;
      note = judged.overridden;
    }
    let grow: { owner: string; budget: Budget } | undefined;
    if (growing) {
      const quota = quotaOf(this.o.pack, owner);
      const dc = capacityOf(this.o.pack, this.o.capacity ?? {}, vm.dataCenter);
      grow = { owner, budget: { ...(quota ? { owner: quota } : {}), ...(dc ? { dataCenter: dc } : {}) } };
    }
    if (this.requestRules) {
      const facts: RequestFacts = {
        kind: req.kind === 'resize' ? 'resize' : 'transition',
        stack: vm.stack,
        fleet: vm.fleet,
        address: vm.address,
        owner,
        dataCenter: vm.dataCenter,
        image: vm.image,
        size: req.kind === 'resize' && req.size ? req.size : vm.size,
        encryptedDisk: vm.encryptedDisk,
        from: req.from,
        to,
        operation,
      };
      const judged = judgeRequestRules(this.o.pack, facts);
      if (!judged.ok) return judged;
    }
    return { ok: true, ...(note ? { note } : {}), ...(grow ? { grow } : {}) };
  }
}

/** Each fleet's fence (its latest lock's fencing token), read afresh in batches. */
export class Fences {
  private readonly batch: Batched<{ stack: string; fleet: string }, FleetFence | undefined>;

  constructor(record: FleetRecord, batching: { parallel: number; overlapAt: number }) {
    this.batch = new Batched(async (items) => {
      // Usually one stack; a read per stack in the batch.
      const out = new Map<string, FleetFence>();
      for (const stack of new Set(items.map((i) => i.stack))) {
        for (const f of await record.fencesOf(stack, items.filter((i) => i.stack === stack).map((i) => i.fleet))) out.set(fleetKey(stack, f.fleet), f);
      }
      return items.map((i) => out.get(fleetKey(i.stack, i.fleet)));
    }, batching);
  }

  /**
   * Why a request under fencing token `token` (undefined: a request from
   * outside any apply) may not change a VM of this fleet: a newer lock of it
   * exists, or (no token) an apply holds it now; undefined when it may. Read
   * afresh (batched) for every authorization: a lock taken by another
   * process must fence the very next request.
   */
  async fenced(stack: string, fleet: string, token: number | undefined): Promise<Refusal | undefined> {
    const judged = judgeFence(fleet, await this.batch.submit({ stack, fleet }), token);
    return judged.ok ? undefined : judged;
  }
}
