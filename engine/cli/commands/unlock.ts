import { hostname } from 'node:os';
import type { Command } from 'commander';
import { fail, unseenProblem, visible } from '../../diags/index.ts';
import { holderGone, lockHolder } from '../../record/locks.ts';
import { modeOf, runCommand } from '../io.ts';
import { formatOption, recordUrlOption, stackOption } from '../options.ts';
import { printResult, withStackRecord, type RecordCliOptions } from './state.ts';
import type { RegisterCommand } from './types.ts';

/**
 * `fleet unlock LOCKID`: breaks a fleet lock left by an apply that is gone
 * (the lock-held error names the id). The lease would expire on its own;
 * this is for not waiting. The old holder's next heartbeat fails with
 * record.lock-lost, so it stops writing. A lock whose holder still runs on
 * this host is refused (record.lock-held): that apply is not gone.
 */
export const registerUnlock: RegisterCommand = (program: Command, io, setExit) => {
  program
    .command('unlock')
    .description('Release a fleet lock by its id (from the lock-held error), when the apply holding it is gone (refused while it still runs on this host).')
    .argument('<lockId>', 'lock id')
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .addOption(formatOption())
    .action(async (lockId: string, opts: RecordCliOptions) => {
      const mode = modeOf(opts.format);
      setExit(
        await runCommand(io, async () => {
          if (lockId.trim() === '') fail('cli.usage', 'the lock id is empty: `fleet state list` shows the locks held and their ids (LOCK ID), as the lock-held error names one.');
          const odd = unseenProblem(lockId);
          if (odd) fail('cli.usage', `${visible(lockId)} is not a lock id: it ${odd.why}. \`fleet state list\` shows the locks held and their ids (LOCK ID).`);
          return withStackRecord(io, opts, async (record, stack) => {
            const locks = await record.findLock(lockId);
            // A record may hold several stacks (PostgreSQL): --stack says whose locks this may break.
            const foreign = locks.filter((l) => l.stack !== stack);
            if (foreign.length > 0) {
              fail(
                'record.lock-not-found',
                `stack ${stack} holds no lock ${lockId} in the record ${record.description}: that lock is of stack ${foreign[0].stack} (fleet ${foreign.map((l) => l.fleet).join(', ')}); run \`fleet unlock ${lockId}\` with that stack's --stack if its apply is gone.`,
                { address: lockId },
              );
            }
            // Its apply still runs here (a live process of this host, its lease renewed): not gone, so not broken.
            // Breaking it let another apply take the fleets while this one still worked on them. Another host's
            // holder cannot be seen from here: that is the operator's call (the lock-held error says so).
            const running = locks.find((l) => l.host === hostname() && Date.parse(l.expiresAt) > Date.now() && !holderGone(l));
            if (running) {
              const plan = running.planId ? ` for plan ${running.planId}` : '';
              fail(
                'record.lock-held',
                `lock ${lockId} on fleet${locks.length > 1 ? 's' : ''} ${locks.map((l) => l.fleet).join(', ')} of stack ${running.stack} is held by ${lockHolder(running)}${plan} since ${running.since}, a process that still runs on this host: its apply is not gone, and unlocking would let another apply take those fleets while it still works on them. Wait for it to finish, or stop it (Ctrl-C) and unlock only what it leaves behind.`,
                { address: lockId },
              );
            }
            const released = locks.length > 0 && (await record.forceUnlock(lockId));
            if (!released) {
              fail('record.lock-not-found', `the record ${record.description} holds no lock ${lockId}; it may have been released already (\`fleet state list\` shows the locks held, with their ids).`, {
                address: lockId,
              });
            }
            const l = locks[0];
            const fleets = locks.map((x) => x.fleet).join(', ');
            printResult(
              io,
              mode,
              { released: true, lockId, locks },
              () =>
                `Released lock ${lockId} on fleet${locks.length > 1 ? 's' : ''} ${fleets} of stack ${l.stack}, held by ${lockHolder(l)}${l.planId ? ` for plan ${l.planId}` : ''} since ${l.since}.\n`,
            );
            return 0;
          });
        }, mode),
      );
    });
};
