// Test support: a real authority (brokering AWS credentials from the fake
// STS) and a real DMZ client running the aws driver against the fake EC2,
// over loopback HTTP; nock serves only the AWS APIs.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAuthority } from '../../../engine/authority/index.ts';
import { AwsCredentialBroker } from '../../../engine/authority/credentials/aws.ts';
import { FakeSts } from '../../../engine/authority/credentials/fake-sts.ts';
import { openRecord } from '../../../engine/record/index.ts';
import type { FleetRecord } from '../../../engine/record/types.ts';
import { defaultPack } from '../../testing.ts';
import { startWorldDmz, type CloudWorld } from '../world.ts';
import { AwsDriver } from './aws.ts';
import { FakeEc2 } from './fake-ec2.ts';
import { CONTRACT_TYPES } from './testing.ts';

export const AWS_SECRET = 'aws-world-secret';

export interface AwsWorld extends CloudWorld<AwsDriver> {
  ec2: FakeEc2;
  sts: FakeSts;
  broker: AwsCredentialBroker;
}

export async function startAwsWorld(opts: { record?: FleetRecord } = {}): Promise<AwsWorld> {
  const stack = `aws-${randomUUID().slice(0, 8)}`;
  const dataCenter = 'virginia';
  const dir = await mkdtemp(join(tmpdir(), 'dmzfleet-aws-world-'));
  const ec2 = await FakeEc2.start();
  const sts = new FakeSts();
  const broker = new AwsCredentialBroker({
    stack,
    dataCenters: [{ name: dataCenter, region: 'us-east-1', roleArn: 'arn:aws:iam::123456789012:role/dmzfleet-virginia-dmz' }],
    credentials: { accessKeyId: 'AKIDAUTHORITY', secretAccessKey: 'authority-secret' },
    stsEndpoint: sts.endpoint,
  });
  const record = opts.record ?? (await openRecord('memory://'));
  const pack = await defaultPack();
  const authorityToken = `authority-${randomUUID()}`;
  const authority = await startAuthority({ record, pack, stackName: stack, dataCenters: [{ name: dataCenter, token: authorityToken }], secret: AWS_SECRET, credentialBroker: broker });
  const driver = new AwsDriver({
    dataCenter,
    stack,
    settings: { region: 'us-east-1', subnetId: 'subnet-0abc', securityGroupIds: ['sg-0abc'], keyName: 'ops', pollMs: 2 },
    instanceTypes: CONTRACT_TYPES,
    endpoint: ec2.endpoint,
    readCredentials: { accessKeyId: 'AKIDREADONLY', secretAccessKey: 'read-secret' },
    requestTimeoutMs: 2000,
  });
  const { dmz, client } = await startWorldDmz({ dataCenter, driver, authority, authorityToken, dir, pack });
  return {
    stack,
    dataCenter,
    ec2,
    sts,
    broker,
    record,
    authority,
    driver,
    dmz,
    client,
    dir,
    async close() {
      await dmz.close();
      await driver.close();
      await authority.close();
      broker.close();
      if (!opts.record) await record.close();
      await ec2.close();
      sts.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
