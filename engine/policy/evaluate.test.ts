import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createContext, Script } from 'node:vm';
import { describe, expect, it } from 'vitest';
import type { Diagnostic } from '../diags/index.ts';
import { evaluateRules, ownersOf, requestsOf, shownFile } from './evaluate.ts';
import { loadPack } from './load.ts';
import { change, ctx, fleet, packWith, plan, scratch, vm } from './testdata/fixtures.ts';
import type { Change, Step } from '../model/index.ts';
import type { Finding, RequestFacts, Rule } from './types.ts';

const CUSTOM_PACK_DIR = fileURLToPath(new URL('./testdata/custom-pack', import.meta.url));

describe('evaluateRules with a pack of custom rule modules', () => {
  it('runs the custom rules with their config, and reports the one that throws', async () => {
    const { pack, diagnostics } = await loadPack(CUSTOM_PACK_DIR);
    expect(diagnostics).toEqual([]);
    const big = change('web/0', 'create', { size: { cpu: 16, memoryGiB: 64, diskGiB: 100 } });
    const small = change('web/1', 'create');
    const vs = evaluateRules(plan([big, small]), ctx({ images: pack!.images }), pack!);
    expect(vs.map((v) => [v.policy, v.level, v.address])).toEqual([
      ['max-cpu', 'mandatory', 'web/0'],
      ['explodes', 'mandatory', 's'],
    ]);
    expect(vs[0].message).toBe('16 vCPU is more than 8.');
    expect(vs[1].message).toBe('Rule explodes failed: boom');
  });

  it('lets the stack raise a custom rule limit', async () => {
    const { pack } = await loadPack(CUSTOM_PACK_DIR, { 'max-cpu': { maxCpu: 32 }, explodes: { enforcement: 'disabled' } });
    const big = change('web/0', 'create', { size: { cpu: 16, memoryGiB: 64, diskGiB: 100 } });
    expect(evaluateRules(plan([big]), ctx({ images: pack!.images }), pack!)).toEqual([]);
  });
});

/**
 * A custom rule is someone else's code: what its checks return is checked
 * too. Findings without an address or a hint, or not objects at all, came
 * out as `advisory sloppy at undefined: undefined` / `hint: undefined`, and
 * `fleet plan --out` wrote a plan that `fleet apply` then refused as "not
 * written by fleet plan --out, or edited since".
 */
describe('evaluateRules: what a check returns', () => {
  const returning = (value: unknown): Rule => ({ name: 'sloppy', description: 'd', configSchema: { type: 'object' }, checkChange: () => value as Finding[] });
  const cases: { name: string; returns: unknown; want: [policy: string, level: string, address: string, message: string | RegExp][] }[] = [
    { name: 'well-formed findings', returns: [{ address: 'web/0', message: 'm', hint: 'h' }], want: [['sloppy', 'advisory', 'web/0', 'm']] },
    { name: 'nothing (undefined)', returns: undefined, want: [] },
    { name: 'a finding without an address or hint', returns: [{ message: 'no address here' }], want: [['sloppy', 'mandatory', 'web/0', /^Rule sloppy failed: finding 0 is not \{ address, message, hint \} strings: \{"message":"no address here"\}/]] },
    { name: 'a string for a finding', returns: ['just a string'], want: [['sloppy', 'mandatory', 'web/0', /^Rule sloppy failed: finding 0 is not \{ address, message, hint \} strings: "just a string"/]] },
    { name: 'fields of the wrong type', returns: [{ address: 42, message: null, hint: 'h' }], want: [['sloppy', 'mandatory', 'web/0', /finding 0 is not/]] },
    { name: 'a promise (an async check)', returns: Promise.resolve([]), want: [['sloppy', 'mandatory', 'web/0', /returned a Promise: checks are synchronous/]] },
    { name: 'an object, not an array', returns: { address: 'web/0', message: 'm', hint: 'h' }, want: [['sloppy', 'mandatory', 'web/0', /did not return an array of findings/]] },
  ];
  it.each(cases)('$name', ({ returns, want }) => {
    const vs = evaluateRules(plan([change('web/0', 'create')]), ctx(), packWith([[returning(returns), 'advisory']]));
    expect(vs.map((v) => [v.policy, v.level, v.address, v.message])).toEqual(want.map(([p, l, a, m]) => [p, l, a, typeof m === 'string' ? m : expect.stringMatching(m)]));
    for (const v of vs) expect(Object.values(v).every((x) => typeof x === 'string' && x !== '')).toBe(true);
  });
});

