// Parse time of one mapping of many keys (nothing here asserts a time): a
// fleet file with 20,000 labels, read by the stack and fleet spec reader
// (engine/spec/yaml.ts) and the policy pack reader (engine/policy/yamlpos.ts),
// without and with a key given twice (at key 19,999), and with every key given
// twice. The yaml package's own duplicate check (uniqueKeys: true) was
// quadratic in a mapping's keys, and wording each key given twice walked the
// whole document.
//
//   npx tsx bench/yaml/run.ts [--keys 20000] [--runs 3] [--root DIR]
//
// --root DIR reads with the sources of another checkout (to compare with an
// older commit). Median of --runs, in seconds.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { keys: { type: 'string', default: '20000' }, runs: { type: 'string', default: '3' }, root: { type: 'string' } } });
const keys = Number(values.keys);
const runs = Number(values.runs);
const root = resolve(values.root ?? '.');
const spec = (await import(pathToFileURL(`${root}/engine/spec/yaml.ts`).href)) as { parseYaml: (text: string, file: string) => { diagnostics: unknown[] } };
const policy = (await import(pathToFileURL(`${root}/engine/policy/yamlpos.ts`).href)) as { parseYaml: (text: string, file: string) => { errors: unknown[] } };

const labels = (dup: boolean): string => `labels:\n${Array.from({ length: keys }, (_, i) => `  ${dup && i === keys - 2 ? 'k6' : `k${i}`}: v\n`).join('')}`;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
function time(name: string, f: () => number): void {
  const secs: number[] = [];
  let found = 0;
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    found = f();
    secs.push((performance.now() - t) / 1000);
  }
  console.log(`${name.padEnd(44)} ${median(secs).toFixed(3)} s  (${found} diagnostics)`);
}
console.log(`root ${root}, ${keys} keys, median of ${runs}`);
for (const dup of [false, true]) {
  const text = labels(dup);
  time(`spec reader, ${dup ? 'a key twice' : 'no key twice'}`, () => spec.parseYaml(text, 'f.yaml').diagnostics.length);
  time(`policy reader, ${dup ? 'a key twice' : 'no key twice'}`, () => policy.parseYaml(text, 'f.yaml').errors.length);
}
// Every key twice (keys/2 of them): each was worded by a walk of the whole document.
const twice = `labels:\n${Array.from({ length: keys }, (_, i) => `  k${i % (keys / 2)}: v\n`).join('')}`;
time('spec reader, every key twice', () => spec.parseYaml(twice, 'f.yaml').diagnostics.length);
