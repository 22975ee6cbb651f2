// Group commit for state that must be durable before a change is answered
// (the record's apply journal, the sim driver's state file, the DMZ client's
// idempotency log).
//
// `commit()` resolves once a write that started after the call has completed,
// so everything changed in memory before the call is on disk. One write runs
// at a time; every commit() made while it runs shares the next write. A
// burst of N changes thus costs about two writes instead of N, and answers
// still wait for durability. The write function reads the state to write
// when it starts (a snapshot of the whole state, or the lines queued so far).
//
// A write that completes at once (a synchronous append to a local file: a
// few microseconds, where each fs/promises call costs 20-100 us of CPU
// handing it to the thread pool) leaves no write running for later changes
// to join. With `gather: 'turn'` a write starts only at the end of the event
// loop's current turn (setImmediate), so every change made by this turn's
// callbacks (requests, timers) shares it.
export interface GroupCommitOptions {
  /** 'microtasks' (default): a write starts once the current microtasks ran; 'turn': at the end of this turn of the event loop. */
  gather?: 'microtasks' | 'turn';
}

const endOfTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class GroupCommit {
  /** The latest write started or queued. */
  private last: Promise<void> | undefined;
  /** The queued write that will include a change made now; undefined when none is queued. */
  private queued: Promise<void> | undefined;
  private count = 0;

  private readonly gatherTurn: boolean;

  constructor(
    private readonly write: () => Promise<void>,
    opts: GroupCommitOptions = {},
  ) {
    this.gatherTurn = opts.gather === 'turn';
  }

  /** Writes started so far (tests and benchmarks read it). */
  get writes(): number {
    return this.count;
  }

  /** Resolves after a write that includes every change made before this call; rejects when that write fails. */
  commit(): Promise<void> {
    if (this.queued) return this.queued;
    let before = (this.last ?? Promise.resolve()).catch(() => undefined);
    if (this.gatherTurn) before = before.then(endOfTurn);
    const next = before.then(() => {
      // From here on a change needs another write: this one reads the state now.
      this.queued = undefined;
      this.count++;
      return this.write();
    });
    this.queued = next;
    const tracked = next.finally(() => {
      if (this.last === tracked) this.last = undefined;
    });
    tracked.catch(() => undefined);
    this.last = tracked;
    return next;
  }

  /** Resolves when no write is running or queued (failures ignored). */
  async settled(): Promise<void> {
    while (this.last) await this.last.catch(() => undefined);
  }
}