/**
 * A custom rule whose check never returns hung `fleet plan`, `fleet apply`,
 * `fleet policy test` and the authority forever. Its checks now run under
 * the pack's deadline (ruleTimeoutSeconds): stopped there, the rule is one
 * mandatory violation at the change it was on, and one policy.rule-timeout
 * diagnostic. `bounded` keeps a test that would hang (on main) a failure:
 * vitest's own timeout cannot stop a synchronous loop.
 */
describe('evaluateRules: a custom rule that never returns', () => {
  const bounded = <T>(fn: () => T): T => {
    const c = createContext({ fn });
    return new Script('fn()').runInContext(c, { timeout: 30_000 }) as T;
  };
  const loop = (): never => {
    for (;;);
  };
  const finding = (address: string): Finding[] => [{ address, message: `seen ${address}`, hint: 'h' }];
  const cases: { name: string; rule: Partial<Rule>; want: [policy: string, level: string, address: string, message: string | RegExp][]; detail: RegExp }[] = [
    {
      name: 'checkChange loops on every change',
      rule: { checkChange: loop },
      want: [['spin', 'mandatory', 'web/0', /^Rule spin did not finish within 0\.2 s: its checkChange \([^)]*evaluate\.test\.ts:\d+:\d+\) was still running on web\/0 \(0 of 3 changes checked before it\), and was stopped\.$/]],
      detail: /checkChange .* web\/0 .*spec\.ruleTimeoutSeconds/,
    },
    {
      name: 'checkPlan loops',
      rule: { checkChange: (c) => finding(c.address), checkPlan: loop },
      want: [
        ['spin', 'advisory', 'web/0', 'seen web/0'],
        ['spin', 'advisory', 'web/1', 'seen web/1'],
        ['spin', 'advisory', 'web/2', 'seen web/2'],
        ['spin', 'mandatory', 's', /^Rule spin did not finish within 0\.2 s: its checkPlan \([^)]*evaluate\.test\.ts:\d+:\d+\) was still running on the plan of stack s, and was stopped\.$/],
      ],
      detail: /checkPlan/,
    },
    {
      name: 'checkChange loops on one change only: the findings before it stay, checkPlan does not run',
      rule: { checkChange: (c) => (c.address === 'web/1' ? loop() : finding(c.address)), checkPlan: () => finding('s') },
      want: [
        ['spin', 'advisory', 'web/0', 'seen web/0'],
        ['spin', 'mandatory', 'web/1', /still running on web\/1 \(1 of 3 changes checked before it\)/],
      ],
      detail: /web\/1/,
    },
    {
      // The count went on from checkChange's: "4 of 3 changes checked before it".
      name: 'its checkRequest preview loops on one change: counted from the first change of the preview',
      rule: { checkChange: (c) => finding(c.address), checkRequest: (req) => (req.address === 'web/1' ? loop() : []) },
      want: [
        ['spin', 'advisory', 'web/0', 'seen web/0'],
        ['spin', 'advisory', 'web/1', 'seen web/1'],
        ['spin', 'advisory', 'web/2', 'seen web/2'],
        ['spin', 'mandatory', 'web/1', /^Rule spin did not finish within 0\.2 s: its checkRequest \([^)]*evaluate\.test\.ts:\d+:\d+\) was still running on web\/1 \(1 of 3 changes checked before it\), and was stopped\.$/],
      ],
      detail: /checkRequest .* web\/1 /,
    },
  ];
  it.each(cases)('$name', { timeout: 60_000 }, ({ rule, want, detail }) => {
    const spin = { name: 'spin', description: 'd', configSchema: { type: 'object' }, ...rule } as Rule;
    const after: Rule = { name: 'after', description: 'd', configSchema: { type: 'object' }, checkPlan: () => finding('s') };
    const pack = { ...packWith([[spin, 'advisory'], [after, 'advisory']]), ruleTimeoutSeconds: 0.2 };
    const reported: Diagnostic[] = [];
    const changes = ['web/0', 'web/1', 'web/2'].map((a) => change(a, 'create'));
    const vs = bounded(() => evaluateRules(plan(changes), ctx(), pack, (d) => reported.push(d)));
    // The rules after the stopped one still run.
    const all = [...want, ['after', 'advisory', 's', 'seen s'] as const];
    expect(vs.map((v) => [v.policy, v.level, v.address, v.message])).toEqual(all.map(([p, l, a, m]) => [p, l, a, typeof m === 'string' ? m : expect.stringMatching(m)]));
    expect(reported).toEqual([expect.objectContaining({ code: 'policy.rule-timeout', severity: 'error', address: want.at(-1)![2], detail: expect.stringMatching(detail) })]);
  });

  it('points at the check in its module (file:line:col), and the plan goes on', { timeout: 60_000 }, async () => {
    const dir = await scratch({
      'policy.yaml': readFileSync(join(CUSTOM_PACK_DIR, 'policy.yaml'), 'utf8')
        .replace(/modules:[\s\S]*?rules:/, 'modules: [rules/spin.ts]\n  ruleTimeoutSeconds: 0.2\n  rules:')
        .replace(/ {4}max-cpu:[\s\S]*?(?= {4}protect:)/, ''),
      'rules/spin.ts': [
        "import type { Change } from '../types.ts';",
        '',
        'export default {',
        "  name: 'spin',",
        "  description: 'Never returns.',",
        "  configSchema: { type: 'object' },",
        '  checkChange(change: Change): unknown[] {',
        '    for (;;);',
        '  },',
        '};',
        '',
      ].join('\n'),
    });
    const { pack, diagnostics } = await loadPack(dir);
    expect(diagnostics).toEqual([]);
    expect(pack!.ruleTimeoutSeconds).toBe(0.2);
    const reported: Diagnostic[] = [];
    const vs = bounded(() => evaluateRules(plan([change('web/0', 'create')]), ctx({ images: pack!.images }), pack!, (d) => reported.push(d)));
    const file = join(dir, 'rules', 'spin.ts');
    expect(vs).toEqual([expect.objectContaining({ policy: 'spin', level: 'mandatory', address: 'web/0', message: expect.stringContaining(`its checkChange (${file}:7:3)`) })]);
    expect(reported).toEqual([expect.objectContaining({ code: 'policy.rule-timeout', file, line: 7, col: 3, address: 'web/0' })]);
  });
});

