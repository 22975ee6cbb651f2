// `fleet apply` of a rollout, in-process over an embedded stack: a boot
// fault in the first wave stops the rollout with exit 1, a diagnostic that
// says what was done and what is left, and wave events on the JSON stream;
// the next apply without the fault brings the failed members back and
// finishes the rollout.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { schemaErrors } from './helpers/schemas.ts';
import { oneDcStackYaml } from './helpers/stack.ts';

const stackYaml = (failCalls: string[]) => oneDcStackYaml('rollout', { failCalls });

const fleetYaml = (image: string, rollout = '{ maxUnavailable: 2, failureThreshold: 1 }') => `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-web }
spec:
  count: 6
  image: ${image}
  size: { cpu: 1, memoryGiB: 2, diskGiB: 10 }
  rollout: ${rollout}
`;

/**
 * A one-data-center stack (stackYaml, no faults) with specs/web.yaml as
 * `web`, made and applied before the tests of its describe block and
 * removed after them; `fleet(...)` runs the CLI on it, `file(...)` names a
 * file in it.
 */
function useAppliedStack(web: string) {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-rollout-'));
    await mkdir(join(dir, 'specs'));
    await writeFile(join(dir, 'stack.yaml'), stackYaml([]));
    await writeFile(join(dir, 'specs', 'web.yaml'), web);
    const created = await runCli(['apply', '--yes', '--stack', dir], { cwd: dir });
    expect(created.code, created.stderr).toBe(0);
  }, 120_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  return {
    fleet: (...args: string[]) => runCli([...args, '--stack', dir], { cwd: dir }),
    file: (...parts: string[]) => join(dir, ...parts),
  };
}

/** The wave events and the addresses the apply touched, from a `--format json` run. */
function waveEvents(stdout: string) {
  const events = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    waves: events.filter((e) => e.type === 'wave-start' || e.type === 'wave-done'),
    touched: [...new Set(events.flatMap((e) => (e.type === 'step' ? [e.address as string] : [])))].sort(),
    diagnostics: events.filter((e) => e.type === 'diagnostic') as { code?: string; detail?: string }[],
  };
}

describe('fleet apply: a rollout stopped by failures, then resumed', () => {
  const { fleet, file } = useAppliedStack(fleetYaml('ubuntu-22.04'));

  it('stops after the failing wave with exit 1 and says what is left; the next apply finishes', async () => {
    await writeFile(file('specs', 'web.yaml'), fleetYaml('ubuntu-24.04'));
    const plan = await fleet('plan');
    expect(plan.stdout).toContain('Rollout: 3 waves; maxUnavailable 2, maxSurge 0, failureThreshold 1');

    await writeFile(file('stack.yaml'), stackYaml(['boot']));
    const failed = await fleet('apply', '--yes', '--format', 'json');
    expect(failed.code).toBe(1);
    const events = failed.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const e of events) expect(schemaErrors('apply-event', e)).toEqual([]);
    const waves = events.filter((e) => e.type === 'wave-start' || e.type === 'wave-done');
    expect(waves).toEqual([
      expect.objectContaining({ type: 'wave-start', fleet: 'web', wave: 1, waves: 3, members: ['web/0', 'web/1'] }),
      expect.objectContaining({ type: 'wave-done', fleet: 'web', wave: 1, waves: 3, succeeded: 0, failed: 2, status: 'stopped' }),
    ]);
    // Waves 2 and 3 were never started.
    const touched = new Set(events.flatMap((e) => (e.type === 'step' ? [e.address as string] : [])));
    expect([...touched].sort()).toEqual(['web/0', 'web/1']);
    const stopped = events.find((e) => e.type === 'diagnostic' && (e as { code?: string }).code === 'apply.rollout-stopped') as { detail: string } | undefined;
    expect(stopped?.detail).toMatch(/^Rollout of web stopped after wave 1 of 3: 2 failed members \(web\/0, web\/1\) reached failureThreshold 1\. Done: none; failed: web\/0, web\/1; left untouched: web\/2, web\/3, web\/4, web\/5\./);

    await writeFile(file('stack.yaml'), stackYaml([]));
    const resumed = await fleet('apply', '--yes');
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/wave 1: bringing back web\/0, web\/1 \(no other member out of service\)/);
    expect(resumed.stdout).toContain('Rollout web: 3 waves done.');
    const after = await fleet('plan');
    expect(after.stdout).toContain('No changes. The record matches the specs.');
  }, 240_000);
});

