// Running the check rules over a finished plan. Built-in and custom rules go
// through the same path; a rule that throws is reported, never a crash, and
// a custom rule that does not return in time is stopped and reported.
import { diag, type Diagnostic, type Where } from '../diags/index.ts';
import type { Change, PlanDocument, Violation } from '../model/index.ts';
import { builtin, functionLocation, ruleTimeoutMs, runWithin, showSeconds } from './deadline.ts';
import { readOnlyViewer } from './read-only.ts';
import { BUILTIN_RULES } from './rules/builtin.ts';
import type { PlanVmRow } from '../record/types.ts';
import type { Finding, Lifecycle, LoadedPack, RequestFacts, RequestRuleContext, ResolvedRule, Rule, RuleContext } from './types.ts';

export type EvalContext = Omit<RuleContext, 'config' | 'enforcement'>;

function toViolation(r: ResolvedRule, f: Finding): Violation {
  return { policy: r.rule.name, level: r.enforcement, address: f.address, message: f.message, hint: f.hint };
}

/**
 * What a rule (a pack author's code) threw, for a message; never throws.
 * `String(err)` of an object without a prototype, or one whose toString or
 * message getter throws, threw again from the report of the failure, and
 * crashed the plan, the pack's loading or the authority's judgment.
 */
export function describeThrown(err: unknown): string {
  try {
    if (err instanceof Error) return String(err.message);
  } catch {
    try {
      return String((err as Error).name);
    } catch {
      return 'Error';
    }
  }
  try {
    return String(err);
  } catch {
    try {
      return JSON.stringify(err) ?? typeof err;
    } catch {
      return typeof err;
    }
  }
}

function crashed(r: ResolvedRule, address: string, err: unknown): Violation {
  const msg = describeThrown(err);
  return {
    policy: r.rule.name,
    level: 'mandatory',
    address,
    message: `Rule ${r.rule.name} failed: ${msg}`,
    hint: `Fix the rule's module, or set ${r.rule.name} to enforcement: disabled in the stack's policyPack.config.`,
  };
}

/**
 * What a check returned, checked: a custom rule is a pack author's code, and
 * its findings become plan violations (a document `fleet apply` checks
 * against its schema) and the authority's vetoes. Nothing (undefined) is no
 * finding (null too); anything but an array of `{ address, message, hint }` strings
 * throws, which the caller reports as the rule failing. A finding not in an
 * array (`return { address, message, hint }`) was read by the authority as
 * no finding, approving what the rule meant to veto; findings without an
 * address or hint made plan violations `at undefined` that `fleet apply`
 * then refused as an edited plan.
 */
export function checkedFindings(value: unknown): Finding[] {
  if (value === undefined || value === null) return [];
  if (value instanceof Promise) throw new Error('check returned a Promise: checks are synchronous, return the array of findings itself');
  if (!Array.isArray(value)) throw new Error('check did not return an array of findings');
  value.forEach((f: unknown, i) => {
    const o = f as Partial<Record<keyof Finding, unknown>> | null;
    if (!o || typeof o !== 'object' || typeof o.address !== 'string' || !o.address || typeof o.message !== 'string' || typeof o.hint !== 'string') {
      throw new Error(`finding ${i} is not { address, message, hint } strings: ${showFinding(f)}`);
    }
  });
  return value as Finding[];
}

function showFinding(f: unknown): string {
  try {
    const s = JSON.stringify(f) ?? String(f);
    return s.length > 200 ? `${s.slice(0, 200)}…` : s;
  } catch {
    return String(f);
  }
}

function findings(r: ResolvedRule, run: () => unknown, fallback: string): Violation[] {
  try {
    return checkedFindings(run()).map((f) => toViolation(r, f));
  } catch (err) {
    return [crashed(r, fallback, err)];
  }
}

const BUILTIN = new Set<Rule>(BUILTIN_RULES);

/** Whether a rule's checks run under the pack's deadline: every rule but the built-in ones (ours, and bounded by the plan's size). */
export function isBounded(rule: Rule): boolean {
  return !BUILTIN.has(rule);
}

/** Which check of a rule was running, on what: a rule that runs out of time is reported there. */
interface Progress {
  check: 'checkChange' | 'checkPlan' | 'checkRequest';
  address: string;
  done: number;
}

/** What a custom rule is handed instead of the planner's own objects (readOnlyView): its context, and the view of anything else. */
interface Handed {
  view: <T>(v: T) => T;
  ctx: RuleContext;
}

