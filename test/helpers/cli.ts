import { PassThrough, Readable } from 'node:stream';
import { main } from '../../engine/cli/main.ts';
import type { CliIO } from '../../engine/cli/io.ts';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `fleet ARGS` in-process with captured output (no TTY unless asked). */
export async function runCli(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; stdin?: string; tty?: boolean } = {},
): Promise<CliRun> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const stdin = Readable.from(opts.stdin !== undefined ? [opts.stdin] : []);
  const io: CliIO = {
    stdout: Object.assign(stdout, { isTTY: opts.tty ?? false }),
    stderr: Object.assign(stderr, { isTTY: opts.tty ?? false }),
    stdin: Object.assign(stdin, { isTTY: opts.tty ?? false }),
    env: { ...process.env, NO_COLOR: opts.tty ? undefined : '1', ...opts.env },
    cwd: opts.cwd ?? process.cwd(),
  };
  const code = await main(['node', 'fleet', ...args], io);
  return { code, stdout: out, stderr: err };
}
