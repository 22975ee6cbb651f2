// JIT churn of one process, from V8's --trace-opt / --trace-deopt lines (a
// service's log kept by bench:apply's FLEET_BENCH_LOG_DIR, or the CLI's
// apply.out.jsonl kept by --keep): TurboFan compiles and deopts per
// function, the compile time each took (the compiler thread's wall time,
// which a loaded machine stretches), and the share of it spent compiling a
// function again. Anonymous functions are told apart by their
// SharedFunctionInfo address; --trace-deopt-verbose adds each bailout's
// source position (dist/cli/chunk-*.js: the build's names are the
// sources').
//
//   npx tsx bench/apply/jit.ts LOG [--top N]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Fn {
  compiles: number;
  ms: number;
  deopts: Map<string, number>;
}

const COMPILED = /\[completed compiling 0x[0-9a-f]+ <JSFunction (.*?) \(sfi = (0x[0-9a-f]+)\)> \(target (\w+)\)(?: OSR)?(?: - took ([\d.]+), ([\d.]+), ([\d.]+) ms)?/;
const BAILOUT = /\[bailout \(kind: ([\w-]+), reason: (.*?)\): begin\. deoptimizing 0x[0-9a-f]+ <JSFunction (.*?) \(sfi = (0x[0-9a-f]+)\)>.*?bytecode offset (\d+)/;

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
if (positionals.length !== 1) {
  console.error('usage: npx tsx bench/apply/jit.ts LOG [--top N]');
  process.exit(2);
}
const fns = new Map<string, Fn>();
const fn = (name: string, sfi: string): Fn => {
  const key = `${name || '(anonymous)'} ${sfi}`;
  let f = fns.get(key);
  if (!f) fns.set(key, (f = { compiles: 0, ms: 0, deopts: new Map() }));
  return f;
};
for (const line of readFileSync(positionals[0], 'utf8').split('\n')) {
  const c = COMPILED.exec(line);
  if (c && c[3] === 'TURBOFAN') {
    const f = fn(c[1], c[2]);
    f.compiles++;
    f.ms += c[4] === undefined ? 0 : Number(c[4]) + Number(c[5]) + Number(c[6]);
    continue;
  }
  const b = BAILOUT.exec(line);
  if (b) {
    const d = fn(b[3], b[4]).deopts;
    const why = `${b[1]}: ${b[2]} @${b[5]}`;
    d.set(why, (d.get(why) ?? 0) + 1);
  }
}
const all = [...fns].filter(([, f]) => f.compiles > 0);
const total = all.reduce((s, [, f]) => s + f.ms, 0);
const again = all.reduce((s, [, f]) => s + (f.ms * (f.compiles - 1)) / f.compiles, 0);
const deopts = [...fns.values()].reduce((s, f) => s + [...f.deopts.values()].reduce((a, n) => a + n, 0), 0);
console.log(`${all.length} functions, ${all.reduce((s, [, f]) => s + f.compiles, 0)} TurboFan compiles, ${total.toFixed(0)} ms; ${deopts} deopts`);
console.log(`compiled again: ${again.toFixed(0)} ms (${total > 0 ? ((100 * again) / total).toFixed(1) : 0}% of the compile time)`);
const top = Number(values.top);
const show = (title: string, rows: [string, Fn][]) => {
  console.log(`\n${title}`);
  for (const [key, f] of rows.slice(0, top)) {
    const why = [...f.deopts].map(([w, n]) => (n > 1 ? `${w} x${n}` : w)).join('; ');
    console.log(`  ${String(f.compiles).padStart(2)}x ${f.ms.toFixed(1).padStart(8)} ms  ${key}${why ? `  [${why}]` : ''}`);
  }
};
show('compiled more than once', all.filter(([, f]) => f.compiles > 1).sort((a, b) => b[1].compiles - a[1].compiles || b[1].ms - a[1].ms));
show('most compile time', [...all].sort((a, b) => b[1].ms - a[1].ms));
