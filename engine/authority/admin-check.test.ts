// POST /v1/plans/admin-check: fleet apply proves it holds the admin token
// before any change, where the protect rule's override: admin would have the
// authority refuse each overridden deletion only once it is reached (after
// the plan's other changes). Over real loopback HTTP on an in-memory PGlite
// record: a proof under the right token is ok, a wrong one (or any, when the
// authority holds no admin token) is refused 403 admin-proof-refused, no
// bearer token is 401, a data center's token is wrong-role; nothing is
// written to the record, and no log line carries the proof or the token.
// POST /v1/admin-check, the same check for a DMZ client (a data center's token).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRecord, type SqlRecord } from '../record/index.ts';
import type { FleetRecord } from '../record/types.ts';
import { adminCheckProof, overrideProof, randomBase64url } from '../../protocol/index.ts';
import { postJson, sendTarget } from '../../providers/http-send.ts';
import { defaultPack } from '../../providers/testing.ts';
import { startAuthority, type RunningService } from './server.ts';

const RIGHT = 'the-admin-token-of-this-authority';

describe('POST /v1/plans/admin-check', () => {
  const logs: string[] = [];
  let record: FleetRecord;
  let authority: RunningService;
  let bare: RunningService;
  const call = (at: RunningService, body: unknown, token?: string) =>
    postJson(sendTarget(new URL(`${at.url}/v1/plans/admin-check`)), body, 10_000, token ? { authorization: `Bearer ${token}` } : {});
  const check = (adminToken: string, stack = 'adm') => {
    const nonce = randomBase64url(24);
    return { nonce, proof: adminCheckProof(adminToken, stack, nonce) };
  };
  /** Every row of every table of the record, as text: what a read-only route must leave as it was. */
  const everything = async () => {
    const sql = (record as SqlRecord).sql;
    const tables = await sql.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name");
    const out: Record<string, string> = {};
    for (const { table_name } of tables) out[table_name] = JSON.stringify(await sql.query(`SELECT * FROM "${table_name}"`));
    return out;
  };

  beforeAll(async () => {
    record = await openRecord('memory://');
    const pack = await defaultPack();
    const common = { record, pack, stackName: 'adm', dataCenters: [{ name: 'miami', token: 'dmz-tok' }], planTokens: ['plan-tok'], secret: 'authority-secret' };
    authority = await startAuthority({ ...common, adminTokens: [RIGHT], logger: { level: 'debug', stream: { write: (l: string) => void logs.push(l) } } });
    bare = await startAuthority(common);
  });
  afterAll(async () => {
    await authority?.close();
    await bare?.close();
    await record?.close();
  });

  it('answers, and writes nothing, whatever the proof', async () => {
    const before = await everything();
    const cases: [string, RunningService, unknown, string | undefined, number, string | undefined][] = [
      ['the right token', authority, check(RIGHT), 'plan-tok', 200, undefined],
      ['a wrong token', authority, check('a-wrong-admin-token'), 'plan-tok', 403, 'admin-proof-refused'],
      ["the right token over another stack's name", authority, check(RIGHT, 'other'), 'plan-tok', 403, 'admin-proof-refused'],
      ["an override's proof instead", authority, { nonce: 'n'.repeat(16), proof: overrideProof(RIGHT, 'n'.repeat(16), null, 'x', 'y') }, 'plan-tok', 403, 'admin-proof-refused'],
      ['an authority holding no admin token', bare, check(RIGHT), 'plan-tok', 403, 'admin-proof-refused'],
      ['no bearer token', authority, check(RIGHT), undefined, 401, 'unauthorized'],
      ["a data center's token", authority, check(RIGHT), 'dmz-tok', 403, 'wrong-role'],
      ['no proof', authority, { nonce: 'n'.repeat(16) }, 'plan-tok', 400, undefined],
      ['a proof not hex', authority, { nonce: 'n'.repeat(16), proof: 'z'.repeat(64) }, 'plan-tok', 400, undefined],
    ];
    for (const [name, at, body, token, status, code] of cases) {
      const res = await call(at, body, token);
      expect(res.status, name).toBe(status);
      if (status === 200) expect(JSON.parse(res.text), name).toEqual({ ok: true });
      if (code) expect(JSON.parse(res.text).error.code, name).toBe(code);
      expect(res.text, name).not.toContain(RIGHT);
    }
    expect(await everything()).toEqual(before);
    const logged = logs.join('');
    expect(logged).toContain('admin check');
    expect(logged).not.toContain(RIGHT);
    expect(logged).not.toContain('a-wrong-admin-token');
    expect(logged).not.toMatch(/"proof"|"nonce"/);
  });

  // POST /v1/admin-check: the same check for a DMZ client passing on the CLI's (a stack.yaml with no authority address
  // reaches the authority only through its DMZ clients): a data center's token, with or without plan seals.
  it("POST /v1/admin-check: the same answers to a data center's token, none to the CLI's; nothing written, nothing logged", async () => {
    const unsealed = await startAuthority({ record, pack: await defaultPack(), stackName: 'adm', dataCenters: [{ name: 'miami', token: 'dmz-tok' }], adminTokens: [RIGHT], secret: 'authority-secret' });
    try {
      const before = await everything();
      const post = (at: RunningService, body: unknown, token?: string) => postJson(sendTarget(new URL(`${at.url}/v1/admin-check`)), body, 10_000, token ? { authorization: `Bearer ${token}` } : {});
      const cases: [string, RunningService, unknown, string | undefined, number, string | undefined][] = [
        ['the right token', authority, check(RIGHT), 'dmz-tok', 200, undefined],
        ['the right token, an authority that seals no plans', unsealed, check(RIGHT), 'dmz-tok', 200, undefined],
        ['a wrong token', authority, check('a-wrong-admin-token'), 'dmz-tok', 403, 'admin-proof-refused'],
        ["the right token over another stack's name", unsealed, check(RIGHT, 'other'), 'dmz-tok', 403, 'admin-proof-refused'],
        ['an authority holding no admin token', bare, check(RIGHT), 'dmz-tok', 403, 'admin-proof-refused'],
        ["the CLI's token at the authority", authority, check(RIGHT), 'plan-tok', 403, 'wrong-role'],
        ['no bearer token', authority, check(RIGHT), undefined, 401, 'unauthorized'],
        ['a proof not hex', authority, { nonce: 'n'.repeat(16), proof: 'z'.repeat(64) }, 'dmz-tok', 400, undefined],
      ];
      for (const [name, at, body, token, status, code] of cases) {
        const res = await post(at, body, token);
        expect(res.status, name).toBe(status);
        if (status === 200) expect(JSON.parse(res.text), name).toEqual({ ok: true });
        if (code) expect(JSON.parse(res.text).error.code, name).toBe(code);
        expect(res.text, name).not.toContain(RIGHT);
      }
      expect(await everything()).toEqual(before);
      const logged = logs.join('');
      expect(logged).toMatch(/"dataCenter":"miami"[^\n]*"admin check"/);
      expect(logged).not.toContain(RIGHT);
      expect(logged).not.toMatch(/"proof"|"nonce"/);
    } finally {
      await unsealed.close();
    }
  });
});
