// Sealed plans at the authority (DESIGN.md, "The plan document"; docs/security.md,
// "Saved plans are sealed"). In a deployed stack (one with an `authority`
// address) the plan-seal key is the authority's, never the record's: the CLI
// and everyone else who holds the record's credentials can read the record's
// key, so only a key they cannot read makes a seal worth checking.
//
// What the authority does, and checks:
//
// | route / moment                | checks                                                             | refusal            |
// | ----------------------------- | ------------------------------------------------------------------ | ------------------ |
// | POST /v1/plans/seal           | the plan is this stack's (name); every change in its scope         | plan-foreign,      |
// |                               | (checkScope) and every vmId that member's VM (checkTargets)        | plan-scope         |
// |                               | -> seal: HMAC(key, stackId, sha256(canonical content))             |                    |
// | POST /v1/plans/register       | a seal; this record's stack id and this authority's key id; the    | plan-unsigned,     |
// |                               | content matches the digest; the signature verifies; scope and      | plan-foreign,      |
// |                               | targets as above; a plan id registered before has the same digest  | plan-tampered,     |
// |                               | -> the plan's scope stored in the record with a MAC                | plan-scope         |
// | every authorize / advance     | its plan id is registered (the row's MAC verifies); a create is a  | plan-unregistered, |
// |   (the gate)                  | create/replace member of that plan, in the caller's data center,   | outside-plan       |
// |                               | under the VM id apply proposes; an edge of an existing VM is about |                    |
// |                               | a VM the plan acts on, or one it created; and the VM's fleet is    | plan-unlocked      |
// |                               | locked now by that plan's apply (a lock naming the plan, unexpired)|                    |
//
// The key: HKDF-SHA256 of the authority's secret (salt `dmzfleet plan
// seal`, info `plan-seal v1 <stack>`). It never leaves this process: not in
// an answer, a log, a diagnostic or the record (which holds only the MACs).
// Decisions are pure functions (judgePlanRequest); the class loads and caches.
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import type { Diagnostic } from '../diags/index.ts';
import { formatVmAddress, parseVmAddress } from '../model/index.ts';
import { proposedVmId } from '../model/vm-id.ts';
import { actedVmIds, canonicalJson, checkScope, checkTargets, planContentDigest, planScope, sealPlan, verifySeal, type SealKey } from '../plan/index.ts';
import type { PlanDocument, PlanSeal } from '../plan/types.ts';
import type { FleetRecord, LockRow, SealedPlanRow, VmRow } from '../record/index.ts';
import {
  WireError,
  type AdvanceRequest,
  type AdvanceResponse,
  type AuthorizeRequest,
  type AuthorizeResponse,
  type BootAuthorizeRequest,
  type BootAuthorizeResponse,
  type ReportRequest,
  type ReportResponse,
  type WireCode,
} from '../../protocol/index.ts';
import { veto } from './answers.ts';

type Scope = SealedPlanRow['scope'];


/** The authority's plan-seal key for a stack. Its id names it without revealing it. */
export function authoritySealKey(secret: string, stack: string): SealKey {
  const bytes = Buffer.from(hkdfSync('sha256', secret, 'dmzfleet plan seal', `plan-seal v1 ${stack}`, 32));
  const id = `a-${createHmac('sha256', bytes).update('key-id').digest('hex').slice(0, 8)}`;
  const key = { id } as SealKey;
  // Not enumerable: JSON.stringify and util.inspect never show it.
  Object.defineProperty(key, 'secret', { value: bytes, enumerable: false });
  return key;
}

/** The wire code of a diagnostic of engine/plan/integrity.ts (`apply.plan-tampered` -> `plan-tampered`). */
function wireCodeOf(d: Diagnostic): WireCode {
  const code = d.code.replace(/^apply\./, '');
  return (['plan-unsigned', 'plan-foreign', 'plan-tampered', 'plan-scope'].includes(code) ? code : 'plan-tampered') as WireCode;
}

/** One refusal for all the problems found: the first one's code, every detail in the message. */
function refusal(problems: readonly Diagnostic[]): WireError {
  return new WireError(wireCodeOf(problems[0]), problems.map((d) => (d.address ? `${d.address}: ${d.detail}` : d.detail)).join(' '));
}

