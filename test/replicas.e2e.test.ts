// Two authority replicas over one PostgreSQL record, as processes
// (docs/operations.md, "Replicas"): `fleet serve orchestrator --replicas 2`
// twice, a sim DMZ client (`fleet serve dmz-client`) whose calls reach them
// through a loopback proxy (test/helpers/proxy.ts racingProxy); the CLI runs
// in this process (its start as a process would cost more than its apply);
// the record is a uniquely named database this test creates and drops.
//
// What the record decides must be the same through either replica, so the
// calls about one VM are raced between them, over generated cases (seeds):
//
// - applies: the proxy sends each call to the next replica (`alternate`), or
//   every call to both at once (`mirror`: the DMZ client answered by one,
//   picked by the seed; every authorize, report, advance and boot check is
//   then decided twice at once, as when a call's resend reaches the other
//   replica while the first send is still being decided). Per seed, either
//   one saved plan applied twice at once (a create, then a change drawn from
//   stop, scale down, scale up), or two saved plans of one owner racing for
//   the last places of its quota, both applied at once.
// - calls: with the DMZ client's token, straight to both replicas at once:
//   the ok report of one approved edge; a VM's boot token; one create (the
//   same VM id) twice; creates of one owner for its last quota place.
//
// The invariants, checked on the record after each case: every VM is in a
// lifecycle state, and every move of its history is one edge of the
// lifecycle, in one unbroken chain ending at the VM's state, no report's
// request id moving it twice; every move a DMZ client reported follows the
// authority's intent row of the same request id and edge (no report taken
// without its approval); every boot approved once per boot edge; no owner
// over its quota; the record equals the data center; and every member an
// apply reports done is held by the record in the plan's target state
// (a live VM at its address in that state; none after a delete).
//
// A failed invariant says which, with the case (seed, mode), the VM's row, its
// whole history (each row's time and writing transaction) and boot attempts,
// read in one snapshot, and every exchange about it through the proxy.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, testPostgresUrl } from '../engine/record/testing.ts';
import type { Lifecycle } from '../engine/policy/types.ts';
import { defaultPack } from '../providers/testing.ts';
import { seededRandom } from '../providers/drivers/sim/sim.ts';
import { startService, stopChild, type Service } from './helpers/deployed.ts';
import { runCli } from './helpers/cli.ts';
import { racingProxy, type RacingProxy } from './helpers/proxy.ts';
import { REPO, fleetYaml } from './helpers/stack.ts';

const pgUrl = testPostgresUrl();
const STACK = 'rep';
const DC = 'miami';
/** Apply cases: seeds 0..APPLY_SEEDS-1, run BATCH at once (the proxy's mode is the batch's). */
const APPLY_SEEDS = 24;
const BATCH = 4;
/** Call cases: seeds of each race straight to the replicas. */
const CALL_SEEDS = 40;
/** The owners with a quota: team-q<seed> (apply cases) and team-c<seed> (call cases). */
const quotaOf = (seed: number) => 1 + (seed % 3);
const callQuota = (seed: number) => 1 + (seed % 4);
/**
 * Bounds only, never an outcome: alone the apply cases take 10 s, 30 s with two
 * copies and a CPU hog beside them on 2 cores; CI runs the whole suite at once
 * on 2 cores. A fleet lock is waited for as long (the second apply of a plan
 * waits for the first to finish).
 */
const CASES_MS = 240_000;

/** mulberry32 (the sim's seeded generator), values in [0, 1). */
const prng = seededRandom;

