// YAML parsing that keeps source positions, so every diagnostic can name the
// file, line and column of the node it is about.
import { LineCounter, isMap, isPair, isScalar, isSeq, parseAllDocuments, visit, type Document, type Node, type Pair } from 'yaml';
import { diag, quote, type Diagnostic, type Where } from '../diags/index.ts';
import { UNCHECKED_KEYS, aliasBomb, checkDuplicateKeys, duplicateKeyDetail, keyOffset, refusedWarnings } from '../diags/yaml.ts';

/** One parsed YAML document of a file, with what is needed to map paths back to positions. */
export interface SourceDoc {
  /** File as shown in diagnostics. */
  file: string;
  /** 0-based position of the document in its file. */
  index: number;
  doc: Document.Parsed;
  lines: LineCounter;
  /** The file's text (where an empty key is shown: keyOffset). */
  text?: string;
  /** The document as plain data. */
  value: unknown;
}

export interface ParsedFile {
  docs: SourceDoc[];
  diagnostics: Diagnostic[];
  /** No document with content (empty file, only comments, only `---`). */
  empty: boolean;
}

/** A path into a document: map keys and sequence indices (`['spec', 'placement', 'dataCenters', 1]`). */
export type Path = readonly (string | number)[];

/**
 * How deep lists and mappings may nest in one document. A fleet or stack file
 * nests a few levels (policyPack.config a few more); converting a value some
 * 900 levels deep (`deep: [[[[…`) overflowed the call stack and was reported
 * as "Maximum call stack size exceeded", at a column of no meaning. Deeper
 * than the parser itself reaches, its own error is reported as this one (at
 * the place it gave up, inside the nesting).
 */
export const MAX_NESTING = 64;
const TOO_DEEP = `Lists and mappings are nested more than ${MAX_NESTING} deep here; no field of a fleet, stack or DMZ client file nests that deep. Look for a stray [ or { (or indentation that runs away).`;
/** What the parser's error says when a value is nested deeper than the call stack reaches (some 800 levels). */
const STACK_OVERFLOW = /Maximum call stack size exceeded/;

/** How many aliased values a document may expand to: far more than a fleet or stack file shares, far fewer than an alias bomb makes. */
const MAX_ALIAS_COUNT = 1000;

function isEmptyDoc(doc: Document.Parsed): boolean {
  const c = doc.contents;
  return c === null || (isScalar(c) && c.value === null && !doc.errors.length);
}

/**
 * Parses every document of a file. Documents with syntax errors are reported
 * (one diagnostic per error) and left out of `docs`; empty documents (a
 * trailing `---`) are skipped silently.
 */
