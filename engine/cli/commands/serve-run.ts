// What `fleet serve` runs; loaded only when a service starts (it brings Fastify,
// the authority, the DMZ client and the sim driver along).
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { FleetError, clip, clipPath, diag, fail, quote, suggest, type Diagnostic, type Where } from '../../diags/index.ts';
import { loadOrCreateSecret, startAuthority, type RunningService } from '../../authority/index.ts';
import { openRecord } from '../../record/index.ts';
import { loadStack } from '../../spec/index.ts';
import type { LoadedStack } from '../../spec/types.ts';
import type { LoadedPack } from '../../policy/types.ts';
import { combineBrokers, type CredentialBroker } from '../../authority/credentials/types.ts';
import { startDmzClient } from '../../../providers/dmz-client/index.ts';
import { credentialKey as scopedCredentialKey, sameSecret } from '../../../protocol/index.ts';
import { AUTHORITY_CLI_TOKEN_ENV, SERVER_TLS_ENV, checkBind, dmzTokenEnv, isLoopbackHost, isPlainRemote, loadClientTls, loadServerTls, serverTlsFiles, tokenInvalidDetail, unsendableTokenChar, type ServerTls } from '../../transport/index.ts';
import { availableDrivers, driverFactory, isDriverKind, DRIVER_KINDS } from '../../../providers/drivers/registry.ts';
import { loadDmzClientConfig } from '../../../providers/drivers/config.ts';
import type { DmzClientSpec } from '../../../specs/types/dmz-client.ts';
import { simStateDir, tokenEnvOf } from '../../../providers/embedded.ts';
import { CLOUD_READY_TIMEOUT_MS } from '../../../providers/boot-agent/index.ts';
import { SIM_READY_TIMEOUT_MS } from '../../../providers/drivers/sim/index.ts';
import { printDiagnostics, type CliIO } from '../io.ts';
import { resolveLogLevel, type ServiceLogOptions } from '../../observability/index.ts';

/** The token a data center's DMZ client presents to the authority (both services read the same variable). */
export function authorityTokenEnv(dataCenter: string): string {
  return dmzTokenEnv(dataCenter);
}

export const AUTHORITY_SECRET_ENV = 'FLEET_AUTHORITY_SECRET';
/** The shortest secret the authority takes (characters; the one it makes is 43: 32 random bytes, base64url). */
export const MIN_SECRET_LENGTH = 16;
/** The admin token: an override (--allow-destroy) of a stack whose protect rule says `override: admin` carries a proof made with it. */
export const ADMIN_TOKEN_ENV = 'FLEET_ADMIN_TOKEN';

/** The tokens people sign in to the dashboard with (engine/ui): admin and read-only. */
export const UI_TOKEN_ENV = { admin: 'FLEET_ADMIN_TOKEN', read: 'FLEET_READ_TOKEN' } as const;

/**
 * Host names a dashboard listening on loopback also answers to (engine/ui's loopbackHosts), comma- or space-separated:
 * the name a proxy on the same machine passes on. Without, only `localhost` and IP addresses.
 */
export const UI_HOSTS_ENV = 'FLEET_UI_HOSTS';

/** The dashboard's loopbackHosts when it listens on loopback (`host`), from FLEET_UI_HOSTS; undefined off loopback. */
export function uiLoopbackHosts(env: NodeJS.ProcessEnv, host: string): string[] | undefined {
  if (!isLoopbackHost(host)) return undefined;
  return (env[UI_HOSTS_ENV] ?? '').split(/[\s,]+/).filter((n) => n !== '').map((n) => n.toLowerCase());
}

interface Loaded {
  stack: LoadedStack;
  pack: LoadedPack;
}

/** Stack and pack must load; errors in fleet specs do not stop a service (they concern plan, not serving). */
export async function loadForServe(io: CliIO, dir: string): Promise<Loaded> {
  const loaded = await loadStack(dir, { cwd: io.cwd, env: io.env });
  if (!loaded.stack || !loaded.pack) {
    const errors: Diagnostic[] = loaded.diagnostics.filter((d) => d.severity === 'error');
    if (errors.length === 0) throw new Error(`bug: loadStack gave no stack or pack and no error for ${dir}`);
    throw new FleetError(errors);
  }
  return { stack: loaded.stack, pack: loaded.pack };
}