function stackYaml(record: string, address: string, limits: string): string {
  return `apiVersion: fleet/v1
kind: Stack
metadata: { name: ${STACK} }
spec:
  specs: ["specs/*.yaml"]
  record: ${record}
  policyPack:
    path: ${join(REPO, 'policies', 'default')}
    config:
      max-disruption: { enforcement: disabled }
      owner-quota: { enforcement: mandatory, limits: { ${limits} } }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - name: ${DC}
      location: { lat: 25.7617, lon: -80.1918 }
      hardware: [general]
      capacity: { vms: 1000, cpu: 8000, memoryGiB: 32000 }
      auth: { tokenEnv: REP_CLI_TOKEN_MIAMI }
${address}`;
}

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `fleet ARGS` in this process (the services are processes; the CLI's own start costs more than its apply here). */
function fleet(env: NodeJS.ProcessEnv, args: string[]): Promise<Exit> {
  return runCli(args, { cwd: REPO, env });
}

/** What an apply said went wrong: its stderr and the diagnostic and failed member events of its JSON output. */
function said(r: Exit): string {
  const lines = r.stdout.split('\n').filter((l) => l.includes('"type":"diagnostic"') || (l.includes('"type":"member"') && l.includes('"failed"')));
  return `exit ${r.code}: ${r.stderr}${lines.join('\n')}`;
}

/** The `member` events of an apply's JSON output. */
function members(stdout: string): { address: string; action: string; status: string; detail?: string }[] {
  return stdout
    .split('\n')
    .filter((l) => l.includes('"type":"member"'))
    .map((l) => JSON.parse(l) as { address: string; action: string; status: string; detail?: string });
}

interface VmRow {
  id: string;
  fleet: string;
  idx: number;
  state: string;
  cloud_id: string | null;
  retired_at: Date | null;
  version: number;
}
interface HistoryRow {
  id: number;
  vm_id: string;
  from_state: string | null;
  to_state: string;
  actor: string;
  request_id: string | null;
  outcome: string;
  detail: string | null;
  /** When it was written (clock_timestamp(), to the microsecond) and by which transaction (xmin): for failure messages. */
  at: string;
  xid: string;
}

describe.runIf(pgUrl !== undefined)('two authority replicas (processes) over one PostgreSQL record, calls about one VM raced between them', () => {
  let root: string;
  let db: { url: string; drop(): Promise<void> };
  let env: NodeJS.ProcessEnv;
  const services: Service[] = [];
  let authorities: string[];
  let proxy: RacingProxy;
  let dmz: string;
  /** The cases' queries: a pool, the cases of a batch querying at once (one pg.Client queried by several at a time is deprecated in pg 8 and an error in pg 9). */
  let sql: pg.Pool;
  let lifecycle: Lifecycle;
  let cliYaml: string;

  beforeAll(async () => {
    lifecycle = (await defaultPack()).lifecycle;
    root = await mkdtemp(join(tmpdir(), 'fleet-replicas-'));
    db = await createTestDatabase(pgUrl!);
    env = {
      ...process.env,
      NO_COLOR: '1',
      FLEET_AUTHORITY_SECRET: randomBytes(24).toString('hex'),
      FLEET_DMZ_TOKEN_MIAMI: randomBytes(24).toString('hex'),
      REP_CLI_TOKEN_MIAMI: randomBytes(24).toString('hex'),
    };
    const limits = [
      ...Array.from({ length: APPLY_SEEDS }, (_, s) => `team-q${s}: { vms: ${quotaOf(s)} }`),
      ...Array.from({ length: CALL_SEEDS }, (_, s) => `team-c${s}: { vms: ${callQuota(s)} }`),
    ].join(', ');
    const svc = join(root, 'services');
    await mkdir(svc, { recursive: true });
    await writeFile(join(svc, 'stack.yaml'), stackYaml(db.url, '      address: embedded\n      sim: { latencyMs: 1, bootMs: 5 }\n', limits));
    const replica = () => startService(['orchestrator', '--stack', svc, '--port', '0', '--host', '127.0.0.1', '--replicas', '2', '--log-level', 'warn'], env);
    const [a, b] = await Promise.all([replica(), replica()]);
    services.push(a, b);
    authorities = [a.url, b.url];
    proxy = await racingProxy([a.url, b.url], prng(0x5eed));
    const d = await startService(['dmz-client', '--data-center', DC, '--driver', 'sim', '--authority', proxy.url, '--stack', svc, '--port', '0', '--host', '127.0.0.1', '--log-level', 'warn'], env);
    services.push(d);
    dmz = d.url;
    cliYaml = stackYaml(db.url, `      address: ${dmz}\n`, limits);
    sql = new pg.Pool({ connectionString: db.url, max: BATCH });
  }, CASES_MS);

  afterAll(async () => {
    await sql?.end();
    for (const s of services.reverse()) await stopChild(s.child);
    await proxy?.close();
    await db?.drop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  /** A CLI folder of the stack with these fleets' specs only. */
  async function cliFolder(name: string): Promise<{ dir: string; spec(fleet: string, yaml: string): Promise<void> }> {
    const dir = join(root, name);
    await mkdir(join(dir, 'specs'), { recursive: true });
    await writeFile(join(dir, 'stack.yaml'), cliYaml);
    return { dir, spec: (fleet, yaml) => writeFile(join(dir, 'specs', `${fleet}.yaml`), yaml) };
  }

  async function plan(dir: string, fleetName: string, out: string): Promise<void> {
    const p = await fleet(env, ['plan', '--stack', dir, '--target', fleetName, '--out', out]);
    expect(p.code, p.stderr).toBe(0);
  }
  const apply = (dir: string, file: string) => fleet(env, ['apply', '--stack', dir, '--yes', '--format', 'json', '--lock-timeout', String(CASES_MS / 1000), file]);

  /** The live VMs of fleets. */
  async function live(fleets: readonly string[]): Promise<VmRow[]> {
    return (await sql.query<VmRow>('SELECT id, fleet, idx, state, cloud_id, retired_at, version FROM vms WHERE stack = $1 AND fleet = ANY($2) AND retired_at IS NULL AND deposed_at IS NULL ORDER BY fleet, idx', [STACK, fleets])).rows;
  }

  /** What the data center holds, by VM id (its DMZ client's GET /v1/vms). */
  async function cloud(): Promise<Map<string, { cloudId: string; observedState: string }>> {
    const res = await fetch(`${dmz}/v1/vms`, { headers: { authorization: `Bearer ${env.REP_CLI_TOKEN_MIAMI}` } });
    expect(res.status).toBe(200);
    const { vms } = (await res.json()) as { vms: { vmId: string; cloudId: string; status: string; observedState: string }[] };
    return new Map(vms.filter((v) => v.status === 'present').map((v) => [v.vmId, v]));
  }

  /**
   * The invariants of every VM (live or retired) of `fleets`, on the record; `where` names the case in failures.
   * Returns the number of moves checked.
   */
  async function checkHistories(fleets: readonly string[], where: string): Promise<number> {
    // The record as of one moment (one snapshot: the VM rows and their histories agree, whatever else commits meanwhile),
    // on a connection of its own (a transaction: not one of the pool's, which the other cases of the batch share).
    const snap = new pg.Client({ connectionString: db.url });
    await snap.connect();
    try {
      await snap.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      return await checkSnapshot(snap, fleets, where);
    } finally {
      await snap.end();
    }
  }

  async function checkSnapshot(sql: pg.Client, fleets: readonly string[], where: string): Promise<number> {
    const vms = (await sql.query<VmRow>('SELECT id, fleet, idx, state, cloud_id, retired_at, version FROM vms WHERE stack = $1 AND fleet = ANY($2)', [STACK, fleets])).rows;
    let checked = 0;
    for (const vm of vms) {
      try {
        checked += await checkVm(sql, vm, where);
      } catch (err) {
        // What went over the wire about the VM (apply cases: through the proxy), to tell a defect from a flaw of the test.
        if (err instanceof Error) err.message += `\nexchanges about ${vm.id} through the proxy (ms sent..answered, path, replica, copy, status: request => answer):\n${proxy.about(vm.id)}`;
        throw err;
      }
    }
    return checked;
  }

  /** checkSnapshot of one VM: the moves checked. */
  async function checkVm(sql: pg.Client, vm: VmRow, where: string): Promise<number> {
    let checked = 0;
    // Each row with its time and writing transaction (xmin): enough to tell, from a failure's message alone, which
    // writes were one statement, and whether ids follow the order the rows were written in.
    const rows = (await sql.query<HistoryRow>(`SELECT id::int AS id, vm_id, from_state, to_state, actor, request_id, outcome, detail, to_char(at, 'HH24:MI:SS.US') AS at, xmin::text AS xid FROM history WHERE vm_id = $1 ORDER BY id`, [vm.id])).rows;
    const boots = (await sql.query<{ id: number; at: string; approved: boolean; reason: string; xid: string }>(`SELECT id::int AS id, to_char(at, 'HH24:MI:SS.US') AS at, approved, reason, xmin::text AS xid FROM boot_attempts WHERE vm_id = $1 ORDER BY id`, [vm.id])).rows;
    const at =
      `${where}: VM ${vm.fleet}/${vm.idx} (${vm.id}) ${vm.state} version ${vm.version}${vm.retired_at ? ' retired' : ''}, history (id at xid from -> to actor request outcome detail):\n` +
      rows.map((h) => `  ${h.id} ${h.at} x${h.xid} ${h.from_state} -> ${h.to_state} ${h.actor} ${h.request_id} ${h.outcome} ${h.detail ?? ''}`).join('\n') +
      `\nboot attempts (id at xid approved reason):\n${boots.map((b) => `  ${b.id} ${b.at} x${b.xid} ${b.approved} ${b.reason}`).join('\n')}\n`;
    expect(lifecycle.states, `${at}: ${vm.state} is no state of the lifecycle`).toContain(vm.state);
    const intents = rows.filter((h) => h.actor === 'authority' && h.detail?.startsWith('intent approved'));
    const moves = rows.filter((h) => h.outcome === 'ok' && h.from_state !== null && h.from_state !== h.to_state && !h.detail?.startsWith('intent approved'));
    // One unbroken chain of lifecycle edges from the initial state to the VM's state: no move lost or doubled.
    let state = lifecycle.initial;
    for (const m of moves) {
      const line = `${at}: move ${m.from_state} -> ${m.to_state} (history ${m.id}, ${m.actor}, request ${m.request_id}) with the VM at ${state}`;
      expect(m.from_state, line).toBe(state);
      expect(lifecycle.allows(m.from_state!, m.to_state), line).toBe(true);
      state = m.to_state;
      checked++;
    }
    expect(state, `${at}: the history ends at ${state}, the row holds ${vm.state}`).toBe(vm.state);
    // Every report taken follows its approval (the intent row of the same request id and edge), once.
    const reported = moves.filter((m) => m.actor.startsWith('dmz-client:'));
    for (const m of reported) {
      const approval = intents.find((h) => h.request_id === m.request_id && h.from_state === m.from_state && h.to_state === m.to_state && h.id < m.id);
      expect(approval, `${at}: the reported move ${m.from_state} -> ${m.to_state} (request ${m.request_id}, history ${m.id}) has no approval before it`).toBeDefined();
    }
    const ids = reported.map((m) => m.request_id);
    expect(ids.length, `${at}: a request's report moved the VM twice: ${ids.join(', ')}`).toBe(new Set(ids).size);
    // A failure reported (no failure edge: the VM stays) is written once, and follows its approval too.
    const failed = rows.filter((h) => h.outcome === 'failed' && h.actor.startsWith('dmz-client:'));
    expect(failed.length, `${at}: a request's failure written twice`).toBe(new Set(failed.map((h) => h.request_id)).size);
    for (const h of failed) expect(intents.some((i) => i.request_id === h.request_id && i.id < h.id), `${at}: failure ${h.id} has no approval before it`).toBe(true);
    // Each boot edge's boot approved once (a token presented to both replicas is recorded once).
    const bootEdges = moves.filter((m) => m.from_state === 'PoweredOn' && m.to_state === 'Starting').length;
    const approved = boots.filter((b) => b.approved).length;
    expect(approved, `${at}: ${approved} boots approved for ${bootEdges} boot edges`).toBe(bootEdges);
    return checked;
  }

  it(`applies through a DMZ client whose calls alternate or race between the replicas: ${APPLY_SEEDS} seeds`, async () => {
    let moves = 0;
    const outcomes: Record<string, number> = {};
    const count = (k: string) => (outcomes[k] = (outcomes[k] ?? 0) + 1);
    for (let first = 0; first < APPLY_SEEDS; first += BATCH) {
      proxy.mode = (first / BATCH) % 2 === 0 ? 'mirror' : 'alternate';
      await Promise.all(
        Array.from({ length: BATCH }, async (_, k) => {
          const seed = first + k;
          const rng = prng(seed + 1);
          const where = `seed ${seed} (${proxy.mode})`;
          /** The target of every address a plan of this case named: a state, or null for deleted. */
          const target = new Map<string, string | null>();
          /** Checks one round's applies: every member reported done is held by the record in its target state. */
          const checkRound = async (runs: Exit[], fleets: string[], round: string) => {
            await proxy.settled();
            const rows = await live(fleets);
            for (const [i, r] of runs.entries()) {
              const events = members(r.stdout);
              count(`${r.code}`);
              if (r.code === 0) expect(events.filter((e) => e.status === 'failed'), `${where} ${round}: apply ${i} exited 0 with failed members`).toEqual([]);
              for (const e of events.filter((x) => x.status === 'done')) {
                const [f, idx] = e.address.split('/');
                const row = rows.find((v) => v.fleet === f && v.idx === Number(idx));
                const want = target.get(e.address);
                expect(want, `${where} ${round}: apply ${i} reported ${e.address} done, a member no plan named`).not.toBeUndefined();
                expect(row?.state ?? null, `${where} ${round}: apply ${i} reported ${e.address} done (${e.action}); the record holds ${row?.state ?? 'no live VM'}, the plan's target is ${want ?? 'deleted'}`).toBe(want);
              }
            }
            return rows;
          };

          if (seed % 2 === 0) {
            // One saved plan, applied twice at once; a create, then a change.
            const f = `s${seed}`;
            const cli = await cliFolder(`cli-${seed}`);
            let n = 1 + Math.floor(rng() * 3);
            let state = rng() < 0.75 ? 'Running' : 'PoweredOff';
            for (const round of ['create', 'change']) {
              if (round === 'change') {
                const change = Math.floor(rng() * 3);
                if (change === 0) state = state === 'Running' ? 'PoweredOff' : 'Running';
                else if (change === 1) n = Math.max(0, n - 1);
                else n += 1;
              }
              await cli.spec(f, fleetYaml(f, { count: n, state, cpu: 1 }));
              for (const a of target.keys()) if (Number(a.split('/')[1]) >= n) target.set(a, null);
              for (let i = 0; i < n; i++) target.set(`${f}/${i}`, state);
              const file = join(cli.dir, `${round}.json`);
              await plan(cli.dir, f, file);
              const runs = await Promise.all([apply(cli.dir, file), apply(cli.dir, file)]);
              const rows = await checkRound(runs, [f], round);
              // One of the two carried the plan out; the other, holding the fleet's lock after it, found it applied already.
              expect(runs.map((r) => r.code).sort(), `${where} ${round}:\n${runs.map(said).join('\n---\n')}`).toEqual([0, 1]);
              const refused = said(runs.find((r) => r.code === 1)!);
              expect(refused, where).toContain('"code":"apply.stale-plan"');
              expect(refused, where).toContain('was applied already');
              expect(rows.map((v) => `${v.idx}:${v.state}`), `${where} ${round}`).toEqual(Array.from({ length: n }, (_, i) => `${i}:${state}`));
            }
            moves += await checkHistories([f], where);
          } else {
            // Two saved plans of one owner, each within its quota, together past it: applied at once.
            const owner = `team-q${seed}`;
            const quota = quotaOf(seed);
            const fleets = [`s${seed}a`, `s${seed}b`];
            const sizes = [1 + Math.floor(rng() * quota), 1 + Math.floor(rng() * quota)];
            if (sizes[0] + sizes[1] <= quota) sizes[1] = quota;
            const clis = await Promise.all(fleets.map((f) => cliFolder(`cli-${f}`)));
            const files = clis.map((c) => join(c.dir, 'create.json'));
            for (const [k, f] of fleets.entries()) {
              await clis[k].spec(f, fleetYaml(f, { count: sizes[k], cpu: 1 }).replace(`owner: team-${f}`, `owner: ${owner}`));
              for (let i = 0; i < sizes[k]; i++) target.set(`${f}/${i}`, 'Running');
            }
            await Promise.all(fleets.map((f, k) => plan(clis[k].dir, f, files[k])));
            const runs = await Promise.all(clis.map((c, k) => apply(c.dir, files[k])));
            const rows = await checkRound(runs, fleets, 'quota');
            // Never over the quota, and every place taken (a create is vetoed only when the quota is full).
            const every = (await sql.query<VmRow>('SELECT id, fleet, idx, state, cloud_id, retired_at, version FROM vms WHERE stack = $1 AND fleet = ANY($2) ORDER BY fleet, idx', [STACK, fleets])).rows;
            const dump = every.map((v) => `${v.fleet}/${v.idx} ${v.id} ${v.state}${v.retired_at ? ' retired' : ''}`).join('\n');
            expect(rows.length, `${where}: ${rows.length} VMs of ${owner}, quota ${quota}; the record's VMs of the two fleets:\n${dump}\n${runs.map(said).join('\n---\n')}`).toBe(quota);
            expect(rows.map((v) => v.state), `${where}:\n${runs.map(said).join('\n---\n')}`).toEqual(Array(quota).fill('Running'));
            // An apply fails only for the creates vetoed at the full quota, and says so; every other member is done.
            for (const r of runs) {
              const failed = members(r.stdout).filter((e) => e.status === 'failed');
              expect(r.code, `${where}: ${said(r)}`).toBe(failed.length > 0 ? 1 : 0);
              for (const e of failed) expect(e.detail, where).toContain(`the quota of owner ${owner} is ${quota} VMs`);
            }
            expect(runs.flatMap((r) => members(r.stdout)).filter((e) => e.status === 'done'), where).toHaveLength(quota);
            moves += await checkHistories(fleets, where);
          }
        }),
      );
    }
    // The record equals the data center: every live VM there with its cloud id and state, nothing else.
    const all = await live(Array.from({ length: APPLY_SEEDS }, (_, s) => [`s${s}`, `s${s}a`, `s${s}b`]).flat());
    const held = await cloud();
    for (const v of all) expect(held.get(v.id), `${v.fleet}/${v.idx}`).toMatchObject({ cloudId: v.cloud_id, observedState: v.state });
    expect(held.size).toBe(all.length);
    // Both replicas decided, and calls were raced.
    expect(proxy.counts.every((n) => n > 20)).toBe(true);
    expect(proxy.mirrored).toBeGreaterThan(20);
    expect(moves).toBeGreaterThan(APPLY_SEEDS * 4);
    console.log(`replicas e2e: ${APPLY_SEEDS} apply cases, ${moves} moves checked, apply exits ${JSON.stringify(outcomes)}, ${proxy.mirrored} calls mirrored, per replica ${proxy.counts.join('/')}`);
  }, CASES_MS);

  /** POST to one replica with the DMZ client's token: the status and the answer. */
  async function call<T>(replica: number, path: string, body: unknown): Promise<{ status: number; body: T }> {
    const res = await fetch(`${authorities[replica]}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${env.FLEET_DMZ_TOKEN_MIAMI}` },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as T };
  }
  /** The same call to both replicas at once, in an order the seed draws (which is sent first). */
  const both = <T,>(rng: () => number, path: string, body: unknown) => {
    const first = rng() < 0.5 ? 0 : 1;
    return Promise.all([call<T>(first, path, body), call<T>(1 - first, path, body)]);
  };

  interface Authorized {
    decision: string;
    reason: string;
    operation: string;
    realImage?: string;
    bootToken?: string;
  }

  it(`calls straight to both replicas at once (an ok or failed report, a boot token, a create, the last quota place): ${CALL_SEEDS} seeds`, async () => {
    const tally = { reports: 0, failures: 0, boots: 0, creates: 0, lastPlace: 0 };
    await Promise.all(
      Array.from({ length: CALL_SEEDS }, async (_, seed) => {
        const rng = prng(0xc0de + seed);
        const where = `call seed ${seed}`;
        const f = `c${seed}`;
        const owner = `team-c${seed}`;
        const quota = callQuota(seed);
        const pick = () => (rng() < 0.5 ? 0 : 1);
        const createOf = (index: number) => ({
          dataCenter: DC,
          requestId: randomUUID(),
          planId: null,
          kind: 'create',
          vmId: randomUUID(),
          from: null,
          vm: { stack: STACK, fleet: f, owner, index, name: `${STACK}-${f}-${index}`, dataCenter: DC, image: 'ubuntu-22.04', size: { cpu: 1, memoryGiB: 1, diskGiB: 10 }, encryptedDisk: true, desiredState: 'Running', specHash: 'h' },
        });
        // quota - 1 VMs, each created (to both replicas at once, or one) and carried to Running edge by edge:
        // every report to both at once, the boot token too (before, with, or after the boot edge's report).
        for (let index = 0; index < quota - 1; index++) {
          const c = createOf(index);
          if (rng() < 0.5) {
            const answers = await both<Authorized>(rng, '/v1/authorize', c);
            expect(answers.map((a) => [a.status, a.body.decision]), `${where}: a create sent to both`).toEqual([[200, 'modified'], [200, 'modified']]);
            tally.creates++;
          } else expect((await call<Authorized>(pick(), '/v1/authorize', c)).body.decision, where).toBe('modified');
          const realImage = 'img-ubuntu-2204-miami-v7';
          const path = ['Requested', 'BeingCreated', 'PoweredOff', 'PoweredOn', 'Starting', 'Running'];
          for (let k = 1; k < path.length; k++) {
            if (path[k] === 'PoweredOn' && rng() < 0.5) {
              // The power-on fails first (no failure edge: the VM stays PoweredOff), its report sent to both at once.
              const tried = { dataCenter: DC, requestId: randomUUID(), planId: null, kind: 'transition', vmId: c.vmId, from: 'PoweredOff', to: 'PoweredOn' };
              expect((await call<Authorized>(pick(), '/v1/authorize', tried)).body.decision, where).toBe('approved');
              const failed = await both<{ effect: string }>(rng, '/v1/reports', { dataCenter: DC, requestId: tried.requestId, planId: null, vmId: c.vmId, from: 'PoweredOff', to: 'PoweredOn', outcome: 'failed', detail: 'the cloud refused' });
              expect(failed.map((r) => `${r.status} ${r.body.effect}`), `${where}: a failed report sent to both: ${JSON.stringify(failed)}`).toEqual(['200 noted', '200 noted']);
              tally.failures++;
            }
            const edge = { dataCenter: DC, requestId: randomUUID(), planId: null, kind: 'transition', vmId: c.vmId, from: path[k - 1], to: path[k] };
            const ok = await call<Authorized>(pick(), '/v1/authorize', edge);
            expect([ok.status, ok.body.decision], `${where}: ${path[k - 1]} -> ${path[k]}: ${ok.body.reason}`).toEqual([200, 'approved']);
            const report = { dataCenter: DC, requestId: edge.requestId, planId: null, vmId: c.vmId, from: edge.from, to: edge.to, outcome: 'ok', ...(edge.to === 'PoweredOff' ? { cloudId: `cloud-${c.vmId}` } : {}) };
            const boot = ok.body.bootToken !== undefined ? { dataCenter: DC, vmId: c.vmId, cloudId: `cloud-${c.vmId}`, image: realImage, bootToken: ok.body.bootToken } : undefined;
            const when = Math.floor(rng() * 3);
            const presented = boot && when === 0 ? await both<{ approved: boolean; diskKey?: string; detail?: string }>(rng, '/v1/boot/authorize', boot) : undefined;
            const [reports, presentedWith] = await Promise.all([
              both<{ effect: string }>(rng, '/v1/reports', report),
              boot && when === 1 ? both<{ approved: boolean; diskKey?: string; detail?: string }>(rng, '/v1/boot/authorize', boot) : undefined,
            ]);
            // One of the two moved the VM; the other found it done.
            expect(reports.map((r) => `${r.status} ${r.body.effect}`).sort(), `${where}: the report of ${edge.from} -> ${edge.to} sent to both: ${JSON.stringify(reports)}`).toEqual(['200 already', '200 moved']);
            tally.reports++;
            const boots = presented ?? presentedWith ?? (boot ? await both<{ approved: boolean; diskKey?: string; detail?: string }>(rng, '/v1/boot/authorize', boot) : undefined);
            if (boots) {
              // Both approved, with the same disk key (a repeat of one boot); recorded once (checkHistories).
              expect(boots.map((b) => [b.status, b.body.approved, b.body.diskKey]), `${where}: a boot token presented to both: ${boots.map((b) => b.body.detail).join('; ')}`).toEqual([[200, true, boots[0].body.diskKey], [200, true, boots[0].body.diskKey]]);
              expect(boots[0].body.diskKey, where).toEqual(expect.any(String));
              tally.boots++;
            }
          }
        }
        // The last place: 2 to 4 creates of new members at once, each to one replica or (drawn) to both.
        const racers = Array.from({ length: 2 + Math.floor(rng() * 3) }, (_, k) => createOf(quota - 1 + k));
        const answers = await Promise.all(
          racers.map(async (c) => (rng() < 0.4 ? both<Authorized>(rng, '/v1/authorize', c) : [await call<Authorized>(pick(), '/v1/authorize', c)])),
        );
        const won = racers.filter((_, k) => answers[k].some((a) => a.body.decision !== 'vetoed'));
        expect(won, `${where}: creates approved for the last place: ${JSON.stringify(answers.map((a) => a.map((x) => x.body.reason)))}`).toHaveLength(1);
        for (const [k, a] of answers.entries()) {
          // A create sent to both gets one answer from both: the same VM approved twice, or vetoed twice.
          expect(new Set(a.map((x) => x.body.decision)).size, `${where}: racer ${k}: ${JSON.stringify(a)}`).toBe(1);
          if (racers[k] !== won[0]) for (const x of a) expect(x.body.reason, where).toContain(`the quota of owner ${owner} is ${quota} VMs`);
        }
        tally.lastPlace++;
        const rows = await live([f]);
        expect(rows.length, `${where}: ${rows.length} VMs for a quota of ${quota}`).toBe(quota);
        expect(rows.filter((v) => v.id === won[0].vmId), where).toHaveLength(1);
        expect(rows.filter((v) => v.state === 'Running'), where).toHaveLength(quota - 1);
        await checkHistories([f], where);
      }),
    );
    console.log(`replicas e2e: ${CALL_SEEDS} call cases: ${tally.reports} ok reports, ${tally.failures} failed reports, ${tally.boots} boot tokens, ${tally.creates} creates sent to both replicas at once; ${tally.lastPlace} races for the last quota place`);
    expect(tally.boots).toBeGreaterThan(0);
    expect(tally.failures).toBeGreaterThan(0);
  }, CASES_MS);
});
