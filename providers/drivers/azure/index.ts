export { AzureDriver, DEFAULT_ARM_ENDPOINT, staticTokenCredential, type AzureDriverOptions, type BootAgentContext } from './azure.ts';
export { failureKind, toDriverError } from './errors.ts';
export { mapAzureState, powerStateOf, provisioningStateOf, type AzurePowerState } from './states.ts';
export { TAG, resourceNames, vmName } from './names.ts';
