// What the hand-written docs name stays true of the code: every `fleet …`
// command line in README.md and docs/ parses with the real CLI's commands and
// options (commander only: no command runs), every repository path they name
// exists, every diagnostic code named in them is in the registry, every
// FLEET_* variable they name is read by the code and every one the CLI and
// the services read is named in them, every relative link and section they
// point at exists (and every section a code comment, test or schema names),
// and every YAML example of a fleet/v1 file (a whole
// document or a part of one) passes its schema. docs/cli.md and
// docs/diagnostics.md are generated (gen-docs.test.ts,
// engine/diags/codes.test.ts check those).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PassThrough, Readable } from 'node:stream';
import fg from 'fast-glob';
import { CommanderError, type Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { parse as parseYamlValue } from 'yaml';
import { CODES } from '../diags/codes/index.ts';
import { WIRE_ERRORS } from '../../protocol/errors.ts';
import { runPolicyTests } from '../plan/policy-tests.ts';
import { validateDoc } from '../spec/schema.ts';
import { parseYaml } from '../spec/yaml.ts';
import { PolicyPack as policyPackValidator } from '../../specs/validators/policy-pack.js';
import { buildProgram } from './main.ts';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const GENERATED = new Set(['docs/cli.md', 'docs/diagnostics.md']);

async function docs(): Promise<{ file: string; text: string }[]> {
  return (await allDocs()).filter(({ file }) => !GENERATED.has(file));
}

/** Every Markdown page a user reads, the generated ones included. */
async function allDocs(): Promise<{ file: string; text: string }[]> {
  const files = (await fg(['README.md', 'docs/**/*.md', 'examples/**/*.md', 'providers/**/README.md', 'packages/*/README.md'], { cwd: repo, ignore: ['**/node_modules/**'] })).sort();
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

  it('in the example CI workflows (examples/**/*.yml) parse too', async () => {
    const bad: string[] = [];
    let seen = 0;
    for (const file of (await fg('examples/**/*.{yml,yaml}', { cwd: repo })).sort()) {
      (await readFile(`${repo}${file}`, 'utf8')).split('\n').forEach((line, i) => {
        const m = /^\s*(?:- run:\s*|run:\s*)?(?:npx )(fleet [a-z].*)$/.exec(line);
        if (!m) return;
        seen++;
        const argv = argvOf(m[1]);
        const err = argv && parseError(argv, true);
        if (err) bad.push(`${file}:${i + 1}: \`${m[1]}\`: ${err}`);
      });
    }
    expect(seen).toBeGreaterThan(3);
    expect(bad).toEqual([]);
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

describe('options named alone in the docs (`--lock-timeout`)', () => {
  it('are options of a fleet command, or of a benchmark program (named in its usage comment)', async () => {
    const options = new Set<string>();
    const walk = (c: Command): void => {
      for (const o of c.options) if (o.long) options.add(o.long);
      c.commands.forEach(walk);
    };
    walk(quietProgram());
    const bench = (await sources(['bench'], 'ts', ['**/*.test.ts'])).map((b) => b.text).join('\n');
    // Other programs' options the docs name: node's (`--trace-opt`), pulumi config's (`--path`).
    const others = new Set(['--trace-opt', '--path']);
    const bad: string[] = [];
    let seen = 0;
    for (const { file, text } of await allDocs()) {
      text.split('\n').forEach((line, i) => {
        for (const m of line.matchAll(/`(--[a-z][a-z0-9-]*)(?:[ =][^`]*)?`/g)) {
          seen++;
          const flag = m[1];
          if (!options.has(flag) && !others.has(flag) && !new RegExp(`${flag}\\b`).test(bench)) bad.push(`${file}:${i + 1}: ${flag}`);
        }
      });
    }
    expect(seen).toBeGreaterThan(100);
    expect(bad, 'no command takes these options: fix the doc').toEqual([]);
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

/** Non-test sources under `dirs` (repo-relative), with their text. */
async function sources(dirs: string[], ext: string, ignore: string[]): Promise<{ file: string; text: string }[]> {
  const files = await fg(
    dirs.map((d) => `${d}/**/*.${ext.includes(',') ? `{${ext}}` : ext}`),
    { cwd: repo, dot: true, ignore: ['**/node_modules/**', 'dist/**', 'specs/validators/**', ...ignore] },
  );
  return Promise.all(files.sort().map(async (file) => ({ file, text: await readFile(`${repo}${file}`, 'utf8') })));
}

/** FLEET_* names a text mentions; a name ending in `_` (`FLEET_CLI_TOKEN_<DC>`, `FLEET_TLS_*`) is a prefix. */
function fleetVars(text: string): Set<string> {
  return new Set([...text.matchAll(/\bFLEET_[A-Z0-9_]*/g)].map((m) => m[0]).filter((v) => v !== 'FLEET_'));
}

describe('wire error codes named in the docs', () => {
  it('are in the registry (protocol/errors.ts), with the HTTP status the docs give them', async () => {
    const wire = WIRE_ERRORS as Record<string, { status: number }>;
    const bad: string[] = [];
    let seen = 0;
    for (const { file, text } of await docs()) {
      text.split('\n').forEach((line, i) => {
        // `429 \`boot-rate-limited\``, `vetoed \`locked\``: a status or a veto, then the code.
        for (const m of line.matchAll(/\b(?:([1-5]\d\d)|vetoed) \*{0,2}`([a-z][a-z0-9.-]+)`/g)) {
          seen++;
          const [, status, code] = m;
          if (!(code in wire)) bad.push(`${file}:${i + 1}: ${code} is no wire code`);
          else if (status !== undefined && wire[code].status !== Number(status)) bad.push(`${file}:${i + 1}: ${code} is answered ${wire[code].status}, not ${status}`);
        }
      });
    }
    expect(seen).toBeGreaterThan(20);
    expect(bad, 'fix the doc (or the registry)').toEqual([]);
  });
});

describe('environment variables named in the docs', () => {
  // Read by the process: a string literal ('FLEET_X', `FLEET_X_${dc}`), env.FLEET_X, or a shell ${FLEET_X} / $FLEET_X.
  const readIn = (text: string, v: string): boolean => new RegExp(`['"\`]${v}(['"\`]|\\$\\{)|env\\??\\.${v}\\b|\\$\\{?${v}`).test(text);

  it('are each read by the code (the CLI, the services, the boot agent, the tests and CI for theirs)', async () => {
    const code = await sources(['bin', 'engine', 'protocol', 'providers', 'packages', 'test', '.ci'], 'ts,mjs,js,sh', []);
    code.push({ file: '.ci/run', text: await readFile(`${repo}.ci/run`, 'utf8') }, { file: 'package.json', text: (await readFile(`${repo}package.json`, 'utf8')).replace(/"(FLEET_\w+)=/g, '"$${$1}=') });
    const bad: string[] = [];
    let seen = 0;
    for (const { file, text } of await allDocs()) {
      text.split('\n').forEach((line, i) => {
        for (const v of fleetVars(line)) {
          seen++;
          // A prefix (`FLEET_DMZ_TOKEN_<DC>`) is read as a template literal's head, and so is a name made of one (FLEET_DMZ_TOKEN_MIAMI).
          const heads = [...v.matchAll(/_/g)].map((u) => v.slice(0, u.index + 1)).filter((h) => h.length > 'FLEET_'.length);
          // `FLEET_TLS_*` names the family: some variable of it is read.
          const family = v.endsWith('_') ? new RegExp(`['"\`]${v}[A-Z0-9_]+['"\`]`) : undefined;
          if (!code.some((c) => readIn(c.text, v) || heads.some((h) => c.text.includes(`\`${h}\${`)) || family?.test(c.text))) bad.push(`${file}:${i + 1}: ${v}`);
        }
      });
    }
    expect(seen).toBeGreaterThan(50);
    expect(bad, 'no code reads these variables: fix the doc (or the name in the code)').toEqual([]);
  });

  it('name every variable the CLI and the services read', async () => {
    // The boot agent's and the Azure bootstrap's variables are set in a VM's user data by the drivers, not read
    // from an operator's environment; fakes and test helpers stand in for clouds.
    const code = await sources(['bin', 'engine', 'protocol', 'providers'], 'ts,mjs', ['**/*.test.ts', 'providers/boot-agent/**', 'providers/drivers/azure/bootstrap.ts', '**/*fake*.ts', '**/testing.ts']);
    // Set by the CLI for its own loader (--record-url came from the flag), never by a user.
    const internal = new Set(['FLEET_RECORD_URL_FROM_FLAG']);
    const documented = (await allDocs()).map((d) => d.text).join('\n');
    const read = new Map<string, string>();
    for (const { file, text } of code) {
      for (const m of text.matchAll(/(?:['"`]|env\??\.)(FLEET_[A-Z0-9_]*[A-Z0-9_])(?=['"`]|\$\{|\b)/g)) if (!internal.has(m[1])) read.set(m[1], file);
    }
    expect(read.size).toBeGreaterThan(15);
    const bad = [...read].filter(([v]) => !(v.endsWith('_') ? documented.includes(v) : new RegExp(`\\b${v}\\b`).test(documented))).map(([v, file]) => `${v} (${file})`);
    expect(bad, 'the code reads these variables and no doc names them: document them (README.md, docs/)').toEqual([]);
  });
});

/** GitHub's anchor of each heading of a Markdown text. */
function anchors(text: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let inBlock = false;
  for (const line of text.split('\n')) {
    if (/^\s*```/.test(line)) inBlock = !inBlock;
    if (inBlock) continue;
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const slug = m[1].replace(/`/g, '').toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/ /g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n ? `${slug}-${n}` : slug);
  }
  return out;
}

/** Lines outside fenced code blocks, with their numbers. */
function proseLines(text: string): [number, string][] {
  let inBlock = false;
  const out: [number, string][] = [];
  text.split('\n').forEach((line, i) => {
    if (/^\s*```/.test(line)) inBlock = !inBlock;
    else if (!inBlock) out.push([i + 1, line]);
  });
  return out;
}

describe('links and sections the docs point at', () => {
  it('relative links resolve, to a heading when they name one', async () => {
    const bad: string[] = [];
    let seen = 0;
    for (const { file, text } of await allDocs()) {
      for (const [n, line] of proseLines(text)) {
        for (const m of line.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
          if (/^[a-z][a-z+.-]*:/i.test(m[1])) continue;
          seen++;
          const [path, anchor] = m[1].split('#');
          const target = path ? normalize(join(dirname(file), path)) : file;
          if (!existsSync(`${repo}${target}`)) bad.push(`${file}:${n}: ${m[1]} (no ${target})`);
          else if (anchor !== undefined && target.endsWith('.md') && statSync(`${repo}${target}`).isFile() && !anchors(await readFile(`${repo}${target}`, 'utf8')).has(anchor)) bad.push(`${file}:${n}: ${m[1]} (no heading #${anchor} in ${target})`);
        }
      }
    }
    expect(seen).toBeGreaterThan(50);
    expect(bad, 'these links are broken: fix the doc').toEqual([]);
  });

  it('a section named as docs/FILE.md, "Heading" is a heading (or a bold item) of that file', async () => {
    const bad: string[] = [];
    let seen = 0;
    for (const { file, text } of await allDocs()) {
      // Joined, so a reference wrapped over two lines is found.
      const flat = text.replace(/\n\s*/g, ' ');
      for (const m of flat.matchAll(/(docs\/[\w/-]+\.md)[,:]?\s+(?:section\s+)?["“]([^"”]{3,80})["”]/g)) {
        seen++;
        const target = `${repo}${m[1]}`;
        if (!existsSync(target)) continue; // the path test above reports it
        if (!(await namesSection(target, m[2]))) bad.push(`${file}: ${m[1]}, "${m[2]}"`);
      }
    }
    expect(seen).toBeGreaterThan(30);
    expect(bad, 'no such section: fix the reference').toEqual([]);
  });

  // Comments pointed at sections that were never there or were renamed: protocol.md's "DMZ client -> authority"
  // (the heading has →) and "Plans", security.md's "Admin overrides". A quote may also be words the doc says.
  it('a section a code comment, test or schema names (docs/FILE.md, "Heading") is a heading, a bold item or words of that file', async () => {
    const bad: string[] = [];
    let seen = 0;
    const sources = await fg(['**/*.{ts,mjs,js}', 'specs/schema/*.json'], { cwd: repo, ignore: ['**/node_modules/**', 'dist/**', 'specs/validators/**', 'specs/types/**', 'protocol/types/**'] });
    for (const file of sources.sort()) {
      const text = await readFile(`${repo}${file}`, 'utf8');
      if (!text.includes('.md')) continue;
      // Joined without comment leaders, so a reference wrapped over two comment lines is found; a schema's \" unescaped.
      const flat = text.replace(/\n\s*(?:\/\/|\*(?!\/))?\s*/g, ' ').replace(/\\"/g, '"');
      for (const m of flat.matchAll(/(?<![\w/.-])((?:docs\/)?[\w/-]+\.md)[,:]?\s*\(?(?:sections?\s+)?["“]([^"”]{3,80})["”]/g)) {
        // A bare name (protocol.md) is the page of docs/ of that name.
        const target = existsSync(`${repo}${m[1]}`) ? m[1] : existsSync(`${repo}docs/${m[1]}`) ? `docs/${m[1]}` : undefined;
        if (target === undefined || m[1] === 'docs/FILE.md') continue; // DESIGN.md is outside the repository; the example above
        seen++;
        if (!(await namesSection(`${repo}${target}`, m[2], { words: true }))) bad.push(`${file}: ${m[1]}, "${m[2]}"`);
      }
    }
    expect(seen).toBeGreaterThan(50);
    expect(bad, 'no such section in that doc: fix the reference').toEqual([]);
  });
});

/**
 * Whether `name` names a heading or a bold item of the Markdown file (a
 * prefix of it, backticks and case aside), or with `words`, is a sentence
 * (five words or more) the file says.
 */
async function namesSection(file: string, name: string, opts: { words?: boolean } = {}): Promise<boolean> {
  const t = await readFile(file, 'utf8');
  const want = name.replace(/`/g, '').trim().toLowerCase();
  const heads = t.split('\n').filter((l) => /^#{1,6}\s/.test(l)).map((l) => l.replace(/^#+\s+/, '').replace(/`/g, '').trim().toLowerCase());
  const bold = [...t.matchAll(/(?<!\*)\*\*([^*\n]+)\*\*(?!\*)/g)].map((b) => b[1].replace(/`/g, '').toLowerCase());
  if (heads.some((h) => h.startsWith(want)) || bold.some((b) => b.startsWith(want))) return true;
  // A sentence only: a short quote ("Plans", "Broker") is a section's name, and is among any doc's words.
  return opts.words === true && want.split(/\s+/).length >= 5 && t.replace(/`/g, '').replace(/\s+/g, ' ').toLowerCase().includes(want.replace(/\s+/g, ' '));
}

interface YamlBlock {
  where: string;
  text: string;
}

/** Fenced ```yaml blocks, the fence's indentation (a block in a list item) taken off. */
export function yamlBlocks(file: string, text: string): YamlBlock[] {
  const lines = text.split('\n');
  const out: YamlBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```ya?ml\s*$/.exec(lines[i]);
    if (!open) continue;
    const start = i + 1;
    const body: string[] = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) body.push(lines[i].slice(open[1].length));
    out.push({ where: `${file}:${start}`, text: body.join('\n') });
  }
  return out;
}

type Kind = 'Fleet' | 'Stack' | 'DmzClient' | 'PolicyPack';
type Json = Record<string, unknown>;
const isMap = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);
const specKeys = (schema: string): string[] => Object.keys((JSON.parse(readFileSyncRepo(`specs/schema/${schema}.schema.json`)) as { properties: { spec: { properties: Json } } }).properties.spec.properties);
function readFileSyncRepo(p: string): string {
  return readFileSync(`${repo}${p}`, 'utf8');
}

/** A sketch's `...` (an elided list item or value) taken out, so what is left can be checked. */
function withoutEllipses(v: unknown): unknown {
  if (Array.isArray(v)) return v.filter((x) => x !== '...' && x !== '…').map(withoutEllipses);
  if (isMap(v)) return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== '...' && x !== '…').map(([k, x]) => [k, withoutEllipses(x)]));
  return v;
}

/** `part` laid over `base`: maps key by key; a list of maps item by item over the base list's first item. */
function overlay(base: unknown, part: unknown): unknown {
  if (isMap(base) && isMap(part)) {
    const out: Json = { ...base };
    for (const [k, v] of Object.entries(part)) out[k] = k in base ? overlay(base[k], v) : v;
    return out;
  }
  if (Array.isArray(base) && Array.isArray(part) && isMap(base[0]) && part.every(isMap)) return part.map((p) => overlay(base[0], p));
  return part;
}

/**
 * Which file format a docs YAML example is, and the whole document it stands
 * for: a document as it is, or a part of one (a stack's `dataCenters` entry,
 * a `spec:` excerpt, a pack's catalogs) laid over a valid document of the
 * kind whose spec has all of its keys. undefined: not a fleet/v1 file.
 */
function exampleDocument(value: unknown, bases: Record<Kind, Json>): { kind: Kind; doc: Json } | { error: string } | undefined {
  const v = withoutEllipses(value);
  const keys: Record<Kind, string[]> = { Fleet: specKeys('fleet'), Stack: specKeys('stack'), DmzClient: specKeys('dmz-client'), PolicyPack: specKeys('policy-pack') };
  const fits = (spec: Json) => (Object.keys(keys) as Kind[]).filter((k) => Object.keys(spec).every((key) => keys[k].includes(key)));
  if (isMap(v) && 'apiVersion' in v) {
    if (!(Object.keys(bases) as string[]).includes(String(v.kind))) return { error: `kind ${String(v.kind)} is no fleet/v1 format` };
    return { kind: v.kind as Kind, doc: v };
  }
  // A list of data center entries (`- name: virginia …`).
  if (Array.isArray(v) && v.every((x) => isMap(x) && 'name' in x)) return { kind: 'Stack', doc: overlay(bases.Stack, { spec: { dataCenters: v } }) as Json };
  if (!isMap(v)) return undefined;
  const spec = Object.keys(v).length === 1 && isMap(v.spec) ? v.spec : v;
  const kinds = fits(spec);
  if (kinds.length === 0) return undefined;
  return { kind: kinds[0], doc: overlay(bases[kinds[0]], { spec }) as Json };
}

describe('YAML examples in the docs', () => {
  // A valid document of each kind for a part of one to be laid over (no example file of the repo's: tests keep off those).
  const bases = (): Record<Kind, Json> => ({
    Fleet: parseYamlValue(readFileSyncRepo('test/fixtures/example-stack/specs/web.yaml')) as Json,
    Stack: parseYamlValue(readFileSyncRepo('test/fixtures/example-stack/stack.yaml')) as Json,
    DmzClient: { apiVersion: 'fleet/v1', kind: 'DmzClient', spec: {} },
    PolicyPack: parseYamlValue(readFileSyncRepo('policies/default/policy.yaml')) as Json,
  });

  function problems(kind: Kind, doc: Json, where: string): string[] {
    if (kind === 'PolicyPack') return policyPackValidator(doc) ? [] : (policyPackValidator.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`);
    const parsed = parseYaml(JSON.stringify(doc), where);
    return [...parsed.diagnostics, ...validateDoc(parsed.docs[0], kind)].map((d) => `${d.code}: ${d.detail}`);
  }

  it('of fleet/v1 files (whole documents and parts of them) pass their schema', async () => {
    const bad: string[] = [];
    const checked: string[] = [];
    const base = bases();
    for (const { file, text } of await allDocs()) {
      for (const block of yamlBlocks(file, text)) {
        let value: unknown;
        try {
          value = parseYamlValue(block.text);
        } catch (err) {
          bad.push(`${block.where}: not YAML: ${(err as Error).message.split('\n')[0]}`);
          continue;
        }
        // Not fleet/v1 files: a comment alone (a modeline), cloud-init, a policy test case (checked below).
        if (value === null || /^#cloud-config/.test(block.text) || (isMap(value) && 'expect' in value)) continue;
        const found = exampleDocument(value, base);
        if (!found) {
          bad.push(`${block.where}: not a part of a fleet/v1 file a reader can tell (a key misspelt?): ${block.text.split('\n')[0]}`);
          continue;
        }
        if ('error' in found) {
          bad.push(`${block.where}: ${found.error}`);
          continue;
        }
        checked.push(`${block.where} ${found.kind}`);
        for (const p of problems(found.kind, found.doc, block.where)) bad.push(`${block.where} (${found.kind}): ${p}`);
      }
    }
    expect(checked.length).toBeGreaterThan(8);
    expect(bad, 'these examples are not valid: fix the doc').toEqual([]);
  });

  it('the checker refuses what the schemas refuse', () => {
    const base = bases();
    const check = (yaml: string): string[] => {
      const found = exampleDocument(parseYamlValue(yaml), base);
      if (!found) return ['unknown'];
      if ('error' in found) return [found.error];
      return problems(found.kind, found.doc, 'x');
    };
    expect(check('spec:\n  count: 3\n  rollout: { maxUnavailable: 1 }\n')).toEqual([]);
    expect(check('spec:\n  count: three\n')).not.toEqual([]);
    expect(check('- name: miami\n  address: embedded\n  capcity: { vms: 5 }\n')).not.toEqual([]);
    expect(check('dataCentres: []\n')).toEqual(['unknown']);
    expect(check('instanceTypes: { miami: [{ name: m, cpu: 2, memoryGiB: 4 }] }\npowerOff: { miami: halt }\n')).not.toEqual([]);
    expect(check('apiVersion: fleet/v1\nkind: DmzClient\nspec: { bootUrl: https://x/v1/boot, aws: { region: us-east-1, subnetId: s, securityGroupIds: [g], extra: 1 } }\n')).not.toEqual([]);
  });

  it('a policy test case in the docs passes against the default pack', async () => {
    const cases = (await allDocs()).flatMap(({ file, text }) => yamlBlocks(file, text)).filter((b) => /^expect:/m.test(b.text));
    expect(cases.length).toBeGreaterThan(0);
    const dir = await mkdtemp(join(tmpdir(), 'fleet-doc-case-'));
    try {
      await cp(`${repo}policies/default`, dir, { recursive: true });
      await rm(join(dir, 'tests'), { recursive: true, force: true });
      await cp(`${repo}policies/default/policy.yaml`, join(dir, 'policy.yaml'));
      await mkdir(join(dir, 'tests'));
      for (const [i, c] of cases.entries()) await writeFile(join(dir, 'tests', `doc-${i}.yaml`), `${c.text}\n`);
      const run = await runPolicyTests(dir);
      expect(run.diagnostics).toEqual([]);
      const failed = run.results.filter((r) => !r.passed).map((r) => `${cases[Number(r.name.slice(4))].where}: ${[...r.diff, ...r.diagnostics.map((d) => d.detail)].join('; ')}`);
      expect(failed).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
