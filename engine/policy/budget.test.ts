import { describe, expect, it } from 'vitest';
import type { Enforcement } from '../model/index.ts';
import { capacityEnforcement, capacityGrantFor, capacityLeft, ownerQuota, ownerUsage } from './budget.ts';
import { datacenterCapacityRule, ownerQuotaRule } from './rules/builtin.ts';
import { ctx, fleet, packWith, stack, vm } from './testdata/fixtures.ts';
import type { LoadedFleet } from '../spec/types.ts';
import type { UsageRow, VmRow } from '../record/types.ts';

/**
 * What FleetRecord.usage returns for these rows: live VMs summed per fleet and
 * data center, the owner from the record's fleet table (`owners`, else the
 * fleet's spec owner, as insertVm writes it; '' when neither knows it).
 */
function aggregate(rows: readonly VmRow[], owners: Record<string, string> = {}, fleets: readonly LoadedFleet[] = []): UsageRow[] {
  const by = new Map<string, UsageRow>();
  for (const r of rows) {
    if (r.retiredAt !== null) continue;
    const key = `${r.fleet}\u0000${r.dataCenter}`;
    let u = by.get(key);
    if (!u) {
      const owner = owners[r.fleet] ?? fleets.find((f) => f.name === r.fleet)?.owner ?? '';
      by.set(key, (u = { fleet: r.fleet, owner, dataCenter: r.dataCenter, vms: 0, cpu: 0, memoryGiB: 0 }));
    }
    u.vms += 1;
    u.cpu += r.size.cpu;
    u.memoryGiB += r.size.memoryGiB;
  }
  return [...by.values()];
}

const quotaPack = (level: Enforcement, limits: Record<string, unknown>) => packWith([[ownerQuotaRule, level, { limits }]]);

