// Every stuck VM has a way out, generated (docs/recovery.md): every state of
// the default pack's lifecycle (read from the loaded pack, so a new state is
// covered) × each condition its VM can be in at its data center, seeded with
// the record's API and a sim driver of the test's own (the cloud's console),
// then `fleet apply --yes` (embedded: PGlite, sims in the CLI) at most twice,
// or the way out its diagnostic names, must bring each member to its spec:
// Running, PoweredOff, or gone (count 0, the spec removed).
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPack } from '../engine/policy/index.ts';
import { openRecord } from '../engine/record/index.ts';
import { createSimDriver } from '../providers/drivers/sim/index.ts';
import { signedCredentials, testCredentialKey } from '../providers/drivers/sim/testing.ts';
import type { ActualVm } from '../protocol/index.ts';
import { runCli, type CliRun } from './helpers/cli.ts';
import { REPO, fleetYaml, tempStack, type TempStack } from './helpers/stack.ts';
import { readWorld } from './helpers/world.ts';

/** What the VM's data center holds when the record says the member is in a state. */
type Condition = 'running' | 'stopped' | 'gone' | 'no-cloud-id' | 'in-flight';
const CONDITIONS: readonly Condition[] = ['running', 'stopped', 'gone', 'no-cloud-id'];

interface Case {
  state: string;
  condition: Condition;
  fleet: string;
}

interface World {
  vms: { address: string; fleet: string; state: string; dataCenter: string; id: string; cloudId: string | null }[];
  cloud: ActualVm[];
}

const world = (dir: string): Promise<World> => readWorld(dir);

/** Why fleet `c.fleet` does not hold its spec (`want`: a state, or `gone`), or undefined when it does. */
function notConverged(w: World, fleet: string, want: string, seeded: ReadonlySet<string>): string | undefined {
  const live = w.vms.filter((v) => v.fleet === fleet);
  const present = w.cloud.filter((c) => c.status === 'present');
  // The seeded VM ids of this fleet: any of them still present in a data center but no live record row is an orphan.
  const orphans = present.filter((c) => seeded.has(c.vmId) && !live.some((v) => v.id === c.vmId));
  if (orphans.length > 0) return `orphaned in the cloud: ${orphans.map((o) => `${o.cloudId} (${o.observedState})`).join(', ')}`;
  if (want === 'gone') return live.length === 0 ? undefined : `record still holds ${live.map((v) => `${v.address} ${v.state}`).join(', ')}`;
  if (live.length !== 1) return `record holds ${live.length} live VMs`;
  const vm = live[0];
  if (vm.state !== want) return `record holds ${vm.address} ${vm.state}`;
  const mine = present.filter((c) => c.vmId === vm.id);
  if (mine.length !== 1) return `cloud holds ${mine.length} present VMs of ${vm.address}`;
  if (mine[0].cloudId !== vm.cloudId) return `record's cloud id ${vm.cloudId}, cloud's ${mine[0].cloudId}`;
  if (mine[0].observedState !== want) return `cloud shows ${vm.address} ${mine[0].observedState}`;
  return undefined;
}

async function packStates(): Promise<string[]> {
  const { pack } = await loadPack(join(REPO, 'policies', 'default'));
  return [...pack!.lifecycle.states];
}

/**
 * Seeds each case's one member: the fleet applied Running first (a real VM in a data center), then the record moved
 * to the case's state (no edge: a seed) and the data center put in the case's condition.
 */
async function seed(st: TempStack, cases: readonly Case[], desired: string): Promise<Map<string, string>> {
  for (const c of cases) await st.spec(c.fleet, fleetYaml(c.fleet, { count: 1 }));
  const applied = await runCli(['apply', '--yes', '--stack', st.dir], { cwd: REPO });
  expect(applied.code, applied.stdout + applied.stderr).toBe(0);
  const ids = new Map<string, string>();
  const record = await openRecord(`pglite://${join(st.dir, '.fleet', 'record')}`);
  const sims = new Map<string, Awaited<ReturnType<typeof createSimDriver>>>();
  const sim = async (dc: string) => {
    let s = sims.get(dc);
    if (!s) {
      s = await createSimDriver({ dataCenter: dc, stateDir: join(st.dir, '.fleet', 'sim', dc), latencyMs: 0, credentialKey: testCredentialKey(dc) });
      sims.set(dc, s);
    }
    return s;
  };
  try {
    for (const c of cases) {
      const vm = (await record.findVm('e2e', `${c.fleet}/0`))!;
      ids.set(c.fleet, vm.id);
      const terminal = c.state === 'Deleted';
      let row = vm;
      if (c.state !== vm.state || c.condition === 'no-cloud-id' || terminal) {
        row = await record.transitionVm(vm.id, vm.version, c.state, { actor: 'seed', outcome: 'drift', detail: 'seeded by the test' }, {
          ...(c.condition === 'no-cloud-id' ? { cloudId: null } : {}),
          ...(terminal ? { retire: true } : {}),
        });
      }
      void row;
      const s = await sim(vm.dataCenter);
      const ref = { vmId: vm.id, cloudId: vm.cloudId };
      if (c.condition === 'stopped') await s.powerOff(signedCredentials(vm.dataCenter), ref);
      if (c.condition === 'gone') await s.deleteVm(signedCredentials(vm.dataCenter), ref);
    }
  } finally {
    for (const s of sims.values()) await s.close();
    await record.close();
  }
  for (const c of cases) {
    if (desired === 'gone-removed') await st.spec(c.fleet, null);
    else if (desired === 'gone') await st.spec(c.fleet, fleetYaml(c.fleet, { count: 0 }));
    else await st.spec(c.fleet, fleetYaml(c.fleet, { count: 1, state: desired }));
  }
  return ids;
}

