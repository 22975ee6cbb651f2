export { Authority, toAuthorityVm, type AuthorityCoreOptions } from './authority.ts';
export { startAuthority, type RunningService, type StartAuthorityOptions } from './server.ts';
export { ProtocolError, buildOpenApi, createService, doc, listen, tokenTable } from './http.ts';
export { diskKey, loadOrCreateSecret, randomToken, sameSecret, sha256 } from './keys.ts';
export type * from './protocol.ts';
export * from './schemas.ts';
