import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PlanDocument } from '../model/index.ts';
import { DEFAULT_PACK_DIR, change, plan as emptyPlan, scratch } from '../policy/testdata/fixtures.ts';
import { quote } from '../diags/index.ts';
import { diffRows, runPolicyTests, type PlanFn } from './policy-tests.ts';

const FLEET = `
  - apiVersion: fleet/v1
    kind: Fleet
    metadata: { name: web, owner: team-a, labels: { env: prod } }
    spec: { count: 2, image: ubuntu-22.04, size: { cpu: 2, memoryGiB: 4, diskGiB: 20 } }
`;

/** A pack folder holding the default policy.yaml and the given test cases. */
async function packWithCases(cases: Record<string, string>): Promise<string> {
  const policy = await readFile(join(DEFAULT_PACK_DIR, 'policy.yaml'), 'utf8');
  const files: Record<string, string> = { 'policy.yaml': policy };
  for (const [name, text] of Object.entries(cases)) files[`tests/${name}.yaml`] = text;
  return scratch(files);
}

describe('runPolicyTests', () => {
  it('passes every case of the default pack with the real planner', async () => {
    const { results, diagnostics } = await runPolicyTests(DEFAULT_PACK_DIR);
    expect(diagnostics).toEqual([]);
    expect(results.length).toBeGreaterThanOrEqual(6);
    for (const r of results) expect({ name: r.name, diff: r.diff, diagnostics: r.diagnostics, passed: r.passed }).toEqual({ name: r.name, diff: [], diagnostics: [], passed: true });
  });

  it('fails a case whose expectations differ, with a diff of expected and actual', async () => {
    const dir = await packWithCases({
      wrong: `stack:\n  dataCenters: [{ name: miami }]\nspecs:${FLEET}expect:\n  violations:\n    - { policy: protect, level: mandatory, address: web/0 }\n  grants:\n    - { fleet: web, requested: 2, granted: 1 }\n`,
      right: `stack:\n  dataCenters: [{ name: miami }]\nspecs:${FLEET}expect:\n  violations:\n    - { policy: require-encrypted-disk, level: advisory, address: web }\n`,
    });
    const { results } = await runPolicyTests(dir);
    expect(results.map((r) => [r.name, r.passed])).toEqual([
      ['right', true],
      ['wrong', false],
    ]);
    expect(results[1].diff).toEqual([
      'violations:',
      '  - expected { policy: protect, level: mandatory, address: web/0 }',
      '  + actual   { policy: require-encrypted-disk, level: advisory, address: web }',
      'grants:',
      '  - expected { fleet: web, requested: 2, granted: 1 }',
    ]);
  });

  it('fails an invalid case with located diagnostics instead of throwing', async () => {
    const dir = await packWithCases({
      'bad-schema': `stack:\n  dataCenters: [{ name: miami }]\nspecs: []\nexpect:\n  violations: [{ policy: protect }]\nsurprise: 1\n`,
      'bad-yaml': `stack: [\n`,
      'dup-key': `stack:\n  dataCenters: [{ name: miami }]\nstack: {}\nspecs: []\nexpect: {}\n`,
      'bad-spec': `stack:\n  dataCenters: [{ name: miami }]\nspecs:\n  - { apiVersion: fleet/v1, kind: Fleet, metadata: { name: web }, spec: {} }\nexpect: {}\n`,
    });
    const { results } = await runPolicyTests(dir);
    const byName = Object.fromEntries(results.map((r) => [r.name, r]));
    expect(results.every((r) => !r.passed)).toBe(true);
    expect(byName['bad-schema'].diagnostics.map((d) => `${d.code}@${d.line}`)).toEqual(['policy.test-case@5', 'policy.test-case@5', 'policy.test-case@6']);
    expect(byName['bad-yaml'].diagnostics.map((d) => d.code)).toEqual(['policy.yaml-syntax']);
    // It said only "Map keys must be unique", as policy.yaml did.
    expect(byName['dup-key'].diagnostics.map((d) => `${d.code}@${d.line}:${d.col} ${d.detail}`)).toEqual(['policy.yaml-syntax@3:1 Key "stack" is given twice in the same mapping (first at line 1, column 1); keep one.']);
    expect(byName['bad-spec'].diagnostics.length).toBeGreaterThan(0);
    expect(byName['bad-spec'].diagnostics.every((d) => d.file === byName['bad-spec'].file)).toBe(true);
  });

  // A record row in a state the pack does not have (a typo: Runing), in a
  // data center the case's stack does not have, or at an address given
  // twice was planned as it was: the case tested something else than it
  // said, and could pass.
  it('fails a case whose record names an unknown state or data center, or an address twice, at the row', async () => {
    const record = (rows: string[]) => `stack:\n  dataCenters: [{ name: miami }]\nspecs:${FLEET}record:\n${rows.map((r) => `  - ${r}\n`).join('')}expect: {}\n`;
    const dir = await packWithCases({
      state: record(['{ address: web/0, dataCenter: miami, state: Runing }']),
      dc: record(['{ address: web/0, dataCenter: miama, state: Running }']),
      twice: record(['{ address: web/0, dataCenter: miami, state: Running }', '{ address: web/0, dataCenter: miami, state: PoweredOff }']),
    });
    let planned = 0;
    const { results } = await runPolicyTests(dir, { plan: () => (planned++, emptyPlan([]) as PlanDocument) });
    expect(planned).toBe(0);
    const got = Object.fromEntries(results.map((r) => [r.name, [r.passed, r.diagnostics.map((d) => `${d.code}@${d.line}:${d.col} ${d.detail}`)]]));
    expect(got).toEqual({
      state: [false, [expect.stringMatching(/^policy\.test-case@9:42 record\[0\]\.state "Runing" is not a state of pack default's lifecycle/)]],
      dc: [false, [expect.stringMatching(/^policy\.test-case@9:23 record\[0\]\.dataCenter "miama" is not a data center of the case's stack \(miami\)/)]],
      twice: [false, [expect.stringMatching(/^policy\.test-case@10:7 record\[1\]\.address "web\/0" is also record\[0\]'s/)]],
    });
  });

  // A row's state or data center is the case's text, which a message put in raw: a newline in it forged a line of
  // the output (a diagnostic of its own), and a 100 KB one was printed whole up to the detail's bound. Quoted now.
  const forged = 'Runing\nerror[policy.forged]: all cases passed';
  const long = 'x'.repeat(100_000);
  it.each([
    { field: 'state', value: forged, row: (v: string) => `{ address: web/0, dataCenter: miami, state: ${JSON.stringify(v)} }`, says: "is not a state of pack default's lifecycle" },
    { field: 'state', value: long, row: (v: string) => `{ address: web/0, dataCenter: miami, state: ${JSON.stringify(v)} }`, says: "is not a state of pack default's lifecycle" },
    { field: 'dataCenter', value: forged, row: (v: string) => `{ address: web/0, dataCenter: ${JSON.stringify(v)}, state: Running }`, says: "is not a data center of the case's stack (miami)." },
    { field: 'dataCenter', value: long, row: (v: string) => `{ address: web/0, dataCenter: ${JSON.stringify(v)}, state: Running }`, says: "is not a data center of the case's stack (miami)." },
  ])("quotes a record row's $field of $value.length characters in its message", async ({ field, value, row, says }) => {
    const dir = await packWithCases({ c: `stack:\n  dataCenters: [{ name: miami }]\nspecs:${FLEET}record:\n  - ${row(value)}\nexpect: {}\n` });
    const { results } = await runPolicyTests(dir, { plan: () => emptyPlan([]) as PlanDocument });
    const details = results[0].diagnostics.map((d) => d.detail);
    expect(details).toHaveLength(1);
    expect(details[0].startsWith(`record[0].${field} ${quote(value)} ${says}`), details[0].slice(0, 300)).toBe(true);
    expect(details[0]).not.toContain('\n');
    expect(details[0].length).toBeLessThan(1000);
  });

  // `fleet plan` refuses a --target, --exclude or --allow-destroy naming no
  // fleet (plan.unknown-fleet); a case with one (targets: [dbb]) planned
  // nothing and passed, whatever it expected.
  it('fails a case whose options name a fleet neither its specs nor its record have', async () => {
    const dir = await packWithCases({
      typo: `stack:\n  dataCenters: [{ name: miami }]\nspecs:${FLEET}record:\n  - { address: db/0, dataCenter: miami, state: Running }\noptions: { targets: [web/1, wbe], excludes: [db], allowDestroy: [dd, web] }\nexpect: {}\n`,
    });
    let planned = 0;
    const { results } = await runPolicyTests(dir, { plan: () => (planned++, emptyPlan([]) as PlanDocument) });
    expect(planned).toBe(0);
    expect(results[0].passed).toBe(false);
    expect(results[0].diagnostics.map((d) => `${d.code}@${d.line}:${d.col} ${d.detail}`)).toEqual([
      "policy.test-case@10:29 options.targets[1] names no fleet of the case's specs or record (db, web): \"wbe\".",
      "policy.test-case@10:66 options.allowDestroy[0] names no fleet of the case's specs or record (db, web): \"dd\".",
    ]);
  });

  // A problem in a case's specs was shown at the case file with no line or
  // column ("spec.size has no diskGiB … (case x, specs)"): the specs are
  // loaded from a file written for the run, whose positions are not the case's.
  it("locates a problem of a case's specs at its place in the case file", async () => {
    const dir = await packWithCases({
      'bad-spec': [
        'stack:',
        '  dataCenters: [{ name: miami }]',
        'specs:',
        '  - { apiVersion: fleet/v1, kind: Fleet, metadata: { name: db, owner: team-a }, spec: { count: 1, image: rhel-9, size: { cpu: 2, memoryGiB: 8, diskGiB: 50 } } }',
        '  - apiVersion: fleet/v1',
        '    kind: Fleet',
        '    metadata: { name: web, owner: team-a }',
        '    spec:',
        '      count: 1',
        '      image: rhel-9',
        '      size: { cpu: 2, memoryGiB: 8, diskGB: 50 }',
        '      state: Runing',
        'expect: {}',
        '',
      ].join('\n'),
    });
    const { results } = await runPolicyTests(dir);
    expect(results[0].diagnostics.map((d) => `${d.code}@${d.line}:${d.col}`)).toEqual([
      'spec.missing-field@11:7',
      'spec.unknown-key@11:37',
      'spec.state-not-requestable@12:7',
    ]);
    expect(results[0].diagnostics.every((d) => d.file === results[0].file)).toBe(true);
  });

  it('hands the planner the loaded stack, fleets, record rows and options', async () => {
    const dir = await packWithCases({
      input: [
        'stack:',
        '  dataCenters: [{ name: miami, capacity: { vms: 9 } }]',
        '  policyPack: { config: { max-disruption: { maxShare: 0.2 } } }',
        `specs:${FLEET}record:`,
        '  - { address: web/0, dataCenter: miami, state: Running }',
        '  - { address: web/1, dataCenter: miami, state: PoweredOff, image: rhel-9 }',
        'options: { allowDestroy: [web], targets: [web] }',
        'expect: {}',
        '',
      ].join('\n'),
    });
    let seen: Parameters<PlanFn>[0] | undefined;
    const fake: PlanFn = (input) => {
      seen = input;
      return emptyPlan([change('web/0', 'noop')]) as PlanDocument;
    };
    const { results } = await runPolicyTests(dir, { plan: fake });
    expect(results[0].passed).toBe(true);
    expect(seen!.stack.dataCenters.map((d) => [d.name, d.capacity.vms])).toEqual([['miami', 9]]);
    expect(seen!.pack.rules.get('max-disruption')!.config.maxShare).toBe(0.2);
    expect(seen!.fleets.map((f) => f.name)).toEqual(['web']);
    expect(seen!.record.map((r) => [r.address, r.state, r.image, r.specHash === seen!.fleets[0].specHash])).toEqual([
      ['web/0', 'Running', 'ubuntu-22.04', true],
      ['web/1', 'PoweredOff', 'rhel-9', false],
    ]);
    expect(seen!.options).toEqual({ targets: ['web'], excludes: [], allowDestroy: ['web'], refresh: false });
  });

  // Cases that assert nothing passed: a tests folder whose cases were all
  // misnamed (web.yaml.txt, or a subfolder) ran none and said "0 passed, 0
  // failed", exit 0; a case with no fleets and no record planned nothing,
  // expected nothing, and passed whatever the pack said.
  it('reports a tests folder without a case', async () => {
    const dir = await scratch({ 'policy.yaml': await readFile(join(DEFAULT_PACK_DIR, 'policy.yaml'), 'utf8'), 'tests/web.yaml.txt': 'x', 'tests/more/web.yaml': 'x' });
    const r = await runPolicyTests(dir);
    expect(r.results).toEqual([]);
    expect(r.diagnostics.map((d) => d.code)).toEqual(['policy.no-tests']);
    expect(r.diagnostics[0].detail).toMatch(/holds no test case/);
  });

  it('fails a case that plans no member and expects nothing', async () => {
    const dir = await packWithCases({
      empty: `stack:\n  dataCenters: [{ name: miami }]\nspecs: []\nexpect: {}\n`,
      'zero-count': `stack:\n  dataCenters: [{ name: miami }]\nspecs:\n  - { apiVersion: fleet/v1, kind: Fleet, metadata: { name: web, owner: team-a }, spec: { count: 0, image: ubuntu-22.04, size: { cpu: 2, memoryGiB: 4, diskGiB: 20 } } }\nexpect:\n  violations: []\n`,
      'record-only': `stack:\n  dataCenters: [{ name: miami }]\nspecs: []\nrecord:\n  - { address: web/0, dataCenter: miami, state: PoweredOff }\nexpect: {}\n`,
    });
    const { results } = await runPolicyTests(dir);
    const byName = Object.fromEntries(results.map((r) => [r.name, r]));
    for (const name of ['empty', 'zero-count']) {
      expect(byName[name].passed).toBe(false);
      expect(byName[name].diagnostics.map((d) => `${d.code}@${d.line}`)).toEqual([`policy.test-case@${name === 'empty' ? 4 : 5}`]);
      expect(byName[name].diagnostics[0].detail).toMatch(/plans no member and expects no violation or grant: it would pass whatever the pack says/);
    }
    // A member deleted is something to judge.
    expect(byName['record-only']).toMatchObject({ passed: true, diagnostics: [] });
  });

  // A record row's `owner` passed the case's schema and was dropped: the
  // planner never heard whose fleet api is, so api/0 counted toward no
  // quota, and a case asserting that it does failed (or one asserting the
  // opposite passed) whatever the pack said.
  it("counts a record row's owner, for a fleet no spec names", async () => {
    const dir = await packWithCases({
      owned: [
        'stack:',
        '  dataCenters: [{ name: miami }]',
        '  policyPack: { config: { owner-quota: { limits: { team-a: { vms: 2 } } } } }',
        `specs:${FLEET}record:`,
        '  - { address: api/0, dataCenter: miami, state: Running, owner: team-a }',
        'options: { targets: [web] }',
        'expect:',
        '  violations: [{ policy: require-encrypted-disk, level: advisory, address: web }]',
        '  grants: [{ fleet: web, requested: 2, granted: 1 }]',
        '',
      ].join('\n'),
      conflicting: [
        'stack:',
        '  dataCenters: [{ name: miami }]',
        `specs:${FLEET}record:`,
        '  - { address: api/0, dataCenter: miami, state: Running, owner: team-a }',
        '  - { address: api/1, dataCenter: miami, state: Running, owner: team-b }',
        'expect: {}',
        '',
      ].join('\n'),
    });
    const { results } = await runPolicyTests(dir);
    const byName = Object.fromEntries(results.map((r) => [r.name, r]));
    expect({ diff: byName.owned.diff, diagnostics: byName.owned.diagnostics }).toEqual({ diff: [], diagnostics: [] });
    expect(byName.conflicting.passed).toBe(false);
    expect(byName.conflicting.diagnostics.map((d) => `${d.code}@${d.line}`)).toEqual(['policy.test-case@10']);
  });

  it('reports a pack without a tests folder', async () => {
    const dir = await scratch({ 'policy.yaml': await readFile(join(DEFAULT_PACK_DIR, 'policy.yaml'), 'utf8') });
    const r = await runPolicyTests(dir);
    expect(r.diagnostics.map((d) => d.code)).toEqual(['policy.pack-missing']);
  });
});

describe('diffRows', () => {
  it('compares as multisets, order-free', () => {
    expect(diffRows('x', [{ a: 1 }, { a: 2 }], [{ a: 2 }, { a: 1 }])).toEqual([]);
    expect(diffRows('x', [{ a: 1 }, { a: 1 }], [{ a: 1 }])).toEqual(['x:', '  - expected { a: 1 }']);
    expect(diffRows('x', [], [{ a: 3 }])).toEqual(['x:', '  + actual   { a: 3 }']);
  });
});
