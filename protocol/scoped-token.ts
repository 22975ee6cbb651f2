// The scoped token of an approval's credentials (ScopedCredentials.token):
// the authority signs it, the data center's driver verifies it before any
// mutating call (the sim; a cloud checks its own brokered credentials).
//
// Key: per data center, HKDF-SHA256 of the bearer token that data center's
// DMZ client presents to the authority (FLEET_DMZ_TOKEN_<DC>): the one secret
// the authority and that DMZ client already share. The info string names the
// data center, so two data centers never share a key; the DMZ client hands
// its driver only the derived key, never the bearer token itself.
//
// Token: `v1.<nonce>.<expiresAtMs>.<mac>`, mac = HMAC-SHA256 under the key of
// `dmzfleet-scoped-credentials:v1:<dataCenter>:<nonce>:<expiresAtMs>`
// (base64url). The token carries the expiry the MAC covers, and it must equal
// the credentials' own `expiresAt`, so neither can be moved alone.
//
// Neither the token nor the key is ever logged or stored: a KeyObject prints
// as `SecretKeyObject { ... }`, and every refusal names only what was wrong.
import { createHmac, createSecretKey, hkdfSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import { randomBase64url } from './hash.ts';

const SALT = 'dmzfleet scoped credentials';
const LABEL = 'dmzfleet-scoped-credentials:v1';
const B64URL = /^[A-Za-z0-9_-]+$/;

/** The key that signs and verifies `dataCenter`'s scoped tokens, from its DMZ client's bearer token at the authority. */
export function credentialKey(dmzToken: string, dataCenter: string): KeyObject {
  if (dmzToken === '') throw new Error(`no DMZ client token to derive the credential key of data center ${dataCenter} from`);
  return createSecretKey(Buffer.from(hkdfSync('sha256', dmzToken, SALT, `credential-key v1 ${dataCenter}`, 32)));
}

function mac(key: KeyObject, dataCenter: string, nonce: string, expiresMs: number): string {
  return createHmac('sha256', key).update(`${LABEL}:${dataCenter}:${nonce}:${expiresMs}`).digest('base64url');
}

/** A fresh token for credentials of `dataCenter` that expire at `expiresAt` (ISO 8601). */
export function signScopedToken(key: KeyObject, dataCenter: string, expiresAt: string, nonce = randomBase64url(16)): string {
  const ms = Date.parse(expiresAt);
  if (Number.isNaN(ms)) throw new Error(`bug: expiresAt ${expiresAt} is not a time`);
  if (!B64URL.test(nonce)) throw new Error('bug: a scoped token nonce must be base64url');
  return `v1.${nonce}.${ms}.${mac(key, dataCenter, nonce, ms)}`;
}

/**
 * Why `creds` are not credentials the authority issued for `dataCenter` and
 * still valid at `now`, or undefined when they are. The reasons name what is
 * wrong, never the token.
 */
export function scopedTokenProblem(key: KeyObject, dataCenter: string, creds: { dataCenter: string; token: string; expiresAt: string }, now = Date.now()): string | undefined {
  if (creds.dataCenter !== dataCenter) return `credentials are scoped to data center ${creds.dataCenter}, not ${dataCenter}`;
  if (!creds.token) return 'credentials carry no token';
  const parts = creds.token.split('.');
  if (parts.length !== 4 || parts[0] !== 'v1' || !B64URL.test(parts[1]) || !/^[0-9]{1,15}$/.test(parts[2]) || !B64URL.test(parts[3])) {
    return 'the credentials token is not a scoped token the authority issues (v1.<nonce>.<expiry>.<mac>)';
  }
  const [, nonce, expiry, given] = parts;
  const ms = Number(expiry);
  const want = Buffer.from(mac(key, dataCenter, nonce, ms));
  const got = Buffer.from(given);
  if (want.length !== got.length || !timingSafeEqual(want, got)) {
    return `the credentials token was not signed by the authority for data center ${dataCenter} (forged, altered, or signed with another data center's key)`;
  }
  if (Date.parse(creds.expiresAt) !== ms) return `the credentials' expiresAt ${creds.expiresAt} is not the expiry their token was signed with`;
  if (ms <= now) return `credentials expired at ${new Date(ms).toISOString()}`;
  return undefined;
}