export function parsePort(value: string): number {
  const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 65535) fail('apply.serve-config', `--port ${quote(value)} is not a port number (0-65535).`);
  return n;
}

/** TLS of a service (flags first, then FLEET_TLS_CERT / FLEET_TLS_KEY / FLEET_TLS_CLIENT_CA): docs/security.md. */
export interface ServeTlsOptions {
  tlsCert?: string;
  tlsKey?: string;
  clientCa?: string;
  /** Plain HTTP off loopback (behind a TLS-terminating proxy only). */
  insecure?: boolean;
}

/**
 * The service's TLS material, checked before any port opens, and the
 * loopback-or-TLS rule: a service reachable from other machines speaks TLS
 * unless the operator says --insecure.
 */
/** 0.0.0.0 and :: (with or without brackets): listen on every address, reach none. */
function isUnspecifiedHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return (isIP(h) === 4 && /^0+(\.0+){3}$/.test(h)) || (isIP(h) === 6 && /^[0:]+$/.test(h));
}

export function serviceTls(io: CliIO, service: string, host: string, opts: ServeTlsOptions): ServerTls | undefined {
  const files = serverTlsFiles({ cert: opts.tlsCert, key: opts.tlsKey, clientCa: opts.clientCa }, io.env);
  // A setting is named as it was given (flag or variable); one not given, as both ways to give it.
  const name = (flag: string, env: string, flagValue: string | undefined, given: string | undefined) => (flagValue ? flag : given ? env : `${flag} (or ${env})`);
  const names = {
    cert: name('--tls-cert', SERVER_TLS_ENV.cert, opts.tlsCert, files.cert),
    key: name('--tls-key', SERVER_TLS_ENV.key, opts.tlsKey, files.key),
    clientCa: name('--client-ca', SERVER_TLS_ENV.clientCa, opts.clientCa, files.clientCa),
  };
  const abs = (p: string | undefined) => (p === undefined ? undefined : resolve(io.cwd, p));
  const { tls, diagnostics } = loadServerTls({ cert: abs(files.cert), key: abs(files.key), clientCa: abs(files.clientCa) }, names);
  if (diagnostics.length > 0) throw new FleetError(diagnostics);
  const refused = checkBind(service, host, tls !== undefined, opts.insecure === true);
  if (refused) throw new FleetError(refused);
  return tls;
}

/**
 * One token per role: the token tells a service who calls (a data center,
 * the CLI, a person signing in to the dashboard), so two roles given the
 * same value would let a holder of one act as the other (a read-only
 * dashboard token that is also a data center's token opens that data
 * center's calls at the authority). Each pair of variables holding the same
 * value is an apply.serve-config diagnostic naming the variables, never the
 * value. Unset variables are left out; one variable named twice (the admin
 * token is both the dashboard's and the overrides') counts once.
 */
export function sharedTokens(service: string, vars: readonly { env: string; token: string | undefined }[]): Diagnostic[] {
  const seen = new Map<string, string>();
  const out: Diagnostic[] = [];
  const done = new Set<string>();
  for (const { env, token } of vars) {
    if (!token || done.has(env)) continue;
    done.add(env);
    const other = seen.get(token);
    if (other === undefined) seen.set(token, env);
    else out.push(diag('apply.serve-config', `${other} and ${env} hold the same token; ${service} tells its callers apart by their tokens, so a holder of one would be taken for the other. Give each its own token.`));
  }
  return out;
}

/** Plain HTTP off loopback, which only --insecure allows: a TLS-terminating proxy is in front, and browsers reach the service over HTTPS. */
export function behindTlsProxy(tls: ServerTls | undefined, opts: ServeTlsOptions & { host: string }): boolean {
  return tls === undefined && opts.insecure === true && !isLoopbackHost(opts.host);
}

