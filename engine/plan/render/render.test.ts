import { describe, expect, it } from 'vitest';
import { formatVmAddress } from '../../model/index.ts';
import type { VmRow } from '../../record/types.ts';
import type { LoadedFleet } from '../../spec/types.ts';
import { computePlan } from '../planner.ts';
import { noRulesPolicy } from '../policy-port.ts';
import { makeFleet, makePack, makeStack, vmRow } from '../test-support.ts';
import { planDigest } from '../digest.ts';
import type { Rollout, RolloutWave } from '../../model/plan-document.ts';
import { rolloutLine, waveLine } from './common.ts';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MARKDOWN_LIMIT, PRETTY_JSON_LIMIT, markdownMarker, renderJson, renderMarkdown, renderText } from './index.ts';

function plan(fleets: LoadedFleet[], record: VmRow[] = [], scope: { targets?: string[]; excludes?: string[] } = {}) {
  return computePlan({
    stack: makeStack(),
    pack: makePack(),
    fleets,
    record,
    fleetVersions: {},
    options: { targets: scope.targets ?? [], excludes: scope.excludes ?? [], allowDestroy: [], refresh: false },
    id: 'p',
    now: new Date(0),
    policy: noRulesPolicy,
  });
}

const web = makeFleet('web', { count: 2 });
const mixed = () =>
  plan(
    [makeFleet('web', { count: 4, image: 'ubuntu-22.04' }), makeFleet('api', { count: 1, size: { cpu: 8, memoryGiB: 8, diskGiB: 20 } })],
    [
      vmRow(web, 0, { state: 'PoweredOff' }),
      vmRow(web, 1, { image: 'ubuntu-24.04' }),
      vmRow(makeFleet('api'), 0),
      vmRow(makeFleet('api'), 1),
      vmRow(web, 2),
    ],
  );

