// Opening a simulated data center: one process at a time owns it (a lock on
// its state folder), its state is read back, and a log left behind is folded
// into the snapshot. Also the registry's factory.
import { mkdir } from 'node:fs/promises';
import { FleetError, diag, fsReason } from '../../../engine/diags/index.ts';
import { lockFolder, makePrivate } from '../../../engine/durability/index.ts';
import type { DriverFactory } from '../registry.ts';
import type { SimOptions } from './options.ts';
import { SimDriver } from './sim.ts';
import { readSimState, simLogFile, simStateFile } from './state-file.ts';

/**
 * Opens (or creates) the simulated data center whose VMs live under
 * `stateDir`; a log left behind is compacted first. One process at a time
 * owns a data center (`<stateDir>.lock`): two sims over one folder would each
 * compact their own view over the other's VMs, and VMs would vanish from the
 * cloud while the record still holds them. Another process's open waits up
 * to busyTimeoutMs, then fails with sim.busy naming the holder.
 */
export async function createSimDriver(opts: SimOptions): Promise<SimDriver> {
  const where = { file: opts.stateDir };
  try {
    await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new FleetError(diag('apply.sim-state', `cannot create the state folder of the simulated data center ${opts.dataCenter}: ${fsReason(err)}.`, where));
  }
  // What was there before keeps no looser mode: its state, log and the DMZ client's idempotency log beside them.
  makePrivate(opts.stateDir);
  const release = await lockFolder(opts.stateDir, {
    timeoutMs: opts.busyTimeoutMs ?? 0,
    heldHere: () => {
      throw new FleetError(diag('sim.busy', `the simulated data center ${opts.dataCenter} (${opts.stateDir}) is already open in this process (pid ${process.pid}).`, where));
    },
    busy: (who, lock) => {
      throw new FleetError(
        diag(
          'sim.busy',
          `the simulated data center ${opts.dataCenter} (${opts.stateDir}) is open in ${who}. Wait for it to finish (\`fleet apply --lock-timeout SECONDS\` waits; \`fleet refresh\` and \`fleet import\` wait the stack's apply.lockTimeoutSeconds), or run the data center as one DMZ client (fleet serve dmz-client) that every CLI reaches by URL.${
            lock.elsewhere
              ? ` If that process no longer runs on its host (a machine or container that is gone), remove ${lock.file} and run again.`
              : ` If that pid is no longer that command (its process is gone and the pid reused), remove ${lock.file} and run again.`
          }`,
          where,
        ),
      );
    },
    cannotCreate: (file, err) => {
      throw new FleetError(diag('sim.busy', `cannot create the lock file ${file}: ${err.message}.`, where));
    },
  });
  try {
    const { vms, seq, logged } = await readSimState(opts.stateDir, opts.dataCenter);
    const d = new SimDriver(opts, simStateFile(opts.stateDir, opts.dataCenter), simLogFile(opts.stateDir, opts.dataCenter), vms, seq, release);
    if (logged) await d.compact();
    return d;
  } catch (err) {
    release();
    throw err;
  }
}

// The DMZ client config's readyTimeoutMs is its wait for a boot: the agents' boot window fits inside it, as the aws and azure drivers' do.
export const simDriverFactory: DriverFactory = (ctx) =>
  createSimDriver({
    dataCenter: ctx.dataCenter.name,
    stateDir: ctx.stateDir,
    capacity: ctx.dataCenter.capacity,
    ...(ctx.dataCenter.sim ?? {}),
    ...(ctx.config.readyTimeoutMs !== undefined ? { readyTimeoutMs: ctx.config.readyTimeoutMs } : {}),
    credentialKey: ctx.credentialKey,
  });
