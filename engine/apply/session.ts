// What apply, refresh and `plan --refresh` need open at once: the loaded
// stack, its record, and a provider per data center (the only way to its DMZ
// client). For data centers with `address: embedded` the authority and a sim
// DMZ client are started in-process on loopback ports; the CLI still talks
// to them over HTTP.
import { resolve } from 'node:path';
import { FleetError, diag, hasErrors, type Diagnostic } from '../diags/index.ts';
import { openRecord, requireExistingRecord } from '../record/index.ts';
import type { FleetRecord } from '../record/types.ts';
import { envMs } from '../record/env.ts';
import { loadStack, type LoadedFleet, type LoadedStack } from '../spec/index.ts';
import type { LoadedDataCenter } from '../spec/types.ts';
import { cliTokenEnv, loadClientTls, tokenInvalidDetail, unsendableTokenChar, type ClientTls } from '../transport/index.ts';
import type { LoadedPack } from '../policy/types.ts';
import { connectProvider, type ConnectedProvider } from '../../providers/provider.ts';
import { retryingRecord, type RecordRetryOptions } from './record-retry.ts';

export interface StackSession {
  stack: LoadedStack;
  pack: LoadedPack;
  fleets: readonly LoadedFleet[];
  /** Loader warnings. */
  warnings: Diagnostic[];
  record: FleetRecord;
  /** One per data center, each over its own batch client to the data center's DMZ client. */
  providers: Map<string, ConnectedProvider>;
  /**
   * One apply.token-missing per data center of `dataCenters` reached at a
   * URL whose token variable is unset or empty, one apply.token-invalid
   * per such variable holding a character no HTTP header can carry:
   * checked before an apply starts, so no member is attempted without the
   * token it will need.
   */
  missingTokens(dataCenters: Iterable<string>): Diagnostic[];
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
   * embedded data center or the PGlite record (default: the stack's
   * apply.lockTimeoutSeconds; the record is waited for at least
   * FLEET_RECORD_BUSY_TIMEOUT_MS).
   */
  lockTimeoutSeconds?: number;
  /** Told once when another process holds the PGlite record and opening it waits; `who` names the holder. */
  onRecordWait?: (who: string, timeoutMs: number) => void;
  /**
   * Told when the record's PostgreSQL server becomes unreachable while the
   * session's record calls retry (once per outage), and when it is back.
   * The retries take the same budget as the DMZ requests' (retryBudgetMs).
   */
  onRecordOutage?: Pick<RecordRetryOptions, 'onOutage' | 'onBack'>;
  /** The record must exist (`fleet refresh`): a PGlite folder that does not is record.not-found, not a new, empty record. */
  existingRecord?: boolean;
  /** Never upgrade the record's schema (`fleet refresh --check`, which writes nothing): record.older-schema instead (openRecord `upgrade: false`). */
  noUpgrade?: string;
  /** Checks of the loaded stack that come before anything is opened or created (`fleet apply PLANFILE`: the plan's stack); it throws to refuse. */
  beforeRecord?: (stack: LoadedStack) => void;
}

export async function loadValidStack(stackDir: string, opts: SessionOptions) {
  const loaded = await loadStack(stackDir, { cwd: opts.cwd, env: opts.env });
  if (hasErrors(loaded.diagnostics) || !loaded.stack || !loaded.pack) {
    throw new FleetError(loaded.diagnostics.length ? loaded.diagnostics : [diag('cli.internal', 'the stack loader returned no stack and no diagnostic')]);
  }
  return { stack: loaded.stack, pack: loaded.pack, fleets: loaded.fleets, warnings: loaded.diagnostics };
}

/**
 * FLEET_RETRY_BUDGET_MS: a whole number of milliseconds; unset or empty keeps
 * the default. Anything else is a usage error: `5s` used to be ignored
 * without a word, leaving the 60 s its user meant to shorten.
 */
export function retryBudgetFrom(env: NodeJS.ProcessEnv): number | undefined {
  return envMs('FLEET_RETRY_BUDGET_MS', undefined, { env, hint: 'default 60000' });
}

/** A data center's token variable is unset: where (stack.yaml) and which variable. */
function tokenMissing(dc: LoadedDataCenter): Diagnostic {
  const envName = cliTokenEnv(dc);
  const named = dc.auth?.tokenEnv ? 'named by its auth.tokenEnv in stack.yaml' : `the default; name another with auth.tokenEnv in stack.yaml`;
  return diag('apply.token-missing', `Data center ${dc.name} is reached at ${dc.address}: set ${envName} (${named}) to the bearer token of its DMZ client.`, dc.where);
}

/**
 * The CA bundle and client certificate the CLI uses for a data center's DMZ
 * client (`auth.clientCert`, paths relative to stack.yaml), loaded and
 * checked now (readable, PEM, key matches, in date) so a bad file fails the
 * command before any request. Pushes its problems to `out`.
 */
