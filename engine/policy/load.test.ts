import { readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadPack } from './load.ts';
import { DEFAULT_PACK_DIR, scratch } from './testdata/fixtures.ts';

const CUSTOM_PACK_DIR = fileURLToPath(new URL('./testdata/custom-pack', import.meta.url));

/** The default pack's policy.yaml with one text replacement. */
async function packVariant(from: string, to: string, extra: Record<string, string> = {}): Promise<string> {
  const text = await readFile(join(DEFAULT_PACK_DIR, 'policy.yaml'), 'utf8');
  if (!text.includes(from)) throw new Error(`bug in test: ${from} not in policy.yaml`);
  return scratch({ 'policy.yaml': text.replace(from, to), ...extra });
}

const brief = (d: { code: string; line?: number; col?: number }) => `${d.code}@${d.line}:${d.col}`;

describe('loadPack: the default pack', () => {
  it('loads without diagnostics', async () => {
    const r = await loadPack(DEFAULT_PACK_DIR);
    expect(r.diagnostics).toEqual([]);
    const pack = r.pack!;
    expect(`${pack.name}@${pack.version}`).toBe('default@1.0.0');
    expect(pack.lifecycle.initial).toBe('Requested');
    expect(pack.lifecycle.terminal).toEqual(['Deleted']);
    expect(pack.lifecycle.requestable).toEqual(['Running', 'PoweredOff']);
    expect(pack.lifecycle.failure).toEqual(['CreateFailed', 'BootFailed']);
    expect(pack.images['ubuntu-22.04'].miami).toBe('img-ubuntu-2204-miami-v7');
    expect(Object.fromEntries([...pack.rules].map(([n, r]) => [n, r.enforcement]))).toEqual({
      'owner-quota': 'mandatory',
      'datacenter-capacity': 'mandatory',
      protect: 'mandatory',
      'allowed-images': 'mandatory',
      'require-encrypted-disk': 'advisory',
      'max-disruption': 'advisory',
    });
    expect(pack.rules.get('require-encrypted-disk')!.config).toEqual({ match: { env: 'prod' } });
    expect(pack.rules.get('max-disruption')!.config).toEqual({ maxShare: 0.5, state: 'Running' });
    expect(Object.isFrozen(pack.rules.get('owner-quota')!.config)).toBe(true);
  });

  it('keeps the driver contract operation names', async () => {
    const { pack } = await loadPack(DEFAULT_PACK_DIR);
    const ops = pack!.lifecycle.edges.map((e) => `${e.from}>${e.to}:${e.operation}`);
    expect(ops).toContain('BeingCreated>PoweredOff:createVm');
    expect(ops).toContain('PoweredOff>PoweredOn:powerOn');
    expect(ops).toContain('PoweredOn>Starting:boot');
    expect(ops).toContain('Starting>Running:awaitReady');
    expect(ops).toContain('Running>ShuttingDown:shutdown');
    expect(ops).toContain('ShuttingDown>PoweredOff:powerOff');
    expect(ops).toContain('BeingDeleted>Deleted:deleteVm');
    expect(pack!.lifecycle.allows('PoweredOff', 'PoweredOff')).toBe(false);
  });
});

