// Every name a person writes that ends up in the record, a plan or a review
// must read as what it is: one holding a character that does not show (a
// zero-width space, a direction override, an escape), a space at either
// end or letters not composed is refused where it is written, with a
// diagnostic at its file:line:col (engine/diags/unseen.ts, unseenRefusal).
// Free text (a policy test case's name, which is its file's) is not refused
// but shown with those characters as escapes. One row per place a person
// writes such a value.
//
// Rows that failed before: the pack's lifecycle states and edges, its image
// catalog (logical images, their data centers, real images), its
// instance-type and powerOff catalogs, a module's rule name,
// require-encrypted-disk's label matches, a policy test case's record owner,
// a data center's hardware traits in the stack, and the name of a policy
// test case in `fleet policy test`.
// The others were refused already and are kept so.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { Diagnostic } from '../engine/diags/index.ts';
import { runPolicyTests } from '../engine/plan/policy-tests.ts';
import { loadPack } from '../engine/policy/load.ts';
import { loadStack } from '../engine/spec/index.ts';
import { runCli } from './helpers/cli.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEFAULT_PACK = join(ROOT, 'policies/default');
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function scratch(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fleet-unseen-'));
  dirs.push(dir);
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeFile(join(dir, rel), text);
  }
  return dir;
}

/** `line:col` (1-based) of every occurrence of `token` in `text`; of its `^`, when it has one (`- ^"x"`: the value). */
function positions(text: string, marked: string): string[] {
  const out: string[] = [];
  const skip = Math.max(0, marked.indexOf('^'));
  const token = marked.replace('^', '');
  for (let i = text.indexOf(token); i >= 0; i = text.indexOf(token, i + 1)) {
    const before = text.slice(0, i + skip).split('\n');
    out.push(`${before.length}:${before.at(-1)!.length + 1}`);
  }
  if (out.length === 0) throw new Error(`bug in test: ${token} not in the file`);
  return out;
}

/** Replaces every `from` in `text` (each must be there). */
function edit(text: string, edits: readonly (readonly [string, string])[]): string {
  for (const [from, to] of edits) {
    if (!text.includes(from)) throw new Error(`bug in test: ${from} not in the file`);
    text = text.split(from).join(to);
  }
  return text;
}

const PACK_TEXT = await readFile(join(DEFAULT_PACK, 'policy.yaml'), 'utf8');

const STACK = `apiVersion: fleet/v1
kind: Stack
metadata: { name: t }
spec:
  specs: [specs/*.yaml]
  record: pglite://.fleet/record
  policyPack: { path: ${DEFAULT_PACK} }
  site: { name: home, location: { lat: 35, lon: -80 } }
  dataCenters:
    - name: miami
      address: embedded
      location: { lat: 25.7617, lon: -80.1918 }
      hardware: [general]
      capacity: { vms: 10 }
`;
const FLEET = `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-a, labels: { env: prod } }
spec:
  count: 2
  image: ubuntu-22.04
  size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }
  hardware: [general]
`;

/** What a row loads: the file it edited and the diagnostics of loading it. */
type Loaded = { text: string; file: string; diagnostics: readonly Diagnostic[] };

async function packWith(edits: readonly (readonly [string, string])[], extra: Record<string, string> = {}): Promise<Loaded> {
  const text = edit(PACK_TEXT, edits);
  const dir = await scratch({ 'policy.yaml': text, ...extra });
  const r = await loadPack(dir);
  return { text, file: join(dir, 'policy.yaml'), diagnostics: r.diagnostics };
}

async function stackWith(file: 'stack.yaml' | 'specs/web.yaml', edits: readonly (readonly [string, string])[]): Promise<Loaded> {
  const files = { 'stack.yaml': STACK, 'specs/web.yaml': FLEET };
  files[file] = edit(files[file], edits);
  const dir = await scratch(files);
  const r = await loadStack(dir, { cwd: dir, env: {} });
  // Shown relative to the working folder (cwd).
  return { text: files[file], file, diagnostics: r.diagnostics };
}

