// The authority's AWS credential broker: for each `aws` data center of the
// stack, STS AssumeRole of the data center's role with a session policy that
// allows only that region and only instances tagged with this stack
// (fleet:stack), for 900 seconds (the shortest STS grants). The credentials
// are kept per data center and fetched again when less than a third of
// their life is left; every approval hands them to the DMZ client, which
// uses them for its mutating EC2 calls (docs/drivers/aws.md: the roles'
// policies, and why each statement is there).
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { WireError } from '../../../protocol/index.ts';
import { quietAwsSdkNodeWarning } from '../../transport/aws-sdk.ts';
import type { CloudCredentials, CredentialBroker } from './types.ts';

/** STS's minimum, and the most the broker ever asks for (DESIGN: at most 15 minutes). */
export const AWS_SESSION_SECONDS = 900;

export interface AwsBrokerDataCenter {
  name: string;
  region: string;
  roleArn: string;
  externalId?: string;
  stsEndpoint?: string;
}

export interface AwsBrokerOptions {
  stack: string;
  dataCenters: readonly AwsBrokerDataCenter[];
  /** The authority's own identity; default: the SDK's default credential chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Overrides every data center's STS endpoint (AWS_ENDPOINT_URL_STS). */
  stsEndpoint?: string;
  /** An STS call not answered within this fails. Default 10 000. */
  requestTimeoutMs?: number;
}

/** The session policy of a data center: its region, this stack's instances (docs/drivers/aws.md, "Broker"). */
export function sessionPolicy(stack: string, region: string): string {
  const arn = (type: string, account = '*') => `arn:aws:ec2:${region}:${account}:${type}/*`;
  const inRegion = { 'aws:RequestedRegion': region };
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'ChangeThisStacksInstances',
        Effect: 'Allow',
        Action: ['ec2:StartInstances', 'ec2:StopInstances', 'ec2:TerminateInstances', 'ec2:ModifyInstanceAttribute'],
        Resource: arn('instance'),
        Condition: { StringEquals: { ...inRegion, 'aws:ResourceTag/fleet:stack': stack } },
      },
      {
        Sid: 'RetagSizeOnly',
        Effect: 'Allow',
        Action: 'ec2:CreateTags',
        Resource: arn('instance'),
        Condition: { StringEquals: { ...inRegion, 'aws:ResourceTag/fleet:stack': stack }, 'ForAllValues:StringEquals': { 'aws:TagKeys': ['fleet:size'] } },
      },
      {
        Sid: 'LaunchTaggedWithThisStack',
        Effect: 'Allow',
        Action: 'ec2:RunInstances',
        Resource: [arn('instance'), arn('volume')],
        Condition: { StringEquals: { ...inRegion, 'aws:RequestTag/fleet:stack': stack } },
      },
      {
        Sid: 'LaunchFrom',
        Effect: 'Allow',
        Action: 'ec2:RunInstances',
        Resource: [`arn:aws:ec2:${region}::image/*`, arn('subnet'), arn('network-interface'), arn('security-group'), arn('key-pair')],
        Condition: { StringEquals: inRegion },
      },
      {
        Sid: 'TagAtLaunch',
        Effect: 'Allow',
        Action: 'ec2:CreateTags',
        Resource: [arn('instance'), arn('volume')],
        Condition: { StringEquals: { ...inRegion, 'ec2:CreateAction': 'RunInstances' } },
      },
      { Sid: 'Read', Effect: 'Allow', Action: 'ec2:DescribeInstances', Resource: '*', Condition: { StringEquals: inRegion } },
    ],
  });
}

interface Held {
  creds: CloudCredentials;
  /** ms since epoch after which they are fetched again. */
  renewAt: number;
}

export class AwsCredentialBroker implements CredentialBroker {
  private readonly held = new Map<string, Held>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly clients = new Map<string, STSClient>();
  private readonly byName: ReadonlyMap<string, AwsBrokerDataCenter>;
  /** AssumeRole calls made (tests read it). */
  calls = 0;

  constructor(private readonly o: AwsBrokerOptions) {
    this.byName = new Map(o.dataCenters.map((d) => [d.name, d]));
  }

  private client(dc: AwsBrokerDataCenter): STSClient {
    let c = this.clients.get(dc.name);
    if (!c) {
      const endpoint = this.o.stsEndpoint ?? dc.stsEndpoint;
      quietAwsSdkNodeWarning();
      c = new STSClient({
        region: dc.region,
        ...(endpoint ? { endpoint } : {}),
        ...(this.o.credentials ? { credentials: this.o.credentials } : {}),
        maxAttempts: 2,
        requestHandler: { requestTimeout: this.o.requestTimeoutMs ?? 10_000, connectionTimeout: this.o.requestTimeoutMs ?? 10_000 },
      });
      this.clients.set(dc.name, c);
    }
    return c;
  }

  prepare(dataCenter: string): Promise<void> {
    const dc = this.byName.get(dataCenter);
    if (!dc) return Promise.resolve();
    const h = this.held.get(dataCenter);
    if (h && Date.now() < h.renewAt) return Promise.resolve();
    let p = this.inFlight.get(dataCenter);
    if (!p) {
      p = this.assume(dc).finally(() => this.inFlight.delete(dataCenter));
      this.inFlight.set(dataCenter, p);
    }
    return p;
  }

  private async assume(dc: AwsBrokerDataCenter): Promise<void> {
    this.calls++;
    let out;
    try {
      out = await this.client(dc).send(
        new AssumeRoleCommand({
          RoleArn: dc.roleArn,
          RoleSessionName: `dmzfleet-${this.o.stack}-${dc.name}`.replace(/[^\w+=,.@-]/g, '-').slice(0, 64),
          DurationSeconds: AWS_SESSION_SECONDS,
          Policy: sessionPolicy(this.o.stack, dc.region),
          ...(dc.externalId ? { ExternalId: dc.externalId } : {}),
        }),
      );
    } catch (err) {
      const e = err as { name?: string; message?: string };
      throw new WireError('credentials-unavailable', `STS AssumeRole of ${dc.roleArn} for data center ${dc.name} failed: ${e.name ?? 'Error'}: ${(e.message ?? '').slice(0, 200)}`);
    }
    const c = out.Credentials;
    if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration) {
      throw new WireError('credentials-unavailable', `STS AssumeRole of ${dc.roleArn} answered without credentials`);
    }
    const expires = c.Expiration.getTime();
    const now = Date.now();
    const expiration = c.Expiration.toISOString();
    this.held.set(dc.name, {
      creds: { aws: { accessKeyId: c.AccessKeyId, secretAccessKey: c.SecretAccessKey, sessionToken: c.SessionToken, expiration }, expiresAt: expiration },
      renewAt: now + ((expires - now) * 2) / 3,
    });
  }

  issued(dataCenter: string): CloudCredentials | undefined {
    return this.held.get(dataCenter)?.creds;
  }

  close(): void {
    for (const c of this.clients.values()) c.destroy();
    this.clients.clear();
  }
}
