// `fleet import` of a cloud VM whose cloud id the record holds already, under
// another VM id (no unique constraint holds cloud_id): in-process CLI, a
// real PGlite record, embedded sim data centers. The record-level check is
// in engine/record/record.contract.test.ts (PGlite and PostgreSQL).
import { randomUUID } from 'node:crypto';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openRecord } from '../engine/record/index.ts';
import type { VmRow } from '../engine/record/types.ts';
import { REPO, fleetYaml, useTempStack } from './helpers/stack.ts';


/** A temp stack whose fleet web has two members (for one describe block). */
function useWebStack(): ReturnType<typeof useTempStack> {
  const st = useTempStack();
  beforeAll(() => st.spec('web', fleetYaml('web', { count: 2 })));
  return st;
}

/** Applies the stack, then forgets `addresses` (fleet state rm): their rows as they were, and the record's URL. */
/**
 * Applies the stack's specs, then imports web/1's VM at `into` through a record that never knew the data center's
 * VMs (the stack's record lost and started afresh): refused, that record left empty. Its apply.import-refused
 * diagnostic, web/1's VM, and that record's URL.
 */
async function refusedThroughAfreshRecord(st: ReturnType<typeof useTempStack>, into: string): Promise<{ d: { detail: string }; web1: VmRow; other: string }> {
  const applied = await st.fleet('apply', '--yes');
  expect(applied.code, applied.stderr).toBe(0);
  const web1 = (JSON.parse((await st.fleet('state', 'show', 'web/1', '--format', 'json')).stdout) as { vm: VmRow }).vm;
  const other = `pglite://${join(st.dir, '.fleet', 'record-afresh')}`;
  const refused = await st.fleet('import', into, web1.cloudId!, '--record-url', other, '--format', 'json');
  expect(refused.code, refused.stdout).toBe(1);
  const { diagnostics } = JSON.parse(refused.stdout) as { diagnostics: { code: string; detail: string; address?: string }[] };
  const d = diagnostics.find((x) => x.code === 'apply.import-refused');
  expect(d?.address).toBe(into);
  const record = await openRecord(other);
  try {
    expect(await record.listVms('e2e')).toEqual([]);
  } finally {
    await record.close();
  }
  return { d: d!, web1, other };
}

async function applyThenForget(st: ReturnType<typeof useTempStack>, addresses: string[]): Promise<{ url: string; rows: VmRow[] }> {
  const applied = await st.fleet('apply', '--yes');
  expect(applied.code, applied.stderr).toBe(0);
  const url = `pglite://${join(st.dir, '.fleet', 'record')}`;
  const record = await openRecord(url);
  const rows: VmRow[] = [];
  try {
    for (const a of addresses) rows.push((await record.findVm('e2e', a))!);
  } finally {
    await record.close();
  }
  for (const a of addresses) expect((await st.fleet('state', 'rm', a)).code).toBe(0);
  return { url, rows };
}

describe('fleet import of a cloud id the record holds under another VM id', () => {
  const st = useWebStack();
  const fleet = st.fleet;

  it('is refused (apply.import-refused) naming the VM that holds it; nothing is adopted', async () => {
    const { url, rows: [web0] } = await applyThenForget(st, ['web/0']);
    // The same cloud VM recorded under another VM id, live at api/0 (what a unique constraint would have refused).
    const record = await openRecord(url);
    const holderId = randomUUID();
    try {
      await record.adoptVm(
        { id: holderId, cloudId: web0.cloudId!, stack: 'e2e', fleet: 'api', owner: 'team-api', index: 0, dataCenter: web0.dataCenter, state: 'Running', desiredState: 'Running', specHash: 'h', image: 'ubuntu-22.04', size: web0.size, encryptedDisk: true },
        { actor: 'test' },
      );
    } finally {
      await record.close();
    }
    const r = await fleet('import', 'web/0', web0.cloudId!, '--format', 'json');
    expect(r.code, r.stderr).toBe(1);
    const out = JSON.parse(r.stdout) as { diagnostics: { code: string; address?: string; detail: string }[] };
    expect(out.diagnostics[0]).toMatchObject({ code: 'apply.import-refused', address: 'web/0' });
    expect(out.diagnostics[0].detail).toContain(`is live in the record already under another VM id, at api/0 (VM ${holderId})`);
    expect((await fleet('state', 'show', 'web/0')).stderr).toContain('record.vm-not-found');
  });
});