describe('loadPack: located diagnostics', () => {
  const cases: { name: string; from: string; to: string; want: string[] }[] = [
    { name: 'YAML syntax error', from: 'initial: Requested', to: 'initial: [Requested', want: ['policy.yaml-syntax'] },
    {
      name: 'schema: unknown key and wrong type, all at once',
      from: '    initial: Requested',
      to: '    initial: 7\n    colour: blue',
      want: ['policy.schema@26:5', 'policy.schema@27:5'],
    },
    {
      name: 'transition naming an unknown state',
      from: '{ from: PoweredOff, to: PoweredOn, operation: powerOn }',
      to: '{ from: PoweredOff, to: PowredOn, operation: powerOn }',
      want: ['policy.unknown-state@36:29', 'policy.unreachable-state@18:9', 'policy.requestable-unreachable@28:19'],
    },
    {
      name: 'operation outside the closed set',
      from: '{ from: PoweredOff, to: PoweredOn, operation: powerOn }',
      to: '{ from: PoweredOff, to: PoweredOn, operation: powerOnn }',
      want: ['policy.unknown-operation@36:44'],
    },
    {
      name: 'terminal state with an exit',
      from: '      - { from: BeingDeleted, to: Deleted, operation: deleteVm }',
      to: '      - { from: BeingDeleted, to: Deleted, operation: deleteVm }\n      - { from: Deleted, to: Requested }',
      want: ['policy.terminal-exit@47:9'],
    },
    {
      name: 'unreachable and dead-end state',
      from: '      - BootFailed\n',
      to: '      - BootFailed\n      - Limbo\n',
      want: ['policy.unreachable-state@26:9', 'policy.dead-end@26:9'],
    },
    {
      name: 'the only way from PoweredOff to Deleted passes BootFailed',
      from: '      - { from: PoweredOff, to: BeingDeleted, operation: none }\n',
      to: '',
      want: ['policy.dead-end@15:9', 'policy.dead-end@16:9', 'policy.dead-end@17:9', 'policy.dead-end@18:9', 'policy.dead-end@19:9', 'policy.dead-end@20:9', 'policy.dead-end@21:9'],
    },
    {
      name: 'terminal state listed as requestable',
      from: 'requestable: [Running, PoweredOff]',
      to: 'requestable: [Running, PoweredOff, Deleted]',
      want: ['policy.requestable-terminal@28:40'],
    },
    {
      name: 'unknown rule in the pack',
      from: '    protect:\n',
      to: '    protekt:\n',
      want: ['policy.unknown-rule@53:5'],
    },
    {
      name: 'rule config out of range',
      from: 'maxShare: 0.5',
      to: 'maxShare: 2',
      want: ['policy.rule-config@62:7'],
    },
    {
      // The rule then never fired (no member is ever in Runing), and rollouts took every member down at once.
      name: 'max-disruption naming a state the lifecycle does not have',
      from: 'maxShare: 0.5',
      to: 'maxShare: 0.5\n      state: Runing',
      want: ['policy.rule-config@63:7'],
    },
    { name: 'ruleTimeoutSeconds of 0', from: '  rules:\n', to: '  ruleTimeoutSeconds: 0\n  rules:\n', want: ['policy.schema@47:3'] },
    { name: 'ruleTimeoutSeconds over an hour', from: '  rules:\n', to: '  ruleTimeoutSeconds: 3601\n  rules:\n', want: ['policy.schema@47:3'] },
    {
      name: 'unknown config key of a rule',
      from: '      match: { env: prod }',
      to: '      match: { env: prod }\n      mach: {}',
      want: ['policy.rule-config@60:7'],
    },
  ];
  it.each(cases)('$name', async ({ from, to, want }) => {
    const dir = await packVariant(from, to);
    const r = await loadPack(dir);
    expect(r.pack).toBeUndefined();
    const got = r.diagnostics.map(brief);
    // Every expected diagnostic is there (a broken edge may cause follow-on ones).
    if (want.every((w) => w.includes('@'))) expect(got).toEqual(expect.arrayContaining(want));
    else expect(got.map((g) => g.split('@')[0])).toEqual(want);
    expect(got[0].split('@')[0]).toBe(want[0].split('@')[0]);
    for (const d of r.diagnostics) expect(d.file).toBe(join(dir, 'policy.yaml'));
  });

  // The pack's name and version are recorded with every plan (`<name>@<version>`) and named in diagnostics and
  // the dashboard: a 200,000-character name validated, and a name holding `@` made `name@version` ambiguous.
  it.each([
    { what: 'a 200,000-character name', from: '  name: default\n', to: `  name: ${'d'.repeat(200_000)}\n`, want: 'policy.schema@9:3', detail: /^metadata\.name must be at most 40 characters \(it is 200000\): .*every plan/ },
    { what: 'a 41-character version', from: '  version: 1.0.0\n', to: `  version: 1.0.0-${'r'.repeat(35)}\n`, want: 'policy.schema@10:3', detail: /^metadata\.version must be at most 40 characters \(it is 41\): / },
    { what: 'a name holding @', from: '  name: default\n', to: '  name: default@2\n', want: 'policy.schema@9:3', detail: /^metadata\.name "default@2" must be letters, digits, dots, dashes and underscores, starting with a letter or digit: / },
    { what: 'a version holding a space', from: '  version: 1.0.0\n', to: '  version: 1.0 beta\n', want: 'policy.schema@10:3', detail: /^metadata\.version "1\.0 beta" must be letters, digits, dots, dashes and \+ \(semver\), starting with a letter or digit: / },
  ])('refuses $what, saying the limit and why', async ({ from, to, want, detail }) => {
    const dir = await packVariant(from, to);
    const r = await loadPack(dir);
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map(brief)).toEqual([want]);
    expect(r.diagnostics[0].detail).toMatch(detail);
    expect(r.diagnostics[0].detail.length).toBeLessThan(600);
  });

  // It said only "Map keys must be unique", not which key or where the first one is (a stack or fleet spec said both).
  it('names a key given twice in policy.yaml and where its first copy is', async () => {
    const dir = await packVariant('  name: default\n', '  name: default\n  name: other\n');
    const r = await loadPack(dir);
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map((d) => `${brief(d)} ${d.detail}`)).toEqual(['policy.yaml-syntax@10:3 Key "name" is given twice in the same mapping (first at line 9, column 3); keep one.']);
  });

  // A description typed in a Windows-1252 editor loaded with U+FFFD in place of its letters, without a word.
  it('reports a policy.yaml that is not UTF-8 at its first bad byte', async () => {
    const dir = await packVariant('  description: Lifecycle', '  description: Cycle de vie (\u00e9tats) ; Lifecycle');
    const file = join(dir, 'policy.yaml');
    await writeFile(file, Buffer.from(await readFile(file, 'utf8'), 'latin1'));
    const r = await loadPack(dir);
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map(brief)).toEqual(['policy.yaml-syntax@11:30']);
    expect(r.diagnostics[0].detail).toMatch(/^The file is not UTF-8: byte 0xE9 at line 11, column 30 /);
  });

  it('reports a missing pack folder, pointing at the stack file when given', async () => {
    const dir = await scratch({ 'stack.yaml': 'spec:\n  policyPack:\n    path: ../nope\n' });
    const r = await loadPack(join(dir, 'nope'), {}, { stackFile: join(dir, 'stack.yaml') });
    expect(r.diagnostics.map(brief)).toEqual(['policy.pack-missing@3:5']);
    const r2 = await loadPack(dir);
    expect(r2.diagnostics.map((d) => d.code)).toEqual(['policy.pack-missing']);
    expect(r2.diagnostics[0].detail).toContain('has no policy.yaml');
  });
});