/** A pack (the default) with one policy test case, `text` with `edits`: the case's diagnostics. */
async function caseWith(text: string, edits: readonly (readonly [string, string])[]): Promise<Loaded> {
  const edited = edit(text, edits);
  const dir = await scratch({ 'policy.yaml': PACK_TEXT, 'tests/c.yaml': edited });
  const run = await runPolicyTests(dir);
  return { text: edited, file: join(dir, 'tests', 'c.yaml'), diagnostics: [...run.diagnostics, ...run.results.flatMap((r) => r.diagnostics)] };
}
const CASE = `stack: { dataCenters: [{ name: miami }] }
specs: []
record:
  - { address: web/0, dataCenter: miami, state: Running, owner: team-a }
expect: { violations: [] }
`;

/** A rule module whose rule is named `name` (plain JavaScript: no TypeScript loader needed). */
const ruleModule = (name: string): string =>
  `export default { name: ${JSON.stringify(name)}, description: 'd', configSchema: { type: 'object' }, checkChange: () => [] };\n`;

interface Refused {
  place: string;
  load: () => Promise<Loaded>;
  /** The code every diagnostic has. */
  code: string;
  /**
   * Where each is told: every occurrence of these texts in the edited file. A
   * value in a mapping is told at its key, on its line (engine/policy/yamlpos.ts).
   */
  at: string | string[];
  /** What the value is shown as in the detail (escaped). */
  shown: string;
}

const Z = '\\u200B'; // a zero-width space, as YAML's double-quoted escape
const RLO = '\\u202E'; // a right-to-left override

