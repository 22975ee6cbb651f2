import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { ApplyEvent } from './executor.ts';
import { createProgress, type ProgressMode } from './progress.ts';

const events: ApplyEvent[] = [
  { type: 'start', planId: 'p', members: 2, steps: 4, perDataCenter: { miami: { members: 1, steps: 2 }, richmond: { members: 1, steps: 2 } } },
  { type: 'step', address: 'web/0', dataCenter: 'miami', from: 'A', to: 'B', operation: 'none', status: 'done' },
  { type: 'step', address: 'web/0', dataCenter: 'miami', from: 'B', to: 'C', operation: 'none', status: 'done' },
  { type: 'member', address: 'web/0', dataCenter: 'miami', action: 'create', status: 'done', elapsedMs: 101 },
  { type: 'member', address: 'web/1', dataCenter: 'richmond', action: 'create', status: 'failed', elapsedMs: 87, detail: 'no' },
  { type: 'summary', planId: 'p', succeeded: 1, failed: 1, steps: 2, stepsFailed: 1, stepsSkipped: 0, elapsedMs: 10 },
];

/** A progress of `mode` with every event given, and what it wrote so far. */
function fed(mode: ProgressMode): { p: ReturnType<typeof createProgress>; text: () => string } {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => (text += c.toString()));
  const p = createProgress(mode, out, { intervalMs: 60_000, now: () => 0 });
  for (const e of events) p.onEvent(e);
  return { p, text: () => text };
}

function run(mode: ProgressMode): string {
  const { p, text } = fed(mode);
  p.finish();
  return text();
}

describe('apply progress', () => {
  it('json: one parseable event per line, in order', () => {
    const lines = run('json').trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as ApplyEvent).type)).toEqual(events.map((e) => e.type));
  });

  it('json: each line is the event with `at` (ISO time) last; lines are written by the end of the turn, and by finish()', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    const p = createProgress('json', out);
    p.onEvent(events[0]);
    p.onEvent(events[1]);
    await new Promise((r) => setImmediate(r));
    const first = text.trim().split('\n');
    expect(first).toHaveLength(2);
    for (const [i, line] of first.entries()) {
      const at = (JSON.parse(line) as { at: string }).at;
      expect(new Date(at).toISOString()).toBe(at);
      expect(line).toBe(JSON.stringify({ ...events[i], at }));
    }
    for (const e of events.slice(2)) p.onEvent(e);
    p.finish();
    await new Promise((r) => setImmediate(r));
    expect(text.trim().split('\n').map((l) => (JSON.parse(l) as ApplyEvent).type)).toEqual(events.map((e) => e.type));
  });

  it('plain: a line per data center at start and at the end, no escape codes', () => {
    const text = run('plain');
    expect(text).toBe(
      [
        'apply: miami    0/2 steps, 0/1 VMs (0s)',
        'apply: richmond 0/2 steps, 0/1 VMs (0s)',
        'apply: miami    2/2 steps, 1/1 VMs (0s)',
        'apply: richmond 0/2 steps, 1/1 VMs, 1 failed (0s)',
        '',
      ].join('\n'),
    );
  });

  // `fleet apply` finishes its progress in two finally blocks (the apply's,
  // then the command's, after the summary is printed): a second finish must
  // draw nothing, or plain output repeats its lines after "Apply complete" and
  // a TTY moves the cursor up over the summary to redraw the bars.
  it.each(['plain', 'tty', 'json'] as const)('%s: a second finish() writes nothing', (mode) => {
    const { p, text } = fed(mode);
    p.finish();
    const once = text();
    expect(once).not.toBe('');
    p.finish();
    expect(text()).toBe(once);
  });

  // The holder is what the record's lock row says: a terminal must not act on it.
  it.each(['plain', 'tty'] as const)('%s: a broken lock\'s holder is shown as text', (mode) => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    const p = createProgress(mode, out, { intervalMs: 60_000, now: () => 0 });
    p.onEvent({ type: 'lock-broken', lockId: 'l1', fleet: 'web', holder: 'ci@runner\x1b]0;owned\x07\r\nnote: all good pid 12' });
    p.finish();
    expect(text.split('\n')[0]).toBe('note: broke lock l1 on fleet web: its holder (ci@runner\\u001B]0;owned\\u0007\\u000D\\u000Anote: all good pid 12) no longer runs on this host');
    expect(text.replace(/\n/g, '')).not.toMatch(/\p{Cc}/u);
  });

  // `fleet apply` finishes its progress on every way out: "Nothing to apply.",
  // a refused plan, an error before the apply began. It wrote an empty line.
  it.each(['plain', 'tty', 'json'] as const)('%s: finish() before the apply started writes nothing', (mode) => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    createProgress(mode, out, { intervalMs: 60_000, now: () => 0 }).finish();
    expect(text).toBe('');
  });

  it('tty: a bar per data center, redrawn in place', () => {
    const text = run('tty');
    expect(text).toContain('\x1b[2A');
    expect(text).toContain('miami    [########################] 100% 2/2 steps, 1/1 VMs');
    expect(text).toContain('richmond [........................]   0% 0/2 steps, 1/1 VMs, 1 failed');
  });
});