/**
 * Whether a request may go on under its plan: undefined when it may, else
 * the veto's code and reason. `scope` is the registered plan's (undefined:
 * no plan of that id is registered); `row` the record's VM for an edge of an
 * existing VM (undefined: unknown, left to the authority's own unknown-vm).
 */
export function judgePlanRequest(
  caller: string,
  req: Pick<AuthorizeRequest, 'planId' | 'kind' | 'vmId'> & { vm?: { fleet: string; index: number } },
  scope: Scope | undefined,
  row: Pick<VmRow, 'id' | 'address'> | undefined,
): { code: 'plan-unregistered' | 'outside-plan'; reason: string } | undefined {
  if (req.planId === null || scope === undefined) {
    return { code: 'plan-unregistered', reason: req.planId === null ? 'the request names no plan; this authority approves only requests of a plan registered with it' : `plan ${req.planId} is not registered with this authority` };
  }
  const planId = req.planId;
  if (req.kind === 'create') {
    const address = req.vm ? formatVmAddress(req.vm.fleet, req.vm.index) : undefined;
    const member = scope.members.find((m) => m.address === address && (m.action === 'create' || m.action === 'replace'));
    if (!address || !member) return { code: 'outside-plan', reason: `plan ${planId} creates no VM at ${address ?? 'that address'}` };
    if (member.dataCenter !== caller) return { code: 'outside-plan', reason: `plan ${planId} creates ${address} in ${member.dataCenter}, not in ${caller}` };
    if (req.vmId !== proposedVmId(planId, address)) return { code: 'outside-plan', reason: `plan ${planId} creates ${address} under another VM id than ${req.vmId}` };
    return undefined;
  }
  if (!row) return undefined;
  // Several changes may share an address (a replace's deposed VM beside the current one): any of them may own the VM.
  const ours = scope.members.some(
    (m) => m.address === row.address && (m.vmId === row.id || ((m.action === 'create' || m.action === 'replace') && row.id === proposedVmId(planId, row.address))),
  );
  if (!ours) return { code: 'outside-plan', reason: `plan ${planId} does not act on VM ${row.id} (${row.address})` };
  return undefined;
}

/** How deep a plan document may nest; `fleet plan --out` writes fewer than 10 levels. */
export const PLAN_MAX_DEPTH = 64;

/**
 * Refuses a plan nested deeper than PLAN_MAX_DEPTH (400 bad-request): its
 * canonical text (the seal's digest) is built by recursion, which a plan of
 * thousands of levels (1 MiB of `[[[…`) would overflow into a 500.
 */
function checkDepth(plan: unknown): void {
  const todo: [unknown, number, string][] = [[plan, 0, 'plan']];
  for (let next = todo.pop(); next; next = todo.pop()) {
    const [v, depth, at] = next;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= PLAN_MAX_DEPTH) throw new WireError('bad-request', `the plan nests deeper than ${PLAN_MAX_DEPTH} levels (at ${at}/…); a plan \`fleet plan --out\` writes never does`);
    for (const [k, c] of Object.entries(v)) todo.push([c, depth + 1, depth < 8 ? `${at}/${k}` : at]);
  }
}

export class PlanSeals {
  private readonly key: SealKey;
  private stackId: string | undefined;
  /** Registered plans' scopes (immutable once registered), by plan id. */
  private readonly scopes = new Map<string, Scope>();
  /** The read of the stack's locks in flight, joined by the requests that arrive meanwhile. */
  private reading: Promise<LockRow[]> | undefined;
  /** A VM's id, address and data center never change: read once per VM. */
  private readonly rows = new Map<string, Pick<VmRow, 'id' | 'address' | 'dataCenter'>>();

  constructor(private readonly o: { record: FleetRecord; stackName: string; secret: string }) {
    this.key = authoritySealKey(o.secret, o.stackName);
  }

  /** This stack's id in the record (made on first use: one stack id per stack, shared with the embedded default's). */
  private async id(): Promise<string> {
    this.stackId ??= (await this.o.record.stackIdentity(this.o.stackName, { create: true }))!.stackId;
    return this.stackId;
  }

