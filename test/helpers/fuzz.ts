// Shared by the generated bad-input tests (test/fuzz-*.cli.test.ts): the
// stack and fleet files they mutate, a seeded generator, and the judge of a
// run: what is wrong with how the CLI answered a bad input, or nothing.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { CliRun } from './cli.ts';
import { REPO } from './stack.ts';
import { seededRandom } from '../../providers/drivers/sim/sim.ts';

/** mulberry32 (the sim's seeded generator), so every run makes the same cases. */
export const rng: (seed: number) => () => number = seededRandom;

export const stackYaml = (name = 'fz') => `apiVersion: fleet/v1
kind: Stack
metadata:
  name: ${name}
spec:
  specs:
    - "specs/*.yaml"
  record: pglite://.fleet/record
  policyPack:
    path: ${join(REPO, 'policies', 'default')}
    config:
      max-disruption:
        enforcement: disabled
  site:
    name: charlotte
    location:
      lat: 35.2271
      lon: -80.8431
  apply:
    parallelism: 4
    lockTimeoutSeconds: 0
  dataCenters:
    - name: miami
      address: embedded
      location:
        lat: 25.7617
        lon: -80.1918
      hardware:
        - general
      capacity:
        vms: 50
      sim:
        latencyMs: 1
        bootMs: 1
`;

export const fleetYaml = `apiVersion: fleet/v1
kind: Fleet
metadata:
  name: web
  owner: team-web
  labels:
    tier: front
spec:
  count: 2
  minCount: 1
  image: ubuntu-22.04
  size:
    cpu: 2
    memoryGiB: 4
    diskGiB: 20
  hardware:
    - general
  placement:
    strategy: spread
    dataCenters:
      - miami
    near: miami
  state: Running
  encryptedDisk: true
  protect: false
  rollout:
    maxUnavailable: 1
    maxSurge: 25%
    failureThreshold: 1
`;

/** Every file and folder under `dir` (paths relative to it), `.fleet` left out unless asked. */
export function listTree(dir: string, skip: readonly string[] = []): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const rel = relative(dir, p);
      if (skip.includes(rel)) continue;
      out.push(rel);
      if (e.isDirectory() && !lstatSync(p).isSymbolicLink()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** Every file under `dir` with its size and content hash: what a command wrote there. */
export function treeDigest(dir: string): string {
  const h = createHash('sha256');
  for (const rel of listTree(dir)) {
    const p = join(dir, rel);
    const st = lstatSync(p);
    h.update(`${rel}\0${st.isFile() ? st.size : st.isDirectory() ? 'dir' : 'other'}\0`);
    if (st.isFile()) h.update(readFileSync(p));
  }
  return h.digest('hex');
}

export const CRASH = /\bcli\.internal\b|TypeError|RangeError|ReferenceError|SyntaxError: (?!.*JSON)|Unhandled|Maximum call stack|heap out of memory|^ {4}at .+:\d+:\d+\)?$/m;

export interface Outcome {
  case: string;
  problem: string;
  stderr?: string;
}

/**
 * The longest a diagnostic's line may be: one that quotes a value, key or
 * path quotes it bounded (engine/diags/quote.ts), however long the input.
 */
export const MAX_DIAGNOSTIC_LINE = 1024;

/** A line of stderr, or a diagnostic's detail, file or address in JSON output, MAX_DIAGNOSTIC_LINE bytes or longer. */
function overlong(r: CliRun): string | undefined {
  const lines = r.stderr.split('\n');
  for (const l of r.stdout.split('\n')) {
    // JSON output: the diagnostics' fields (the document around them may hold the input's data).
    const m = /^\s*"(?:detail|file|address)": ("(?:[^"\\]|\\.)*")/.exec(l) ?? /"type":"diagnostic"/.exec(l);
    if (m?.[1]) lines.push(JSON.parse(m[1]) as string);
    else if (m) {
      const e = JSON.parse(l) as { detail?: string; file?: string; address?: string };
      lines.push(e.detail ?? '', e.file ?? '', e.address ?? '');
    }
  }
  const long = lines.find((l) => Buffer.byteLength(l) >= MAX_DIAGNOSTIC_LINE);
  return long === undefined ? undefined : `${long.slice(0, 200)}… (${Buffer.byteLength(long)} bytes)`;
}

