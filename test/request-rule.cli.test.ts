// A custom rule with only a checkRequest, through the built CLI: the
// authority judged it per request, and the plan never did. `fleet plan`
// showed no violation and `fleet apply` created the small fleet's members,
// then had every create of the big fleet vetoed ("rule no-big-disk: 100 GiB
// disk is more than 50"): a half-applied plan. The plan now previews the
// rule over the requests apply will send, so the same inputs give the same
// answer in the plan as at the authority: blocked, and nothing applied.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { customRuleStack, fleetChild as fleet } from './helpers/custom-rules.ts';

const RULE = `export default {
  name: 'no-big-disk',
  description: 'No VM with more than 50 GiB of disk, judged per request.',
  configSchema: { type: 'object' },
  checkRequest(req: { address: string; kind: string; size: { diskGiB: number } }) {
    return req.kind === 'create' && req.size.diskGiB > 50 ? [{ address: req.address, message: req.size.diskGiB + ' GiB disk is more than 50.', hint: 'Pick a smaller disk.' }] : [];
  },
};
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
    ({ stack } = customRuleStack(tmp, { name: 'req-rule', rules: { 'no-big-disk.ts': RULE }, specs: { 'fleets.yaml': FLEETS } }));
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

// A rule that judges the same thing in its checkChange and its checkRequest
// (in other words: the request's kind in its message) said it three times
// per member in `fleet plan`: once from checkChange, then once per request
// of the create (create, then each edge, each a new message). It is said
// once, in checkChange's words.
const BOTH = `export default {
  name: 'max-disk',
  description: 'No VM with more than 50 GiB of disk, in the plan and per request.',
  configSchema: { type: 'object' },
  checkChange(change: { address: string; action: string; size: { diskGiB: number } }) {
    return change.action !== 'delete' && change.size.diskGiB > 50 ? [{ address: change.address, message: change.size.diskGiB + ' GiB disk is more than 50.', hint: 'Pick a smaller disk.' }] : [];
  },
  checkRequest(req: { address: string; kind: string; size: { diskGiB: number } }) {
    return req.size.diskGiB > 50 ? [{ address: req.address, message: 'a ' + req.kind + ' with a ' + req.size.diskGiB + ' GiB disk is refused.', hint: 'Pick a smaller disk.' }] : [];
  },
};
`;

describe('a rule with checkChange and checkRequest, through the CLI', () => {
  let tmp: string;
  let stack: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'fleet-request-rule-both-'));
    ({ stack } = customRuleStack(tmp, { name: 'req-both', rules: { 'max-disk.ts': BOTH }, specs: { 'fleets.yaml': FLEETS } }));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('fleet plan reports each member once, in the words of checkChange', { timeout: 130_000 }, async () => {
    const r = await fleet(['plan', '--stack', stack, '--format', 'json'], tmp);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as { plan: { policy: { violations: { policy: string; address: string; message: string }[] } } };
    expect(doc.plan.policy.violations.filter((v) => v.policy === 'max-disk').map((v) => [v.address, v.message])).toEqual([['big/0', '100 GiB disk is more than 50.']]);
  });
});
