// fleet apply end to end over ONE stack with two cloud data centers:
// virginia runs the aws driver, eastus the azure driver, each behind its own
// DMZ client started as `fleet serve dmz-client --driver aws|azure --config
// FILE` would (in process), with `fleet serve orchestrator` brokering STS
// credentials and Entra tokens, the real CLI (in process) and a PostgreSQL
// record the CLI and the authority share. Only EC2, STS, ARM and Entra are
// served by nock (FakeEc2, FakeSts, ArmFake, an Entra token endpoint); every
// VM runs the shipped boot agent (agent.sh, with sh) against its DMZ client.
// Fleets spread one member to each data center, so every step below changes
// an EC2 instance and an Azure VM in the same apply.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nock from 'nock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '../engine/apply/index.ts';
import { serveDmzClient, serveOrchestrator } from '../engine/cli/commands/serve-run.ts';
import type { CliIO } from '../engine/cli/io.ts';
import { createTestDatabase, testPostgresUrl } from '../engine/record/testing.ts';
import type { RunningService } from '../engine/authority/index.ts';
import { diskKey } from '../engine/authority/keys.ts';
import { FakeSts } from '../engine/authority/credentials/fake-sts.ts';
import { FakeEc2, type FakeInstance } from '../providers/drivers/aws/fake-ec2.ts';
import { ArmFake } from '../providers/drivers/azure/arm-fake.ts';
import { agentLedgerFile } from '../providers/drivers/agent-ledger.ts';
import { writeFakeVmTools } from '../providers/boot-agent/testing.ts';
import { parseAgentUserData } from '../providers/boot-agent/index.ts';
import { runCli } from './helpers/cli.ts';
import { REPO, fleetYaml } from './helpers/stack.ts';

const pgUrl = testPostgresUrl();
const TENANT = '00000000-0000-0000-0000-00000000f001';
const BROKER_CLIENT = '00000000-0000-0000-0000-00000000f002';
const READER_CLIENT = '00000000-0000-0000-0000-00000000f003';
const SUB = '00000000-0000-0000-0000-00000000f004';
const RG = 'dmzfleet-eastus';
const SECRET = 'hybrid-e2e-secret';

const STACK = (virginia: string, eastus: string) => `apiVersion: fleet/v1
kind: Stack
metadata: { name: hybrid-e2e }
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
      address: ${virginia}
      driver: aws
      auth: { tokenEnv: FLEET_CLI_TOKEN_VIRGINIA }
      aws: { region: us-east-1, roleArn: "arn:aws:iam::123456789012:role/dmzfleet-virginia-dmz" }
      location: { lat: 38.9586, lon: -77.3570 }
      hardware: [general]
      capacity: { vms: 50, cpu: 400, memoryGiB: 1600 }
    - name: eastus
      address: ${eastus}
      driver: azure
      auth: { tokenEnv: FLEET_CLI_TOKEN_EASTUS }
      azure: { tenantId: ${TENANT}, clientId: ${BROKER_CLIENT}, subscriptionId: ${SUB}, resourceGroup: ${RG}, clientSecretEnv: EASTUS_BROKER_SECRET }
      location: { lat: 37.3719, lon: -79.8164 }
      hardware: [general]
      capacity: { vms: 50, cpu: 400, memoryGiB: 1600 }
`;

const AWS_CONFIG = `apiVersion: fleet/v1
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

const AZURE_CONFIG = `apiVersion: fleet/v1
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

/** The disk key the authority releases for a VM (engine/authority/keys.ts), checked against the fake LUKS header its agent wrote. */
async function releasedKey(vmId: string, vmDir: string): Promise<string> {
  const key = diskKey(SECRET, vmId);
  expect(createHash('sha256').update(key).digest('hex')).toBe((await readFile(join(vmDir, 'luks-header'), 'utf8')).trim());
  return key;
}

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