describe('fleet apply: a resumed rollout whose failed members fail again, below failureThreshold', () => {
  // maxUnavailable 2, failureThreshold 3: wave 1's two members fail to boot (2 < 3) and keep both places,
  // so the rollout stops with the rest untouched. Resumed with the fault still there, they come back in
  // wave 1 and fail again; they used to give their places back, and wave 2 took two more members out
  // (four out of Running at once, twice maxUnavailable).
  const rollout = '{ maxUnavailable: 2, failureThreshold: 3 }';
  const { fleet, file } = useAppliedStack(fleetYaml('ubuntu-22.04', rollout));

  it('keeps their places: no further member goes out, and the rollout stops saying why', async () => {
    await writeFile(file('specs', 'web.yaml'), fleetYaml('ubuntu-24.04', rollout));
    await writeFile(file('stack.yaml'), stackYaml(['boot']));
    const first = waveEvents((await fleet('apply', '--yes', '--format', 'json')).stdout);
    expect(first.touched).toEqual(['web/0', 'web/1']);

    const again = await fleet('apply', '--yes', '--format', 'json');
    expect(again.code).toBe(1);
    const second = waveEvents(again.stdout);
    expect(second.touched).toEqual(['web/0', 'web/1']);
    expect(second.waves).toEqual([
      expect.objectContaining({ type: 'wave-start', wave: 1, waves: 3, members: ['web/0', 'web/1'] }),
      expect.objectContaining({ type: 'wave-done', wave: 1, succeeded: 0, failed: 2, status: 'failed' }),
    ]);
    const stopped = second.diagnostics.find((d) => d.code === 'apply.rollout-stopped');
    expect(stopped?.detail).toMatch(/2 failed members \(web\/0, web\/1\) hold every place maxUnavailable 2 and maxSurge 0 allow/);
    expect(stopped?.detail).toMatch(/left untouched: web\/2, web\/3, web\/4, web\/5/);
  }, 240_000);
});

describe('fleet apply: a rollout resumed after its members stopped half-way through a delete-before-create replace', () => {
  // maxUnavailable 2, no maxSurge: wave 1's old VMs were shut down, then their powerOff failed (as when an apply
  // is killed there), leaving them ShuttingDown. The resume planned their replaces create-before-delete, as data
  // center room allowed a member out of Running, and created both new VMs beside the old ones: 8 VMs of a fleet
  // of 6 with maxSurge 0.
  const { fleet, file } = useAppliedStack(fleetYaml('ubuntu-22.04'));

  it('deletes their old VMs first: the fleet never has more VMs than its count', async () => {
    await writeFile(file('specs', 'web.yaml'), fleetYaml('ubuntu-24.04'));
    await writeFile(file('stack.yaml'), stackYaml(['powerOff']));
    const first = await fleet('apply', '--yes', '--format', 'json');
    expect(first.code).toBe(1);
    expect(waveEvents(first.stdout).touched).toEqual(['web/0', 'web/1']);
    const listed = await fleet('state', 'list');
    expect(listed.stdout).toMatch(/web\/0 .* ShuttingDown /);

    await writeFile(file('stack.yaml'), stackYaml([]));
    const plan = await fleet('plan');
    expect(plan.stdout).toMatch(/web\/0 replace in miami \(wave 1\): new VM for the image change; the old one goes first: it is out of Running already/);
    expect(plan.stdout).toContain('wave 1: bringing back web/0, web/1 (no other member out of service)');
    const resumed = await fleet('apply', '--yes', '--format', 'json');
    expect(resumed.code, resumed.stderr).toBe(0);
    // Each member's old VM is deleted before its new VM is created: the first step of web/0 and web/1 acts on the old VM.
    const steps = resumed.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; address?: string; operation?: string; status?: string });
    for (const a of ['web/0', 'web/1']) {
      const ops = steps.filter((e) => e.type === 'step' && e.address === a && e.status === 'done').map((e) => e.operation);
      expect(ops.indexOf('deleteVm'), `${a}: ${ops.join(', ')}`).toBeLessThan(ops.indexOf('createVm'));
    }
    expect((await fleet('plan')).stdout).toContain('No changes. The record matches the specs.');
  }, 240_000);
});

