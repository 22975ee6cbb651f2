// A value a person gave (a flag, an argument, a path) is quoted in a
// diagnostic through quote(), clip() or clipPath() (engine/diags/quote.ts):
// `fleet plan --target "m\nerror[spec.fake]: …"` printed a second line that
// read as a diagnostic of its own, and a 100 KB --target, --exclude, fleet
// import --data-center or cloud id printed 300 characters of it (the diag()
// backstop) where a quote shows 100. Each is now one escaped line, its value
// cut to QUOTE_LIMIT (a path to WHERE_LIMIT, its middle cut).
// test/bounded-diagnostics.cli.test.ts bounds the lines; this says they are
// not forged, and that the value is quoted, not cut by the backstop.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUOTE_LIMIT } from '../engine/diags/index.ts';
import { WHERE_LIMIT } from '../engine/diags/quote.ts';
import { runCli } from './helpers/cli.ts';
import { fleetYaml, stackYaml } from './helpers/fuzz.ts';
import { REPO } from './helpers/stack.ts';

const FORGED = 'm\nerror[spec.fake]: Forged\n  at x:1:1';
const HUGE = 'y'.repeat(100_000);

interface Case {
  name: string;
  args: (stack: string, v: string) => string[];
  code: string;
  /** The value is a path: shown as clipPath() shows one. */
  path?: true;
  /** The code when the value is HUGE, or FORGED, where it differs. */
  hugeCode?: string;
  forgedCode?: string;
}

const CASES: Case[] = [
  { name: 'plan --target', args: (s, v) => ['plan', '--target', v, '--stack', s], code: 'plan.unknown-fleet' },
  { name: 'plan --exclude', args: (s, v) => ['plan', '--exclude', v, '--stack', s], code: 'plan.unknown-fleet' },
  // A name too long for the file system (in a folder that exists) was cli.internal, quoting Node's message whole.
  { name: 'plan --out', args: (s, v) => ['plan', '--out', v === HUGE ? join(s, v) : join(s, 'no-such-folder', v), '--stack', s], code: 'plan.out-failed', path: true },
  { name: 'apply PLANFILE', args: (s, v) => ['apply', join(s, 'no-such-folder', v), '--stack', s], code: 'apply.plan-file', path: true },
  { name: 'policy test PACKDIR', args: (s, v) => ['policy', 'test', join(s, 'no-such-folder', v)], code: 'policy.pack-missing', path: true },
  { name: 'policy graph PACKDIR', args: (s, v) => ['policy', 'graph', join(s, 'no-such-folder', v)], code: 'policy.pack-missing', path: true },
  { name: 'import --data-center', args: (s, v) => ['import', 'web/0', 'i-1', '--data-center', v, '--stack', s], code: 'cli.usage' },
  // The record's URL is in every message that names the record (record.description); one with a line break is malformed.
  { name: '--record-url', args: (s, v) => ['state', 'list', '--record-url', `pglite://${join(s, 'no-such-folder', v)}`, '--stack', s], code: 'record.not-found', forgedCode: 'spec.record-url', path: true },
  // One with a line break is refused as a cloud id (it holds a character that does not show).
  { name: 'import CLOUD_ID', args: (s, v) => ['import', 'web/0', v, '--stack', s], code: 'cli.usage', hugeCode: 'apply.import-not-found' },
];

