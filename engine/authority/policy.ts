// The policy at the authority (DESIGN.md "The authority has the last word";
// docs/policy.md "Judged at the authority"): every mandatory rule that can be
// judged per request, decided again by the authority on what the record holds
// at the moment of the request, whatever the plan said. Pure functions over
// their arguments; the service (authority.ts) reads the record and hands the
// limits to the record's insert (record/budget.ts) or grow (record/grow.ts),
// so quota and capacity of a create or a resize that grows are checked in
// the transaction that records it.
//
// | rule                   | judged here                                                            |
// | ---------------------- | ---------------------------------------------------------------------- |
// | owner-quota            | createBudget (the record checks it at insert, with the fleet's recorded owner); a grow: gate.ts, record/grow.ts |
// | datacenter-capacity    | createBudget, with the stack's capacity per data center; a grow likewise |
// | protect                | judgeProtect: an edge that commits a VM of a protected fleet to deletion |
// | allowed-images         | judgeCreate (decisions.ts): no translation, no create                   |
// | require-encrypted-disk | its checkRequest, with an empty match (labels are not in the record)    |
// | custom rules           | their checkRequest, when the pack declares one                          |
import { timingSafeEqual } from 'node:crypto';
import type { Budget, Limits, VmRow } from '../record/index.ts';
import type { Finding, LoadedPack, RequestFacts, ResolvedRule } from '../policy/types.ts';
import { checkedFindings, commitsToDeletion, describeThrown, isBounded, ownerLimits, ruleTimeout, ruleTimeoutMs, runWithin } from '../policy/index.ts';
import { overrideProof, refuse, type Decided, type Override } from '../../protocol/index.ts';

/** The capacity of each data center of the stack (stack.yaml dataCenters[].capacity). */
export type Capacities = Readonly<Record<string, Limits>>;

function mandatory(pack: LoadedPack, rule: string, fallback: 'mandatory' | 'disabled' = 'disabled'): boolean {
  return (pack.rules.get(rule)?.enforcement ?? fallback) === 'mandatory';
}

/**
 * The limits of owner `owner` when owner-quota is mandatory and sets any:
 * its own entry in `limits`, else the rule's `unlisted` limits (each owner
 * not listed on its own; engine/policy/budget.ts ownerLimits).
 */
export function quotaOf(pack: LoadedPack, owner: string): Limits | undefined {
  if (!mandatory(pack, 'owner-quota')) return undefined;
  const limits = ownerLimits(pack.rules.get('owner-quota')?.config ?? {}, owner);
  return limits && Object.keys(limits).length > 0 ? limits : undefined;
}

/** anyQuota per owner-quota rule as loaded (its settings are frozen): every create asks, and the answer reads every owner's limits. */
const quotaSet = new WeakMap<ResolvedRule, boolean>();

/** Whether owner-quota is mandatory and limits any owner (listed, or `unlisted`): then every create is checked under the record's budget lock. */
export function anyQuota(pack: LoadedPack): boolean {
  const rule = pack.rules.get('owner-quota');
  if (!rule || rule.enforcement !== 'mandatory') return false;
  let any = quotaSet.get(rule);
  if (any === undefined) quotaSet.set(rule, (any = limitsAnyone(rule.config)));
  return any;
}

function limitsAnyone(config: Readonly<Record<string, unknown>>): boolean {
  const all = [...Object.values((config.limits ?? {}) as Record<string, Limits>), ...(config.unlisted ? [config.unlisted as Limits] : [])];
  return all.some((l) => Object.keys(l).length > 0);
}

/** The capacity of `dataCenter` when datacenter-capacity is mandatory (its default) and the stack sets any. */
export function capacityOf(pack: LoadedPack, capacity: Capacities, dataCenter: string): Limits | undefined {
  if (!mandatory(pack, 'datacenter-capacity', 'mandatory')) return undefined;
  const c = capacity[dataCenter];
  return c && Object.values(c).some((v) => v !== undefined) ? c : undefined;
}

/**
 * What a create by `owner` in `dataCenter` must stay within (the record
 * checks it with the insert). `owner` is the one the request names: the
 * record refuses it unless the fleet's row holds the same owner (or the
 * fleet has no row yet), so the limits are those of the fleet's owner.
 * Where any owner has limits, every create is guarded (Budget.guard).
 */
