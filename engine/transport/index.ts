export * from './tls.ts';
export * from './tokens.ts';
export * from './aws-sdk.ts';
