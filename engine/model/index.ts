// The data model every folder shares: addresses, sizes, operations,
// enforcement levels, replace orders, a plan's basis and the plan document.
// It imports only engine/diags, so any folder above may import it without
// forming a cycle. The loaded stack's views (model/loaded.ts: LoadedStack,
// LoadedFleet, made by engine/spec) are imported from their own file.
export * from './address.ts';
export * from './size.ts';
export * from './enforcement.ts';
export * from './operation.ts';
export * from './replace-order.ts';
export * from './basis.ts';
export * from './plan-document.ts';
export * from './rollout.ts';
