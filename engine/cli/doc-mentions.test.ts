// What the hand-written docs name stays true of the code: every `fleet …`
// command line in README.md and docs/ parses with the real CLI's commands and
// options (commander only: no command runs), every repository path they name
// exists, and every diagnostic code named
// in them is in the registry. docs/cli.md and docs/diagnostics.md are
// generated (gen-docs.test.ts, engine/diags/codes.test.ts check those).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { PassThrough, Readable } from 'node:stream';
import fg from 'fast-glob';
import { CommanderError, type Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { CODES } from '../diags/codes/index.ts';
import { buildProgram } from './main.ts';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const GENERATED = new Set(['docs/cli.md', 'docs/diagnostics.md']);

async function docs(): Promise<{ file: string; text: string }[]> {
  const files = (await fg(['README.md', 'docs/**/*.md', 'providers/drivers/README.md', 'packages/*/README.md'], { cwd: repo })).filter((f) => !GENERATED.has(f)).sort();
  return Promise.all(files.map(async (file) => ({ file, text: await readFile(`${repo}${file}`, 'utf8') })));
}

interface Mention {
  where: string;
  line: string;
  /** A line of a code block (a command to run), not a name in prose: must be complete. */
  block: boolean;
}

/** `fleet …` in inline code, and code-block lines starting with `fleet <word>` (or `$ fleet `), continuations joined. */
export function commandMentions(file: string, text: string): Mention[] {
  const out: Mention[] = [];
  const lines = text.split('\n');
  let inBlock = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (/^\s*```/.test(line)) {
      inBlock = !inBlock;
      continue;
    }
    if (inBlock) {
      const m = /^\s*(?:\$ )?(fleet [a-z].*)$/.exec(line);
      if (!m) continue;
      let cmd = m[1];
      while (cmd.trimEnd().endsWith('\\') && i + 1 < lines.length) cmd = `${cmd.trimEnd().slice(0, -1)} ${lines[++i].trim()}`;
      out.push({ where: `${file}:${i + 1}`, line: cmd, block: true });
      continue;
    }
    for (const m of line.matchAll(/`(fleet [^`]+)`/g)) out.push({ where: `${file}:${i + 1}`, line: m[1], block: false });
  }
  return out;
}

/**
 * The words commander gets: up to a shell pipe or comment; a synopsis's
 * brackets, `...` and `a|b` alternatives (the first) taken out; `…` dropped.
 * undefined for a synopsis of several commands (`fleet validate | plan | …`).
 */
export function argvOf(line: string): string[] | undefined {
  let s = line.replace(/\s#.*$/, '');
  if (/^fleet [a-z-]+( [a-z-]+)? \| [a-z]/.test(s)) return undefined;
  s = s.replace(/\s\|\s.*$/, '').replace(/\s(&&|;|>|2>).*$/, '');
  const words: string[] = [];
  for (const m of s.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) {
    let w = m[1] ?? m[2] ?? m[3];
    if (m[3] !== undefined) {
      w = w.replace(/[[\]]/g, '').replace(/\.\.\.$/, '');
      if (/^[^=|]+\|/.test(w) && !w.includes('://')) w = w.split('|')[0];
      if (w === '' || w === '…' || w === '...') continue;
    }
    words.push(w);
  }
  return words.slice(1);
}

function quietProgram(): Command {
  const program = buildProgram({ stdout: new PassThrough(), stderr: new PassThrough(), stdin: Readable.from([]), env: {}, cwd: '/' }, () => {});
  const quiet = (c: Command): void => {
    c.exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {}, outputError: () => {} });
    if (c.commands.length) c.commands.forEach(quiet);
    else c.action(() => {});
  };
  quiet(program);
  return program;
}

/** The parse error of argv, or undefined when commander takes it. Prose may name a command without its arguments. */
export function parseError(argv: string[], block: boolean): string | undefined {
  try {
    quietProgram().parse(argv, { from: 'user' });
    return undefined;
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return undefined;
    // Prose names a command or an option (`fleet plan --out`, `fleet serve dmz-client`) without all it needs.
    if (!block && ['commander.missingArgument', 'commander.optionMissingArgument', 'commander.missingMandatoryOptionValue', 'commander.help'].includes(err.code)) return undefined;
    return err.message;
  }
}

