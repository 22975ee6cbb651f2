export { startDmzClient, type RunningDmzClient, type StartDmzClientOptions } from './server.ts';
export { IdempotencyStore } from './idempotency.ts';