  private mac(row: Pick<SealedPlanRow, 'stack' | 'planId' | 'digest' | 'scope'>): string {
    return createHmac('sha256', this.key.secret).update(`dmzfleet-registered-plan-v1\0${canonicalJson({ stack: row.stack, planId: row.planId, digest: row.digest, scope: row.scope })}`).digest('base64url');
  }

  /** Scope and target problems of a plan (its changes against the record). */
  private async scopeProblems(plan: PlanDocument): Promise<Diagnostic[]> {
    const ids = actedVmIds(plan);
    const rows = new Map<string, VmRow>();
    (await this.o.record.getVms(ids)).forEach((vm, i) => vm && rows.set(ids[i], vm));
    return [...checkScope(plan, 'the plan'), ...checkTargets(plan, rows, 'the plan')];
  }

  /** POST /v1/plans/seal. */
  async seal(plan: PlanDocument): Promise<PlanSeal> {
    checkDepth(plan);
    if (plan.stack !== this.o.stackName) throw new WireError('plan-foreign', `the plan is for stack ${plan.stack}; this authority serves stack ${this.o.stackName}`);
    const problems = await this.scopeProblems(plan);
    if (problems.length > 0) throw refusal(problems);
    return sealPlan(plan, this.key, await this.id());
  }

  /** POST /v1/plans/register: verifies the sealed plan, then records its scope; the same plan registered again is answered the same. */
  async register(plan: PlanDocument): Promise<{ planId: string; digest: string; members: number }> {
    checkDepth(plan);
    const stackId = await this.id();
    const sealProblems = verifySeal(plan, { file: 'the plan', stack: this.o.stackName, stackId, key: (id) => (id === this.key.id ? this.key : undefined) });
    const problems = [...sealProblems, ...(await this.scopeProblems(plan))];
    if (problems.length > 0) throw refusal(problems);
    const digest = planContentDigest(plan);
    const scope = planScope(plan);
    const row = { stack: this.o.stackName, planId: plan.id, digest, scope };
    const held = await this.o.record.registerSealedPlan({ ...row, mac: this.mac(row) });
    if (held.digest !== digest) throw new WireError('plan-tampered', `a plan with id ${plan.id} and other content is registered already; plan again`);
    this.scopes.set(plan.id, held.scope);
    return { planId: plan.id, digest, members: scope.members.length };
  }

  /** The registered plan's scope; undefined when none of that id is registered, or its row's MAC does not verify (written by someone else). */
  private async scopeOf(planId: string): Promise<Scope | undefined> {
    const cached = this.scopes.get(planId);
    if (cached) return cached;
    const row = await this.o.record.sealedPlan(this.o.stackName, planId);
    if (!row) return undefined;
    const want = Buffer.from(this.mac(row));
    const got = Buffer.from(row.mac);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return undefined;
    this.scopes.set(planId, row.scope);
    return row.scope;
  }

  private async rowOf(vmId: string): Promise<Pick<VmRow, 'id' | 'address' | 'dataCenter'> | undefined> {
    const cached = this.rows.get(vmId);
    if (cached) return cached;
    const vm = await this.o.record.getVm(vmId);
    if (!vm || vm.stack !== this.o.stackName) return undefined;
    const row = { id: vm.id, address: vm.address, dataCenter: vm.dataCenter };
    if (this.rows.size > 100_000) this.rows.clear();
    this.rows.set(vmId, row);
    return row;
  }

  /**
   * Whether `fleet` is locked now by the apply of plan `planId`: a
   * registration admits requests only while its apply holds the fleet, so a
   * registered plan cannot be replayed once that apply is over. Requests
   * arriving together share one read of the locks (a read in flight is
   * joined); a "no" from a read that may have started before the request
   * arrived is confirmed by a read of its own, so a lock taken just before
   * the request is never missed.
   */
  private async lockedBy(planId: string, fleet: string): Promise<boolean> {
    const holds = (locks: readonly LockRow[]) => {
      const now = Date.now();
      return locks.some((l) => l.fleet === fleet && l.planId === planId && Date.parse(l.expiresAt) > now);
    };
    if (this.reading && holds(await this.reading)) return true;
    const read = this.o.record.listLocks(this.o.stackName).finally(() => {
      if (this.reading === read) this.reading = undefined;
    });
    this.reading = read;
    return holds(await read);
  }

