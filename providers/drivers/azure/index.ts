export { AzureDriver } from './azure.ts';
export { AZURE_DATA_DEVICE, DEFAULT_ARM_ENDPOINT, type AzureDriverOptions, type BootAgentContext } from './options.ts';
export { readIdentity, staticTokenCredential } from './clients.ts';
export { azureDriverFactory } from './factory.ts';
export { failureKind, toDriverError } from './errors.ts';
export { mapAzureState, powerStateOf, provisioningStateOf, type AzurePowerState } from './states.ts';
export { TAG, resourceNames, vmName } from './names.ts';
export { WATCHER, azureBootstrap } from './bootstrap.ts';
