// Generates docs/cli.md, the CLI reference, from the commander definitions
// (the same objects `fleet --help` prints), so it cannot fall behind the code.
//   npm run gen:docs                          rewrite docs/cli.md (and the other generated docs)
//   npx tsx engine/cli/gen-docs.ts --check    exit 1 when it is stale
// engine/cli/gen-docs.test.ts fails when the committed file differs from renderCliDoc().
import { readFile, writeFile } from 'node:fs/promises';
import { PassThrough, Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Command, Option } from 'commander';
import { buildProgram } from './main.ts';

export const CLI_DOC_PATH = fileURLToPath(new URL('../../docs/cli.md', import.meta.url));

function program(): Command {
  const io = { stdout: new PassThrough(), stderr: new PassThrough(), stdin: Readable.from([]), env: {}, cwd: '/' };
  return buildProgram(io, () => {});
}

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function optionRow(o: Option): string {
  const notes: string[] = [];
  if (o.argChoices) notes.push(`one of ${o.argChoices.map((c) => `\`${c}\``).join(', ')}`);
  if (o.defaultValue !== undefined && !(Array.isArray(o.defaultValue) && o.defaultValue.length === 0) && typeof o.defaultValue !== 'boolean') {
    notes.push(`default \`${String(o.defaultValue)}\``);
  }
  if (o.envVar) notes.push(`env \`${o.envVar}\``);
  if (o.variadic || /repeatable/.test(o.description)) notes.push('repeatable');
  if (o.mandatory) notes.push('required');
  return `| \`${o.flags}\` | ${cell(o.description)} | ${notes.join('; ')} |`;
}

function leafCommands(cmd: Command, path: string[] = []): { path: string[]; cmd: Command }[] {
  return cmd.commands.flatMap((c) => {
    const p = [...path, c.name()];
    return c.commands.length ? leafCommands(c, p) : [{ path: p, cmd: c }];
  });
}