const refused: Refused[] = [
  // The policy pack.
  {
    place: 'a lifecycle state, wherever the diagram writes it (states, an edge\'s from and to)',
    load: () => packWith([['ShuttingDown', `"Shutting${Z}Down"`]]),
    code: 'policy.schema',
    at: [`- ^"Shutting${Z}Down"`, `to: "Shutting${Z}Down"`, `from: "Shutting${Z}Down"`],
    shown: `"Shutting${Z}Down" holds U+200B at position 9`,
  },
  {
    place: 'the initial state (with a direction override)',
    load: () => packWith([['Requested', `"Request${RLO}ed"`]]),
    code: 'policy.schema',
    at: [`- ^"Request${RLO}ed"`, `initial: "Request`, `from: "Request${RLO}ed"`],
    shown: `"Request${RLO}ed" holds U+202E at position 8`,
  },
  {
    place: "an edge's state not in states: told once, as not showing (not also as unknown)",
    load: () => packWith([['  rules:\n', `      - { from: Running, to: "Running${Z}" }\n  rules:\n`]]),
    code: 'policy.schema',
    at: `to: "Running${Z}"`,
    shown: `lifecycle.transitions[16].to "Running${Z}" holds U+200B`,
  },
  {
    place: 'a requestable state',
    load: () => packWith([['requestable: [Running, PoweredOff]', `requestable: [Running, "PoweredOff "]`]]),
    code: 'policy.schema',
    at: `"PoweredOff "`,
    shown: 'lifecycle.requestable[1] "PoweredOff " starts or ends with a space',
  },
  {
    place: "an image catalog's logical image",
    load: () => packWith([['  ubuntu-24.04:\n', `  "ubuntu-24.04${Z}":\n`]]),
    code: 'policy.schema',
    at: `"ubuntu-24.04${Z}"`,
    shown: `Image "ubuntu-24.04${Z}" in images holds U+200B`,
  },
  {
    place: "an image catalog's logical image with a direction override",
    load: () => packWith([['  ubuntu-24.04:\n', `  "ubuntu-${RLO}40.42":\n`]]),
    code: 'policy.schema',
    at: `"ubuntu-${RLO}40.42"`,
    shown: `Image "ubuntu-${RLO}40.42" in images holds U+202E`,
  },
  {
    place: "an image catalog's data center",
    load: () => packWith([['      miami: img-ubuntu-2204-miami-v7', `      "miami${Z}": img-ubuntu-2204-miami-v7`]]),
    code: 'policy.schema',
    at: `"miami${Z}"`,
    shown: `Data center "miami${Z}" in images.ubuntu-22.04 holds U+200B`,
  },
  {
    place: "an image catalog's real image (told at its data center's key)",
    load: () => packWith([['miami: img-ubuntu-2204-miami-v7', `miami: "img-ubuntu-2204-miami-v7${Z}"`]]),
    code: 'policy.schema',
    at: `miami: "img-ubuntu-2204-miami-v7`,
    shown: `images.ubuntu-22.04.miami "img-ubuntu-2204-miami-v7${Z}" holds U+200B`,
  },
  {
    place: "the instance-type catalog's data center",
    load: () => packWith([['    virginia:\n      - { name: m6i.large', `    "virginia${Z}":\n      - { name: m6i.large`]]),
    code: 'policy.schema',
    at: `"virginia${Z}"`,
    shown: `Data center "virginia${Z}" in instanceTypes holds U+200B`,
  },
  {
    place: 'an instance type',
    load: () => packWith([['{ name: m6i.large,', `{ name: "m6i.large${Z}",`]]),
    code: 'policy.schema',
    at: `name: "m6i.large${Z}"`,
    shown: `instanceTypes.virginia[0].name "m6i.large${Z}" holds U+200B`,
  },
  {
    place: "powerOff's data center",
    load: () => packWith([['    eastus: deallocate', `    "eastus${Z}": deallocate`]]),
    code: 'policy.schema',
    at: `"eastus${Z}"`,
    shown: `Data center "eastus${Z}" in powerOff holds U+200B`,
  },
  {
    place: "a module's rule name",
    load: () => packWith([['  rules:\n', '  modules: [rules/r.mjs]\n  rules:\n']], { 'rules/r.mjs': ruleModule('max-cpu\u200b') }),
    code: 'policy.module-load',
    at: 'rules/r.mjs',
    shown: `Rule name "max-cpu${Z}" holds U+200B`,
  },
  {
    place: "require-encrypted-disk's label key",
    load: () => packWith([['match: { env: prod }', `match: { "env${Z}": prod }`]]),
    code: 'policy.rule-config',
    at: `"env${Z}"`,
    shown: `label key "env${Z}" in match holds U+200B`,
  },
  {
    place: "require-encrypted-disk's label value (told at its key)",
    load: () => packWith([['match: { env: prod }', `match: { env: "pr${RLO}od" }`]]),
    code: 'policy.rule-config',
    at: `env: "pr`,
    shown: `label value "pr${RLO}od" of "env" in match holds U+202E`,
  },
  {
    place: "owner-quota's owner",
    load: () => packWith([['limits: {}', `limits: { "team-a${Z}": { vms: 1 } }`]]),
    code: 'policy.rule-config',
    at: `"team-a${Z}"`,
    shown: `owner "team-a${Z}" in limits holds U+200B`,
  },
  // A policy test case (its specs and stack are checked as a fleet file and a stack file are).
  {
    place: "a policy test case's record owner",
    load: () => caseWith(CASE, [['owner: team-a', `owner: "team-a${Z}"`]]),
    code: 'policy.test-case',
    at: `owner: "team-a${Z}"`,
    shown: `record[0].owner "team-a${Z}" holds U+200B`,
  },
  // The stack.
  {
    place: "a data center's hardware trait",
    load: () => stackWith('stack.yaml', [['hardware: [general]', `hardware: ["general${Z}"]`]]),
    code: 'spec.invalid-value',
    at: `"general${Z}"`,
    shown: `Hardware trait "general${Z}" holds U+200B`,
  },
  {
    place: "the stack's name",
    load: () => stackWith('stack.yaml', [['metadata: { name: t }', `metadata: { name: "t${Z}" }`]]),
    code: 'spec.invalid-value',
    at: `"t${Z}"`,
    shown: `metadata.name "t${Z}" holds U+200B`,
  },
  {
    place: "the site's name",
    load: () => stackWith('stack.yaml', [['name: home', `name: "home${Z}"`]]),
    code: 'spec.invalid-value',
    at: `"home${Z}"`,
    shown: `spec.site.name "home${Z}" holds U+200B`,
  },
  {
    place: "a data center's name",
    load: () => stackWith('stack.yaml', [['- name: miami', `- name: "miami${Z}"`]]),
    code: 'spec.invalid-value',
    at: `"miami${Z}"`,
    shown: `Data center name "miami${Z}" holds U+200B`,
  },
  // A fleet file.
  {
    place: "a fleet's owner",
    load: () => stackWith('specs/web.yaml', [['owner: team-a', `owner: "team-a${Z}"`]]),
    code: 'spec.invalid-value',
    at: `"team-a${Z}"`,
    shown: `metadata.owner "team-a${Z}" holds U+200B`,
  },
  {
    place: "a fleet's label key",
    load: () => stackWith('specs/web.yaml', [['labels: { env: prod }', `labels: { "env${Z}": prod }`]]),
    code: 'spec.invalid-value',
    at: `"env${Z}"`,
    shown: `Label key "env${Z}" holds U+200B`,
  },
  {
    place: "a fleet's label value",
    load: () => stackWith('specs/web.yaml', [['labels: { env: prod }', `labels: { env: "pr${RLO}od" }`]]),
    code: 'spec.invalid-value',
    at: `"pr${RLO}od"`,
    shown: `The value of label "env" "pr${RLO}od" holds U+202E`,
  },
];

