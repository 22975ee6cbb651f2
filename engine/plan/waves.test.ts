import { describe, expect, it } from 'vitest';
import { resolveAmount, type Enforcement, type RolloutSpec } from '../model/index.ts';
import { seededRandom } from '../model/seeded-random.ts';
import { computePlan } from './planner.ts';
import { noRulesPolicy } from './policy-port.ts';
import { defaultPolicy } from './policy-default.ts';
import { loadPack } from '../policy/load.ts';
import { DEFAULT_PACK_DIR } from '../policy/testdata/fixtures.ts';
import { dataCenter, makeFleet, makePack, makeStack, vmRow } from './test-support.ts';
import { rolloutSettings, type DisruptionRule } from './waves.ts';
import type { PlanDocument } from './types.ts';
import type { VmRow } from '../record/types.ts';
import type { LoadedPack } from '../policy/types.ts';

const rule = (enforcement: Enforcement, maxShare = 0.25): DisruptionRule => ({ state: 'Running', maxShare, enforcement });

/** `base` with its max-disruption rule at `enforcement` and `maxShare`. */
function withDisruption(base: LoadedPack, enforcement: Enforcement, maxShare: number): LoadedPack {
  const rules = new Map(base.rules);
  const rule = rules.get('max-disruption')!;
  rules.set('max-disruption', { ...rule, enforcement, config: { ...rule.config, maxShare } });
  return { ...base, rules };
}

describe('rolloutSettings', () => {
  it.each([
    { name: 'counts from the spec', spec: { maxUnavailable: 3, maxSurge: 2 }, rule: rule('advisory'), want: [3, 2, 1] },
    { name: 'percentages: maxUnavailable rounds down, maxSurge up', spec: { maxUnavailable: '30%', maxSurge: '10%' }, rule: rule('advisory'), want: [3, 2, 1] },
    { name: 'default maxUnavailable from max-disruption maxShare', spec: {}, rule: rule('advisory', 0.25), want: [3, 0, 1] },
    { name: 'max-disruption disabled, a spec setting: the rest default to all members', spec: { failureThreshold: 2 }, rule: rule('disabled'), want: [12, 0, 2] },
    { name: 'a mandatory rule lowers maxUnavailable to what it allows', spec: { maxUnavailable: '50%' }, rule: rule('mandatory', 0.25), want: [3, 0, 1] },
    { name: 'an advisory rule does not', spec: { maxUnavailable: '50%' }, rule: rule('advisory', 0.25), want: [6, 0, 1] },
    { name: 'failureThreshold as a share of the members changed, rounded up', spec: { failureThreshold: '10%' }, rule: rule('advisory'), want: [3, 0, 2] },
    // Both 0 with no maxSurge in the spec: one member per wave, by a surge VM where there is room.
    { name: 'a mandatory rule allowing none, no maxSurge: one surge VM at a time', spec: {}, rule: rule('mandatory', 0.05), want: [0, 1, 1] },
    { name: 'an advisory rule rounding to none, no maxSurge: one member at a time', spec: {}, rule: rule('advisory', 0.05), want: [1, 1, 1] },
    // Both 0 with a maxSurge in the spec: Kubernetes' rule (maxUnavailable 1, maxSurge stays 0), unless a mandatory rule
    // allows none out (vetoed: the waves block).
    { name: 'a mandatory rule allowing none, maxSurge 0: vetoed, both stay 0', spec: { maxSurge: 0 }, rule: rule('mandatory', 0.05), want: [0, 0, 1] },
    { name: 'an advisory rule rounding to none, maxSurge 0%: one member at a time, no surge VM', spec: { maxSurge: '0%' }, rule: rule('advisory', 0.05), want: [1, 0, 1] },
    { name: '1% of 12 and maxSurge 0 under a mandatory rule allowing 3: maxUnavailable 1', spec: { maxUnavailable: '1%', maxSurge: 0 }, rule: rule('mandatory', 0.25), want: [1, 0, 1] },
    { name: 'a mandatory rule allowing none, with a maxSurge: surge VMs only', spec: { maxSurge: 1 }, rule: rule('mandatory', 0.05), want: [0, 1, 1] },
  ] as { name: string; spec: RolloutSpec; rule: DisruptionRule; want: [number, number, number] }[])('$name', ({ spec, rule: r, want }) => {
    const s = rolloutSettings(makeFleet('web', { count: 12, rollout: spec }), r, 12, 12)!;
    expect([s.maxUnavailable, s.maxSurge, s.failureThreshold]).toEqual(want);
  });

  // A share's figure alone ('failureThreshold 2') did not say where it came from, unlike maxUnavailable's note.
  it.each([
    { spec: {}, waved: 12, note: 'failureThreshold 1 (default)' },
    { spec: { failureThreshold: 2 }, waved: 12, note: 'failureThreshold 2 from the spec' },
    { spec: { failureThreshold: '10%' }, waved: 12, note: "failureThreshold 2 from the spec's 10% of 12 members changed" },
    { spec: { failureThreshold: '50%' }, waved: 1, note: "failureThreshold 1 from the spec's 50% of 1 member changed" },
  ] as { spec: RolloutSpec; waved: number; note: string }[])('notes where failureThreshold comes from: $note', ({ spec, waved, note }) => {
    const s = rolloutSettings(makeFleet('web', { count: 12, rollout: spec }), rule('advisory'), 12, waved)!;
    expect(s.notes.at(-1)).toBe(note);
  });

  it('asks for no rollout when neither the spec nor the rule does', () => {
    expect(rolloutSettings(makeFleet('web', { count: 12 }), rule('disabled'), 12, 12)).toBeUndefined();
  });
});

/** Repeatable cases (mulberry32, engine/model/seeded-random.ts). */
const rng = (seed: number): (() => number) => seededRandom(seed).next;

