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
   * Stack name; VMs in the record belong to exactly one stack. At most 40 characters, as a fleet name: it is part of every VM's name (`<stack>-<fleet>-<index>`, so at most 91 characters, within the 256 EC2 and Azure allow in the tag that carries it) and three times in an AWS data center's session policy (which STS limits to 2048 characters). Visible characters only, no control, zero-width or direction characters, no space at either end, letters composed (Unicode NFC).
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
  authority?: AuthoritySettings;
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
   * Site name, at most 40 characters (as a data center's: `placement.near` names either). Visible characters only, as a data center's name.
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
   * Data center name, unique in the stack. It is also a folder and file name (the simulated data center's state under `.fleet/sim/`, a DMZ client's state folder), so it holds no `/`, `\` or control character, is not `.` or `..`, and is at most 40 characters (a file name holds at most 255 bytes; the name is also a tag value on every VM the data center makes). Visible characters only, as a stack's name: no zero-width or direction characters, no space at either end, letters composed (Unicode NFC).
   */
  name: string;
  /**
   * `embedded` (the CLI runs a simulated data center in-process) or the DMZ client's base URL, e.g. `https://dmz.miami.example:8443` (`http://` only on loopback: the CLI's token goes with every request, `tls.plain-remote`).
   */
  address: string;
  location: Location;
  /**
   * Hardware traits this data center offers, each matched exactly against a fleet's `spec.hardware` and shown in plans' placement. Visible characters only: no control, zero-width or direction characters, no space at either end, letters composed (Unicode NFC).
   */
  hardware?: string[];
  capacity: Capacity;
  auth?: DataCenterAuth;
  /**
   * Which driver the data center's DMZ client runs: `sim` (the simulated data center; default), `aws` (EC2) or `azure` (Azure Compute). A cloud data center is reached by URL, needs its broker block (`aws` / `azure`), and an instance-type catalog entry in the policy pack.
   */
  driver?: 'sim' | 'aws' | 'azure';
  aws?: AwsBroker;
  azure?: AzureBroker;
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
   * Name of the environment variable holding the bearer token the CLI presents to this data center's DMZ client; default `FLEET_CLI_TOKEN_<DC>` (the name upper-cased, other characters `_`). `fleet apply` checks it is set before any member starts (docs/security.md).
   */
  tokenEnv?: string;
  clientCert?: ClientCert;
}
/**
 * TLS files for an `https://` address, relative to this file: the client certificate the CLI presents when the DMZ client requires one (mutual TLS), and the CA bundle its certificate is verified against. Read and checked (PEM, key matches, in date) before any request (docs/security.md).
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
   * PEM CA bundle that signed the DMZ client's certificate (default: the system's CAs).
   */
  caFile?: string;
}
/**
 * How the authority brokers short-lived AWS credentials for this data center's DMZ client (STS AssumeRole with a session policy for this region and this stack's tag).
 */
export interface AwsBroker {
  /**
   * AWS region of the data center, e.g. `us-east-1`; the session policy allows no other. At most 20 characters (the longest region is 15): with the stack's name, it must keep the session policy within the 2048 characters STS allows.
   */
  region: string;
  /**
   * Role the authority assumes for the DMZ client (docs/drivers/aws.md lists its policy).
   */
  roleArn: string;
  /**
   * External id the role's trust policy asks for (not a secret).
   */
  externalId?: string;
  /**
   * STS endpoint URL (a local emulator); the environment variable AWS_ENDPOINT_URL_STS overrides it.
   */
  stsEndpoint?: string;
}
/**
 * How the authority brokers an Azure access token for this data center's DMZ client (a principal scoped to the data center's resource group).
 */
