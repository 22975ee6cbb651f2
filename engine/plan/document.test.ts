import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { PlanDocumentFile } from '../../specs/types/plan.ts';
import { runCli } from '../../test/helpers/cli.ts';
import type { PlanDocument } from '../model/index.ts';
import { checkPlanDocument, pointerSegments } from './document.ts';

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

describe('fleet apply PLANFILE', () => {
  it('refuses a formatVersion "1" plan file at its formatVersion line, before opening the stack', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fleet-plan-file-'));
    try {
      // A v1 document: the v2 one with its unchanged summary spelled as noop changes.
      const v2 = JSON.parse(GOOD) as Record<string, unknown>;
      const { unchanged: _unchanged, ...v1 }: Record<string, unknown> = { ...v2, formatVersion: '1' };
      const text = JSON.stringify(v1, null, 2);
      await writeFile(join(dir, 'plan.json'), text);
      const r = await runCli(['apply', 'plan.json', '--stack', 'no/such/stack'], { cwd: dir });
      expect(r.code).toBe(1);
      const { line, col } = at(text, '"formatVersion"');
      expect(r.stderr).toContain(`error[apply.plan-format]: Unknown plan format\n  at plan.json:${line}:${col}\n`);
      expect(r.stderr).toContain('Make the plan again with `fleet plan --out`');
      expect(r.stderr).not.toContain('spec.stack-not-found');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a malformed plan file with located diagnostics before opening the stack', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fleet-plan-file-'));
    try {
      const text = GOOD.replace('"operation": "boot"', '"operation": "bootz"');
      await writeFile(join(dir, 'plan.json'), text);
      const r = await runCli(['apply', 'plan.json', '--stack', 'no/such/stack'], { cwd: dir });
      expect(r.code).toBe(1);
      const { line, col } = at(text, '"operation": "bootz"');
      expect(r.stderr).toContain(`error[apply.plan-file]: Plan file unreadable\n  at plan.json:${line}:${col} api/0\n`);
      expect(r.stderr).not.toContain('spec.stack-not-found');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