// Found in review of fleet-owner: `fleet import` adopted a VM into a fleet a Pulumi program manages (fleets.managed_by)
// with no look at its manager, and fleet files then held one member of the program's fleet.
describe('fleet import into a fleet a Pulumi program manages', () => {
  const st = useWebStack();
  const fleet = st.fleet;

  it('is refused (apply.import-refused) naming the program; into a fleet of fleet files it goes', async () => {
    const { url, rows: [web0, web1] } = await applyThenForget(st, ['web/0', 'web/1']);
    // The emptied fleet made again by a program (as a Pulumi Fleet's create would).
    let record = await openRecord(url);
    try {
      const { owner } = (await record.listFleets('e2e', ['web']))[0];
      await record.insertVm(
        { stack: 'e2e', fleet: 'web', owner, index: 1, dataCenter: web1.dataCenter, state: 'Requested', desiredState: 'Running', specHash: 'h', image: 'ubuntu-22.04', size: web1.size, encryptedDisk: true, managedBy: 'pulumi:fleets/dev' },
        { actor: 'test' },
      );
    } finally {
      await record.close();
    }
    const r = await fleet('import', 'web/0', web0.cloudId!, '--format', 'json');
    expect(r.code, r.stderr).toBe(1);
    const out = JSON.parse(r.stdout) as { diagnostics: { code: string; address?: string; detail: string }[] };
    expect(out.diagnostics[0]).toMatchObject({ code: 'apply.import-refused', address: 'web/0' });
    expect(out.diagnostics[0].detail).toContain('managed by the program pulumi:fleets/dev');
    expect((await fleet('state', 'show', 'web/0')).stderr).toContain('record.vm-not-found');
    // Its program's VM gone, the fleet is anyone's: fleet files import into it.
    record = await openRecord(url);
    try {
      const pul = (await record.findVm('e2e', 'web/1'))!;
      await record.updateVm(pul.id, pul.version, { retire: true }, { actor: 'test' });
    } finally {
      await record.close();
    }
    const ok = await fleet('import', 'web/0', web0.cloudId!);
    expect(ok.code, ok.stderr).toBe(0);
  });
});

