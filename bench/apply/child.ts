// The `fleet` CLI as bench/apply runs it: the same `main` that bin/fleet.mjs
// runs (start it with `node --import tsx bench/apply/child.ts ARGS`), plus a
// note of the process's CPU time written to $FLEET_BENCH_USAGE_FILE at exit:
// in total, and between the apply's `start` and `summary` JSON events (so the
// loading of modules and the planning can be told apart from the apply itself).
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { main } from '../../engine/cli/main.ts';

export interface Mark {
  /** process.cpuUsage(), microseconds. */
  user: number;
  system: number;
  /** performance.now(), ms since the process started. */
  at: number;
}

export interface ChildUsage {
  exitCode: number;
  usage: NodeJS.ResourceUsage;
  start?: Mark;
  summary?: Mark;
  end: Mark;
}

const mark = (): Mark => {
  const c = process.cpuUsage();
  return { user: c.user, system: c.system, at: performance.now() };
};

let start: Mark | undefined;
let summary: Mark | undefined;
const write = process.stdout.write.bind(process.stdout) as (chunk: string | Uint8Array, ...rest: unknown[]) => boolean;
const spy = (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
  // Progress lines are written a turn's worth at a time: look inside the chunk.
  const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
  if (start === undefined && (text.startsWith('{"type":"start"') || text.includes('\n{"type":"start"'))) start = mark();
  if (text.startsWith('{"type":"summary"') || text.includes('\n{"type":"summary"')) summary = mark();
  return write(chunk, ...rest);
};
process.stdout.write = spy as typeof process.stdout.write;

const exitCode = await main(process.argv);
process.exitCode = exitCode;
const file = process.env.FLEET_BENCH_USAGE_FILE;
if (file) {
  const out: ChildUsage = { exitCode, usage: process.resourceUsage(), end: mark(), ...(start ? { start } : {}), ...(summary ? { summary } : {}) };
  writeFileSync(file, JSON.stringify(out));
}
