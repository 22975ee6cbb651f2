// The contract between a DMZ client and its data center's cloud API. One
// driver per cloud (`sim` now; `aws` and `azure` follow the same shape):
// each method is one cloud call that carries a VM along one lifecycle edge,
// named after the edge's `operation` in the policy pack.
//
// What every driver must keep true:
// - It acts only in its own data center and only with credentials the
//   authority issued for that data center (checkCredentials; the sim also
//   verifies their scoped token, protocol/scoped-token.ts); reads may use
//   the DMZ client's own read-only credentials.
// - createVm is idempotent per vmId (like EC2's ClientToken): a repeated call
//   returns the VM created first, never a second one.
// - deleteVm of a VM the cloud no longer has succeeds (there is nothing left).
// - A failed call throws DriverError; `transient` says whether trying again
//   may help (the DMZ client retries those a few times before reporting a failure).
import { formatVmAddress, isFleetName, parseVmAddress } from '../../engine/model/index.ts';
import type { VmSize } from '../../engine/plan/types.ts';
import type { ActualVm, AgentReport, DriverErrorKind, ScopedCredentials } from '../../protocol/index.ts';

export type { DriverErrorKind, ScopedCredentials } from '../../protocol/index.ts';
export type CloudVm = ActualVm;

/** A VM the record knows by id; the cloud id is null until createVm succeeded. */
export interface VmRef {
  vmId: string;
  cloudId: string | null;
}

export interface CreateVmInput {
  vmId: string;
  /** The VM's address (`fleet/index`, engine/model); cloud drivers tag the VM with it. */
  address?: string;
  name: string;
  /** The real image for this data center (translated by the authority). */
  image: string;
  size: VmSize;
  encryptedDisk: boolean;
  /** sha256 hex of the disk key; the VM checks the key the boot endpoint releases against it. */
  diskKeyHash?: string;
}


export class DriverError extends Error {
  readonly kind: DriverErrorKind;
  readonly transient: boolean;
  /**
   * The cloud asked to wait this long before trying again (Azure's 429 / 503
   * Retry-After), or the driver knows it refills no sooner (EC2's throttling):
   * the DMZ client's retry waits at least this (callDriver).
   */
  readonly retryAfterMs: number | undefined;
  constructor(kind: DriverErrorKind, message: string, transient = kind === 'transient', opts: { retryAfterMs?: number } = {}) {
    super(message);
    this.name = 'DriverError';
    this.kind = kind;
    this.transient = transient;
    this.retryAfterMs = opts.retryAfterMs;
  }
}

/** What a real VM's boot agent reports to POST /v1/boot/status (protocol/schemas/dmz-client.ts). */
export type { AgentReport } from '../../protocol/index.ts';

/** Names of the calls, as the pack's `operation` and the sim's failCalls/hangCalls use them (engine/model). */
export { DRIVER_CALLS, type DriverCall } from '../../engine/model/index.ts';

export interface Driver {
  /** `sim`, `aws`, `azure`. */
  readonly kind: string;
  readonly dataCenter: string;
  /**
   * Tells the cloud where its VMs reach the boot endpoint (the DMZ client's
   * POST /v1/boot), and the CA bundle they verify its certificate with (absent:
   * the system's); called once the DMZ client listens.
   */
  attach(ctx: { bootUrl: string; bootCa?: string }): void;

