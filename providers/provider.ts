// One Pulumi dynamic provider per data center, over that data center's DMZ
// client. `fleet apply` drives every member through one of these (the
// executor holds providers, never a DMZ client: engine/apply may not import
// providers/client.ts, eslint.config.js), and a Pulumi program uses the same
// class (`new pulumi.dynamic.Resource(provider, ...)`).
//
// Serializable: a DataCenterProvider holds only plain data (the data
// center's name, the DMZ client's URL, the NAME of the environment variable
// with the token, and the lifecycle as plain data), never a token value, a
// socket or a pack object; it opens a client per call and reads the token
// from the environment then. Node built-ins are reached through globals
// (globalThis.crypto), not imports: a captured import of a native module
// cannot be serialized. `fleet apply` uses the subclass ConnectedProvider,
// which holds the apply's long-lived batch client (one per data center, so
// steps in flight share requests and lanes): it is never handed to Pulumi.
//
// One implementation of the decisions: which fields force a new VM, where a
// resize happens, which path a VM takes, are engine/plan/member.ts's (the
// planner's own), over engine/policy's Lifecycle built from the plain data.
//
// Two ways to call create/update/delete, one code path below them (`run`):
// - Pulumi (no `planned` argument): the provider plans the steps itself,
//   with random idempotency keys.
// - fleet apply (`planned`): the plan's steps exactly, under the executor's
//   idempotency keys, each answer handed to `planned.onStep` as it comes
//   (the executor journals it), the run held in the apply's lane.
//
// Failure rules (pulumi sdk/nodejs/dynamic/index.ts):
// - create: if it fails, nothing must remain created: the VM is walked to the
//   terminal state before the error is thrown. If that walk fails too, the
//   error carries the VM as Pulumi's partial resource (`id`, `properties`),
//   so the state keeps it. Under fleet apply the record
//   holds the VM where it stopped and the next plan continues it (a failed
//   create is retried or given up along the pack's recovery edges): no
//   clean-up there, as every step is journalled.
// - delete: if it fails, the VM still exists (the error says in which state).
import type * as pulumi from '@pulumi/pulumi';
import { FleetError, REASON_LIMIT, clip, diag, unseenProblem, visible } from '../engine/diags/index.ts';
import { formatVmAddress, sameSize, type ReplaceOrder, type Step } from '../engine/model/index.ts';
import { classifyMember, deletePath, REPLACE_FIELDS, resizeSteps, stepsAlong } from '../engine/plan/member.ts';
import { buildLifecycle, commitsToDeletion, type LifecycleDef } from '../engine/policy/lifecycle.ts';
import type { Lifecycle } from '../engine/policy/types.ts';
import { unsendableTokenChar, type ClientTls } from '../engine/transport/index.ts';
import { DmzHttpClient, type AdminCheckAnswer } from './client.ts';
import type { ActualVm, AdminCheckRequest, BatchStep, NewVmRequest, Override, RunLane, StepResult } from '../protocol/index.ts';

/**
 * What a VM resource is declared with: the create request's VM (protocol/,
 * NewVmRequest) without the id the provider proposes. `replaceOrder` is the
 * plan's (the planner knows the data center's capacity); without it a
 * replace deletes the old VM first.
 */
export type VmInputs = Omit<NewVmRequest, 'id' | 'replaces'> & { planId?: string | null; replaceOrder?: ReplaceOrder };

/** What the provider knows after a call. */
export interface VmOutputs extends VmInputs {
  vmId: string;
  dataCenter: string;
  state: string;
  cloudId: string | null;
  realImage: string | null;
  version: number;
  /**
   * Set (only `true`) when the call's last answer was a boot the authority
   * counts as denied (StepResult.bootDenied: the DMZ client's failure
   * `driver.boot-denied` and the authority's own denial of that boot): the
   * VM, left in its failure state because its driver could not delete it, is
   * not booted again (deniedVm). Cleared by the next answer about the VM; a
   * read keeps it.
   */
  bootDenied?: boolean;
}

/**
 * Under Pulumi: a VM whose boot the authority denied (VmOutputs.bootDenied),
 * still in its data center (a cloud id) and in a failure state. Booting it
 * again along the recovery edges would give the VM the authority refused
 * (the same disk) a fresh boot token: it is deleted and created again, as
 * `fleet plan` plans it (docs/recovery.md, "A denied VM its data center
 * still holds"). The Vm's diff answers a replace (the old VM deleted first);
 * the Fleet's planner reads bootDenied from its members.
 */
export function deniedVm(lifecycle: Pick<LifecycleDef, 'failure'>, vm: Pick<VmOutputs, 'bootDenied' | 'cloudId' | 'state'>): boolean {
  return vm.bootDenied === true && vm.cloudId != null && (lifecycle.failure ?? []).includes(vm.state);
}

/**
 * Under Pulumi: a VM an earlier call committed to deletion and did not finish
 * deleting (BeingDeleted in the default pack: no requestable state is
 * reachable from it), e.g. a create whose boot the authority denied and whose
 * clean-up's deleteVm the data center refused, answered as a partial
 * resource. Walking on to the desired state has no path, so the Vm's diff
 * answers a replace (old VM first: its delete finishes the way down), as
 * `fleet plan` recreates such a member (engine/plan/member-changes.ts
 * committedToDeletion). Not a failure state (those have their recovery
 * edges) nor a terminal one.
 */
export function deletingVm(lc: Lifecycle, state: string): boolean {
  return !lc.isTerminal(state) && !lc.failure.includes(state) && commitsToDeletion(lc, state);
}