describe('values people give, in diagnostics: one escaped line, quoted', () => {
  let root: string;
  let stack: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'fleet-forged-'));
    stack = join(root, 's');
    mkdirSync(join(stack, 'specs'), { recursive: true });
    cpSync(join(REPO, 'policies', 'default'), join(stack, 'pack'), { recursive: true });
    writeFileSync(join(stack, 'stack.yaml'), stackYaml().replace(join(REPO, 'policies', 'default'), 'pack'));
    writeFileSync(join(stack, 'specs', 'web.yaml'), fleetYaml);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const values = [
    { value: 'a line break and a forged diagnostic', v: FORGED },
    { value: 'a 100 KB value', v: HUGE },
  ];
  it.each(CASES.flatMap((c) => values.map((v) => ({ ...c, ...v }))))('$name: $value', async ({ args, code, hugeCode, forgedCode, path, v }) => {
    const r = await runCli(args(stack, v), { cwd: stack });
    expect(r.code).toBe(1);
    const lines = r.stderr.trimEnd().split('\n');
    // One diagnostic: its head, where it applies (when it says), its detail; nothing else starts a line.
    expect(lines.filter((l) => /^\s*(error|warning)\[/.test(l))).toHaveLength(1);
    expect(lines[0].startsWith(`error[${v === HUGE ? (hugeCode ?? code) : (forgedCode ?? code)}]`)).toBe(true);
    expect(lines.length).toBeLessThanOrEqual(3);
    expect(r.stderr).not.toMatch(/^\s*error\[spec\.fake\]/m);
    // The detail quotes the value; where the diagnostic applies (a path, or the name as an address) is cut at WHERE_LIMIT.
    const detail = lines.slice(1).filter((l) => !l.startsWith('  at '));
    expect(detail.join('\n')).not.toContain('y'.repeat((path ? WHERE_LIMIT : QUOTE_LIMIT) + 1));
    expect(r.stderr).not.toContain('y'.repeat(WHERE_LIMIT + 1));
  });
});

// A saved plan's strings (its stack, its seal's key id, a change's fleet) were written raw in apply's refusals of it:
// a plan file edited to stack "fz\nerror[...]" printed a forged line. Also the authority's, which checks the same.
describe("a saved plan's strings, in fleet apply's refusals of it: one escaped line, quoted", () => {
  let root: string;
  let stack: string;
  let plan: Record<string, unknown>;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'fleet-forged-plan-'));
    stack = join(root, 's');
    mkdirSync(join(stack, 'specs'), { recursive: true });
    cpSync(join(REPO, 'policies', 'default'), join(stack, 'pack'), { recursive: true });
    writeFileSync(join(stack, 'stack.yaml'), stackYaml().replace(join(REPO, 'policies', 'default'), 'pack'));
    writeFileSync(join(stack, 'specs', 'web.yaml'), fleetYaml);
    const r = await runCli(['plan', '--out', join(stack, 'plan.json'), '--stack', stack], { cwd: stack });
    expect(r.code).toBe(0);
    plan = JSON.parse(readFileSync(join(stack, 'plan.json'), 'utf8')) as Record<string, unknown>;
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  type Plan = { stack: string; seal: { keyId: string }; changes: { fleet: string }[] };
  it.each([
    { name: 'its stack', edit: (p: Plan, v: string) => void (p.stack = v), codes: ['apply.plan-stack'] },
    { name: "its seal's key id", edit: (p: Plan, v: string) => void (p.seal.keyId = v), codes: ['apply.plan-foreign'] },
    { name: "a change's fleet", edit: (p: Plan, v: string) => void (p.changes[0].fleet = v), codes: ['apply.plan-tampered', 'apply.plan-scope'] },
  ])('$name', async ({ edit, codes }) => {
    for (const v of [FORGED, HUGE]) {
      const p = structuredClone(plan) as Plan;
      edit(p, v);
      const file = join(stack, 'edited.json');
      writeFileSync(file, JSON.stringify(p));
      const r = await runCli(['apply', file, '--stack', stack], { cwd: stack });
      expect(r.code).toBe(1);
      const heads = r.stderr.split('\n').filter((l) => /^\s*(error|warning)\[/.test(l));
      expect(heads.map((l) => /^error\[([a-z.-]+)\]/.exec(l)?.[1])).toEqual(codes);
      expect(r.stderr).not.toMatch(/^\s*error\[spec\.fake\]/m);
      expect(r.stderr).not.toContain('y'.repeat(QUOTE_LIMIT + 1));
    }
  });
});
