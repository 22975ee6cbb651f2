// Many callers' writes, one statement: calls made while a batch runs (or in
// the same tick as the first) go together in the next one. Unlike
// GroupCommit, each call gets its own outcome: `run` answers per item, in
// order, a result or an Error, and only that item's caller sees that Error.
//
// What must stay true:
// - A call resolves only after the batch holding it completed (durability is
//   `run`'s: one statement, committed before it returns).
// - Statements cost a fixed part plus a small part per item, so batches are
//   as big as the load allows: a further batch starts beside running ones
//   only when at least `overlapAt` calls wait (and at most `parallel` run).
// - With a `keyOf`, two running batches never hold items of the same key
//   (for writes that lock shared rows, such as a fleet's version: no two
//   statements can then lock them in different orders), and calls of one key
//   keep the order they were made in. Without it and with `parallel` 1, all
//   calls keep their order.
// - When `run` itself throws, every call of that batch rejects with it; the
//   next call starts a new batch.
export interface BatchedOptions<I> {
  /** Most items in one batch. Default 500. */
  max?: number;
  /** Most batches running at once. Default 1. */
  parallel?: number;
  /** Calls waiting before a batch starts beside a running one. Default 1. */
  overlapAt?: number;
  /** Items of one key never run in two batches at once. */
  keyOf?: (item: I) => string;
  /** Keys held by running batches, shared with other Batched whose statements lock the same rows (default: this one's own). */
  locks?: KeyLocks;
}

/**
 * The keys the running batches of one or more Batched hold. Batched that
 * share one never run two batches with a key in common, and each starts its
 * waiting calls again when another releases keys.
 */
export class KeyLocks {
  readonly #held = new Set<ReadonlySet<string>>();
  readonly #waiters = new Set<() => void>();

  holds(key: string): boolean {
    for (const s of this.#held) if (s.has(key)) return true;
    return false;
  }

  take(keys: ReadonlySet<string>): void {
    this.#held.add(keys);
  }

  release(keys: ReadonlySet<string>): void {
    this.#held.delete(keys);
    for (const w of [...this.#waiters]) w();
  }

  /** `fn` runs after every release. */
  onRelease(fn: () => void): void {
    this.#waiters.add(fn);
  }
}

interface Call<I, R> {
  item: I;
  /** keyOf(item), made once: #take reads it on every pass over the queue. */
  key: string;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

export class Batched<I, R> {
  #queue: Call<I, R>[] = [];
  readonly #locks: KeyLocks;
  #running = 0;
  #scheduled = false;
  #batches = 0;
  readonly #max: number;
  readonly #parallel: number;
  readonly #overlapAt: number;
  readonly #keyOf: ((item: I) => string) | undefined;

  constructor(
    private readonly run: (items: I[]) => Promise<(R | Error)[]>,
    opts: BatchedOptions<I> = {},
  ) {
    this.#max = opts.max ?? 500;
    this.#parallel = opts.parallel ?? 1;
    this.#overlapAt = opts.overlapAt ?? 1;
    this.#keyOf = opts.keyOf;
    this.#locks = opts.locks ?? new KeyLocks();
    // Calls skipped for a key another Batched held may start once it lets go.
    if (opts.locks) this.#locks.onRelease(() => this.#start());
  }

  /** Batches run so far (tests and benchmarks read it). */
  get batches(): number {
    return this.#batches;
  }

  /** Resolves with the item's result once its batch completed; rejects with its own error, or the batch's. */
  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, key: this.#keyOf ? this.#keyOf(item) : '', resolve, reject });
      if (this.#scheduled || !this.#room()) return;
      this.#scheduled = true;
      // The rest of this tick's calls join the batch.
      setImmediate(() => {
        this.#scheduled = false;
        this.#start();
      });
    });
  }

  #room(): boolean {
    if (this.#running === 0) return this.#queue.length > 0;
    return this.#running < this.#parallel && this.#queue.length >= this.#overlapAt;
  }

  /** Starts batches while calls wait and there is room. */
  #start(): void {
    while (this.#room()) {
      const batch = this.#take();
      if (batch.calls.length === 0) return; // every waiting call's key is held by a running batch; its release starts them
      void this.#one(batch);
    }
  }

  /** Up to max waiting calls, in order, skipping keys a running batch holds. */
  #take(): { calls: Call<I, R>[]; keys: Set<string> | undefined } {
    if (!this.#keyOf) return { calls: this.#queue.splice(0, this.#max), keys: undefined };
    const held = (k: string) => this.#locks.holds(k);
    const calls: Call<I, R>[] = [];
    const keys = new Set<string>();
    const skipped = new Set<string>();
    const rest: Call<I, R>[] = [];
    for (const c of this.#queue) {
      const k = c.key;
      // A key skipped once stays skipped, so calls of one key keep their order.
      if (calls.length >= this.#max || skipped.has(k) || (!keys.has(k) && held(k))) {
        skipped.add(k);
        rest.push(c);
        continue;
      }
      keys.add(k);
      calls.push(c);
    }
    this.#queue = rest;
    return { calls, keys };
  }

  async #one(batch: { calls: Call<I, R>[]; keys: Set<string> | undefined }): Promise<void> {
    this.#running++;
    this.#batches++;
    if (batch.keys) this.#locks.take(batch.keys);
    try {
      const out = await this.run(batch.calls.map((c) => c.item));
      batch.calls.forEach((c, k) => {
        const r = out[k];
        if (r instanceof Error) c.reject(r);
        else c.resolve(r);
      });
    } catch (err) {
      for (const c of batch.calls) c.reject(err);
    } finally {
      this.#running--;
      if (batch.keys) this.#locks.release(batch.keys);
      this.#start();
    }
  }
}
