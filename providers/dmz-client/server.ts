// The DMZ client: one per data center, inside its secured zone, the only
// thing that calls that data center's cloud API (its driver). For every
// mutating request it (1) asks the authority to authorize, (2) calls its
// driver for the edge's operation (`none`: no cloud call), (3) reports the
// outcome to the authority, which moves the record, and (4) answers the
// caller. It never calls another data center's driver, and it always speaks
// to the authority with its own data center's token.
//
// This file puts the parts together (docs/dmz-client.md, "Where things are"):
//
//   routes.ts      HTTP: parse, call, answer
//   runs.ts        a member's steps at once: advance, write-behind, lanes
//   step.ts        one step: authorize -> driver -> report, per idempotency key
//   operations.ts  an edge's operation as a driver call, with deadline and tries
//   requests.ts    the authority requests a step makes, from what the caller sent
import { FleetError, clip, diag } from '../../engine/diags/index.ts';
import { closeGracefully, createService, listen, tokenTable } from '../../protocol/index.ts';
import type { LoadedPack } from '../../engine/policy/types.ts';
import type { Driver } from '../drivers/types.ts';
import type { StepResult } from '../../protocol/index.ts';
import { adminCheckLimitMetrics, bootLimitMetrics, createMetrics, runMetrics, type DmzClientMetrics, type ServiceLogOptions } from '../../engine/observability/index.ts';
import type { ClientTls, ServerTls } from '../../engine/transport/index.ts';
import { AuthorityClient } from './authority-client.ts';
import { ADMIN_CHECK_LIMIT, BOOT_LIMIT_DEFAULTS, BootLimiter, type BootLimitSettings } from './boot-limit.ts';
import { IdempotencyStore } from './idempotency.ts';
import { Lanes } from './lanes.ts';
import { registerRoutes } from './routes.ts';
import { Runs } from './runs.ts';
import { StepRunner } from './step.ts';

/** The boot endpoint's routes: a booting VM's, authenticated by its boot token, never by a bearer token or a client certificate. */
const BOOT_ROUTES = ['/v1/boot', '/v1/boot/status'];

export interface StartDmzClientOptions {
  dataCenter: string;
  driver: Driver;
  authorityUrl: string;
  /** This data center's token at the authority. */
  authorityToken: string;
  /** The token callers (the CLI) must present. */
  clientToken: string;
  /** Idempotency results live in <stateDir>/requests.jsonl. */
  stateDir: string;
  host?: string;
  /** 0 (default): a free port. */
  port?: number;
  /** For the initial and terminal states when a request leaves them out; defaults Requested / Deleted. */
  pack?: LoadedPack;
  /** Tries of a driver call that fails with a transient error. Default 4. */
  driverAttempts?: number;
  /** A driver call not answering within this is a failure. Default 120 000. */
  driverTimeoutMs?: number;
  /** How long awaitReady waits for a VM to boot. Default 60 000. */
  readyTimeoutMs?: number;
  /** Per call to the authority. Default 30 000. */
  authorityTimeoutMs?: number;
  /** JSON-line logs (engine/observability/logs.ts); absent: none. */
  logger?: boolean | ServiceLogOptions;
  /** On close (SIGTERM), how long steps in flight may take to finish before their connections are cut. Default 20 000. */
  drainMs?: number;
  /**
   * Serve HTTPS (engine/transport's loadServerTls). With a client CA, every
   * route requires a client certificate it signed except the boot endpoint
   * (POST /v1/boot, /v1/boot/status): a booting VM has none and proves
   * itself with its one-time boot token.
   */
  tls?: ServerTls;
  /**
   * PEM CA bundle this data center's VMs verify the boot endpoint's
   * certificate with (handed to the driver: the sim's agents use it; the aws
   * and azure drivers put it in each boot's user data). Default: the system's CAs.
   */
  bootCa?: string;
  /** For an https authority: its CA bundle and this DMZ client's own certificate. */
  authorityTls?: ClientTls;
  /** The boot endpoint's limit of denials per source address (the config's spec.bootLimit); unset fields: BOOT_LIMIT_DEFAULTS. */
  bootLimit?: Partial<BootLimitSettings>;
  /** The clock of the boot and admin-check limits and of the authority's admin-check 429 held until its Retry-After, ms since the epoch (tests move it); default Date.now. */
  bootLimitClock?: () => number;
}

