// A diagnostic quotes what a person wrote (a value, a key, a label, a name, a
// path, a flag) bounded: `fleet validate` on a fleet spec whose `image:` was a
// 2,000,000-character string printed a 2 MB diagnostic. Whatever field or
// flag holds the huge value, every line of the output stays short, and the
// diagnostic still says which code and where (file:line:col for a file's
// content), in text and in --format json.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { fleetYaml, stackYaml } from './helpers/fuzz.ts';
import { REPO } from './helpers/stack.ts';

/** Long enough that a quote of it whole is unmistakable; the biggest is the one the defect was found with. */
const HUGE = 'x'.repeat(200_000);
const HUGE_2M = 'y'.repeat(2_000_000);
/** Characters that act on a terminal, then many that do not show, at length. */
const NASTY = `\u001b[2J\u202e${'\u200b'.repeat(50_000)}z`;
/** The longest line a diagnostic may print. */
const MAX_LINE = 1024;

/** `text` with the first line matching `re` (a `key: value` line) given `value`. */
const setLine = (text: string, re: RegExp, line: string): string => {
  if (!re.test(text)) throw new Error(`fixture: no line matches ${String(re)}`);
  return text.replace(re, line);
};

interface Case {
  name: string;
  /** What to change in the stack before the run (files) and the arguments to run. */
  write?: (stack: string) => void;
  args?: (stack: string) => string[];
  env?: Record<string, string>;
  /** The file (relative to the stack) a diagnostic must locate by line and column; undefined for a flag. */
  file?: string;
  /** A code among the errors; undefined for a run that must succeed (exit 0) and print its summary bounded. */
  code?: string;
}

const fleet = (stack: string, f: (t: string) => string) => writeFileSync(join(stack, 'specs', 'web.yaml'), f(fleetYaml));
const stackFile = (stack: string, f: (t: string) => string) => writeFileSync(join(stack, 'stack.yaml'), f(stackYaml().replace(join(REPO, 'policies', 'default'), 'pack')));
const pack = (stack: string, f: (t: string) => string) => {
  const file = join(stack, 'pack', 'policy.yaml');
  writeFileSync(file, f(readFileSync(file, 'utf8')));
};
const planFile = (stack: string, text: string) => writeFileSync(join(stack, 'plan.json'), text);