/** The DMZ client calls a provider makes (DmzHttpClient has them all). */
export interface DmzConnection {
  run(steps: readonly BatchStep[], onStep: (k: number, result: StepResult) => void, opts?: { lane?: RunLane }): Promise<void>;
  getVm(vmId: string): Promise<ActualVm | undefined>;
  listVms(): Promise<ActualVm[]>;
  /** True when runs carry their lane to the DMZ client (DmzHttpClient.lanes). */
  readonly lanes?: boolean;
  /** fleet apply's admin-token check through the DMZ client (DmzHttpClient.adminCheck; providers/admin-check.ts). */
  adminCheck?(body: AdminCheckRequest): Promise<AdminCheckAnswer>;
}

/**
 * fleet apply's hooks for one create/update/delete: the plan's steps for
 * this VM and the executor's keys. Requests are numbered from 0: a create's
 * request to insert the VM is 0, its steps follow.
 */
export interface PlannedCall {
  planId: string;
  /** The plan's steps for this VM, in order (engine/model's Step). */
  steps: readonly Step[];
  /** Idempotency key of request k. */
  key(k: number): string;
  /** Each request's answer, in order, as it comes. */
  onStep(k: number, result: StepResult): void;
  /** The apply's lane (only with a connection that has lanes). */
  lane?: RunLane;
  /** create: the VM id to propose (derived from plan and address, so a re-sent create proposes the same VM). */
  vmId?: string;
  /** create: the live VM this one replaces (create-before-delete); it is deposed when this one is inserted. */
  replaces?: string;
  /** The apply's lock's fencing token: every request carries it (the authority refuses it once a newer lock exists). */
  fencingToken?: number;
  /** delete: the override the plan carries for this VM's fleet (--allow-destroy), sent with each of its requests. */
  override?: Override;
}

/** The provider calls fleet apply makes: what the executor may hold (the test's recording provider implements the same). */
export interface MemberProvider {
  readonly dataCenter: string;
  /** Whether the DMZ client holds runs in the apply's lane (then the executor may send it more members than its parallelism). */
  readonly lanes: boolean;
  create(inputs: VmInputs, planned?: PlannedCall): Promise<pulumi.dynamic.CreateResult<VmOutputs>>;
  update(id: string, olds: VmOutputs, news: VmInputs, planned?: PlannedCall): Promise<pulumi.dynamic.UpdateResult<VmOutputs>>;
  delete(id: string, props: VmOutputs, planned?: PlannedCall): Promise<void>;
}

export interface DataCenterProviderOptions {
  dataCenter: string;
  /** Base URL of the DMZ client. */
  url: string;
  /** Name of the environment variable holding the bearer token. */
  tokenEnv: string;
  /** The pack's lifecycle as plain data (lifecycleData(pack.lifecycle)). */
  lifecycle: LifecycleDef;
  timeoutMs?: number;
  retries?: number;
}

/** The pack's lifecycle as the plain data a provider keeps (and Pulumi serializes). */
export function lifecycleData(lc: Lifecycle): LifecycleDef {
  return {
    states: [...lc.states],
    initial: lc.initial,
    terminal: [...lc.terminal],
    requestable: [...lc.requestable],
    failure: [...lc.failure],
    transitions: lc.edges.map((e) => ({ from: e.from, to: e.to, operation: e.operation })),
  };
}

/** What Pulumi's dynamic-provider host passes to check for a value not known yet (a preview of an input computed from another resource). */
export const PULUMI_UNKNOWN = '04da6b54-80e4-46f7-96ec-b56ff0331ba9';

/** Why a program may not change an existing fleet's owner (Fleet and Vm check). */
export function ownerChange(fleet: string, was: string, now: string): string {
  const [f, w, n] = [visible(fleet), visible(was), visible(now)];
  return `owner ${n}: the owner of fleet ${f} is ${w} in the record, which keeps a fleet's owner (quotas count it) and lets only \`fleet apply\` change it, so its members would keep ${w} and every new member's create be vetoed. Keep owner ${w} in the program, or make a fleet of another name under ${n} and retire this one.`;
}

/**
 * A fleet file's limits (specs/schema/fleet.schema.json) that the Fleet's and
 * the Vm's check hold a program to; the protocol's (protocol/schemas) for
 * what a fleet file does not have. Change them with the schema.
 */
export const SPEC_LIMITS = {
  /** spec.count; a member's index is below it. */
  count: 100_000,
  /** metadata.owner, a label's key and value, and how many labels (code points, as ajv counts them). */
  owner: 64,
  labelKey: 63,
  labelValue: 256,
  labels: 64,
  /** A name the protocol carries (an image, a plan id, a manager: protocol/schemas/common.ts `name`, `planId`). */
  protocolName: 200,
} as const;

/** Why `name` is not a fleet name (a fleet file's metadata.name), or undefined; `what` names it in the reason. */
export function fleetNameProblem(name: string, what = 'name'): string | undefined {
  // The pattern inside the function: a serialized provider carries the function's text, not a captured RegExp.
  if (/^[a-z][a-z0-9-]{0,39}$/.test(name)) return undefined;
  return `${what} ${visible(name)} must be lower-case letters, digits and dashes, starting with a letter, at most 40 characters (members are addressed <name>/<index>)`;
}

