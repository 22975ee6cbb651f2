// Running the check rules over a finished plan. Built-in and custom rules go
// through the same path; a rule that throws is reported, never a crash.
import type { PlanDocument, Violation } from '../model/index.ts';
import type { Finding, LoadedPack, ResolvedRule, RuleContext } from './types.ts';

export type EvalContext = Omit<RuleContext, 'config' | 'enforcement'>;

function toViolation(r: ResolvedRule, f: Finding): Violation {
  return { policy: r.rule.name, level: r.enforcement, address: f.address, message: f.message, hint: f.hint };
}

function crashed(r: ResolvedRule, address: string, err: unknown): Violation {
  const msg = err instanceof Error ? err.message : String(err);
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

/**
 * Runs every enabled rule: checkChange over each change (in plan order),
 * then checkPlan once. Violations come out rule by rule, in the pack's rule
 * order, at the rule's enforcement level; a rule that throws becomes one
 * mandatory violation naming the rule (at the change's address, or the stack
 * name for checkPlan).
 */
export function evaluateRules(plan: PlanDocument, ctx: EvalContext, pack: LoadedPack): Violation[] {
  const out: Violation[] = [];
  for (const r of pack.rules.values()) {
    if (r.enforcement === 'disabled') continue;
    const rctx: RuleContext = { ...ctx, config: r.config, enforcement: r.enforcement };
    const { checkChange, checkPlan } = r.rule;
    if (checkChange) {
      for (const change of plan.changes) {
        out.push(...findings(r, () => checkChange.call(r.rule, change, rctx), change.address));
      }
    }
    if (checkPlan) out.push(...findings(r, () => checkPlan.call(r.rule, plan, rctx), plan.stack));
  }
  return out;
}
