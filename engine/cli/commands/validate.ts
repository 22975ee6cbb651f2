import type { Command } from 'commander';
import { clip, clipPath, hasErrors, sortDiagnostics } from '../../diags/index.ts';
import { modeOf, printDiagnostics, runCommand, writeJson } from '../io.ts';
import { formatOption, loaderEnv, recordUrlOption, stackOption } from '../options.ts';
import type { RegisterCommand } from './types.ts';

// The summary line quotes the --stack path and the pack's name and version as written: escaped and bounded (clip).
const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * `fleet validate`: loads the stack, its fleet specs and its policy pack and
 * reports every problem at once. Exit 0 when valid (warnings allowed), 1 otherwise.
 * Text diagnostics go to stderr and the one-line verdict to stdout (stderr when invalid);
 * `--format json` prints only `{ valid, stack, fleets, dataCenters, policyPack, diagnostics }` on stdout
 * (specs/schema/validate-output.schema.json).
 */
export const registerValidate: RegisterCommand = (program: Command, io, setExit) => {
  program
    .command('validate')
    .description('Check the stack, its fleet specs and its policy pack; report every problem with file:line:col.')
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .addOption(formatOption())
    .action(async (opts: { stack: string; recordUrl?: string; format: string }) => {
      const mode = modeOf(opts.format);
      setExit(
        await runCommand(
          io,
          async () => {
            // Loaded here, not for `fleet --version`: the loader brings YAML, the globs and the schema validators.
            const { loadStack } = await import('../../spec/index.ts');
            const r = await loadStack(opts.stack, { cwd: io.cwd, env: loaderEnv(io, opts) });
            const valid = !hasErrors(r.diagnostics);
            if (mode === 'json') {
              writeJson(io, {
                valid,
                stack: r.stack?.name ?? null,
                fleets: r.fleets.map((f) => f.name),
                dataCenters: r.stack?.dataCenters.map((d) => d.name) ?? [],
                policyPack: r.pack ? `${r.pack.name}@${r.pack.version}` : null,
                diagnostics: sortDiagnostics([...r.diagnostics]),
              });
              return valid ? 0 : 1;
            }
            printDiagnostics(io, r.diagnostics);
            const warnings = r.diagnostics.filter((d) => d.severity === 'warning').length;
            if (valid) {
              const pack = r.pack ? `policy pack ${clip(r.pack.name)}@${clip(r.pack.version)}` : 'no policy pack';
              const dcs = r.stack?.dataCenters.length ?? 0;
              const warn = warnings ? ` (${plural(warnings, 'warning')})` : '';
              io.stdout.write(`${clipPath(opts.stack)}: ${plural(r.fleets.length, 'fleet')}, ${plural(dcs, 'data center')}, ${pack}: valid${warn}\n`);
              return 0;
            }
            const errors = r.diagnostics.length - warnings;
            io.stderr.write(`\n${clipPath(opts.stack)}: ${plural(errors, 'error')}, ${plural(warnings, 'warning')}: invalid\n`);
            return 1;
          },
          mode,
        ),
      );
    });
};
