// Rollout plans over generated stacks (adversarial review, docs/rollouts.md): fleets of 0 to 200 members,
// settings as counts and percentages (0, 1, 1% of a few, 100%, counts beyond the fleet), members already
// failed, stopped, half-replaced, deposed or missing, counts changed beside the image, several fleets sharing
// one data center whose capacity is short, and the max-disruption rule disabled, advisory or mandatory. The
// real planner makes each plan; the waves are then played as apply plays them when every member succeeds.
// What must hold for every case:
// - no wave that takes a member out leaves more than maxUnavailable members (those out already counted) out
//   of Running: the spec's (as integer arithmetic rounds it), or the rule's default share;
// - no wave has more VMs beyond the fleet's than maxSurge (its surge VMs, and in wave 1 the members brought
//   back beside a serving deposed VM, and the replaces with no wave that create their new VM first);
// - the surge VMs of every fleet at once, beside the plan's creates, fit the data center's free VMs;
// - each member is in one wave at most, every change that takes a member out has a wave unless the plan is
//   blocked, and every member ends on the fleet's spec;
// - no planned path passes a failure state;
// - the plan is deterministic: the same input, or its record rows or fleets in another order, gives the same bytes.
import { describe, expect, it } from 'vitest';
import { resolveAmount, type Enforcement, type RolloutAmount, type RolloutSpec } from '../model/index.ts';
import { seededRandom } from '../model/seeded-random.ts';
import { computePlan } from './planner.ts';
import { defaultPolicy } from './policy-default.ts';
import { dataCenter, makeFleet, makeStack, vmRow } from './test-support.ts';
import { loadPack } from '../policy/load.ts';
import { DEFAULT_PACK_DIR } from '../policy/testdata/fixtures.ts';
import type { PlanDocument } from './types.ts';
import type { VmRow } from '../record/types.ts';
import type { LoadedFleet } from '../spec/types.ts';
import type { LoadedPack } from '../policy/types.ts';

const NEW = { image: 'ubuntu-24.04', size: { cpu: 1, memoryGiB: 2, diskGiB: 10 } };
const FAILURE = new Set(['CreateFailed', 'BootFailed']);

/** The default pack (its lifecycle, whose paths avoid failure states) with max-disruption at `enforcement` and `maxShare`. */
function packWith(base: LoadedPack, enforcement: Enforcement | 'disabled', maxShare: number): LoadedPack {
  const rules = new Map(base.rules);
  const rule = rules.get('max-disruption')!;
  rules.set('max-disruption', { ...rule, enforcement, config: { ...rule.config, maxShare } });
  return { ...base, rules };
}

/** A rollout amount, biased to the edges: 0, 1, 1% of a few, 100%, counts beyond the fleet. */
function amount(r: ReturnType<typeof seededRandom>, count: number): RolloutAmount | undefined {
  switch (r.int(8)) {
    case 0:
      return undefined;
    case 1:
      return r.pick([0, 1, 2]);
    case 2:
      return r.pick(['0%', '1%', '99%', '100%'] as RolloutAmount[]);
    case 3:
      return r.pick([count, count + 1, 100_000]);
    case 4:
      return `${r.int(101)}%` as RolloutAmount;
    default:
      return r.int(Math.max(2, Math.ceil(count / 2)));
  }
}

const isZero = (a: RolloutAmount | undefined) => a === 0 || a === '0%';

