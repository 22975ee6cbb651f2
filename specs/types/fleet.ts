/* generated from specs/schema/fleet.schema.json by `npm run gen:types` — do not edit */

/**
 * Most members out of Running at once during a rollout: a count, or a percentage of `count` rounded down (`25%`). Default: the `max-disruption` rule's maxShare (all members when the rule is disabled).
 */
export type RolloutAmount = number | string;
/**
 * Most extra VMs a rollout may add, to create a member's replacement before deleting the old VM: a count, or a percentage of `count` rounded up. Bounded by quota and data center capacity. Default 0, except where maxUnavailable resolves to 0 too: then 1, one member per wave (set 0 for Kubernetes' rule instead: maxUnavailable 1, no extra VM; docs/rollouts.md).
 */
export type RolloutAmount1 = number | string;
/**
 * Failed members that stop the rollout: no further wave starts, the remaining members are left as they are, and the next `fleet apply` continues. A count (at least 1), or a percentage of the members the rollout changes, rounded up. Default 1.
 */
export type RolloutAmount2 = number | string;

/**
 * A fleet of identical VMs: how many, what they run, where they may live and which lifecycle state they should be in.
 */
export interface Fleet {
  /**
   * File format version. Always `fleet/v1`.
   */
  apiVersion: 'fleet/v1';
  /**
   * Document kind. Always `Fleet` for a fleet spec.
   */
  kind: 'Fleet';
  metadata: FleetMetadata;
  spec: FleetSpec;
}
/**
 * Identity of the fleet.
 */
export interface FleetMetadata {
  /**
   * Fleet name, unique in the stack: lower-case letters, digits and dashes, starting with a letter, at most 40 characters. Members are addressed `<name>/<index>`.
   */
  name: string;
  /**
   * The team that owns the fleet: the subject of quotas and entitlements. At most 64 characters. Visible characters only: no control, zero-width or direction characters, no space at either end, letters composed (Unicode NFC): anything else would read as another owner.
   */
  owner: string;
  /**
   * Free-form labels matched by policy rules (for example `env: prod`). At most 64 labels; keys not empty and at most 63 characters, values at most 256, as Kubernetes allows; keys and values in visible characters only, as for `owner`.
   */
  labels?: {
    [k: string]: string;
  };
}
/**
 * The desired fleet.
 */
export interface FleetSpec {
  /**
   * Desired number of members. Lowering it deletes the highest-numbered members first.
   */
  count: number;
  /**
   * Smallest acceptable number of members: a policy grant below this vetoes the fleet's whole change.
   */
  minCount?: number;
  /**
   * Logical image name, translated to each data center's real image by the policy pack's image catalog.
   */
  image: string;
  size: VmSize;
  /**
   * Hardware traits every data center chosen for a member must offer (for example `general`, `software-dev-optimized`).
   */
  hardware?: string[];
  placement?: Placement;
  /**
   * Desired lifecycle state of every member; one of the policy pack's requestable states. Defaults to `Running`.
   */
  state?: string;
  /**
   * Encrypt the boot disk; its key is released only to a boot the authority approves.
   */
  encryptedDisk?: boolean;
  /**
   * Deleting or replacing members needs `--allow-destroy <fleet>`.
   */
  protect?: boolean;
  rollout?: Rollout;
}
/**
 * Resources of each member.
 */
export interface VmSize {
  /**
   * Virtual CPUs, 1 to 256.
   */
  cpu: number;
  /**
   * Memory in GiB, 0.5 to 4096.
   */
  memoryGiB: number;
  /**
   * Boot disk in GiB, 1 to 65536.
   */
  diskGiB: number;
}
/**
 * Where new members may be created. Existing members never move data center.
 */
export interface Placement {
  /**
   * Allow-list of the stack's data centers; all of them when absent.
   *
   * @minItems 1
   */
  dataCenters?: [string, ...string[]];
  /**
   * `nearest`: the closest candidate to `near`; `spread`: even across candidates; `pack`: fill the fewest data centers.
   */
  strategy?: 'nearest' | 'spread' | 'pack';
  /**
   * Reference point for `nearest`: a data center or site name, or coordinates. Defaults to the stack's site.
   */
  near?: string | Location;
}
/**
 * Coordinates in decimal degrees.
 */
export interface Location {
  /**
   * Latitude, -90 to 90.
   */
  lat: number;
  /**
   * Longitude, -180 to 180.
   */
  lon: number;
}
/**
 * How a change that takes members out of Running (a new image, size or hardware; a replace) is rolled out: in waves, each starting once the previous one is Running and ready (docs/rollouts.md). Defaults come from the policy pack's `max-disruption` rule.
 */
export interface Rollout {
  maxUnavailable?: RolloutAmount;
  maxSurge?: RolloutAmount1;
  failureThreshold?: RolloutAmount2;
}
