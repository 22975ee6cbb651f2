// A custom rule with only a checkRequest, through the built CLI: the
// authority judged it per request, and the plan never did. `fleet plan`
// showed no violation and `fleet apply` created the small fleet's members,
// then had every create of the big fleet vetoed ("rule no-big-disk: 100 GiB
// disk is more than 50"): a half-applied plan. The plan now previews the
// rule over the requests apply will send, so the same inputs give the same
// answer in the plan as at the authority: blocked, and nothing applied.
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '..');
const FLEET = join(REPO, 'bin', 'fleet.mjs');

function fleet(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [FLEET, ...args], { cwd, env: { ...process.env, NO_COLOR: '1' }, timeout: 120_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string }) | null;
      done({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr });
    });
  });
}

const RULE = `export default {
  name: 'no-big-disk',
  description: 'No VM with more than 50 GiB of disk, judged per request.',
  configSchema: { type: 'object' },
  checkRequest(req: { address: string; kind: string; size: { diskGiB: number } }) {
    return req.kind === 'create' && req.size.diskGiB > 50 ? [{ address: req.address, message: req.size.diskGiB + ' GiB disk is more than 50.', hint: 'Pick a smaller disk.' }] : [];
  },
};
`;

const STACK = `apiVersion: fleet/v1
kind: Stack
metadata: { name: req-rule }
spec:
  specs: ["specs/*.yaml"]
  record: pglite://.fleet/record
  policyPack: { path: ../pack }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - { name: miami, address: embedded, location: { lat: 25.7617, lon: -80.1918 }, capacity: { vms: 100 } }
`;

const FLEETS = `apiVersion: fleet/v1
kind: Fleet
metadata: { name: small, owner: team-a }
spec: { count: 2, image: ubuntu-22.04, size: { cpu: 2, memoryGiB: 4, diskGiB: 20 } }
---
apiVersion: fleet/v1
kind: Fleet
metadata: { name: big, owner: team-a }
spec: { count: 1, image: ubuntu-22.04, size: { cpu: 2, memoryGiB: 4, diskGiB: 100 } }
`;

describe('a request-level custom rule, through the CLI', () => {
  let tmp: string;
  let stack: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'fleet-request-rule-'));
    const pack = join(tmp, 'pack');
    stack = join(tmp, 'stack');
    cpSync(join(REPO, 'policies', 'default', 'policy.yaml'), join(pack, 'policy.yaml'));
    const policy = readFileSync(join(pack, 'policy.yaml'), 'utf8');
    writeFileSync(join(pack, 'policy.yaml'), policy.replace(/^ {2}rules:$/m, '  modules: [rules/no-big-disk.ts]\n  rules:'));
    mkdirSync(join(pack, 'rules'));
    writeFileSync(join(pack, 'rules', 'no-big-disk.ts'), RULE);
    mkdirSync(join(stack, 'specs'), { recursive: true });
    writeFileSync(join(stack, 'stack.yaml'), STACK);
    writeFileSync(join(stack, 'specs', 'fleets.yaml'), FLEETS);
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('fleet plan shows the violation the authority would veto, and is blocked', { timeout: 130_000 }, async () => {
    const r = await fleet(['plan', '--stack', stack], tmp);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/mandatory no-big-disk at big\/0: 100 GiB disk is more than 50\. \(its checkRequest, on the create of big\/0/);
    expect(r.stderr).toMatch(/error\[plan\.blocked\]/);
  });

  it('fleet apply applies nothing, rather than the small fleet alone', { timeout: 130_000 }, async () => {
    const r = await fleet(['apply', '--stack', stack, '--yes'], tmp);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error\[apply\.plan-blocked\]/);
    const list = await fleet(['state', 'list', '--stack', stack, '--format', 'json'], tmp);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toMatchObject({ vms: [] });
  });
});
