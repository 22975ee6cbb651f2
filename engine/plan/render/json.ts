import type { PlanDocument } from '../types.ts';

/** The plan document itself, pretty-printed: what `--out` writes and `fleet apply PLANFILE` reads. */
export function renderJson(plan: PlanDocument): string {
  return `${JSON.stringify(plan, null, 2)}\n`;
}
