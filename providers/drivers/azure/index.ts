export { AZURE_DATA_DEVICE, AzureDriver, DEFAULT_ARM_ENDPOINT, azureDriverFactory, readIdentity, staticTokenCredential, type AzureDriverOptions, type BootAgentContext } from './azure.ts';
export { failureKind, toDriverError } from './errors.ts';
export { mapAzureState, powerStateOf, provisioningStateOf, type AzurePowerState } from './states.ts';
export { TAG, resourceNames, vmName } from './names.ts';
export { WATCHER, azureBootstrap } from './bootstrap.ts';
