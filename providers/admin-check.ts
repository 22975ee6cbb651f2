// fleet apply's check of FLEET_ADMIN_TOKEN through the DMZ clients, for a
// stack whose stack.yaml names no authority (docs/security.md, "The
// authority re-checks"): each data center where the plan deletes members of a
// protected fleet under --allow-destroy (the protect rule's override: admin)
// is asked, through its own provider's connection, to have its authority
// check a proof made with the token (POST /v1/admin-check; the token itself
// is never sent, the proof is bound to a fresh nonce and to the stack name).
// Each of those data centers is asked, not one: the deletions there are
// judged by the authority that DMZ client answers to.
//
// | a DMZ client's answer                           | diagnostic                      |
// | ----------------------------------------------- | ------------------------------- |
// | 200 ok                                          | -                               |
// | 403 admin-proof-refused                         | apply.admin-token-invalid       |
// | 429 admin-check-rate-limited (its limit of      | apply.admin-check-limited, at   |
// |   refused checks per address, or its            |   once, with the wait           |
// |   authority's per data center), not retried     |   (Retry-After)                 |
// | any other refusal (404: a DMZ client without    | apply.admin-token-unverifiable  |
// |   the route; 502 with its own error body: its   |   (404, and 502 not-found: which |
// |   authority refused it or has no route;         |   side to upgrade)              |
// |   a proxy's 429), answered at once, not retried |                                 |
// | none within the retry budget, other 5xx (a      | apply.admin-token-unverifiable  |
// |   gateway's 502, whatever JSON it carries), 401 |                                 |
//
// This check only spares a half-applied plan: a DMZ client that answered ok
// for a wrong token would gain nothing, as the authority judges each
// overridden deletion's own proof (engine/authority/policy.ts judgeProtect).
import { FleetError, diag, type Diagnostic } from '../engine/diags/index.ts';
import { adminCheckProof, randomBase64url } from '../protocol/index.ts';
import type { ConnectedProvider } from './provider.ts';

/** The outcome of one data center's check: ok, refused (the token is wrong), limited (too many refused: wait), or why it could not be checked. */
type Checked =
  | { dc: string; ok: true }
  | { dc: string; ok: false; refused: string }
  | { dc: string; ok: false; limited: string }
  | { dc: string; ok: false; unverifiable: string };

/** A wait as people read it: `37 s`, `3 min`. */
export const waitText = (ms: number) => (ms < 120_000 ? `${Math.max(1, Math.ceil(ms / 1000))} s` : `${Math.ceil(ms / 60_000)} min`);

async function checkOne(dc: string, provider: ConnectedProvider | undefined, stack: string, adminToken: string): Promise<Checked> {
  const conn = provider?.connect();
  if (!conn?.adminCheck) return { dc, ok: false, unverifiable: `the data center has no DMZ client connection that can check it` };
  const nonce = randomBase64url(24);
  try {
    const a = await conn.adminCheck({ nonce, proof: adminCheckProof(adminToken, stack, nonce) });
    if (a.ok) return { dc, ok: true };
    if (a.code === 'admin-proof-refused') return { dc, ok: false, refused: a.message };
    if (a.status === 429) {
      const wait = a.retryAfterMs !== undefined ? `; ask again in ${waitText(a.retryAfterMs)} at the earliest` : '';
      if (a.code === 'admin-check-rate-limited') return { dc, ok: false, limited: `its DMZ client answered 429 (${a.code}): ${a.message}${wait}` };
      return { dc, ok: false, unverifiable: `something in front of its DMZ client answered 429 (${a.code}, not the DMZ client's own limit): ${a.message}${wait}` };
    }
    const hint =
      a.status === 404
        ? ' (a DMZ client older than this CLI, without the route: upgrade it)'
        : a.status === 502 && a.code === 'not-found'
          ? ' (its authority answered 404: an authority older than its DMZ client, without the route: upgrade the authority)'
          : '';
    return { dc, ok: false, unverifiable: `its DMZ client answered ${a.status} (${a.code}): ${a.message}${hint}` };
  } catch (err) {
    if (!(err instanceof FleetError)) throw err;
    return { dc, ok: false, unverifiable: err.diagnostics.map((d) => d.detail).join(' ') };
  }
}