/** Why `z` is not a size a fleet file takes (spec.size: its keys, integer cpu and disk, the ranges), or undefined. */
export function sizeProblem(z: unknown): string | undefined {
  const reason = 'size needs an integer cpu from 1 to 256, memoryGiB from 0.5 to 4096 and an integer diskGiB from 1 to 65536';
  if (z === null || typeof z !== 'object' || Array.isArray(z)) return reason;
  const v = z as Record<string, unknown>;
  const extra = Object.keys(v).filter((k) => k !== 'cpu' && k !== 'memoryGiB' && k !== 'diskGiB');
  if (extra.length > 0) return `${clip(extra[0])} is not a key of size; its keys are cpu, memoryGiB, diskGiB`;
  const inRange = (x: unknown, lo: number, hi: number, integer: boolean) => typeof x === 'number' && x >= lo && x <= hi && (!integer || Number.isInteger(x));
  return inRange(v.cpu, 1, 256, true) && inRange(v.memoryGiB, 0.5, 4096, false) && inRange(v.diskGiB, 1, 65536, true) ? undefined : reason;
}

/** Why a token input cannot be one (Vm's token, a Fleet's tokens entry), never quoting it; undefined when it can. */
export function tokenProblem(token: unknown): string | undefined {
  if (typeof token !== 'string') return `must be a string, the DMZ client's bearer token (it is ${token === null ? 'null' : typeof token})`;
  const bad = unsendableTokenChar(token);
  return bad ? `holds ${bad}, a character an HTTP header cannot carry (a line end read with the token from a file?): set it to the token alone` : undefined;
}

/** Inputs that name the member itself: a change is a different member, so a new VM (the planner never sees one: it keys members by address). */
const IDENTITY_KEYS = ['stack', 'fleet', 'index', 'name'] as const;

/** Where a walk ended. */
interface Walked {
  /** The last answer (ok or not). */
  last?: StepResult;
  /** Requests answered. */
  answered: number;
  /** The VM's state after the walk, as far as known. */
  state: string;
  /** Set when a step was not ok, or the run threw (`thrown`: what it threw, rethrown as it is under fleet apply). */
  error?: FleetError;
  thrown?: unknown;
}

export class DataCenterProvider implements pulumi.dynamic.ResourceProvider<VmInputs, VmOutputs>, MemberProvider {
  readonly dataCenter: string;
  readonly url: string;
  readonly tokenEnv: string;
  readonly lifecycle: LifecycleDef;
  readonly timeoutMs: number;
  readonly retries: number;

  constructor(o: DataCenterProviderOptions) {
    this.dataCenter = o.dataCenter;
    this.url = o.url;
    this.tokenEnv = o.tokenEnv;
    this.lifecycle = {
      states: [...o.lifecycle.states],
      initial: o.lifecycle.initial,
      terminal: [...o.lifecycle.terminal],
      requestable: [...o.lifecycle.requestable],
      failure: [...(o.lifecycle.failure ?? [])],
      transitions: o.lifecycle.transitions.map((t) => ({ from: t.from, to: t.to, ...(t.operation !== undefined ? { operation: t.operation } : {}) })),
    };
    this.timeoutMs = o.timeoutMs ?? 120_000;
    this.retries = o.retries ?? 5;
  }

  get lanes(): boolean {
    return false;
  }

  /** A connection for this call; the token is looked up now, never stored. */
  connect(): DmzConnection {
    const env = this.tokenEnv;
    const dc = this.dataCenter;
    return new DmzHttpClient({
      dataCenter: dc,
      baseUrl: this.url,
      timeoutMs: this.timeoutMs,
      retries: this.retries,
      tokenEnv: env,
      token: () => {
        const t = process.env[env];
        if (!t) throw new FleetError(diag('apply.token-missing', `Set ${clip(env)} to the bearer token of the DMZ client of data center ${clip(dc)}.`));
        return t;
      },
    });
  }

  /** The engine's Lifecycle over the plain data (the planner's path and operations). */
  private lc(): Lifecycle {
    return buildLifecycle(this.lifecycle);
  }