describe('shownFile', () => {
  it.each([
    ['/repo/policies/p/rules/spin.ts', '/repo', 'policies/p/rules/spin.ts'],
    ['/elsewhere/rules/spin.ts', '/repo', '/elsewhere/rules/spin.ts'],
    ['/repo', '/repo', '/repo'],
    ['rules/spin.ts', '/repo', 'rules/spin.ts'],
  ])('%s from %s -> %s', (file, cwd, want) => {
    expect(shownFile(file, cwd)).toBe(want);
  });
});

/**
 * A custom rule is handed the plan being made and the planner's context.
 * One that wrote to them (`change.size.cpu = 1`, `change.action = 'noop'`,
 * a record row's state) changed the plan document itself, which `fleet
 * apply` then carried out, and what the rules after it judged. Its inputs
 * are read-only: a write is the rule failing (a mandatory violation), and
 * the plan and every later rule see what the planner made.
 */
describe('evaluateRules: a rule that writes to its inputs', () => {
  const writer: Rule = {
    name: 'writer',
    description: 'd',
    configSchema: { type: 'object' },
    checkChange(c, rctx) {
      try {
        (rctx.record[0] as { state: string }).state = 'Deleted';
      } catch {
        // a frozen record: go on to the change
      }
      c.size.cpu = 1;
      (c as { action: string }).action = 'noop';
      return [];
    },
    checkPlan(p) {
      p.changes.length = 0;
      return [];
    },
  };
  const seen: unknown[] = [];
  const reader: Rule = {
    name: 'reader',
    description: 'd',
    configSchema: { type: 'object' },
    checkChange(c, rctx) {
      seen.push([c.action, c.size.cpu, rctx.record[0].state]);
      return [];
    },
  };
  it('changes neither the plan nor what the next rule sees, and fails', () => {
    seen.length = 0;
    const c = change('web/0', 'create', { size: { cpu: 16, memoryGiB: 64, diskGiB: 100 } });
    const p = plan([c]);
    const record = [vm('web/1')];
    const vs = evaluateRules(p, ctx({ record }), packWith([[writer, 'advisory'], [reader, 'mandatory']]));
    expect(p.changes).toHaveLength(1);
    expect(p.changes[0]).toMatchObject({ action: 'create', size: { cpu: 16 } });
    expect(record[0].state).toBe('Running');
    expect(seen).toEqual([['create', 16, 'Running']]);
    expect(vs.map((v) => [v.policy, v.level, v.address])).toEqual([
      ['writer', 'mandatory', 'web/0'],
      ['writer', 'mandatory', 's'],
    ]);
    expect(vs[0].message).toMatch(/^Rule writer failed: Cannot assign to read only property/);
  });
});

