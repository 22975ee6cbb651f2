// Generates specs/validators/*.js: the JSON Schema validators of the files
// fleet reads, compiled once here by ajv (standalone code) instead of at
// every start of the CLI (compiling them took ~70 ms of each `fleet
// validate`, and loading ajv's compiler more). Each module has a .d.ts.
//   npm run gen:types            rewrite them (with specs/types)
//   npm run check:types          exit 1 when a committed one is stale
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type Options } from 'ajv';
import addFormatsModule from 'ajv-formats';
import standaloneModule from 'ajv/dist/standalone/index.js';
import AjvCompiler from '@fastify/ajv-compiler';
import { BUILTIN_RULES } from '../engine/policy/rules/builtin.ts';
import { ROUTE_SCHEMAS, SCHEMA_ERRORS_KEPT, SERVICE_AJV_OPTIONS } from '../protocol/schemas/routes.ts';
import { writeGenerated } from './gen-types.ts';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, 'validators');

type FormatsPlugin = (ajv: Ajv) => Ajv;
const addFormats = ((addFormatsModule as unknown as { default?: FormatsPlugin }).default ?? addFormatsModule) as unknown as FormatsPlugin;
type Standalone = (ajv: Ajv, refs: Record<string, string>) => string;
const standalone = ((standaloneModule as unknown as { default?: Standalone }).default ?? standaloneModule) as unknown as Standalone;

interface Module {
  file: string;
  /** What the validators check, for the banner. */
  what: string;
  /** The options the code that used to compile them at run time used (the errors must not change). */
  options: Options;
  /** The ajv instance to compile with, instead of one made with `options` (and `formats`). */
  ajv?: (options: Options) => Ajv;
  formats?: boolean;
  /** Export name -> schema. */
  schemas: () => Promise<Record<string, object>>;
  /** Also export `byName`: these names (e.g. `owner-quota`) -> their validator (exported as `ownerQuota`). */
  byName?: string[];
  /** Each validator stops at this many errors (capErrors): allErrors without walking all of a hostile body. */
  errorsCap?: number;
}

/** `owner-quota` -> `ownerQuota`. */
export const exportName = (name: string) => name.replace(/-(\w)/g, (_, c: string) => c.toUpperCase());

const schemaFile = async (name: string) => JSON.parse(await readFile(join(here, 'schema', name), 'utf8')) as object;

export const MODULES: Module[] = [
  {
    file: 'documents.js',
    what: 'stack, fleet and DMZ client config files (engine/spec/schema.ts)',
    options: { allErrors: true, verbose: true, strict: true, allowUnionTypes: true },
    formats: true,
    schemas: async () => ({ Fleet: await schemaFile('fleet.schema.json'), Stack: await schemaFile('stack.schema.json'), DmzClient: await schemaFile('dmz-client.schema.json') }),
  },
  {
    file: 'policy-pack.js',
    what: 'policy.yaml (engine/policy/load.ts)',
    // verbose: an unknown key's error carries the schema object it broke, whose keys name the one meant.
    options: { allErrors: true, verbose: true, strict: false },
    schemas: async () => ({ PolicyPack: await schemaFile('policy-pack.schema.json') }),
  },
  {
    file: 'plan.js',
    what: 'saved plan documents (engine/plan/document.ts)',
    options: { allErrors: true, strict: false },
    schemas: async () => ({ Plan: await schemaFile('plan.schema.json') }),
  },
  {
    file: 'rules.js',
    what: "the built-in rules' settings (engine/policy/load.ts; a pack's own rule modules are compiled when loaded)",
    options: { allErrors: true, verbose: true, strict: false, useDefaults: true },
    schemas: async () => Object.fromEntries(BUILTIN_RULES.map((r) => [exportName(r.name), r.configSchema as object])),
    byName: BUILTIN_RULES.map((r) => r.name),
  },
  {
    file: 'routes.js',
    what: "the services' request bodies and path parameters (protocol/schemas/routes.ts; protocol/http.ts hands them to Fastify)",
    options: { ...SERVICE_AJV_OPTIONS },
    ajv: fastifysAjv,
    schemas: async () => ({ ...ROUTE_SCHEMAS }),
    errorsCap: SCHEMA_ERRORS_KEPT,
  },
];

/**
 * The ajv instance Fastify's compiler (@fastify/ajv-compiler, as Fastify
 * makes it for the services) compiles with: its defaults, `customOptions`
 * over them, ajv-formats. Made by that compiler itself, as its
 * StandaloneValidator does, so its defaults can never drift from these.
 */
