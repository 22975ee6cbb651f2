import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, cp, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID, type KeyObject } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FleetError } from '../../../engine/diags/index.ts';
import { credentialKey, sha256, signScopedToken } from '../../../protocol/index.ts';
import type { DriverError} from '../types.ts';
import { type ScopedCredentials } from '../types.ts';
import { signedCredentials, testCredentialKey } from './testing.ts';
import { agentWindowSeconds } from '../../boot-agent/index.ts';
import { createSimDriver } from './open.ts';
import { SIM_READY_TIMEOUT_MS, simBootWindowMs } from './options.ts';
import { seededRandom, type SimDriver } from './sim.ts';
import { parseSimState, readSimState, simLogFile, simStateFile } from './state-file.ts';

/** Credentials as the authority issues them for `dataCenter` (signed with its key), valid for `ms`. */
const creds = (dataCenter = 'dc-a', ms = 60_000): ScopedCredentials => signedCredentials(dataCenter, { ms });
const KEY = testCredentialKey('dc-a');
/** The DMZ client's own read-only identity (providers/dmz-client/routes.ts): reads only. */
const READ: ScopedCredentials = { dataCenter: 'dc-a', token: 'dmz-client-read-only', expiresAt: new Date(Date.now() + 3_600_000).toISOString() };
const input = (over: Partial<{ vmId: string; cpu: number; encryptedDisk: boolean; diskKeyHash: string }> = {}) => ({
  vmId: over.vmId ?? randomUUID(),
  name: 'n',
  image: 'img-1',
  size: { cpu: over.cpu ?? 1, memoryGiB: 1, diskGiB: 10 },
  encryptedDisk: over.encryptedDisk ?? false,
  ...(over.diskKeyHash ? { diskKeyHash: over.diskKeyHash } : {}),
});

let dir: string;
const drivers: SimDriver[] = [];
async function sim(opts: Partial<Parameters<typeof createSimDriver>[0]> = {}): Promise<SimDriver> {
  const d = await createSimDriver({ dataCenter: 'dc-a', stateDir: dir, latencyMs: 1, credentialKey: KEY, ...opts });
  drivers.push(d);
  return d;
}
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dmzfleet-sim-'));
});
afterEach(async () => {
  for (const d of drivers.splice(0)) await d.close();
  await rm(dir, { recursive: true, force: true });
});

/** Starts testdata/holder.ts, which opens the sim at `stateDir` in its own process; resolves once it holds it. */
async function holder(stateDir: string): Promise<{ pid: number; release: () => Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./testdata/holder.ts', import.meta.url)), stateDir, 'dc-a'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const pid = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /ready (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`holder exited ${code}`)));
  });
  return {
    pid,
    release: async () => {
      child.stdin.end();
      await exited;
    },
  };
}

describe('one owner per simulated data center', () => {
  it('refuses a second open in the same process, and opens again once closed', async () => {
    const a = await sim();
    await expect(sim()).rejects.toMatchObject({ diagnostics: [{ code: 'sim.busy', detail: expect.stringMatching(/already open in this process/) }] });
    await a.close();
    drivers.splice(drivers.indexOf(a), 1);
    await expect(sim()).resolves.toBeDefined();
  });

  it('refuses while another process holds it, naming that process; waits up to busyTimeoutMs for it to let go', async () => {
    const other = await holder(dir);
    const refused = await sim().then(
      () => undefined,
      (e: FleetError) => e,
    );
    expect(refused).toBeInstanceOf(FleetError);
    expect(refused?.diagnostics[0]).toMatchObject({ code: 'sim.busy', file: dir, detail: expect.stringContaining(`pid ${other.pid}`) });
    // How to wait, for every command that opens it: it said "--lock-timeout SECONDS waits", an option
    // fleet refresh and fleet import do not have (they wait the stack's apply.lockTimeoutSeconds).
    expect(refused?.diagnostics[0].detail).toContain('(`fleet apply --lock-timeout SECONDS` waits; `fleet refresh` and `fleet import` wait the stack\'s apply.lockTimeoutSeconds)');
    // A waiter gets it as soon as the holder closes.
    const waiting = sim({ busyTimeoutMs: 30_000 });
    await other.release();
    const d = await waiting;
    expect(await d.list(creds())).toEqual([]);
  });

  it('takes over the lock of a process that died', async () => {
    await writeFile(`${dir}.lock`, JSON.stringify({ pid: 2 ** 22 + 17, host: (await import('node:os')).hostname(), since: 'then', command: 'fleet apply' }));
    await expect(sim()).resolves.toBeDefined();
  });

  it('never writes its log through a symbolic link planted at its name (links point into the test folder only)', async () => {
    const victim = join(dir, 'victim.txt');
    await writeFile(victim, 'keep\n');
    await chmod(victim, 0o644);
    // Its state folder's own files are made 0600 when it opens (makePrivate): the victim lies beside it.
    const stateDir = join(dir, 'state');
    const d = await sim({ stateDir });
    await symlink(victim, simLogFile(stateDir, 'dc-a'));
    // The append is refused; the write after it rewrites the snapshot and removes the link (the VM is in it).
    const first = await d.createVm(creds(), input()).catch((e: unknown) => e);
    expect(String(first)).toContain('is a symbolic link');
    await d.createVm(creds(), input());
    await d.close();
    expect(await readFile(victim, 'utf8')).toBe('keep\n');
    expect((await stat(victim)).mode & 0o777).toBe(0o644);
    expect((await lstat(simLogFile(stateDir, 'dc-a')).catch(() => undefined))?.isSymbolicLink()).not.toBe(true);
  });

  it('creates its folders 0700 and its files 0600', async () => {
    const stateDir = join(dir, 'sim', 'dc-a');
    const d = await createSimDriver({ dataCenter: 'dc-a', stateDir, latencyMs: 0, credentialKey: KEY });
    await d.createVm(creds(), input());
    await d.powerOn(creds(), (await d.list(creds()))[0]);
    expect(existsSync(simLogFile(stateDir, 'dc-a'))).toBe(true);
    expect((await stat(simLogFile(stateDir, 'dc-a'))).mode & 0o777).toBe(0o600);
    await d.close();
    for (const folder of [join(dir, 'sim'), stateDir]) expect({ folder, mode: (await stat(folder)).mode & 0o777 }).toEqual({ folder, mode: 0o700 });
    for (const f of await readdir(stateDir)) expect({ f, mode: (await stat(join(stateDir, f))).mode & 0o777 }).toEqual({ f, mode: 0o600 });
  });
});

