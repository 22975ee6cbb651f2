import { describe, expect, it } from 'vitest';
import type { Change, Enforcement } from '../../model/index.ts';
import { evaluateRules } from '../evaluate.ts';
import { change, ctx, DEFAULT_LIFECYCLE, fleet, packWith, plan } from '../testdata/fixtures.ts';
import type { Rule } from '../types.ts';
import { allowedImagesRule, labelsMatch, maxDisruptionRule, protectRule, requireEncryptedDiskRule } from './builtin.ts';

const LEVELS: Enforcement[] = ['advisory', 'mandatory', 'disabled'];

/** Violations of one rule at one level, as `address level`. */
function run(rule: Rule, level: Enforcement, changes: Change[], c = ctx(), config: Record<string, unknown> = {}): string[] {
  return evaluateRules(plan(changes), c, packWith([[rule, level, config]])).map((v) => `${v.address} ${v.level}`);
}

describe('protect', () => {
  const db = fleet('db', { protect: true });
  const web = fleet('web');
  const cases: { name: string; change: Change; allow?: string[]; hit: boolean }[] = [
    { name: 'delete in a protected fleet', change: change('db/2', 'delete'), hit: true },
    { name: 'delete in a fleet with no spec that the record holds as protected', change: change('vault/0', 'delete'), hit: true },
    { name: 'delete in a fleet with no spec, protected in the record, with --allow-destroy', change: change('vault/0', 'delete'), allow: ['vault'], hit: false },
    { name: 'delete in a fleet whose spec says protect: false, though the record says protected', change: change('web/1', 'delete'), hit: false },
    { name: 'delete in a fleet with no spec and not protected in the record', change: change('gone/0', 'delete'), hit: false },
    { name: 'replace in a protected fleet', change: change('db/0', 'replace'), hit: true },
    { name: 'delete with --allow-destroy of the fleet', change: change('db/2', 'delete'), allow: ['db'], hit: false },
    { name: 'delete with --allow-destroy of another fleet', change: change('db/2', 'delete'), allow: ['web'], hit: true },
    { name: 'update in a protected fleet', change: change('db/0', 'update'), hit: false },
    { name: 'transition in a protected fleet', change: change('db/0', 'transition', { to: 'PoweredOff' }), hit: false },
    { name: 'create in a protected fleet', change: change('db/3', 'create'), hit: false },
    { name: 'delete in an unprotected fleet', change: change('web/1', 'delete'), hit: false },
  ];
  for (const level of LEVELS) {
    it.each(cases)(`${level}: $name`, ({ change: ch, allow, hit }) => {
      const got = run(protectRule, level, [ch], ctx({ fleets: [db, web], allowDestroy: new Set(allow ?? []), protectedFleets: new Set(['vault', 'web']) }));
      expect(got).toEqual(hit && level !== 'disabled' ? [`${ch.address} ${level}`] : []);
    });
  }

  it('says how to allow it', () => {
    const [v] = evaluateRules(plan([change('db/2', 'delete')]), ctx({ fleets: [db] }), packWith([[protectRule, 'mandatory']]));
    expect(v).toMatchObject({ policy: 'protect', level: 'mandatory', address: 'db/2' });
    expect(v.message).toContain('protected');
    expect(v.hint).toContain('--allow-destroy db');
  });

  it('names the record as the reason when the spec is gone', () => {
    const [v] = evaluateRules(plan([change('vault/0', 'delete')]), ctx({ fleets: [db], protectedFleets: new Set(['vault']) }), packWith([[protectRule, 'mandatory']]));
    expect(v.message).toBe('vault/0 would be deleted, but fleet vault is protected in the record (it was applied with protect: true; removing its spec does not remove that).');
    expect(v.hint).toContain("apply the fleet's spec with protect: false first");
  });
});

