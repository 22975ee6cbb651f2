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
 * (allowed keys, known images) or speaks of several data centers (an admin
 * check refused by each, with its wait) stays under it; past it, the middle
 * is cut, so the end of the sentence (what to do) is kept.
 */
export const DETAIL_LIMIT = 4000;
/**
 * The longest run of characters without a space a detail shows whole: a
 * value a message quoted whole is cut to it (clipRuns), the words around it
 * kept. Words, paths and URLs a message writes itself stay well under it.
 */
export const RUN_LIMIT = 300;
/**
 * How many characters of a sentence another service wrote a diagnostic shows:
 * an authority's reason for a veto, a cloud's or a DMZ client's error
 * message, a peer's error body. Their own longest sentences (a quota or
 * manager refusal naming a fleet, an owner and what to do) stay well under
 * it; a hostile or broken peer's 100 KB message is cut to it, through clip().
 */
export const REASON_LIMIT = 1000;
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

/** `s` with every run of more than RUN_LIMIT characters without a space cut to its start and `… (N more characters)`. */
export function clipRuns(s: string): string {
  if (s.length <= RUN_LIMIT) return s;
  // A scan, not a regular expression: /\S{301,}/ over a 20,000,000-character run overflowed V8's stack.
  let out = '';
  let from = 0;
  let runStart = 0;
  for (let i = 0; i <= s.length; i++) {
    if (i < s.length && !isSpace(s.charCodeAt(i))) continue;
    if (i - runStart > RUN_LIMIT) {
      const [shown, rest] = head(s.slice(runStart, i), RUN_LIMIT);
      if (rest) {
        out += s.slice(from, runStart) + shown + more(rest);
        from = i;
      }
    }
    runStart = i + 1;
  }
  return from === 0 ? s : out + s.slice(from);
}
/** What /\s/ matches: ASCII and Unicode white space. */
function isSpace(c: number): boolean {
  if (c <= 32) return c === 32 || (c >= 9 && c <= 13);
  if (c < 0x85) return false;
  return c === 0x85 || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
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
