export * from './types.ts';
export { bootStates, bootedStates, buildLifecycle, checkLifecycle, commitsToDeletion, type LifecycleDef } from './lifecycle.ts';
export { loadPack } from './load.ts';
export { PACK_FILE, packDirProblem, type PackDirProblem } from './pack-dir.ts';
export {
  BUILTIN_RULES,
  allowedImagesRule,
  datacenterCapacityRule,
  labelsMatch,
  maxDisruptionRule,
  ownerQuotaRule,
  protectRule,
  requireEncryptedDiskRule,
} from './rules/builtin.ts';
export { checkedFindings, describeThrown, evaluateRules, isBounded, ruleTimeout, type EvalContext } from './evaluate.ts';
export { RULE_TIMEOUT_SECONDS, ruleTimeoutMs, runWithin } from './deadline.ts';
export { capacityEnforcement, capacityGrantFor, capacityLeft, ownerLimits, ownerQuota, ownerUsage, type Usage } from './budget.ts';
export { GRAPH_FORMATS, renderDot, renderGraph, renderMermaid, type GraphFormat } from './graph.ts';
export { fitInstanceType, instanceTypesOf } from './instance-types.ts';
