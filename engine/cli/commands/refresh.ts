import { Option, type Command } from 'commander';
import { printDiagnostics, runCommand } from '../io.ts';
import { DEFAULT_STACK } from '../main.ts';
import type { RegisterCommand } from './types.ts';

/** `fleet refresh`: ask every DMZ client for its VMs' actual state and report drift. Exit 0 (drift is a report, not an error) unless a data center is unreachable. */
export const registerRefresh: RegisterCommand = (program: Command, io, setExit) => {
  program
    .command('refresh')
    .description("Ask every data center for its VMs' actual state, record what is one diagram edge away and report the rest as drift.")
    .option('--stack <dir>', 'stack folder (holding stack.yaml)', DEFAULT_STACK)
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (opts: { stack: string; format: 'text' | 'json' }) => {
      setExit(
        await runCommand(io, async () => {
          const { defaultActor, openSession, refreshStack } = await import('../../apply/index.ts');
          const session = await openSession(opts.stack, { cwd: io.cwd, env: io.env });
          try {
            printDiagnostics(io, session.warnings);
            const result = await refreshStack(session, { actor: defaultActor() });
            if (opts.format === 'json') {
              io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
            } else {
              for (const d of result.drift) io.stdout.write(`${d.kind.padEnd(12)} ${d.dataCenter.padEnd(10)} ${d.address.padEnd(16)} ${d.detail}\n`);
              io.stdout.write(`Refresh: ${result.checked} VMs checked, ${result.drift.length} differences.\n`);
            }
            return result.drift.some((d) => d.kind === 'unreachable') ? 1 : 0;
          } finally {
            await session.close();
          }
        }),
      );
    });
};
