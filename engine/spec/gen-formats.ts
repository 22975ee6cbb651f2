// Generates docs/formats.md from the JSON Schemas in specs/schema/ (their
// descriptions are the field documentation) and the example files.
//   npm run gen:docs             (also regenerates docs/diagnostics.md)
//   npx tsx engine/spec/gen-formats.ts --check   exit 1 when stale
// engine/spec/formats.test.ts fails when the committed file differs.
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { DEFAULT_PARALLELISM } from './loader.ts';

type Schema = Record<string, unknown> & {
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  additionalProperties?: boolean | Schema;
  definitions?: Record<string, Schema>;
  oneOf?: Schema[];
  $ref?: string;
  description?: string;
  title?: string;
};

const repo = new URL('../../', import.meta.url);
export const FORMATS_DOC_PATH = fileURLToPath(new URL('docs/formats.md', repo));

interface Format {
  kind: string;
  schema: string;
  where: string;
  example: string;
  /**
   * Show the example file in full. Off for the users' own examples
   * (stacks/local, specs/examples): they are theirs to edit, and an edit must
   * not make this page stale and fail the suite, so they are linked only.
   */
  embed: boolean;
  /** Modeline as written at the top of the example (path relative to that file). */
  modeline: string;
}

const FORMATS: Format[] = [
  {
    kind: 'Stack',
    schema: 'stack.schema.json',
    where: '`stacks/<name>/stack.yaml`, one document. Relative paths in it are relative to the file.',
    example: 'stacks/local/stack.yaml',
    embed: false,
    modeline: '# yaml-language-server: $schema=../../specs/schema/stack.schema.json',
  },
  {
    kind: 'Fleet',
    schema: 'fleet.schema.json',
    where: "Any file matched by the stack's `specs` globs; several documents per file, separated by `---`.",
    example: 'specs/examples/web.yaml',
    embed: false,
    modeline: '# yaml-language-server: $schema=../schema/fleet.schema.json',
  },
  {
    kind: 'PolicyPack',
    schema: 'policy-pack.schema.json',
    where: '`policies/<pack>/policy.yaml`, one document, beside optional TypeScript rule modules and policy tests.',
    example: 'policies/default/policy.yaml',
    embed: false,
    modeline: '# yaml-language-server: $schema=../../specs/schema/policy-pack.schema.json',
  },
  {
    kind: 'DmzClient',
    schema: 'dmz-client.schema.json',
    where: 'Any path, given to `fleet serve dmz-client --config FILE`; one document. It holds no secret.',
    example: 'stacks/hybrid/dmz-virginia.yaml',
    embed: true,
    modeline: '# yaml-language-server: $schema=../../specs/schema/dmz-client.schema.json',
  },
];

/**
 * Defaults the loader fills in (engine/spec/loader.ts, fleet.ts), keyed by
 * dotted path. If you change a default there, change it here.
 */
const DEFAULTS: Record<string, Record<string, string>> = {
  Fleet: {
    'metadata.labels': '`{}`',
    'spec.minCount': '`0`',
    'spec.hardware': '`[]`',
    'spec.placement.dataCenters': "all of the stack's",
    'spec.placement.strategy': '`nearest`',
    'spec.placement.near': "the stack's site",
    'spec.state': '`Running`',
    'spec.encryptedDisk': '`false`',
    'spec.protect': '`false`',
  },
  Stack: {
    'spec.apply.parallelism': `\`${DEFAULT_PARALLELISM}\``,
    'spec.apply.lockTimeoutSeconds': '`0`',
    'spec.dataCenters[].hardware': '`[]`',
  },
  PolicyPack: {},
  DmzClient: {
    'spec.requestTimeoutMs': '`30000`',
    'spec.readyTimeoutMs': '`600000` (aws, azure), `60000` (sim)',
    'spec.bootUrl': "the client's listen address",
    // providers/dmz-client/boot-limit.ts BOOT_LIMIT_DEFAULTS (a data folder imports no service).
    'spec.bootLimit.denials': '`30`',
    'spec.bootLimit.windowMs': '`30000`',
    'spec.bootLimit.maxAddresses': '`10000`',
    'spec.aws.dataVolumeDevice': 'the volume by its EBS id',
    'spec.aws.pollMs': '`2000`',
    'spec.azure.endpoint': '`https://management.azure.com`',
  },
};

