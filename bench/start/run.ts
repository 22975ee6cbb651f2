// Start-up and embedded-apply benchmark (issue 20, points 1 and 5; nothing
// here asserts a time). Each command runs as its own `node` process, the way
// a person runs it, timed by /usr/bin/time when there is one (wall, user +
// sys CPU, peak RSS; wall only otherwise):
//
//   node -e 0                                   the floor: Node's own start
//   fleet --version                             commander and the CLI's entry only
//   fleet validate --stack stacks/local         the loader: YAML, specs, policy pack
//   fleet apply --yes --stack <copy of stacks/local>, first on an empty
//     record (7 creates; authority, 2 DMZ clients and PGlite in the CLI
//     process), then once more (nothing to do)
//
// Median of --runs (default 5; the applies 3), and the load average at the
// start and the end: the machine is shared, so compare figures of one run.
//
//   npm run bench:start [-- --runs 5] [-- --no-apply] [-- --root DIR] [-- --node-arg FLAG ...]
//
// --root DIR runs the `fleet` of another checkout (its bin/fleet.mjs, its
// stacks/local, specs and policies), to compare with an older commit.
// --node-arg FLAG (repeatable) gives FLAG to every `node` it starts.
//
// At c413013 on a quiet machine (2026-12-02 ~16:50, load average 1.2): node
// -e 0 0.062 s; --version 0.097 s; validate 0.178 s, 60 MiB (target <= 0.25 s
// met); apply of the 7 creates 1.89 s, peak RSS 207 MiB (target <= 300 MiB
// met); apply with nothing to do 0.99 s, 196 MiB.
// At 900deb6 (2026-12-05 03:04, load average 0.1-0.6, a slower machine: speed
// 72 ms against 32-35 then), with --root of a checkout before 6eb2296 (the
// services' request validators compiled ahead, not at every start) after it:
// validate 0.252 s (0.256 before); apply of the 7 creates 1.97 s wall, 2.26 s
// CPU, 188 MiB (before: 2.73 s, 3.22 s, 207 MiB); nothing to do 1.06 s, 1.28 s
// CPU, 174 MiB (before: 1.26 s, 1.62 s, 199 MiB).
// At 5439d68 (2026-12-06 16:28, load average 14-16 on the 2 cores: wall
// times about doubled, compare CPU), an installed package (npm pack, npm
// install -g; --root its lib/node_modules/dmzfleet) with and without the
// verified stat (bin/fresh.mjs), 41 runs interleaved: --version 107 -> 98 ms
// of CPU, validate 201 -> 190 ms; the freshness check alone 17.8 -> 6.0 ms of
// CPU, 55 -> 21 ms wall (it hashed all 232 sources at every start before).
// At babb1ab (2026-12-06 16:00, load average 3.0 at the start, speed 50 ms):
// --version 0.097 s; validate 0.177 s, 60 MiB (target met); apply of the 7
// creates 1.65 s (CPU 1.87 s), 193 MiB (met); nothing to do 0.84 s, 176 MiB.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdtemp, rm, symlink } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { machineSpeedLine } from '../speed.ts';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '5' }, 'no-apply': { type: 'boolean', default: false }, root: { type: 'string' }, 'node-arg': { type: 'string', multiple: true } },
});
/** --node-arg FLAG (repeatable): given to every `node` it starts, e.g. a V8 flag to weigh. */
const NODE_ARGS = values['node-arg'] ?? [];
const ROOT = values.root ? resolve(values.root) : resolve(import.meta.dirname, '..', '..');
const FLEET = join(ROOT, 'bin', 'fleet.mjs');
const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
const RUNS = Math.max(1, Number(values.runs));

interface Figures {
  wallMs: number;
  cpuS?: number;
  rssMiB?: number;
  code: number;
}

/** Runs `node ARGS` in `cwd` once; its figures from /usr/bin/time's report (a temp file, so the command's own output is left alone). */
async function once(args: string[], cwd = ROOT): Promise<Figures> {
  const report = join(tmpdir(), `fleet-bench-start-${process.pid}-${Math.random().toString(36).slice(2)}.txt`);
  const cmd = [...(TIME ? [TIME, '-o', report, '-f', '%U %S %M'] : []), process.execPath, ...NODE_ARGS, ...args];
  const t0 = performance.now();
  let stderr = '';
  const code = await new Promise<number>((res, rej) => {
    const child = spawn(cmd[0], cmd.slice(1), { cwd, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', rej);
    child.on('exit', (c) => res(c ?? 1));
  });
  // Progress lines are not shown; a failure's output is.
  if (code !== 0) console.error(stderr.slice(-4000));
  const wallMs = performance.now() - t0;
  if (!TIME) return { wallMs, code };
  const [user, sys, rssKb] = readFileSync(report, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  await rm(report, { force: true });
  return { wallMs, cpuS: user + sys, rssMiB: rssKb / 1024, code };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function line(label: string, runs: Figures[]): void {
  const failed = runs.filter((r) => r.code !== 0).length;
  const w = median(runs.map((r) => r.wallMs));
  const parts = [`wall ${(w / 1000).toFixed(3)} s`];
  if (runs[0].cpuS !== undefined) parts.push(`CPU ${median(runs.map((r) => r.cpuS!)).toFixed(2)} s`, `peak RSS ${median(runs.map((r) => r.rssMiB!)).toFixed(0)} MiB (max ${Math.max(...runs.map((r) => r.rssMiB!)).toFixed(0)})`);
  console.log(`  ${label.padEnd(44)} ${parts.join(', ')}   median of ${runs.length}${failed ? `, ${failed} FAILED` : ''}`);
}

const la = () => loadavg().map((x) => x.toFixed(2)).join(' ');
console.log(`bench:start: ${ROOT}; load average ${la()} (start)${TIME ? '' : '; /usr/bin/time not found: wall time only'}${NODE_ARGS.length ? `; node ${NODE_ARGS.join(' ')}` : ''}`);
console.log(`  ${machineSpeedLine()}`);

const series = async (label: string, args: string[], n: number, cwd = ROOT, before?: () => Promise<void>) => {
  const runs: Figures[] = [];
  for (let i = 0; i < n; i++) {
    await before?.();
    runs.push(await once(args, cwd));
  }
  line(label, runs);
};

await series('node -e 0', ['-e', '0'], RUNS);
await series('fleet --version', [FLEET, '--version'], RUNS);
await series('fleet validate --stack stacks/local', [FLEET, 'validate', '--stack', 'stacks/local'], RUNS);

if (!values['no-apply']) {
  // A copy of stacks/local (its globs and pack path reach ../../specs and ../../policies).
  const dir = await mkdtemp(join(tmpdir(), 'fleet-bench-start-'));
  try {
    await cp(join(ROOT, 'stacks', 'local', 'stack.yaml'), join(dir, 'stacks', 'local', 'stack.yaml'), { recursive: true });
    await symlink(join(ROOT, 'specs'), join(dir, 'specs'));
    await symlink(join(ROOT, 'policies'), join(dir, 'policies'));
    const stack = join(dir, 'stacks', 'local');
    const fresh = () => rm(join(stack, '.fleet'), { recursive: true, force: true });
    const applies = Math.min(RUNS, 3);
    await series('fleet apply --yes (7 creates, empty record)', [FLEET, 'apply', '--yes', '--stack', 'stacks/local'], applies, dir, fresh);
    await series('fleet apply --yes (nothing to do)', [FLEET, 'apply', '--yes', '--stack', 'stacks/local'], applies, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
console.log(`  load average ${la()} (end); targets: validate <= 0.25 s wall, apply peak RSS <= 300 MiB`);
