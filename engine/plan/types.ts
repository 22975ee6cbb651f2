// The plan document's types live in the data model (engine/model/plan-document.ts),
// so that policy and the record read plans without importing the planner;
// the planner's modules and its callers keep importing them from here.
export * from '../model/plan-document.ts';
export type { Enforcement, Operation, ReplaceOrder, VmSize } from '../model/index.ts';