/**
 * A custom rule with only a checkRequest was judged at the authority and
 * nowhere in the plan: `fleet plan` showed no violation, and `fleet apply`
 * then had some of its creates vetoed after others were made (a stack of
 * 7 creates: 2 made, 5 vetoed, "rule no-big-disk: 200 GiB disk is more
 * than 50"). The plan previews it over the requests apply will send.
 */
describe('evaluateRules: a request-level custom rule is previewed in the plan', () => {
  const asked: RequestFacts[] = [];
  const noBigDisk: Rule = {
    name: 'no-big-disk',
    description: 'd',
    configSchema: { type: 'object' },
    checkRequest(req) {
      asked.push(req);
      return req.size.diskGiB > 50 ? [{ address: req.address, message: `${req.size.diskGiB} GiB disk is more than 50.`, hint: 'h' }] : [];
    },
  };
  const big = { cpu: 2, memoryGiB: 4, diskGiB: 100 };
  // Hears every request: it refuses none, so the preview asks it about each one apply sends.
  const heard: RequestFacts[] = [];
  const recorder: Rule = { name: 'recorder', description: 'd', configSchema: { type: 'object' }, checkRequest: (req) => (heard.push(req), []) };

  it('a create it vetoes is a violation at its level, once per change', () => {
    asked.length = 0;
    heard.length = 0;
    const c = change('web/0', 'create', { size: big, steps: [{ from: 'Requested', to: 'BeingCreated', member: 'current', operation: 'none' }, { from: 'BeingCreated', to: 'PoweredOff', member: 'current', operation: 'createVm' }] });
    const vs = evaluateRules(plan([c, change('web/1', 'create')]), ctx({ fleets: [fleet('web', { owner: 'team-a' })] }), packWith([[noBigDisk, 'mandatory'], [recorder, 'advisory']]));
    expect(vs.map((v) => [v.policy, v.level, v.address])).toEqual([['no-big-disk', 'mandatory', 'web/0']]);
    expect(vs[0].message).toMatch(/^100 GiB disk is more than 50\. \(its checkRequest, on the create of web\/0/);
    // The preview stops at the request the authority refuses: apply sends nothing more for web/0.
    expect(asked.filter((r) => r.address === 'web/0').map((r) => r.kind)).toEqual(['create']);
    // What the authority is asked, as it builds it: the create, then each edge.
    expect(heard.filter((r) => r.address === 'web/0').map((r) => [r.kind, r.from, r.to, r.operation, r.owner, r.dataCenter, r.image])).toEqual([
      ['create', null, 'Requested', 'insert', 'team-a', 'miami', 'ubuntu-22.04'],
      ['transition', 'Requested', 'BeingCreated', 'none', 'team-a', 'miami', 'ubuntu-22.04'],
      ['transition', 'BeingCreated', 'PoweredOff', 'createVm', 'team-a', 'miami', 'ubuntu-22.04'],
    ]);
  });

  it("an existing VM's edges carry its record row; a resize the new size, and the size after it", () => {
    asked.length = 0;
    heard.length = 0;
    const row = vm('web/0', { id: 'vm-0', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 } });
    const c = change('web/0', 'update', {
      vmId: 'vm-0',
      size: big,
      steps: [
        { from: 'Running', to: 'ShuttingDown', member: 'current', operation: 'shutdown' },
        { from: 'ShuttingDown', to: 'PoweredOff', member: 'current', operation: 'powerOff' },
        { from: 'PoweredOff', to: 'PoweredOff', member: 'current', operation: 'resize' },
        { from: 'PoweredOff', to: 'PoweredOn', member: 'current', operation: 'powerOn' },
      ],
    });
    const vs = evaluateRules(plan([c]), ctx({ record: [row] }), packWith([[noBigDisk, 'advisory'], [recorder, 'advisory']]));
    expect(heard.map((r) => [r.kind, r.from, r.to, r.size.diskGiB])).toEqual([
      ['transition', 'Running', 'ShuttingDown', 20],
      ['transition', 'ShuttingDown', 'PoweredOff', 20],
      ['resize', 'PoweredOff', 'PoweredOff', 100],
      ['transition', 'PoweredOff', 'PoweredOn', 100],
    ]);
    // The resize is refused: the preview asks no-big-disk nothing after it.
    expect(asked.map((r) => r.kind)).toEqual(['transition', 'transition', 'resize']);
    expect(vs.map((v) => [v.policy, v.level, v.address])).toEqual([['no-big-disk', 'advisory', 'web/0']]);
    expect(vs[0].message).toContain('on the resize in PoweredOff of web/0');
  });

  it('disabled: not run; noops: no request', () => {
    asked.length = 0;
    expect(evaluateRules(plan([change('web/0', 'create', { size: big })]), ctx(), packWith([[noBigDisk, 'disabled']]))).toEqual([]);
    expect(evaluateRules(plan([change('web/0', 'noop', { size: big })]), ctx(), packWith([[noBigDisk, 'mandatory']]))).toEqual([]);
    expect(asked).toEqual([]);
  });

  it('a checkRequest that throws is the rule failing, as at the authority', () => {
    const throws: Rule = { ...noBigDisk, name: 'throws', checkRequest: () => { throw new Error('boom'); } };
    const vs = evaluateRules(plan([change('web/0', 'create')]), ctx(), packWith([[throws, 'advisory']]));
    expect(vs.map((v) => [v.policy, v.level, v.address, v.message])).toEqual([['throws', 'mandatory', 'web/0', 'Rule throws failed: boom']]);
  });
});

