import type { Command } from 'commander';
import { fail, quote } from '../../diags/index.ts';
import { modeOf, runCommand } from '../io.ts';
import { formatOption, recordUrlOption, stackOption } from '../options.ts';
import { addressArg, historyTable, notFoundHint, printResult, withStackRecord, type RecordCliOptions } from './state.ts';
import type { RegisterCommand } from './types.ts';

const DEFAULT_LIMIT = 100;
/** The largest --limit: PostgreSQL's integer range, far past any record's history (a larger number reached the database and failed there). */
const MAX_LIMIT = 2_147_483_647;

/**
 * `fleet history [ADDRESS]`: the transition history of the stack, or of one
 * address (including VMs that lived there before and were retired), oldest
 * first, the newest `--limit` rows.
 */
export const registerHistory: RegisterCommand = (program: Command, io, setExit) => {
  program
    .command('history')
    .description('Show the state changes the record holds (who, which plan, outcome, when), oldest first.')
    .argument('[address]', 'only this VM address, <fleet>/<index>')
    .addOption(stackOption())
    .addOption(recordUrlOption())
    .option('--limit <n>', `the newest N rows (default ${DEFAULT_LIMIT})`)
    .addOption(formatOption())
    .action(async (address: string | undefined, opts: RecordCliOptions & { limit?: string }) => {
      const mode = modeOf(opts.format);
      setExit(
        await runCommand(io, async () => {
          // Decimal digits only: Number() alone read 1e2 as 100, 0x10 as 16 and " 5" as 5.
          const limit = opts.limit === undefined ? DEFAULT_LIMIT : /^[0-9]+$/.test(opts.limit) ? Number(opts.limit) : NaN;
          if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) fail('cli.usage', `--limit must be a whole number from 1 to ${MAX_LIMIT}, not ${quote(String(opts.limit))}.`);
          if (address !== undefined) addressArg(address);
          return withStackRecord(io, opts, async (record, stack) => {
            const rows = await record.history(stack, address, { limit });
            if (address !== undefined && rows.length === 0) {
              fail('record.vm-not-found', `stack ${stack} has no VM and no history at ${address} in the record ${record.description}.${await notFoundHint(record, stack, address)}`, { address });
            }
            printResult(io, mode, { stack, address: address ?? null, history: rows }, () =>
              rows.length ? historyTable(rows) : `No history in stack ${stack} yet (record ${record.description}).\n`,
            );
            return 0;
          }, { readOnly: true });
        }, mode),
      );
    });
};