describe.each([
  {
    place: 'of their data center',
    // miami holds 7 VMs, api and web 3 each: one place left.
    stack: () => oneDcStackYaml('rollout', { vms: 7 }),
    owner: (name: string) => `team-${name}`,
  },
  {
    place: 'of their owner quota',
    // team-a may have 7 VMs, api and web (both team-a's) 3 each: one place left.
    stack: () => oneDcStackYaml('rollout').replace(/policyPack: \{ path: (.*) \}/, "policyPack: { path: $1, config: { owner-quota: { limits: { team-a: { vms: 7 } } } } }"),
    owner: () => 'team-a',
  },
])('fleet apply: two fleets surge into the last free place $place', ({ stack, owner }) => {
  // Each fleet's rollout (maxSurge 1) was planned against the whole free place, so both created a surge VM in
  // their first wave, side by side, and the authority refused the second: a plan that said it fits failed half-way.
  let dir: string;
  const fleet = (...args: string[]) => runCli([...args, '--stack', dir], { cwd: dir });
  const spec = (name: string, image: string) => `apiVersion: fleet/v1
kind: Fleet
metadata: { name: ${name}, owner: ${owner(name)} }
spec:
  count: 3
  image: ${image}
  size: { cpu: 1, memoryGiB: 2, diskGiB: 10 }
  rollout: { maxUnavailable: 1, maxSurge: 1 }
`;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-rollout-'));
    await mkdir(join(dir, 'specs'));
    await writeFile(join(dir, 'stack.yaml'), stack());
    for (const name of ['api', 'web']) await writeFile(join(dir, 'specs', `${name}.yaml`), spec(name, 'ubuntu-22.04'));
    const created = await fleet('apply', '--yes');
    expect(created.code, created.stderr).toBe(0);
  }, 120_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives the free place to one rollout at a time, and the apply succeeds', async () => {
    for (const name of ['api', 'web']) await writeFile(join(dir, 'specs', `${name}.yaml`), spec(name, 'ubuntu-24.04'));
    const plan = await fleet('plan', '--format', 'json');
    expect(plan.code, plan.stderr).toBe(0);
    const doc = JSON.parse(plan.stdout) as { plan: { rollouts: { fleet: string; waves: { surge: number }[] }[] } };
    const surgeAtOnce = doc.plan.rollouts.reduce((n, r) => n + Math.max(...r.waves.map((w) => w.surge)), 0);
    expect(surgeAtOnce).toBe(1);
    const applied = await fleet('apply', '--yes');
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    const after = await fleet('plan');
    expect(after.stdout).toContain('No changes. The record matches the specs.');
  }, 240_000);
});

describe('fleet apply of a saved rollout plan after the rollout stopped', () => {
  // Checked clean: the stopped apply bumped the versions the plan's basis holds, so applying the same
  // file again is refused as stale and starts no wave; a fresh plan resumes instead.
  const { fleet, file } = useAppliedStack(fleetYaml('ubuntu-22.04'));

  it('refuses the saved plan as stale and touches no member', async () => {
    await writeFile(file('specs', 'web.yaml'), fleetYaml('ubuntu-24.04'));
    const saved = file('rollout.plan.json');
    const plan = await fleet('plan', '--out', saved);
    expect(plan.code, plan.stderr).toBe(0);
    await writeFile(file('stack.yaml'), stackYaml(['boot']));
    const failed = await fleet('apply', saved, '--format', 'json');
    expect(failed.code).toBe(1);
    expect(waveEvents(failed.stdout).touched).toEqual(['web/0', 'web/1']);

    await writeFile(file('stack.yaml'), stackYaml([]));
    const again = await fleet('apply', saved, '--format', 'json');
    expect(again.code).not.toBe(0);
    const second = waveEvents(again.stdout);
    expect(second.touched).toEqual([]);
    expect(second.waves).toEqual([]);
    expect(second.diagnostics.map((d) => d.code)).toContain('apply.stale-plan');

    const resumed = await fleet('apply', '--yes');
    expect(resumed.code, resumed.stderr).toBe(0);
  }, 240_000);
});