export function parseYaml(text: string, file: string): ParsedFile {
  const lines = new LineCounter();
  // merge: `<<: *base` merge keys work, as people sharing settings between fleets expect.
  // logLevel error: a key that is a list or map (`? [a, b]`) is reported as an
  // unknown key at its place; the yaml package's own process warning about it
  // ("(node:123) Warning: Keys with collection values will be stringified")
  // went to stderr besides, --format json or not.
  // resolveKnownTags false: YAML 1.1's !!binary, !!timestamp, !!set are unknown tags too, refused with the rest (refusedWarnings).
  // Keys given twice: checkDuplicateKeys (linear; the parser's own check is quadratic).
  const all = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false, ...UNCHECKED_KEYS, merge: true, logLevel: 'error', resolveKnownTags: false });
  for (const doc of all) checkDuplicateKeys(doc, text);
  const diagnostics: Diagnostic[] = [];
  const docs: SourceDoc[] = [];
  let empty = true;
  all.forEach((doc, index) => {
    if (doc.errors.length) {
      empty = false;
      // Errors after the first at the same place are consequences of it.
      const seen = new Set<number>();
      let overflowed = false;
      for (const e of doc.errors) {
        if (seen.has(e.pos[0])) continue;
        seen.add(e.pos[0]);
        // The parser may run out of stack more than once in one nesting: one diagnostic says it.
        if (STACK_OVERFLOW.test(e.message) && overflowed) continue;
        overflowed ||= STACK_OVERFLOW.test(e.message);
        const { line, col } = lines.linePos(e.pos[0]);
        const detail =
          (e.code === 'DUPLICATE_KEY' ? duplicateKeyDetail(doc, e.pos[0], lines, text) : undefined) ??
          (STACK_OVERFLOW.test(e.message) ? TOO_DEEP : `${firstLine(e.message)}${openedAt(text, e.pos[0], e.message, lines)}.`);
        diagnostics.push(diag('spec.yaml-syntax', detail, { file, line, col }));
      }
      return;
    }
    if (isEmptyDoc(doc)) return;
    empty = false;
    const refused = refusedWarnings(doc, text);
    if (refused.length) {
      for (const r of refused) diagnostics.push(diag('spec.yaml-syntax', r.detail, { file, ...lines.linePos(r.pos) }));
      return;
    }
    const deep = tooDeep(doc);
    if (deep) {
      const { line, col } = lines.linePos(deep.range?.[0] ?? doc.range[0]);
      diagnostics.push(diag('spec.yaml-syntax', TOO_DEEP, { file, line, col }));
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (err) {
      // An alias without its anchor (`*base` before or without `&base`) parses but cannot be resolved.
      const msg = err instanceof Error ? err.message : String(err);
      if (STACK_OVERFLOW.test(msg)) {
        const { line, col } = lines.linePos(doc.range[0]);
        diagnostics.push(diag('spec.yaml-syntax', TOO_DEEP, { file, line, col }));
        return;
      }
      const bomb = aliasBomb(doc, msg, MAX_ALIAS_COUNT);
      if (bomb) {
        diagnostics.push(diag('spec.yaml-syntax', bomb.detail, { file, ...lines.linePos(bomb.pos) }));
        return;
      }
      const alias = /: (\S+)$/.exec(msg)?.[1];
      const at = alias ? text.indexOf(`*${alias}`, doc.range[0]) : -1;
      const { line, col } = lines.linePos(at >= 0 ? at : doc.range[0]);
      const detail = alias ? `Alias *${alias} has no anchor &${alias} before it in the same document (anchors do not carry across ---).` : `${firstLine(msg)}.`;
      diagnostics.push(diag('spec.yaml-syntax', detail, { file, line, col }));
      return;
    }
    diagnostics.push(...nulStrings(doc, file, lines));
    docs.push({ file, index, doc, lines, text, value });
  });
  return { docs, diagnostics, empty };
}

/** A list or mapping nested deeper than MAX_NESTING (aliases not followed), found without recursion. */
function tooDeep(doc: Document.Parsed): Node | undefined {
  const todo: [unknown, number][] = [[doc.contents, 1]];
  while (todo.length > 0) {
    const [node, depth] = todo.pop()!;
    if (!isMap(node) && !isSeq(node)) continue;
    if (depth > MAX_NESTING) return node;
    for (const item of node.items as unknown[]) {
      if (isPair(item)) todo.push([item.key, depth + 1], [item.value, depth + 1]);
      else todo.push([item, depth + 1]);
    }
  }
  return undefined;
}

/**
 * A key or string value holding a NUL (`"team\0pay"`): YAML allows it, the
 * record (PostgreSQL text) does not, and a stack, owner or label with one
 * validated and then made `fleet apply` fail with cli.internal ("invalid byte
 * sequence for encoding UTF8: 0x00"). Reported where it is written.
 */
function nulStrings(doc: Document.Parsed, file: string, lines: LineCounter): Diagnostic[] {
  const out: Diagnostic[] = [];
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('\0')) return;
      const { line, col } = lines.linePos(node.range?.[0] ?? doc.range[0]);
      out.push(diag('spec.invalid-value', `${quote(node.value)} holds a NUL character (\\0), which no name, label or value may hold: the record cannot store it.`, { file, line, col }));
    },
  });
  return out;
}

/**
 * For an unclosed bracket or quote the parser stops where it gives up (often
 * the next line); say where the opening character was, which is what needs fixing.
 */
function openedAt(text: string, pos: number, message: string, lines: LineCounter): string {
  const open = /Flow sequence/.test(message) ? '[' : /Flow map/.test(message) ? '{' : /closing "quote/.test(message) ? '"' : /closing 'quote/.test(message) ? "'" : undefined;
  if (!open) return '';
  const at = text.lastIndexOf(open, pos - 1);
  if (at < 0) return '';
  const { line, col } = lines.linePos(at);
  return ` (the ${open} opened at line ${line}, column ${col})`;
}

function firstLine(s: string): string {
  return s.split('\n')[0].replace(/[.:]\s*$/, '');
}

export function whereAt(src: SourceDoc, offset: number): Where {
  const { line, col } = src.lines.linePos(offset);
  return { file: src.file, line, col };
}