/** Deletes a VM in an embedded sim data center by its cloud id, as the cloud's console would (no CLI runs meanwhile). */
async function deleteInSim(dir: string, dc: string, cloudId: string): Promise<void> {
  const sim = await createSimDriver({ dataCenter: dc, stateDir: join(dir, '.fleet', 'sim', dc), latencyMs: 0, credentialKey: testCredentialKey(dc) });
  try {
    await sim.deleteVm(signedCredentials(dc), { vmId: '', cloudId });
  } finally {
    await sim.close();
  }
}

/** The error diagnostics of a run's stderr that name no command (a way out is a `fleet …` command to run). */
function namesNoCommand(r: CliRun): string[] {
  return r.stderr
    .split(/\n(?=error\[|warning\[)/)
    .filter((block) => block.startsWith('error[') && !/`fleet [a-z]/.test(block))
    .map((block) => block.slice(0, 400));
}

const say = (r: CliRun) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;

describe.each([
  { desired: 'Running', want: 'Running' },
  { desired: 'PoweredOff', want: 'PoweredOff' },
  { desired: 'gone', want: 'gone' },
  { desired: 'gone-removed', want: 'gone' },
])('every state × cloud condition reaches $desired', ({ desired, want }) => {
  let st: TempStack;
  let cases: Case[] = [];
  let terminal: readonly string[] = [];
  let seeded: Map<string, string>;
  const fleet = (...args: string[]) => runCli([...args, '--stack', st.dir], { cwd: REPO });
  const runs: CliRun[] = [];
  const after: World[] = [];
  let refresh: CliRun;
  const consoleDeleted: string[] = [];
  const badHints: string[] = [];
  let wayOut: CliRun;
  let end: World;

  beforeAll(async () => {
    const states = await packStates();
    terminal = (await loadPack(join(REPO, 'policies', 'default'))).pack!.lifecycle.terminal;
    cases = states.flatMap((state, i) => CONDITIONS.map((condition, j) => ({ state, condition, fleet: `s${i}c${j}` })));
    st = await tempStack();
    // A fleet of no members keeps the specs glob matching once every case's spec is removed.
    await st.spec('keep', fleetYaml('keep', { count: 0 }));
    seeded = await seed(st, cases, desired);
    for (let i = 0; i < 2; i++) {
      runs.push(await fleet('apply', '--yes'));
      after.push(await world(st.dir));
    }
    // The way out of a difference no plan acts on (the record holds the spec's state, its cloud does not):
    // docs/recovery.md, `fleet refresh` records it, then `fleet apply`.
    refresh = await fleet('refresh', '--format', 'json');
    // A VM of a member the record retired (Deleted) and made again since is no fleet command's: refresh names it and
    // says to delete it in its data center, which the test does as the cloud's console would.
    const unknown = (JSON.parse(refresh.stdout) as { drift: { kind: string; dataCenter: string; address: string; detail: string }[] }).drift.filter((d) => d.kind === 'unknown');
    for (const d of unknown) {
      // Its member is live again, or no member of the specs now: an import of it is refused, so none is named.
      if (/adopts it again/.test(d.detail) || !d.detail.includes('delete it in its data center')) badHints.push(d.detail);
      consoleDeleted.push(d.address);
      await deleteInSim(st.dir, d.dataCenter, d.address);
    }
    wayOut = await fleet('apply', '--yes');
    end = await world(st.dir);
  }, 600_000);
  afterAll(async () => {
    await st?.remove();
  });

  it('never says success short of the spec, and converges within two applies or after fleet refresh', () => {
    const lies: string[] = [];
    const stuck: string[] = [];
    const outcome = { applies: 0, refresh: 0, console: 0, stuck: 0 };
    for (const c of cases) {
      const ids = new Set([seeded.get(c.fleet)!]);
      // Seeded in the spec's state: the record says there is nothing to do, and only a refresh learns otherwise.
      // Or seeded retired (the terminal state): its cloud VM is no member's any more (refresh reports it unknown).
      const recordSaysDone = c.state === want || terminal.includes(c.state);
      for (let i = 0; i < runs.length; i++) {
        const why = notConverged(after[i], c.fleet, want, ids);
        if (runs[i].code === 0 && why && !recordSaysDone) lies.push(`${c.state} × ${c.condition}: apply ${i + 1} exited 0 but ${why}`);
      }
      if (!notConverged(after[1], c.fleet, want, ids)) outcome.applies++;
      else if (!notConverged(end, c.fleet, want, ids)) {
        // Deleted in its data center by hand (the way out refresh named), or recorded by refresh and applied.
        const orphan = after[1].cloud.some((a) => a.status === 'present' && a.vmId === seeded.get(c.fleet) && consoleDeleted.includes(a.cloudId));
        if (orphan) outcome.console++;
        else outcome.refresh++;
      }
      else {
        outcome.stuck++;
        stuck.push(`${c.state} × ${c.condition}: ${notConverged(end, c.fleet, want, ids)}`);
      }
    }
    console.log(`${desired}: ${cases.length} cases: ${outcome.applies} by at most two applies, ${outcome.refresh} after fleet refresh, ${outcome.console} by deleting an orphan in its data center as refresh says, ${outcome.stuck} stuck`);
    const output = [...runs, refresh, wayOut].map(say).join('\n----\n');
    // refusedHints: refresh names a way out that is refused; lies: an apply exited 0 short of the spec; stuck: no way
    // out worked; noWayOut: an apply's error that names no command.
    const noWayOut = runs.flatMap(namesNoCommand);
    expect({ refusedHints: badHints, lies, stuck, noWayOut }, output).toEqual({ refusedHints: [], lies: [], stuck: [], noWayOut: [] });
    expect(wayOut.code, say(wayOut)).toBe(0);
  });
});

// The cloud call in flight never answers (every mutating call of the sim hangs), and the apply waiting on it is
// killed (a CI job's timeout, an operator's Ctrl-C that did not end it): the data center is healed and `fleet
// apply` run again, at most twice, from every state the record may hold (the VM running in its data center).
describe.each([
  { desired: 'Running', want: 'Running' },
  { desired: 'gone', want: 'gone' },
])('every state × a cloud call that never answers, its apply killed, reaches $desired', ({ desired, want }) => {
  it('converges within two applies after the kill, never saying success short of the spec', async () => {
    const states = await packStates();
    const terminal = (await loadPack(join(REPO, 'policies', 'default'))).pack!.lifecycle.terminal;
    const cases: Case[] = states.map((state, i) => ({ state, condition: 'in-flight', fleet: `s${i}` }));
    const st = await tempStack();
    try {
      await st.spec('keep', fleetYaml('keep', { count: 0 }));
      const seeded = await seed(st, cases, desired);
      const file = join(st.dir, 'stack.yaml');
      const plain = await readFile(file, 'utf8');
      await writeFile(file, plain.replaceAll('sim: { latencyMs: 1, bootMs: 1 }', 'sim: { latencyMs: 1, bootMs: 1, hangCalls: [createVm, powerOn, boot, awaitReady, shutdown, powerOff, deleteVm] }'));
      const child = spawn(process.execPath, [join(REPO, 'bin', 'fleet.mjs'), 'apply', '--yes', '--format', 'json', '--stack', st.dir], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      const exited = new Promise((r) => child.on('exit', r));
      // Killed once its members started: each is then in a cloud call that never answers (or done with the edges
      // that need none).
      await new Promise<void>((resolve) => {
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.includes('"type":"start"')) resolve();
        });
        void exited.then(() => resolve());
      });
      child.kill('SIGKILL');
      await exited;
      expect(out, 'the apply started its members before it was killed').toContain('"type":"start"');
      await writeFile(file, plain);
      const runs: CliRun[] = [];
      const after: World[] = [];
      for (let i = 0; i < 2; i++) {
        runs.push(await runCli(['apply', '--yes', '--stack', st.dir], { cwd: REPO }));
        after.push(await world(st.dir));
      }
      const lies: string[] = [];
      const stuck: string[] = [];
      for (const c of cases) {
        const ids = new Set([seeded.get(c.fleet)!]);
        const recordSaysDone = c.state === want || terminal.includes(c.state);
        for (let i = 0; i < runs.length; i++) {
          const why = notConverged(after[i], c.fleet, want, ids);
          if (runs[i].code === 0 && why && !recordSaysDone) lies.push(`${c.state}: apply ${i + 1} exited 0 but ${why}`);
        }
        // An orphan of a retired VM is refresh's to report (the matrix above follows it); here, the member itself.
        const why = notConverged(after[1], c.fleet, want, terminal.includes(c.state) ? new Set() : ids);
        if (why) stuck.push(`${c.state}: ${why}`);
      }
      console.log(`${desired}, a call that never answers: ${cases.length} states, ${cases.length - stuck.length} converged within two applies after the kill, ${stuck.length} stuck`);
      const noWayOut = runs.flatMap(namesNoCommand);
      expect({ lies, stuck, noWayOut }, runs.map(say).join('\n----\n')).toEqual({ lies: [], stuck: [], noWayOut: [] });
    } finally {
      await st.remove();
    }
  }, 300_000);
});
