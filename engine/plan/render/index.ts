export { renderText, type TextOptions } from './text.ts';
export { renderMarkdown, markdownMarker, MARKDOWN_LIMIT, type MarkdownOptions } from './markdown.ts';
export { renderJson, writePlanJson, PRETTY_JSON_LIMIT } from './json.ts';
export { SYMBOL, formatPath, hasChanges, summaryLine } from './common.ts';

import type { PlanDocument } from '../types.ts';
import { renderJson } from './json.ts';
import { renderMarkdown } from './markdown.ts';
import { renderText } from './text.ts';

export { PLAN_FORMATS, type PlanFormat } from './formats.ts';
import type { PlanFormat } from './formats.ts';

export function renderPlan(plan: PlanDocument, format: PlanFormat, opts: { color?: boolean; planFile?: string } = {}): string {
  if (format === 'json') return renderJson(plan);
  if (format === 'markdown') return renderMarkdown(plan, opts.planFile !== undefined ? { planFile: opts.planFile } : {});
  return renderText(plan, opts);
}
