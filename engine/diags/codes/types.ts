import type { Severity } from '../diagnostic.ts';

export interface CodeEntry {
  /** Short, fixed: the same for every occurrence. Sentence case, no trailing period. */
  summary: string;
  /** What it means and what to do; becomes docs/diagnostics.md. */
  doc: string;
  severity: Severity;
}

/** Helper so each area file gets checked entries and literal keys. */
export function defineCodes<K extends string>(codes: Record<K, CodeEntry>): Record<K, CodeEntry> {
  return codes;
}
