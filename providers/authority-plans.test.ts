// The CLI's hop to a deployed stack's authority (providers/authority-plans.ts)
// over real TLS: an authority that requires client certificates (its
// --client-ca) is reached with authority.certFile / keyFile, and every TLS
// misconfiguration is a diagnostic that names the stack.yaml setting to fix,
// never a bare OpenSSL message. Found by QA: the CLI had no way to present a
// client certificate to the authority (a deployed stack whose authority ran
// with --client-ca could neither plan --out nor apply), and a certificate it
// did not trust was reported as "self-signed certificate in certificate chain".
import { Agent as HttpAgent, createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REASON_LIMIT, formatDiagnostics, type FleetError } from '../engine/diags/index.ts';
import type { PlanDocument } from '../engine/plan/types.ts';
import { TestCa, writePemFiles } from '../engine/transport/testing.ts';
import { listenOnLoopback } from '../test/helpers/proxy.ts';
import { sealAtAuthority } from './authority-plans.ts';

const SEAL = { alg: 'hmac-sha256', stackId: 'stk-1', keyId: 'a-1', digest: 'd', signature: 's' };
const plan = { formatVersion: '2', id: 'p', stack: 's', fleets: [], changes: [] } as unknown as PlanDocument;
const env = { FLEET_AUTHORITY_TOKEN: 'cli-token' };

describe('the CLI at a deployed authority over TLS', () => {
  const ca = new TestCa('authority CA');
  const other = new TestCa('another CA');
  const server = ca.issue({ cn: 'localhost' });
  const cli = ca.issue({ cn: 'fleet cli', client: true });
  const stranger = other.issue({ cn: 'fleet cli', client: true });
  const files = writePemFiles({
    'ca.pem': ca.cert,
    'other-ca.pem': other.cert,
    'cli.pem': cli.cert,
    'cli-key.pem': cli.key,
    'stranger.pem': stranger.cert,
    'stranger-key.pem': stranger.key,
  });
  let https: Server;
  let port: number;
  const where = { file: '/stacks/prod/stack.yaml', line: 7, col: 14 };
  const settings = (over: Record<string, string> = {}) => ({ address: `https://localhost:${port}`, tokenEnv: 'FLEET_AUTHORITY_TOKEN', where, ...over });
  const failure = async (over: Record<string, string>): Promise<FleetError> => (await sealAtAuthority(settings(over), env, plan).then(() => undefined, (e: unknown) => e)) as FleetError;

  beforeAll(async () => {
    // An authority's TLS as `fleet serve orchestrator --client-ca` serves it: a client without a certificate its CA signed is refused at the handshake.
    https = createServer({ cert: server.cert, key: server.key, ca: ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.url?.endsWith('/too-big/v1/plans/seal')) {
          res.writeHead(413, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { code: 'too-large', message: 'Request body is too large' } }));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ seal: SEAL }));
      });
    });
    await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
    port = (https.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => https.close(() => r())));

  it('presents authority.certFile / keyFile to an authority that requires client certificates', async () => {
    expect(await sealAtAuthority(settings({ caFile: files['ca.pem'], certFile: files['cli.pem'], keyFile: files['cli-key.pem'] }), env, plan)).toEqual(SEAL);
  });

  // Found by QA: an authority refusing a plan as too large was reported as "Check FLEET_AUTHORITY_TOKEN".
  it('a plan the authority refuses as too large: apply.authority-refused saying so, not about the token', async () => {
    const err = await failure({ address: `https://localhost:${port}/too-big`, caFile: files['ca.pem'], certFile: files['cli.pem'], keyFile: files['cli-key.pem'] });
    expect(err.diagnostics.map((d) => d.code)).toEqual(['apply.authority-refused']);
    expect(err.diagnostics[0].detail).toContain('is larger than this authority takes');
    expect(err.diagnostics[0].detail).not.toContain('FLEET_AUTHORITY_TOKEN');
  });

  it.each([
    {
      name: 'no authority.caFile (the system CAs do not know its CA)',
      over: () => ({}),
      code: 'apply.authority-unreachable',
      says: ["its TLS certificate is not trusted", 'authority.caFile'],
    },
    {
      name: "another CA's bundle as authority.caFile",
      over: () => ({ caFile: files['other-ca.pem'] }),
      code: 'apply.authority-unreachable',
      says: ["its TLS certificate is not trusted", 'authority.caFile'],
    },
    {
      name: 'no client certificate',
      over: () => ({ caFile: files['ca.pem'] }),
      code: 'apply.authority-unreachable',
      says: ['refused', 'authority.certFile', 'authority.keyFile', '--client-ca'],
    },
    {
      name: "a client certificate of another CA",
      over: () => ({ caFile: files['ca.pem'], certFile: files['stranger.pem'], keyFile: files['stranger-key.pem'] }),
      code: 'apply.authority-unreachable',
      says: ['refused', 'authority.certFile'],
    },
    {
      name: 'a private key as authority.caFile',
      over: () => ({ caFile: files['cli-key.pem'] }),
      code: 'tls.bad-pem',
      says: ['authority.caFile', 'holds no PEM certificate'],
    },
    {
      name: 'a certificate without its key',
      over: () => ({ caFile: files['ca.pem'], certFile: files['cli.pem'] }),
      code: 'tls.incomplete',
      says: ['authority.certFile', 'authority.keyFile'],
    },
    {
      name: "another certificate's key",
      over: () => ({ caFile: files['ca.pem'], certFile: files['cli.pem'], keyFile: files['stranger-key.pem'] }),
      code: 'tls.key-mismatch',
      says: ['authority.keyFile'],
    },
    {
      name: 'plain http:// to the TLS authority',
      over: () => ({ address: `http://localhost:${port}` }),
      code: 'apply.authority-unreachable',
      says: ['https://'],
    },
  ])('$name: $code, naming what to fix', async ({ over, code, says }) => {
    const err = await failure(over());
    expect(err?.diagnostics?.map((d) => d.code)).toEqual([code]);
    for (const s of says) expect(err.diagnostics[0].detail).toContain(s);
    // Never the key's content, and never the token.
    expect(err.diagnostics[0].detail).not.toContain('PRIVATE KEY');
    expect(err.diagnostics[0].detail).not.toContain('cli-token');
  });
});

