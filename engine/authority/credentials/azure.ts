// The authority's Azure credential broker: for each `azure` data center of
// the stack, an access token of the data center's principal, whose only role
// assignment is a custom role on the data center's resource group
// (docs/drivers/azure.md, "Least-privilege role definitions"). Microsoft Entra's client-credentials
// flow: POST {authorityHost}/{tenant}/oauth2/v2.0/token with grant_type
// client_credentials, the principal's client id and secret, and scope
// `{resource manager}/.default`; the answer is `{ token_type: "Bearer",
// expires_in, access_token }`, a failure `{ error, error_description,
// error_codes }`. Tokens are kept per data center and fetched again when less
// than a third of their life is left; every approval hands the token to the
// DMZ client, which uses it for its mutating ARM calls. A token is a secret:
// never logged, never stored, never in an error message.
import { WireError } from '../../../protocol/index.ts';
import type { CloudCredentials, CredentialBroker } from './types.ts';

export const ENTRA_AUTHORITY_HOST = 'https://login.microsoftonline.com';
export const ARM_SCOPE = 'https://management.azure.com/.default';

export interface AzureBrokerDataCenter {
  name: string;
  tenantId: string;
  clientId: string;
  /** The principal's client secret (from the environment, never a file). */
  clientSecret: string;
  subscriptionId: string;
  resourceGroup: string;
  /** Entra endpoint; default https://login.microsoftonline.com. */
  authorityHost?: string;
  /** The token's audience; default the public cloud's resource manager. */
  scope?: string;
}

export interface AzureBrokerOptions {
  dataCenters: readonly AzureBrokerDataCenter[];
  /** A token call not answered within this fails. Default 10 000. */
  requestTimeoutMs?: number;
}

export interface EntraToken {
  accessToken: string;
  /** ISO time. */
  expiresOn: string;
}

/** Why Entra refused, as much as is safe to show: its error code and the first AADSTS line (never the secret, which Entra never echoes). */
function entraRefusal(status: number, text: string): string {
  try {
    const b = JSON.parse(text) as { error?: string; error_description?: string };
    const first = (b.error_description ?? '').split(/\r?\n/)[0].slice(0, 240);
    return `${status} ${b.error ?? 'error'}${first ? `: ${first}` : ''}`;
  } catch {
    return `${status}`;
  }
}

/**
 * One client-credentials token from Entra. Throws Error with a message fit
 * for a diagnostic (what Entra said; never the secret or a token).
 */
export async function requestEntraToken(p: {
  tenantId: string;
  clientId: string;
  clientSecret: string;
  scope?: string;
  authorityHost?: string;
  timeoutMs?: number;
}): Promise<EntraToken> {
  const host = (p.authorityHost ?? ENTRA_AUTHORITY_HOST).replace(/\/+$/, '');
  const url = `${host}/${encodeURIComponent(p.tenantId)}/oauth2/v2.0/token`;
  const body = new URLSearchParams({ grant_type: 'client_credentials', client_id: p.clientId, client_secret: p.clientSecret, scope: p.scope ?? ARM_SCOPE });
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: body.toString(),
      signal: AbortSignal.timeout(p.timeoutMs ?? 10_000),
    });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    throw new Error(`Entra token endpoint ${url} could not be reached: ${e.cause?.code ?? e.name}`, { cause: err });
  }
  const text = await res.text();
  if (!res.ok) throw new Error(`Entra refused a token for client ${p.clientId} in tenant ${p.tenantId}: ${entraRefusal(res.status, text)}`);
  let b: { access_token?: unknown; expires_in?: unknown; token_type?: unknown };
  try {
    b = JSON.parse(text) as typeof b;
  } catch {
    throw new Error(`Entra answered ${url} with something that is not JSON`);
  }
  const seconds = typeof b.expires_in === 'number' ? b.expires_in : Number(b.expires_in);
  if (typeof b.access_token !== 'string' || b.access_token === '' || !Number.isFinite(seconds) || seconds <= 0 || String(b.token_type).toLowerCase() !== 'bearer') {
    throw new Error(`Entra answered ${url} without a bearer token and its lifetime`);
  }
  return { accessToken: b.access_token, expiresOn: new Date(Date.now() + seconds * 1000).toISOString() };
}

interface Held {
  creds: CloudCredentials;
  renewAt: number;
}

export class AzureCredentialBroker implements CredentialBroker {
  private readonly held = new Map<string, Held>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly byName: ReadonlyMap<string, AzureBrokerDataCenter>;
  /** Token requests made (tests read it). */
  calls = 0;

  constructor(private readonly o: AzureBrokerOptions) {
    this.byName = new Map(o.dataCenters.map((d) => [d.name, d]));
  }

  prepare(dataCenter: string): Promise<void> {
    const dc = this.byName.get(dataCenter);
    if (!dc) return Promise.resolve();
    const h = this.held.get(dataCenter);
    if (h && Date.now() < h.renewAt) return Promise.resolve();
    let p = this.inFlight.get(dataCenter);
    if (!p) {
      p = this.fetch(dc).finally(() => this.inFlight.delete(dataCenter));
      this.inFlight.set(dataCenter, p);
    }
    return p;
  }

  private async fetch(dc: AzureBrokerDataCenter): Promise<void> {
    this.calls++;
    let t: EntraToken;
    try {
      t = await requestEntraToken({
        tenantId: dc.tenantId,
        clientId: dc.clientId,
        clientSecret: dc.clientSecret,
        ...(dc.scope ? { scope: dc.scope } : {}),
        ...(dc.authorityHost ? { authorityHost: dc.authorityHost } : {}),
        timeoutMs: this.o.requestTimeoutMs ?? 10_000,
      });
    } catch (err) {
      throw new WireError('credentials-unavailable', `No Azure token for data center ${dc.name}: ${(err as Error).message}`);
    }
    const now = Date.now();
    const expires = Date.parse(t.expiresOn);
    this.held.set(dc.name, {
      creds: { azure: { accessToken: t.accessToken, expiresOn: t.expiresOn, subscriptionId: dc.subscriptionId, resourceGroup: dc.resourceGroup }, expiresAt: t.expiresOn },
      renewAt: now + ((expires - now) * 2) / 3,
    });
  }

  issued(dataCenter: string): CloudCredentials | undefined {
    return this.held.get(dataCenter)?.creds;
  }

  close(): void {
    this.held.clear();
  }
}
