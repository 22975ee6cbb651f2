// What `fleet ui` runs; loaded only when the dashboard starts (it brings
// Fastify and the record's driver along).
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Fastify from 'fastify';
import { loadOrCreateSecret, uiTokens, type RunningService } from '../../authority/index.ts';
import { describeRecordUrl, isServerRecord, openRecord, pgliteDir, type SqlRecord } from '../../record/index.ts';
import { listen, receiptBound } from '../../../protocol/index.ts';
import { recordSource, registerUi, uiFrameworkErrors, uiSessionBinding, type UiRecord } from '../../ui/index.ts';
import type { CliIO } from '../io.ts';
import { UI_TOKEN_ENV, behindTlsProxy, loadForServe, parsePort, serviceTls, sharedTokens, uiLoopbackHosts, type ServeTlsOptions } from './serve-run.ts';
import { FleetError, clipPath, fail } from '../../diags/index.ts';

export { serve } from './serve-run.ts';

export interface ServeUiOptions extends Omit<ServeTlsOptions, 'clientCa'> {
  stack: string;
  port: string;
  host: string;
}

/** How long `leasedRecord` keeps a record open; see there. */
export interface LeaseTimes {
  /** Closed after this long without a read (default 1 s). */
  idleMs?: number;
  /** Not used for new reads once open this long; closed when its reads end (default 5 s). */
  holdMs?: number;
  /** A new opening starts this long after the last close (default 300 ms): an apply polling for the record (every 100 ms) gets it first. */
  yieldMs?: number;
}

interface Lease {
  record: Promise<SqlRecord>;
  openedAt: number;
  users: number;
  failed: boolean;
  finished: boolean;
  idle?: ReturnType<typeof setTimeout>;
  /** Resolves yieldMs after the record was closed. */
  closed: Promise<void>;
  done: () => void;
}

/**
 * A PGlite record is one process's at a time (engine/record/dirlock.ts), and
 * the dashboard must not keep `fleet apply` from it. So the record is opened
 * when a page reads it and shared by the reads that come while it is open;
 * it is closed after `idleMs` without a read, and never kept for new reads
 * longer than `holdMs`, so an apply waiting for it (up to its busy timeout,
 * 10 s by default) gets it even while someone keeps clicking. A page asked
 * for while an apply holds the record waits for it (up to
 * FLEET_RECORD_BUSY_TIMEOUT_MS), then says the record is busy. Opening costs
 * a PGlite start, so a person browsing within `idleMs` pays it once. A
 * PostgreSQL record needs none of this: it is opened once.
 */
export function leasedRecord(open: () => Promise<SqlRecord>, times: LeaseTimes = {}): UiRecord & { close(): Promise<void> } {
  const idleMs = times.idleMs ?? 1_000;
  const holdMs = times.holdMs ?? 5_000;
  const yieldMs = times.yieldMs ?? 300;
  let current: Lease | undefined;
  let last: Lease | undefined;
  let stopped = false;

  const finish = (l: Lease) => {
    if (l.finished) return;
    l.finished = true;
    clearTimeout(l.idle);
    if (current === l) current = undefined;
    void l.record
      .then((r) => r.close())
      .catch(() => {})
      .then(() => new Promise((resolve) => setTimeout(resolve, yieldMs)))
      .then(l.done);
  };

  const lease = (): Lease => {
    if (stopped) throw new Error('bug: the dashboard read its record after closing it');
    const now = Date.now();
    if (current && now - current.openedAt < holdMs) return current;
    if (current) {
      const old = current;
      current = undefined;
      if (old.users === 0) finish(old);
    }
    // One opening at a time in this process: the next waits for the last to be closed.
    const after = last?.closed ?? Promise.resolve();
    let done!: () => void;
    const closed = new Promise<void>((resolve) => (done = resolve));
    const l: Lease = { record: Promise.resolve() as never, openedAt: now, users: 0, failed: false, finished: false, closed, done };
    // holdMs counts from when the record is open, not from when opening started (a busy record can take seconds).
    l.record = after.then(open).then((r) => {
      l.openedAt = Date.now();
      return r;
    });
    l.record.catch(() => (l.failed = true));
    current = l;
    last = l;
    return l;
  };

  const use = async <T>(read: (r: SqlRecord) => Promise<T>): Promise<T> => {
    const l = lease();
    l.users++;
    clearTimeout(l.idle);
    try {
      return await read(await l.record);
    } finally {
      if (--l.users === 0) {
        // A failed opening is not reused: the next page tries again.
        if (l !== current || l.failed) finish(l);
        else l.idle = setTimeout(() => l.users === 0 && finish(l), idleMs);
      }
    }
  };
  return {
    countVmsPage: (...a) => use((r) => r.countVmsPage(...a)),
    fleetMembers: (...a) => use((r) => r.fleetMembers(...a)),
    history: (...a) => use((r) => r.history(...a)),
    listLocks: (...a) => use((r) => r.listLocks(...a)),
    listPlans: (...a) => use((r) => r.listPlans(...a)),
    planJournalPage: (...a) => use((r) => r.planJournalPage(...a)),
    listBootAttempts: (...a) => use((r) => r.listBootAttempts(...a)),
    async close() {
      stopped = true;
      if (current && current.users === 0) finish(current);
      await last?.closed;
    },
  };
}

