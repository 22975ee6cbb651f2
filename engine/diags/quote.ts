// How a diagnostic quotes what it did not write: a value, key, label, name or
// path from a file, a flag or a data center. Such a value may be as long as
// the file (a 2,000,000-character `image:` made `fleet validate` print a
// 2 MB diagnostic) and may hold characters that act on a terminal. Every
// message that names one goes through quote() or clip(); diag() bounds the
// whole detail and location besides (boundText), for a message that did not.
import { QUOTE_LIMIT, head, more } from './cut.ts';
import { escapeUnseen } from './unseen.ts';

export { QUOTE_LIMIT } from './cut.ts';
/**
 * How many characters a diagnostic's detail may have. A detail that lists
 * (allowed keys, known images) stays well under it; past it, the middle is
 * cut, so the end of the sentence (what to do) is kept.
 */
export const DETAIL_LIMIT = 800;
/** How many characters a location's file or address may have (paths are cut in the middle: their end names the file). */
export const WHERE_LIMIT = 300;

/**
 * `s` for free text in a diagnostic, unquoted: its characters that do not
 * show written as escapes (escapeUnseen), and at most `limit` of them, then
 * `… (N more characters)`.
 */
export function clip(s: string, limit = QUOTE_LIMIT): string {
  const [shown, rest] = head(s, limit);
  return escapeUnseen(shown) + (rest ? more(rest) : '');
}

/**
 * `s` quoted for a diagnostic, as JSON writes a string (`"team-a"`,
 * `"a\nb"`), its characters that do not show written as escapes (`\u202E`,
 * which JSON leaves as it is), and at most `limit` of them:
 * `"xxxx…"… (1999900 more characters)` — enough to find it in the file the
 * location names.
 */
export function quote(s: string, limit = QUOTE_LIMIT): string {
  const [shown, rest] = head(s, limit);
  return escapeUnseen(JSON.stringify(shown)) + (rest ? more(rest) : '');
}

/**
 * `s` at most about `limit` characters: when longer, its start and its end
 * with `… (N more characters) …` between them. The backstop diag() applies to
 * every detail and location, whatever the message quoted.
 */
export function boundText(s: string, limit: number): string {
  if (s.length <= limit) return s;
  const keepEnd = Math.floor(limit / 4);
  const [start] = head(s, limit - keepEnd);
  let end = s.slice(s.length - keepEnd);
  // Not half of a surrogate pair at the cut.
  if (/^[\uDC00-\uDFFF]/.test(end)) end = end.slice(1);
  let cut = 0;
  for (const _ of s.slice(start.length, s.length - end.length)) cut++;
  return `${start}… (${cut} more characters) …${end}`;
}

/** A path for a diagnostic's detail (a file a flag names): its unseen characters escaped, the middle cut past WHERE_LIMIT (its end names the file). */
export function clipPath(path: string): string {
  return boundText(escapeUnseen(path), WHERE_LIMIT);
}
