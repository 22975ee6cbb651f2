// The boot agent (agent.sh) as a real VM runs it: user data the aws driver
// rendered, run with sh against a real DMZ client's boot endpoint on
// loopback (authority and record real, EC2 and STS served by nock), with a
// fake cryptsetup that records its arguments and the hash of its stdin.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diskKey } from '../../engine/authority/keys.ts';
import { sha256 } from '../../protocol/index.ts';
import { TestCa } from '../../engine/transport/testing.ts';
import { TO_RUNNING, createRequest, newVm, walk } from '../testing.ts';
import { AWS_SECRET, startAwsWorld, type AwsWorld } from '../drivers/aws/world.ts';
import {
  AGENT_START_ALLOWANCE_MS,
  CLOUD_READY_TIMEOUT_MS,
  USER_DATA_MAX_BYTES,
  UserDataTooLarge,
  agentScript,
  agentWindowSeconds,
  parseAgentUserData,
  renderAgentUserData,
} from './index.ts';
import { cloudInitBoot, runUserData, writeFakeVmTools } from './testing.ts';

/** Every file under `dir`, read as text. */
function filesUnder(dir: string): { file: string; text: string }[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile())
    .map((file) => ({ file, text: readFileSync(file, 'latin1') }));
}

describe('boot agent', () => {
  let w: AwsWorld;
  beforeAll(async () => {
    w = await startAwsWorld();
  });
  afterAll(async () => {
    await w?.close();
  });

  it('an approved boot unlocks the data volume with the released key on stdin; the key is in no argv, file or log line', async () => {
    const vm = newVm(w.stack);
    await w.client.createVm(createRequest(vm));
    const steps = await walk(w.client, vm.id, TO_RUNNING);
    expect(steps.at(-1)).toMatchObject({ outcome: 'ok', vm: { state: 'Running' } });
    await w.ec2.settled();
    const inst = [...w.ec2.instances.values()].find((i) => i.tags.get('fleet:vm-id') === vm.id)!;
    const runs = await Promise.all(inst.runs);
    expect(runs.map((r) => r.code)).toEqual([0]);
    expect(runs[0].opened).toBe(true);
    const key = diskKey(AWS_SECRET, vm.id);
    const dir = w.ec2.vmDir(inst.id);
    // First boot formats the volume, then opens it: both read the released key on stdin.
    expect(readFileSync(join(dir, 'cryptsetup.stdin-sha256'), 'utf8').trim().split('\n')).toEqual([sha256(key), sha256(key)]);
    const argv = readFileSync(join(dir, 'cryptsetup.argv'), 'utf8');
    // The data volume by its EBS volume id (udev's link on a Nitro instance), not by NVMe enumeration order.
    const vol = inst.volumes.find((v) => v.deviceName === '/dev/sdf')!.volumeId;
    expect(argv).toContain(`open --type luks --key-file=- /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol${vol.slice(4)} fleet-data`);
    for (const { file, text } of [...filesUnder(dir), ...filesUnder(w.dir)]) expect(text.includes(key), `${file} holds the disk key`).toBe(false);
    expect(runs[0].stdout + runs[0].stderr).not.toContain(key);
    // The user data EC2 holds never carried the key either.
    for (const r of w.ec2.calls('ModifyInstanceAttribute').concat(w.ec2.calls('RunInstances'))) expect(r.params.toString()).not.toContain(key);
  });

  it('a boot with a token the authority never issued is denied: no key, no cryptsetup, the VM powers itself off', async () => {
    const vm = newVm(w.stack, { index: 1 });
    await w.client.createVm(createRequest(vm));
    await walk(w.client, vm.id, ['Requested', 'BeingCreated', 'PoweredOff']);
    const inst = [...w.ec2.instances.values()].find((i) => i.tags.get('fleet:vm-id') === vm.id)!;
    // The user data of its first launch, as EC2 holds it: no boot token, no key.
    expect(parseAgentUserData(inst.userData)).toMatchObject({ FLEET_VM_ID: vm.id, FLEET_BOOT_TOKEN: '', FLEET_ENCRYPTED: '1' });
    const userData = renderAgentUserData({
      bootUrl: `${w.dmz.url}/v1/boot`,
      vmId: vm.id,
      cloudId: inst.id,
      image: inst.imageId,
      bootToken: 'made-up-token',
      encrypted: true,
      dataDevice: '/dev/nvme1n1',
    });
    const dir = w.ec2.vmDir(`${inst.id}-rogue`);
    const r = await runUserData(userData, join(w.ec2.vmDir(''), 'bin'), dir);
    expect(r.code).toBe(1);
    expect(r.poweredOff).toBe(true);
    expect(r.opened).toBe(false);
    expect(r.stderr).toContain('boot denied');
    expect(filesUnder(dir).map((f) => f.file.slice(dir.length + 1))).toEqual(['powered-off']);
  });

  it('a boot whose answer is lost on its way is asked again: the same approval and key, recorded once, and the VM boots', async () => {
    const proxy = await losingProxy(w.dmz.url);
    w.ec2.tamper = (ud) => ud.replace(/^FLEET_BOOT_URL='[^']*'$/m, `FLEET_BOOT_URL='${proxy.url}/v1/boot'`);
    w.ec2.agentEnv = { FLEET_RETRY_SECONDS: '0' };
    try {
      const vm = newVm(w.stack, { index: 2 });
      await w.client.createVm(createRequest(vm));
      const steps = await walk(w.client, vm.id, TO_RUNNING);
      await w.ec2.settled();
      const inst = [...w.ec2.instances.values()].find((i) => i.tags.get('fleet:vm-id') === vm.id)!;
      const runs = await Promise.all(inst.runs);
      expect(runs.map((r) => [r.code, r.opened, r.poweredOff])).toEqual([[0, true, false]]);
      expect(steps.at(-1)).toMatchObject({ outcome: 'ok', vm: { state: 'Running' } });
      // The first answer (an approval: the token is used) never reached the VM; the second is the same approval and key.
      const key = diskKey(AWS_SECRET, vm.id);
      expect(proxy.answers.map((a) => [a.approved, a.diskKey === key])).toEqual([
        [true, true],
        [true, true],
      ]);
      expect((await w.record.listBootAttempts(vm.id)).filter((a) => a.approved)).toHaveLength(1);
    } finally {
      w.ec2.tamper = undefined;
      w.ec2.agentEnv = {};
      await proxy.close();
    }
  });

  it('a VM powered off and booted again runs the agent at each boot (EC2 keeps the instance id; the user data tells cloud-init to run it every boot)', async () => {
    const vm = newVm(w.stack, { index: 3 });
    await w.client.createVm(createRequest(vm));
    expect((await walk(w.client, vm.id, TO_RUNNING)).at(-1)).toMatchObject({ outcome: 'ok', vm: { state: 'Running' } });
    const again = await walk(w.client, vm.id, ['Running', 'ShuttingDown', 'PoweredOff', 'PoweredOn', 'Starting', 'Running']);
    expect(again.at(-1)).toMatchObject({ outcome: 'ok', vm: { state: 'Running' } });
    await w.ec2.settled();
    const inst = [...w.ec2.instances.values()].find((i) => i.tags.get('fleet:vm-id') === vm.id)!;
    const runs = await Promise.all(inst.runs);
    expect(runs.map((r) => [r.code, r.opened, r.poweredOff])).toEqual([
      [0, true, false],
      [0, true, false],
    ]);
    // The second boot opens the volume the first formatted.
    const argv = readFileSync(join(w.ec2.vmDir(inst.id), 'cryptsetup.argv'), 'utf8').trim().split('\n');
    expect(argv.filter((l) => l.startsWith('luksFormat'))).toHaveLength(1);
    expect(argv.filter((l) => l.startsWith('open --type luks'))).toHaveLength(2);
  });

  // Stock cloud-init runs a user-data script once per instance (module scripts-user); an EC2 instance keeps its id
  // across a stop and start, so a plain `#!` script would run at its first launch only (no token yet) and never again.
  it.each([
    { name: 'plain script, first launch', everyBoot: false, ranBefore: false, runs: true },
    { name: 'plain script, a later boot', everyBoot: false, ranBefore: true, runs: false },
    { name: 'cloud-init wrapper, first launch', everyBoot: true, ranBefore: false, runs: true },
    { name: 'cloud-init wrapper, a later boot', everyBoot: true, ranBefore: true, runs: true },
  ])('stock cloud-init, $name: the agent runs=$runs', ({ everyBoot, ranBefore, runs }) => {
    const s = { bootUrl: 'https://10.20.0.10:7401/v1/boot', vmId: 'v', cloudId: 'i-0abc', image: 'ami-1', bootToken: 'tok', encrypted: true, dataDevice: '/dev/nvme1n1' };
    const plain = renderAgentUserData(s);
    const scripts = cloudInitBoot(renderAgentUserData(s, USER_DATA_MAX_BYTES.aws, { cloudInitEveryBoot: everyBoot }), ranBefore);
    // The script cloud-init runs is the agent as rendered, byte for byte (a blank line the MIME part ends with aside).
    expect(scripts.map((x) => x.trimEnd())).toEqual(runs ? [plain.trimEnd()] : []);
  });

  it('first launch (no boot token yet) does nothing and leaves the VM running for the driver to stop', async () => {
    const r = await runUserData(
      renderAgentUserData({ bootUrl: 'http://127.0.0.1:1/v1/boot', vmId: 'v', cloudId: '', image: 'ami-1', encrypted: true, dataDevice: '/dev/nvme1n1' }),
      join(w.ec2.vmDir(''), 'bin'),
      w.ec2.vmDir('first-launch'),
    );
    expect(r).toMatchObject({ code: 0, poweredOff: false, opened: false });
  });

  it('POST /v1/boot/status believes no report without the boot token the driver booted the VM with', async () => {
    const inst = [...w.ec2.instances.values()][0];
    const res = await fetch(`${w.dmz.url}/v1/boot/status`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cloudId: inst.id, vmId: inst.tags.get('fleet:vm-id'), bootToken: 'guessed', state: 'ready' }),
    });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('agent-report-refused');
  });

  // EC2 takes 16 KiB of user data (raw), Azure 64 KiB of userData (base64): a setting too long is refused
  // by the render, naming the setting, before the cloud sees it.
  it.each([
    { name: 'a usual boot, EC2', bootUrl: 'https://10.20.0.10:7401/v1/boot', limit: USER_DATA_MAX_BYTES.aws, fits: true },
    { name: 'a 12 KiB bootUrl, EC2', bootUrl: `https://dmz.example/${'a'.repeat(12 * 1024)}`, limit: USER_DATA_MAX_BYTES.aws, fits: false },
    // The bare script would fit (about 16 000 bytes); the cloud-init wrapper's 560 bytes take it over.
    { name: 'a 5.4 KiB bootUrl, EC2', bootUrl: `https://dmz.example/${'a'.repeat(5500)}`, limit: USER_DATA_MAX_BYTES.aws, fits: false },
    { name: 'a 12 KiB bootUrl, Azure', bootUrl: `https://dmz.example/${'a'.repeat(12 * 1024)}`, limit: USER_DATA_MAX_BYTES.azure, fits: true },
    { name: 'a 48 KiB bootUrl, Azure', bootUrl: `https://dmz.example/${'a'.repeat(48 * 1024)}`, limit: USER_DATA_MAX_BYTES.azure, fits: false },
  ])('user data size: $name fits=$fits', ({ bootUrl, limit, fits }) => {
    // EC2's user data carries the cloud-init wrapper: the limit counts it.
    const render = (): string =>
      renderAgentUserData(
        { bootUrl, vmId: '0b7c2f3e-5d1a-4c8e-9f00-1a2b3c4d5e6f', cloudId: 'i-0abc', image: 'ami-1', bootToken: 't'.repeat(64), encrypted: true, dataDevice: '/dev/nvme1n1' },
        limit,
        { cloudInitEveryBoot: limit === USER_DATA_MAX_BYTES.aws },
      );
    if (fits) {
      expect(Buffer.byteLength(render())).toBeLessThanOrEqual(limit);
    } else {
      expect(render).toThrow(UserDataTooLarge);
      expect(render).toThrow(/over the cloud's limit of \d+; its longest setting is FLEET_BOOT_URL/);
    }
  });

  // One constant: the DMZ client's wait for a cloud boot (CLOUD_READY_TIMEOUT_MS, spec.readyTimeoutMs) sets the agent's
  // window, which leaves AGENT_START_ALLOWANCE_MS of it (or half of a short one) for the instance to start and the agent's
  // last report. agent.sh's own default (user data without FLEET_BOOT_WINDOW) is the window of the default wait.
  it.each([
    { readyTimeoutMs: CLOUD_READY_TIMEOUT_MS, window: 480 },
    { readyTimeoutMs: 300_000, window: 180 },
    { readyTimeoutMs: 120_000, window: 60 },
    { readyTimeoutMs: 60_000, window: 30 },
    { readyTimeoutMs: 1_000, window: 1 },
  ])('a DMZ client waiting $readyTimeoutMs ms for a boot gives its agents a window of $window s', ({ readyTimeoutMs, window }) => {
    expect(agentWindowSeconds(readyTimeoutMs)).toBe(window);
    if (readyTimeoutMs >= 2 * AGENT_START_ALLOWANCE_MS) expect(window * 1000 + AGENT_START_ALLOWANCE_MS).toBeLessThanOrEqual(readyTimeoutMs);
    expect(parseAgentUserData(renderAgentUserData({ bootUrl: 'http://x/v1/boot', vmId: 'v', cloudId: 'c', image: 'i', encrypted: false, dataDevice: '/dev/x', windowSeconds: window })).FLEET_BOOT_WINDOW).toBe(String(window));
  });

  it('agent.sh\'s default boot window is the window of the default wait', () => {
    expect(/: "\$\{FLEET_BOOT_WINDOW:=(\d+)\}"/.exec(agentScript())?.[1]).toBe(String(agentWindowSeconds()));
    expect(/\*\[!0-9\]\*\) FLEET_BOOT_WINDOW=(\d+)/.exec(agentScript())?.[1]).toBe(String(agentWindowSeconds()));
  });

  it('rendered user data quotes every setting for sh', () => {
    const text = renderAgentUserData({ bootUrl: "http://x/'; rm -rf /; '", vmId: 'v', cloudId: 'c', image: 'i', encrypted: false, dataDevice: '/dev/x' });
    expect(parseAgentUserData(text).FLEET_BOOT_URL).toBe("http://x/'; rm -rf /; '");
    expect(text.startsWith('#!/bin/sh\n')).toBe(true);
  });
});

