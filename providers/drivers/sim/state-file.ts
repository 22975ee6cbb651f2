// The sim's data center on disk (one file pair per data center, in its
// state folder), read and written by the driver (sim.ts).
// | file                  | what                                                                 |
// | --------------------- | -------------------------------------------------------------------- |
// | sim-<dc>.json         | snapshot: every VM, one per line, and `seq`, the last change it holds |
// | sim-<dc>.log.jsonl    | changes since: one line `{"seq":N,"vm":{...}}` per changed VM         |
// A write appends the VMs changed since the previous one (whole VM records,
// so replaying a line is idempotent); its cost is the change, not the
// number of VMs (a whole-file write per group commit grew with the data
// center). The log is compacted into the snapshot (temp file + rename, then
// the log is removed) on open, on close, after a failed append, and when it
// grows past COMPACT_RATIO times the snapshot. Lines with a seq the snapshot
// already holds (a crash between rename and removal) and a line torn by a
// crash mid-append (never answered) are skipped when loading.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FleetError, diag, fsReason } from '../../../engine/diags/index.ts';
import type { VmSize } from '../../../engine/plan/types.ts';
import type { AgentState } from '../../../protocol/index.ts';

export interface SimVm {
  vmId: string;
  cloudId: string;
  name: string;
  /**
   * The member (`fleet/index`) it was created as (CreateVmInput.address), as a cloud tag keeps it. Absent in older
   * state files (testdata/pre-fleet-tag), or when created without one: the VM then names no fleet or member (its name,
   * `<stack>-<fleet>-<index>`, is not parsed for one), and `fleet import` takes it as an untagged VM.
   */
  address?: string;
  image: string;
  size: VmSize;
  encryptedDisk: boolean;
  diskKeyHash: string | null;
  status: 'present' | 'terminated';
  power: 'on' | 'off';
  agent: AgentState;
  agentDetail: string | null;
  diskUnlocked: boolean;
  /**
   * While booting: the one-time token the VM presents to the boot endpoint,
   * kept as a real VM keeps it in its user data, so a VM whose data center
   * (the sim's process) restarts mid-boot picks its boot up where it was.
   * Cleared once the boot settles.
   */
  bootToken?: string | null;
  /**
   * The token in the VM's user data: the last `boot` call's, kept after its
   * boot settled, as a real VM's user data keeps it (providers/boot-agent/agent.sh
   * runs at every boot with it). An in-guest reboot (rebootFromInside)
   * presents it again; used already, the boot endpoint denies it once the
   * record moved on from booting. Absent: never booted.
   */
  userDataToken?: string | null;
  /**
   * The boot in progress was started inside the VM (rebootFromInside), not
   * by a `boot` call: no apply's awaitReady waits for it, so a denial powers
   * the VM off as the boot agent does (`poweroff`), and nothing terminates
   * it (the aws and azure drivers terminate a denied VM only inside
   * awaitReady).
   */
  guestBoot?: boolean;
  /**
   * The agent's last boot failed because the boot endpoint denied it
   * (awaitReady then throws `boot-denied`, not `boot-failed`). Cleared by the
   * next boot or power-on. Absent in older state files: false.
   */
  bootDenied?: boolean;
  /** Marks a VM injected without a record entry (tests). */
  rogue?: boolean;
  createdAt: string;
  updatedAt: string;
}

export interface SimFile {
  formatVersion: 1;
  dataCenter: string;
  /** The last log seq the snapshot holds (absent: 0). */
  seq?: number;
  vms: SimVm[];
}

export interface LogLine {
  seq: number;
  vm: SimVm;
}

/** The log is compacted when it grows past this many times the snapshot (at least COMPACT_MIN_BYTES). */
export const COMPACT_RATIO = 4;
export const COMPACT_MIN_BYTES = 64 * 1024;

/** The snapshot file. */
export function simStateFile(stateDir: string, dataCenter: string): string {
  return join(stateDir, `sim-${dataCenter}.json`);
}

/** The log of changes since the snapshot. */
export function simLogFile(stateDir: string, dataCenter: string): string {
  return join(stateDir, `sim-${dataCenter}.log.jsonl`);
}

export async function readIfThere(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return undefined;
  }
}

/**
 * The VMs of a data center as they are on disk (snapshot, then the log's
 * newer lines), without opening a driver; `seq` is the last change applied
 * and `logged` whether a log was there. Tests read it to check durability.
 */
export async function readSimState(stateDir: string, dataCenter: string): Promise<SimState> {
  const file = simStateFile(stateDir, dataCenter);
  const read = (f: string) =>
    readIfThere(f).catch((err: unknown) => {
      throw new FleetError(diag('apply.sim-state', `cannot read the state of the simulated data center ${dataCenter}: ${fsReason(err)}.`, { file: f }));
    });
  return parseSimState(file, await read(file), await read(simLogFile(stateDir, dataCenter)));
}

export interface SimState {
  vms: SimVm[];
  seq: number;
  logged: boolean;
}

/** readSimState on the files' texts (undefined: no such file); `file` names the snapshot in errors. */
export function parseSimState(file: string, snapshot: string | undefined, log: string | undefined): SimState {
  let vms: SimVm[] = [];
  let seq = 0;
  if (snapshot !== undefined) {
    try {
      const parsed = JSON.parse(snapshot) as SimFile;
      if (!Array.isArray(parsed.vms)) throw new Error('no vms array');
      vms = parsed.vms;
      seq = typeof parsed.seq === 'number' ? parsed.seq : 0;
    } catch (err) {
      throw new FleetError(diag('apply.sim-state', `${file} is not a sim state file: ${(err as Error).message}.`, { file }));
    }
  }
  if (log !== undefined) {
    const at = new Map(vms.map((v, i) => [v.cloudId, i]));
    const snapshotSeq = seq;
    for (const line of log.split('\n')) {
      if (line === '') continue;
      let e: LogLine;
      try {
        e = JSON.parse(line) as LogLine;
      } catch {
        continue; // torn by a crash mid-append: that change was never answered
      }
      if (typeof e.seq !== 'number' || typeof e.vm?.cloudId !== 'string' || e.seq <= snapshotSeq) continue;
      const i = at.get(e.vm.cloudId);
      if (i === undefined) {
        at.set(e.vm.cloudId, vms.length);
        vms.push(e.vm);
      } else {
        vms[i] = e.vm;
      }
      if (e.seq > seq) seq = e.seq;
    }
  }
  return { vms, seq, logged: log !== undefined };
}

/** The snapshot's text: one VM per line, so it stays readable and diffable. */
export function serialize(dataCenter: string, seq: number, vms: readonly SimVm[]): string {
  const head = `{"formatVersion":1,"dataCenter":${JSON.stringify(dataCenter)},"seq":${seq},"vms":[`;
  return vms.length === 0 ? `${head}]}\n` : `${head}\n${vms.map((v) => JSON.stringify(v)).join(',\n')}\n]}\n`;
}
