export * from './metrics.ts';
export * from './health.ts';
export * from './logs.ts';
