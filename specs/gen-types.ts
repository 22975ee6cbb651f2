// Generates specs/types/*.ts from specs/schema/*.schema.json.
//   npm run gen:types            rewrite the committed types
//   npm run check:types          exit 1 when the committed types are stale
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile } from 'json-schema-to-typescript';

const here = dirname(fileURLToPath(import.meta.url));
const schemaDir = join(here, 'schema');
const typesDir = join(here, 'types');

export async function generate(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const files = (await readdir(schemaDir)).filter((f) => f.endsWith('.schema.json')).sort();
  for (const file of files) {
    const schema = JSON.parse(await readFile(join(schemaDir, file), 'utf8'));
    const ts = await compile(schema, schema.title, {
      bannerComment: `/* generated from specs/schema/${file} by \`npm run gen:types\` — do not edit */`,
      additionalProperties: false,
      style: { singleQuote: true, printWidth: 120 },
      cwd: schemaDir,
    });
    out.set(file.replace('.schema.json', '.ts'), ts);
  }
  return out;
}

/**
 * Writes each generated file under `dir` (shown as `shown/<name>`), or with
 * `check` only says which committed ones differ. Returns the exit code: 1
 * when checking found a stale file. Shared by the generators of specs/.
 */
export async function writeGenerated(generated: ReadonlyMap<string, string>, dir: string, shown: string, check: boolean): Promise<number> {
  let stale = 0;
  for (const [name, text] of generated) {
    const path = join(dir, name);
    const current = await readFile(path, 'utf8').catch(() => '');
    if (current === text) continue;
    if (check) {
      console.error(`${shown}/${name} is stale: run \`npm run gen:types\` and commit the result`);
      stale++;
    } else {
      await writeFile(path, text);
      console.log(`wrote ${shown}/${name}`);
    }
  }
  return stale ? 1 : 0;
}

async function main(): Promise<number> {
  return writeGenerated(await generate(), typesDir, 'specs/types', process.argv.includes('--check'));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main();
}
