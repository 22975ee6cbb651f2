export * from './types.ts';
export * from './sim/index.ts';
export * from './registry.ts';
export * from './config.ts';
