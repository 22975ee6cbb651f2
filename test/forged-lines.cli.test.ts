// A value a person gave (a flag, an argument, a path) is quoted in a
// diagnostic through quote(), clip() or clipPath() (engine/diags/quote.ts):
// `fleet plan --target "m\nerror[spec.fake]: …"` printed a second line that
// read as a diagnostic of its own, and a 100 KB --target, --exclude, fleet
// import --data-center or cloud id printed 300 characters of it (the diag()
// backstop) where a quote shows 100. Each is now one escaped line, its value
// cut to QUOTE_LIMIT (a path to WHERE_LIMIT, its middle cut).
// test/bounded-diagnostics.cli.test.ts bounds the lines; this says they are
// not forged, and that the value is quoted, not cut by the backstop.
import http from 'node:http';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUOTE_LIMIT, REASON_LIMIT } from '../engine/diags/index.ts';
import { WHERE_LIMIT } from '../engine/diags/quote.ts';
import { runCli } from './helpers/cli.ts';
import { listenOnLoopback } from './helpers/proxy.ts';
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
    // The plan document's own checks (engine/plan/document.ts), before the seal's.
    { name: 'a key the format does not have', edit: (p: Plan, v: string) => void ((p as unknown as Record<string, unknown>)[v] = 1), codes: ['apply.plan-file'] },
    { name: 'its formatVersion', edit: (p: Plan, v: string) => void ((p as unknown as Record<string, unknown>).formatVersion = v), codes: ['apply.plan-format'] },
    {
      name: "the address of a change with a field of the wrong type",
      edit: (p: Plan, v: string) => void Object.assign(p.changes[0], { address: v, index: 'x' }),
      // The address's form and the index's type.
      codes: ['apply.plan-file', 'apply.plan-file'],
    },
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
      // A detail quotes at most QUOTE_LIMIT characters; where a diagnostic applies (a change's address) is cut at WHERE_LIMIT.
      const details = r.stderr.split('\n').filter((l) => !l.startsWith('  at '));
      expect(details.join('\n')).not.toContain('y'.repeat(QUOTE_LIMIT + 1));
      expect(r.stderr).not.toContain('y'.repeat(WHERE_LIMIT + 1));
    }
  });
});

