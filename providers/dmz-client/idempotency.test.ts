import { readFileSync, statSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProtocolError } from '../../protocol/index.ts';
import { sha256 } from '../../protocol/index.ts';
import { IdempotencyStore, idempotencyLogFile } from './idempotency.ts';

let dir: string;
const stores: IdempotencyStore<never>[] = [];
function store<T>(): IdempotencyStore<T> {
  const s = new IdempotencyStore<T>(dir);
  stores.push(s as IdempotencyStore<never>);
  return s;
}
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dmzfleet-idem-'));
});
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  await rm(dir, { recursive: true, force: true });
});

const lines = async () => (await readFile(idempotencyLogFile(dir), 'utf8')).split('\n').filter((l) => l !== '');

describe('idempotency store', () => {
  it('runs once per key; a retry, also after a restart, gets the first result', async () => {
    const a = store<{ n: number }>();
    let runs = 0;
    const fn = async () => ({ n: ++runs });
    expect(await a.run('k', 'fp', fn)).toEqual({ n: 1 });
    expect(await a.run('k', 'fp', fn)).toEqual({ n: 1 });
    await a.close();
    const b = store<{ n: number }>();
    expect(await b.run('k', 'fp', fn)).toEqual({ n: 1 });
    expect(runs).toBe(1);
    const err = await b.run('k', 'other', fn).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).statusCode).toBe(422);
  });

  it('a concurrent duplicate waits for the first and gets its result', async () => {
    const s = store<string>();
    let release!: () => void;
    let runs = 0;
    const fn = () => {
      runs++;
      return new Promise<string>((r) => (release = () => r(`result ${runs}`)));
    };
    const first = s.run('k', 'fp', fn);
    const second = s.run('k', 'fp', fn);
    while (runs === 0) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 10));
    release();
    expect(await Promise.all([first, second])).toEqual(['result 1', 'result 1']);
    expect(runs).toBe(1);
  });

  it('group-commits: many concurrent results share few appends, each on disk when answered', async () => {
    const s = store<string>();
    const n = 300;
    const missing: string[] = [];
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        s.run(`k${i}`, 'fp', async () => `r${i}`).then((r) => {
          // Read synchronously when the answer resolves: the append that carries it has completed.
          const text = readFileSync(idempotencyLogFile(dir), 'utf8');
          if (!text.includes(`"k${i}"`)) missing.push(r);
        }),
      ),
    );
    expect(missing).toEqual([]);
    expect(s.writes).toBeLessThan(n / 4);
    expect(await lines()).toHaveLength(n);
    const again = store<string>();
    expect(await again.run('k7', 'fp', async () => 'rerun')).toBe('r7');
  });

  it('a failed first run stores nothing and runs again', async () => {
    const s = store<string>();
    await expect(s.run('k', 'fp', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await s.run('k', 'fp', async () => 'second')).toBe('second');
  });

  it('skips a line torn by a crash and appends after it on a fresh line', async () => {
    const a = store<string>();
    await a.run('k1', 'fp', async () => 'one');
    await appendFile(idempotencyLogFile(dir), '{"key":"k2","finger');
    const b = store<string>();
    expect(await b.run('k1', 'fp', async () => 'again')).toBe('one');
    expect(await b.run('k2', 'fp', async () => 'two')).toBe('two');
    const c = store<string>();
    expect(await c.run('k2', 'fp', async () => 'again')).toBe('two');
    expect(await lines()).toHaveLength(3);
  });

  it('reads results stored by older versions (one file per key under requests/)', async () => {
    await mkdir(join(dir, 'requests'));
    await writeFile(join(dir, 'requests', `${sha256('old')}.json`), JSON.stringify({ key: 'old', fingerprint: 'fp', result: 'stored', at: 'x' }));
    const s = store<string>();
    expect(await s.run('old', 'fp', async () => 'rerun')).toBe('stored');
  });

  it('keeps a step\'s tries over a restart, for its own request only, until its result is stored or they are forgotten', async () => {
    const a = store<string>();
    // Read inside run's fn, as a step does (the log is loaded then).
    const made = (s: IdempotencyStore<string>, key: string, fp = 'fp') => s.run(key, fp, async () => Promise.reject(new Error(String(s.triesMade(key, fp))))).catch((e: Error) => Number(e.message));
    await a.keepTries('k', 'fp', 2);
    await a.keepTries('k', 'fp', 3);
    await a.keepTries('gone', 'fp', 1);
    await a.keepTries('gone', 'fp', 0);
    await a.keepTries('done', 'fp', 2);
    expect(await a.run('done', 'fp', async () => 'result')).toBe('result');
    await a.close();
    const b = store<string>();
    expect(await made(b, 'k')).toBe(3);
    expect(await made(b, 'k', 'another request')).toBe(0);
    expect(await made(b, 'gone')).toBe(0);
    expect(await b.run('done', 'fp', async () => 'again')).toBe('result');
    expect(await made(b, 'never')).toBe(0);
    // Lines of their own, without a top-level fingerprint: a version that knew no tries skips them.
    const tries = (await lines()).map((l) => JSON.parse(l) as { fingerprint?: string; tries?: unknown }).filter((e) => e.tries !== undefined);
    expect(tries).toHaveLength(5);
    for (const e of tries) expect(e.fingerprint).toBeUndefined();
    expect(statSync(idempotencyLogFile(dir)).mode & 0o777).toBe(0o600);
  });
});