/** The whole of docs/cli.md. */
export function renderCliDoc(): string {
  const root = program();
  const out: string[] = [
    '<!-- generated from the commander definitions in engine/cli/ by `npm run gen:docs` — do not edit -->',
    '# The `fleet` command',
    '',
    '`fleet --help` and `fleet COMMAND --help` print the same. Installed from the package (`npm pack`, then `npm install -g ./dmzfleet-VERSION.tgz`), or as `npx fleet` in a clone, `fleet` runs from any folder; `--stack` is resolved against the working folder and defaults to `stacks/local` there.',
    '',
    '## Conventions',
    '',
    '| | |',
    '| --- | --- |',
    '| exit codes | 0 success (or no changes); 1 any error (invalid input, mandatory policy violation, stale plan, lock held, failed apply, unreachable data center); 2 changes present (`plan --detailed-exitcode`) or drift found (`refresh --detailed-exitcode`); 130 an apply or a refresh (also `plan --refresh`) stopped by Ctrl-C or SIGTERM |',
    '| diagnostics | text on stderr: a code, a short summary, the file:line:col or VM address, and what to do ([diagnostics.md](diagnostics.md) lists every code) |',
    '| `--format json` | one JSON document on stdout with the diagnostics inside it, and nothing else on stdout; a command that fails before it has a result prints `{ "diagnostics": [...] }` ([failure-output.schema.json](../specs/schema/failure-output.schema.json)). `fleet apply --format json` prints one event per line instead, diagnostics included as `{"type":"diagnostic",...}` events |',
    '| colour | only on a terminal, and never with `--no-color` or `NO_COLOR` set |',
    '| environment | `FLEET_STACK`, `FLEET_RECORD_URL`, `FLEET_PARALLELISM`, `FLEET_LOCK_TIMEOUT` stand for their options (a flag given wins; a variable set empty counts as unset); `FLEET_DEBUG` adds stack traces and timings |',
    '| typos | an unknown command or option names the closest one (`fleet plna` → `plan`), as unknown keys in spec files do (`cuont` → `count`); an option given before its command says where it goes (`fleet --stack x validate` → `fleet validate --stack x`), and one of another command names that command (`fleet plan --parallelism`: an option of `fleet apply`) |',
    '| completion | `eval "$(fleet completion bash)"`; `fleet completion zsh`, `fleet completion fish` |',
    '',
    '### JSON output schemas',
    '',
    '| command | schema |',
    '| --- | --- |',
    '| `fleet validate --format json` | [validate-output.schema.json](../specs/schema/validate-output.schema.json) |',
    '| `fleet plan --format json` (`{ plan, refresh?, diagnostics }`; with `--out FILE` the document goes to FILE only and stdout is `{ planFile, formatVersion, id, stack, summary, blocked, refresh?, diagnostics }`) | [plan-output.schema.json](../specs/schema/plan-output.schema.json) |',
    '| `fleet apply --format json` (one event per line) | [apply-event.schema.json](../specs/schema/apply-event.schema.json) |',
    '| `fleet refresh [--check] --format json` | [refresh-output.schema.json](../specs/schema/refresh-output.schema.json) |',
    '| `fleet state list --format json` | [state-list-output.schema.json](../specs/schema/state-list-output.schema.json) |',
    '| `fleet state show --format json` | [state-show-output.schema.json](../specs/schema/state-show-output.schema.json) |',
    '| `fleet state rm --format json` | [state-rm-output.schema.json](../specs/schema/state-rm-output.schema.json) |',
    '| `fleet import --format json` | [import-output.schema.json](../specs/schema/import-output.schema.json) |',
    '| `fleet history --format json` | [history-output.schema.json](../specs/schema/history-output.schema.json) |',
    '| `fleet unlock --format json` | [unlock-output.schema.json](../specs/schema/unlock-output.schema.json) |',
    '| `fleet policy test --format json` | [policy-test-output.schema.json](../specs/schema/policy-test-output.schema.json) |',
    '| `fleet record upgrade --format json` | [record-upgrade-output.schema.json](../specs/schema/record-upgrade-output.schema.json) |',
    '| every diagnostic | [diagnostic.schema.json](../specs/schema/diagnostic.schema.json) |',
    '',
    '## Commands',
    '',
  ];
  const leaves = leafCommands(root);
  for (const { path } of leaves) out.push(`- [\`fleet ${path.join(' ')}\`](#fleet-${path.join('-')})`);
  out.push('', '### Options of every command', '', '| option | what | notes |', '| --- | --- | --- |', ...root.options.map(optionRow), '| `-h, --help` | show the help of a command | |', '');
  for (const { path, cmd } of leaves) {
    out.push(`### fleet ${path.join(' ')}`, '', '```', `fleet ${path.join(' ')} ${cmd.usage()}`, '```', '', cmd.description(), '');
    const args = cmd.registeredArguments;
    if (args.length) {
      out.push('| argument | what |', '| --- | --- |');
      for (const a of args) out.push(`| \`${a.required ? `<${a.name()}>` : `[${a.name()}]`}\` | ${cell(a.description)}${a.argChoices ? `: ${a.argChoices.map((c) => `\`${c}\``).join(', ')}` : ''} |`);
      out.push('');
    }
    if (cmd.options.length) out.push('| option | what | notes |', '| --- | --- | --- |', ...cmd.options.map(optionRow), '');
  }
  return `${out.join('\n').trimEnd()}\n`;
}

async function main(): Promise<number> {
  const text = renderCliDoc();
  if (process.argv.includes('--check')) {
    const current = await readFile(CLI_DOC_PATH, 'utf8').catch(() => '');
    if (current === text) return 0;
    console.error('docs/cli.md is stale: run `npm run gen:docs` and commit it');
    return 1;
  }
  await writeFile(CLI_DOC_PATH, text);
  console.log('wrote docs/cli.md');
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main();
}
