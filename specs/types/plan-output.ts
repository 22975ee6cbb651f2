/* generated from specs/schema/plan-output.schema.json by `npm run gen:types` — do not edit */

/**
 * What `fleet plan --format json` prints on stdout: the plan document with the diagnostics beside it (or a failure). With `--out FILE` the plan document is written to FILE alone, once, and stdout says where it went (`planFile`) with its id, summary and blocked flag instead of repeating it.
 */
export type PlanOutput = PlanResult | PlanSavedResult | FailureOutput;

/**
 * The plan, the refresh before it (--refresh) and the diagnostics.
 */
export interface PlanResult {
  /**
   * The plan document, formatVersion "2" (docs/plan-format.md).
   */
  plan: {
    formatVersion: '2';
    id: string;
    stack: string;
    changes: unknown[];
    summary: {};
    blocked: boolean;
  };
  /**
   * With --refresh: what the refresh found and recorded before planning.
   */
  refresh?: {
    checked: number;
    drift: DriftEntry[];
  };
  /**
   * Problems found on the way (loader warnings, plan.blocked).
   */
  diagnostics: Diagnostic[];
}
/**
 * One difference between a data center and the record.
 */
export interface DriftEntry {
  kind: 'recorded' | 'edge' | 'not-an-edge' | 'missing' | 'unknown' | 'unreachable';
  dataCenter: string;
  /**
   * The VM address; the cloud id for an unknown VM.
   */
  address: string;
  recordState: string | null;
  actualState: string | null;
  detail: string;
}
/**
 * A problem a person can act on, as every `--format json` output carries it: what (code, summary), why (detail) and where (file:line:col, or a VM address, fleet, data center or lock id). docs/diagnostics.md lists every code.
 */
export interface Diagnostic {
  /**
   * An error makes the command exit 1; a warning does not.
   */
  severity: 'error' | 'warning';
  /**
   * `<area>.<name>`, fixed per kind of problem (docs/diagnostics.md).
   */
  code: string;
  /**
   * Short and fixed per code.
   */
  summary: string;
  /**
   * This occurrence: what was found and what to do.
   */
  detail: string;
  /**
   * File the problem is in, relative to the working folder when under it.
   */
  file?: string;
  /**
   * 1-based line in `file`.
   */
  line?: number;
  /**
   * 1-based column in `file`.
   */
  col?: number;
  /**
   * A VM address (`web/3`), a fleet, a data center or a lock id.
   */
  address?: string;
}
/**
 * With --out: where the plan document was written, what it holds in short, the refresh before it (--refresh) and the diagnostics.
 */
export interface PlanSavedResult {
  /**
   * The file the plan document was written to, as given to --out.
   */
  planFile: string;
  formatVersion: '2';
  id: string;
  stack: string;
  /**
   * Counts per action, as in the plan document.
   */
  summary: {};
  blocked: boolean;
  /**
   * With --refresh: what the refresh found and recorded before planning.
   */
  refresh?: {
    checked: number;
    drift: DriftEntry[];
  };
  /**
   * Problems found on the way (loader warnings, plan.blocked).
   */
  diagnostics: Diagnostic[];
}
/**
 * What a `--format json` command prints on stdout when it fails before it has a result (invalid stack, unreachable record, usage error): its diagnostics only, at least one an error. Exit 1.
 */
export interface FailureOutput {
  /**
   * @minItems 1
   */
  diagnostics: [Diagnostic, ...Diagnostic[]];
}
