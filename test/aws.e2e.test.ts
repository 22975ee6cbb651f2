// fleet apply end to end on a cloud data center: the real CLI (in-process),
// `fleet serve orchestrator` and `fleet serve dmz-client --driver aws
// --config` as services (in-process), a PostgreSQL record the CLI and the
// authority share (as in a deployment: PGlite has one process), the default
// pack; only EC2 and STS are served by nock (FakeEc2, FakeSts), and the VMs
// run the shipped boot agent. (The azure branch adds its data center here.)
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '../engine/apply/index.ts';
import { serveDmzClient, serveOrchestrator } from '../engine/cli/commands/serve-run.ts';
import type { CliIO } from '../engine/cli/io.ts';
import { createTestDatabase, testPostgresUrl } from '../engine/record/testing.ts';
import type { RunningService } from '../engine/authority/index.ts';
import { FakeSts } from '../engine/authority/credentials/fake-sts.ts';
import { parseAgentUserData } from '../providers/boot-agent/index.ts';
import { FakeEc2, type FakeInstance } from '../providers/drivers/aws/fake-ec2.ts';
import { runCli } from './helpers/cli.ts';
import { REPO, fleetYaml } from './helpers/stack.ts';

const pgUrl = testPostgresUrl();

const STACK = (address: string) => `apiVersion: fleet/v1
kind: Stack
metadata: { name: cloud-e2e }
spec:
  specs: ["specs/*.yaml"]
  record: postgres://placeholder@127.0.0.1:5432/overridden-by-FLEET_RECORD_URL
  policyPack:
    path: ${join(REPO, 'policies', 'default')}
    config:
      max-disruption: { enforcement: disabled }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - name: virginia
      address: ${address}
      driver: aws
      auth: { tokenEnv: FLEET_CLI_TOKEN_VIRGINIA }
      aws: { region: us-east-1, roleArn: "arn:aws:iam::123456789012:role/dmzfleet-virginia-dmz" }
      location: { lat: 38.9586, lon: -77.3570 }
      hardware: [general]
      capacity: { vms: 50, cpu: 400, memoryGiB: 1600 }
`;

const DMZ_CONFIG = `apiVersion: fleet/v1
kind: DmzClient
metadata: { dataCenter: virginia }
spec:
  requestTimeoutMs: 2000
  aws:
    region: us-east-1
    subnetId: subnet-0abc
    securityGroupIds: [sg-0abc]
    pollMs: 2
`;

