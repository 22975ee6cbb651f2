// Many callers' writes, one statement: calls made while a batch runs (or in
// the same tick as the first) go together in the next one. Unlike
// GroupCommit, each call gets its own outcome: `run` answers per item, in
// order, a result or an Error, and only that item's caller sees that Error.
//
// What must stay true:
// - A call resolves only after the batch holding it completed (durability is
//   `run`'s: one statement, committed before it returns).
// - With `parallel` 1 (the default) one batch runs at a time, so calls keep
//   the order they were made in; more lets batches overlap (for writes that
//   cannot conflict with each other, such as plain INSERTs).
// - When `run` itself throws, every call of that batch rejects with it; the
//   next call starts a new batch.
export class Batched<I, R> {
  #queue: { item: I; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  #running = 0;
  #scheduled = false;
  #batches = 0;

  constructor(
    private readonly run: (items: I[]) => Promise<(R | Error)[]>,
    private readonly max = 500,
    /** Batches running at once. */
    private readonly parallel = 1,
  ) {}

  /** Batches run so far (tests and benchmarks read it). */
  get batches(): number {
    return this.#batches;
  }

  /** Resolves with the item's result once its batch completed; rejects with its own error, or the batch's. */
  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (this.#scheduled || this.#running >= this.parallel) return;
      this.#scheduled = true;
      // The rest of this tick's calls join the batch.
      setImmediate(() => {
        this.#scheduled = false;
        this.#start();
      });
    });
  }

  /** Starts batches while there are calls waiting and room to run them. */
  #start(): void {
    while (this.#queue.length > 0 && this.#running < this.parallel) void this.#one(this.#queue.splice(0, this.max));
  }

  async #one(batch: { item: I; resolve: (r: R) => void; reject: (e: unknown) => void }[]): Promise<void> {
    this.#running++;
    this.#batches++;
    try {
      const out = await this.run(batch.map((b) => b.item));
      batch.forEach((b, k) => {
        const r = out[k];
        if (r instanceof Error) b.reject(r);
        else b.resolve(r);
      });
    } catch (err) {
      for (const b of batch) b.reject(err);
    } finally {
      this.#running--;
      this.#start();
    }
  }
}
