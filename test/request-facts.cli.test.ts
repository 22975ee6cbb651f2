// The plan's preview of a request-level rule and the authority's judgment
// of it must see the same requests, or they can answer differently on the
// same inputs (DESIGN.md: the authority has the last word; the plan
// previews it). A custom rule records every request it is asked about; the
// plan (saved) and then the apply of that saved plan, through the embedded
// authority, must ask it about the same requests: creates, edges, resizes
// and deletes.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { customRuleStack, fleetChild } from './helpers/custom-rules.ts';

const fleet = (args: string[], cwd: string, env: Record<string, string>) => fleetChild(args, cwd, { env });

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
    ({ stack } = customRuleStack(tmp, { name: 'facts', rules: { 'recorder.ts': RULE } }));
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
