// Both hops over mTLS: a caller -> DMZ client (HTTPS, client certificate
// required) -> authority (HTTPS, client certificate required), with
// certificates a throwaway CA issues at test time. A create goes through
// both; a caller without a certificate, or a DMZ client that does not trust
// the authority's CA, gets nothing done.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentialKey } from '../../protocol/index.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthority, type RunningService } from '../../engine/authority/server.ts';
import { openRecord } from '../../engine/record/index.ts';
import type { FleetRecord } from '../../engine/record/types.ts';
import type { ClientTls, ServerTls } from '../../engine/transport/index.ts';
import { TestCa } from '../../engine/transport/testing.ts';
import { createSimDriver, type SimDriver } from '../drivers/sim/index.ts';
import { postJson, send, sendTarget } from '../http-send.ts';
import { createRequest, defaultPack, newVm } from '../testing.ts';
import { startDmzClient, type RunningDmzClient } from './server.ts';

const ca = new TestCa();
const rogueCa = new TestCa('rogue');
const serverTls = (cn: string): ServerTls => ({ ...ca.issue({ cn }), ca: ca.cert, requestCert: true, rejectUnauthorized: true });
const cli = ca.issue({ cn: 'fleet cli', client: true });
const dmzCert = ca.issue({ cn: 'dmz miami', client: true });
const asCli: ClientTls = { ca: ca.cert, cert: cli.cert, key: cli.key };

let record: FleetRecord;
let authority: RunningService;
let dir: string;
let driver: SimDriver;
let dmz: RunningDmzClient;

beforeAll(async () => {
  record = await openRecord('memory://');
  const pack = await defaultPack();
  authority = await startAuthority({ record, pack, stackName: 'tls', dataCenters: [{ name: 'miami', token: 'auth-tok' }], tls: serverTls('authority') });
  dir = await mkdtemp(join(tmpdir(), 'dmz-tls-'));
  driver = await createSimDriver({ dataCenter: 'miami', stateDir: join(dir, 'sim'), latencyMs: 1, credentialKey: credentialKey('auth-tok', 'miami') });
  dmz = await startDmzClient({
    dataCenter: 'miami',
    driver,
    authorityUrl: authority.url,
    authorityToken: 'auth-tok',
    authorityTls: { ca: ca.cert, cert: dmzCert.cert, key: dmzCert.key },
    clientToken: 'cli-tok',
    stateDir: join(dir, 'dmz'),
    pack,
    tls: serverTls('dmz'),
  });
});
afterAll(async () => {
  await dmz.close();
  await driver.close();
  await authority.close();
  await record.close();
  await rm(dir, { recursive: true, force: true });
});

describe('DMZ client and authority over mTLS', () => {
  it('carries a create through both hops, and is ready while the authority answers', async () => {
    expect(dmz.url).toMatch(/^https:/);
    const ready = await send(sendTarget(new URL(`${dmz.url}/readyz`), asCli), 'GET', {}, undefined, 5_000);
    expect([ready.status, JSON.parse(ready.text)]).toEqual([200, { ready: true, checks: { authority: 'ok' } }]);

    const vm = newVm('tls');
    const res = await postJson(sendTarget(new URL(`${dmz.url}/v1/vms`), asCli), createRequest(vm), 10_000, { authorization: 'Bearer cli-tok' });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toMatchObject({ outcome: 'ok', vm: { id: vm.id, state: 'Requested' } });
    expect(await record.getVm(vm.id)).toMatchObject({ state: 'Requested', dataCenter: 'miami' });
  });

  it('refuses a caller without a client certificate', async () => {
    await expect(send(sendTarget(new URL(`${dmz.url}/v1/health`), { ca: ca.cert }), 'GET', {}, undefined, 5_000)).rejects.toThrow();
  });

  it("a DMZ client that does not trust the authority's certificate is not ready and gets nothing approved", async () => {
    const other = await startDmzClient({
      dataCenter: 'miami',
      driver,
      authorityUrl: authority.url,
      authorityToken: 'auth-tok',
      authorityTls: { ca: rogueCa.cert, cert: dmzCert.cert, key: dmzCert.key },
      clientToken: 'cli-tok',
      stateDir: join(dir, 'dmz-2'),
      authorityTimeoutMs: 2_000,
    });
    try {
      const ready = await send(sendTarget(new URL(`${other.url}/readyz`)), 'GET', {}, undefined, 5_000);
      expect(ready.status).toBe(503);
      expect(JSON.parse(ready.text).checks.authority).toMatch(/self[- ]signed|certificate/i);
      const vm = newVm('tls', { index: 5 });
      const res = await postJson(sendTarget(new URL(`${other.url}/v1/vms`)), createRequest(vm), 20_000, { authorization: 'Bearer cli-tok' });
      expect(res.status).toBeGreaterThanOrEqual(500);
      expect(await record.getVm(vm.id)).toBeUndefined();
    } finally {
      await other.close();
    }
  });
});
