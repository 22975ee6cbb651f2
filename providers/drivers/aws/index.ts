export { AwsDriver, TAGS, awsDriverFactory, type AwsDriverOptions, type AwsCredentialIdentity } from './aws.ts';
export { ec2Error } from './errors.ts';
export { EC2_STATES, mapEc2State, type Ec2State } from './states.ts';