describe('loadPack: stack overrides', () => {
  const stackText = (config: string) => `apiVersion: fleet/v1\nkind: Stack\nspec:\n  policyPack:\n    path: x\n    config:\n${config}`;

  it('merges stack settings over the pack key by key', async () => {
    const r = await loadPack(DEFAULT_PACK_DIR, {
      'max-disruption': { enforcement: 'mandatory', maxShare: 0.25 },
      'owner-quota': { limits: { 'team-a': { vms: 4 } } },
      'require-encrypted-disk': { enforcement: 'disabled' },
    });
    expect(r.diagnostics).toEqual([]);
    const rules = r.pack!.rules;
    expect(rules.get('max-disruption')).toMatchObject({ enforcement: 'mandatory', config: { maxShare: 0.25 } });
    expect(rules.get('owner-quota')).toMatchObject({ enforcement: 'mandatory', config: { limits: { 'team-a': { vms: 4 } } } });
    expect(rules.get('require-encrypted-disk')).toMatchObject({ enforcement: 'disabled', config: { match: { env: 'prod' } } });
  });

  it("checks a stack's max-disruption state against the pack's lifecycle", async () => {
    const r = await loadPack(DEFAULT_PACK_DIR, { 'max-disruption': { state: 'running' } });
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map((d) => [d.code, d.detail])).toEqual([
      ['policy.rule-config', 'Rule max-disruption: state "running" is not a state of pack default\'s lifecycle (Requested, BeingCreated, PoweredOff, PoweredOn, Starting, Running, ShuttingDown, BeingDeleted, Deleted, CreateFailed, BootFailed) (did you mean "Running"?).'],
    ]);
  });

  // A typo in a closed set was not named with the value meant (unknown keys' "did you mean" was all there was).
  it.each([
    { name: 'enforcement: mandatroy', from: 'enforcement: advisory', to: 'enforcement: mandatroy', want: 'spec.rules.require-encrypted-disk.enforcement must be one of advisory, mandatory, disabled (did you mean "mandatory"?).' },
    { name: 'powerOff: dealocate', from: 'eastus: deallocate', to: 'eastus: dealocate', want: 'spec.powerOff.eastus must be one of stop, deallocate (did you mean "deallocate"?).' },
    { name: 'powerOff: halt', from: 'eastus: deallocate', to: 'eastus: halt', want: 'spec.powerOff.eastus must be one of stop, deallocate.' },
  ])('a value outside its set names the closest allowed value: $name', async ({ from, to, want }) => {
    const r = await loadPack(await packVariant(from, to));
    expect(r.diagnostics.map((d) => d.detail)).toEqual([want]);
  });

  // An unknown key that is a likely typo of an allowed one was not named with the key meant (the spec loader did).
  it.each([
    { name: 'lifecycle key intial', from: '    initial: Requested', to: '    initial: Requested\n    intial: Requested', want: 'Unknown key "intial" in spec.lifecycle (did you mean "initial"?).' },
    { name: 'rule setting maxShre', from: 'maxShare: 0.5', to: 'maxShre: 0.5', want: 'Rule max-disruption: Unknown key "maxShre" in (document) (did you mean "maxShare"?).' },
    { name: 'unrelated key colour', from: '    initial: Requested', to: '    initial: Requested\n    colour: blue', want: 'Unknown key "colour" in spec.lifecycle.' },
  ])('an unknown key names the closest allowed key: $name', async ({ from, to, want }) => {
    const r = await loadPack(await packVariant(from, to));
    expect(r.diagnostics.map((d) => d.detail)).toEqual([want]);
  });

  it('points config errors at the stack file', async () => {
    const config = {
      'max-disruption': { maxShare: 'half' },
      'no-such-rule': { enforcement: 'advisory' },
      protect: { enforcement: 'sometimes' },
    };
    const dir = await scratch({
      'stack.yaml': stackText('      max-disruption: { maxShare: half }\n      no-such-rule: { enforcement: advisory }\n      protect: { enforcement: sometimes }\n'),
    });
    const stackFile = join(dir, 'stack.yaml');
    const r = await loadPack(DEFAULT_PACK_DIR, config, { stackFile });
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map(brief).sort()).toEqual(['policy.rule-config@7:25', 'policy.rule-config@9:18', 'policy.unknown-rule@8:7']);
    expect(r.diagnostics.every((d) => d.file === stackFile)).toBe(true);
  });
});

