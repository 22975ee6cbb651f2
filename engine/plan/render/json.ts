import { writeJson, type Sink } from '../json-text.ts';
import type { PlanDocument } from '../types.ts';

/**
 * Above this many changes the document is written on one line: a plan of
 * 100,000 members is 68 MB pretty-printed and a third less on one line, and
 * stringifying, encoding and writing it is most of `fleet plan`'s render time
 * (bench/plan). Smaller plans stay pretty-printed for people who open them.
 * Either way it is the same JSON; readers must not care which.
 */
export const PRETTY_JSON_LIMIT = 1000;

const prettyFor = (plan: PlanDocument, opts: { pretty?: boolean }) => opts.pretty ?? plan.changes.length <= PRETTY_JSON_LIMIT;

/**
 * The plan document itself: what `--out` writes and `fleet apply PLANFILE`
 * reads, pretty-printed unless it has more than PRETTY_JSON_LIMIT changes.
 */
export function renderJson(plan: PlanDocument, opts: { pretty?: boolean } = {}): string {
  return `${prettyFor(plan, opts) ? JSON.stringify(plan, null, 2) : JSON.stringify(plan)}\n`;
}

/**
 * renderJson's text, to `sink` in pieces (../json-text.ts): a big plan's
 * document is never one string, and what its changes share is written once.
 */
export function writePlanJson(plan: PlanDocument, sink: Sink, opts: { pretty?: boolean } = {}): void {
  if (prettyFor(plan, opts)) {
    sink(renderJson(plan, opts));
    return;
  }
  writeJson(plan, sink);
  sink('\n');
}
