// Each service's GET /metrics exports its own metric families (and Node's
// process ones), and docs/operations.md's table says which service exports
// which. Before, createMetrics registered every family in every registry: the
// authority exported fleet_step_duration_seconds (a DMZ client's) and each DMZ
// client fleet_authority_decisions_total and fleet_boot_requests_total (the
// authority's), always empty, so a dashboard summing them by service, or an
// alert on "absent", read series that could never move.
//
// Over the real services: an authority and a sim data center's DMZ client.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestWorld, type TestWorld } from '../../providers/testing.ts';

let world: TestWorld;
beforeAll(async () => {
  world = await startTestWorld({ dataCenters: ['miami'] });
}, 120_000);
afterAll(() => world?.close());

/** The metric families a /metrics text declares (`# TYPE name type`), but Node's process ones (fleet_process_*, fleet_nodejs_*). */
async function families(url: string): Promise<string[]> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]).filter((n) => !/^fleet_(process|nodejs)_/.test(n)).sort();
}

/** docs/operations.md's metrics table: each row's metric and the services its `service` column names. */
function documented(): Map<string, string[]> {
  const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'operations.md'), 'utf8');
  const table = doc.slice(doc.indexOf('| metric | service |'));
  const rows = [...table.matchAll(/^\| `(fleet_[a-z_]+)` \| ([^|]+) \|/gm)];
  return new Map(rows.map((r) => [r[1], r[2].split(',').map((s) => s.trim().replace(/`/g, ''))]));
}

describe('GET /metrics: each service its own families', () => {
  it.each([
    { service: 'authority', url: () => world.authority.url },
    { service: 'dmz-client', url: () => world.dc('miami').dmz.url },
  ])('$service exports its own families only, as docs/operations.md lists them', async ({ service, url }) => {
    const docs = documented();
    expect(docs.size).toBeGreaterThan(0);
    const want = [...docs].filter(([, services]) => services.includes(service)).map(([name]) => name).sort();
    expect(await families(url())).toEqual(want);
  });
});