function shuffled<T>(r: ReturnType<typeof seededRandom>, list: readonly T[]): T[] {
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = r.int(i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

interface Case {
  label: string;
  fleets: LoadedFleet[];
  rows: VmRow[];
  pack: LoadedPack;
  rule: { enforcement: Enforcement | 'disabled'; maxShare: number };
  vms: number;
}

function generate(r: ReturnType<typeof seededRandom>, k: number, base: LoadedPack): Case {
  const rule = { enforcement: r.pick(['disabled', 'disabled', 'advisory', 'mandatory'] as const), maxShare: r.pick([0, 0.1, 0.25, 1 / 3, 0.5, 1]) };
  const fleets: LoadedFleet[] = [];
  const rows: VmRow[] = [];
  let seq = 0;
  const nFleets = 1 + r.int(3);
  for (let j = 0; j < nFleets; j++) {
    const size = r.chance(0.5) ? r.int(13) : r.chance(0.6) ? 13 + r.int(48) : 61 + r.int(140);
    const count = Math.min(200, size);
    let rollout: RolloutSpec = { maxUnavailable: amount(r, count), maxSurge: amount(r, count), failureThreshold: r.chance(0.5) ? undefined : r.pick([1, 2, '10%', '50%', 1000] as RolloutAmount[]) };
    // What the loader refuses (spec.rollout-invalid) never reaches the planner.
    if (isZero(rollout.maxUnavailable) && (rollout.maxSurge === undefined || isZero(rollout.maxSurge))) rollout = { ...rollout, maxSurge: 1 };
    rollout = Object.fromEntries(Object.entries(rollout).filter(([, v]) => v !== undefined));
    const f = makeFleet(`f${j}`, { count, ...NEW, owner: r.pick(['team-a', 'team-b']), placement: { dataCenters: ['miami'] }, rollout });
    fleets.push(f);
    // The record: the count before the change (up or down a little, or a lot), each member in one of the states a
    // stopped, killed or half-finished rollout leaves.
    const before = Math.max(0, r.chance(0.6) ? count : count + r.between(-4, 4));
    const rollback = r.chance(0.25);
    for (let i = 0; i < before; i++) {
      const old = { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old', size: NEW.size, id: `vm-${++seq}` };
      // A quarter of the fleets are a rollback: most members on the spec already, the failed ones on another image.
      const kind = r.chance(0.7) ? (rollback ? 'same' : 'old') : r.pick(['same', 'resize', 'bootFailed', 'createFailed', 'off', 'offNew', 'half', 'deposed', 'leftover', 'missing', 'starting']);
      if (kind === 'old') rows.push(vmRow(f, i, old));
      if (kind === 'same') rows.push(vmRow(f, i, { dataCenter: 'miami', id: `vm-${++seq}` }));
      if (kind === 'resize') rows.push(vmRow(f, i, { dataCenter: 'miami', size: { cpu: 1, memoryGiB: 1, diskGiB: 10 }, specHash: 'small', id: `vm-${++seq}` }));
      if (kind === 'bootFailed') rows.push(vmRow(f, i, { dataCenter: 'miami', state: 'BootFailed', id: `vm-${++seq}` }));
      if (kind === 'createFailed') rows.push(vmRow(f, i, { ...old, state: 'CreateFailed' }));
      if (rollback && kind === 'off') rows.push(vmRow(f, i, { ...old, specHash: 'rhel', image: 'rhel-9', state: r.pick(['PoweredOff', 'PoweredOn', 'ShuttingDown']) }));
      if (kind === 'off' && !rollback) rows.push(vmRow(f, i, { ...old, state: 'PoweredOff' }));
      if (kind === 'offNew') rows.push(vmRow(f, i, { dataCenter: 'miami', state: 'PoweredOff', id: `vm-${++seq}` }));
      if (kind === 'half') rows.push(vmRow(f, i, { ...old, state: 'ShuttingDown' }));
      if (kind === 'starting') rows.push(vmRow(f, i, { dataCenter: 'miami', state: 'Starting', id: `vm-${++seq}` }));
      if (kind === 'leftover') rows.push(vmRow(f, i, { ...old, deposed: true, desiredState: 'Deleted', state: 'ShuttingDown' }), vmRow(f, i, { dataCenter: 'miami', id: `vm-${++seq}` }));
      if (kind === 'deposed') rows.push(vmRow(f, i, { ...old, deposed: true, desiredState: 'Deleted' }), vmRow(f, i, { dataCenter: 'miami', state: 'BootFailed', id: `vm-${++seq}` }));
    }
  }
  // The data center: room for what the fleets want, or a little less, or a little more.
  const want = fleets.reduce((n, f) => n + f.count, 0);
  const vms = r.chance(0.3) ? 10_000 : Math.max(rows.length, want) + r.int(6) - (r.chance(0.2) ? r.int(3) : 0);
  const label = `case ${k}: max-disruption ${rule.enforcement} ${rule.maxShare}; dc vms ${vms}; ${fleets.map((f) => `${f.name} (${f.owner}) count ${f.count} ${JSON.stringify(f.rollout)}`).join('; ')}`;
  return { label, fleets, rows, pack: packWith(base, rule.enforcement, rule.maxShare), rule, vms };
}

function planOf(c: Case, rows: readonly VmRow[] = c.rows, fleets: readonly LoadedFleet[] = c.fleets): PlanDocument {
  return computePlan({
    stack: makeStack([dataCenter('miami', 25.76, -80.19, ['general'], { vms: c.vms })]),
    pack: c.pack,
    fleets: [...fleets],
    record: [...rows],
    fleetVersions: {},
    options: { targets: [], excludes: [], allowDestroy: [], refresh: false },
    policy: defaultPolicy,
    id: 'p',
  });
}

/**
 * The fleet's bounds as docs/rollouts.md defines them, independently of engine/plan/waves.ts: `members` as
 * granted, `serving` its VMs Running now (deposed ones too), `forGood` those the plan deletes for good.
 */
function bounds(c: Case, f: LoadedFleet, members: number, serving: number, forGood: number) {
  const { enforcement, maxShare } = c.rule;
  const r = f.rollout;
  const share = Math.floor(maxShare * serving + 1e-9);
  const allowed = forGood <= share ? share - forGood : share;
  let mu: number;
  if (r.maxUnavailable !== undefined) mu = resolveAmount(r.maxUnavailable, members, 'down');
  else if (enforcement === 'disabled') mu = members;
  else {
    mu = Math.floor(maxShare * members + 1e-9);
    if (enforcement === 'advisory' && forGood > 0 && forGood <= share) mu = Math.min(mu, share - forGood);
  }
  if (enforcement === 'mandatory') mu = Math.min(mu, allowed);
  let ms = r.maxSurge !== undefined ? resolveAmount(r.maxSurge, members, 'up') : 0;
  // Both 0 with no maxSurge in the spec: one member per wave, by a surge VM where there is room (advisory: or taken out).
  const oneAtATime = mu === 0 && ms === 0 && r.maxSurge === undefined;
  if (oneAtATime) [mu, ms] = [enforcement === 'mandatory' ? 0 : 1, 1];
  // Both 0 with a maxSurge in the spec: Kubernetes' rule, maxUnavailable 1 and no surge VM, unless a mandatory rule
  // allows none out (vetoed).
  else if (mu === 0 && ms === 0 && (enforcement !== 'mandatory' || allowed >= 1)) mu = 1;
  return { mu, ms, oneAtATime };
}

describe('rollout plans over generated stacks', () => {
  it('keep every property, over 400 generated cases', { timeout: 120_000 }, async () => {
    const base = (await loadPack(DEFAULT_PACK_DIR)).pack!;
    const r = seededRandom(20261207);
    const counts = { cases: 0, rollouts: 0, waves: 0, blocked: 0, oneAtATime: 0, bothZero: 0, big: 0, returning: 0, surged: 0, unwavedReplaces: 0 };
    const broke: string[] = [];
    for (let k = 0; k < 400; k++) {
      const c = generate(r, k, base);
      counts.cases++;
      const p = planOf(c);
      const bytes = JSON.stringify({ ...p, createdAt: '' });
      // Deterministic: the same input again, and the record or the fleets in another order.
      const again = JSON.stringify({ ...planOf(c), createdAt: '' });
      if (again !== bytes) broke.push(`${c.label}: a second plan of the same input differs`);
      if (JSON.stringify({ ...planOf(c, shuffled(r, c.rows)), createdAt: '' }) !== bytes) broke.push(`${c.label}: the record in another order gives another plan`);
      if (JSON.stringify({ ...planOf(c, c.rows, [...c.fleets].reverse()), createdAt: '' }) !== bytes) broke.push(`${c.label}: the fleets in another order give another plan`);
      if (p.blocked) counts.blocked++;
      const lc = c.pack.lifecycle;
      for (const ch of p.changes) {
        const through = [...ch.path.slice(1), ...(ch.oldPath ?? []).slice(1)].filter((s) => FAILURE.has(s));
        if (through.length > 0 && lc.failure.length > 0) broke.push(`${c.label}: ${ch.address} ${ch.action} passes ${through.join(', ')}`);
      }
      for (const f of c.fleets) {
        const ro = p.rollouts?.find((x) => x.fleet === f.name);
        const mine = p.changes.filter((x) => x.fleet === f.name);
        const live = c.rows.filter((x) => x.fleet === f.name && !x.deposed);
        // The members the plan keeps or creates: a short data center may grant fewer than count, and the addresses
        // a short grant leaves out are not members (docs/rollouts.md).
        const memberSet = new Set([...live.filter((x) => x.index < f.count).map((x) => x.index), ...mine.filter((x) => x.action === 'create').map((x) => x.index)]);
        const members = Math.min(f.count, memberSet.size);
        // Members leaving Running for good: deletes of Running VMs, but not a deposed old VM's when its member's own
        // VM serves on or is brought back (it hands the member over).
        const goes = new Set(mine.filter((x) => !x.deposed && (x.action === 'delete' || x.to !== 'Running')).map((x) => x.index));
        const forGood = mine.filter((x) => x.action === 'delete' && x.from === 'Running' && (!x.deposed || goes.has(x.index) || x.index >= f.count)).length;
        // Every member the plan has ends on the spec (unless the plan is blocked).
        if (!p.blocked) {
          for (const ch of mine) {
            if (ch.deposed || ch.action === 'delete' || ch.index >= f.count) continue;
            const row = live.find((x) => x.index === ch.index);
            const onSpec = ch.action !== 'noop' || (row?.specHash === f.specHash && row.state === 'Running');
            if (!onSpec || ch.to !== 'Running') broke.push(`${c.label}: ${ch.address} ${ch.action} to ${ch.to} does not end Running on the spec`);
          }
        }
        // A replace with no wave runs at once, beside wave 1: one whose new VM comes first is a VM beyond the
        // fleet's too. With rollout settings (the spec's, or the rule's) they count against maxSurge.
        const rolls = Object.keys(f.rollout).length > 0 || c.rule.enforcement !== 'disabled';
        const unwaved = mine.filter((x) => !x.deposed && x.wave === undefined && x.action === 'replace');
        const unwavedSurge = unwaved.filter((x) => x.replaceOrder === 'create-before-delete');
        if (rolls && unwaved.length > 0 && !p.blocked) counts.unwavedReplaces++;
        if (rolls && unwavedSurge.length > 0 && !p.blocked) {
          const runningVms = c.rows.filter((x) => x.fleet === f.name && x.state === 'Running').length;
          const { ms } = bounds(c, f, members, runningVms, forGood);
          const wave1 = ro?.waves[0]?.surge ?? 0;
          if (unwavedSurge.length + wave1 > ms) broke.push(`${c.label}: ${f.name} creates ${unwavedSurge.length} new VMs (${unwavedSurge.map((x) => x.address).slice(0, 4).join(', ')}) before their old ones go with no wave, beside wave 1's ${wave1} surge VMs (maxSurge ${ms})`);
        }
        if (!ro) continue;
        counts.rollouts++;
        if (f.count > 60) counts.big++;
        // Serving now: its own VM Running, or its deposed old VM Running beside it.
        const serving = new Set<number>();
        for (const x of c.rows) if (x.fleet === f.name && x.index < f.count && x.state === 'Running') serving.add(x.index);
        const runningVms = c.rows.filter((x) => x.fleet === f.name && x.state === 'Running').length;
        const { mu, ms, oneAtATime } = bounds(c, f, members, runningVms, forGood);
        if (ro.maxUnavailable > mu) broke.push(`${c.label}: ${f.name}'s plan says maxUnavailable ${ro.maxUnavailable}, beyond ${mu}`);
        if (ro.maxSurge > ms) broke.push(`${c.label}: ${f.name}'s plan says maxSurge ${ro.maxSurge}, beyond ${ms}`);
        if (/one member at a time|no member may leave/.test(ro.reason)) counts.oneAtATime++;
        if (/both resolve to 0/.test(ro.reason)) counts.bothZero++;
        const seen = new Set<string>();
        for (const w of ro.waves) {
          counts.waves++;
          const inWave = mine.filter((x) => x.wave === w.wave && !x.deposed);
          for (const x of inWave) {
            if (seen.has(x.address)) broke.push(`${c.label}: ${x.address} in wave ${w.wave} and an earlier one`);
            seen.add(x.address);
          }
          const returning = new Set(w.returning ?? []);
          if (returning.size) counts.returning++;
          if (oneAtATime && w.members.filter((a) => !returning.has(a)).length > 1) broke.push(`${c.label}: wave ${w.wave} of ${f.name} holds ${w.members.length} members where both settings resolve to 0 and no maxSurge is set (one per wave)`);
          const surge = inWave.filter((x) => !returning.has(x.address) && x.action === 'replace' && x.replaceOrder === 'create-before-delete');
          const takenOut = inWave.filter((x) => !returning.has(x.address) && !surge.includes(x) && x.index < f.count && serving.has(x.index));
          // Out of Running as the wave runs: every member (of those the plan keeps or creates) not serving, and those it takes out.
          const outBefore = [...memberSet].filter((i) => !serving.has(i)).length;
          if (takenOut.length > 0 && outBefore + takenOut.length > mu) {
            broke.push(`${c.label}: wave ${w.wave} of ${f.name} takes out ${takenOut.map((x) => x.address).join(',')} while ${outBefore} of ${members} are out (maxUnavailable ${mu})`);
          }
          // VMs beyond the fleet's: surge VMs, members brought back beside a serving deposed VM, other deposed VMs
          // deleted beside wave 1 (they hold a surge place until gone: apply waits for them, so not counted here).
          const besideDeposed = inWave.filter((x) => returning.has(x.address) && c.rows.some((y) => y.fleet === f.name && y.index === x.index && y.deposed && y.state === 'Running'));
          if (surge.length) counts.surged++;
          if (surge.length + besideDeposed.length > Math.max(ms, besideDeposed.length)) {
            broke.push(`${c.label}: wave ${w.wave} of ${f.name} has ${surge.length} surge VMs beside ${besideDeposed.length} deposed (maxSurge ${ms})`);
          }
          for (const x of inWave) if (x.index < f.count) serving.add(x.index);
        }
        // Every change that takes a member out has a wave, unless the plan is blocked.
        for (const x of mine) {
          if (x.deposed || x.action === 'delete' || x.action === 'create' || x.from !== 'Running') continue;
          if (x.action === 'noop') continue;
          if (x.wave === undefined && !p.blocked) broke.push(`${c.label}: ${x.address} ${x.action} takes it out of Running with no wave`);
        }
      }
      // The surge VMs of every fleet at once, beside the plan's creates, fit the data center.
      if (c.vms < 10_000 && !p.blocked) {
        const kept = c.rows.length - p.changes.filter((x) => x.action === 'delete').length;
        const creates = p.changes.filter((x) => x.action === 'create').length;
        const surges = (p.rollouts ?? []).reduce((n, ro) => n + Math.max(0, ...ro.waves.map((w) => w.surge)), 0);
        if (creates + surges > 0 && kept + creates + surges > c.vms) broke.push(`${c.label}: ${kept} VMs kept, ${creates} created and ${surges} surge VMs at once exceed the data center's ${c.vms}`);
      }
    }
    expect(broke.slice(0, 10)).toEqual([]);
    // The cases reached what they meant to.
    expect(counts.rollouts).toBeGreaterThan(500);
    expect(counts.big).toBeGreaterThan(100);
    expect(counts.returning).toBeGreaterThan(50);
    expect(counts.surged).toBeGreaterThan(50);
    // Both settings resolving to 0: with no maxSurge in the spec (6 rollouts with seed 20261207) and with one (5).
    expect(counts.oneAtATime).toBeGreaterThan(3);
    expect(counts.bothZero).toBeGreaterThan(3);
    expect(counts.unwavedReplaces).toBeGreaterThan(5);
    expect(counts.blocked).toBeLessThan(counts.cases / 4);
  });
});

describe('members out of Running brought back when nothing else of their fleet rolls out', () => {
  // A rollout to rhel-9 stopped at its first wave, its members failed on the new image; the spec goes back to the
  // image the rest still run (a rollback). Nothing of the fleet leaves Running, so it had no waves, and every failed
  // member's replace created its new VM before its old one went, all at once: 2 VMs beyond a fleet of 2 with
  // maxSurge 1 (found by engine/apply/rollout-faults.test.ts). Their old VMs serve nothing: they go first.
  it.each([
    { state: 'PoweredOn', out: 2, count: 2, rollout: { maxUnavailable: 1, maxSurge: '50%' } },
    { state: 'PoweredOff', out: 3, count: 6, rollout: { maxUnavailable: 1, maxSurge: 1 } },
    { state: 'ShuttingDown', out: 4, count: 4, rollout: { maxUnavailable: 0, maxSurge: 2 } },
    { state: 'CreateFailed', out: 2, count: 5, rollout: { maxSurge: 1 } },
    { state: 'PoweredOff', out: 5, count: 5, rollout: {} },
  ] as { state: string; out: number; count: number; rollout: RolloutSpec }[])('$out of $count $state on the old image, rollout $rollout: no new VM before its old one goes', async ({ state, out, count, rollout }) => {
    const base = (await loadPack(DEFAULT_PACK_DIR)).pack!;
    const f = makeFleet('web', { count, ...NEW, placement: { dataCenters: ['miami'] }, rollout });
    const rows = Array.from({ length: count }, (_, i) =>
      i < out ? vmRow(f, i, { dataCenter: 'miami', image: 'rhel-9', specHash: 'rhel', state, id: `vm-${i}` }) : vmRow(f, i, { dataCenter: 'miami', id: `vm-${i}` }),
    );
    const c: Case = { label: '', fleets: [f], rows, pack: base, rule: { enforcement: 'advisory', maxShare: 0.5 }, vms: 100 };
    const p = planOf(c);
    expect(p.blocked).toBe(false);
    const replaces = p.changes.filter((x) => x.action === 'replace');
    expect(replaces.map((x) => x.address)).toEqual(Array.from({ length: out }, (_, i) => `web/${i}`));
    for (const x of replaces) {
      expect(x.replaceOrder).toBe('delete-before-create');
      expect(x.reason).toMatch(/the old one goes first: it is out of Running already$/);
      expect(x.steps[0].member).toBe('old');
    }
  });

  it('a fleet with no rollout (max-disruption disabled, no spec.rollout) replaces them as before rollouts existed', async () => {
    const base = (await loadPack(DEFAULT_PACK_DIR)).pack!;
    const f = makeFleet('web', { count: 2, ...NEW, placement: { dataCenters: ['miami'] } });
    const rows = [vmRow(f, 0, { dataCenter: 'miami', image: 'rhel-9', specHash: 'rhel', state: 'PoweredOff' }), vmRow(f, 1, { dataCenter: 'miami' })];
    const p = planOf({ label: '', fleets: [f], rows, pack: packWith(base, 'disabled', 0.5), rule: { enforcement: 'disabled', maxShare: 0.5 }, vms: 100 });
    expect(p.changes.filter((x) => x.action === 'replace').map((x) => x.replaceOrder)).toEqual(['create-before-delete']);
  });
});

describe("a resumed surge rollout's deposed old VMs under max-disruption", () => {
  // A surge rollout's first wave failed to create its new VMs: their old VMs, deposed, serve on until the new ones
  // are back (apply deletes each only then). The resumed plan counted their deletes as members leaving Running for
  // good: 3 of 7 with maxShare 0.25 allowing 1, so a mandatory rule blocked every resume of the rollout (found by
  // engine/apply/rollout-faults.test.ts with a mandatory rule), and an advisory one flagged it.
  const rows = (f: LoadedFleet, deposed: number, failed: number, count: number): VmRow[] =>
    Array.from({ length: count }, (_, i) => {
      const old = { dataCenter: 'miami', image: 'ubuntu-22.04', specHash: 'old', id: `old-${i}` };
      if (i < deposed) return [vmRow(f, i, { ...old, deposed: true, desiredState: 'Deleted' }), vmRow(f, i, { dataCenter: 'miami', state: 'CreateFailed', id: `new-${i}` })];
      if (i < deposed + failed) return [vmRow(f, i, { dataCenter: 'miami', state: 'CreateFailed', id: `new-${i}` })];
      return [vmRow(f, i, old)];
    }).flat();
  it.each([
    { enforcement: 'mandatory', maxShare: 0.25, deposed: 3, failed: 2, count: 9, rollout: { maxSurge: 3 } },
    { enforcement: 'mandatory', maxShare: 0.25, deposed: 2, failed: 0, count: 8, rollout: { maxUnavailable: 0, maxSurge: 2 } },
    { enforcement: 'advisory', maxShare: 0.25, deposed: 3, failed: 2, count: 9, rollout: { maxSurge: 3 } },
    { enforcement: 'mandatory', maxShare: 0.5, deposed: 4, failed: 0, count: 6, rollout: { maxSurge: 4 } },
  ] as const)('$enforcement maxShare $maxShare, $deposed deposed and $failed failed of $count: not judged as leaving for good', async ({ enforcement, maxShare, deposed, failed, count, rollout }) => {
    const base = (await loadPack(DEFAULT_PACK_DIR)).pack!;
    const f = makeFleet('web', { count, ...NEW, placement: { dataCenters: ['miami'] }, rollout });
    const p = planOf({ label: '', fleets: [f], rows: rows(f, deposed, failed, count), pack: packWith(base, enforcement, maxShare), rule: { enforcement, maxShare }, vms: 100 });
    expect(p.policy.violations.filter((v) => v.policy === 'max-disruption')).toEqual([]);
    expect(p.blocked).toBe(false);
    expect(p.changes.filter((c) => c.deposed).map((c) => c.address)).toEqual(Array.from({ length: deposed }, (_, i) => `web/${i}`));
    expect(p.rollouts![0].waves[0].returning).toHaveLength(deposed + failed);
  });

  it('a deposed old VM whose member the plan does not bring back still leaves for good', async () => {
    // Count 3 to 1: web/2's deposed old VM serves, and nothing serves web/2 after the plan.
    const base = (await loadPack(DEFAULT_PACK_DIR)).pack!;
    const f = makeFleet('web', { count: 1, ...NEW, placement: { dataCenters: ['miami'] }, rollout: { maxSurge: 1 } });
    const p = planOf({ label: '', fleets: [f], rows: rows(f, 3, 0, 3).map((r) => (r.index === 0 && !r.deposed ? { ...r, state: 'Running' } : r)), pack: packWith(base, 'mandatory', 0.25), rule: { enforcement: 'mandatory', maxShare: 0.25 }, vms: 100 });
    expect(p.policy.violations.filter((v) => v.policy === 'max-disruption').map((v) => v.message)).toEqual([expect.stringMatching(/^2 of \d+ Running members of fleet web would leave Running/)]);
  });
});