/** What every service takes besides TLS: its log level and how long a stop may drain. */
export interface ServeCommonOptions extends ServeTlsOptions {
  /** --log-level (else FLEET_LOG_LEVEL, else info). */
  logLevel?: string;
  /** --drain-timeout in seconds (else FLEET_DRAIN_TIMEOUT, else 20): how long SIGTERM waits for work in flight. */
  drainTimeout?: string;
}

export const DRAIN_TIMEOUT_ENV = 'FLEET_DRAIN_TIMEOUT';
export const REPLICAS_ENV = 'FLEET_AUTHORITY_REPLICAS';

/** The service's logger (JSON lines on the command's stdout) and drain time, checked before any port opens. */
function serviceRuntime(io: CliIO, opts: ServeCommonOptions): { logger: ServiceLogOptions; drainMs: number } {
  const { level, diagnostics } = resolveLogLevel(opts.logLevel, io.env);
  if (!level) throw new FleetError(diagnostics);
  const drain = opts.drainTimeout ?? (io.env[DRAIN_TIMEOUT_ENV] || '20');
  // Decimal seconds (`30`, `0.5`), as --lock-timeout takes them: Number() alone read 0x10 as 16, 1e3 as 1000 and " 5" as 5.
  const seconds = /^[0-9]+(\.[0-9]+)?$/.test(drain) ? Number(drain) : NaN;
  if (!Number.isFinite(seconds) || seconds < 0 || seconds > 3600) {
    fail('apply.serve-config', `${opts.drainTimeout !== undefined ? '--drain-timeout' : DRAIN_TIMEOUT_ENV} ${quote(drain)} is not a number of seconds (0-3600).`);
  }
  return { logger: { level, stream: io.stdout }, drainMs: seconds * 1000 };
}

/** --replicas, else FLEET_AUTHORITY_REPLICAS, else 1. */
function replicaCount(io: CliIO, flag: string | undefined): number {
  const value = flag ?? (io.env[REPLICAS_ENV] || '1');
  const n = /^[0-9]+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 64) fail('apply.serve-config', `${flag !== undefined ? '--replicas' : REPLICAS_ENV} ${quote(value)} is not a replica count (1-64).`);
  return n;
}

/**
 * How long the DMZ client waits for a booting VM's agent: the config's spec.readyTimeoutMs, else by driver
 * (CLOUD_READY_TIMEOUT_MS is the boot agent's, whose window is cut to fit inside it).
 */
export function readyTimeoutOf(kind: string, config: Pick<DmzClientSpec, 'readyTimeoutMs'>): number {
  return config.readyTimeoutMs ?? (kind === 'sim' ? SIM_READY_TIMEOUT_MS : CLOUD_READY_TIMEOUT_MS);
}

export interface ServeOrchestratorOptions extends ServeCommonOptions {
  stack: string;
  port: string;
  host: string;
  /** How many authorities serve this stack's record (docs/operations.md, "Replicas"). */
  replicas?: string;
}

/**
 * apply.token-invalid for a service's token that no HTTP header can carry
 * (unsendableTokenChar: a line end read with it from a file): no caller
 * could ever present it, and this service could never send it; it was found
 * only as 401s, or as an authority "unreachable" with ERR_INVALID_CHAR.
 */
function unsendableToken(env: string, token: string, whom: string, where: Where): Diagnostic[] {
  const bad = unsendableTokenChar(token);
  return bad === undefined ? [] : [diag('apply.token-invalid', tokenInvalidDetail(env, whom, bad), where)];
}

