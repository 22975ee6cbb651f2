export * from './diagnostic.ts';
export { CODES, type Code, type CodeEntry } from './codes/index.ts';
export { damerauDistance, suggest } from './suggest.ts';
