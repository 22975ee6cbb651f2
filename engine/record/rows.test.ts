import { describe, expect, it } from 'vitest';
import type { PlanVmRow, VmRow } from './types.ts';
import { FULL_VM, LIVE_VM, PLAN_VM, appendPlanVms, liveVmFromArray, selectVm, vmFromArray, vmFromRow, type VmArray, type VmColumn, type VmSelection } from './rows.ts';

// One live VM as the database gives its columns (all text, no two alike, so
// a decoder reading the wrong position shows), and the row it is.
const TEXT: Record<VmColumn, string | null> = {
  id: 'vm-1',
  stack: 'prod',
  fleet: 'team/api',
  idx: '12',
  name: 'prod-team/api-12',
  data_center: 'miami',
  state: 'Running',
  desired_state: 'PoweredOff',
  spec_hash: 'sha256:abc',
  image: 'ubuntu-22.04',
  real_image: 'ami-1',
  cpu: '0.5',
  memory_gib: '1.25',
  disk_gib: '10',
  encrypted_disk: 'true',
  cloud_id: 'i-1',
  version: '7',
  created_at: '2026-01-02 03:04:05.678901',
  updated_at: '2026-01-03 03:04:05',
  retired_at: null,
  deposed: 'false',
};

const ROW: VmRow = {
  id: 'vm-1',
  stack: 'prod',
  fleet: 'team/api',
  index: 12,
  address: 'team/api/12',
  name: 'prod-team/api-12',
  dataCenter: 'miami',
  state: 'Running',
  desiredState: 'PoweredOff',
  specHash: 'sha256:abc',
  image: 'ubuntu-22.04',
  realImage: 'ami-1',
  size: { cpu: 0.5, memoryGiB: 1.25, diskGiB: 10 },
  encryptedDisk: true,
  cloudId: 'i-1',
  version: 7,
  createdAt: '2026-01-02T03:04:05.678Z',
  updatedAt: '2026-01-03T03:04:05.000Z',
  retiredAt: null,
  deposed: false,
};

const { desiredState: _d, createdAt: _ca, updatedAt: _u, ...PLAN_ROW } = ROW;

/** The row as a selection's array, and which positions a decoder read. */
function selected(sel: VmSelection<VmColumn>): { array: VmArray; read: Set<number> } {
  const read = new Set<number>();
  const values = sel.toArray(TEXT);
  const array = new Proxy(values, {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) read.add(Number(key));
      return Reflect.get(target, key, receiver);
    },
  });
  return { array, read };
}

const planOne = (a: VmArray): PlanVmRow => {
  const out: PlanVmRow[] = [];
  appendPlanVms(out, 'prod', [a]);
  return out[0];
};

describe('VM selections and their decoders', () => {
  it.each([
    ['FULL_VM (getVm, RETURNING, listVms with retired rows)', FULL_VM, vmFromArray, ROW],
    ['LIVE_VM (listVms)', LIVE_VM, (a: VmArray) => liveVmFromArray('prod', a), ROW],
    ['PLAN_VM (listPlanVms)', PLAN_VM, planOne, PLAN_ROW],
  ] as const)('%s reads every column it selects, each into its field', (_name, sel, decode, want) => {
    const { array, read } = selected(sel as VmSelection<VmColumn>);
    expect(decode(array)).toEqual(want);
    expect([...read].sort((x, y) => x - y)).toEqual(sel.columns.map((_, i) => i));
  });

  it('gives a selection both forms of one column list: the array, the named list, and the positions', () => {
    const sel = selectVm(['id', 'idx', 'created_at', 'deposed']);
    expect(sel.array).toBe(`ARRAY[id, idx::text, (created_at AT TIME ZONE 'UTC')::text, (deposed_at IS NOT NULL)::text]`);
    expect(sel.list).toBe(`id, idx::text AS idx, (created_at AT TIME ZONE 'UTC')::text AS created_at, (deposed_at IS NOT NULL)::text AS deposed`);
    expect(sel.at).toEqual({ id: 0, idx: 1, created_at: 2, deposed: 3 });
    expect(sel.toArray(TEXT)).toEqual(['vm-1', '12', '2026-01-02 03:04:05.678901', 'false']);
  });

  it('decodes a named row (RETURNING) as its array, and a retired row with its time', () => {
    expect(vmFromRow(TEXT)).toEqual(ROW);
    expect(vmFromRow({ ...TEXT, retired_at: '2026-02-01 00:00:00.5' })).toEqual({ ...ROW, retiredAt: '2026-02-01T00:00:00.500Z' });
  });

  it('shares one size object between consecutive planning rows of one size', () => {
    const out: PlanVmRow[] = [];
    const a = PLAN_VM.toArray(TEXT);
    const bigger = PLAN_VM.toArray({ ...TEXT, cpu: '4' });
    appendPlanVms(out, 'prod', [a, a, bigger, a]);
    expect(out[0].size).toBe(out[1].size);
    expect(out[2].size).toEqual({ cpu: 4, memoryGiB: 1.25, diskGiB: 10 });
    expect(out[3].size).not.toBe(out[0].size);
    expect(Object.isFrozen(out[0].size)).toBe(true);
  });
});
