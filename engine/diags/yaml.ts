// Words for YAML parser errors that the parser itself leaves vague. Shared by
// every reader of YAML (engine/spec for stacks and fleet specs, engine/policy
// for policy.yaml and policy test cases), so the same mistake reads the same
// in every file.
import { quote } from './quote.ts';
import { visit, isScalar, type Document, type LineCounter, type Node } from 'yaml';

/**
 * A key given twice in one mapping: the parser says only "Map keys must be
 * unique" at the second; say which key, and where the first one is. `pos` is
 * the error's offset (the second key); undefined when no such key is found.
 */
export function duplicateKeyDetail(doc: Document, pos: number, lines: LineCounter): string | undefined {
  let detail: string | undefined;
  visit(doc, {
    Map(_key, map) {
      const first = new Map<unknown, Node>();
      for (const pair of map.items) {
        const k = pair.key;
        if (!isScalar(k)) continue;
        const seen = first.get(k.value);
        if (seen && k.range?.[0] === pos) {
          const at = lines.linePos(seen.range?.[0] ?? pos);
          detail = `Key ${quote(String(k.value))} is given twice in the same mapping (first at line ${at.line}, column ${at.col}); keep one.`;
          return visit.BREAK;
        }
        if (!seen) first.set(k.value, k);
      }
      return undefined;
    },
  });
  return detail;
}