export interface RunningDmzClient {
  url: string;
  /** The service's Prometheus metrics (also at GET /metrics). */
  metrics: DmzClientMetrics;
  /**
   * A graceful stop: readiness fails, no new connection is accepted, runs
   * start no further step, the steps in flight finish and are answered
   * (bounded by drainMs), then the idempotency log is flushed and closed.
   */
  close(): Promise<void>;
}

/** Starts a DMZ client for one data center (docs/dmz-client.md). */
export async function startDmzClient(opts: StartDmzClientOptions): Promise<RunningDmzClient> {
  const dc = opts.dataCenter;
  const driver = opts.driver;
  if (driver.dataCenter !== dc) {
    throw new FleetError(diag('apply.serve-config', `The driver is for data center ${clip(driver.dataCenter)}, not ${clip(dc)}.`));
  }
  const authority = new AuthorityClient(dc, opts.authorityUrl, opts.authorityToken, opts.authorityTimeoutMs ?? 30_000, undefined, opts.authorityTls);
  const store = new IdempotencyStore<StepResult>(opts.stateDir);
  const defaults = {
    dataCenter: dc,
    initial: opts.pack?.lifecycle.initial ?? 'Requested',
    terminal: opts.pack?.lifecycle.terminal[0] ?? 'Deleted',
  };
  const steps = new StepRunner({
    ...defaults,
    driver,
    authority,
    store,
    driverAttempts: opts.driverAttempts,
    driverTimeoutMs: opts.driverTimeoutMs,
    readyTimeoutMs: opts.readyTimeoutMs,
    stateDir: opts.stateDir,
  });
  let draining = false;
  const lanes = new Lanes();
  const runs = new Runs({ ...defaults, steps, lanes, chainPastFirst: opts.pack !== undefined, stopping: () => draining });

  const metrics = createMetrics('dmz-client', { data_center: dc });
  runMetrics(metrics, { runsInFlight: () => runs.inFlight, lanes: () => lanes.totals() });
  const { app, openapi } = await createService({
    title: `dmzfleet DMZ client (${dc})`,
    publicPaths: ['/v1/health', '/openapi.json', ...BOOT_ROUTES],
    certlessRoutes: BOOT_ROUTES,
    authenticate: tokenTable([{ token: opts.clientToken, who: 'cli' }]),
    logger: opts.logger,
    tls: opts.tls,
    metrics,
    // Ready when the authority answers and takes this client's token (without it no request can be approved), and the driver's own credentials work.
    health: {
      checks: { authority: () => authority.ping(), ...(driver.ready ? { driver: () => (driver.ready as () => Promise<void>)() } : {}) },
      draining: () => draining,
    },
  });
  const limiter = new BootLimiter({ ...BOOT_LIMIT_DEFAULTS, ...opts.bootLimit }, opts.bootLimitClock);
  const limited = bootLimitMetrics(metrics, { addresses: () => limiter.size });
  const adminCheckLimit = { limiter: new BootLimiter(ADMIN_CHECK_LIMIT, opts.bootLimitClock), limited: adminCheckLimitMetrics(metrics) };
  registerRoutes(app, { dataCenter: dc, driver, steps, runs, authority, openapi, metrics, bootLimit: { limiter, limited }, adminCheckLimit, ...(opts.bootLimitClock ? { now: opts.bootLimitClock } : {}) });

  const url = await listen(app, opts.host ?? '127.0.0.1', opts.port ?? 0);
  driver.attach({ bootUrl: `${url}/v1/boot`, ...(opts.bootCa ? { bootCa: opts.bootCa } : {}) });
  return {
    url,
    metrics,
    close: async () => {
      draining = true;
      await closeGracefully(app, opts.drainMs ?? 20_000);
      // Every stored result (and boot cause) is on disk before the process goes.
      steps.close();
      await store.close();
    },
  };
}
