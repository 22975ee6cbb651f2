// Results of mutating requests, kept by idempotency key on disk so a retried
// request, even to a restarted DMZ client, gets the first answer and never
// repeats the work.
//
// | key state                         | what a request with that key gets          |
// | --------------------------------- | ------------------------------------------ |
// | never seen                        | runs; the result is stored                 |
// | running (concurrent duplicate)    | waits for the first and gets its result    |
// | stored                            | the stored result                          |
// | seen with a different request     | 422 idempotency-conflict                   |
// | first run threw (nothing decided) | runs again (nothing was stored)            |
//
// Beside the results, the tries a step has made of its cloud call over sends
// answered 503 credentials-expiring (keepTries, triesMade: step.ts): a step
// sent again goes on with the tries it has left, also to a restarted client,
// so a cloud that keeps failing fails the step after its tries in all rather
// than be tried for as long as the CLI sends it. A line of its own in the
// same log, `{ key, tries: { fingerprint, made }, at }` (no top-level
// fingerprint: a version that knew no tries skips it), the latest one per key
// winning; a result stored under the key ends its count, and `made: 0` ends
// it without one. At most TRIES_KEPT keys are held, the oldest forgotten first.
//
// On disk: one append-only JSON-lines log, <stateDir>/requests.jsonl (the
// state folder is the data center's), one line per stored result, read once
// at start and kept in memory. A result is answered only after the append
// that carries it completed; results finishing in one turn of the event loop
// share one append (group commit, engine/durability/group-commit.ts), so a
// busy client writes once per turn instead of once per request. A line torn by a
// crash mid-append is skipped at load (its request had not been answered).
// Results stored by older versions (one file per key under
// <stateDir>/requests/) are read at start too.
import { closeSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { WireError } from '../../protocol/index.ts';
import { GroupCommit, makePrivate, openOwnFile } from '../../engine/durability/index.ts';

interface Stored<T> {
  key: string;
  fingerprint: string;
  result: T;
  at: string;
}

/** How many keys' counts of tries are held (IdempotencyStore.keepTries): the oldest are forgotten first. */
export const TRIES_KEPT = 10_000;

/** A key's count of tries, as its log line holds it. */
interface Tries {
  fingerprint: string;
  made: number;
}

export function idempotencyLogFile(stateDir: string): string {
  return join(stateDir, 'requests.jsonl');
}

export class IdempotencyStore<T> {
  private readonly running = new Map<string, { fingerprint: string; promise: Promise<T> }>();
  private readonly stored = new Map<string, Stored<T>>();
  /** Per key not stored yet, the tries its sends answered 503 credentials-expiring made (keepTries). */
  private readonly tries = new Map<string, Tries>();
  private readonly file: string;
  private loading: Promise<void> | undefined;
  /** The log's descriptor, open for appending from the first append until close. */
  private log: number | undefined;
  /** Lines not yet handed to an append. */
  private queue: string[] = [];
  /** The log does not end with a newline (torn last line): the next append starts with one. */
  private needsNewline = false;
  /**
   * Appends are synchronous: a page-cache write takes microseconds, while
   * fs/promises hands each call to the thread pool (20-35 us of CPU per
   * append, measured). A write gathers the results of a whole turn of the
   * event loop.
   */
  private readonly commits = new GroupCommit(async () => {
    const lines = this.queue;
    this.queue = [];
    const text = `${this.needsNewline ? '\n' : ''}${lines.join('')}`;
    try {
      // 0600: the results name VMs, cloud ids and data centers (docs/security.md, "Files").
      // Never through a symbolic link at its name (one planted in the state folder had its target appended to).
      this.log ??= openOwnFile(this.file, 'append');
      writeFileSync(this.log, text);
    } catch (err) {
      // It may have written part of a line: start the next append on a fresh line.
      this.needsNewline = true;
      throw err;
    }
    this.needsNewline = false;
  }, { gather: 'turn' });

  constructor(private readonly stateDir: string) {
    this.file = idempotencyLogFile(stateDir);
  }

  /** Appends made (tests read it). */
  get writes(): number {
    return this.commits.writes;
  }

  private load(): Promise<void> {
    this.loading ??= (async () => {
      await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
      // A state folder or log that was there before (made by hand, an older version) is made private too: the results name VMs, cloud ids and data centers.
      makePrivate(this.stateDir, { recursive: false });
      await this.loadLegacy();
      let text = '';
      try {
        text = await readFile(this.file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      for (const line of text.split('\n')) {
        if (line === '') continue;
        try {
          const e = JSON.parse(line) as Stored<T> & { tries?: Partial<Tries> };
          if (typeof e.key !== 'string') continue;
          if (typeof e.fingerprint === 'string') {
            this.stored.set(e.key, e);
            this.tries.delete(e.key);
          } else if (typeof e.tries?.fingerprint === 'string' && typeof e.tries.made === 'number' && !this.stored.has(e.key)) {
            this.hold(e.key, { fingerprint: e.tries.fingerprint, made: e.tries.made });
          }
        } catch {
          // a line torn by a crash mid-append: its request was never answered
        }
      }
      this.needsNewline = text !== '' && !text.endsWith('\n');
    })();
    return this.loading;
  }

  /** One file per key under <stateDir>/requests/ (before the log). */
  private async loadLegacy(): Promise<void> {
    const dir = join(this.stateDir, 'requests');
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return;
      throw err;
    }
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      try {
        const e = JSON.parse(await readFile(join(dir, name), 'utf8')) as Stored<T>;
        if (typeof e.key === 'string' && typeof e.fingerprint === 'string') this.stored.set(e.key, e);
      } catch {
        // unreadable leftovers are ignored, as before (they were written atomically)
      }
    }
  }

  private async save(entry: Stored<T>): Promise<void> {
    this.queue.push(`${JSON.stringify(entry)}\n`);
    await this.commits.commit();
    this.stored.set(entry.key, entry);
    this.tries.delete(entry.key);
  }

  /** Holds `key`'s count (made 0: forgets it), the oldest forgotten past TRIES_KEPT. */
  private hold(key: string, t: Tries): void {
    this.tries.delete(key);
    if (t.made <= 0) return;
    this.tries.set(key, t);
    if (this.tries.size > TRIES_KEPT) this.tries.delete(this.tries.keys().next().value as string);
  }

  /**
   * The tries of its cloud call that earlier sends of the request `key` / `fingerprint` made (kept by keepTries), 0
   * when none are kept. Read inside run's `fn` (the log is loaded then).
   */
  triesMade(key: string, fingerprint: string): number {
    const t = this.tries.get(key);
    return t?.fingerprint === fingerprint ? t.made : 0;
  }

  /**
   * Keeps that the request `key` / `fingerprint` has made `made` tries of its cloud call (0: forgets them), on disk
   * before it resolves: the step answering 503 credentials-expiring says so only after (see the header).
   */
  async keepTries(key: string, fingerprint: string, made: number): Promise<void> {
    await this.load();
    if (made <= 0 && !this.tries.has(key)) return;
    this.hold(key, { fingerprint, made });
    this.queue.push(`${JSON.stringify({ key, tries: { fingerprint, made }, at: new Date().toISOString() })}\n`);
    await this.commits.commit();
  }

  /** Runs `fn` once per key; `fingerprint` identifies the request the key was first used for. */
  async run(key: string, fingerprint: string, fn: () => Promise<T>): Promise<T> {
    const conflict = () =>
      new WireError('idempotency-conflict', `idempotency key ${key} was used for a different request`);
    const inFlight = this.running.get(key);
    if (inFlight) {
      if (inFlight.fingerprint !== fingerprint) throw conflict();
      return inFlight.promise;
    }
    const promise = (async () => {
      await this.load();
      const stored = this.stored.get(key);
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

  /** Waits for every append started, then closes the log (a later result opens it again). */
  async close(): Promise<void> {
    await this.commits.settled();
    const log = this.log;
    this.log = undefined;
    if (log !== undefined) closeSync(log);
  }
}