export function createBudget(pack: LoadedPack, capacity: Capacities, owner: string, dataCenter: string): Budget {
  const owner_ = quotaOf(pack, owner);
  const dc = capacityOf(pack, capacity, dataCenter);
  return { ...(owner_ ? { owner: owner_ } : {}), ...(dc ? { dataCenter: dc } : {}), ...(anyQuota(pack) ? { guard: true } : {}) };
}

function proofHolds(adminTokens: readonly string[], vmId: string, planId: string | null, o: Override): boolean {
  if (o.proof === undefined || !/^[0-9a-f]{64}$/.test(o.proof)) return false;
  const given = Buffer.from(o.proof, 'hex');
  return adminTokens.some((t) => timingSafeEqual(given, Buffer.from(overrideProof(t, vmId, planId, o.by, o.reason), 'hex')));
}

/**
 * protect at the authority: an edge into `to` of `vm`, whose fleet the
 * record holds as protected or not (`isProtected`). Allowed when it does not
 * commit the VM to deletion, or the fleet is not protected, or the request
 * carries an override the stack accepts (`override: any`, the default: any
 * override; `admin`: only one with a proof under one of `adminTokens`). With
 * an override used, `overridden` is the sentence the intent row records
 * (who and why).
 */
export function judgeProtect(
  pack: LoadedPack,
  vm: VmRow,
  to: string,
  isProtected: boolean,
  req: { planId: string | null; override?: Override },
  adminTokens: readonly string[],
): Decided<{ overridden?: string }> {
  if (!isProtected || !mandatory(pack, 'protect', 'mandatory') || !commitsToDeletion(pack.lifecycle, to)) return { ok: true };
  const o = req.override;
  if (!o?.allowDestroy) {
    return refuse('protected', `${vm.address} is a member of protected fleet ${vm.fleet}; ${vm.state} -> ${to} would delete it, and the request carries no override (apply a plan made with --allow-destroy ${vm.fleet})`);
  }
  if (pack.rules.get('protect')?.config.override === 'admin' && !proofHolds(adminTokens, vm.id, req.planId, o)) {
    return refuse('override-refused', `the override of ${o.by} to delete ${vm.address} of protected fleet ${vm.fleet} needs the admin token's proof (the stack's protect rule says override: admin)`);
  }
  return { ok: true, overridden: `override allow-destroy by ${o.by}: ${o.reason}` };
}

/**
 * Every mandatory request-level rule (Rule.checkRequest) of the pack on one
 * request: the first finding vetoes it. A custom rule's check runs under
 * the pack's deadline (ruleTimeoutSeconds, engine/policy/deadline.ts): one
 * still running then is stopped and vetoes the request (policy.rule-timeout
 * in the reason); a check that never returned held the authority's one
 * thread, and with it every other request, forever.
 */
export function judgeRequestRules(pack: LoadedPack, facts: RequestFacts): Decided {
  // The checks read a frozen copy: a create's facts hold the request's own
  // size (which the authority inserts) and an edge's the cached record row's,
  // so a check writing `req.size.cpu = 1` changed what the record took, and
  // what the rules after it judged. A write now throws: the rule failed.
  let view: RequestFacts | undefined;
  for (const r of pack.rules.values()) {
    if (r.enforcement !== 'mandatory' || !r.rule.checkRequest) continue;
    const { checkRequest } = r.rule;
    view ??= Object.freeze({ ...facts, size: Object.freeze({ ...facts.size }) });
    const req = view;
    let findings: Finding[] = [];
    try {
      const judge = (): void => {
        findings = checkedFindings(checkRequest.call(r.rule, req, { config: r.config, lifecycle: pack.lifecycle, images: pack.images }));
      };
      if (!isBounded(r.rule)) judge();
      else {
        const ms = ruleTimeoutMs(pack.ruleTimeoutSeconds);
        if (!runWithin(ms, judge)) {
          const t = ruleTimeout(r, 'checkRequest', facts.address, ms);
          return refuse('policy-veto', `policy.rule-timeout: ${t.message} ${t.hint}`);
        }
      }
    } catch (err) {
      return refuse('policy-veto', `rule ${r.rule.name} failed on ${facts.address}: ${describeThrown(err)}`);
    }
    if (findings.length > 0) return refuse('policy-veto', `rule ${r.rule.name}: ${findings[0].message}`);
  }
  return { ok: true };
}