describe('assignWaves (through computePlan)', () => {
  // Property over generated fleets: every disruptive change is in exactly
  // one wave; no wave takes more than maxUnavailable members out (members
  // already out hold places of the first) nor more than maxSurge surge VMs,
  // nor more surge VMs in a data center than it has room for; a replace is
  // create-before-delete exactly when it takes a surge place.
  it('keeps every wave within maxUnavailable, maxSurge and capacity, over 300 generated fleets', () => {
    const next = rng(17);
    const int = (n: number) => Math.floor(next() * n);
    for (let k = 0; k < 300; k++) {
      const count = 1 + int(30);
      const enforcement = (['advisory', 'mandatory'] as const)[int(2)];
      const maxShare = [0.1, 0.25, 0.5, 1][int(4)];
      const rollout: RolloutSpec = {};
      if (next() < 0.6) rollout.maxUnavailable = next() < 0.5 ? int(count + 1) : (`${int(101)}%` as RolloutSpec['maxUnavailable']);
      if (next() < 0.6) rollout.maxSurge = int(5);
      if (rollout.maxUnavailable === 0 && !rollout.maxSurge) rollout.maxSurge = 1;
      const room = 1 + int(4);
      const dcs = [dataCenter('miami', 25.76, -80.19, ['general'], { vms: count + room })];
      const spec = makeFleet('web', { count, image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] }, rollout });
      const specNew = { ...spec, specHash: 'new' };
      const states = ['Running', 'Running', 'Running', 'PoweredOff', 'BootFailed'];
      const rows: VmRow[] = Array.from({ length: count }, (_, i) => {
        const kind = int(4);
        const state = states[int(states.length)];
        if (kind === 0) return vmRow(specNew, i, { dataCenter: 'miami', state, specHash: 'new', image: 'ubuntu-24.04' });
        if (kind === 1) return vmRow(specNew, i, { dataCenter: 'miami', state, specHash: 'small', image: 'ubuntu-24.04', size: { cpu: 1, memoryGiB: 4, diskGiB: 20 } });
        return vmRow(specNew, i, { dataCenter: 'miami', state, specHash: 'old', image: 'ubuntu-22.04' });
      });
      const pack = makePack({ 'max-disruption': enforcement });
      pack.rules.get('max-disruption')!.config.maxShare = maxShare;
      checkWaves(
        computePlan({
          stack: makeStack(dcs),
          pack,
          fleets: [specNew],
          record: rows,
          fleetVersions: {},
          options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
          policy: noRulesPolicy,
          id: `q${k}`,
        }),
        room,
        `case ${k}: count ${count}, ${enforcement} ${maxShare}, ${JSON.stringify(rollout)}`,
      );
    }
  });
});

