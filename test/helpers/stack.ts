// A throw-away stack for whole-program tests: stack.yaml with two embedded
// sim data centers, the real default pack, a PGlite record under .fleet/.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { runCli, type CliRun } from './cli.ts';

export const REPO = resolve(import.meta.dirname, '..', '..');

export interface TempStack {
  dir: string;
  /**
   * The sims' gate file (sim gateFile, providers/drivers/sim/gate.ts), `<dir>/gate.json`: named in stack.yaml when
   * tempStack was given `gate`; absent (every call goes through) until a test writes it.
   */
  gate: string;
  /** Writes (or with `null` removes) specs/<name>.yaml. */
  spec(name: string, yaml: string | null): Promise<void>;
  remove(): Promise<void>;
}

export async function tempStack(opts: { latencyMs?: number; bootMs?: number; extraDc?: string; name?: string; gate?: boolean } = {}): Promise<TempStack> {
  const dir = await mkdtemp(join(tmpdir(), 'fleet-stack-'));
  await mkdir(join(dir, 'specs'));
  const gate = join(dir, 'gate.json');
  const sim = `{ latencyMs: ${opts.latencyMs ?? 1}, bootMs: ${opts.bootMs ?? 1}${opts.gate ? `, gateFile: ${JSON.stringify(gate)}` : ''} }`;
  await writeFile(
    join(dir, 'stack.yaml'),
    `apiVersion: fleet/v1
kind: Stack
metadata: { name: ${opts.name ?? 'e2e'} }
spec:
  specs: ["specs/*.yaml"]
  record: pglite://.fleet/record
  policyPack:
    path: ${join(REPO, 'policies', 'default')}
    config:
      max-disruption: { enforcement: disabled }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - name: miami
      address: embedded
      location: { lat: 25.7617, lon: -80.1918 }
      hardware: [general]
      capacity: { vms: 50, cpu: 400, memoryGiB: 1600 }
      sim: ${sim}
    - name: richmond
      address: embedded
      location: { lat: 37.5407, lon: -77.4360 }
      hardware: [general]
      capacity: { vms: 50, cpu: 400, memoryGiB: 1600 }
      sim: ${sim}
`,
  );
  return {
    dir,
    gate,
    async spec(name, yaml) {
      const file = join(dir, 'specs', `${name}.yaml`);
      if (yaml === null) await rm(file, { force: true });
      else await writeFile(file, yaml);
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * stack.yaml of one embedded sim data center (miami, room for 50 VMs unless
 * `vms` says otherwise) with the default pack: `failCalls` are the sim's
 * cloud calls that fail.
 */
export function oneDcStackYaml(name: string, sim: { latencyMs?: number; failCalls?: readonly string[]; vms?: number } = {}): string {
  const ms = sim.latencyMs ?? 1;
  return `apiVersion: fleet/v1
kind: Stack
metadata: { name: ${name} }
spec:
  specs: ["specs/*.yaml"]
  record: pglite://.fleet/record
  policyPack: { path: ${join(REPO, 'policies', 'default')} }
  site: { name: charlotte, location: { lat: 35.2271, lon: -80.8431 } }
  dataCenters:
    - name: miami
      address: embedded
      location: { lat: 25.7617, lon: -80.1918 }
      hardware: [general]
      capacity: { vms: ${sim.vms ?? 50} }
      sim: { latencyMs: ${ms}, bootMs: ${ms}, failCalls: [${(sim.failCalls ?? []).join(', ')}] }
`;
}

export function fleetYaml(name: string, spec: { count: number; state?: string; image?: string; cpu?: number; strategy?: string; protect?: boolean; encryptedDisk?: boolean }): string {
  return `apiVersion: fleet/v1
kind: Fleet
metadata: { name: ${name}, owner: team-${name} }
spec:
  count: ${spec.count}
  image: ${spec.image ?? 'ubuntu-22.04'}
  size: { cpu: ${spec.cpu ?? 2}, memoryGiB: 4, diskGiB: 20 }
  placement: { strategy: ${spec.strategy ?? 'spread'} }
  state: ${spec.state ?? 'Running'}
  encryptedDisk: ${spec.encryptedDisk ?? true}
  protect: ${spec.protect ?? false}
`;
}

/**
 * A temp stack for one describe block: made before its tests, removed after
 * them; `fleet(...args)` runs the CLI on it (`--stack` added). Its fields are
 * read while the block's tests run.
 */
export function useTempStack(opts: Parameters<typeof tempStack>[0] = {}): TempStack & { fleet(...args: string[]): Promise<CliRun> } {
  let made: TempStack | undefined;
  const get = (): TempStack => {
    if (!made) throw new Error('useTempStack: the stack exists only while the tests of its describe block run');
    return made;
  };
  beforeAll(async () => {
    made = await tempStack(opts);
  });
  afterAll(async () => {
    await made?.remove();
  });
  return {
    get dir() {
      return get().dir;
    },
    get gate() {
      return get().gate;
    },
    spec: (name, yaml) => get().spec(name, yaml),
    remove: () => get().remove(),
    fleet: (...args) => runCli([...args, '--stack', get().dir], { cwd: REPO }),
  };
}
