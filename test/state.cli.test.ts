// `fleet state list` / `fleet state show` of VMs an apply is taking away: in-process CLI, a real PGlite record,
// embedded sim data centers.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { VmRow } from '../engine/record/types.ts';
import { fleetYaml, useTempStack } from './helpers/stack.ts';

/** Replaces the sim settings of every data center of a temp stack. */
async function setSim(dir: string, sim: string): Promise<void> {
  const file = join(dir, 'stack.yaml');
  await writeFile(file, (await readFile(file, 'utf8')).replace(/sim: \{[^\n]*\}/g, `sim: ${sim}`));
}

// Found by QA (qa-state): the DESIRED column (and `desired state`, and JSON's desiredState) was the record's column,
// written by the apply that created or last changed the VM and never by a delete: a member whose fleet's count was
// lowered, stuck half-way out (ShuttingDown), was listed DESIRED Running, as was a member of a fleet whose spec is gone.
describe('the desired state of a VM the plan deletes', () => {
  const st = useTempStack();
  const fleet = st.fleet;

  it('is the terminal state (Deleted) in state list and state show, text and JSON, and the spec\'s for the members it keeps', async () => {
    await st.spec('db', fleetYaml('db', { count: 2 }));
    await st.spec('web', fleetYaml('web', { count: 1, state: 'PoweredOff' }));
    expect((await fleet('apply', '--yes')).code).toBe(0);
    // db/1 goes (count 2 -> 1) and its powerOff fails: it stays ShuttingDown, on its way out.
    await setSim(st.dir, '{ latencyMs: 1, bootMs: 1, failCalls: [powerOff] }');
    await st.spec('db', fleetYaml('db', { count: 1 }));
    const failed = await fleet('apply', '--yes');
    expect(failed.code, failed.stdout).toBe(1);
    // web's spec goes: the next plan deletes web/0.
    await st.spec('web', null);

    const list = await fleet('state', 'list');
    expect(list.code, list.stderr).toBe(0);
    const row = (address: string) => list.stdout.split('\n').find((l) => l.startsWith(`${address} `))!.split(/ {2,}/);
    const [header] = list.stdout.split('\n');
    const col = header.split(/ {2,}/).indexOf('DESIRED');
    // db/1, stuck on its way out, is headed for Deleted; db/0 and web/0 are at rest in what their last apply asked
    // for (web/0's spec gone is a change `fleet plan` shows, not state).
    expect([row('db/0')[col], row('db/1')[col], row('web/0')[col]]).toEqual(['Running', 'Deleted', 'PoweredOff']);
    expect(row('db/1')[header.split(/ {2,}/).indexOf('STATE')]).toBe('ShuttingDown');

    const json = JSON.parse((await fleet('state', 'list', '--format', 'json')).stdout) as { vms: VmRow[] };
    expect(Object.fromEntries(json.vms.map((v) => [v.address, v.desiredState]))).toEqual({ 'db/0': 'Running', 'db/1': 'Deleted', 'web/0': 'PoweredOff' });
    const show = await fleet('state', 'show', 'db/1');
    expect(show.stdout).toMatch(/desired state: +Deleted \(fleet db has count 1\)/);
    const shown = JSON.parse((await fleet('state', 'show', 'db/1', '--format', 'json')).stdout) as { vm: VmRow };
    expect(shown.vm.desiredState).toBe('Deleted');
  }, 120_000);

  it('is the record\'s column, said so, while the specs of its fleet do not load; a stable fleet reads no spec', async () => {
    // Only the files of the fleets with a VM on its way somewhere are read (as `fleet plan --target` reads them, so a
    // stack of thousands of fleet files costs one parse), and a stable fleet's list reads none: a broken file of
    // another fleet changes nothing.
    await st.spec('broken', 'apiVersion: fleet/v1\nkind: Fleet\nmetadata: { name: broken }\n');
    try {
      const list = await fleet('state', 'list');
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).not.toContain('DESIRED is the state last applied');
      expect(list.stdout.split('\n').find((l) => l.startsWith('db/1 '))).toMatch(/ShuttingDown +Deleted /);
      expect((await fleet('state', 'show', 'db/1')).stdout).toMatch(/desired state: +Deleted \(fleet db has count 1\)/);
      // db's own file broken (a second definition of db): the record's column, said so.
      await st.spec('broken', 'apiVersion: fleet/v1\nkind: Fleet\nmetadata: { name: db }\n');
      const own = await fleet('state', 'list');
      expect(own.stdout).toContain("DESIRED is the state last applied: the stack's specs do not load (`fleet validate` says why).");
      expect(own.stdout.split('\n').find((l) => l.startsWith('db/1 '))).toMatch(/ShuttingDown +Running /);
      expect((await fleet('state', 'show', 'db/1')).stdout).toMatch(/desired state: +Running \(as last applied: the stack's specs do not load\)/);
      // A VM at rest is shown as the record holds it, with no spec read and nothing said.
      const stable = await fleet('state', 'list', '--fleet', 'web');
      expect(stable.stdout).not.toContain('DESIRED is the state last applied');
      expect(stable.stdout.split('\n').find((l) => l.startsWith('web/0 '))).toMatch(/PoweredOff +PoweredOff /);
      expect((await fleet('state', 'show', 'web/0')).stdout).toMatch(/desired state: +PoweredOff\n/);
    } finally {
      await st.spec('broken', null);
    }
  });
});
