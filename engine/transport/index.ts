export * from './tls.ts';
