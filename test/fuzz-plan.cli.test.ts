// Generated bad saved plans given to `fleet apply FILE`, through the real
// CLI (in-process): cut short, not JSON, huge, deeply nested, __proto__
// keys, keys given twice, another formatVersion, every kind of edit (the
// seal must refuse them). Each is refused whole with a located diagnostic:
// exit code 1, no crash, the record (its VMs, locks and history) and the
// data center unchanged, nothing written outside the stack's folder. The
// cases come from a fixed seed: the same every run.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { fleetYaml, judge, judgeEvents, rng, stackYaml, treeDigest, type Outcome } from './helpers/fuzz.ts';

/** Mutations of a saved plan's text: cut short, not JSON, another format, edited (each a refusal). */
function planMutations(text: string, seed: number): { name: string; text: string | Buffer }[] {
  const random = rng(seed);
  const plan = JSON.parse(text) as Record<string, unknown> & { changes: Record<string, unknown>[]; seal: Record<string, unknown> };
  const out: { name: string; text: string | Buffer }[] = [];
  const edit = (name: string, f: (p: typeof plan) => void) => {
    const p = structuredClone(plan);
    f(p);
    out.push({ name, text: JSON.stringify(p, null, 2) });
  };
  // Cut short at seeded offsets.
  for (let i = 0; i < 6; i++) {
    const at = Math.floor(random() * text.length);
    out.push({ name: `truncated at ${at}`, text: text.slice(0, at) });
  }
  out.push({ name: 'empty', text: '' });
  out.push({ name: 'whitespace', text: ' \n\t\n' });
  out.push({ name: 'a BOM only', text: '\uFEFF' });
  out.push({ name: 'YAML', text: 'formatVersion: "2"\nstack: fz\n' });
  out.push({ name: 'binary', text: Buffer.from(Array.from({ length: 4096 }, () => Math.floor(random() * 256))) });
  out.push({ name: 'invalid UTF-8 in a string', text: Buffer.concat([Buffer.from(text.slice(0, text.indexOf('"fz"') + 2)), Buffer.from([0xff, 0xfe]), Buffer.from(text.slice(text.indexOf('"fz"') + 2))]) });
  out.push({ name: 'a NUL in a string', text: text.replace('"fz"', '"f\\u0000z"') });
  out.push({ name: 'null', text: 'null' });
  out.push({ name: 'a number', text: '2' });
  out.push({ name: 'an array', text: `[${text}]` });
  out.push({ name: 'a string', text: JSON.stringify(text) });
  out.push({ name: 'deep nesting', text: `${'['.repeat(100_000)}${']'.repeat(100_000)}` });
  out.push({ name: 'deep nesting in a field', text: text.replace('"options": {', `"deep": ${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}, "options": {`) });
  out.push({ name: 'a huge string', text: text.replace('"fz"', `"${'x'.repeat(20_000_000)}"`) });
  // JSON.parse keeps the last of a key given twice: a reader sees the first (the seal covers the parsed content).
  out.push({ name: 'a key given twice at the top', text: text.replace('"stack": "fz",', '"stack": "other",\n  "stack": "fz",') });
  out.push({ name: 'a key given twice in a change', text: text.replace(/"action": "(\w+)"/, '"action": "create", "action": "$1"') });
  out.push({ name: 'a key given twice with space before its colon', text: text.replace('"blocked": false', '"blocked" : true, "blocked" : false') });
  out.push({ name: 'two documents', text: `${text}\n${text}` });
  out.push({ name: 'trailing garbage', text: `${text}x` });
  for (const v of [undefined, null, 2, '1', '3', '2 ', '', ['2'], { v: 2 }]) {
    edit(`formatVersion ${JSON.stringify(v)}`, (p) => {
      if (v === undefined) delete p.formatVersion;
      else p.formatVersion = v;
    });
  }
  edit('__proto__ at the top', (p) => Object.defineProperty(p, '__proto__', { value: { blocked: false, polluted: true }, enumerable: true }));
  out.push({ name: '__proto__ text at the top', text: text.replace('{', '{"__proto__": {"polluted": true},') });
  out.push({ name: '__proto__ text in a change', text: text.replace('"address"', '"__proto__": {"action": "delete"}, "address"') });
  out.push({ name: '__proto__ text in basis.vms', text: text.replace('"vms": {', '"vms": {"__proto__": 1,') });
  out.push({ name: 'constructor in basis.fleets', text: text.replace('"fleets": {', '"fleets": {"constructor": 1,') });
  out.push({ name: 'toString in basis.fleets', text: text.replace('"fleets": {', '"fleets": {"toString": 0, "hasOwnProperty": 0,') });
  // Re-ordered: changes reversed, steps reversed.
  edit('changes reversed', (p) => p.changes.reverse());
  edit('a change dropped', (p) => p.changes.pop());
  edit('a change doubled', (p) => p.changes.push(structuredClone(p.changes[0])));
  edit('steps reversed', (p) => (p.changes[0].steps as unknown[]).reverse());
  edit('no changes', (p) => (p.changes = []));
  // Edited fields (the seal must refuse them, or the schema first).
  const fields: [string, (p: typeof plan) => void][] = [
    ['blocked flipped', (p) => (p.blocked = !p.blocked)],
    ['stack renamed', (p) => (p.stack = 'other')],
    ['id changed', (p) => (p.id = '00000000-0000-4000-8000-000000000000')],
    ['id not a uuid', (p) => (p.id = '../../etc')],
    ['createdAt not a date', (p) => (p.createdAt = 'yesterday')],
    ['a change moved to another data center', (p) => (p.changes[0].dataCenter = 'richmond')],
    ['a change to another data center name with a slash', (p) => (p.changes[0].dataCenter = '../../x')],
    ['a change index negative', (p) => (p.changes[0].index = -1)],
    ['a change index huge', (p) => (p.changes[0].index = 1e300)],
    ['a change index fractional', (p) => (p.changes[0].index = 1.5)],
    ['a change action made delete', (p) => (p.changes[0].action = 'delete')],
    ['a change action unknown', (p) => (p.changes[0].action = 'explode')],
    ['a change address of another fleet', (p) => (p.changes[0].address = 'db/0')],
    ['a change fleet outside the scope', (p) => (p.changes[0].fleet = 'db')],
    ['a change vmId made up', (p) => (p.changes[0].vmId = 'vm-00000000')],
    ['a change cpu huge', (p) => ((p.changes[0].size as Record<string, number>).cpu = 1e9)],
    ['a change image swapped', (p) => ((p.changes[0].image as Record<string, string>).real = 'img-evil')],
    ['a change name with control characters', (p) => (p.changes[0].name = 'fz-web-\u001b[2J')],
    ['a change path emptied', (p) => (p.changes[0].path = [])],
    ['a change steps emptied', (p) => (p.changes[0].steps = [])],
    ['a change field unknown', (p) => (p.changes[0].extra = 1)],
    ['a change made null', (p) => (p.changes[0] = null as never)],
    ['changes made an object', (p) => (p.changes = {} as never)],
    ['summary edited', (p) => ((p.summary as Record<string, number>).create = 99)],
    ['basis emptied', (p) => (p.basis = { vms: {}, fleets: {} })],
    ['basis fleets version bumped', (p) => ((p.basis as { fleets: Record<string, number> }).fleets.web = 99)],
    ['fleets emptied', (p) => (p.fleets = [])],
    ['options edited', (p) => ((p.options as Record<string, unknown>).targets = ['web'])],
    ['seal removed', (p) => delete (p as Partial<typeof p>).seal],
    ['seal null', (p) => (p.seal = null as never)],
    ['seal signature edited', (p) => (p.seal.signature = `${String(p.seal.signature).slice(0, -2)}AA`)],
    ['seal signature empty', (p) => (p.seal.signature = '')],
    ['seal signature huge', (p) => (p.seal.signature = 'A'.repeat(1_000_000))],
    ['seal digest edited', (p) => (p.seal.digest = '0'.repeat(64))],
    ['seal keyId unknown', (p) => (p.seal.keyId = 'k-00000000')],
    ['seal keyId __proto__', (p) => (p.seal.keyId = '__proto__')],
    ['seal keyId toString', (p) => (p.seal.keyId = 'toString')],
    ['seal stackId other', (p) => (p.seal.stackId = 'stk-00000000-0000-4000-8000-000000000000')],
    ['seal alg none', (p) => (p.seal.alg = 'none')],
    ['seal a string', (p) => (p.seal = 'sealed' as never)],
    ['policy violation added', (p) => ((p.policy as { violations: unknown[] }).violations = [{ rule: 'x', enforcement: 'advisory', message: 'hi' }])],
  ];
  for (const [name, f] of fields) edit(name, f);
  return out;
}

