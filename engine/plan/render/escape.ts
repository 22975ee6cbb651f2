// How text from the plan is shown. A plan carries strings that people other
// than the reviewer wrote: a pull request's specs (owners, data centers in a
// stack, state names of a policy pack), a pack's custom rules (any message or
// hint), record values. The renderers show them as text and nothing else:
// never as markup of the pull-request comment, never as a terminal's control
// sequence. Every such string goes through one of these functions; the rule
// is written down in docs/plan-format.md ("Text from the plan").

/**
 * Characters a reader cannot see or that act on the display: C0 and C1
 * controls (ESC starts an ANSI sequence that can clear a CI log or a
 * terminal; a newline starts a forged line), DEL, and Unicode format
 * characters that reorder or hide text (bidi embeddings, overrides and
 * isolates, zero-width characters, line and paragraph separators, the soft
 * hyphen, the byte order mark). Shown as escapes instead. (The zero-width
 * joiner and variation selectors are kept: emoji are made of them.)
 */
// eslint-disable-next-line no-control-regex, no-misleading-character-class -- control and invisible characters are what it finds
const HIDDEN = /[\u0000-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200e\u200f\u2028-\u202e\u2060-\u206f\u3164\ufeff\uffa0\ufff0-\ufffb]/g;
const SHORT: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** `a\u202Eb` for a string holding U+202E; `\n` for a newline. Everything else is kept. */
export function visible(s: string): string {
  return s.replace(HIDDEN, (c) => SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`);
}

/** Longest value shown in a pull-request comment, in characters; longer ones are cut with a count. */
export const MAX_VALUE = 500;

function clip(s: string): string {
  if (s.length <= MAX_VALUE) return s;
  // Cut at a code point boundary: never half a surrogate pair.
  let end = MAX_VALUE;
  const c = s.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end -= 1;
  return `${s.slice(0, end)}… (${s.length - end} more characters)`;
}

/**
 * Markdown that GitHub would act on, made literal: `&` and `<` become
 * `&amp;` and `&lt;` (no HTML, comment or entity: `&#8238;` would be a bidi
 * override), `\`, `` ` ``, `*`, `_`, `~`, `[`, `]`, `|` and `$` are
 * backslash-escaped (no code span, emphasis, link or image that fetches a
 * URL, table cell or math), and a zero-width space follows `@` (no mention
 * pings a user or team) and a `#` before a digit (no `#123` link to an
 * issue, which GitHub would also record on that issue).
 */
function escapeMarkdown(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/[\\`*_~[\]|$]/g, (c) => `\\${c}`)
    .replace(/@|#(?=\d)/g, (c) => `${c}&#8203;`);
}

/** A plan string as inline markdown text, on one line: in prose and in table cells alike. */
export function mdText(s: string): string {
  return escapeMarkdown(visible(clip(s)));
}

/**
 * A plan string as a code span on one line. Inside a code span markdown is
 * literal (no mention, link or HTML), so only a backtick, which would end
 * it, is changed (to `'`), besides the hidden characters and the length.
 */
export function mdCode(s: string): string {
  return `\`${visible(clip(s)).replace(/`/g, "'")}\``;
}

/** A code span inside a table cell: a `|` ends a GFM cell even there unless escaped. */
export function mdCodeCell(s: string): string {
  return mdCode(s).replace(/\|/g, '\\|');
}

/** A plan string inside an HTML element of the comment (`<summary>`), where markdown escapes do not apply. */
export function mdHtml(s: string): string {
  return visible(clip(s))
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/@|#(?=\d)/g, (c) => `${c}&#8203;`);
}