/**
 * What a check throws is anyone's value. One that threw an object without a
 * way to be a string (`Object.create(null)`, a toString that throws)
 * crashed the plan: the report of the failure, `String(err)`, threw again
 * ("Cannot convert object to primitive value") out of evaluateRules.
 */
describe('evaluateRules: a check that throws what cannot be shown', () => {
  it.each([
    { name: 'an object with no prototype', thrown: () => Object.create(null) as unknown, shown: '{}' },
    { name: 'an object whose toString throws', thrown: () => ({ toString: () => { throw new Error('no'); } }), shown: '{}' },
    { name: 'an Error whose message throws', thrown: () => Object.defineProperty(new Error(), 'message', { get: () => { throw new Error('no'); } }), shown: 'Error' },
  ])('$name: the rule failed, a violation', ({ thrown, shown }) => {
    const rule: Rule = { name: 'weird', description: 'd', configSchema: { type: 'object' }, checkChange: () => { throw thrown(); } };
    const vs = evaluateRules(plan([change('web/0', 'create')]), ctx(), packWith([[rule, 'advisory']]));
    expect(vs.map((v) => [v.policy, v.level, v.address, v.message])).toEqual([['weird', 'mandatory', 'web/0', `Rule weird failed: ${shown}`]]);
  });
});

/**
 * A rule with both a checkChange and a checkRequest said the same problem
 * twice in the plan, in two wordings: `16 vCPU is more than 8.` from its
 * checkChange and `create of 16 vCPU refused (…) (its checkRequest, on the
 * create of web/0 …)` from the preview of its checkRequest, which dropped
 * only a message identical to one said before. Now the checkRequest
 * preview says nothing at an address where the same rule's checkChange or
 * checkPlan already reported something (the plan shows it in those words);
 * it still speaks where they said nothing, and a checkRequest that fails
 * is always shown.
 */