// `fleet refresh` reported a VM forgotten by `fleet state rm` as `unknown` ("miami runs e2e-web-0 (…) that the record
// does not know") and stopped there: nothing named the member it was, nor the import that takes it back.
describe('fleet refresh of a VM forgotten by fleet state rm', () => {
  const st = useWebStack();
  const fleet = st.fleet;

  it('names the member it was and the import that adopts it again; that import leaves no drift', async () => {
    const { rows: [web0] } = await applyThenForget(st, ['web/0']);
    const check = await fleet('refresh', '--check', '--format', 'json');
    expect(check.code, check.stderr).toBe(0);
    const { drift } = JSON.parse(check.stdout) as { drift: { kind: string; address: string; detail: string }[] };
    expect(drift.map((d) => [d.kind, d.address])).toEqual([['unknown', web0.cloudId]]);
    expect(drift[0].detail).toContain(`; it was web/0, Running when the record retired it at `);
    const command = /`fleet (import [^`]+)`/.exec(drift[0].detail)?.[1];
    expect(command).toBe(`import web/0 ${web0.cloudId}`);
    const adopted = await fleet(...command!.split(' '));
    expect(adopted.code, adopted.stderr).toBe(0);
    const after = JSON.parse((await fleet('refresh', '--check', '--format', 'json')).stdout) as { drift: unknown[] };
    expect(after.drift).toEqual([]);
  });
});

/** Replaces the sim settings of every data center of a temp stack. */
async function setSim(dir: string, sim: string): Promise<void> {
  const file = join(dir, 'stack.yaml');
  await writeFile(file, (await readFile(file, 'utf8')).replace(/sim: \{[^\n]*\}/g, `sim: ${sim}`));
}

// `fleet import` of a VM whose agent still boots recorded it Starting, as its cloud reports it. That boot's token was
// issued for the forgotten row's boot (or was never the record's), and an import ends it (engine/record/boot.ts,
// leftBoot): the authority denies it whenever the agent asks, and the apply after the import, waiting in Starting ->
// Running for a boot that cannot be approved, failed at awaitReady (boot-denied) or not, by the race (recovery.e2e).
describe('fleet import of a VM whose agent still boots', () => {
  const st = useTempStack();
  const fleet = st.fleet;

  it('records it BootFailed, saying why; the next apply powers it off and boots it afresh with a new token', async () => {
    await st.spec('db', fleetYaml('db', { count: 1 }));
    // awaitReady fails at once while the agent waits longer than any command here runs before it asks: the apply
    // leaves db/0 BootFailed, its VM booting (Starting) with that apply's token, and no agent asks during the import.
    await setSim(st.dir, '{ latencyMs: 1, bootMs: 600000, failCalls: [awaitReady] }');
    const failed = await fleet('apply', '--yes');
    expect(failed.code, failed.stdout).toBe(1);
    const shown = JSON.parse((await fleet('state', 'show', 'db/0', '--format', 'json')).stdout) as { vm: VmRow };
    expect(shown.vm.state).toBe('BootFailed');
    await setSim(st.dir, '{ latencyMs: 1, bootMs: 600000 }');
    expect((await fleet('state', 'rm', 'db/0')).code).toBe(0);

    const r = await fleet('import', 'db/0', shown.vm.cloudId!, '--format', 'json');
    expect(r.code, r.stdout).toBe(0);
    const out = JSON.parse(r.stdout) as { imported: VmRow; diagnostics: { code: string; severity: string; address?: string; detail: string }[] };
    expect(out.imported).toMatchObject({ id: shown.vm.id, address: 'db/0', state: 'BootFailed', cloudId: shown.vm.cloudId });
    const booting = out.diagnostics.find((d) => d.detail.includes('Starting'));
    expect(booting).toMatchObject({ code: 'apply.import-differs', severity: 'warning', address: 'db/0' });
    expect(booting!.detail).toContain('recorded BootFailed');
    const text = await fleet('state', 'show', 'db/0');
    expect(text.stdout).toMatch(/state: +BootFailed/);

    // The agent asks at once from now on, and is denied (a token of a boot the record no longer answers) or stands
    // down when the apply powers the VM off: either way the apply goes BootFailed » PoweredOff » … » Running.
    await setSim(st.dir, '{ latencyMs: 1, bootMs: 1 }');
    const applied = await fleet('apply', '--yes');
    expect(applied.code, `${applied.stdout}\n${applied.stderr}`).toBe(0);
    expect(applied.stdout).toContain('BootFailed');
    const after = JSON.parse((await fleet('state', 'show', 'db/0', '--format', 'json')).stdout) as { vm: VmRow };
    expect(after.vm).toMatchObject({ id: shown.vm.id, state: 'Running', cloudId: shown.vm.cloudId });
    expect((await fleet('plan', '--detailed-exitcode')).code).toBe(0);
  }, 120_000);
});

// A VM forgotten from a member of one fleet was adopted into another fleet as it was: its record id (and with it the
// forgotten member's history) went along, and its cloud name and tags (the sim's name, EC2's Name / fleet:fleet /
// fleet:address, Azure's fleet-address / fleet-name) kept naming the member it was, which no driver call changes.
// It is refused, naming both fleets and the import that takes it back where it was.
describe('fleet import of a VM forgotten from another fleet', () => {
  const st = useTempStack();
  const fleet = st.fleet;

  it('is refused (apply.import-refused) naming both fleets and the way back; the same fleet takes it back', async () => {
    await st.spec('web', fleetYaml('web', { count: 1 }));
    await st.spec('api', fleetYaml('api', { count: 1 }));
    const { rows: [web0] } = await applyThenForget(st, ['web/0']);
    // api/0 freed for it: forgotten too (its own VM stays in the cloud, unknown to the record).
    expect((await fleet('state', 'rm', 'api/0')).code).toBe(0);
    const refused = await fleet('import', 'api/0', web0.cloudId!, '--format', 'json');
    expect(refused.code).toBe(1);
    const { diagnostics } = JSON.parse(refused.stdout) as { diagnostics: { code: string; detail: string; address?: string }[] };
    const d = diagnostics.find((x) => x.code === 'apply.import-refused');
    expect(d?.address).toBe('api/0');
    expect(d?.detail).toContain(`was web/0 of fleet web`);
    expect(d?.detail).toContain(`not a VM of fleet api`);
    expect(d?.detail).toContain(`\`fleet import web/0 ${web0.cloudId}\``);
    const url = `pglite://${join(st.dir, '.fleet', 'record')}`;
    const record = await openRecord(url);
    try {
      expect(await record.findVm('e2e', 'api/0')).toBeUndefined();
    } finally {
      await record.close();
    }
    const back = await fleet('import', 'web/0', web0.cloudId!);
    expect(back.code, back.stderr).toBe(0);
  });
});

