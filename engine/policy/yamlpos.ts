// YAML parsing that keeps positions, so diagnostics can name file:line:col of
// the offending node (DESIGN.md: every error is located).
import { LineCounter, isMap, isNode, isScalar, parseDocument, type Document } from 'yaml';
import { type Where } from '../diags/index.ts';
import { UNCHECKED_KEYS, aliasBomb, checkDuplicateKeys, duplicateKeyDetail, refusedWarnings } from '../diags/yaml.ts';

export interface PositionedDoc {
  file: string;
  doc: Document;
  /** Plain JS value of the document. */
  value: unknown;
  /** Syntax errors, each with its position. */
  errors: { message: string; where: Where }[];
  /** Where the node at `path` is; falls back to the nearest existing parent, then to the file start. */
  where(path: readonly (string | number)[]): Where;
}

/** How many aliased values a pack may expand to (as for stack and fleet files, engine/spec/yaml.ts). */
const MAX_ALIAS_COUNT = 1000;

export function parseYaml(text: string, file: string): PositionedDoc {
  const lc = new LineCounter();
  // resolveKnownTags false: YAML 1.1's !!binary, !!timestamp, !!set are unknown tags too, refused with the rest.
  // Keys given twice: checkDuplicateKeys (linear; the parser's own check is quadratic).
  const doc = parseDocument(text, { lineCounter: lc, keepSourceTokens: false, prettyErrors: false, resolveKnownTags: false, ...UNCHECKED_KEYS });
  checkDuplicateKeys(doc, text);
  const at = (offset: number): Where => {
    const p = lc.linePos(offset);
    return { file, line: p.line, col: p.col };
  };
  // A key given twice reads as it does in a stack or fleet spec (engine/spec/yaml.ts).
  const errors = doc.errors.map((e) => ({
    message: (e.code === 'DUPLICATE_KEY' ? duplicateKeyDetail(doc, e.pos[0], lc, text) : undefined) ?? e.message.split('\n')[0],
    where: at(e.pos[0]),
  }));
  if (!errors.length) errors.push(...refusedWarnings(doc, text).map((r) => ({ message: r.detail, where: at(r.pos) })));
  let value: unknown;
  if (!errors.length) {
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      const bomb = aliasBomb(doc, msg, MAX_ALIAS_COUNT);
      errors.push(bomb ? { message: bomb.detail, where: at(bomb.pos) } : { message: msg.split('\n')[0], where: at(doc.range[0]) });
    }
  }
  const where = (path: readonly (string | number)[]): Where => {
    for (let n = path.length; n >= 0; n--) {
      // A map entry is located at its key, which is where people look.
      const last = path[n - 1];
      if (n > 0 && typeof last === 'string') {
        const parent = n === 1 ? doc.contents : doc.getIn(path.slice(0, n - 1), true);
        if (isMap(parent)) {
          const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === last);
          if (pair && isNode(pair.key) && pair.key.range) return at(pair.key.range[0]);
        }
      }
      const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) return at(node.range[0]);
    }
    return { file, line: 1, col: 1 };
  };
  return { file, doc, value: errors.length ? undefined : value, errors, where };
}

/** Turns an ajv instancePath (`/spec/lifecycle/states/3`) into a path array. */
export function pointerPath(pointer: string): (string | number)[] {
  if (!pointer) return [];
  return pointer
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}