describe('sim driver', () => {
  it('keeps VMs on disk across instances, written atomically', async () => {
    const a = await sim();
    const vm = await a.createVm(creds(), input());
    await a.powerOn(creds(), { vmId: vm.vmId, cloudId: vm.cloudId });
    await a.close();
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const b = await sim();
    expect(await b.get(creds(), { vmId: vm.vmId, cloudId: null })).toMatchObject({ cloudId: vm.cloudId, power: 'on', observedState: 'PoweredOn' });
  });

  it('group-commits: many concurrent changes share few writes, and each is on disk when it resolves', async () => {
    const d = await sim({ latencyMs: 0 });
    const file = simStateFile(dir, 'dc-a');
    const log = simLogFile(dir, 'dc-a');
    // Snapshot plus log, read synchronously.
    const onDisk = () => parseSimState(file, existsSync(file) ? readFileSync(file, 'utf8') : undefined, existsSync(log) ? readFileSync(log, 'utf8') : undefined).vms;
    const n = 200;
    const missing: string[] = [];
    const made = await Promise.all(
      Array.from({ length: n }, () =>
        d.createVm(creds(), input()).then((vm) => {
          // Checked synchronously when the promise resolves: the write that includes it has completed.
          if (!onDisk().some((v) => v.vmId === vm.vmId)) missing.push(vm.vmId);
          return vm;
        }),
      ),
    );
    expect(missing).toEqual([]);
    expect(d.writes).toBeGreaterThan(0);
    expect(d.writes).toBeLessThan(n / 4);
    const before = d.writes;
    const off: string[] = [];
    await Promise.all(
      made.map((vm) =>
        d.powerOn(creds(), { vmId: vm.vmId, cloudId: vm.cloudId }).then(() => {
          if (onDisk().find((v) => v.vmId === vm.vmId)?.power !== 'on') off.push(vm.vmId);
        }),
      ),
    );
    expect(off).toEqual([]);
    expect(d.writes - before).toBeLessThan(n / 4);
    await d.close();
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const again = await sim();
    expect((await again.list(creds())).filter((v) => v.power === 'on')).toHaveLength(n);
  });

  it('a failed write rejects the changes it carried, and the next change writes again', async () => {
    const d = await sim({ latencyMs: 0 });
    const vm = await d.createVm(creds(), input());
    await rm(dir, { recursive: true, force: true });
    await expect(d.powerOn(creds(), { vmId: vm.vmId, cloudId: vm.cloudId })).rejects.toThrow(/ENOENT/);
    await mkdir(dir, { recursive: true });
    await d.powerOff(creds(), { vmId: vm.vmId, cloudId: vm.cloudId });
    expect(JSON.parse(await readFile(simStateFile(dir, 'dc-a'), 'utf8'))).toMatchObject({ vms: [{ vmId: vm.vmId, power: 'off' }] });
  });

  it('appends only the changed VMs to the log, and folds the log into the snapshot on close and on open', async () => {
    const d = await sim({ latencyMs: 0 });
    const made = await Promise.all(Array.from({ length: 50 }, () => d.createVm(creds(), input())));
    await d.close();
    expect(existsSync(simLogFile(dir, 'dc-a'))).toBe(false);
    expect(JSON.parse(await readFile(simStateFile(dir, 'dc-a'), 'utf8'))).toMatchObject({ seq: expect.any(Number), vms: made.map((m) => ({ cloudId: m.cloudId })) });

    const e = await sim({ latencyMs: 0 });
    const snapshot = await readFile(simStateFile(dir, 'dc-a'), 'utf8');
    await e.powerOn(creds(), { vmId: made[7].vmId, cloudId: made[7].cloudId });
    // One line for the one VM that changed; the snapshot is untouched.
    const lines = (await readFile(simLogFile(dir, 'dc-a'), 'utf8')).trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ vm: { cloudId: made[7].cloudId, power: 'on' } });
    expect(await readFile(simStateFile(dir, 'dc-a'), 'utf8')).toBe(snapshot);
    // Not closed (as after a crash): the next open of the files as they were left replays the log, then compacts it away.
    const crashed = await mkdtemp(join(tmpdir(), 'dmzfleet-sim-crashed-'));
    await cp(dir, crashed, { recursive: true });
    const f = await createSimDriver({ dataCenter: 'dc-a', stateDir: crashed, latencyMs: 0, credentialKey: KEY });
    drivers.push(f);
    expect(existsSync(simLogFile(crashed, 'dc-a'))).toBe(false);
    expect(await f.get(creds(), { vmId: made[7].vmId, cloudId: made[7].cloudId })).toMatchObject({ power: 'on' });
    expect((await f.list(creds())).filter((v) => v.power === 'on')).toHaveLength(1);
  });

  it('compacts the log when it outgrows the snapshot, so the files stay in proportion to the VMs', async () => {
    const d = await sim({ latencyMs: 0 });
    const vm = await d.createVm(creds(), input());
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    // Each power change appends the whole (~400-byte) VM: 1400 of them, past 4 x 64 KiB, the least that triggers a compaction.
    for (let i = 0; i < 700; i++) {
      await d.powerOn(creds(), ref);
      await d.powerOff(creds(), ref);
    }
    expect((await readFile(simLogFile(dir, 'dc-a'), 'utf8').catch(() => '')).length).toBeLessThan(4 * 64 * 1024 + 1024);
    // Compacted while open: the snapshot holds a seq from the run.
    expect((JSON.parse(await readFile(simStateFile(dir, 'dc-a'), 'utf8')) as { seq: number }).seq).toBeGreaterThan(500);
    expect(await readSimState(dir, 'dc-a')).toMatchObject({ vms: [{ cloudId: vm.cloudId, power: 'off' }] });
  });

  it('loading skips a line torn by a crash mid-append and lines the snapshot already holds', async () => {
    const d = await sim({ latencyMs: 0 });
    const [a, b] = await Promise.all([d.createVm(creds(), input()), d.createVm(creds(), input())]);
    await d.close();
    const snap = JSON.parse(await readFile(simStateFile(dir, 'dc-a'), 'utf8')) as { seq: number; vms: { cloudId: string; power: string }[] };
    const vmA = snap.vms.find((v) => v.cloudId === a.cloudId)!;
    const vmB = snap.vms.find((v) => v.cloudId === b.cloudId)!;
    const line = (seq: number, vm: object) => `${JSON.stringify({ seq, vm })}\n`;
    await writeFile(
      simLogFile(dir, 'dc-a'),
      // An older line for A (a crash between snapshot and log removal), a newer one for B, then a torn one for A.
      line(snap.seq, { ...vmA, power: 'on' }) + line(snap.seq + 1, { ...vmB, power: 'on' }) + line(snap.seq + 2, { ...vmA, power: 'on' }).slice(0, 40),
    );
    const e = await sim({ latencyMs: 0 });
    expect(await e.get(creds(), { vmId: a.vmId, cloudId: a.cloudId })).toMatchObject({ power: 'off' });
    expect(await e.get(creds(), { vmId: b.vmId, cloudId: b.cloudId })).toMatchObject({ power: 'on' });
    // Later changes get seqs past what was loaded, so they win on the next open.
    await e.powerOn(creds(), { vmId: a.vmId, cloudId: a.cloudId });
    expect((await readSimState(dir, 'dc-a')).vms.map((v) => v.power)).toEqual(['on', 'on']);
  });

  // A state folder this user may not create or read (a stack's .fleet/sim owned by another user) stopped fleet apply
  // with 'error[cli.internal]: Internal error  EACCES: permission denied, mkdir …/.fleet/sim/miami'. The suite runs as
  // root: a folder below a file (ENOTDIR) and a state file that is a folder (EISDIR) take the same paths.
  it('reports a state folder it cannot create, or a state file it cannot read, as apply.sim-state naming it', async () => {
    await writeFile(join(dir, 'afile'), 'x');
    const below = join(dir, 'afile', 'dc-a');
    const err = (await sim({ stateDir: below }).catch((e: unknown) => e)) as FleetError;
    expect(err).toBeInstanceOf(FleetError);
    expect(err.diagnostics[0]).toMatchObject({ code: 'apply.sim-state', file: below });
    expect(err.diagnostics[0].detail).toMatch(/^cannot create the state folder of the simulated data center dc-a: .*\(ENOTDIR\)\.$/);
    await mkdir(simStateFile(dir, 'dc-a'));
    const err2 = (await sim().catch((e: unknown) => e)) as FleetError;
    expect(err2).toBeInstanceOf(FleetError);
    expect(err2.diagnostics[0]).toMatchObject({ code: 'apply.sim-state', file: simStateFile(dir, 'dc-a') });
    expect(err2.diagnostics[0].detail).toBe('cannot read the state of the simulated data center dc-a: it is a folder, not a file (EISDIR).');
  });

  it('reports a corrupt state file as apply.sim-state', async () => {
    await writeFile(simStateFile(dir, 'dc-a'), '{ not json');
    const err = (await sim().catch((e: unknown) => e)) as FleetError;
    expect(err).toBeInstanceOf(FleetError);
    expect(err.diagnostics[0].code).toBe('apply.sim-state');
  });

  it('createVm is idempotent per VM id', async () => {
    const d = await sim();
    const i = input();
    const a = await d.createVm(creds(), i);
    const b = await d.createVm(creds(), i);
    expect(b.cloudId).toBe(a.cloudId);
    expect(await d.list(creds())).toHaveLength(1);
  });

  // The scoped token (protocol/scoped-token.ts): every mutating call's
  // credentials must be what the authority signed for this data center with
  // the key the sim was given; anything else is `credentials`, before the
  // call changes anything.
  const signed = (over: { dataCenter?: string; key?: KeyObject; expiresAt?: string; nonce?: string } = {}): ScopedCredentials => {
    const dataCenter = over.dataCenter ?? 'dc-a';
    const expiresAt = over.expiresAt ?? new Date(Date.now() + 60_000).toISOString();
    return { dataCenter, token: signScopedToken(over.key ?? KEY, dataCenter, expiresAt, over.nonce), expiresAt };
  };
  /** The token's parts changed by `f` (v1.<nonce>.<expiry>.<mac>). */
  const tamper = (c: ScopedCredentials, f: (p: string[]) => void): ScopedCredentials => {
    const p = c.token.split('.');
    f(p);
    return { ...c, token: p.join('.') };
  };
  const flip = (s: string) => (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
  const later = new Date(Date.now() + 3_600_000).toISOString();
  const credentialCases: { name: string; c: () => ScopedCredentials; want: RegExp | null }[] = [
    { name: 'signed for dc-a with its key', c: () => signed(), want: null },
    { name: 'signed with a nonce of our choosing', c: () => signed({ nonce: 'abc_-123' }), want: null },
    { name: 'missing token', c: () => ({ ...signed(), token: '' }), want: /carry no token/ },
    { name: 'a made-up token', c: () => ({ ...signed(), token: 't' }), want: /not a scoped token/ },
    { name: 'another version', c: () => tamper(signed(), (p) => (p[0] = 'v2')), want: /not a scoped token/ },
    { name: 'a part too many', c: () => ({ ...signed(), token: `${signed().token}.x` }), want: /not a scoped token/ },
    { name: 'expired', c: () => signed({ expiresAt: new Date(Date.now() - 1000).toISOString() }), want: /expired at/ },
    { name: 'another data center (its own key)', c: () => creds('dc-b'), want: /scoped to data center dc-b, not dc-a/ },
    { name: "dc-b's token relabelled dc-a", c: () => ({ ...creds('dc-b'), dataCenter: 'dc-a' }), want: /not signed by the authority for data center dc-a/ },
    { name: "signed for dc-a with dc-b's key", c: () => signed({ key: testCredentialKey('dc-b') }), want: /not signed by the authority/ },
    { name: 'signed with a key of another DMZ client token', c: () => signed({ key: credentialKey('some-other-token', 'dc-a') }), want: /not signed by the authority/ },
    { name: 'nonce tampered', c: () => tamper(signed(), (p) => (p[1] = flip(p[1]))), want: /not signed by the authority/ },
    { name: 'expiry in the token moved later', c: () => ({ ...tamper(signed(), (p) => (p[2] = String(Date.parse(later)))), expiresAt: later }), want: /not signed by the authority/ },
    { name: 'expiresAt moved later, token kept', c: () => ({ ...signed(), expiresAt: later }), want: /not the expiry their token was signed with/ },
    { name: 'mac tampered', c: () => tamper(signed(), (p) => (p[3] = flip(p[3]))), want: /not signed by the authority/ },
    { name: 'mac truncated', c: () => tamper(signed(), (p) => (p[3] = p[3].slice(0, 10))), want: /not signed by the authority/ },
    { name: 'mac missing', c: () => tamper(signed(), (p) => (p[3] = '')), want: /not a scoped token/ },
  ];

  it.each(credentialCases)('verifies the scoped token of createVm: $name', async ({ c, want }) => {
    const d = await sim();
    const creds = c();
    if (want === null) {
      await expect(d.createVm(creds, input())).resolves.toMatchObject({ status: 'present' });
      return;
    }
    const err = (await d.createVm(creds, input()).catch((e: unknown) => e)) as DriverError;
    expect(err).toMatchObject({ kind: 'credentials', transient: false });
    expect(err.message).toMatch(want);
    // The refusal names what is wrong, never the token's nonce or mac.
    for (const part of creds.token.split('.').filter((x) => x.length >= 8)) expect(err.message).not.toContain(part);
    expect(await d.list(READ)).toEqual([]);
    expect((await readSimState(dir, 'dc-a')).vms).toEqual([]);
  });

  // The MAC of a token is checked once (the sim remembers the tokens it verified); what else it covers, every time.
  it.each([
    { name: 'its expiresAt moved later', change: (c: ScopedCredentials) => ({ ...c, expiresAt: later }), afterMs: 0, want: /not the expiry their token was signed with/ },
    { name: 'scoped to another data center', change: (c: ScopedCredentials) => ({ ...c, dataCenter: 'dc-b' }), afterMs: 0, want: /scoped to data center dc-b, not dc-a/ },
    { name: 'expired since', change: (c: ScopedCredentials) => c, afterMs: 61_000, want: /expired at/ },
  ])('checks a token it verified before again at every call: $name', async ({ change, afterMs, want }) => {
    const d = await sim();
    const c = signed();
    await expect(d.createVm(c, input())).resolves.toMatchObject({ status: 'present' });
    if (afterMs > 0) vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + afterMs });
    try {
      await expect(d.createVm(change(c), input())).rejects.toMatchObject({ kind: 'credentials', message: expect.stringMatching(want) });
    } finally {
      vi.useRealTimers();
    }
    expect(await d.list(READ)).toHaveLength(1);
  });

  it('refuses every mutating call with forged credentials and changes nothing; reads take the read-only identity', async () => {
    const d = await sim({ bootMs: 0 });
    const vm = await d.createVm(creds(), input());
    const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
    await d.powerOn(creds(), ref);
    const before = await readSimState(dir, 'dc-a');
    const forged = signed({ key: credentialKey('stolen-guess', 'dc-a') });
    const calls: [string, () => Promise<unknown>][] = [
      ['createVm', () => d.createVm(forged, input())],
      ['powerOn', () => d.powerOn(forged, ref)],
      ['boot', () => d.boot(forged, ref, { bootToken: 'b' })],
      ['awaitReady', () => d.awaitReady(forged, ref, { timeoutMs: 10 })],
      ['shutdown', () => d.shutdown(forged, ref)],
      ['powerOff', () => d.powerOff(forged, ref)],
      ['resize', () => d.resize(forged, ref, { cpu: 2, memoryGiB: 2, diskGiB: 10 })],
      ['deleteVm', () => d.deleteVm(forged, ref)],
    ];
    for (const [name, call] of calls) {
      await expect(call(), name).rejects.toMatchObject({ kind: 'credentials', message: expect.stringContaining(`refuses ${name}`) });
    }
    expect(await readSimState(dir, 'dc-a')).toEqual(before);
    // Reads use the DMZ client's own read-only identity: no signed token needed, but still this data center and unexpired.
    expect(await d.get(READ, ref)).toMatchObject({ power: 'on', agent: 'none', status: 'present' });
    await expect(d.list({ ...READ, dataCenter: 'dc-b' })).rejects.toMatchObject({ kind: 'credentials' });
    await expect(d.list({ ...READ, expiresAt: new Date(Date.now() - 1).toISOString() })).rejects.toMatchObject({ kind: 'credentials' });
  });

  it('has finite capacity', async () => {
    const d = await sim({ capacity: { vms: 2, cpu: 3 } });
    await d.createVm(creds(), input({ cpu: 2 }));
    const err = (await d.createVm(creds(), input({ cpu: 2 })).catch((e: unknown) => e)) as DriverError;
    expect(err).toMatchObject({ kind: 'capacity', transient: false });
    expect(err.message).toContain('cpu 2 + 2 exceeds the capacity 3');
    await d.createVm(creds(), input({ cpu: 1 }));
    await expect(d.createVm(creds(), input({ cpu: 0 }))).rejects.toThrow('vms 2 + 1');
  });

  it('fails named calls, and fails a seeded share of calls the same way every run', async () => {
    const d = await sim({ failCalls: ['powerOn'] });
    const vm = await d.createVm(creds(), input());
    await expect(d.powerOn(creds(), { vmId: vm.vmId, cloudId: vm.cloudId })).rejects.toMatchObject({ kind: 'failed', transient: false });
    const outcomes = async (stateDir: string) => {
      const e = await createSimDriver({ dataCenter: 'dc-a', stateDir, latencyMs: 0, errorRate: 0.5, seed: 3, credentialKey: KEY });
      drivers.push(e);
      const out: string[] = [];
      for (let i = 0; i < 10; i++) out.push(await e.createVm(creds(), input()).then(() => 'ok', (x: DriverError) => x.kind));
      return out;
    };
    const first = await outcomes(join(dir, 'x'));
    expect(await outcomes(join(dir, 'y'))).toEqual(first);
    expect(first).toContain('transient');
    expect(first).toContain('ok');
  });

  it('a gate file lets its calls through, shared by the data centers naming it, and holds the next ones (before they act, or acted: only their answers) until it is removed', async () => {
    const gate = join(dir, 'gate.json');
    const b = testCredentialKey('dc-b');
    for (const acted of [false, true]) {
      await writeFile(gate, JSON.stringify({ calls: 2, ...(acted ? { acted } : {}) }));
      const a = await sim({ stateDir: join(dir, `a-${acted}`), gateFile: gate });
      const other = await sim({ dataCenter: 'dc-b', stateDir: join(dir, `b-${acted}`), credentialKey: b, gateFile: gate });
      const vm = await a.createVm(creds(), input());
      await other.createVm(creds('dc-b'), input());
      expect(JSON.parse(await readFile(gate, 'utf8'))).toEqual({ calls: 0, ...(acted ? { acted } : {}) });
      let answered = false;
      const held = a.powerOn(creds(), { vmId: vm.vmId, cloudId: vm.cloudId }).then((v) => ((answered = true), v));
      // Reads are never held. Acted: the power-on is carried out (on disk), its answer held; else not carried out.
      await vi.waitFor(async () => expect((await a.get(READ, { vmId: vm.vmId, cloudId: vm.cloudId }))?.power).toBe(acted ? 'on' : 'off'), { timeout: 5_000 });
      if (acted) await vi.waitFor(async () => expect((await readSimState(join(dir, `a-${acted}`), 'dc-a')).vms[0]?.power).toBe('on'), { timeout: 5_000 });
      expect(answered).toBe(false);
      await rm(gate);
      expect(await held).toMatchObject({ power: 'on' });
    }
    await writeFile(gate, 'three');
    const c = await sim({ stateDir: join(dir, 'c'), gateFile: gate });
    await expect(c.createVm(creds(), input())).rejects.toThrow(/the gate file .*gate.json \(sim.gateFile\) holds "three", not \{"calls": N\}/);
  });

  it('seededRandom is repeatable', () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    expect([a(), a(), a()]).toEqual([b(), b(), b()]);
  });

  describe('boot agent', () => {
    /** What the boot endpoint answers, in turn: a boot answer (200), or an error answer with its status. */
    let answers: ({ approved: boolean; reason: string; diskKey?: string } | { status: number; error: { code: string; message: string } })[];
    let seen: { bootToken: string }[];
    let close: () => Promise<void>;
    let bootUrl: string;
    beforeEach(async () => {
      answers = [];
      seen = [];
      const server = createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          seen.push(JSON.parse(body) as { bootToken: string });
          const a = answers.shift() ?? { approved: false, reason: 'no answer scripted' };
          res.writeHead('status' in a ? a.status : 200, { 'content-type': 'application/json' });
          res.end(JSON.stringify('status' in a ? { error: a.error } : a));
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      bootUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/boot`;
      close = () => new Promise<void>((r) => server.close(() => r()));
    });
    afterEach(async () => {
      await close();
    });

    async function booted(d: SimDriver, encryptedDisk: boolean, key = 'the-key', at = bootUrl) {
      d.attach({ bootUrl: at });
      const vm = await d.createVm(creds(), input({ encryptedDisk, diskKeyHash: sha256(key) }));
      const ref = { vmId: vm.vmId, cloudId: vm.cloudId };
      await d.powerOn(creds(), ref);
      await d.boot(creds(), ref, { bootToken: 'tok-1' });
      return ref;
    }

    it.each([
      { name: 'approved with the right key', answer: { approved: true, reason: 'ok', diskKey: 'the-key' }, state: 'Running', agent: 'ready', kind: undefined },
      { name: 'approved with a wrong key', answer: { approved: true, reason: 'ok', diskKey: 'wrong' }, state: 'BootFailed', agent: 'failed', kind: 'boot-failed' },
      { name: 'denied', answer: { approved: false, reason: 'unknown VM' }, state: 'Deleted', agent: 'failed', kind: 'boot-denied' },
    ])('$name -> $state', async ({ answer, state, agent, kind }) => {
      answers.push(answer);
      const d = await sim();
      const ref = await booted(d, true);
      const ready = d.awaitReady(creds(), ref, { timeoutMs: 5_000 });
      if (state === 'Running') await expect(ready).resolves.toMatchObject({ agent, observedState: state });
      else await expect(ready).rejects.toMatchObject({ kind });
      expect(seen[0].bootToken).toBe('tok-1');
      expect((await d.get(creds(), ref))?.observedState).toBe(state);
    });

    // An apply whose awaitReady gave up (failed, timed out, killed) leaves the agent asking; the next apply's data
    // center resumes it and it is denied (the record holds the member BootFailed). The sim terminated the VM then,
    // while that apply ran, whose powerOff failed on a VM gone: the way out took two applies. A real VM's agent
    // powers it off (agent.sh); only a waiting awaitReady terminates a denied VM (the aws and azure drivers).
    it('denied with no awaitReady waiting: the VM powers itself off and keeps its disk; the next apply powers it off and boots it again', async () => {
      answers.push({ approved: false, reason: 'VM db/0 is BootFailed, not booting' }, { approved: true, reason: 'ok', diskKey: 'the-key' });
      const d = await sim();
      const ref = await booted(d, true);
      await d.agentsIdle();
      await d.waitSettled(ref.cloudId);
      expect(await d.get(creds(), ref)).toMatchObject({ observedState: 'PoweredOff', agent: 'failed' });
      expect((await readSimState(dir, 'dc-a')).vms).toMatchObject([{ status: 'present', power: 'off', bootDenied: true }]);
      await expect(d.powerOff(creds(), ref)).resolves.toMatchObject({ observedState: 'PoweredOff' });
      await d.powerOn(creds(), ref);
      await d.boot(creds(), ref, { bootToken: 'tok-2' });
      await expect(d.awaitReady(creds(), ref, { timeoutMs: 5_000 })).resolves.toMatchObject({ agent: 'ready', observedState: 'Running' });
      expect(seen.map((x) => x.bootToken)).toEqual(['tok-1', 'tok-2']);
    });

    it('denied before its awaitReady began: that awaitReady terminates the VM (boot-denied), as the aws and azure drivers do on reading the report', async () => {
      answers.push({ approved: false, reason: 'the image is not the record\'s' });
      const d = await sim();
      const ref = await booted(d, true);
      await d.waitSettled(ref.cloudId);
      expect(await d.get(creds(), ref)).toMatchObject({ observedState: 'PoweredOff' });
      await expect(d.awaitReady(creds(), ref, { timeoutMs: 5_000 })).rejects.toMatchObject({ kind: 'boot-denied' });
      expect(await d.get(creds(), ref)).toMatchObject({ status: 'terminated', observedState: 'Deleted' });
    });

    // Fault injection for a denied VM left in the cloud (docs/recovery.md, BootFailed): forgeBootTokens has the agent
    // present a token of its own making (the authority denies it); with deleteVm faulted, awaitReady cannot terminate
    // the VM, which powers itself off and stays; the step is still boot-denied, saying so.
    it.each([
      { name: 'deleteVm in failCalls', faults: { failCalls: ['deleteVm'] }, why: 'deleteVm is configured to fail (failCalls)' },
      { name: 'deleteVm failWith credentials', faults: { failWith: { deleteVm: 'credentials' as const } }, why: 'deleteVm is configured to fail with credentials (failWith)' },
    ])('forgeBootTokens is denied; with $name awaitReady is boot-denied and the VM stays, powered off', async ({ faults, why }) => {
      answers.push({ approved: false, reason: 'the boot token is not one the authority issued' });
      const d = await sim({ forgeBootTokens: true });
      d.setFaults(faults);
      const ref = await booted(d, true);
      const err = await d.awaitReady(creds(), ref, { timeoutMs: 5_000 }).catch((e: DriverError) => e);
      expect(err).toMatchObject({ kind: 'boot-denied' });
      expect((err as DriverError).message).toContain(`it was not deleted yet (sim dc-a: ${why}); it powered itself off, and the next apply`);
      expect(seen[0].bootToken).toMatch(/^forged-/);
      expect(await d.get(creds(), ref)).toMatchObject({ status: 'present', observedState: 'PoweredOff', agent: 'failed' });
      // Healed, the next apply's deleteVm terminates it.
      d.setFaults({});
      await d.deleteVm(creds(), ref);
      expect(await d.get(creds(), ref)).toMatchObject({ status: 'terminated' });
    });

    it('forgeBootTokens without a deleteVm fault: the denied VM is terminated', async () => {
      answers.push({ approved: false, reason: 'the boot token is not one the authority issued' });
      const d = await sim({ forgeBootTokens: true });
      const ref = await booted(d, true);
      await expect(d.awaitReady(creds(), ref, { timeoutMs: 5_000 })).rejects.toMatchObject({ kind: 'boot-denied' });
      expect(await d.get(creds(), ref)).toMatchObject({ status: 'terminated', observedState: 'Deleted' });
    });

    // The boot endpoint's limit (boot-rate-limited, 429) and a 408 or 5xx are lost answers, asked again as the boot
    // agent asks them (agent.sh): a 429 was read as a denial, and the VM terminated.
    it.each([
      { name: 'a 429 (the boot endpoint\'s limit)', status: 429, code: 'boot-rate-limited' },
      { name: 'a 408', status: 408, code: 'bad-request' },
      { name: 'a 503', status: 503, code: 'authority-unreachable' },
    ])('$name, then an approval: asked again, the VM boots', async ({ status, code }) => {
      answers.push({ status, error: { code, message: 'refused until later' } }, { approved: true, reason: 'ok', diskKey: 'the-key' });
      const d = await sim();
      const ref = await booted(d, true);
      await expect(d.awaitReady(creds(), ref, { timeoutMs: 5_000 })).resolves.toMatchObject({ agent: 'ready', observedState: 'Running' });
      expect(seen.map((s) => s.bootToken)).toEqual(['tok-1', 'tok-1']);
    });

    describe('a 429 with Retry-After (the boot endpoint\'s limit, its window)', () => {
      // The endpoint refuses (429) until its window ends, limitMs after the first request, saying so in Retry-After.
      // Before: the agent asked again after 10, 20, 40 and 80 ms, inside the window every time, and failed the boot
      // (five 429s in 150 ms). The outcome is read from the requests made, not from how long anything took.
      async function limited(limitMs: number, retryAfter: string): Promise<{ url: string; statuses: number[]; close: () => Promise<void> }> {
        let until: number | undefined;
        const statuses: number[] = [];
        const server = createServer((req, res) => {
          req.resume();
          req.on('end', () => {
            until ??= Date.now() + limitMs;
            const refused = Date.now() < until;
            statuses.push(refused ? 429 : 200);
            res.writeHead(refused ? 429 : 200, { 'content-type': 'application/json', ...(refused ? { 'retry-after': retryAfter } : {}) });
            res.end(JSON.stringify(refused ? { error: { code: 'boot-rate-limited', message: 'too many denials' } } : { approved: true, reason: 'ok' }));
          });
        });
        await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
        return {
          url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/boot`,
          statuses,
          close: () => new Promise<void>((r) => server.close(() => r())),
        };
      }

      it('waits it out and asks once more: the VM boots', async () => {
        const ep = await limited(300, '0.4');
        try {
          const d = await sim();
          const ref = await booted(d, false, 'the-key', ep.url);
          await expect(d.awaitReady(creds(), ref, { timeoutMs: 10_000 })).resolves.toMatchObject({ agent: 'ready', observedState: 'Running' });
          expect(ep.statuses).toEqual([429, 200]);
        } finally {
          await ep.close();
        }
      });

      it('within its retry budget: a Retry-After past it fails the boot once the budget is spent, not after an hour', async () => {
        const ep = await limited(3_600_000, '3600');
        try {
          const d = await sim({ bootRetryBudgetMs: 500 });
          const ref = await booted(d, false, 'the-key', ep.url);
          await expect(d.awaitReady(creds(), ref, { timeoutMs: 10_000 })).rejects.toMatchObject({
            kind: 'boot-failed',
            message: expect.stringMatching(/boot endpoint unreachable after 2 attempts( over \d+ s)?: boot endpoint answered 429/),
          });
          expect(ep.statuses).toEqual([429, 429]);
        } finally {
          await ep.close();
        }
      });

      // The DMZ client waits readyTimeoutMs for a boot (60 s for a sim by default). The sim's agents could pause 60 s
      // in all besides their tries, as long as the wait: behind a long limit, awaitReady timed out (`timeout`) while the
      // agent still asked, and a boot approved after that left the VM running. Now they ask within the boot agent's
      // window of that wait (agentWindowSeconds: here 3 s of 6), and the boot fails inside the wait, for its reason.
      it('within the boot window of the DMZ client\'s wait: the boot fails with the agent\'s reason before awaitReady times out', async () => {
        const ep = await limited(3_600_000, '3600');
        try {
          const d = await sim({ readyTimeoutMs: 6_000 });
          const ref = await booted(d, false, 'the-key', ep.url);
          await expect(d.awaitReady(creds(), ref)).rejects.toMatchObject({
            kind: 'boot-failed',
            message: expect.stringMatching(/boot endpoint unreachable after 2 attempts over \d+ s: boot endpoint answered 429/),
          });
          expect(ep.statuses).toEqual([429, 429]);
        } finally {
          await ep.close();
        }
      });
    });

    it.each([
      { name: 'the default wait', o: {}, want: agentWindowSeconds(SIM_READY_TIMEOUT_MS) * 1000 },
      { name: 'a DMZ client waiting 300 s', o: { readyTimeoutMs: 300_000 }, want: 180_000 },
      { name: 'bootRetryBudgetMs set', o: { readyTimeoutMs: 300_000, bootRetryBudgetMs: 50 }, want: 50 },
    ])('the agents\' boot window fits inside the DMZ client\'s wait: $name, $want ms', ({ o, want }) => {
      expect(simBootWindowMs(o)).toBe(want);
      expect(want).toBeLessThan(o.readyTimeoutMs ?? SIM_READY_TIMEOUT_MS);
    });

    it('a boot endpoint answering 503 for a while (its authority restarting): asked again as the boot agent does, up to 12 times, and the VM boots', async () => {
      // Before: 5 tries 10-80 ms apart, 150 ms in all: a DMZ client whose authority restarted (a second or two) answered
      // 503 to every one, and the VM failed its boot while the apply rode the restart out (test/crash.e2e.test.ts, the
      // authority killed after step 9). Judged by the requests made: six 503s, then the approval.
      const statuses: number[] = [];
      const server = createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          const down = statuses.length < 6;
          statuses.push(down ? 503 : 200);
          res.writeHead(down ? 503 : 200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(down ? { error: { code: 'authority-unreachable', message: 'the authority did not answer' } } : { approved: true, reason: 'ok' }));
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const d = await sim();
        const ref = await booted(d, false, 'the-key', `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/boot`);
        await expect(d.awaitReady(creds(), ref, { timeoutMs: 20_000 })).resolves.toMatchObject({ agent: 'ready', observedState: 'Running' });
        expect(statuses).toEqual([503, 503, 503, 503, 503, 503, 200]);
      } finally {
        await new Promise<void>((r) => server.close(() => r()));
      }
    });

    it('a retried boot supersedes the agent of the first one', async () => {
      answers.push({ approved: true, reason: 'ok' });
      const d = await sim({ bootMs: 30 });
      const ref = await booted(d, false);
      await d.boot(creds(), ref, { bootToken: 'tok-2' });
      await expect(d.awaitReady(creds(), ref, { timeoutMs: 5_000 })).resolves.toMatchObject({ agent: 'ready' });
      expect(seen.map((s) => s.bootToken)).toEqual(['tok-2']);
    });

    it('an older agent whose call is on its way when a newer boot takes over does not act on its denial (the VM lives)', async () => {
      // The boot endpoint holds the first agent's call until the VM was booted again, then denies that older token.
      let release = () => {};
      const held = new Promise<void>((r) => (release = r));
      let answeredOld = () => {};
      const oldAnswered = new Promise<void>((r) => (answeredOld = r));
      const tokens: string[] = [];
      const server = createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', async () => {
          const { bootToken } = JSON.parse(body) as { bootToken: string };
          tokens.push(bootToken);
          if (bootToken === 'tok-1') await held;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(bootToken === 'tok-1' ? { approved: false, reason: 'the boot token is not valid for this VM or was used already' } : { approved: true, reason: 'ok' }));
          if (bootToken === 'tok-1') answeredOld();
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const d = await sim({ bootMs: 1 });
        const ref = await booted(d, false, 'the-key', `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/boot`);
        while (!tokens.includes('tok-1')) await new Promise((r) => setTimeout(r, 5));
        await d.boot(creds(), ref, { bootToken: 'tok-2' });
        await expect(d.awaitReady(creds(), ref, { timeoutMs: 5_000 })).resolves.toMatchObject({ agent: 'ready' });
        release();
        // The old agent's denial arrives now; once the sim has written what it made of it (compact waits for the writes in flight), the VM is still present and ready.
        await oldAnswered;
        await d.waitSettled(ref.cloudId);
        await d.compact();
        expect((await readSimState(dir, 'dc-a')).vms).toMatchObject([{ status: 'present', agent: 'ready' }]);
        expect(await d.get(creds(), ref)).toMatchObject({ status: 'present', agent: 'ready', observedState: 'Running' });
      } finally {
        release();
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      }
    });

    it.each([
      { name: 'denied, after its VM was powered off and on again', answer: { approved: false, reason: 'VM web/0 is PoweredOff, not booting' }, cycle: ['powerOff', 'powerOn'] as const },
      { name: 'approved, after its VM was powered off', answer: { approved: true, reason: 'ok' }, cycle: ['powerOff'] as const },
      { name: 'denied, after its VM was shut down', answer: { approved: false, reason: 'not booting' }, cycle: ['shutdown'] as const },
    ])('an agent whose call is on its way does not act on its answer once its boot was ended: $name', async ({ answer, cycle }) => {
      // The boot endpoint holds the agent's call until the VM's power changed, then answers it.
      let release = () => {};
      const held = new Promise<void>((r) => (release = r));
      let asked = () => {};
      const calling = new Promise<void>((r) => (asked = r));
      let answered = () => {};
      const told = new Promise<void>((r) => (answered = r));
      const server = createServer((req, res) => {
        req.resume();
        req.on('end', async () => {
          asked();
          await held;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(answer));
          answered();
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const d = await sim({ bootMs: 1 });
        const ref = await booted(d, false, 'the-key', `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/boot`);
        await calling;
        for (const call of cycle) await d[call](creds(), ref);
        const before = await d.get(creds(), ref);
        release();
        await told;
        await d.agentsIdle();
        expect(await d.get(creds(), ref)).toEqual(before);
        expect(before).toMatchObject({ status: 'present' });
        expect(before?.agent).not.toBe('ready');
      } finally {
        release();
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      }
    });

    it('a boot cut short by a restart of its data center resumes with the same token once the endpoint is known again', async () => {
      answers.push({ approved: true, reason: 'ok', diskKey: 'the-key' });
      // A boot that will not get to ask before the process "dies".
      const d = await sim({ bootMs: 60_000 });
      const ref = await booted(d, true);
      await d.close();
      drivers.splice(drivers.indexOf(d), 1);
      expect(seen).toEqual([]);
      expect((await readSimState(dir, 'dc-a')).vms).toMatchObject([{ agent: 'booting', bootToken: 'tok-1' }]);

      const again = await sim({ bootMs: 1 });
      // Without the endpoint nothing happens; attach resumes the agent.
      expect((await again.get(creds(), ref))?.agent).toBe('booting');
      again.attach({ bootUrl });
      await expect(again.awaitReady(creds(), ref, { timeoutMs: 5_000 })).resolves.toMatchObject({ agent: 'ready', observedState: 'Running' });
      expect(seen.map((x) => x.bootToken)).toEqual(['tok-1']);
      // Settled: the token is gone from the data center's state.
      await again.close();
      drivers.splice(drivers.indexOf(again), 1);
      expect((await readSimState(dir, 'dc-a')).vms[0].bootToken).toBeNull();
    });

    // An in-guest reboot (a kernel update's, `shutdown -r now`) runs the agent again with the token of the last boot:
    // the sim had no such hook, and its agent terminated every denied VM, a running VM's reboot included.
    it('an in-guest reboot asks again with the last boot\'s token; denied, the VM powers itself off and stays (disk and cloud id kept)', async () => {
      answers.push({ approved: true, reason: 'ok', diskKey: 'the-key' }, { approved: false, reason: 'VM web/0 is Running, not booting' });
      const d = await sim();
      const ref = await booted(d, true);
      await d.awaitReady(creds(), ref, { timeoutMs: 5_000 });
      expect((await d.rebootFromInside(ref.cloudId)).observedState).toBe('Starting');
      const after = await d.waitSettled(ref.cloudId);
      expect(after).toMatchObject({ cloudId: ref.cloudId, status: 'present', power: 'off', agent: 'failed', observedState: 'PoweredOff' });
      expect(seen.map((x) => x.bootToken)).toEqual(['tok-1', 'tok-1']);
      const [vm] = (await readSimState(dir, 'dc-a')).vms;
      expect(vm).toMatchObject({ status: 'present', diskUnlocked: false, agentDetail: 'boot denied: VM web/0 is Running, not booting', bootToken: null, guestBoot: false });
      // The next boot edge boots it again with its new token, in place.
      answers.push({ approved: true, reason: 'ok', diskKey: 'the-key' });
      await d.powerOn(creds(), ref);
      await d.boot(creds(), ref, { bootToken: 'tok-2' });
      await expect(d.awaitReady(creds(), ref, { timeoutMs: 5_000 })).resolves.toMatchObject({ cloudId: ref.cloudId, observedState: 'Running' });
      expect(seen.map((x) => x.bootToken)).toEqual(['tok-1', 'tok-1', 'tok-2']);
    });

    it('an in-guest reboot cut short by a restart of its data center resumes as an in-guest boot (a denial powers off)', async () => {
      answers.push({ approved: true, reason: 'ok' });
      const d = await sim({ bootMs: 1 });
      const ref = await booted(d, false);
      await d.awaitReady(creds(), ref, { timeoutMs: 5_000 });
      await d.close();
      drivers.splice(drivers.indexOf(d), 1);
      const slow = await sim({ bootMs: 60_000 });
      await slow.rebootFromInside(ref.cloudId);
      await slow.close();
      drivers.splice(drivers.indexOf(slow), 1);
      answers.push({ approved: false, reason: 'used already' });
      const again = await sim({ bootMs: 1 });
      again.attach({ bootUrl });
      expect(await again.waitSettled(ref.cloudId)).toMatchObject({ status: 'present', observedState: 'PoweredOff' });
    });

    it('an in-guest power-off leaves the VM present and powered off; a VM never booted reboots into PoweredOn (no token, nothing to ask)', async () => {
      const d = await sim();
      d.attach({ bootUrl });
      const vm = await d.createVm(creds(), input({ encryptedDisk: false }));
      await d.powerOn(creds(), vm);
      expect((await d.rebootFromInside(vm.cloudId)).observedState).toBe('PoweredOn');
      expect(await d.powerOffFromInside(vm.cloudId)).toMatchObject({ status: 'present', observedState: 'PoweredOff' });
      await expect(d.rebootFromInside(vm.cloudId)).rejects.toMatchObject({ kind: 'invalid-state' });
      expect(seen).toEqual([]);
    });

    it('rogue VMs are terminated when the boot endpoint denies them', async () => {
      answers.push({ approved: false, reason: 'no VM in the record' });
      const d = await sim();
      d.attach({ bootUrl });
      const rogue = await d.injectRogueVm({ image: 'img-1' });
      expect(await d.waitSettled(rogue.cloudId)).toMatchObject({ status: 'terminated' });
      expect((await readSimState(dir, 'dc-a')).vms).toMatchObject([{ rogue: true, status: 'terminated' }]);
    });
  });
});

