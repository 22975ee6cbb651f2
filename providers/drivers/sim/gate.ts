// The sim's test gate (SimOptions.gateFile): a file that lets a number of
// changing calls through and holds the rest, unanswered, until it is removed.
// The crash tests kill an apply "after step N" with it: the calls beyond
// those N steps are held, so the apply is certainly still running, mid-call,
// when the kill lands (without it a loaded machine let the apply end on its
// own first, and the kill point proved nothing). Several data centers (two
// sims in one CLI process) share one file, so the count is the apply's, not
// a data center's.
import { closeSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';

/** What the gate says of one call: go on; hold it before it acts; or let it act and hold its answer. */
export type GateTurn = 'go' | 'hold' | 'hold-answer';

interface Gate {
  calls: number;
  acted?: boolean;
}

/**
 * Takes one call from the gate file: `go` while the file is absent or has
 * calls left (one is taken), else `hold` or, with `acted`, `hold-answer`.
 * Synchronous, so two sims of one process never take the same call. The file
 * is opened, never created: a call racing its removal does not bring it back.
 */
export function takeTurn(file: string, dataCenter: string): GateTurn {
  let fd: number;
  try {
    fd = openSync(file, 'r+');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'go';
    throw err;
  }
  try {
    const buf = Buffer.alloc(4096);
    const text = buf.subarray(0, readSync(fd, buf, 0, buf.length, 0)).toString('utf8');
    let gate: Gate;
    try {
      gate = JSON.parse(text) as Gate;
    } catch {
      gate = { calls: Number.NaN };
    }
    if (!Number.isInteger(gate.calls) || gate.calls < 0) {
      throw new Error(`sim ${dataCenter}: the gate file ${file} (sim.gateFile) holds ${JSON.stringify(text.slice(0, 80))}, not {"calls": N} with N a whole number of 0 or more: write it so, or remove it to let every call through.`);
    }
    if (gate.calls === 0) return gate.acted === true ? 'hold-answer' : 'hold';
    const next = Buffer.from(JSON.stringify({ ...gate, calls: gate.calls - 1 }));
    ftruncateSync(fd, 0);
    writeSync(fd, next, 0, next.length, 0);
    return 'go';
  } finally {
    closeSync(fd);
  }
}
