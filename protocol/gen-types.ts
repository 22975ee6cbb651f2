// Generates protocol/types.ts, the TypeScript types of every wire message,
// from the route schemas in protocol/schemas/ (the one source of the wire
// format: Fastify validates with them, the OpenAPI document shows them).
//   npm run gen:types            rewrite protocol/types.ts (with specs/types/)
//   npm run check:types          exit 1 when it is stale
// protocol/gen-types.test.ts fails on a stale file too.
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { compile } from 'json-schema-to-typescript';
import { EXTENDS, TS_TYPE } from './schemas/common.ts';
import * as authority from './schemas/authority.ts';
import * as common from './schemas/common.ts';
import * as dmzClient from './schemas/dmz-client.ts';
import * as plans from './schemas/plans.ts';

export const TYPES_PATH = fileURLToPath(new URL('./types.ts', import.meta.url));

/** Wire types that are the data model's own (engine/model): imported, not generated. */
const MODEL_TYPES: Record<string, string> = { VmSize: '../engine/model/size.ts' };

type Schema = { [k: string]: unknown };

const isObject = (v: unknown): v is Schema => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every exported schema with a title, by title (a module namespace's key order differs between loaders). */
function roots(): Schema[] {
  const out: Schema[] = [];
  for (const mod of [common, authority, dmzClient, plans]) {
    for (const v of Object.values(mod)) if (isObject(v) && typeof v.title === 'string') out.push(v);
  }
  return out.sort((a, b) => String(a.title).localeCompare(String(b.title)));
}

/**
 * The schemas as json-schema-to-typescript should see them: a titled schema
 * is one named type however often it is used (a copy with its own
 * description refers to it), a schema made by extend() is `Base & { extra }`,
 * and the data model's types are referred to by name.
 */
function forTypes(all: readonly Schema[]): Schema[] {
  const byTitle = new Map<string, Schema>();
  const done = new Map<unknown, unknown>();
  const strip = ({ description: _d, ...rest }: Schema) => JSON.stringify(rest);
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (!isObject(v)) return v;
    if (done.has(v)) return done.get(v);
    const title = v.title;
    if (typeof title === 'string') {
      if (MODEL_TYPES[title]) return { tsType: title, ...(v.description ? { description: v.description } : {}) };
      const first = byTitle.get(title);
      if (first && first !== v) {
        if (strip(first) !== strip(v)) throw new Error(`two different wire schemas are titled ${title}`);
        return { tsType: title, ...(v.description ? { description: v.description } : {}) };
      }
      byTitle.set(title, v);
    }
    const as = TS_TYPE.get(v);
    if (as !== undefined) return { tsType: as, ...(v.description ? { description: v.description } : {}) };
    const out: Schema = {};
    done.set(v, out);
    const ext = EXTENDS.get(v);
    if (ext) {
      Object.assign(out, {
        title,
        description: v.description,
        allOf: [walk(ext.base), { type: 'object', additionalProperties: false, required: [...ext.extra.required], properties: walk(ext.extra.properties) }],
      });
      return out;
    }
    // Validation-only keywords the type generator does not read.
    for (const [k, x] of Object.entries(v)) if (k !== 'discriminator') out[k] = walk(x);
    return out;
  };
  // Titles of every root first, so a copy met before its original still refers to it.
  for (const r of all) if (!byTitle.has(r.title as string)) byTitle.set(r.title as string, r);
  return all.map(walk) as Schema[];
}

export async function generate(): Promise<string> {
  const all = roots();
  const definitions: Record<string, unknown> = {};
  forTypes(all).forEach((s, j) => {
    if (!('tsType' in s)) definitions[all[j].title as string] = s;
  });
  const ts = await compile({ title: 'WireTypes', type: 'object', additionalProperties: false, definitions } as never, 'WireTypes', {
    bannerComment: '',
    additionalProperties: false,
    unreachableDefinitions: true,
    style: { singleQuote: true, printWidth: 140 },
    // Plain arrays: minItems/maxItems are checked by the schemas, not spelled as tuples.
    ignoreMinAndMaxItems: true,
  });
  const body = ts
    // The root only carries the definitions.
    .replace(/export interface WireTypes \{\}\n/, '')
    .replace(/\/\*\*\n \* This interface was referenced by `WireTypes`'s JSON-Schema\n \* via the `definition` "[^"]+".\n \*\/\n/g, '')
    .replace(/\n \*\n \* This interface was referenced by `WireTypes`'s JSON-Schema\n \* via the `definition` "[^"]+".\n/g, '\n');
  const imports = Object.entries(MODEL_TYPES).map(([name, from]) => `import type { ${name} } from '${from}';\nexport type { ${name} };\n`);
  return [
    '/* generated from protocol/schemas/ by `npm run gen:types` — do not edit */',
    '// Every wire message between the CLI, the DMZ clients and the authority (docs/protocol.md).',
    '',
    ...imports,
    body.trimStart(),
  ].join('\n');
}

async function main(): Promise<number> {
  const text = await generate();
  const current = await readFile(TYPES_PATH, 'utf8').catch(() => '');
  if (current === text) return 0;
  if (process.argv.includes('--check')) {
    console.error('protocol/types.ts is stale: run `npm run gen:types` and commit the result');
    return 1;
  }
  await writeFile(TYPES_PATH, text);
  console.log('wrote protocol/types.ts');
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main();
}