// testdata/pre-fleet-tag: the state files of a simulated data center written before the sim kept a VM's address (its
// fleet tag) or the token in its user data (snapshot seq 1, one log line after it): two VMs of a stack `e2e`, named
// e2e-web-1 and e2e-web-2 by the version that made them, the second powered off since (the log line).
describe('a state file of an older sim, before the address', () => {
  it('loads; its VMs name no fleet or member (the name is not read for one: fleet import treats them as untagged), and act as before', async () => {
    await cp(fileURLToPath(new URL('./testdata/pre-fleet-tag', import.meta.url)), dir, { recursive: true });
    const d = await sim({ dataCenter: 'miami', credentialKey: testCredentialKey('miami') });
    const read = { ...READ, dataCenter: 'miami' };
    const vms = await d.list(read);
    expect(vms.map((v) => [v.cloudId, v.name, v.observedState, v.agent, 'fleet' in v, 'address' in v])).toEqual([
      ['sim-miami-0ld00001', 'e2e-web-1', 'Running', 'ready', false, false],
      ['sim-miami-0ld00002', 'e2e-web-2', 'PoweredOff', 'none', false, false],
    ]);
    expect(await d.get(read, { vmId: '6f0d3c2e-1b7a-4e59-9c1d-0a1b2c3d4e02', cloudId: null })).toMatchObject({ cloudId: 'sim-miami-0ld00002', observedState: 'PoweredOff' });
    // Never booted by this sim (no token in its user data): a reboot inside its guest leaves it powered on, not booting.
    expect((await d.rebootFromInside('sim-miami-0ld00001')).observedState).toBe('PoweredOn');
    expect((await d.powerOn(signedCredentials('miami'), { vmId: '6f0d3c2e-1b7a-4e59-9c1d-0a1b2c3d4e02', cloudId: 'sim-miami-0ld00002' })).observedState).toBe('PoweredOn');
    await d.close();
    drivers.splice(drivers.indexOf(d), 1);
    // Written back in today's format (compacted on close), and read again as it was left.
    const again = await sim({ dataCenter: 'miami', credentialKey: testCredentialKey('miami') });
    expect((await again.list(read)).map((v) => [v.cloudId, v.observedState])).toEqual([
      ['sim-miami-0ld00001', 'PoweredOn'],
      ['sim-miami-0ld00002', 'PoweredOn'],
    ]);
  });
});
