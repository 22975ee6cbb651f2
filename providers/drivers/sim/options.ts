// The sim driver's settings: its state folder, capacity, latency, faults to
// inject, and the key its scoped credentials are checked with.
import type { KeyObject } from 'node:crypto';
import type { DriverCall, DriverErrorKind } from '../types.ts';

export interface SimOptions {
  dataCenter: string;
  /**
   * The key the authority signs this data center's scoped tokens with
   * (protocol/scoped-token.ts's credentialKey of the DMZ client's token):
   * every mutating call's credentials must carry a token it verifies.
   */
  credentialKey: KeyObject;
  /** Folder of the state file `sim-<dataCenter>.json`. */
  stateDir: string;
  capacity?: { vms?: number; cpu?: number; memoryGiB?: number };
  /** Time each call takes. Default 5. */
  latencyMs?: number;
  /** Time a VM's agent takes to boot before it calls the boot endpoint. Default latencyMs. */
  bootMs?: number;
  /**
   * How long a VM's agent may pause in all between its tries of a boot endpoint that answers 408, 429 (its limit)
   * or 5xx, or none (12 tries at most, 10 ms doubling up to 2 s apart; a 429's Retry-After is waited out within it). Default 60 000 (DEFAULT_RETRY_BUDGET_MS).
   */
  bootRetryBudgetMs?: number;
  /** Share of mutating calls that fail with a transient error, 0 to 1. */
  errorRate?: number;
  /** Calls that always fail. */
  failCalls?: readonly string[];
  /** Calls that never answer. */
  hangCalls?: readonly string[];
  /** Calls that fail with an error of the given kind (the contract suite's faults: capacity, not-found, ...). */
  failWith?: Readonly<Partial<Record<DriverCall, DriverErrorKind>>>;
  /** A hung call (hangCalls) gives up after this with a `timeout` error, as a cloud SDK's request timeout does. Default: never. */
  callTimeoutMs?: number;
  /** Seed of errorRate's PRNG. Default 1. */
  seed?: number;
  /** How long awaitReady waits by default. Default 30 000. */
  readyTimeoutMs?: number;
  /**
   * How long to wait for another process that has this data center open
   * (the CLI's --lock-timeout). Default 0: refuse at once with sim.busy.
   */
  busyTimeoutMs?: number;
}