describe('ownerQuota', () => {
  const web = fleet('web', { count: 10, minCount: 2 });
  const api = fleet('api', { count: 2 });
  const other = fleet('other', { owner: 'team-b' });
  const apiRows = [vm('api/0'), vm('api/1')];
  const cases: {
    name: string;
    limits: Record<string, unknown>;
    fleets?: LoadedFleet[];
    record?: VmRow[];
    requested?: number;
    granted?: Record<string, number>;
    owners?: Record<string, string>;
    f?: LoadedFleet;
    want: number;
  }[] = [
    { name: 'no limits for the owner', limits: { 'team-b': { vms: 1 } }, want: 10 },
    { name: 'vms limit counts other fleets in the record', limits: { 'team-a': { vms: 6 } }, fleets: [api, web], record: apiRows, want: 4 },
    { name: "the fleet's own members are not counted twice", limits: { 'team-a': { vms: 6 } }, fleets: [web], record: [vm('web/0'), vm('web/1')], want: 6 },
    { name: 'cpu limit (2 vCPU each)', limits: { 'team-a': { cpu: 9 } }, fleets: [web], want: 4 },
    { name: 'memory limit (4 GiB each)', limits: { 'team-a': { memoryGiB: 30 } }, fleets: [web], want: 7 },
    { name: 'the tightest limit wins', limits: { 'team-a': { vms: 8, cpu: 12, memoryGiB: 100 } }, fleets: [web], want: 6 },
    { name: 'other owners are not counted', limits: { 'team-a': { vms: 6 } }, fleets: [web, other], record: [vm('other/0'), vm('other/1')], want: 6 },
    { name: 'a fleet granted earlier in this run counts its grant, not the record', limits: { 'team-a': { vms: 6 } }, fleets: [api, web], record: apiRows, granted: { api: 5 }, want: 1 },
    { name: 'over the limit already: zero', limits: { 'team-a': { vms: 1 } }, fleets: [api, web], record: apiRows, want: 0 },
    { name: 'record VMs of a fleet no spec names count through owners', limits: { 'team-a': { vms: 6 } }, fleets: [web], record: [vm('old/0'), vm('old/1'), vm('old/2')], owners: { old: 'team-a' }, want: 3 },
    { name: 'record VMs of unknown owner are not counted', limits: { 'team-a': { vms: 6 } }, fleets: [web], record: [vm('old/0')], want: 6 },
    { name: 'retired and terminal VMs are not counted', limits: { 'team-a': { vms: 6 } }, fleets: [api, web], record: [vm('api/0', { state: 'Deleted' }), vm('api/1', { retiredAt: 'x' })], want: 6 },
    { name: 'requested within the limit', limits: { 'team-a': { vms: 6 } }, fleets: [web], requested: 5, want: 5 },
  ];
  it.each(cases)('mandatory: $name', ({ limits, fleets, record, requested, granted, owners, f, want }) => {
    const target = f ?? web;
    const c = ctx({ fleets: fleets ?? [target], record: record ?? [], owners });
    const b = ownerQuota(quotaPack('mandatory', limits), c, target, requested ?? target.count, granted ?? {});
    expect(b.granted).toBe(want);
    const req = requested ?? target.count;
    if (want < req) expect(b.grant).toMatchObject({ fleet: 'web', requested: req, granted: want, policy: 'owner-quota' });
    else expect(b.grant).toBeUndefined();
  });

  // A narrowed plan reads rows only for the fleet it plans and sums for the
  // rest: every case must come out the same. (The terminal-but-live row of
  // one case cannot be in a record: the authority retires a VM in the
  // transaction that makes it terminal.)
  it.each(cases.filter((c) => !c.name.startsWith('retired and terminal')))('rows or sums, the same: $name', ({ limits, fleets, record, requested, granted, owners, f, want }) => {
    const target = f ?? web;
    const all = record ?? [];
    const fs = fleets ?? [target];
    const pack = quotaPack('mandatory', limits);
    const req = requested ?? target.count;
    const usage = aggregate(all.filter((r) => r.fleet !== target.name), owners, fs);
    const split = ctx({ fleets: fs, record: all.filter((r) => r.fleet === target.name), usage, owners });
    const rows = ctx({ fleets: fs, record: all, owners });
    expect(ownerUsage(split, target, granted ?? {})).toEqual(ownerUsage(rows, target, granted ?? {}));
    expect(ownerQuota(pack, split, target, req, granted ?? {})).toEqual(ownerQuota(pack, rows, target, req, granted ?? {}));
    expect(ownerQuota(pack, split, target, req, granted ?? {}).granted).toBe(want);
  });

  it('sums: skips the fleet itself and fleets granted in this run; a spec owner wins over the record\'s', () => {
    const usage: UsageRow[] = [
      { fleet: 'web', owner: 'team-a', dataCenter: 'miami', vms: 50, cpu: 100, memoryGiB: 200 },
      { fleet: 'api', owner: 'team-a', dataCenter: 'miami', vms: 2, cpu: 4, memoryGiB: 8 },
      { fleet: 'api', owner: 'team-a', dataCenter: 'richmond', vms: 1, cpu: 2, memoryGiB: 4 },
      { fleet: 'moved', owner: 'team-a', dataCenter: 'miami', vms: 7, cpu: 14, memoryGiB: 28 },
      { fleet: 'old', owner: 'team-a', dataCenter: 'miami', vms: 1, cpu: 0.5, memoryGiB: 1 },
      { fleet: 'theirs', owner: 'team-b', dataCenter: 'miami', vms: 9, cpu: 18, memoryGiB: 36 },
    ];
    const moved = fleet('moved', { owner: 'team-b' });
    const c = ctx({ fleets: [api, web, moved], usage });
    expect(ownerUsage(c, web)).toEqual({ vms: 4, cpu: 6.5, memoryGiB: 13 });
    expect(ownerUsage(c, web, { api: 1 })).toEqual({ vms: 2, cpu: 2.5, memoryGiB: 5 });
  });

  it('explains the cut with the binding limit', () => {
    const b = ownerQuota(quotaPack('mandatory', { 'team-a': { vms: 6, cpu: 100 } }), ctx({ fleets: [api, web], record: apiRows }), web, 10);
    expect(b.grant!.reason).toBe('requested 10, granted 4: quota of team-a (vms 6)');
    expect(b.violations).toEqual([]);
  });

  it('vetoes the fleet when the grant is below minCount', () => {
    const f = fleet('web', { count: 5, minCount: 4, size: { cpu: 4, memoryGiB: 8, diskGiB: 20 } });
    const b = ownerQuota(quotaPack('mandatory', { 'team-a': { cpu: 12 } }), ctx({ fleets: [f] }), f, 5);
    expect(b.granted).toBe(3);
    expect(b.grant!.reason).toBe('requested 5, granted 3: quota of team-a (cpu 12)');
    expect(b.violations).toHaveLength(1);
    expect(b.violations[0]).toMatchObject({ policy: 'owner-quota', level: 'mandatory', address: 'web' });
    expect(b.violations[0].message).toContain('granted 3 is below minCount 4');
  });

  it("an owner `limits` does not list gets the rule's `unlisted` limits; a listed one its own", () => {
    const pack = packWith([[ownerQuotaRule, 'mandatory', { limits: { 'team-b': { vms: 1 } }, unlisted: { vms: 3 } }]]);
    const b = ownerQuota(pack, ctx({ fleets: [web] }), web, 10);
    expect(b.grant!.reason).toBe('requested 10, granted 3: quota of team-a (vms 3)');
    expect(ownerQuota(pack, ctx({ fleets: [other] }), other, 2).granted).toBe(1);
    // Listed with no limits: not limited by `unlisted`.
    expect(ownerQuota(packWith([[ownerQuotaRule, 'mandatory', { limits: { 'team-a': {} }, unlisted: { vms: 0 } }]]), ctx({ fleets: [web] }), web, 10).granted).toBe(10);
  });

  it('advisory: no cut, an advisory violation', () => {
    const b = ownerQuota(quotaPack('advisory', { 'team-a': { vms: 6 } }), ctx({ fleets: [api, web], record: apiRows }), web, 10);
    expect(b.granted).toBe(10);
    expect(b.grant).toBeUndefined();
    expect(b.violations.map((v) => [v.policy, v.level, v.address])).toEqual([['owner-quota', 'advisory', 'web']]);
    expect(b.violations[0].message).toContain('only 4 fit');
  });

  it('disabled: nothing', () => {
    const b = ownerQuota(quotaPack('disabled', { 'team-a': { vms: 0 } }), ctx({ fleets: [web] }), web, 10);
    expect(b).toEqual({ granted: 10, violations: [] });
  });

  it('ownerUsage sums VMs, vCPU and memory', () => {
    expect(ownerUsage(ctx({ fleets: [api, web], record: [...apiRows, vm('web/0')] }), web)).toEqual({ vms: 2, cpu: 4, memoryGiB: 8 });
  });
});

