// What the stack loader (engine/spec) hands to the rest of the engine: validated, defaulted and
// frozen views of the stack and fleet files, each remembering where it came
// from so later stages (policy, planner) can point diagnostics at the source.
import type { Fleet } from '../../specs/types/fleet.ts';
import type { DataCenter, Stack } from '../../specs/types/stack.ts';
import type { Where } from '../diags/index.ts';
import type { RolloutSpec } from './rollout.ts';

export interface Location {
  lat: number;
  lon: number;
}

export interface LoadedDataCenter {
  name: string;
  /** `embedded` or a URL. */
  address: string;
  location: Location;
  hardware: string[];
  capacity: { vms?: number; cpu?: number; memoryGiB?: number };
  auth?: DataCenter['auth'];
  /** The driver its DMZ client runs; absent: `sim`. */
  driver?: NonNullable<DataCenter['driver']>;
  /** The authority's credential broker settings of a cloud data center. */
  aws?: DataCenter['aws'];
  azure?: DataCenter['azure'];
  sim?: DataCenter['sim'];
  where: Where;
}

export interface LoadedStack {
  name: string;
  /** Absolute path of stack.yaml. */
  file: string;
  /** Absolute folder of stack.yaml. */
  dir: string;
  /** Record URL with `pglite://` paths made absolute; FLEET_RECORD_URL overrides the file. */
  recordUrl: string;
  /** Absolute folder for local state (`<dir>/.fleet`). */
  stateDir: string;
  packDir: string;
  /** Per-stack rule settings from `policyPack.config`. */
  ruleConfig: Record<string, Record<string, unknown>>;
  site: { name: string; location: Location };
  dataCenters: LoadedDataCenter[];
  apply: { parallelism: number; lockTimeoutSeconds: number };
  /**
   * A deployed stack's authority as the CLI reaches it (docs/security.md,
   * "Saved plans are sealed"): plans are sealed and registered there. Absent:
   * the embedded default (the record's key seals plans).
   */
  authority?: { address: string; tokenEnv: string; caFile?: string; certFile?: string; keyFile?: string; where: Where };
  raw: Stack;
}

/** A fleet spec with defaults filled in (state Running, placement strategy nearest, hardware []...). */
export interface LoadedFleet {
  name: string;
  owner: string;
  labels: Record<string, string>;
  count: number;
  minCount: number;
  image: string;
  size: { cpu: number; memoryGiB: number; diskGiB: number };
  hardware: string[];
  placement: {
    dataCenters: string[] | null;
    strategy: 'nearest' | 'spread' | 'pack';
    /** A site / data center name or coordinates; null means the stack's site. */
    near: string | Location | null;
  };
  state: string;
  encryptedDisk: boolean;
  protect: boolean;
  /** spec.rollout as written (every key optional; the planner fills the defaults from the pack's max-disruption rule). Not part of specHash: changing it changes no member. */
  rollout: RolloutSpec;
  /** Hash of everything a member's VM is built from (image, size, hardware, encryptedDisk); a change means update or replace. */
  specHash: string;
  /** Where the document starts, and per JSON path (`spec.count`) where each node is. */
  where: Where;
  pointers: ReadonlyMap<string, Where>;
  raw: Fleet;
}

