// How text from the plan is shown. A plan carries strings that people other
// than the reviewer wrote: a pull request's specs (owners, data centers in a
// stack, state names of a policy pack), a pack's custom rules (any message or
// hint), record values. The renderers show them as text and nothing else:
// never as markup of the pull-request comment, never as a terminal's control
// sequence. Every such string goes through one of these functions; the rule
// is written down in docs/plan-format.md ("Text from the plan").
import { escapeUnseen } from '../../diags/unseen.ts';

/**
 * Control and format characters (ESC, a newline, a right-to-left override, a
 * zero-width space: engine/diags/unseen.ts) shown as escapes; the same rule
 * as for values quoted in diagnostics.
 */
export const visible = escapeUnseen;

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
