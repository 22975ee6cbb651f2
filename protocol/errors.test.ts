// The wire error registry stays honest, as the diagnostic registry does
// (engine/diags/codes.test.ts): every code used by a service, documented in
// docs/protocol.md, and no code sent that is not in it.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import fg from 'fast-glob';
import { describe, expect, it } from 'vitest';
import { CODES } from '../engine/diags/codes/index.ts';
import { FleetError, diag } from '../engine/diags/index.ts';
import { DRIVER_ERROR_KINDS, WIRE_ERRORS, WireError, driverErrorCode, ownWireCode, refuse } from './errors.ts';
import { PROTOCOL_DOC, withWireErrors } from './gen-docs.ts';
import { errorAnswer } from './http.ts';

const repo = fileURLToPath(new URL('../', import.meta.url));
const entries = Object.entries(WIRE_ERRORS);

/** Source files of the services and their callers, minus the registry and tests: path -> text. */
async function sources(): Promise<Map<string, string>> {
  const files = await fg(['protocol/**/*.ts', 'engine/**/*.ts', 'providers/**/*.ts'], {
    cwd: repo,
    ignore: ['protocol/errors.ts', 'protocol/gen-docs.ts', 'protocol/types.ts', '**/*.test.ts', '**/node_modules/**'],
  });
  return new Map(await Promise.all(files.map(async (f) => [f, await readFile(`${repo}${f}`, 'utf8')] as const)));
}

describe('wire error registry', () => {
  it.each(entries)('%s is well formed', (code, e) => {
    expect(code, 'codes are kebab-case, driver errors driver.<kind>').toMatch(/^(driver\.)?[a-z]+(-[a-z]+)*$/);
    expect(code in CODES, 'a wire code is never a diagnostic code').toBe(false);
    expect(e.doc.trim().length, 'doc must say what it means and what to do').toBeGreaterThan(20);
    expect([200, 400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 431, 500, 502, 503]).toContain(e.status);
  });

  it('every code is used in protocol/, engine/ or providers/ source', async () => {
    const text = [...(await sources()).values()].join('\n');
    const used = (code: string) => ["'", '"', '`'].some((q) => text.includes(`${q}${code}${q}`));
    // driver.<kind> is built from a DriverError's kind (`driver.${err.kind}`): used when some driver throws that kind.
    const driverUsed = (kind: string) => text.includes('`driver.${') && text.includes(`DriverError('${kind}'`);
    const unused = entries
      .map(([code]) => code)
      .filter((code) => (code.startsWith('driver.') ? !driverUsed(code.slice('driver.'.length)) : !used(code)));
    expect(unused.join(', '), 'registered but never used: use or remove them').toBe('');
  });

  it('every driver error kind has its code', () => {
    for (const kind of DRIVER_ERROR_KINDS) expect(WIRE_ERRORS).toHaveProperty([driverErrorCode(kind)]);
  });

  it('no code is sent outside the registry: only the authority client relays a status of its own', async () => {
    const raw = [...(await sources())].filter(([f, t]) => /new ProtocolError\(/.test(t) && f !== 'providers/dmz-client/authority-client.ts').map(([f]) => f);
    expect(raw).toEqual([]);
  });

  it('docs/protocol.md lists every code, generated from the registry', async () => {
    const doc = await readFile(PROTOCOL_DOC, 'utf8');
    expect(withWireErrors(doc) === doc, 'docs/protocol.md "Wire errors" is stale: run `npm run gen:docs` and commit docs/protocol.md').toBe(true);
    const missing = entries.map(([code]) => code).filter((code) => !doc.includes(`| \`${code}\` |`));
    expect(missing).toEqual([]);
  });
});

describe('errorAnswer: statuses come from the registry only', () => {
  it.each(entries.filter(([, e]) => e.status >= 400))('a WireError %s is answered with its status', (code, e) => {
    const a = errorAnswer(new WireError(code as keyof typeof WIRE_ERRORS, 'why'));
    expect(a).toEqual({ status: e.status, body: { error: { code, message: 'why' } } });
  });

  it.each([
    ['a schema violation', Object.assign(new Error('body must have required property x'), { validation: [{}] }), 400, 'bad-request'],
    ['a body too large', Object.assign(new Error('too big'), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' }), 413, 'too-large'],
    ['a wrong content type', Object.assign(new Error('no'), { statusCode: 415, code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE' }), 415, 'unsupported-media-type'],
    ['another Fastify refusal', Object.assign(new Error('empty'), { statusCode: 400, code: 'FST_ERR_CTP_EMPTY_JSON_BODY' }), 400, 'bad-request'],
    ['a bug', new Error('oops'), 500, 'internal'],
    ['a record version conflict (the caller\'s race)', new FleetError(diag('record.version-conflict', 'web/0 changed')), 409, 'version-conflict'],
    ['a record fault (a diagnostic code is never sent)', new FleetError(diag('record.unreachable', 'PostgreSQL is down')), 503, 'unavailable'],
  ])('%s', (_name, err, status, code) => {
    const a = errorAnswer(err);
    expect([a.status, a.body.error.code]).toEqual([status, code]);
    expect(code in WIRE_ERRORS).toBe(true);
  });

  it('a refusal carries its code and reason', () => {
    expect(refuse('state-moved', 'VM web/0 is Running, not PoweredOff')).toEqual({ ok: false, refusal: 'state-moved', reason: 'VM web/0 is Running, not PoweredOff' });
  });
});

// ownWireCode tells our error bodies from anything else with JSON (a gateway's, a proxy's): the CLI answers POST
// /v1/admin-check's 502 at once only for ours (providers/client.ts), and the DMZ client relays only our codes.
describe('ownWireCode', () => {
  it.each(entries.map(([code]) => code))('%s: the body errorAnswer sends is ours, with its code', (code) => {
    expect(ownWireCode(errorAnswer(new WireError(code as keyof typeof WIRE_ERRORS, 'why')).body)).toBe(code);
  });

  // Bodies that are not ours: codes not in the registry (some of them names every object has), or ours without a
  // message string, or not an error body at all.
  const foreignCodes = ['BadGateway', 'bad_gateway', 'upstream-error', 'NOT-FOUND', 'not-found ', '', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'invalid-json'];
  const notOurs: unknown[] = [
    ...foreignCodes.map((code) => ({ error: { code, message: 'a gateway said so' } })),
    ...entries.map(([code]) => ({ error: { code } })),
    ...entries.map(([code]) => ({ error: { code, message: 17 } })),
    ...entries.map(([code]) => ({ error: { code: [code], message: 'm' } })),
    ...entries.map(([code]) => ({ code, message: 'm' })),
    { error: 'Bad Gateway' },
    { error: null },
    { message: 'An invalid response was received from the upstream server' },
    null,
    undefined,
    'Bad Gateway',
    42,
    [],
  ];
  it.each(notOurs.map((body) => [JSON.stringify(body) ?? String(body), body]))('%s: not ours', (_name, body) => {
    expect(ownWireCode(body)).toBeUndefined();
  });
});