const CASES: Case[] = [
  // Fleet spec values, keys and labels.
  { name: 'fleet spec.image (2,000,000 characters)', write: (s) => fleet(s, (t) => setLine(t, /image: .*/, `image: ${HUGE_2M}`)), file: 'specs/web.yaml', code: 'spec.unknown-image' },
  { name: 'fleet spec.image (characters that do not show)', write: (s) => fleet(s, (t) => setLine(t, /image: .*/, `image: ${JSON.stringify(NASTY)}`)), file: 'specs/web.yaml', code: 'spec.unknown-image' },
  { name: 'fleet metadata.name', write: (s) => fleet(s, (t) => setLine(t, /name: web/, `name: ${HUGE}`)), file: 'specs/web.yaml', code: 'spec.invalid-fleet-name' },
  { name: 'fleet metadata.owner', write: (s) => fleet(s, (t) => setLine(t, /owner: .*/, `owner: " ${HUGE}"`)), file: 'specs/web.yaml', code: 'spec.invalid-value' },
  { name: 'fleet label key', write: (s) => fleet(s, (t) => setLine(t, /tier: front/, `? ${HUGE}\u200b\n    : front`)), file: 'specs/web.yaml', code: 'spec.invalid-value' },
  { name: 'fleet label value', write: (s) => fleet(s, (t) => setLine(t, /tier: front/, `tier: "${HUGE}\\u200b"`)), file: 'specs/web.yaml', code: 'spec.invalid-value' },
  { name: 'fleet unknown key', write: (s) => fleet(s, (t) => `${t}? ${HUGE}\n: 1\n`), file: 'specs/web.yaml', code: 'spec.unknown-key' },
  { name: 'fleet unknown key (near a known one)', write: (s) => fleet(s, (t) => setLine(t, / {2}count: 2/, `  count: 2\n  ? image${HUGE}\n  : 1`)), file: 'specs/web.yaml', code: 'spec.unknown-key' },
  { name: 'fleet spec.state', write: (s) => fleet(s, (t) => setLine(t, /state: Running/, `state: Running${HUGE}`)), file: 'specs/web.yaml', code: 'spec.state-not-requestable' },
  { name: 'fleet spec.count (digits)', write: (s) => fleet(s, (t) => setLine(t, /count: 2/, `count: ${'9'.repeat(100_000)}`)), file: 'specs/web.yaml', code: 'spec.wrong-type' },
  { name: 'fleet spec.count (a string)', write: (s) => fleet(s, (t) => setLine(t, /count: 2/, `count: "${HUGE}"`)), file: 'specs/web.yaml', code: 'spec.wrong-type' },
  { name: 'fleet rollout.maxSurge', write: (s) => fleet(s, (t) => setLine(t, /maxSurge: .*/, `maxSurge: "${HUGE}"`)), file: 'specs/web.yaml', code: 'spec.invalid-value' },
  { name: 'fleet hardware item', write: (s) => fleet(s, (t) => setLine(t, /- general/, `- ${HUGE}`)), file: 'specs/web.yaml', code: 'spec.hardware-unavailable' },
  { name: 'fleet placement data center', write: (s) => fleet(s, (t) => setLine(t, / {6}- miami/, `      - ${HUGE}`)), file: 'specs/web.yaml', code: 'spec.unknown-data-center' },
  { name: 'fleet placement.near', write: (s) => fleet(s, (t) => setLine(t, /near: miami/, `near: ${HUGE}`)), file: 'specs/web.yaml', code: 'spec.unknown-near' },
  { name: 'fleet a key given twice', write: (s) => fleet(s, (t) => `${t}${HUGE}: 1\n${HUGE}: 2\n`), file: 'specs/web.yaml', code: 'spec.yaml-syntax' },
  { name: 'fleet a NUL in a value', write: (s) => fleet(s, (t) => setLine(t, /owner: .*/, `owner: "${HUGE}\\0"`)), file: 'specs/web.yaml', code: 'spec.invalid-value' },
  // Stack values.
  { name: 'stack metadata.name', write: (s) => stackFile(s, (t) => setLine(t, /name: fz/, `name: " ${HUGE}"`)), file: 'stack.yaml', code: 'spec.invalid-value' },
  { name: 'stack unknown key', write: (s) => stackFile(s, (t) => `${t}? ${HUGE}\n: 1\n`), file: 'stack.yaml', code: 'spec.unknown-key' },
  { name: 'stack record URL', write: (s) => stackFile(s, (t) => setLine(t, /record: .*/, `record: mysql://${HUGE}`)), file: 'stack.yaml', code: 'spec.record-url' },
  { name: 'stack specs glob', write: (s) => stackFile(s, (t) => setLine(t, /"specs\/\*\.yaml"/, `"specs/${HUGE}/*.yaml"`)), file: 'stack.yaml', code: 'spec.read-error' },
  { name: 'stack policy pack path', write: (s) => stackFile(s, (t) => setLine(t, /path: pack/, `path: ${HUGE}`)), file: 'stack.yaml', code: 'spec.pack-not-found' },
  { name: 'stack data center name', write: (s) => stackFile(s, (t) => setLine(t, /- name: miami/, `- name: ${HUGE}`)), file: 'stack.yaml', code: 'spec.out-of-range' },
  // Policy pack values.
  { name: 'policy pack version', write: (s) => pack(s, (t) => setLine(t, /version: .*/, `version: [${HUGE}]`)), file: 'pack/policy.yaml', code: 'policy.schema' },
  { name: 'policy pack unknown key', write: (s) => pack(s, (t) => setLine(t, /^spec:$/m, `spec:\n  ? ${HUGE}\n  : 1`)), file: 'pack/policy.yaml', code: 'policy.schema' },
  { name: 'policy pack lifecycle initial state', write: (s) => pack(s, (t) => setLine(t, /initial: Requested/, `initial: ${HUGE}`)), file: 'pack/policy.yaml', code: 'policy.unknown-state' },
  { name: 'policy pack transition to a state', write: (s) => pack(s, (t) => setLine(t, /to: BeingCreated, operation: none/, `to: ${HUGE}, operation: none`)), file: 'pack/policy.yaml', code: 'policy.unknown-state' },
  { name: 'policy pack unknown rule', write: (s) => pack(s, (t) => setLine(t, /^ {2}rules:$/m, `  rules:\n    ? ${HUGE}\n    : enforcement: mandatory`)), file: 'pack/policy.yaml', code: 'policy.unknown-rule' },
  // Refused (at most 40 characters, no character that does not show), and quoted bounded.
  { name: 'policy pack name and version', write: (s) => pack(s, (t) => setLine(setLine(t, /name: default/, `name: ${JSON.stringify(NASTY + HUGE)}`), /version: .*/, `version: ${JSON.stringify(HUGE + NASTY)}`)), file: 'pack/policy.yaml', code: 'policy.schema' },
  // Saved plan files (fleet apply PLANFILE).
  { name: 'plan file formatVersion', write: (s) => planFile(s, `{"formatVersion": "${HUGE}"}`), args: (s) => ['apply', join(s, 'plan.json'), '--stack', s], file: 'plan.json', code: 'apply.plan-format' },
  { name: 'plan file key given twice', write: (s) => planFile(s, `{"formatVersion": "2", "${HUGE}": 1, "${HUGE}": 2}`), args: (s) => ['apply', join(s, 'plan.json'), '--stack', s], file: 'plan.json', code: 'apply.plan-tampered' },
  { name: 'plan file unknown key', write: (s) => planFile(s, `{"formatVersion": "2", "${HUGE}": 1}`), args: (s) => ['apply', join(s, 'plan.json'), '--stack', s], file: 'plan.json', code: 'apply.plan-file' },
  { name: 'plan file not JSON', write: (s) => planFile(s, `{"formatVersion": "2", ${HUGE}}`), args: (s) => ['apply', join(s, 'plan.json'), '--stack', s], file: 'plan.json', code: 'apply.plan-file' },
  { name: 'plan file path', args: (s) => ['apply', join(s, `${HUGE.slice(0, 200)}/${HUGE.slice(0, 200)}/${HUGE.slice(0, 200)}.json`), '--stack', s], code: 'apply.plan-file' },
  // Flags and variables.
  { name: '--parallelism', args: (s) => ['apply', '--yes', '--parallelism', HUGE, '--stack', s], code: 'cli.usage' },
  { name: '--lock-timeout', args: (s) => ['apply', '--yes', '--lock-timeout', NASTY, '--stack', s], code: 'cli.usage' },
  { name: '--limit', args: (s) => ['history', '--limit', HUGE, '--stack', s], code: 'cli.usage' },
  { name: '--record-url', args: (s) => ['plan', '--record-url', `mysql://${HUGE}`, '--stack', s], code: 'spec.record-url' },
  { name: '--format', args: (s) => ['validate', '--format', HUGE, '--stack', s], code: 'cli.usage' },
  { name: 'an unknown flag', args: (s) => ['validate', `--${HUGE}`, '--stack', s], code: 'cli.usage' },
  { name: 'an unknown command', args: () => [HUGE], code: 'cli.usage' },
  { name: '--stack', args: (s) => ['validate', '--stack', join(s, HUGE.slice(0, 250), HUGE.slice(0, 250), HUGE.slice(0, 250))], code: 'spec.stack-not-found' },
  { name: '--replace', args: (s) => ['plan', '--replace', HUGE, '--stack', s], code: 'plan.unknown-member' },
  { name: '--target', args: (s) => ['plan', '--target', HUGE, '--stack', s], code: 'plan.unknown-fleet' },
  { name: 'FLEET_RETRY_BUDGET_MS', args: (s) => ['apply', '--yes', '--stack', s], env: { FLEET_RETRY_BUDGET_MS: HUGE }, code: 'cli.usage' },
];

