import type { Command } from 'commander';
import { fail, hasErrors } from '../../diags/index.ts';
import { loadStack } from '../../spec/index.ts';
import { printDiagnostics, runCommand } from '../io.ts';
import { DEFAULT_STACK } from '../main.ts';
import type { RegisterCommand } from './types.ts';

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * `fleet validate`: loads the stack, its fleet specs and its policy pack and
 * reports every problem at once. Exit 0 when valid (warnings allowed), 1 otherwise.
 * Text diagnostics go to stderr and the one-line verdict to stdout (stderr when invalid);
 * `--format json` prints only `{ valid, diagnostics }` on stdout.
 */
export const registerValidate: RegisterCommand = (program: Command, io, setExit) => {
  program
    .command('validate')
    .description('Check the stack, its fleet specs and its policy pack; report every problem with file:line:col.')
    .option('--stack <dir>', 'stack folder (holding stack.yaml)', DEFAULT_STACK)
    .option('--format <format>', 'output format: text or json', 'text')
    .action(async (opts: { stack: string; format: string }) => {
      setExit(
        await runCommand(io, async () => {
          if (opts.format !== 'text' && opts.format !== 'json') {
            fail('cli.usage', `--format must be text or json, not ${JSON.stringify(opts.format)}.`);
          }
          const r = await loadStack(opts.stack, { cwd: io.cwd, env: io.env });
          const valid = !hasErrors(r.diagnostics);
          if (opts.format === 'json') {
            io.stdout.write(`${JSON.stringify({ valid, diagnostics: r.diagnostics }, null, 2)}\n`);
            return valid ? 0 : 1;
          }
          printDiagnostics(io, r.diagnostics);
          const warnings = r.diagnostics.filter((d) => d.severity === 'warning').length;
          if (valid) {
            const pack = r.pack ? `policy pack ${r.pack.name}@${r.pack.version}` : 'no policy pack';
            const dcs = r.stack?.dataCenters.length ?? 0;
            const warn = warnings ? ` (${plural(warnings, 'warning')})` : '';
            io.stdout.write(`${opts.stack}: ${plural(r.fleets.length, 'fleet')}, ${plural(dcs, 'data center')}, ${pack}: valid${warn}\n`);
            return 0;
          }
          const errors = r.diagnostics.length - warnings;
          io.stderr.write(`\n${opts.stack}: ${plural(errors, 'error')}, ${plural(warnings, 'warning')}: invalid\n`);
          return 1;
        }),
      );
    });
};
