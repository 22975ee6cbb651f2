// Test support: STS as nock serves it, answering AssumeRole in the Query
// API's documented XML (AssumeRoleResponse / AssumeRoleResult / Credentials,
// errors as ErrorResponse / Error / Type, Code, Message). The endpoint is a
// loopback address nock intercepts: no account, no network.
import { randomBytes, randomUUID } from 'node:crypto';
import nock from 'nock';

let nextPort = 63000;

export interface AssumeRoleCall {
  params: URLSearchParams;
  /** The access key id the request was signed with (the authority's own identity). */
  accessKeyId: string;
}

export class FakeSts {
  readonly endpoint = `http://127.0.0.1:${nextPort++}`;
  readonly calls: AssumeRoleCall[] = [];
  /** Lifetime of the credentials it hands out; default the DurationSeconds asked for. */
  lifetimeMs: number | undefined;
  /** Answer every call with this error until cleared. */
  error: { code: string; status: number; message: string } | undefined;
  /** Every session's credentials handed out, to check none leaks into logs or files. */
  readonly issued: { accessKeyId: string; secretAccessKey: string; sessionToken: string }[] = [];
  private readonly interceptor = nock(this.endpoint).persist().post('/');

  constructor() {
    // nock's reply gets the request as `this`; the fake is reached through a bound helper.
    const answer = (body: unknown, authorization: string) => this.answer(body, authorization);
    this.interceptor.reply(function (_uri, body) {
      return answer(body, String(this.req.headers.authorization ?? ''));
    });
  }

  private answer(body: unknown, authorization: string): [number, string, Record<string, string>] {
    {
      const params = new URLSearchParams(typeof body === 'string' ? body : '');
      this.calls.push({ params, accessKeyId: /Credential=([^/]+)\//.exec(authorization)?.[1] ?? '' });
      if (this.error) {
        const e = this.error;
        return [
          e.status,
          `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>${e.code}</Code><Message>${e.message}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
          { 'content-type': 'text/xml' },
        ];
      }
      const seconds = Number(params.get('DurationSeconds') ?? '3600');
      const expiration = new Date(Date.now() + (this.lifetimeMs ?? seconds * 1000)).toISOString();
      const creds = {
        accessKeyId: `ASIA${randomBytes(8).toString('hex').toUpperCase()}`,
        secretAccessKey: randomBytes(20).toString('base64url'),
        sessionToken: randomBytes(40).toString('base64url'),
      };
      this.issued.push(creds);
      const session = params.get('RoleSessionName') ?? '';
      return [
        200,
        `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>` +
          `<AssumedRoleUser><Arn>${params.get('RoleArn')?.replace(':iam::', ':sts::').replace(':role/', ':assumed-role/')}/${session}</Arn><AssumedRoleId>AROA3XFRBF535PLBIFPI4:${session}</AssumedRoleId></AssumedRoleUser>` +
          `<Credentials><AccessKeyId>${creds.accessKeyId}</AccessKeyId><SecretAccessKey>${creds.secretAccessKey}</SecretAccessKey><SessionToken>${creds.sessionToken}</SessionToken><Expiration>${expiration}</Expiration></Credentials>` +
          `<PackedPolicySize>42</PackedPolicySize></AssumeRoleResult><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></AssumeRoleResponse>`,
        { 'content-type': 'text/xml' },
      ];
    }
  }

  close(): void {
    nock.removeInterceptor(this.interceptor);
  }
}
