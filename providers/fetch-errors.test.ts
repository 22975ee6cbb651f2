// An https:// address whose service answers in plain HTTP (started without
// --tls-cert / --tls-key): every caller says so and what to do, and does not
// ask again. Found by QA: the CLI said "could not be reached (EPROTO)" (after
// retrying a DMZ client for its whole budget), the DMZ client's readiness the
// OpenSSL text.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetError } from '../engine/diags/index.ts';
import type { PlanDocument } from '../engine/plan/types.ts';
import { sealAtAuthority } from './authority-plans.ts';
import { DmzHttpClient } from './client.ts';
import { AuthorityClient } from './dmz-client/authority-client.ts';

const SAYS = 'answered in plain HTTP';

describe('a service answering in plain HTTP at an https:// address', () => {
  let plain: Server;
  let url: string;
  let handled = 0;
  beforeAll(async () => {
    plain = createServer((_req, res) => {
      handled++;
      res.end('{}');
    });
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(plain.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => plain.close(() => r())));

  it('the CLI at a DMZ client: apply.dmz-unreachable saying so, after one attempt', async () => {
    const tries: number[] = [];
    const client = new DmzHttpClient({ dataCenter: 'miami', baseUrl: url, token: () => 'cli-token', baseDelayMs: 1, onRetry: (r) => tries.push(r.attempt) });
    const err = (await client.listVms().then(() => undefined, (e: unknown) => e)) as FleetError;
    expect(err.diagnostics.map((d) => d.code)).toEqual(['apply.dmz-unreachable']);
    expect(err.diagnostics[0].detail).toContain(SAYS);
    expect(err.diagnostics[0].detail).toContain('--tls-cert');
    expect(tries).toEqual([]);
  });

  it('the CLI at a deployed authority: apply.authority-unreachable saying so', async () => {
    const where = { file: '/stacks/prod/stack.yaml', line: 7, col: 14 };
    const plan = { formatVersion: '2', id: 'p', stack: 's', fleets: [], changes: [] } as unknown as PlanDocument;
    const err = (await sealAtAuthority({ address: url, tokenEnv: 'T', where }, { T: 'cli-token' }, plan).then(() => undefined, (e: unknown) => e)) as FleetError;
    expect(err.diagnostics.map((d) => d.code)).toEqual(['apply.authority-unreachable']);
    expect(err.diagnostics[0].detail).toContain(SAYS);
  });

  it("a DMZ client at the authority: its readiness says so", async () => {
    const client = new AuthorityClient('miami', url, 'dmz-token', 2_000);
    await expect(client.ping()).rejects.toThrow(SAYS);
  });

  it('no request reached the plain service with a token in clear text: the handshake failed first', () => {
    expect(handled).toBe(0);
  });
});
