import { describe, expect, it } from 'vitest';
import { change, packWith, plan } from '../policy/testdata/fixtures.ts';
import { protectRule } from '../policy/rules/builtin.ts';
import type { FleetChange, PlanDocument } from '../model/index.ts';
import { adminOverridesNeeded } from './admin-override.ts';

describe('adminOverridesNeeded', () => {
  const doc = (allowDestroy: string[], fleetChanges?: FleetChange[]): PlanDocument => ({
    ...plan([change('web/1', 'delete'), change('web/0', 'replace'), change('api/0', 'delete'), change('web/2', 'create')]),
    options: { targets: [], excludes: [], allowDestroy, refresh: false },
    ...(fleetChanges ? { fleetChanges } : {}),
  });
  const admin = packWith([[protectRule, 'mandatory', { override: 'admin' }]]);
  const cases: { name: string; pack: ReturnType<typeof packWith>; plan: PlanDocument; protectedInRecord: string[]; want: string[] }[] = [
    { name: 'override: admin, a protected fleet overridden', pack: admin, plan: doc(['web']), protectedInRecord: ['web'], want: ['web/1', 'web/0'] },
    { name: 'override: any', pack: packWith([[protectRule, 'mandatory', { override: 'any' }]]), plan: doc(['web']), protectedInRecord: ['web'], want: [] },
    { name: 'protect advisory', pack: packWith([[protectRule, 'advisory', { override: 'admin' }]]), plan: doc(['web']), protectedInRecord: ['web'], want: [] },
    { name: 'fleet not overridden', pack: admin, plan: doc(['api']), protectedInRecord: ['web'], want: [] },
    { name: 'fleet not protected', pack: admin, plan: doc(['web', 'api']), protectedInRecord: ['web'], want: ['web/1', 'web/0'] },
    { name: 'the plan protects it first', pack: admin, plan: doc(['api'], [{ fleet: 'api', protect: { from: false, to: true } }]), protectedInRecord: [], want: ['api/0'] },
    { name: 'the plan unprotects it first', pack: admin, plan: doc(['web'], [{ fleet: 'web', protect: { from: true, to: false } }]), protectedInRecord: ['web'], want: [] },
  ];
  it.each(cases)('$name', ({ pack, plan: p, protectedInRecord, want }) => {
    expect(adminOverridesNeeded(p, pack, new Set(protectedInRecord))).toEqual(want);
  });
});
