// The Azure credential broker against Microsoft Entra's token endpoint
// served by nock, in its documented wire format (client-credentials grant:
// a form POST to /{tenant}/oauth2/v2.0/token; `{ token_type, expires_in,
// access_token }`, or `{ error, error_description, error_codes }`).
import nock from 'nock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ProtocolError } from '../../../protocol/index.ts';
import { AzureCredentialBroker, requestEntraToken } from './azure.ts';

const TENANT = '00000000-0000-0000-0000-000000000001';
const CLIENT = '00000000-0000-0000-0000-000000000002';
const SUB = '00000000-0000-0000-0000-000000000003';
const SECRET = 'principal-secret-value';

interface TokenCall {
  path: string;
  form: URLSearchParams;
  contentType: string | undefined;
}

let calls: TokenCall[];
let answers: (() => nock.ReplyFnResult)[];

function serveEntra(host = 'https://login.microsoftonline.com'): void {
  nock(host)
    .persist()
    .post(/\/oauth2\/v2\.0\/token$/)
    .reply(function (uri, body) {
      const ct = this.req.headers['content-type'];
      calls.push({ path: uri, form: new URLSearchParams(String(body)), contentType: Array.isArray(ct) ? ct[0] : ct });
      const next = answers.shift();
      return next ? next() : [200, { token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599, access_token: `token-${calls.length}` }];
    });
}

const refusal = (error: string, description: string, status = 401): (() => nock.ReplyFnResult) => () => [
  status,
  { error, error_description: description, error_codes: [7000215], timestamp: '2026-12-02 01:00:00Z', trace_id: 't', correlation_id: 'c' },
];

function broker(over: { authorityHost?: string } = {}): AzureCredentialBroker {
  return new AzureCredentialBroker({
    dataCenters: [{ name: 'eastus', tenantId: TENANT, clientId: CLIENT, clientSecret: SECRET, subscriptionId: SUB, resourceGroup: 'dmzfleet-eastus', ...over }],
  });
}

beforeEach(() => {
  calls = [];
  answers = [];
  nock.disableNetConnect();
});
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

describe('Azure credential broker', () => {
  it('gets a token of the data center principal by the client-credentials flow, for the resource manager', async () => {
    serveEntra();
    const b = broker();
    await b.prepare('eastus');
    expect(calls).toHaveLength(1);
    expect(calls[0].path).toBe(`/${TENANT}/oauth2/v2.0/token`);
    expect(calls[0].contentType).toBe('application/x-www-form-urlencoded');
    expect(Object.fromEntries(calls[0].form)).toEqual({ grant_type: 'client_credentials', client_id: CLIENT, client_secret: SECRET, scope: 'https://management.azure.com/.default' });
    const issued = b.issued('eastus');
    expect(issued?.azure).toMatchObject({ accessToken: 'token-1', subscriptionId: SUB, resourceGroup: 'dmzfleet-eastus' });
    const life = Date.parse(issued?.expiresAt ?? '') - Date.now();
    expect(life).toBeGreaterThan(3_500_000);
    expect(life).toBeLessThanOrEqual(3_599_000);
    expect(issued?.expiresAt).toBe(issued?.azure?.expiresOn);
  });

  it('keeps the token while two thirds of its life are left; concurrent approvals share one request', async () => {
    serveEntra();
    const b = broker();
    await Promise.all([b.prepare('eastus'), b.prepare('eastus'), b.prepare('eastus')]);
    await b.prepare('eastus');
    expect(b.calls).toBe(1);
    expect(calls).toHaveLength(1);
  });

  it('fetches again once a token is past two thirds of its life', async () => {
    answers.push(() => [200, { token_type: 'Bearer', expires_in: 3, access_token: 'short' }]);
    serveEntra();
    const b = broker();
    await b.prepare('eastus');
    expect(b.issued('eastus')?.azure?.accessToken).toBe('short');
    // Only the clock moves (fake Date): 1.5 s in, two thirds of 3 s are not gone; 2.1 s in, they are.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + 1500);
      await b.prepare('eastus');
      expect(b.issued('eastus')?.azure?.accessToken).toBe('short');
      vi.setSystemTime(Date.now() + 600);
      await b.prepare('eastus');
      expect(b.issued('eastus')?.azure?.accessToken).toBe('token-2');
    } finally {
      vi.useRealTimers();
    }
  });

  it('serves only its own data centers', async () => {
    serveEntra();
    const b = broker();
    await b.prepare('virginia');
    expect(b.issued('virginia')).toBeUndefined();
    expect(calls).toHaveLength(0);
  });

  it.each([
    ['a wrong secret', refusal('invalid_client', 'AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.\r\nTrace ID: t'), /401 invalid_client: AADSTS7000215: Invalid client secret provided/],
    ['an unknown tenant', refusal('invalid_request', 'AADSTS90002: Tenant not found.', 400), /400 invalid_request: AADSTS90002/],
    ['a 500 with no JSON', () => [500, 'upstream error'] as nock.ReplyFnResult, /Entra refused a token .*: 500$/],
    ['an answer without a token', () => [200, { token_type: 'Bearer', expires_in: 3599 }] as nock.ReplyFnResult, /without a bearer token/],
  ])('%s: 503 credentials-unavailable, naming what Entra said and never the secret', async (_name, answer, message) => {
    answers.push(answer);
    serveEntra();
    const err = await broker()
      .prepare('eastus')
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(ProtocolError);
    const p = err as ProtocolError;
    expect(p.statusCode).toBe(503);
    expect(p.code).toBe('credentials-unavailable');
    expect(p.message).toMatch(message);
    expect(p.message).not.toContain(SECRET);
  });

  it('an unreachable Entra: 503 naming the endpoint', async () => {
    nock('https://login.example').post(/.*/).replyWithError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
    const err = await broker({ authorityHost: 'https://login.example' })
      .prepare('eastus')
      .then(
        () => undefined,
        (e: unknown) => e as ProtocolError,
      );
    expect(err?.statusCode).toBe(503);
    expect(err?.message).toMatch(/https:\/\/login\.example\/.*could not be reached/);
  });

  it('requestEntraToken: another authority host (a sovereign cloud) and scope', async () => {
    serveEntra('https://login.microsoftonline.us');
    const t = await requestEntraToken({ tenantId: TENANT, clientId: CLIENT, clientSecret: SECRET, authorityHost: 'https://login.microsoftonline.us/', scope: 'https://management.usgovcloudapi.net/.default' });
    expect(t.accessToken).toBe('token-1');
    expect(calls[0].form.get('scope')).toBe('https://management.usgovcloudapi.net/.default');
  });
});
