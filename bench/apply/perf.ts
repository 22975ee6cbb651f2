// bench:apply --perf: where each process's CPU goes, on-CPU, from Linux
// perf (`perf record -e cpu-clock -a` over the measured apply, then `perf
// script`): a V8 --cpu-prof samples wall time on the main thread only, so it
// shows neither V8's compiler and GC threads nor the kernel, and counts a
// preempted syscall as busy. Each sample is put in one of the groups below
// by its thread and symbol (no call stacks: builtins and V8's runtime are
// not split by the JavaScript that called them; --cpu-prof does that).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/** The groups, in the order they are printed. */
const GROUPS = [
  'JS code', // optimized and baseline code (no perf map: unnamed, so one group)
  'builtins', // V8's builtins: the interpreter's handlers, property access, promises, Map...
  'V8 runtime', // v8::internal outside GC, compiler and JSON
  'JSON',
  'GC', // on the main thread
  'native', // node, libuv, libc, OpenSSL on the main thread
  'kernel', // system calls on the main thread (loopback TCP, files, wake-ups)
  'compiler threads', // TurboFan's concurrent jobs
  'GC threads', // V8's concurrent marking and parallel scavenging
  'other threads', // libuv's pool (crypto, fs), node's platform workers
] as const;
type Group = (typeof GROUPS)[number];

const GC = /Scaveng|Mark|Sweep|Evacuat|Heap|heap::|Concurrent|Remembered|SlotSet|MemoryChunk|Compactor/;
const COMPILER = /compiler::|Compil|Zone|Turboshaft|maglev|Pipeline/;

/** The group of one sample: its process and thread ids, its symbol and the object it is in. */
export function groupOf(pid: number, tid: number, sym: string, dso: string): Group {
  if (tid !== pid) {
    if (COMPILER.test(sym)) return 'compiler threads';
    if (GC.test(sym)) return 'GC threads';
    return 'other threads';
  }
  if (dso.includes('kernel')) return 'kernel';
  if (sym.startsWith('Builtins_')) return 'builtins';
  if (sym.startsWith('JS:') || sym.startsWith('RegExp:') || dso === '[unknown]' || /perf-\d+\.map|JIT/.test(dso)) return 'JS code';
  if (sym.includes('Json')) return 'JSON';
  if (GC.test(sym)) return 'GC';
  if (COMPILER.test(sym)) return 'compiler threads'; // the main thread's share of a compile job: rare
  if (sym.startsWith('v8::')) return 'V8 runtime';
  return 'native';
}

/** Whether `perf record` can sample every CPU here (perf installed, and allowed to). */
export function perfAvailable(): string | undefined {
  const v = spawnSync('perf', ['record', '-q', '-e', 'cpu-clock', '-a', '-o', '/dev/null', '--', 'true'], { encoding: 'utf8' });
  if (v.error) return `perf is not installed (${v.error.message}); Debian's linux-perf has it`;
  if (v.status !== 0) return `perf record -a failed: ${(v.stderr || '').trim().split('\n')[0] || `exit ${v.status}`}`;
  return undefined;
}

/** Starts sampling every CPU into `file`; resolves once perf is recording. */
export async function startPerf(file: string): Promise<ChildProcess> {
  const child = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-a', '-o', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  // perf needs a moment to open its events on every CPU; it says nothing when ready, so give it one.
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, 300);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`perf record exited ${code}: ${err.trim()}`));
    });
  });
  return child;
}

/** Stops perf (SIGINT: it writes its file and exits). */
export async function stopPerf(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGINT');
  await exited;
}

export interface ProcessCpu {
  name: string;
  samples: number;
  groups: Map<Group, number>;
}

/** The samples of the named processes in `file`, grouped (perf script, streamed). */
export async function perfBreakdown(file: string, names: ReadonlyMap<number, string>): Promise<ProcessCpu[]> {
  const out = new Map<number, ProcessCpu>([...names].map(([pid, name]) => [pid, { name, samples: 0, groups: new Map() }]));
  const child = spawn('perf', ['script', '-i', file, '-F', 'pid,tid,ip,sym,dso'], { stdio: ['ignore', 'pipe', 'ignore'] });
  // "  1234/1240   7f00deadbeef Builtins_LoadIC (/usr/bin/node)"
  const line = /^\s*(\d+)\/(\d+)\s+\S+\s+(.*?)\s*\(([^()]*)\)\s*$/;
  for await (const text of createInterface({ input: child.stdout! })) {
    const m = line.exec(text);
    if (!m) continue;
    const p = out.get(Number(m[1]));
    if (!p) continue;
    const g = groupOf(Number(m[1]), Number(m[2]), m[3], m[4]);
    p.samples++;
    p.groups.set(g, (p.groups.get(g) ?? 0) + 1);
  }
  return [...out.values()];
}

/** One line per process: its share in each group (the groups under 1% left out). */
export function formatBreakdown(ps: readonly ProcessCpu[]): string[] {
  const width = Math.max(...ps.map((p) => p.name.length));
  return ps.map((p) => {
    const parts = GROUPS.filter((g) => (p.groups.get(g) ?? 0) / Math.max(1, p.samples) >= 0.01).map((g) => `${g} ${((100 * (p.groups.get(g) ?? 0)) / p.samples).toFixed(0)}%`);
    return `${p.name.padEnd(width)}  ${p.samples} samples: ${parts.join(', ') || 'none'}`;
  });
}
