// The CLI's calls to a deployed stack's authority (docs/protocol.md, "Plans";
// docs/security.md, "Saved plans are sealed"): `fleet plan --out` has its
// plan sealed there, `fleet apply` registers the plan there before its first
// request. The token is the CLI's at the authority (the stack's
// `authority.tokenEnv`, default FLEET_AUTHORITY_TOKEN), read when it is used,
// never written anywhere.
//
// | answer                                   | diagnostic                   |
// | ---------------------------------------- | ---------------------------- |
// | 200                                      | -                            |
// | plan-unsigned / -foreign / -tampered /   | apply.plan-<same>            |
// |   -scope (the plan's content)            |                              |
// | 401, 403, 404 (token, role, no routes)   | apply.authority-refused      |
// | no answer, TLS refused, 5xx              | apply.authority-unreachable  |
//
// One attempt per call: both are cheap to run again, and the command fails
// before anything was applied.
import { readFileSync } from 'node:fs';
import { FleetError, diag, type Code } from '../engine/diags/index.ts';
import type { LoadedStack } from '../engine/spec/index.ts';
import type { PlanDocument, PlanSeal } from '../engine/plan/types.ts';
import type { PlanRegisterResponse, PlanSealResponse } from '../protocol/index.ts';
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
  return token;
}

async function call<T>(a: AuthoritySettings, env: NodeJS.ProcessEnv, path: string, plan: PlanDocument, file?: string): Promise<T> {
  const token = authorityToken(a, env);
  const where = file ? { file } : a.where;
  let ca: string | undefined;
  if (a.caFile) {
    try {
      ca = readFileSync(a.caFile, 'utf8');
    } catch (err) {
      throw new FleetError(diag('apply.authority-unreachable', `could not read authority.caFile ${a.caFile}: ${(err as Error).message}.`, a.where));
    }
  }
  const url = new URL(path, a.address.endsWith('/') ? a.address : `${a.address}/`);
  let res;
  try {
    res = await postJson(sendTarget(url, ca ? { ca } : undefined), { plan }, TIMEOUT_MS, { authorization: `Bearer ${token}` });
  } catch (err) {
    throw new FleetError(diag('apply.authority-unreachable', `POST ${url.href} failed: ${(err as Error).message}.`, a.where));
  }
  let body: unknown;
  try {
    body = JSON.parse(res.text);
  } catch {
    body = undefined;
  }
  if (res.status === 200 && body) return body as T;
  const e = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
  const msg = e?.message ?? `status ${res.status}`;
  const content = e?.code ? CONTENT_CODES[e.code] : undefined;
  if (content) throw new FleetError(diag(content, `the authority ${a.address} refused the plan: ${msg}`, where));
  if (res.status >= 500 || res.status === 0) throw new FleetError(diag('apply.authority-unreachable', `POST ${url.href} answered ${res.status}: ${msg}.`, a.where));
  throw new FleetError(diag('apply.authority-refused', `POST ${url.href} answered ${res.status}${e?.code ? ` (${e.code})` : ''}: ${msg}. Check ${a.tokenEnv} (the authority reads the same variable).`, a.where));
}

/** `fleet plan --out` on a deployed stack: the authority's seal for the plan (its content without a seal). */
export async function sealAtAuthority(a: AuthoritySettings, env: NodeJS.ProcessEnv, plan: PlanDocument): Promise<PlanSeal> {
  const { seal: _ignored, ...content } = plan;
  return (await call<PlanSealResponse>(a, env, 'v1/plans/seal', content as PlanDocument)).seal as PlanSeal;
}

/** `fleet apply` on a deployed stack, before any request: the authority verifies the sealed plan and admits requests for the members it changes. */
export async function registerAtAuthority(a: AuthoritySettings, env: NodeJS.ProcessEnv, plan: PlanDocument, file?: string): Promise<PlanRegisterResponse> {
  return call<PlanRegisterResponse>(a, env, 'v1/plans/register', plan, file);
}
