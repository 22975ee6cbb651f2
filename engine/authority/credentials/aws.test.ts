// The AWS credential broker against STS served by nock (fake-sts.ts).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProtocolError } from '../../../protocol/index.ts';
import { AWS_SESSION_SECONDS, AwsCredentialBroker, sessionPolicy } from './aws.ts';
import { FakeSts } from './fake-sts.ts';

const ROLE = 'arn:aws:iam::123456789012:role/dmzfleet-virginia-dmz';

describe('AWS credential broker', () => {
  let sts: FakeSts;
  let broker: AwsCredentialBroker;
  beforeEach(() => {
    sts = new FakeSts();
    broker = new AwsCredentialBroker({
      stack: 'hybrid',
      dataCenters: [{ name: 'virginia', region: 'us-east-1', roleArn: ROLE, externalId: 'ext-1' }],
      credentials: { accessKeyId: 'AKIDAUTHORITY', secretAccessKey: 'authority-secret' },
      stsEndpoint: sts.endpoint,
    });
  });
  afterEach(() => {
    broker.close();
    sts.close();
  });

  it('assumes the data center role for at most 900 s with a session policy of its region and this stack, signed by the authority', async () => {
    await broker.prepare('virginia');
    expect(sts.calls).toHaveLength(1);
    const p = sts.calls[0].params;
    expect(Object.fromEntries(p)).toMatchObject({ Action: 'AssumeRole', RoleArn: ROLE, DurationSeconds: '900', ExternalId: 'ext-1', RoleSessionName: 'dmzfleet-hybrid-virginia' });
    expect(Number(p.get('DurationSeconds'))).toBeLessThanOrEqual(900);
    expect(sts.calls[0].accessKeyId).toBe('AKIDAUTHORITY');
    const policy = JSON.parse(p.get('Policy')!) as { Statement: { Action: string | string[]; Resource: string | string[]; Condition: Record<string, Record<string, unknown>> }[] };
    for (const st of policy.Statement) {
      expect(st.Condition.StringEquals['aws:RequestedRegion']).toBe('us-east-1');
      for (const r of [st.Resource].flat()) expect(r === '*' || r.startsWith('arn:aws:ec2:us-east-1:')).toBe(true);
      const actions = [st.Action].flat();
      const mutating = actions.filter((a) => a !== 'ec2:DescribeInstances' && !(st.Condition.StringEquals['ec2:CreateAction'] === 'RunInstances'));
      // Every statement that changes instances is bound to this stack's tag (on the resource, or on the request at launch).
      if (mutating.length > 0 && [st.Resource].flat().some((r) => r.includes(':instance/'))) {
        expect(st.Condition.StringEquals['aws:ResourceTag/fleet:stack'] ?? st.Condition.StringEquals['aws:RequestTag/fleet:stack']).toBe('hybrid');
      }
    }
    const issued = broker.issued('virginia');
    expect(issued?.aws).toEqual({ ...sts.issued[0], expiration: expect.any(String) });
    expect(Date.parse(issued!.expiresAt) - Date.now()).toBeLessThanOrEqual(AWS_SESSION_SECONDS * 1000);
  });

  it('the session policy fits STS\'s 2048-character limit', () => {
    expect(sessionPolicy('a-stack-name-of-some-length', 'ap-southeast-2').length).toBeLessThanOrEqual(2048);
  });

  it('reuses held credentials, and concurrent asks share one AssumeRole', async () => {
    await Promise.all([broker.prepare('virginia'), broker.prepare('virginia'), broker.prepare('virginia')]);
    await broker.prepare('virginia');
    expect(sts.calls).toHaveLength(1);
  });

  it('fetches again when less than a third of their life is left', async () => {
    sts.lifetimeMs = 1;
    await broker.prepare('virginia');
    const first = broker.issued('virginia')?.aws?.accessKeyId;
    sts.lifetimeMs = undefined;
    await broker.prepare('virginia');
    expect(sts.calls).toHaveLength(2);
    expect(broker.issued('virginia')?.aws?.accessKeyId).not.toBe(first);
  });

  it('a data center it does not serve (sim) needs no call and gets nothing', async () => {
    await broker.prepare('miami');
    expect(sts.calls).toHaveLength(0);
    expect(broker.issued('miami')).toBeUndefined();
  });

  it('a refused AssumeRole is a 503 credentials-unavailable naming the role, with no credential in it', async () => {
    sts.error = { code: 'AccessDenied', status: 403, message: 'User is not authorized to perform: sts:AssumeRole' };
    const err = await broker.prepare('virginia').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err).toMatchObject({ statusCode: 503, code: 'credentials-unavailable' });
    expect((err as Error).message).toContain(ROLE);
    expect((err as Error).message).toContain('AccessDenied');
    expect((err as Error).message).not.toContain('authority-secret');
  });
});
