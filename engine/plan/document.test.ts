import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { PlanDocumentFile } from '../../specs/types/plan.ts';
import { runCli } from '../../test/helpers/cli.ts';
import type { PlanDocument } from '../model/index.ts';
import { checkPlanDocument, duplicateKeyAt, jsonSyntaxErrorAt, parsePlanJson, pointerSegments } from './document.ts';

// The hand-written plan types and the schema's generated ones describe one document:
// each must be assignable to the other (tsc checks these two lines).
export const toFile = (p: PlanDocument): PlanDocumentFile => p;
export const fromFile = (p: PlanDocumentFile): PlanDocument => p;

const fixtures = fileURLToPath(new URL('../../test/fixtures/plan/', import.meta.url));
const goldens = readdirSync(fixtures, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();
const GOOD = readFileSync(join(fixtures, '04-update-replace', 'expected.json'), 'utf8');

/** 1-based line and column of the first occurrence of `marker` in `text`. */
function at(text: string, marker: string): { line: number; col: number } {
  const i = text.indexOf(marker);
  if (i < 0) throw new Error(`marker ${marker} not in text`);
  const before = text.slice(0, i).split('\n');
  return { line: before.length, col: before[before.length - 1].length + 1 };
}

describe('checkPlanDocument', () => {
  it.each(goldens)('accepts the golden plan %s', (name) => {
    const text = readFileSync(join(fixtures, name, 'expected.json'), 'utf8');
    expect(checkPlanDocument(JSON.parse(text), text, 'plan.json')).toEqual([]);
  });

  const cases: {
    name: string;
    edit: (t: string) => string;
    /** Code, the text the diagnostic must point at (its first occurrence in the edited file), the address, and a piece of the detail. */
    want: { code: string; marker?: string; address?: string; detail: string }[];
  }[] = [
    {
      name: 'an operation outside the closed set',
      edit: (t) => t.replace('"operation": "boot"', '"operation": "bootz"'),
      want: [{ code: 'apply.plan-file', marker: '"operation": "bootz"', address: 'api/0', detail: 'changes[0].steps[4].operation must be one of "createVm"' }],
    },
    {
      name: 'a key the document does not have (the old boolean replace order)',
      edit: (t) => t.replace('"replaceOrder": "delete-before-create"', '"createBeforeDelete": false'),
      want: [{ code: 'apply.plan-file', marker: '"createBeforeDelete"', address: 'gpu/0', detail: 'changes[2] has a key "createBeforeDelete"' }],
    },
    {
      name: 'a replace order outside the closed set',
      edit: (t) => t.replace('"replaceOrder": "delete-before-create"', '"replaceOrder": "later"'),
      want: [{ code: 'apply.plan-file', marker: '"replaceOrder": "later"', address: 'gpu/0', detail: 'changes[2].replaceOrder must be one of "create-before-delete", "delete-before-create"' }],
    },
    {
      name: 'a missing top-level field',
      edit: (t) => t.replace('  "stack": "p04",\n', ''),
      want: [{ code: 'apply.plan-file', marker: '{', detail: 'the document lacks "stack"' }],
    },
    {
      name: 'a field of the wrong type',
      edit: (t) => t.replace('"blocked": false', '"blocked": "no"'),
      want: [{ code: 'apply.plan-file', marker: '"blocked"', detail: 'blocked must be boolean' }],
    },
    {
      name: 'a malformed address',
      edit: (t) => t.replace('"address": "api/1"', '"address": "api/01"'),
      want: [{ code: 'apply.plan-file', marker: '"address": "api/01"', address: 'api/01', detail: 'changes[1].address must match pattern' }],
    },
    {
      name: 'a negative record version in the basis',
      edit: (t) => t.replace('"vm-p04-api-0": 1', '"vm-p04-api-0": -1'),
      want: [{ code: 'apply.plan-file', marker: '"vm-p04-api-0": -1', detail: 'basis.vms.vm-p04-api-0 must be >= 0' }],
    },
    {
      name: 'an enforcement level outside the closed set',
      edit: (t) => t.replace('"level": "advisory"', '"level": "fatal"'),
      want: [{ code: 'apply.plan-file', marker: '"level": "fatal"', detail: 'policy.violations[0].level must be one of "advisory", "mandatory", "disabled"' }],
    },
    {
      name: 'two problems at once, each located',
      edit: (t) => t.replace('"blocked": false', '"blocked": 0').replace('"index": 0', '"index": -1'),
      want: [
        { code: 'apply.plan-file', marker: '"index": -1', address: 'api/0', detail: 'changes[0].index must be >= 0' },
        { code: 'apply.plan-file', marker: '"blocked"', detail: 'blocked must be boolean' },
      ],
    },
    {
      name: 'a formatVersion "1" plan (every unchanged member a noop change): refused, at its formatVersion',
      edit: (t) => t.replace('"formatVersion": "2"', '"formatVersion": "1"'),
      want: [{ code: 'apply.plan-format', marker: '"formatVersion"', detail: 'formatVersion "1": a plan made by an earlier fleet' }],
    },
    {
      name: 'a format version from the future',
      edit: (t) => t.replace('"formatVersion": "2"', '"formatVersion": "3"'),
      want: [{ code: 'apply.plan-format', marker: '"formatVersion"', detail: 'formatVersion "3": this fleet reads only "2"' }],
    },
    {
      name: 'a v2 document without its unchanged summary',
      edit: (t) => JSON.stringify({ ...JSON.parse(t), unchanged: undefined }, null, 2),
      want: [{ code: 'apply.plan-file', marker: '{', detail: 'the document lacks "unchanged"' }],
    },
    {
      name: 'not a plan document at all',
      edit: () => '[1, 2, 3]\n',
      want: [{ code: 'apply.plan-file', detail: 'is not a plan document (no formatVersion)' }],
    },
    {
      // Saved from stdout in CI and applied: it said only "no formatVersion", though the plan was right there.
      name: 'the output of fleet plan --format json',
      edit: (t) => JSON.stringify({ plan: JSON.parse(t), diagnostics: [] }, null, 2),
      want: [{ code: 'apply.plan-file', detail: 'is the output of `fleet plan --format json` (the plan and its diagnostics, not sealed for apply), not a plan file; write one with `fleet plan --out plan.json`' }],
    },
  ];

  it.each(cases)('$name', ({ edit, want }) => {
    const text = edit(GOOD);
    expect(text).not.toBe(GOOD);
    const got = checkPlanDocument(JSON.parse(text), text, 'plan.json');
    expect(got.map((d) => d.code)).toEqual(want.map((w) => w.code));
    want.forEach((w, i) => {
      const d = got[i];
      expect(d.file).toBe('plan.json');
      expect(d.detail).toContain(w.detail);
      if (w.marker) expect({ line: d.line, col: d.col }).toEqual(at(text, w.marker));
      expect(d.address).toBe(w.address);
    });
  });

  it.each([
    ['', []],
    ['/changes/3/steps/0', ['changes', 3, 'steps', 0]],
    ['/basis/vms/a~1b~0c', ['basis', 'vms', 'a/b~c']],
    ['/basis/fleets/007', ['basis', 'fleets', '007']],
  ])('pointerSegments(%j)', (pointer, want) => {
    expect(pointerSegments(pointer)).toEqual(want);
  });
});

// `fleet apply PLANFILE` on a file that is not JSON said "is not JSON:
// Expected ... at position 5971" (or, for an unexpected token, quoted the
// text with no position at all) and named the file without a line or column.
describe('jsonSyntaxErrorAt: where a plan file stops being JSON', () => {
  it.each([
    // V8 gives these no position ("Unexpected token ']', "[1,2,]" is not valid JSON").
    { name: 'a trailing comma in an array', text: '[1,2,]', at: 5 },
    { name: 'a bare word', text: '{"a": x}', at: 6 },
    { name: 'a misspelt literal', text: '{\n"a": tru}', at: 10 },
    { name: 'a byte order mark (parsePlanJson drops it first)', text: '\ufeff{}', at: 0 },
    { name: 'single quotes', text: "{'a': 1}", at: 1 },
    // And these, which V8 positions the same way.
    { name: 'cut short', text: '{"a": [1, 2', at: 11 },
    { name: 'empty', text: '', at: 0 },
    { name: 'a comma before }', text: '{"a": 1,}', at: 8 },
    { name: 'text after the document', text: '{} x', at: 3 },
    { name: 'a tab inside a string', text: '{"a": "\t"}', at: 7 },
    { name: 'a leading zero', text: '[01]', at: 2 },
    { name: 'an exponent without digits', text: '[1e]', at: 3 },
    { name: 'a bad \\u escape', text: '["\\u12x4"]', at: 6 },
  ])('$name: at $at', ({ text, at }) => {
    expect(jsonSyntaxErrorAt(text)).toBe(at);
  });

  it.each(goldens)('finds no error in the golden plan %s', (name) => {
    expect(jsonSyntaxErrorAt(readFileSync(join(fixtures, name, 'expected.json'), 'utf8'))).toBeUndefined();
  });

  // Over many one-character edits of a plan: an error exactly when JSON.parse
  // fails, at the position V8 names whenever it names one.
  it('agrees with JSON.parse over 2,000 edits of a plan', () => {
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
    const chars = '{}[],:"\\ 0-e.tfnu\n\t\x01a';
    const wrong: string[] = [];
    for (let k = 0; k < 2000; k++) {
      const i = rnd(GOOD.length);
      const op = rnd(3);
      const text = op === 0 ? GOOD.slice(0, i) + GOOD.slice(i + 1) : op === 1 ? GOOD.slice(0, i) + chars[rnd(chars.length)] + GOOD.slice(i) : GOOD.slice(0, i);
      let v8: number | 'valid' | undefined;
      try {
        JSON.parse(text);
        v8 = 'valid';
      } catch (err) {
        const m = /at position (\d+)/.exec((err as Error).message);
        v8 = m ? Number(m[1]) : /Unexpected end/.test((err as Error).message) ? text.length : undefined;
      }
      const mine = jsonSyntaxErrorAt(text);
      if (v8 === 'valid' ? mine !== undefined : mine === undefined || (v8 !== undefined && mine !== v8)) wrong.push(`edit ${k} at ${i}: V8 ${v8}, here ${mine}`);
    }
    expect(wrong).toEqual([]);
  });

  it('parsePlanJson: located diagnostics; a byte order mark is ignored', () => {
    expect(parsePlanJson('{\n  "a": [1,\n  ]\n}\n', 'p.json')).toMatchObject({
      diagnostic: { code: 'apply.plan-file', file: 'p.json', line: 3, col: 3, detail: expect.stringMatching(/^p\.json is not JSON: Unexpected token '\]' at line 3, column 3\. /) },
    });
    // V8 quotes a long text shortened (`Unexpected token ']', ..."x": [1,2,]}" is not valid JSON`): none of it is kept.
    expect(parsePlanJson(`{"formatVersion": "2",\n "x": [1,2,]}`, 'p.json')).toMatchObject({
      diagnostic: { line: 2, col: 12, detail: expect.stringMatching(/^p\.json is not JSON: Unexpected token '\]' at line 2, column 12\. /) },
    });
    expect(parsePlanJson('  \n', 'p.json')).toMatchObject({ diagnostic: { line: 2, col: 1, detail: 'p.json is empty; write a plan with `fleet plan --out p.json`.' } });
    expect(parsePlanJson('\ufeff{"a": 1}', 'p.json')).toEqual({ doc: { a: 1 }, text: '{"a": 1}' });
  });
});

// JSON.parse keeps the last of a key given twice and says nothing: a plan
// file with `"stack": "other"` written before its sealed `"stack": "fz"`
// (or an `"action"` before the sealed one) was applied, its seal verified
// (it covers the parsed content), while a reader saw the first.
describe('parsePlanJson: a key given twice is an edit', () => {
  it.each([
    { name: 'at the top', text: '{\n  "stack": "other",\n  "stack": "fz"\n}', key: 'stack', at: [3, 3], first: [2, 3] },
    { name: 'in a change', text: '{"changes": [{"action": "create", "index": 0, "action": "delete"}]}', key: 'action', at: [1, 47], first: [1, 15] },
    { name: 'with space before the colon', text: '{"a" : 1, "b": {"c": 1}, "a" : 2}', key: 'a', at: [1, 26], first: [1, 2] },
    { name: 'written with an escape', text: '{"st\\u0061ck": "x", "stack": "y"}', key: 'stack', at: [1, 21], first: [1, 2] },
  ])('$name', ({ text, key, at, first }) => {
    expect(parsePlanJson(text, 'p.json')).toEqual({
      diagnostic: expect.objectContaining({
        code: 'apply.plan-tampered',
        file: 'p.json',
        line: at[0],
        col: at[1],
        detail: `p.json gives key ${JSON.stringify(key)} twice in one object (first at line ${first[0]}, column ${first[1]}): \`fleet plan --out\` writes each key once, so the file was edited after it was saved, and a reader could take the value applied for the other one. Plan again; never edit a saved plan.`,
      }),
    });
  });

  it.each([
    { name: 'one name in two objects', text: '{"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 3}, {"x": 4}]}' },
    { name: 'a key spelt in a string value', text: '{"reason": "count is 2; \\"web/1\\": gone", "web/1": 1}' },
    { name: 'an escaped backslash before a key end', text: '{"a\\\\": 1, "b": "\\\\"}' },
    { name: 'space before colons, no key twice', text: '{ "a" : 1, "b" :\n {"a" : 2} }' },
  ])('none in $name', ({ text }) => {
    expect(parsePlanJson(text, 'p.json')).toEqual({ doc: JSON.parse(text), text });
  });

  it.each(goldens)('none in the golden plan %s', (name) => {
    const text = readFileSync(join(fixtures, name, 'expected.json'), 'utf8');
    expect(duplicateKeyAt(text, JSON.parse(text))).toBeUndefined();
  });
});

describe('fleet apply PLANFILE', () => {
  /** `fleet apply plan.json --stack no/such/stack` with `text` as plan.json, in a folder of its own: the file is judged before the stack is opened. */
  async function applyPlanFile(text: string) {
    const dir = await mkdtemp(join(tmpdir(), 'fleet-plan-file-'));
    try {
      await writeFile(join(dir, 'plan.json'), text);
      return await runCli(['apply', 'plan.json', '--stack', 'no/such/stack'], { cwd: dir });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('refuses a formatVersion "1" plan file at its formatVersion line, before opening the stack', async () => {
    // A v1 document: the v2 one with its unchanged summary spelled as noop changes.
    const v2 = JSON.parse(GOOD) as Record<string, unknown>;
    const { unchanged: _unchanged, ...v1 }: Record<string, unknown> = { ...v2, formatVersion: '1' };
    const text = JSON.stringify(v1, null, 2);
    const r = await applyPlanFile(text);
    expect(r.code).toBe(1);
    const { line, col } = at(text, '"formatVersion"');
    expect(r.stderr).toContain(`error[apply.plan-format]: Unknown plan format\n  at plan.json:${line}:${col}\n`);
    expect(r.stderr).toContain('Make the plan again with `fleet plan --out`');
    expect(r.stderr).not.toContain('spec.stack-not-found');
  });

  it('refuses a plan file cut short at its end, located, before opening the stack', async () => {
    const text = GOOD.slice(0, GOOD.indexOf('"steps"'));
    const r = await applyPlanFile(text);
    expect(r.code).toBe(1);
    const lines = text.split('\n');
    expect(r.stderr).toContain(`error[apply.plan-file]: Plan file unreadable\n  at plan.json:${lines.length}:${lines[lines.length - 1].length + 1}\n`);
    expect(r.stderr).not.toContain('spec.stack-not-found');
  });

  it('reads a plan file saved with a byte order mark (it gets as far as the stack)', async () => {
    const r = await applyPlanFile(`\ufeff${GOOD}`);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toContain('apply.plan-file');
    expect(r.stderr).toContain('spec.stack-not-found');
  });

  it('refuses a malformed plan file with located diagnostics before opening the stack', async () => {
    const text = GOOD.replace('"operation": "boot"', '"operation": "bootz"');
    const r = await applyPlanFile(text);
    expect(r.code).toBe(1);
    const { line, col } = at(text, '"operation": "bootz"');
    expect(r.stderr).toContain(`error[apply.plan-file]: Plan file unreadable\n  at plan.json:${line}:${col} api/0\n`);
    expect(r.stderr).not.toContain('spec.stack-not-found');
  });
});
