/* generated from specs/schema/state-list-output.schema.json by `npm run gen:types` — do not edit */

/**
 * What `fleet state list --format json` prints on stdout: one document (or a failure).
 */
export type StateListOutput = StateList | FailureOutput;

/**
 * The live VMs, fleets and locks of the stack.
 */
export interface StateList {
  stack: string;
  /**
   * Where the record is (no password).
   */
  record: string;
  vms: RecordVm[];
  fleets: RecordFleet[];
  locks: LockEntry[];
  /**
   * Problems found on the way (loader warnings, errors).
   */
  diagnostics: Diagnostic[];
}
/**
 * A VM as the record holds it.
 */
export interface RecordVm {
  id: string;
  stack: string;
  fleet: string;
  index: number;
  /**
   * `<fleet>/<index>`
   */
  address: string;
  /**
   * `<stack>-<fleet>-<index>`
   */
  name: string;
  dataCenter: string;
  /**
   * Current lifecycle state.
   */
  state: string;
  desiredState: string;
  specHash: string;
  /**
   * Logical image.
   */
  image: string;
  /**
   * The data center's image, once translated.
   */
  realImage: string | null;
  size: Size;
  encryptedDisk: boolean;
  cloudId: string | null;
  /**
   * Bumped by every write to the row.
   */
  version: number;
  createdAt: string;
  updatedAt: string;
  retiredAt: string | null;
  /**
   * The old VM of a create-before-delete replace.
   */
  deposed: boolean;
}
export interface Size {
  cpu: number;
  memoryGiB: number;
  diskGiB: number;
}
export interface RecordFleet {
  stack: string;
  fleet: string;
  owner: string;
  version: number;
  updatedAt: string;
  /**
   * The fleet was last applied with protect: true (kept in the record when its spec file goes; deleting its members needs an override).
   */
  protected: boolean;
  /**
   * The program that manages the fleet (a Pulumi Fleet or Vm, e.g. pulumi:<project>/<stack>: the record's fleets.managed_by while the fleet has live VMs); null for a fleet of fleet files. fleet plan and fleet apply leave a managed fleet alone.
   */
  managedBy: string | null;
}
/**
 * A fleet lock held in the record.
 */
export interface LockEntry {
  lockId: string;
  stack: string;
  fleet: string;
  who: string;
  host: string;
  pid: number;
  planId: string | null;
  since: string;
  expiresAt: string;
  /**
   * The acquisition's fencing token: grows with every lock taken; the authority refuses requests of an older one (docs/recovery.md, "Fencing").
   */
  fencingToken?: number;
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
