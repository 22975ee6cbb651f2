// The CLI's hop to a deployed DMZ client over HTTPS with mutual TLS, as
// stack.yaml declares it (`auth.clientCert`: certFile, keyFile, caFile,
// relative to stack.yaml), and the CLI's tokens per data center
// (`auth.tokenEnv`, else FLEET_CLI_TOKEN_<DC>). The real CLI in-process, a
// real DMZ client serving HTTPS that requires client certificates of a
// throwaway CA (engine/transport/testing.ts), real handshakes.
//
// What each case proves:
// - mTLS with the CA's client certificate works (refresh lists the data
//   center; with a PostgreSQL record shared with the authority, an apply
//   carries a VM to Running through it);
// - a client certificate of another CA, or none, is refused by the DMZ client
//   (on every route but its boot endpoint's);
// - a DMZ client certificate of a CA the stack does not name is refused by the CLI;
// - an expired client certificate, or a client certificate for an http://
//   address, fails the command before any request, naming stack.yaml;
// - a missing token is a diagnostic before the apply starts: no member is
//   attempted, nothing reaches the DMZ client or the record's plans.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthority, type RunningService } from '../engine/authority/server.ts';
import { credentialKey } from '../protocol/index.ts';
import { openRecord } from '../engine/record/index.ts';
import { appliedPlans, createTestDatabase, testPostgresUrl } from '../engine/record/testing.ts';
import type { FleetRecord } from '../engine/record/types.ts';
import { TestCa, EXPIRED } from '../engine/transport/testing.ts';
import { connectProvider } from '../providers/provider.ts';
import { createSimDriver, type SimDriver } from '../providers/drivers/sim/index.ts';
import { startDmzClient, type RunningDmzClient } from '../providers/dmz-client/server.ts';
import { defaultPack } from '../providers/testing.ts';
import { runCli } from './helpers/cli.ts';
import { REPO, fleetYaml } from './helpers/stack.ts';

const ca = new TestCa();
const rogue = new TestCa('rogue CA');
const pems = {
  'ca.pem': ca.cert,
  'rogue-ca.pem': rogue.cert,
  ...pair('cli', ca.issue({ cn: 'fleet cli', client: true })),
  ...pair('rogue-cli', rogue.issue({ cn: 'intruder', client: true })),
  ...pair('old-cli', ca.issue({ cn: 'old cli', client: true, ...EXPIRED })),
};
function pair(name: string, p: { cert: string; key: string }): Record<string, string> {
  return { [`${name}.pem`]: p.cert, [`${name}-key.pem`]: p.key };
}

const CLI_TOKEN = 'cli-token-miami';

/** stack.yaml with one data center at `address`, its auth block as given (YAML flow text). */
function stackYaml(o: { address: string; record: string; auth?: string }): string {
  return `apiVersion: fleet/v1
kind: Stack
metadata: { name: mtls }
spec:
  specs: ["specs/*.yaml"]
  record: ${o.record}
  policyPack:
    path: ${join(REPO, 'policies', 'default')}
    config:
      max-disruption: { enforcement: disabled }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - name: miami
      address: ${o.address}
      location: { lat: 25.7617, lon: -80.1918 }
      hardware: [general]
      capacity: { vms: 50, cpu: 400, memoryGiB: 1600 }
${o.auth ? `      auth: ${o.auth}\n` : ''}`;
}

const certs = (cert: string, ca = 'ca') => `{ clientCert: { certFile: certs/${cert}.pem, keyFile: certs/${cert}-key.pem, caFile: certs/${ca}.pem } }`;

interface Json {
  checked?: number;
  drift?: unknown[];
  diagnostics: { code: string; detail: string; file?: string }[];
}

