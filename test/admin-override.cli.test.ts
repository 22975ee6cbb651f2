// The protect rule's `override: admin`, through the built CLI: a plan made
// with --allow-destroy shows no violation, and the authority accepts the
// override only with a proof under the admin token. `fleet apply` without
// FLEET_ADMIN_TOKEN started anyway: it created the new fleet's member, then
// had the protected member's deletion vetoed (override-refused), a
// half-applied plan. It now refuses to start (apply.admin-token-missing),
// and with the token applies it all.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '..');
const FLEET = join(REPO, 'bin', 'fleet.mjs');

function fleet(args: string[], cwd: string, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const base: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete base.FLEET_ADMIN_TOKEN;
  return new Promise((done) => {
    execFile(process.execPath, [FLEET, ...args], { cwd, env: { ...base, ...env }, timeout: 120_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string }) | null;
      done({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr });
    });
  });
}

const STACK = `apiVersion: fleet/v1
kind: Stack
metadata: { name: adm }
spec:
  specs: ["specs/*.yaml"]
  record: pglite://.fleet/record
  policyPack:
    path: ${JSON.stringify(join(REPO, 'policies', 'default'))}
    config:
      protect: { override: admin }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - { name: miami, address: embedded, location: { lat: 25.7617, lon: -80.1918 }, capacity: { vms: 100 } }
`;

const web = (count: number) => `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-a }
spec: { count: ${count}, image: ubuntu-22.04, size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, protect: true, state: PoweredOff }
`;
const API = `---
apiVersion: fleet/v1
kind: Fleet
metadata: { name: api, owner: team-a }
spec: { count: 1, image: ubuntu-22.04, size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, state: PoweredOff }
`;

describe("protect's override: admin, through the CLI", () => {
  let tmp: string;
  let stack: string;
  const addresses = async (): Promise<string[]> => {
    const r = await fleet(['state', 'list', '--stack', stack, '--format', 'json'], tmp);
    expect(r.code).toBe(0);
    return (JSON.parse(r.stdout) as { vms: { address: string }[] }).vms.map((v) => v.address).sort();
  };
  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'fleet-admin-override-'));
    stack = join(tmp, 'stack');
    mkdirSync(join(stack, 'specs'), { recursive: true });
    writeFileSync(join(stack, 'stack.yaml'), STACK);
    writeFileSync(join(stack, 'specs', 'fleets.yaml'), web(2));
    expect((await fleet(['apply', '--stack', stack, '--yes'], tmp)).code).toBe(0);
    writeFileSync(join(stack, 'specs', 'fleets.yaml'), web(1) + API);
  }, 130_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('without FLEET_ADMIN_TOKEN, fleet apply --allow-destroy starts nothing', { timeout: 130_000 }, async () => {
    const r = await fleet(['apply', '--stack', stack, '--yes', '--allow-destroy', 'web'], tmp);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error\[apply\.admin-token-missing\][\s\S]*web\/1[\s\S]*FLEET_ADMIN_TOKEN/);
    expect(await addresses()).toEqual(['web/0', 'web/1']);
  });

  it('with it, the plan is applied whole', { timeout: 130_000 }, async () => {
    const r = await fleet(['apply', '--stack', stack, '--yes', '--allow-destroy', 'web'], tmp, { FLEET_ADMIN_TOKEN: 'admin-token-for-tests' });
    expect(r.stderr).not.toMatch(/error\[/);
    expect(r.code).toBe(0);
    expect(await addresses()).toEqual(['api/0', 'web/0']);
  });
});
