// The embedded default: with no servers at all, the CLI starts the authority
// and one sim DMZ client per `embedded` data center in-process, on loopback
// ports, with fresh random tokens for this run. The same code and the same
// HTTP paths run as in a deployment, so the protocol is exercised every time.
//
// State that must outlive the run sits under the stack's .fleet folder:
//   .fleet/authority.secret    disk keys are derived from it (a VM created in
//                              one run must still boot in the next)
//   .fleet/sim/<dc>/           the simulated data center's VMs and the DMZ
//                              client's idempotency results
import { join } from 'node:path';
import { FleetError, diag } from '../engine/diags/index.ts';
import { makePrivate } from '../engine/durability/index.ts';
import { loadOrCreateSecret, randomToken, startAuthority, type RunningService } from '../engine/authority/index.ts';
import type { LoadedPack } from '../engine/policy/types.ts';
import type { FleetRecord } from '../engine/record/types.ts';
import type { LoadedDataCenter, LoadedStack } from '../engine/spec/types.ts';
import { cliTokenEnv, defaultCliTokenEnv } from '../engine/transport/index.ts';
import { startDmzClient, type RunningDmzClient } from './dmz-client/index.ts';
import { credentialKey } from '../protocol/index.ts';
import { SIM_READY_TIMEOUT_MS, createSimDriver, type SimDriver } from './drivers/sim/index.ts';

export interface EmbeddedOptions {
  stack: LoadedStack;
  pack: LoadedPack;
  record: FleetRecord;
  /** Only these data centers (default: all of the stack's). */
  dataCenters?: readonly string[];
  /** Where remote data centers' tokens are read from; default process.env. */
  env?: NodeJS.ProcessEnv;
  /**
   * When true, a remote data center whose token variable is unset fails the
   * start-up (apply.token-missing). Default false: it is left out of
   * `clients`, so a run that never talks to it is not stopped by it.
   */
  requireRemoteTokens?: boolean;
  logger?: boolean;
  /** How long to wait for another process that owns an embedded data center (sim.busy); default 0. */
  busyTimeoutMs?: number;
}

export interface DataCenterEndpoint {
  url: string;
  token: string;
}

export interface Embedded {
  /** Undefined when no data center is embedded (nothing was started). */
  authorityUrl: string | undefined;
  /** Embedded data centers on loopback, and remote ones at their address (those whose token is set). */
  clients: Map<string, DataCenterEndpoint>;
  /** The sim drivers of the embedded data centers (tests and benchmarks look inside). */
  drivers: Map<string, SimDriver>;
  close(): Promise<void>;
}

/** The environment variable holding the token the CLI presents to a data center's DMZ client when stack.yaml names none (FLEET_DMZ_TOKEN_<DC> is the DMZ client's token at the authority): engine/transport/tokens.ts. */
export const defaultTokenEnv = defaultCliTokenEnv;

/** The variable of the CLI's token to a data center's DMZ client: its `auth.tokenEnv`, else FLEET_CLI_TOKEN_<DC>. */
export function tokenEnvOf(dc: LoadedDataCenter): string {
  return cliTokenEnv(dc);
}

export function simStateDir(stack: LoadedStack, dataCenter: string): string {
  return join(stack.stateDir, 'sim', dataCenter);
}

/** How long an embedded DMZ client's close waits for requests in flight before it cuts them (startDmzClient's drainMs). */
export const EMBEDDED_DRAIN_MS = 500;

export async function startEmbedded(opts: EmbeddedOptions): Promise<Embedded> {
  const env = opts.env ?? process.env;
  const wanted = opts.dataCenters ? new Set(opts.dataCenters) : undefined;
  const dcs = opts.stack.dataCenters.filter((d) => !wanted || wanted.has(d.name));
  const clients = new Map<string, DataCenterEndpoint>();
  const drivers = new Map<string, SimDriver>();

  for (const d of dcs.filter((x) => x.address !== 'embedded')) {
    const name = tokenEnvOf(d);
    const token = env[name];
    if (!token) {
      if (!opts.requireRemoteTokens) continue;
      throw new FleetError(diag('apply.token-missing', `Data center ${d.name} is reached at ${d.address}; set ${name} to its DMZ client's token.`, d.where));
    }
    clients.set(d.name, { url: d.address.replace(/\/+$/, ''), token });
  }

  const embedded = dcs.filter((x) => x.address === 'embedded');
  if (embedded.length === 0) return { authorityUrl: undefined, clients, drivers, close: async () => undefined };

  const authorityTokens = embedded.map((d) => ({ name: d.name, token: randomToken(), capacity: d.capacity }));
  const started: { dmz: RunningDmzClient; driver: SimDriver }[] = [];
  let authority: RunningService | undefined;
  const close = async () => {
    for (const s of started.reverse()) {
      await s.dmz.close();
      await s.driver.close();
    }
    await authority?.close();
  };
  try {
    authority = await startAuthority({
      record: opts.record,
      pack: opts.pack,
      stackName: opts.stack.name,
      dataCenters: authorityTokens,
      secret: loadOrCreateSecret(join(opts.stack.stateDir, 'authority.secret')),
      logger: opts.logger,
      // The embedded authority checks override proofs against the same admin token the CLI proves them with.
      ...(env.FLEET_ADMIN_TOKEN ? { adminTokens: [env.FLEET_ADMIN_TOKEN] } : {}),
    });
    // The stack's state folder and its sim folder, if they were there before with a looser mode (the record makes its own private, each data center's folder is made so by its sim).
    for (const dir of [opts.stack.stateDir, join(opts.stack.stateDir, 'sim')]) makePrivate(dir, { recursive: false });
    for (const d of embedded) {
      const stateDir = simStateDir(opts.stack, d.name);
      const sim = d.sim ?? {};
      const authorityToken = authorityTokens.find((t) => t.name === d.name)?.token ?? '';
      const driver = await createSimDriver({
        dataCenter: d.name,
        credentialKey: credentialKey(authorityToken, d.name),
        stateDir,
        capacity: d.capacity,
        latencyMs: sim.latencyMs,
        bootMs: sim.bootMs,
        errorRate: sim.errorRate,
        failCalls: sim.failCalls,
        hangCalls: sim.hangCalls,
        gateFile: sim.gateFile,
        forgeBootTokens: sim.forgeBootTokens,
        seed: sim.seed,
        busyTimeoutMs: opts.busyTimeoutMs,
        // The DMZ client's wait for a boot, below: its agents' boot window fits inside it.
        readyTimeoutMs: SIM_READY_TIMEOUT_MS,
      });
      const clientToken = randomToken();
      const dmz = await startDmzClient({
        dataCenter: d.name,
        driver,
        authorityUrl: authority.url,
        authorityToken,
        clientToken,
        stateDir,
        pack: opts.pack,
        logger: opts.logger,
        readyTimeoutMs: SIM_READY_TIMEOUT_MS,
        // Its one caller is this process, which closes it only once it has every answer it waits for: what is still in
        // flight then (a listing an interrupted refresh left, a hung sim call) has nobody to answer, and the default
        // 20 s drain held the Ctrl-C'd command that long before it exited.
        drainMs: EMBEDDED_DRAIN_MS,
      });
      started.push({ dmz, driver });
      drivers.set(d.name, driver);
      clients.set(d.name, { url: dmz.url, token: clientToken });
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { authorityUrl: authority.url, clients, drivers, close };
}