// YAML's .inf, -.inf and .nan are numbers to a YAML parser and to ajv (Infinity passes type: integer): a quota of
// `vms: .inf` loaded and limited nothing, and .nan gave two messages ("must be integer", "must be >= 0"). Each is now
// one located diagnostic saying what the value is and what the setting takes.
describe('loadPack: .inf and .nan in settings', () => {
  const packCases: { name: string; from: string; to: string; want: string; detail: RegExp }[] = [
    { name: 'a quota of vms: .inf', from: 'limits: {}', to: 'limits: { team-a: { vms: .inf } }', want: 'policy.rule-config@50:27', detail: /^Rule owner-quota: limits\.team-a\.vms is \.inf, not a number a setting can hold: give a finite number\.$/ },
    { name: 'a quota of cpu: -.inf', from: 'limits: {}', to: 'limits: { team-a: { cpu: -.inf } }', want: 'policy.rule-config@50:27', detail: /^Rule owner-quota: limits\.team-a\.cpu is -\.inf, / },
    { name: 'maxShare: .nan', from: 'maxShare: 0.5', to: 'maxShare: .nan', want: 'policy.rule-config@62:7', detail: /^Rule max-disruption: maxShare is \.nan, / },
    { name: 'an instance type of memoryGiB: .inf', from: '{ name: m6i.large, cpu: 2, memoryGiB: 8 }', to: '{ name: m6i.large, cpu: 2, memoryGiB: .inf }', want: 'policy.schema@89:36', detail: /^spec\.instanceTypes\.virginia\.0\.memoryGiB is \.inf, / },
  ];
  it.each(packCases)('$name in policy.yaml is one diagnostic at its place', async ({ from, to, want, detail }) => {
    const dir = await packVariant(from, to);
    const r = await loadPack(dir);
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map(brief)).toEqual([want]);
    expect(r.diagnostics[0].file).toBe(join(dir, 'policy.yaml'));
    expect(r.diagnostics[0].detail).toMatch(detail);
  });

  it.each([
    ['.inf', Infinity, '{ vms: .inf }'],
    ['-.inf', -Infinity, '{ vms: -.inf }'],
    ['.nan', NaN, '{ vms: .nan }'],
  ])("a stack's quota of vms: %s is one diagnostic at the stack file", async (shown, value, text) => {
    const dir = await scratch({ 'stack.yaml': `apiVersion: fleet/v1\nkind: Stack\nspec:\n  policyPack:\n    path: x\n    config:\n      owner-quota: { limits: { team-a: ${text} } }\n` });
    const stackFile = join(dir, 'stack.yaml');
    const r = await loadPack(DEFAULT_PACK_DIR, { 'owner-quota': { limits: { 'team-a': { vms: value } } } }, { stackFile });
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map(brief)).toEqual(['policy.rule-config@7:42']);
    expect(r.diagnostics[0].file).toBe(stackFile);
    expect(r.diagnostics[0].detail).toBe(`Rule owner-quota: limits.team-a.vms is ${shown}, not a number a setting can hold: give a finite number.`);
  });
});