function fastifysAjv(customOptions: Options): Ajv {
  const compile = AjvCompiler()({}, { customOptions }) as unknown as Record<symbol, { ajv: Ajv } | undefined>;
  const made = compile[AjvCompiler.AjvReference as unknown as symbol];
  if (!made) throw new Error('@fastify/ajv-compiler gave no ajv instance: its AjvReference moved');
  return made.ajv;
}

/**
 * ajv's standalone code is CommonJS-flavoured even as ESM: it `require()`s
 * ajv's runtime helpers (ucs2length). A require of the module's own makes
 * them load the same way under Node, tsx, vitest and the esbuild bundle.
 */
function toEsm(code: string): string {
  const body = code.replace(/^"use strict";/, '');
  return /\brequire\(/.test(body) ? `import { createRequire } from 'node:module';\nconst require = createRequire(import.meta.url);\n${body}` : body;
}

/**
 * ajv's standalone code of `allErrors` validators, made to stop at `cap`
 * errors: every error it records is followed by `errors++;`, and there the
 * validator now returns false with the errors so far once it has `cap`.
 * Without it, a body of 500 000 wrong items (1 MiB, the services' limit; at
 * the DMZ client's open boot endpoint too) cost a service up to a second of
 * CPU to validate, one error object per item, before its 400 named 20 of
 * them (protocol/http.ts schemaErrorMessage). The verdict and the first
 * `cap` errors are those of the whole walk only while errors, once counted,
 * are never taken back (ajv does so in anyOf, oneOf without a discriminator,
 * if, not, contains: a branch's errors dropped when another branch passes)
 * nor merged from another function (a $ref compiled apart): the route
 * schemas use none of these, and generation fails if that changes.
 */
export function capErrors(code: string, cap: number, file: string): string {
  const unsafe = [/vErrors\.length\s*=[^=]/, /\berrors\s*=\s*_errs/, /\berrors\s*=\s*vErrors\.length/];
  const found = unsafe.find((re) => re.test(code));
  if (found) throw new Error(`${file}: ajv's code takes errors back or merges another function's (${String(found)}), so it cannot be made to stop at ${cap} errors (capErrors): keep the route schemas free of anyOf, oneOf without a discriminator, if, not, contains and $ref, or make capErrors handle it`);
  let capped = 0;
  // Each function's part of the code, from its header to the next one's.
  const out = code.replace(/function (validate\d+)\([\s\S]*?(?=function validate\d+\(|$)/g, (part, fn: string) =>
    part.replace(/\berrors\+\+;/g, () => {
      capped++;
      return `errors++;if(errors >= ${cap}){${fn}.errors = vErrors;return false;}`;
    }),
  );
  if (capped === 0) throw new Error(`${file}: no \`errors++;\` in ajv's code: capErrors no longer knows where it records an error`);
  return out;
}

export async function generate(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const m of MODULES) {
    const options: Options = { ...m.options, code: { source: true, esm: true } };
    const ajv = m.ajv ? m.ajv(options) : new Ajv(options);
    if (m.formats) addFormats(ajv);
    const schemas = await m.schemas();
    const names: Record<string, string> = {};
    for (const [name, schema] of Object.entries(schemas)) {
      // A copy each: ajv compiles one schema object once, and two built-in rules share one.
      ajv.addSchema(structuredClone(schema), name);
      names[name] = name;
    }
    const banner = `// generated by \`npm run gen:types\` (specs/gen-validators.ts) — do not edit\n// ajv ${(await import('ajv/package.json', { with: { type: 'json' } })).default.version} standalone validators of ${m.what}\n`;
    const byName = m.byName ? `export const byName = { ${m.byName.map((n) => `${JSON.stringify(n)}: ${exportName(n)}`).join(', ')} };\n` : '';
    const code = toEsm(standalone(ajv, names));
    out.set(m.file, `${banner}${m.errorsCap !== undefined ? capErrors(code, m.errorsCap, m.file) : code}\n${byName}`);
    const dts = [
      banner.trimEnd(),
      "import type { ValidateFunction } from 'ajv';",
      ...Object.keys(schemas).map((n) => `export declare const ${n}: ValidateFunction;`),
      ...(m.byName ? ['export declare const byName: Readonly<Record<string, ValidateFunction>>;'] : []),
    ].join('\n');
    out.set(m.file.replace(/\.js$/, '.d.ts'), `${dts}\n`);
  }
  return out;
}

async function main(): Promise<number> {
  return writeGenerated(await generate(), outDir, 'specs/validators', process.argv.includes('--check'));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = await main();