describe('renderText', () => {
  it('marks each action and ends with the summary line', () => {
    const text = renderText(mixed());
    expect(text).toContain('  »   web/0 transition in richmond: desired state is Running\n        path: PoweredOff » PoweredOn » Starting » Running');
    expect(text).toContain('  +   web/3 create in richmond');
    expect(text).toContain('  -/+ web/1 replace in richmond');
    expect(text).toContain('  ~   api/0 update in richmond');
    expect(text).toContain('path: Running » ShuttingDown » PoweredOff » [resize] » PoweredOn » Starting » Running');
    expect(text).toContain('  -   api/1 delete from richmond: count lowered to 1');
    expect(text.trimEnd().split('\n').at(-1)).toBe('Plan: 1 to create, 1 to transition, 1 to update, 1 to replace, 1 to delete.');
    expect(text).not.toContain('\x1b[');
  });

  it('says so when nothing changes', () => {
    const text = renderText(plan([web], [vmRow(web, 0), vmRow(web, 1)]));
    expect(text.trimEnd().split('\n').at(-1)).toBe('No changes. The record matches the specs.');
  });

  // A change of protect alone said "No changes. The record matches the specs." while apply wrote it.
  it('shows fleet settings and counts them in the summary line, with or without member changes', () => {
    const protectOnly = { ...plan([web], [vmRow(web, 0), vmRow(web, 1)]), fleetChanges: [{ fleet: 'web', protect: { from: true, to: false } }] };
    const text = renderText(protectOnly);
    expect(text).toContain('Fleet settings\n  ~ fleet web: protect true -> false\n');
    const want = 'Plan: 0 to create, 0 to transition, 0 to update, 0 to replace, 0 to delete; protect changes for 1 fleet.';
    expect(text.trimEnd().split('\n').at(-1)).toBe(want);
    const md = renderMarkdown(protectOnly);
    expect(md).toContain(`**${want}**`);
    expect(md).toContain('### Fleet settings\n\n- `~` fleet `web`: protect `true` -> `false`');
    expect(md).toContain('To apply exactly this plan');
    const both = { ...mixed(), fleetChanges: [{ fleet: 'api', protect: { from: false, to: true } }, { fleet: 'web', protect: { from: true, to: false } }] };
    expect(renderText(both).trimEnd().split('\n').at(-1)).toBe('Plan: 1 to create, 1 to transition, 1 to update, 1 to replace, 1 to delete; protect changes for 2 fleets.');
  });

  // A change of owner alone said "No changes. The record matches the specs." and apply wrote nothing.
  it('shows an owner change beside a protect change, and counts each', () => {
    const owned = {
      ...plan([web], [vmRow(web, 0), vmRow(web, 1)]),
      fleetChanges: [
        { fleet: 'api', owner: { from: 'team-a', to: 'team-b' } },
        { fleet: 'web', protect: { from: false, to: true }, owner: { from: 'team-a', to: 'team-b' } },
      ],
    };
    const text = renderText(owned);
    expect(text).toContain('Fleet settings\n  ~ fleet api: owner team-a -> team-b\n  ~ fleet web: protect false -> true; owner team-a -> team-b\n');
    const want = 'Plan: 0 to create, 0 to transition, 0 to update, 0 to replace, 0 to delete; protect changes for 1 fleet, owner changes for 2 fleets.';
    expect(text.trimEnd().split('\n').at(-1)).toBe(want);
    const md = renderMarkdown(owned);
    expect(md).toContain(`**${want}**`);
    expect(md).toContain('- `~` fleet `api`: owner `team-a` -> `team-b`\n- `~` fleet `web`: protect `false` -> `true`; owner `team-a` -> `team-b`');
  });

  it('says the policy vetoed every change instead of "matches the specs" when nothing can change', () => {
    // No data center offers the hardware: the create is vetoed, nothing is left to change.
    const vetoed = plan([makeFleet('gpu', { count: 2, hardware: ['gpu-h100'] })]);
    expect(vetoed.blocked).toBe(true);
    const last = (text: string) => text.trimEnd().split('\n').at(-1);
    expect(last(renderText(vetoed))).toBe('No changes: the policy vetoed what the specs ask for (1 mandatory violation). The record does not match the specs.');
    expect(renderMarkdown(vetoed)).toContain('**No changes: the policy vetoed what the specs ask for (1 mandatory violation).');
  });

  // Members left in a data center their fleet may no longer use: nothing to change, but the record does not
  // match the specs, as the line claimed.
  it('does not say "matches the specs" beside advisory findings', () => {
    const f = makeFleet('web', { count: 1, placement: { dataCenters: ['richmond'] } });
    const p = plan([f], [vmRow(f, 0, { dataCenter: 'miami' })]);
    const want = 'No changes to make; 1 advisory policy finding to review.';
    expect(renderText(p).trimEnd().split('\n').at(-1)).toBe(want);
    expect(renderMarkdown(p)).toContain(`**${want}**`);
  });

  // `fleet plan --target web --exclude web` (or excluding every fleet) compared
  // nothing and said "No changes. The record matches the specs." while every
  // member of web was still to be created; with --detailed-exitcode, exit 0.
  it('says no fleet is in scope, not "matches the specs", when --target / --exclude leave none', () => {
    const empty = plan([makeFleet('web', { count: 2 })], [], { targets: ['web'], excludes: ['web'] });
    expect(empty.fleets).toEqual([]);
    const want = 'No changes: --target and --exclude leave no fleet in scope, so nothing was compared with the record.';
    expect(renderText(empty).trimEnd().split('\n').at(-1)).toBe(want);
    expect(renderMarkdown(empty)).toContain(`**${want}**`);
  });

  it('colours only when asked', () => {
    expect(renderText(mixed(), { color: true })).toContain('\x1b[32m+');
  });
});

