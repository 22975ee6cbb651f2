export { Authority, toAuthorityVm, type AuthorityCoreOptions } from './authority.ts';
export { startAuthority, uiTokens, type RunningService, type StartAuthorityOptions } from './server.ts';
export { diskKey, loadOrCreateSecret, randomToken } from './keys.ts';
export * from './decisions.ts';