/**
 * One rule over the plan: checkChange over each change (in plan order), then
 * checkPlan once, then (`handed`: a custom rule) its checkRequest over the
 * requests apply will send for each change, the preview of what the
 * authority judges (previewRequests). `plan` and `rctx` are the planner's;
 * a custom rule's checks are handed their read-only views, and the engine's
 * own reading (the addresses, the requests' facts) is of the originals.
 */
function runRule(r: ResolvedRule, plan: PlanDocument, rctx: RuleContext, out: Violation[], at?: Progress, handed?: Handed): void {
  const { checkChange, checkPlan, checkRequest } = r.rule;
  const before = out.length;
  const ctx = handed ? handed.ctx : rctx;
  if (checkChange) {
    for (const change of plan.changes) {
      if (at) at.address = change.address;
      const c = handed ? handed.view(change) : change;
      out.push(...findings(r, () => checkChange.call(r.rule, c, ctx), change.address));
      if (at) at.done++;
    }
  }
  if (checkPlan) {
    if (at) {
      at.check = 'checkPlan';
      at.address = plan.stack;
    }
    const p = handed ? handed.view(plan) : plan;
    out.push(...findings(r, () => checkPlan.call(r.rule, p, ctx), plan.stack));
  }
  if (checkRequest && handed) previewRequests(r, checkRequest, plan, rctx, handed.view, out, out.slice(before), at);
}

/**
 * A rule's checkRequest over the requests `fleet apply` will send, as the
 * authority will judge them, so that a plan shows what the authority will
 * refuse. Per change, the requests are judged in the order apply sends them
 * and the first one refused (a finding, or the check failing) is the last:
 * the authority vetoes it and apply sends nothing more for that member, so
 * its findings are what the plan shows, once. What the rule's own checkChange
 * or checkPlan already reported (`earlier`) is not said again: a finding at
 * an address where they reported anything is left out (the plan shows the
 * problem in their words, not a second wording of it), and one whose
 * address and message were said before is too. A check that fails is
 * always shown, unless said in the same words: it blocks the plan as it
 * vetoes the request.
 */
function previewRequests(
  r: ResolvedRule,
  checkRequest: NonNullable<Rule['checkRequest']>,
  plan: PlanDocument,
  rctx: RuleContext,
  view: <T>(v: T) => T,
  out: Violation[],
  earlier: readonly Violation[],
  at?: Progress,
): void {
  if (at) {
    // Its own count: "(n of N changes checked before it)" counted on from checkChange's said "4 of 3".
    at.check = 'checkRequest';
    at.done = 0;
  }
  const spoken = new Set(earlier.map((v) => v.address));
  const said = new Set(earlier.map((v) => `${v.address}\u0000${v.message}`));
  const once = (v: Violation): void => {
    const key = `${v.address}\u0000${v.message}`;
    if (said.has(key)) return;
    said.add(key);
    out.push(v);
  };
  const reqCtx: RequestRuleContext = { config: rctx.config, lifecycle: rctx.lifecycle, images: rctx.images };
  // Made at the first change of an existing VM: a plan of creates or noops reads no row.
  let rows: Map<string, PlanVmRow> | undefined;
  const rowOf = (id: string): PlanVmRow | undefined => (rows ??= new Map(rctx.record.map((v) => [v.id, v]))).get(id);
  const ownerOf = ownersOf(rctx);
  for (const change of plan.changes) {
    if (at) at.address = change.address;
    for (const { facts, what } of requestsOf(change, plan.stack, rctx.lifecycle, ownerOf, rowOf, view)) {
      let found: Finding[];
      try {
        found = checkedFindings(checkRequest.call(r.rule, facts, reqCtx));
      } catch (err) {
        once(crashed(r, change.address, err));
        break;
      }
      if (found.length === 0) continue;
      for (const f of found) {
        if (spoken.has(f.address)) continue;
        const key = `${f.address}\u0000${f.message}`;
        if (said.has(key)) continue;
        said.add(key);
        out.push({ ...toViolation(r, f), message: `${f.message} (its checkRequest, on ${what} of ${change.address}: the authority judges it again per request)` });
      }
      break;
    }
    if (at) at.done++;
  }
}

