// What an authority says reaches the CLI through the DMZ client: a veto's
// reason, a boot denial's detail, an error body's message. The DMZ client
// passed them on as they came, so a hostile or broken authority's megabyte,
// line breaks (a forged `error[...]` line) and terminal escapes were in the
// DMZ client's answers and its error bodies, whole; the CLI and the provider
// clip what they print (REASON_LIMIT), but any other reader of the DMZ
// client's answers (a script, a proxy's log, the DMZ client's own log lines)
// got them raw. Now clipped where the DMZ client reads them (authority-client.ts
// authoritySaid). Over real HTTP: a real DMZ client (sim driver) in front of
// a stand-in authority answering each call as the case says, asked as the
// CLI asks it.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REASON_LIMIT } from '../../engine/diags/index.ts';
import { credentialKey, type BatchRequest } from '../../protocol/index.ts';
import { createSimDriver, type SimDriver } from '../drivers/sim/index.ts';
import { createRequest, newVm } from '../testing.ts';
import { startDmzClient, type RunningDmzClient } from './server.ts';

const AUTHORITY_TOKEN = 'tok-miami';
const CLIENT_TOKEN = 'cli-token';
/** A line break, a forged diagnostic line, a terminal escape and a C1 control. */
const FORGED = 'm\nerror[apply.fake]: Forged\r\n  at web/9 \u001b[31mred\u001b[0m \u009b2J';
/** 300 KB of short words (a run without a space is cut anyway). */
const HUGE = 'yy '.repeat(100_000);

type Answer = { status: number; body: unknown };
/** The stand-in's answer to one call of a batch (`call`, `body`), or to the whole batch (`batch`), or to POST /v1/admin-check. */
interface Script {
  call?: (call: string, body: unknown, v: string) => Answer;
  batch?: (v: string) => Answer;
  adminCheck?: (v: string) => Answer;
}

const vetoed = (v: string) => ({ decision: 'vetoed', reason: v });
/** A veto of the create, as an authorize or an advance (the DMZ client's create asks either). */
const vetoCreate = (call: string, _body: unknown, v: string): Answer => ({ status: 200, body: call === 'advance' ? { create: vetoed(v), next: [] } : vetoed(v) });
const error = (status: number, code: string, v: string): Answer => ({ status, body: { error: { code, message: v } } });

interface Case {
  name: string;
  /** What the CLI asks the DMZ client: a create, or the admin-token check. */
  ask: 'create' | 'admin-check';
  script: Script;
}

const CASES: Case[] = [
  { name: "a veto's reason", ask: 'create', script: { call: vetoCreate } },
  { name: "a call's error message (409)", ask: 'create', script: { call: (_c, _b, v) => error(409, 'request-reused', v) } },
  { name: "a call's error message (500, sends spent)", ask: 'create', script: { call: (_c, _b, v) => error(500, 'internal', v) } },
  { name: "the batch's error message (400)", ask: 'create', script: { batch: (v) => error(400, 'bad-request', v) } },
  { name: "the batch's error message (503, sends spent)", ask: 'create', script: { batch: (v) => error(503, 'unavailable', v) } },
  { name: "the batch's error message (401, a code of its own)", ask: 'create', script: { batch: (v) => error(401, 'no-such-code', v) } },
  { name: "the admin check's refusal (403)", ask: 'admin-check', script: { adminCheck: (v) => error(403, 'admin-proof-refused', v) } },
  { name: "the admin check's limit (429)", ask: 'admin-check', script: { adminCheck: (v) => error(429, 'admin-check-rate-limited', v) } },
  { name: "the admin check's error (500)", ask: 'admin-check', script: { adminCheck: (v) => error(500, 'internal', v) } },
];

/** Every string in `x`, with where it is. */
function strings(x: unknown, at = '$'): [string, string][] {
  if (typeof x === 'string') return [[at, x]];
  if (Array.isArray(x)) return x.flatMap((y, i) => strings(y, `${at}[${i}]`));
  if (x && typeof x === 'object') return Object.entries(x).flatMap(([k, y]) => strings(y, `${at}.${k}`));
  return [];
}

describe("an authority's words in the DMZ client's answers to the CLI: escaped and clipped (REASON_LIMIT)", () => {
  let script: Script = {};
  let value = '';
  let authority: http.Server;
  let dmz: RunningDmzClient;
  let driver: SimDriver;
  let dir: string;

  beforeAll(async () => {
    authority = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const send = (a: Answer, type = 'application/json') => {
          res.writeHead(a.status, { 'content-type': type });
          res.end(JSON.stringify(a.body));
        };
        if (req.method === 'POST' && req.url === '/v1/admin-check') return send(script.adminCheck?.(value) ?? { status: 200, body: { ok: true } });
        if (req.method !== 'POST' || req.url !== '/v1/batch') return send(error(404, 'not-found', 'no route'));
        if (script.batch) return send(script.batch(value));
        const batch = JSON.parse(Buffer.concat(chunks).toString('utf8')) as BatchRequest;
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.end(batch.calls.map((c, i) => `${JSON.stringify({ i, ...(script.call?.(c.call, c.body, value) ?? error(500, 'internal', 'unscripted')) })}\n`).join(''));
      });
    });
    await new Promise<void>((r) => authority.listen(0, '127.0.0.1', r));
    dir = await mkdtemp(join(tmpdir(), 'dmzfleet-hostile-authority-'));
    driver = await createSimDriver({ dataCenter: 'miami', stateDir: dir, latencyMs: 1, capacity: { vms: 50, cpu: 200, memoryGiB: 800 }, credentialKey: credentialKey(AUTHORITY_TOKEN, 'miami') });
    dmz = await startDmzClient({
      dataCenter: 'miami',
      driver,
      authorityUrl: `http://127.0.0.1:${(authority.address() as AddressInfo).port}`,
      authorityToken: AUTHORITY_TOKEN,
      clientToken: CLIENT_TOKEN,
      stateDir: dir,
      authorityTimeoutMs: 5_000,
    });
  });
  afterAll(async () => {
    await dmz.close();
    await driver.close();
    await new Promise((r) => authority.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it.each(CASES.flatMap((c) => [{ ...c, value: 'a line break, a forged diagnostic and terminal escapes', v: FORGED }, { ...c, value: 'a 300 KB sentence', v: HUGE }]))(
    '$name: $value',
    async ({ ask, script: s, v }) => {
      script = s;
      value = v;
      const body = ask === 'create' ? createRequest(newVm('hostile')) : { nonce: randomBytes(16).toString('base64url'), proof: 'ab'.repeat(32) };
      const res = await fetch(`${dmz.url}/v1/${ask === 'create' ? 'vms' : 'admin-check'}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_TOKEN}` },
        body: JSON.stringify(body),
      });
      const text = await res.text();
      const answer = JSON.parse(text) as unknown;
      const said = strings(answer);
      // The authority's words are in the answer (so the test sees them), cut and escaped.
      expect(said.some(([, x]) => x.includes(v === HUGE ? 'yy yy' : 'Forged')), text.slice(0, 2000)).toBe(true);
      for (const [at, x] of said) {
        expect(x.length, at).toBeLessThan(REASON_LIMIT + 700);
        // No character of the peer's that acts on a terminal or starts a line: C0 and C1 controls, DEL.
        const control = [...x].find((ch) => ch.charCodeAt(0) < 0x20 || (ch.charCodeAt(0) >= 0x7f && ch.charCodeAt(0) <= 0x9f));
        expect(control, at).toBeUndefined();
      }
      expect(text.length).toBeLessThan(4 * (REASON_LIMIT + 700));
    },
    30_000,
  );
});