// A VM the record never knew (its record lost, here: another record) whose cloud tags name another fleet was imported
// into any fleet: the driver listing said nothing of the fleet it was created for (the sim kept no address; EC2's
// fleet:fleet and Azure's fleet-address were not read). The listing now names it, and the import into another fleet is
// refused as a forgotten VM's is, naming the import that puts it where it belongs. Into that fleet it goes, Running: its
// DMZ client holds its agent's ready report (the sim always does), which the other record cannot confirm.
describe('fleet import of a VM the record never knew, its cloud tags naming another fleet', () => {
  const st = useTempStack();
  const fleet = st.fleet;

  it('is refused (apply.import-refused) naming the fleet its tags name and the import into it; that import records it Running', async () => {
    await st.spec('web', fleetYaml('web', { count: 2 }));
    await st.spec('api', fleetYaml('api', { count: 1 }));
    const { d, web1, other } = await refusedThroughAfreshRecord(st, 'api/0');
    expect(d.detail).toContain('was created as web/1');
    expect(d.detail).toContain('its cloud tags name fleet web, not api');
    expect(d.detail).toContain(`\`fleet import web/1 ${web1.cloudId}\` imports it where it belongs`);
    const back = await fleet('import', 'web/1', web1.cloudId!, '--record-url', other, '--format', 'json');
    expect(back.code, back.stdout).toBe(0);
    expect((JSON.parse(back.stdout) as { imported: VmRow }).imported).toMatchObject({ address: 'web/1', state: 'Running', cloudId: web1.cloudId, id: web1.id });
  });
});