// What a data center answers a step with (its authority's veto reason, its cloud's error message, an error body's
// message) is in the failed member's diagnostic, its journal row and its JSON event. `fleet apply` printed it escaped
// already, but a 100 KB one was 4,000 characters of it in the diagnostic (diag()'s backstop) and whole (100 KB) in
// the --format json step event. Clipped now (REASON_LIMIT) where the member's failure is made (engine/apply/member.ts).
// A stand-in DMZ client over loopback HTTP answers fleet apply's batches.
describe("a data center's answers, in fleet apply's and fleet refresh's output: escaped, clipped, JSON still JSON", () => {
  let root: string;
  let stack: string;
  let dmz: { url: string; close(): Promise<void> };
  let answer: (v: string) => { status: number; body: unknown } = () => ({ status: 500, body: {} });
  let value = '';
  /** What GET /v1/vms lists. */
  let listed: unknown[] = [];
  beforeAll(async () => {
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (req.method === 'POST' && req.url === '/v1/batch') {
          // Each item's first step answered as the case says: a run stops at an answer that is not ok.
          const items = (JSON.parse(body) as { steps: unknown[] }).steps;
          res.writeHead(200, { 'content-type': 'application/x-ndjson' });
          res.end(items.map((_, i) => `${JSON.stringify({ i, k: 0, ...answer(value) })}\n`).join(''));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(req.url === '/v1/vms' ? JSON.stringify({ vms: listed }) : '{}');
      });
    });
    dmz = await listenOnLoopback(server, new http.Agent());
    root = mkdtempSync(join(tmpdir(), 'fleet-forged-dmz-'));
    stack = join(root, 's');
    mkdirSync(join(stack, 'specs'), { recursive: true });
    writeFileSync(join(stack, 'stack.yaml'), stackYaml().replace('address: embedded', `address: ${dmz.url}`));
    writeFileSync(join(stack, 'specs', 'web.yaml'), fleetYaml);
  });
  afterAll(async () => {
    await dmz.close();
    rmSync(root, { recursive: true, force: true });
  });

  const HUGE_WORDS = 'yy '.repeat(34_000);
  const step = (over: Record<string, unknown>) => ({ status: 200, body: { requestId: 'r', decision: 'approved', reason: 'ok', outcome: 'ok', ...over } });
  it.each(
    [
      { name: "the authority's veto reason", answer: (v: string) => step({ decision: 'vetoed', outcome: 'vetoed', reason: v }), code: 'apply.step-vetoed' },
      { name: "the cloud's error message", answer: (v: string) => step({ outcome: 'failed', error: { code: 'driver.failed', message: v } }), code: 'apply.step-failed' },
      { name: "an error body's message (409)", answer: (v: string) => ({ status: 409, body: { error: { code: 'conflict', message: v } } }), code: 'apply.dmz-rejected' },
    ].flatMap((c) => [{ ...c, value: 'a line break and a forged diagnostic', v: FORGED }, { ...c, value: '100 KB of words', v: HUGE_WORDS }]),
  )('$name: $value', async ({ answer: a, v }) => {
    answer = a;
    value = v;
    const env = { FLEET_CLI_TOKEN_MIAMI: 'tok', FLEET_RETRY_BUDGET_MS: '0' };
    const text = await runCli(['apply', '--yes', '--stack', stack], { cwd: root, env });
    expect(text.code).toBe(1);
    expect(text.stderr).toContain('error[apply.member-failed]');
    expect(text.stderr).not.toMatch(/^\s*error\[spec\.fake\]/m);
    // Each member's failure: the data center's words at most REASON_LIMIT characters of it.
    for (const block of text.stderr.split(/^(?=error\[)/m)) expect(block.length).toBeLessThan(REASON_LIMIT + 1000);
    const json = await runCli(['apply', '--yes', '--format', 'json', '--stack', stack], { cwd: root, env });
    expect(json.code).toBe(1);
    for (const line of json.stdout.trimEnd().split('\n')) {
      expect(() => JSON.parse(line) as unknown, line.slice(0, 200)).not.toThrow();
      expect(line.length).toBeLessThan(REASON_LIMIT + 1500);
    }
  });

  // fleet refresh's drift lines name what the data center lists (a VM the record does not know: its name, its cloud
  // id): escaped, but a 100 KB one was printed whole, in the line and in the import it suggests. Clipped now.
  it.each([
    { value: 'a line break and a forged diagnostic', v: FORGED },
    { value: 'a 100 KB value', v: HUGE },
  ])('fleet refresh, a VM the record does not know: $value', async ({ v }) => {
    listed = [
      {
        vmId: '6f1c3e3a-9a4b-4c5e-8f00-0123456789ab', cloudId: v, dataCenter: 'miami', name: v, image: 'img', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 },
        encryptedDisk: true, status: 'present', power: 'on', agent: 'none', observedState: 'Running',
      },
    ];
    try {
      // The record, made by a saved plan when no apply above made it.
      expect((await runCli(['plan', '--out', join(root, 'refresh-plan.json'), '--stack', stack], { cwd: root })).code).toBe(0);
      const r = await runCli(['refresh', '--stack', stack], { cwd: root, env: { FLEET_CLI_TOKEN_MIAMI: 'tok', FLEET_RETRY_BUDGET_MS: '0' } });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('that the record does not know');
      expect(`${r.stdout}${r.stderr}`).not.toMatch(/^\s*error\[spec\.fake\]/m);
      expect(r.stdout).not.toContain('y'.repeat(QUOTE_LIMIT + 1));
    } finally {
      listed = [];
    }
  });
});
