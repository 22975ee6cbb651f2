/* generated from specs/schema/refresh-output.schema.json by `npm run gen:types` — do not edit */

/**
 * What `fleet refresh [--check] --format json` prints on stdout: one document (or a failure). A data center that did not answer is an apply.dmz-unreachable diagnostic (exit 1), not drift.
 */
export type RefreshOutput = Refresh | FailureOutput;

/**
 * The VMs checked and every difference found.
 */
export interface Refresh {
  stack: string;
  /**
   * --check: nothing was written to the record.
   */
  check: boolean;
  /**
   * Record VMs compared with their data center.
   */
  checked: number;
  drift: DriftEntry[];
  /**
   * Problems found on the way (loader warnings, errors).
   */
  diagnostics: Diagnostic[];
}
/**
 * One difference between a data center and the record.
 */
export interface DriftEntry {
  /**
   * recorded: one edge away, recorded; edge: one edge away, --check wrote nothing; not-an-edge: left as is; missing: the data center has no such VM; unknown: the record has no such VM.
   */
  kind: 'recorded' | 'edge' | 'not-an-edge' | 'missing' | 'unknown';
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
 * What a `--format json` command prints on stdout when it fails before it has a result (invalid stack, unreachable record, usage error): its diagnostics only, at least one an error. Exit 1.
 */
export interface FailureOutput {
  /**
   * @minItems 1
   */
  diagnostics: [Diagnostic, ...Diagnostic[]];
}