/** Starts the authority for a stack; tokens per data center from FLEET_DMZ_TOKEN_<DC>. */
export async function serveOrchestrator(io: CliIO, opts: ServeOrchestratorOptions): Promise<RunningService> {
  const port = parsePort(opts.port);
  const tls = serviceTls(io, 'the authority', opts.host, opts);
  const runtime = serviceRuntime(io, opts);
  const replicas = replicaCount(io, opts.replicas);
  const { stack, pack } = await loadForServe(io, opts.stack);
  const missing: Diagnostic[] = [];
  const dataCenters = stack.dataCenters.map((d) => {
    const env = authorityTokenEnv(d.name);
    const token = io.env[env];
    if (!token) missing.push(diag('apply.token-missing', `Set ${env} to the token the DMZ client of ${clip(d.name)} presents to the authority.`, d.where));
    else missing.push(...unsendableToken(env, token, `the authority, from the DMZ client of ${clip(d.name)}`, d.where));
    return { name: d.name, token: token ?? '', capacity: d.capacity };
  });
  // The CLI's token at the authority: with it, plans are sealed and registered here, and only registered plans' requests are approved.
  const planTokenEnv = stack.authority?.tokenEnv ?? AUTHORITY_CLI_TOKEN_ENV;
  const planToken = io.env[planTokenEnv] || undefined;
  if (stack.authority && !planToken) missing.push(diag('apply.token-missing', `Set ${planTokenEnv} to the token the CLI presents to this authority to seal and register plans (stack.yaml has an authority address).`, stack.authority.where));
  if (planToken) missing.push(...unsendableToken(planTokenEnv, planToken, 'this authority, from the CLI', stack.authority?.where ?? {}));
  if (missing.length > 0) throw new FleetError(missing);
  const tokens = [
    ...stack.dataCenters.map((d) => ({ env: authorityTokenEnv(d.name), token: io.env[authorityTokenEnv(d.name)] })),
    { env: planTokenEnv, token: planToken },
    { env: ADMIN_TOKEN_ENV, token: io.env[ADMIN_TOKEN_ENV] || undefined },
    { env: UI_TOKEN_ENV.read, token: io.env[UI_TOKEN_ENV.read] || undefined },
  ];
  const shared = sharedTokens('the authority', tokens);
  // Every disk key, scoped credential key, plan seal and dashboard session is derived from the secret: a token holding
  // the same value would let its holder make them all (a data center's token holder: every VM's disk key).
  const secretEnv = io.env[AUTHORITY_SECRET_ENV];
  for (const t of secretEnv ? tokens : []) {
    if (t.token && sameSecret(t.token, secretEnv as string)) {
      shared.push(
        diag(
          'apply.serve-config',
          `${AUTHORITY_SECRET_ENV} holds the same value as ${t.env}: every disk key, scoped credential, plan seal and dashboard session is derived from the authority's secret, so a holder of that token could make them all. Give the secret its own random value (e.g. \`openssl rand -base64 32\`), the same on every replica.`,
        ),
      );
    }
  }
  if (shared.length > 0) throw new FleetError(shared);
  const secretFile = join(stack.stateDir, 'authority.secret');
  const secret = io.env[AUTHORITY_SECRET_ENV] || loadOrCreateSecret(secretFile);
  // A VM's disk key is HMAC-SHA256(secret, its id), and a booting VM is given its own: a short secret is found
  // offline from one disk key, and with it every other VM's, the plan-seal key and the dashboard's sessions.
  if (secret.length < MIN_SECRET_LENGTH) {
    const from = io.env[AUTHORITY_SECRET_ENV] ? AUTHORITY_SECRET_ENV : secretFile;
    fail(
      'apply.serve-config',
      `${from === secretFile ? clipPath(secretFile) : from} holds ${secret.length} character${secret.length === 1 ? '' : 's'}; the authority's secret must have at least ${MIN_SECRET_LENGTH} (random: every VM's disk key, the plan-seal key and the dashboard's sessions are derived from it, and a booting VM is given its own disk key, from which a short secret is found). Give it a random value, e.g. \`openssl rand -base64 32\` (the same on every replica), or unset ${AUTHORITY_SECRET_ENV} and remove ${clipPath(secretFile)} to have one made. A new secret means new disk keys: the encrypted disks of VMs made under the old one no longer unlock.`,
    );
  }
  const broker = await credentialBroker(io, stack);
  // An upgrade of the record at start is said on stderr (record.upgraded): older authorities and CLIs now refuse it.
  const record = await openRecord(stack.recordUrl, { onUpgrade: (note) => printDiagnostics(io, [note]) });
  try {
    // The dashboard under /ui, when a sign-in token is set.
    const loopbackHosts = uiLoopbackHosts(io.env, opts.host);
    const ui = { adminToken: io.env[UI_TOKEN_ENV.admin] || undefined, readToken: io.env[UI_TOKEN_ENV.read] || undefined, behindTlsProxy: behindTlsProxy(tls, opts), ...(loopbackHosts ? { loopbackHosts } : {}) };
    const admin = io.env[ADMIN_TOKEN_ENV];
    const svc = await startAuthority({
      record,
      pack,
      stackName: stack.name,
      dataCenters,
      secret,
      host: opts.host,
      port,
      tls,
      ui,
      replicas,
      ...runtime,
      ...(broker ? { credentialBroker: broker } : {}),
      ...(admin ? { adminTokens: [admin] } : {}),
      ...(planToken ? { planTokens: [planToken] } : {}),
    });
    return {
      url: svc.url,
      metrics: svc.metrics,
      close: async () => {
        await svc.close();
        broker?.close();
        await record.close();
      },
    };
  } catch (err) {
    broker?.close();
    await record.close();
    throw err;
  }
}