describe('capacityLeft', () => {
  it('subtracts live record VMs per data center; Infinity where the stack sets no limit', () => {
    const s = stack([{ name: 'miami', capacity: { vms: 5, cpu: 100 } }, { name: 'richmond' }]);
    const left = capacityLeft(s, [vm('a/0'), vm('a/1', { dataCenter: 'richmond' }), vm('a/2', { retiredAt: 'x' }), vm('a/3', { dataCenter: 'elsewhere' })]);
    expect(left.get('miami')).toEqual({ vms: 4, cpu: 98, memoryGiB: Infinity });
    expect(left.get('richmond')).toEqual({ vms: Infinity, cpu: Infinity, memoryGiB: Infinity });
    expect([...left.keys()]).toEqual(['miami', 'richmond']);
  });

  const s2 = stack([{ name: 'miami', capacity: { vms: 10, cpu: 30, memoryGiB: 50 } }, { name: 'richmond', capacity: { vms: 4 } }, { name: 'tampa' }]);
  const big = { cpu: 4, memoryGiB: 8, diskGiB: 20 };
  const rows = [
    vm('web/0'),
    vm('web/1', { dataCenter: 'richmond' }),
    vm('web/2', { retiredAt: 'x' }),
    vm('web/3', { deposed: true }),
    vm('db/0', { size: big }),
    vm('db/1', { size: big, dataCenter: 'richmond' }),
    vm('db/2', { dataCenter: 'tampa' }),
    vm('old/0', { dataCenter: 'elsewhere' }),
  ];
  const cases: { name: string; inRows: (r: VmRow) => boolean }[] = [
    { name: 'every VM as sums', inRows: () => false },
    { name: 'one fleet as rows, the others as sums', inRows: (r) => r.fleet === 'web' },
    { name: 'two fleets as rows, one as sums', inRows: (r) => r.fleet !== 'old' },
  ];
  it.each(cases)('rows or sums, the same: $name', ({ inRows }) => {
    const want = capacityLeft(s2, rows);
    expect(want.get('miami')).toEqual({ vms: 7, cpu: 22, memoryGiB: 34 });
    expect(want.get('richmond')).toEqual({ vms: 2, cpu: Infinity, memoryGiB: Infinity });
    expect(capacityLeft(s2, rows.filter(inRows), aggregate(rows.filter((r) => !inRows(r))))).toEqual(want);
  });
});

