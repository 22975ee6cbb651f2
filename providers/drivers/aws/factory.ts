// The registry's entry for the `aws` driver: settings from the DMZ client
// config, the instance type catalog from the pack, endpoint and the read-only
// identity from the environment.
import { DriverError } from '../types.ts';
import type { DriverFactory } from '../registry.ts';
import { AwsDriver } from './aws.ts';

/** The registry's factory: settings from the DMZ client config, the catalog from the pack, AWS_ENDPOINT_URL_EC2 from the environment. */
export const awsDriverFactory: DriverFactory = async (ctx) => {
  const settings = ctx.config.aws;
  if (!settings) throw new DriverError('failed', 'the aws driver needs spec.aws in the DMZ client config');
  // The authority's session policy allows the stack entry's region only: a config calling EC2 elsewhere would read
  // fine (its own identity) and have every mutating call refused. Said at start, naming both.
  const brokered = ctx.dataCenter.aws?.region;
  if (brokered !== undefined && brokered !== settings.region) {
    throw new DriverError(
      'failed',
      `the DMZ client config's spec.aws.region ${settings.region} is not data center ${ctx.dataCenter.name}'s region in the stack (aws.region ${brokered}), the only one its brokered credentials allow; make them the same`,
    );
  }
  const types = ctx.pack.instanceTypes?.[ctx.dataCenter.name];
  if (!types) throw new DriverError('failed', `pack ${ctx.pack.name} has no instanceTypes entry for ${ctx.dataCenter.name}`);
  const endpoint = ctx.env.AWS_ENDPOINT_URL_EC2 || undefined;
  // The DMZ client's own read-only identity: the environment's keys when set, else the SDK's default chain (instance profile).
  const id = ctx.env.AWS_ACCESS_KEY_ID;
  const secret = ctx.env.AWS_SECRET_ACCESS_KEY;
  const readCredentials = id && secret ? { accessKeyId: id, secretAccessKey: secret, ...(ctx.env.AWS_SESSION_TOKEN ? { sessionToken: ctx.env.AWS_SESSION_TOKEN } : {}) } : undefined;
  return new AwsDriver({
    ...(readCredentials ? { readCredentials } : {}),
    dataCenter: ctx.dataCenter.name,
    stack: ctx.stack,
    settings,
    instanceTypes: types,
    ...(endpoint ? { endpoint } : {}),
    ...(ctx.config.requestTimeoutMs ? { requestTimeoutMs: ctx.config.requestTimeoutMs } : {}),
    ...(ctx.config.bootUrl ? { bootUrl: ctx.config.bootUrl } : {}),
    ...(ctx.config.readyTimeoutMs ? { readyTimeoutMs: ctx.config.readyTimeoutMs } : {}),
    stateDir: ctx.stateDir,
  });
};
