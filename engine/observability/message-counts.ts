// Messages per kind, counted for bench:apply (issue 20 point 6: what a VM
// costs is its messages on each hop). Off unless FLEET_MESSAGE_COUNTS names
// a directory: then every process that loads this module (the CLI, the
// authority, each DMZ client) counts what it sends and receives by kind and
// writes its counts to DIR/<pid>.json every half second and at exit, for the
// bench to read (bench/apply/run.ts, "messages"). Off, a count is one test
// of a constant: nothing is kept, no timer runs, nothing is written.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const DIR = process.env.FLEET_MESSAGE_COUNTS;

/** Whether messages are counted in this process (FLEET_MESSAGE_COUNTS is set). Callers test it before counting. */
export const COUNTING = DIR !== undefined && DIR !== '';

const counts = new Map<string, number>();

/** Adds `n` messages of `kind` (a hop and what goes over it, e.g. `dmz->authority call report`). Only when COUNTING. */
export function countMessage(kind: string, n = 1): void {
  counts.set(kind, (counts.get(kind) ?? 0) + n);
}

function save(): void {
  try {
    writeFileSync(join(DIR as string, `${process.pid}.json`), JSON.stringify(Object.fromEntries(counts)), { mode: 0o600 });
  } catch {
    // A bench's instrument: a directory gone (the bench cleaned up) is no error of the process counted.
  }
}

if (COUNTING) {
  setInterval(save, 500).unref();
  process.on('exit', save);
}
