// fleet apply end to end on an Azure data center: the real CLI (in-process),
// `fleet serve orchestrator` and `fleet serve dmz-client --driver azure
// --config` as services (in-process), a PostgreSQL record the CLI and the
// authority share, the default pack (VM sizes from its instanceTypes,
// powerOff: deallocate for eastus); only ARM and Entra are served by nock
// (ArmFake; an Entra token endpoint below), and each VM runs the shipped
// boot agent (agent.sh, with sh) from the userData the driver writes.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nock from 'nock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '../engine/apply/index.ts';
import { serveDmzClient, serveOrchestrator } from '../engine/cli/commands/serve-run.ts';
import type { CliIO } from '../engine/cli/io.ts';
import { createTestDatabase, testPostgresUrl } from '../engine/record/testing.ts';
import type { RunningService } from '../engine/authority/index.ts';
import { ArmFake } from '../providers/drivers/azure/arm-fake.ts';
import { writeFakeVmTools } from '../providers/boot-agent/testing.ts';
import { runCli } from './helpers/cli.ts';
import { REPO, fleetYaml } from './helpers/stack.ts';

const pgUrl = testPostgresUrl();
const TENANT = '00000000-0000-0000-0000-00000000e001';
const BROKER_CLIENT = '00000000-0000-0000-0000-00000000e002';
const READER_CLIENT = '00000000-0000-0000-0000-00000000e003';
const SUB = '00000000-0000-0000-0000-00000000e004';
const RG = 'dmzfleet-eastus';

const STACK = (address: string) => `apiVersion: fleet/v1
kind: Stack
metadata: { name: azure-e2e }
spec:
  specs: ["specs/*.yaml"]
  record: postgres://placeholder@127.0.0.1:5432/overridden-by-FLEET_RECORD_URL
  policyPack:
    path: ${join(REPO, 'policies', 'default')}
    config:
      max-disruption: { enforcement: disabled }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - name: eastus
      address: ${address}
      driver: azure
      auth: { tokenEnv: FLEET_CLI_TOKEN_EASTUS }
      azure: { tenantId: ${TENANT}, clientId: ${BROKER_CLIENT}, subscriptionId: ${SUB}, resourceGroup: ${RG}, clientSecretEnv: EASTUS_BROKER_SECRET }
      location: { lat: 37.3719, lon: -79.8164 }
      hardware: [general]
      capacity: { vms: 50, cpu: 400, memoryGiB: 1600 }
`;

const DMZ_CONFIG = `apiVersion: fleet/v1
kind: DmzClient
metadata: { dataCenter: eastus }
spec:
  requestTimeoutMs: 5000
  azure:
    subscriptionId: ${SUB}
    resourceGroup: ${RG}
    location: eastus
    vnet: dmzfleet-eastus-vnet
    subnet: vms
    sshPublicKey: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2eOperatorsKey operators@example
    pollMs: 2
`;

/** Entra's token endpoint: a numbered token per client id (the broker's principal, the DMZ client's reader). */
function serveEntra(): { tokens: { clientId: string; token: string; secret: string }[] } {
  const tokens: { clientId: string; token: string; secret: string }[] = [];
  nock('https://login.microsoftonline.com')
    .persist()
    .post(`/${TENANT}/oauth2/v2.0/token`)
    .reply((_uri, body) => {
      const form = new URLSearchParams(String(body));
      const clientId = form.get('client_id') ?? '';
      const token = `${clientId === BROKER_CLIENT ? 'brokered' : 'reader'}-token-${tokens.length + 1}`;
      tokens.push({ clientId, token, secret: form.get('client_secret') ?? '' });
      return [200, { token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599, access_token: token }];
    });
  return { tokens };
}