/**
 * The requests `fleet apply` sends the authority for a change, as the
 * authority's checkRequest reads them (engine/authority/create.ts, gate.ts):
 * a create (from nothing into the initial state, `insert`) before a new
 * VM's steps, then one request per step, a step of one state to itself with
 * the `resize` operation a resize. An existing VM's facts are the record's
 * (its image, size, encryption, data center), its size the new one once a
 * resize is behind it; a new VM's are the change's. The owner is
 * `ownerOf(change.fleet)` (the fleet's spec owner, else the one the record
 * holds: ownersOf). The facts are frozen, and their size (the change's or
 * the row's own object) is `readOnly`'s view of it: the planner's change and
 * row are read, not copied, and a check must not write to them.
 *
 * Each request's facts are written out field by field, not spread
 * (`{ ...base, ...vm, kind }`): a plan of 10,000 creates asks 60,000 of
 * them, and V8 (Node 20) builds an object spread from several sources
 * property by property through its slow path, 10-30 µs each: 0.76 s of
 * CPU per plan for a custom checkRequest that finds nothing (bench/policy).
 * If you add a field to RequestFacts, add it to `facts` below.
 */
export function requestsOf(
  change: Change,
  stack: string,
  lifecycle: Pick<Lifecycle, 'initial'>,
  ownerOf: (fleet: string) => string,
  rowOf: (id: string) => PlanVmRow | undefined,
  readOnly: <T>(v: T) => T = (v) => v,
): { facts: RequestFacts; what: string }[] {
  if (change.action === 'noop') return [];
  const owner = ownerOf(change.fleet);
  const row = change.vmId !== undefined ? rowOf(change.vmId) : undefined;
  const fresh: Vm = { dataCenter: change.dataCenter, image: change.image.logical, size: change.size, encryptedDisk: change.encryptedDisk };
  const existing: Vm = row ? { dataCenter: row.dataCenter, image: row.image, size: row.size, encryptedDisk: row.encryptedDisk } : fresh;
  const facts = (v: Vm, size: Vm['size'], kind: RequestFacts['kind'], from: string | null, to: string, operation: string): RequestFacts =>
    Object.freeze({ stack, fleet: change.fleet, address: change.address, owner, dataCenter: v.dataCenter, image: v.image, size: readOnly(size), encryptedDisk: v.encryptedDisk, kind, from, to, operation });
  const out: { facts: RequestFacts; what: string }[] = [];
  const vm = { current: change.action === 'create' ? fresh : existing, new: fresh, old: existing };
  let createdCurrent = false;
  let createdNew = false;
  const create = (member: 'current' | 'new'): void => {
    if (member === 'current' ? createdCurrent : createdNew) return;
    if (member === 'current') createdCurrent = true;
    else createdNew = true;
    out.push({ facts: facts(vm[member], vm[member].size, 'create', null, lifecycle.initial, 'insert'), what: 'the create' });
  };
  if (change.action === 'create') create('current');
  for (const step of change.steps) {
    if (step.member === 'new') create('new');
    const resize = step.operation === 'resize' && step.from === step.to;
    const v = vm[step.member];
    out.push({
      facts: facts(v, resize ? change.size : v.size, resize ? 'resize' : 'transition', step.from, step.to, step.operation),
      what: resize ? `the resize in ${step.from}` : `the edge ${step.from} -> ${step.to}`,
    });
    if (resize) vm[step.member] = { dataCenter: v.dataCenter, image: v.image, size: change.size, encryptedDisk: v.encryptedDisk };
  }
  return out;
}

/** What a request says of its VM (RequestFacts' VM fields). */
interface Vm {
  dataCenter: string;
  image: string;
  size: RequestFacts['size'];
  encryptedDisk: boolean;
}

/** The owner of a fleet as a request names it: its spec's, else the one the record holds (`owners`), else ''. Looked up per change: a map, not a search of `fleets`. */
export function ownersOf(ctx: Pick<RuleContext, 'fleets' | 'owners'>): (fleet: string) => string {
  const spec = new Map<string, string>();
  for (const f of ctx.fleets) if (!spec.has(f.name)) spec.set(f.name, f.owner);
  return (fleet) => spec.get(fleet) ?? (ctx.owners && Object.hasOwn(ctx.owners, fleet) ? ctx.owners[fleet] : undefined) ?? '';
}

/**
 * What to say of a rule stopped at its deadline: where its check is
 * defined (file:line:col when the inspector can tell, else its module),
 * the sentence, and what to do.
 */
/**
 * A file as diagnostics show it: relative to the working folder when inside
 * it (the message goes into the plan document, which is reviewed and
 * compared from machine to machine), else as it is.
 */
