// How `fleet apply` shows its progress:
// | output          | what                                                        |
// | --------------- | ----------------------------------------------------------- |
// | --format json   | one JSON event per line on stdout                           |
// | a TTY (stderr)  | one progress bar per data center, and one per rollout's     |
// |                 | current wave, redrawn in place                              |
// | otherwise (CI)  | a plain line per data center every few seconds, and at end; |
// |                 | a line as a rollout wave starts and ends: its first, last,  |
// |                 | failed or stopping wave, and one wave per interval besides  |
import type { Writable } from 'node:stream';
import { escapeUnseen } from '../diags/index.ts';
import type { ApplyEvent } from './executor.ts';

export type ProgressMode = 'json' | 'tty' | 'plain';

interface DcProgress {
  total: number;
  done: number;
  failed: number;
  members: number;
  membersDone: number;
}

export interface Progress {
  onEvent(e: ApplyEvent): void;
  /** Draws the final state and stops timers; once (later calls do nothing). */
  finish(): void;
  /**
   * Writes a notice (whole lines) to the progress's stream, above the bars
   * on a TTY: they are cleared, the notice written, and they are drawn again
   * below it. Written straight to the stream instead, the next redraw moved
   * up over the notice and wrote the bars on it (a Ctrl-C's "no further VM
   * will be started" flashed and was gone). Text and TTY modes only: a JSON
   * progress writes to stdout, where notices do not go.
   */
  note(text: string): void;
}

/** The wave a rollout is in, and how far its members got. */
interface WaveProgress {
  wave: number;
  waves: number;
  members: Set<string>;
  done: number;
  failed: number;
  status: 'running' | 'done' | 'failed' | 'stopped';
}

