// What bench/apply/child.mjs (the `fleet` CLI as bench/apply runs it: what
// bin/fleet.mjs runs, started without tsx) writes to $FLEET_BENCH_USAGE_FILE
// at exit: the process's CPU time in total, and between the apply's `start`
// and `summary` JSON events.

export interface Mark {
  /** process.cpuUsage(), microseconds. */
  user: number;
  system: number;
  /** performance.now(), ms since the process started. */
  at: number;
}

export interface ChildUsage {
  exitCode: number;
  /** Whether the CLI ran the build in dist/cli (fresh), not the sources through tsx. */
  built: boolean;
  usage: NodeJS.ResourceUsage;
  start?: Mark;
  summary?: Mark;
  end: Mark;
}
