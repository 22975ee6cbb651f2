// What `fleet ui` runs; loaded only when the dashboard starts (it brings
// Fastify and the record's driver along).
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Fastify from 'fastify';
import { loadOrCreateSecret, uiTokens, type RunningService } from '../../authority/index.ts';
import { openRecord, type SqlRecord } from '../../record/index.ts';
import { listen } from '../../../protocol/index.ts';
import { recordSource, registerUi, type UiRecord } from '../../ui/index.ts';
import type { CliIO } from '../io.ts';
import { UI_TOKEN_ENV, loadForServe, parsePort, serviceTls, type ServeTlsOptions } from './serve-run.ts';

export { serve } from './serve-run.ts';

export interface ServeUiOptions extends Omit<ServeTlsOptions, 'clientCa'> {
  stack: string;
  port: string;
  host: string;
}

/**
 * A PGlite record is one process's at a time (engine/record/dirlock.ts), and
 * the dashboard must not keep `fleet apply` from it: the record is opened
 * when a page reads it and closed as soon as no page does, so an apply gets
 * it between two page loads (a page asked for during an apply waits for it,
 * up to FLEET_RECORD_BUSY_TIMEOUT_MS, then says the record is busy). A
 * PostgreSQL record is opened once: it has no such limit.
 */
export function leasedRecord(url: string): UiRecord & { close(): Promise<void> } {
  let open: Promise<SqlRecord> | undefined;
  let users = 0;
  let closing: Promise<void> = Promise.resolve();
  const use = async <T>(read: (r: SqlRecord) => Promise<T>): Promise<T> => {
    users++;
    // Set before any await: requests arriving together share one open.
    open ??= closing.then(() => openRecord(url));
    const opened = open;
    try {
      return await read(await opened);
    } finally {
      if (--users === 0 && open === opened) {
        open = undefined;
        closing = opened.then((r) => r.close()).catch(() => {});
      }
    }
  };
  return {
    listVms: (...a) => use((r) => r.listVms(...a)),
    history: (...a) => use((r) => r.history(...a)),
    listLocks: (...a) => use((r) => r.listLocks(...a)),
    listPlans: (...a) => use((r) => r.listPlans(...a)),
    planJournal: (...a) => use((r) => r.planJournal(...a)),
    listBootAttempts: (...a) => use((r) => r.listBootAttempts(...a)),
    close: () => closing,
  };
}

/** Starts the dashboard of a stack's record; answers the URL of its first page (…/ui). */
export async function serveUi(io: CliIO, opts: ServeUiOptions): Promise<RunningService> {
  const port = parsePort(opts.port);
  const tls = serviceTls(io, 'the dashboard', opts.host, { ...opts, clientCa: undefined });
  const { stack, pack } = await loadForServe(io, opts.stack);
  let adminToken = io.env[UI_TOKEN_ENV.admin] || undefined;
  const readToken = io.env[UI_TOKEN_ENV.read] || undefined;
  if (!adminToken && !readToken) {
    // Never printed: a person reads it from the file (0600), as they would the authority's secret.
    const file = join(stack.stateDir, 'ui.token');
    adminToken = loadOrCreateSecret(file);
    io.stdout.write(`Sign in with the token in ${file} (or set ${UI_TOKEN_ENV.admin} / ${UI_TOKEN_ENV.read}).\n`);
  }
  const postgres = /^postgres(ql)?:\/\//.test(stack.recordUrl);
  const record = postgres ? await openRecord(stack.recordUrl) : leasedRecord(stack.recordUrl);
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024, ...(tls ? { https: tls } : {}) });
  registerUi(app, {
    source: recordSource(record, stack.name, pack),
    authorize: uiTokens({ adminToken, readToken }) as NonNullable<ReturnType<typeof uiTokens>>,
    sessionKey: randomBytes(32),
    secure: tls !== undefined,
  });
  app.get('/', async (_req, reply) => reply.redirect('/ui', 302));
  try {
    const url = await listen(app, opts.host, port);
    return {
      url: `${url}/ui`,
      close: async () => {
        await app.close();
        await record.close();
      },
    };
  } catch (err) {
    await record.close();
    throw err;
  }
}
