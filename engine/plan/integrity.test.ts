import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalJson, checkScope, planContentDigest, sealPlan, verifySeal, type SealKey } from './integrity.ts';
import type { PlanDocument } from './types.ts';

// Real plan documents: the golden plans of test/fixtures/plan.
const golden = (name: string): PlanDocument => JSON.parse(readFileSync(new URL(`../../test/fixtures/plan/${name}/expected.json`, import.meta.url), 'utf8')) as PlanDocument;

const key: SealKey = { id: 'k1', secret: randomBytes(32) };
const stackId = 'stk-0f3a';
const ctx = { file: 'plan.json', stack: '', stackId, key: (id: string) => (id === key.id ? key : undefined) };

function sealed(name = '05-scale-down'): PlanDocument & { seal: ReturnType<typeof sealPlan> } {
  const plan = golden(name);
  return { ...plan, seal: sealPlan(plan, key, stackId) };
}

/** A plan file as an attacker edits it: any seal, or none. */
type Edited = Omit<PlanDocument, 'seal'> & { seal?: Record<string, string> };

/** Parses the sealed plan's file text again, edits it as an attacker would, and verifies it. */
function verifyEdited(edit: (p: Edited) => void, name?: string) {
  const p = JSON.parse(JSON.stringify(sealed(name))) as Edited;
  edit(p);
  return verifySeal(p, { ...ctx, stack: p.stack }).map((d) => d.code);
}

describe('canonicalJson', () => {
  it.each([
    [{ b: 1, a: [3, { d: null, c: 'x' }] }, '{"a":[3,{"c":"x","d":null}],"b":1}'],
    [{ a: undefined, b: 2 }, '{"b":2}'],
    [[undefined, 1], '[null,1]'],
    ['é\n', '"é\\n"'],
  ])('%j', (value, want) => {
    expect(canonicalJson(value)).toBe(want);
  });
});

describe('plan seals', () => {
  it('a sealed plan verifies, also after re-indenting or reordering its keys', () => {
    const p = sealed();
    expect(verifySeal(p, { ...ctx, stack: p.stack })).toEqual([]);
    const reordered = JSON.parse(JSON.stringify(Object.fromEntries(Object.entries(p).reverse()), null, 4));
    expect(verifySeal(reordered, { ...ctx, stack: p.stack })).toEqual([]);
    expect(p.seal.digest).toBe(planContentDigest(p));
  });

  // Each attack on a saved plan file the trust issue measured, and more.
  it.each<[string, (p: Edited) => void, string, string?]>([
    ['blocked: true edited to false', (p) => (p.blocked = false), 'apply.plan-tampered', '09-protect'],
    ['an extra create added', (p) => p.changes.push({ ...p.changes[0], address: 'web/9', index: 9, action: 'create', vmId: undefined }), 'apply.plan-tampered'],
    ['a vmId swapped for another fleet\'s VM', (p) => (p.changes[0].vmId = 'vm-p05-web-2'), 'apply.plan-tampered'],
    ['the scope emptied', (p) => ((p.fleets = []), (p.basis = { vms: {}, fleets: {} })), 'apply.plan-tampered'],
    ['an override added', (p) => p.options.allowDestroy.push('legacy'), 'apply.plan-tampered'],
    ['a violation removed', (p) => (p.policy.violations = []), 'apply.plan-tampered', '09-protect'],
    ['digest recomputed for the edited content (no key)', (p) => ((p.blocked = !p.blocked), (p.seal!.digest = planContentDigest(p))), 'apply.plan-tampered'],
    ['signature replaced', (p) => (p.seal!.signature = p.seal!.signature.replace(/^./, (c: string) => (c === 'A' ? 'B' : 'A'))), 'apply.plan-tampered'],
    ['seal removed', (p) => delete p.seal, 'apply.plan-unsigned'],
    ['seal malformed', (p) => (p.seal = { alg: 'none' }), 'apply.plan-tampered'],
    ['another stack id (same name)', (p) => (p.seal!.stackId = 'stk-other'), 'apply.plan-foreign'],
    ['a key this record does not hold', (p) => (p.seal!.keyId = 'k0'), 'apply.plan-foreign'],
  ])('%s is refused', (_name, edit, code, fixture) => {
    expect(verifyEdited(edit, fixture)).toEqual([code]);
  });

  it('a plan for another stack name is refused', () => {
    const p = sealed();
    expect(verifySeal(p, { ...ctx, stack: 'prod' }).map((d) => d.code)).toEqual(['apply.plan-foreign']);
  });

  it('the key never appears in the seal', () => {
    const text = JSON.stringify(sealed());
    expect(text).not.toContain(key.secret.toString('hex'));
    expect(text).not.toContain(key.secret.toString('base64'));
    expect(text).not.toContain(key.secret.toString('base64url'));
  });
});

describe('checkScope', () => {
  it('every golden plan is inside its scope', () => {
    for (const name of ['01-create-nearest', '03-transition', '04-update-replace', '05-scale-down', '06-spread-pack', '10-target-exclude', '13-protect-only']) {
      expect({ name, diags: checkScope(golden(name), 'plan.json') }).toEqual({ name, diags: [] });
    }
  });

  it.each<[string, (p: PlanDocument) => void, RegExp]>([
    ['a change to a fleet not in fleets', (p) => (p.fleets = p.fleets.filter((f) => f !== 'legacy')), /fleet legacy, which is not in the plan's scope/],
    ['a changed fleet whose version the basis lacks', (p) => delete p.basis.fleets.legacy, /whose version the plan's basis does not hold/],
    ['a VM the basis lacks', (p) => delete p.basis.vms['vm-p05-web-2'], /acts on VM vm-p05-web-2/],
    ['an address that is not fleet/index', (p) => (p.changes[0].address = 'web/0'), /is not member 0 of fleet legacy/],
  ])('%s', (_name, edit, detail) => {
    const p = golden('05-scale-down');
    edit(p);
    const d = checkScope(p, 'plan.json');
    expect(d.map((x) => x.code)).toContain('apply.plan-scope');
    expect(d.map((x) => x.detail).join('\n')).toMatch(detail);
  });

  // A fleet's protection is written under its lock and stale-checked through its version, like a member's change.
  it.each<[string, (p: PlanDocument) => void, RegExp]>([
    ['a protect change of a fleet not in fleets', (p) => (p.fleets = p.fleets.filter((f) => f !== 'vault')), /protect change of fleet vault is not in the plan's scope/],
    ['a protect change whose fleet version the basis lacks', (p) => delete p.basis.fleets.web, /protect change of fleet web changes a fleet whose version the plan's basis does not hold/],
    // An owner is written the same way (its fleet's lock, its version in the basis).
    [
      'an owner change whose fleet version the basis lacks',
      (p) => {
        p.fleetChanges = [{ fleet: 'web', owner: { from: 'team-a', to: 'team-b' } }];
        delete p.basis.fleets.web;
      },
      /owner change of fleet web changes a fleet whose version the plan's basis does not hold/,
    ],
  ])('%s', (_name, edit, detail) => {
    const p = golden('13-protect-only');
    edit(p);
    const d = checkScope(p, 'plan.json');
    expect(d.map((x) => x.code)).toEqual(['apply.plan-scope']);
    expect(d[0].detail).toMatch(detail);
  });
});
