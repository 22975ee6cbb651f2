// What apply, refresh and `plan --refresh` need open at once: the loaded
// stack, its record, and a DMZ client per data center. For data centers with
// `address: embedded` the authority and a sim DMZ client are started
// in-process on loopback ports; the CLI still talks to them over HTTP.
import { FleetError, diag, hasErrors, type Diagnostic } from '../diags/index.ts';
import { openRecord } from '../record/index.ts';
import type { FleetRecord } from '../record/types.ts';
import { loadStack, type LoadedFleet, type LoadedStack } from '../spec/index.ts';
import type { LoadedPack } from '../policy/types.ts';
import { DmzHttpClient } from '../../providers/client.ts';

export interface StackSession {
  stack: LoadedStack;
  pack: LoadedPack;
  fleets: readonly LoadedFleet[];
  /** Loader warnings. */
  warnings: Diagnostic[];
  record: FleetRecord;
  clients: Map<string, DmzHttpClient>;
  close(): Promise<void>;
}

export interface SessionOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Per-attempt timeout of DMZ requests. */
  timeoutMs?: number;
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

export async function openSession(stackDir: string, opts: SessionOptions): Promise<StackSession> {
  const { stack, pack, fleets, warnings } = await loadValidStack(stackDir, opts);
  const record = await openRecord(stack.recordUrl);
  const closers: (() => Promise<void>)[] = [() => record.close()];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => {});
  };
  try {
    const clients = new Map<string, DmzHttpClient>();
    const embedded = stack.dataCenters.some((dc) => dc.address === 'embedded');
    if (embedded) {
      // Loaded on use: the authority, Fastify and the sim (~100 ms of CPU to
      // import) are not needed when every data center is reached at its URL.
      const { startEmbedded } = await import('../../providers/embedded.ts');
      const services = await startEmbedded({ stack, pack, record, busyTimeoutMs: (opts.lockTimeoutSeconds ?? stack.apply.lockTimeoutSeconds) * 1000 });
      closers.push(() => services.close());
      for (const [name, c] of services.clients) {
        clients.set(name, new DmzHttpClient({ dataCenter: name, baseUrl: c.url, token: () => c.token, batch: true, ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}) }));
      }
    }
    for (const dc of stack.dataCenters) {
      if (dc.address === 'embedded' || clients.has(dc.name)) continue;
      const envName = dc.auth?.tokenEnv;
      clients.set(
        dc.name,
        new DmzHttpClient({
          dataCenter: dc.name,
          baseUrl: dc.address,
          // Steps in flight together share requests (POST /v1/batch).
          batch: true,
          ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
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
    return { stack, pack, fleets, warnings, record, clients, close };
  } catch (err) {
    await close();
    throw err;
  }
}