/** Starts the dashboard of a stack's record; answers the URL of its first page (…/ui). */
export async function serveUi(io: CliIO, opts: ServeUiOptions): Promise<RunningService> {
  const port = parsePort(opts.port);
  const tls = serviceTls(io, 'the dashboard', opts.host, { ...opts, clientCa: undefined });
  const { stack, pack } = await loadForServe(io, opts.stack);
  let adminToken = io.env[UI_TOKEN_ENV.admin] || undefined;
  const readToken = io.env[UI_TOKEN_ENV.read] || undefined;
  const shared = sharedTokens('the dashboard', [
    { env: UI_TOKEN_ENV.admin, token: adminToken },
    { env: UI_TOKEN_ENV.read, token: readToken },
  ]);
  if (shared.length > 0) throw new FleetError(shared);
  // The dashboard only reads: a record folder that does not exist is a mistyped URL, not a record to make (as state and history).
  const dir = stack.recordUrl.startsWith('pglite://') ? pgliteDir(stack.recordUrl) : undefined;
  // An empty folder holds no record either: the first page would have written a new cluster into it.
  const missing = dir === undefined ? undefined : !existsSync(dir) ? 'does not exist' : emptyFolder(dir) ? 'is empty' : undefined;
  if (missing) {
    fail('record.not-found', `There is no record at ${describeRecordUrl(stack.recordUrl)}: the folder ${clipPath(dir as string)} ${missing}. Check --record-url (or FLEET_RECORD_URL) and the stack's \`record\`; \`fleet plan\` or \`fleet apply\` creates a record, the dashboard only reads one.`);
  }
  const postgres = isServerRecord(stack.recordUrl);
  // Nor does it upgrade one (record.older-schema): a dashboard started with a newer dmzfleet would move a shared record
  // past the version the CI jobs use.
  const opening = { existing: true, upgrade: false, noUpgradeWhy: 'The dashboard only reads' } as const;
  const record = postgres ? await openRecord(stack.recordUrl, opening) : leasedRecord(() => openRecord(stack.recordUrl, opening));
  // With neither token set, the sign-in token is read from (or written to) <stack>/.fleet/ui.token, and the line saying
  // so printed, only once the dashboard listens: a --host it could not listen on wrote the file and said to sign in
  // before it failed (as a stack with no record did before its record.not-found). Until then no token signs in.
  const fromFile = !adminToken && !readToken;
  let authorize = uiTokens({ adminToken, readToken });
  let binding = uiSessionBinding({ adminToken, readToken });
  // A request must arrive whole within the services' bound (a sign-in form trickled in held a connection for ever).
  const receipt = receiptBound();
  const loopbackHosts = uiLoopbackHosts(io.env, opts.host);
  // A URL the router refuses (a percent-escape that is no UTF-8) is answered on a page too, not in Fastify's JSON.
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024, requestTimeout: receipt.requestTimeout, frameworkErrors: uiFrameworkErrors(stack.name), ...(tls ? { https: { ...tls, ...receipt.http } } : { http: receipt.http }) });
  registerUi(app, {
    source: recordSource(record, stack.name, pack),
    authorize: (token) => authorize?.(token),
    sessionKey: randomBytes(32),
    binding: (role) => binding(role),
    secure: tls !== undefined || behindTlsProxy(tls, opts),
    // No logger here (the authority has its service log): the reason of a 500 page is one line on stderr, where the page says it is.
    errorLog: { write: (line) => io.stderr.write(`fleet ui: ${line}\n`), where: 'the standard error of fleet ui' },
    // On loopback (the default), only requests naming localhost, an IP address or FLEET_UI_HOSTS: no DNS rebinding.
    ...(loopbackHosts ? { loopbackHosts } : {}),
  });
  app.get('/', async (_req, reply) => reply.redirect('/ui', 302));
  let url: string;
  try {
    url = await listen(app, opts.host, port);
    if (fromFile) {
      // Never printed: a person reads it from the file (0600), as they would the authority's secret.
      const file = join(stack.stateDir, 'ui.token');
      adminToken = loadOrCreateSecret(file, "the dashboard's sign-in token");
      authorize = uiTokens({ adminToken });
      binding = uiSessionBinding({ adminToken });
      io.stdout.write(`Sign in with the token in ${file} (or set ${UI_TOKEN_ENV.admin} / ${UI_TOKEN_ENV.read}).\n`);
    }
  } catch (err) {
    // Closing must not hide why it failed.
    await app.close().catch(() => {});
    await record.close();
    throw err;
  }
  return {
    url: `${url}/ui`,
    close: async () => {
      await app.close();
      await record.close();
    },
  };
}

/** Whether `dir` is a folder with nothing in it (not a folder, or unreadable: false, the record's open says which). */
function emptyFolder(dir: string): boolean {
  try {
    return readdirSync(dir).length === 0;
  } catch {
    return false;
  }
}
