// The DMZ client's config file (`fleet serve dmz-client --config FILE`,
// specs/schema/dmz-client.schema.json): read, schema-checked with every
// error at its file:line:col, then checked against the driver the client
// runs. Holds no secret (docs/drivers/).
import { readFile } from 'node:fs/promises';
import { clipPath, diag, fsReason, quote, type Diagnostic } from '../../engine/diags/index.ts';
import { validateDoc } from '../../engine/spec/schema.ts';
import { keyWhere, parseYaml, valueWhere, type SourceDoc } from '../../engine/spec/yaml.ts';
import type { DmzClientConfig, DmzClientSpec } from '../../specs/types/dmz-client.ts';
import type { DriverKind } from './registry.ts';

export type { AwsDriverSettings, AzureDriverSettings, DmzClientConfig, DmzClientSpec } from '../../specs/types/dmz-client.ts';

export interface LoadedDmzClientConfig {
  file: string;
  spec: DmzClientSpec;
  metadata: NonNullable<DmzClientConfig['metadata']>;
}

export interface ConfigResult {
  config?: LoadedDmzClientConfig;
  diagnostics: Diagnostic[];
}

/**
 * Reads and checks a DMZ client config for `driver` serving `dataCenter`:
 * the schema, then that the driver's block is there (aws, azure) and that
 * metadata.dataCenter, when set, names this data center. Every problem is
 * one diagnostic; `config` only when there is none.
 */
export async function loadDmzClientConfig(file: string, driver: DriverKind, dataCenter: string): Promise<ConfigResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return { diagnostics: [diag('spec.read-error', `Cannot read the DMZ client config ${clipPath(file)}: ${fsReason(err)}; --config takes a DmzClient file (docs/formats.md).`, { file })] };
  }
  return checkDmzClientConfig(text, file, driver, dataCenter);
}

/** loadDmzClientConfig on the file's text. */
export function checkDmzClientConfig(text: string, file: string, driver: DriverKind, dataCenter: string): ConfigResult {
  const parsed = parseYaml(text, file);
  if (parsed.diagnostics.length > 0) return { diagnostics: parsed.diagnostics };
  if (parsed.docs.length !== 1) {
    const why = parsed.docs.length === 0 ? 'it is empty' : `it holds ${parsed.docs.length} documents`;
    return { diagnostics: [diag('spec.empty-file', `The DMZ client config ${clipPath(file)} must hold one DmzClient document; ${why}.`, { file, line: 1, col: 1 })] };
  }
  const src: SourceDoc = parsed.docs[0];
  const schema = validateDoc(src, 'DmzClient');
  if (schema.length > 0) return { diagnostics: schema };
  const doc = src.value as DmzClientConfig;
  const out: Diagnostic[] = [];
  if ((driver === 'aws' || driver === 'azure') && doc.spec[driver] === undefined) {
    out.push(diag('apply.serve-config', `The ${driver} driver needs its settings: add spec.${driver} to ${clipPath(file)} (docs/drivers/${driver}.md).`, keyWhere(src, ['spec'])));
  }
  const named = doc.metadata?.dataCenter;
  if (named !== undefined && named !== dataCenter) {
    out.push(diag('apply.serve-config', `This config is for data center ${quote(named)}, not ${quote(dataCenter)} (--data-center).`, valueWhere(src, ['metadata', 'dataCenter'])));
  }
  if (out.length > 0) return { diagnostics: out };
  return { config: Object.freeze({ file, spec: doc.spec, metadata: doc.metadata ?? {} }), diagnostics: [] };
}
