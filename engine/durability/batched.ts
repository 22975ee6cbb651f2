// Many callers' writes, one statement: calls made while a batch runs (or in
// the same tick as the first) go together in the next one. Unlike
// GroupCommit, each call gets its own outcome: `run` answers per item, in
// order, a result or an Error, and only that item's caller sees that Error.
//
// What must stay true:
// - A call resolves only after the batch holding it completed (durability is
//   `run`'s: one statement, committed before it returns).
// - One batch runs at a time, so calls keep the order they were made in.
// - When `run` itself throws, every call of that batch rejects with it; the
//   next call starts a new batch.
export class Batched<I, R> {
  #queue: { item: I; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  #running = false;
  #batches = 0;

  constructor(
    private readonly run: (items: I[]) => Promise<(R | Error)[]>,
    private readonly max = 500,
  ) {}

  /** Batches run so far (tests and benchmarks read it). */
  get batches(): number {
    return this.#batches;
  }

  /** Resolves with the item's result once its batch completed; rejects with its own error, or the batch's. */
  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (this.#running) return;
      this.#running = true;
      // The rest of this tick's calls join the first batch.
      setImmediate(() => void this.#drain());
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.max);
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
      }
    }
    this.#running = false;
  }
}
