// How the authority gets a cloud's credentials for a data center's DMZ
// client (the patent's server handing the client an account for that data
// center). A broker keeps short-lived credentials per data center, fetched
// ahead (prepare, async, before an approval) and read when the approval is
// written (issued, sync). The sim needs none: its scoped token is all.
import type { ScopedCredentials } from '../../../protocol/index.ts';

export interface CredentialBroker {
  /**
   * Makes sure credentials for `dataCenter` are at hand and fresh; a data
   * center the broker does not serve is a no-op. Throws WireError
   * (`credentials-unavailable`) when the cloud refuses or cannot be reached:
   * no approval goes out without the credentials it needs.
   */
  prepare(dataCenter: string): Promise<void>;
  /** The cloud part of the credentials for `dataCenter` (after prepare), or undefined for a data center it does not serve. */
  issued(dataCenter: string): CloudCredentials | undefined;
}

export interface CloudCredentials {
  aws?: NonNullable<ScopedCredentials['aws']>;
  azure?: NonNullable<ScopedCredentials['azure']>;
  /** When they expire: the scoped credentials expire no later. */
  expiresAt: string;
}

/** Brokers of several clouds as one (one per cloud kind). */
export function combineBrokers(brokers: readonly CredentialBroker[]): CredentialBroker | undefined {
  if (brokers.length === 0) return undefined;
  if (brokers.length === 1) return brokers[0];
  return {
    prepare: async (dc) => {
      await Promise.all(brokers.map((b) => b.prepare(dc)));
    },
    issued: (dc) => {
      for (const b of brokers) {
        const c = b.issued(dc);
        if (c) return c;
      }
      return undefined;
    },
  };
}
