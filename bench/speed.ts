// How fast this machine runs JavaScript now, printed by the benches beside
// their figures: the same code measured 2x apart on this workplace's
// machines from one session to the next (2026-12-02: `node -e 0` 0.071 s
// in one, 0.169 s in another), so a figure is read against this one.
//
// A fixed piece of work like the apply's per-message part: 5,000 times, a
// 1 KiB object turned into JSON, hashed with SHA-256 and parsed back; the
// median of 7 rounds after 4 to warm up.
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';

const SAMPLE = {
  requestId: '00000000-0000-4000-8000-000000000000',
  vmId: 'bench-apply-f-0000/17',
  from: 'PoweredOff',
  to: 'PoweredOn',
  operation: 'powerOn',
  dataCenter: 'dc-0',
  fencingToken: 123456,
  vm: { id: 'bench-apply-f-0000/17', address: 'f-0000/17', state: 'PoweredOff', cloudId: 'sim-dc-0-00000017', realImage: 'img-ubuntu-2204-dc-0', version: 3 },
  labels: { env: 'bench', team: 'team-0', tier: 'web', region: 'east' },
  history: Array.from({ length: 6 }, (_, i) => ({ at: '2026-12-02T12:00:00.000Z', from: `S${i}`, to: `S${i + 1}`, by: 'authority' })),
};

function round(n: number): number {
  const t0 = performance.now();
  let sink = 0;
  for (let i = 0; i < n; i++) {
    const text = JSON.stringify({ ...SAMPLE, seq: i });
    sink += createHash('sha256').update(text).digest('hex').charCodeAt(0);
    sink += (JSON.parse(text) as { seq: number }).seq;
  }
  if (sink < 0) throw new Error('unreachable');
  return performance.now() - t0;
}

/** Milliseconds for the fixed work (lower is faster). */
export function machineSpeedMs(): number {
  for (let i = 0; i < 4; i++) round(5000);
  const times = Array.from({ length: 7 }, () => round(5000)).sort((a, b) => a - b);
  return times[3];
}

/** The line the benches print. */
export function machineSpeedLine(): string {
  return `speed       ${machineSpeedMs().toFixed(0)} ms for bench/speed.ts's fixed work (JSON, SHA-256, parse of a 1 KiB object, 5,000 times): compare figures between machines by it`;
}
