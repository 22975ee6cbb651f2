/* generated from specs/schema/history-output.schema.json by `npm run gen:types` — do not edit */

/**
 * What `fleet history [ADDRESS] --format json` prints on stdout: one document (or a failure).
 */
export type HistoryOutput = History | FailureOutput;

/**
 * The history rows, oldest first (the newest --limit).
 */
export interface History {
  stack: string;
  /**
   * The address asked for; null for the whole stack.
   */
  address: string | null;
  history: HistoryEntry[];
  /**
   * Problems found on the way (loader warnings, errors).
   */
  diagnostics: Diagnostic[];
}
/**
 * One state change (or refused change) of a VM.
 */
export interface HistoryEntry {
  id: number;
  vmId: string;
  address: string;
  from: string | null;
  to: string;
  actor: string;
  planId: string | null;
  requestId: string | null;
  outcome: 'ok' | 'failed' | 'vetoed' | 'denied' | 'drift' | 'modified' | 'removed' | 'imported';
  detail: string | null;
  /**
   * The failed step's error code (`driver.<kind>`, docs/protocol.md "Wire errors") its DMZ client reported with the failure, e.g. `driver.boot-denied`; null on every other row, and on failures recorded before record schema 18 or reported by a DMZ client older than the field.
   */
  code: string | null;
  at: string;
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