export function shownFile(file: string, cwd: string = process.cwd()): string {
  const path = builtin('node:path');
  if (!path.isAbsolute(file)) return file;
  const rel = path.relative(cwd, file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

export function ruleTimeout(
  r: ResolvedRule,
  check: 'checkChange' | 'checkPlan' | 'checkRequest',
  on: string,
  ms: number,
): { where: Where; defined: string; message: string; hint: string } {
  const found = functionLocation(r.rule[check]) ?? (r.module ? { file: r.module } : {});
  const where = found.file !== undefined ? { ...found, file: shownFile(found.file) } : found;
  const defined = where.file ? `${where.file}${where.line !== undefined ? `:${where.line}:${where.col ?? 1}` : ''}` : 'a rule module of the pack';
  return {
    where,
    defined,
    message: `Rule ${r.rule.name} did not finish within ${showSeconds(ms)}: its ${check} (${defined}) was still running on ${on}, and was stopped.`,
    hint: `A check must return: look in ${r.rule.name}'s ${check} for a loop that never ends, or make it faster; raise spec.ruleTimeoutSeconds in the pack's policy.yaml if it needs longer; or set ${r.rule.name} to enforcement: disabled in the stack's policyPack.config.`,
  };
}

/**
 * What custom rules read: a read-only view of the plan and of the planner's
 * context. A custom rule is a pack author's code, and the plan it is handed
 * is the document `fleet apply` carries out: a check that set
 * `change.size.cpu = 1` or emptied `plan.changes` changed what was applied,
 * and what the rules after it judged. Through the view, such a write throws
 * and the rule fails like one that throws; so do `set`, `add`, `delete` and
 * `clear` on its Maps and Sets (a fleet's `pointers`, `allowDestroy`,
 * `protectedFleets`). The view is made as the checks read it
 * (./read-only.ts readOnlyViewer), not copied first: a frozen structured
 * clone of a plan of 100,000 changes and its record cost ~0.4-1 s of CPU
 * per plan, even for a rule that read nothing of it (bench/policy). One
 * view serves every custom rule of the evaluation: `view` (the plan, each
 * change, a request's size) and the context read through it. The lifecycle
 * and the image catalog are frozen at load.
 */
export function readOnlyView(ctx: EvalContext): { view: <T>(v: T) => T; ctx: EvalContext } {
  const { lifecycle, images, ...data } = ctx;
  const view = readOnlyViewer();
  return { view, ctx: { ...view(data), lifecycle, images } };
}

/**
 * Runs every enabled rule: checkChange over each change (in plan order),
 * then checkPlan once. Violations come out rule by rule, in the pack's rule
 * order, at the rule's enforcement level; a rule that throws becomes one
 * mandatory violation naming the rule (at the change's address, or the stack
 * name for checkPlan).
 *
 * A custom rule's checks (all of its checkChange calls, then its checkPlan,
 * then the preview of its checkRequest) run under one deadline, the pack's `ruleTimeoutSeconds` (default 10 s):
 * one still running then is stopped, keeps the findings of the changes it
 * finished, and becomes one mandatory violation at the change it was on
 * (the stack name for checkPlan), so nothing is approved past it, plus one
 * `policy.rule-timeout` diagnostic given to `report`, at the check's source.
 */
export function evaluateRules(plan: PlanDocument, ctx: EvalContext, pack: LoadedPack, report?: (d: Diagnostic) => void): Violation[] {
  const out: Violation[] = [];
  let readOnly: { view: <T>(v: T) => T; ctx: EvalContext } | undefined;
  for (const r of pack.rules.values()) {
    if (r.enforcement === 'disabled') continue;
    if (!isBounded(r.rule)) {
      runRule(r, plan, { ...ctx, config: r.config, enforcement: r.enforcement }, out);
      continue;
    }
    // A custom rule reads a read-only view (one for every custom rule): what it writes is the rule failing, never the plan.
    readOnly ??= readOnlyView(ctx);
    const handed: Handed = { view: readOnly.view, ctx: { ...readOnly.ctx, config: r.config, enforcement: r.enforcement } };
    const at: Progress = { check: 'checkChange', address: plan.stack, done: 0 };
    const ms = ruleTimeoutMs(pack.ruleTimeoutSeconds);
    const found: Violation[] = [];
    const finished = runWithin(ms, () => runRule(r, plan, { ...ctx, config: r.config, enforcement: r.enforcement }, found, at, handed));
    out.push(...found);
    if (finished) continue;
    const on = at.check === 'checkPlan' ? `the plan of stack ${plan.stack}` : `${at.address} (${at.done} of ${plan.changes.length} changes checked before it)`;
    const t = ruleTimeout(r, at.check, on, ms);
    out.push({ policy: r.rule.name, level: 'mandatory', address: at.address, message: t.message, hint: t.hint });
    report?.(diag('policy.rule-timeout', `${t.message} ${t.hint}`, { ...t.where, address: at.address }));
  }
  return out;
}
