// The published JSON Schemas of the CLI's --format json output
// (specs/schema/*-output.schema.json, apply-event.schema.json), loaded into
// one ajv so their cross-file $refs resolve, for tests that check real output.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { REPO } from './stack.ts';

type FormatsPlugin = (ajv: Ajv) => Ajv;
const addFormats = ((addFormatsModule as unknown as { default?: FormatsPlugin }).default ?? addFormatsModule) as unknown as FormatsPlugin;

export const SCHEMA_DIR = join(REPO, 'specs', 'schema');

let ajv: Ajv | undefined;

function load(): Ajv {
  if (ajv) return ajv;
  ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
  addFormats(ajv);
  for (const f of readdirSync(SCHEMA_DIR).filter((n) => n.endsWith('.schema.json'))) ajv.addSchema(JSON.parse(readFileSync(join(SCHEMA_DIR, f), 'utf8')));
  return ajv;
}

/** Errors of `doc` against specs/schema/<name>.schema.json, as readable lines ([] when valid). */
export function schemaErrors(name: string, doc: unknown): string[] {
  const a = load();
  const validate = a.getSchema(`https://dmzfleet.dev/schema/${name}.schema.json`);
  if (!validate) throw new Error(`no schema specs/schema/${name}.schema.json`);
  if (validate(doc)) return [];
  return (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`);
}