describe('surge room shared by the rollouts of one data center or owner', () => {
  // Fleets' rollouts run side by side, so their surge VMs can exist at once. Each fleet's waves used to be
  // planned against the whole free room (of the data center, and of its owner's quota): two fleets surged
  // into the last place together, and apply failed (test/rollout.cli.test.ts "two fleets surge into the
  // last free place").
  it('never plans more surge VMs at once across fleets (beside their new members) than a data center or an owner quota has room for, over 200 generated stacks', () => {
    const next = rng(41);
    const int = (n: number) => Math.floor(next() * n);
    for (let k = 0; k < 200; k++) {
      // Some fleets grow at the same time: their new members take room for good, beside the surge VMs.
      const existing = new Map<string, number>();
      const fleets = Array.from({ length: 2 + int(3) }, (_, i) => {
        existing.set(`f${i}`, 1 + int(6));
        const f = makeFleet(`f${i}`, { count: existing.get(`f${i}`)! + (next() < 0.3 ? int(3) : 0), owner: ['team-a', 'team-b'][int(2)], image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] }, rollout: { maxUnavailable: 1 + int(2), maxSurge: int(4) } });
        return { ...f, size: { cpu: 1 + int(3), memoryGiB: 2 * (1 + int(3)), diskGiB: 10 } };
      });
      const rows = fleets.flatMap((f) => Array.from({ length: existing.get(f.name)! }, (_, i) => vmRow(f, i, { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old' })));
      const used = { vms: rows.length, cpu: rows.reduce((n, r) => n + r.size.cpu, 0), memoryGiB: rows.reduce((n, r) => n + r.size.memoryGiB, 0) };
      const free = { vms: int(6), cpu: int(12), memoryGiB: int(24) };
      const cap = { vms: used.vms + free.vms, cpu: used.cpu + free.cpu, memoryGiB: used.memoryGiB + free.memoryGiB };
      // team-a's quota leaves it 0 to 3 VMs more; team-b has no limit.
      const usedByA = rows.filter((r) => fleets.find((f) => f.name === r.fleet)!.owner === 'team-a').length;
      const quotaA = int(4);
      const pack = makePack({ 'datacenter-capacity': 'mandatory', 'owner-quota': 'mandatory' });
      pack.rules.get('owner-quota')!.config.limits = { 'team-a': { vms: usedByA + quotaA } };
      const p = computePlan({
        stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'], cap)]),
        pack,
        fleets,
        record: rows,
        fleetVersions: {},
        options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
        policy: defaultPolicy,
        id: `s${k}`,
      });
      const label = `case ${k}: free ${JSON.stringify(free)}, ${fleets.map((f) => `${f.name} ${f.count}x${f.size.cpu}cpu/${f.size.memoryGiB}GiB surge ${f.rollout.maxSurge}`).join(', ')}`;
      const label2 = `${label}; team-a may add ${quotaA}`;
      const peak = { vms: 0, cpu: 0, memoryGiB: 0 };
      let peakA = 0;
      for (const c of p.changes.filter((x) => x.action === 'create')) {
        peak.vms++;
        peak.cpu += c.size.cpu;
        peak.memoryGiB += c.size.memoryGiB;
        if (fleets.find((f) => f.name === c.fleet)!.owner === 'team-a') peakA++;
      }
      for (const f of fleets) {
        const widest = Math.max(0, ...(p.rollouts ?? []).filter((r) => r.fleet === f.name).flatMap((r) => r.waves.map((w) => w.surge)));
        if (f.owner === 'team-a') peakA += widest;
        peak.vms += widest;
        peak.cpu += widest * f.size.cpu;
        peak.memoryGiB += widest * f.size.memoryGiB;
      }
      expect(peak.vms, label).toBeLessThanOrEqual(free.vms);
      expect(peak.cpu, label).toBeLessThanOrEqual(free.cpu);
      expect(peak.memoryGiB, label).toBeLessThanOrEqual(free.memoryGiB);
      expect(peakA, label2).toBeLessThanOrEqual(quotaA);
    }
  });
});

function checkWaves(plan: PlanDocument, room: number, label: string): void {
  const leaving = plan.changes.filter((c) => c.from === 'Running' && (c.action === 'replace' || c.action === 'update' || (c.action === 'transition' && c.path.some((s) => s !== 'Running'))));
  if (leaving.length === 0) {
    expect(plan.rollouts, label).toBeUndefined();
    return;
  }
  const r = plan.rollouts![0];
  const unwaved = leaving.filter((c) => c.wave === undefined);
  // Changes left without a wave exist only when maxUnavailable is 0 (the spec's, or a mandatory rule's) and they
  // cannot surge: the plan is blocked, and says so, naming where the 0 came from.
  if (unwaved.length) {
    expect(plan.blocked, label).toBe(true);
    const bySpec = /maxUnavailable \S+( of \d+)? from the spec/.test(r.reason) && !/lowered to|no member may leave|vetoed by mandatory/.test(r.reason);
    const cause = bySpec ? 'rollout' : 'max-disruption';
    expect(plan.policy.violations.some((v) => v.policy === cause && v.level === 'mandatory'), label).toBe(true);
  }
  const seen = new Set<string>();
  for (const w of r.waves) {
    const members = plan.changes.filter((c) => c.wave === w.wave && !(w.returning ?? []).includes(c.address));
    expect(members.map((c) => c.address).sort(), label).toEqual([...w.members].sort());
    const surge = members.filter((c) => c.action === 'replace' && c.replaceOrder === 'create-before-delete');
    const out = members.length - surge.length;
    const held = w.wave === 1 ? (w.returning ?? []).length : 0;
    // A member brought back by a replace whose new VM is created before its old one goes has an extra VM too: with
    // the wave's surge VMs it stays within maxSurge and the room (a resumed rollout's member killed mid-replace).
    const returningSurge = plan.changes.filter((c) => c.wave === w.wave && !c.deposed && (w.returning ?? []).includes(c.address) && c.action === 'replace' && c.replaceOrder === 'create-before-delete');
    expect(surge.length + returningSurge.length, label).toBeLessThanOrEqual(r.maxSurge);
    expect(surge.length + returningSurge.length, label).toBeLessThanOrEqual(room);
    if (out > 0) expect(out + held, label).toBeLessThanOrEqual(Math.max(r.maxUnavailable, held));
    expect([w.unavailable, w.surge], label).toEqual([out, surge.length]);
    for (const c of members) {
      expect(seen.has(c.address), label).toBe(false);
      seen.add(c.address);
      if (c.action === 'replace') {
        const first = c.steps[0].member;
        expect(first, label).toBe(c.replaceOrder === 'create-before-delete' ? 'new' : 'old');
      }
    }
  }
  for (const c of leaving) if (c.wave !== undefined) expect(seen.has(c.address), label).toBe(true);
}

describe('member addresses', () => {
  const web = makeFleet('web', { count: 4, image: 'ubuntu-24.04' });
  const rows = [0, 1, 2, 3].map((i) => vmRow(web, i, { image: 'ubuntu-22.04', specHash: 'old' }));
  const plan = (options: Partial<PlanDocument['options']>) =>
    computePlan({
      stack: makeStack(),
      pack: makePack(),
      fleets: [web],
      record: rows,
      fleetVersions: {},
      options: { targets: [], excludes: [], allowDestroy: [], refresh: false, ...options },
      policy: noRulesPolicy,
      id: 'p',
    });

  it('--target web/3 plans that member only', () => {
    const p = plan({ targets: ['web/3'] });
    expect(p.fleets).toEqual(['web']);
    expect(p.changes.map((c) => `${c.address}:${c.action}`)).toEqual(['web/3:replace']);
    expect(p.options.targets).toEqual(['web/3']);
  });

  it('--target web alongside web/3 plans the whole fleet', () => {
    expect(plan({ targets: ['web', 'web/3'] }).changes).toHaveLength(4);
  });

  it('--replace web/1 replaces a member that matches its spec', () => {
    const same = rows.map((r) => ({ ...r, image: web.image, specHash: web.specHash }));
    const p = computePlan({
      stack: makeStack(),
      pack: makePack(),
      fleets: [web],
      record: same,
      fleetVersions: {},
      options: { targets: [], excludes: [], allowDestroy: [], refresh: false, replace: ['web/1'] },
      policy: noRulesPolicy,
      id: 'p',
    });
    expect(p.changes.map((c) => `${c.address}:${c.action}`)).toEqual(['web/1:replace']);
    expect(p.unchanged.map((u) => `${u.fleet}:${u.count}`)).toEqual(['web:3']);
    expect(p.changes[0].reason).toMatch(/^replaced by --replace/);
    expect(p.options.replace).toEqual(['web/1']);
  });
});

describe('failureThreshold as a share', () => {
  // A percentage counted only the members taken out, not the ones the rollout brings back (which it changes too):
  // "100%" of 10 changed members came out as 8, so a rollout with every member failing stopped early.
  it.each([
    ['100%', 10],
    ['50%', 5],
    ['10%', 1],
    [3, 3],
  ] as const)('%s of 8 members replaced and 2 brought back is %i', (share, want) => {
    const web = makeFleet('web', { count: 10, image: 'ubuntu-24.04', rollout: { failureThreshold: share } });
    const rows = Array.from({ length: 10 }, (_, i) => (i < 8 ? vmRow(web, i, { image: 'ubuntu-22.04', specHash: 'old' }) : vmRow(web, i, { state: 'PoweredOff' })));
    const p = computePlan({
      stack: makeStack(),
      pack: makePack(),
      fleets: [web],
      record: rows,
      fleetVersions: {},
      options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
      policy: noRulesPolicy,
      id: 'p',
    });
    expect(p.changes.filter((c) => c.action === 'replace')).toHaveLength(8);
    expect(p.rollouts?.[0].waves[0].returning).toEqual(['web/8', 'web/9']);
    expect(p.rollouts?.[0].failureThreshold).toBe(want);
  });
});

describe('a rollout that cannot start names its cause', () => {
  // spec.rollout.maxUnavailable 0 with a surge that cannot be used (a resize, no room, no quota) was blamed
  // on the pack's max-disruption rule ("Raise max-disruption.maxShare"), even with the rule disabled. A resize's
  // hint also said "free capacity or quota for a surge VM", which a resize cannot use whatever the room.
  it.each([
    {
      name: 'a resize with maxUnavailable 0 in the spec',
      rollout: { maxUnavailable: 0, maxSurge: 1 },
      resize: true,
      vms: 50,
      rule: undefined,
      want: { policy: 'rollout', message: /spec\.rollout\.maxUnavailable 0 allows no member out of Running at once, and a resize or transition cannot use a surge VM/, hint: /^Allow rollout\.maxUnavailable at least 1 in fleet web's spec, or make the change a replace \(fleet plan --replace ADDRESS\)\.$/ },
    },
    {
      name: 'an image change with maxUnavailable 0 in the spec and a full data center',
      rollout: { maxUnavailable: 0, maxSurge: 1 },
      resize: false,
      vms: 4,
      rule: 'advisory' as const,
      // The change is a replace already: the hint does not ask to make it one.
      want: { policy: 'rollout', message: /spec\.rollout\.maxUnavailable 0 allows no member out of Running at once and the data center has no room for a surge VM\.$/, hint: /^Allow rollout\.maxUnavailable at least 1 in fleet web's spec or free capacity or quota for a surge VM\.$/ },
    },
    {
      name: 'a mandatory max-disruption that allows none, a maxSurge, and a full data center',
      rollout: { maxSurge: 1 },
      resize: false,
      vms: 4,
      rule: 'mandatory' as const,
      want: { policy: 'max-disruption', message: /max-disruption allows no member out of Running at once and the data center has no room for a surge VM/, hint: /^Raise max-disruption\.maxShare in the stack's policyPack\.config or free capacity or quota for a surge VM\.$/ },
    },
    {
      // No maxSurge in the spec: one member at a time by a surge VM, which the full data center has no room for.
      name: 'a mandatory max-disruption that allows none, no maxSurge, and a full data center',
      rollout: {},
      resize: false,
      vms: 4,
      rule: 'mandatory' as const,
      want: { policy: 'max-disruption', message: /max-disruption allows no member out of Running at once and the data center has no room for a surge VM/, hint: /^Raise max-disruption\.maxShare in the stack's policyPack\.config or free capacity or quota for a surge VM\.$/ },
    },
    {
      // maxSurge 0 in the spec: Kubernetes' maxUnavailable 1 is what the rule vetoes; room for a surge VM is not what is missing.
      name: 'a mandatory max-disruption that allows none, and maxSurge 0',
      rollout: { maxSurge: 0 },
      resize: false,
      vms: 4,
      rule: 'mandatory' as const,
      want: {
        policy: 'max-disruption',
        message: /cannot be rolled out: maxUnavailable and maxSurge both resolve to 0 for its 4 members, and the maxUnavailable 1 Kubernetes' rule then uses is vetoed: max-disruption allows no member out of Running at once\.$/,
        hint: /^Raise max-disruption\.maxShare in the stack's policyPack\.config or give fleet web's spec a rollout\.maxSurge of at least 1, so that a replace creates its new VM before the old one goes \(with room and quota for it\)\.$/,
      },
    },
  ] as { name: string; rollout: RolloutSpec; resize: boolean; vms: number; rule?: Enforcement; want: { policy: string; message: RegExp; hint: RegExp } }[])(
    '$name',
    ({ rollout, resize, vms, rule: r, want }) => {
      const web = makeFleet('web', { count: 4, image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] }, rollout });
      const rows = [0, 1, 2, 3].map((i) =>
        resize ? vmRow(web, i, { dataCenter: 'miami', specHash: 'small', size: { cpu: 1, memoryGiB: 4, diskGiB: 20 } }) : vmRow(web, i, { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old' }),
      );
      const pack = makePack({ 'datacenter-capacity': 'mandatory', ...(r ? { 'max-disruption': r } : {}) });
      if (r) pack.rules.get('max-disruption')!.config.maxShare = 0.1;
      const p = computePlan({
        stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'], { vms })]),
        pack,
        fleets: [web],
        record: rows,
        fleetVersions: {},
        options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
        policy: noRulesPolicy,
        id: 'p',
      });
      expect(p.blocked).toBe(true);
      expect(p.policy.violations).toEqual([
        { policy: want.policy, level: 'mandatory', address: 'web', message: expect.stringMatching(want.message), hint: expect.stringMatching(want.hint) },
      ]);
    },
  );
});

describe('mandatory max-disruption with members leaving for good (a lower count) beside a rollout', () => {
  // The rule counts the members that leave for good plus the widest wave; the planner lowered maxUnavailable
  // to the rule's share without the leaving ones, so a scale-down from 12 to 10 with an image change under a
  // mandatory 25% was blocked ("4 of 12 … 2 in its widest wave, 2 for good") though waves of 1 fit.
  it('is never blocked by the rule when what leaves for good fits its share, over 200 generated fleets', async () => {
    const base = (await loadPack(DEFAULT_PACK_DIR)).pack!;
    const next = rng(53);
    const int = (n: number) => Math.floor(next() * n);
    for (let k = 0; k < 200; k++) {
      const maxShare = [0.1, 0.25, 0.34, 0.5][int(4)];
      const pack = withDisruption(base, 'mandatory', maxShare);
      const existing = 1 + int(16);
      const count = Math.max(0, existing - int(5));
      const rollout: RolloutSpec = next() < 0.5 ? {} : { maxSurge: int(3) };
      const web = makeFleet('web', { count, image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] }, rollout });
      const rows = Array.from({ length: existing }, (_, i) => vmRow(web, i, { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old' }));
      const p = computePlan({
        stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'])]),
        pack,
        fleets: [web],
        record: rows,
        fleetVersions: {},
        options: { targets: [], excludes: [], allowDestroy: ['web'], refresh: false },
        policy: defaultPolicy,
        id: `d${k}`,
      });
      const forGood = existing - count;
      const label = `case ${k}: ${existing} -> ${count}, maxShare ${maxShare}, ${JSON.stringify(rollout)}: ${p.rollouts?.[0]?.reason}`;
      const blockedByRule = p.policy.violations.filter((v) => v.policy === 'max-disruption' && v.level === 'mandatory');
      const share = Math.floor(maxShare * existing + 1e-9);
      // What leaves for good takes every place the rule allows, and the spec's maxSurge is 0: Kubernetes' rule would take
      // one member out at a time (maxUnavailable 1), which the rule vetoes, and the plan says so. With no maxSurge in the
      // spec, one surge VM at a time replaces them (the data center has room): not blocked.
      const vetoed = count > 0 && forGood <= share && share - forGood === 0 && rollout.maxSurge === 0;
      if (vetoed) expect(blockedByRule.map((v) => v.message), label).toEqual([expect.stringMatching(/both resolve to 0 for its \d+ members?, and the maxUnavailable 1 Kubernetes' rule then uses is vetoed/)]);
      else if (forGood <= share) expect(blockedByRule, label).toEqual([]);
      else expect(blockedByRule, label).not.toEqual([]);
    }
  });

  it.each([
    { name: 'every member to PoweredOff under a mandatory maxShare 1', maxShare: 1, blocked: false },
    // The rule's own finding says why; the waves add no second one.
    { name: 'every member to PoweredOff under a mandatory maxShare 0.5', maxShare: 0.5, blocked: true },
  ])('$name: the members that leave for good by a transition are not counted twice', async ({ maxShare, blocked }) => {
    const base = (await loadPack(DEFAULT_PACK_DIR)).pack!;
    const pack = withDisruption(base, 'mandatory', maxShare);
    const web = makeFleet('web', { count: 4, state: 'PoweredOff', placement: { dataCenters: ['miami'] } });
    const rows = [0, 1, 2, 3].map((i) => vmRow(web, i, { dataCenter: 'miami', state: 'Running' }));
    const p = computePlan({
      stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'])]),
      pack,
      fleets: [web],
      record: rows,
      fleetVersions: {},
      options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
      policy: defaultPolicy,
      id: 'p',
    });
    expect(p.changes.map((c) => c.action)).toEqual(['transition', 'transition', 'transition', 'transition']);
    expect(p.blocked).toBe(blocked);
    expect(p.policy.violations.map((v) => v.message)).toEqual(blocked ? [expect.stringMatching(/^4 of 4 Running members of fleet web would leave Running/)] : []);
  });
});

describe('advisory max-disruption with members leaving for good beside a rollout it sized', () => {
  // The rule's default maxUnavailable was maxShare of the new count, and the rule then counted the members the
  // lower count deletes beside the widest wave: count 3 -> 2 with an image change, maxShare 0.5, got the default
  // maxUnavailable 1 and the finding "2 of 3 Running members … would leave Running at once (1 in its widest wave,
  // 1 for good) (at most 1)", whose hint ("Lower spec.rollout.maxUnavailable of web to 1 or less") named the value
  // the plan already used. The default now leaves the places the deletes take, as a mandatory rule's cap does.
  it('gets no finding from its own default when what leaves for good fits its share, over 200 generated fleets', async () => {
    const base = (await loadPack(DEFAULT_PACK_DIR)).pack!;
    const next = rng(71);
    const int = (n: number) => Math.floor(next() * n);
    for (let k = 0; k < 200; k++) {
      const maxShare = [0.1, 0.25, 0.34, 0.5][int(4)];
      const pack = withDisruption(base, 'advisory', maxShare);
      const existing = 1 + int(16);
      const count = Math.max(0, existing - int(5));
      // No maxSurge, or maxSurge 0 in the spec (Kubernetes' rule when both resolve to 0).
      const rollout: RolloutSpec = next() < 0.5 ? {} : { maxSurge: 0 };
      const web = makeFleet('web', { count, image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] }, rollout });
      const rows = Array.from({ length: existing }, (_, i) => vmRow(web, i, { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old' }));
      const p = computePlan({
        stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'])]),
        pack,
        fleets: [web],
        record: rows,
        fleetVersions: {},
        options: { targets: [], excludes: [], allowDestroy: ['web'], refresh: false },
        policy: defaultPolicy,
        id: `a${k}`,
      });
      const forGood = existing - count;
      const label = `case ${k}: ${existing} -> ${count}, maxShare ${maxShare}, ${JSON.stringify(rollout)}: ${p.rollouts?.[0]?.reason}`;
      const findings = p.policy.violations.filter((v) => v.policy === 'max-disruption');
      const share = Math.floor(maxShare * existing + 1e-9);
      // What leaves for good takes every place the rule allows, and the spec's maxSurge is 0: Kubernetes' rule takes one
      // member out at a time all the same (maxUnavailable 1, no extra VM), which the advisory rule flags. With no
      // maxSurge in the spec, one surge VM at a time replaces them (the data center has room): no finding.
      if (count > 0 && forGood <= share && share - forGood === 0 && rollout.maxSurge === 0) expect(findings.map((v) => v.level), label).toEqual(['advisory']);
      else if (forGood <= share) expect(findings, label).toEqual([]);
      else expect(findings, label).not.toEqual([]);
    }
  });
});

describe('the default maxUnavailable of a fleet an owner quota cut', () => {
  // count 3 -> 8 beside an image change, the owner quota granting 4: the default maxUnavailable was maxShare of
  // the spec's count ("4 of 8"), so wave 1 took all 3 old members out beside the one create, and the same
  // rule's advisory finding said "3 of 3 … (at most 1)". The grant lowered the count: the default counts 4.
  it('is maxShare of the granted count, and the rule finds nothing to say', () => {
    const pack = makePack({ 'owner-quota': 'mandatory', 'max-disruption': 'advisory' });
    pack.rules.get('owner-quota')!.config.limits = { 'team-a': { vms: 4 } };
    pack.rules.get('max-disruption')!.config.maxShare = 0.5;
    const web = makeFleet('web', { count: 8, owner: 'team-a', image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] } });
    const rows = [0, 1, 2].map((i) => vmRow(web, i, { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old' }));
    const p = computePlan({
      stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'])]),
      pack,
      fleets: [web],
      record: rows,
      fleetVersions: {},
      options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
      policy: defaultPolicy,
      id: 'q',
    });
    expect(p.policy.grants.map((g) => g.granted)).toEqual([4]);
    expect(p.rollouts?.[0]).toMatchObject({ maxUnavailable: 2, reason: expect.stringMatching(/^maxUnavailable 2 of 4 from max-disruption maxShare 0.5/) });
    expect(p.policy.violations).toEqual([]);
  });
});

describe('members whose change a violation vetoes serve on', () => {
  // web/0 and web/2 live in miami, which placement.dataCenters no longer allows: their image change is vetoed
  // (a mandatory placement violation, "members never move"), so they stay Running as they are. The waves and the
  // rule did not count them at all: the rollout said "maxUnavailable 1 of 3" while max-disruption said "1 of 1
  // Running members of fleet web would leave Running at once … (at most 0)", and a mandatory rule lowered
  // maxUnavailable to 0.
  it.each(['advisory', 'mandatory'] as const)('%s max-disruption counts the 3 Running members of web', async (enforcement) => {
    const base = (await loadPack(DEFAULT_PACK_DIR)).pack!;
    const pack = withDisruption(base, enforcement, 0.5);
    const web = makeFleet('web', { count: 3, image: 'ubuntu-24.04', placement: { dataCenters: ['richmond'] } });
    const rows = ['miami', 'richmond', 'miami'].map((dc, i) => vmRow(web, i, { dataCenter: dc, image: 'ubuntu-22.04', specHash: 'old' }));
    const p = computePlan({
      // richmond is full: web/1 goes delete-before-create, out of service.
      stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general']), dataCenter('richmond', 37.54, -77.43, ['general'], { vms: 1 })]),
      pack,
      fleets: [web],
      record: rows,
      fleetVersions: {},
      options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
      policy: defaultPolicy,
      id: 'p',
    });
    expect(p.changes.map((c) => `${c.address} ${c.action} wave ${c.wave}`)).toEqual(['web/1 replace wave 1']);
    expect(p.rollouts?.[0]).toMatchObject({ maxUnavailable: 1, waves: [{ wave: 1, members: ['web/1'], unavailable: 1, surge: 0 }] });
    expect(p.policy.violations.map((v) => `${v.policy} ${v.address}`)).toEqual(['placement web/0', 'placement web/2']);
  });
});

describe('a rollout blocked by a deposed old VM that holds its data center\'s last place', () => {
  // The plan deletes the deposed VM, but its place counted as taken when the surge VMs were planned, so the plan
  // was blocked with "the data center has no room for a surge VM" and a hint that did not name the deposed VM nor
  // the targeted apply that deletes it first (test/rollout.cli.test.ts runs that apply).
  const plan = (count: number, rows: (web: ReturnType<typeof makeFleet>) => VmRow[], vms: number, targets: string[] = []) => {
    const web = makeFleet('web', { count, image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] }, rollout: { maxUnavailable: 0, maxSurge: 1 } });
    return computePlan({
      stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'], { vms }), dataCenter('richmond', 37.54, -77.44, ['general'], { vms: 50 })]),
      pack: makePack({ 'datacenter-capacity': 'mandatory' }),
      fleets: [web],
      record: rows(web),
      fleetVersions: {},
      options: { targets, excludes: [], allowDestroy: [], refresh: false },
      policy: defaultPolicy,
      id: 'p',
    });
  };
  const old = (web: ReturnType<typeof makeFleet>, i: number, over: Partial<VmRow> = {}) => vmRow(web, i, { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old', ...over });
  const base = "Allow rollout.maxUnavailable at least 1 in fleet web's spec or free capacity or quota for a surge VM.";
  it.each([
    {
      name: 'one deposed VM beside a member whose new VM runs',
      count: 3,
      vms: 4,
      rows: (web: ReturnType<typeof makeFleet>) => [old(web, 0, { id: 'old-0', deposed: true }), vmRow(web, 0, { dataCenter: 'miami' }), old(web, 1), old(web, 2)],
      hint: `${base} The deposed old VM of web/0 still takes a place in miami until this plan's apply deletes it: run fleet apply --target web/0 first (review it with fleet plan --target web/0), which deletes it, then plan again.`,
    },
    {
      name: 'two deposed VMs',
      count: 4,
      vms: 6,
      rows: (web: ReturnType<typeof makeFleet>) => [old(web, 0, { id: 'old-0', deposed: true }), vmRow(web, 0, { dataCenter: 'miami' }), old(web, 1, { id: 'old-1', deposed: true }), vmRow(web, 1, { dataCenter: 'miami' }), old(web, 2), old(web, 3)],
      hint: `${base} The deposed old VMs of web/0, web/1 still take places in miami until this plan's apply deletes them: run fleet apply --target web/0 --target web/1 first (review it with fleet plan --target web/0 --target web/1), which deletes them, then plan again.`,
    },
    {
      name: 'a deposed VM in another data center than the full one: no deposed sentence',
      count: 3,
      vms: 3,
      rows: (web: ReturnType<typeof makeFleet>) => [old(web, 0, { id: 'old-0', deposed: true, dataCenter: 'richmond' }), vmRow(web, 0, { dataCenter: 'miami' }), old(web, 1), old(web, 2)],
      hint: base,
    },
  ])('$name', ({ count, vms, rows, hint }) => {
    const p = plan(count, rows, vms);
    expect(p.blocked).toBe(true);
    expect(p.policy.violations.filter((v) => v.policy === 'rollout').map((v) => v.hint)).toEqual([hint]);
  });

  it('the targeted plan the hint names deletes the deposed VM, and the full plan after it is not blocked', () => {
    const rows = (web: ReturnType<typeof makeFleet>) => [old(web, 0, { id: 'old-0', deposed: true }), vmRow(web, 0, { dataCenter: 'miami' }), old(web, 1), old(web, 2)];
    const targeted = plan(3, rows, 4, ['web/0']);
    expect(targeted.blocked).toBe(false);
    expect(targeted.changes.map((c) => `${c.address} ${c.action}${c.deposed ? ' (deposed)' : ''}`)).toEqual(['web/0 delete (deposed)']);
    const after = plan(3, (web) => rows(web).filter((r) => !r.deposed), 4);
    expect(after.blocked).toBe(false);
    expect(after.policy.violations).toEqual([]);
    expect(after.rollouts?.[0].waves.map((w) => w.surge)).toEqual([1, 1]);
  });
});

describe('--target of one member under a mandatory max-disruption', () => {
  // --target web/3 leaves the fleet's other members out of the plan, and the waves and the rule then counted
  // its Running members as 1: "1 of 1 Running members of fleet web would leave Running" blocked the canary
  // replace of one member of 12 that the same rule allows fleet-wide in waves of 3.
  it.each([
    { name: 'an image change of web/3', targets: ['web/3'], replace: [] as string[], changed: true },
    { name: '--replace web/3 with --target web/3', targets: ['web/3'], replace: ['web/3'], changed: false },
  ])('$name: the other 11 Running members count, and web/3 goes out of service in wave 1', async ({ targets, replace, changed }) => {
    const base = (await loadPack(DEFAULT_PACK_DIR)).pack!;
    const pack = withDisruption(base, 'mandatory', 0.25);
    const web = makeFleet('web', { count: 12, image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] } });
    const rows = Array.from({ length: 12 }, (_, i) => vmRow(web, i, { dataCenter: 'miami', ...(changed ? { image: 'ubuntu-22.04', specHash: 'old' } : {}) }));
    const p = computePlan({
      // miami is full: no room for a surge VM.
      stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'], { vms: 12 })]),
      pack,
      fleets: [web],
      record: rows,
      fleetVersions: {},
      options: { targets, excludes: [], allowDestroy: [], refresh: false, replace },
      policy: defaultPolicy,
      id: 'p',
    });
    expect(p.policy.violations).toEqual([]);
    expect(p.blocked).toBe(false);
    expect(p.changes.map((c) => `${c.address} ${c.action} wave ${c.wave} ${c.replaceOrder}`)).toEqual(['web/3 replace wave 1 delete-before-create']);
    expect(p.rollouts?.[0]).toMatchObject({ maxUnavailable: 3, maxSurge: 0 });
  });
});

describe('members out of service because they are missing (no VM for the address)', () => {
  // A lost member refilled by a create (a delete-before-create replace whose new VM was refused after its old one
  // was deleted, or a crash) is out of service, and so is a member a scale-up adds until it runs: as in
  // Kubernetes (minimum available = count - maxUnavailable), they count against maxUnavailable. Wave 1 took its
  // full maxUnavailable beside their creates: more than maxUnavailable members out of service at once.
  const plan = (count: number, present: number[], rollout: RolloutSpec) => {
    const web = makeFleet('web', { count, image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] }, rollout });
    return computePlan({
      stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'])]),
      pack: makePack(),
      fleets: [web],
      record: present.map((i) => vmRow(web, i, { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old' })),
      fleetVersions: {},
      options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
      policy: noRulesPolicy,
      id: 'p',
    });
  };
  const shape = (p: PlanDocument) => p.rollouts?.[0].waves.map((w) => `${w.wave}: [${w.members.join(' ')}] back [${(w.returning ?? []).join(' ')}]`);

  it.each([
    {
      name: 'a lost member with maxUnavailable 1: its refill is wave 1 alone',
      count: 4, present: [0, 1, 3], rollout: { maxUnavailable: 1 },
      want: ['1: [] back [web/2]', '2: [web/0] back []', '3: [web/1] back []', '4: [web/3] back []'],
    },
    {
      name: 'a lost member with maxUnavailable 2: wave 1 takes out one beside its refill',
      count: 6, present: [0, 1, 2, 4, 5], rollout: { maxUnavailable: 2 },
      want: ['1: [web/0] back [web/3]', '2: [web/1 web/2] back []', '3: [web/4 web/5] back []'],
    },
    {
      name: 'a scale-up beside the change: the new members hold wave 1 (maxUnavailable 50% of 6)',
      count: 6, present: [0, 1, 2, 3], rollout: { maxUnavailable: '50%' },
      want: ['1: [web/0] back [web/4 web/5]', '2: [web/1 web/2 web/3] back []'],
    },
    {
      name: 'more members missing than maxUnavailable: wave 1 is the refills only',
      count: 5, present: [0, 4], rollout: { maxUnavailable: 1 },
      want: ['1: [] back [web/1 web/2 web/3]', '2: [web/0] back []', '3: [web/4] back []'],
    },
    {
      name: 'a surge VM keeps its member serving: wave 1 still replaces by one beside the refill',
      count: 4, present: [0, 1, 3], rollout: { maxUnavailable: 1, maxSurge: 1 },
      want: ['1: [web/0] back [web/2]', '2: [web/1 web/3] back []'],
    },
  ] as { name: string; count: number; present: number[]; rollout: RolloutSpec; want: string[] }[])('$name', ({ count, present, rollout, want }) => {
    const p = plan(count, present, rollout);
    expect(p.blocked).toBe(false);
    expect(shape(p)).toEqual(want);
    // The creates run in wave 1, not beside it: apply starts wave 2 only once they are Running.
    for (const c of p.changes.filter((x) => x.action === 'create')) expect(c.wave, c.address).toBe(1);
  });

  // A member out of service that the plan leaves so (--target names others) holds a place of every wave; when it
  // holds every place maxUnavailable allows, the plan says so rather than take out one more.
  it.each([
    { name: 'maxUnavailable 2: web/3 goes out alone', rollout: { maxUnavailable: 2 }, want: ['1: [web/3] back []'], violation: undefined },
    {
      name: 'maxUnavailable 1: nothing may go out',
      rollout: { maxUnavailable: 1 },
      want: [],
      violation: /^1 change of fleet web \(web\/3\) cannot be rolled out: 1 of its 6 members is out of Running and this plan does not bring it back, and spec\.rollout\.maxUnavailable 1 \(1\) keeps at least 5 of 6 in Running\.$/,
      // It said "or free capacity or quota for a surge VM", of no use with no maxSurge: the next case is what helps.
      hint: "Plan the members out of Running too (without --target, or with their addresses), so that they come back in the first wave, or allow a larger rollout.maxUnavailable in fleet web's spec, or give fleet web's spec a rollout.maxSurge, so that a replace creates its new VM before the old one goes.",
    },
    { name: 'maxUnavailable 1 and maxSurge 1: web/3 replaced by a surge VM', rollout: { maxUnavailable: 1, maxSurge: 1 }, want: ['1: [web/3] back []'], violation: undefined },
  ] as { name: string; rollout: RolloutSpec; want: string[]; violation?: RegExp; hint?: string }[])('--target web/3 beside web/5 in BootFailed, $name', ({ rollout, want, violation, hint }) => {
    const web = makeFleet('web', { count: 6, image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] }, rollout });
    const p = computePlan({
      stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'])]),
      pack: makePack(),
      fleets: [web],
      record: Array.from({ length: 6 }, (_, i) => vmRow(web, i, { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old', state: i === 5 ? 'BootFailed' : 'Running' })),
      fleetVersions: {},
      options: { targets: ['web/3'], excludes: [], allowDestroy: [], refresh: false },
      policy: noRulesPolicy,
      id: 'p',
    });
    expect(shape(p)).toEqual(want);
    expect(p.blocked).toBe(violation !== undefined);
    expect(p.policy.violations.map((v) => `${v.policy} ${v.address} ${v.message}`)).toEqual(violation ? [expect.stringMatching(new RegExp(`^rollout web ${violation.source.slice(1)}`))] : []);
    if (hint) expect(p.policy.violations[0].hint).toBe(hint);
    if (!violation) expect(p.changes.find((c) => c.address === 'web/3')?.replaceOrder).toBe(rollout.maxSurge ? 'create-before-delete' : 'delete-before-create');
  });
});

describe('members serving throughout a rollout (missing ones count as out)', () => {
  // Kubernetes' bar: at least count - maxUnavailable members serve at every point of a rollout, counting every
  // member of the count with no Running VM (missing, being created, in a failure state) as out. A wave that takes
  // out any serving member must keep that many; the refills of wave 1 may themselves be more (they are out
  // already), and then wave 1 takes out none.
  it('no wave that takes a member out leaves fewer than count - maxUnavailable serving, and each member is in one wave, over 500 generated fleets', () => {
    const next = rng(71);
    const int = (n: number) => Math.floor(next() * n);
    const amount = (max: number): RolloutSpec['maxUnavailable'] => (next() < 0.5 ? int(max + 1) : (`${int(101)}%` as RolloutSpec['maxUnavailable']));
    for (let k = 0; k < 500; k++) {
      const existing = 1 + int(20);
      // Some fleets grow while they roll out: their new members are out until they run.
      const count = existing + (next() < 0.3 ? 1 + int(5) : 0);
      const rollout: RolloutSpec = { maxUnavailable: amount(count) };
      if (next() < 0.5) rollout.maxSurge = amount(3);
      if (resolveAmount(rollout.maxUnavailable!, count, 'down') === 0 && !rollout.maxSurge) rollout.maxSurge = 1;
      const web = makeFleet('web', { count, image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] }, rollout });
      // Some members are lost (no VM), some failed, the rest Running on the old image or already on the new one.
      const rows: VmRow[] = [];
      for (let i = 0; i < existing; i++) {
        const r = next();
        if (r < 0.15) continue;
        const state = r < 0.25 ? 'BootFailed' : 'Running';
        rows.push(next() < 0.2 ? vmRow(web, i, { dataCenter: 'miami', state }) : vmRow(web, i, { dataCenter: 'miami', state, image: 'ubuntu-22.04', specHash: 'old' }));
      }
      const p = computePlan({
        stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'], { vms: count + 1 + int(4) })]),
        pack: makePack({ 'datacenter-capacity': 'mandatory' }),
        fleets: [web],
        record: rows,
        fleetVersions: {},
        options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
        policy: noRulesPolicy,
        id: `m${k}`,
      });
      const label = `case ${k}: ${rows.length} of ${count} VMs (${rows.filter((r) => r.state !== 'Running').length} failed), ${JSON.stringify(rollout)}`;
      const r = p.rollouts?.[0];
      const disruptive = p.changes.filter((c) => c.from === 'Running' && c.action !== 'create' && c.action !== 'delete');
      if (!r) {
        expect(disruptive, label).toEqual([]);
        continue;
      }
      expect(p.blocked, label).toBe(false);
      const serving0 = rows.filter((x) => x.state === 'Running').length;
      const seen = new Map<string, number>();
      for (const w of r.waves) {
        const members = p.changes.filter((c) => c.wave === w.wave && !(w.returning ?? []).includes(c.address));
        const out = members.filter((c) => !(c.action === 'replace' && c.replaceOrder === 'create-before-delete')).length;
        // Before wave 1 only the Running members serve; from wave 2 on, every member brought back in wave 1 does too.
        const servingBefore = w.wave === 1 ? serving0 : count;
        if (out > 0) expect(servingBefore - out, `${label}, wave ${w.wave}`).toBeGreaterThanOrEqual(count - r.maxUnavailable);
        expect(w.surge, label).toBeLessThanOrEqual(r.maxSurge);
        for (const a of [...w.members, ...(w.returning ?? [])]) seen.set(a, (seen.get(a) ?? 0) + 1);
      }
      // Every member the plan changes, or creates, is in exactly one wave.
      const changed = p.changes.filter((c) => c.action !== 'delete' && c.action !== 'noop').map((c) => c.address).sort();
      expect([...seen.keys()].sort(), label).toEqual(changed);
      expect([...seen.values()].every((n) => n === 1), label).toBe(true);
    }
  });
});

describe('both maxUnavailable and maxSurge resolving to 0', () => {
  // `maxUnavailable: "1%"` of 3 members with `maxSurge: 0` resolves both to 0. The planner used a surge VM anyway
  // (one member at a time, its new VM first), though the spec said no extra VM: often because the owner quota has
  // no room for one. Under a mandatory max-disruption it even kept maxUnavailable 0 when the rule allowed 1, so a
  // full quota blocked the plan. With a maxSurge in the spec, Kubernetes' Deployment rule applies: maxUnavailable 1,
  // maxSurge stays 0; a mandatory max-disruption that allows none out vetoes that, at plan time. With no maxSurge in
  // the spec, one member per wave by a surge VM where there is room stays (Kubernetes' default maxSurge, 25% rounded
  // up, gives a small fleet 1): a one-VM fleet's image change keeps it serving.
  const k8sReason = /maxUnavailable and maxSurge both resolve to 0: maxUnavailable 1, as Kubernetes does \(maxSurge stays 0, no extra VM\)/;
  const surgeReason = /one member at a time, replaced by a surge VM where there is room/;
  const cases: {
    name: string;
    count?: number;
    rollout: RolloutSpec;
    rule?: Enforcement;
    maxShare?: number;
    /** The owner's quota leaves no room for an extra VM. */
    quotaFull?: boolean;
    want: {
      blocked: boolean;
      maxUnavailable: number;
      maxSurge: number;
      /** Each wave's [members, out of service, surge VMs]. */
      waves?: [number, number, number][];
      reason?: RegExp;
      violation?: { message: RegExp; reason: RegExp; hint: string };
    };
  }[] = [
    // The spec sets maxSurge (0, or an amount resolving to 0): Kubernetes' rule.
    { name: '1% of 3 and maxSurge 0, max-disruption disabled', rollout: { maxUnavailable: '1%', maxSurge: 0 }, want: { blocked: false, maxUnavailable: 1, maxSurge: 0, waves: [[1, 1, 0], [1, 1, 0], [1, 1, 0]], reason: k8sReason } },
    { name: '1% of 3 and maxSurge 0%, advisory max-disruption', rollout: { maxUnavailable: '1%', maxSurge: '0%' }, rule: 'advisory', maxShare: 0.5, want: { blocked: false, maxUnavailable: 1, maxSurge: 0, waves: [[1, 1, 0], [1, 1, 0], [1, 1, 0]], reason: k8sReason } },
    { name: '1% of 3 and maxSurge 0, mandatory max-disruption allowing 1, owner quota full', rollout: { maxUnavailable: '1%', maxSurge: 0 }, rule: 'mandatory', maxShare: 0.5, quotaFull: true, want: { blocked: false, maxUnavailable: 1, maxSurge: 0, waves: [[1, 1, 0], [1, 1, 0], [1, 1, 0]], reason: k8sReason } },
    { name: 'maxSurge 0, advisory max-disruption rounding to 0: one member at a time all the same', rollout: { maxSurge: 0 }, rule: 'advisory', maxShare: 0.2, want: { blocked: false, maxUnavailable: 1, maxSurge: 0, waves: [[1, 1, 0], [1, 1, 0], [1, 1, 0]], reason: k8sReason } },
    {
      name: '1% of 3 and maxSurge 0, mandatory max-disruption allowing none: vetoed at plan time',
      rollout: { maxUnavailable: '1%', maxSurge: 0 },
      rule: 'mandatory',
      maxShare: 0.2,
      want: {
        blocked: true,
        maxUnavailable: 0,
        maxSurge: 0,
        violation: {
          message: /maxUnavailable and maxSurge both resolve to 0 for its 3 members, and the maxUnavailable 1 Kubernetes' rule then uses is vetoed: max-disruption allows no member out of Running at once\./,
          reason: /vetoed by mandatory max-disruption \(maxShare 0\.2 of 3 Running allows none out\)/,
          hint: "Raise max-disruption.maxShare in the stack's policyPack.config or give fleet web's spec a rollout.maxSurge of at least 1, so that a replace creates its new VM before the old one goes (with room and quota for it).",
        },
      },
    },
    // No maxSurge in the spec: one member per wave, by a surge VM where there is room (as before Kubernetes' rule).
    { name: 'one member, no rollout settings, the default advisory max-disruption: replaced by a surge VM first', count: 1, rollout: {}, rule: 'advisory', maxShare: 0.5, want: { blocked: false, maxUnavailable: 1, maxSurge: 1, waves: [[1, 0, 1]], reason: surgeReason } },
    // The owner quota lowers the surge VM to 0 (the plan's maxSurge says so): advisory, each member is taken out in turn.
    { name: 'no rollout settings, advisory max-disruption rounding to 0, owner quota full: taken out one at a time', rollout: {}, rule: 'advisory', maxShare: 0.2, quotaFull: true, want: { blocked: false, maxUnavailable: 1, maxSurge: 0, waves: [[1, 1, 0], [1, 1, 0], [1, 1, 0]], reason: surgeReason } },
    {
      name: 'one member, no rollout settings, a mandatory max-disruption, owner quota full: blocked',
      count: 1,
      rollout: {},
      rule: 'mandatory',
      maxShare: 0.5,
      quotaFull: true,
      want: {
        blocked: true,
        maxUnavailable: 0,
        maxSurge: 0,
        violation: {
          message: /^1 change of fleet web \(web\/0\) cannot be rolled out: max-disruption allows no member out of Running at once and the owner quota leaves no room for a surge VM\.$/,
          reason: /no member may leave Running: replacements are created first, one at a time/,
          hint: "Raise max-disruption.maxShare in the stack's policyPack.config or free capacity or quota for a surge VM.",
        },
      },
    },
  ];
  it.each(cases)('$name', ({ count = 3, rollout, rule: r, maxShare, quotaFull, want }) => {
    const pack = makePack({ 'owner-quota': 'mandatory', ...(r ? { 'max-disruption': r } : {}) });
    pack.rules.get('owner-quota')!.config.limits = { 'team-a': { vms: quotaFull ? count : 100 } };
    if (r) pack.rules.get('max-disruption')!.config.maxShare = maxShare;
    const web = makeFleet('web', { count, owner: 'team-a', image: 'ubuntu-24.04', placement: { dataCenters: ['miami'] }, rollout });
    const rows = Array.from({ length: count }, (_, i) => vmRow(web, i, { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old' }));
    const p = computePlan({
      stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'])]),
      pack,
      fleets: [web],
      record: rows,
      fleetVersions: {},
      options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
      policy: defaultPolicy,
      id: 'k8s',
    });
    const ro = p.rollouts?.[0];
    expect(p.blocked).toBe(want.blocked);
    expect(ro).toMatchObject({ maxUnavailable: want.maxUnavailable, maxSurge: want.maxSurge });
    if (want.waves) {
      expect(ro!.waves.map((w) => [w.members.length, w.unavailable, w.surge])).toEqual(want.waves);
      // A surge VM is exactly a replace whose new VM is created first; the rest take their old VM out first.
      const surged = want.waves.reduce((n, w) => n + w[2], 0);
      expect(p.changes.filter((c) => c.replaceOrder === 'create-before-delete')).toHaveLength(surged);
      expect(p.changes.filter((c) => c.replaceOrder === 'delete-before-create')).toHaveLength(count - surged);
      // The plan says why.
      expect(ro!.reason).toMatch(want.reason!);
      expect(p.policy.violations.filter((v) => v.level === 'mandatory')).toEqual([]);
    }
    if (want.violation) {
      expect(ro!.waves).toEqual([]);
      expect(ro!.reason).toMatch(want.violation.reason);
      const v = p.policy.violations.filter((x) => x.level === 'mandatory');
      expect(v).toEqual([{ policy: 'max-disruption', level: 'mandatory', address: 'web', message: expect.stringMatching(want.violation.message), hint: want.violation.hint }]);
    }
  });
});