  /**
   * Under Pulumi only. A value the program computes from another resource is
   * not known in a preview (the host passes PULUMI_UNKNOWN): it is judged
   * once known, in the check before the create or update.
   */
  async check(olds: VmInputs, news: VmInputs): Promise<pulumi.dynamic.CheckResult<VmInputs>> {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    const known = (...vs: unknown[]) => vs.every((v) => v !== PULUMI_UNKNOWN);
    // An existing VM's fleet keeps its owner in the record (only `fleet apply` writes it).
    if (olds && olds.stack === news.stack && olds.fleet === news.fleet && typeof olds.owner === 'string' && typeof news.owner === 'string' && known(news.owner) && olds.owner !== news.owner) {
      failures.push({ property: 'owner', reason: ownerChange(news.fleet, olds.owner, news.owner) });
    }
    const text = (v: unknown): v is string => typeof v === 'string' && v !== '' && known(v);
    for (const k of ['stack', 'fleet', 'owner', 'name', 'image', 'desiredState', 'specHash'] as const) {
      if (typeof news[k] !== 'string' || news[k] === '') failures.push({ property: k, reason: `${k} must be a non-empty string` });
    }
    // The member's identity, as a fleet file names it: the authority and the record take any string up to 200 characters.
    const fleetProblem = text(news.fleet) ? fleetNameProblem(news.fleet, 'fleet') : undefined;
    if (fleetProblem) failures.push({ property: 'fleet', reason: fleetProblem });
    // As the authority judges a create (engine/authority/decisions.ts): an owner is matched exactly (quota limits).
    const unreadable = text(news.owner) ? unseenProblem(news.owner) : undefined;
    if (unreadable) failures.push({ property: 'owner', reason: `owner ${visible(news.owner)} ${unreadable.why}: owners are matched exactly (quota limits) and this one would read as another; ${unreadable.fix.toLowerCase()}` });
    if (text(news.owner) && [...news.owner].length > SPEC_LIMITS.owner) {
      failures.push({ property: 'owner', reason: `owner must be at most ${SPEC_LIMITS.owner} characters (it is ${[...news.owner].length}): it is matched exactly against quota limits and kept with every VM in the record` });
    }
    for (const k of ['image', 'desiredState'] as const) {
      const v = news[k];
      if (!text(v)) continue;
      const problem = unseenProblem(v);
      if (problem) failures.push({ property: k, reason: `${k} ${visible(v)} ${problem.why}; ${problem.fix.toLowerCase()}` });
      else if (v.length > SPEC_LIMITS.protocolName) failures.push({ property: k, reason: `${k} must be at most ${SPEC_LIMITS.protocolName} characters (it is ${v.length})` });
    }
    if (!Number.isInteger(news.index) || news.index < 0 || news.index >= SPEC_LIMITS.count) {
      failures.push({ property: 'index', reason: `index must be an integer from 0 to ${SPEC_LIMITS.count - 1} (a member of a fleet of at most ${SPEC_LIMITS.count})` });
    } else if (text(news.stack) && text(news.fleet) && text(news.name) && news.name !== `${news.stack}-${news.fleet}-${news.index}`) {
      failures.push({ property: 'name', reason: `name ${visible(news.name)} must be the member's, ${visible(`${news.stack}-${news.fleet}-${news.index}`)} (<stack>-<fleet>-<index>, as fleet plan names it)` });
    }
    const s = news.size as unknown as Record<string, unknown> | null | undefined;
    if (known(s) && (s === null || typeof s !== 'object' || known(s.cpu, s.memoryGiB, s.diskGiB))) {
      const problem = sizeProblem(s);
      if (problem) failures.push({ property: 'size', reason: problem });
    }
    if (typeof news.encryptedDisk !== 'boolean' && known(news.encryptedDisk)) failures.push({ property: 'encryptedDisk', reason: 'encryptedDisk must be a boolean' });
    if (news.planId != null && known(news.planId) && (typeof news.planId !== 'string' || news.planId.length > SPEC_LIMITS.protocolName)) {
      failures.push({ property: 'planId', reason: `planId must be a string of at most ${SPEC_LIMITS.protocolName} characters, or left out` });
    }
    if (news.managedBy !== undefined && known(news.managedBy) && (typeof news.managedBy !== 'string' || news.managedBy === '' || news.managedBy.length > SPEC_LIMITS.protocolName)) {
      failures.push({ property: 'managedBy', reason: `managedBy must be a non-empty string of at most ${SPEC_LIMITS.protocolName} characters (the Vm resource sets it: pulumi:<project>/<stack>)` });
    }
    // As a spec (spec.state-not-requestable): only a requestable state. A terminal one would create a VM and delete it
    // again under a resource Pulumi then believes exists; an intermediate one (PoweredOn, Starting) would park it there.
    if (!known(news.desiredState)) {
      /* judged when known */
    } else if (typeof news.desiredState === 'string' && news.desiredState !== '' && !this.lifecycle.requestable.includes(news.desiredState)) {
      failures.push({ property: 'desiredState', reason: `${visible(news.desiredState)} is not a state a VM may ask for; ask for ${this.lifecycle.requestable.join(' or ')}` });
    } else if (typeof news.desiredState === 'string' && news.desiredState !== '' && !this.lc().path(this.lifecycle.initial, news.desiredState)) {
      failures.push({ property: 'desiredState', reason: `${visible(news.desiredState)} cannot be reached from ${this.lifecycle.initial}` });
    }
    return { inputs: news, failures };
  }

  /**
   * The planner's classification (engine/plan/member.ts), plus the member's
   * identity and owner. A VM whose boot the authority denied, still in its
   * data center (deniedVm), is replaced (`bootDenied`), its old VM deleted
   * first: Pulumi then deletes it along the recovery edges and creates the
   * VM again, as `fleet apply` does, instead of an update that would boot it
   * again.
   */
  async diff(_id: string, olds: VmOutputs, news: VmInputs): Promise<pulumi.dynamic.DiffResult> {
    const { action, diff } = classifyMember(olds, { ...news, state: news.desiredState });
    const denied = deniedVm(this.lifecycle, olds);
    const deleting = typeof olds.state === 'string' && deletingVm(this.lc(), olds.state);
    // Pulumi's host diffs with the provider the program now gives (another data center's, when VmArgs.dataCenter
    // changed) against the outputs: a VM does not move, it is deleted where it is (through the provider in the state)
    // and created in this data center.
    const moved = this.movedFrom(olds);
    // Replaces name inputs: a hardware change is one of the hash (the Vm has no hardware input; VmArgs.hardware goes into specHash).
    const replaces = [
      ...IDENTITY_KEYS.filter((k) => olds[k] !== news[k]),
      ...REPLACE_FIELDS.filter((k) => k in diff).map((k) => (k === 'hardware' ? 'specHash' : k)),
      ...(denied ? ['bootDenied'] : []),
      ...(deleting ? ['state'] : []),
      ...(moved ? ['dataCenter'] : []),
    ];
    const changed = replaces.length > 0 || action !== 'noop' || olds.owner !== news.owner;
    return { changes: changed, replaces, deleteBeforeReplace: denied || deleting || moved || (news.replaceOrder ?? 'delete-before-create') === 'delete-before-create' };
  }

  /** Under Pulumi: whether outputs of a VM in another data center reached this one's provider (the program moved the VM). */
  private movedFrom(olds: Pick<VmOutputs, 'dataCenter'>): boolean {
    return typeof olds.dataCenter === 'string' && olds.dataCenter !== this.dataCenter;
  }