// owner-quota's limits name owners, yet any key was taken: a 200,000-character one, or an empty one, loaded, and held
// no fleet to its limits (a fleet's owner is 1 to 64 characters, fleet.schema.json): a quota that limited nothing.
describe('loadPack: owner-quota names owners as a fleet file does (1 to 64 characters)', () => {
  const long = (n: number) => 'a'.repeat(n);
  it.each([
    { name: 'a 65-character owner', key: long(65), detail: 'Rule owner-quota: owner "' },
    { name: 'a 200,000-character owner', key: long(200_000), detail: 'must be at most 64 characters (it is 200000)' },
    { name: 'an empty owner', key: '""', detail: 'Rule owner-quota: owner "" in limits must not be empty' },
  ])('$name in policy.yaml is one diagnostic at the key', async ({ key, detail }) => {
    const dir = await packVariant('limits: {}', `limits: { team-a: { vms: 4 }, ${key}: { vms: 1 } }`);
    const r = await loadPack(dir);
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map(brief)).toEqual(['policy.rule-config@50:37']);
    expect(r.diagnostics[0].detail).toContain(detail);
    expect(r.diagnostics[0].detail).toContain("a fleet's owner");
    expect(r.diagnostics[0].detail.length).toBeLessThan(600);
  });

  it('a 65-character owner in the stack file is one diagnostic there, at the key, saying the limit and why', async () => {
    const owner = '\u{1d538}'.repeat(65);
    const dir = await scratch({ 'stack.yaml': `apiVersion: fleet/v1\nkind: Stack\nspec:\n  policyPack:\n    path: x\n    config:\n      owner-quota: { limits: { ${owner}: { vms: 1 } } }\n` });
    const stackFile = join(dir, 'stack.yaml');
    const r = await loadPack(DEFAULT_PACK_DIR, { 'owner-quota': { limits: { [owner]: { vms: 1 } } } }, { stackFile });
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map(brief)).toEqual(['policy.rule-config@7:32']);
    expect(r.diagnostics[0].file).toBe(stackFile);
    expect(r.diagnostics[0].detail).toMatch(/^Rule owner-quota: owner "\u{1d538}+.*" in limits must be at most 64 characters \(it is 65\): a fleet's owner is at most 64 characters \(and not empty\), so no fleet would be held to this limit\.$/u);
  });

  // A fleet's owner with a character that does not show is refused (engine/spec/fleet.ts), yet a limit keyed by one
  // loaded: "team-a" with a zero-width space read as team-a in the pack and held no fleet to its limits.
  it.each([
    { name: 'a zero-width space', key: '"team-a\\u200B"', shown: 'owner "team-a\\u200B" in limits holds U+200B at position 7' },
    { name: 'a right-to-left override', key: '"team-\\u202Ea"', shown: 'owner "team-\\u202Ea" in limits holds U+202E at position 6' },
    { name: 'a byte-order mark', key: '"\\uFEFFteam-a"', shown: 'owner "\\uFEFFteam-a" in limits holds U+FEFF at position 1' },
    { name: 'an escape', key: '"team-a\\e[2J"', shown: 'owner "team-a\\u001B[2J" in limits holds U+001B at position 7' },
    { name: 'a space at the end', key: '"team-a "', shown: 'owner "team-a " in limits starts or ends with a space' },
  ])('an owner with $name in policy.yaml is refused at the key, worded as a fleet\'s owner is', async ({ key, shown }) => {
    const dir = await packVariant('limits: {}', `limits: { team-b: { vms: 4 }, ${key}: { vms: 1 } }`);
    const r = await loadPack(dir);
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map(brief)).toEqual(['policy.rule-config@50:37']);
    expect(r.diagnostics[0].detail).toContain(`Rule owner-quota: ${shown}`);
    expect(r.diagnostics[0].detail).toContain('it is matched exactly');
  });

  it('an owner with a zero-width space in the stack file is refused there, at the key', async () => {
    const dir = await scratch({ 'stack.yaml': 'apiVersion: fleet/v1\nkind: Stack\nspec:\n  policyPack:\n    path: x\n    config:\n      owner-quota: { limits: { "team-a\\u200B": { vms: 1 } } }\n' });
    const stackFile = join(dir, 'stack.yaml');
    const r = await loadPack(DEFAULT_PACK_DIR, { 'owner-quota': { limits: { 'team-a\u200B': { vms: 1 } } } }, { stackFile });
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map(brief)).toEqual(['policy.rule-config@7:32']);
    expect(r.diagnostics[0].file).toBe(stackFile);
    expect(r.diagnostics[0].detail).toMatch(/^Rule owner-quota: owner "team-a\\u200B" in limits holds U\+200B at position 7, a character that does not show: /);
  });

  it('takes owners of 64 characters', async () => {
    const owner = '\u{1d538}'.repeat(64);
    const r = await loadPack(DEFAULT_PACK_DIR, { 'owner-quota': { limits: { [owner]: { vms: 1 }, [long(64)]: { cpu: 2 } } } });
    expect(r.diagnostics).toEqual([]);
    expect(Object.keys(r.pack!.rules.get('owner-quota')!.config.limits as object)).toEqual([owner, long(64)]);
  });
});