describe('evaluateRules: a rule with checkChange and checkRequest reports a problem once', () => {
  const bigCpu = (cpu: number): boolean => cpu > 8;
  const both = (over: Partial<Rule> = {}): Rule => ({
    name: 'max-cpu',
    description: 'd',
    configSchema: { type: 'object' },
    checkChange: (c) => (c.action !== 'delete' && bigCpu(c.size.cpu) ? [{ address: c.address, message: `${c.size.cpu} vCPU is more than 8.`, hint: 'h' }] : []),
    checkRequest: (req) => (bigCpu(req.size.cpu) ? [{ address: req.address, message: `${req.kind} with ${req.size.cpu} vCPU refused.`, hint: 'h' }] : []),
    ...over,
  });
  const big = { cpu: 16, memoryGiB: 4, diskGiB: 20 };
  const createPath = [
    { from: 'Requested', to: 'BeingCreated', member: 'current' as const, operation: 'none' as const },
    { from: 'BeingCreated', to: 'PoweredOff', member: 'current' as const, operation: 'createVm' as const },
  ];
  const cases: { name: string; rule: Rule; changes: () => Parameters<typeof plan>[0]; want: [policy: string, level: string, address: string, message: string | RegExp][] }[] = [
    {
      name: "checkChange's finding stands alone: no second wording from checkRequest",
      rule: both(),
      changes: () => [change('web/0', 'create', { size: big, steps: createPath }), change('web/1', 'create', { steps: createPath })],
      want: [['max-cpu', 'advisory', 'web/0', '16 vCPU is more than 8.']],
    },
    {
      name: "checkPlan's finding at an address likewise",
      rule: both({ checkChange: undefined, checkPlan: (p) => p.changes.filter((c) => bigCpu(c.size.cpu)).map((c) => ({ address: c.address, message: 'too big.', hint: 'h' })) }),
      changes: () => [change('web/0', 'create', { size: big, steps: createPath })],
      want: [['max-cpu', 'advisory', 'web/0', 'too big.']],
    },
    {
      name: 'checkRequest still speaks where checkChange said nothing (another address)',
      rule: both({ checkChange: (c) => (c.address === 'web/0' && bigCpu(c.size.cpu) ? [{ address: c.address, message: 'big.', hint: 'h' }] : []) }),
      changes: () => [change('web/0', 'create', { size: big, steps: createPath }), change('web/1', 'create', { size: big, steps: createPath })],
      want: [
        ['max-cpu', 'advisory', 'web/0', 'big.'],
        ['max-cpu', 'advisory', 'web/1', /^create with 16 vCPU refused\. \(its checkRequest, on the create of web\/1/],
      ],
    },
    {
      name: 'a checkRequest that fails is shown even where checkChange found something',
      rule: both({ checkRequest: () => { throw new Error('boom'); } }),
      changes: () => [change('web/0', 'create', { size: big, steps: createPath })],
      want: [
        ['max-cpu', 'advisory', 'web/0', '16 vCPU is more than 8.'],
        ['max-cpu', 'mandatory', 'web/0', 'Rule max-cpu failed: boom'],
      ],
    },
  ];
  it.each(cases)('$name', ({ rule, changes, want }) => {
    const vs = evaluateRules(plan(changes()), ctx(), packWith([[rule, 'advisory']]));
    expect(vs.map((v) => [v.policy, v.level, v.address, v.message])).toEqual(want.map(([p, l, a, m]) => [p, l, a, typeof m === 'string' ? m : expect.stringMatching(m)]));
  });
});

/**
 * requestsOf builds each request's facts field by field since the preview
 * of a custom checkRequest cost 12.7 µs per request (0.76 s of CPU for a
 * plan of 10,000 creates), most of it V8's object spread (bench/policy).
 * The facts must be what they were: the spread-built definition below is
 * the reference, over many generated changes (actions, steps of every
 * member, resizes, with and without a record row, owners from a spec or
 * from the record only).
 */
describe('requestsOf: the facts of each request, as the spread-built definition gave them', () => {
  function reference(c: Change, stack: string, owner: string, row: { dataCenter: string; image: string; size: Change['size']; encryptedDisk: boolean } | undefined): { facts: RequestFacts; what: string }[] {
    if (c.action === 'noop') return [];
    const base = { stack, fleet: c.fleet, address: c.address, owner };
    const fresh = { dataCenter: c.dataCenter, image: c.image.logical, size: c.size, encryptedDisk: c.encryptedDisk };
    const existing = row ? { dataCenter: row.dataCenter, image: row.image, size: row.size, encryptedDisk: row.encryptedDisk } : fresh;
    const out: { facts: RequestFacts; what: string }[] = [];
    const v = { current: c.action === 'create' ? fresh : existing, new: fresh, old: existing };
    const created = new Set<Step['member']>();
    const create = (member: Step['member']): void => {
      if (created.has(member)) return;
      created.add(member);
      out.push({ facts: { ...base, ...v[member], kind: 'create', from: null, to: 'Requested', operation: 'insert' }, what: 'the create' });
    };
    if (c.action === 'create') create('current');
    for (const step of c.steps) {
      if (step.member === 'new') create('new');
      const resize = step.operation === 'resize' && step.from === step.to;
      out.push({
        facts: { ...base, ...v[step.member], size: resize ? c.size : v[step.member].size, kind: resize ? 'resize' : 'transition', from: step.from, to: step.to, operation: step.operation },
        what: resize ? `the resize in ${step.from}` : `the edge ${step.from} -> ${step.to}`,
      });
      if (resize) v[step.member] = { ...v[step.member], size: c.size };
    }
    return out;
  }
  let seed = 7;
  const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)];
  const actions: Change['action'][] = ['create', 'transition', 'update', 'replace', 'delete', 'noop'];
  const ops: Step['operation'][] = ['none', 'createVm', 'powerOn', 'powerOff', 'resize', 'shutdown', 'boot', 'deleteVm'];
  const states = ['Requested', 'PoweredOff', 'PoweredOn', 'Running'];
  it('200 generated changes', () => {
    for (let i = 0; i < 200; i++) {
      const action = pick(actions);
      const steps: Step[] = Array.from({ length: rnd(6) }, () => {
        const from = pick(states);
        const op = pick(ops);
        return { from, to: op === 'resize' && rnd(3) > 0 ? from : pick(states), member: action === 'replace' ? pick(['new', 'old'] as const) : 'current', operation: op };
      });
      const size = (n: number): Change['size'] => ({ cpu: n, memoryGiB: 2 * n, diskGiB: 10 * n });
      const fleetName = pick(['web', 'db', 'gone']);
      const c = change(`${fleetName}/${i}`, action, { steps, size: size(1 + rnd(8)), encryptedDisk: rnd(2) === 0, dataCenter: pick(['miami', 'richmond']), ...(action === 'create' ? {} : { vmId: `vm-${i}` }) });
      const row = rnd(3) > 0 ? { dataCenter: 'richmond', image: 'rhel-9', size: size(1 + rnd(8)), encryptedDisk: rnd(2) === 0 } : undefined;
      const fleets = [fleet('web', { owner: 'team-a' }), fleet('db', { owner: 'team-b' })];
      const owners = { gone: 'team-c', web: 'team-z' };
      const owner = fleetName === 'web' ? 'team-a' : fleetName === 'db' ? 'team-b' : 'team-c';
      const got = requestsOf(c, 's', { initial: 'Requested' }, ownersOf({ fleets, owners }), (id) => (id === c.vmId ? (row as never) : undefined));
      expect(JSON.stringify(got)).toBe(JSON.stringify(reference(c, 's', owner, row)));
      for (const r of got) expect(Object.isFrozen(r.facts)).toBe(true);
    }
  });
});