describe('allowed-images', () => {
  const img = (logical: string, dataCenter: string, action: Change['action'] = 'create') =>
    change('web/0', action, { dataCenter, image: { logical, real: null } });
  const cases: { name: string; change: Change; hit: boolean }[] = [
    { name: 'image in the catalog for the data center', change: img('ubuntu-22.04', 'richmond'), hit: false },
    { name: 'image without an entry for the data center', change: img('rhel-9', 'richmond'), hit: true },
    { name: 'image not in the catalog at all', change: img('windows-2000', 'miami'), hit: true },
    { name: 'replace onto a missing image', change: img('rhel-9', 'richmond', 'replace'), hit: true },
    { name: 'update onto a missing image', change: img('rhel-9', 'richmond', 'update'), hit: true },
    { name: 'delete is not checked', change: img('rhel-9', 'richmond', 'delete'), hit: false },
    { name: 'noop is not checked', change: img('rhel-9', 'richmond', 'noop'), hit: false },
  ];
  for (const level of LEVELS) {
    it.each(cases)(`${level}: $name`, ({ change: ch, hit }) => {
      expect(run(allowedImagesRule, level, [ch])).toEqual(hit && level !== 'disabled' ? [`web/0 ${level}`] : []);
    });
  }

  it('names what the data center offers', () => {
    const [v] = evaluateRules(plan([img('rhel-9', 'richmond')]), ctx(), packWith([[allowedImagesRule, 'mandatory']]));
    expect(v.message).toBe('Image rhel-9 is not available in data center richmond.');
    expect(v.hint).toContain('ubuntu-22.04');
  });
});

describe('require-encrypted-disk', () => {
  const prod = { env: 'prod', tier: 'web' };
  const cases: { name: string; labels: Record<string, string>; encrypted: boolean; match: Record<string, string>; count?: number; hit: boolean }[] = [
    { name: 'matching fleet without encryption', labels: prod, encrypted: false, match: { env: 'prod' }, hit: true },
    { name: 'matching fleet with encryption', labels: prod, encrypted: true, match: { env: 'prod' }, hit: false },
    { name: 'fleet with another label value', labels: { env: 'dev' }, encrypted: false, match: { env: 'prod' }, hit: false },
    { name: 'every label of match must be on the fleet', labels: prod, encrypted: false, match: { env: 'prod', pci: 'yes' }, hit: false },
    { name: 'empty match selects every fleet', labels: {}, encrypted: false, match: {}, hit: true },
    { name: 'fleet scaled to zero', labels: prod, encrypted: false, match: { env: 'prod' }, count: 0, hit: false },
  ];
  for (const level of LEVELS) {
    it.each(cases)(`${level}: $name`, ({ labels, encrypted, match, count, hit }) => {
      const f = fleet('web', { labels, encryptedDisk: encrypted, count: count ?? 2 });
      const got = run(requireEncryptedDiskRule, level, [change('web/0', 'create')], ctx({ fleets: [f] }), { match });
      expect(got).toEqual(hit && level !== 'disabled' ? [`web ${level}`] : []);
    });
  }

  // At the authority (checkRequest): judged from the request alone, so only with an empty match (labels are not in the record).
  it.each([
    { name: 'an unencrypted create, empty match', kind: 'create' as const, encryptedDisk: false, match: {}, hit: true },
    { name: 'an encrypted create, empty match', kind: 'create' as const, encryptedDisk: true, match: {}, hit: false },
    { name: 'an unencrypted create, a label match (judged in the plan only)', kind: 'create' as const, encryptedDisk: false, match: { env: 'prod' }, hit: false },
    { name: 'a transition of an unencrypted VM', kind: 'transition' as const, encryptedDisk: false, match: {}, hit: false },
  ])('checkRequest: $name', ({ kind, encryptedDisk, match, hit }) => {
    const req = { kind, stack: 's', fleet: 'web', address: 'web/0', owner: 'o', dataCenter: 'miami', image: 'i', size: { cpu: 1, memoryGiB: 1, diskGiB: 1 }, encryptedDisk, from: null, to: 'Requested', operation: 'insert' };
    const got = requireEncryptedDiskRule.checkRequest!(req, { config: { match }, lifecycle: undefined as never, images: {} });
    expect(got.map((f) => f.message)).toEqual(hit ? ['web/0 would be created without an encrypted disk.'] : []);
  });

  it('labelsMatch', () => {
    expect(labelsMatch({ a: '1', b: '2' }, { a: '1' })).toBe(true);
    expect(labelsMatch({ a: '1' }, { a: '2' })).toBe(false);
    expect(labelsMatch({}, {})).toBe(true);
  });
});

