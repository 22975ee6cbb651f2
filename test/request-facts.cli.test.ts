// The plan's preview of a request-level rule and the authority's judgment
// of it must see the same requests, or they can answer differently on the
// same inputs (DESIGN.md: the authority has the last word; the plan
// previews it). A custom rule records every request it is asked about; the
// plan (saved) and then the apply of that saved plan, through the embedded
// authority, must ask it about the same requests: creates, edges, resizes
// and deletes.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, cpSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '..');
const FLEET = join(REPO, 'bin', 'fleet.mjs');

function fleet(args: string[], cwd: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [FLEET, ...args], { cwd, env: { ...process.env, NO_COLOR: '1', ...env }, timeout: 120_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string }) | null;
      done({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr });
    });
  });
}

const RULE = `import { appendFileSync } from 'node:fs';
export default {
  name: 'recorder',
  description: 'Records every request it is asked about (test rule).',
  configSchema: { type: 'object' },
  checkRequest(req: unknown) {
    appendFileSync(process.env.FLEET_TEST_FACTS as string, JSON.stringify(req) + '\\n');
    return [];
  },
};
`;

const STACK = `apiVersion: fleet/v1
kind: Stack
metadata: { name: facts }
spec:
  specs: ["specs/*.yaml"]
  record: pglite://.fleet/record
  policyPack: { path: ../pack }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - { name: miami, address: embedded, location: { lat: 25.7617, lon: -80.1918 }, capacity: { vms: 100 } }
`;

const fleets = (web: { count: number; cpu: number; image?: string }, db: { count: number; state: string }) => `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-a }
spec: { count: ${web.count}, image: ${web.image ?? 'ubuntu-22.04'}, size: { cpu: ${web.cpu}, memoryGiB: 4, diskGiB: 20 } }
---
apiVersion: fleet/v1
kind: Fleet
metadata: { name: db, owner: team-b }
spec: { count: ${db.count}, image: ubuntu-22.04, size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, state: ${db.state}, encryptedDisk: true }
`;

/** The requests recorded in `file`, one line each, as comparable strings (sorted). */
function asked(file: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => {
    const r = JSON.parse(l) as Record<string, unknown>;
    const keys = ['kind', 'stack', 'fleet', 'address', 'owner', 'dataCenter', 'image', 'size', 'encryptedDisk', 'from', 'to', 'operation'];
    return JSON.stringify(keys.map((k) => [k, r[k]]));
  }).sort();
}

describe('a request-level rule: the plan asks it what the authority will', () => {
  let tmp: string;
  let stack: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'fleet-request-facts-'));
    const pack = join(tmp, 'pack');
    stack = join(tmp, 'stack');
    cpSync(join(REPO, 'policies', 'default', 'policy.yaml'), join(pack, 'policy.yaml'));
    const policy = readFileSync(join(pack, 'policy.yaml'), 'utf8');
    writeFileSync(join(pack, 'policy.yaml'), policy.replace(/^ {2}rules:$/m, '  modules: [rules/recorder.ts]\n  rules:'));
    mkdirSync(join(pack, 'rules'));
    writeFileSync(join(pack, 'rules', 'recorder.ts'), RULE);
    mkdirSync(join(stack, 'specs'), { recursive: true });
    writeFileSync(join(stack, 'stack.yaml'), STACK);
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it.each([
    { name: 'creates', web: { count: 2, cpu: 2 }, db: { count: 2, state: 'Running' }, kinds: ['"create"', '"transition"'] },
    { name: 'a resize, a stop and a delete', web: { count: 1, cpu: 4 }, db: { count: 2, state: 'PoweredOff' }, kinds: ['"resize"', '["to","Deleted"]', '["to","ShuttingDown"]'] },
    { name: 'a replace (a new image) and a start', web: { count: 1, cpu: 4, image: 'ubuntu-24.04' }, db: { count: 2, state: 'Running' }, kinds: ['"ubuntu-24.04"', '["to","Deleted"]'] },
  ])('$name', { timeout: 130_000 }, async ({ name, web, db, kinds }) => {
    writeFileSync(join(stack, 'specs', 'fleets.yaml'), fleets(web, db));
    const planned = join(tmp, `${name}-plan.jsonl`);
    const applied = join(tmp, `${name}-apply.jsonl`);
    const planFile = join(tmp, `${name}.plan.json`);
    const p = await fleet(['plan', '--stack', stack, '--out', planFile], tmp, { FLEET_TEST_FACTS: planned });
    expect(p.stderr).not.toMatch(/error\[/);
    const a = await fleet(['apply', '--stack', stack, '--yes', planFile], tmp, { FLEET_TEST_FACTS: applied });
    expect(a.stderr).not.toMatch(/error\[/);
    expect(a.code).toBe(0);
    expect(asked(planned).length).toBeGreaterThan(0);
    expect(asked(planned)).toEqual(asked(applied));
    for (const k of kinds) expect(asked(applied).some((r) => r.includes(k))).toBe(true);
  });
});