describe('a name that does not read as what it is is refused where it is written', () => {
  it.each(refused)('$place', async ({ load, code, at, shown }) => {
    const r = await load();
    const byPlace = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });
    const want = [at].flat().flatMap((t) => positions(r.text, t)).map((p) => `${code} ${p}`);
    expect(r.diagnostics.map((d) => `${d.code} ${d.line}:${d.col}`).sort(byPlace)).toEqual(want.sort(byPlace));
    for (const d of r.diagnostics) {
      expect(d.file).toBe(r.file);
      expect(d.detail).toContain(shown);
      expect(d.detail).toMatch(/(a character that does not show|starts or ends with a space): .+\. (Write it with visible characters only|Remove the space)\.$/);
    }
  });
});

// Values a fleet matches against names the stack or the pack gives, all of which are now refused when they do not
// show: such a value can match none, and is refused as naming nothing known, quoted with its escape.
describe('a fleet value matched against names refused above names nothing, and says so escaped', () => {
  it.each([
    { place: 'spec.image', edits: [['image: ubuntu-22.04', `image: "ubuntu-22.04${Z}"`]] as const, code: 'spec.unknown-image', at: `"ubuntu-22.04${Z}"` },
    { place: 'spec.hardware', edits: [['  hardware: [general]', `  hardware: ["general${Z}"]`]] as const, code: 'spec.hardware-unavailable', at: `"general${Z}"` },
    { place: 'spec.state', edits: [['  hardware: [general]', `  hardware: [general]\n  state: "Running${Z}"`]] as const, code: 'spec.state-not-requestable', at: `"Running${Z}"` },
  ])('$place', async ({ edits, code, at }) => {
    const r = await stackWith('specs/web.yaml', edits);
    expect(r.diagnostics.map((d) => `${d.code} ${d.line}:${d.col}`)).toEqual(positions(r.text, at).map((p) => `${code} ${p}`));
    expect(r.diagnostics[0].detail).toContain(at);
  });
});

// Free text: shown, with what does not show written as escapes.
describe('free text a person writes is shown with what does not show escaped', () => {
  it("a policy test case's name (its file's) in `fleet policy test`", async () => {
    const fleetDoc =
      '  - { apiVersion: fleet/v1, kind: Fleet, metadata: { name: web, owner: a }, spec: { count: 1, image: ubuntu-22.04, size: { cpu: 1, memoryGiB: 1, diskGiB: 10 } } }\n';
    const ok = `stack: { dataCenters: [{ name: miami }] }\nspecs:\n${fleetDoc}expect: { violations: [] }\n`;
    const ko = `stack: { dataCenters: [{ name: miami }] }\nspecs:\n${fleetDoc}expect: { grants: [{ fleet: web, requested: 1, granted: 0 }] }\n`;
    const dir = await scratch({ 'policy.yaml': PACK_TEXT, 'tests/ok\u001b[2J.yaml': ok, 'tests/ko\u202egnp.yaml': ko });
    const r = await runCli(['policy', 'test', '.'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stdout).not.toContain('\u001b');
    expect(r.stdout).not.toContain('\u202e');
    expect(r.stdout).toContain('FAIL ko\\u202Egnp (tests/ko\\u202Egnp.yaml)\n');
    expect(r.stdout).toContain('PASS ok\\u001B[2J\n');
  });
});