  /** A plan step as the request that carries it out. */
  private request(vmId: string, step: Step, idempotencyKey: string, planId: string | null, inputs: VmInputs, fencingToken?: number, override?: Override): BatchStep {
    const edge = { idempotencyKey, planId, ...(fencingToken !== undefined ? { fencingToken } : {}), from: step.from, to: step.to, ...(override ? { override } : {}) };
    if (step.operation === 'resize') return { op: 'transition', vmId, body: { ...edge, operation: 'resize', size: inputs.size } };
    if (step.operation === 'deleteVm') return { op: 'delete', vmId, body: edge };
    return { op: 'transition', vmId, body: edge };
  }

  private createRequest(vmId: string, inputs: VmInputs, idempotencyKey: string, planId: string | null, replaces: string | undefined, fencingToken?: number): BatchStep {
    const { planId: _p, replaceOrder: _r, ...vm } = inputs;
    return { op: 'create', body: { idempotencyKey, planId, ...(fencingToken !== undefined ? { fencingToken } : {}), vm: { id: vmId, ...vm, ...(replaces ? { replaces } : {}) } } };
  }

  /**
   * Sends the requests as one run and follows the answers: where the VM is,
   * and the error of the first step that is not ok. A request the DMZ client
   * rejects (or cannot be reached for) ends the walk with `thrown`.
   */
  private async run(conn: DmzConnection, requests: readonly BatchStep[], start: string, planned: PlannedCall | undefined, what: (k: number) => string): Promise<Walked> {
    const walked: Walked = { state: start, answered: 0 };
    try {
      await this.follow(conn, requests, walked, planned, what);
    } catch (err) {
      walked.thrown = err;
      walked.error = err instanceof FleetError ? err : new FleetError(diag('apply.step-failed', `${what(walked.answered)} in ${clip(this.dataCenter)}: ${clip(err instanceof Error ? err.message : String(err), REASON_LIMIT)}`));
    }
    return walked;
  }

  private async follow(conn: DmzConnection, requests: readonly BatchStep[], walked: Walked, planned: PlannedCall | undefined, what: (k: number) => string): Promise<void> {
    await conn.run(
      requests,
      (k, r) => {
        walked.last = r;
        walked.answered = k + 1;
        if (r.outcome === 'ok') {
          const req = requests[k];
          walked.state = r.vm?.state ?? (req.op === 'create' ? this.lifecycle.initial : req.body.to ?? walked.state);
        } else {
          walked.state = r.vm?.state ?? walked.state;
          walked.error = this.stepError(r, what(k));
        }
        planned?.onStep(k, r);
      },
      planned?.lane ? { lane: planned.lane } : {},
    );
  }

  /**
   * Under Pulumi only: the way out when a walk failed because the record and
   * the data center disagree about a VM after a change made outside the
   * program (a VM deleted, stopped or started in the cloud's console). A
   * `pulumi refresh` sees such a change, but only `fleet refresh` records it
   * (a Pulumi program never writes the record), so until then every create,
   * update or destroy of the VM is refused or fails. `assumed` is the state
   * the walk started from (the Pulumi state's); `address` the member's.
   */
  private outsideChange(w: Walked, assumed: string, address: string): void {
    const r = w.last;
    if (!w.error || w.thrown || !r) return;
    const dc = clip(this.dataCenter);
    const member = clip(address);
    const then = 'run `fleet refresh` on the stack (with the stack folder and the record, as `fleet apply` runs), which records the change; then run this again';
    let detail: string | undefined;
    if (r.outcome === 'failed' && r.error?.code === 'driver.not-found') {
      detail = `VM ${member} is gone from data center ${dc} (deleted outside the program), but the record still holds it ${clip(r.vm?.state ?? assumed)}: ${then} (a destroy then finds it deleted, \`pulumi up\` creates it again).`;
    } else if (r.outcome === 'vetoed' && w.answered === 1 && r.vm && r.vm.state !== assumed) {
      detail = `The record holds ${member} ${clip(r.vm.state)}, the Pulumi state ${clip(assumed)}: if \`pulumi refresh\` read that from data center ${dc} after a change made outside the program (a VM stopped or started in the cloud), ${then}.`;
    } else if (r.outcome === 'vetoed' && w.answered === 1 && r.vm === undefined && / already has a live VM/.test(r.reason)) {
      detail = `If \`pulumi refresh\` dropped ${member} from the Pulumi state because it was deleted outside the program, the record still holds it live: ${then}.`;
    }
    if (detail) w.error = new FleetError([...w.error.diagnostics, diag(r.outcome === 'vetoed' ? 'apply.step-vetoed' : 'apply.step-failed', detail, { address })]);
  }

  /** Under fleet apply a failed walk throws what the run threw, else the step's error. */
  private fail(w: Walked): never {
    throw w.thrown ?? w.error;
  }

  private stepError(r: StepResult, what: string): FleetError {
    const where = r.vm ? { address: r.vm.address } : {};
    // The authority's reason and the cloud's message come from the data center's side: escaped and cut (REASON_LIMIT),
    // as Pulumi shows an error's message as it is, line breaks and all.
    if (r.outcome === 'vetoed') return new FleetError(diag('apply.step-vetoed', `${what} in ${clip(this.dataCenter)}: ${clip(r.reason, REASON_LIMIT)}.`, where));
    return new FleetError(diag('apply.step-failed', `${what} in ${clip(this.dataCenter)}: ${clip(r.error?.message ?? r.reason, REASON_LIMIT)}; the VM is now ${r.vm?.state === undefined ? 'unknown' : clip(r.vm.state)}.`, where));
  }

  private path(lc: Lifecycle, from: string, to: string): string[] {
    const p = lc.path(from, to);
    if (!p) throw new FleetError(diag('apply.step-vetoed', `No path of lifecycle edges leads from ${clip(from)} to ${clip(to)}.`));
    return p;
  }

