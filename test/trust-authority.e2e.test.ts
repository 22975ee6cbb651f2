// The authority's policy seen from the CLI, end to end: real CLI (in-process),
// real PGlite record, the embedded authority and sim DMZ clients over
// loopback HTTP, the default pack. Protection kept in the record (issue 13,
// point 2) and the stale check per fleet (point 5, docs/plan-format.md "Stale
// plans").
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '../engine/apply/index.ts';
import { runCli } from './helpers/cli.ts';
import { schemaErrors } from './helpers/schemas.ts';
import { REPO, fleetYaml, tempStack, type TempStack } from './helpers/stack.ts';

/** The record's live VMs (address -> state) and every VM the sim clouds hold. */
async function world(dir: string): Promise<{ states: Record<string, string>; cloud: number; history: (address: string) => Promise<{ detail: string | null; to: string }[]> }> {
  const s = await openSession(dir, { cwd: REPO, env: process.env });
  try {
    const vms = await s.record.listVms(s.stack.name);
    let cloud = 0;
    for (const [, p] of s.providers) cloud += (await p.listVms()).filter((v) => v.status === 'present').length;
    const rows = await s.record.history(s.stack.name);
    return {
      states: Object.fromEntries(vms.map((v) => [v.address, v.state])),
      cloud,
      history: async (address) => rows.filter((h) => h.address === address).map((h) => ({ detail: h.detail, to: h.to })),
    };
  } finally {
    await s.close();
  }
}

