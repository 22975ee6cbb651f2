// Words for YAML parser errors that the parser itself leaves vague. Shared by
// every reader of YAML (engine/spec for stacks and fleet specs, engine/policy
// for policy.yaml and policy test cases), so the same mistake reads the same
// in every file.
import { quote } from './quote.ts';
import { YAMLParseError, visit, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

/**
 * The parser options every reader of YAML gives: `uniqueKeys: false`, the
 * check being duplicateKeyErrors' instead. The yaml package's own check
 * compares each key with every key before it in its mapping: quadratic in the
 * mapping's size, and a stack with 5,000 owners in owner-quota's `limits`
 * took ~1 s per parse for it (12.5 million comparisons).
 */
export const UNCHECKED_KEYS = { uniqueKeys: false } as const;

/**
 * Where a mapping's key is shown (a key given twice, an unknown key): its
 * first character. An empty key (`? ` with nothing after it, or `: 1` with
 * nothing before the colon) has none: the parser places it after the `?`
 * and its spaces (past the end of a `? ` line), or, for the second of two
 * `: 1` lines, at the start of its line, before the indentation. It is shown
 * at the first character of its entry instead: its `?`, else its `:`. `text`
 * is the document's source; without it, the parser's offset.
 */
export function keyOffset(key: unknown, text: string | undefined): number | undefined {
  const at = (key as Node | null | undefined)?.range?.[0];
  if (at === undefined || text === undefined || !isScalar(key) || key.value !== null || key.range![1] !== at) return at;
  let before = at;
  while (before > 0 && (text[before - 1] === ' ' || text[before - 1] === '\t')) before--;
  if (text[before - 1] === '?') return before - 1;
  let after = at;
  while (after < text.length && (text[after] === ' ' || text[after] === '\t')) after++;
  return text[after] === ':' ? after : at;
}

/**
 * A scalar key as the document's plain data names it (toJS makes every key a
 * property name): an empty key, `~` and `null` are all "", `1` and `1.0` are
 * "1", as the string "1" is. Two keys of one mapping with the same name give
 * one property, the later value silently taking the place of the earlier:
 * a key given twice, though the yaml package, which compares the scalars'
 * values (null is not "", 1 is not "1"), let `"": a` and `? : b` through.
 * NaN (`.nan`) is kept as it is: not === to itself, never a duplicate, as in
 * the yaml package.
 */
function propertyName(v: unknown): unknown {
  if (v === null) return '';
  if (typeof v === 'number') return Number.isNaN(v) ? v : String(v);
  return typeof v === 'boolean' ? String(v) : v;
}

/**
 * The yaml package's duplicate-key check (a scalar key named as an earlier
 * key of the same mapping: DUPLICATE_KEY, "Map keys must be unique", at the
 * second key; named as the plain data names it, propertyName) done in one
 * pass with a set per mapping, its errors merged into `doc.errors` in order
 * of position. For documents parsed with UNCHECKED_KEYS. `text` is the
 * document's source: with it, an empty key given twice is told at its
 * entry's `?` or `:` (keyOffset).
 */
export function checkDuplicateKeys(doc: Document, text?: string): void {
  const found: YAMLParseError[] = [];
  // Every mapping, keys' and values' included (aliases not followed), without recursion.
  const todo: unknown[] = [doc.contents];
  while (todo.length > 0) {
    const node = todo.pop();
    if (isSeq(node)) {
      for (const item of node.items as unknown[]) todo.push(item);
      continue;
    }
    if (!isMap(node)) continue;
    const seen = new Set<unknown>();
    for (const pair of node.items) {
      todo.push(pair.key, pair.value);
      const k = pair.key;
      if (!isScalar(k)) continue;
      const v = propertyName(k.value);
      // NaN (`.nan`) is not === to itself: never a duplicate, as in the yaml package.
      if (typeof v === 'number' && Number.isNaN(v)) continue;
      if (seen.has(v)) {
        const at = keyOffset(k, text) ?? node.range?.[0] ?? 0;
        found.push(new YAMLParseError([at, at + 1], 'DUPLICATE_KEY', 'Map keys must be unique'));
      } else seen.add(v);
    }
  }
  if (found.length === 0) return;
  const all = [...doc.errors, ...found].map((e, i) => [e, i] as const);
  all.sort(([a, i], [b, j]) => a.pos[0] - b.pos[0] || i - j);
  doc.errors.splice(0, doc.errors.length, ...all.map(([e]) => e));
}

/**
 * A key given twice in one mapping: the parser says only "Map keys must be
 * unique" at the second; say which key, and where the first one is. `pos` is
 * the error's offset (the second key); undefined when no such key is found.
 */
export function duplicateKeyDetail(doc: Document, pos: number, lines: LineCounter, text?: string): string | undefined {
  let details = DETAILS.get(doc);
  if (!details) {
    details = duplicateKeyDetails(doc, lines, text);
    DETAILS.set(doc, details);
  }
  return details.get(pos);
}

/**
 * The words of every key given twice in `doc`, by the offset of its second
 * (or later) copy: found in one walk of the document for all its keys given
 * twice (a walk per key given twice took 4 s for 5,000 of them).
 */
const DETAILS = new WeakMap<Document, Map<number, string>>();
function duplicateKeyDetails(doc: Document, lines: LineCounter, text: string | undefined): Map<number, string> {
  const out = new Map<number, string>();
  visit(doc, {
    Map(_key, map) {
      const first = new Map<unknown, Node>();
      for (const pair of map.items) {
        const k = pair.key;
        if (!isScalar(k)) continue;
        const name = propertyName(k.value);
        const seen = first.get(name);
        const pos = keyOffset(k, text);
        if (seen && pos !== undefined && !out.has(pos)) {
          const at = lines.linePos(keyOffset(seen, text) ?? pos);
          const written = isScalar(seen) && seen.value !== k.value ? ', written another way: both name the same key' : '';
          out.set(pos, `${name === '' ? 'An empty key ("", ~, null, or none before the colon)' : `Key ${quote(String(name))}`} is given twice in the same mapping (first at line ${at.line}, column ${at.col}${written}); keep one.`);
        }
        if (!seen) first.set(name, k);
      }
      return undefined;
    },
  });
  return out;
}

/** The tags of YAML 1.2's core schema: the only ones a fleet, stack or policy file may give (`!!str 5` is the text "5"). */
const CORE_TAGS = ['str', 'int', 'float', 'bool', 'null', 'seq', 'map'];
const YAML_TAG = 'tag:yaml.org,2002:';
/** How a tag is written: `!!weird` for YAML's own, else as resolved (`!custom`, `tag:example.com:x`). */
const tagShown = (tag: string): string => (tag.startsWith(YAML_TAG) ? `!!${tag.slice(YAML_TAG.length)}` : tag);

/** A problem the yaml package reports as a warning (it reads on), which dmzfleet refuses: where, and what to do. */
export interface YamlRefusal {
  /** Offset in the text. */
  pos: number;
  detail: string;
}

/**
 * What the parser only warned about and read on: an unknown tag (`image:
 * !custom rhel-9`, `!!weird`, and YAML 1.1's `!!binary`, `!!timestamp`,
 * `!!set` when parsed with resolveKnownTags: false) was dropped and the value
 * read as if untagged, and a `%YAML 9.9` directive was read as YAML 1.2, so
 * such a file validated. A tag says how to read a value, and one dmzfleet
 * does not know may mean something it cannot honour: refused, at the tag.
 * `%YAML 1.1` is refused too: it makes `no` false and `010` octal, so a file
 * would not mean what the same text means everywhere else. Flow-indentation
 * and ambiguous-anchor warnings are style, and stay accepted.
 */
export function refusedWarnings(doc: Document, text: string): YamlRefusal[] {
  const out: YamlRefusal[] = [];
  for (const w of doc.warnings) {
    if (w.code === 'TAG_RESOLVE_FAILED' || w.code === 'BAD_COLLECTION_TYPE') {
      const tag = /^Unresolved tag: (.*)$/.exec(w.message)?.[1] ?? /^(\S+) used for/.exec(w.message)?.[1];
      const shown = tag === undefined ? 'This tag' : `Tag ${quote(tagShown(tag))}`;
      const core = tag !== undefined && tag.startsWith(YAML_TAG) && CORE_TAGS.includes(tag.slice(YAML_TAG.length));
      out.push({
        pos: w.pos[0],
        detail: core
          ? `${shown} does not fit the value it is given (a !!float needs a number with a point, a !!map a mapping). Remove the tag: a value is read as what it looks like (put it in quotes for text).`
          : `${shown} is not a tag dmzfleet reads: the value would be read as if it had none. Fleet, stack and policy files hold plain values; only YAML's core tags (${CORE_TAGS.map((t) => `!!${t}`).join(', ')}) may be given. Remove the tag (put the value in quotes if it is text).`,
      });
    } else if (w.code === 'BAD_DIRECTIVE') {
      out.push({ pos: w.pos[0], detail: `${clipText(w.message)}: dmzfleet reads YAML 1.2 and knows no other directive than %YAML 1.2 and %TAG. Remove the directive line.` });
    }
  }
  if (doc.directives?.yaml.explicit && doc.directives.yaml.version === '1.1') {
    const at = text.lastIndexOf('%YAML', doc.range?.[0] ?? text.length);
    out.push({
      pos: at >= 0 ? at : (doc.range?.[0] ?? 0),
      detail: '%YAML 1.1 would read this document by YAML 1.1 (`no` and `off` as false, `010` as octal 8), not as every other dmzfleet file is read. Remove the directive line: dmzfleet reads YAML 1.2.',
    });
  }
  return out;
}

const clipText = (s: string): string => quote(s).slice(1, -1);

/**
 * What the yaml package's "Excessive alias count indicates a resource
 * exhaustion attack" means, for a person: which alias multiplies, why that is
 * refused, what to write instead. `limit` is the maxAliasCount given to
 * toJS. Undefined when `message` is not that error.
 */
export function aliasBomb(doc: Document, message: string, limit: number): YamlRefusal | undefined {
  if (!/Excessive alias count/.test(message)) return undefined;
  // The first alias of an anchor that itself holds aliases: where the copies multiply.
  let first: number | undefined;
  let nested: { pos: number; name: string } | undefined;
  visit(doc, {
    Alias(_key, alias) {
      first ??= alias.range?.[0];
      const target = alias.resolve(doc);
      let holds = false;
      if (target && (isMap(target) || isSeq(target))) {
        visit(target, {
          Alias() {
            holds = true;
            return visit.BREAK;
          },
        });
      }
      if (holds && alias.range) {
        nested = { pos: alias.range[0], name: alias.source };
        return visit.BREAK;
      }
      return undefined;
    },
  });
  const at = nested?.pos ?? first ?? doc.range?.[0] ?? 0;
  const which = nested ? `*${clipText(nested.name)} here is an alias of a list or mapping that holds aliases itself` : 'The aliases of this document refer to one another';
  return {
    pos: at,
    detail: `${which}: each copy copies the aliases inside it, and the document would expand to more than ${limit} aliased values (a "billion laughs"), which is refused so reading a file cannot exhaust memory. Write the values out, or alias only values that hold no aliases.`,
  };
}
