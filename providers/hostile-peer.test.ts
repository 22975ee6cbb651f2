// What a DMZ client (and the authority and cloud behind it) answers reaches
// the diagnostics of the provider that drives it: under Pulumi, whose
// dynamic-provider host prints an error's message as it is, line breaks
// and all; under fleet apply, in the member's failure. An authority's
// reason, a cloud's error message, an error body's message, a VM's state,
// address or cloud id went into them raw: a line break and a forged
// `error[...]` line in one printed that line as Pulumi's own, and a 100 KB
// one was 4,000 characters of it (diag()'s backstop) in every diagnostic.
// Each is now clipped (REASON_LIMIT for sentences, QUOTE_LIMIT for names).
//
// Over real loopback HTTP: the provider's own DmzHttpClient against a
// stand-in DMZ client answering each route as the case says.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError, QUOTE_LIMIT, REASON_LIMIT, formatDiagnostics } from '../engine/diags/index.ts';
import { WHERE_LIMIT } from '../engine/diags/quote.ts';
import { listenOnLoopback } from '../test/helpers/proxy.ts';
import { DataCenterProvider, lifecycleData, type VmInputs, type VmOutputs } from './provider.ts';
import { defaultPack } from './testing.ts';

const FORGED = 'm\nerror[apply.fake]: Forged\n  at web/9';
/** 100 KB of short words: diag()'s backstop cuts a run without a space at 300 characters, not these. */
const HUGE = 'yy '.repeat(34_000);

type Answer = { status: number; body: unknown };
/** What the stand-in answers a request with, by method and path; undefined: 404. */
type Script = (method: string, path: string, v: string) => Answer | undefined;

const TOKEN_ENV = 'FLEET_TEST_HOSTILE_PEER_TOKEN';
const vm = (over: Record<string, unknown> = {}) => ({ id: 'vm-1', address: 'web/0', state: 'Requested', version: 1, ...over });
const step = (over: Record<string, unknown>) => ({ status: 200, body: { requestId: 'r', decision: 'approved', reason: 'ok', outcome: 'ok', vm: vm(), ...over } });
const vetoed = (reason: string, over: Record<string, unknown> = {}) => step({ decision: 'vetoed', outcome: 'vetoed', reason, vm: undefined, ...over });
const failed = (message: string, over: Record<string, unknown> = {}) => step({ outcome: 'failed', error: { code: 'driver.failed', message }, vm: vm({ state: 'CreateFailed' }), ...over });

interface Case {
  name: string;
  call: 'create' | 'delete';
  script: Script;
}

const CASES: Case[] = [
  { name: "the authority's reason for a veto", call: 'create', script: (m, p, v) => (m === 'POST' && p === '/v1/vms' ? vetoed(v) : undefined) },
  { name: "the cloud's error message", call: 'create', script: (m, p, v) => (m === 'POST' && p === '/v1/vms' ? failed(v) : undefined) },
  { name: 'the state the VM is now in', call: 'create', script: (m, p, v) => (m === 'POST' && p === '/v1/vms' ? failed('no', { vm: vm({ state: v }) }) : undefined) },
  { name: "the VM's address", call: 'create', script: (m, p, v) => (m === 'POST' && p === '/v1/vms' ? vetoed('no', { vm: vm({ address: v }) }) : undefined) },
  { name: "an error body's message (409)", call: 'create', script: (m, p, v) => (m === 'POST' && p === '/v1/vms' ? { status: 409, body: { error: { code: 'conflict', message: v } } } : undefined) },
  { name: "an error body's message (503, retries spent)", call: 'create', script: (m, p, v) => (m === 'POST' && p === '/v1/vms' ? { status: 503, body: { error: { code: 'unavailable', message: v } } } : undefined) },
  { name: 'a body that is not JSON', call: 'create', script: (m, p, v) => (m === 'POST' && p === '/v1/vms' ? { status: 409, body: v } : undefined) },
  {
    name: 'a failed clean-up after a failed create (Pulumi leaves nothing created)',
    call: 'create',
    script: (m, p, v) => {
      if (m === 'POST' && p === '/v1/vms') return step({});
      // The create's first edge fails, and so does every edge of the walk down.
      if (m === 'POST' && p.endsWith('/transitions')) return failed(v, { vm: vm({ state: 'Requested' }) });
      return undefined;
    },
  },
  {
    name: "a cloud id and state of a VM the record lacks (its delete's way out)",
    call: 'delete',
    script: (m, p, v) => {
      if (m === 'POST' && p.endsWith('/transitions')) return vetoed('VM vm-1 is not in the record');
      if (m === 'GET' && p === '/v1/vms/vm-1') {
        return { status: 200, body: { vmId: 'vm-1', cloudId: v, dataCenter: 'miami', name: 's-web-0', image: 'img', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, encryptedDisk: true, status: 'present', power: 'on', agent: 'none', observedState: v } };
      }
      return undefined;
    },
  },
];