describe.runIf(pgUrl !== undefined)('fleet apply through a DMZ client running the azure driver (ARM and Entra served by nock)', () => {
  let dir: string;
  let drop: () => Promise<void>;
  let arm: ArmFake;
  let entra: ReturnType<typeof serveEntra>;
  let authority: RunningService;
  let dmz: RunningService;
  let env: NodeJS.ProcessEnv;

  const fleet = (...args: string[]) => runCli([...args, '--stack', dir], { cwd: REPO, env });
  const spec = (name: string, yaml: string) => writeFile(join(dir, 'specs', `${name}.yaml`), yaml);
  /** The fleet's VMs ARM holds, by address. */
  const live = () => Object.fromEntries([...arm.vms.values()].map((v) => [v.tags['fleet-address'], v]));
  const record = async () => {
    const s = await openSession(dir, { cwd: REPO, env });
    try {
      return await s.record.listVms(s.stack.name);
    } finally {
      await s.close();
    }
  };
  const vmSize = (v: { properties: Record<string, unknown> }) => (v.properties.hardwareProfile as { vmSize: string }).vmSize;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-azure-e2e-'));
    await mkdir(join(dir, 'specs'));
    const db = await createTestDatabase(pgUrl!);
    drop = db.drop;
    await writeFakeVmTools(join(dir, 'bin'));
    arm = new ArmFake({ subscriptionId: SUB, resourceGroup: RG, location: 'eastus', agentShell: { binDir: join(dir, 'bin'), vmRoot: join(dir, 'vms') } }).install();
    entra = serveEntra();
    env = {
      FLEET_RECORD_URL: db.url,
      FLEET_AUTHORITY_SECRET: 'azure-e2e-secret',
      FLEET_DMZ_TOKEN_EASTUS: 'eastus-authority-token',
      FLEET_CLI_TOKEN_EASTUS: 'eastus-cli-token',
      EASTUS_BROKER_SECRET: 'broker-principal-secret',
      AZURE_TENANT_ID: TENANT,
      AZURE_CLIENT_ID: READER_CLIENT,
      AZURE_CLIENT_SECRET: 'reader-principal-secret',
    };
    await writeFile(join(dir, 'stack.yaml'), STACK('http://127.0.0.1:1'));
    await writeFile(join(dir, 'dmz-eastus.yaml'), DMZ_CONFIG);
    const io: CliIO = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, cwd: dir, env };
    authority = await serveOrchestrator(io, { stack: dir, port: '0', host: '127.0.0.1' });
    dmz = await serveDmzClient(io, { stack: dir, dataCenter: 'eastus', driver: 'azure', config: 'dmz-eastus.yaml', authority: authority.url, port: '0', host: '127.0.0.1' });
    await writeFile(join(dir, 'stack.yaml'), STACK(dmz.url));
  });
  afterAll(async () => {
    await dmz?.close();
    await authority?.close();
    await arm?.close();
    await drop?.();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a fleet: one VM per member, running, booted by its agent, changed with the brokered token and read with the host identity', async () => {
    await spec('app', fleetYaml('app', { count: 2 }));
    // The first VM PUT is lost to a reset connection: the DMZ client's retry makes one VM, not two.
    arm.inject({ call: 'putVm', reset: true, times: 1 });
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain('Apply complete: 2 VMs changed, 0 failed');
    const vms = await record();
    expect(vms.map((v) => [v.address, v.state])).toEqual([
      ['app/0', 'Running'],
      ['app/1', 'Running'],
    ]);
    expect(arm.vms.size).toBe(2);
    const vm = live();
    for (const v of vms) {
      expect(vm[v.address]).toMatchObject({ power: 'running', provisioningState: 'Succeeded' });
      expect(vm[v.address].tags).toMatchObject({ 'fleet-stack': 'azure-e2e', 'fleet-vm-id': v.id, 'fleet-image': 'Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest' });
      expect(vmSize(vm[v.address])).toBe('Standard_D2s_v5');
      expect(v.cloudId).toBe(`/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachines/${vm[v.address].name}`);
    }
    expect(arm.boots.every((b) => b.approved)).toBe(true);
    // Each VM ran agent.sh from its userData: approved, the data volume opened with the released key.
    expect(arm.runs.map((r) => [r.run.code, r.run.opened])).toEqual([
      [0, true],
      [0, true],
    ]);
    // Broker principal's tokens for every change, the DMZ client's reader for nothing but reads; each principal its own secret.
    const brokered = new Set(entra.tokens.filter((t) => t.clientId === BROKER_CLIENT).map((t) => `Bearer ${t.token}`));
    expect(brokered.size).toBeGreaterThanOrEqual(1);
    expect(entra.tokens.every((t) => t.secret === (t.clientId === BROKER_CLIENT ? 'broker-principal-secret' : 'reader-principal-secret'))).toBe(true);
    for (const q of arm.requests.filter((x) => ['PUT', 'PATCH', 'POST', 'DELETE'].includes(x.method))) expect(brokered.has(q.authorization ?? '')).toBe(true);
  });

  it('stops (deallocates, as the pack says for eastus) and starts a fleet', async () => {
    await spec('app', fleetYaml('app', { count: 2, state: 'PoweredOff' }));
    let r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(Object.values(live()).map((v) => v.power)).toEqual(['deallocated', 'deallocated']);
    await spec('app', fleetYaml('app', { count: 2 }));
    r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect((await record()).map((v) => v.state)).toEqual(['Running', 'Running']);
    expect(Object.values(live()).map((v) => v.power)).toEqual(['running', 'running']);
  });

  it('resizes in place through the VM size, then replaces on an image change', async () => {
    await spec('app', fleetYaml('app', { count: 2, cpu: 4 }));
    let r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('2 to update');
    expect(Object.values(live()).map(vmSize)).toEqual(['Standard_D4s_v5', 'Standard_D4s_v5']);
    const before = (await record()).map((v) => v.id);
    await spec('app', fleetYaml('app', { count: 2, cpu: 4, image: 'ubuntu-24.04' }));
    r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('2 to replace');
    const vms = await record();
    expect(vms.some((v) => before.includes(v.id))).toBe(false);
    expect(Object.values(live()).map((v) => [v.tags['fleet-image'], v.power])).toEqual([
      ['Canonical:ubuntu-24_04-lts:server:latest', 'running'],
      ['Canonical:ubuntu-24_04-lts:server:latest', 'running'],
    ]);
    // The replaced VMs went with their NICs and disks.
    expect(arm.nics.size).toBe(2);
    expect(arm.disks.size).toBe(4);
  });

  it('fleet refresh maps provisioningState x PowerState onto the diagram', async () => {
    const app0 = live()['app/0'];
    const app1 = live()['app/1'];
    app0.power = 'deallocated';
    app1.power = 'stopping';
    const r = await fleet('refresh', '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const drift = (JSON.parse(r.stdout) as { drift: { kind: string; address: string; recordState: string; actualState: string; detail: string }[] }).drift;
    expect(drift.map((d) => [d.kind, d.address, d.recordState, d.actualState, d.detail]).sort()).toEqual([
      // A booted VM found powered off: its line says what that was and how it comes back (docs/recovery.md, "In-guest reboots and power-offs").
      ['recorded', 'app/0', 'Running', 'PoweredOff', expect.stringMatching(/^recorded Running -> ShuttingDown -> PoweredOff\. It was powered off from inside its guest .*`fleet apply` boots it again/)],
      ['recorded', 'app/1', 'Running', 'ShuttingDown', 'recorded Running -> ShuttingDown'],
    ]);
    // Running -> ShuttingDown is one edge; Running -> PoweredOff is two along the diagram's path: both recorded, edge by edge.
    expect((await record()).map((v) => [v.address, v.state])).toEqual([
      ['app/0', 'PoweredOff'],
      ['app/1', 'ShuttingDown'],
    ]);
    app0.power = 'running';
  });

  it('a boot the authority denies (its agent claims another image with its own token) is denied and the VM deleted', async () => {
    await spec('app', fleetYaml('app', { count: 0 }));
    let r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(arm.vms.size).toBe(0);
    await spec('web', fleetYaml('web', { count: 1 }));
    // Someone changes the image the VM's agent claims: the authority denies its boot token (aws.e2e.test.ts says why
    // not a swapped token).
    arm.tamperImage = () => 'Canonical:not-its-image:1:latest';
    try {
      r = await fleet('apply', '--yes');
    } finally {
      arm.tamperImage = undefined;
    }
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('apply.member-failed');
    expect((await record()).find((v) => v.address === 'web/0')?.state).toBe('BootFailed');
    expect(arm.boots.at(-1)?.approved).toBe(false);
    const denied = arm.runs.at(-1)?.run;
    expect(denied?.stderr).toContain('boot denied');
    expect([denied?.poweredOff, denied?.opened]).toEqual([true, false]);
    expect(arm.vms.size).toBe(0);
  });

  it('deletes a failed member: the VM already gone is fine', async () => {
    await spec('web', fleetYaml('web', { count: 0 }));
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(await record()).toEqual([]);
    expect([arm.vms.size, arm.nics.size, arm.disks.size]).toEqual([0, 0, 0]);
  });

  it('fleet import of a VM still starting, its DMZ client knowing nothing of its boot, records it BootFailed; the next apply boots it afresh', async () => {
    // The rm+import race as the sim and EC2 have it fixed (docs/apply.md, "Forgetting and adopting a VM"): the VM is
    // forgotten while it starts, and the DMZ client that answers the import holds no report of it (another client,
    // or this one restarted without its state folder). Recorded PoweredOn (as Azure's `starting` with no report read
    // before), the next apply booted it while the agent of its old boot could still be asking with that boot's token.
    await spec('web', fleetYaml('web', { count: 1 }));
    let r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    const [row] = await record();
    expect([row.address, row.state]).toEqual(['web/0', 'Running']);
    r = await fleet('state', 'rm', 'web/0');
    expect(r.code, r.stderr).toBe(0);
    await dmz.close();
    const io: CliIO = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, cwd: dir, env };
    dmz = await serveDmzClient(io, { stack: dir, dataCenter: 'eastus', driver: 'azure', config: 'dmz-eastus.yaml', authority: authority.url, port: '0', host: '127.0.0.1', stateDir: join(dir, 'dmz-state-new') });
    await writeFile(join(dir, 'stack.yaml'), STACK(dmz.url));
    live()['web/0'].power = 'starting';
    r = await fleet('import', 'web/0', row.cloudId!, '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { imported: { state: string }; diagnostics: { code: string; detail: string }[] };
    expect(out.imported.state).toBe('BootFailed');
    expect(out.diagnostics.map((d) => d.code)).toContain('apply.import-differs');
    live()['web/0'].power = 'running';
    r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect((await record()).map((v) => [v.address, v.state, v.id])).toEqual([['web/0', 'Running', row.id]]);
    expect(arm.boots.at(-1)?.approved).toBe(true);
  });

  it('fleet import of a running VM its DMZ client holds no agent report of: Running when the record confirms its approved boot; BootFailed from a record that never booted it', async () => {
    // A VM Azure shows running reads Running with no agent report (a restart without the state folder), and the import
    // recorded it so whatever the record knew: `fleet state rm` + `fleet import` while the agent still booted, or a
    // VM no boot of this record ever unlocked, came back Running. Now only a boot the record confirms (its last token
    // used, approved for this cloud id: BootStore.bootAuthorized) or an agent-ready report here keeps it Running.
    const [row] = await record();
    expect([row.address, row.state]).toEqual(['web/0', 'Running']);
    let r = await fleet('state', 'rm', 'web/0');
    expect(r.code, r.stderr).toBe(0);
    await dmz.close();
    const io: CliIO = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, cwd: dir, env };
    dmz = await serveDmzClient(io, { stack: dir, dataCenter: 'eastus', driver: 'azure', config: 'dmz-eastus.yaml', authority: authority.url, port: '0', host: '127.0.0.1', stateDir: join(dir, 'dmz-state-unknown-agent') });
    await writeFile(join(dir, 'stack.yaml'), STACK(dmz.url));
    expect(live()['web/0'].power).toBe('running');

    // A record that never booted it (the stack's record lost and started afresh): nothing confirms the handshake.
    const afresh = await createTestDatabase(pgUrl!);
    try {
      r = await fleet('import', 'web/0', row.cloudId!, '--record-url', afresh.url, '--format', 'json');
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { imported: { state: string }; diagnostics: { code: string; detail: string }[] };
      expect(out.imported.state).toBe('BootFailed');
      const note = out.diagnostics.find((d) => d.code === 'apply.import-differs' && d.detail.includes('nothing confirms'));
      expect(note?.detail).toContain('holds no report of its agent');
      expect(note?.detail).toContain('`fleet apply` powers it off and boots it afresh');
    } finally {
      await afresh.drop();
    }

    // The record that booted it: its boot's token was used, approved for this cloud id. Running, no reboot.
    r = await fleet('import', 'web/0', row.cloudId!, '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { imported: { state: string } }).imported.state).toBe('Running');
    const boots = arm.boots.length;
    r = await fleet('plan', '--detailed-exitcode');
    expect(r.code, r.stdout).toBe(0);
    expect(arm.boots.length).toBe(boots);
  });

  it('fleet import of a VM restarted from the portal after `fleet state rm`: BootFailed, whether its DMZ client holds the ready report of the run before or the record that run\'s approved boot', async () => {
    // Forgotten while Running, then restarted from the portal: until the new run's agent presents the token of the boot
    // before (used: denied), the VM reads running. Its DMZ client's ready report, or the record's approval of that token,
    // was taken for this run's handshake and the import recorded it Running. Both are older than the VM's latest start
    // (ActualVm.startedAt: the instance view's provisioning time), so neither counts.
    const restartFromPortal = () => {
      // The restart's operation ended now; the new run's agent has not asked yet (the moment before its denial).
      Object.assign(live()['web/0'], { power: 'running', provisionedAt: new Date().toISOString() });
    };
    const importRestarted = async (cloudId: string) => {
      let r = await fleet('state', 'rm', 'web/0');
      expect(r.code, r.stderr).toBe(0);
      restartFromPortal();
      r = await fleet('import', 'web/0', cloudId, '--format', 'json');
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { imported: { state: string }; diagnostics: { code: string; detail: string }[] };
      expect(out.imported.state).toBe('BootFailed');
      const note = out.diagnostics.find((d) => d.code === 'apply.import-differs' && d.detail.includes('nothing confirms'));
      expect(note?.detail).toContain('since its latest start');
      // The next apply powers it off and boots it afresh with a token of its own: an approved boot, its report held here.
      const boots = arm.boots.length;
      r = await fleet('apply', '--yes');
      expect(r.code, r.stderr).toBe(0);
      expect((await record()).map((v) => [v.address, v.state])).toEqual([['web/0', 'Running']]);
      expect(arm.boots.slice(boots).some((b) => b.approved)).toBe(true);
    };
    const [row] = await record();
    expect([row.address, row.state]).toEqual(['web/0', 'Running']);
    // This DMZ client holds no report of it (restarted without its state folder): the record's approval was the evidence.
    await importRestarted(row.cloudId!);
    // Booted again through this DMZ client, which holds that boot's ready report now: the report was the evidence.
    await importRestarted(row.cloudId!);
  });
});