describe('max-disruption', () => {
  const running = (n: number, leaving: Change['action'][]): Change[] =>
    Array.from({ length: n }, (_, i) => {
      const action = leaving[i] ?? 'noop';
      if (action === 'transition') return change(`web/${i}`, 'transition', { to: 'PoweredOff', path: DEFAULT_LIFECYCLE.path('Running', 'PoweredOff')! });
      if (action === 'delete') return change(`web/${i}`, 'delete', { path: DEFAULT_LIFECYCLE.path('Running', 'Deleted')! });
      if (action === 'update') return change(`web/${i}`, 'update', { path: ['Running', 'ShuttingDown', 'PoweredOff', 'PoweredOn', 'Starting', 'Running'] });
      return change(`web/${i}`, action, { path: ['Running'] });
    });
  const cases: { name: string; changes: Change[]; maxShare: number; hit: boolean }[] = [
    { name: 'half of four leave: allowed at 0.5', changes: running(4, ['delete', 'transition']), maxShare: 0.5, hit: false },
    { name: 'three of four leave', changes: running(4, ['delete', 'transition', 'replace']), maxShare: 0.5, hit: true },
    { name: 'an update that stops the VM counts', changes: running(2, ['update', 'update']), maxShare: 0.5, hit: true },
    { name: 'noops and creates do not count', changes: [...running(2, []), change('web/2', 'create'), change('web/3', 'create')], maxShare: 0, hit: false },
    { name: 'maxShare 1 allows everything', changes: running(3, ['delete', 'delete', 'delete']), maxShare: 1, hit: false },
    { name: 'maxShare 0 allows nothing', changes: running(3, ['delete']), maxShare: 0, hit: true },
    { name: 'members not Running are not counted', changes: [change('web/0', 'delete', { from: 'PoweredOff', path: ['PoweredOff', 'BeingDeleted', 'Deleted'] })], maxShare: 0, hit: false },
  ];
  for (const level of LEVELS) {
    it.each(cases)(`${level}: $name`, ({ changes, maxShare, hit }) => {
      expect(run(maxDisruptionRule, level, changes, ctx(), { maxShare, state: 'Running' })).toEqual(hit && level !== 'disabled' ? [`web ${level}`] : []);
    });
  }

  describe('against the members serving when each wave starts', () => {
    // web: 3 Running members replaced (waves 2 and 3 unless said), count raised to 5: web/3 and web/4 created.
    const replace = (i: number, wave: number) => change(`web/${i}`, 'replace', { wave, path: ['Running'], replaceOrder: 'delete-before-create' });
    const scaleUp = (createWave: number, replaceWaves = [2, 2, 3]) => [
      ...replaceWaves.map((w, i) => replace(i, w)),
      change('web/3', 'create', { wave: createWave }),
      change('web/4', 'create', { wave: createWave }),
    ];
    const cases: { name: string; changes: Change[]; failureThreshold: number; hit?: string }[] = [
      { name: 'the new members run before wave 2 takes 2 of 5 out', changes: scaleUp(1), failureThreshold: 1 },
      { name: 'one of them may have failed (failureThreshold 2): 2 of 4', changes: scaleUp(1), failureThreshold: 2 },
      {
        name: 'both may have failed (failureThreshold 3): 2 of 3',
        changes: scaleUp(1),
        failureThreshold: 3,
        hit: '2 of 3 Running members of fleet web would leave Running at once (2 in its widest wave) (at most 1, maxShare 0.5).',
      },
      {
        name: 'created in the same wave: not serving yet',
        changes: scaleUp(2),
        failureThreshold: 1,
        hit: '2 of 3 Running members of fleet web would leave Running at once (2 in its widest wave) (at most 1, maxShare 0.5).',
      },
      {
        name: 'a wave after the creates still too wide for them',
        changes: scaleUp(1, [2, 2, 2]),
        failureThreshold: 1,
        hit: '3 of 5 Running members of fleet web would leave Running at once (3 in wave 2; 2 more serving by then) (at most 2, maxShare 0.5).',
      },
      {
        name: 'without new members, as before',
        changes: scaleUp(1).slice(0, 3),
        failureThreshold: 1,
        hit: '2 of 3 Running members of fleet web would leave Running at once (2 in its widest wave) (at most 1, maxShare 0.5).',
      },
    ];
    it.each(cases)('$name', ({ changes, failureThreshold, hit }) => {
      const p = { ...plan(changes), rollouts: [{ fleet: 'web', maxUnavailable: 2, maxSurge: 0, failureThreshold, reason: '', waves: [] }] };
      const vs = evaluateRules(p, ctx(), packWith([[maxDisruptionRule, 'advisory', { maxShare: 0.5 }]]));
      expect(vs.map((v) => v.message)).toEqual(hit ? [hit] : []);
    });
  });

  it('reports per fleet with the numbers', () => {
    const changes = [...running(4, ['delete', 'delete', 'delete']), change('api/0', 'delete', { fleet: 'api' })];
    const vs = evaluateRules(plan(changes), ctx(), packWith([[maxDisruptionRule, 'advisory', { maxShare: 0.5 }]]));
    expect(vs.map((v) => v.address)).toEqual(['web', 'api']);
    expect(vs[0].message).toBe('3 of 4 Running members of fleet web would leave Running in this plan (at most 2, maxShare 0.5).');
  });
});

