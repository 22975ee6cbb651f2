export { combineBrokers, type CloudCredentials, type CredentialBroker } from './types.ts';
export { AWS_SESSION_SECONDS, AwsCredentialBroker, sessionPolicy, type AwsBrokerDataCenter, type AwsBrokerOptions } from './aws.ts';
