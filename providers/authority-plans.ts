// The CLI's calls to a deployed stack's authority (docs/protocol.md, "CLI → authority: sealed plans";
// docs/security.md, "Saved plans are sealed"): `fleet plan --out` has its
// plan sealed there, `fleet apply` registers the plan there before its first
// request. The token is the CLI's at the authority (the stack's
// `authority.tokenEnv`, default FLEET_AUTHORITY_TOKEN), read when it is used,
// never written anywhere.
//
// | answer                                   | diagnostic                   |
// | ---------------------------------------- | ---------------------------- |
// | 200                                      | -                            |
// | admin-proof-refused (admin-check)        | apply.admin-token-invalid    |
// | 429 admin-check-rate-limited (its limit  | apply.admin-check-limited,   |
// |   of refused checks per caller token)    |   with the wait              |
// | plan-unsigned / -foreign / -tampered /   | apply.plan-<same>            |
// |   -scope (the plan's content)            |                              |
// | 401, 403, 404 (token, role, no routes)   | apply.authority-refused      |
// | no answer, TLS refused, 5xx              | apply.authority-unreachable  |
//
// One attempt per call: both are cheap to run again, and the command fails
// before anything was applied.
import { FleetError, clip, diag, type Code } from '../engine/diags/index.ts';
import { loadClientTls, tokenInvalidDetail, unsendableTokenChar, type ClientTls } from '../engine/transport/index.ts';
import { describeFetchError, errorMessage, type TlsAdvice } from './fetch-errors.ts';
import { retryAfterMs } from './retry.ts';
import { waitText } from './admin-check.ts';
import type { LoadedStack } from '../engine/spec/index.ts';
import type { PlanDocument, PlanSeal } from '../engine/plan/types.ts';
import { adminCheckProof, randomBase64url, type AdminCheckResponse, type PlanRegisterResponse, type PlanSealResponse } from '../protocol/index.ts';
import { postJson, sendTarget } from './http-send.ts';

type AuthoritySettings = NonNullable<LoadedStack['authority']>;

const TIMEOUT_MS = 30_000;
const CONTENT_CODES: Record<string, Code> = {
  'plan-unsigned': 'apply.plan-unsigned',
  'plan-foreign': 'apply.plan-foreign',
  'plan-tampered': 'apply.plan-tampered',
  'plan-scope': 'apply.plan-scope',
};

/** The token of the CLI at the authority, or the diagnostic that it is not set (before any request). */
export function authorityToken(a: AuthoritySettings, env: NodeJS.ProcessEnv): string {
  const token = env[a.tokenEnv];
  if (!token) throw new FleetError(diag('apply.token-missing', `Set ${a.tokenEnv} to the CLI's token at the stack's authority ${a.address} (it seals and registers this stack's plans).`, a.where));
  // A header cannot carry it: the request failed as "could not be reached (ERR_INVALID_CHAR)".
  const bad = unsendableTokenChar(token);
  if (bad !== undefined) throw new FleetError(diag('apply.token-invalid', tokenInvalidDetail(a.tokenEnv, `the stack's authority ${a.address}`, bad), a.where));
  return token;
}

/** What to fix on this hop when a certificate is not trusted or refused: the stack's `authority` settings. */
const AUTHORITY_TLS_ADVICE: TlsAdvice = {
  who: "this CLI's",
  untrusted: "give the CA bundle that signed it as authority.caFile in stack.yaml",
  refused:
    'the authority requires a client certificate its CA signed (it runs with --client-ca): give the CLI\'s certificate and key as authority.certFile and authority.keyFile in stack.yaml',
};

/**
 * The CA bundle and client certificate for the authority (`authority.caFile`,
 * `certFile`, `keyFile`, made absolute by the loader), read and checked before
 * any request: readable, PEM, the key matches, in date (tls.* diagnostics
 * naming the setting, never a key's content).
 */
function authorityTls(a: AuthoritySettings): ClientTls | undefined {
  const file = a.where.file;
  const at = (k: string) => `${file ? `${file}: ` : ''}authority.${k}`;
  const { tls, diagnostics } = loadClientTls({ ca: a.caFile, cert: a.certFile, key: a.keyFile }, { ca: at('caFile'), cert: at('certFile'), key: at('keyFile') }, {}, file);
  if (diagnostics.length > 0) throw new FleetError(diagnostics);
  return tls;
}

