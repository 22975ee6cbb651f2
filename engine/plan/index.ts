export * from './types.ts';
export { computePlan, memberName, resizeState, sameSize, formatSize, RESIZE_OPERATION, type PlanInput, type PlanOptions } from './planner.ts';
export { resolveScope, type Scope } from './scope.ts';
export { haversineKm } from './geo.ts';
export { fleetPlacement, placeMember, resolveNear, staticExclusion, type FleetPlacement } from './placement.ts';
export { basicCapacityLeft, noRulesPolicy, type CapacityLeft, type PlanContext, type PlanPolicy } from './policy-port.ts';
export { defaultPolicy } from './policy-default.ts';
export * from './render/index.ts';
export { planStack, type PlanStackOptions, type PlanStackResult } from './run.ts';
