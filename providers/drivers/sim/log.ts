// How the sim's data center reaches its disk (the files are state-file.ts's):
// changed VMs are appended to the log by group commit (a change is answered
// once an append including it completed), and the log is folded into the
// snapshot (temp file + rename, then the log removed) when it grows past
// COMPACT_RATIO times the snapshot, after a failed append, and on request.
import { randomUUID } from 'node:crypto';
import { rename, unlink, writeFile } from 'node:fs/promises';
import { GroupCommit, writeOwnFile } from '../../../engine/durability/index.ts';
import { COMPACT_MIN_BYTES, COMPACT_RATIO, serialize, type SimVm } from './state-file.ts';

export class SimLog {
  /** VMs changed since the last write started: the next append carries them as they are then. */
  private dirty = new Set<SimVm>();
  /** The last seq given to a log line (or held by the snapshot). */
  private seq: number;
  private logBytes = 0;
  private snapshotBytes = 0;
  /** The next write rewrites the snapshot instead of appending. */
  private compactNext = false;
  /** The log does not end with a newline (an append failed part-way): the next append starts with one. */
  private needsNewline = false;
  /**
   * Appends of changed VMs, or snapshots, each of the state as it is when it
   * starts. An append is synchronous (microseconds for a page-cache write,
   * against ~100 us of CPU for fs/promises' open + write + close through the
   * thread pool), so a write gathers the changes of a whole turn of the
   * event loop rather than those made while the previous one ran.
   */
  private readonly commits = new GroupCommit(() => this.write(), { gather: 'turn' });

  constructor(
    private readonly dataCenter: string,
    private readonly file: string,
    private readonly logFile: string,
    /** Every VM of the data center (the snapshot writes them all); the driver owns the array. */
    private readonly vms: readonly SimVm[],
    seq: number,
  ) {
    this.seq = seq;
  }

  /** Writes (appends and snapshots) started. */
  get writes(): number {
    return this.commits.writes;
  }

  /** `vm` changed (or is new): the next write carries it. */
  changed(vm: SimVm): void {
    this.dirty.add(vm);
  }

  /** Resolves once a write holding every change made so far completed. */
  commit(): Promise<void> {
    return this.commits.commit();
  }

  /** Folds the log into the snapshot now (after the writes in flight). */
  compact(): Promise<void> {
    this.compactNext = true;
    return this.commits.commit();
  }

  /** Waits for the writes in flight, then folds the log into the snapshot (best effort: the log holds every answered change). */
  async close(): Promise<void> {
    await this.commits.settled();
    if (this.logBytes > 0 || this.compactNext) await this.compact().catch(() => undefined);
  }

  /** One write: the changed VMs appended to the log, or a snapshot when due. */
  private async write(): Promise<void> {
    if (this.compactNext || this.logBytes > COMPACT_RATIO * Math.max(this.snapshotBytes, COMPACT_MIN_BYTES)) {
      await this.snapshot();
      return;
    }
    if (this.dirty.size === 0) return;
    const changed = this.dirty;
    this.dirty = new Set();
    let text = this.needsNewline ? '\n' : '';
    for (const vm of changed) text += `{"seq":${++this.seq},"vm":${JSON.stringify(vm)}}\n`;
    try {
      // Opened per append (not kept open): a log removed under us (with its folder) fails the write instead of vanishing.
      // Never through a symbolic link at its name (one planted in the state folder had its target appended to).
      writeOwnFile(this.logFile, text, 'append');
    } catch (err) {
      // Part of it may be written: the next write rewrites the snapshot, which
      // holds these VMs again (the log may be gone with its folder, too).
      this.needsNewline = true;
      this.compactNext = true;
      throw err;
    }
    this.logBytes += text.length;
  }

  /** Every VM into the snapshot (temp file + rename), then the log removed: what it held is in the snapshot. */
  private async snapshot(): Promise<void> {
    this.dirty = new Set();
    const text = serialize(this.dataCenter, this.seq, this.vms);
    const tmp = `${this.file}.${process.pid}.${randomUUID()}.tmp`;
    try {
      // A new file (O_EXCL: never through a symbolic link at the temp name); the rename replaces a link at the name.
      await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
      await rename(tmp, this.file);
      await unlink(this.logFile).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    } catch (err) {
      this.compactNext = true;
      throw err;
    }
    this.compactNext = false;
    this.needsNewline = false;
    this.logBytes = 0;
    this.snapshotBytes = text.length;
  }
}