function resolveRef(root: Schema, s: Schema): Schema {
  if (!s.$ref) return s;
  const name = s.$ref.replace('#/definitions/', '');
  return { ...(root.definitions?.[name] ?? {}), description: s.description ?? root.definitions?.[name]?.description };
}

function typeOf(root: Schema, s0: Schema): string {
  const s = resolveRef(root, s0);
  if (s.const !== undefined) return `\`${String(s.const)}\``;
  if (Array.isArray(s.enum)) return s.enum.map((v) => `\`${String(v)}\``).join(' \\| ');
  if (s.oneOf) return s.oneOf.map((b) => typeOf(root, b)).join(' or ');
  switch (s.type) {
    case 'array':
      return `list of ${s.items ? typeOf(root, s.items) : 'any'}`;
    case 'object':
      if (s.title && s.title !== 'Fleet' && s.title !== 'Stack' && s.title !== 'DmzClientConfig') return `${s.title} (mapping)`;
      if (typeof s.additionalProperties === 'object') return `map of ${typeOf(root, s.additionalProperties)}`;
      return 'mapping';
    case 'integer':
      return 'integer';
    default:
      return String(s.type ?? 'any');
  }
}

function constraints(s: Schema): string {
  const out: string[] = [];
  const has = (k: string): boolean => s[k] !== undefined;
  if (has('minimum') && has('maximum')) out.push(`${String(s.minimum)} to ${String(s.maximum)}`);
  else if (has('minimum')) out.push(`≥ ${String(s.minimum)}`);
  else if (has('maximum')) out.push(`≤ ${String(s.maximum)}`);
  if (s.minLength === 1) out.push('non-empty');
  if (has('maxLength')) out.push(`at most ${String(s.maxLength)} characters`);
  if (has('minItems')) out.push(`at least ${String(s.minItems)} item${s.minItems === 1 ? '' : 's'}`);
  if (has('maxProperties')) out.push(`at most ${String(s.maxProperties)} entries`);
  if (s.uniqueItems) out.push('unique items');
  if (has('pattern')) out.push(`matches \`${String(s.pattern)}\``);
  return out.join(', ').replace(/\|/g, '\\|');
}