  private outputs(vmId: string, inputs: VmInputs, r: StepResult | undefined, prev?: VmOutputs): VmOutputs {
    const { bootDenied: _was, ...vm } = inputs as VmInputs & { bootDenied?: boolean };
    const out: VmOutputs = {
      ...vm,
      planId: inputs.planId ?? null,
      vmId,
      dataCenter: this.dataCenter,
      state: r?.vm?.state ?? prev?.state ?? this.lifecycle.initial,
      cloudId: r?.vm?.cloudId ?? prev?.cloudId ?? null,
      realImage: r?.vm?.realImage ?? prev?.realImage ?? null,
      version: r?.vm?.version ?? prev?.version ?? 0,
    };
    // The last answer says whether the VM's boot is denied; without one, the outputs before it do.
    return (r ? r.bootDenied === true : prev?.bootDenied === true) ? { ...out, bootDenied: true } : out;
  }

  /** Random keys for a call Pulumi makes (a retried Pulumi call is a new call). */
  private randomKeys(): (k: number) => string {
    return () => globalThis.crypto.randomUUID();
  }

  async create(inputs: VmInputs, planned?: PlannedCall): Promise<pulumi.dynamic.CreateResult<VmOutputs>> {
    const conn = this.connect();
    const vmId = planned?.vmId ?? globalThis.crypto.randomUUID();
    const planId = planned?.planId ?? inputs.planId ?? null;
    const lc = planned ? undefined : this.lc();
    const steps = planned?.steps ?? stepsAlong(lc!, this.path(lc!, this.lifecycle.initial, inputs.desiredState), 'current');
    const key = planned?.key ?? this.randomKeys();
    const fence = planned?.fencingToken;
    const requests = [this.createRequest(vmId, inputs, key(0), planId, planned?.replaces, fence), ...steps.map((s, i) => this.request(vmId, s, key(i + 1), planId, inputs, fence))];
    const label = (k: number) => (k === 0 ? `create ${clip(formatVmAddress(inputs.fleet, inputs.index))}` : `${steps[k - 1].from} -> ${steps[k - 1].to}`);
    const w = await this.run(conn, requests, this.lifecycle.initial, planned, label);
    if (!w.error) return { id: vmId, outs: this.outputs(vmId, inputs, w.last) };
    // fleet apply, whose record keeps the VM, or nothing was inserted (the create itself did not go through): the error as it is.
    if (!planned) this.outsideChange(w, this.lifecycle.initial, formatVmAddress(inputs.fleet, inputs.index));
    if (planned || w.answered === 0 || (w.answered === 1 && w.last?.outcome !== 'ok')) this.fail(w);
    // Pulumi: leave nothing created. Walk the VM from where it stopped to a terminal state, then fail.
    let cleanup: Walked;
    try {
      const down = deletePath(lc!, w.state);
      if (!down) throw new FleetError(diag('apply.step-vetoed', `No path of lifecycle edges leads from ${clip(w.state)} to a terminal state.`));
      const downSteps = stepsAlong(lc!, down, 'current');
      cleanup = await this.run(conn, downSteps.map((s) => this.request(vmId, s, globalThis.crypto.randomUUID(), planId, inputs)), w.state, undefined, (k) => `${downSteps[k].from} -> ${downSteps[k].to}`);
    } catch (err) {
      cleanup = { state: w.state, answered: 0, error: err instanceof FleetError ? err : new FleetError(diag('apply.step-failed', clip(String(err), REASON_LIMIT))) };
    }
    if (cleanup.error) {
      const err = new FleetError([
        ...w.error.diagnostics,
        diag('apply.step-failed', `Cleaning up VM ${vmId} after the failed create failed too; it may still exist in ${clip(this.dataCenter)} (${clip(cleanup.state)}): ${cleanup.error.message}`, {
          address: formatVmAddress(inputs.fleet, inputs.index),
        }),
      ]);
      // The VM still exists: answered as Pulumi's partial resource ("created but failed to initialize"), so the state keeps it
      // (where the clean-up left it) and the next update or destroy reaches it, instead of a VM no state knows.
      const properties: VmOutputs = { ...this.outputs(vmId, inputs, cleanup.last ?? w.last), state: cleanup.state };
      throw Object.assign(err, { id: vmId, properties, reasons: err.diagnostics.map((d) => `${d.summary}: ${d.detail}`) });
    }
    this.fail(w);
  }

  /**
   * A VM's outputs are what its create left in the Pulumi state (its spec,
   * hash and record version as the program made them); the DMZ client's
   * listing has none of that. A read without them (`pulumi import`, the
   * import option, a state that lost them) is refused, as FleetProvider's
   * is, instead of answering a bare id that the next diff cannot compare.
   */
  async read(id: string, props?: VmOutputs): Promise<pulumi.dynamic.ReadResult<VmOutputs>> {
    if (!props || typeof props.state !== 'string' || typeof props.dataCenter !== 'string' || typeof props.fleet !== 'string') {
      throw new FleetError(
        diag(
          'apply.import-refused',
          `VM ${clip(id)} cannot be read without the outputs its create left in the Pulumi state, so a VM cannot be imported (\`pulumi import\` or the import option). Declare it in the program and let \`pulumi up\` create it; a VM that \`fleet apply\` made stays managed by \`fleet apply\`.`,
        ),
      );
    }
    const actual = await this.connect().getVm(id);
    if (!actual || actual.status === 'terminated') return {};
    // A VM whose boot the authority denied keeps its failure state, and one committed to deletion keeps that state
    // (deletingVm): its cloud shows it as any VM (powered off), the record holds it there until its delete (fleet
    // refresh records no way back), and its next diff replaces it rather than boot it again or walk from a state the
    // record does not hold.
    const state = deniedVm(this.lifecycle, props) || deletingVm(this.lc(), props.state) ? props.state : actual.observedState;
    return { id, props: { ...props, state, cloudId: actual.cloudId, size: actual.size } };
  }