/**
 * The broker of the stack's cloud data centers' credentials: aws (STS
 * AssumeRole, engine/authority/credentials/aws.ts, with the authority's own
 * AWS identity from the SDK's default chain; AWS_ENDPOINT_URL_STS overrides
 * every STS endpoint) and azure (an Entra token of each data center's
 * principal, engine/authority/credentials/azure.ts, its secret from the
 * environment variable the stack names). None without cloud data centers
 * (no SDK is even loaded).
 */
async function credentialBroker(io: CliIO, stack: LoadedStack): Promise<(CredentialBroker & { close(): void }) | undefined> {
  const brokers: (CredentialBroker & { close(): void })[] = [];
  const aws = stack.dataCenters.flatMap((d) => (d.driver === 'aws' && d.aws ? [{ name: d.name, ...d.aws }] : []));
  if (aws.length > 0) {
    const { AwsCredentialBroker } = await import('../../authority/credentials/aws.ts');
    const stsEndpoint = io.env.AWS_ENDPOINT_URL_STS || undefined;
    const credentials = envCredentials(io.env);
    brokers.push(new AwsCredentialBroker({ stack: stack.name, dataCenters: aws, ...(stsEndpoint ? { stsEndpoint } : {}), ...(credentials ? { credentials } : {}) }));
  }
  const azure = stack.dataCenters.filter((d) => d.driver === 'azure' && d.azure);
  if (azure.length > 0) {
    const missing: Diagnostic[] = [];
    const dataCenters = azure.flatMap((d) => {
      const a = d.azure as NonNullable<typeof d.azure>;
      const env = a.clientSecretEnv ?? 'AZURE_CLIENT_SECRET';
      const clientSecret = io.env[env];
      if (!clientSecret) {
        missing.push(diag('apply.token-missing', `Set ${env} to the client secret of principal ${quote(a.clientId)}, which the authority uses for data center ${clip(d.name)} (docs/drivers/azure.md).`, d.where));
        return [];
      }
      const { clientSecretEnv: _env, ...rest } = a;
      return [{ name: d.name, ...rest, clientSecret }];
    });
    if (missing.length > 0) throw new FleetError(missing);
    const { AzureCredentialBroker } = await import('../../authority/credentials/azure.ts');
    brokers.push(new AzureCredentialBroker({ dataCenters }));
  }
  const combined = combineBrokers(brokers);
  if (!combined) return undefined;
  // A fresh object: with one cloud, combineBrokers hands back that broker itself, whose own close this one calls.
  return { prepare: (dc) => combined.prepare(dc), issued: (dc) => combined.issued(dc), close: () => brokers.forEach((b) => b.close()) };
}

/** AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN of the command's environment; undefined: the SDK's default chain (instance profile, SSO, ...). */
export function envCredentials(env: Readonly<Record<string, string | undefined>>): { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) return undefined;
  return { accessKeyId, secretAccessKey, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) };
}

export interface ServeDmzClientOptions extends ServeCommonOptions {
  /** CA bundle to verify an https authority with (default: the system's), and this DMZ client's certificate for mTLS. */
  authorityCa?: string;
  authorityCert?: string;
  authorityKey?: string;
  /** CA bundle this data center's VMs verify the boot endpoint's certificate with (or FLEET_BOOT_CA): the sim's agents use it, aws and azure VMs get it in their user data. */
  bootCa?: string;
  stack: string;
  dataCenter: string;
  driver: string;
  authority: string;
  port: string;
  host: string;
  stateDir?: string;
  /** The DMZ client config file (specs/schema/dmz-client.schema.json); required by the aws and azure drivers. */
  config?: string;
}

/** Starts the DMZ client of one data center of a stack. */
export async function serveDmzClient(io: CliIO, opts: ServeDmzClientOptions): Promise<RunningService> {
  const port = parsePort(opts.port);
  const tls = serviceTls(io, `the DMZ client of ${clip(opts.dataCenter)}`, opts.host, opts);
  const runtime = serviceRuntime(io, opts);
  const abs = (p: string | undefined) => (p === undefined ? undefined : resolve(io.cwd, p));
  const toAuthority = loadClientTls(
    { ca: abs(opts.authorityCa), cert: abs(opts.authorityCert), key: abs(opts.authorityKey) },
    { ca: '--authority-ca', cert: '--authority-cert', key: '--authority-key' },
  );
  const bootCaFile = opts.bootCa ?? (io.env.FLEET_BOOT_CA || undefined);
  const toBoot = loadClientTls({ ca: abs(bootCaFile) }, { ca: opts.bootCa ? '--boot-ca' : 'FLEET_BOOT_CA', cert: '', key: '' });
  if (toAuthority.diagnostics.length + toBoot.diagnostics.length > 0) throw new FleetError([...toAuthority.diagnostics, ...toBoot.diagnostics]);
  const { stack, pack } = await loadForServe(io, opts.stack);
  const dc = stack.dataCenters.find((d) => d.name === opts.dataCenter);
  if (!dc) {
    // The README's and the drivers' docs' commands once left --stack out: the default stacks/local has no virginia.
    const names = stack.dataCenters.map((d) => d.name);
    const likely = suggest(opts.dataCenter, names);
    fail(
      'apply.serve-config',
      `--data-center ${quote(opts.dataCenter)} is not a data center of stack ${clip(stack.name)} (${names.map((n) => clip(n)).join(', ')}), read from ${clipPath(join(opts.stack, 'stack.yaml'))}. ${likely ? `Did you mean ${clip(likely)}? Or give` : 'Give one of those, or'} the folder of the stack ${quote(opts.dataCenter)} belongs to with --stack (or FLEET_STACK).`,
    );
  }
  const kind = opts.driver;
  if (!isDriverKind(kind)) fail('apply.serve-config', `--driver ${quote(kind)} is not a driver; drivers are ${DRIVER_KINDS.join(', ')}.`);
  const named = dc.driver ?? 'sim';
  if (named !== kind) {
    fail('apply.serve-config', `Data center ${clip(dc.name)} runs the ${named} driver in stack ${clip(stack.name)}, not ${kind} (--driver): start it with --driver ${named}, or set driver: ${kind} on its entry in stack.yaml.`, dc.where);
  }
  const factory = await driverFactory(kind);
  if (!factory) fail('apply.serve-config', `Driver ${kind} is not available; this build has: ${availableDrivers().join(', ')}.`);
  let config: DmzClientSpec = {};
  const configName = opts.config !== undefined ? clipPath(opts.config) : 'the config';
  if (opts.config !== undefined) {
    const loaded = await loadDmzClientConfig(resolve(io.cwd, opts.config), kind, dc.name);
    if (!loaded.config) throw new FleetError(loaded.diagnostics);
    config = loaded.config.spec;
  } else if (kind !== 'sim') {
    fail('apply.serve-config', `The ${kind} driver needs its settings: pass --config FILE (a DmzClient document, docs/drivers/${kind}.md).`);
  }
  // A real VM is told the boot endpoint's URL in its user data; without spec.bootUrl that is the address this client
  // listens on, and an unspecified one (0.0.0.0, ::) reaches no DMZ client from a VM: every boot would fail unreported
  // and the driver would take the powered-off VM for a denied one.
  if (kind !== 'sim' && !config.bootUrl && isUnspecifiedHost(opts.host)) {
    fail(
      'apply.serve-config',
      `--host ${quote(opts.host)} is no address a VM can reach the boot endpoint at, and ${configName} sets no spec.bootUrl: set spec.bootUrl to the URL the data center's VMs reach this client at (e.g. https://10.20.0.10:7401/v1/boot), or listen on that address.`,
    );
  }
  // A cloud VM's agent sends its boot token to the boot URL and gets its disk key back: plain HTTP to it crosses the
  // data center's network in clear text (the sim's agents run in this process).
  if (kind !== 'sim') {
    const bootUrl = config.bootUrl ?? `${tls ? 'https' : 'http'}://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}/v1/boot`;
    let boot: URL | undefined;
    try {
      boot = new URL(bootUrl);
    } catch {
      /* the config's own check said so */
    }
    if (boot && isPlainRemote(boot)) {
      fail(
        'tls.plain-remote',
        config.bootUrl !== undefined
          ? `spec.bootUrl ${quote(bootUrl)} (${configName}) is plain HTTP: the data center's VMs would send their boot tokens to it, and get their disk keys back, in clear text. Give the https:// URL they reach this client at (its --tls-cert, or the TLS proxy in front of it).`
          : `The data center's VMs would be told the boot URL ${quote(bootUrl)}, plain HTTP (this client serves no TLS: --insecure): they would send their boot tokens to it, and get their disk keys back, in clear text. Serve TLS (--tls-cert, --tls-key), or set spec.bootUrl in ${configName} to the https:// URL of the TLS proxy in front of this client.`,
      );
    }
  }
  let authorityUrl: URL | undefined;
  try {
    authorityUrl = new URL(opts.authority);
  } catch {
    /* said below */
  }
  // `localhost:7400` parses as a URL of scheme `localhost:`: a client started with it could never reach the authority.
  if (!authorityUrl || (authorityUrl.protocol !== 'http:' && authorityUrl.protocol !== 'https:') || !authorityUrl.hostname) {
    fail('apply.serve-config', `--authority ${quote(opts.authority)} is not an http:// or https:// URL of the authority (e.g. https://authority.example:7400).`);
  }
  // TLS settings for a plain-HTTP authority would never be used: the hop (and this client's token on it) would be in clear text.
  const tlsFlags = [opts.authorityCa && '--authority-ca', opts.authorityCert && '--authority-cert', opts.authorityKey && '--authority-key'].filter((f): f is string => Boolean(f));
  if (authorityUrl.protocol === 'http:' && tlsFlags.length > 0) {
    fail(
      'tls.plain-address',
      `${tlsFlags.join(', ')} given, but --authority ${quote(opts.authority)} is not https://: they would never be used and this DMZ client's token would cross the network in clear text. Give the authority's https:// address.`,
    );
  }
  // Every call to the authority carries this client's token (and boots bring disk keys back): plain HTTP only on loopback.
  if (isPlainRemote(authorityUrl)) {
    fail(
      'tls.plain-remote',
      `--authority ${quote(opts.authority)} is plain HTTP to another machine: this DMZ client's token (FLEET_DMZ_TOKEN_<DC>) would go with every call, and the disk keys of booting VMs would come back, in clear text. Give the authority's https:// address (it serves TLS with --tls-cert and --tls-key; --authority-ca verifies it); plain http:// is only for an authority on this machine.`,
    );
  }
  const authorityEnv = authorityTokenEnv(dc.name);
  const clientEnv = tokenEnvOf(dc);
  const authorityToken = io.env[authorityEnv];
  const clientToken = io.env[clientEnv];
  const missing: Diagnostic[] = [];
  if (!authorityToken) missing.push(diag('apply.token-missing', `Set ${authorityEnv} to the token this DMZ client presents to the authority.`, dc.where));
  if (!clientToken) missing.push(diag('apply.token-missing', `Set ${clientEnv} to the token the CLI must present to this DMZ client.`, dc.where));
  if (authorityToken) missing.push(...unsendableToken(authorityEnv, authorityToken, `the authority, from the DMZ client of ${clip(dc.name)}`, dc.where));
  if (clientToken) missing.push(...unsendableToken(clientEnv, clientToken, `the DMZ client of data center ${clip(dc.name)}`, dc.where));
  if (missing.length > 0) throw new FleetError(missing);
  const shared = sharedTokens(`the DMZ client of ${clip(dc.name)}`, [
    { env: clientEnv, token: clientToken },
    { env: authorityEnv, token: authorityToken },
  ]);
  if (shared.length > 0) throw new FleetError(shared);
  const stateDir = opts.stateDir ?? simStateDir(stack, dc.name);
  const credentialKey = scopedCredentialKey(authorityToken as string, dc.name);
  const driver = await factory({ dataCenter: dc, stack: stack.name, pack, config, stateDir, env: io.env, credentialKey });
  try {
    const svc = await startDmzClient({
      dataCenter: dc.name,
      driver,
      authorityUrl: opts.authority,
      authorityToken: authorityToken as string,
      clientToken: clientToken as string,
      stateDir,
      pack,
      host: opts.host,
      port,
      tls,
      authorityTls: toAuthority.tls,
      ...(toBoot.tls?.ca ? { bootCa: toBoot.tls.ca } : {}),
      // A cloud VM's boot (OS, cloud-init, the agent and its retries) takes minutes; the sim's, milliseconds.
      readyTimeoutMs: readyTimeoutOf(kind, config),
      // The boot endpoint's limit of denials per source address; unset fields keep their defaults (docs/dmz-client.md).
      ...(config.bootLimit ? { bootLimit: config.bootLimit } : {}),
      ...runtime,
    });
    return {
      url: svc.url,
      metrics: svc.metrics,
      close: async () => {
        await svc.close();
        await driver.close();
      },
    };
  } catch (err) {
    await driver.close();
    throw err;
  }
}

