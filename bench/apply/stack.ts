// The stack bench:apply applies: fleets of --fleet-size members over the data
// centers, round robin, on a copy of policies/default with one image per data
// center, and the stack file as the services or the CLI see it.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';

/** What the files are made of. */
export interface BenchStack {
  ROOT: string;
  DCS: readonly string[];
  VMS: number;
  FLEET_SIZE: number;
  STACK: string;
}

/** The policy pack (policies/default with one image per data center) and the fleet specs of `vms` VMs. */
export async function writePackAndSpecs(dir: string, b: BenchStack): Promise<void> {
  const { ROOT, DCS, VMS, FLEET_SIZE } = b;
  const pack = parse(await readFile(join(ROOT, 'policies', 'default', 'policy.yaml'), 'utf8')) as { spec: { images: Record<string, Record<string, string>>; modules?: unknown } };
  pack.spec.images = { 'ubuntu-22.04': Object.fromEntries(DCS.map((d) => [d, `img-ubuntu-2204-${d}`])) };
  delete pack.spec.modules;
  await mkdir(join(dir, 'pack'));
  await writeFile(join(dir, 'pack', 'policy.yaml'), stringify(pack));

  // Fleets of FLEET_SIZE members, each pinned to one data center, round robin.
  await mkdir(join(dir, 'specs'));
  const fleets = Math.max(DCS.length, Math.ceil(VMS / FLEET_SIZE));
  const docs: string[] = [];
  for (let i = 0; i < fleets; i++) {
    const count = Math.floor(VMS / fleets) + (i < VMS % fleets ? 1 : 0);
    docs.push(
      stringify({
        apiVersion: 'fleet/v1',
        kind: 'Fleet',
        metadata: { name: `f-${String(i).padStart(4, '0')}`, owner: `team-${i % 8}`, labels: { env: 'bench' } },
        spec: {
          count,
          image: 'ubuntu-22.04',
          size: { cpu: 1, memoryGiB: 2, diskGiB: 10 },
          hardware: ['general'],
          placement: { dataCenters: [DCS[i % DCS.length]], strategy: 'pack' },
          state: 'Running',
          encryptedDisk: true,
        },
      }),
    );
  }
  await writeFile(join(dir, 'specs', 'fleets.yaml'), docs.join('---\n'));
}

export interface DcEntry {
  address: string;
  sim?: { latencyMs: number; bootMs: number };
  auth?: { tokenEnv: string };
}

/** The stack file: its record, and each data center as `dc` says (embedded with the sim, or at a URL). */
export async function writeStack(dir: string, b: BenchStack, record: string, dc: (name: string, i: number) => DcEntry): Promise<void> {
  const { DCS, VMS, STACK } = b;
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'stack.yaml'),
    stringify({
      apiVersion: 'fleet/v1',
      kind: 'Stack',
      metadata: { name: STACK },
      spec: {
        specs: ['../specs/*.yaml'],
        record,
        policyPack: { path: '../pack', config: { 'max-disruption': { enforcement: 'disabled' } } },
        site: { name: 'hq', location: { lat: 35, lon: -90 } },
        dataCenters: DCS.map((name, i) => ({
          name,
          location: { lat: 30 + 3 * i, lon: -95 + 5 * i },
          hardware: ['general'],
          capacity: { vms: VMS * 2, cpu: VMS * 4, memoryGiB: VMS * 8 },
          ...dc(name, i),
        })),
      },
    }),
  );
}
