export * from './tls.ts';
export * from './tokens.ts';
