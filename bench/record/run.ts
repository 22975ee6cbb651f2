// Record benchmark: seed 100,000 VMs of one stack (500 fleets of 200), read
// them all back with listVms, and read one fleet of 200. Prints figures for
// PGlite, and for PostgreSQL when FLEET_TEST_POSTGRES_URL or --pg URL is set.
//
//   npm run bench:record [-- --count 100000] [-- --pg postgres://postgres@127.0.0.1:5432/postgres]
//
// Not part of the test run; nothing here asserts a time.
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openRecord, type NewVm } from '../../engine/record/index.ts';
import { createTestDatabase } from '../../engine/record/testing.ts';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '100000' },
    'fleet-size': { type: 'string', default: '200' },
    pg: { type: 'string' },
    reads: { type: 'string', default: '5' },
  },
});
const count = Number(values.count);
const fleetSize = Number(values['fleet-size']);
const reads = Number(values.reads);
const pgUrl = values.pg ?? process.env.FLEET_TEST_POSTGRES_URL;
const STACK = 'bench';

function vms(): NewVm[] {
  const out: NewVm[] = [];
  for (let i = 0; i < count; i++) {
    const f = Math.floor(i / fleetSize);
    out.push({
      stack: STACK,
      fleet: `fleet-${String(f).padStart(4, '0')}`,
      owner: `team-${f % 17}`,
      index: i % fleetSize,
      dataCenter: ['miami', 'richmond', 'atlanta'][i % 3],
      state: 'Running',
      desiredState: 'Running',
      specHash: `sha256:${f.toString(16).padStart(8, '0')}`,
      image: 'ubuntu-22.04',
      realImage: 'ami-0abc',
      size: { cpu: 4, memoryGiB: 16, diskGiB: 100 },
      encryptedDisk: true,
    });
  }
  return out;
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const fmt = (x: number) => `${x.toFixed(0).padStart(7)} ms`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function bench(name: string, url: string): Promise<void> {
  let t0 = process.hrtime.bigint();
  const record = await openRecord(url);
  const open = ms(t0);
  try {
    const seed = vms();
    t0 = process.hrtime.bigint();
    await record.bulkInsertVms(seed, { actor: 'bench' });
    const write = ms(t0);

    // CPU time of this process as well as wall time: on a shared, loaded machine
    // the wall figure mostly measures the wait for a core. PGlite runs in this
    // process, so its CPU figure is the work itself; for PostgreSQL it is only the client's share.
    const all: number[] = [];
    const allCpu: number[] = [];
    let n = 0;
    for (let i = 0; i < reads; i++) {
      const c0 = process.cpuUsage();
      t0 = process.hrtime.bigint();
      n = (await record.listVms(STACK)).length;
      all.push(ms(t0));
      const c = process.cpuUsage(c0);
      allCpu.push((c.user + c.system) / 1000);
    }
    const one: number[] = [];
    const fleet = `fleet-${String(Math.floor(count / fleetSize / 2)).padStart(4, '0')}`;
    let m = 0;
    for (let i = 0; i < reads; i++) {
      t0 = process.hrtime.bigint();
      m = (await record.listVms(STACK, { fleets: [fleet] })).length;
      one.push(ms(t0));
    }
    // The stale-plan check of a plan over that fleet (apply's first read).
    const members = await record.listVms(STACK, { fleets: [fleet] });
    const [fleetRow] = await record.listFleets(STACK, [fleet]);
    const basis = { vms: Object.fromEntries(members.map((v) => [v.id, v.version])), fleets: { [fleet]: fleetRow.version } };
    t0 = process.hrtime.bigint();
    const stale = (await record.checkBasis(STACK, basis)).length;
    const check = ms(t0);

    console.log(`${name}`);
    console.log(`  open + migrate               ${fmt(open)}`);
    console.log(`  write ${count} VMs (bulk)    ${fmt(write)}   ${((count / write) * 1000).toFixed(0)} VMs/s`);
    console.log(`  listVms all (${n})       ${fmt(median(all))}   median of ${reads}, first ${all[0].toFixed(0)} ms, best ${Math.min(...all).toFixed(0)} ms`);
    console.log(`  listVms all, process CPU     ${fmt(median(allCpu))}   median of ${reads}, best ${Math.min(...allCpu).toFixed(0)} ms`);
    console.log(`  listVms one fleet (${m})    ${fmt(median(one))}   median of ${reads}`);
    console.log(`  checkBasis one fleet         ${fmt(check)}   ${stale} stale`);
  } finally {
    await record.close();
  }
}

console.log(`load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} on ${cpus().length} cores`);
const dir = await mkdtemp(join(tmpdir(), 'fleet-bench-record-'));
try {
  await bench('PGlite', `pglite://${join(dir, 'record')}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
if (pgUrl) {
  const db = await createTestDatabase(pgUrl);
  try {
    await bench('PostgreSQL', db.url);
  } finally {
    await db.drop();
  }
} else {
  console.log('PostgreSQL: skipped (set FLEET_TEST_POSTGRES_URL or pass --pg URL)');
}
