// Benchmark of the policy engine's custom rules at plan time (not part of the
// test run; asserts nothing about time). A stack of `--fleets` fleets of
// `--members` members in one data center, planned in-process against an
// empty record (every member a create: 6 requests each along the default
// pack's diagram) and against a record that already holds every member (each
// a noop, every row read: what a plan reads while a custom checkChange is
// enabled). For each, evaluateRules alone, `--runs` times, with the built-in
// rules and then with one custom rule more of each shape, each check
// returning no finding:
//   checkPlan only        the frozen copy of the plan and context, one deadline
//   checkChange           + one call per change
//   checkRequest          + one call per request apply would send (the preview)
//   checkChange+Request   both
//   checkChange reading   checkChange reading a few fields of each change
//   checkPlan reading all checkPlan reading every change and record row
// and first what the read-only inputs of the custom rules cost alone.
// Prints the median wall and CPU time of each, and what the custom rule adds
// over the built-in rules, per change or request.
//   npm run bench:policy [-- --fleets 100 --members 100 --runs 5]
//
// 2026-12-06, the 2-core machine shared (load average 13-15), runs of the
// old and new engine/policy/evaluate.ts alternated, CPU medians of 5, 10,000
// creates (60,000 requests), over the built-in rules' 8-11 ms:
//   checkRequest           +885 / +940 ms (14.8 / 15.7 µs per request)
//                       -> +80 / +90 ms (1.3 / 1.5 µs per request)
//   checkChange+Request    +735 / +799 ms -> +65 / +79 ms
//   checkPlan only         +42-60 ms both (the frozen copy: what is left)
// The cost was not the deadline (one node:vm call per rule and plan,
// already) but requestsOf building each request's facts by object spread
// from several sources (10-30 µs each on Node 20) and looking the fleet's
// owner up by a search of every fleet per change.
//
// 2026-12-06, load average 10-16 on the 2 cores, 3 runs of the frozen copy
// (1bee088) and of the read-only view alternated, each a CPU median of 5,
// 100,000 changes (--fleets 100 --members 1000), median of the 3 runs:
//                             creates (600,000 requests)   noops (100,000 rows)
//   read-only inputs alone      596 -> 0.0 ms                966 -> 0.0 ms
//   + checkPlan only            541 -> 24 ms                1157 -> 26 ms
//   + checkChange               679 -> 174 ms               1192 -> 107 ms
//   + checkRequest              769 -> 327 ms               1169 -> 35 ms
//   + checkChange+Request       785 -> 354 ms               1083 -> 112 ms
//   + checkChange reading       534 -> 210 ms               1221 -> 169 ms
//   + checkPlan reading all     560 -> 189 ms               1206 -> 326 ms
//   (built-in rules only: 22 / 26 ms and 48 / 47 ms)
// What is left is a Proxy per change read (~1 µs) and a trap per field read.
//
// 2026-12-06, load average 10-14 on the 2 cores, 4 pairs of main and of the
// view whose Proxy holds a stand-in (read-only.ts: every property of every
// object, frozen or defined not writable, reads as a view) alternated, CPU
// medians of 5, 100,000 changes, median of the 4 pairs (ms):
//                             creates        noops
//   + checkChange             85 -> 104      84 -> 97   (a stand-in per view: ~0.15 µs)
//   + checkChange reading    148 -> 147     119 -> 124
//   + checkPlan reading all  142 -> 153     219 -> 242
//   + checkRequest           196 -> 203      26 -> 28
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { computePlan } from '../../engine/plan/index.ts';
import { defaultPolicy } from '../../engine/plan/policy-default.ts';
import type { PlanContext } from '../../engine/plan/policy-port.ts';
import type { Change, PlanDocument } from '../../engine/model/index.ts';
import { evaluateRules, readOnlyView, type EvalContext } from '../../engine/policy/evaluate.ts';
import type { LoadedPack, Rule, RuleContext } from '../../engine/policy/types.ts';
import type { PlanVmRow } from '../../engine/record/types.ts';
import { loadStack, specHash } from '../../engine/spec/index.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const FLEETS = arg('fleets', 100);
const MEMBERS = arg('members', 100);
const RUNS = arg('runs', 5);
const size = { cpu: 2, memoryGiB: 4, diskGiB: 20 };
const fleetName = (i: number): string => `f-${String(i).padStart(4, '0')}`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const load = (): string => `load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} on ${cpus().length} cores`;

function rule(name: string, checks: Partial<Pick<Rule, 'checkChange' | 'checkPlan' | 'checkRequest'>>): Rule {
  return { name, description: 'bench', configSchema: { type: 'object' }, ...checks };
}

const none = (): [] => [];
let sink = 0;
/** A check that reads what most rules read of a change: its fields, its size, its image, its steps. */
const readChange = (c: Change): [] => {
  sink += c.size.cpu + c.size.memoryGiB + c.image.logical.length + c.address.length + c.steps.length + (c.steps[0]?.from.length ?? 0);
  return [];
};
/** A check that reads every change and every record row (a rule counting totals). */
const readAll = (p: PlanDocument, ctx: RuleContext): [] => {
  for (const c of p.changes) readChange(c);
  for (const r of ctx.record) sink += r.size.cpu + r.state.length + r.fleet.length;
  return [];
};
const SHAPES: [string, Rule | undefined][] = [
  ['built-in rules only', undefined],
  ['+ checkPlan only', rule('bench', { checkPlan: none })],
  ['+ checkChange', rule('bench', { checkChange: none })],
  ['+ checkRequest', rule('bench', { checkRequest: none })],
  ['+ checkChange+Request', rule('bench', { checkChange: none, checkRequest: none })],
  ['+ checkChange reading', rule('bench', { checkChange: readChange })],
  ['+ checkPlan reading all', rule('bench', { checkPlan: readAll })],
];

