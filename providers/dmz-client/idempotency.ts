// Results of mutating requests, kept by idempotency key on disk (one file per
// key under <stateDir>/requests/) so a retried request, even to a restarted
// DMZ client, gets the first answer and never repeats the work.
//
// | key state                         | what a request with that key gets          |
// | --------------------------------- | ------------------------------------------ |
// | never seen                        | runs; the result is stored                 |
// | running (concurrent duplicate)    | waits for the first and gets its result    |
// | stored                            | the stored result                          |
// | seen with a different request     | 422 idempotency-conflict                   |
// | first run threw (nothing decided) | runs again (nothing was stored)            |
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ProtocolError } from '../../engine/authority/http.ts';
import { sha256 } from '../../engine/authority/keys.ts';

interface Stored<T> {
  key: string;
  fingerprint: string;
  result: T;
  at: string;
}

export class IdempotencyStore<T> {
  private readonly running = new Map<string, { fingerprint: string; promise: Promise<T> }>();
  private readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'requests');
  }

  private file(key: string): string {
    return join(this.dir, `${sha256(key)}.json`);
  }

  private async load(key: string): Promise<Stored<T> | undefined> {
    try {
      return JSON.parse(await readFile(this.file(key), 'utf8')) as Stored<T>;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  private async save(entry: Stored<T>): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const f = this.file(entry.key);
    const tmp = `${f}.${randomUUID()}.tmp`;
    await writeFile(tmp, JSON.stringify(entry));
    await rename(tmp, f);
  }

  /** Runs `fn` once per key; `fingerprint` identifies the request the key was first used for. */
  async run(key: string, fingerprint: string, fn: () => Promise<T>): Promise<T> {
    const conflict = () =>
      new ProtocolError(422, 'idempotency-conflict', `idempotency key ${key} was used for a different request`);
    const inFlight = this.running.get(key);
    if (inFlight) {
      if (inFlight.fingerprint !== fingerprint) throw conflict();
      return inFlight.promise;
    }
    const promise = (async () => {
      const stored = await this.load(key);
      if (stored) {
        if (stored.fingerprint !== fingerprint) throw conflict();
        return stored.result;
      }
      const result = await fn();
      await this.save({ key, fingerprint, result, at: new Date().toISOString() });
      return result;
    })();
    this.running.set(key, { fingerprint, promise });
    try {
      return await promise;
    } finally {
      this.running.delete(key);
    }
  }
}