describe('loadPack: custom rule modules', () => {
  it('loads rules from the pack modules, with their settings', async () => {
    const r = await loadPack(CUSTOM_PACK_DIR);
    expect(r.diagnostics).toEqual([]);
    const rules = r.pack!.rules;
    expect([...rules.keys()]).toEqual([
      'owner-quota',
      'datacenter-capacity',
      'protect',
      'allowed-images',
      'require-encrypted-disk',
      'max-disruption',
      'max-cpu',
      'explodes',
    ]);
    expect(rules.get('max-cpu')).toMatchObject({ enforcement: 'mandatory', config: { maxCpu: 8 } });
    expect(rules.get('explodes')!.enforcement).toBe('advisory');
    expect(rules.get('protect')!.enforcement).toBe('disabled');
    // Rules the pack does not mention take their default enforcement.
    expect(rules.get('require-encrypted-disk')!.enforcement).toBe('disabled');
    expect(rules.get('allowed-images')!.enforcement).toBe('mandatory');
  });

  it("validates a custom rule's config against its schema", async () => {
    const r = await loadPack(CUSTOM_PACK_DIR, { 'max-cpu': { maxCpu: 0 } });
    expect(r.diagnostics.map((d) => d.code)).toEqual(['policy.rule-config']);
    expect(r.diagnostics[0].detail).toContain('maxCpu');
  });

  const moduleCases: { name: string; files: Record<string, string>; want: string }[] = [
    { name: 'module file missing', files: {}, want: 'policy.module-load' },
    { name: 'module does not export a rule', files: { 'r.ts': 'export default { name: 1 };\n' }, want: 'policy.module-load' },
    { name: 'module fails to import', files: { 'r.ts': 'throw new Error("nope");\n' }, want: 'policy.module-load' },
    {
      name: 'rule with an invalid config schema',
      files: { 'r.ts': "export default { name: 'x', description: 'x', configSchema: { type: 'nonsense' }, checkPlan: () => [] };\n" },
      want: 'policy.module-load',
    },
    // An $async schema's validator answers a Promise, which `if (!check(config))` took for valid: any setting passed.
    {
      name: 'rule with an $async config schema',
      files: { 'r.ts': "export default { name: 'x', description: 'x', configSchema: { $async: true, type: 'object', required: ['max'] }, checkPlan: () => [] };\n" },
      want: 'policy.module-load',
    },
    // Was policy.rule-config at the pack's rules, 'enforcement must be one of …, not "undefined"': the module is the cause.
    {
      name: 'module rule with a defaultEnforcement outside the three',
      files: { 'r.ts': "export default { name: 'x', description: 'x', configSchema: {}, defaultEnforcement: 'strict', checkPlan: () => [] };\n" },
      want: 'policy.module-load',
    },
    // String(err) of what these throw threw again, out of loadPack: fleet validate, plan and the authority's start crashed.
    { name: 'module throws an object with no prototype', files: { 'r.ts': 'throw Object.create(null);\nexport default {};\n' }, want: 'policy.module-load' },
    { name: 'module exports a rule whose name getter throws', files: { 'r.ts': 'export default { get name() { throw Object.create(null); } };\n' }, want: 'policy.module-load' },
    {
      name: 'module rule named like a built-in',
      files: { 'r.ts': "export default { name: 'protect', description: 'x', configSchema: {}, checkPlan: () => [] };\n" },
      want: 'policy.duplicate-rule',
    },
  ];
  it.each(moduleCases)('$name', async ({ files, want }) => {
    const dir = await packVariant('  rules:\n', '  modules: [r.ts]\n  rules:\n', files);
    const r = await loadPack(dir);
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map((d) => d.code)).toEqual([want]);
    expect(r.diagnostics[0].line).toBeGreaterThan(0);
  });

  // The settings of the rule a broken module would have defined were also
  // reported as policy.unknown-rule ("known rules: owner-quota, …"), which
  // sent people looking for a typo in the rule's name.
  it.each<{ name: string; from: string; to: string; stack: Record<string, Record<string, unknown>> }>([
    { name: 'pack settings', from: '  rules:\n', to: '  modules: [r.ts]\n  rules:\n    max-cpu: { maxCpu: 8 }\n', stack: {} },
    { name: 'stack settings', from: '  rules:\n', to: '  modules: [r.ts]\n  rules:\n', stack: { 'max-cpu': { maxCpu: 8 } } },
  ])('$name for the rule of a module that failed to load: only the module is reported', async ({ from, to, stack }) => {
    const dir = await packVariant(from, to, { 'r.ts': 'throw new Error("nope");\n' });
    const r = await loadPack(dir, stack);
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map((d) => d.code)).toEqual(['policy.module-load']);
  });

  it('settings for a rule nobody defines are still policy.unknown-rule when every module loaded', async () => {
    const dir = await packVariant('  rules:\n', '  modules: [r.ts]\n  rules:\n    max-cpuu: { maxCpu: 8 }\n', {
      'r.ts': "export default { name: 'max-cpu', description: 'x', configSchema: { type: 'object' }, checkPlan: () => [] };\n",
    });
    expect((await loadPack(dir)).diagnostics.map((d) => d.code)).toEqual(['policy.unknown-rule']);
  });

  // A module awaiting at its top level what never comes (a fetch with no
  // timeout, a forgotten promise) hung fleet validate, plan and apply for
  // ever; awaiting what nothing can resolve made the CLI exit 13 without a
  // word (test/build.e2e.test.ts runs that one through the CLI).
  it.each([
    { name: 'a module whose import waits on a timer for ever', text: 'await new Promise((r) => setInterval(r, 3_600_000));\nexport default {};\n' },
    { name: 'a module whose import waits on what nothing resolves', text: 'await new Promise(() => {});\nexport default {};\n' },
  ])('$name: a located diagnostic once the time is up', async ({ text }) => {
    const dir = await packVariant('  rules:\n', '  modules: [r.mjs]\n  rules:\n', { 'r.mjs': text });
    const r = await loadPack(dir, {}, { moduleTimeoutMs: 200 });
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map(brief)).toEqual([expect.stringMatching(/^policy\.module-load@\d+:\d+$/)]);
    expect(r.diagnostics[0].detail).toMatch(/^Importing r\.mjs did not finish within 0\.2 s/);
  });
});

