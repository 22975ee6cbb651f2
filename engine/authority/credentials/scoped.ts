// The scoped token of every approval's credentials (protocol/scoped-token.ts):
// signed per data center with a key derived from that data center's DMZ
// client token, so its driver can verify it (the sim does, before every
// mutating call) without ever holding the authority's secret.
import { createHmac, type KeyObject } from 'node:crypto';
import { credentialKey, signScopedToken } from '../../../protocol/index.ts';

export class ScopedTokenIssuer {
  private readonly keys = new Map<string, KeyObject>();

  /**
   * `dataCenters`: each data center's DMZ client bearer token (the tokens
   * the authority authenticates callers with). `fallbackSecret`: a data
   * center without a token gets a key derived from it instead, which no DMZ
   * client holds, so its driver refuses the token (the authority core alone
   * in tests knows no tokens; every served data center has one).
   */
  constructor(
    dataCenters: readonly { name: string; token: string }[],
    private readonly fallbackSecret: string,
  ) {
    for (const d of dataCenters) this.keys.set(d.name, credentialKey(d.token, d.name));
  }

  /** A fresh scoped token for credentials of `dataCenter` that expire at `expiresAt`. */
  issue(dataCenter: string, expiresAt: string): string {
    let key = this.keys.get(dataCenter);
    if (!key) {
      key = credentialKey(createHmac('sha256', this.fallbackSecret).update(`unshared-credential-key:${dataCenter}`).digest('base64url'), dataCenter);
      this.keys.set(dataCenter, key);
    }
    return signScopedToken(key, dataCenter, expiresAt);
  }
}