// A VM of a fleet imported into another member of that same fleet (web/1's VM as web/2) was adopted: its cloud name
// and tags (the sim's address, EC2's fleet:address, Azure's fleet-address) kept naming the member it was created as,
// which no driver call changes, and a forgotten VM's record id carried that member's history to the other address.
// It is refused, naming the member it was and the import that puts it there.
describe('fleet import of a VM into another member of its own fleet', () => {
  const st = useTempStack();
  const fleet = st.fleet;

  it('the record never knew it, its tags naming another member: refused (apply.import-refused) naming that member and its import; there it goes', async () => {
    await st.spec('web', fleetYaml('web', { count: 3 }));
    const { d, web1, other } = await refusedThroughAfreshRecord(st, 'web/2');
    expect(d.detail).toContain('was created as web/1');
    expect(d.detail).toContain('its cloud tags name member web/1, not web/2');
    expect(d.detail).toContain(`To import it where it belongs: \`fleet import web/1 ${web1.cloudId}\`; web/2 is one the next plan creates.`);
    const back = await fleet('import', 'web/1', web1.cloudId!, '--record-url', other, '--format', 'json');
    expect(back.code, back.stdout).toBe(0);
    expect((JSON.parse(back.stdout) as { imported: VmRow }).imported).toMatchObject({ address: 'web/1', cloudId: web1.cloudId, id: web1.id });
  });

  it('forgotten from one member: refused at another (apply.import-refused) naming the member it was; `fleet state rm` of that member first when it is live again', async () => {
    const { rows: [web0] } = await applyThenForget(st, ['web/0', 'web/2']);
    const refused = await fleet('import', 'web/2', web0.cloudId!, '--format', 'json');
    expect(refused.code, refused.stdout).toBe(1);
    const d = (JSON.parse(refused.stdout) as { diagnostics: { code: string; detail: string; address?: string }[] }).diagnostics.find((x) => x.code === 'apply.import-refused');
    expect(d?.address).toBe('web/2');
    expect(d?.detail).toContain('was web/0 of fleet web');
    expect(d?.detail).toContain(`To take it back where it was: \`fleet import web/0 ${web0.cloudId}\`; web/2 is one the next plan creates.`);
    expect((await fleet('state', 'show', 'web/2')).stderr).toContain('record.vm-not-found');
    // web/0 created again by an apply meanwhile: the way back forgets that one first.
    const again = await fleet('apply', '--yes');
    expect(again.code, again.stderr).toBe(0);
    const now0 = (JSON.parse((await fleet('state', 'show', 'web/0', '--format', 'json')).stdout) as { vm: VmRow }).vm;
    expect((await fleet('state', 'rm', 'web/2')).code).toBe(0);
    const busy = await fleet('import', 'web/2', web0.cloudId!, '--format', 'json');
    expect(busy.code, busy.stdout).toBe(1);
    const detail = (JSON.parse(busy.stdout) as { diagnostics: { code: string; detail: string }[] }).diagnostics.find((x) => x.code === 'apply.import-refused')?.detail;
    expect(detail).toContain(`To take it back where it was: web/0 is live in the record (VM ${now0.id}, Running): \`fleet state rm web/0\` forgets it first, then \`fleet import web/0 ${web0.cloudId}\`;`);
  });
});

// A sim VM of a state file written before the sim kept its address (providers/drivers/sim/testdata/pre-fleet-tag: two
// VMs named e2e-web-1 and e2e-web-2 by that version) names no fleet or member in its listing. It is imported as any
// VM whose tags name none (made before the tag, or not by `fleet apply`): into any fleet, at any index, its name not
// read for a fleet (a stack or fleet name may hold a `-`). The boot evidence holds as for any VM: Running on the sim's
// ready agent (the sim knows its agents), and the record never knew it.
describe('fleet import of a sim VM from a state file of an older sim, before the address', () => {
  const st = useTempStack();
  const fleet = st.fleet;

  it('loads the data center and imports its VMs as untagged, into any fleet', async () => {
    await st.spec('web', fleetYaml('web', { count: 2 }));
    await st.spec('api', fleetYaml('api', { count: 1 }));
    await cp(join(REPO, 'providers', 'drivers', 'sim', 'testdata', 'pre-fleet-tag'), join(st.dir, '.fleet', 'sim', 'miami'), { recursive: true });
    const api = await fleet('import', 'api/0', 'sim-miami-0ld00001', '--format', 'json');
    expect(api.code, api.stdout + api.stderr).toBe(0);
    expect((JSON.parse(api.stdout) as { imported: VmRow }).imported).toMatchObject({ address: 'api/0', state: 'Running', id: '6f0d3c2e-1b7a-4e59-9c1d-0a1b2c3d4e01', cloudId: 'sim-miami-0ld00001' });
    const web = await fleet('import', 'web/1', '6f0d3c2e-1b7a-4e59-9c1d-0a1b2c3d4e02', '--format', 'json');
    expect(web.code, web.stdout + web.stderr).toBe(0);
    expect((JSON.parse(web.stdout) as { imported: VmRow }).imported).toMatchObject({ address: 'web/1', state: 'PoweredOff', cloudId: 'sim-miami-0ld00002' });
  });
});
