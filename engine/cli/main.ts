import { Command, CommanderError } from 'commander';
import { diag } from '../diags/index.ts';
import { type CliIO, printDiagnostics, processIO } from './io.ts';
import { COMMANDS } from './commands/index.ts';

export const DEFAULT_STACK = 'stacks/local';

/** Builds the program; each command module adds its own subcommand. */
export function buildProgram(io: CliIO, setExit: (code: number) => void): Command {
  const program = new Command('fleet')
    .description('Declarative VM fleets across many data centers, provisioned through per-data-center DMZ clients.')
    .version('0.1.0')
    .showHelpAfterError()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride();
  for (const register of COMMANDS) register(program, io, setExit);
  return program;
}

/** Runs the CLI and returns the exit code (0 ok / no changes, 1 error, 2 changes with --detailed-exitcode). */
export async function main(argv: string[], io: CliIO = processIO()): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (c) => {
    code = c;
  });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exit code 0.
      return err.exitCode === 0 ? 0 : 1;
    }
    printDiagnostics(io, [diag('cli.internal', err instanceof Error ? err.message : String(err))]);
    return 1;
  }
  return code;
}