function rows(root: Schema, kind: string, s0: Schema, prefix: string, required: boolean, out: string[]): void {
  const s = resolveRef(root, s0);
  if (prefix) {
    const desc = (s.description ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');
    const def = DEFAULTS[kind][prefix] ?? '';
    out.push(`| \`${prefix}\` | ${typeOf(root, s0)} | ${required ? 'yes' : ''} | ${constraints(s)} | ${def} | ${desc} |`);
  }
  const children = (obj: Schema, p: string): void => {
    for (const [k, v] of Object.entries(obj.properties ?? {})) {
      rows(root, kind, v, p ? `${p}.${k}` : k, (obj.required ?? []).includes(k), out);
    }
    if (typeof obj.additionalProperties === 'object') {
      const inner = resolveRef(root, obj.additionalProperties);
      if (inner.properties) children(inner, `${p}.<name>`);
    }
  };
  if (s.type === 'object' || s.properties) children(s, prefix);
  if (s.type === 'array' && s.items) {
    const item = resolveRef(root, s.items);
    if (item.properties) children(item, `${prefix}[]`);
  }
  if (s.oneOf) for (const b of s.oneOf) {
    const r = resolveRef(root, b);
    if (r.properties) children(r, prefix);
  }
}

export function renderFormatsDoc(): string {
  const out: string[] = [
    '<!-- generated from specs/schema/*.json and the example files by `npm run gen:docs` — do not edit -->',
    '',
    '# File formats',
    '',
    'Every dmzfleet file is YAML with `apiVersion: fleet/v1` and a `kind`. Each kind has a JSON Schema in',
    '`specs/schema/` (the field descriptions below come from it) and TypeScript types generated from it in',
    '`specs/types/` (`npm run gen:types`). `fleet validate` checks every file against its schema and then',
    'against the stack and the policy pack, and reports every problem at once with its file:line:col',
    '(codes in [diagnostics.md](diagnostics.md)). Unknown keys are errors, not ignored. Files are UTF-8 (a',
    'leading BOM is allowed); a byte that is not UTF-8 is a syntax error at its line and column, not a letter',
    'silently replaced.',
    '',
    'Files are read as YAML 1.2 (core schema: `no` is the text "no", not false). A tag may be one of the',
    'core schema\'s (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq`, `!!map`; `!!str 5` is the text',
    '"5"); any other (`!custom`, `!!binary`, `!!timestamp`) is a `spec.yaml-syntax` error (`policy.yaml-syntax` in a pack) at the tag, not',
    'dropped. So is a directive other than `%YAML 1.2` and `%TAG` (`%YAML 1.1` would change what values',
    'mean), and aliases that expand to more than 1000 values (an alias bomb). Anchors, aliases and merge',
    'keys (`<<: *base`) are read.',
    '',
    '## Editor support',
    '',
    'Put a modeline on the first line of each file so editors with the YAML language server',
    '(VS Code\'s YAML extension, Neovim\'s yamlls, JetBrains) complete keys, show these descriptions and flag',
    'errors as you type. The path is relative to the file:',
    '',
    '```yaml',
    '# yaml-language-server: $schema=../schema/fleet.schema.json',
    '```',
    '',
    '| kind | file | modeline (for the example\'s location) |',
    '| --- | --- | --- |',
    ...FORMATS.map((f) => `| ${f.kind} | \`${f.example}\` | \`${f.modeline}\` |`),
    '',
  ];
  for (const f of FORMATS) {
    const root = JSON.parse(readFileSync(new URL(`specs/schema/${f.schema}`, repo), 'utf8')) as Schema;
    out.push(`## ${f.kind}`, '', root.description ?? '', '', `Where: ${f.where} Schema: \`specs/schema/${f.schema}\`.`, '');
    out.push('| key | type | required | allowed | default | description |', '| --- | --- | --- | --- | --- | --- |');
    const list: string[] = [];
    rows(root, f.kind, root, '', true, list);
    out.push(...list, '');
    if (f.embed) {
      const example = readFileSync(new URL(f.example, repo), 'utf8').trimEnd();
      out.push(`Example (\`${f.example}\`):`, '', '```yaml', example, '```', '');
    } else {
      out.push(`Example: [\`${f.example}\`](../${f.example}).`, '');
    }
  }
  out.push(
    '## Environment',
    '',
    '| variable | meaning |',
    '| --- | --- |',
    '| `FLEET_RECORD_URL` | Overrides the stack\'s `record` (same forms; a relative `pglite://` folder is relative to the stack file). |',
    '| `AWS_ENDPOINT_URL_EC2` | The `aws` driver\'s EC2 endpoint; overrides the DMZ client config\'s `spec.aws.endpoint`. |',
    '| `AWS_ENDPOINT_URL_STS` | The STS endpoint the authority\'s AWS credential broker calls; overrides a data center\'s `aws.stsEndpoint`. |',
    '',
  );
  return out.join('\n');
}

async function main(): Promise<number> {
  const text = renderFormatsDoc();
  const current = await readFile(FORMATS_DOC_PATH, 'utf8').catch(() => '');
  if (process.argv.includes('--check')) {
    if (current === text) return 0;
    console.error('docs/formats.md is stale: run `npm run gen:docs` and commit the result');
    return 1;
  }
  if (current !== text) {
    await writeFile(FORMATS_DOC_PATH, text);
    console.log('wrote docs/formats.md');
  }
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main();
}
