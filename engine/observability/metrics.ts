// Prometheus metrics for the long-running services (the authority and the
// DMZ clients), served at GET /metrics. One registry per service instance
// (never prom-client's global one), so two services in one process (the
// embedded default, tests) keep their figures apart.
//
// Labels are closed sets or bounded names (route patterns, status codes,
// operations, outcomes, data centers): never a VM id, an address, a reason's
// free text or a token, so series stay few and nothing secret is exported.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface ServiceMetrics {
  registry: Registry;
  /** Requests answered, by route pattern, method and status code. */
  requests: Counter<'route' | 'method' | 'status'>;
  /** Time from request to answer, by route pattern. */
  requestSeconds: Histogram<'route'>;
  /** Authority decisions by outcome: approved | modified | vetoed. */
  decisions: Counter<'outcome'>;
  /** Boot requests: approved or denied. */
  boots: Counter<'outcome'>;
  /** A DMZ client's steps: driver operation and outcome (ok | failed | vetoed), in seconds. */
  stepSeconds: Histogram<'operation' | 'outcome'>;
}

const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** A fresh registry with the service's metrics and Node's process metrics (prefixed `fleet_`). */
export function createMetrics(service: 'authority' | 'dmz-client', labels: Record<string, string> = {}): ServiceMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service, ...labels });
  collectDefaultMetrics({ register: registry, prefix: 'fleet_' });
  const registers = [registry];
  return {
    registry,
    requests: new Counter({ name: 'fleet_http_requests_total', help: 'HTTP requests answered, by route, method and status.', labelNames: ['route', 'method', 'status'], registers }),
    requestSeconds: new Histogram({ name: 'fleet_http_request_duration_seconds', help: 'Time from request to answer.', labelNames: ['route'], buckets: SECONDS, registers }),
    decisions: new Counter({ name: 'fleet_authority_decisions_total', help: 'Authority decisions by outcome (approved, modified, vetoed).', labelNames: ['outcome'], registers }),
    boots: new Counter({ name: 'fleet_boot_requests_total', help: 'Boot requests approved or denied.', labelNames: ['outcome'], registers }),
    stepSeconds: new Histogram({ name: 'fleet_step_duration_seconds', help: 'Time of a DMZ client step (authorize, driver call, report) by operation and outcome.', labelNames: ['operation', 'outcome'], buckets: SECONDS, registers }),
  };
}

/**
 * Counts and times every answered request by its route pattern (`/v1/vms/:id`,
 * never the concrete URL), and serves GET /metrics in Prometheus's text format.
 * Call before the routes are registered. /metrics itself is public like the
 * health probes: it carries counts, not secrets; put it behind the network
 * policy that fronts the service if even counts are sensitive.
 */
export function registerMetrics(app: FastifyInstance, m: ServiceMetrics): void {
  const started = new WeakMap<FastifyRequest, bigint>();
  app.addHook('onRequest', async (req) => {
    started.set(req, process.hrtime.bigint());
  });
  app.addHook('onResponse', async (req: FastifyRequest, reply: FastifyReply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    m.requests.inc({ route, method: req.method, status: String(reply.statusCode) });
    const t0 = started.get(req);
    if (t0 !== undefined) m.requestSeconds.observe({ route }, Number(process.hrtime.bigint() - t0) / 1e9);
  });
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', m.registry.contentType);
    return m.registry.metrics();
  });
}

/** Times a promise into a histogram. */
export async function timed<T, L extends string>(h: Histogram<L>, labels: Partial<Record<L, string>>, work: () => Promise<T>): Promise<T> {
  const end = h.startTimer(labels);
  try {
    return await work();
  } finally {
    end();
  }
}
