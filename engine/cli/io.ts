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
  /** Set by `--no-color`. */
  noColor?: boolean;
}

export function processIO(): CliIO {
  readerMayLeave(process.stdout);
  readerMayLeave(process.stderr);
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd() };
}

const watched = new WeakSet<NodeJS.WriteStream>();

/**
 * The reader of our output may go away (`fleet apply --yes | head`): what is
 * written after that is dropped, and the command goes on to its own end and
 * exit code. Unheeded, the EPIPE was an unhandled 'error' event that killed
 * the process, in the middle of an apply if it was still running.
 */
function readerMayLeave(stream: NodeJS.WriteStream): void {
  if (watched.has(stream)) return;
  watched.add(stream);
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

/** Colour only on a TTY, and never with --no-color or when NO_COLOR is set (https://no-color.org). */
export function useColor(io: CliIO, stream: 'stdout' | 'stderr' = 'stdout'): boolean {
  return Boolean(io[stream].isTTY) && !io.env.NO_COLOR && !io.noColor;
}

export function printDiagnostics(io: CliIO, diags: Diagnostic[]): void {
  if (diags.length === 0) return;
  io.stderr.write(formatDiagnostics(sortDiagnostics([...diags])));
}

/**
 * How a command prints, chosen by `--format`:
 *
 * | output   | stdout                                        | diagnostics                          |
 * | -------- | --------------------------------------------- | ------------------------------------ |
 * | text     | the result for people                         | stderr, as text                      |
 * | json     | one JSON document (`diagnostics` inside it)   | in the document; a failure prints `{ "diagnostics": [...] }` |
 * | stream   | one JSON event per line (`fleet apply`)       | `{ "type": "diagnostic", ... }` events |
 *
 * The JSON forms put nothing else on stdout; their schemas are under
 * specs/schema/ (`*-output.schema.json`, `apply-event.schema.json`).
 */
export type OutputMode = 'text' | 'json' | 'stream';

/** A JSON document on stdout, as every `--format json` command prints its result. */
export function writeJson(io: CliIO, doc: unknown): void {
  io.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
}

/** Diagnostics as `fleet apply --format json` events: one line each, `type: "diagnostic"`. */
export function writeDiagnosticEvents(io: CliIO, diags: Diagnostic[]): void {
  for (const d of sortDiagnostics([...diags])) io.stdout.write(`${JSON.stringify({ type: 'diagnostic', ...d, at: new Date().toISOString() })}\n`);
}

/** Prints diagnostics the way `mode` wants them (text: stderr; json: not at all, the command's document holds them; stream: events). */
export function reportDiagnostics(io: CliIO, mode: OutputMode, diags: Diagnostic[]): void {
  if (mode === 'text') printDiagnostics(io, diags);
  else if (mode === 'stream') writeDiagnosticEvents(io, diags);
}

/**
 * Runs a command body and turns what it throws into diagnostics and an exit
 * code: a FleetError (bad input, outside fault) prints its diagnostics; any
 * other error is a bug, printed as cli.internal (with the stack only when
 * FLEET_DEBUG is set). With a JSON mode the diagnostics go to stdout in that
 * form (a failure document, or events), so a JSON reader always gets JSON.
 */
export async function runCommand(io: CliIO, body: () => Promise<number>, mode: OutputMode = 'text'): Promise<number> {
  try {
    return await body();
  } catch (err) {
    let diags: Diagnostic[];
    if (err instanceof FleetError) {
      diags = err.diagnostics;
    } else {
      const e = err instanceof Error ? err : new Error(String(err));
      diags = [diag('cli.internal', e.message)];
      if (io.env.FLEET_DEBUG) io.stderr.write(`${e.stack ?? ''}\n`);
    }
    if (mode === 'json') writeJson(io, { diagnostics: sortDiagnostics([...diags]) });
    else reportDiagnostics(io, mode, diags);
    return 1;
  }
}

/** The output mode of a command's `--format` value. */
export function modeOf(format: string, streaming = false): OutputMode {
  if (format !== 'json') return 'text';
  return streaming ? 'stream' : 'json';
}
