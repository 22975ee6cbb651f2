// Ways out of the stuck cases the state matrix (stuck-matrix.e2e.test.ts) does not seed: a fleet lock a dead apply
// holds, and a data center removed from stack.yaml while VMs of the record still live there. Each: the diagnostic
// names a command, and following it converges (embedded: PGlite, sims in the CLI).
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openRecord } from '../engine/record/index.ts';
import { createSimDriver } from '../providers/drivers/sim/index.ts';
import { signedCredentials, testCredentialKey } from '../providers/drivers/sim/testing.ts';
import { runCli, type CliRun } from './helpers/cli.ts';
import { REPO, fleetYaml, tempStack, type TempStack } from './helpers/stack.ts';

/** The pid of a process that ran and is gone. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => child.on('exit', r));
  return child.pid!;
}

async function states(dir: string): Promise<Record<string, string>> {
  const record = await openRecord(`pglite://${join(dir, '.fleet', 'record')}`);
  try {
    return Object.fromEntries((await record.listVms('e2e')).map((v) => [v.address, `${v.state}@${v.dataCenter}`]));
  } finally {
    await record.close();
  }
}

/** A stack whose fleet web of one VM is applied (Running), and `fleet` run on it. */
async function webApplied(): Promise<{ st: TempStack; fleet: (...args: string[]) => Promise<CliRun> }> {
  const st = await tempStack();
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
  try {
    await st.spec('web', fleetYaml('web', { count: 1 }));
    const applied = await fleet('apply', '--yes');
    expect(applied.code, applied.stderr).toBe(0);
  } catch (err) {
    await st.remove();
    throw err;
  }
  return { st, fleet };
}

describe('a fleet lock a dead apply holds', () => {
  // holds: state rm is refused while it does (a lease run out holds nothing); breaksAtOnce: the next apply takes it.
  const holders = [
    { name: 'an apply of this host that no longer runs', host: () => hostname(), leaseMs: 600_000, holds: true, breaksAtOnce: true },
    { name: 'an apply of another host whose lease ran out', host: () => 'elsewhere', leaseMs: 1, holds: false, breaksAtOnce: true },
    { name: 'an apply of another host whose lease still runs', host: () => 'elsewhere', leaseMs: 600_000, holds: true, breaksAtOnce: false },
  ];
  it.each(holders)('$name: state rm says how to release it, fleet unlock or the next apply does, and the apply converges', async ({ host, leaseMs, holds, breaksAtOnce }) => {
    const { st, fleet } = await webApplied();
    try {
      const record = await openRecord(`pglite://${join(st.dir, '.fleet', 'record')}`);
      let lockId: string;
      try {
        const held = await record.acquireLocks('e2e', ['web'], { who: 'ci', host: host(), planId: 'p-dead', pid: await deadPid() }, { leaseMs });
        lockId = held.lockId;
      } finally {
        await record.close();
      }
      const list = await fleet('state', 'list');
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toContain(lockId!);
      if (holds) {
        // state rm refuses while the lock holds, naming it and the command that releases it.
        const rm = await fleet('state', 'rm', 'web/0');
        expect(rm.code).toBe(1);
        expect(rm.stderr).toContain('record.lock-held');
        expect(rm.stderr).toContain(`fleet unlock ${lockId!}`);
      }

      await st.spec('web', fleetYaml('web', { count: 2 }));
      const applied = await fleet('apply', '--yes', '--lock-timeout', '0');
      if (breaksAtOnce) {
        expect(applied.code, applied.stdout + applied.stderr).toBe(0);
      } else {
        expect(applied.code).toBe(1);
        const said = applied.stdout + applied.stderr;
        expect(said).toContain(`fleet unlock ${lockId!}`);
        const unlocked = await fleet('unlock', lockId!);
        expect(unlocked.code, unlocked.stderr).toBe(0);
        const again = await fleet('apply', '--yes', '--lock-timeout', '0');
        expect(again.code, again.stdout + again.stderr).toBe(0);
      }
      expect(Object.values(await states(st.dir)).map((s) => s.split('@')[0])).toEqual(['Running', 'Running']);
      expect((await fleet('plan', '--detailed-exitcode')).code).toBe(0);
    } finally {
      await st.remove();
    }
  }, 120_000);
});

