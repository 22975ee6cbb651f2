/* generated from specs/schema/policy-test-output.schema.json by `npm run gen:types` — do not edit */

/**
 * What `fleet policy test PACKDIR --format json` prints on stdout: one document (or a failure, e.g. policy.pack-missing).
 */
export type PolicyTestOutput = PolicyTest | FailureOutput;

/**
 * Every case of the pack, in file name order, and the counts.
 */
export interface PolicyTest {
  /**
   * The pack as name@version.
   */
  pack: string;
  passed: number;
  failed: number;
  cases: PolicyTestCaseResult[];
  /**
   * Problems found on the way (the pack loader's warnings).
   */
  diagnostics: Diagnostic[];
}
/**
 * One test case of the pack (a file under PACKDIR/tests/).
 */
export interface PolicyTestCaseResult {
  /**
   * The case's name: its file name without .yaml.
   */
  name: string;
  /**
   * The case's file, relative to the working folder.
   */
  file: string;
  passed: boolean;
  /**
   * What the plan had that the case did not expect, one line each (empty when it passed).
   */
  diff: string[];
  /**
   * Problems of the case itself (its YAML, its stack or specs).
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
