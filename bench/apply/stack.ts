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
  /** VMs --warm creates before the measured apply (the data centers' capacity makes room for them). */
  WARM?: number;
  FLEET_SIZE: number;
  STACK: string;
}

/**
 * The policy pack (policies/default with one image per data center) and the
 * fleet specs: the measured VMS VMs, or with WARM, --warm's VMs only (the
 * measured fleets are written after the warm-up apply: writeSpecs).
 */
export async function writePackAndSpecs(dir: string, b: BenchStack): Promise<void> {
  const { ROOT, DCS } = b;
  const pack = parse(await readFile(join(ROOT, 'policies', 'default', 'policy.yaml'), 'utf8')) as { spec: { images: Record<string, Record<string, string>>; modules?: unknown } };
  pack.spec.images = { 'ubuntu-22.04': Object.fromEntries(DCS.map((d) => [d, `img-ubuntu-2204-${d}`])) };
  delete pack.spec.modules;
  await mkdir(join(dir, 'pack'));
  await writeFile(join(dir, 'pack', 'policy.yaml'), stringify(pack));

  await mkdir(join(dir, 'specs'));
  if (b.WARM) await writeSpecs(dir, b, 'warm', 'w', b.WARM);
  else await writeSpecs(dir, b, 'fleets', 'f', b.VMS);
}

/**
 * specs/<file>.yaml: `vms` VMs in fleets named <prefix>-NNNN of FLEET_SIZE
 * members, each pinned to one data center, round robin (the measured fleets,
 * or --warm's, which an apply before the measured one creates).
 */
export async function writeSpecs(dir: string, b: BenchStack, file: string, prefix: string, vms: number): Promise<void> {
  const { DCS, FLEET_SIZE } = b;
  const fleets = Math.max(DCS.length, Math.ceil(vms / FLEET_SIZE));
  const docs: string[] = [];
  for (let i = 0; i < fleets; i++) {
    const count = Math.floor(vms / fleets) + (i < vms % fleets ? 1 : 0);
    docs.push(
      stringify({
        apiVersion: 'fleet/v1',
        kind: 'Fleet',
        metadata: { name: `${prefix}-${String(i).padStart(4, '0')}`, owner: `team-${i % 8}`, labels: { env: 'bench' } },
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
  await writeFile(join(dir, 'specs', `${file}.yaml`), docs.join('---\n'));
}

export interface DcEntry {
  address: string;
  sim?: { latencyMs: number; bootMs: number };
  auth?: { tokenEnv: string };
}

/** The stack file: its record, and each data center as `dc` says (embedded with the sim, or at a URL). */
export async function writeStack(dir: string, b: BenchStack, record: string, dc: (name: string, i: number) => DcEntry): Promise<void> {
  const { DCS, STACK } = b;
  const VMS = b.VMS + (b.WARM ?? 0);
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
