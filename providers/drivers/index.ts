export * from './types.ts';
export * from './sim/index.ts';
