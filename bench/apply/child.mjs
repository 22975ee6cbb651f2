// The `fleet` CLI as bench/apply runs it: exactly what bin/fleet.mjs runs (the
// build in dist/cli when it is fresh, else the sources through tsx's loader),
// started without tsx, as a user's `fleet apply` is, plus a note of the
// process's CPU time written to $FLEET_BENCH_USAGE_FILE at exit: in total,
// and between the apply's `start` and `summary` JSON events (so the loading
// of modules and the planning can be told apart from the apply itself). The
// note's shape is ChildUsage (child.ts).
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { loadMain } from '../../bin/fresh.mjs';

const { main, built } = await loadMain(new URL('../../', import.meta.url));

const mark = () => {
  const c = process.cpuUsage();
  return { user: c.user, system: c.system, at: performance.now() };
};

let start;
let summary;
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, ...rest) => {
  // Progress lines are written a turn's worth at a time: look inside the chunk.
  const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
  if (start === undefined && (text.startsWith('{"type":"start"') || text.includes('\n{"type":"start"'))) start = mark();
  if (text.startsWith('{"type":"summary"') || text.includes('\n{"type":"summary"')) summary = mark();
  return write(chunk, ...rest);
};

const exitCode = await main(process.argv);
process.exitCode = exitCode;
const file = process.env.FLEET_BENCH_USAGE_FILE;
if (file) {
  const out = { exitCode, built, usage: process.resourceUsage(), end: mark(), ...(start ? { start } : {}), ...(summary ? { summary } : {}) };
  writeFileSync(file, JSON.stringify(out));
}