describe('renderMarkdown', () => {
  it('has policy first, a table per data center, details per fleet and a Mermaid diagram', () => {
    const md = renderMarkdown(mixed());
    expect(md).toContain('### By data center');
    expect(md).toContain('<details><summary><b>web</b>');
    expect(md).toContain('```mermaid\nstateDiagram-v2');
    expect(md).toContain('  PoweredOff --> PoweredOn: powerOn ×');
  });

  it('starts with the hidden marker, then names the plan id, its digest and how to apply it', () => {
    const p = mixed();
    const md = renderMarkdown(p, { planFile: 'plan.json' });
    expect(md.split('\n')[0]).toBe('<!-- fleet-plan stack=test -->');
    expect(md.split('\n')[0]).toBe(markdownMarker(p.stack));
    expect(md).toContain(`Plan \`p\` · digest \`${planDigest(p)}\``);
    expect(planDigest(p)).toMatch(/^[0-9a-f]{32}$/);
    expect(md).toContain('To apply exactly this plan: `fleet apply plan.json`;');
    expect(renderMarkdown(p)).toContain('To apply exactly this plan: `fleet apply PLANFILE` with the file `fleet plan --out` saved;');
    expect(renderMarkdown(plan([web], [vmRow(web, 0), vmRow(web, 1)]))).toContain('\nNothing to apply.\n');
  });

  it('keeps the marker out of reach of odd stack names (no early end of the HTML comment)', () => {
    expect(markdownMarker('a -->b')).toBe('<!-- fleet-plan stack=a_--_b -->');
  });

  // What people write in specs and stacks (an owner, a stack or data center
  // name, a custom rule's message) reaches the comment: it must neither break
  // a table (a `|`, even inside a code span, ends a GFM cell) nor become HTML
  // (`<!--` would hide the rest of the comment from the reviewer).
  describe('keeps odd names and messages as text', () => {
    const odd = () => {
      const p = mixed();
      p.stack = 'st|ack `x`\nnext';
      for (const c of p.changes) if (c.address === 'web/3') c.dataCenter = 'mi|ami <b>';
      p.policy.grants.push({ fleet: 'web', requested: 4, granted: 3, reason: 'quota of team|<!-- hidden', policy: 'owner-quota' });
      p.policy.violations.push({ policy: 'my|rule', level: 'advisory', address: p.stack, message: 'owner <img src=x> & co\nsecond line', hint: 'a \\| b' });
      return renderMarkdown(p);
    };
    /** Cells of a table row: split at pipes no backslash escapes. */
    const cells = (row: string) => row.replace(/\\./g, '').split('|').length;
    const tables = (md: string) => {
      const out: string[][] = [];
      let cur: string[] | null = null;
      for (const line of md.split('\n')) {
        if (line.startsWith('|')) (cur ??= []).push(line);
        else if (cur) {
          out.push(cur);
          cur = null;
        }
      }
      return out;
    };
    it.each([
      { name: 'every row of every table has as many cells as its header', check: (md: string) => tables(md).every((t) => t.every((r) => cells(r) === cells(t[0]))) },
      { name: 'no HTML comment but the marker', check: (md: string) => md.split('<!--').length === 2 },
      // Inside a code span HTML is literal.
      { name: 'no HTML tag from the data', check: (md: string) => !/<img|<b>(?![a-z]+<\/b>)/.test(md.replace(/`[^`\n]*`/g, '')) },
      { name: 'the heading stays one line', check: (md: string) => /^## Plan for stack `st\|ack 'x'\\u000Anext`$/m.test(md) },
    ])('$name', ({ check }) => {
      expect(check(odd())).toBe(true);
    });
  });

  it.each([
    { name: '2,000 members in 1 fleet', fleets: 1, count: 2000 },
    { name: '6,000 members in 600 fleets', fleets: 600, count: 10 },
    { name: '20,000 members in 2,000 fleets (rows cut)', fleets: 2000, count: 10 },
  ])('stays within 65,000 characters with the marker and digest kept: $name', ({ fleets, count }) => {
    const big = plan(Array.from({ length: fleets }, (_, i) => makeFleet(`fleet-with-a-long-name-${String(i).padStart(4, '0')}`, { count })));
    const md = renderMarkdown(big, { planFile: 'plan.json' });
    expect(MARKDOWN_LIMIT).toBe(65_000);
    expect(md.length).toBeLessThanOrEqual(65_000);
    expect(md.startsWith(`${markdownMarker(big.stack)}\n`)).toBe(true);
    expect(md).toContain(planDigest(big));
    expect(md).toContain('`fleet apply plan.json`');
  });

  // GitHub refuses a comment over 65,536 characters. Over the limit every
  // table keeps the rows that fit, in reading order, and says how many more
  // it leaves out; the reviewer sees as much of the plan as fits, not only
  // one line per fleet (10,000 creates in one fleet showed "web: 10000 to
  // create" and no member), nor only the summary (10,000 violations showed
  // none of them).
  describe('over the limit', () => {
    const changeRows = (md: string) => md.split('\n').filter((l) => /^\| (\+|-|~|-\/\+|») \| `/.test(l)).length;
    const violationRows = (md: string) => md.split('\n').filter((l) => /^\| (advisory|mandatory) \|/.test(l)).length;
    const notShown = (md: string, what: string) => Number(md.match(new RegExp(`^_([\\d,]+) more ${what} not shown; see the plan artifact`, 'm'))?.[1].replace(/,/g, '') ?? 0);
    const withViolations = (n: number, fleets = [makeFleet('web', { count: 10 })]) => {
      const p = plan(fleets);
      for (let i = 0; i < n; i++) p.policy.violations.push({ policy: 'custom', level: i % 2 ? 'advisory' : 'mandatory', address: `web/${i}`, message: 'too big '.repeat(10), hint: 'smaller' });
      return p;
    };
    it.each([
      { name: '10,000 changes in 1 fleet', doc: () => plan([makeFleet('web', { count: 10_000 })]), changes: 10_000, violations: 0 },
      { name: '20,000 changes in 2,000 fleets', doc: () => plan(Array.from({ length: 2000 }, (_, i) => makeFleet(`fleet-with-a-long-name-${String(i).padStart(4, '0')}`, { count: 10 }))), changes: 20_000, violations: 0 },
      { name: '10,000 violations', doc: () => withViolations(10_000), changes: 10, violations: 10_000 },
    ])('$name: within the limit, the first rows of each table, and how many more are not shown', ({ doc, changes, violations }) => {
      const p = doc();
      const md = renderMarkdown(p, { planFile: 'plan.json' });
      expect(md.length).toBeLessThanOrEqual(MARKDOWN_LIMIT);
      expect(md).toBe(renderMarkdown(p, { planFile: 'plan.json' }));
      expect(md.startsWith(`${markdownMarker(p.stack)}\n`)).toBe(true);
      expect(md).toContain('`fleet apply plan.json`');
      // Tables fill in reading order: 10,000 violations leave no room for change rows.
      if (!violations) expect(changeRows(md)).toBeGreaterThan(0);
      expect(changeRows(md) + notShown(md, 'changes')).toBe(changes);
      if (violations) {
        expect(violationRows(md)).toBeGreaterThan(0);
        expect(violationRows(md) + notShown(md, 'violations')).toBe(violations);
      }
      expect(md.split('<details>').length).toBe(md.split('</details>').length);
    });

    // Found by QA: the head (fleets in scope, one "Fleet settings" line per fleet) was never cut, so 2,500 new protected
    // fleets made a comment of 178,000 characters, which GitHub refuses: the pull request got no plan at all.
    it('2,500 new protected fleets: the fleets in scope and the fleet settings are cut too, and say how many more', () => {
      const fleets = Array.from({ length: 2500 }, (_, i) => makeFleet(`fleet-with-a-long-name-${String(i).padStart(4, '0')}`, { count: 1, protect: true }));
      // No row in the record for any (fleetProtection {}): each is a new fleet whose protection apply records.
      const p = computePlan({ stack: makeStack(), pack: makePack(), fleets, record: [], fleetVersions: {}, fleetProtection: {}, options: { targets: [], excludes: [], allowDestroy: [], refresh: false }, id: 'p', now: new Date(0), policy: noRulesPolicy });
      expect(p.fleetChanges).toHaveLength(2500);
      const md = renderMarkdown(p, { planFile: 'plan.json' });
      expect(md.length).toBeLessThanOrEqual(MARKDOWN_LIMIT);
      expect(md.startsWith(`${markdownMarker(p.stack)}\n`)).toBe(true);
      expect(md).toContain('protect changes for 2500 fleets');
      const settings = md.split('\n').filter((l) => l.startsWith('- `+` fleet ')).length;
      expect(settings).toBeGreaterThan(0);
      expect(settings + notShown(md, 'fleet settings')).toBe(2500);
      const scope = md.split('\n').find((l) => l.startsWith('Policy pack '))!;
      expect(scope).toMatch(/`fleet-with-a-long-name-0000`, .* and 2,\d{3} more$/);
      expect(md.split('<details>').length).toBe(md.split('</details>').length);
    });

    // Found in review: one row left out said "_1 more violations not shown" (and "1 more changes").
    it('one row left out is named in the singular', () => {
      // Rows longer than the room kept for the "not shown" lines: a limit just under the whole comment cuts the one change.
      const p = plan([makeFleet('web', { count: 1 })]);
      for (let i = 0; i < 3; i++) p.policy.violations.push({ policy: 'custom', level: 'advisory', address: `web/${i}`, message: `long ${i} `.repeat(300), hint: 'smaller' });
      const md = renderMarkdown(p, { limit: renderMarkdown(p, { limit: 1_000_000 }).length - 1 });
      const ones = md.match(/^_1 more .* not shown/gm) ?? [];
      expect(ones).toEqual(['_1 more change not shown']);
    });

    it('the golden comment of a plan over a small limit', () => {
      const p = withViolations(12, [makeFleet('web', { count: 10 }), makeFleet('api', { count: 25 })]);
      GOLDEN('over-limit.md', renderMarkdown(p, { limit: 5_000 }));
    });
  });
});

/** Compares with test/fixtures/render/FILE; UPDATE_GOLDEN=1 (or no file yet) writes it. */
function GOLDEN(file: string, actual: string) {
  const path = join(import.meta.dirname, '..', '..', '..', 'test', 'fixtures', 'render', file);
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, actual);
  }
  expect(actual).toBe(readFileSync(path, 'utf8'));
}

describe('text from the plan is shown as text', () => {
  const HOSTILE = [
    '<img src=x onerror=alert(1)> </code> <details><summary>open me</summary>',
    'a | b | c',
    'ends `code` early ``',
    'cc @alice and @acme/platform-admins',
    'fixes #123 and acme/infra#7',
    '![x](http://evil.example/t.png) [click](http://evil.example/)',
    '$\\href{http://evil.example}{x}$ **bold** _it_ ~~gone~~',
    'right-to-left \u202Eexe.txt\u202C and \u2066isolate\u2069, zero\u200Bwidth',
    'entity &#8238; &lt;b&gt;',
    'first line\nPlan: 0 to create, 0 to transition, 0 to update, 0 to replace, 0 to delete.',
    'ESC clears the log \u001b[2J\u001b[H and bell \u0007',
  ].join(' ');
  const untrusted = () => {
    const p = mixed();
    for (const c of p.changes) {
      if (c.address === 'web/3') {
        c.dataCenter = 'mi<b>ami</b> @bob';
        c.reason = `count is 4 ${HOSTILE}`;
      }
      if (c.address === 'web/0') c.path = [...c.path.slice(0, -1), 'Run**ning** \u001b[31m'];
    }
    p.policy.grants.push({ fleet: 'web', requested: 4, granted: 3, reason: 'requested 4, granted 3: quota of team|@acme/owners <!-- hidden', policy: 'owner-quota' });
    p.policy.violations.push({ policy: 'custom-rule', level: 'advisory', address: 'web/3', message: HOSTILE, hint: `${'very long '.repeat(2000)}end` });
    return p;
  };
  /** The markdown outside code spans, where markup acts. */
  const prose = (md: string) => md.replace(/`[^`\n]*`/g, '``').replaceAll('&#8203;', '\u200b');
  const OWN_TAGS = /^<(\/?(details|summary|b)>|!-- fleet-plan stack=)/;

  it.each([
    { name: 'no HTML tag but the comment\'s own', check: (md: string) => [...prose(md).matchAll(/(?<!\\)<[!/a-z]/gi)].every((m) => OWN_TAGS.test(prose(md).slice(m.index))) },
    { name: 'no HTML entity from the data (&#8238; would be a bidi override)', check: (md: string) => !/&(?!amp;|lt;)[#a-z]/i.test(prose(md)) },
    { name: 'no mention of a user or team', check: (md: string) => !/@[A-Za-z0-9]/.test(prose(md)) },
    { name: 'no #123 issue link', check: (md: string) => !/#\d/.test(prose(md)) },
    { name: 'no link or image', check: (md: string) => !/(?<!\\)\]\(/.test(prose(md)) },
    { name: 'no math, emphasis or strikethrough from the data', check: (md: string) => !/(?<!\\)(\$|\*\*bold|_it|~~)/.test(prose(md)) },
    // eslint-disable-next-line no-control-regex -- control characters are what must not be there
    { name: 'no control or bidi character', check: (md: string) => !/[\u0000-\u0009\u000b-\u001f\u007f\u200b\u202a-\u202e\u2066-\u2069]/.test(md) },
    { name: 'no line longer than 3,000 characters', check: (md: string) => md.split('\n').every((l) => l.length <= 3000) },
    { name: 'the injected newline forges no line', check: (md: string) => !/^Plan: 0/m.test(md) },
  ])('markdown: $name', ({ check }) => {
    expect(check(renderMarkdown(untrusted()))).toBe(true);
  });

  it('markdown: the golden comment', () => {
    GOLDEN('untrusted.md', renderMarkdown(untrusted()));
  });

  it.each([
    // eslint-disable-next-line no-control-regex -- control characters are what must not be there
    { name: 'no ESC or other control character without colour', color: false, check: (t: string) => !/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/.test(t) },
    // eslint-disable-next-line no-control-regex -- control characters are what must not be there
    { name: 'only its own colour sequences with colour', color: true, check: (t: string) => t.replace(/\x1b\[\d+m/g, '').search(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/) === -1 },
    { name: 'no bidi or zero-width character', color: false, check: (t: string) => !/[\u200b-\u200f\u202a-\u202e\u2066-\u2069]/.test(t) },
    { name: 'the injected newline forges no summary line', color: false, check: (t: string) => t.split('\n').filter((l) => l.startsWith('Plan: ')).length === 1 },
  ])('text: $name', ({ color, check }) => {
    expect(check(renderText(untrusted(), { color }))).toBe(true);
  });

  it('text: the golden output', () => {
    GOLDEN('untrusted.txt', renderText(untrusted()));
  });
});

describe('renderJson', () => {
  it('round-trips the document', () => {
    const p = mixed();
    expect(JSON.parse(renderJson(p))).toEqual(p);
  });

  // Pretty up to PRETTY_JSON_LIMIT changes, one line above; `pretty` overrides. The same JSON either way.
  const big = () => {
    const p = mixed();
    const c = p.changes[0];
    return { ...p, changes: Array.from({ length: PRETTY_JSON_LIMIT + 1 }, (_, i) => ({ ...c, index: i, address: formatVmAddress(c.fleet, i) })) };
  };
  it.each([
    { name: 'a small plan is pretty', doc: mixed, pretty: undefined, lines: 'many' },
    { name: 'a plan over the limit is one line', doc: big, pretty: undefined, lines: 'one' },
    { name: 'pretty: false makes a small plan one line', doc: mixed, pretty: false, lines: 'one' },
    { name: 'pretty: true makes a big plan pretty', doc: big, pretty: true, lines: 'many' },
  ] as const)('$name', ({ doc, pretty, lines }) => {
    const p = doc();
    const text = renderJson(p, pretty === undefined ? {} : { pretty });
    expect(text.endsWith('\n')).toBe(true);
    expect(text.trimEnd().includes('\n')).toBe(lines === 'many');
    expect(JSON.parse(text)).toEqual(p);
  });
});

// A blocked rollout printed "Rollout: 0 waves", and a wave that only brings members back "(0 out of service, bringing back …)".
describe('rolloutLine and waveLine', () => {
  const rollout = (waves: RolloutWave[]): Rollout => ({ fleet: 'web', maxUnavailable: 2, maxSurge: 0, failureThreshold: 1, reason: 'spec', waves });
  const wave = (w: Partial<RolloutWave>): RolloutWave => ({ wave: 1, members: [], unavailable: 0, surge: 0, ...w });
  it.each([
    { waves: [], want: 'no wave can start (the plan is blocked: see its violations); maxUnavailable 2, maxSurge 0, failureThreshold 1' },
    { waves: [wave({})], want: '1 wave; maxUnavailable 2, maxSurge 0, failureThreshold 1' },
    { waves: [wave({}), wave({ wave: 2 })], want: '2 waves; maxUnavailable 2, maxSurge 0, failureThreshold 1' },
  ])('rollout of $waves.length waves', ({ waves, want }) => {
    expect(rolloutLine(rollout(waves))).toBe(want);
  });
  it.each([
    { w: wave({ members: ['web/0', 'web/1'], unavailable: 2 }), want: 'web/0, web/1 (2 out of service)' },
    { w: wave({ members: ['web/0'], unavailable: 0, surge: 1 }), want: 'web/0 (0 out of service, 1 replaced by a surge VM first)' },
    { w: wave({ members: ['web/2'], unavailable: 1, returning: ['web/0'] }), want: 'web/2 (1 out of service, bringing back web/0)' },
    { w: wave({ returning: ['web/0', 'web/1'] }), want: 'bringing back web/0, web/1 (no other member out of service)' },
    // Members with no VM (a higher count's, a lost one's) are created, not brought back: they were listed as "bringing back".
    { w: wave({ members: ['web/0'], unavailable: 1, returning: ['web/4'] }), created: ['web/4'], want: 'web/0 (1 out of service, creating web/4)' },
    { w: wave({ returning: ['web/3', 'web/4', 'web/5'] }), created: ['web/4', 'web/5'], want: 'bringing back web/3, creating web/4, web/5 (no other member out of service)' },
    { w: wave({ returning: ['web/4', 'web/5'] }), created: ['web/4', 'web/5'], want: 'creating web/4, web/5 (no other member out of service)' },
  ])('$want', ({ w, want, created }) => {
    expect(waveLine(w, new Set(created))).toBe(want);
  });
});

// A fleet whose count grows with an image change: its new members are created in wave 1 (holding its places), and
// the text and markdown plans said "bringing back web/2" of a member that never existed.
describe('a rollout that also grows its fleet', () => {
  const grown = makeFleet('web', { count: 3, image: 'ubuntu-24.04', rollout: { maxUnavailable: 2 } });
  const p = plan([grown], [vmRow(grown, 0, { image: 'ubuntu-22.04', specHash: 'old' }), vmRow(grown, 1, { image: 'ubuntu-22.04', specHash: 'old' })]);
  it('is planned with the new member in wave 1, holding a place', () => {
    expect(p.changes.map((c) => `${c.address}:${c.action}:${c.wave}`)).toEqual(['web/0:replace:1', 'web/1:replace:2', 'web/2:create:1']);
    expect(p.rollouts?.[0].waves[0].returning).toEqual(['web/2']);
  });
  it.each([
    ['text', () => renderText(p), 'wave 1: web/0 (1 out of service, creating web/2)'],
    ['markdown', () => renderMarkdown(p), '| 1 | web/0 (creating web/2) | 1 | 0 |'],
  ])('%s says it is created, not brought back', (_name, render, want) => {
    expect(render()).toContain(want);
    expect(render()).not.toContain('bringing back');
  });
});

// A rollout that cannot start (spec.rollout.maxUnavailable 0 and a resize, which cannot use a surge VM): the
// pull-request comment showed its wave table's header with no row under it, beside the line that says no wave can start.
describe('a rollout that cannot start', () => {
  const resized = makeFleet('web', { count: 2, rollout: { maxUnavailable: 0, maxSurge: 1 } });
  const p = plan([resized], [0, 1].map((i) => vmRow(resized, i, { size: { cpu: 1, memoryGiB: 4, diskGiB: 20 }, specHash: 'small' })));
  it('is blocked with no wave', () => {
    expect(p.blocked).toBe(true);
    expect(p.rollouts?.[0].waves).toEqual([]);
  });
  it('has its line in the markdown plan, and no empty wave table', () => {
    const md = renderMarkdown(p);
    expect(md).toContain('**web**: no wave can start (the plan is blocked: see its violations)');
    expect(md).not.toContain('| wave | members | out of service | surge |');
  });
});

// Found by QA: over the comment limit, the rollout section counted only the wave rows it left out, so the title of
// a rollout with no wave (it cannot start), once it no longer fit, was dropped with no "not shown" line at all.
describe('over the limit, every cut of the markdown plan says what it left out', () => {
  const resized = makeFleet('web', { count: 2, rollout: { maxUnavailable: 0, maxSurge: 1 } });
  const imaged = makeFleet('api', { count: 3, image: 'ubuntu-24.04', rollout: { maxUnavailable: 1 } });
  const blocked = () =>
    plan(
      [imaged, resized],
      [...[0, 1].map((i) => vmRow(resized, i, { size: { cpu: 1, memoryGiB: 4, diskGiB: 20 }, specHash: 'small' })), ...[0, 1, 2].map((i) => vmRow(imaged, i, { image: 'ubuntu-22.04', specHash: 'old' }))],
    );
  const section = (md: string, title: string) => md.slice(md.indexOf(title), md.indexOf('\n### ', md.indexOf(title) + 1));
  const intro = 'Each wave starts once every member of the one before is back in its desired state and ready; the rollout stops at `failureThreshold` failed members.';
  const artifact = 'see the plan artifact (the JSON plan `fleet plan --out` saved), which has every one._';

  it('a rollout with no wave whose title does not fit is named as not shown', () => {
    const p = blocked();
    // Violations fill the budget: every later row and title is cut.
    for (let i = 0; i < 2_000; i++) p.policy.violations.push({ policy: 'custom', level: 'advisory', address: `api/${i}`, message: 'too big '.repeat(10), hint: 'smaller' });
    expect(p.rollouts?.map((r) => `${r.fleet} ${r.waves.length}`)).toEqual(['api 3', 'web 0']);
    const md = renderMarkdown(p);
    expect(md.length).toBeLessThanOrEqual(MARKDOWN_LIMIT);
    expect(section(md, '### Rollouts')).toBe(`### Rollouts\n\n${intro}\n\n_2 more rollouts (fleets \`api\`, \`web\`) and 3 more rollout waves not shown; ${artifact}\n`);
  });

  it('the golden comment of a plan whose rollout with no wave is cut', () => {
    const p = blocked();
    // 3,000 characters: the violations and api's rollout fit, web's title (a rollout with no wave) does not.
    const md = renderMarkdown(p, { limit: 3_000 });
    expect(md).toContain('**api**: 3 waves;');
    expect(md).toContain('_1 more rollout (fleet `web`) not shown;');
    GOLDEN('over-limit-rollout-no-wave.md', md);
  });

  it('when only the head fits, the comment says which sections it left out', () => {
    const p = blocked();
    const md = renderMarkdown(p, { limit: 1_200 });
    expect(md.split('\n').at(-2)).toBe(`_Not shown: 1 policy violation, 2 rollouts (3 waves), the data center and state path tables, 5 changes; ${artifact}`);
  });
});
