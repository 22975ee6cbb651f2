// The record's timeouts from the environment. FLEET_RECORD_BUSY_TIMEOUT_MS=10s
// was ignored without a word (the 10 s default stayed), and
// FLEET_RECORD_CONNECT_TIMEOUT_MS=5s became NaN, handed to pg as its connect
// timeout. A value that is not a whole number of milliseconds is refused
// before the record is opened.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { openRecord } from './index.ts';

describe('record timeouts from the environment', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-record-env-'));
  afterEach(() => vi.unstubAllEnvs());
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    { name: 'FLEET_RECORD_BUSY_TIMEOUT_MS', value: '10s', url: `pglite://${join(dir, 'a')}`, folder: join(dir, 'a') },
    { name: 'FLEET_RECORD_BUSY_TIMEOUT_MS', value: '-1', url: `pglite://${join(dir, 'b')}`, folder: join(dir, 'b') },
    { name: 'FLEET_RECORD_BUSY_TIMEOUT_MS', value: ' 500', url: `pglite://${join(dir, 'c')}`, folder: join(dir, 'c') },
    { name: 'FLEET_RECORD_CONNECT_TIMEOUT_MS', value: '5s', url: 'postgres://fleet@127.0.0.1:1/fleet', folder: undefined },
    { name: 'FLEET_RECORD_CONNECT_TIMEOUT_MS', value: 'abc', url: 'postgres://fleet@127.0.0.1:1/fleet', folder: undefined },
  ])('$name=$value is refused', async ({ name, value, url, folder }) => {
    vi.stubEnv(name, value);
    await expect(openRecord(url)).rejects.toMatchObject({
      diagnostics: [{ code: 'cli.usage', detail: `${name} takes a whole number of milliseconds (0 or more), not ${JSON.stringify(value)}.` }],
    });
    if (folder) expect(existsSync(folder)).toBe(false);
  });

  // Past 2^31 - 1 ms Node fires a timer after 1 ms (a TimeoutOverflowWarning on stderr): a connect timeout meant as
  // "as long as it takes" failed every connection at once ("connection timeout"), a query timeout every statement.
  it.each([
    { name: 'FLEET_RECORD_CONNECT_TIMEOUT_MS', value: '2147483648', url: 'postgres://fleet@127.0.0.1:1/fleet', folder: undefined, hint: '' },
    { name: 'FLEET_RECORD_QUERY_TIMEOUT_MS', value: '99999999999999', url: 'postgres://fleet@127.0.0.1:1/fleet', folder: undefined, hint: '; default 120000, 0 for none' },
    { name: 'FLEET_RECORD_BUSY_TIMEOUT_MS', value: '99999999999999999999', url: `pglite://${join(dir, 'd')}`, folder: join(dir, 'd'), hint: '' },
  ])('$name=$value, longer than a timer waits, is refused', async ({ name, value, url, folder, hint }) => {
    vi.stubEnv(name, value);
    await expect(openRecord(url)).rejects.toMatchObject({
      diagnostics: [{ code: 'cli.usage', detail: `${name} takes at most 2147483647 milliseconds (about 24.8 days, the longest a timer waits${hint}), not ${JSON.stringify(value)}.` }],
    });
    if (folder) expect(existsSync(folder)).toBe(false);
  });

  it('a whole number, or an empty value, is taken', async () => {
    for (const value of ['', '2000']) {
      vi.stubEnv('FLEET_RECORD_BUSY_TIMEOUT_MS', value);
      const record = await openRecord(`pglite://${join(dir, `ok-${value || 'empty'}`)}`);
      await record.close();
    }
  });
});
