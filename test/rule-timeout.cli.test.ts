// A custom rule whose check never returns, through the built CLI in a real
// child process: `fleet plan`, `fleet apply` and `fleet policy test` hung
// forever on it (in CI, a job that never ends). Each now stops the rule at
// the pack's deadline (spec.ruleTimeoutSeconds, 1 s here), exits 1 with a
// policy.rule-timeout diagnostic pointing at the check, and applies nothing.
// A child still running after 60 s is killed: a hang fails the case.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { customRuleStack, fleetChild } from './helpers/custom-rules.ts';

const HANG_MS = 60_000;
const fleet = (args: string[], cwd: string) => fleetChild(args, cwd, { timeoutMs: HANG_MS });

// Line 6, column 3: `checkChange`.
const SPIN = `// Never returns for fleet web.
export default {
  name: 'spin',
  description: 'Loops forever on fleet web.',
  configSchema: { type: 'object' },
  checkChange(change: { fleet: string; address: string }): unknown[] {
    while (change.fleet === 'web') {}
    return [];
  },
};
`;

const CASE = `description: web is planned; the spin rule never returns on it.
stack:
  dataCenters:
    - { name: miami, capacity: { vms: 100 } }
specs:
  - apiVersion: fleet/v1
    kind: Fleet
    metadata: { name: web, owner: team-a }
    spec: { count: 1, image: ubuntu-22.04, size: { cpu: 2, memoryGiB: 4, diskGiB: 20 } }
expect:
  violations: []
`;

const WEB = `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-a }
spec: { count: 2, image: ubuntu-22.04, size: { cpu: 2, memoryGiB: 4, diskGiB: 20 } }
`;

describe('a custom rule that never returns, through the CLI', () => {
  let tmp: string;
  let pack: string;
  let stack: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'fleet-rule-timeout-'));
    ({ pack, stack } = customRuleStack(tmp, { name: 'spin', rules: { 'spin.ts': SPIN }, packLines: ['ruleTimeoutSeconds: 1'], tests: { 'web.yaml': CASE }, specs: { 'web.yaml': WEB } }));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  // Paths relative to the working folder (the temp folder here), in the location and in the detail (which goes into the plan document); `fleet policy test` indents its diagnostics.
  const AT =
    /error\[policy\.rule-timeout\]: Policy rule did not finish in time\n +at (\/\S+\/)?pack\/rules\/spin\.ts:6:3 web\/0\n +Rule spin did not finish within 1 s: its checkChange \(pack\/rules\/spin\.ts:6:3\) was still running on web\/0 \(0 of \d changes checked before it\), and was stopped\. A check must return/;
  const cases: { name: string; args: () => string[]; out: 'stdout' | 'stderr'; also?: RegExp }[] = [
    { name: 'fleet plan', args: () => ['plan', '--stack', stack], out: 'stderr', also: /error\[plan\.blocked\]/ },
    { name: 'fleet apply', args: () => ['apply', '--stack', stack, '--yes'], out: 'stderr', also: /error\[apply\.plan-blocked\]/ },
    { name: 'fleet policy test', args: () => ['policy', 'test', pack], out: 'stdout', also: /FAIL web[\s\S]*\+ actual +\{ policy: spin, level: mandatory, address: web\/0 \}[\s\S]*0 passed, 1 failed/ },
  ];
  it.each(cases)('$name exits 1 with policy.rule-timeout, in bounded time', { timeout: HANG_MS + 10_000 }, async ({ args, out, also }) => {
    const r = await fleet(args(), tmp);
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 1, signal: null });
    expect(r[out]).toMatch(AT);
    if (also) expect(`${r.stdout}${r.stderr}`).toMatch(also);
  });

  it('fleet apply applied nothing', { timeout: HANG_MS + 10_000 }, async () => {
    const r = await fleet(['state', 'list', '--stack', stack, '--format', 'json'], tmp);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ vms: [] });
  });
});
