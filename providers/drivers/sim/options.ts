// The sim driver's settings: its state folder, capacity, latency, faults to
// inject, and the key its scoped credentials are checked with.
import type { KeyObject } from 'node:crypto';
import { agentWindowSeconds } from '../../boot-agent/index.ts';
import type { DriverCall, DriverErrorKind } from '../types.ts';

/**
 * How long the DMZ client of a sim data center waits for a booting VM's agent (awaitReady) when its config does not
 * say (spec.readyTimeoutMs): the sim's VMs boot in milliseconds, but their agents ride out a restarting authority.
 */
export const SIM_READY_TIMEOUT_MS = 60_000;

/**
 * How long a sim VM's agent may spend asking the boot endpoint (its tries and the pauses between them), from its
 * first try: bootRetryBudgetMs, else the boot agent's window of the DMZ client's wait (agentWindowSeconds of
 * readyTimeoutMs), as the aws and azure drivers give their agents. Its retries once had 60 s of pauses alone, as
 * long as the DMZ client's default wait: awaitReady timed out while the agent still asked, and a boot approved
 * after that left a VM running whose boot the record held failed.
 */
export function simBootWindowMs(o: Pick<SimOptions, 'bootRetryBudgetMs' | 'readyTimeoutMs'>): number {
  return o.bootRetryBudgetMs ?? agentWindowSeconds(o.readyTimeoutMs ?? SIM_READY_TIMEOUT_MS) * 1000;
}

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
   * How long a VM's agent may spend, from its first try, asking a boot endpoint that answers 408, 429 (its limit)
   * or 5xx, or none (12 tries at most, 10 ms doubling up to 2 s apart; a 429's Retry-After is waited out within it).
   * Default: its boot window inside readyTimeoutMs (simBootWindowMs: 30 000 for the default 60 000).
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
  /**
   * A test fault: every VM's agent presents a made-up boot token instead of the one its boot edge issued (its user
   * data tampered with), so the authority denies every boot. awaitReady then terminates the VM, unless deleteVm is
   * faulted too (failCalls, failWith): the VM stays, powered off, and awaitReady fails boot-denied saying it was not
   * deleted yet, as the aws and azure drivers do when the cloud refuses or fails the terminate.
   */
  forgeBootTokens?: boolean;
  /** A hung call (hangCalls) gives up after this with a `timeout` error, as a cloud SDK's request timeout does. Default: never. */
  callTimeoutMs?: number;
  /**
   * A test gate shared by the data centers naming it (gate.ts): a file holding `{"calls": N}` (and `"acted": true`
   * to hold answers, not calls); each changing call takes one of the N, and the calls after them are held until the
   * file is removed. Absent, or the file absent: no gate.
   */
  gateFile?: string;
  /** Seed of errorRate's PRNG. Default 1. */
  seed?: number;
  /**
   * How long the DMZ client waits for a boot (its config's spec.readyTimeoutMs, the awaitReady timeoutMs it passes):
   * awaitReady without a timeoutMs waits this long, and the agents' boot window is cut to fit inside it
   * (simBootWindowMs). Default SIM_READY_TIMEOUT_MS.
   */
  readyTimeoutMs?: number;
  /**
   * How long to wait for another process that has this data center open
   * (the CLI's --lock-timeout). Default 0: refuse at once with sim.busy.
   */
  busyTimeoutMs?: number;
}
