// A deployed stack for whole-program tests: the authority (`fleet serve
// orchestrator`) and one sim DMZ client (`fleet serve dmz-client`) as child
// processes on loopback, a PostgreSQL record, and the CLI's stack pointing at
// the DMZ client's URL. What embedded data centers cannot show: the sim's
// boot agents live on in the DMZ client's process after a CLI exits, and two
// CLIs reach the same data center at once (no sim folder to wait for).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createTestDatabase } from '../../engine/record/testing.ts';
import { REPO } from './stack.ts';

const FLEET = join(REPO, 'bin', 'fleet.mjs');

export interface Deployed {
  /** The CLI's stack folder (specs under specs/). */
  dir: string;
  /** The tokens the CLI needs (CLI -> DMZ client). */
  env: NodeJS.ProcessEnv;
  recordUrl: string;
  /** The services' stack folder: the DMZ client's state (its idempotency log, the sim's VMs) is under .fleet/sim/miami. */
  servicesDir: string;
  /** Writes (or with `null` removes) specs/<name>.yaml. */
  spec(name: string, yaml: string | null): Promise<void>;
  /**
   * Stops the DMZ client and starts it again at the same URL with these sim settings (its data center's VMs and its
   * state folder kept); `clockAheadMs`: its process's clock runs that far ahead of the others' (test/fixtures/clock).
   */
  restartDmz(sim: string, opts?: { clockAheadMs?: number }): Promise<void>;
  stop(): Promise<void>;
}

export interface Service {
  child: ChildProcess;
  url: string;
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Moves a process's clock ahead by FLEET_TEST_CLOCK_AHEAD_MS (node --import). */
const CLOCK_AHEAD = join(REPO, 'test', 'fixtures', 'clock', 'ahead.mjs');

/** Starts `fleet serve ARGS` and waits for its "listening on URL" line; `clockAheadMs`: its clock runs that far ahead. */
export function startService(args: string[], env: NodeJS.ProcessEnv, opts: { clockAheadMs?: number } = {}): Promise<Service> {
  const ahead = opts.clockAheadMs ? ['--import', pathToFileURL(CLOCK_AHEAD).href] : [];
  const childEnv = opts.clockAheadMs ? { ...env, FLEET_TEST_CLOCK_AHEAD_MS: String(opts.clockAheadMs) } : env;
  const child = spawn(process.execPath, [...ahead, FLEET, 'serve', ...args], { cwd: REPO, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = /listening on (https?:\/\/\S+)/.exec(out);
      if (m) {
        child.stdout!.off('data', check);
        child.off('exit', early);
        resolve({ child, url: m[1] });
      }
    };
    const early = (code: number | null, sig: NodeJS.Signals | null) => reject(new Error(`fleet serve ${args[0]} exited (${code ?? sig}) before listening:\n${out}`));
    child.stdout!.on('data', check);
    child.once('exit', early);
  });
}

function stackYaml(record: string, dc: string, config: string): string {
  return `apiVersion: fleet/v1
kind: Stack
metadata: { name: e2e }
spec:
  specs: ["specs/*.yaml"]
  record: ${record}
  policyPack:
    path: ${join(REPO, 'policies', 'default')}
    config:
      max-disruption: { enforcement: disabled }
${config}  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - name: miami
      location: { lat: 25.7617, lon: -80.1918 }
      hardware: [general]
      capacity: { vms: 50, cpu: 400, memoryGiB: 1600 }
      auth: { tokenEnv: E2E_CLI_TOKEN_MIAMI }
${dc}`;
}

/**
 * `sim`: the sim settings of the data center, as YAML flow, e.g. `{ latencyMs: 1, bootMs: 200 }`;
 * `config`: more entries of the stack's policyPack.config (both the services' and the CLI's stack), one per line, e.g.
 * `      owner-quota: { enforcement: mandatory, limits: { team-a: { vms: 3 } } }\n`.
 */
export async function deployedStack(pgBase: string, sim: string, opts: { config?: string } = {}): Promise<Deployed> {
  const config = opts.config ?? '';
  const root = await mkdtemp(join(tmpdir(), 'fleet-deployed-'));
  const db = await createTestDatabase(pgBase);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NO_COLOR: '1',
    FLEET_AUTHORITY_SECRET: randomBytes(24).toString('hex'),
    FLEET_DMZ_TOKEN_MIAMI: randomBytes(24).toString('hex'),
    E2E_CLI_TOKEN_MIAMI: randomBytes(24).toString('hex'),
  };
  const svc = join(root, 'services');
  const cli = join(root, 'cli');
  await mkdir(join(svc, 'specs'), { recursive: true });
  await mkdir(join(cli, 'specs'), { recursive: true });
  const writeSvc = (s: string) => writeFile(join(svc, 'stack.yaml'), stackYaml(db.url, `      address: embedded\n      sim: ${s}\n`, config));
  await writeSvc(sim);
  const started: Service[] = [];
  const authority = await startService(['orchestrator', '--stack', svc, '--port', '0', '--host', '127.0.0.1'], env);
  started.push(authority);
  const dmzArgs = (port: string) => ['dmz-client', '--data-center', 'miami', '--driver', 'sim', '--authority', authority.url, '--stack', svc, '--port', port, '--host', '127.0.0.1'];
  let dmz = await startService(dmzArgs('0'), env);
  started.push(dmz);
  await writeFile(join(cli, 'stack.yaml'), stackYaml(db.url, `      address: ${dmz.url}\n`, config));
  return {
    dir: cli,
    env,
    recordUrl: db.url,
    servicesDir: svc,
    async spec(name, yaml) {
      const file = join(cli, 'specs', `${name}.yaml`);
      if (yaml === null) await rm(file, { force: true });
      else await writeFile(file, yaml);
    },
    async restartDmz(s, o = {}) {
      await stopChild(dmz.child);
      await writeSvc(s);
      dmz = await startService(dmzArgs(new URL(dmz.url).port), env, o);
      started.push(dmz);
    },
    async stop() {
      for (const s of started.reverse()) await stopChild(s.child);
      await db.drop().catch(() => {});
      await rm(root, { recursive: true, force: true });
    },
  };
}