interface Shown {
  code: string;
  severity: string;
  detail: string;
  file?: string;
  line?: number;
  col?: number;
  address?: string;
}

/** The diagnostics of a --format json run: one document's `diagnostics`, or apply's diagnostic events. */
function diagnosticsOf(stdout: string): Shown[] {
  if (stdout.startsWith('{"type"')) return stdout.trim().split('\n').map((l) => JSON.parse(l) as Shown & { type: string }).filter((e) => e.type === 'diagnostic');
  return (JSON.parse(stdout) as { diagnostics: Shown[] }).diagnostics;
}

describe('huge values in files and flags: every diagnostic bounded, still coded and located', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'fleet-bounded-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  let n = 0;
  const fresh = (): string => {
    const stack = join(root, `s${n++}`);
    mkdirSync(join(stack, 'specs'), { recursive: true });
    cpSync(join(REPO, 'policies', 'default'), join(stack, 'pack'), { recursive: true });
    stackFile(stack, (t) => t);
    writeFileSync(join(stack, 'specs', 'web.yaml'), fleetYaml);
    return stack;
  };

  it.each(CASES.flatMap((c) => [false, true].map((json) => [`${c.name}${json ? ' (json)' : ''}`, c, json] as const)))('%s', async (_name, c, json) => {
    const stack = fresh();
    c.write?.(stack);
    const args = c.args?.(stack) ?? ['validate', '--stack', stack];
    const r = await runCli([...args, ...(json ? ['--format', 'json'] : [])], { cwd: stack, env: c.env });
    expect(r.code, r.stderr.slice(0, 2000)).toBe(c.code ? 1 : 0);
    // Text: every line. JSON: every diagnostic's detail and place (the document around them may echo the stack's
    // name, which is data, not a message).
    const shown = json ? diagnosticsOf(r.stdout).flatMap((d) => [d.detail, d.file ?? '', d.address ?? '']) : [...r.stdout.split('\n'), ...r.stderr.split('\n')];
    const long = shown.filter((l) => Buffer.byteLength(l) >= MAX_LINE);
    expect(long.map((l) => `${l.slice(0, 200)}… (${Buffer.byteLength(l)} bytes)`)).toEqual([]);
    // Nothing that acts on a terminal, in either form.
    expect(json ? JSON.stringify(diagnosticsOf(r.stdout)) : `${r.stdout}${r.stderr}`).toSatisfy((out: string) => !['\u001b', '\u202e', '\u200b'].some((c) => out.includes(c)));
    if (!c.code) return;
    const fileRe = c.file ? new RegExp(`${c.file.replace(/[.*/]/g, '\\$&')}:\\d+:\\d+`) : undefined;
    if (json) {
      const errors = diagnosticsOf(r.stdout).filter((d) => d.severity === 'error');
      expect(errors.map((d) => d.code)).toContain(c.code);
      const d = errors.find((e) => e.code === c.code)!;
      if (c.file) expect(`${d.file}:${d.line}:${d.col}`).toMatch(fileRe!);
    } else {
      expect(r.stderr).toMatch(new RegExp(`^error\\[${c.code.replace('.', '\\.')}\\]: `, 'm'));
      if (c.file) expect(r.stderr).toMatch(new RegExp(`^  at \\S*${fileRe!.source}`, 'm'));
    }
  }, 30_000);
});
