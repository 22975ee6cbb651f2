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

function findings(r: ResolvedRule, run: () => Finding[] | undefined, fallback: string): Violation[] {
  try {
    const out = run() ?? [];
    if (!Array.isArray(out)) throw new Error('check did not return an array of findings');
    return out.map((f) => toViolation(r, f));
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