/** Start of the document's content (where a problem with the whole document is shown). */
export function docWhere(src: SourceDoc): Where {
  const c = src.doc.contents;
  return whereAt(src, c?.range?.[0] ?? src.doc.range[0]);
}

interface Found {
  /** The node at the path, when there is one. */
  node?: Node;
  /** The map pair holding it, when it is a map value. */
  pair?: Pair;
  /** The deepest node on the path that exists (for paths that run past the document). */
  deepest: Node | null;
  /** The pair of the deepest node, when it is a map value. */
  deepestPair?: Pair;
}

/** A pair's key as the document's plain data names it: an empty key (`? `, `~`, `null`) is "" there, as toJS makes it. */
function keyOf(pair: Pair): unknown {
  return isScalar(pair.key) ? (pair.key.value ?? '') : pair.key;
}

function find(src: SourceDoc, path: Path): Found {
  let node: unknown = src.doc.contents;
  let pair: Pair | undefined;
  for (const seg of path) {
    let next: unknown;
    let nextPair: Pair | undefined;
    if (isMap(node)) {
      nextPair = node.items.find((p) => isPair(p) && String(keyOf(p)) === String(seg));
      next = nextPair?.value;
    } else if (isSeq(node)) {
      next = node.items[Number(seg)];
    }
    if (next === undefined || next === null) {
      return { deepest: node as Node, deepestPair: pair };
    }
    node = next;
    pair = nextPair;
  }
  return { node: node as Node, pair, deepest: node as Node, deepestPair: pair };
}

function startOf(n: unknown): number | undefined {
  return (n as Node | null)?.range?.[0];
}

/** An empty value (`near:` with nothing after it) has no text of its own; its key is what to point at. */
function isEmptyValue(n: unknown): boolean {
  return isScalar(n) && n.value === null && (n.range ? n.range[0] === n.range[1] : true);
}

/**
 * A number at `path` as written in the YAML source (`99999999999999999999`, `0x1F`, `1e400`), when it is a number
 * scalar there: the parsed value loses digits past a double's precision (shown as 100000000000000000000), and is
 * not what the person wrote. Undefined for anything else (an alias, a string, no node).
 */
export function numberSource(src: SourceDoc, path: Path): string | undefined {
  const node = find(src, path).node;
  if (!isScalar(node) || typeof node.value !== 'number') return undefined;
  const text = (node as { source?: unknown }).source;
  return typeof text === 'string' && text !== '' ? text : undefined;
}

/** Where the value at `path` starts (a bad value); falls back to its key, then to the deepest existing node. */
export function valueWhere(src: SourceDoc, path: Path): Where {
  const f = find(src, path);
  const node = isEmptyValue(f.node) ? undefined : f.node;
  const at = startOf(node) ?? startOf(f.pair?.key) ?? startOf(f.deepestPair?.key) ?? startOf(f.deepest);
  return at === undefined ? docWhere(src) : whereAt(src, at);
}

/** Where the key of the map entry at `path` is (an unknown key); falls back to the value. */
export function keyWhere(src: SourceDoc, path: Path): Where {
  const f = find(src, path);
  const at = keyOffset(f.pair?.key, src.text);
  return at === undefined ? valueWhere(src, path) : whereAt(src, at);
}

/**
 * Where an object that lacks a required key is shown: at its own key when it
 * is a map value (`spec:`), else at its start (a list item, the document).
 */
export function ownerWhere(src: SourceDoc, path: Path): Where {
  if (path.length === 0) return docWhere(src);
  return keyWhere(src, path);
}

/** Every node of the document by dotted path (`spec.count`, `spec.hardware.0`), at the start of its value. */
export function collectPointers(src: SourceDoc): Map<string, Where> {
  const out = new Map<string, Where>();
  const walk = (node: unknown, prefix: string, keyNode?: unknown): void => {
    const at = (isEmptyValue(node) ? undefined : startOf(node)) ?? startOf(keyNode);
    if (at !== undefined) out.set(prefix, whereAt(src, at));
    if (isMap(node)) {
      for (const p of node.items) {
        if (!isPair(p)) continue;
        const k = String(keyOf(p));
        walk(p.value, prefix ? `${prefix}.${k}` : k, p.key);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => walk(item, prefix ? `${prefix}.${i}` : String(i)));
    }
  };
  walk(src.doc.contents, '');
  return out;
}
