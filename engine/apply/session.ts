// What apply, refresh and `plan --refresh` need open at once: the loaded
// stack, its record, and a provider per data center (the only way to its DMZ
// client). For data centers with `address: embedded` the authority and a sim
// DMZ client are started in-process on loopback ports; the CLI still talks
// to them over HTTP.
import { FleetError, diag, hasErrors, type Diagnostic } from '../diags/index.ts';
import { openRecord } from '../record/index.ts';
import type { FleetRecord } from '../record/types.ts';
import { loadStack, type LoadedFleet, type LoadedStack } from '../spec/index.ts';
import type { LoadedPack } from '../policy/types.ts';
import { connectProvider, type ConnectedProvider } from '../../providers/provider.ts';

export interface StackSession {
  stack: LoadedStack;
  pack: LoadedPack;
  fleets: readonly LoadedFleet[];
  /** Loader warnings. */
  warnings: Diagnostic[];
  record: FleetRecord;
  /** One per data center, each over its own batch client to the data center's DMZ client. */
  providers: Map<string, ConnectedProvider>;
  close(): Promise<void>;
}

export interface SessionOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Per-attempt timeout of DMZ requests. */
  timeoutMs?: number;
  /**
   * How long one DMZ request's retries may pause in all before it fails
   * (default 60 s: an outage of a DMZ client or the authority of 30 s and
   * more is ridden out). FLEET_RETRY_BUDGET_MS in the environment sets it
   * when this is absent (tests and scripts that expect a data center to stay down).
   */
  retryBudgetMs?: number;
  /**
   * --lock-timeout: how long to wait for another process that owns an
   * embedded data center (default: the stack's apply.lockTimeoutSeconds).
   */
  lockTimeoutSeconds?: number;
}

export async function loadValidStack(stackDir: string, opts: SessionOptions) {
  const loaded = await loadStack(stackDir, { cwd: opts.cwd, env: opts.env });
  if (hasErrors(loaded.diagnostics) || !loaded.stack || !loaded.pack) {
    throw new FleetError(loaded.diagnostics.length ? loaded.diagnostics : [diag('cli.internal', 'the stack loader returned no stack and no diagnostic')]);
  }
  return { stack: loaded.stack, pack: loaded.pack, fleets: loaded.fleets, warnings: loaded.diagnostics };
}

/** FLEET_RETRY_BUDGET_MS, when it holds a number of ms (anything else is ignored: the default stays). */
export function retryBudgetFrom(env: NodeJS.ProcessEnv): number | undefined {
  const v = env.FLEET_RETRY_BUDGET_MS;
  if (v === undefined || !/^\d+$/.test(v.trim())) return undefined;
  return Number(v);
}

export async function openSession(stackDir: string, opts: SessionOptions): Promise<StackSession> {
  const { stack, pack, fleets, warnings } = await loadValidStack(stackDir, opts);
  const record = await openRecord(stack.recordUrl);
  const closers: (() => Promise<void>)[] = [() => record.close()];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => {});
  };
  try {
    const providers = new Map<string, ConnectedProvider>();
    const budget = opts.retryBudgetMs ?? retryBudgetFrom(opts.env);
    const timeout = { ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}), ...(budget !== undefined ? { retryBudgetMs: budget } : {}) };
    const embedded = stack.dataCenters.some((dc) => dc.address === 'embedded');
    if (embedded) {
      // Loaded on use: the authority, Fastify and the sim (~100 ms of CPU to
      // import) are not needed when every data center is reached at its URL.
      const { startEmbedded } = await import('../../providers/embedded.ts');
      const services = await startEmbedded({ stack, pack, record, busyTimeoutMs: (opts.lockTimeoutSeconds ?? stack.apply.lockTimeoutSeconds) * 1000 });
      closers.push(() => services.close());
      for (const [name, c] of services.clients) {
        providers.set(name, connectProvider({ dataCenter: name, url: c.url, token: () => c.token, lifecycle: pack.lifecycle, ...timeout }));
      }
    }
    for (const dc of stack.dataCenters) {
      if (dc.address === 'embedded' || providers.has(dc.name)) continue;
      const envName = dc.auth?.tokenEnv;
      providers.set(
        dc.name,
        connectProvider({
          dataCenter: dc.name,
          url: dc.address,
          lifecycle: pack.lifecycle,
          ...(envName ? { tokenEnv: envName } : {}),
          ...timeout,
          token: () => {
            const token = envName ? opts.env[envName] : undefined;
            if (!token) {
              throw new FleetError(
                diag('apply.token-missing', `Data center ${dc.name} needs a bearer token in the environment variable ${envName ?? '(auth.tokenEnv is not set in stack.yaml)'}.`, dc.where),
              );
            }
            return token;
          },
        }),
      );
    }
    return { stack, pack, fleets, warnings, record, providers, close };
  } catch (err) {
    await close();
    throw err;
  }
}