describe.each([
  {
    what: 'their data center',
    // miami has 8 vCPUs, web 4 members of 2.
    stack: () => oneDcStackYaml('rollout').replace('capacity: { vms: 50 }', 'capacity: { vms: 10, cpu: 8 }'),
    refusal: 'mandatory datacenter-capacity at web/0: web/0 grows by 1 vCPU in miami, which has 0 vCPUs left for it.',
  },
  {
    what: 'their owner quota',
    // team-web may use 8 vCPUs, web 4 members of 2.
    stack: () => oneDcStackYaml('rollout').replace(/policyPack: \{ path: (.*) \}/, 'policyPack: { path: $1, config: { owner-quota: { limits: { team-web: { cpu: 8 } } } } }'),
    refusal: 'mandatory owner-quota at web: The 4 members of fleet web grow to 3 vCPUs and 2 GiB each, and only 2 of that size fit the quota of team-web',
  },
])('fleet apply of a rollout that grows its VMs past what $what has left', ({ stack, refusal }) => {
  // A change to 3 vCPUs was planned as fine; apply deleted web/0's old VM, the authority refused its new one
  // (capacity: "8 vCPUs: 6 in use, needs 3 more"; quota alike), and web/0 was lost.
  let dir: string;
  const fleet = (...args: string[]) => runCli([...args, '--stack', dir], { cwd: dir });
  const spec = (image: string, cpu: number) => `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-web }
spec:
  count: 4
  image: ${image}
  size: { cpu: ${cpu}, memoryGiB: 2, diskGiB: 10 }
  rollout: { maxUnavailable: 1 }
`;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-rollout-'));
    await mkdir(join(dir, 'specs'));
    await writeFile(join(dir, 'stack.yaml'), stack());
    await writeFile(join(dir, 'specs', 'web.yaml'), spec('ubuntu-22.04', 2));
    const created = await fleet('apply', '--yes');
    expect(created.code, created.stderr).toBe(0);
  }, 120_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is blocked at plan time, naming the member that does not fit, and no member is touched', async () => {
    await writeFile(join(dir, 'specs', 'web.yaml'), spec('ubuntu-24.04', 3));
    const plan = await fleet('plan');
    expect(plan.code).toBe(1);
    expect(plan.stdout).toContain(refusal);
    const applied = await fleet('apply', '--yes', '--format', 'json');
    expect(applied.code).not.toBe(0);
    expect(waveEvents(applied.stdout).touched).toEqual([]);
    await writeFile(join(dir, 'specs', 'web.yaml'), spec('ubuntu-22.04', 2));
    const after = await fleet('plan');
    expect(after.stdout).toContain('No changes. The record matches the specs.');
  }, 240_000);
});

