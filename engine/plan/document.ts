// Reading a saved plan document: `fleet apply PLANFILE` checks the file
// against specs/schema/plan.schema.json (ajv, every error at once) before it
// trusts a single field, and names each problem at its line and column in the
// file (and the member's address when it is inside a change).
//
// The file is parsed twice only when it is wrong: JSON.parse for the common
// case, and the yaml package (JSON is YAML) to find positions of the nodes
// the errors point at.
import type { ErrorObject } from 'ajv';
import { Plan } from '../../specs/validators/plan.js';
import { LineCounter, isMap, isNode, isScalar, parseDocument } from 'yaml';
import { clip, clipPath, diag, quote, type Diagnostic, type Where } from '../diags/index.ts';
import { PLAN_FORMAT_VERSION, type PlanDocument } from '../model/index.ts';


/** `/changes/3/steps/0` -> ['changes', 3, 'steps', 0] (RFC 6901 unescaping). */
export function pointerSegments(pointer: string): (string | number)[] {
  if (!pointer) return [];
  return pointer
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9]\d*)$/.test(s) ? Number(s) : s));
}

/** A function from a path in the document to its line and column in `text`; a map entry is located at its key. */
function locator(text: string, file: string): (path: readonly (string | number)[]) => Where {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false });
  const at = (offset: number): Where => {
    const p = lc.linePos(offset);
    return { file, line: p.line, col: p.col };
  };
  return (path) => {
    for (let n = path.length; n >= 0; n--) {
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
}

/** What an ajv error says, in words. */
function message(e: ErrorObject): { path: (string | number)[]; text: string; at?: (string | number)[] } {
  const path = pointerSegments(e.instancePath);
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String((e.params as { additionalProperty: string }).additionalProperty);
      return { path, text: `has a key ${quote(key)} that a plan document does not have`, at: [...path, key] };
    }
    case 'required':
      return { path, text: `lacks ${quote(String((e.params as { missingProperty: string }).missingProperty))}` };
    case 'enum':
      return { path, text: `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}` };
    case 'const':
      return { path, text: `must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}` };
    default:
      return { path, text: e.message ?? 'is invalid' };
  }
}

/** `changes[3].steps[0].operation`, for people. */
function showPath(path: readonly (string | number)[]): string {
  if (path.length === 0) return 'the document';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? clip(p) : `.${clip(p)}`)).join('');
}

/**
 * The diagnostics of a plan document read from `file` (`text` is its
 * content, `doc` what JSON.parse made of it): none when it is a plan
 * document of formatVersion "2" as specs/schema/plan.schema.json defines it.
 * Any other formatVersion is apply.plan-format, at the line of its
 * `formatVersion` key: a "1" plan (which listed every unchanged member as a
 * noop change) is refused, not read: plan again with this fleet. Any other
 * problem is apply.plan-file, located at the offending node.
 */
export function checkPlanDocument(doc: unknown, text: string, path: string): Diagnostic[] {
  // The path as a flag gave it, for the location; `file` for the sentences.
  const file = clipPath(path);
  if (!doc || typeof doc !== 'object' || Array.isArray(doc) || !('formatVersion' in doc)) {
    // What `fleet plan --format json` prints (a common CI slip: its stdout saved and applied) wraps an unsealed plan.
    const inner = (doc as { plan?: unknown } | null)?.plan;
    if (inner && typeof inner === 'object' && 'formatVersion' in inner && 'diagnostics' in (doc as object)) {
      return [
        diag(
          'apply.plan-file',
          `${file} is the output of \`fleet plan --format json\` (the plan and its diagnostics, not sealed for apply), not a plan file; write one with \`fleet plan --out ${file}\` (with --format json too, stdout then names the file and the summary).`,
          { file: path },
        ),
      ];
    }
    return [diag('apply.plan-file', `${file} is not a plan document (no formatVersion); write one with \`fleet plan --out ${file}\`.`, { file: path })];
  }
  const version = (doc as { formatVersion: unknown }).formatVersion;
  if (version !== PLAN_FORMAT_VERSION) {
    const where = locator(text, path)(['formatVersion']);
    const why =
      version === '1'
        ? 'a plan made by an earlier fleet, which listed every unchanged member; this fleet reads only "2", which summarises them per fleet'
        : `this fleet reads only ${JSON.stringify(PLAN_FORMAT_VERSION)}`;
    return [diag('apply.plan-format', `${file} has formatVersion ${typeof version === 'string' ? quote(version) : clip(JSON.stringify(version) ?? String(version))}: ${why}. Make the plan again with \`fleet plan --out\` and apply the new file.`, where)];
  }
  // specs/schema/plan.schema.json, compiled by `npm run gen:types` (specs/gen-validators.ts).
  const validate = Plan;
  if (validate(doc)) return [];
  const where = locator(text, path);
  const changes = (doc as { changes?: unknown }).changes;
  const seen = new Set<string>();
  const out: Diagnostic[] = [];
  for (const e of validate.errors ?? []) {
    const { path, text: what, at } = message(e);
    const key = `${path.join('/')}\0${what}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const w: Where = { ...where(at ?? path) };
    // Inside a change: name the member too, when the change says which it is.
    if (path[0] === 'changes' && typeof path[1] === 'number' && Array.isArray(changes)) {
      const address = (changes[path[1]] as { address?: unknown } | undefined)?.address;
      if (typeof address === 'string' && address !== '') w.address = address;
    }
    out.push(diag('apply.plan-file', `${showPath(path)} ${what} (specs/schema/plan.schema.json); it was not written by \`fleet plan --out\`, or was edited since.`, w));
  }
  return out;
}

