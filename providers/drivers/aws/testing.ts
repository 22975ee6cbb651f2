// Test support of the aws driver: brokered session credentials as the
// authority hands them out, and an instance-type catalog.
import type { InstanceType } from '../../../engine/policy/types.ts';
import type { ScopedCredentials } from '../types.ts';

/** Credentials of a mutating call: the authority's scoped token plus STS session credentials. */
export function sessionCredentials(dataCenter: string, accessKeyId = 'ASIABROKERED'): ScopedCredentials {
  const expiresAt = new Date(Date.now() + 10 * 60_000).toISOString();
  return {
    dataCenter,
    token: 'scoped',
    expiresAt,
    aws: { accessKeyId, secretAccessKey: 'session-secret', sessionToken: 'session-token', expiration: new Date(Date.now() + 15 * 60_000).toISOString() },
  };
}

export const CONTRACT_TYPES: readonly InstanceType[] = [
  { name: 'm6i.large', cpu: 2, memoryGiB: 8 },
  { name: 'm6i.xlarge', cpu: 4, memoryGiB: 16 },
  { name: 'm6i.2xlarge', cpu: 8, memoryGiB: 32 },
];
