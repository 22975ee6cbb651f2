// The data model every folder shares: addresses, sizes, operations,
// enforcement levels, replace orders, a plan's basis and the plan document.
// It imports nothing of the project, so any folder may import it without
// forming a cycle.
export * from './address.ts';
export * from './size.ts';
export * from './enforcement.ts';
export * from './operation.ts';
export * from './replace-order.ts';
export * from './basis.ts';
export * from './plan-document.ts';
export * from './rollout.ts';