/**
 * The offset of the first JSON syntax error in `text` (`text.length` when it
 * ends too early), or undefined when it is JSON. Only for diagnostics, after
 * JSON.parse has failed: V8's messages give no position for an unexpected
 * token (`Unexpected token ']', "[1,2,]" is not valid JSON`) and quote the
 * text instead. Iterative (a file of a million `[` is no stack overflow).
 */
const isDigit = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9';

export function jsonSyntaxErrorAt(text: string): number | undefined {
  const n = text.length;
  let i = 0;
  const open: string[] = [];
  const ws = () => {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const str = (): boolean => {
    if (text[i] !== '"') return false;
    for (i++; i < n; ) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return true;
      }
      if (c < 0x20) return false;
      if (c !== 0x5c) {
        i++;
        continue;
      }
      // An escape: at the character after the backslash, or the first of \u's four that is not hex.
      i++;
      if (text[i] === 'u') {
        i++;
        for (let k = 0; k < 4; k++, i++) if (!/^[0-9a-fA-F]$/.test(text[i] ?? '')) return false;
      } else if (i < n && '"\\/bfnrt'.includes(text[i])) i++;
      else return false;
    }
    return false;
  };
  const key = (): boolean => {
    ws();
    if (!str()) return false;
    ws();
    if (text[i] !== ':') return false;
    i++;
    return true;
  };
  for (;;) {
    // A value.
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      i++;
      ws();
      if (text[i] === (c === '{' ? '}' : ']')) i++;
      else {
        open.push(c);
        if (c === '{' && !key()) return i;
        continue;
      }
    } else if (c === '"') {
      if (!str()) return i;
    } else if (c === '-' || isDigit(c)) {
      // -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, failing at the first character that does not fit.
      if (text[i] === '-') i++;
      if (text[i] === '0') i++;
      else if (isDigit(text[i])) while (isDigit(text[i])) i++;
      else return i;
      if (text[i] === '.') {
        i++;
        if (!isDigit(text[i])) return i;
        while (isDigit(text[i])) i++;
      }
      if (text[i] === 'e' || text[i] === 'E') {
        i++;
        if (text[i] === '+' || text[i] === '-') i++;
        if (!isDigit(text[i])) return i;
        while (isDigit(text[i])) i++;
      }
    } else {
      const word = c === 't' ? 'true' : c === 'f' ? 'false' : c === 'n' ? 'null' : undefined;
      if (!word) return i;
      for (const w of word) {
        if (text[i] !== w) return i;
        i++;
      }
    }
    // After a value: close what it ends, or go on to the next one.
    for (;;) {
      ws();
      const top = open[open.length - 1];
      if (top === undefined) return i < n ? i : undefined;
      if (text[i] === ',') {
        i++;
        if (top === '{' && !key()) return i;
        break;
      }
      if (text[i] !== (top === '{' ? '}' : ']')) return i;
      i++;
      open.pop();
    }
  }
}

/** How many own keys the objects of a parsed JSON value hold, all depths (no recursion). */
function keyCount(value: unknown): number {
  let n = 0;
  const todo: unknown[] = [value];
  while (todo.length > 0) {
    const v = todo.pop();
    if (v === null || typeof v !== 'object') continue;
    if (Array.isArray(v)) {
      for (const x of v) todo.push(x);
      continue;
    }
    for (const k of Object.keys(v)) {
      n++;
      todo.push((v as Record<string, unknown>)[k]);
    }
  }
  return n;
}

