// The error table (errors.ts, docs/drivers/azure.md "Error mapping"), row by row.
import { describe, expect, it } from 'vitest';
import { failureKind, retryAfterMs, toDriverError, type AzureFailure } from './errors.ts';

describe('Azure failures as DriverError kinds', () => {
  const rows: [string, AzureFailure, string][] = [
    ['429 throttled', { statusCode: 429, code: 'TooManyRequests', message: 'x' }, 'transient'],
    ['429 without a code', { statusCode: 429, message: 'x' }, 'transient'],
    ['500', { statusCode: 500, message: 'x' }, 'transient'],
    ['503', { statusCode: 503, code: 'ServiceUnavailable', message: 'x' }, 'transient'],
    ['RetryableError in an operation', { code: 'RetryableError', message: 'x' }, 'transient'],
    ['connection reset', { code: 'ECONNRESET', message: 'socket hang up' }, 'transient'],
    ['request not sent', { code: 'REQUEST_SEND_ERROR', message: 'x' }, 'transient'],
    ['AllocationFailed', { statusCode: 200, code: 'AllocationFailed', message: 'x' }, 'capacity'],
    ['ZonalAllocationFailed', { code: 'ZonalAllocationFailed', message: 'x' }, 'capacity'],
    ['SkuNotAvailable', { statusCode: 409, code: 'SkuNotAvailable', message: 'x' }, 'capacity'],
    ['the subnet has no address left (SubnetIsFull, at the NIC)', { statusCode: 400, code: 'SubnetIsFull', message: 'x' }, 'capacity'],
    ['quota', { statusCode: 409, code: 'OperationNotAllowed', message: 'exceeding approved Total Regional Cores quota' }, 'capacity'],
    ['wrong power state', { statusCode: 409, code: 'OperationNotAllowed', message: 'Cannot modify extensions in the VM when the VM is not running.' }, 'invalid-state'],
    // Another operation holds the VM (a power-off still running, the portal's): released when it ends, so tried again.
    ['another operation in progress', { statusCode: 409, code: 'AnotherOperationInProgress', message: "Operation 'powerOff' is not allowed since the resource is busy with another operation." }, 'transient'],
    ['a conflicting concurrent write', { statusCode: 409, code: 'ConflictingConcurrentWriteNotAllowed', message: 'The operation was interrupted by a conflicting concurrent write on the same entity. Please retry later.' }, 'transient'],
    ['Conflict: another operation in progress', { statusCode: 409, code: 'Conflict', message: 'Another operation on this or dependent resource is in progress. To retrieve status of the operation use uri: https://management.azure.com/…' }, 'transient'],
    ['Conflict of another kind', { statusCode: 409, code: 'Conflict', message: 'The resource is in a state that does not allow the operation.' }, 'invalid-state'],
    ['409 Conflict', { statusCode: 409, code: 'Conflict', message: 'x' }, 'invalid-state'],
    ['401', { statusCode: 401, code: 'InvalidAuthenticationToken', message: 'x' }, 'credentials'],
    ['expired token', { statusCode: 401, code: 'ExpiredAuthenticationToken', message: 'x' }, 'credentials'],
    ['403', { statusCode: 403, code: 'AuthorizationFailed', message: 'x' }, 'credentials'],
    ['404 ResourceNotFound', { statusCode: 404, code: 'ResourceNotFound', message: 'x' }, 'not-found'],
    ['404 NotFound', { statusCode: 404, code: 'NotFound', message: 'x' }, 'not-found'],
    ['404 without a code', { statusCode: 404, message: 'x' }, 'not-found'],
    ['the resource group is missing (a setup problem, not a VM gone)', { statusCode: 404, code: 'ResourceGroupNotFound', message: 'x' }, 'failed'],
    ['the subscription is not visible (no role on it, or cancelled: not a VM gone)', { statusCode: 404, code: 'SubscriptionNotFound', message: 'x' }, 'credentials'],
    ['aborted by the request timeout', { name: 'AbortError', message: 'The operation was aborted.' }, 'timeout'],
    ['400 bad request', { statusCode: 400, code: 'InvalidParameter', message: 'x' }, 'failed'],
    ['nothing known', { message: 'x' }, 'failed'],
  ];
  it.each(rows)('%s -> %s', (_name, f, kind) => {
    expect(failureKind(f)).toBe(kind);
  });

  it('reads a failed long-running operation, and keeps the Retry-After', () => {
    const lro = toDriverError('create VM a', new Error('The long-running operation has failed. AllocationFailed. Allocation failed.'));
    expect(lro.kind).toBe('capacity');
    expect(lro.message).toContain('Allocation failed.');
    const throttled = Object.assign(new Error('Too many requests'), { name: 'RestError', statusCode: 429, code: 'TooManyRequests', response: { status: 429, headers: { get: (h: string) => (h === 'retry-after' ? '30' : undefined) } } });
    const t = toDriverError('start VM a', throttled);
    expect(t.kind).toBe('transient');
    expect(t.transient).toBe(true);
    expect(t.message).toMatch(/retry after 30 s/);
    expect(t.retryAfterMs).toBe(30_000);
  });

  const NOW = Date.parse('2026-12-02T04:00:00Z');
  it.each([
    ['Retry-After in seconds', { retryAfter: '17' }, 17_000],
    ['Retry-After as an HTTP date', { retryAfter: 'Wed, 02 Dec 2026 04:00:45 GMT' }, 45_000],
    ['an HTTP date already past', { retryAfter: 'Wed, 02 Dec 2026 03:59:00 GMT' }, 0],
    ['retry-after-ms wins over Retry-After', { retryAfter: '17', retryAfterMs: '2500' }, 2_500],
    ['nothing readable', { retryAfter: 'soon' }, undefined],
    ['no header', {}, undefined],
  ] as const)('%s -> %s ms', (_name, f, want) => {
    expect(retryAfterMs(f, NOW)).toBe(want);
  });

  it('only a transient failure carries a wait', () => {
    const headers = (h: string) => (h === 'retry-after' ? '30' : undefined);
    const forbidden = Object.assign(new Error('no'), { name: 'RestError', statusCode: 403, code: 'AuthorizationFailed', response: { status: 403, headers: { get: headers } } });
    expect(toDriverError('start VM a', forbidden)).toMatchObject({ kind: 'credentials', retryAfterMs: undefined });
    const unavailable = Object.assign(new Error('busy'), { name: 'RestError', statusCode: 503, response: { status: 503, headers: { get: (h: string) => (h === 'x-ms-retry-after-ms' ? '750' : undefined) } } });
    expect(toDriverError('start VM a', unavailable)).toMatchObject({ kind: 'transient', retryAfterMs: 750 });
  });
});
