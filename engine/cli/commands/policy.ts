import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { FleetError, escapeUnseen, formatDiagnostics, hasErrors, sortDiagnostics, specialFileKind, type Diagnostic } from '../../diags/index.ts';
import { GRAPH_FORMATS, type GraphFormat } from '../../policy/graph.ts';

/** The pack loader, loaded when a command runs (not for `fleet --version` or `fleet validate`'s start). */
const policies = () => import('../../policy/index.ts');
import { modeOf, runCommand, writeJson, type CliIO } from '../io.ts';
import { formatOption } from '../options.ts';
import type { RegisterCommand } from './types.ts';

/** Diagnostics name files relative to the working folder, like `fleet validate`. */
function relativize(io: CliIO, diags: readonly Diagnostic[]): Diagnostic[] {
  return diags.map((d) => (d.file !== undefined && isAbsolute(d.file) ? { ...d, file: relative(io.cwd, d.file) || '.' } : d));
}

/**
 * A stack folder given where a pack folder goes (`fleet policy test
 * stacks/local`): the pack it names, as the command to run instead.
 * The stack file is read for its policyPack.path alone; '' when it has none.
 */
async function stackPackHint(io: CliIO, dir: string, command: string): Promise<string> {
  let text: string;
  try {
    // A named pipe or a device there would hang the hint (or fill memory): it names no pack.
    if (specialFileKind(await stat(join(dir, 'stack.yaml'))) !== undefined) return '';
    text = await readFile(join(dir, 'stack.yaml'), 'utf8');
  } catch {
    return '';
  }
  const { parse } = await import('yaml');
  let path: unknown;
  try {
    // uniqueKeys false: the package's check is quadratic in a mapping's keys (a hint need not refuse a key given twice).
    path = (parse(text, { uniqueKeys: false }) as { spec?: { policyPack?: { path?: unknown } } } | null)?.spec?.policyPack?.path;
  } catch {
    path = undefined;
  }
  const rel = relative(io.cwd, dir);
  const shown = rel ? `${rel} is a stack folder` : 'This is a stack folder';
  if (typeof path !== 'string') return ` ${shown} (it holds stack.yaml): give the folder of its policy pack.`;
  const pack = relative(io.cwd, resolve(dir, path)) || '.';
  return ` ${shown} (it holds stack.yaml); its policy pack is ${pack}: \`fleet ${command} ${pack}\`.`;
}

/** loadPack's diagnostics, a stack folder given instead of its pack said so. */
async function packDiagnostics(io: CliIO, dir: string, diags: readonly Diagnostic[], command: string): Promise<Diagnostic[]> {
  const out = relativize(io, diags);
  if (!out.some((d) => d.code === 'policy.pack-missing')) return out;
  const hint = await stackPackHint(io, dir, command);
  return out.map((d) => (d.code === 'policy.pack-missing' && hint ? { ...d, detail: `${d.detail}${hint}` } : d));
}

/**
 * `fleet policy graph PACKDIR [--format mermaid|dot]` prints the lifecycle
 * diagram; `fleet policy test PACKDIR` runs the pack's test cases against the
 * real planner: PASS/FAIL per case with a diff (or, with --format json, one
 * document of every case), exit 1 when any case fails.
 */
export const registerPolicy: RegisterCommand = (program: Command, io, setExit) => {
  const policy = program.command('policy').description('Work with policy packs: draw the lifecycle diagram, run policy tests.');

  policy
    .command('graph')
    .description('Print the lifecycle state diagram of a policy pack (requestable, terminal and failure states marked).')
    .argument('<packdir>', 'folder holding policy.yaml')
    .addOption(new Option('--format <format>', 'diagram language').choices([...GRAPH_FORMATS]).default('mermaid'))
    .action(async (packDir: string, opts: { format: GraphFormat }) => {
      setExit(
        await runCommand(io, async () => {
          const { loadPack, renderGraph } = await policies();
          const dir = resolve(io.cwd, packDir);
          const r = await loadPack(dir);
          if (!r.pack || hasErrors(r.diagnostics)) throw new FleetError(await packDiagnostics(io, dir, r.diagnostics, 'policy graph'));
          io.stdout.write(renderGraph(r.pack, opts.format));
          return 0;
        }),
      );
    });

  policy
    .command('test')
    .description('Run the policy test cases under PACKDIR/tests/*.yaml through the planner; exit 1 when any fails.')
    .argument('<packdir>', 'folder holding policy.yaml and tests/')
    .addOption(formatOption())
    .action(async (packDir: string, opts: { format: string }) => {
      const mode = modeOf(opts.format);
      setExit(
        await runCommand(io, async () => {
          const abs = resolve(io.cwd, packDir);
          const { loadPack } = await policies();
          const loaded = await loadPack(abs);
          if (!loaded.pack || hasErrors(loaded.diagnostics)) throw new FleetError(await packDiagnostics(io, abs, loaded.diagnostics, 'policy test'));
          // Loaded here: it brings ajv's compiler along.
          const { runPolicyTests } = await import('../../plan/policy-tests.ts');
          const run = await runPolicyTests(abs);
          if (run.diagnostics.length) throw new FleetError(relativize(io, run.diagnostics));
          if (mode === 'json') {
            // specs/schema/policy-test-output.schema.json
            const cases = run.results.map((r) => ({
              name: r.name,
              file: relative(io.cwd, r.file),
              passed: r.passed,
              diff: r.passed ? [] : r.diff,
              diagnostics: sortDiagnostics(relativize(io, r.diagnostics)),
            }));
            const failedCases = cases.filter((c) => !c.passed).length;
            writeJson(io, {
              pack: `${loaded.pack.name}@${loaded.pack.version}`,
              passed: cases.length - failedCases,
              failed: failedCases,
              cases,
              diagnostics: sortDiagnostics(relativize(io, loaded.diagnostics)),
            });
            return failedCases ? 1 : 0;
          }
          let failed = 0;
          // A case is named by its file, and its diff quotes what the case wrote: free text, shown with what
          // does not show as escapes (a name holding an ESC drove the terminal, a newline forged a PASS line).
          for (const r of run.results) {
            const file = escapeUnseen(relative(io.cwd, r.file));
            if (r.passed) {
              io.stdout.write(`PASS ${escapeUnseen(r.name)}\n`);
              continue;
            }
            failed++;
            io.stdout.write(`FAIL ${escapeUnseen(r.name)} (${file})\n`);
            for (const line of r.diff) io.stdout.write(`  ${escapeUnseen(line)}\n`);
            if (r.diagnostics.length) {
              const text = formatDiagnostics(sortDiagnostics(relativize(io, r.diagnostics)));
              io.stdout.write(text.replace(/^/gm, '  ').replace(/ +$/gm, ''));
            }
          }
          const total = run.results.length;
          io.stdout.write(`\n${total - failed} passed, ${failed} failed (${total} case${total === 1 ? '' : 's'} in ${escapeUnseen(relative(io.cwd, abs)) || '.'})\n`);
          return failed ? 1 : 0;
        }, mode),
      );
    });
};