describe('protection lives in the record', () => {
  let st: TempStack;
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
  beforeAll(async () => {
    st = await tempStack({ name: 'protect' });
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('applies a fleet with protect: true', async () => {
    await st.spec('vault', fleetYaml('vault', { count: 1, protect: true }));
    await st.spec('web', fleetYaml('web', { count: 1 }));
    expect((await fleet('apply', '--yes')).code).toBe(0);
  });

  it('its spec file removed, the plan shows a mandatory violation and apply changes nothing', async () => {
    await st.spec('vault', null);
    const plan = await fleet('plan');
    expect(plan.code).toBe(1);
    expect(plan.stdout + plan.stderr).toContain('fleet vault is protected in the record');
    const blocked = await fleet('apply', '--yes');
    expect(blocked.code).toBe(1);
    const w = await world(st.dir);
    expect(w.states).toEqual({ 'vault/0': 'Running', 'web/0': 'Running' });
    expect(w.cloud).toBe(2);
  });

  it('with --allow-destroy the override travels with the deleting requests; the history says who and why', async () => {
    const r = await fleet('apply', '--yes', '--allow-destroy', 'vault');
    expect(r.code, r.stderr).toBe(0);
    const w = await world(st.dir);
    expect(w.states).toEqual({ 'web/0': 'Running' });
    expect(w.cloud).toBe(1);
    const overridden = (await w.history('vault/0')).filter((h) => h.detail?.includes('override allow-destroy by'));
    expect(overridden).toHaveLength(1);
    expect(overridden[0]).toMatchObject({ to: 'BeingDeleted', detail: expect.stringContaining('--allow-destroy vault in plan') });
  });
});

describe('a protect change alone reaches the record', () => {
  // docs/policy.md: "To unprotect a fleet, apply its spec with protect: false first." With no member to change,
  // `fleet apply` said "Nothing to apply." and returned before it wrote the fleet's protection, so the fleet
  // stayed protected in the record (and the hint of the protect rule sent users round in a circle); the other
  // way round, protect: true added to a running fleet was never recorded, and removing its spec deleted it.
  let st: TempStack;
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
  beforeAll(async () => {
    st = await tempStack({ name: 'protect-only' });
    await st.spec('vault', fleetYaml('vault', { count: 1, protect: true }));
    await st.spec('web', fleetYaml('web', { count: 1 }));
    expect((await fleet('apply', '--yes')).code).toBe(0);
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('protect: false applied alone unprotects the fleet', async () => {
    await st.spec('vault', fleetYaml('vault', { count: 1, protect: false }));
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('recorded protect: false for fleet vault');
    await st.spec('vault', null);
    const plan = await fleet('plan');
    expect(plan.stdout + plan.stderr).not.toContain('protected in the record');
    expect(plan.code).toBe(0);
  });

  it('protect: true applied alone protects the fleet', async () => {
    await st.spec('vault', fleetYaml('vault', { count: 1, protect: false }));
    await st.spec('web', fleetYaml('web', { count: 1, protect: true }));
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('recorded protect: true for fleet web');
    await st.spec('web', null);
    const plan = await fleet('plan');
    expect(plan.stdout + plan.stderr).toContain('fleet web is protected in the record');
  });
});

describe('a protect change alone is in the plan', () => {
  // The plan said "No changes. The record matches the specs." (and --detailed-exitcode 0) of a spec whose protect
  // differs from the record's, which `fleet apply` then wrote; a saved plan's apply did not write it at all.
  let st: TempStack;
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
  beforeAll(async () => {
    st = await tempStack({ name: 'protect-plan' });
    await st.spec('vault', fleetYaml('vault', { count: 1, protect: true }));
    await st.spec('web', fleetYaml('web', { count: 1 }));
    expect((await fleet('apply', '--yes')).code).toBe(0);
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('fleet plan shows it and --detailed-exitcode exits 2', async () => {
    await st.spec('vault', fleetYaml('vault', { count: 1, protect: false }));
    const plan = await fleet('plan', '--detailed-exitcode');
    expect(plan.code, plan.stderr).toBe(2);
    expect(plan.stdout).toContain('~ fleet vault: protect true -> false');
    expect(plan.stdout).not.toContain('No changes');
    const json = await fleet('plan', '--format', 'json');
    expect(JSON.parse(json.stdout).plan.fleetChanges).toEqual([{ fleet: 'vault', protect: { from: true, to: false } }]);
  });

  it('a saved plan of it applied records it', async () => {
    const saved = join(st.dir, 'unprotect.json');
    expect((await fleet('plan', '--out', saved)).code).toBe(0);
    const r = await fleet('apply', saved);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('recorded protect: false for fleet vault');
    const again = await fleet('plan', '--detailed-exitcode');
    expect(again.code, again.stdout).toBe(0);
    // The same file again: refused as applied already (it was recorded as an applied plan), not as "the record
    // changed" by someone else, and not "Nothing to apply" as if it had never been applied.
    const twice = await fleet('apply', saved);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('apply.stale-plan');
    expect(twice.stderr).toMatch(/Plan \S+ was applied already \(by .*; it succeeded\)/);
    await st.spec('vault', null);
    const plan = await fleet('plan');
    expect(plan.stdout + plan.stderr).not.toContain('protected in the record');
  });

  it('a saved plan with member changes records the protection it lists', async () => {
    await st.spec('vault', fleetYaml('vault', { count: 2, protect: true }));
    const saved = join(st.dir, 'protect-grow.json');
    expect((await fleet('plan', '--out', saved)).code).toBe(0);
    // The spec changes again before the apply: the saved plan's protect: true is what is applied.
    await st.spec('vault', fleetYaml('vault', { count: 2, protect: false }));
    const r = await fleet('apply', saved);
    expect(r.code, r.stderr).toBe(0);
    await st.spec('vault', null);
    const plan = await fleet('plan');
    expect(plan.stdout + plan.stderr).toContain('fleet vault is protected in the record');
  });
});

describe('a saved plan is stale only when what it changes changed', () => {
  let st: TempStack;
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
  beforeAll(async () => {
    st = await tempStack({ name: 'stale' });
    await st.spec('a', fleetYaml('a', { count: 1 }));
    await st.spec('b', fleetYaml('b', { count: 1 }));
    expect((await fleet('apply', '--yes')).code).toBe(0);
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('a whole-stack plan stays valid after a fleet it leaves unchanged was applied by someone else', async () => {
    await st.spec('a', fleetYaml('a', { count: 2 }));
    const saved = join(st.dir, 'whole.json');
    expect((await fleet('plan', '--out', saved)).code).toBe(0);
    // Someone else scales b meanwhile.
    await st.spec('b', fleetYaml('b', { count: 2 }));
    expect((await fleet('apply', '--yes', '--target', 'b')).code).toBe(0);
    const r = await fleet('apply', saved);
    expect(r.code, r.stderr).toBe(0);
    expect((await world(st.dir)).states).toEqual({ 'a/0': 'Running', 'a/1': 'Running', 'b/0': 'Running', 'b/1': 'Running' });
  });

  it('a plan whose own fleet changed since is refused, and changes nothing', async () => {
    await st.spec('a', fleetYaml('a', { count: 3 }));
    const saved = join(st.dir, 'own.json');
    expect((await fleet('plan', '--out', saved)).code).toBe(0);
    await st.spec('a', fleetYaml('a', { count: 2, state: 'PoweredOff' }));
    expect((await fleet('apply', '--yes', '--target', 'a')).code).toBe(0);
    const r = await fleet('apply', saved);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('apply.stale-plan');
    expect(r.stderr).toContain('fleet a');
    expect((await world(st.dir)).states).toEqual({ 'a/0': 'PoweredOff', 'a/1': 'PoweredOff', 'b/0': 'Running', 'b/1': 'Running' });
  });
});

describe('a saved plan says the protection of a fleet the record does not know yet', () => {
  // A saved plan listed no fleetChanges for a new fleet, so `fleet apply FILE` gave its row the protect of the
  // spec as it was at apply time, not the one the plan's reviewers saw: the saved plan was not the only source
  // of what apply wrote.
  let st: TempStack;
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
  beforeAll(async () => {
    st = await tempStack({ name: 'protect-new' });
    await st.spec('web', fleetYaml('web', { count: 0 }));
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('a new fleet planned with protect: true is protected by its saved plan, whatever its spec says at apply time', async () => {
    await st.spec('vault', fleetYaml('vault', { count: 1, protect: true }));
    const plan = await fleet('plan', '--detailed-exitcode');
    expect(plan.code, plan.stderr).toBe(2);
    // A new fleet's setting, not a change from false (its entry says new: true).
    expect(plan.stdout).toContain('+ fleet vault: protect true\n');
    const saved = join(st.dir, 'new-protected.json');
    expect((await fleet('plan', '--out', saved)).code).toBe(0);
    // The seal covers it as it covers every fleet change: edited to false, the plan is refused.
    const doc = JSON.parse(await readFile(saved, 'utf8')) as { fleetChanges: { fleet: string; protect: { from: boolean; to: boolean } }[] };
    expect(doc.fleetChanges).toEqual([{ fleet: 'vault', new: true, protect: { from: false, to: true } }]);
    const edited = join(st.dir, 'new-edited.json');
    await writeFile(edited, JSON.stringify({ ...doc, fleetChanges: [{ fleet: 'vault', new: true, protect: { from: false, to: false } }] }), { mode: 0o600 });
    const tampered = await fleet('apply', edited);
    expect(tampered.code).toBe(1);
    expect(tampered.stderr).toContain('apply.plan-tampered');
    await st.spec('vault', fleetYaml('vault', { count: 1, protect: false }));
    const r = await fleet('apply', saved);
    expect(r.code, r.stderr).toBe(0);
    await st.spec('vault', null);
    const after = await fleet('plan');
    expect(after.stdout + after.stderr).toContain('fleet vault is protected in the record');
  });

  it('a new fleet planned with protect: false is left unprotected by its saved plan, whatever its spec says at apply time', async () => {
    await st.spec('vault', fleetYaml('vault', { count: 1, protect: true }));
    await st.spec('scratch', fleetYaml('scratch', { count: 1, protect: false }));
    const saved = join(st.dir, 'new-plain.json');
    const plan = await fleet('plan', '--out', saved, '--target', 'scratch', '--format', 'json');
    expect(plan.code, plan.stderr).toBe(0);
    await st.spec('scratch', fleetYaml('scratch', { count: 1, protect: true }));
    const r = await fleet('apply', saved);
    expect(r.code, r.stderr).toBe(0);
    // The spec says protect: true now, which the record does not hold yet: a plan lists it as a change.
    const again = await fleet('plan', '--format', 'json', '--target', 'scratch');
    expect(JSON.parse(again.stdout).plan.fleetChanges).toEqual([{ fleet: 'scratch', protect: { from: false, to: true } }]);
  });
});

describe('a protection written since makes a saved plan stale', () => {
  // The record's setFleetProtection bumped no version: a saved plan of fleet a, made before another apply
  // changed a's protection, was applied as if nothing had changed.
  let st: TempStack;
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
  beforeAll(async () => {
    st = await tempStack({ name: 'protect-stale' });
    await st.spec('a', fleetYaml('a', { count: 1 }));
    await st.spec('b', fleetYaml('b', { count: 1 }));
    expect((await fleet('apply', '--yes')).code).toBe(0);
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('by another apply of a protect change alone: refused as stale, nothing changed', async () => {
    await st.spec('a', fleetYaml('a', { count: 2 }));
    const saved = join(st.dir, 'grow.json');
    expect((await fleet('plan', '--out', saved)).code).toBe(0);
    // Someone else protects a meanwhile (its members unchanged).
    await st.spec('a', fleetYaml('a', { count: 1, protect: true }));
    const other = await fleet('apply', '--yes');
    expect(other.stdout, other.stderr).toContain('recorded protect: true for fleet a');
    const r = await fleet('apply', saved);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('apply.stale-plan');
    expect(r.stderr).toContain('fleet a (planned at version');
    expect((await world(st.dir)).states).toEqual({ 'a/0': 'Running', 'b/0': 'Running' });
  });

  it('a plan of another fleet is not stale for it', async () => {
    await st.spec('b', fleetYaml('b', { count: 2 }));
    const saved = join(st.dir, 'b.json');
    expect((await fleet('plan', '--out', saved, '--target', 'b')).code).toBe(0);
    await st.spec('a', fleetYaml('a', { count: 1, protect: false }));
    expect((await fleet('apply', '--yes', '--target', 'a')).code).toBe(0);
    const r = await fleet('apply', saved);
    expect(r.code, r.stderr).toBe(0);
    expect((await world(st.dir)).states).toEqual({ 'a/0': 'Running', 'b/0': 'Running', 'b/1': 'Running' });
  });
});

describe('fleet apply --format json says which protections it wrote', () => {
  // The JSON events of an apply said nothing of the fleet protections it wrote to the record.
  let st: TempStack;
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
  const events = (stdout: string) => stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; [k: string]: unknown });
  beforeAll(async () => {
    st = await tempStack({ name: 'protect-json' });
    await st.spec('vault', fleetYaml('vault', { count: 1, protect: true }));
    await st.spec('web', fleetYaml('web', { count: 1 }));
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('with member changes: a protect event before start, and the summary lists them', async () => {
    const r = await fleet('apply', '--yes', '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const e = events(r.stdout);
    for (const x of e) expect(schemaErrors('apply-event', x), JSON.stringify(x)).toEqual([]);
    const change = { fleet: 'vault', protect: { from: false, to: true } };
    expect(e.filter((x) => x.type === 'protect')).toEqual([{ type: 'protect', ...change, at: expect.any(String) }]);
    expect(e.findIndex((x) => x.type === 'protect')).toBeLessThan(e.findIndex((x) => x.type === 'start'));
    expect(e.at(-1)).toMatchObject({ type: 'summary', succeeded: 2, fleetChanges: [change] });
  });

  it('a protect change alone: plan, protect, then a summary of no member that lists it', async () => {
    await st.spec('vault', fleetYaml('vault', { count: 1, protect: false }));
    const r = await fleet('apply', '--yes', '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const e = events(r.stdout);
    for (const x of e) expect(schemaErrors('apply-event', x), JSON.stringify(x)).toEqual([]);
    const change = { fleet: 'vault', protect: { from: true, to: false } };
    expect(e.map((x) => x.type)).toEqual(['plan', 'protect', 'summary']);
    expect(e[1]).toMatchObject({ type: 'protect', ...change });
    expect(e[2]).toMatchObject({ succeeded: 0, steps: 0, fleetChanges: [change] });
  });

  it('nothing written, nothing said: no protect event and no fleetChanges in the summary', async () => {
    await st.spec('web', fleetYaml('web', { count: 2 }));
    const r = await fleet('apply', '--yes', '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const e = events(r.stdout);
    expect(e.filter((x) => x.type === 'protect')).toEqual([]);
    expect(e.at(-1)).not.toHaveProperty('fleetChanges');
  });

  it('text: the protection written is said before the steps', async () => {
    await st.spec('web', fleetYaml('web', { count: 3, protect: true }));
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('apply: recorded protect: true for fleet web\n');
  });
});

describe("a fleet's owner changed in its spec", () => {
  // Since plans list protect changes (b78f858), apply wrote a fleet's row (its owner with its protection)
  // only when its protect changed: a fleet whose spec named a new owner kept the old one in the record, and
  // its creates were vetoed ("fleet web is owned by team-a in the record, not team-b").
  let st: TempStack;
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
  beforeAll(async () => {
    st = await tempStack({ name: 'owner-change' });
    await st.spec('web', fleetYaml('web', { count: 1 }));
    expect((await fleet('apply', '--yes')).code).toBe(0);
  });
  afterAll(async () => {
    await st?.remove();
  });

  it('is written to the record before the creates, which then go through', async () => {
    await st.spec('web', fleetYaml('web', { count: 2 }).replace('owner: team-web', 'owner: team-new'));
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    const s = await openSession(st.dir, { cwd: REPO, env: process.env });
    try {
      expect(await s.record.listFleets(s.stack.name, ['web'])).toMatchObject([{ fleet: 'web', owner: 'team-new', protected: false }]);
    } finally {
      await s.close();
    }
    expect((await world(st.dir)).states).toEqual({ 'web/0': 'Running', 'web/1': 'Running' });
  });
});

describe("a fleet's owner changed alone is in the plan", () => {
  // A spec that changed only `owner` made `fleet plan` say "No changes" (--detailed-exitcode 0) and `fleet apply`
  // write nothing, so the record kept the old owner, which quotas and the authority's owner check read.
  let st: TempStack;
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
  const owned = (owner: string) => fleetYaml('web', { count: 1 }).replace('owner: team-web', `owner: ${owner}`);
  const recorded = async () => {
    const s = await openSession(st.dir, { cwd: REPO, env: process.env });
    try {
      return (await s.record.listFleets(s.stack.name, ['web']))[0]?.owner;
    } finally {
      await s.close();
    }
  };
  beforeAll(async () => {
    st = await tempStack({ name: 'owner-alone' });
    await st.spec('web', owned('team-a'));
    expect((await fleet('apply', '--yes')).code).toBe(0);
  });
  afterAll(async () => {
    await st?.remove();
  });

  it("re-owned into a team whose quota its members exceed, the plan is blocked by owner-quota and apply writes nothing", async () => {
    const stackFile = join(st.dir, 'stack.yaml');
    const original = await readFile(stackFile, 'utf8');
    await writeFile(stackFile, original.replace('max-disruption: { enforcement: disabled }', 'max-disruption: { enforcement: disabled }\n      owner-quota: { enforcement: mandatory, limits: { team-small: { vms: 0 } } }'));
    try {
      await st.spec('web', owned('team-small'));
      const plan = await fleet('plan', '--format', 'json');
      expect(plan.code).toBe(1);
      const doc = JSON.parse(plan.stdout).plan;
      expect(doc.blocked).toBe(true);
      expect(doc.fleetChanges).toEqual([{ fleet: 'web', owner: { from: 'team-a', to: 'team-small' } }]);
      expect(doc.policy.violations).toEqual([
        expect.objectContaining({ policy: 'owner-quota', level: 'mandatory', address: 'web', message: expect.stringContaining('Fleet web moves from team-a to team-small with its 1 member, and only 0 fit the quota of team-small (vms 0)') }),
      ]);
      const r = await fleet('apply', '--yes');
      expect(r.code).toBe(1);
      expect(await recorded()).toBe('team-a');
    } finally {
      await writeFile(stackFile, original);
    }
  });

  it('fleet plan shows it and --detailed-exitcode exits 2', async () => {
    await st.spec('web', owned('team-b'));
    const plan = await fleet('plan', '--detailed-exitcode');
    expect(plan.code, plan.stderr).toBe(2);
    expect(plan.stdout).toContain('~ fleet web: owner team-a -> team-b');
    expect(plan.stdout).not.toContain('No changes');
    const json = await fleet('plan', '--format', 'json');
    const doc = JSON.parse(json.stdout).plan;
    expect(doc.fleetChanges).toEqual([{ fleet: 'web', owner: { from: 'team-a', to: 'team-b' } }]);
    expect(schemaErrors('plan', doc)).toEqual([]);
    const md = await fleet('plan', '--format', 'markdown');
    expect(md.stdout).toContain('fleet `web`: owner `team-a` -> `team-b`');
    expect(await recorded()).toBe('team-a');
  });

  it('a saved plan of it applied writes the owner it lists, whatever the spec says at apply time, and says so', async () => {
    const saved = join(st.dir, 'reown.json');
    expect((await fleet('plan', '--out', saved)).code).toBe(0);
    await st.spec('web', owned('team-c'));
    const r = await fleet('apply', saved, '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const e = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; [k: string]: unknown });
    for (const x of e) expect(schemaErrors('apply-event', x), JSON.stringify(x)).toEqual([]);
    const change = { fleet: 'web', owner: { from: 'team-a', to: 'team-b' } };
    // A saved plan's apply has no `plan` event (it prints no plan).
    expect(e.map((x) => x.type)).toEqual(['owner', 'summary']);
    expect(e[0]).toMatchObject({ type: 'owner', ...change });
    expect(e[1]).toMatchObject({ succeeded: 0, steps: 0, fleetChanges: [change] });
    expect(await recorded()).toBe('team-b');
    const twice = await fleet('apply', saved);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('apply.stale-plan');
  });

  it('fleet apply writes it and says so', async () => {
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('recorded owner team-c for fleet web');
    expect(await recorded()).toBe('team-c');
    const again = await fleet('plan', '--detailed-exitcode');
    expect(again.code, again.stdout).toBe(0);
  });
});