describe.runIf(pgUrl !== undefined)('fleet apply through a DMZ client running the aws driver (EC2 and STS served by nock)', () => {
  let dir: string;
  let drop: () => Promise<void>;
  let ec2: FakeEc2;
  let sts: FakeSts;
  let authority: RunningService;
  let dmz: RunningService;
  let env: NodeJS.ProcessEnv;

  const fleet = (...args: string[]) => runCli([...args, '--stack', dir], { cwd: REPO, env });
  const spec = (name: string, yaml: string) => writeFile(join(dir, 'specs', `${name}.yaml`), yaml);
  /** The fleet's instances EC2 holds (live ones), by address. */
  const live = (): Record<string, FakeInstance> =>
    Object.fromEntries(
      [...ec2.instances.values()].filter((i) => i.state !== 'terminated' && i.state !== 'shutting-down').map((i) => [i.tags.get('fleet:address') ?? i.id, i]),
    );
  const record = async () => {
    const s = await openSession(dir, { cwd: REPO, env });
    try {
      return await s.record.listVms(s.stack.name);
    } finally {
      await s.close();
    }
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-aws-e2e-'));
    await mkdir(join(dir, 'specs'));
    const db = await createTestDatabase(pgUrl!);
    drop = db.drop;
    ec2 = await FakeEc2.start();
    sts = new FakeSts();
    env = {
      FLEET_RECORD_URL: db.url,
      FLEET_AUTHORITY_SECRET: 'aws-e2e-secret-0123',
      FLEET_DMZ_TOKEN_VIRGINIA: 'virginia-authority-token',
      FLEET_CLI_TOKEN_VIRGINIA: 'virginia-cli-token',
      AWS_ENDPOINT_URL_EC2: ec2.endpoint,
      AWS_ENDPOINT_URL_STS: sts.endpoint,
      AWS_ACCESS_KEY_ID: 'AKIDHOSTIDENTITY',
      AWS_SECRET_ACCESS_KEY: 'host-secret',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    };
    await writeFile(join(dir, 'stack.yaml'), STACK('http://127.0.0.1:1'));
    await writeFile(join(dir, 'dmz-virginia.yaml'), DMZ_CONFIG);
    const io: CliIO = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, cwd: dir, env };
    authority = await serveOrchestrator(io, { stack: dir, port: '0', host: '127.0.0.1' });
    dmz = await serveDmzClient(io, { stack: dir, dataCenter: 'virginia', driver: 'aws', config: 'dmz-virginia.yaml', authority: authority.url, port: '0', host: '127.0.0.1' });
    await writeFile(join(dir, 'stack.yaml'), STACK(dmz.url));
  });
  afterAll(async () => {
    await dmz?.close();
    await authority?.close();
    await ec2?.close();
    sts?.close();
    await drop?.();
    await rm(dir, { recursive: true, force: true });
  });

  /** db (one member) applied: its db/0 Running, EC2 settled; the row and its instance. */
  const dbRunning = async () => {
    await spec('db', fleetYaml('db', { count: 1 }));
    const r = await fleet('apply', '--yes', '--target', 'db');
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const row = (await record()).find((v) => v.address === 'db/0')!;
    expect(row.state).toBe('Running');
    await ec2.settled();
    return { row, i: live()['db/0'] };
  };

  /** `fleet state rm db/0`, then `fleet import db/0 <its instance>`: imported BootFailed as the same VM; the import's diagnostics. */
  const importedAfterRm = async (row: { id: string; cloudId?: string | null }) => {
    let r = await fleet('state', 'rm', 'db/0');
    expect(r.code, r.stderr).toBe(0);
    r = await fleet('import', 'db/0', row.cloudId!, '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { imported: { state: string; id: string }; diagnostics: { code: string; detail: string }[] };
    expect(out.imported).toMatchObject({ state: 'BootFailed', id: row.id });
    return out.diagnostics.find((d) => d.code === 'apply.import-differs' && d.detail.includes('nothing confirms'))?.detail ?? '';
  };

  /** The next apply of db boots db/0 (imported BootFailed) again into Running, the same VM; then db goes (count 0). */
  const bootAgainThenDelete = async (row: { id: string; cloudId?: string | null }) => {
    let r = await fleet('apply', '--yes', '--target', 'db');
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect((await record()).find((v) => v.address === 'db/0')).toMatchObject({ state: 'Running', id: row.id, cloudId: row.cloudId });
    await spec('db', fleetYaml('db', { count: 0 }));
    r = await fleet('apply', '--yes', '--target', 'db');
    expect(r.code, r.stderr).toBe(0);
  };

  it('creates a fleet: one EC2 instance per member, running, booted by its agent with the brokered credentials', async () => {
    await spec('app', fleetYaml('app', { count: 2 }));
    // The first RunInstances is lost to a reset connection: the DMZ client's retry makes one instance, not two.
    ec2.fail('RunInstances', { reset: true }, 1);
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain('Apply complete: 2 VMs changed, 0 failed');
    const vms = await record();
    expect(vms.map((v) => [v.address, v.state])).toEqual([
      ['app/0', 'Running'],
      ['app/1', 'Running'],
    ]);
    expect(ec2.instances.size).toBe(2);
    const inst = live();
    expect(Object.keys(inst).sort()).toEqual(['app/0', 'app/1']);
    for (const v of vms) expect(inst[v.address]).toMatchObject({ state: 'running', type: 'm6i.large', imageId: 'ami-0a1b2c3d4e5f60718' });
    for (const v of vms) expect(inst[v.address].tags.get('fleet:vm-id')).toBe(v.id);
    // Mutating calls were signed with STS session credentials, reads with the host's own identity.
    const mutating = ec2.requests.filter((q) => q.action !== 'DescribeInstances');
    expect(new Set(mutating.map((q) => q.accessKeyId))).toEqual(new Set(sts.issued.map((c) => c.accessKeyId)));
    expect(sts.calls.length).toBeGreaterThanOrEqual(1);
    expect(sts.calls.every((c) => c.accessKeyId === 'AKIDHOSTIDENTITY' && c.params.get('DurationSeconds') === '900')).toBe(true);
  });

  // An in-guest reboot (a kernel update's, `shutdown -r now`): cloud-init runs the real boot agent again with the
  // token of the last boot; the record holds the VM Running, so the authority denies it, and the agent powers the
  // instance off. Nothing terminates it outside an apply's awaitReady: refresh reports it, apply boots it again.
  it('an instance rebooted from inside its guest is denied its used token, stops itself and stays; refresh, then apply boot it again', async () => {
    const app1 = (await record()).find((v) => v.address === 'app/1')!;
    const inst = live()['app/1'];
    const tokenBefore = parseAgentUserData(inst.userData).FLEET_BOOT_TOKEN;
    const runs = await ec2.rebootFromInside(inst.id);
    expect(runs.map((r) => r.poweredOff)).toEqual([true]);
    expect(runs[0].stderr).toContain('boot denied');
    expect(inst.state).toBe('stopped');
    expect(ec2.calls('TerminateInstances')).toHaveLength(0);

    const r = await fleet('refresh', '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const drift = (JSON.parse(r.stdout) as { drift: { kind: string; address: string; detail: string }[] }).drift;
    expect(drift).toEqual([
      expect.objectContaining({ kind: 'recorded', address: 'app/1', detail: expect.stringMatching(/^recorded Running -> ShuttingDown -> PoweredOff\. It powered itself off after a reboot from inside its guest: .*boot denied/) }),
    ]);

    const a = await fleet('apply', '--yes');
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toContain('PoweredOff » PoweredOn » Starting » Running');
    expect((await record()).find((v) => v.address === 'app/1')).toMatchObject({ id: app1.id, cloudId: app1.cloudId, state: 'Running' });
    expect(live()['app/1']).toBe(inst);
    expect(inst.state).toBe('running');
    expect(parseAgentUserData(inst.userData).FLEET_BOOT_TOKEN).not.toBe(tokenBefore);
    expect(ec2.calls('TerminateInstances')).toHaveLength(0);
  });

  it('stops and starts a fleet', async () => {
    await spec('app', fleetYaml('app', { count: 2, state: 'PoweredOff' }));
    let r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(Object.values(live()).map((i) => i.state)).toEqual(['stopped', 'stopped']);
    await spec('app', fleetYaml('app', { count: 2 }));
    r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect((await record()).map((v) => v.state)).toEqual(['Running', 'Running']);
    expect(Object.values(live()).map((i) => i.state)).toEqual(['running', 'running']);
  });

  it('resizes in place through the instance type, then replaces on an image change', async () => {
    await spec('app', fleetYaml('app', { count: 2, cpu: 4 }));
    let r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('2 to update');
    expect(Object.values(live()).map((i) => i.type)).toEqual(['m6i.xlarge', 'm6i.xlarge']);
    const before = (await record()).map((v) => v.id);
    await spec('app', fleetYaml('app', { count: 2, cpu: 4, image: 'ubuntu-24.04' }));
    r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('2 to replace');
    const vms = await record();
    expect(vms.some((v) => before.includes(v.id))).toBe(false);
    expect(Object.values(live()).map((i) => [i.imageId, i.state])).toEqual([
      ['ami-0f1e2d3c4b5a69788', 'running'],
      ['ami-0f1e2d3c4b5a69788', 'running'],
    ]);
  });

  it('fleet refresh maps EC2 states onto the diagram', async () => {
    const before = await record();
    // app/0 stopped behind the record's back, app/1 is stopping: EC2 states the record does not hold.
    const app0 = live()['app/0'];
    const app1 = live()['app/1'];
    app0.state = 'stopped';
    app1.state = 'stopping';
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
    // Each edge is its own history row (outcome drift).
    const s = await openSession(dir, { cwd: REPO, env });
    try {
      const rows = (await s.record.history(s.stack.name, 'app/0', { outcome: 'drift' })).sort((a, b) => a.id - b.id);
      expect(rows.map((h) => [h.from, h.to, h.detail])).toEqual([
        ['Running', 'ShuttingDown', 'refresh: virginia reports PoweredOff (edge 1 of 2 along Running -> ShuttingDown -> PoweredOff)'],
        ['ShuttingDown', 'PoweredOff', 'refresh: virginia reports PoweredOff (edge 2 of 2 along Running -> ShuttingDown -> PoweredOff)'],
      ]);
    } finally {
      await s.close();
    }
    expect(before).toHaveLength(2);
    app0.state = 'running';
  });

  it('a boot the authority denies (its agent claims another image with its own token) is denied and the instance terminated', async () => {
    await spec('app', fleetYaml('app', { count: 0 }));
    let r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(Object.keys(live())).toEqual([]);
    await spec('web', fleetYaml('web', { count: 1 }));
    // Someone changes the image the VM's agent claims: the authority denies its boot token. (A token swapped for
    // another is denied too, but nothing then proves the denial was the VM's: anyone in the DMZ network can send a
    // made-up token. Such a VM is kept powered off, providers/boot-denied-cloud.test.ts.)
    ec2.tamper = (u) => u.replace(/^FLEET_IMAGE='[^']+'$/m, "FLEET_IMAGE='ami-0000000000000dead'");
    try {
      r = await fleet('apply', '--yes');
    } finally {
      ec2.tamper = undefined;
    }
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('apply.member-failed');
    expect(r.stderr).toContain('was terminated: boot denied');
    expect(r.stderr).toContain("the authority's reason: image ami-0000000000000dead does not match the record's");
    // Told apart by the driver's error kind (driver.boot-denied), with its own advice.
    expect(r.stderr).toContain('The authority denied its boot');
    expect((await record()).find((v) => v.address === 'web/0')?.state).toBe('BootFailed');
    const web = [...ec2.instances.values()].find((i) => i.tags.get('fleet:address') === 'web/0')!;
    await ec2.settled();
    const [run] = await Promise.all(web.runs);
    expect(run.stderr).toContain('boot denied');
    expect(run.opened).toBe(false);
    expect(['shutting-down', 'terminated']).toContain(web.state);
  });

  it('fleet state rm + fleet import while the agent still boots, from a DMZ client restarted without its state folder: recorded BootFailed, not Running; the next apply boots it afresh', async () => {
    // EC2 shows the instance running; the DMZ client that answers the import holds no report of its agent, which never
    // presented its token (the record's last boot of it is unconfirmed). Read Running, agent ready, it was imported
    // Running: a VM whose disk no approved boot unlocked. A DMZ client whose awaitReady gives up at once, and agents
    // that find no token (they do nothing, the instance keeps running), leave it so.
    const restart = async (config: string, stateDir: string) => {
      await dmz.close();
      const io: CliIO = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, cwd: dir, env };
      dmz = await serveDmzClient(io, { stack: dir, dataCenter: 'virginia', driver: 'aws', config, authority: authority.url, port: '0', host: '127.0.0.1', stateDir: join(dir, stateDir) });
      await writeFile(join(dir, 'stack.yaml'), STACK(dmz.url));
    };
    await writeFile(join(dir, 'dmz-virginia-quick.yaml'), DMZ_CONFIG.replace('requestTimeoutMs: 2000', 'requestTimeoutMs: 2000\n  readyTimeoutMs: 1000'));
    await restart('dmz-virginia-quick.yaml', 'dmz-state-quick');
    await spec('db', fleetYaml('db', { count: 1 }));
    ec2.tamper = (u) => u.replace(/^FLEET_BOOT_TOKEN='[^']+'$/m, "FLEET_BOOT_TOKEN=''");
    let r: Awaited<ReturnType<typeof fleet>>;
    try {
      r = await fleet('apply', '--yes', '--target', 'db');
    } finally {
      ec2.tamper = undefined;
    }
    expect(r.code, r.stdout).toBe(1);
    const row = (await record()).find((v) => v.address === 'db/0')!;
    expect(row.state).toBe('BootFailed');
    expect(live()['db/0'].state).toBe('running');
    r = await fleet('state', 'rm', 'db/0');
    expect(r.code, r.stderr).toBe(0);
    await restart('dmz-virginia.yaml', 'dmz-state-lost');

    r = await fleet('import', 'db/0', row.cloudId!, '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { imported: { state: string; id: string }; diagnostics: { code: string; detail: string }[] };
    expect(out.imported).toMatchObject({ state: 'BootFailed', id: row.id });
    expect(out.diagnostics.find((d) => d.code === 'apply.import-differs' && d.detail.includes('nothing confirms'))?.detail).toContain('holds no report of its agent');
    // A refresh does not walk it BootFailed -> … -> Starting -> Running through boot edges no approved boot made.
    r = await fleet('refresh');
    expect(r.stdout + r.stderr).toContain('holds no report of its agent');
    expect((await record()).find((v) => v.address === 'db/0')?.state).toBe('BootFailed');

    await bootAgainThenDelete(row);
  });

  it('an instance stopped and started again from EC2\'s console after its ready report: fleet refresh does not walk it to Running, and fleet import after `fleet state rm` records it BootFailed', async () => {
    // Until the new run's agent presents the token of the boot before (used: denied, it stops the instance), EC2 shows
    // it running and the DMZ client held the old run's ready report: refresh walked PoweredOff -> … -> Running through
    // boot edges no approved boot made, and fleet import recorded it Running. The report (and the record's approval)
    // is older than the instance's launchTime (ActualVm.startedAt): neither is of this run.
    const { row, i } = await dbRunning();
    i.state = 'stopped';
    let r = await fleet('refresh');
    expect(r.code, r.stderr).toBe(0);
    expect((await record()).find((v) => v.address === 'db/0')?.state).toBe('PoweredOff');
    // The console's start: a new launchTime, running; the new run's agent has not asked yet.
    const startFromConsole = () => {
      i.launchTime = new Date(Math.max(Math.ceil(Date.now() / 1000) * 1000, Date.parse(i.launchTime) + 1000)).toISOString();
      i.state = 'running';
    };
    startFromConsole();
    r = await fleet('refresh', '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const drift = (JSON.parse(r.stdout) as { drift: { kind: string; address: string; detail: string }[] }).drift.find((d) => d.address === 'db/0');
    expect(drift).toMatchObject({ kind: 'not-an-edge' });
    expect(drift?.detail).toContain('holds no report of its agent');
    expect((await record()).find((v) => v.address === 'db/0')?.state).toBe('PoweredOff');

    expect(await importedAfterRm(row)).toContain(`since its latest start (${i.launchTime})`);

    await bootAgainThenDelete(row);
  });

  it('an instance rebooted with its launchTime kept, whose agent has started over: fleet import after `fleet state rm` records it BootFailed, not Running', async () => {
    // RebootInstances, or a reboot inside the guest: EC2 shows the instance running since the same launchTime, so the
    // DMZ client's ready report of the run before and the record's approval (after launchTime) both still confirmed the
    // boot, and fleet import recorded Running a VM whose disk the reboot locked, until its agent, denied, stopped it.
    // The rebooted agent's first word is a booting report with the boot's token, used already: from then on neither counts.
    const { row, i } = await dbRunning();
    const launched = i.launchTime;
    // The rebooted guest's agent, as agent.sh reports first: booting, with the token of the boot that ended (refused).
    const agent = parseAgentUserData(i.userData);
    const before = Date.now();
    const said = await fetch(`${agent.FLEET_BOOT_URL}/status`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cloudId: i.id, vmId: agent.FLEET_VM_ID, bootToken: agent.FLEET_BOOT_TOKEN, state: 'booting', detail: '', denied: false }),
    });
    expect(said.status).toBe(403);
    expect([i.state, i.launchTime]).toEqual(['running', launched]);

    const detail = await importedAfterRm(row);
    const since = /since its latest start \(([^)]+)\)/.exec(detail)?.[1];
    expect(since, detail).toBeDefined();
    expect(Date.parse(since!)).toBeGreaterThanOrEqual(before);
    expect(since).not.toBe(launched);

    await bootAgainThenDelete(row);
  });

  it('deletes a failed member: the instance already gone is fine', async () => {
    await spec('web', fleetYaml('web', { count: 0 }));
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(await record()).toEqual([]);
    expect(Object.keys(live())).toEqual([]);
  });
});