describe("a DMZ client's answers, in the provider's diagnostics (Pulumi): one line, clipped", () => {
  let server: { url: string; close(): Promise<void> };
  let script: Script = () => undefined;
  let value = '';
  let lifecycle: Awaited<ReturnType<typeof defaultPack>>['lifecycle'];
  beforeAll(async () => {
    lifecycle = (await defaultPack()).lifecycle;
    process.env[TOKEN_ENV] = 'the-token';
    const s = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const a = script(req.method ?? '', req.url ?? '', value) ?? { status: 404, body: { error: { code: 'not-found', message: 'no route' } } };
        res.writeHead(a.status, { 'content-type': 'application/json' });
        res.end(typeof a.body === 'string' ? a.body : JSON.stringify(a.body));
      });
    });
    server = await listenOnLoopback(s, new http.Agent());
  });
  afterAll(async () => {
    delete process.env[TOKEN_ENV];
    await server.close();
  });

  const inputs: VmInputs = {
    stack: 's', fleet: 'web', owner: 'team', index: 0, name: 's-web-0', image: 'ubuntu-22.04', size: { cpu: 2, memoryGiB: 4, diskGiB: 20 }, encryptedDisk: true, desiredState: 'Running', specHash: 'h', planId: null,
  };
  const props: VmOutputs = { ...inputs, vmId: 'vm-1', dataCenter: 'miami', state: 'Running', cloudId: 'c-1', realImage: 'img', version: 3 };

  it.each(CASES.flatMap((c) => [{ ...c, value: 'a line break and a forged diagnostic', v: FORGED }, { ...c, value: 'a 100 KB value', v: HUGE }]))('$name: $value', async ({ call, script: s, v }) => {
    script = s;
    value = v;
    // Pulumi's provider, as a program builds it (no retries: a 503 is final at once).
    const provider = new DataCenterProvider({ dataCenter: 'miami', url: server.url, tokenEnv: TOKEN_ENV, lifecycle: lifecycleData(lifecycle), retries: 0, timeoutMs: 5_000 });
    const err = (await (call === 'create' ? provider.create(inputs) : provider.delete('vm-1', props)).then(() => undefined, (e: unknown) => e)) as FleetError & { reasons?: string[] };
    expect(err).toBeInstanceOf(FleetError);
    // What Pulumi prints: the message (and a partial resource's reasons), one line each.
    for (const text of [err.message, ...(err.reasons ?? [])]) expect(text).not.toContain('\n');
    // What the CLI prints of the same diagnostics: no line of the peer's making.
    expect(formatDiagnostics(err.diagnostics)).not.toMatch(/^\s*error\[apply\.fake\]/m);
    for (const d of err.diagnostics) {
      // The peer's words: at most REASON_LIMIT characters (a name: QUOTE_LIMIT), in a sentence of fleet's.
      expect(d.detail.length).toBeLessThan(REASON_LIMIT + 700);
      expect(d.address?.length ?? 0).toBeLessThan(350);
    }
    if (v === HUGE) expect(err.message.length).toBeLessThan(err.diagnostics.length * (REASON_LIMIT + 800));
  });

  // A Pulumi program names the data center, the token's variable and the DMZ client's URL as it likes (a stack file's
  // names are checked when it is read): they were written raw in every diagnostic of the provider and its client.
  it.each(
    [
      { name: 'the data center', opts: (v: string) => ({ dataCenter: v }), answer: { status: 409, body: { error: { code: 'conflict', message: 'no' } } }, limit: QUOTE_LIMIT },
      { name: 'the data center, with a veto', opts: (v: string) => ({ dataCenter: v }), answer: vetoed('no'), limit: QUOTE_LIMIT },
      { name: "the token's variable (401)", opts: (v: string) => ({ tokenEnv: v }), answer: { status: 401, body: { error: { code: 'unauthorized', message: 'no' } } }, limit: QUOTE_LIMIT },
      { name: 'the URL', opts: (v: string) => ({ url: `${server.url}/?${v}` }), answer: { status: 409, body: { error: { code: 'conflict', message: 'no' } } }, limit: WHERE_LIMIT },
    ].flatMap((c) => [{ ...c, value: 'a line break and a forged diagnostic', v: FORGED }, { ...c, value: 'a 100 KB value', v: HUGE.replace(/ /g, '') }]),
  )('a program gives $name: $value', async ({ opts, answer, limit, v }) => {
    script = () => answer;
    const o = { dataCenter: 'miami', url: server.url, tokenEnv: TOKEN_ENV, ...opts(v) };
    process.env[o.tokenEnv] = 'the-token';
    try {
      const provider = new DataCenterProvider({ ...o, lifecycle: lifecycleData(lifecycle), retries: 0, timeoutMs: 5_000 });
      const err = (await provider.create(inputs).then(() => undefined, (e: unknown) => e)) as FleetError;
      expect(err).toBeInstanceOf(FleetError);
      expect(err.message).not.toContain('\n');
      expect(formatDiagnostics(err.diagnostics)).not.toMatch(/^\s*error\[apply\.fake\]/m);
      // A name: at most QUOTE_LIMIT characters of it wherever it is named; a URL at most WHERE_LIMIT (its middle cut).
      for (const d of err.diagnostics) expect(d.detail).not.toMatch(new RegExp(`y{${limit + 1}}`));
    } finally {
      if (o.tokenEnv !== TOKEN_ENV) delete process.env[o.tokenEnv];
    }
  });
});
