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
import { diag, type Diagnostic, type Where } from '../diags/index.ts';
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
      return { path, text: `has a key "${key}" that a plan document does not have`, at: [...path, key] };
    }
    case 'required':
      return { path, text: `lacks "${String((e.params as { missingProperty: string }).missingProperty)}"` };
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
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
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
export function checkPlanDocument(doc: unknown, text: string, file: string): Diagnostic[] {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc) || !('formatVersion' in doc)) {
    return [diag('apply.plan-file', `${file} is not a plan document (no formatVersion); write one with \`fleet plan --out ${file}\`.`, { file })];
  }
  const version = (doc as { formatVersion: unknown }).formatVersion;
  if (version !== PLAN_FORMAT_VERSION) {
    const where = locator(text, file)(['formatVersion']);
    const why =
      version === '1'
        ? 'a plan made by an earlier fleet, which listed every unchanged member; this fleet reads only "2", which summarises them per fleet'
        : `this fleet reads only ${JSON.stringify(PLAN_FORMAT_VERSION)}`;
    return [diag('apply.plan-format', `${file} has formatVersion ${JSON.stringify(version)}: ${why}. Make the plan again with \`fleet plan --out\` and apply the new file.`, where)];
  }
  // specs/schema/plan.schema.json, compiled by `npm run gen:types` (specs/gen-validators.ts).
  const validate = Plan;
  if (validate(doc)) return [];
  const where = locator(text, file);
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

/** Narrows after checkPlanDocument returned no diagnostic. */
export function asPlanDocument(doc: unknown): PlanDocument {
  return doc as PlanDocument;
}