// spec.modules named files outside the pack folder (`../x.ts`, an absolute
// path, or a link inside the pack pointing out of it), and loadPack imported
// them: the code the pack ran was not the code reviewed with the pack, and
// an authority loading the pack ran whatever sat at that path on its host.
describe('loadPack: a rule module outside the pack folder is refused', () => {
  const RULE = "export default { name: 'outside', description: 'x', configSchema: { type: 'object' }, checkPlan: () => [] };\n";
  async function layout(): Promise<{ root: string; pack: string; text: string }> {
    const text = await readFile(join(DEFAULT_PACK_DIR, 'policy.yaml'), 'utf8');
    const root = await scratch({ 'outside.ts': RULE, 'pack/rules/inside.ts': RULE.replace("'outside'", "'inside'") });
    return { root, pack: join(root, 'pack'), text };
  }
  it.each([
    { name: 'a ../ path', module: () => '../outside.ts' },
    { name: 'a path that leaves and comes back elsewhere', module: () => 'rules/../../outside.ts' },
    { name: 'an absolute path', module: (root: string) => join(root, 'outside.ts') },
    { name: 'a link in the pack to a file outside it', module: () => 'rules/link.ts', link: true },
    { name: 'a link in the pack to a folder outside it', module: () => 'shared/outside.ts', dirLink: true },
  ])('$name', async ({ module, link, dirLink }) => {
    const { root, pack, text } = await layout();
    if (link) await symlink(join(root, 'outside.ts'), join(pack, 'rules', 'link.ts'));
    if (dirLink) await symlink(root, join(pack, 'shared'));
    await writeFile(join(pack, 'policy.yaml'), text.replace('  rules:\n', `  modules: [${JSON.stringify(module(root))}]\n  rules:\n`));
    const r = await loadPack(pack);
    expect(r.pack).toBeUndefined();
    expect(r.diagnostics.map(brief)).toEqual([expect.stringMatching(/^policy\.module-load@\d+:\d+$/)]);
    expect(r.diagnostics[0].detail).toMatch(/outside the pack folder/);
  });

  it('a module inside the pack, also through a link that stays inside it, loads', async () => {
    const { pack, text } = await layout();
    await symlink(join(pack, 'rules'), join(pack, 'alias'));
    await writeFile(join(pack, 'policy.yaml'), text.replace('  rules:\n', '  modules: [rules/inside.ts, ./alias/../rules/inside.ts]\n  rules:\n'));
    const r = await loadPack(pack);
    // The same module twice: its rule is a duplicate, which says it was loaded both times.
    expect(r.diagnostics.map((d) => d.code)).toEqual(['policy.duplicate-rule']);
  });
});