  /** The gate on one authorization: undefined when it may go on to the authority's own checks, else the veto. */
  async judge(caller: string, req: AuthorizeRequest): Promise<{ code: 'plan-unregistered' | 'outside-plan' | 'plan-unlocked'; reason: string } | undefined> {
    const scope = req.planId === null ? undefined : await this.scopeOf(req.planId);
    const row = req.kind === 'create' || scope === undefined ? undefined : await this.rowOf(req.vmId);
    const judged = judgePlanRequest(caller, req, scope, row);
    if (judged || req.planId === null) return judged;
    const fleet = req.kind === 'create' ? req.vm?.fleet : row ? parseVmAddress(row.address)?.fleet : undefined;
    if (fleet !== undefined && !(await this.lockedBy(req.planId, fleet))) {
      return { code: 'plan-unlocked', reason: `fleet ${fleet} is not locked by the apply of plan ${req.planId}: a registered plan's requests are approved only while its apply holds the fleet` };
    }
    return undefined;
  }
}

/** The authority's calls, as the routes and batches make them (Authority). */
export interface AuthorityCalls {
  authorize(caller: string, req: AuthorizeRequest): Promise<AuthorizeResponse>;
  report(caller: string, req: ReportRequest): Promise<ReportResponse>;
  advance(caller: string, req: AdvanceRequest): Promise<AdvanceResponse>;
  bootAuthorize(caller: string, req: BootAuthorizeRequest): Promise<BootAuthorizeResponse>;
}

/**
 * The authority's calls behind the sealed-plan gate: an authorize, a
 * create and every next edge of an advance are judged first (a veto writes
 * nothing); reports and boots need no gate (the authority takes them only for
 * what it approved). Calls about one VM run one at a time in their order, as
 * the core runs them (a batch may carry an authorize and its report): the
 * gate's reads must not let a later call overtake an earlier one.
 */
export function gatedCalls(core: AuthorityCalls, seals: PlanSeals): AuthorityCalls {
  const lanes = new Map<string, Promise<unknown>>();
  const inOrder = <T>(vmId: string, work: () => Promise<T>): Promise<T> => {
    const before = lanes.get(vmId) ?? Promise.resolve();
    const done = before.then(work, work);
    const tail = done.then(
      () => undefined,
      () => undefined,
    );
    lanes.set(vmId, tail);
    void tail.then(() => {
      if (lanes.get(vmId) === tail) lanes.delete(vmId);
    });
    return done;
  };
  const gate = async (caller: string, req: AuthorizeRequest): Promise<AuthorizeResponse | undefined> => {
    const judged = await seals.judge(caller, req);
    return judged ? veto(judged.reason, undefined, judged.code) : undefined;
  };
  return {
    authorize: (caller, req) => inOrder(req.vmId, async () => (await gate(caller, req)) ?? core.authorize(caller, req)),
    report: (caller, req) => inOrder(req.vmId, () => core.report(caller, req)),
    bootAuthorize: (caller, req) => inOrder(req.vmId, () => core.bootAuthorize(caller, req)),
    advance: (caller, req) =>
      inOrder(req.report?.vmId ?? req.create?.vmId ?? req.next[0]?.vmId ?? '', async () => {
        if (req.create) {
          const refused = await gate(caller, req.create);
          if (refused) return { create: refused, next: [] };
        }
        // Judged together: their reads of the record are shared.
        for (const refused of await Promise.all(req.next.map((n) => gate(caller, n)))) {
          if (!refused) continue;
          // The report stands on its own approval; the edges after it are refused.
          return req.report ? { report: await core.report(caller, req.report), next: [{ authorize: refused }] } : { next: [{ authorize: refused }] };
        }
        return core.advance(caller, req);
      }),
  };
}
