export * from './client.ts';
export {
  ConnectedProvider,
  DataCenterProvider,
  connectProvider,
  lifecycleData,
  providersFor,
  type DataCenterProviderOptions,
  type DmzConnection,
  type MemberProvider,
  type PlannedCall,
  type VmInputs,
  type VmOutputs,
} from './provider.ts';
export { startEmbedded, defaultTokenEnv, tokenEnvOf, simStateDir, type DataCenterEndpoint, type Embedded, type EmbeddedOptions } from './embedded.ts';
export { startDmzClient, type RunningDmzClient, type StartDmzClientOptions } from './dmz-client/index.ts';
export * from './drivers/index.ts';
