export { AwsDriver, type AwsDriverOptions, type AwsCredentialIdentity } from './aws.ts';
export { TAGS } from './instances.ts';
export { awsDriverFactory } from './factory.ts';
export { ec2Error } from './errors.ts';
export { EC2_STATES, mapEc2State, type Ec2State } from './states.ts';