export interface AzureBroker {
  /**
   * Entra tenant of the principal.
   */
  tenantId: string;
  /**
   * Application (client) id of the principal scoped to the resource group.
   */
  clientId: string;
  /**
   * Subscription of the data center.
   */
  subscriptionId: string;
  /**
   * Resource group the principal is scoped to.
   */
  resourceGroup: string;
  /**
   * Entra endpoint URL (default `https://login.microsoftonline.com`).
   */
  authorityHost?: string;
  /**
   * Environment variable of the authority holding the principal's client secret (default `AZURE_CLIENT_SECRET`); the secret itself never sits in a file.
   */
  clientSecretEnv?: string;
  /**
   * Audience of the token (default `https://management.azure.com/.default`; a sovereign cloud or an emulator has its own).
   */
  scope?: string;
}
/**
 * Settings of an embedded simulated data center (`address: embedded`).
 */
export interface SimSettings {
  /**
   * Time each cloud call takes, in milliseconds (default 5; at most 3600000, an hour).
   */
  latencyMs?: number;
  /**
   * Time a VM's agent takes to boot before it calls the boot endpoint (default: latencyMs; at most 3600000, an hour).
   */
  bootMs?: number;
  /**
   * Share of cloud calls that fail with a transient error, 0 to 1: every call but the reads (get, list), drawn from a generator seeded by seed.
   */
  errorRate?: number;
  /**
   * Cloud calls that always fail (for example `createVm`): driver calls, as the pack's edges name them, and the reads `get` and `list`.
   */
  failCalls?: (
    'createVm' | 'powerOn' | 'boot' | 'awaitReady' | 'shutdown' | 'powerOff' | 'resize' | 'deleteVm' | 'get' | 'list'
  )[];
  /**
   * Cloud calls that never answer (the same names as failCalls).
   */
  hangCalls?: (
    'createVm' | 'powerOn' | 'boot' | 'awaitReady' | 'shutdown' | 'powerOff' | 'resize' | 'deleteVm' | 'get' | 'list'
  )[];
  /**
   * Seed of the simulated failures, for repeatable runs.
   */
  seed?: number;
  /**
   * A test gate (the crash tests kill an apply at a known point with it): while this file exists it holds JSON `{"calls": N}`, or `{"calls": N, "acted": true}`, and every data center naming it shares it. Each call that changes a data center (createVm, powerOn, boot, awaitReady, shutdown, powerOff, resize, deleteVm) takes one of the N; once none is left, each later one is held, unanswered, until the file is removed. With `acted` a held call is carried out first and only its answer is held. An absolute path; reads (get, list) are never held.
   */
  gateFile?: string;
  /**
   * A test fault: every VM's agent presents a made-up boot token instead of the one its boot edge issued, so the authority denies every boot. awaitReady then deletes the VM, unless deleteVm is in failCalls: the VM stays, powered off, and the step fails boot-denied saying it was not deleted yet (docs/recovery.md, BootFailed).
   */
  forgeBootTokens?: boolean;
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
/**
 * A deployed stack's authority (`fleet serve orchestrator`), as the CLI reaches it: `fleet plan --out` has the plan sealed there and `fleet apply` registers the plan there before any request; the authority then approves only requests of registered plans (docs/security.md, "Saved plans are sealed"). Absent: the embedded default, whose plans are sealed with the record's key.
 */
export interface AuthoritySettings {
  /**
   * The authority's base URL, e.g. `https://authority.example:7400` (`http://` only on loopback: the CLI's token goes with every request, `tls.plain-remote`).
   */
  address: string;
  /**
   * Name of the environment variable holding the CLI's token at the authority (default `FLEET_AUTHORITY_TOKEN`); the authority reads the same variable. Never written here.
   */
  tokenEnv?: string;
  /**
   * PEM CA bundle the authority's certificate is verified against, relative to this file (default: the system's CAs).
   */
  caFile?: string;
  /**
   * PEM client certificate the CLI presents to an authority that requires client certificates (it runs with --client-ca), relative to this file; with keyFile.
   */
  certFile?: string;
  /**
   * The private key of certFile (PEM, unencrypted, kept 0600), relative to this file.
   */
  keyFile?: string;
}