  /** BeingCreated -> PoweredOff: address, disk and VM, powered off. */
  createVm(creds: ScopedCredentials, input: CreateVmInput): Promise<CloudVm>;
  powerOn(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm>;
  /** Starts the OS; the VM will ask the boot endpoint for approval with this one-time token. Returns once booting started. */
  boot(creds: ScopedCredentials, ref: VmRef, opts: { bootToken: string }): Promise<CloudVm>;
  /**
   * Waits until the VM reports ready; throws DriverError('boot-denied') when the boot endpoint denied its boot (its
   * agent said so, or it powered itself off during its boot without a report after the boot endpoint denied a
   * request carrying its boot token, bootDenied: the VM is terminated; when the step's credentials expired during
   * the wait the message says it was not, and the next apply's delete does it), and DriverError('boot-failed') when
   * its boot failed otherwise (its agent said so; it powered itself off without a report and no denial of its token
   * was seen; the cloud itself stopped or deallocated it: the VM is kept, powered off; `capacity` when the cloud
   * said it had no room for the start). fleet apply tells them apart by kind alone (engine/apply/failure-cause.ts),
   * never by the message.
   */
  awaitReady(creds: ScopedCredentials, ref: VmRef, opts?: { timeoutMs?: number }): Promise<CloudVm>;
  shutdown(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm>;
  powerOff(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm>;
  /** Only while powered off. */
  resize(creds: ScopedCredentials, ref: VmRef, size: VmSize): Promise<CloudVm>;
  deleteVm(creds: ScopedCredentials, ref: VmRef): Promise<void>;
  get(creds: ScopedCredentials, ref: VmRef): Promise<CloudVm | undefined>;
  list(creds: ScopedCredentials): Promise<CloudVm[]>;
  /**
   * A booting VM's agent reports its state (POST /v1/boot/status). Returns
   * false when the report is not believed (unknown VM, wrong token); then
   * it changes nothing. Absent: the driver's VMs report otherwise (sim).
   */
  agentStatus?(report: AgentReport): boolean;
  /**
   * The boot endpoint denied `boot` (the authority's answer to POST /v1/boot, which the DMZ client sees): when it
   * carries the token of the boot the driver is carrying out for that VM, this boot was denied, and a VM that then
   * powers itself off without a report is a denied boot (awaitReady: boot-denied, terminated). Any other token (a
   * made-up one: the endpoint is open to the DMZ network) says nothing of the VM and changes nothing. Returns
   * whether it was taken as the boot's. Absent: the driver learns of a denial otherwise (sim: its own agents).
   */
  bootDenied?(boot: { vmId: string; cloudId: string; bootToken: string }): boolean;
  /**
   * Rejects, saying why, unless the DMZ client's own cloud credentials (those
   * its reads use) work: one cheap read call (the DMZ client's readiness,
   * GET /readyz). Absent: nothing to check (sim).
   */
  ready?(): Promise<void>;
  /** Stops timers and flushes state; the cloud's VMs stay. */
  close(): Promise<void>;
}

/**
 * CloudVm's `fleet` and `address`: what a VM's cloud tags say it was created
 * as (the sim: its address; EC2: fleet:address and fleet:fleet; Azure:
 * fleet-address). `fleet import` refuses such a VM into another fleet. The
 * fleet is the tag's when there is one, else the address's; a tag that is
 * not an address or a fleet name is left out, not guessed at.
 */
export function createdFor(address: string | undefined, fleetTag?: string): { fleet?: string; address?: string } {
  const parsed = address !== undefined ? parseVmAddress(address) : undefined;
  const fleet = fleetTag !== undefined && isFleetName(fleetTag) ? fleetTag : parsed?.fleet;
  return { ...(fleet !== undefined ? { fleet } : {}), ...(parsed ? { address: formatVmAddress(parsed) } : {}) };
}

/** The check every driver makes before acting. */
export function checkCredentials(dataCenter: string, creds: ScopedCredentials, now = Date.now()): void {
  if (creds.dataCenter !== dataCenter) {
    throw new DriverError('credentials', `credentials are scoped to data center ${creds.dataCenter}, not ${dataCenter}`);
  }
  if (!creds.token) throw new DriverError('credentials', 'credentials carry no token');
  const exp = Date.parse(creds.expiresAt);
  if (Number.isNaN(exp) || exp <= now) throw new DriverError('credentials', `credentials expired at ${creds.expiresAt}`);
}