/**
 * A custom rule's inputs were a frozen copy, and Object.freeze does not stop
 * Map#set or Set#add: a check could write to the Maps and Sets inside what
 * it is handed (a fleet's `pointers`, `allowDestroy`, `protectedFleets`)
 * without failing, and a fleet's pointers (one copy for every custom rule)
 * changed under the rules after it. Each write now throws (the rule fails,
 * a mandatory violation), and neither the rules after it nor the planner's
 * own inputs see a change, whether or not the rule catches the error.
 */
describe('evaluateRules: a rule that writes to a Map or Set it is handed', () => {
  type Ctx = Parameters<NonNullable<Rule['checkChange']>>[1];
  const pointersOf = (rctx: Ctx): Map<string, { line?: number }> => rctx.fleets[0].pointers as Map<string, { line?: number }>;
  const writes: { name: string; write: (rctx: Ctx) => unknown; message: RegExp }[] = [
    { name: 'a fleet\'s pointers: set', write: (rctx) => pointersOf(rctx).set('spec.count', { line: 99 }), message: /Cannot call set\(\) on a read-only Map/ },
    { name: 'a fleet\'s pointers: delete', write: (rctx) => pointersOf(rctx).delete('spec.count'), message: /Cannot call delete\(\) on a read-only Map/ },
    { name: 'a fleet\'s pointers: clear', write: (rctx) => pointersOf(rctx).clear(), message: /Cannot call clear\(\) on a read-only Map/ },
    { name: 'a value in a fleet\'s pointers', write: (rctx) => (pointersOf(rctx).get('spec.count')!.line = 99), message: /Cannot assign to read only property 'line'/ },
    { name: 'allowDestroy: add', write: (rctx) => (rctx.allowDestroy as Set<string>).add('db'), message: /Cannot call add\(\) on a read-only Set/ },
    { name: 'allowDestroy: delete', write: (rctx) => (rctx.allowDestroy as Set<string>).delete('web'), message: /Cannot call delete\(\) on a read-only Set/ },
    { name: 'allowDestroy: clear', write: (rctx) => (rctx.allowDestroy as Set<string>).clear(), message: /Cannot call clear\(\) on a read-only Set/ },
    { name: 'protectedFleets: add', write: (rctx) => (rctx.protectedFleets as Set<string>).add('db'), message: /Cannot call add\(\) on a read-only Set/ },
    { name: 'protectedFleets: delete', write: (rctx) => (rctx.protectedFleets as Set<string>).delete('web'), message: /Cannot call delete\(\) on a read-only Set/ },
    { name: 'protectedFleets: clear', write: (rctx) => (rctx.protectedFleets as Set<string>).clear(), message: /Cannot call clear\(\) on a read-only Set/ },
  ];
  const seen = (rctx: Ctx): unknown => ({
    pointers: [...pointersOf(rctx)].map(([k, v]) => [k, v.line]),
    allowDestroy: [...rctx.allowDestroy],
    protectedFleets: [...(rctx.protectedFleets ?? [])],
  });
  const cases = writes.flatMap((w) => [
    { ...w, name: `${w.name}, the error not caught`, caught: false },
    { ...w, name: `${w.name}, the error caught by the rule`, caught: true },
  ]);
  it.each(cases)('$name', ({ write, message, caught }) => {
    const planner = {
      fleets: [fleet('web', { pointers: new Map([['spec.count', { line: 7 }]]) })],
      allowDestroy: new Set(['web']),
      protectedFleets: new Set(['web']),
    };
    const before = seen(planner as unknown as Ctx);
    const after: unknown[] = [];
    const writer: Rule = {
      name: 'writer',
      description: 'd',
      configSchema: { type: 'object' },
      checkChange(_c, rctx) {
        if (!caught) write(rctx);
        else {
          try {
            write(rctx);
          } catch {
            // swallowed: what it tried to write must still not be seen
          }
        }
        return [];
      },
    };
    const reader: Rule = { name: 'reader', description: 'd', configSchema: { type: 'object' }, checkChange: (_c, rctx) => (after.push(seen(rctx)), []) };
    const vs = evaluateRules(plan([change('web/0', 'create')]), ctx(planner), packWith([[writer, 'advisory'], [reader, 'advisory']]));
    expect(vs.map((v) => [v.policy, v.level, v.address, v.message])).toEqual(caught ? [] : [['writer', 'mandatory', 'web/0', expect.stringMatching(message)]]);
    expect(after).toEqual([before]);
    expect(seen(planner as unknown as Ctx)).toEqual(before);
  });

  it('a rule may still read them, copy them, and change its copy', () => {
    const reader: Rule = {
      name: 'reader',
      description: 'd',
      configSchema: { type: 'object' },
      checkChange(c, rctx) {
        const mine = new Set(rctx.allowDestroy);
        mine.add('db');
        const p = new Map(rctx.fleets[0].pointers);
        p.clear();
        const ok = rctx.allowDestroy instanceof Set && rctx.fleets[0].pointers instanceof Map && rctx.allowDestroy.has('web') && rctx.fleets[0].pointers.get('spec.count')?.line === 7;
        return ok && mine.size === 2 && p.size === 0 ? [{ address: c.address, message: 'read', hint: 'h' }] : [];
      },
    };
    const vs = evaluateRules(plan([change('web/0', 'create')]), ctx({ fleets: [fleet('web', { pointers: new Map([['spec.count', { line: 7 }]]) })], allowDestroy: new Set(['web']) }), packWith([[reader, 'advisory']]));
    expect(vs.map((v) => v.message)).toEqual(['read']);
  });
});