/**
 * Checks `adminToken` at the authority of every data center in `dataCenters`
 * through its DMZ client, all at once; resolves when every one said ok,
 * else throws the diagnostics (apply.admin-token-invalid for a refusal,
 * apply.admin-check-limited for data centers whose DMZ client limits the
 * checks for now, with the wait, apply.admin-token-unverifiable for a data
 * center that could not check it), each saying nothing was started. `shown` names the overridden
 * members (for the message); `address` is where the diagnostics point.
 */
export async function checkAdminThroughDmzClients(o: {
  providers: ReadonlyMap<string, ConnectedProvider>;
  dataCenters: readonly string[];
  stack: string;
  adminToken: string;
  shown: string;
  address: string;
}): Promise<void> {
  const results = await Promise.all(o.dataCenters.map((dc) => checkOne(dc, o.providers.get(dc), o.stack, o.adminToken)));
  const out: Diagnostic[] = [];
  for (const r of results) {
    if (r.ok || !('refused' in r)) continue;
    out.push(
      diag(
        'apply.admin-token-invalid',
        `The authority of data center ${r.dc}, asked through its DMZ client, refused FLEET_ADMIN_TOKEN: ${r.refused}. This apply deletes or replaces ${o.shown} of protected fleets under --allow-destroy, which that authority accepts only with a proof made with its own admin token (the protect rule's override: admin). Nothing was started. Set FLEET_ADMIN_TOKEN to the admin token that authority runs with, or apply without --allow-destroy.`,
        { address: o.address },
      ),
    );
  }
  const limited = results.filter((r): r is Extract<Checked, { limited: string }> => !r.ok && 'limited' in r);
  if (limited.length > 0) {
    const why = limited.map((r) => `${r.dc}: ${r.limited.replace(/\.$/, '')}`).join('; ');
    out.push(
      diag(
        'apply.admin-check-limited',
        `This apply deletes or replaces ${o.shown} of protected fleets under --allow-destroy in ${limited.map((r) => r.dc).join(', ')}, and the stack's protect rule says override: admin, so fleet apply has each of those data centers' DMZ clients ask its authority to check FLEET_ADMIN_TOKEN (POST /v1/admin-check). It refuses those checks for now: too many checks with a wrong token came from this address (or from that data center, at its authority) within its window: ${why}. Nothing was started, and nothing was asked again: a check within the window is refused again, and a wrong token asked after it only counts again. Check that FLEET_ADMIN_TOKEN is the admin token that authority runs with, then apply again once the wait is over; or apply without --allow-destroy.`,
        { address: o.address },
      ),
    );
  }
  const unverifiable = results.filter((r): r is Extract<Checked, { unverifiable: string }> => !r.ok && 'unverifiable' in r);
  if (unverifiable.length > 0) {
    const why = unverifiable.map((r) => `${r.dc}: ${r.unverifiable.replace(/\.$/, '')}`).join('; ');
    out.push(
      diag(
        'apply.admin-token-unverifiable',
        `This apply deletes or replaces ${o.shown} of protected fleets under --allow-destroy in ${unverifiable.map((r) => r.dc).join(', ')}, and the stack's protect rule says override: admin. stack.yaml names no authority (spec.authority), so fleet apply has each of those data centers' DMZ clients ask its authority to check FLEET_ADMIN_TOKEN (POST /v1/admin-check), and it could not: ${why}. Nothing was started: a token that authority does not hold would be refused only at the first of those deletions, after the plan's other changes were applied. Make the DMZ client reachable (it and its authority of this version or later), or add the authority to stack.yaml (spec.authority: { address }, with its CLI token in FLEET_AUTHORITY_TOKEN) so the token is checked there, or apply without --allow-destroy.`,
        { address: o.address },
      ),
    );
  }
  if (out.length > 0) throw new FleetError(out);
}
