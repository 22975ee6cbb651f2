// The policy pack's contract with the loader, the planner and the authority.
import type { JSONSchemaType } from 'ajv';
import type { Where } from '../diags/index.ts';
import type { Enforcement, Operation, Change, Grant, PlanDocument, Violation } from '../model/index.ts';
import type { PlanVmRow, UsageRow } from '../record/types.ts';
import type { LoadedFleet, LoadedStack } from '../model/loaded.ts';

export interface Edge {
  from: string;
  to: string;
  /** Cloud operation that carries a VM along this edge (`none` when only the record changes). */
  operation: Operation;
  where?: Where;
}

/** The finite state diagram. Immutable once loaded. */
export interface Lifecycle {
  states: readonly string[];
  initial: string;
  terminal: readonly string[];
  requestable: readonly string[];
  failure: readonly string[];
  edges: readonly Edge[];
  /** Exactly one edge from -> to exists. The authority vetoes anything else. */
  allows(from: string, to: string): boolean;
  /**
   * Shortest path of states from `from` to `to` inclusive, deterministic (ties
   * broken by the edges' order in the pack); undefined when there is none.
   * `[from]` when equal. Never enters a failure state; `from` may be one.
   */
  path(from: string, to: string): string[] | undefined;
  /** Operation of the edge from -> to; undefined when there is no such edge. */
  operation(from: string, to: string): Operation | undefined;
  isTerminal(state: string): boolean;
}

/** What a rule reports. The engine adds policy name and enforcement level. */
export interface Finding {
  address: string;
  message: string;
  hint: string;
}

export interface RuleContext {
  stack: LoadedStack;
  /**
   * Fleets the record holds as protected (FleetRow.protected): a fleet whose
   * spec is gone stays protected. A fleet's spec, when it has one, decides.
   */
  protectedFleets?: ReadonlySet<string>;
  /** The rule's config: its settings without `enforcement`, validated against its schema. */
  config: Record<string, unknown>;
  enforcement: Enforcement;
  lifecycle: Lifecycle;
  images: Readonly<Record<string, Readonly<Record<string, string>>>>;
  fleets: readonly LoadedFleet[];
  /**
   * Live VMs of the stack in the record: every fleet's, so quotas count what
   * others hold, unless `usage` is set; then at least those of the fleets in
   * the plan's scope. What planning reads of them (PlanVmRow): no desired
   * state, cloud id or timestamps.
   */
  record: readonly PlanVmRow[];
  /**
   * What the live VMs of the fleets NOT in `record` use, summed per fleet and
   * data center, or per owner and data center with `fleet` '' (FleetRecord.usage). A narrowed plan reads full rows only for
   * the fleets in its scope and this for the rest; absent when `record`
   * holds every fleet. Quota and capacity count both.
   */
  usage?: readonly UsageRow[];
  allowDestroy: ReadonlySet<string>;
  /**
   * Owner of each fleet the record knows (FleetRow.owner), so owner-quota
   * also counts record VMs of fleets no spec names any more. Optional: when
   * absent, only fleets in `fleets` have a known owner.
   */
  owners?: Readonly<Record<string, string>>;
}

/**
 * One request the authority judges (Rule.checkRequest): a create, an edge or
 * a resize of one VM, with the VM as the record holds it (for a create: as
 * the request asks for it). What the authority knows at that moment, from
 * the record and the request, never from a spec file.
 */
export interface RequestFacts {
  kind: 'create' | 'transition' | 'resize';
  stack: string;
  fleet: string;
  address: string;
  owner: string;
  dataCenter: string;
  /** Logical image. */
  image: string;
  /** The VM's size; for a resize, the size asked for. */
  size: { cpu: number; memoryGiB: number; diskGiB: number };
  encryptedDisk: boolean;
  from: string | null;
  to: string;
  /** The edge's cloud operation (`insert` for a create, `resize`). */
  operation: string;
}

/** What a request-level check may read: its config and the pack. */
export interface RequestRuleContext {
  config: Record<string, unknown>;
  lifecycle: Lifecycle;
  images: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

/**
 * A policy rule, built in or from a pack's module. A custom rule module
 * default-exports one of these (or an array of them).
 * If a check throws, the engine reports a mandatory violation naming the rule.
 */
export interface Rule {
  name: string;
  description: string;
  /** JSON Schema of the rule's config (its settings minus `enforcement`). */
  configSchema: JSONSchemaType<unknown> | Record<string, unknown>;
  defaultEnforcement?: Enforcement;
  /** One VM change at a time. */
  checkChange?(change: Change, ctx: RuleContext): Finding[];
  /** The whole plan (for rules about totals, like max-disruption). */
  checkPlan?(plan: PlanDocument, ctx: RuleContext): Finding[];
  /**
   * Declares the rule request-level: the authority calls it for every
   * request it is asked to approve (when the rule is `mandatory`) and vetoes
   * the request on any finding, whatever the plan said (docs/policy.md,
   * "Judged at the authority"). It must judge from `req` alone.
   */
  checkRequest?(req: RequestFacts, ctx: RequestRuleContext): Finding[];
}

export interface ResolvedRule {
  rule: Rule;
  enforcement: Enforcement;
  config: Record<string, unknown>;
  /** Where the settings came from (pack or stack file). */
  where?: Where;
  /** Absolute path of the module that defines the rule; absent for a built-in rule. */
  module?: string;
}

/** One entry of a pack's instance-type catalog. */
export interface InstanceType {
  name: string;
  cpu: number;
  memoryGiB: number;
}

export interface LoadedPack {
  name: string;
  version: string;
  dir: string;
  file: string;
  lifecycle: Lifecycle;
  /** logical image -> data center -> real image */
  images: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** data center -> instance types, smallest first (engine/policy/instance-types.ts); absent when the pack has no catalog. */
  instanceTypes?: Readonly<Record<string, readonly InstanceType[]>>;
  /** data center -> what its `powerOff` operation does (`stop` when absent); cloud drivers read it. */
  powerOff?: Readonly<Record<string, 'stop' | 'deallocate'>>;
  /** Every known rule with its merged settings (pack, then stack overrides). */
  rules: ReadonlyMap<string, ResolvedRule>;
  /** Absolute paths of the custom rule modules loaded (spec.modules), in the pack's order. */
  modules?: readonly string[];
  /**
   * How long one custom rule's checks may run in one evaluation (all of its
   * checkChange calls, its checkPlan and the preview of its checkRequest)
   * or on one request at the authority (its checkRequest), in seconds (policy.yaml spec.ruleTimeoutSeconds);
   * RULE_TIMEOUT_SECONDS (10) when absent. engine/policy/deadline.ts.
   */
  ruleTimeoutSeconds?: number;
}

/** Result of the planner asking how many members a fleet may have. */
export interface Budget {
  granted: number;
  grant?: Grant;
  violations: Violation[];
}
