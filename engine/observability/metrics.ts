// Prometheus metrics for the long-running services (the authority and the
// DMZ clients), served at GET /metrics. One registry per service instance
// (never prom-client's global one), so two services in one process (the
// embedded default, tests) keep their figures apart.
//
// Labels are closed sets or bounded names (route patterns, status codes,
// operations, outcomes, data centers): never a VM id, an address, a reason's
// free text or a token, so series stay few and nothing secret is exported.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What both services export (besides Node's process metrics). */
export interface ServiceMetrics {
  registry: Registry;
  /** Requests answered, by route pattern, method and status code. */
  requests: Counter<'route' | 'method' | 'status'>;
  /** Time from request to answer, by route pattern. */
  requestSeconds: Histogram<'route'>;
}

/** The authority's: its decisions and boot checks (recordMetrics adds its record calls). */
export interface AuthorityMetrics extends ServiceMetrics {
  /** Authority decisions by outcome (approved | modified | vetoed) and reason code (allowed, image-translated, or the veto's wire code). */
  decisions: Counter<'outcome' | 'reason'>;
  /** Boot requests: approved or denied, and why (matches, or the denial's wire code). */
  boots: Counter<'outcome' | 'reason'>;
}

/** A DMZ client's: its steps (runMetrics, bootLimitMetrics and adminCheckLimitMetrics add its runs, lanes, boot endpoint limit and admin-check limit). */
export interface DmzClientMetrics extends ServiceMetrics {
  /** A DMZ client's steps: driver operation and outcome (ok | failed | vetoed), in seconds. */
  stepSeconds: Histogram<'operation' | 'outcome'>;
}

/** How often the event loop's lag (fleet_nodejs_eventloop_lag_*) is sampled, in ms. */
export const EVENT_LOOP_SAMPLE_MS = 100;

const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * A fresh registry with the service's own metrics and Node's process metrics
 * (prefixed `fleet_`). Each service registers only its own families: the
 * other's would be exported empty, forever (docs/operations.md lists which
 * service exports which; engine/observability/families.test.ts holds both
 * to it). If you add a family, add its row there with its service.
 */
