// Tamper-evident saved plans end to end (the trust issue's attacks on a plan
// file): the real CLI in-process, a real PGlite record, the authority and sim
// DMZ clients over loopback HTTP. Each attack edits a real file written by
// `fleet plan --out` the way a person with write access to a CI artifact or a
// pull request could, and `fleet apply FILE` must refuse it with a diagnostic
// naming why, before any lock or request. The record and the data centers
// are compared before the first attack and after the last: a refused apply
// that wrote anything (a VM, a history row, an applied plan, a lock) or
// called a cloud would show there.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '../engine/apply/index.ts';
import { planContentDigest, type PlanDocument } from '../engine/plan/index.ts';
import type { SqlRecord } from '../engine/record/index.ts';
import { appliedPlans } from '../engine/record/testing.ts';
import { runCli } from './helpers/cli.ts';
import { REPO, fleetYaml, tempStack, type TempStack } from './helpers/stack.ts';

/** Everything a refused apply must leave as it was. */
async function snapshot(dir: string) {
  const s = await openSession(dir, { cwd: REPO, env: process.env });
  try {
    const name = s.stack.name;
    const vms = (await s.record.listVms(name, { includeRetired: true })).map((v) => ({ id: v.id, address: v.address, state: v.state, version: v.version }));
    const history = (await s.record.history(name)).length;
    const plans = (await appliedPlans(s.record as SqlRecord, name)).map((p) => `${p.id} ${p.result}`);
    const locks = await s.record.listLocks(name);
    const fleets = await s.record.listFleets(name);
    const cloud: string[] = [];
    for (const [, p] of s.providers) cloud.push(...(await p.listVms()).map((v) => `${v.dataCenter} ${v.vmId} ${v.status} ${v.observedState}`));
    return { vms, history, plans, locks, fleets, cloud: cloud.sort() };
  } finally {
    await s.close();
  }
}

const read = async (file: string) => JSON.parse(await readFile(file, 'utf8')) as PlanDocument;
const write = (file: string, plan: unknown) => writeFile(file, `${JSON.stringify(plan, null, 2)}\n`);