function clientTlsOf(stack: LoadedStack, dc: LoadedDataCenter, out: Diagnostic[]): ClientTls | undefined {
  const c = dc.auth?.clientCert;
  if (!c) return undefined;
  const i = stack.dataCenters.indexOf(dc);
  const at = (k: string) => `${stack.file}: dataCenters[${i}].auth.clientCert.${k}`;
  if (!dc.address.startsWith('https://')) {
    out.push(
      diag(
        'tls.plain-address',
        `Data center ${dc.name} has auth.clientCert, but its address ${dc.address} is not https://: the certificate would never be presented and the token would cross the network in clear text. Give the DMZ client's https:// address.`,
        dc.where,
      ),
    );
    return undefined;
  }
  const abs = (p: string | undefined) => (p === undefined ? undefined : resolve(stack.dir, p));
  const { tls, diagnostics } = loadClientTls(
    { ca: abs(c.caFile), cert: abs(c.certFile), key: abs(c.keyFile) },
    { ca: at('caFile'), cert: at('certFile'), key: at('keyFile') },
    {},
    stack.file,
  );
  out.push(...diagnostics);
  return tls;
}

export async function openSession(stackDir: string, opts: SessionOptions): Promise<StackSession> {
  const loaded = await loadValidStack(stackDir, opts);
  const { stack, pack, fleets } = loaded;
  // The loader's (frozen), then the record's upgrade, if this open made one (record.upgraded).
  const warnings = [...loaded.warnings];
  opts.beforeRecord?.(stack);
  // Read before the record is opened: a bad value creates nothing.
  const budget = opts.retryBudgetMs ?? retryBudgetFrom(opts.env);
  const waitMs = (opts.lockTimeoutSeconds ?? stack.apply.lockTimeoutSeconds) * 1000;
  if (opts.existingRecord) requireExistingRecord(stack.recordUrl);
  const opened = await openRecord(stack.recordUrl, {
    waitMs,
    ...(opts.onRecordWait ? { waiting: opts.onRecordWait } : {}),
    ...(opts.existingRecord ? { existing: true } : {}),
    ...(opts.noUpgrade !== undefined ? { upgrade: false, noUpgradeWhy: opts.noUpgrade } : {}),
    onUpgrade: (note) => warnings.push(note),
  });
  // The CLI's own record calls ride out a short outage of a PostgreSQL record
  // (record-retry.ts); the in-process authority below gets the record as it
  // is: its callers (the DMZ clients) retry its requests instead.
  const record = retryingRecord(opened, { ...(budget !== undefined ? { budgetMs: budget } : {}), ...opts.onRecordOutage });
  const closers: (() => Promise<void>)[] = [() => record.close()];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => {});
  };
  try {
    const providers = new Map<string, ConnectedProvider>();
    const timeout = { ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}), ...(budget !== undefined ? { retryBudgetMs: budget } : {}) };
    const embedded = stack.dataCenters.filter((dc) => dc.address === 'embedded').map((dc) => dc.name);
    if (embedded.length > 0) {
      // Loaded on use: the authority, Fastify and the sim (~100 ms of CPU to
      // import) are not needed when every data center is reached at its URL.
      const { startEmbedded } = await import('../../providers/embedded.ts');
      const services = await startEmbedded({ stack, pack, record: opened, dataCenters: embedded, busyTimeoutMs: waitMs });
      closers.push(() => services.close());
      for (const [name, c] of services.clients) {
        providers.set(name, connectProvider({ dataCenter: name, url: c.url, token: () => c.token, lifecycle: pack.lifecycle, ...timeout }));
      }
    }
    const tlsProblems: Diagnostic[] = [];
    for (const dc of stack.dataCenters) {
      if (dc.address === 'embedded') continue;
      const envName = cliTokenEnv(dc);
      const tls = clientTlsOf(stack, dc, tlsProblems);
      providers.set(
        dc.name,
        connectProvider({
          dataCenter: dc.name,
          url: dc.address,
          lifecycle: pack.lifecycle,
          tokenEnv: envName,
          ...timeout,
          ...(tls ? { tls } : {}),
          token: () => {
            const token = opts.env[envName];
            if (!token) throw new FleetError(tokenMissing(dc));
            return token;
          },
        }),
      );
    }
    if (tlsProblems.length > 0) throw new FleetError(tlsProblems);
    const missingTokens = (dataCenters: Iterable<string>): Diagnostic[] => {
      const wanted = new Set(dataCenters);
      return stack.dataCenters.flatMap((dc) => {
        if (!wanted.has(dc.name) || dc.address === 'embedded') return [];
        const token = opts.env[cliTokenEnv(dc)];
        if (!token) return [tokenMissing(dc)];
        const bad = unsendableTokenChar(token);
        return bad === undefined ? [] : [diag('apply.token-invalid', tokenInvalidDetail(cliTokenEnv(dc), `the DMZ client of data center ${dc.name}`, bad), dc.where)];
      });
    };
    return { stack, pack, fleets, warnings, record, providers, missingTokens, close };
  } catch (err) {
    await close();
    throw err;
  }
}
