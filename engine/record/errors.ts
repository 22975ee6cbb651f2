import { FleetError, diag } from '../diags/index.ts';

/**
 * A write was based on a version of a VM (or an address) that is no longer
 * current: someone else changed it first. Callers re-read and retry, or
 * report a stale plan; the record never overwrites silently.
 */
export class VersionConflictError extends FleetError {
  /** The VM id, or the address for an insert that found the address live. */
  readonly key: string;
  readonly expected: number | null;
  readonly actual: number | null;
  constructor(key: string, expected: number | null, actual: number | null, detail: string, address?: string) {
    super(diag('record.version-conflict', detail, address !== undefined ? { address } : {}));
    this.name = 'VersionConflictError';
    this.key = key;
    this.expected = expected;
    this.actual = actual;
  }
}
