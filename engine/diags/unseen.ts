// Strings people match exactly and read in a review (an owner, a label):
// characters that do not show, spaces at either end, and letters not
// composed make one string read as another. Checked in fleet files
// (engine/spec/fleet.ts), by the Pulumi Fleet resource, and by the
// authority for the owner a create names.
import { QUOTE_LIMIT, head, more } from './cut.ts';

/**
 * Characters a reviewer cannot see: control and format characters (a
 * zero-width space, a right-to-left override), private-use and unpaired
 * surrogates, line and paragraph separators, and spaces other than U+0020.
 */
const UNSEEN = /[\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Zl}\p{Zp}]|(?! )\p{Zs}/u;
/** Anything but printable ASCII (U+0020 to U+007E): a string without it holds nothing UNSEEN. */
const NOT_PRINTABLE_ASCII = /[^\x20-\x7e]/;
/** UNSEEN, global (replace); a global regex keeps lastIndex between test() calls, so tests use UNSEEN. */
const UNSEEN_ALL = new RegExp(UNSEEN.source, 'gu');
/** Combining marks, escaped in messages (shown as they are, they join the quote before them). */
const COMBINING = /\p{M}/u;

const hex = (c: string): string => c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');

/**
 * `s` quoted, its unseen characters written as escapes (`"team-a\\u200B"`):
 * shown as they are, a right-to-left override reorders the message itself.
 * At most QUOTE_LIMIT characters of it (engine/diags/cut.ts), then
 * `… (N more characters)`.
 */
export function visible(s: string): string {
  const [shown, rest] = head(s, QUOTE_LIMIT);
  return `"${shown.replace(new RegExp(`${UNSEEN.source}|${COMBINING.source}`, 'gu'), (c) => `\\u${hex(c)}`)}"${rest ? more(rest) : ''}`;
}

/**
 * `s` with the characters that do not show written as escapes, unquoted: for
 * text the CLI prints that came from elsewhere (a history detail, a VM name a
 * data center reports, a rule's message in a plan, a value a diagnostic
 * quotes), where an escape sequence would act on the terminal or CI log, a
 * newline would break a table or forge a line, and a right-to-left override
 * would reorder what people read. Combining marks are kept: in free text
 * they are accents.
 */
export function escapeUnseen(s: string): string {
  // Most strings are printable ASCII (every name and address of a 100,000-member plan passes here): a plain
  // class says so 2-3x faster than the Unicode ones; the others are tested, and replaced only then.
  if (!NOT_PRINTABLE_ASCII.test(s)) return s;
  return UNSEEN.test(s) ? s.replace(UNSEEN_ALL, (c) => `\\u${hex(c)}`) : s;
}

/** Why a name matched exactly must read as what it is: a fleet's owner and labels, owner-quota's owners. */
export const MATCHED_EXACTLY = "it is matched exactly (quota limits, rules' label matches) and would read in a plan or review as something it is not";

/**
 * The refusal of `s` when unseenProblem finds fault with it, or undefined:
 * `<what> "<s, escaped>" <why it does not read>: <why that matters>. <what
 * to do>` — one sentence family wherever a name is refused for it (a fleet
 * file, the Pulumi Fleet resource, a pack's owner-quota limits, a stack's
 * names). `what` names it before its value (`metadata.owner`), or, a
 * function, writes both (`owner "x" in limits`).
 */
export function unseenRefusal(what: string | ((shown: string) => string), s: string, matters: string = MATCHED_EXACTLY): string | undefined {
  const problem = unseenProblem(s);
  if (!problem) return undefined;
  const named = typeof what === 'function' ? what(visible(s)) : `${what} ${visible(s)}`;
  return `${named} ${problem.why}: ${matters}. ${problem.fix}`;
}

/** Why `s` does not read as what it is, and what to do, or undefined. */
export function unseenProblem(s: string): { why: string; fix: string } | undefined {
  const m = UNSEEN.exec(s);
  if (m) return { why: `holds U+${hex(m[0])} at position ${m.index + 1}, a character that does not show`, fix: 'Write it with visible characters only.' };
  if (s !== s.trim()) return { why: 'starts or ends with a space', fix: 'Remove the space.' };
  // "e" and a combining accent look like "é" typed as one character, and are another string.
  if (s.normalize('NFC') !== s) {
    return { why: 'writes a letter as a base and a combining mark (not Unicode NFC)', fix: `Write it as typed, composed: ${visible(s.normalize('NFC'))}.` };
  }
  return undefined;
}
