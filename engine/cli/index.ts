export { main, buildProgram, DEFAULT_STACK } from './main.ts';
export * from './io.ts';
