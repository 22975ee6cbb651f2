// EC2 failures onto the driver's error kinds: the one table of the aws
// driver's errors (docs/drivers/aws.md repeats it). The SDK runs with
// maxAttempts 1: the DMZ client owns retries and retries `transient` only.
//
// | EC2 error code / failure                                                   | kind          |
// | -------------------------------------------------------------------------- | ------------- |
// | RequestLimitExceeded, Throttling (retryAfterMs 1-2 s), ServiceUnavailable,  | transient     |
// | Unavailable,                                                               |               |
// | InternalError, InternalFailure, any HTTP 5xx, connection reset / refused   |               |
// | InsufficientInstanceCapacity, InsufficientCapacity, InstanceLimitExceeded, | capacity      |
// | VcpuLimitExceeded, InsufficientHostCapacity, InsufficientFreeAddresses-    |               |
// | InSubnet (the subnet is out of addresses), VolumeLimitExceeded (EBS quota)  |               |
// | IncorrectInstanceState, IncorrectState                                     | invalid-state |
// | InvalidInstanceID.NotFound                                                 | not-found     |
// | InvalidInstanceID.Malformed (the cloud id is not an instance id: EC2 looked | failed        |
// | nothing up, so the VM is not known to be gone; the message says so)         |               |
// | AuthFailure, UnauthorizedOperation, InvalidClientTokenId, ExpiredToken,     | credentials   |
// | RequestExpired, SignatureDoesNotMatch, OptInRequired, any HTTP 401 / 403   |               |
// | any of the above refused for this host's skewed clock, which the SDK        | transient     |
// | corrected by EC2's Date ($metadata.clockSkewCorrected; RequestExpired, ...) |               |
// | request timeout (the call hung past requestTimeoutMs)                      | timeout       |
// | anything else                                                              | failed        |
import { DriverError, type DriverErrorKind } from '../types.ts';

const BY_CODE: Readonly<Record<string, DriverErrorKind>> = {
  RequestLimitExceeded: 'transient',
  Throttling: 'transient',
  ThrottlingException: 'transient',
  ServiceUnavailable: 'transient',
  Unavailable: 'transient',
  InternalError: 'transient',
  InternalFailure: 'transient',
  InsufficientInstanceCapacity: 'capacity',
  InsufficientCapacity: 'capacity',
  InsufficientHostCapacity: 'capacity',
  InstanceLimitExceeded: 'capacity',
  VcpuLimitExceeded: 'capacity',
  InsufficientFreeAddressesInSubnet: 'capacity',
  VolumeLimitExceeded: 'capacity',
  IncorrectInstanceState: 'invalid-state',
  IncorrectState: 'invalid-state',
  'InvalidInstanceID.NotFound': 'not-found',
  // Not not-found: a get answering "gone" would let refresh record the VM missing, a deleteVm "deleted", for a VM
  // EC2 never looked up (a mistyped import, a record edited by hand).
  'InvalidInstanceID.Malformed': 'failed',
  AuthFailure: 'credentials',
  UnauthorizedOperation: 'credentials',
  InvalidClientTokenId: 'credentials',
  ExpiredToken: 'credentials',
  RequestExpired: 'credentials',
  SignatureDoesNotMatch: 'credentials',
  OptInRequired: 'credentials',
};

/**
 * Throttling codes. EC2 refills its token buckets per second (RunInstances' resource bucket: 2 tokens a second) and
 * says nothing of when to come back: a throttled call asks the DMZ client's retry to wait THROTTLE_PAUSE_MS or up to
 * twice that (jitter: a fleet's throttled calls do not all come back in the same second).
 */
const THROTTLED = new Set(['RequestLimitExceeded', 'Throttling', 'ThrottlingException']);
const THROTTLE_PAUSE_MS = 1000;

/**
 * EC2's messages are kept up to this many characters: long enough for the whole of a documented one (a capacity
 * refusal ends with the zones that have the type), bounded against a proxy's page passed off as an answer.
 */
const MESSAGE_MAX = 1000;

const NETWORK = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'ECONNABORTED', 'EHOSTUNREACH']);

interface SdkError {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number; clockSkewCorrected?: boolean };
}

/** The driver error of a failed EC2 call (`what` names the call in the message). */
export function ec2Error(err: unknown, what: string): DriverError {
  if (err instanceof DriverError) return err;
  const e = (err ?? {}) as SdkError;
  const code = e.Code ?? e.name ?? '';
  const status = e.$metadata?.httpStatusCode;
  const full = e.message ?? String(err);
  // IAM's refusal carries an encoded message (1-2 KB) naming the policy, action and condition that failed; only whole
  // does it decode, so it is kept whole, with how to read it. It holds no secret (it is meant for the operator).
  const encoded = /Encoded authorization failure message: ?(\S+)/.exec(full)?.[1];
  const message = encoded
    ? `${full.slice(0, full.indexOf('Encoded authorization failure message')).slice(0, 500).trim()} Why, decoded: aws sts decode-authorization-message --encoded-message ${encoded} (needs sts:DecodeAuthorizationMessage)`
    : full.slice(0, MESSAGE_MAX);
  // This host's clock is more than EC2's 5 minutes off: EC2 refused the signature, and the SDK has set its clock by
  // the answer's Date for the next request. Trying again works; the note says what to fix (the host's time sync).
  if (e.$metadata?.clockSkewCorrected) {
    return new DriverError('transient', `EC2 ${what}: ${code ? `${code}: ` : ''}${message} (this host's clock is off from EC2's by minutes; the next request corrects for it; fix the host's time sync, NTP)`);
  }
  if (code === 'InvalidInstanceID.Malformed') {
    return new DriverError(
      'failed',
      `EC2 ${what}: ${code}: ${message} (the cloud id is not an EC2 instance id, i- and 8 or 17 hex digits: the record holds a wrong cloud id for this VM, and EC2 looked nothing up; \`fleet state rm\` the member, then \`fleet import\` it with its instance's id)`,
      false,
    );
  }
  let kind: DriverErrorKind | undefined = BY_CODE[code];
  // The SDK names a reset connection TimeoutError too (with code ECONNRESET): the socket's code decides first.
  if (!kind && e.code && NETWORK.has(e.code)) kind = 'transient';
  if (!kind && (code === 'TimeoutError' || e.code === 'ETIMEDOUT' || /timed? ?out/i.test(code))) kind = 'timeout';
  if (!kind && status !== undefined && status >= 500) kind = 'transient';
  if (!kind && (status === 401 || status === 403)) kind = 'credentials';
  if (!kind && /socket hang up|ECONNRESET|ECONNREFUSED/.test(message)) kind = 'transient';
  kind ??= 'failed';
  const retryAfterMs = THROTTLED.has(code) ? THROTTLE_PAUSE_MS + Math.floor(Math.random() * THROTTLE_PAUSE_MS) : undefined;
  return new DriverError(kind, `EC2 ${what}: ${code && code !== 'Error' ? `${code}: ` : ''}${message}`, kind === 'transient', retryAfterMs !== undefined ? { retryAfterMs } : {});
}