describe('apply progress of a rollout', () => {
  const waveEvents: ApplyEvent[] = [
    { type: 'start', planId: 'p', members: 2, steps: 4, perDataCenter: { miami: { members: 2, steps: 4 } } },
    { type: 'wave-start', fleet: 'web', wave: 1, waves: 2, members: ['web/0'] },
    { type: 'member', address: 'web/0', dataCenter: 'miami', action: 'replace', status: 'done', elapsedMs: 5 },
    { type: 'wave-done', fleet: 'web', wave: 1, waves: 2, succeeded: 1, failed: 0, status: 'done' },
    { type: 'wave-start', fleet: 'web', wave: 2, waves: 2, members: ['web/1'] },
    { type: 'member', address: 'web/1', dataCenter: 'miami', action: 'replace', status: 'failed', elapsedMs: 5, detail: 'no' },
    { type: 'wave-done', fleet: 'web', wave: 2, waves: 2, succeeded: 0, failed: 1, status: 'failed' },
  ];
  const runWaves = (mode: ProgressMode) => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    const p = createProgress(mode, out, { intervalMs: 60_000, now: () => 0 });
    for (const e of waveEvents) p.onEvent(e);
    p.finish();
    return text;
  };

  it('plain: a line as each wave starts and ends', () => {
    const lines = runWaves('plain').split('\n').filter((l) => l.includes('rollout'));
    expect(lines).toEqual([
      'apply: rollout web wave 1/2 started: 1 member',
      'apply: rollout web wave 1/2 done: 1 done, 0 failed',
      'apply: rollout web wave 2/2 started: 1 member',
      'apply: rollout web wave 2/2 failed: 0 done, 1 failed',
    ]);
  });

  it('tty: a bar for the rollout\'s current wave, below the data centers', () => {
    const text = runWaves('tty');
    const last = text.split('\x1b[2K').at(-1)!;
    expect(last).toBe('web wave 2/2 [########################] 0/1 VMs, 1 failed (wave failed)\n');
  });
});

// A rollout of one member per wave (maxUnavailable: 1) over 10,000 members
// wrote two lines per member to a CI log, as fast as the waves went. Plain
// output says a rollout's first wave, a wave that failed or stopped it, and
// its last wave at once; the others at most once per interval, with what
// went on between.
describe('apply progress of a long rollout, plain', () => {
  function longRollout(waves: number, msPerWave: number, failAt?: number): string[] {
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    let t = 0;
    const p = createProgress('plain', out, { intervalMs: 5_000, now: () => t });
    p.onEvent({ type: 'start', planId: 'p', members: waves, steps: waves, perDataCenter: { miami: { members: waves, steps: waves } } });
    for (let w = 1; w <= waves; w++) {
      p.onEvent({ type: 'wave-start', fleet: 'web', wave: w, waves, members: [`web/${w - 1}`] });
      t += msPerWave;
      const failed = w === failAt;
      p.onEvent({ type: 'member', address: `web/${w - 1}`, dataCenter: 'miami', action: 'replace', status: failed ? 'failed' : 'done', elapsedMs: msPerWave });
      p.onEvent({ type: 'wave-done', fleet: 'web', wave: w, waves, succeeded: failed ? 0 : 1, failed: failed ? 1 : 0, status: failed ? 'failed' : 'done' });
    }
    p.finish();
    return text.split('\n').filter((l) => l.includes('rollout'));
  }

  it('10,000 waves of 100 ms: a line every 5 s, not two per wave', () => {
    const lines = longRollout(10_000, 100);
    // 1,000 s of waves: one wave (its start and end) per 5 s, and the last.
    expect(lines.length).toBeLessThanOrEqual(2 * (1_000 / 5) + 2);
    expect(lines.length).toBeGreaterThanOrEqual(2 * (1_000 / 5));
    expect(lines.slice(0, 3)).toEqual([
      'apply: rollout web wave 1/10000 started: 1 member',
      'apply: rollout web wave 1/10000 done: 1 done, 0 failed',
      'apply: rollout web wave 51/10000 started: 1 member (waves 2–50 done meanwhile)',
    ]);
    expect(lines.slice(-2)).toEqual([
      'apply: rollout web wave 10000/10000 started: 1 member (waves 9952–9999 done meanwhile)',
      'apply: rollout web wave 10000/10000 done: 1 done, 0 failed',
    ]);
  });

  it('a failed wave is said at once, whatever the interval', () => {
    const lines = longRollout(100, 10, 42);
    expect(lines).toContain('apply: rollout web wave 42/100 failed: 0 done, 1 failed (waves 2–41 done meanwhile)');
  });

  it('waves slower than the interval: every line, as before', () => {
    expect(longRollout(3, 6_000)).toEqual([
      'apply: rollout web wave 1/3 started: 1 member',
      'apply: rollout web wave 1/3 done: 1 done, 0 failed',
      'apply: rollout web wave 2/3 started: 1 member',
      'apply: rollout web wave 2/3 done: 1 done, 0 failed',
      'apply: rollout web wave 3/3 started: 1 member',
      'apply: rollout web wave 3/3 done: 1 done, 0 failed',
    ]);
  });
});