// An authority's error body goes into fleet plan's and fleet apply's diagnostics: its message and code were written
// raw: a line break and a forged `error[...]` line in them printed that line as fleet's own, and a 100 KB message was
// 4,000 characters of it (diag()'s backstop). Now clipped (errorMessage: REASON_LIMIT; the code: QUOTE_LIMIT).
describe("the authority's error body, in the CLI's diagnostics: one line, clipped", () => {
  const FORGED = 'm\nerror[apply.fake]: Forged\n  at web/9';
  /** 100 KB of short words: diag()'s backstop cuts a run without a space at 300 characters, not these. */
  const HUGE = 'yy '.repeat(34_000);
  let server: { url: string; close(): Promise<void> };
  let answer: { status: number; code: string; message: string } = { status: 500, code: 'x', message: '' };
  beforeAll(async () => {
    const s = createHttpServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(answer.status, { 'content-type': 'application/json', 'retry-after': '30' });
        res.end(JSON.stringify({ error: { code: answer.code, message: answer.message } }));
      });
    });
    server = await listenOnLoopback(s, new HttpAgent());
  });
  afterAll(() => server.close());

  it.each(
    [
      { name: 'a plan refused for its content (plan-scope)', status: 400, code: () => 'plan-scope', want: 'apply.plan-scope' },
      { name: 'the admin token refused', status: 403, code: () => 'admin-proof-refused', want: 'apply.admin-token-invalid' },
      { name: 'admin checks limited (429)', status: 429, code: () => 'admin-check-rate-limited', want: 'apply.admin-check-limited' },
      { name: 'a 5xx', status: 503, code: () => 'unavailable', want: 'apply.authority-unreachable' },
      { name: 'too large (413)', status: 413, code: () => 'too-large', want: 'apply.authority-refused' },
      { name: 'another refusal, its code the same value', status: 403, code: (v: string) => v, want: 'apply.authority-refused' },
    ].flatMap((c) => [{ ...c, value: 'a line break and a forged diagnostic', v: FORGED }, { ...c, value: 'a 100 KB value', v: HUGE }]),
  )('$name: $value', async ({ status, code, want, v }) => {
    answer = { status, code: code(v), message: v };
    const a = { address: server.url, tokenEnv: 'FLEET_AUTHORITY_TOKEN', where: { file: '/stacks/prod/stack.yaml', line: 7, col: 14 } };
    const err = (await sealAtAuthority(a, env, plan).then(() => undefined, (e: unknown) => e)) as FleetError;
    expect(err.diagnostics.map((d) => d.code)).toEqual([want]);
    expect(formatDiagnostics(err.diagnostics)).not.toMatch(/^\s*error\[apply\.fake\]/m);
    expect(err.message).not.toContain('\n');
    // The authority's words: at most REASON_LIMIT characters, in a sentence of fleet's (the longest: admin-check-limited's).
    expect(err.diagnostics[0].detail.length).toBeLessThan(REASON_LIMIT + 1200);
  });
});