  /** In place: a resize (planned at the resize state, engine/plan/member.ts) when the size changes, then on to the desired state. */
  async update(id: string, olds: VmOutputs, news: VmInputs, planned?: PlannedCall): Promise<pulumi.dynamic.UpdateResult<VmOutputs>> {
    let steps = planned?.steps;
    // Pulumi: diff replaces a VM whose boot was denied; an update all the same would boot it again. Nothing is sent.
    if (!planned && deniedVm(this.lifecycle, olds)) {
      throw new FleetError(
        diag(
          'apply.step-vetoed',
          `The authority denied the boot of ${clip(formatVmAddress(olds.fleet, olds.index))} (VM ${clip(String(olds.cloudId))}, which ${clip(this.dataCenter)} still holds, powered off, in ${clip(olds.state)}), so it is not booted again: it is deleted and created again, which its diff asks of Pulumi as a replace (\`bootDenied\`). Run \`pulumi up\` again, or \`pulumi up --replace\` with the resource's URN; nothing was changed.`,
          { address: formatVmAddress(olds.fleet, olds.index) },
        ),
      );
    }
    // Pulumi: diff replaces a VM the program moved to this data center; this data center does not hold it. Nothing is sent.
    if (!planned && this.movedFrom(olds)) {
      throw new FleetError(
        diag(
          'apply.step-vetoed',
          `${clip(formatVmAddress(olds.fleet, olds.index))} is in data center ${clip(olds.dataCenter)} (VM ${clip(olds.vmId)}), and the program now puts it in ${clip(this.dataCenter)}: a VM does not move between data centers, it is deleted in ${clip(olds.dataCenter)} and created in ${clip(this.dataCenter)}, which its diff asks of Pulumi as a replace (\`dataCenter\`). Run \`pulumi up\` again, or \`pulumi up --replace\` with the resource's URN; nothing was changed.`,
          { address: formatVmAddress(olds.fleet, olds.index) },
        ),
      );
    }
    // Pulumi: diff replaces a VM committed to deletion; nothing leads from its state to the desired one. Nothing is sent.
    if (!planned && deletingVm(this.lc(), olds.state)) {
      throw new FleetError(
        diag(
          'apply.step-vetoed',
          `${formatVmAddress(olds.fleet, olds.index)} (VM ${olds.vmId} in ${this.dataCenter}) is ${olds.state}: an earlier call began deleting it and did not finish (its data center refused or failed the delete), and nothing leads from ${olds.state} to ${news.desiredState}. It is deleted and created again, which its diff asks of Pulumi as a replace (\`state\`). Run \`pulumi up\` again, or \`pulumi up --replace\` with the resource's URN; nothing was changed.`,
          { address: formatVmAddress(olds.fleet, olds.index) },
        ),
      );
    }
    if (!steps) {
      const lc = this.lc();
      if (sameSize(olds.size, news.size)) steps = stepsAlong(lc, this.path(lc, olds.state, news.desiredState), 'current');
      else {
        const r = resizeSteps(lc, olds.state, news.desiredState);
        if ('missing' in r) throw new FleetError(diag('apply.step-vetoed', `No path of lifecycle edges leads from ${clip(r.missing.from)} to ${clip(r.missing.to)}.`));
        steps = r.steps;
      }
    }
    const walkSteps = steps;
    const key = planned?.key ?? this.randomKeys();
    const planId = planned?.planId ?? news.planId ?? null;
    const w = await this.run(this.connect(), walkSteps.map((s, k) => this.request(id, s, key(k), planId, news, planned?.fencingToken)), olds.state, planned, (k) =>
      walkSteps[k].operation === 'resize' ? 'resize' : `${walkSteps[k].from} -> ${walkSteps[k].to}`,
    );
    if (!planned) this.outsideChange(w, olds.state, formatVmAddress(olds.fleet, olds.index));
    if (w.error) {
      // Pulumi: the VM moved before the failure (steps answered ok). Pulumi keeps a failed update's old outputs, whose
      // state the record no longer holds, so every later update (and destroy) started from a state the authority
      // refuses. The error carries the VM as it is now, as Pulumi's partial resource, so the state matches the record.
      const okSteps = w.last && w.last.outcome !== 'ok' ? w.answered - 1 : w.answered;
      if (planned || okSteps <= 0) this.fail(w);
      const resizeAt = walkSteps.findIndex((s) => s.operation === 'resize');
      const now = resizeAt >= 0 && okSteps <= resizeAt ? { ...news, size: olds.size, specHash: olds.specHash } : news;
      const properties: VmOutputs = { ...this.outputs(id, now, w.last, olds), state: w.state };
      const err = w.error;
      throw Object.assign(err, { id, properties, reasons: err.diagnostics.map((d) => `${d.summary}: ${d.detail}`) });
    }
    return { outs: this.outputs(id, news, w.last, olds) };
  }