describe('capacityGrantFor', () => {
  const capPack = (level: Enforcement) => packWith([[datacenterCapacityRule, level]]);
  const batch = fleet('batch', { count: 5, minCount: 1, placement: { dataCenters: ['miami', 'richmond'], strategy: 'nearest', near: null } });

  it('capacityEnforcement reads the rule, mandatory when absent', () => {
    expect(capacityEnforcement(capPack('advisory'))).toBe('advisory');
    expect(capacityEnforcement(packWith([]))).toBe('mandatory');
  });

  const cases: { name: string; level: Enforcement; f?: LoadedFleet; requestedNew: number; placed: number; existing?: number; granted: number; grant?: string; violations: string[] }[] = [
    { name: 'everything placed', level: 'mandatory', requestedNew: 5, placed: 5, granted: 5, violations: [] },
    { name: 'partial placement', level: 'mandatory', requestedNew: 5, placed: 3, granted: 3, grant: 'requested 5, granted 3: capacity of miami, richmond', violations: [] },
    { name: 'existing members count in the totals', level: 'mandatory', requestedNew: 3, placed: 1, existing: 2, granted: 3, grant: 'requested 5, granted 3: capacity of miami, richmond', violations: [] },
    { name: 'below minCount', level: 'mandatory', f: fleet('batch', { count: 5, minCount: 4 }), requestedNew: 5, placed: 3, granted: 3, grant: "requested 5, granted 3: capacity of the stack's data centers", violations: ['datacenter-capacity mandatory batch'] },
    { name: 'advisory', level: 'advisory', requestedNew: 5, placed: 3, granted: 5, violations: ['datacenter-capacity advisory batch'] },
    { name: 'disabled', level: 'disabled', requestedNew: 5, placed: 0, granted: 5, violations: [] },
  ];
  it.each(cases)('$name', ({ level, f, requestedNew, placed, existing, granted, grant, violations }) => {
    const b = capacityGrantFor(capPack(level), f ?? batch, requestedNew, placed, existing === undefined ? {} : { existing });
    expect(b.granted).toBe(granted);
    expect(b.grant?.reason).toBe(grant);
    if (b.grant) expect(b.grant.policy).toBe('datacenter-capacity');
    expect(b.violations.map((v) => `${v.policy} ${v.level} ${v.address}`)).toEqual(violations);
  });

  it('names the data centers that were tried', () => {
    const b = capacityGrantFor(capPack('mandatory'), batch, 2, 0, { dataCenters: ['dc-a'] });
    expect(b.grant!.reason).toBe('requested 5, granted 3: capacity of dc-a');
  });
});
