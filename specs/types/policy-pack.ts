/* generated from specs/schema/policy-pack.schema.json by `npm run gen:types` — do not edit */

/**
 * A policy pack: the lifecycle state diagram every VM follows, the rules every plan and request is checked against, and the image catalog.
 */
export interface PolicyPack {
  /**
   * File format version. Always `fleet/v1`.
   */
  apiVersion: 'fleet/v1';
  /**
   * Document kind. Always `PolicyPack`.
   */
  kind: 'PolicyPack';
  metadata: PolicyPackMetadata;
  spec: PolicyPackSpec;
}
/**
 * Identity of the pack.
 */
export interface PolicyPackMetadata {
  /**
   * Pack name: letters, digits, dots, dashes and underscores, starting with a letter or digit, at most 40 characters. Recorded with every plan as `<name>@<version>` and named in diagnostics, plans and the dashboard.
   */
  name: string;
  /**
   * Pack version (semver, e.g. `1.2.0` or `2.0.0-rc.1`), recorded with every plan: letters, digits, dots, dashes and `+`, starting with a letter or digit, at most 40 characters.
   */
  version: string;
  /**
   * What the pack is for.
   */
  description?: string;
}
/**
 * Lifecycle, rules and images.
 */
export interface PolicyPackSpec {
  lifecycle: Lifecycle;
  /**
   * TypeScript modules of custom rules, relative to the pack folder and inside it (an absolute path, `..` above it or a link out of it is refused); each default-exports a rule (or an array of rules).
   */
  modules?: string[];
  /**
   * How long each custom rule's checks (all of its checkChange calls, its checkPlan and the preview of its checkRequest over one plan; its checkRequest on one request at the authority) may run before they are stopped and reported as a mandatory violation (`policy.rule-timeout`): seconds, more than 0 and at most 3600; default 10. Built-in rules are not bounded.
   */
  ruleTimeoutSeconds?: number;
  /**
   * Rule settings keyed by rule name: `enforcement` plus the rule's own config. A stack's `policyPack.config` overrides them key by key.
   */
  rules?: {
    [k: string]: PackRuleSettings;
  };
  /**
   * Image catalog: logical image name -> real image name per data center. The logical images, the data centers and the real images are visible characters only: no control, zero-width or direction characters, no space at either end, letters composed (Unicode NFC); each is matched exactly or shown in plans, and would read as another.
   */
  images: {
    [k: string]: {
      [k: string]: string;
    };
  };
  /**
   * Instance-type catalog of cloud data centers (driver `aws` or `azure`): per data center, the types a VM size may run as. A VM gets the first listed type with at least its CPUs and memory, so list them smallest first. A cloud data center of the stack needs an entry, and every fleet that may be placed there a size that fits one of its types. Its data centers are visible characters only (no control, zero-width or direction characters, no space at either end, letters composed), as the stack's are.
   */
  instanceTypes?: {
    /**
     * @minItems 1
     */
    [k: string]: [InstanceType, ...InstanceType[]];
  };
  /**
   * What the `powerOff` operation does in a cloud data center, per data center: `stop` (default; an Azure VM keeps its hardware, still billed, and starts quickly) or `deallocate` (Azure releases the hardware: no compute charge, a slower start that may meet capacity limits). EC2 always releases a stopped instance's hardware. Its data centers, as the instance-type catalog's, are visible characters only (no control, zero-width or direction characters, no space at either end, letters composed).
   */
  powerOff?: {
    [k: string]: 'stop' | 'deallocate';
  };
}
/**
 * The finite state diagram: a VM moves along one edge at a time, never skipping a state. A state's name, wherever the diagram writes it (states, initial, terminal, requestable, failure, an edge's from and to), is visible characters only: no control, zero-width or direction characters, no space at either end, letters composed (Unicode NFC); it is matched exactly and would read in a plan, the history or a review as another state.
 */
export interface Lifecycle {
  /**
   * Every state a VM can be in.
   *
   * @minItems 1
   */
  states: [string, ...string[]];
  /**
   * The state of a VM that has just been requested.
   */
  initial: string;
  /**
   * States with no way out (a deleted VM).
   *
   * @minItems 1
   */
  terminal: [string, ...string[]];
  /**
   * The edges of the diagram.
   */
  transitions: Transition[];
  /**
   * States a fleet spec may ask for.
   *
   * @minItems 1
   */
  requestable: [string, ...string[]];
  /**
   * States a VM lands in when an operation fails or a boot is denied.
   */
  failure?: string[];
}
/**
 * One allowed state change.
 */
export interface Transition {
  /**
   * State before.
   */
  from: string;
  /**
   * State after.
   */
  to: string;
  /**
   * The cloud operation that carries the VM along this edge (`createVm`, `powerOn`, `boot`, `shutdown`, `powerOff`, `resize`, `deleteVm`, `none`).
   */
  operation?: string;
  /**
   * What the edge means.
   */
  description?: string;
}
/**
 * A rule's enforcement level and its own config keys (validated by the rule's config schema). Without `enforcement` the rule's default level applies.
 */
export interface PackRuleSettings {
  /**
   * `advisory` reports, `mandatory` fails the plan, `disabled` skips the rule.
   */
  enforcement?: 'advisory' | 'mandatory' | 'disabled';
}
/**
 * One instance type (EC2 instance type, Azure VM size).
 */
export interface InstanceType {
  /**
   * The cloud's name of the type, e.g. `m6i.large` or `Standard_D2s_v5`. Visible characters only: no control, zero-width or direction characters, no space at either end, letters composed (Unicode NFC), as the catalog's data centers.
   */
  name: string;
  /**
   * Virtual CPUs.
   */
  cpu: number;
  /**
   * Memory in GiB.
   */
  memoryGiB: number;
}
