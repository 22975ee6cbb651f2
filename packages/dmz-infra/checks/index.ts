// The DMZ's security properties as functions over the resources a program
// declares (type, name, inputs: what Pulumi's engine receives; what
// pulumi.runtime.setMocks hands a test). Each returns the violations it finds,
// one sentence each naming the resource; none means the property holds. Used
// by the components' tests and by the stacks/ programs' tests, each with a
// table of broken variants proving the check catches the break.
export { awsChecks, type AwsExpectations } from './aws.ts';
export { azureChecks, type AzureExpectations } from './azure.ts';
export { runChecks, type Check, type CheckReport, type DeclaredResource, type Admitted } from './types.ts';
