import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { clip, diag, didYouMean, type Diagnostic } from '../diags/index.ts';
import { type CliIO, printDiagnostics, processIO, writeDiagnosticEvents, writeJson } from './io.ts';
import { applyEnv, rejectEmptyValues } from './options.ts';
import { COMMANDS } from './commands/index.ts';

export { DEFAULT_STACK } from './options.ts';

/** The package's version, from its package.json (one source for `fleet --version`, the docs and the tarball). */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Builds the program; each command module adds its own subcommand. */
export function buildProgram(io: CliIO, setExit: (code: number) => void): Command {
  const program = new Command('fleet')
    .description('Declarative VM fleets across many data centers, provisioned through per-data-center DMZ clients.')
    .version(VERSION, '-V, --version', 'print the version of fleet')
    .option('--no-color', 'no colour in the output (also when NO_COLOR is set, or the output is not a terminal)')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      // Parse errors become cli.usage diagnostics in main(), in the form --format asks for.
      outputError: () => {},
    })
    .exitOverride()
    .hook('preAction', (root, action) => {
      if (root.opts().color === false) io.noColor = true;
      rejectEmptyValues(action);
      applyEnv(action, io);
    });
  for (const register of COMMANDS) register(program, io, setExit);
  return program;
}

/**
 * `--format json` (or `--format=json`) among the arguments: a parse error is
 * then printed as JSON too. The last one given, as commander takes it.
 */
function formatAsked(argv: string[]): string | undefined {
  let format: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--format') format = argv[++i];
    else if (argv[i].startsWith('--format=')) format = argv[i].slice('--format='.length);
  }
  return format;
}

/** A commander parse error ("error: unknown option '--stak'\n(Did you mean --stack?)") as a diagnostic. */
export function usageDiagnostic(err: CommanderError, argv: string[], program: Command): Diagnostic {
  // The words commander quotes ('--stak', an argument's value) are what was typed: bounded like any quoted value (clip).
  const message = err.message
    .replace(/^error: /, '')
    .replace(/\n\((Did you mean [^)]*)\)/, ' ($1)')
    .replace(/\s*\n\s*/g, ' ')
    .trim()
    .replace(/'([^']*)'/g, (_m, v: string) => `'${clip(v)}'`);
  // The command the error is in, subcommands too (`fleet state rm`): its words in order, up to the first that names none.
  const words: string[] = [];
  let at = program;
  for (const a of argv.slice(2)) {
    if (a.startsWith('-')) continue;
    const sub = at.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!sub) break;
    words.push(sub.name());
    at = sub;
  }
  const help = words.length ? `fleet ${words.join(' ')} --help` : 'fleet --help';
  // A value outside an option's or argument's choices: a likely typo is named, as commander does for commands.
  const value = /(?:argument|value) '([^']*)' is invalid/.exec(err.message)?.[1];
  const choices = /Allowed choices are (.*)\.\s*$/s.exec(err.message)?.[1];
  const hint = value !== undefined && choices !== undefined ? didYouMean(value, choices.split(', ')) : '';
  const text = `${message.charAt(0).toUpperCase()}${message.slice(1)}`.replace(/[.?!]?$/, (end) => `${hint}${end || '.'}`);
  const unknown = err.code === 'commander.unknownOption' && !/Did you mean/.test(message) ? /unknown option '([^']+)'/.exec(err.message)?.[1] : undefined;
  const placed = unknown === undefined ? undefined : optionElsewhere(unknown, argv.slice(2), program, at);
  return diag('cli.usage', `${text}${placed?.text ?? ''} Run \`${placed?.help ?? help}\` for the usage.`);
}

/** Every command that runs (no subcommands of its own), with its words: `state rm`. */
function leafCommands(c: Command, words: string[] = []): { words: string[]; command: Command }[] {
  return c.commands.flatMap((sub) => (sub.commands.length ? leafCommands(sub, [...words, sub.name()]) : [{ words: [...words, sub.name()], command: sub }]));
}

/**
 * An option commander does not know where it was given, that another place
 * takes: given before its command's words (`fleet --stack x validate`,
 * `fleet state --fleet web list`: options go after them), or an option of
 * another command (`fleet plan --parallelism 3`: of apply), with the help
 * to read then. undefined when no command takes it.
 */
function optionElsewhere(flag: string, args: string[], program: Command, at: Command): { text: string; help?: string } | undefined {
  const name = flag.split('=')[0];
  const takes = (c: Command) => c.options.find((o) => o.long === name || o.short === name);
  const leaves = leafCommands(program);
  const flagAt = args.indexOf(flag);
  // The command the line names: the longest whose words appear in it in order.
  const positions = (words: string[]): number[] | undefined => {
    const out: number[] = [];
    for (const w of words) {
      const i = args.indexOf(w, (out.at(-1) ?? -1) + 1);
      if (i < 0) return undefined;
      out.push(i);
    }
    return out;
  };
  const named = leaves
    .map((l) => ({ ...l, at: positions(l.words) }))
    .filter((l) => l.at !== undefined)
    .sort((a, b) => b.words.length - a.words.length)[0];
  const option = named && takes(named.command);
  if (named?.at && option && flagAt < named.at[named.at.length - 1]) {
    const moved = [flag, ...(flag.includes('=') || !(option.required || option.optional) ? [] : args.slice(flagAt + 1, flagAt + 2))];
    const rest = args.filter((_, i) => i < flagAt || i >= flagAt + moved.length);
    return { text: ` Options go after the command: \`fleet ${[...rest, ...moved].join(' ')}\`.`, help: `fleet ${named.words.join(' ')} --help` };
  }
  const others = leaves.filter((l) => l.command !== at && l.command !== named?.command && takes(l.command)).map((l) => `fleet ${l.words.join(' ')}`);
  if (others.length === 0) return undefined;
  return { text: ` ${name} is an option of ${others.length <= 3 ? others.map((o) => `\`${o}\``).join(', ') : `${others.length} other commands`}, not of this one.` };
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
      // --help and --version end here with exit code 0; `fleet` alone shows the help and exits 1.
      if (['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(err.code)) return err.exitCode;
      const d = usageDiagnostic(err, argv, program);
      if (formatAsked(argv) === 'json') {
        if (argv.slice(2).find((a) => !a.startsWith('-')) === 'apply') writeDiagnosticEvents(io, [d]);
        else writeJson(io, { diagnostics: [d] });
      } else {
        printDiagnostics(io, [d]);
      }
      return 1;
    }
    printDiagnostics(io, [diag('cli.internal', err instanceof Error ? err.message : String(err))]);
    return 1;
  }
  return code;
}
