// Words for YAML parser errors that the parser itself leaves vague. Shared by
// every reader of YAML (engine/spec for stacks and fleet specs, engine/policy
// for policy.yaml and policy test cases), so the same mistake reads the same
// in every file.
import { quote } from './quote.ts';
import { visit, isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

/**
 * The keys given twice in one mapping of `doc`, each at the second (and
 * later) copy, in order of position, saying which key and where its first
 * copy is (the parser said only "Map keys must be unique"). Parse with
 * `uniqueKeys: false` and call this instead: the yaml package's own check
 * compares each key with every earlier key of its mapping, so a fleet with
 * 20,000 labels took some 13 s to parse (0.3 s without); this is one pass,
 * a Map of each mapping's scalar key values. Keys are equal as the package
 * has them equal: scalars of the same value (`a` and `"a"`, `1` and `1.0`;
 * never NaN), a list or mapping key equal to no other key. Aliases are not
 * followed (the mapping an alias names is checked where it is written).
 */
export function duplicateKeys(doc: Document, lines: LineCounter): YamlRefusal[] {
  const out: YamlRefusal[] = [];
  // Without recursion: a document may nest as deep as the parser reaches.
  const todo: unknown[] = [doc.contents];
  while (todo.length > 0) {
    const node = todo.pop();
    if (isSeq(node)) {
      for (const item of node.items) todo.push(item);
      continue;
    }
    if (isPair(node)) {
      todo.push(node.key, node.value);
      continue;
    }
    if (!isMap(node)) continue;
    const first = new Map<unknown, Node>();
    for (const pair of node.items) {
      todo.push(pair.key, pair.value);
      const k = pair.key;
      if (!isScalar(k) || (typeof k.value === 'number' && Number.isNaN(k.value))) continue;
      const seen = first.get(k.value);
      if (!seen) {
        first.set(k.value, k);
        continue;
      }
      const pos = k.range?.[0] ?? node.range?.[0] ?? 0;
      const at = lines.linePos(seen.range?.[0] ?? pos);
      out.push({ pos, detail: `Key ${quote(String(k.value))} is given twice in the same mapping (first at line ${at.line}, column ${at.col}); keep one.` });
    }
  }
  return out.sort((a, b) => a.pos - b.pos);
}

/**
 * The parser's errors of `doc` (parsed with `uniqueKeys: false`) and its keys
 * given twice (duplicateKeys), as one list in the order the parser reports
 * them with `uniqueKeys: true`: each key given twice before the first error
 * after it. `message` is the parser's, or the words of duplicateKeys.
 */
export function yamlErrors(doc: Document, lines: LineCounter): { code: string; pos: number; message: string }[] {
  const dups = duplicateKeys(doc, lines);
  const out: { code: string; pos: number; message: string }[] = [];
  let d = 0;
  for (const e of doc.errors) {
    while (d < dups.length && dups[d].pos < e.pos[0]) out.push({ code: 'DUPLICATE_KEY', pos: dups[d].pos, message: dups[d++].detail });
    out.push({ code: e.code, pos: e.pos[0], message: e.message });
  }
  for (; d < dups.length; d++) out.push({ code: 'DUPLICATE_KEY', pos: dups[d].pos, message: dups[d].detail });
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