describe('evaluateRules', () => {
  const always: Rule = {
    name: 'always',
    description: 'one finding per change',
    configSchema: {},
    checkChange: (c) => [{ address: c.address, message: 'm', hint: 'h' }],
  };
  const throwsOnChange: Rule = {
    name: 'throws',
    description: 'x',
    configSchema: {},
    checkChange: () => {
      throw new Error('kaput');
    },
  };
  const throwsOnPlan: Rule = { name: 'plan-throws', description: 'x', configSchema: {}, checkPlan: () => { throw new TypeError('bad plan'); } };
  const notArray: Rule = { name: 'not-array', description: 'x', configSchema: {}, checkPlan: () => 'oops' as never };

  it.each(LEVELS)('carries the rule enforcement %s to every violation', (level) => {
    const vs = evaluateRules(plan([change('web/0', 'create'), change('web/1', 'create')]), ctx(), packWith([[always, level]]));
    expect(vs).toEqual(
      level === 'disabled'
        ? []
        : ['web/0', 'web/1'].map((address) => ({ policy: 'always', level, address, message: 'm', hint: 'h' })),
    );
  });

  it('turns a rule that throws into a mandatory violation naming it, even at advisory level', () => {
    const vs = evaluateRules(
      plan([change('web/0', 'create')]),
      ctx(),
      packWith([
        [throwsOnChange, 'advisory'],
        [throwsOnPlan, 'advisory'],
        [notArray, 'advisory'],
        [always, 'advisory'],
      ]),
    );
    expect(vs.map((v) => [v.policy, v.level, v.address])).toEqual([
      ['throws', 'mandatory', 'web/0'],
      ['plan-throws', 'mandatory', 's'],
      ['not-array', 'mandatory', 's'],
      ['always', 'advisory', 'web/0'],
    ]);
    expect(vs[0].message).toBe('Rule throws failed: kaput');
    expect(vs[1].message).toContain('bad plan');
  });

  it('does not run disabled rules at all', () => {
    const vs = evaluateRules(plan([change('web/0', 'create')]), ctx(), packWith([[throwsOnChange, 'disabled']]));
    expect(vs).toEqual([]);
  });

  it('passes the rule its own config and level', () => {
    const seen: unknown[] = [];
    const spy: Rule = { name: 'spy', description: 'x', configSchema: {}, checkPlan: (_p, c) => (seen.push([c.config, c.enforcement]), []) };
    evaluateRules(plan([]), ctx(), packWith([[spy, 'advisory', { k: 1 }]]));
    expect(seen).toEqual([[{ k: 1 }, 'advisory']]);
  });
});
