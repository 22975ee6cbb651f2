// Cutting a quoted value short without splitting a character (engine/diags/quote.ts, unseen.ts visible()).

/** How many characters of one value a diagnostic shows; the rest are counted, not shown. */
export const QUOTE_LIMIT = 100;

/** The first `n` code points of `s` (a surrogate pair is never split) and how many are left out. */
export function head(s: string, n: number): [string, number] {
  let i = 0;
  let count = 0;
  while (i < s.length && count < n) {
    const c = s.charCodeAt(i);
    i += c >= 0xd800 && c <= 0xdbff && i + 1 < s.length ? 2 : 1;
    count++;
  }
  if (i >= s.length) return [s, 0];
  let rest = 0;
  for (const _ of s.slice(i)) rest++;
  return [s.slice(0, i), rest];
}

export const more = (n: number): string => `… (${n} more character${n === 1 ? '' : 's'})`;
