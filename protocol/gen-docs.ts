// Writes the "Wire errors" table of docs/protocol.md from the wire error
// registry (protocol/errors.ts), between the markers below; the rest of the
// page is prose people write.
//   npm run gen:docs                        rewrite it (with docs/diagnostics.md)
//   npx tsx protocol/gen-docs.ts --check    exit 1 when it is stale
// protocol/errors.test.ts fails when the committed page differs.
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { WIRE_ERRORS, type WireErrorEntry } from './errors.ts';

export const PROTOCOL_DOC = fileURLToPath(new URL('../docs/protocol.md', import.meta.url));
export const BEGIN = '<!-- wire errors: generated from protocol/errors.ts by `npm run gen:docs` — do not edit -->';
export const END = '<!-- end of wire errors -->';

/** The generated table, markers included. */
export function renderWireErrors(codes: Record<string, WireErrorEntry> = WIRE_ERRORS): string {
  const rows = Object.entries(codes).map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.doc.replace(/\|/g, '\\|')} |`);
  return [BEGIN, '', '| code | status | meaning |', '| --- | --- | --- |', ...rows, '', END].join('\n');
}

/** `doc` with its generated block replaced by `block`; undefined when the markers are missing. */
export function withWireErrors(doc: string, block = renderWireErrors()): string | undefined {
  const i = doc.indexOf(BEGIN);
  const j = doc.indexOf(END);
  if (i < 0 || j < i) return undefined;
  return doc.slice(0, i) + block + doc.slice(j + END.length);
}

async function main(): Promise<number> {
  const current = await readFile(PROTOCOL_DOC, 'utf8');
  const text = withWireErrors(current);
  if (text === undefined) {
    console.error(`docs/protocol.md lacks the wire errors markers:\n${BEGIN}\n${END}`);
    return 1;
  }
  if (text === current) return 0;
  if (process.argv.includes('--check')) {
    console.error('docs/protocol.md "Wire errors" is stale: run `npm run gen:docs` and commit the result');
    return 1;
  }
  await writeFile(PROTOCOL_DOC, text);
  console.log('wrote docs/protocol.md (wire errors)');
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main();
}