  /**
   * Along the shortest path to a terminal state (the planner's delete path). If a step fails the VM still exists; the error names the step and the state it is in.
   *
   * Called by Pulumi (no `planned`), the outputs may be behind the record: a
   * VM deleted already (by an earlier delete that failed on another member
   * of a Fleet, or outside the program) is gone, which is what delete asks,
   * so it succeeds; a VM the record holds in another state than the outputs
   * say is walked down from that state instead (once). Under fleet apply the
   * plan's steps are carried out exactly, and a veto is the error.
   */
  async delete(id: string, props: VmOutputs, planned?: PlannedCall): Promise<void> {
    const conn = this.connect();
    const walk = async (from: string): Promise<Walked> => {
      let steps = planned?.steps;
      if (!steps) {
        const lc = this.lc();
        if (lc.isTerminal(from)) return { state: from, answered: 0 };
        const down = deletePath(lc, from);
        if (!down) throw new FleetError(diag('apply.step-vetoed', `No path of lifecycle edges leads from ${clip(from)} to a terminal state.`));
        steps = stepsAlong(lc, down, 'current');
      }
      const walkSteps = steps;
      const key = planned?.key ?? this.randomKeys();
      const planId = planned?.planId ?? props.planId ?? null;
      return this.run(
        conn,
        walkSteps.map((s, k) => this.request(id, s, key(k), planId, props, planned?.fencingToken, planned?.override)),
        from,
        planned,
        (k) => `${walkSteps[k].from} -> ${walkSteps[k].to}`,
      );
    };
    let w = await walk(props.state);
    // Pulumi only: the first step was vetoed on a record that has the VM elsewhere (a veto answers the VM as the record holds it).
    const moved = (x: Walked) => !planned && x.error && !x.thrown && x.last?.outcome === 'vetoed' && x.answered === 1 && x.last.vm !== undefined && x.last.vm.state !== props.state;
    if (moved(w)) w = await walk((w.last?.vm as NonNullable<StepResult['vm']>).state);
    // Pulumi only: the authority knows no such VM (a veto answers no VM: a record reset, or restored from before the
    // VM was made). Deleted it is, unless its data center still has it: then the error says so, and how to go on.
    if (!planned && w.error && !w.thrown && w.last?.outcome === 'vetoed' && w.answered === 1 && w.last.vm === undefined) {
      const cloud = await conn.getVm(id);
      if (!cloud || cloud.status === 'terminated') return;
      throw new FleetError([
        ...w.error.diagnostics,
        diag(
          'apply.step-vetoed',
          `VM ${clip(id)} is not in the record, but data center ${clip(this.dataCenter)} still has it (cloud id ${clip(cloud.cloudId)}, ${clip(cloud.observedState)}): nothing approves its deletion. Delete it in the cloud (the DMZ client acts only on approved requests), then run the destroy again: it finds the VM gone and finishes.`,
          { address: formatVmAddress(props.fleet, props.index) },
        ),
      ]);
    }
    if (!planned) this.outsideChange(w, props.state, formatVmAddress(props.fleet, props.index));
    if (w.error) this.fail(w);
  }

  /** What the data center's cloud holds of one VM, by VM id (undefined: nothing). */
  getVm(vmId: string): Promise<ActualVm | undefined> {
    return this.connect().getVm(vmId);
  }

  /** What the data center's cloud holds (fleet refresh). */
  listVms(): Promise<ActualVm[]> {
    return this.connect().listVms();
  }
}

/**
 * fleet apply's provider: a DataCenterProvider over one long-lived
 * connection (the apply's batch client). It holds that connection (and so a
 * token source and sockets): never hand it to Pulumi; build a
 * DataCenterProvider for that.
 */
export class ConnectedProvider extends DataCenterProvider {
  readonly #connection: DmzConnection;

  constructor(o: DataCenterProviderOptions, connection: DmzConnection) {
    super(o);
    this.#connection = connection;
  }

  override get lanes(): boolean {
    return this.#connection.lanes === true;
  }

  override connect(): DmzConnection {
    return this.#connection;
  }
}

/**
 * fleet apply's providers: one per data center, each over its own batch
 * client to the DMZ client at `url` (steps in flight share requests,
 * docs/protocol.md "Batches"). `token` is called per request, so a token held
 * in memory (embedded data centers) never sits in the environment.
 */
export function connectProvider(o: {
  dataCenter: string;
  url: string;
  token: () => string | Promise<string>;
  lifecycle: Lifecycle;
  /** The variable a Pulumi program would read the token from (kept as plain data). */
  tokenEnv?: string;
  timeoutMs?: number;
  /** How long one request's retries may pause in all (DmzHttpClientOptions.retryBudgetMs; default 60 s). */
  retryBudgetMs?: number;
  /** CA bundle and client certificate for an https DMZ client (engine/transport's loadClientTls); held by the connection only. */
  tls?: ClientTls;
}): ConnectedProvider {
  const client = new DmzHttpClient({
    dataCenter: o.dataCenter,
    baseUrl: o.url,
    token: o.token,
    ...(o.tokenEnv ? { tokenEnv: o.tokenEnv } : {}),
    batch: true,
    ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
    ...(o.retryBudgetMs !== undefined ? { retryBudgetMs: o.retryBudgetMs } : {}),
    ...(o.tls ? { tls: o.tls } : {}),
  });
  return new ConnectedProvider({ dataCenter: o.dataCenter, url: o.url, tokenEnv: o.tokenEnv ?? '', lifecycle: lifecycleData(o.lifecycle) }, client);
}

/** Builds one provider per data center from a stack's data centers and their DMZ client URLs (for a Pulumi program: plain data only). */
export function providersFor(dataCenters: readonly { name: string; url: string; tokenEnv: string }[], lifecycle: Lifecycle): Map<string, DataCenterProvider> {
  const out = new Map<string, DataCenterProvider>();
  const def = lifecycleData(lifecycle);
  for (const d of dataCenters) out.set(d.name, new DataCenterProvider({ dataCenter: d.name, url: d.url, tokenEnv: d.tokenEnv, lifecycle: def }));
  return out;
}