describe('generated bad saved plans given to fleet apply: refused whole, the record untouched', () => {
  let root: string;
  let stack: string;
  let cwd: string;
  let planText: string;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'fleet-fuzz-plan-'));
    stack = join(root, 'stack');
    cwd = join(root, 'cwd');
    mkdirSync(join(stack, 'specs'), { recursive: true });
    mkdirSync(cwd);
    writeFileSync(join(stack, 'stack.yaml'), stackYaml());
    writeFileSync(join(stack, 'specs', 'web.yaml'), fleetYaml);
    const first = await runCli(['apply', '--yes', '--stack', stack], { cwd });
    expect(first.code, first.stderr).toBe(0);
    // A plan with a create, updates and a rollout, saved (sealed) by the stack's record.
    writeFileSync(join(stack, 'specs', 'web.yaml'), fleetYaml.replace('count: 2', 'count: 3').replace('cpu: 2', 'cpu: 4'));
    const planned = await runCli(['plan', '--out', join(root, 'saved.json'), '--stack', stack], { cwd });
    expect(planned.code, planned.stderr).toBe(0);
    planText = readFileSync(join(root, 'saved.json'), 'utf8');
  }, 60_000);
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  /** What the record holds: its VMs and locks, and its history. */
  const recordState = async () => {
    const list = await runCli(['state', 'list', '--format', 'json', '--stack', stack], { cwd });
    const history = await runCli(['history', '--format', 'json', '--limit', '1000', '--stack', stack], { cwd });
    expect(list.code, list.stderr).toBe(0);
    expect(history.code, history.stderr).toBe(0);
    return { list: JSON.parse(list.stdout) as unknown, history: JSON.parse(history.stdout) as unknown };
  };

  it('every mutation is refused with a located diagnostic; nothing is written', async () => {
    const before = await recordState();
    const cases = planMutations(planText, 1);
    expect(cases.length).toBeGreaterThan(80);
    const found: Outcome[] = [];
    const file = join(root, 'plan.json');
    for (const [i, m] of cases.entries()) {
      writeFileSync(file, m.text);
      const sim = treeDigest(join(stack, '.fleet', 'sim'));
      // Every other case in JSON: one diagnostic event per line on stdout.
      const json = i % 2 === 1;
      const r = await runCli(['apply', file, '--stack', stack, ...(json ? ['--format', 'json'] : [])], { cwd });
      if (r.code === 0) found.push({ case: m.name, problem: 'applied', stderr: r.stderr.slice(0, 2000) });
      else {
        const bad = json ? judgeEvents(m.name, r) : judge(m.name, r, {});
        if (bad) found.push(bad);
      }
      if (treeDigest(join(stack, '.fleet', 'sim')) !== sim) found.push({ case: m.name, problem: 'the data center changed' });
      if (readdirSync(root).sort().join() !== 'cwd,plan.json,saved.json,stack' || readdirSync(cwd).length) found.push({ case: m.name, problem: `written outside the stack: ${readdirSync(root).join()} / ${readdirSync(cwd).join()}` });
    }
    expect(found).toEqual([]);
    expect(await recordState()).toEqual(before);
    // The plan itself, re-indented (the seal covers the content, not the spacing), still applies.
    writeFileSync(file, JSON.stringify(JSON.parse(planText)));
    const r = await runCli(['apply', file, '--stack', stack], { cwd });
    expect(r.code, r.stderr).toBe(0);
  }, 90_000);
});
