import type { Command } from 'commander';
import { diag, escapeUnseen, sortDiagnostics, type Diagnostic } from '../../diags/index.ts';
import { modeOf, printDiagnostics, runCommand, writeJson, type CliIO } from '../io.ts';
import { formatOption, loaderEnv, recordOutageNotices, recordUrlOption, stackOption } from '../options.ts';
import { INTERRUPTED_EXIT } from './apply.ts';
import type { RegisterCommand } from './types.ts';

interface RefreshCliOptions {
  stack: string;
  recordUrl?: string;
  format: string;
  check?: boolean;
  detailedExitcode?: boolean;
}

/**
 * `fleet refresh`: ask every DMZ client for its VMs' actual state, record
 * what is one diagram edge away and report the rest as drift.
 * `fleet refresh --check` writes nothing (a scheduled drift check).
 *
 * | exit | when                                                                 |
 * | ---- | -------------------------------------------------------------------- |
 * | 0    | done (drift is a report, not an error); with --detailed-exitcode: no drift |
 * | 1    | an error: invalid stack, record or a data center unreachable          |
 * | 2    | drift found, with --detailed-exitcode                                |
 * | 130  | stopped by Ctrl-C or SIGTERM (its locks released)                    |
 */
/**
 * Ctrl-C / SIGTERM while a refresh runs (`fleet refresh`, `fleet plan --refresh`): the first aborts `signal`
 * (refreshStack stops, writes nothing more and releases its locks), the second exits at once. Without it Node's
 * default killed the refresh on the spot, its fleet locks left held for their lease.
 */
export function onRefreshInterrupt(io: CliIO): { signal: AbortSignal; dispose(): void } {
  const stop = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (stop.signal.aborted) process.exit(INTERRUPTED_EXIT);
    stop.abort();
    io.stderr.write(`\n${sig}: stopping the refresh and releasing its locks. ${sig === 'SIGINT' ? 'Press Ctrl-C' : 'Signal'} again to exit at once.\n`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: stop.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

export const registerRefresh: RegisterCommand = (program: Command, io, setExit) => {
  program
    .command('refresh')
    .description("Ask every data center for its VMs' actual state, record what is one diagram edge away and report the rest as drift.")
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .option('--check', 'report the drift only: write nothing to the record (for a scheduled drift check)')
    .option('--detailed-exitcode', 'exit 2 when there is drift (0: none, 1: error)')
    .addOption(formatOption())
    .action(async (opts: RefreshCliOptions) => {
      const mode = modeOf(opts.format);
      setExit(
        await runCommand(
          io,
          async () => {
            const { defaultActor, openSession, refreshStack, RefreshInterrupted } = await import('../../apply/index.ts');
            // A record it would make is empty: a mistyped URL's drift check would find no drift, ever.
            const check = Boolean(opts.check);
            const session = await openSession(opts.stack, {
              cwd: io.cwd,
              env: loaderEnv(io, opts),
              existingRecord: true,
              onRecordOutage: recordOutageNotices(io, 'the refresh'),
              // A drift check writes nothing, so it does not upgrade the record either (a scheduled job on a newer dmzfleet).
              ...(check ? { noUpgrade: '`fleet refresh --check` writes nothing' } : {}),
            });
            const stop = onRefreshInterrupt(io);
            try {
              let result;
              try {
                result = await refreshStack(session, { actor: defaultActor(), write: !check, signal: stop.signal });
              } catch (err) {
                if (!(err instanceof RefreshInterrupted)) throw err;
                io.stderr.write(
                  check
                    ? 'Drift check interrupted: nothing was written to the record.\n'
                    : 'Refresh interrupted: its locks are released; what it recorded before the interrupt stays recorded. Run `fleet refresh` again for the rest.\n',
                );
                return INTERRUPTED_EXIT;
              } finally {
                stop.dispose();
              }
              const unreachable: Diagnostic[] = result.drift
                .filter((d) => d.kind === 'unreachable')
                // Under the code of what failed (a refused token is apply.dmz-unauthorized, not unreachable).
                .map((d) => diag(d.code ?? 'apply.dmz-unreachable', `refresh could not list the VMs of data center ${d.dataCenter}: ${d.detail}`, { address: d.dataCenter }));
              const drift = result.drift.filter((d) => d.kind !== 'unreachable');
              const diagnostics = sortDiagnostics([...session.warnings, ...result.diagnostics, ...unreachable]);
              if (mode === 'json') {
                writeJson(io, { stack: session.stack.name, check, checked: result.checked, drift, diagnostics });
              } else {
                printDiagnostics(io, diagnostics);
                // A VM the record does not know shows with its name in the cloud, which whoever made it chose: escaped.
                for (const d of drift) io.stdout.write(`${d.kind.padEnd(12)} ${escapeUnseen(d.dataCenter).padEnd(10)} ${escapeUnseen(d.address).padEnd(16)} ${escapeUnseen(d.detail)}\n`);
                const what = check ? 'Drift check' : 'Refresh';
                const written = check ? ' (nothing written to the record)' : '';
                io.stdout.write(`${what}: ${result.checked} VMs checked, ${drift.length} difference${drift.length === 1 ? '' : 's'}${written}.\n`);
              }
              if (unreachable.length) return 1;
              return opts.detailedExitcode && drift.length > 0 ? 2 : 0;
            } finally {
              await session.close();
            }
          },
          mode,
        ),
      );
    });
};