/** What is wrong with a run that should have refused its input, or undefined. */
export function judge(name: string, r: CliRun, opts: { valid?: boolean | 'maybe'; json?: boolean; located?: boolean }): Outcome | undefined {
  const all = `${r.stdout}\n${r.stderr}`;
  if (CRASH.test(all)) return { case: name, problem: 'crash', stderr: all.slice(0, 2000) };
  const long = overlong(r);
  if (long) return { case: name, problem: 'a diagnostic line of 1 KiB or more', stderr: long };
  if (opts.valid === 'maybe' && r.code === 0) return undefined;
  if (opts.valid === true) {
    if (r.code !== 0) return { case: name, problem: `exit ${r.code}, expected 0`, stderr: all.slice(0, 2000) };
    return undefined;
  }
  if (r.code !== 1) return { case: name, problem: `exit ${r.code}, expected 1`, stderr: all.slice(0, 2000) };
  if (opts.json) {
    let doc: { diagnostics?: { severity: string; code: string; file?: string; line?: number; address?: string }[] };
    try {
      doc = JSON.parse(r.stdout) as typeof doc;
    } catch {
      return { case: name, problem: 'stdout is not one JSON document', stderr: all.slice(0, 2000) };
    }
    const errors = (doc.diagnostics ?? []).filter((d) => d.severity === 'error');
    if (errors.length === 0) return { case: name, problem: 'no error diagnostic', stderr: all.slice(0, 2000) };
    if (opts.located !== false) {
      const unlocated = errors.filter((d) => d.file === undefined && d.address === undefined);
      if (unlocated.length) return { case: name, problem: `error without a place: ${unlocated.map((d) => d.code).join(', ')}`, stderr: all.slice(0, 2000) };
    }
    return undefined;
  }
  if (!/^error\[[a-z0-9.-]+\]: /m.test(r.stderr)) return { case: name, problem: 'no error[code] on stderr', stderr: all.slice(0, 2000) };
  if (opts.located !== false && !/^ {2}at \S/m.test(r.stderr)) return { case: name, problem: 'no place (  at …) on stderr', stderr: all.slice(0, 2000) };
  return undefined;
}

/** Like judge, for `fleet apply --format json`: one event per line, the refusal a diagnostic event with a place. */
export function judgeEvents(name: string, r: CliRun): Outcome | undefined {
  const all = `${r.stdout}\n${r.stderr}`;
  if (CRASH.test(all)) return { case: name, problem: 'crash', stderr: all.slice(0, 2000) };
  const long = overlong(r);
  if (long) return { case: name, problem: 'a diagnostic line of 1 KiB or more', stderr: long };
  if (r.code !== 1) return { case: name, problem: `exit ${r.code}, expected 1`, stderr: all.slice(0, 2000) };
  let events: { type: string; severity?: string; code?: string; file?: string; address?: string }[];
  try {
    events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as (typeof events)[number]);
  } catch {
    return { case: name, problem: 'stdout is not JSON lines', stderr: all.slice(0, 2000) };
  }
  const errors = events.filter((e) => e.type === 'diagnostic' && e.severity === 'error');
  if (errors.length === 0) return { case: name, problem: 'no error diagnostic event', stderr: all.slice(0, 2000) };
  const unlocated = errors.filter((d) => d.file === undefined && d.address === undefined);
  if (unlocated.length) return { case: name, problem: `error without a place: ${unlocated.map((d) => d.code).join(', ')}`, stderr: all.slice(0, 2000) };
  return undefined;
}