export function createProgress(mode: ProgressMode, out: Writable, opts: { intervalMs?: number; now?: () => number } = {}): Progress {
  if (mode === 'json') return jsonProgress(out);
  const dcs = new Map<string, DcProgress>();
  const waves = new Map<string, WaveProgress>();
  const now = opts.now ?? Date.now;
  const start = now();
  let drawnLines = 0;
  let dirty = false;

  const line = (name: string, p: DcProgress, width: number): string => {
    const share = p.total === 0 ? 1 : p.done / p.total;
    const secs = ((now() - start) / 1000).toFixed(0);
    const tail = `${p.done}/${p.total} steps, ${p.membersDone}/${p.members} VMs${p.failed ? `, ${p.failed} failed` : ''}`;
    if (mode === 'plain') return `apply: ${name.padEnd(width)} ${tail} (${secs}s)`;
    const n = 24;
    const full = Math.round(share * n);
    return `${name.padEnd(width)} [${'#'.repeat(full)}${'.'.repeat(n - full)}] ${String(Math.round(share * 100)).padStart(3)}% ${tail}`;
  };

  const waveBar = (fleet: string, w: WaveProgress): string => {
    const n = 24;
    const total = w.members.size || 1;
    const full = Math.round(((w.done + w.failed) / total) * n);
    const tail = { running: '', done: ' (done)', failed: ' (wave failed)', stopped: ' (rollout stopped)' }[w.status];
    return `${fleet} wave ${w.wave}/${w.waves} [${'#'.repeat(full)}${'.'.repeat(n - full)}] ${w.done}/${w.members.size} VMs${w.failed ? `, ${w.failed} failed` : ''}${tail}`;
  };

  /**
   * A TTY line cut to the terminal's width (less one column: a line that fills
   * it wraps on some terminals). A wrapped line takes two rows, and the
   * redraw, moving up one row per line, left stale rows behind.
   */
  const fit = (l: string): string => {
    const columns = (out as { columns?: number }).columns;
    if (!columns || columns < 2) return l;
    let chars = [...l];
    if (chars.length < columns) return l;
    // The bar gives up its width first (down to 8), so the counts stay whole.
    const over = chars.length - (columns - 1);
    const narrowed = l.replace(/\[([#.]+)\]/, (_, bar: string) => {
      const n = Math.max(8, bar.length - over);
      const full = Math.round((bar.split('#').length - 1) * (n / bar.length));
      return `[${'#'.repeat(full)}${'.'.repeat(n - full)}]`;
    });
    chars = [...narrowed];
    return chars.length < columns ? narrowed : `${chars.slice(0, columns - 2).join('')}…`;
  };

  const draw = () => {
    if (!dirty) return;
    dirty = false;
    const width = Math.max(0, ...[...dcs.keys()].map((k) => k.length));
    const lines = [...dcs].sort(([a], [b]) => a.localeCompare(b)).map(([name, p]) => line(name, p, width));
    // Plain output says each wave as it starts and ends (in onEvent); only a TTY redraws them.
    if (mode === 'tty') lines.push(...[...waves].sort(([a], [b]) => a.localeCompare(b)).map(([fleet, w]) => waveBar(fleet, w)));
    // Nothing started (nothing to apply, an error before the start): no empty line.
    if (lines.length === 0) return;
    if (mode === 'tty') {
      // Move up over what we drew last time and redraw in place.
      const up = drawnLines > 0 ? `\x1b[${drawnLines}A` : '';
      out.write(`${up}${lines.map((l) => `\x1b[2K${fit(l)}`).join('\n')}\n`);
      drawnLines = lines.length;
    } else {
      out.write(`${lines.join('\n')}\n`);
    }
  };

  let finished = false;
  const intervalMs = opts.intervalMs ?? (mode === 'tty' ? 100 : 5000);
  const timer = setInterval(draw, intervalMs);
  timer.unref();

  /**
   * Plain output's rollout lines. A rollout of one member per wave over
   * 10,000 members wrote two lines per member, as fast as waves went: a wave
   * is said (its start and its end) when intervalMs has passed since the
   * last wave of its fleet that was; the first and the last wave always, and
   * the end of a wave that failed or stopped the rollout. A line after waves left
   * unsaid names them (they all ended `done`: any other end is said).
   */
  const said = new Map<string, { at: number; shown: number; doneUpTo: number }>();
  const meanwhile = (fleet: string, wave: number): string => {
    const from = (said.get(fleet)?.doneUpTo ?? 0) + 1;
    const to = wave - 1;
    if (to < from) return '';
    return ` (${from === to ? `wave ${from}` : `waves ${from}–${to}`} done meanwhile)`;
  };

  return {
    onEvent(e) {
      if (e.type === 'start') {
        for (const [dc, t] of Object.entries(e.perDataCenter)) dcs.set(dc, { total: t.steps, done: 0, failed: 0, members: t.members, membersDone: 0 });
        dirty = true;
        draw();
      } else if (e.type === 'step' && e.status !== 'started') {
        const p = dcs.get(e.dataCenter);
        if (p && e.status === 'done') p.done++;
        dirty = true;
      } else if (e.type === 'lock-broken') {
        // The holder is what the record's lock row says (user@host pid): shown as text, never as a control sequence.
        out.write(`note: broke lock ${escapeUnseen(e.lockId)} on fleet ${escapeUnseen(e.fleet)}: its holder (${escapeUnseen(e.holder)}) no longer runs on this host\n`);
      } else if (e.type === 'protect') {
        // Before the first step (no bars drawn yet): what the plan's fleetChanges wrote to the record.
        out.write(`apply: recorded protect: ${e.protect.to} for fleet ${escapeUnseen(e.fleet)}\n`);
      } else if (e.type === 'member') {
        const p = dcs.get(e.dataCenter);
        if (p) {
          p.membersDone++;
          if (e.status === 'failed') p.failed++;
        }
        for (const w of waves.values()) {
          if (!w.members.has(e.address) || w.status !== 'running') continue;
          if (e.status === 'failed') w.failed++;
          else w.done++;
        }
        dirty = true;
      } else if (e.type === 'wave-start') {
        waves.set(e.fleet, { wave: e.wave, waves: e.waves, members: new Set(e.members), done: 0, failed: 0, status: 'running' });
        const last = said.get(e.fleet);
        if (mode === 'plain' && (last === undefined || e.wave === e.waves || now() - last.at >= intervalMs)) {
          out.write(`apply: rollout ${e.fleet} wave ${e.wave}/${e.waves} started: ${e.members.length} member${e.members.length === 1 ? '' : 's'}${meanwhile(e.fleet, e.wave)}\n`);
          said.set(e.fleet, { at: now(), shown: e.wave, doneUpTo: e.wave - 1 });
        }
        dirty = true;
      } else if (e.type === 'wave-done') {
        const w = waves.get(e.fleet);
        if (w) w.status = e.status;
        const last = said.get(e.fleet);
        if (mode === 'plain' && (last?.shown === e.wave || e.status !== 'done')) {
          const detail = e.detail ? `; ${e.detail}` : '';
          out.write(`apply: rollout ${e.fleet} wave ${e.wave}/${e.waves} ${e.status}: ${e.succeeded} done, ${e.failed} failed${detail}${meanwhile(e.fleet, e.wave)}\n`);
          said.set(e.fleet, { at: last?.at ?? now(), shown: last?.shown ?? 0, doneUpTo: e.wave });
        }
        dirty = true;
      }
    },
    note(text) {
      if (mode === 'tty' && !finished && drawnLines > 0) {
        // Up to the first bar, clear from there down; the next draw starts below the notice.
        out.write(`\x1b[${drawnLines}A\x1b[0J${text}`);
        drawnLines = 0;
        dirty = true;
        draw();
        return;
      }
      out.write(text);
    },
    finish() {
      // Once: `fleet apply` calls it again after printing its summary, which a redraw would repeat (plain) or overwrite (tty).
      if (finished) return;
      finished = true;
      clearInterval(timer);
      dirty = true;
      draw();
    },
  };
}

/** Flush the JSON lines once this much is pending, without waiting for the next turn of the event loop. */
const JSON_FLUSH_BYTES = 64 * 1024;

/**
 * One JSON event per line, `at` last. Lines are written together at the end
 * of the event loop's turn (or past JSON_FLUSH_BYTES) rather than one write
 * each: stdout to a file or a pipe is a synchronous system call per write,
 * and a busy apply emits three events per step. A reader still sees each
 * event within a turn of the loop; finish() writes what is pending.
 */
function jsonProgress(out: Writable): Progress {
  let pending = '';
  let scheduled: NodeJS.Immediate | undefined;
  let lastMs = -1;
  let lastIso = '';
  const flush = () => {
    if (scheduled) clearImmediate(scheduled);
    scheduled = undefined;
    if (pending === '') return;
    const text = pending;
    pending = '';
    out.write(text);
  };
  return {
    onEvent(e) {
      const ms = Date.now();
      if (ms !== lastMs) {
        lastMs = ms;
        lastIso = new Date(ms).toISOString();
      }
      // Same text as JSON.stringify({ ...e, at }): events have no `at` of their own.
      const json = JSON.stringify(e);
      pending += `${json.slice(0, -1)},"at":"${lastIso}"}\n`;
      if (pending.length >= JSON_FLUSH_BYTES) flush();
      else scheduled ??= setImmediate(flush);
    },
    finish: flush,
    note: () => {
      throw new Error('bug: a JSON progress takes no notices (they go to stderr)');
    },
  };
}
