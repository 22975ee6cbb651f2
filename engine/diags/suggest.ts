import { quote } from './quote.ts';

/**
 * Optimal-string-alignment (restricted Damerau-Levenshtein) distance: edits
 * are insertions, deletions, substitutions and swaps of two neighbouring
 * characters, so the commonest typo, a swap (`cuont`), costs 1, not 2.
 */
export function damerauDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/**
 * The closest candidate to a mistyped word, when it is close enough to be a
 * likely typo (at most a third of the word's length in edits, at least 1;
 * case ignored); undefined otherwise. Ties go to the first candidate.
 */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const limit = Math.max(1, Math.floor(word.length / 3));
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    // The distance is at least the difference in length: a 100,000-character key is no typo of `image`, and its
    // distance table would hold 100,000 rows.
    if (Math.abs(word.length - c.length) > limit) continue;
    const d = damerauDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best !== undefined && best !== word && bestD <= limit ? best : undefined;
}

/**
 * ` (did you mean "running"?)` for a value that is a likely typo of one of `allowed` (suggest), else ''. A value
 * that is not a string (a number where a name is expected) gets none.
 */
export function didYouMean(value: unknown, allowed: readonly unknown[]): string {
  if (typeof value !== 'string') return '';
  const hint = suggest(value, allowed.filter((a): a is string => typeof a === 'string'));
  return hint === undefined ? '' : ` (did you mean ${quote(hint)}?)`;
}