/**
 * A proxy in front of a real boot endpoint that loses the answer to the first POST /v1/boot: it
 * passes the request on, reads the whole answer, then cuts the VM's connection without a byte
 * (a DMZ client that dies, or a network that drops, after the authority approved). `answers`: every
 * answer the endpoint gave, lost or passed on.
 */
async function losingProxy(target: string): Promise<{ url: string; answers: Record<string, unknown>[]; close(): Promise<void> }> {
  const answers: Record<string, unknown>[] = [];
  let boots = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      void fetch(`${target}${req.url}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then(async (up) => {
        const text = await up.text();
        if (req.url === '/v1/boot') {
          answers.push(JSON.parse(text) as Record<string, unknown>);
          if (boots++ === 0) return void req.socket.destroy();
        }
        res.writeHead(up.status, { 'content-type': 'application/json' }).end(text);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, answers, close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))) };
}

/** What the faulty boot endpoint saw: the bodies posted to /v1/boot and to /v1/boot/status. */
interface Seen {
  boots: Record<string, unknown>[];
  reports: Record<string, unknown>[];
}

/**
 * A boot endpoint that answers each POST /v1/boot with `answer(n)` (n: 0 for the first) and takes
 * every report: the faults a VM meets between it and the DMZ client (a proxy, a restart, a cut).
 */
async function faultyEndpoint(
  answer: (n: number, req: IncomingMessage, res: ServerResponse) => void,
  tls?: { cert: string; key: string },
  report?: (n: number, req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; seen: Seen; close(): Promise<void> }> {
  const seen: Seen = { boots: [], reports: [] };
  const handler: RequestListener = (req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const parsed = JSON.parse(body || '{}') as Record<string, unknown>;
      if (req.url === '/v1/boot/status') {
        seen.reports.push(parsed);
        if (report) return report(seen.reports.length - 1, req, res);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
        return;
      }
      seen.boots.push(parsed);
      answer(seen.boots.length - 1, req, res);
    });
  };
  const server = tls ? createHttpsServer(tls, handler) : createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, seen, close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))) };
}

describe('boot agent against a faulty boot endpoint', () => {
  const settings = { vmId: '0b7c2f3e-5d1a-4c8e-9f00-1a2b3c4d5e6f', cloudId: 'i-0abc', image: 'ami-1', bootToken: 'tok-1', encrypted: true, dataDevice: '/dev/nvme1n1' };
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'dmzfleet-agent-faults-'));
    await writeFakeVmTools(join(root, 'bin'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const json = (res: ServerResponse, status: number, body: string): void => void res.writeHead(status, { 'content-type': 'application/json' }).end(body);

  // Only the boot endpoint's own denial is a denial (the driver terminates the VM on it); an answer the
  // agent cannot read is a failed boot: the VM powers off and stays, BootFailed, for the operator.
  // No answer, and a 408 / 429 / 5xx, are asked again (FLEET_TRIES, here 4); any other answer is final.
  it.each([
    { name: 'a denial', answer: (res: ServerResponse) => json(res, 200, '{"approved":false,"reason":"image ami-9 is not the image of this VM"}'), denied: true, asked: 1 },
    { name: 'a redirect', answer: (res: ServerResponse) => void res.writeHead(302, { location: 'https://elsewhere.example/v1/boot' }).end(), denied: false, asked: 1 },
    { name: 'an HTML page with 200', answer: (res: ServerResponse) => void res.writeHead(200, { 'content-type': 'text/html' }).end('<html>proxy login</html>'), denied: false, asked: 1 },
    { name: 'an empty 200', answer: (res: ServerResponse) => json(res, 200, ''), denied: false, asked: 1 },
    { name: 'a JSON error with 200', answer: (res: ServerResponse) => json(res, 200, '{"error":{"code":"internal","message":"x"}}'), denied: false, asked: 1 },
    { name: 'a 400', answer: (res: ServerResponse) => json(res, 400, '{"error":{"code":"bad-request","message":"x"}}'), denied: false, asked: 1 },
    { name: 'a 503 every time', answer: (res: ServerResponse) => json(res, 503, '{"error":{"code":"authority-unavailable","message":"x"}}'), denied: false, asked: 4 },
    { name: 'a 429 every time (the boot endpoint\'s limit)', answer: (res: ServerResponse) => json(res, 429, '{"error":{"code":"boot-rate-limited","message":"x"}}'), denied: false, asked: 4 },
    { name: 'a cut connection every time', answer: (res: ServerResponse) => void res.socket?.destroy(), denied: false, asked: 4 },
    { name: 'an answer cut short every time', answer: (res: ServerResponse) => void (res.writeHead(200, { 'content-length': '200' }).write('{"approved":tr'), res.socket?.end()), denied: false, asked: 4 },
  ])('$name: the VM powers off, reported failed with denied=$denied, no key used (asked $asked times)', async ({ name, answer, denied, asked }) => {
    const ep = await faultyEndpoint((_n, _req, res) => answer(res));
    try {
      const dir = join(root, name.replace(/\W+/g, '-'));
      const r = await runUserData(renderAgentUserData({ ...settings, bootUrl: `${ep.url}/v1/boot` }), join(root, 'bin'), dir, { FLEET_RETRY_SECONDS: '0', FLEET_TRIES: '4' });
      expect(r).toMatchObject({ code: 1, poweredOff: true, opened: false });
      expect(ep.seen.boots).toHaveLength(asked);
      expect(ep.seen.reports.map((x) => [x.state, x.denied])).toEqual([
        ['booting', false],
        ['failed', denied],
      ]);
    } finally {
      await ep.close();
    }
  });

  // cryptsetup isLuks says 1 for a volume that is not LUKS; anything else (4: no such device, 5: busy, 2: no
  // permission) is no answer, and formatting on it would overwrite a LUKS volume with a new volume key.
  it.each([
    { exit: 4, what: 'no such device' },
    { exit: 5, what: 'busy' },
    { exit: 2, what: 'no permission' },
  ])('cryptsetup isLuks failing with $exit ($what): the volume is not formatted, the boot fails, the VM powers off', async ({ exit }) => {
    const ep = await faultyEndpoint((_n, _req, res) => json(res, 200, '{"approved":true,"reason":"matches","diskKey":"k-1"}'));
    try {
      const dir = join(root, `isluks-${exit}`);
      const tool = join(root, `cryptsetup-isluks-${exit}`);
      await writeFile(tool, `#!/bin/sh\n[ "$1" = isLuks ] && exit ${exit}\nexec cryptsetup "$@"\n`);
      await chmod(tool, 0o755);
      const r = await runUserData(renderAgentUserData({ ...settings, bootUrl: `${ep.url}/v1/boot` }), join(root, 'bin'), dir, { FLEET_RETRY_SECONDS: '0', FLEET_CRYPTSETUP: tool });
      expect(r).toMatchObject({ code: 1, poweredOff: true, opened: false });
      expect(existsSync(join(dir, 'luks-header'))).toBe(false);
      expect(ep.seen.reports.map((x) => [x.state, x.denied])).toEqual([
        ['booting', false],
        ['failed', false],
      ]);
    } finally {
      await ep.close();
    }
  });

  // The data volume may be open already when the agent runs (the agent run again in the same OS session, a restart
  // that kept the mapping): `cryptsetup open` of a name that is mapped fails, which failed the boot. Open on the
  // data volume (by its path or a link to it) with a key the released one matches: ready without a second open.
  it.each([
    { name: 'open on the data volume', mapped: '/dev/nvme1n1', device: '/dev/nvme1n1', headerKey: 'k-1', ready: true },
    { name: 'open on the device a by-id link names', mapped: '/dev/nvme1n1', device: 'LINK', headerKey: 'k-1', ready: true },
    { name: 'open on another device', mapped: '/dev/nvme2n1', device: '/dev/nvme1n1', headerKey: 'k-1', ready: false },
    { name: 'open, but the released key does not unlock the volume', mapped: '/dev/nvme1n1', device: '/dev/nvme1n1', headerKey: 'k-other', ready: false },
  ])('data volume $name: ready=$ready, no second open, nothing formatted', async ({ name, mapped, device, headerKey, ready }) => {
    const ep = await faultyEndpoint((_n, _req, res) => json(res, 200, '{"approved":true,"reason":"matches","diskKey":"k-1"}'));
    try {
      const dir = join(root, `open-already-${name.replace(/\W+/g, '-')}`);
      await mkdir(join(dir, 'mapper'), { recursive: true });
      await writeFile(join(dir, 'mapper', 'fleet-data'), '');
      await writeFile(join(dir, 'mapped-device'), `${mapped}\n`);
      await writeFile(join(dir, 'luks-header'), `${sha256(headerKey)}\n`);
      let dataDevice = device;
      if (device === 'LINK') {
        dataDevice = join(dir, 'nvme-Amazon_Elastic_Block_Store_vol0abc');
        await symlink(mapped, dataDevice);
      }
      const r = await runUserData(renderAgentUserData({ ...settings, dataDevice, bootUrl: `${ep.url}/v1/boot` }), join(root, 'bin'), dir, { FLEET_RETRY_SECONDS: '0' });
      expect(r).toMatchObject({ code: ready ? 0 : 1, poweredOff: !ready });
      expect(ep.seen.reports.map((x) => x.state)).toEqual(['booting', ready ? 'ready' : 'failed']);
      const argv = readFileSync(join(dir, 'cryptsetup.argv'), 'utf8').trim().split('\n');
      expect(argv.filter((l) => l.startsWith('luksFormat') || l.startsWith('open --type'))).toEqual([]);
      expect(readFileSync(join(dir, 'luks-header'), 'utf8')).toBe(`${sha256(headerKey)}\n`);
    } finally {
      await ep.close();
    }
  });

  it('the agent run twice in one OS session: the second run finds the volume open and reports ready', async () => {
    const ep = await faultyEndpoint((_n, _req, res) => json(res, 200, '{"approved":true,"reason":"matches","diskKey":"k-1"}'));
    try {
      const dir = join(root, 'run-twice');
      const userData = renderAgentUserData({ ...settings, bootUrl: `${ep.url}/v1/boot` });
      const first = await runUserData(userData, join(root, 'bin'), dir, { FLEET_RETRY_SECONDS: '0' });
      const second = await runUserData(userData, join(root, 'bin'), dir, { FLEET_RETRY_SECONDS: '0' });
      expect([first, second].map((r) => [r.code, r.poweredOff])).toEqual([
        [0, false],
        [0, false],
      ]);
      expect(ep.seen.reports.map((x) => x.state)).toEqual(['booting', 'ready', 'booting', 'ready']);
      expect(readFileSync(join(dir, 'cryptsetup.argv'), 'utf8').trim().split('\n')).toEqual([
        'isLuks /dev/nvme1n1',
        'luksFormat --batch-mode --key-file=- /dev/nvme1n1',
        'open --type luks --key-file=- /dev/nvme1n1 fleet-data',
        'status fleet-data',
        'open --test-passphrase --type luks --key-file=- /dev/nvme1n1',
      ]);
    } finally {
      await ep.close();
    }
  });

  // The DMZ client's limit of denials per address answers 429 boot-rate-limited until its window ends (a VM sharing its
  // address with a caller sending bad tokens): a lost answer, asked again; the boot goes on once the window has passed.
  it('a 429 (boot-rate-limited), then the approval: asked again, the volume opens, ready', async () => {
    const ep = await faultyEndpoint((n, _req, res) =>
      n === 0 ? void res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '30' }).end('{"error":{"code":"boot-rate-limited","message":"x"}}') : json(res, 200, '{"approved":true,"reason":"matches","diskKey":"k-1"}'),
    );
    try {
      const r = await runUserData(renderAgentUserData({ ...settings, bootUrl: `${ep.url}/v1/boot` }), join(root, 'bin'), join(root, 'limited-once'), { FLEET_RETRY_SECONDS: '0' });
      expect(r).toMatchObject({ code: 0, poweredOff: false, opened: true });
      expect(ep.seen.boots).toHaveLength(2);
      expect(ep.seen.reports.map((x) => x.state)).toEqual(['booting', 'ready']);
    } finally {
      await ep.close();
    }
  });

  // A retried answer's Retry-After (seconds; the boot endpoint's 429 boot-rate-limited says when its window ends) is the
  // pause before the next try, at most 60 s; without one, or one that is no whole number of seconds (an HTTP date, a
  // fraction), FLEET_RETRY_SECONDS. The fake `sleep` records the pause and waits none of it. Asked 5 s apart, a VM
  // spent its tries inside a window longer than its retries and failed its boot although the window said when to come back.
  it.each([
    { name: '429 with Retry-After 30', status: 429, headers: { 'retry-after': '30' }, pause: '30' },
    { name: '503 with Retry-After 7 (spelled Retry-After)', status: 503, headers: { 'Retry-After': '7' }, pause: '7' },
    { name: '429 with Retry-After 0', status: 429, headers: { 'retry-after': '0' }, pause: '0' },
    { name: '429 with Retry-After 007', status: 429, headers: { 'retry-after': '007' }, pause: '7' },
    { name: '429 with Retry-After 3600 (past the bound)', status: 429, headers: { 'retry-after': '3600' }, pause: '60' },
    { name: '429 with Retry-After of 30 digits', status: 429, headers: { 'retry-after': '9'.repeat(30) }, pause: '60' },
    { name: '429 with no Retry-After', status: 429, headers: {}, pause: '5' },
    { name: '429 with Retry-After as an HTTP date', status: 429, headers: { 'retry-after': 'Wed, 02 Dec 2026 04:00:45 GMT' }, pause: '5' },
    { name: '429 with Retry-After 1.5', status: 429, headers: { 'retry-after': '1.5' }, pause: '5' },
    { name: '429 with Retry-After -3', status: 429, headers: { 'retry-after': '-3' }, pause: '5' },
  ])('$name, then the approval: paused $pause s before asking again, ready; no scratch file left', async ({ name, status, headers, pause }) => {
    const ep = await faultyEndpoint((n, _req, res) =>
      n === 0 ? void res.writeHead(status, { 'content-type': 'application/json', ...headers }).end('{"error":{"code":"boot-rate-limited","message":"x"}}') : json(res, 200, '{"approved":true,"reason":"matches","diskKey":"k-1"}'),
    );
    const tmp = await mkdtemp(join(root, 'tmpdir-'));
    try {
      const dir = join(root, `retry-after-${name.replace(/\W+/g, '-')}`);
      const r = await runUserData(renderAgentUserData({ ...settings, bootUrl: `${ep.url}/v1/boot` }), join(root, 'bin'), dir, { FLEET_RETRY_SECONDS: '5', TMPDIR: tmp });
      expect(r).toMatchObject({ code: 0, poweredOff: false, opened: true, slept: [pause] });
      expect(ep.seen.boots).toHaveLength(2);
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      await ep.close();
    }
  });

  it("a Retry-After is the pause after its own answer only: a try after it that gets no answer pauses FLEET_RETRY_SECONDS", async () => {
    const ep = await faultyEndpoint((n, _req, res) => {
      if (n === 0) return void res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '9' }).end('{}');
      if (n === 1) return void res.socket?.destroy();
      json(res, 200, '{"approved":true,"reason":"matches","diskKey":"k-1"}');
    });
    try {
      const r = await runUserData(renderAgentUserData({ ...settings, bootUrl: `${ep.url}/v1/boot` }), join(root, 'bin'), join(root, 'retry-after-then-cut'), { FLEET_RETRY_SECONDS: '5' });
      expect(r).toMatchObject({ code: 0, opened: true, slept: ['9', '5'] });
      expect(ep.seen.boots).toHaveLength(3);
    } finally {
      await ep.close();
    }
  });

  // The DMZ client's awaitReady waits spec.readyTimeoutMs for a boot (10 minutes on aws and azure). The agent asked each
  // of its three requests (the booting report, the boot, the last report) 12 times, each after the answer's Retry-After
  // (at most 60 s): behind a boot endpoint's limit with a long window it asked for 33 minutes, and a boot approved after
  // awaitReady gave up left the VM running with its disk open while the record held it BootFailed. Its handshake now ends
  // within its boot window (FLEET_BOOT_WINDOW, the driver's agentWindowSeconds): no pause is waited out past it, and the
  // failure is reported and the VM powered off while awaitReady still waits. The fake clock counts the pauses only.
  const limited = (res: ServerResponse): void =>
    void res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '60' }).end('{"error":{"code":"boot-rate-limited","message":"x"}}');
  const unavailable = (res: ServerResponse, retryAfter?: string): void =>
    void res.writeHead(503, { 'content-type': 'application/json', ...(retryAfter ? { 'retry-after': retryAfter } : {}) }).end('{"error":{"code":"authority-unavailable","message":"x"}}');
  const approve = (res: ServerResponse): void => json(res, 200, '{"approved":true,"reason":"matches","diskKey":"k-1"}');
  it.each([
    {
      name: 'every request 429 with Retry-After 60 (a limit window of an hour), the default window',
      window: undefined,
      boot: (_n: number, res: ServerResponse) => limited(res),
      report: (_n: number, res: ServerResponse) => limited(res),
      code: 1,
      slept: Array<string>(7).fill('60'),
      boots: 1,
      reports: [...Array<string>(8).fill('booting'), 'failed'],
    },
    {
      name: 'a 20 s window, a 429 with Retry-After 30, then the approval',
      window: 20,
      boot: (n: number, res: ServerResponse) => (n === 0 ? unavailable(res, '30') : approve(res)),
      code: 1,
      slept: [],
      boots: 1,
      reports: ['booting', 'failed'],
    },
    {
      name: 'a 100 s window, every boot 503 with Retry-After 30',
      window: 100,
      boot: (_n: number, res: ServerResponse) => unavailable(res, '30'),
      code: 1,
      slept: ['30', '30', '30'],
      boots: 4,
      reports: ['booting', 'failed'],
    },
    {
      name: 'a 100 s window, two 503s with Retry-After 30, then the approval',
      window: 100,
      boot: (n: number, res: ServerResponse) => (n < 2 ? unavailable(res, '30') : approve(res)),
      code: 0,
      slept: ['30', '30'],
      boots: 3,
      reports: ['booting', 'ready'],
    },
    {
      name: 'the default window, every boot 503 without Retry-After (12 tries, 5 s apart: inside it)',
      window: undefined,
      boot: (_n: number, res: ServerResponse) => unavailable(res),
      code: 1,
      slept: Array<string>(11).fill('5'),
      boots: 12,
      reports: ['booting', 'failed'],
    },
  ])('boot window: $name', async ({ name, window, boot, report, code, slept, boots, reports }) => {
    const ep = await faultyEndpoint((n, _req, res) => boot(n, res), undefined, report ? (n, _req, res) => report(n, res) : undefined);
    try {
      const userData = renderAgentUserData({ ...settings, bootUrl: `${ep.url}/v1/boot`, ...(window !== undefined ? { windowSeconds: window } : {}) });
      const r = await runUserData(userData, join(root, 'bin'), join(root, `window-${name.replace(/\W+/g, '-')}`), { FLEET_RETRY_SECONDS: '5' });
      expect(r).toMatchObject({ code, poweredOff: code !== 0, opened: code === 0, slept });
      expect(ep.seen.boots).toHaveLength(boots);
      expect(ep.seen.reports.map((x) => x.state)).toEqual(reports);
      const spent = r.slept.reduce((a, b) => a + Number(b), 0);
      expect(spent).toBeLessThanOrEqual(window ?? agentWindowSeconds());
      if (code !== 0 && window !== undefined && boots === 1) expect(r.stderr).toContain('the boot window (FLEET_BOOT_WINDOW, 20 s) has 20 s left, too few to ask again in 30 s');
    } finally {
      await ep.close();
    }
  });

  it('FLEET_TRIES that is no whole number falls back to 12 tries (the retries still end)', async () => {
    const ep = await faultyEndpoint((_n, _req, res) => json(res, 503, '{"error":{"code":"authority-unavailable","message":"x"}}'));
    try {
      const userData = renderAgentUserData({ ...settings, bootUrl: `${ep.url}/v1/boot` });
      const r = await runUserData(userData, join(root, 'bin'), join(root, 'bad-tries'), { FLEET_RETRY_SECONDS: '0', FLEET_TRIES: 'many' });
      expect(r).toMatchObject({ code: 1, poweredOff: true });
      expect(ep.seen.boots).toHaveLength(12);
    } finally {
      await ep.close();
    }
  });

  it('a boot endpoint under a private CA (the DMZ client\'s --boot-ca): the agent verifies it with the CA the user data carries', async () => {
    const ca = new TestCa();
    const ep = await faultyEndpoint((_n, _req, res) => json(res, 200, '{"approved":true,"reason":"matches","diskKey":"k-1"}'), ca.issue({ cn: '127.0.0.1' }));
    try {
      const userData = renderAgentUserData({ ...settings, bootUrl: `${ep.url}/v1/boot`, bootCa: ca.cert });
      expect(parseAgentUserData(userData).FLEET_BOOT_CA).toBe(ca.cert);
      const r = await runUserData(userData, join(root, 'bin'), join(root, 'private-ca'), { FLEET_RETRY_SECONDS: '0', FLEET_TRIES: '2' });
      expect(r).toMatchObject({ code: 0, poweredOff: false, opened: true });
      expect(ep.seen.reports.map((x) => x.state)).toEqual(['booting', 'ready']);
      // Another CA's certificate is refused: the VM asks no one but the endpoint its CA names.
      const other = new TestCa();
      const r2 = await runUserData(
        renderAgentUserData({ ...settings, bootUrl: `${ep.url}/v1/boot`, bootCa: other.cert }),
        join(root, 'bin'),
        join(root, 'other-ca'),
        { FLEET_RETRY_SECONDS: '0', FLEET_TRIES: '2' },
      );
      expect(r2).toMatchObject({ code: 1, poweredOff: true, opened: false });
      expect(ep.seen.boots).toHaveLength(1);
    } finally {
      await ep.close();
    }
  });
});