describe('fleet apply: a rollout while a member is missing (its VM forgotten by the record)', () => {
  // A lost member (no VM for its address: a delete-before-create replace whose new VM was refused after its old
  // one went, a crash, here `fleet state rm`) is out of service until its create runs. The create ran beside
  // wave 1, which still took its full maxUnavailable: 3 members out of service at once with maxUnavailable 2.
  const { fleet, file } = useAppliedStack(fleetYaml('ubuntu-22.04'));

  it('creates the missing member in wave 1, holding one of its 2 places, and the next waves wait for it', async () => {
    const forgot = await fleet('state', 'rm', 'web/3');
    expect(forgot.code, forgot.stderr).toBe(0);
    await writeFile(file('specs', 'web.yaml'), fleetYaml('ubuntu-24.04'));
    const plan = await fleet('plan');
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('Rollout: 3 waves; maxUnavailable 2, maxSurge 0, failureThreshold 1');
    expect(plan.stdout).toContain('wave 1: web/0 (1 out of service, creating web/3)');
    expect(plan.stdout).toContain('wave 2: web/1, web/2 (2 out of service)');

    const applied = await fleet('apply', '--yes', '--format', 'json');
    expect(applied.code, applied.stdout.split('\n').filter((l) => l.includes('"diagnostic"')).join('\n')).toBe(0);
    const { waves } = waveEvents(applied.stdout);
    expect(waves.filter((e) => e.type === 'wave-start').map((e) => e.members)).toEqual([['web/0', 'web/3'], ['web/1', 'web/2'], ['web/4', 'web/5']]);
    const after = await fleet('plan');
    expect(after.stdout).toContain('No changes. The record matches the specs.');
  }, 240_000);
});

describe('fleet apply: a one-member fleet resumed after its surge replace failed to boot', () => {
  // The old VM, deposed, serves beside the failed new one; nothing else of the fleet changes, so the retry is no
  // rollout's. The apply settled the old VM's gate as failed before the retry ended, skipped its delete, and the
  // retry waited for that delete for ever: `fleet apply` hung (Ctrl-C did not end it).
  const one = (image: string) => `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-web }
spec:
  count: 1
  image: ${image}
  size: { cpu: 1, memoryGiB: 2, diskGiB: 10 }
`;
  const { fleet, file } = useAppliedStack(one('ubuntu-22.04'));

  it('brings the new VM back, deletes the old one, and ends', async () => {
    await writeFile(file('specs', 'web.yaml'), one('ubuntu-24.04'));
    await writeFile(file('stack.yaml'), stackYaml(['boot']));
    expect((await fleet('apply', '--yes')).code).toBe(1);
    expect((await fleet('state', 'list')).stdout).toMatch(/web\/0 \(deposed\) .* Running /);

    await writeFile(file('stack.yaml'), stackYaml([]));
    const resumed = await fleet('apply', '--yes');
    expect(resumed.code, resumed.stderr).toBe(0);
    const listed = await fleet('state', 'list');
    expect(listed.stdout).not.toContain('deposed');
    expect(listed.stdout).toMatch(/web\/0 .* Running .*img-ubuntu-2404/);
    expect((await fleet('plan')).stdout).toContain('No changes. The record matches the specs.');
  }, 120_000);
});