// Before: `fleet plan` said "No changes. The record matches the specs." of a member living in a data center
// stack.yaml no longer lists, and a plan deleting it stopped `fleet apply` with "No DMZ client for data center
// richmond, where web/1 lives; check the stack's dataCenters.", naming no way out.
describe('a data center removed from stack.yaml while VMs live there', () => {
  it.each([
    { spec: 'the spec kept', count: 2, want: ['Running@miami', 'Running@miami'] },
    { spec: 'count 0', count: 0, want: [] },
    { spec: 'the spec removed', count: null, want: [] },
  ])('$spec: plan warns naming the ways out, apply refuses naming them, and following fleet state rm converges', async ({ count, want }) => {
    const st = await tempStack();
    const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
    try {
      await st.spec('keep', fleetYaml('keep', { count: 0 }));
      await st.spec('web', fleetYaml('web', { count: 2 }));
      expect((await fleet('apply', '--yes')).code).toBe(0);
      expect(Object.values(await states(st.dir)).sort()).toEqual(['Running@miami', 'Running@richmond']);
      const gone = Object.entries(await states(st.dir)).find(([, s]) => s.endsWith('@richmond'))![0];
      const file = join(st.dir, 'stack.yaml');
      const yaml = await readFile(file, 'utf8');
      await writeFile(file, yaml.slice(0, yaml.indexOf('    - name: richmond')));
      await st.spec('web', count === null ? null : fleetYaml('web', { count }));

      const plan = await fleet('plan');
      expect(plan.code, plan.stderr).toBe(0);
      expect(plan.stderr).toContain('warning[plan.data-center-gone]');
      expect(plan.stderr).toContain(`live in data center "richmond", which stack e2e's dataCenters no longer list`);
      // A member the plan changes is named; one it leaves as it is, counted with its fleet.
      expect(plan.stderr).toContain(count === 2 ? '(1 of fleet web, `fleet state list` names them)' : `(${gone}) live in data center`);
      if (count !== 2) {
        const refused = await fleet('apply', '--yes');
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain('error[apply.no-client]');
        expect(refused.stderr).toContain(`\`fleet state rm ${gone}\``);
      }
      // The way out both name: forget the member (its VM stays in richmond), then apply.
      const rm = await fleet('state', 'rm', gone);
      expect(rm.code, rm.stderr).toBe(0);
      const applied = await fleet('apply', '--yes');
      expect(applied.code, applied.stdout + applied.stderr).toBe(0);
      expect(applied.stderr).not.toContain('plan.data-center-gone');
      expect(Object.values(await states(st.dir)).sort()).toEqual(want);
      expect((await fleet('plan', '--detailed-exitcode')).code).toBe(0);
    } finally {
      await st.remove();
    }
  }, 120_000);
});

// Before: a VM the record holds `Starting` whose boot ended while no apply awaited it (an apply that stopped
// mid-boot: killed, or its record gone away past the agent's boot window, so the agent gave up) was planned
// `Starting -> Running` (awaitReady) by the next apply, which failed it at once with the old boot's failure
// ("boot endpoint unreachable …"), exit 1: only a third apply, from BootFailed, converged. The apply's check of
// the cloud now records `Starting -> BootFailed` (drift) first, and the same apply recovers it along the pack's
// recovery edges with a fresh boot.
describe('a VM the record holds Starting whose boot ended unawaited', () => {
  const cases = [
    { name: 'its agent gave up, the VM left on (the sim: no boot endpoint answered)', powerOff: false },
    { name: 'its agent gave up and powered the VM off (agent.sh)', powerOff: true },
  ];
  it.each(cases)('$name: one fleet apply converges', async ({ powerOff }) => {
    const { st, fleet } = await webApplied();
    try {
      const record = await openRecord(`pglite://${join(st.dir, '.fleet', 'record')}`);
      let vm;
      try {
        vm = (await record.findVm('e2e', 'web/0'))!;
        await record.transitionVm(vm.id, vm.version, 'Starting', { actor: 'seed', outcome: 'drift', detail: 'seeded by the test' });
      } finally {
        await record.close();
      }
      // The data center's console: the VM booted again with a token, and no boot endpoint known to answer its agent.
      const sim = await createSimDriver({ dataCenter: vm.dataCenter, stateDir: join(st.dir, '.fleet', 'sim', vm.dataCenter), latencyMs: 0, credentialKey: testCredentialKey(vm.dataCenter) });
      try {
        const creds = signedCredentials(vm.dataCenter);
        const ref = { vmId: vm.id, cloudId: vm.cloudId! };
        await sim.powerOff(creds, ref);
        await sim.powerOn(creds, ref);
        await sim.boot(creds, ref, { bootToken: 'a-token-of-a-boot-no-apply-awaits' });
        const settled = await sim.waitSettled(vm.cloudId!);
        expect(settled.observedState).toBe('BootFailed');
        if (powerOff) expect((await sim.powerOff(creds, ref)).observedState).toBe('PoweredOff');
      } finally {
        await sim.close();
      }
      const applied = await fleet('apply', '--yes');
      expect(applied.code, applied.stdout + applied.stderr).toBe(0);
      expect(applied.stderr).toContain('apply.vm-drift');
      expect(applied.stderr).toContain('Starting -> BootFailed');
      expect(await states(st.dir)).toEqual({ 'web/0': `Running@${vm.dataCenter}` });
      expect((await fleet('plan', '--detailed-exitcode')).code).toBe(0);
    } finally {
      await st.remove();
    }
  }, 120_000);
});
