// Generates docs/diagnostics.md from the code registry (engine/diags/codes/).
//   npm run gen:docs             rewrite docs/diagnostics.md
//   npx tsx engine/diags/gen-docs.ts --check   exit 1 when it is stale
// engine/diags/codes.test.ts fails when the committed file differs from renderDiagnosticsDoc().
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { CODES, type CodeEntry } from './codes/index.ts';

export const DOC_PATH = fileURLToPath(new URL('../../docs/diagnostics.md', import.meta.url));

const AREA_TITLES: Record<string, string> = {
  cli: 'Command line',
  spec: 'Stack and fleet files',
  policy: 'Policy packs and rules',
  plan: 'Planning',
  apply: 'Applying',
  record: 'The record',
};

/** The whole of docs/diagnostics.md: areas in registry order, codes sorted within each. */
export function renderDiagnosticsDoc(codes: Record<string, CodeEntry> = CODES): string {
  const areas = new Map<string, [string, CodeEntry][]>();
  for (const [code, entry] of Object.entries(codes)) {
    const area = code.split('.')[0];
    const list = areas.get(area) ?? [];
    list.push([code, entry]);
    areas.set(area, list);
  }
  const out: string[] = [
    '<!-- generated from engine/diags/codes/ by `npm run gen:docs` — do not edit -->',
    '',
    '# Diagnostics',
    '',
    'Every problem dmzfleet reports is a diagnostic: a severity, a code, a short fixed summary, a detail',
    'sentence about this occurrence, and where it applies (file:line:col, or a VM address). In text output:',
    '',
    '```',
    'error[spec.unknown-key]: Unknown key',
    '  at specs/examples/web.yaml:12:3',
    '  Key "imgae" is not allowed in spec (did you mean "image"?).',
    '```',
    '',
    'In text output a character of the detail or the location that does not show (a control character, an',
    'escape sequence, a direction override) is written as an escape (`\\u001B`, `\\u202E`), so what a detail',
    'quotes (a flag\'s value, a VM name, a rule\'s message) never acts on the terminal; a detail keeps its line',
    'breaks, each further line indented, so none passes for a diagnostic of its own (a location shows them as `\\u000A`).',
    '`--format json` gives the same fields as JSON, as they are. Codes never change meaning; errors make the command exit 1,',
    'warnings do not.',
    '',
    'A value a detail quotes (a field\'s value, a key, a label, a name, a path, a flag\'s value) is quoted',
    'bounded, in text and JSON output alike: at most its first 100 characters, its characters that do not show',
    'written as escapes, then how many more it has (`"xxxx…"… (1999900 more characters)`); the location',
    'says where the whole value is. In a detail, a run of more than 300 characters without a space is cut',
    'after its first 300 (`… (N more characters)`); a detail is at most some 4,000 characters and a location\'s',
    'file or address some 300: past that their middle is cut (`… (N more characters) …`), keeping the end of',
    'the sentence.',
    '',
  ];
  for (const [area, list] of areas) {
    out.push(`## ${AREA_TITLES[area] ?? area} (\`${area}.*\`)`, '');
    out.push('| code | severity | summary |', '| --- | --- | --- |');
    list.sort(([a], [b]) => a.localeCompare(b));
    for (const [code, e] of list) out.push(`| [\`${code}\`](#${anchor(code)}) | ${e.severity} | ${e.summary} |`);
    out.push('');
    for (const [code, e] of list) {
      out.push(`### ${code}`, '', `**${e.summary}** (${e.severity})`, '', e.doc, '');
    }
  }
  return out.join('\n');
}

/** GitHub's heading anchor: lower case, dots and other punctuation dropped, spaces to dashes. */
function anchor(code: string): string {
  return code.toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-');
}

async function main(): Promise<number> {
  const text = renderDiagnosticsDoc();
  const current = await readFile(DOC_PATH, 'utf8').catch(() => '');
  if (process.argv.includes('--check')) {
    if (current === text) return 0;
    console.error('docs/diagnostics.md is stale: run `npm run gen:docs` and commit the result');
    return 1;
  }
  if (current !== text) {
    await writeFile(DOC_PATH, text);
    console.log('wrote docs/diagnostics.md');
  }
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main();
}
