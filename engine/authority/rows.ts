// The service's memory of VM rows: one writer per VM inside this authority
// (serial), and the row it last wrote or read per VM (remembered), so a step
// costs one record round trip at authorize and one at report instead of a
// read before each. A remembered row is never trusted blindly: every write
// made on it is conditional on its version, and any decision other than the
// common one is taken again on a fresh read (decideOn).
import { VersionConflictError, type VmRow } from '../record/index.ts';
import { UUID } from './decisions.ts';

/** Thrown inside a decision taken on a remembered row that may be stale: decide again on a fresh read. */
export class StaleRow extends Error {}

/** Rows remembered per VM; beyond this the least recently used are forgotten. */
const KNOWN_MAX = 50_000;

export class VmRows {
  private readonly known = new Map<string, VmRow>();
  private readonly locks = new Map<string, Promise<unknown>>();

  /**
   * `read`: the record's rows by id (batched by the caller). `remembering`
   * false (replicas of the authority share the record): no row is kept, every
   * decision is taken on a fresh read.
   */
  constructor(
    private readonly read: (vmId: string) => Promise<VmRow | undefined>,
    private readonly remembering = true,
  ) {}

  /** Runs `fn` after every earlier call for the same VM finished (one writer per VM inside this authority). */
  serial<T>(vmId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(vmId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(vmId, tail);
    void tail.then(() => {
      if (this.locks.get(vmId) === tail) this.locks.delete(vmId);
    });
    return next;
  }

  /** The record's row now (undefined for an id that cannot be in the record), remembered. */
  async get(vmId: string): Promise<VmRow | undefined> {
    if (!UUID.test(vmId)) return undefined;
    const vm = await this.read(vmId);
    if (vm) this.remember(vm);
    else this.known.delete(vmId);
    return vm;
  }

  remember(vm: VmRow): void {
    this.known.delete(vm.id);
    if (vm.retiredAt !== null || !this.remembering) return;
    this.known.set(vm.id, vm);
    if (this.known.size > KNOWN_MAX) this.known.delete(this.known.keys().next().value as string);
  }

  /**
   * Runs `decide` on the remembered row of `vmId` (or a fresh read when there
   * is none). When `decide` throws StaleRow, or a write of it meets a version
   * conflict, while working on a remembered row, the row is read afresh and
   * `decide` runs again: so what it decides is always decided on the record's
   * current row.
   */
  async decideOn<T>(vmId: string, decide: (vm: VmRow | undefined, remembered: boolean) => Promise<T>): Promise<T> {
    const known = this.known.get(vmId);
    if (known) {
      try {
        return await decide(known, true);
      } catch (err) {
        if (!(err instanceof StaleRow) && !(err instanceof VersionConflictError)) throw err;
        this.known.delete(vmId);
      }
    }
    // A fresh row can still lose a race with another writer of the record (a
    // second authority, a refresh): read again a few times before giving up.
    for (let attempt = 1; ; attempt++) {
      try {
        return await decide(await this.get(vmId), false);
      } catch (err) {
        if (!(err instanceof VersionConflictError) || attempt >= 3) throw err;
      }
    }
  }
}
