export { main, buildProgram, DEFAULT_STACK, VERSION } from './main.ts';
export * from './io.ts';
export * from './options.ts';