describe('fleet plan: a deposed old VM holds the last place its fleet\'s next surge VM needs', () => {
  // A failed surge replace left web/0's old VM deposed (serving) beside its failed new VM, and they fill miami.
  // The full plan deletes the deposed VM, but only after web/0's new VM runs, so web/1's surge VM has no room and
  // the plan was blocked with "the data center has no room for a surge VM": the hint did not name the deposed VM
  // nor the targeted apply that gets past it.
  const two = (image: string) => `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-web }
spec:
  count: 2
  image: ${image}
  size: { cpu: 1, memoryGiB: 2, diskGiB: 10 }
  rollout: { maxUnavailable: 0, maxSurge: 1 }
`;
  let dir = '';
  const fleet = (...args: string[]) => runCli([...args, '--stack', dir], { cwd: dir });
  const stack = (failCalls: string[]) => oneDcStackYaml('rollout', { failCalls, vms: 3 });
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-rollout-'));
    await mkdir(join(dir, 'specs'));
    await writeFile(join(dir, 'stack.yaml'), stack([]));
    await writeFile(join(dir, 'specs', 'web.yaml'), two('ubuntu-22.04'));
    const created = await fleet('apply', '--yes');
    expect(created.code, created.stderr).toBe(0);
  }, 120_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('names the deposed VM and the targeted apply; that apply deletes it and the full plan is no longer blocked', async () => {
    await writeFile(join(dir, 'specs', 'web.yaml'), two('ubuntu-24.04'));
    await writeFile(join(dir, 'stack.yaml'), stack(['boot']));
    expect((await fleet('apply', '--yes')).code).toBe(1);
    expect((await fleet('state', 'list')).stdout).toMatch(/web\/0 \(deposed\) .* Running /);
    await writeFile(join(dir, 'stack.yaml'), stack([]));

    const blocked = await fleet('plan', '--format', 'json');
    expect(blocked.code).toBe(1);
    const doc = JSON.parse(blocked.stdout) as { plan: { policy: { violations: { policy: string; message: string; hint?: string }[] } } };
    const v = doc.plan.policy.violations.find((x) => x.policy === 'rollout');
    expect(v?.message).toMatch(/the data center has no room for a surge VM/);
    expect(v?.hint).toBe(
      "Allow rollout.maxUnavailable at least 1 in fleet web's spec or free capacity or quota for a surge VM. The deposed old VM of web/0 still takes a place in miami until this plan's apply deletes it: run fleet apply --target web/0 first (review it with fleet plan --target web/0), which deletes it, then plan again.",
    );

    const targeted = await fleet('apply', '--yes', '--target', 'web/0');
    expect(targeted.code, targeted.stdout + targeted.stderr).toBe(0);
    expect((await fleet('state', 'list')).stdout).not.toContain('deposed');

    const full = await fleet('plan', '--format', 'json');
    const after = JSON.parse(full.stdout) as { plan: { blocked: boolean; policy: { violations: unknown[] } } };
    expect(after.plan.blocked).toBe(false);
    expect(after.plan.policy.violations).toEqual([]);
    const applied = await fleet('apply', '--yes');
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    expect((await fleet('plan')).stdout).toContain('No changes. The record matches the specs.');
  }, 240_000);
});

describe('fleet apply: a lower count beside a surge rollout, within the owner quota the plan checked', () => {
  // Count 6 to 4 beside an image change, maxSurge 2, team-web's quota 6 VMs: the plan checks the surge VMs against
  // the quota as count + maxSurge (4 + 2) and finds them fitting. Apply deleted web/4 and web/5 beside wave 1 while
  // wave 1 created its surge VMs: 6 + 2 VMs at once, and the authority vetoed a surge VM ("the quota of owner
  // team-web is 6 VMs: 6 in use"), stopping the rollout. The deletes now hold surge places until they are done.
  let dir: string;
  const fleet = (...args: string[]) => runCli([...args, '--stack', dir], { cwd: dir });
  const stack = () => oneDcStackYaml('rollout').replace(/policyPack: \{ path: (.*) \}/, 'policyPack: { path: $1, config: { owner-quota: { limits: { team-web: { vms: 6 } } } } }');
  const spec = (count: number, image: string) => `apiVersion: fleet/v1
kind: Fleet
metadata: { name: web, owner: team-web }
spec:
  count: ${count}
  image: ${image}
  size: { cpu: 1, memoryGiB: 2, diskGiB: 10 }
  rollout: { maxUnavailable: 1, maxSurge: 2 }
`;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-rollout-'));
    await mkdir(join(dir, 'specs'));
    await writeFile(join(dir, 'stack.yaml'), stack());
    await writeFile(join(dir, 'specs', 'web.yaml'), spec(6, 'ubuntu-22.04'));
    const created = await fleet('apply', '--yes');
    expect(created.code, created.stderr).toBe(0);
  }, 120_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('deletes the members the lower count drops before it creates surge VMs, and the apply succeeds', async () => {
    await writeFile(join(dir, 'specs', 'web.yaml'), spec(4, 'ubuntu-24.04'));
    const plan = await fleet('plan');
    expect(plan.code, plan.stdout + plan.stderr).toBe(0);
    expect(plan.stdout).toContain('wave 1: web/0, web/1, web/2 (1 out of service, 2 replaced by a surge VM first)');
    const applied = await fleet('apply', '--yes');
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    expect(applied.stdout + applied.stderr).not.toContain('quota');
    const after = await fleet('plan');
    expect(after.stdout).toContain('No changes. The record matches the specs.');
  }, 240_000);
});