/** The screen a terminal shows after `text`: lines, with the cursor moves and clears progress uses (ESC[nA, ESC[2K, ESC[0J). */
function screen(text: string): string[] {
  const rows: string[] = [''];
  let row = 0;
  const esc = String.fromCharCode(27);
  const re = new RegExp(`${esc}\\[(\\d*)([AJK])|\\n|[^${esc}\\n]+`, 'gy');
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m[0] === '\n') {
      row++;
      rows[row] ??= '';
    } else if (m[2] === 'A') row = Math.max(0, row - Number(m[1] || 1));
    else if (m[2] === 'K') rows[row] = '';
    else if (m[2] === 'J') rows.splice(row, rows.length - row, '');
    else rows[row] = (rows[row] ?? '') + m[0];
  }
  return rows.filter((r) => r !== '');
}

// A Ctrl-C during an apply on a terminal: its notice was written below the
// bars and the next redraw (every 100 ms) moved up over it and wrote the
// bars on it, so it flashed and was gone.
describe('apply progress on a TTY: notices', () => {
  it('a notice stays on the screen, above the bars drawn again after it', () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    const p = createProgress('tty', out, { intervalMs: 60_000, now: () => 0 });
    p.onEvent(events[0]);
    p.note('\nSIGINT: no further VM will be started.\n');
    for (const e of events.slice(1)) p.onEvent(e);
    p.finish();
    expect(screen(text)).toEqual([
      'SIGINT: no further VM will be started.',
      'miami    [########################] 100% 2/2 steps, 1/1 VMs',
      'richmond [........................]   0% 0/2 steps, 1/1 VMs, 1 failed',
    ]);
  });

  it.each(['plain', 'tty'] as const)('%s: before the bars and after finish(), a notice is written as it is', (mode) => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    const p = createProgress(mode, out, { intervalMs: 60_000, now: () => 0 });
    p.note('first\n');
    p.finish();
    p.note('last\n');
    expect(text).toBe('first\nlast\n');
  });
});

// A bar line wider than the terminal wraps onto a second row, and the
// redraw, moving up one row per line, left stale rows behind it: a data
// center's line at 10,000 VMs is about 90 characters, past an 80-column
// terminal. Each line is cut to the terminal's width.
describe('apply progress on a narrow TTY', () => {
  it('every line fits the terminal, so the redraw lands where it drew', () => {
    const out = Object.assign(new PassThrough(), { columns: 60 });
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    const p = createProgress('tty', out, { intervalMs: 60_000, now: () => 0 });
    p.onEvent({ type: 'start', planId: 'p', members: 10_000, steps: 60_000, perDataCenter: { miami: { members: 10_000, steps: 60_000 } } });
    for (let i = 0; i < 10_000; i++) p.onEvent({ type: 'member', address: `web/${i}`, dataCenter: 'miami', action: 'create', status: 'failed', elapsedMs: 1 });
    p.finish();
    const wide = Object.assign(new PassThrough(), { columns: 80 });
    let wideText = '';
    wide.on('data', (c: Buffer) => (wideText += c.toString()));
    const q = createProgress('tty', wide, { intervalMs: 60_000, now: () => 0 });
    q.onEvent({ type: 'start', planId: 'p', members: 10_000, steps: 60_000, perDataCenter: { miami: { members: 10_000, steps: 60_000 } } });
    for (let i = 0; i < 10_000; i++) q.onEvent({ type: 'member', address: `web/${i}`, dataCenter: 'miami', action: 'create', status: 'failed', elapsedMs: 1 });
    q.finish();
    // On 80 columns only the bar narrows: every count is there.
    expect(screen(wideText)).toEqual(['miami [.....................]   0% 0/60000 steps, 10000/10000 VMs, 10000 failed']);
    const esc = String.fromCharCode(27);
    const rows = text.split('\n').map((l) => l.replace(new RegExp(`${esc}\\[\\d*[AJK]`, 'g'), ''));
    for (const r of rows) expect(r.length, r).toBeLessThan(60);
    expect(screen(text)).toHaveLength(1);
    // The bar narrows first (to 8), then the line is cut.
    expect(screen(text)[0]).toBe('miami [........]   0% 0/60000 steps, 10000/10000 VMs, 1000…');
  });
});
