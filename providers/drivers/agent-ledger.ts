// What the boot agents of a cloud driver's VMs reported (booting, ready,
// failed, denied) and the hash of each VM's current one-time boot token,
// kept in the DMZ client's state folder so a restarted client still believes
// the report of a VM that was booting when it went down, and still knows a
// VM whose boot was denied or failed. The cloud has no such state: EC2 and
// Azure only know running / stopped.
//
// File: <stateDir>/agents-<dataCenter>.json, `{ "version": 1, "vms": { cloudId: entry } }`,
// written whole on every change (temp file 0600 + rename, the folder 0700).
// It holds no secret: a token's sha256, never the token; never a disk key.
// An unreadable file is a diagnostic-worthy failure of the driver's start,
// never silently emptied (a denied VM would look Running after the restart).
import { mkdirSync, readFileSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeOwnFile } from '../../engine/durability/own-file.ts';
import { DriverError } from './types.ts';

export interface AgentLedgerEntry {
  /** none: no boot this run; stopping: a shutdown was asked. */
  state: 'none' | 'booting' | 'ready' | 'failed' | 'stopping';
  /** sha256 hex of the boot token of the latest boot; a report must carry that token. */
  tokenHash?: string;
  detail?: string;
  /** The boot endpoint denied the boot: the VM is to be terminated. */
  denied?: boolean;
  /**
   * The DMZ client saw the boot endpoint deny a boot request carrying this boot's token (Driver.bootDenied): this
   * boot was denied, whether or not its agent's report ever comes. What tells a VM that powers itself off unheard
   * after a denial of its own token (terminated) from one that powered off unheard otherwise (kept), a denied boot
   * check with another token (anyone's: the endpoint is open) counting for nothing.
   */
  tokenDenied?: boolean;
  /**
   * aws: the instance's last stop as read right before this boot's StartInstances (stopMark: its stateReason,
   * stateTransitionReason and launchTime). A read after the start that shows the same stop is EC2's stale read, not
   * a stop of this boot.
   */
  stoppedAs?: string;
  /** aws: the instance was read pending or running since this boot's StartInstances: any stop from here is this boot's. */
  up?: boolean;
  /**
   * aws: this boot's agent reported (its token, any state): the instance started, whatever EC2's reads still show. A
   * read of the stop before the start is then EC2's lag, never this start failing.
   */
  heard?: boolean;
  /**
   * When this client believed the agent's last report (ISO, its clock): a ready report older than the VM's latest
   * start (CloudVm.startedAt) is of an earlier run, not the current one (isCurrentReport). Absent in older ledgers.
   */
  at?: string;
  /**
   * aws: the launchTime of the run this boot started, as the first read that showed it pending or running said: a
   * report of this boot is of that run only; another launchTime is a start since (the cloud's console).
   */
  launch?: string;
  /**
   * aws: when this client last heard this boot's agent start over (ISO, its clock): a `booting` report with the
   * boot's token after its `ready`. The instance rebooted (RebootInstances, or inside the guest), which leaves
   * launchTime as it was: the ready report is of the run before, and the VM's latest start (CloudVm.startedAt) is
   * this, not launchTime, while the boot's launch is still EC2's (a start since sets another). The report itself is refused as before (the agent then asks the boot
   * endpoint with that used token, is denied and powers the instance off).
   */
  rerun?: string;
}

/**
 * Whether a ledger entry's report is of the VM's current run, which began at `startedAt` (CloudVm.startedAt; undefined:
 * the cloud says nothing of it, and the report counts as before). A report of a run a start from the cloud's console
 * ended counts for nothing: the agent of the new run presents that boot's token again, which the authority denies,
 * and reading the old report as this run's would let `fleet import` or `fleet refresh` record Running a VM whose disk
 * no approved boot unlocked.
 *
 * | entry                                  | current                                    |
 * | -------------------------------------- | ------------------------------------------ |
 * | launch bound (aws)                     | launch is startedAt                        |
 * | no launch, at (the report's time)      | at is after startedAt (clocks apart: a run |
 * |                                        | whose report lost the race reads unknown)  |
 * | neither (an older ledger)              | no                                         |
 */
export function isCurrentReport(entry: Pick<AgentLedgerEntry, 'at' | 'launch'>, startedAt: string | undefined): boolean {
  if (startedAt === undefined) return true;
  const started = Date.parse(startedAt);
  if (Number.isNaN(started)) return true;
  if (entry.launch !== undefined) return Date.parse(entry.launch) === started;
  if (entry.at === undefined) return false;
  return Date.parse(entry.at) > started;
}

const STATES = new Set(['none', 'booting', 'ready', 'failed', 'stopping']);

export function agentLedgerFile(stateDir: string, dataCenter: string): string {
  return join(stateDir, `agents-${dataCenter}.json`);
}

/** A Map of cloud id -> entry that writes itself to `file` on each change (memory only without a file). */
export class AgentLedger {
  private readonly vms = new Map<string, AgentLedgerEntry>();

  private constructor(private readonly file: string | undefined) {}

  /** The ledger of a data center: read from `stateDir` when given (created on first write), else in memory. */
  static open(stateDir: string | undefined, dataCenter: string): AgentLedger {
    if (stateDir === undefined) return new AgentLedger(undefined);
    const file = agentLedgerFile(stateDir, dataCenter);
    const ledger = new AgentLedger(file);
    let text: string | undefined;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new DriverError('failed', `cannot read the boot agents' reports ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
    if (text !== undefined) {
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch (err) {
        throw new DriverError('failed', `the boot agents' reports ${file} are not JSON (${(err as Error).message}); move the file away to start over (VMs booting now will then be re-read from the cloud)`);
      }
      const vms = (doc as { version?: unknown; vms?: unknown }).vms;
      if ((doc as { version?: unknown }).version !== 1 || typeof vms !== 'object' || vms === null) {
        throw new DriverError('failed', `the boot agents' reports ${file} are not version 1 of the ledger; move the file away to start over`);
      }
      for (const [id, e] of Object.entries(vms as Record<string, AgentLedgerEntry>)) {
        if (typeof e === 'object' && e !== null && STATES.has(e.state)) ledger.vms.set(id, e);
      }
    }
    return ledger;
  }

  get(cloudId: string): AgentLedgerEntry | undefined {
    return this.vms.get(cloudId);
  }

  set(cloudId: string, entry: AgentLedgerEntry): void {
    this.vms.set(cloudId, { ...entry });
    this.save();
  }

  delete(cloudId: string): void {
    if (this.vms.delete(cloudId)) this.save();
  }

  private save(): void {
    if (!this.file) return;
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    // Never through a symbolic link at the temp name (predictable: the pid); the rename replaces a link at the name.
    writeOwnFile(tmp, `${JSON.stringify({ version: 1, vms: Object.fromEntries(this.vms) })}\n`);
    renameSync(tmp, this.file);
  }
}
