import type { PlanDocument } from '../types.ts';

/**
 * Above this many changes the document is written on one line: a plan of
 * 100,000 members is 68 MB pretty-printed and a third less on one line, and
 * stringifying, encoding and writing it is most of `fleet plan`'s render time
 * (bench/plan). Smaller plans stay pretty-printed for people who open them.
 * Either way it is the same JSON; readers must not care which.
 */
export const PRETTY_JSON_LIMIT = 1000;

/**
 * The plan document itself: what `--out` writes and `fleet apply PLANFILE`
 * reads, pretty-printed unless it has more than PRETTY_JSON_LIMIT changes.
 */
export function renderJson(plan: PlanDocument, opts: { pretty?: boolean } = {}): string {
  const pretty = opts.pretty ?? plan.changes.length <= PRETTY_JSON_LIMIT;
  return `${pretty ? JSON.stringify(plan, null, 2) : JSON.stringify(plan)}\n`;
}
