/* generated from specs/schema/stack.schema.json by `npm run gen:types` — do not edit */

/**
 * One environment: which fleet specs it holds, where its record lives, which policy pack governs it, and its data centers.
 */
export interface Stack {
  /**
   * File format version. Always `fleet/v1`.
   */
  apiVersion: 'fleet/v1';
  /**
   * Document kind. Always `Stack`.
   */
  kind: 'Stack';
  metadata: StackMetadata;
  spec: StackSpec;
}
/**
 * Identity of the stack.
 */
export interface StackMetadata {
  /**
   * Stack name; VMs in the record belong to exactly one stack.
   */
  name: string;
}
/**
 * The environment.
 */
export interface StackSpec {
  /**
   * Globs of fleet spec files, relative to this file. Each must match at least one file.
   *
   * @minItems 1
   */
  specs: [string, ...string[]];
  /**
   * Where the global record lives: `pglite://DIR` (embedded; DIR relative to this file) or `postgres://user@host:port/db`. The environment variable FLEET_RECORD_URL overrides it.
   */
  record: string;
  policyPack: PolicyPackRef;
  site: Site;
  /**
   * The data centers of this stack, each reached through its own DMZ client.
   *
   * @minItems 1
   */
  dataCenters: [DataCenter, ...DataCenter[]];
  apply?: ApplySettings;
}
/**
 * The policy pack that governs this stack.
 */
export interface PolicyPackRef {
  /**
   * Folder of the pack (holding policy.yaml), relative to this file.
   */
  path: string;
  /**
   * Per-stack rule settings, keyed by rule name: `enforcement` plus the rule's own config, checked against the rule's schema.
   */
  config?: {
    [k: string]: RuleSettings;
  };
}
/**
 * A rule's enforcement level and its own config keys (validated by the rule's schema).
 */
export interface RuleSettings {
  /**
   * `advisory` reports, `mandatory` fails the plan, `disabled` skips the rule.
   */
  enforcement?: 'advisory' | 'mandatory' | 'disabled';
}
/**
 * The tenant's own data center: the default reference point for `nearest` placement.
 */
export interface Site {
  /**
   * Site name.
   */
  name: string;
  location: Location;
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
 * A data center and how to reach its DMZ client.
 */
export interface DataCenter {
  /**
   * Data center name, unique in the stack.
   */
  name: string;
  /**
   * `embedded` (the CLI runs a simulated data center in-process) or the DMZ client's base URL.
   */
  address: string;
  location: Location;
  /**
   * Hardware traits this data center offers.
   */
  hardware?: string[];
  capacity: Capacity;
  auth?: DataCenterAuth;
  sim?: SimSettings;
}
/**
 * What this stack may use in the data center.
 */
export interface Capacity {
  /**
   * Maximum number of VMs.
   */
  vms?: number;
  /**
   * Maximum virtual CPUs.
   */
  cpu?: number;
  /**
   * Maximum memory in GiB.
   */
  memoryGiB?: number;
}
/**
 * How the CLI authenticates to a deployed DMZ client. Secrets are never written here, only where to find them.
 */
export interface DataCenterAuth {
  /**
   * Name of the environment variable holding the bearer token.
   */
  tokenEnv?: string;
  clientCert?: ClientCert;
}
/**
 * Mutual TLS client certificate files, relative to this file.
 */
export interface ClientCert {
  /**
   * PEM certificate.
   */
  certFile: string;
  /**
   * PEM private key.
   */
  keyFile: string;
  /**
   * PEM CA bundle that signed the DMZ client's certificate.
   */
  caFile?: string;
}
/**
 * Settings of an embedded simulated data center (`address: embedded`).
 */
export interface SimSettings {
  /**
   * Time each cloud call takes, in milliseconds (default 5).
   */
  latencyMs?: number;
  /**
   * Time a VM's agent takes to boot before it calls the boot endpoint (default: latencyMs).
   */
  bootMs?: number;
  /**
   * Share of cloud calls that fail with a transient error, 0 to 1.
   */
  errorRate?: number;
  /**
   * Cloud calls that always fail (for example `createVm`).
   */
  failCalls?: string[];
  /**
   * Cloud calls that never answer.
   */
  hangCalls?: string[];
  /**
   * Seed of the simulated failures, for repeatable runs.
   */
  seed?: number;
}
/**
 * Defaults for `fleet apply`.
 */
export interface ApplySettings {
  /**
   * Concurrent VM operations per data center (default 10).
   */
  parallelism?: number;
  /**
   * How long to wait for a fleet lock held by another apply (default 0: fail at once).
   */
  lockTimeoutSeconds?: number;
}
