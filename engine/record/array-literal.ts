// PostgreSQL array literals made here rather than by the pg driver: its
// conversion (utils.js arrayString / escapeElement) runs two
// regular-expression replaces per element, and the record's batch statements
// (the authority's insertVms / transitionVms, the CLI's journal INSERTs) send
// thousands of elements a second (issue 20 point 6). The text is the same as
// pg's: every element double-quoted, `"` and `\` escaped, null as NULL; sent
// as a parameter and read by PostgreSQL's array input, as pg's literal was.

const ESCAPE = /["\\]/;
const ESCAPES = /["\\]/g;

/** `s` as an element of a PostgreSQL array literal: double-quoted, `"` and `\` escaped; NULL for null or undefined. */
export function arrayElement(s: string | null | undefined): string {
  if (s === null || s === undefined) return 'NULL';
  return ESCAPE.test(s) ? `"${s.replace(ESCAPES, '\\$&')}"` : `"${s}"`;
}

/**
 * A flat array of strings, numbers and booleans (nulls among them) as the
 * PostgreSQL array literal pg would make of it, or undefined for any other
 * array (nested, Buffer, Date, objects: pg converts those).
 */
export function arrayLiteral(a: readonly unknown[]): string | undefined {
  let out = '{';
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (i > 0) out += ',';
    if (v === null || v === undefined || typeof v === 'string') out += arrayElement(v);
    else if (typeof v === 'number' || typeof v === 'boolean') out += `"${String(v)}"`;
    else return undefined;
  }
  return `${out}}`;
}
