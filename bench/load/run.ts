// Benchmark of loadStack: 500 fleet documents over 50 files, checked against
// policies/default. Prints figures; asserts nothing about time.
//   npm run bench:load [-- --fleets 500 --files 50 --runs 5]
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { loadStack } from '../../engine/spec/index.ts';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const FLEETS = arg('fleets', 500);
const FILES = arg('files', 50);
const RUNS = arg('runs', 5);

const packDir = fileURLToPath(new URL('../../policies/default', import.meta.url));
const images = ['ubuntu-22.04', 'ubuntu-24.04', 'rhel-9'];
const strategies = ['nearest', 'spread', 'pack'];

function fleetDoc(i: number): string {
  return `apiVersion: fleet/v1
kind: Fleet
metadata:
  name: fleet-${i}
  owner: team-${i % 17}
  labels: { env: ${i % 3 ? 'dev' : 'prod'}, tier: t${i % 5} }
spec:
  count: ${1 + (i % 7)}
  minCount: ${i % 2}
  image: ${images[i % images.length]}
  size: { cpu: ${1 + (i % 8)}, memoryGiB: ${2 * (1 + (i % 8))}, diskGiB: ${20 + (i % 10) * 10} }
  hardware: [general]
  placement:
    dataCenters: [miami, richmond]
    strategy: ${strategies[i % strategies.length]}
    near: ${i % 2 ? 'charlotte' : 'miami'}
  state: ${i % 4 ? 'Running' : 'PoweredOff'}
  encryptedDisk: ${i % 2 === 0}
  protect: ${i % 5 === 0}
`;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'fleet-bench-load-'));
  try {
    await mkdir(join(dir, 'specs'));
    await writeFile(
      join(dir, 'stack.yaml'),
      `apiVersion: fleet/v1
kind: Stack
metadata: { name: bench }
spec:
  specs: ["specs/*.yaml"]
  record: pglite://.fleet/record
  policyPack: { path: ${JSON.stringify(packDir)} }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - { name: miami, address: embedded, location: { lat: 25.7617, lon: -80.1918 }, hardware: [general], capacity: { vms: 5000 } }
    - { name: richmond, address: embedded, location: { lat: 37.5407, lon: -77.4360 }, hardware: [general], capacity: { vms: 5000 } }
`,
    );
    const perFile = Math.ceil(FLEETS / FILES);
    let bytes = 0;
    for (let f = 0; f < FILES; f++) {
      const docs: string[] = [];
      for (let i = f * perFile; i < Math.min(FLEETS, (f + 1) * perFile); i++) docs.push(fleetDoc(i));
      const text = docs.join('---\n');
      bytes += text.length;
      await writeFile(join(dir, 'specs', `fleets-${String(f).padStart(3, '0')}.yaml`), text);
    }

    const times: number[] = [];
    // CPU time too: on a shared machine wall time mostly measures the neighbours.
    const cpus: number[] = [];
    let fleets = 0;
    for (let run = 0; run <= RUNS; run++) {
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      const r = await loadStack(dir, { env: {} });
      const ms = performance.now() - t0;
      const c = process.cpuUsage(c0);
      if (run > 0) cpus.push((c.user + c.system) / 1000);
      if (r.diagnostics.length) throw new Error(`bench stack is invalid: ${r.diagnostics[0].detail}`);
      fleets = r.fleets.length;
      if (run === 0) console.log(`first run (compiles schemas, imports rule modules): ${ms.toFixed(1)} ms`);
      else times.push(ms);
    }
    times.sort((a, b) => a - b);
    cpus.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)];
    const cpuMedian = cpus[Math.floor(cpus.length / 2)];
    console.log(`loadStack: ${fleets} fleets in ${FILES} files (${(bytes / 1024).toFixed(0)} KiB), ${RUNS} runs`);
    console.log(`  median ${median.toFixed(1)} ms   min ${times[0].toFixed(1)} ms   max ${times[times.length - 1].toFixed(1)} ms`);
    console.log(`  CPU (user+system) median ${cpuMedian.toFixed(1)} ms; load average ${loadavg()[0].toFixed(1)} on ${availableParallelism()} cores`);
    console.log(`  ${((median * 1000) / fleets).toFixed(0)} µs per fleet document (wall)`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
