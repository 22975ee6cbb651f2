// The Azure SDK clients the driver calls ARM with: one pair per credential
// (the DMZ client's own read identity, and each token the authority brokers),
// each HTTP request under its own deadline; and the DMZ client's read-only
// identity itself.
import type { AccessToken, TokenCredential } from '@azure/core-auth';
import type { PipelinePolicy } from '@azure/core-rest-pipeline';
import { ComputeManagementClient } from '@azure/arm-compute';
import { NetworkManagementClient } from '@azure/arm-network';
import { ARM_SCOPE, requestEntraToken } from '../../../engine/authority/credentials/azure.ts';

/** A bearer token the caller already holds (the broker's, or the read identity's) as the SDK's credential. */
export function staticTokenCredential(token: string, expiresAt: string): TokenCredential {
  const expiresOnTimestamp = Date.parse(expiresAt);
  return { getToken: async (): Promise<AccessToken> => ({ token, expiresOnTimestamp }) };
}

export interface Clients {
  compute: ComputeManagementClient;
  network: NetworkManagementClient;
}

/** The compute and network clients acting as `credential` against `endpoint`, the SDK's retries off (the DMZ client owns retries). */
export function armClients(credential: TokenCredential, o: { endpoint: string; subscriptionId: string; requestTimeoutMs: number }): Clients {
    // Every HTTP request (a call, each poll of an operation) has its own deadline; a hung one fails with `timeout`.
    const timeoutMs = o.requestTimeoutMs;
    const requestTimeout: PipelinePolicy = {
      name: 'fleetRequestTimeout',
      sendRequest: async (request, next) => {
        // Armed before the HTTP client's own timer of the same length, so it has fired when that one aborts the request.
        let hung = false;
        const timer = setTimeout(() => (hung = true), timeoutMs);
        request.timeout = timeoutMs;
        try {
          return await next(request);
        } catch (err) {
          if (hung) throw Object.assign(new Error(`no answer within ${timeoutMs} ms`), { name: 'TimeoutError' });
          throw err;
        } finally {
          clearTimeout(timer);
        }
      },
    };
    const additionalPolicies = [{ policy: requestTimeout, position: 'perCall' as const }];
    const common = { retryOptions: { maxRetries: 0 }, credentialScopes: [`${o.endpoint}/.default`], additionalPolicies };
    return {
      compute: new ComputeManagementClient(credential, o.subscriptionId, {
        endpoint: o.endpoint,
        retryOptions: { maxRetries: 0 },
        credentials: { scopes: common.credentialScopes },
        additionalPolicies,
      }),
      network: new NetworkManagementClient(credential, o.subscriptionId, { ...common, endpoint: o.endpoint, $host: o.endpoint }),
    };
  }

/**
 * The DMZ client's own read-only identity (docs/drivers/azure.md): a service
 * principal when AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET are
 * set (client-credentials, as the broker), else the VM's managed identity
 * through the instance metadata service (a DMZ client running in Azure).
 * Tokens are kept until five minutes before they expire.
 */
export function readIdentity(env: Readonly<Record<string, string | undefined>>, scope = ARM_SCOPE): TokenCredential {
  let held: AccessToken | undefined;
  const fetchToken = async (): Promise<AccessToken> => {
    const { AZURE_TENANT_ID: tenantId, AZURE_CLIENT_ID: clientId, AZURE_CLIENT_SECRET: clientSecret } = env;
    if (tenantId && clientId && clientSecret) {
      const t = await requestEntraToken({ tenantId, clientId, clientSecret, scope, ...(env.AZURE_AUTHORITY_HOST ? { authorityHost: env.AZURE_AUTHORITY_HOST } : {}) });
      return { token: t.accessToken, expiresOnTimestamp: Date.parse(t.expiresOn) };
    }
    const resource = scope.replace(/\/\.default$/, '/');
    const url = `http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(resource)}${clientId ? `&client_id=${encodeURIComponent(clientId)}` : ''}`;
    const res = await fetch(url, { headers: { Metadata: 'true' }, signal: AbortSignal.timeout(10_000) });
    const b = (await res.json()) as { access_token?: string; expires_on?: string; error?: string; error_description?: string };
    if (!res.ok || !b.access_token) throw new Error(`the managed identity has no token: ${res.status} ${b.error ?? ''} ${b.error_description ?? ''}`.trim());
    return { token: b.access_token, expiresOnTimestamp: Number(b.expires_on) * 1000 };
  };
  return {
    getToken: async () => {
      if (!held || held.expiresOnTimestamp - Date.now() < 300_000) held = await fetchToken();
      return held;
    },
  };
}
