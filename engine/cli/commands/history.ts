import type { Command } from 'commander';
import { fail } from '../../diags/index.ts';
import { parseVmAddress } from '../../model/index.ts';
import { runCommand } from '../io.ts';
import { DEFAULT_STACK } from '../main.ts';
import { formatOption, historyTable, withStackRecord } from './state.ts';
import type { RegisterCommand } from './types.ts';

const DEFAULT_LIMIT = 100;

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
    .option('--stack <dir>', 'stack folder (holding stack.yaml)', DEFAULT_STACK)
    .option('--limit <n>', `the newest N rows (default ${DEFAULT_LIMIT})`)
    .addOption(formatOption())
    .action(async (address: string | undefined, opts: { stack: string; limit?: string; format: 'text' | 'json' }) => {
      setExit(
        await runCommand(io, async () => {
          const limit = opts.limit === undefined ? DEFAULT_LIMIT : Number(opts.limit);
          if (!Number.isInteger(limit) || limit < 1) fail('cli.usage', `--limit must be a positive whole number, not ${JSON.stringify(opts.limit)}.`);
          if (address !== undefined && !parseVmAddress(address)) {
            fail('cli.usage', `${JSON.stringify(address)} is not a VM address; addresses look like web/0 (<fleet>/<index>).`);
          }
          return withStackRecord(io, opts.stack, async (record, stack) => {
            const rows = await record.history(stack, address, { limit });
            if (address !== undefined && rows.length === 0) {
              fail('record.vm-not-found', `stack ${stack} has no VM and no history at ${address} in the record ${record.description}.`, { address });
            }
            if (opts.format === 'json') {
              io.stdout.write(`${JSON.stringify({ stack, address: address ?? null, history: rows }, null, 2)}\n`);
              return 0;
            }
            if (rows.length) io.stdout.write(historyTable(rows));
            else io.stdout.write(`No history in stack ${stack} yet (record ${record.description}).\n`);
            return 0;
          });
        }),
      );
    });
};
