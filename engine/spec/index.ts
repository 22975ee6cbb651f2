export * from './types.ts';
export { loadStack, STACK_FILE, STATE_DIR, RECORD_URL_ENV, DEFAULT_PARALLELISM, type LoadOptions, type PackLoader } from './loader.ts';
export { specHash } from './fleet.ts';
export { API_VERSION } from './schema.ts';