describe('fleet command lines in the docs', () => {
  it('finds some (the extraction still works)', async () => {
    const all = (await docs()).flatMap(({ file, text }) => commandMentions(file, text));
    expect(all.filter((m) => m.block).length).toBeGreaterThan(3);
    expect(all.length).toBeGreaterThan(100);
  });

  it('parse with the CLI’s commands and options', async () => {
    const bad: string[] = [];
    for (const { file, text } of await docs()) {
      for (const m of commandMentions(file, text)) {
        const argv = argvOf(m.line);
        if (!argv) continue;
        const err = parseError(argv, m.block);
        if (err) bad.push(`${m.where}: \`${m.line}\`: ${err}`);
      }
    }
    expect(bad, 'these command lines would fail to parse: fix the doc (or the extraction above)').toEqual([]);
  });

  it('the checker refuses what the CLI refuses', () => {
    expect(parseError(argvOf('fleet plan --stak x')!, false)).toMatch(/unknown option '--stak'/);
    expect(parseError(argvOf('fleet state frob')!, false)).toMatch(/unknown command|too many/);
    expect(parseError(argvOf('fleet plan --format yaml')!, false)).toMatch(/yaml/);
    expect(parseError(argvOf('fleet state rm')!, true)).toMatch(/missing required argument/);
    expect(parseError(argvOf('fleet state rm')!, false)).toBeUndefined();
    expect(parseError(argvOf('fleet plan --out')!, false)).toBeUndefined();
    expect(parseError(argvOf('fleet plan --out')!, true)).toMatch(/argument missing/);
    expect(parseError(argvOf('fleet state list [--fleet F]... [--format text|json]')!, true)).toBeUndefined();
  });
});

describe('repository paths named in the docs', () => {
  it('exist', async () => {
    const tops = 'bench|bin|docs|engine|examples|packages|policies|protocol|providers|specs|stacks|test';
    const re = new RegExp(`(?<![\\w./-])((?:${tops})/[\\w./-]*\\w)`, 'g');
    // Made at run time (a stack's .fleet/ folder), or a stack the docs invent as an example.
    const made = (p: string) => p.includes('/.fleet') || p.startsWith('stacks/prod');
    const bad: string[] = [];
    let seen = 0;
    for (const { file, text } of await docs()) {
      text.split('\n').forEach((line, i) => {
        for (const m of line.matchAll(re)) {
          const p = m[1];
          // Globs and placeholders (`specs/*.yaml`, `stacks/dmz-*/program.test.ts`, `<kind>/`) name no one file.
          if (/[*{<…]/.test(/^[^\s`)'"]*/.exec(line.slice(m.index))![0]) || made(p)) continue;
          seen++;
          if (!existsSync(`${repo}${p}`)) bad.push(`${file}:${i + 1}: ${p}`);
        }
      });
    }
    expect(seen).toBeGreaterThan(100);
    expect(bad, 'these paths do not exist: fix the doc').toEqual([]);
  });
});

describe('diagnostic codes named in the docs', () => {
  it('are in the registry (engine/diags/codes)', async () => {
    const areas = [...new Set(Object.keys(CODES).map((c) => c.split('.')[0]))].join('|');
    // Kebab names only: `spec.placement` and `plan.changes` are field paths, not codes. `apply.plan-*` names a family.
    const re = new RegExp(`\`((?:${areas})\\.[a-z0-9]+(?:-[a-z0-9]+)+|(?:${areas})\\.[a-z0-9-]*\\*)\``, 'g');
    const codes = Object.keys(CODES);
    const bad: string[] = [];
    let seen = 0;
    for (const { file, text } of await docs()) {
      text.split('\n').forEach((line, i) => {
        for (const m of line.matchAll(re)) {
          seen++;
          const name = m[1];
          const ok = name.endsWith('*') ? codes.some((c) => c.startsWith(name.slice(0, -1))) : codes.includes(name);
          if (!ok) bad.push(`${file}:${i + 1}: ${name}`);
        }
      });
    }
    expect(seen).toBeGreaterThan(20);
    expect(bad, 'these codes are not in engine/diags/codes: fix the doc').toEqual([]);
  });
});
