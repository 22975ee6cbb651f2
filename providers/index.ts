export * from './client.ts';
export { DataCenterProvider, providersFor, statePath, type DataCenterProviderOptions, type VmInputs, type VmOutputs } from './provider.ts';
export { startEmbedded, defaultTokenEnv, tokenEnvOf, simStateDir, type DataCenterEndpoint, type Embedded, type EmbeddedOptions } from './embedded.ts';
export { startDmzClient, type RunningDmzClient, type StartDmzClientOptions } from './dmz-client/index.ts';
export * from './drivers/index.ts';