/**
 * The offsets of a key given twice in one object of `text` (valid JSON, as
 * JSON.parse made `doc` of it) and of its first occurrence, or undefined.
 * JSON.parse keeps the last and says nothing: a plan file with `"action":
 * "create"` written before the sealed `"action": "delete"` showed a reader
 * (and any tool that keeps the first) one plan and applied another, and its
 * seal, over the parsed content, still verified. Most files have none, which
 * the quick count shows: every `":` not escaped ends a key (a quote inside a
 * string is escaped), so when no key has space before its colon, as
 * `fleet plan --out` writes them, the count of `":` is the number of keys
 * written; JSON.parse kept one per name. Otherwise the text is scanned.
 */
export function duplicateKeyAt(text: string, doc: unknown): { at: number; first: number; key: string } | undefined {
  if (!/"[ \t\r\n]+:/.test(text)) {
    let written = 0;
    for (let at = text.indexOf('":'); at >= 0; at = text.indexOf('":', at + 2)) {
      let slashes = 0;
      while (text.charCodeAt(at - 1 - slashes) === 0x5c) slashes++;
      if (slashes % 2 === 0) written++;
    }
    if (written === keyCount(doc)) return undefined;
  }
  // Each open object's keys and where each was first written; null for an open array.
  const open: (Map<string, number> | null)[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c !== 0x22) {
      if (c === 0x7b) open.push(new Map());
      else if (c === 0x5b) open.push(null);
      else if (c === 0x7d || c === 0x5d) open.pop();
      i++;
      continue;
    }
    const start = i;
    let escaped = false;
    i++;
    for (;;) {
      const d = text.charCodeAt(i);
      if (d === 0x5c) {
        escaped = true;
        i += 2;
      } else if (d === 0x22 || Number.isNaN(d)) break;
      else i++;
    }
    i++;
    const end = i;
    for (let w = text.charCodeAt(i); w === 0x20 || w === 0x09 || w === 0x0a || w === 0x0d; w = text.charCodeAt(++i));
    const keys = open[open.length - 1];
    if (text[i] !== ':' || !keys) continue;
    const key = escaped ? (JSON.parse(text.slice(start, end)) as string) : text.slice(start + 1, end - 1);
    const first = keys.get(key);
    if (first !== undefined) return { at: start, first, key };
    keys.set(key, start);
  }
  return undefined;
}

/**
 * JSON.parse of a plan file's text, or the diagnostic of why it is not
 * JSON, at the line and column of the first error. A leading byte order mark
 * is ignored (RFC 8259 allows it; some editors add one on save): the seal
 * covers the parsed content, not the bytes.
 */
export function parsePlanJson(text: string, path: string): { doc: unknown; text: string } | { diagnostic: Diagnostic } {
  const file = clipPath(path);
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const position = (offset: number): { line: number; col: number } => {
    let line = 1;
    let lineStart = 0;
    for (let nl = body.indexOf('\n'); nl >= 0 && nl < offset; nl = body.indexOf('\n', nl + 1)) {
      line++;
      lineStart = nl + 1;
    }
    return { line, col: offset - lineStart + 1 };
  };
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch (err) {
    const raw = err instanceof Error ? err.message : String(err);
    // V8's words without the position (given as line and column instead) or the quoted text.
    const why = raw.replace(/, (?:\.\.\.)?".*$/s, '').replace(/ in JSON at position \d+.*$/s, '');
    const { line, col } = position(jsonSyntaxErrorAt(body) ?? body.length);
    const empty = body.trim() === '';
    return {
      diagnostic: diag(
        'apply.plan-file',
        empty
          ? `${file} is empty; write a plan with \`fleet plan --out ${file}\`.`
          : `${file} is not JSON: ${clip(why)} at line ${line}, column ${col}. It was not written by \`fleet plan --out\` as it is (cut short, or edited since); plan again.`,
        { file: path, line, col },
      ),
    };
  }
  const twice = duplicateKeyAt(body, doc);
  if (twice) {
    const first = position(twice.first);
    return {
      diagnostic: diag(
        'apply.plan-tampered',
        `${file} gives key ${quote(twice.key)} twice in one object (first at line ${first.line}, column ${first.col}): \`fleet plan --out\` writes each key once, so the file was edited after it was saved, and a reader could take the value applied for the other one. Plan again; never edit a saved plan.`,
        { file: path, ...position(twice.at) },
      ),
    };
  }
  return { doc, text: body };
}

/** Narrows after checkPlanDocument returned no diagnostic. */
export function asPlanDocument(doc: unknown): PlanDocument {
  return doc as PlanDocument;
}