function withRule(pack: LoadedPack, r: Rule | undefined): LoadedPack {
  if (!r) return pack;
  return { ...pack, rules: new Map([...pack.rules, [r.name, { rule: r, enforcement: 'advisory', config: {} }]]) };
}

function setup(dir: string): void {
  mkdirSync(join(dir, 'specs'), { recursive: true });
  writeFileSync(
    join(dir, 'stack.yaml'),
    `apiVersion: fleet/v1
kind: Stack
metadata: { name: bench }
spec:
  specs: ["specs/*.yaml"]
  record: pglite://.fleet/record
  policyPack: { path: ${join(ROOT, 'policies', 'default')} }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - { name: miami, address: embedded, location: { lat: 25.7617, lon: -80.1918 }, capacity: { vms: 1000000 } }
`,
  );
  const docs: string[] = [];
  for (let i = 0; i < FLEETS; i++) {
    docs.push(`apiVersion: fleet/v1
kind: Fleet
metadata: { name: ${fleetName(i)}, owner: team-${i % 20}, labels: { env: dev } }
spec:
  count: ${MEMBERS}
  image: ubuntu-22.04
  size: { cpu: ${size.cpu}, memoryGiB: ${size.memoryGiB}, diskGiB: ${size.diskGiB} }
`);
  }
  writeFileSync(join(dir, 'specs', 'fleets.yaml'), docs.join('---\n'));
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-bench-policy-'));
  try {
    setup(dir);
    const loaded = await loadStack(dir);
    if (!loaded.stack || !loaded.pack) throw new Error(`the bench stack did not load: ${JSON.stringify(loaded.diagnostics)}`);
    const pack = loaded.pack;
    const hash = specHash({ image: 'ubuntu-22.04', size, hardware: [], encryptedDisk: false });
    const existing: PlanVmRow[] = loaded.fleets.flatMap((f) =>
      Array.from({ length: f.count }, (_, m) => ({
        id: `vm-${f.name}-${m}`,
        stack: 'bench',
        fleet: f.name,
        index: m,
        address: `${f.name}/${m}`,
        name: `bench-${f.name}-${m}`,
        dataCenter: 'miami',
        state: 'Running',
        specHash: hash,
        image: 'ubuntu-22.04',
        realImage: 'img-ubuntu-2204-miami-v7',
        size,
        encryptedDisk: false,
        version: 1,
        retiredAt: null,
        deposed: false,
      })),
    );
    for (const [what, record] of [
      ['empty record (every member a create)', [] as PlanVmRow[]],
      ['every member in the record (every member a noop)', existing],
    ] as const) {
      const options = { targets: [], excludes: [], allowDestroy: [], refresh: false };
      // What the planner hands evaluateRules: the plan with every member's change, noops too, and its context.
      let judged: { plan: PlanDocument; ctx: EvalContext } | undefined;
      const policy = { ...defaultPolicy, evaluateRules: (plan: PlanDocument, ctx: PlanContext) => ((judged = { plan, ctx }), []) };
      computePlan({ stack: loaded.stack, pack, fleets: [...loaded.fleets], record: [...record], fleetVersions: {}, options, policy });
      if (!judged) throw new Error('the planner did not evaluate the rules');
      const { plan, ctx } = judged;
      const requests = plan.changes.reduce((n, c) => n + (c.action === 'noop' ? 0 : c.steps.length + (c.action === 'create' ? 1 : 0)), 0);
      console.log(`${what}: ${plan.changes.length.toLocaleString('en-US')} changes, ${requests.toLocaleString('en-US')} requests; ${load()}`);
      // What a custom rule's read-only inputs cost on their own, before any check reads them.
      const made: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const c0 = process.cpuUsage();
        readOnlyView(ctx).view(plan);
        const c = process.cpuUsage(c0);
        made.push((c.user + c.system) / 1000);
      }
      console.log(`  ${'read-only inputs alone'.padEnd(24)} median of ${RUNS}: CPU ${median(made).toFixed(1)} ms`);
      let base = 0;
      for (const [name, r] of SHAPES) {
        const p = withRule(pack, r);
        const wall: number[] = [];
        const cpu: number[] = [];
        for (let i = 0; i < RUNS; i++) {
          const c0 = process.cpuUsage();
          const t0 = performance.now();
          evaluateRules(plan, ctx, p);
          wall.push(performance.now() - t0);
          const c = process.cpuUsage(c0);
          cpu.push((c.user + c.system) / 1000);
        }
        const m = median(cpu);
        if (!r) base = m;
        const per = r?.checkRequest ? requests : plan.changes.length;
        const extra = r ? `, +${(m - base).toFixed(0)} ms over built-in${per > 0 && (r.checkChange || r.checkRequest) ? ` (${(((m - base) * 1000) / per).toFixed(2)} µs per ${r.checkRequest ? 'request' : 'change'})` : ''}` : '';
        console.log(`  ${name.padEnd(24)} median of ${RUNS}: wall ${median(wall).toFixed(0)} ms, CPU ${m.toFixed(0)} ms${extra}`);
      }
    }
    if (sink < 0) console.log(sink);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