describe('the CLI reaches a DMZ client over mutual TLS', () => {
  let dir: string;
  let record: FleetRecord;
  let authority: RunningService;
  let driver: SimDriver;
  let dmz: RunningDmzClient;
  /** Requests the DMZ client's routes answered (a refused handshake never gets one). */
  const answered = async () => JSON.stringify((await dmz.metrics.requests.get()).values);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fleet-mtls-'));
    await mkdir(join(dir, 'certs'));
    await mkdir(join(dir, 'specs'));
    for (const [name, text] of Object.entries(pems)) await writeFile(join(dir, 'certs', name), text, { mode: 0o600 });
    await writeFile(join(dir, 'specs', 'web.yaml'), fleetYaml('web', { count: 1, encryptedDisk: false }));
    // The CLI's own record (pglite://.fleet/record): fleet refresh reads one, it makes none.
    await (await openRecord(`pglite://${join(dir, '.fleet', 'record')}`)).close();
    record = await openRecord('memory://');
    const pack = await defaultPack();
    authority = await startAuthority({ record, pack, stackName: 'mtls', dataCenters: [{ name: 'miami', token: 'dmz-token' }] });
    driver = await createSimDriver({ dataCenter: 'miami', stateDir: join(dir, 'sim'), latencyMs: 1, bootMs: 1, credentialKey: credentialKey('dmz-token', 'miami') });
    dmz = await startDmzClient({
      dataCenter: 'miami',
      driver,
      authorityUrl: authority.url,
      authorityToken: 'dmz-token',
      clientToken: CLI_TOKEN,
      stateDir: join(dir, 'dmz'),
      pack,
      tls: { ...ca.issue({ cn: 'dmz.miami' }), ca: ca.cert, requestCert: true, rejectUnauthorized: true },
    });
    expect(dmz.url).toMatch(/^https:\/\/127\.0\.0\.1:/);
  });
  afterAll(async () => {
    await dmz?.close();
    await driver?.close();
    await authority?.close();
    await record?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** `fleet refresh --check --format json` with this auth block, the token in FLEET_CLI_TOKEN_MIAMI (the default variable). */
  async function refresh(auth: string | undefined, address = dmz.url): Promise<{ code: number; json: Json }> {
    await writeFile(join(dir, 'stack.yaml'), stackYaml({ address, record: 'pglite://.fleet/record', ...(auth ? { auth } : {}) }));
    // A refused certificate is never retried; a TLS 1.3 refusal that arrives as a connection reset is
    // (it looks like a restart), so the retries are bounded here instead of the default 60 s.
    const r = await runCli(['refresh', '--check', '--format', 'json', '--stack', dir], { cwd: REPO, env: { FLEET_CLI_TOKEN_MIAMI: CLI_TOKEN, FLEET_RETRY_BUDGET_MS: '1000' } });
    return { code: r.code, json: JSON.parse(r.stdout) as Json };
  }

  it('works with a client certificate of the CA the DMZ client requires, and the token from FLEET_CLI_TOKEN_<DC>', async () => {
    const r = await refresh(certs('cli'));
    expect(r.json.diagnostics).toEqual([]);
    expect(r).toMatchObject({ code: 0, json: { checked: 0, drift: [] } });
  });

  it('is refused by the DMZ client with a client certificate of another CA', async () => {
    const r = await refresh(certs('rogue-cli'));
    expect(r.code).toBe(1);
    // TLS 1.3: the refusal reaches the caller as the alert or as a reset, depending on timing.
    expect(r.json.diagnostics.map((d) => d.code)).toEqual(['apply.dmz-unreachable']);
  });

  it('refuses a DMZ client whose certificate another CA signed (caFile names the wrong CA)', async () => {
    const r = await refresh(certs('cli', 'rogue-ca'));
    expect(r.code).toBe(1);
    expect(r.json.diagnostics.map((d) => d.code)).toEqual(['apply.dmz-unreachable']);
    expect(r.json.diagnostics[0].detail).toContain('TLS certificate is not trusted');
  });

  it('without any TLS settings, does not trust the DMZ client (system CAs only)', async () => {
    const r = await refresh(undefined);
    expect(r.code, JSON.stringify(r.json)).toBe(1);
    expect(r.json.diagnostics.map((d) => d.code)).toEqual(['apply.dmz-unreachable']);
    expect(r.json.diagnostics[0].detail).toMatch(/certificate/i);
  });

  it('is refused by the DMZ client without a client certificate', async () => {
    const provider = connectProvider({
      dataCenter: 'miami',
      url: dmz.url,
      token: () => CLI_TOKEN,
      lifecycle: (await defaultPack()).lifecycle,
      tls: { ca: ca.cert },
      timeoutMs: 5_000,
    });
    // Refused per route (the boot endpoint on the same listener takes no certificate), reported as a refused handshake is.
    await expect(provider.listVms()).rejects.toMatchObject({ diagnostics: [{ code: 'apply.dmz-unreachable', detail: expect.stringContaining('no client certificate was presented') }] });
  });

  it('fails before any request with an expired client certificate, naming the setting in stack.yaml', async () => {
    const before = await answered();
    const r = await refresh(certs('old-cli'));
    expect(r.code).toBe(1);
    expect(r.json.diagnostics).toMatchObject([{ code: 'tls.certificate-expired', file: join(dir, 'stack.yaml') }]);
    expect(r.json.diagnostics[0].detail).toContain('dataCenters[0].auth.clientCert.certFile');
    expect(await answered()).toBe(before);
  });

  it('refuses a client certificate for a plain http:// address', async () => {
    const r = await refresh(certs('cli'), dmz.url.replace('https:', 'http:'));
    expect(r.code).toBe(1);
    expect(r.json.diagnostics.map((d) => d.code)).toEqual(['tls.plain-address']);
  });

  it('fleet apply without the data center\'s token stops before any member, naming the variable', async () => {
    await writeFile(join(dir, 'stack.yaml'), stackYaml({ address: dmz.url, record: 'pglite://.fleet/record', auth: certs('cli') }));
    const before = await answered();
    const r = await runCli(['apply', '--yes', '--format', 'json', '--stack', dir], { cwd: REPO, env: { FLEET_CLI_TOKEN_MIAMI: '' } });
    expect(r.code).toBe(1);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; code?: string; detail?: string });
    expect(events.filter((e) => e.type === 'diagnostic').map((e) => e.code)).toEqual(['apply.token-missing']);
    expect(events.find((e) => e.type === 'diagnostic')?.detail).toContain('FLEET_CLI_TOKEN_MIAMI');
    expect(events.some((e) => e.type === 'start' || e.type === 'step')).toBe(false);
    expect(await answered()).toBe(before);
    const rec = await openRecord(`pglite://${join(dir, '.fleet', 'record')}`);
    try {
      expect(await appliedPlans(rec, 'mtls')).toEqual([]);
      expect(await rec.listVms('mtls')).toEqual([]);
    } finally {
      await rec.close();
    }
  });

  // The CLI and the authority share the record in a deployment: PostgreSQL (PGlite is one process's).
  // Running: the VM's agent boots through the same listener without a client certificate (its boot token proves it).
  it.skipIf(!testPostgresUrl())('fleet apply carries a VM to Running through the mTLS hop (PostgreSQL record)', async () => {
    const db = await createTestDatabase(testPostgresUrl()!);
    const shared = await openRecord(db.url);
    const pack = await defaultPack();
    const auth = await startAuthority({ record: shared, pack, stackName: 'mtls', dataCenters: [{ name: 'miami', token: 'dmz-token-2' }] });
    const simDriver = await createSimDriver({ dataCenter: 'miami', stateDir: join(dir, 'sim-pg'), latencyMs: 1, bootMs: 1, credentialKey: credentialKey('dmz-token-2', 'miami') });
    const client = await startDmzClient({
      dataCenter: 'miami',
      driver: simDriver,
      authorityUrl: auth.url,
      authorityToken: 'dmz-token-2',
      clientToken: CLI_TOKEN,
      stateDir: join(dir, 'dmz-pg'),
      pack,
      tls: { ...ca.issue({ cn: 'dmz.miami' }), ca: ca.cert, requestCert: true, rejectUnauthorized: true },
      bootCa: ca.cert,
    });
    try {
      await writeFile(join(dir, 'specs', 'web.yaml'), fleetYaml('web', { count: 1, state: 'Running', encryptedDisk: true }));
      await writeFile(join(dir, 'stack.yaml'), stackYaml({ address: client.url, record: db.url, auth: `{ tokenEnv: MIAMI_TOKEN, ${certs('cli').slice(2)}` }));
      const r = await runCli(['apply', '--yes', '--stack', dir], { cwd: REPO, env: { MIAMI_TOKEN: CLI_TOKEN } });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('Apply complete: 1 VM changed, 0 failed');
      expect((await shared.listVms('mtls')).map((v) => [v.address, v.state])).toEqual([['web/0', 'Running']]);
    } finally {
      await client.close();
      await simDriver.close();
      await auth.close();
      await shared.close();
      await db.drop();
    }
  });
});