/**
 * Resolves on the first SIGINT or SIGTERM; a second one while the service
 * drains stops the process at once (exit 130 / 143), as an operator expects
 * of a second Ctrl-C.
 */
function untilStopped(io: CliIO, what: string): Promise<string> {
  return new Promise((resolve) => {
    let stopping = false;
    const on = (sig: 'SIGINT' | 'SIGTERM') => () => {
      if (stopping) {
        io.stderr.write(`${what}: second ${sig}, stopping without draining\n`);
        process.exit(sig === 'SIGINT' ? 130 : 143);
      }
      stopping = true;
      resolve(sig);
    };
    process.on('SIGINT', on('SIGINT'));
    process.on('SIGTERM', on('SIGTERM'));
  });
}

/**
 * Runs a service until SIGINT/SIGTERM, then stops it gracefully (its
 * close(): readiness fails, no new connection, work in flight finishes within
 * the drain time, logs flushed) and exits 0.
 */
export async function serve(io: CliIO, what: string, start: () => Promise<RunningService>): Promise<number> {
  const svc = await start();
  // The handlers first: a SIGTERM sent as soon as the line below is read (a supervisor's, a test's) killed
  // the process undrained, with no word, about one time in three.
  const stopped = untilStopped(io, what);
  io.stdout.write(`${what} listening on ${svc.url}\n`);
  const sig = await stopped;
  io.stderr.write(`${what}: ${sig}, draining and shutting down\n`);
  await svc.close();
  io.stderr.write(`${what}: stopped\n`);
  return 0;
}

