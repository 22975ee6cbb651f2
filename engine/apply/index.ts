export * from './executor.ts';
export * from './failure-cause.ts';
export * from './interrupted.ts';
export * from './progress.ts';
export * from './session.ts';
export * from "./refresh.ts";
export * from './saved-plan.ts';