export function createMetrics(service: 'authority', labels?: Record<string, string>): AuthorityMetrics;
export function createMetrics(service: 'dmz-client', labels?: Record<string, string>): DmzClientMetrics;
export function createMetrics(service: 'authority' | 'dmz-client', labels: Record<string, string> = {}): AuthorityMetrics | DmzClientMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service, ...labels });
  // The event loop's lag is sampled every EVENT_LOOP_SAMPLE_MS: prom-client's
  // default (10 ms) wakes an idle service 100 times a second, ~6 ms of CPU
  // per second per process, whether it serves anything or not (bench/apply).
  collectDefaultMetrics({ register: registry, prefix: 'fleet_', eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  const registers = [registry];
  const common: ServiceMetrics = {
    registry,
    requests: new Counter({ name: 'fleet_http_requests_total', help: 'HTTP requests answered, by route, method and status.', labelNames: ['route', 'method', 'status'], registers }),
    requestSeconds: new Histogram({ name: 'fleet_http_request_duration_seconds', help: 'Time from request to answer.', labelNames: ['route'], buckets: SECONDS, registers }),
  };
  if (service === 'dmz-client') {
    return {
      ...common,
      stepSeconds: new Histogram({ name: 'fleet_step_duration_seconds', help: 'Time of a DMZ client step (authorize, driver call, report) by operation and outcome.', labelNames: ['operation', 'outcome'], buckets: SECONDS, registers }),
    };
  }
  return {
    ...common,
    decisions: new Counter({ name: 'fleet_authority_decisions_total', help: 'Authority decisions by outcome (approved, modified, vetoed) and reason code.', labelNames: ['outcome', 'reason'], registers }),
    boots: new Counter({ name: 'fleet_boot_requests_total', help: 'Boot requests approved or denied, by reason code.', labelNames: ['outcome', 'reason'], registers }),
  };
}

/**
 * The authority's record calls, timed by method (`transitionVms`,
 * `authorizeBoots`, ...) and outcome (ok | error): the record latency a step
 * waits for. `timeCalls` feeds it.
 */
export function recordMetrics(m: ServiceMetrics): Histogram<'call' | 'outcome'> {
  return new Histogram({ name: 'fleet_record_call_duration_seconds', help: 'Time of the authority\'s record calls, by method and outcome.', labelNames: ['call', 'outcome'], buckets: SECONDS, registers: [m.registry] });
}

/** What a DMZ client's run gauges read at each scrape (providers/dmz-client: Runs and Lanes count them). */
export interface RunSources {
  /** Runs (a member's steps) being carried out now. */
  runsInFlight(): number;
  /** Over every lane: places held (members doing cloud work) and members waiting for one, and lanes open. */
  lanes(): { busy: number; waiting: number; open: number };
}

/** A DMZ client's gauges of its runs in flight and its lanes' occupancy (labelled with its data center, a default label). */
export function runMetrics(m: ServiceMetrics, src: RunSources): void {
  const registers = [m.registry];
  new Gauge({ name: 'fleet_runs_in_flight', help: 'Runs (a member\'s steps) being carried out by this DMZ client.', registers, collect() { this.set(src.runsInFlight()); } });
  new Gauge({ name: 'fleet_lane_places_busy', help: 'Lane places held: members of applies doing cloud work now, over all lanes.', registers, collect() { this.set(src.lanes().busy); } });
  new Gauge({ name: 'fleet_lane_members_waiting', help: 'Members of applies waiting for a place in their lane, over all lanes.', registers, collect() { this.set(src.lanes().waiting); } });
  new Gauge({ name: 'fleet_lanes_open', help: 'Lanes (one per apply) with a member at work or waiting.', registers, collect() { this.set(src.lanes().open); } });
}

/**
 * A DMZ client's boot endpoint limit (providers/dmz-client/boot-limit.ts):
 * requests refused 429 by route pattern (never by address: an address is no
 * label), and the addresses its table holds, read at each scrape.
 */
export function bootLimitMetrics(m: ServiceMetrics, src: { addresses(): number }): Counter<'route'> {
  const registers = [m.registry];
  new Gauge({ name: 'fleet_boot_limit_addresses', help: 'Source addresses the boot endpoint\'s limit is counting denials of now (bounded by spec.bootLimit.maxAddresses).', registers, collect() { this.set(src.addresses()); } });
  return new Counter({ name: 'fleet_boot_limited_total', help: 'Boot endpoint requests refused 429 (boot-rate-limited) because their source address used its budget of denials, by route.', labelNames: ['route'], registers });
}

/**
 * The limit of a DMZ client's POST /v1/admin-check (ADMIN_CHECK_LIMIT in
 * providers/dmz-client/boot-limit.ts): checks refused 429 because their source
 * address used its budget of refused checks. One route, so no label (and never
 * the address). A rise means someone is guessing at the admin token, or an
 * operator retrying fleet apply with a wrong FLEET_ADMIN_TOKEN.
 */
export function adminCheckLimitMetrics(m: ServiceMetrics): Counter {
  return new Counter({ name: 'fleet_admin_check_limited_total', help: 'POST /v1/admin-check requests refused 429 (admin-check-rate-limited) because their source address used its budget of refused checks.', registers: [m.registry] });
}

/**
 * The limit of the authority's admin-token checks (AUTHORITY_ADMIN_CHECK_LIMIT
 * in engine/authority/server.ts): checks refused 429 because their caller used
 * its budget of refused checks, by route and, at POST /v1/admin-check, data
 * center (the caller's token; a bounded set: the stack's). At POST
 * /v1/plans/admin-check the caller is the CLI's token: no data_center label.
 * A rise is a DMZ client trying admin tokens (compromised, or a bug), someone
 * holding the CLI's token guessing at it, or many applies with a wrong
 * FLEET_ADMIN_TOKEN.
 */
export function authorityAdminCheckLimitMetrics(m: ServiceMetrics): Counter<'route' | 'data_center'> {
  return new Counter({
    name: 'fleet_authority_admin_check_limited_total',
    help: "Admin-token checks (POST /v1/admin-check, POST /v1/plans/admin-check) refused 429 (admin-check-rate-limited) because their caller (a data center, the CLI's token) used its budget of refused checks, by route and data center.",
    labelNames: ['route', 'data_center'],
    registers: [m.registry],
  });
}

/**
 * `target` with every method that returns a promise timed into `h` by method
 * name and outcome; other properties untouched. For the record, whose calls
 * are what a step waits for.
 */
export function timeCalls<T extends object>(target: T, h: Histogram<'call' | 'outcome'>): T {
  // One wrapper per method, made on its first use (not a new closure at every call: the authority makes several
  // record calls per request), still the method the target holds now (a replaced one gets a new wrapper).
  const wrappers = new Map<string, { of: unknown; wrapper: (...args: unknown[]) => unknown }>();
  return new Proxy(target, {
    get(t, prop, receiver) {
      const v = Reflect.get(t, prop, receiver) as unknown;
      if (typeof v !== 'function' || typeof prop !== 'string') return v;
      const made = wrappers.get(prop);
      if (made !== undefined && made.of === v) return made.wrapper;
      const fn = v as (...a: unknown[]) => unknown;
      const wrapper = (...args: unknown[]) => {
        const t0 = performance.now();
        const out = fn.apply(t, args);
        if (!(out instanceof Promise)) return out;
        return out.then(
          (r) => (h.observe({ call: prop, outcome: 'ok' }, (performance.now() - t0) / 1000), r),
          (err: unknown) => {
            h.observe({ call: prop, outcome: 'error' }, (performance.now() - t0) / 1000);
            throw err;
          },
        );
      };
      wrappers.set(prop, { of: v, wrapper });
      return wrapper;
    },
  });
}

/**
 * Counts and times every answered request by its route pattern (`/v1/vms/:id`,
 * never the concrete URL), and serves GET /metrics in Prometheus's text format.
 * Call before the routes are registered. /metrics itself is public like the
 * health probes: it carries counts, not secrets; put it behind the network
 * policy that fronts the service if even counts are sensitive.
 */
export function registerMetrics(app: FastifyInstance, m: ServiceMetrics): void {
  // Timed from the request's arrival (Fastify's reply.elapsedTime), counted once answered: one callback-style hook
  // (no promise and microtask hop per hook), as it runs on every request (issue 20: the authority's cost per request).
  app.addHook('onResponse', (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
    const route = req.routeOptions.url ?? 'unmatched';
    m.requests.inc({ route, method: req.method, status: String(reply.statusCode) });
    m.requestSeconds.observe({ route }, reply.elapsedTime / 1000);
    done();
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
