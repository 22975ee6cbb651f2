// stacks/hybrid (one AWS and one Azure data center by URL) validates and
// plans; the driver and instance-type catalog checks point at the node at fault.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';

const HYBRID = resolve(import.meta.dirname, '..', 'stacks', 'hybrid');

describe('stacks/hybrid', () => {
  let tmp: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'fleet-hybrid-'));
    env = { FLEET_RECORD_URL: `pglite://${join(tmp, 'record')}` };
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('validates', async () => {
    const r = await runCli(['validate', '--stack', HYBRID], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('plans four VMs spread over virginia (aws) and eastus (azure), images translated per cloud', async () => {
    const r = await runCli(['plan', '--stack', HYBRID, '--format', 'json'], { env });
    expect(r.code, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout) as { changes: { action: string; dataCenter: string; realImage?: string; image?: { real?: string } }[] };
    expect(plan.changes.map((c) => c.action)).toEqual(['create', 'create', 'create', 'create']);
    expect(new Set(plan.changes.map((c) => c.dataCenter))).toEqual(new Set(['virginia', 'eastus']));
  });

  /** A copy of the hybrid stack with one edit of stack.yaml or the fleet, validated. */
  const variant = async (edit: { stack?: (s: string) => string; fleet?: (s: string) => string }) => {
    const dir = mkdtempSync(join(tmp, 'v-'));
    mkdirSync(join(dir, 'specs'));
    const stack = readFileSync(join(HYBRID, 'stack.yaml'), 'utf8').replace('../../policies/default', resolve(HYBRID, '../../policies/default'));
    writeFileSync(join(dir, 'stack.yaml'), (edit.stack ?? ((s) => s))(stack));
    writeFileSync(join(dir, 'specs', 'api.yaml'), (edit.fleet ?? ((s) => s))(readFileSync(join(HYBRID, 'specs', 'api.yaml'), 'utf8')));
    return runCli(['validate', '--stack', dir], { env });
  };

  it.each([
    {
      name: 'a cloud data center missing from the instance-type catalog',
      stack: (s: string) => s.replaceAll('virginia', 'ohio'),
      want: /error\[spec\.no-instance-types\].*\n\s+at .*stack\.yaml:18:15\n.*ohio/,
    },
    {
      name: 'a fleet size no instance type of a cloud data center fits',
      fleet: (s: string) => s.replace('{ cpu: 4, memoryGiB: 16, diskGiB: 100 }', '{ cpu: 16, memoryGiB: 16, diskGiB: 100 }'),
      want: /error\[spec\.size-not-offered\].*\n\s+at .*api\.yaml:12:9\n.*virginia/,
    },
    {
      name: 'a cloud driver without its broker block',
      stack: (s: string) => s.replace(/ {6}aws: \{[^\n]*\n/, ''),
      want: /error\[spec\.missing-field\].*\n\s+at .*stack\.yaml:18:15\n.*add its aws block/,
    },
    {
      name: 'a cloud driver on an embedded data center',
      stack: (s: string) => s.replace('address: https://dmz.virginia.example:8443', 'address: embedded'),
      want: /error\[spec\.invalid-value\].*\n\s+at .*stack\.yaml:17:16\n.*must be reached by its DMZ client's URL/,
    },
    {
      name: 'an unknown driver',
      stack: (s: string) => s.replace('driver: aws', 'driver: gcp'),
      want: /error\[spec\.invalid-value\].*\n\s+at .*stack\.yaml:18:15\n/,
    },
  ])('$name is a located diagnostic', async ({ stack, fleet, want }) => {
    const r = await variant({ stack, fleet });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(want);
  });
});

