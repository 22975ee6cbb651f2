// Overview benchmark (not part of the test run; nothing here asserts a
// time): what a load of the dashboard overview (FleetRecord.countVmsPage)
// costs on PostgreSQL as a stack's vm_usage grows, at 10,000, 190,000 and
// 990,000 rows by default (1,000, 19,000 and 99,000 fleets over 10 data
// centers, one live VM each, states spread).
//
// Each size gets a fresh database (fleet_test_<random>, dropped at the end)
// made a record by openRecord (the migrations, so the triggers that keep
// vm_usage), then its VMs are inserted in raw INSERT … SELECT FROM
// generate_series statements of 10,000 fleets (the triggers fill vm_usage
// as for any write; 990,000 VMs in ~20 s, where bulkInsertVms with its
// history rows would take minutes) and the database is VACUUM ANALYZEd.
// Printed, each the median of --runs loads (wall time in this process,
// parsing included):
//   - totals read: a load whose totals are read (a record that keeps none,
//     overviewCacheMs 0), page 1 and the last page of 200 fleets;
//   - totals kept: a load within OVERVIEW_CACHE_MS of the last with no VM
//     write between (the page's counts only), page 1 and the last page.
//
//   npm run bench:overview [-- --fleets 1000,19000,99000] [-- --runs 5] [-- --pg URL]
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { openPostgres } from '../../engine/record/postgres.ts';
import { openRecord } from '../../engine/record/index.ts';
import { sqlRecord } from '../../engine/record/record.ts';
import { createTestDatabase } from '../../engine/record/testing.ts';

const { values } = parseArgs({
  options: {
    fleets: { type: 'string', default: '1000,19000,99000' },
    dcs: { type: 'string', default: '10' },
    runs: { type: 'string', default: '5' },
    pg: { type: 'string' },
  },
});
const pgUrl = values.pg ?? process.env.FLEET_TEST_POSTGRES_URL;
const DCS = Number(values.dcs);
const RUNS = Number(values.runs);
const PAGE = 200;
const STACK = 'bench';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs: number[]) => `${median(xs).toFixed(1).padStart(8)} ms (best ${Math.min(...xs).toFixed(1)})`;

async function seed(url: string, fleets: number): Promise<number> {
  await (await openRecord(url)).close();
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const t0 = performance.now();
    for (let f0 = 0; f0 < fleets; f0 += 10_000) {
      await c.query(
        `INSERT INTO vms (id, stack, fleet, idx, name, data_center, state, desired_state, spec_hash, image, cpu, memory_gib, disk_gib, encrypted_disk)
         SELECT f || '-' || d, $1, 'fleet-' || lpad(f::text, 6, '0'), d, 'vm-' || f || '-' || d, 'dc-' || lpad(d::text, 2, '0'),
           (ARRAY['Running', 'Stopped', 'Provisioning'])[1 + (f + d) % 3], 'Running', 'h', 'img', 2, 4, 10, true
         FROM generate_series($2::int, $3::int - 1) f, generate_series(0, $4::int - 1) d`,
        [STACK, f0, Math.min(fleets, f0 + 10_000), DCS],
      );
    }
    await c.query('VACUUM ANALYZE');
    return performance.now() - t0;
  } finally {
    await c.end();
  }
}

async function measure(url: string, fleets: number): Promise<void> {
  const seeded = await seed(url, fleets);
  const lastPage = Math.max(0, Math.ceil(fleets / PAGE) - 1) * PAGE;
  const read = sqlRecord(await openPostgres(url, url), url, { overviewCacheMs: 0 });
  const kept = sqlRecord(await openPostgres(url, url), url);
  try {
    const rows = (await read.countVmsPage(STACK, { offset: 0, limit: PAGE })).fleets * DCS;
    const times: Record<string, number[]> = {};
    const time = async (name: string, f: () => Promise<unknown>) => {
      const t0 = performance.now();
      await f();
      (times[name] ??= []).push(performance.now() - t0);
    };
    await kept.countVmsPage(STACK, { offset: 0, limit: PAGE });
    for (let i = 0; i < RUNS; i++) {
      await time('totals read, page 1', () => read.countVmsPage(STACK, { offset: 0, limit: PAGE }));
      await time('totals read, last page', () => read.countVmsPage(STACK, { offset: lastPage, limit: PAGE }));
      await time('totals kept, page 1', () => kept.countVmsPage(STACK, { offset: 0, limit: PAGE }));
      await time('totals kept, last page', () => kept.countVmsPage(STACK, { offset: lastPage, limit: PAGE }));
    }
    console.log(`${fleets.toLocaleString('en-US')} fleets x ${DCS} data centers: ${rows.toLocaleString('en-US')} vm_usage rows (seeded in ${(seeded / 1000).toFixed(1)} s)`);
    for (const [name, xs] of Object.entries(times)) console.log(`  ${name.padEnd(24)} ${fmt(xs)}   median of ${RUNS}`);
  } finally {
    await read.close();
    await kept.close();
  }
}

if (!pgUrl) {
  console.log('PostgreSQL: skipped (set FLEET_TEST_POSTGRES_URL or pass --pg URL)');
} else {
  console.log(`load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} on ${cpus().length} cores`);
  for (const fleets of values.fleets.split(',').map(Number)) {
    const db = await createTestDatabase(pgUrl);
    try {
      await measure(db.url, fleets);
    } finally {
      await db.drop();
    }
  }
}
