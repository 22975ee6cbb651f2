// The authority as a production service: HTTPS with client certificates
// required (mTLS), Prometheus metrics and readiness probes, over real HTTP
// with certificates a throwaway CA issues at test time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postJson, send, sendTarget } from '../../providers/http-send.ts';
import { defaultPack } from '../../providers/testing.ts';
import { openRecord } from '../record/index.ts';
import type { FleetRecord } from '../record/types.ts';
import { loadServerTls, type ClientTls } from '../transport/index.ts';
import { TestCa, writePemFiles } from '../transport/testing.ts';
import { startAuthority, type RunningService } from './server.ts';

const ca = new TestCa();
const server = ca.issue({ cn: 'authority.test' });
const dmz = ca.issue({ cn: 'dmz-client miami', client: true });
const asDmz: ClientTls = { ca: ca.cert, cert: dmz.cert, key: dmz.key };

let record: FleetRecord;
let authority: RunningService;
let recordClosed = false;

beforeAll(async () => {
  const files = writePemFiles({ 'cert.pem': server.cert, 'key.pem': server.key, 'ca.pem': ca.cert });
  const { tls, diagnostics } = loadServerTls({ cert: files['cert.pem'], key: files['key.pem'], clientCa: files['ca.pem'] }, { cert: '--tls-cert', key: '--tls-key', clientCa: '--client-ca' });
  expect(diagnostics).toEqual([]);
  record = await openRecord('memory://');
  authority = await startAuthority({ record, pack: await defaultPack(), stackName: 'tls', dataCenters: [{ name: 'miami', token: 'tok-miami' }], tls });
});
afterAll(async () => {
  await authority.close();
  if (!recordClosed) await record.close();
});

const get = (path: string, tls: ClientTls | undefined = asDmz) => send(sendTarget(new URL(`${authority.url}${path}`), tls), 'GET', {}, undefined, 5_000);

describe('the authority over mTLS', () => {
  it('serves HTTPS and answers a DMZ client that presents a certificate of the CA', async () => {
    expect(authority.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const res = await get('/v1/health');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toMatchObject({ ok: true, service: 'authority' });
  });

  it('refuses a caller without a client certificate before any route runs', async () => {
    await expect(get('/v1/health', { ca: ca.cert })).rejects.toThrow();
  });

  it('counts decisions, boots and requests at /metrics', async () => {
    const target = sendTarget(new URL(`${authority.url}/v1/boot/authorize`), asDmz);
    const denied = await postJson(target, { dataCenter: 'miami', cloudId: 'sim-miami-x', vmId: 'no-such-vm', image: 'img', bootToken: 't' }, 5_000, { authorization: 'Bearer tok-miami' });
    expect(denied.status).toBe(200);
    expect(JSON.parse(denied.text)).toMatchObject({ approved: false });
    const text = (await get('/metrics')).text;
    expect(text).toMatch(/^fleet_boot_requests_total\{.*outcome="denied".*\} 1$/m);
    expect(text).toMatch(/^fleet_http_requests_total\{.*route="\/v1\/boot\/authorize".*status="200".*\} 1$/m);
    expect(text).not.toContain('tok-miami');
  });

  it('is ready while its record answers, and not once it does not', async () => {
    expect((await get('/livez')).status).toBe(200);
    const ready = await get('/readyz');
    expect([ready.status, JSON.parse(ready.text)]).toEqual([200, { ready: true, checks: { record: 'ok' } }]);
    await record.close();
    recordClosed = true;
    const down = await get('/readyz');
    expect(down.status).toBe(503);
    expect(JSON.parse(down.text)).toMatchObject({ ready: false, checks: { record: expect.any(String) } });
    expect((await get('/livez')).status).toBe(200);
  });
});
