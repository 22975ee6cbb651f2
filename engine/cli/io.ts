import type { Readable, Writable } from 'node:stream';
import { FleetError, diag, formatDiagnostics, sortDiagnostics, type Diagnostic } from '../diags/index.ts';

/**
 * Everything a command touches of the outside world, so tests can run the
 * CLI in-process with captured streams instead of spawning a process.
 */
export interface CliIO {
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean };
  stdin: Readable & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export function processIO(): CliIO {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd() };
}

/** Colour only on a TTY, and never when NO_COLOR is set (https://no-color.org). */
export function useColor(io: CliIO, stream: 'stdout' | 'stderr' = 'stdout'): boolean {
  return Boolean(io[stream].isTTY) && !io.env.NO_COLOR;
}

export function printDiagnostics(io: CliIO, diags: Diagnostic[]): void {
  if (diags.length === 0) return;
  io.stderr.write(formatDiagnostics(sortDiagnostics([...diags])));
}

/**
 * Runs a command body and turns what it throws into diagnostics and an exit
 * code: a FleetError (bad input, outside fault) prints its diagnostics; any
 * other error is a bug, printed as cli.internal (with the stack only when
 * FLEET_DEBUG is set).
 */
export async function runCommand(io: CliIO, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof FleetError) {
      printDiagnostics(io, err.diagnostics);
      return 1;
    }
    const e = err instanceof Error ? err : new Error(String(err));
    printDiagnostics(io, [diag('cli.internal', e.message)]);
    if (io.env.FLEET_DEBUG) io.stderr.write(`${e.stack ?? ''}\n`);
    return 1;
  }
}