async function call<T>(a: AuthoritySettings, env: NodeJS.ProcessEnv, path: string, payload: object, file?: string): Promise<T> {
  const token = authorityToken(a, env);
  const where = file ? { file } : a.where;
  const tls = authorityTls(a);
  const url = new URL(path, a.address.endsWith('/') ? a.address : `${a.address}/`);
  let res;
  try {
    res = await postJson(sendTarget(url, tls), payload, TIMEOUT_MS, { authorization: `Bearer ${token}` });
  } catch (err) {
    throw new FleetError(diag('apply.authority-unreachable', `POST ${url.href} ${describeFetchError(err, TIMEOUT_MS, AUTHORITY_TLS_ADVICE, { plainHttp: url.protocol === 'http:', clientCert: tls?.cert !== undefined })}.`, a.where));
  }
  let body: unknown;
  try {
    body = JSON.parse(res.text);
  } catch {
    body = undefined;
  }
  if (res.status === 200 && body) return body as T;
  const e = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
  // The authority's words (clipped by errorMessage: a line break in them forged a diagnostic line) and its code.
  const msg = typeof e?.message === 'string' ? errorMessage(body) : `status ${res.status}`;
  const content = e?.code ? CONTENT_CODES[e.code] : undefined;
  if (content) throw new FleetError(diag(content, `the authority ${a.address} refused the plan: ${msg}`, where));
  if (e?.code === 'admin-proof-refused') {
    throw new FleetError(
      diag(
        'apply.admin-token-invalid',
        `The authority ${a.address} refused FLEET_ADMIN_TOKEN: ${msg}. This apply overrides the deletion of protected members (--allow-destroy, the protect rule's override: admin), which the authority accepts only with a proof made with its own admin token. Nothing was started. Set FLEET_ADMIN_TOKEN to the admin token the authority runs with, or apply without --allow-destroy.`,
        a.where,
      ),
    );
  }
  // The authority's limit of refused admin checks per caller token: stop at once with the wait, never ask into it.
  if (res.status === 429 && e?.code === 'admin-check-rate-limited') {
    const wait = retryAfterMs(res.retryAfter);
    throw new FleetError(
      diag(
        'apply.admin-check-limited',
        `The authority ${a.address} refuses fleet apply's check of FLEET_ADMIN_TOKEN (POST ${url.href}) for now: too many checks with a wrong token came with the CLI's token (${a.tokenEnv}) within its window: ${msg}${wait !== undefined ? `; ask again in ${waitText(wait)} at the earliest` : ''}. This apply overrides the deletion of protected members (--allow-destroy, the protect rule's override: admin). Nothing was started, and nothing was asked again: a check within the window is refused again, and a wrong token asked after it only counts again. Check that FLEET_ADMIN_TOKEN is the admin token the authority runs with, then apply again once the wait is over; or apply without --allow-destroy.`,
        a.where,
      ),
    );
  }
  if (res.status >= 500 || res.status === 0) throw new FleetError(diag('apply.authority-unreachable', `POST ${url.href} answered ${res.status}: ${msg}.`, a.where));
  if (res.status === 413) {
    const size = (Buffer.byteLength(JSON.stringify(payload)) / (1024 * 1024)).toFixed(1);
    throw new FleetError(diag('apply.authority-refused', `POST ${url.href} answered 413 (too-large): the plan (${size} MiB) is larger than this authority takes (${msg}). An authority of this version takes plans up to 128 MiB; one older than it takes 1 MiB: upgrade it, or plan fewer fleets at once (--target).`, where));
  }
  throw new FleetError(diag('apply.authority-refused', `POST ${url.href} answered ${res.status}${e?.code ? ` (${clip(String(e.code))})` : ''}: ${msg}. Check ${a.tokenEnv} (the authority reads the same variable).`, a.where));
}

/** `fleet plan --out` on a deployed stack: the authority's seal for the plan (its content without a seal). */
export async function sealAtAuthority(a: AuthoritySettings, env: NodeJS.ProcessEnv, plan: PlanDocument): Promise<PlanSeal> {
  const { seal: _ignored, ...content } = plan;
  return (await call<PlanSealResponse>(a, env, 'v1/plans/seal', { plan: content })).seal as PlanSeal;
}

/** `fleet apply` on a deployed stack, before any request: the authority verifies the sealed plan and admits requests for the members it changes. */
export async function registerAtAuthority(a: AuthoritySettings, env: NodeJS.ProcessEnv, plan: PlanDocument, file?: string): Promise<PlanRegisterResponse> {
  return call<PlanRegisterResponse>(a, env, 'v1/plans/register', { plan }, file);
}

/**
 * `fleet apply` on a deployed stack, before any change starts, when its plan
 * overrides a protected deletion under the protect rule's `override: admin`:
 * the authority checks a proof made with `adminToken` (never sent itself)
 * over the stack name and a fresh nonce, and writes nothing. A wrong token is
 * apply.admin-token-invalid here, not a veto after the plan's other changes.
 */
export async function checkAdminAtAuthority(a: AuthoritySettings, env: NodeJS.ProcessEnv, stack: string, adminToken: string): Promise<AdminCheckResponse> {
  const nonce = randomBase64url(24);
  return call<AdminCheckResponse>(a, env, 'v1/plans/admin-check', { nonce, proof: adminCheckProof(adminToken, stack, nonce) });
}
