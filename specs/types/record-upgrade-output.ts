/* generated from specs/schema/record-upgrade-output.schema.json by `npm run gen:types` — do not edit */

/**
 * What `fleet record upgrade --format json` prints on stdout: one document (or a failure, e.g. record.newer-schema).
 */
export type RecordUpgradeOutput = RecordUpgrade | FailureOutput;

/**
 * The record's schema version before and after; `upgraded` is false when it was at this dmzfleet's version already.
 */
export interface RecordUpgrade {
  /**
   * The record's URL, without its password.
   */
  record: string;
  /**
   * The schema version found.
   */
  from: number;
  /**
   * The schema version now (this dmzfleet's).
   */
  to: number;
  upgraded: boolean;
  /**
   * Problems found on the way (loader warnings, errors).
   */
  diagnostics: Diagnostic[];
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
