// Credentials for tests that call a sim driver directly: a key as the DMZ
// client derives it from a (made-up) token at the authority, and scoped
// credentials signed with it as the authority signs them
// (protocol/scoped-token.ts). Tests that run the whole path get both from the
// real authority and DMZ client instead.
import type { KeyObject } from 'node:crypto';
import { credentialKey, signScopedToken } from '../../../protocol/index.ts';
import type { ScopedCredentials } from '../types.ts';

/** The DMZ client token at the authority these tests pretend `dataCenter` has. */
export function testDmzToken(dataCenter: string): string {
  return `test-dmz-token-${dataCenter}`;
}

/** The credential key of `dataCenter` under testDmzToken. */
export function testCredentialKey(dataCenter: string): KeyObject {
  return credentialKey(testDmzToken(dataCenter), dataCenter);
}

/** Credentials of `dataCenter` valid for `ms`, signed with `key` (default: the data center's test key). */
export function signedCredentials(dataCenter: string, opts: { ms?: number; key?: KeyObject } = {}): ScopedCredentials {
  const expiresAt = new Date(Date.now() + (opts.ms ?? 60_000)).toISOString();
  return { dataCenter, token: signScopedToken(opts.key ?? testCredentialKey(dataCenter), dataCenter, expiresAt), expiresAt };
}