// A pack read an unknown tag as if it had none (`name: !custom x` loaded), and an alias bomb threw out of
// loadPack ("Excessive alias count indicates a resource exhaustion attack"), a crash, not a diagnostic.
describe('loadPack: YAML a pack may not use', () => {
  const BOMB = `\nx0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n${Array.from({ length: 6 }, (_, i) => `x${i + 1}: &a${i + 1} [${Array(10).fill(`*a${i}`).join(', ')}]`).join('\n')}\n`;
  it.each([
    ['an unknown tag', '  rules:\n', '  rules: !custom\n', 'Tag "!custom" is not a tag dmzfleet reads'],
    ['%YAML 9.9', 'apiVersion: fleet/v1\n', '%YAML 9.9\n---\napiVersion: fleet/v1\n', 'Unsupported YAML version 9.9'],
    ['an alias bomb', 'apiVersion: fleet/v1\n', `apiVersion: fleet/v1${BOMB}`, 'here is an alias of a list or mapping that holds aliases itself'],
  ])('%s is policy.yaml-syntax at its place', async (_name, from, to, says) => {
    const dir = await packVariant(from, to);
    const r = await loadPack(dir);
    expect(r.diagnostics.map((d) => d.code)).toEqual(['policy.yaml-syntax']);
    expect(r.diagnostics[0].detail).toContain(says);
    expect(r.diagnostics[0].line).toBeGreaterThan(1);
  });
});
