// The CLI's hop to a deployed stack's authority (providers/authority-plans.ts)
// over real TLS: an authority that requires client certificates (its
// --client-ca) is reached with authority.certFile / keyFile, and every TLS
// misconfiguration is a diagnostic that names the stack.yaml setting to fix,
// never a bare OpenSSL message. Found by QA: the CLI had no way to present a
// client certificate to the authority (a deployed stack whose authority ran
// with --client-ca could neither plan --out nor apply), and a certificate it
// did not trust was reported as "self-signed certificate in certificate chain".
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetError } from '../engine/diags/index.ts';
import type { PlanDocument } from '../engine/plan/types.ts';
import { TestCa, writePemFiles } from '../engine/transport/testing.ts';
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
