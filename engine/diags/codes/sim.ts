import { defineCodes } from './types.ts';

// Diagnostic codes of the simulated data center (providers/drivers/sim).
export const simCodes = defineCodes({
  'sim.busy': {
    summary: 'Simulated data center in use',
    doc: 'An embedded simulated data center is owned by one process at a time (its state folder is locked), so two CLIs never overwrite each other\'s VMs. The detail names the process that has it. Wait for it (`fleet apply --lock-timeout SECONDS` waits that long; `fleet refresh` and `fleet import`, which have no such option, wait the stack\'s `apply.lockTimeoutSeconds`), or run the data center once with `fleet serve dmz-client` and give its URL as the data center\'s address. A holder of this host that is gone (or whose pid is this process\'s: one before it had it) is taken over; one of another host, or a pid another program took since, is not: once it is known gone, remove the lock file the detail names.',
    severity: 'error',
  },
});
