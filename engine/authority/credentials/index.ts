export { combineBrokers, type CloudCredentials, type CredentialBroker } from './types.ts';
export { AWS_SESSION_SECONDS, AwsCredentialBroker, sessionPolicy, type AwsBrokerDataCenter, type AwsBrokerOptions } from './aws.ts';
export { ARM_SCOPE, AzureCredentialBroker, ENTRA_AUTHORITY_HOST, requestEntraToken, type AzureBrokerDataCenter, type AzureBrokerOptions, type EntraToken } from './azure.ts';
export { ScopedTokenIssuer } from './scoped.ts';