describe.runIf(pgUrl !== undefined)('one stack, two clouds: fleet apply through an aws and an azure DMZ client (EC2, STS, ARM, Entra served by nock)', () => {
  let dir: string;
  let drop: () => Promise<void>;
  let ec2: FakeEc2;
  let sts: FakeSts;
  let arm: ArmFake;
  let entra: ReturnType<typeof serveEntra>;
  let authority: RunningService;
  let virginia: RunningService;
  let eastus: RunningService;
  let env: NodeJS.ProcessEnv;

  const fleet = (...args: string[]) => runCli([...args, '--stack', dir], { cwd: REPO, env });
  const spec = (name: string, yaml: string) => writeFile(join(dir, 'specs', `${name}.yaml`), yaml);
  /** Live EC2 instances of the stack, by fleet address. */
  const instances = (): Record<string, FakeInstance> =>
    Object.fromEntries([...ec2.instances.values()].filter((i) => i.state !== 'terminated' && i.state !== 'shutting-down').map((i) => [i.tags.get('fleet:address') ?? i.id, i]));
  /** Azure VMs of the stack, by fleet address. */
  const azureVms = () => Object.fromEntries([...arm.vms.values()].map((v) => [v.tags['fleet-address'], v]));
  const record = async () => {
    const s = await openSession(dir, { cwd: REPO, env });
    try {
      return await s.record.listVms(s.stack.name);
    } finally {
      await s.close();
    }
  };
  /** The record's VMs as [address, data center, state]. */
  const placed = async () => (await record()).map((v) => [v.address, v.dataCenter, v.state]);
  const vmSize = (v: { properties: Record<string, unknown> }) => (v.properties.hardwareProfile as { vmSize: string }).vmSize;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-hybrid-e2e-'));
    await mkdir(join(dir, 'specs'));
    const db = await createTestDatabase(pgUrl!);
    drop = db.drop;
    await writeFakeVmTools(join(dir, 'bin'));
    ec2 = await FakeEc2.start();
    sts = new FakeSts();
    arm = new ArmFake({ subscriptionId: SUB, resourceGroup: RG, location: 'eastus', agentShell: { binDir: join(dir, 'bin'), vmRoot: join(dir, 'vms') } }).install();
    entra = serveEntra();
    env = {
      FLEET_RECORD_URL: db.url,
      FLEET_AUTHORITY_SECRET: SECRET,
      FLEET_DMZ_TOKEN_VIRGINIA: 'virginia-authority-token',
      FLEET_CLI_TOKEN_VIRGINIA: 'virginia-cli-token',
      FLEET_DMZ_TOKEN_EASTUS: 'eastus-authority-token',
      FLEET_CLI_TOKEN_EASTUS: 'eastus-cli-token',
      AWS_ENDPOINT_URL_EC2: ec2.endpoint,
      AWS_ENDPOINT_URL_STS: sts.endpoint,
      AWS_ACCESS_KEY_ID: 'AKIDHOSTIDENTITY',
      AWS_SECRET_ACCESS_KEY: 'host-secret',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      EASTUS_BROKER_SECRET: 'broker-principal-secret',
      AZURE_TENANT_ID: TENANT,
      AZURE_CLIENT_ID: READER_CLIENT,
      AZURE_CLIENT_SECRET: 'reader-principal-secret',
    };
    await writeFile(join(dir, 'stack.yaml'), STACK('http://127.0.0.1:1', 'http://127.0.0.1:2'));
    await writeFile(join(dir, 'dmz-virginia.yaml'), AWS_CONFIG);
    await writeFile(join(dir, 'dmz-eastus.yaml'), AZURE_CONFIG);
    const io: CliIO = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, cwd: dir, env };
    authority = await serveOrchestrator(io, { stack: dir, port: '0', host: '127.0.0.1' });
    const serve = (dataCenter: string, driver: string) =>
      serveDmzClient(io, { stack: dir, dataCenter, driver, config: `dmz-${dataCenter}.yaml`, authority: authority.url, port: '0', host: '127.0.0.1', stateDir: join(dir, `state-${dataCenter}`) });
    virginia = await serve('virginia', 'aws');
    eastus = await serve('eastus', 'azure');
    await writeFile(join(dir, 'stack.yaml'), STACK(virginia.url, eastus.url));
  });
  afterAll(async () => {
    await virginia?.close();
    await eastus?.close();
    await authority?.close();
    await ec2?.close();
    sts?.close();
    await arm?.close();
    await drop?.();
    await rm(dir, { recursive: true, force: true });
  });

  it('a bad DMZ client config is refused with located diagnostics, for each driver', async () => {
    const io: CliIO = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, cwd: dir, env };
    await writeFile(join(dir, 'bad-aws.yaml'), AWS_CONFIG.replace('subnet-0abc', 'my-subnet'));
    await writeFile(join(dir, 'bad-azure.yaml'), AZURE_CONFIG.replace('    location: eastus\n', '    locaton: eastus\n'));
    for (const [dataCenter, driver, want] of [
      ['virginia', 'aws', /bad-aws\.yaml:8:15/],
      ['eastus', 'azure', /bad-azure\.yaml:9:5/],
    ] as const) {
      const err = await serveDmzClient(io, { stack: dir, dataCenter, driver, config: `bad-${driver}.yaml`, authority: authority.url, port: '0', host: '127.0.0.1' }).catch((e: unknown) => e);
      const diags = (err as { diagnostics?: { code: string; file?: string; line?: number; col?: number }[] }).diagnostics ?? [];
      expect(diags.length, String(err)).toBeGreaterThan(0);
      expect(diags.map((d) => `${d.code} ${d.file}:${d.line}:${d.col}`).join('\n')).toMatch(want);
    }
  });

  it('creates: one EC2 instance and one Azure VM, each booted by its agent; a RunInstances whose answer was lost is retried into one instance', async () => {
    await spec('app', fleetYaml('app', { count: 2 }));
    // EC2 makes the instance but the answer is lost; ARM resets the first VM PUT: each DMZ client's retry makes one, not two.
    ec2.fail('RunInstances', { lostAnswer: true }, 1);
    arm.inject({ call: 'putVm', reset: true, times: 1 });
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain('Apply complete: 2 VMs changed, 0 failed');
    const vms = await record();
    expect(vms.map((v) => v.state)).toEqual(['Running', 'Running']);
    expect(new Set(vms.map((v) => v.dataCenter))).toEqual(new Set(['virginia', 'eastus']));
    const onAws = vms.find((v) => v.dataCenter === 'virginia')!;
    const onAzure = vms.find((v) => v.dataCenter === 'eastus')!;

    // EC2: two RunInstances with the same ClientToken (the VM id), one instance, tagged, its user data the agent without key.
    const runs = ec2.calls('RunInstances');
    expect(runs.map((q) => q.params.get('ClientToken'))).toEqual([onAws.id, onAws.id]);
    expect(ec2.instances.size).toBe(1);
    const inst = instances()[onAws.address];
    expect(inst).toMatchObject({ state: 'running', type: 'm6i.large', imageId: 'ami-0a1b2c3d4e5f60718' });
    expect(Object.fromEntries(inst.tags)).toMatchObject({ 'fleet:stack': 'hybrid-e2e', 'fleet:data-center': 'virginia', 'fleet:vm-id': onAws.id, 'fleet:address': onAws.address, 'fleet:fleet': 'app' });
    const firstUserData = Buffer.from(runs[0].params.get('UserData') ?? '', 'base64').toString('utf8');
    expect(parseAgentUserData(firstUserData)).toMatchObject({ FLEET_VM_ID: onAws.id, FLEET_BOOT_TOKEN: '' });
    const [agentRun] = await Promise.all(inst.runs);
    expect([agentRun.code, agentRun.opened]).toEqual([0, true]);
    // The disk key the authority released opened the volume (its sha256 is the fake LUKS header); no user data EC2 saw holds it.
    const awsKey = await releasedKey(onAws.id, ec2.vmDir(inst.id));
    const sentToEc2 = [...runs.map((q) => q.params.get('UserData')), ...ec2.calls('ModifyInstanceAttribute').map((q) => q.params.get('UserData.Value'))];
    expect(sentToEc2.filter((u) => u !== null).length).toBeGreaterThanOrEqual(3);
    for (const u of sentToEc2) if (u !== null) expect(Buffer.from(u, 'base64').toString('utf8')).not.toContain(awsKey);
    // Mutating EC2 calls carry the STS session credentials the authority brokered, reads the host's own identity.
    const mutating = ec2.requests.filter((q) => q.action !== 'DescribeInstances');
    expect(new Set(mutating.map((q) => q.accessKeyId))).toEqual(new Set(sts.issued.map((c) => c.accessKeyId)));
    expect(sts.calls.every((c) => c.params.get('DurationSeconds') === '900')).toBe(true);

    // Azure: two VM PUTs by the same name, one VM, its size from the catalog, tagged, booted by its agent.
    expect(new Set(arm.calls('putVm').map((q) => q.path))).toHaveProperty('size', 1);
    expect(arm.vms.size).toBe(1);
    const vm = azureVms()[onAzure.address];
    expect(vm).toMatchObject({ power: 'running', provisioningState: 'Succeeded' });
    expect(vm.tags).toMatchObject({ 'fleet-stack': 'hybrid-e2e', 'fleet-vm-id': onAzure.id });
    expect(vmSize(vm)).toBe('Standard_D2s_v5');
    expect(arm.runs.map((x) => [x.run.code, x.run.opened])).toEqual([[0, true]]);
    const azureKey = await releasedKey(onAzure.id, join(dir, 'vms', vm.name));
    const sentToArm = arm.requests.flatMap((q) => {
      const b = q.body as { properties?: { userData?: string; osProfile?: { customData?: string } } } | undefined;
      return [b?.properties?.userData, b?.properties?.osProfile?.customData].filter((x): x is string => typeof x === 'string');
    });
    expect(sentToArm.length).toBeGreaterThanOrEqual(2);
    for (const u of sentToArm) expect(Buffer.from(u, 'base64').toString('utf8')).not.toContain(azureKey);
    const brokered = new Set(entra.tokens.filter((t) => t.clientId === BROKER_CLIENT).map((t) => `Bearer ${t.token}`));
    for (const q of arm.requests.filter((x) => ['PUT', 'PATCH', 'POST', 'DELETE'].includes(x.method))) expect(brokered.has(q.authorization ?? '')).toBe(true);

    // Each DMZ client keeps its VMs' agent reports in its state folder (a restart still believes them): private, no token, no key.
    for (const [dc, cloudId, key] of [
      ['virginia', inst.id, awsKey],
      ['eastus', onAzure.cloudId, azureKey],
    ] as const) {
      const file = agentLedgerFile(join(dir, `state-${dc}`), dc);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      const ledger = JSON.parse(await readFile(file, 'utf8')) as { vms: Record<string, { state: string; tokenHash: string }> };
      expect(ledger.vms[cloudId ?? '']).toMatchObject({ state: 'ready', tokenHash: expect.stringMatching(/^[0-9a-f]{64}$/) });
      expect(JSON.stringify(ledger)).not.toContain(key);
    }
  });

  it('stops (EC2 stop, Azure deallocate as the pack says for eastus) and starts, through throttling in both clouds', async () => {
    await spec('app', fleetYaml('app', { count: 2, state: 'PoweredOff' }));
    let r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect((await record()).map((v) => v.state)).toEqual(['PoweredOff', 'PoweredOff']);
    expect(Object.values(instances()).map((i) => i.state)).toEqual(['stopped']);
    expect(Object.values(azureVms()).map((v) => v.power)).toEqual(['deallocated']);
    await spec('app', fleetYaml('app', { count: 2 }));
    // Both clouds throttle the first start (EC2 RequestLimitExceeded; ARM 429 with Retry-After): the DMZ clients try again.
    ec2.fail('StartInstances', { error: 'RequestLimitExceeded', status: 503, message: 'Request limit exceeded.' }, 1);
    arm.inject({ call: 'start', status: 429, code: 'TooManyRequests', retryAfter: 1, times: 1 });
    const starts = [ec2.calls('StartInstances').length, arm.calls('start').length];
    r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect([ec2.calls('StartInstances').length - starts[0], arm.calls('start').length - starts[1]]).toEqual([2, 2]);
    expect((await record()).map((v) => v.state)).toEqual(['Running', 'Running']);
    expect(Object.values(instances()).map((i) => i.state)).toEqual(['running']);
    expect(Object.values(azureVms()).map((v) => v.power)).toEqual(['running']);
  });

  it('resizes in place (instance type, VM size), then replaces on an image change (each cloud its own image)', async () => {
    await spec('app', fleetYaml('app', { count: 2, cpu: 4 }));
    let r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('2 to update');
    expect(Object.values(instances()).map((i) => i.type)).toEqual(['m6i.xlarge']);
    expect(Object.values(azureVms()).map(vmSize)).toEqual(['Standard_D4s_v5']);
    const before = (await record()).map((v) => v.id);
    await spec('app', fleetYaml('app', { count: 2, cpu: 4, image: 'ubuntu-24.04' }));
    r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('2 to replace');
    const vms = await record();
    expect(vms.some((v) => before.includes(v.id))).toBe(false);
    expect(vms.map((v) => v.state)).toEqual(['Running', 'Running']);
    expect(Object.values(instances()).map((i) => [i.imageId, i.state])).toEqual([['ami-0f1e2d3c4b5a69788', 'running']]);
    expect(Object.values(azureVms()).map((v) => [v.tags['fleet-image'], v.power])).toEqual([['Canonical:ubuntu-24_04-lts:server:latest', 'running']]);
    // The replaced Azure VM went with its NIC and disks; the replaced instance is terminated.
    expect([arm.vms.size, arm.nics.size, arm.disks.size]).toEqual([1, 1, 2]);
    expect([...ec2.instances.values()].filter((i) => i.state === 'terminated' || i.state === 'shutting-down')).toHaveLength(1);
  });

  it('fleet refresh maps EC2 states and provisioningState x PowerState onto the diagram', async () => {
    const vms = await record();
    const awsAddr = vms.find((v) => v.dataCenter === 'virginia')!.address;
    const azAddr = vms.find((v) => v.dataCenter === 'eastus')!.address;
    // Behind the record's back: the instance is stopping, the Azure VM deallocated.
    instances()[awsAddr].state = 'stopping';
    azureVms()[azAddr].power = 'deallocated';
    const r = await fleet('refresh', '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const drift = (JSON.parse(r.stdout) as { drift: { kind: string; dataCenter: string; address: string; recordState: string; actualState: string; detail: string }[] }).drift;
    // The detail's first sentence is what was recorded; a booted VM found powered off also says what it went through.
    expect(drift.map((d) => [d.kind, d.dataCenter, d.address, d.recordState, d.actualState, d.detail.split('. ')[0]]).sort()).toEqual(
      [
        ['recorded', 'virginia', awsAddr, 'Running', 'ShuttingDown', 'recorded Running -> ShuttingDown'],
        ['recorded', 'eastus', azAddr, 'Running', 'PoweredOff', 'recorded Running -> ShuttingDown -> PoweredOff'],
      ].sort(),
    );
    expect(drift.find((d) => d.address === azAddr)?.detail).toContain('are kept: `fleet apply` boots it again along an approved boot edge');
    // Running -> ShuttingDown is one edge; Running -> PoweredOff is two along the diagram's path: both recorded, edge by edge.
    expect(Object.fromEntries((await record()).map((v) => [v.address, v.state]))).toEqual({ [awsAddr]: 'ShuttingDown', [azAddr]: 'PoweredOff' });
    // Put the clouds back and let refresh record it, so later applies start from Running.
    instances()[awsAddr].state = 'running';
    azureVms()[azAddr].power = 'running';
  });

  it('a boot the authority denies (its agent claims another image with its own token) is denied in both clouds and the VMs terminated', async () => {
    await spec('app', fleetYaml('app', { count: 0 }));
    let r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect([Object.keys(instances()), arm.vms.size]).toEqual([[], 0]);
    await spec('web', fleetYaml('web', { count: 2 }));
    // Someone changes the image the VMs' agents claim: the authority denies both boot tokens (aws.e2e.test.ts says why
    // not a swapped token).
    ec2.tamper = (u) => u.replace(/^FLEET_IMAGE='[^']+'$/m, "FLEET_IMAGE='ami-0000000000000dead'");
    arm.tamperImage = () => 'Canonical:not-its-image:1:latest';
    try {
      r = await fleet('apply', '--yes');
    } finally {
      ec2.tamper = undefined;
      arm.tamperImage = undefined;
    }
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('apply.member-failed');
    // Each member's diagnostic says what to do about a denied boot, in either cloud (engine/apply/failure-cause.ts).
    expect(r.stderr.match(/The authority denied its boot/g), r.stderr).toHaveLength(2);
    expect((await record()).map((v) => [v.dataCenter, v.state]).sort()).toEqual([
      ['eastus', 'BootFailed'],
      ['virginia', 'BootFailed'],
    ]);
    await ec2.settled();
    const web = [...ec2.instances.values()].find((i) => i.tags.get('fleet:fleet') === 'web')!;
    const [denied] = await Promise.all(web.runs);
    expect([denied.stderr.includes('boot denied'), denied.opened]).toEqual([true, false]);
    expect(['shutting-down', 'terminated']).toContain(web.state);
    const azureRun = arm.runs.at(-1)?.run;
    expect([azureRun?.stderr.includes('boot denied'), azureRun?.poweredOff, azureRun?.opened]).toEqual([true, true, false]);
    expect(arm.vms.size).toBe(0);
  });

  it('deletes: the failed members (their VMs already gone) leave the record, both clouds hold nothing', async () => {
    await spec('web', fleetYaml('web', { count: 0 }));
    const r = await fleet('apply', '--yes');
    expect(r.code, r.stderr).toBe(0);
    expect(await placed()).toEqual([]);
    expect(Object.keys(instances())).toEqual([]);
    expect([arm.vms.size, arm.nics.size, arm.disks.size]).toEqual([0, 0, 0]);
  });
});
