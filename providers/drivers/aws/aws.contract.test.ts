// The aws driver passes the driver contract (providers/drivers/contract.ts)
// against EC2 served by nock (fake-ec2.ts); faults are EC2's own error
// answers (EC2_FAULTS), a hung call meets the driver's request timeout.
import { driverContract } from '../contract.ts';
import type { DriverCall } from '../types.ts';
import { AwsDriver } from './aws.ts';
import { EC2_FAULTS, FakeEc2 } from './fake-ec2.ts';
import { CONTRACT_TYPES, sessionCredentials } from './testing.ts';

/** Which EC2 action each driver call's fault lands on. */
const ACTION: Partial<Record<DriverCall, string>> = {
  createVm: 'RunInstances',
  powerOn: 'DescribeInstances',
  powerOff: 'StopInstances',
  deleteVm: 'TerminateInstances',
  get: 'DescribeInstances',
  list: 'DescribeInstances',
};

driverContract('aws', async () => {
  const ec2 = await FakeEc2.start();
  const driver = new AwsDriver({
    dataCenter: 'dc-contract',
    stack: 'contract',
    settings: { region: 'us-east-1', subnetId: 'subnet-0abc', securityGroupIds: ['sg-0abc'], pollMs: 2 },
    instanceTypes: CONTRACT_TYPES,
    endpoint: ec2.endpoint,
    readCredentials: { accessKeyId: 'AKIDREADONLY', secretAccessKey: 'read-secret' },
    requestTimeoutMs: 1500,
  });
  return {
    driver,
    creds: () => sessionCredentials('dc-contract'),
    readCreds: () => ({ dataCenter: 'dc-contract', token: 'dmz-client-read-only', expiresAt: new Date(Date.now() + 60_000).toISOString() }),
    inject: (call, kind) => {
      const action = ACTION[call];
      if (!action) throw new Error(`bug: no EC2 action for ${call}`);
      ec2.fail(action, EC2_FAULTS[kind]);
    },
    heal: () => ec2.heal(),
    vanish: (vm) => ec2.vanish(vm.cloudId),
    close: async () => {
      await driver.close();
      await ec2.close();
    },
  };
});
