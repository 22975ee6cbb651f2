// Liveness and readiness probes, as Kubernetes and load balancers expect:
// /livez answers 200 while the process can answer at all; /readyz answers 200
// only when every dependency the service needs to decide requests answers
// (for the authority: its record, migrated; for a DMZ client: the authority,
// and its driver's credentials), else 503 naming what is not ready. Probes
// are public and say nothing secret: a check's failure is its name and a
// short reason, never a URL with credentials or a token.
import type { FastifyInstance } from 'fastify';

export type ReadinessCheck = () => Promise<void>;

export interface HealthOptions {
  /** Named checks; each rejects with an Error whose message says what is wrong. */
  checks: Record<string, ReadinessCheck>;
  /** A check that takes longer fails (default 2 s). */
  timeoutMs?: number;
  /** Set once the service is shutting down: readiness fails first, so balancers stop sending work. */
  draining?: () => boolean;
}

export interface Readiness {
  ready: boolean;
  checks: Record<string, 'ok' | string>;
}

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let t: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((_, reject) => {
    t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(t));
}

/** Runs every check at once; the service is ready when all pass and it is not draining. */
export async function readiness(o: HealthOptions): Promise<Readiness> {
  const names = Object.keys(o.checks);
  const results = await Promise.allSettled(names.map((n) => withTimeout(Promise.resolve().then(o.checks[n]), o.timeoutMs ?? 2_000)));
  const checks: Record<string, string> = {};
  names.forEach((n, i) => {
    const r = results[i];
    checks[n] = r.status === 'fulfilled' ? 'ok' : String((r.reason as Error)?.message ?? r.reason).slice(0, 200);
  });
  if (o.draining?.()) checks.shutdown = 'the service is shutting down';
  return { ready: Object.values(checks).every((v) => v === 'ok'), checks };
}

/** /readyz's answer, ready (200) or not (503), for the OpenAPI document (and its serializer: every check's name kept). */
const readinessSchema = {
  type: 'object',
  required: ['ready', 'checks'],
  properties: { ready: { type: 'boolean' }, checks: { type: 'object', additionalProperties: { type: 'string' }, description: "Each check's name: `ok`, or why it fails" } },
} as const;

export function registerHealth(app: FastifyInstance, o: HealthOptions): void {
  app.get('/livez', { schema: { summary: 'Liveness: 200 while the process answers', response: { 200: { type: 'object', required: ['live'], properties: { live: { type: 'boolean' } } } } } as object }, async () => ({ live: true }));
  const readyz = { summary: 'Readiness: 200 when every check passes, else 503 with each failing check\'s reason', response: { 200: readinessSchema, 503: readinessSchema } };
  app.get('/readyz', { schema: readyz as object }, async (_req, reply) => {
    const r = await readiness(o);
    reply.code(r.ready ? 200 : 503);
    return r;
  });
}