describe('fleet apply PLANFILE refuses tampered, foreign and out-of-scope plans', () => {
  let st: TempStack;
  /** Another stack with the same name and its own record. */
  let twin: TempStack;
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
  let before: Awaited<ReturnType<typeof snapshot>>;
  /** Sealed plans written by `fleet plan --out`. */
  let good: PlanDocument;
  let blocked: PlanDocument;
  let targeted: PlanDocument;
  let full: PlanDocument;
  let foreign: PlanDocument;

  const out = (name: string) => join(st.dir, `${name}.json`);

  beforeAll(async () => {
    st = await tempStack();
    twin = await tempStack();
  });
  afterAll(async () => {
    await st?.remove();
    await twin?.remove();
  });

  it('applies three fleets, one protected', async () => {
    await st.spec('web', fleetYaml('web', { count: 2, encryptedDisk: false }));
    await st.spec('vault', fleetYaml('vault', { count: 1, protect: true, encryptedDisk: false }));
    await st.spec('jobs', fleetYaml('jobs', { count: 1, encryptedDisk: false }));
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
  });

  it('plan --out writes sealed plans, a blocked one too', async () => {
    // What will be attacked: one more web member and jobs stopped.
    await st.spec('web', fleetYaml('web', { count: 3, encryptedDisk: false }));
    await st.spec('jobs', fleetYaml('jobs', { count: 1, state: 'PoweredOff', encryptedDisk: false }));
    expect((await fleet('plan', '--out', out('good'))).code).toBe(0);
    expect((await fleet('plan', '--out', out('targeted'), '--target', 'web')).code).toBe(0);
    // The protected fleet scaled to zero: blocked by the mandatory protect rule, and still written.
    await st.spec('vault', fleetYaml('vault', { count: 0, protect: true, encryptedDisk: false }));
    expect((await fleet('plan', '--out', out('blocked'))).code).toBe(1);
    expect((await fleet('plan', '--out', out('full'), '--allow-destroy', 'vault')).code).toBe(0);
    await st.spec('vault', fleetYaml('vault', { count: 1, protect: true, encryptedDisk: false }));
    [good, targeted, blocked, full] = await Promise.all(['good', 'targeted', 'blocked', 'full'].map((n) => read(out(n))));
    // The embedded default (no authority address): sealed with the record's key (key id `k-…`; an authority's is `a-…`).
    expect(good.seal).toMatchObject({ alg: 'hmac-sha256', stackId: expect.stringMatching(/^stk-/), keyId: expect.stringMatching(/^k-/), digest: planContentDigest(good) });
    expect(blocked.blocked).toBe(true);
    expect(blocked.seal?.stackId).toBe(good.seal?.stackId);
  });

  it('another stack of the same name, with its own record, seals with its own stack id', async () => {
    await twin.spec('web', fleetYaml('web', { count: 3, encryptedDisk: false }));
    const twinOut = join(twin.dir, 'plan.json');
    expect((await runCli(['plan', '--out', twinOut, '--stack', twin.dir], { cwd: REPO })).code).toBe(0);
    foreign = await read(twinOut);
    expect(foreign.stack).toBe(good.stack);
    expect(foreign.seal!.stackId).not.toBe(good.seal!.stackId);
  });

  it('the record and data centers before the attacks', async () => {
    before = await snapshot(st.dir);
    expect(before.vms.map((v) => v.address).sort()).toEqual(['jobs/0', 'vault/0', 'web/0', 'web/1']);
  });

  const member = (p: PlanDocument, address: string) => {
    const c = p.changes.find((x) => x.address === address);
    if (!c) throw new Error(`no change for ${address} in the plan`);
    return c;
  };
  const vmIdOf = (address: string) => before.vms.find((v) => v.address === address)!.id;

  // name, the file as the attacker made it, the codes apply must answer with (each at least once), a piece of the detail.
  const attacks: [string, () => unknown, string[], string][] = [
    ['a blocked plan with `blocked` edited to false (deletes a protected VM)', () => ({ ...blocked, blocked: false }), ['apply.plan-tampered'], 'changed after it was saved'],
    [
      'three extra creates added',
      () => {
        const c = member(good, 'web/2');
        const extra = [3, 4, 5].map((i) => ({ ...c, address: `web/${i}`, index: i, name: c.name.replace(/2$/, String(i)) }));
        return { ...good, changes: [...good.changes, ...extra], summary: { ...good.summary, create: good.summary.create + 3 } };
      },
      ['apply.plan-tampered'],
      'changed after it was saved',
    ],
    [
      'a protected member\'s delete added, its fleet put in scope',
      () => ({
        ...good,
        fleets: [...good.fleets],
        basis: full.basis,
        changes: [...good.changes.filter((c) => c.fleet !== 'vault'), member(full, 'vault/0')],
      }),
      ['apply.plan-tampered'],
      'changed after it was saved',
    ],
    [
      'a change to a fleet outside the plan\'s locked scope',
      () => ({ ...targeted, changes: [...targeted.changes, member(good, 'jobs/0')] }),
      ['apply.plan-tampered', 'apply.plan-scope'],
      'not in the plan\'s scope (web)',
    ],
    [
      'the scope emptied: `fleets: []` and an empty basis',
      () => ({ ...good, fleets: [], basis: { vms: {}, fleets: {} } }),
      ['apply.plan-tampered', 'apply.plan-scope'],
      'not in the plan\'s scope (none)',
    ],
    ['a plan sealed by another stack of the same name', () => foreign, ['apply.plan-foreign'], 'not for this stack e2e'],
    [
      'a vmId swapped for another fleet\'s VM',
      () => ({ ...good, changes: good.changes.map((c) => (c.address === 'jobs/0' ? { ...c, vmId: vmIdOf('web/0') } : c)) }),
      ['apply.plan-tampered', 'apply.plan-scope'],
      'which the record holds as web/0',
    ],
    [
      'a vmId swapped, with its basis entry and a digest recomputed (no key)',
      () => {
        const p = { ...good, changes: good.changes.map((c) => (c.address === 'jobs/0' ? { ...c, vmId: vmIdOf('vault/0') } : c)), basis: { ...good.basis, vms: { [vmIdOf('vault/0')]: 1 } } };
        return { ...p, seal: { ...good.seal!, digest: planContentDigest(p) } };
      },
      ['apply.plan-tampered', 'apply.plan-scope'],
      'which the record holds as vault/0',
    ],
    [
      'the seal removed',
      () => {
        const { seal: _seal, ...rest } = good;
        return rest;
      },
      ['apply.plan-unsigned'],
      'has no seal',
    ],
  ];

  it.each(attacks)('refuses %s', async (_name, make, codes, detail) => {
    const file = join(st.dir, 'attack.json');
    await write(file, make());
    const r = await fleet('apply', file, '--format', 'json');
    expect(r.code, r.stderr).toBe(1);
    const diags = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; code?: string; detail?: string })
      .filter((e) => e.type === 'diagnostic');
    expect([...new Set(diags.map((d) => d.code))].sort()).toEqual([...codes].sort());
    expect(diags.map((d) => d.detail).join('\n')).toContain(detail);
  });

  it('changed nothing in the record or the data centers', async () => {
    expect(await snapshot(st.dir)).toEqual(before);
  });

  it('applies the untouched sealed plan, also re-indented, and the same file is stale afterwards', async () => {
    const file = join(st.dir, 'reindented.json');
    await writeFile(file, JSON.stringify(good));
    const r = await fleet('apply', file);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Apply complete: 2 VMs changed, 0 failed');
    const again = await fleet('apply', file);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('apply.stale-plan');
    // It says the plan itself moved the record, not that something else did.
    expect(again.stderr).toContain(`Plan ${good.id} was applied already (by `);
    expect(again.stderr).toContain('; it succeeded): a saved plan is applied once');
  });
});
